/* The keys of one connection direction by announcement index (keyring.h). */
#include "encryptor/keyring.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

void pad_key_clear(pad_key *k)
{
    if (k->bytes) {
        OPENSSL_cleanse(k->bytes, k->len);
        free(k->bytes);
    }
    memset(k, 0, sizeof *k);
}

void keyring_init(keyring *r)
{
    memset(r, 0, sizeof *r);
}

void keyring_free(keyring *r)
{
    for (uint32_t i = r->first; i < r->next; i++)
        pad_key_clear(&r->slots[i - r->first]);
    free(r->slots);
    memset(r, 0, sizeof *r);
}

int64_t keyring_announce(keyring *r, const char *id, size_t max_held)
{
    size_t held = r->next - r->first;
    if (held >= max_held || r->next == UINT32_MAX)
        return -1;
    if (held == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        pad_key *s = calloc(cap, sizeof *s);
        if (!s)
            return -1;
        if (held)
            memcpy(s, r->slots, held * sizeof *s);
        free(r->slots); /* only pointers and key_IDs were there; the bytes moved */
        r->slots = s;
        r->cap = cap;
    }
    pad_key *k = &r->slots[held];
    memset(k, 0, sizeof *k);
    strncpy(k->id, id, UUID_STR_LEN);
    k->id[UUID_STR_LEN] = '\0';
    return r->next++;
}

int keyring_fill(keyring *r, uint32_t index, pad_key *k)
{
    if (index < r->first || index >= r->next)
        return -1;
    pad_key *s = &r->slots[index - r->first];
    if (s->bytes || !k->bytes || strcmp(s->id, k->id) != 0)
        return -1;
    s->bytes = k->bytes;
    s->len = k->len;
    s->fetched = k->fetched;
    memset(k, 0, sizeof *k);
    return 0;
}

const pad_key *keyring_get(const keyring *r, uint32_t index)
{
    if (index < r->first || index >= r->next)
        return NULL;
    const pad_key *k = &r->slots[index - r->first];
    return k->bytes ? k : NULL;
}

int keyring_announced(const keyring *r, uint32_t index)
{
    return index < r->next;
}

void keyring_drop_before(keyring *r, uint32_t index)
{
    if (index > r->next)
        index = r->next;
    if (index <= r->first)
        return;
    uint32_t n = index - r->first;
    for (uint32_t i = 0; i < n; i++)
        pad_key_clear(&r->slots[i]);
    memmove(r->slots, r->slots + n, (size_t)(r->next - index) * sizeof *r->slots);
    memset(r->slots + (r->next - index), 0, (size_t)n * sizeof *r->slots);
    r->first = index;
}
