/* Base64, hex and UUID encodings shared by the KME, its peers and the SAE clients. */
#include "api/encoding.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

char *base64_encode(const unsigned char *data, size_t len)
{
    size_t out_len = 4 * ((len + 2) / 3);
    char *out = malloc(out_len + 1);
    if (!out)
        return NULL;
    if (len > 0x7fffffff) {
        free(out);
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    out[out_len] = '\0';
    return out;
}

/* Value of each base64 character, -1 for anything else. */
static signed char b64_values[256];

static void b64_init(void)
{
    for (int c = 0; c < 256; c++)
        b64_values[c] = -1;
    for (int i = 0; i < 64; i++)
        b64_values[(unsigned char)"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i]] =
            (signed char)i;
}

static int b64_value(int c)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, b64_init);
    return b64_values[c];
}

unsigned char *base64_decode(const char *text, size_t *out_len)
{
    size_t len = strlen(text);
    if (len % 4 != 0)
        return NULL;
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=')
        pad++;
    if (len >= 2 && text[len - 2] == '=')
        pad++;
    size_t n = len / 4 * 3 - pad;
    unsigned char *out = malloc(n ? n : 1);
    if (!out)
        return NULL;
    size_t o = 0;
    b64_value('A'); /* the table is ready */
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int last_group = (i + 4 == len);
        for (int j = 0; j < 4; j++) {
            int c = t[i + j];
            if (c == '=' && last_group && (j == 3 || (j == 2 && pad == 2)))
                v[j] = 0;
            else if ((v[j] = b64_values[c]) < 0) {
                free(out);
                return NULL;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (!last_group) {
            out[o++] = (unsigned char)(w >> 16);
            out[o++] = (unsigned char)(w >> 8);
            out[o++] = (unsigned char)w;
            continue;
        }
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        for (int j = 0; j < 3 && o < n; j++)
            out[o++] = b[j];
    }
    *out_len = n;
    return out;
}

void hex_encode(const unsigned char *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *hex, unsigned char *out, size_t n)
{
    if (!hex || strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int uuid_generate(char out[UUID_STR_LEN + 1])
{
    /* Version 7 (RFC 9562): 48 bits of Unix time in ms, then 74 random
     * bits. IDs made close in time sort close together, so a batch of new
     * keys lands on few B-tree pages of the store. */
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x70);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, UUID_STR_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

int uuid_is_valid(const char *text)
{
    if (strlen(text) != UUID_STR_LEN)
        return 0;
    for (int i = 0; i < UUID_STR_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)text[i])) {
            return 0;
        }
    }
    return 1;
}

void uuid_normalise(const char *text, char out[UUID_STR_LEN + 1])
{
    for (int i = 0; i < UUID_STR_LEN; i++)
        out[i] = (char)tolower((unsigned char)text[i]);
    out[UUID_STR_LEN] = '\0';
}
