/* The cleansing growable buffer behind response bodies (see wipe_buf.h). */
#include "runtime/wipe_buf.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

int wipe_buf_append(wipe_buf *b, const void *bytes, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return -1;
    if (b->len + n + 1 > b->cap) {
        /* Grow by copy, never realloc: the old block is cleansed first. */
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *data = malloc(cap);
        if (!data)
            return -1;
        if (b->data) {
            memcpy(data, b->data, b->len);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void wipe_buf_reset(wipe_buf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->len + 1);
        b->data[0] = '\0';
    }
    b->len = 0;
}

void wipe_buf_free(wipe_buf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}
