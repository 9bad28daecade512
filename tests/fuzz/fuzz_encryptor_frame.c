/* Fuzzes the encryptor's frame decoders (encryptor/frame.h) on a byte stream
 * as it arrives from the peer encryptor: frame_decode frame after frame until
 * the input ends or a frame is refused, frame_keys_decode on each KEYS body,
 * frame_header_decode on every 28-byte window of the first 256 bytes and
 * frame_keys_decode on the whole input. A header that decodes must
 * encode to the same 28 bytes, and decoded key_IDs to the same body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "encryptor/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void header_roundtrip(const unsigned char *in, const frame_header *h)
{
    unsigned char out[FRAME_HEADER_BYTES];
    const char *why;
    if (frame_header_check(h, &why) != FRAME_OK || frame_header_encode(h, out, &why) != FRAME_OK ||
        memcmp(in, out, FRAME_HEADER_BYTES) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why;
    frame_header h;
    char keys[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
    size_t nkeys;
    frame_keys_decode(data, size, keys, &nkeys, &why);
    for (size_t i = 0; i + FRAME_HEADER_BYTES <= size && i < 256; i++)
        if (frame_header_decode(data + i, &h, &why) == FRAME_OK)
            header_roundtrip(data + i, &h);
    size_t at = 0;
    for (;;) {
        const unsigned char *body, *tag;
        size_t consumed = 0;
        int rc = frame_decode(data + at, size - at, &h, &body, &tag, &consumed, &why);
        if (rc != FRAME_OK)
            break;
        if (consumed != frame_wire_bytes(&h) || consumed > size - at || body != data + at + FRAME_HEADER_BYTES ||
            (h.type == FRAME_KEYS) != (tag == NULL))
            abort();
        header_roundtrip(data + at, &h);
        if (h.type == FRAME_KEYS) {
            char ids[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
            unsigned char again[FRAME_MAX_KEYS * FRAME_KEY_ID_BYTES];
            size_t n;
            if (frame_keys_decode(body, h.length, ids, &n, &why) == FRAME_OK &&
                (frame_keys_encode((const char(*)[FRAME_KEY_ID_BYTES + 1]) ids, n, again, &why) != FRAME_OK ||
                 n * FRAME_KEY_ID_BYTES != h.length || memcmp(again, body, h.length) != 0))
                abort();
        }
        at += consumed;
    }
    return 0;
}
