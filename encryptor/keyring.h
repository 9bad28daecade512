/* The keys of one connection direction, by announcement index: the sender's
 * keys taken from the pad pool and the receiver's keys fetched by key_ID.
 * Indexes are given in announcement order from 0; keys before the one in use
 * are dropped (cleansed). Not thread-safe: pad_in.c adds the locking. */
#ifndef ENCRYPTOR_KEYRING_H
#define ENCRYPTOR_KEYRING_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "api/encoding.h"

/* One QKD key: its key_ID and its bytes (cleansed by pad_key_clear). */
typedef struct {
    char id[UUID_STR_LEN + 1];
    unsigned char *bytes;
    size_t len;
    time_t fetched; /* when the KME handed it out (pool ageing) */
} pad_key;

void pad_key_clear(pad_key *k);

typedef struct {
    pad_key *slots; /* slots[i - first] holds index i; bytes NULL until filled */
    size_t cap;
    uint32_t first; /* lowest index still held */
    uint32_t next;  /* index the next announced key gets */
} keyring;

void keyring_init(keyring *r);
/* Cleanses and frees every key. */
void keyring_free(keyring *r);
/* Reserves the next index for key_ID id (bytes not known yet); the index, or
 * -1 when out of memory or past max_held keys held. */
int64_t keyring_announce(keyring *r, const char *id, size_t max_held);
/* Fills the key at index (taking ownership of k's bytes, k is emptied).
 * -1 when index is not announced, already filled or the key_ID differs. */
int keyring_fill(keyring *r, uint32_t index, pad_key *k);
/* The key at index, or NULL when it is not held or not filled yet. */
const pad_key *keyring_get(const keyring *r, uint32_t index);
/* 1 when index was announced (held or dropped). */
int keyring_announced(const keyring *r, uint32_t index);
/* Cleanses and drops every key below index. */
void keyring_drop_before(keyring *r, uint32_t index);

#endif
