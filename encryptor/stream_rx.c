/* The receiving half of a connection direction: frame order and opening (stream_rx.h). */
#include "encryptor/stream_rx.h"

#include <string.h>
#include "encryptor/gcm.h"
#include "encryptor/otp.h"

static int refuse(const char **why, const char *text, int rc)
{
    if (why)
        *why = text;
    return rc;
}

void srx_init(stream_rx *r, uint8_t mode)
{
    memset(r, 0, sizeof *r);
    r->mode = mode;
}

static int check_common(const stream_rx *r, const frame_header *h, const char **why)
{
    if (h->mode != r->mode)
        return refuse(why, "frame in the wrong mode", SRX_MALFORMED);
    if (h->seq != r->seq)
        return refuse(why, "frame out of sequence", SRX_MALFORMED);
    return SRX_OK;
}

int srx_keys(stream_rx *r, const frame_header *h, size_t n, const char **why)
{
    if (h->type != FRAME_KEYS)
        return refuse(why, "not a KEYS frame", SRX_MALFORMED);
    int rc = check_common(r, h, why);
    if (rc != SRX_OK)
        return rc;
    if (h->key_index != r->announced)
        return refuse(why, "KEYS frame with the wrong first index", SRX_MALFORMED);
    if (n == 0 || n > FRAME_MAX_KEYS || (uint64_t)r->announced + n - r->cur > RX_MAX_AHEAD)
        return refuse(why, "too many keys announced ahead", SRX_MALFORMED);
    r->announced += (uint32_t)n;
    r->seq++;
    return SRX_OK;
}

int srx_open(stream_rx *r, const unsigned char header[FRAME_HEADER_BYTES], const frame_header *h,
             const unsigned char *body, const unsigned char *tag, srx_key_fn get_key, void *arg, unsigned char *plain,
             const char **why)
{
    if (h->type == FRAME_KEYS)
        return refuse(why, "KEYS frame where a sealed frame was expected", SRX_MALFORMED);
    int rc = check_common(r, h, why);
    if (rc != SRX_OK)
        return rc;
    if (h->key_index >= r->announced)
        return refuse(why, "frame uses a key that was not announced", SRX_MALFORMED);
    pad_key k;
    if (h->key_index == r->cur) {
        if (h->offset != r->used)
            return refuse(why, "frame at the wrong key offset", SRX_MALFORMED);
    } else if (h->key_index == r->cur + 1 && h->offset == 0) {
        /* Moving on is allowed only when the sender had to: the current key
         * is spent (one-time pad) or has been used (AES-GCM rotation). */
        if (r->mode == FRAME_MODE_OTP) {
            if (get_key(arg, r->cur, &k) < 0)
                return refuse(why, "announced key could not be fetched", SRX_NO_KEY);
            if (otp_room(k.len, (size_t)r->used) != 0)
                return refuse(why, "frame skips key bytes still unused", SRX_MALFORMED);
        } else if (!r->started) {
            return refuse(why, "frame skips an unused key", SRX_MALFORMED);
        }
    } else {
        return refuse(why, "frame uses a key out of order", SRX_MALFORMED);
    }
    uint64_t used = h->key_index == r->cur ? r->used : 0;
    if (get_key(arg, h->key_index, &k) < 0)
        return refuse(why, "announced key could not be fetched", SRX_NO_KEY);
    size_t n = h->length;
    if (r->mode == FRAME_MODE_OTP) {
        if (used + otp_slice_bytes(n) > k.len)
            return refuse(why, "frame runs past the end of its key", SRX_MALFORMED);
        if (otp_open(header, k.bytes + used, body, n, tag, plain) < 0)
            return refuse(why, "tag does not verify", SRX_BAD_TAG);
        used += otp_slice_bytes(n);
    } else {
        if (k.len != GCM_KEY_BYTES)
            return refuse(why, "AES-256-GCM key of the wrong size", SRX_MALFORMED);
        if (used + n > GCM_MAX_KEY_BYTES)
            return refuse(why, "too many bytes under one key", SRX_MALFORMED);
        if (gcm_open(header, h->seq, k.bytes, body, n, tag, plain) < 0)
            return refuse(why, "tag does not verify", SRX_BAD_TAG);
        used += n;
    }
    if (h->key_index != r->cur) {
        r->cur = h->key_index;
        r->started = 0;
    }
    r->started = 1;
    r->used = used;
    r->seq++;
    return SRX_OK;
}
