/* The sending half of a connection direction: key order, sequence, framing (stream_tx.h). */
#include "encryptor/stream_tx.h"

#include <string.h>
#include "encryptor/gcm.h"
#include "encryptor/otp.h"

#define TX_MAX_HELD 4096

void stx_init(stream_tx *t, uint8_t mode, uint64_t rotate_bytes, int64_t rotate_seconds)
{
    memset(t, 0, sizeof *t);
    t->mode = mode;
    keyring_init(&t->ring);
    t->rotate_bytes = rotate_bytes;
    t->rotate_seconds = rotate_seconds;
}

void stx_free(stream_tx *t)
{
    keyring_free(&t->ring);
}

size_t stx_keys_ahead(const stream_tx *t)
{
    size_t ahead = t->ring.next - t->cur;
    return ahead && t->started ? ahead - 1 : ahead;
}

int stx_announce(stream_tx *t, pad_key *keys, size_t n, unsigned char *out, size_t *len)
{
    char ids[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
    if (n == 0 || n > FRAME_MAX_KEYS)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].bytes || (t->mode == FRAME_MODE_GCM && keys[i].len != GCM_KEY_BYTES))
            return -1;
        memcpy(ids[i], keys[i].id, sizeof ids[i]);
    }
    frame_header h = {FRAME_KEYS, t->mode, t->seq, t->ring.next, 0, (uint32_t)(n * FRAME_KEY_ID_BYTES)};
    if (frame_header_encode(&h, out, NULL) != FRAME_OK ||
        frame_keys_encode((const char(*)[FRAME_KEY_ID_BYTES + 1]) ids, n, out + FRAME_HEADER_BYTES, NULL) != FRAME_OK)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int64_t index = keyring_announce(&t->ring, keys[i].id, TX_MAX_HELD);
        if (index < 0 || keyring_fill(&t->ring, (uint32_t)index, &keys[i]) < 0)
            return -1; /* cannot happen with distinct fresh key_IDs below TX_MAX_HELD */
    }
    t->seq++;
    *len = frame_wire_bytes(&h);
    return 0;
}

static size_t room_in(const stream_tx *t, const pad_key *k, int64_t now)
{
    if (t->mode == FRAME_MODE_OTP)
        return otp_room(k->len, (size_t)t->used);
    return gcm_room(t->used, t->since, now, t->rotate_bytes, t->rotate_seconds);
}

size_t stx_room(stream_tx *t, int64_t now)
{
    for (;;) {
        const pad_key *k = keyring_get(&t->ring, t->cur);
        if (!k)
            return 0;
        size_t room = room_in(t, k, now);
        if (room)
            return room;
        if (!keyring_get(&t->ring, t->cur + 1))
            return 0;
        t->cur++;
        t->used = 0;
        t->started = 0;
        keyring_drop_before(&t->ring, t->cur);
    }
}

int stx_seal(stream_tx *t, uint8_t type, const unsigned char *plain, size_t n, int64_t now, unsigned char *out,
             size_t *len)
{
    if (type == FRAME_KEYS || n > stx_room(t, now))
        return -1;
    const pad_key *k = keyring_get(&t->ring, t->cur);
    frame_header h = {type, t->mode, t->seq, t->cur, (uint32_t)t->used, (uint32_t)n};
    if (frame_header_encode(&h, out, NULL) != FRAME_OK)
        return -1;
    unsigned char *ct = out + FRAME_HEADER_BYTES, *tag = ct + n;
    int rc = t->mode == FRAME_MODE_OTP ? otp_seal(out, k->bytes + t->used, plain, n, ct, tag)
                                       : gcm_seal(out, t->seq, k->bytes, plain, n, ct, tag);
    if (rc < 0)
        return -1;
    if (!t->started) {
        t->started = 1;
        t->keys_started++;
        t->since = now;
    }
    t->used += t->mode == FRAME_MODE_OTP ? otp_slice_bytes(n) : n;
    t->seq++;
    *len = frame_wire_bytes(&h);
    return 0;
}
