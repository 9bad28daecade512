/* Encoder and strict decoder of the encryptor wire format (frame.h). */
#include "encryptor/frame.h"

#include <string.h>
#include "api/encoding.h"

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int bad(const char **why, const char *text)
{
    if (why)
        *why = text;
    return FRAME_BAD;
}

size_t frame_tag_bytes(uint8_t type)
{
    return type == FRAME_KEYS ? 0 : FRAME_TAG_BYTES;
}

size_t frame_wire_bytes(const frame_header *h)
{
    return FRAME_HEADER_BYTES + (size_t)h->length + frame_tag_bytes(h->type);
}

int frame_header_check(const frame_header *h, const char **why)
{
    if (h->mode != FRAME_MODE_OTP && h->mode != FRAME_MODE_GCM)
        return bad(why, "unknown mode");
    if (h->length > FRAME_MAX_PAYLOAD)
        return bad(why, "body longer than the maximum");
    switch (h->type) {
    case FRAME_KEYS:
        if (h->length == 0 || h->length % FRAME_KEY_ID_BYTES || h->length / FRAME_KEY_ID_BYTES > FRAME_MAX_KEYS)
            return bad(why, "KEYS body is not 1 to 16 key_IDs");
        if (h->offset != 0)
            return bad(why, "KEYS frame with a non-zero offset");
        if (h->key_index > UINT32_MAX - FRAME_MAX_KEYS)
            return bad(why, "KEYS key index out of range");
        return FRAME_OK;
    case FRAME_OPEN:
        return h->length <= FRAME_MAX_DEST ? FRAME_OK : bad(why, "OPEN body longer than a destination");
    case FRAME_DATA:
        return h->length > 0 ? FRAME_OK : bad(why, "empty DATA frame");
    case FRAME_FIN:
        return h->length == 0 ? FRAME_OK : bad(why, "FIN frame with a body");
    default:
        return bad(why, "unknown frame type");
    }
}

int frame_header_encode(const frame_header *h, unsigned char out[FRAME_HEADER_BYTES], const char **why)
{
    if (frame_header_check(h, why) != FRAME_OK)
        return FRAME_BAD;
    memcpy(out, FRAME_MAGIC, 4);
    out[4] = h->type;
    out[5] = h->mode;
    out[6] = out[7] = 0;
    put32(out + 8, (uint32_t)(h->seq >> 32));
    put32(out + 12, (uint32_t)h->seq);
    put32(out + 16, h->key_index);
    put32(out + 20, h->offset);
    put32(out + 24, h->length);
    return FRAME_OK;
}

int frame_header_decode(const unsigned char in[FRAME_HEADER_BYTES], frame_header *h, const char **why)
{
    memset(h, 0, sizeof *h);
    if (memcmp(in, FRAME_MAGIC, 3) != 0)
        return bad(why, "bad magic");
    if (in[3] != (unsigned char)FRAME_MAGIC[3])
        return bad(why, "unsupported version");
    if (in[6] || in[7])
        return bad(why, "reserved bits set");
    frame_header d = {.type = in[4],
                      .mode = in[5],
                      .seq = (uint64_t)get32(in + 8) << 32 | get32(in + 12),
                      .key_index = get32(in + 16),
                      .offset = get32(in + 20),
                      .length = get32(in + 24)};
    if (frame_header_check(&d, why) != FRAME_OK)
        return FRAME_BAD;
    *h = d;
    return FRAME_OK;
}

int frame_decode(const unsigned char *buf, size_t len, frame_header *h, const unsigned char **body,
                 const unsigned char **tag, size_t *consumed, const char **why)
{
    if (len < FRAME_HEADER_BYTES)
        return FRAME_NEED_MORE;
    if (frame_header_decode(buf, h, why) != FRAME_OK)
        return FRAME_BAD;
    size_t total = frame_wire_bytes(h);
    if (len < total)
        return FRAME_NEED_MORE;
    *body = buf + FRAME_HEADER_BYTES;
    *tag = frame_tag_bytes(h->type) ? buf + FRAME_HEADER_BYTES + h->length : NULL;
    *consumed = total;
    return FRAME_OK;
}

/* A canonical key_ID: a UUID in lower case. */
static int canonical_id(const char *id)
{
    if (!uuid_is_valid(id))
        return 0;
    for (const char *p = id; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            return 0;
    return 1;
}

int frame_keys_encode(const char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t n, unsigned char *out, const char **why)
{
    if (n == 0 || n > FRAME_MAX_KEYS)
        return bad(why, "a KEYS frame holds 1 to 16 key_IDs");
    for (size_t i = 0; i < n; i++) {
        if (strlen(ids[i]) != FRAME_KEY_ID_BYTES || !canonical_id(ids[i]))
            return bad(why, "key_ID is not a canonical UUID");
        memcpy(out + i * FRAME_KEY_ID_BYTES, ids[i], FRAME_KEY_ID_BYTES);
    }
    return FRAME_OK;
}

int frame_keys_decode(const unsigned char *body, size_t len, char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t *n,
                      const char **why)
{
    *n = 0;
    if (len == 0 || len % FRAME_KEY_ID_BYTES || len / FRAME_KEY_ID_BYTES > FRAME_MAX_KEYS)
        return bad(why, "KEYS body is not 1 to 16 key_IDs");
    size_t count = len / FRAME_KEY_ID_BYTES;
    for (size_t i = 0; i < count; i++) {
        memcpy(ids[i], body + i * FRAME_KEY_ID_BYTES, FRAME_KEY_ID_BYTES);
        ids[i][FRAME_KEY_ID_BYTES] = '\0';
        if (memchr(ids[i], '\0', FRAME_KEY_ID_BYTES) || !canonical_id(ids[i]))
            return bad(why, "key_ID is not a canonical UUID");
        for (size_t j = 0; j < i; j++)
            if (memcmp(ids[j], ids[i], FRAME_KEY_ID_BYTES) == 0)
                return bad(why, "key_ID announced twice");
    }
    *n = count;
    return FRAME_OK;
}
