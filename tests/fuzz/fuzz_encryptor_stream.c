/* Fuzzes the receiving half of an encryptor connection (encryptor/stream_rx.h)
 * as encryptor/pump.c drives it, on the ciphertext bytes from the peer:
 * frames decoded one after the other, KEYS frames announcing keys
 * (frame_keys_decode, srx_keys, a keyring of at most RX_MAX_AHEAD + 1),
 * sealed frames opened in order (srx_open) until one is refused. The first
 * byte sets the mode and the key length: bit 0 AES-256-GCM (keys of 32 bytes,
 * 33 when the other bits are all 1) or one-time pad (keys of 33 + 8 * (byte
 * >> 1) bytes). Each announced key is at hand at once, its bytes derived
 * from its index. A sealed frame whose tag is all zero bytes is sealed here
 * first, its body taken as the plaintext, with the key and offset its header
 * names (when it has them), so that the fuzzer gets past the tag; it must
 * then open to that plaintext. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "encryptor/frame.h"
#include "encryptor/gcm.h"
#include "encryptor/keyring.h"
#include "encryptor/otp.h"
#include "encryptor/stream_rx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int get_key(void *arg, uint32_t index, pad_key *out)
{
    const pad_key *k = keyring_get(arg, index);
    if (!k)
        return -1;
    *out = *k;
    return 0;
}

/* Announces the n key_IDs and gives each its bytes. 0, or -1 when too many are held. */
static int announce(keyring *ring, char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t n, size_t key_len)
{
    for (size_t i = 0; i < n; i++) {
        int64_t index = keyring_announce(ring, ids[i], RX_MAX_AHEAD + 1);
        if (index < 0)
            return -1;
        pad_key k = {.len = key_len, .bytes = malloc(key_len)};
        if (!k.bytes)
            return -1;
        memcpy(k.id, ids[i], sizeof k.id);
        for (size_t j = 0; j < key_len; j++)
            k.bytes[j] = (unsigned char)((uint64_t)index * 131 + j * 7 + 1);
        if (keyring_fill(ring, (uint32_t)index, &k) < 0)
            abort();
    }
    return 0;
}

/* Seals the frame in place as a sender holding its key would, when the key
 * is announced and the frame fits it. 1 when sealed. */
static int seal(const keyring *ring, const unsigned char *header, const frame_header *h, unsigned char *body,
                unsigned char *tag)
{
    const pad_key *k = keyring_get(ring, h->key_index);
    unsigned char ct[FRAME_MAX_PAYLOAD];
    int rc;
    if (!k)
        return 0;
    if (h->mode == FRAME_MODE_OTP) {
        if ((uint64_t)h->offset + otp_slice_bytes(h->length) > k->len)
            return 0;
        rc = otp_seal(header, k->bytes + h->offset, body, h->length, ct, tag);
    } else {
        if (k->len != GCM_KEY_BYTES)
            return 0;
        rc = gcm_seal(header, h->seq, k->bytes, body, h->length, ct, tag);
    }
    if (rc != 0)
        abort();
    memcpy(body, ct, h->length);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] & 1 ? FRAME_MODE_GCM : FRAME_MODE_OTP;
    size_t key_len = mode == FRAME_MODE_GCM ? (data[0] == 0xff ? 33 : GCM_KEY_BYTES) : 33 + 8 * (size_t)(data[0] >> 1);
    static unsigned char body[FRAME_MAX_PAYLOAD + FRAME_TAG_BYTES], plain[FRAME_MAX_PAYLOAD],
        original[FRAME_MAX_PAYLOAD];
    static const unsigned char zero_tag[FRAME_TAG_BYTES];
    stream_rx rx;
    keyring ring;
    srx_init(&rx, mode);
    keyring_init(&ring);
    size_t at = 1;
    while (size - at >= FRAME_HEADER_BYTES) {
        const unsigned char *hdr = data + at;
        const char *why;
        frame_header h;
        if (frame_header_decode(hdr, &h, &why) != FRAME_OK)
            break;
        size_t rest = h.length + frame_tag_bytes(h.type);
        if (size - at - FRAME_HEADER_BYTES < rest)
            break;
        memcpy(body, hdr + FRAME_HEADER_BYTES, rest);
        at += FRAME_HEADER_BYTES + rest;
        if (h.type == FRAME_KEYS) {
            char ids[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
            size_t n;
            if (frame_keys_decode(body, h.length, ids, &n, &why) != FRAME_OK || srx_keys(&rx, &h, n, &why) != SRX_OK ||
                announce(&ring, ids, n, key_len) < 0)
                break;
            continue;
        }
        unsigned char *tag = body + h.length;
        int sealed = 0;
        if (memcmp(tag, zero_tag, FRAME_TAG_BYTES) == 0) {
            memcpy(original, body, h.length);
            sealed = seal(&ring, hdr, &h, body, tag);
        }
        if (srx_open(&rx, hdr, &h, body, tag, get_key, &ring, plain, &why) != SRX_OK)
            break;
        if (sealed && memcmp(plain, original, h.length) != 0)
            abort();
        keyring_drop_before(&ring, rx.cur);
    }
    keyring_free(&ring);
    return 0;
}
