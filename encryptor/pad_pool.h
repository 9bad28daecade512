/* The sender's pad pool, one per appliance (its outgoing direction): a
 * background fetcher asks the KME for keys with GET_KEY (master: this SAE,
 * slave: the peer encryptor) in batches, from when the pool falls below the
 * low watermark until it reaches the high one, and connections take whole
 * keys from it. A key leaves the pool for exactly one connection. A taker
 * that finds the pool empty waits (the stream stops reading its plaintext
 * socket): that is counted and logged, rate-limited. Keys that stay pooled
 * longer than pad_max_age_seconds are dropped before the peer's KME could
 * expire them. */
#ifndef ENCRYPTOR_PAD_POOL_H
#define ENCRYPTOR_PAD_POOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"
#include "encryptor/config.h"
#include "encryptor/keyring.h"

typedef struct pad_pool pad_pool;

typedef struct {
    uint64_t keys_fetched;
    uint64_t bytes_fetched;
    uint64_t fetch_failures;
    uint64_t waits;        /* takes that found the pool empty */
    double wait_seconds;   /* how long those takes waited, summed */
    uint64_t keys_dropped; /* aged out of the pool */
    size_t keys_pooled;
    size_t bytes_pooled;
    int kme_answered; /* the KME answered the last request (with keys or an error status) */
} pad_pool_stats;

/* Asks for number keys of bits bits; 0 with out filled, or -1 with err set. */
typedef int (*pad_fetch_fn)(void *arg, long number, long bits, etsi_key_container *out, char *err, size_t errlen);

/* Starts the fetcher with an SAE client of its own (cfg->kme_*). NULL with err set. */
pad_pool *pad_pool_start(const enc_config *cfg, char *err, size_t errlen);
/* The same with another source of keys (tests). */
pad_pool *pad_pool_start_with(const enc_config *cfg, pad_fetch_fn fetch, void *arg, char *err, size_t errlen);

/* Takes up to max keys into out (whole keys, oldest first). With wait, waits
 * until at least one is there, the pool stops or *cancel becomes non-zero
 * (then 0); *waited (may be NULL) tells whether it had to. Without wait
 * returns at once. */
size_t pad_pool_take(pad_pool *p, pad_key *out, size_t max, int wait, const atomic_int *cancel, int *waited);

void pad_pool_get_stats(pad_pool *p, pad_pool_stats *s);

/* Stops the fetcher, cleanses every pooled key and frees the pool. */
void pad_pool_stop(pad_pool *p);

#endif
