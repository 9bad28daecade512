/* The KME's LMDB environment: its databases and the one write path (group commit).
 *
 * Every change goes through store_commit(): the operation runs in the write
 * transaction of a batch; the batch commits with a full sync before any caller
 * in it returns. Concurrent callers share one sync (group commit). */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <lmdb.h>
#include "store/epoch_keys.h"
#include "store/seal.h"

typedef struct store_op_item store_op_item;

typedef struct kme_store {
    MDB_env *env;
    MDB_dbi keys;       /* key_ID (36 chars) -> key record (store/key_records.h) */
    MDB_dbi key_expiry; /* be64 expiry time | key_ID -> nothing */
    MDB_dbi block_meta; /* peer KME ID | 0 | be64 seq -> block state (store/link_blocks.h) */
    MDB_dbi block_data; /* same key -> the block's key bytes */
    MDB_dbi stock;      /* peer | master | slave | be32 size | be64 created_ms | key_ID -> key bytes */
    MDB_dbi in_doubt;   /* peer | 0 | key_ID of a reservation whose answer was lost -> be64 expires | its ranges */
    MDB_dbi withdrawn;  /* peer | 0 | key_ID of the peer's reservation it asked about before it arrived
                            (relay/reserve.h) -> be64 expires; refused should it arrive */
    MDB_dbi meta;       /* name -> value: identity and counters */
    MDB_dbi held;       /* SAE ID -> u64: key records waiting for it as a slave (store/key_records.h) */
    epoch_keys epochs;  /* the keys every value of key material is sealed under (store/epoch_keys.h) */
    /* The most keys that may wait for an SAE as a slave (its max_key_count);
     * NULL or <= 0: no ceiling. Set once before the store is used. */
    long (*held_limit)(void *ctx, const char *sae);
    void *held_limit_ctx;
    /* group commit */
    pthread_t writer;
    pthread_mutex_t lock;
    pthread_cond_t work;
    store_op_item *queue_head, *queue_tail;
    int stopping, writer_started;
    uint64_t batches, ops; /* statistics */
    /* the high-water mark (store/store_usage.h) */
    atomic_uint high_water_percent;
    atomic_int above_high_water;
    _Atomic int64_t full_ms; /* when a write last failed for want of room */
} kme_store;

/* An operation on the store. Return 0 to keep its changes, anything else to
 * discard them (and only them: each operation of a batch runs once, in a
 * nested transaction of its own); that value is what store_commit returns.
 * Its changes are durable when store_commit returns 0. */
typedef int (*store_op)(kme_store *s, MDB_txn *txn, void *arg);

#define STORE_ECOMMIT (-1000) /* the batch could not be committed: nothing changed */

/* Opens (or makes) the store of kme_id in dir and its data key: unwrapped
 * with wrap, or kept in clear in the store when wrap is NULL ("store_key":
 * "none-insecure"). Refuses, with a message in err, a store of another KME,
 * one written before records were sealed, one whose data key wrap cannot
 * unwrap, and one whose data key is kept otherwise than wrap says. */
int store_open(kme_store *s, const char *dir, long map_mb, const char *kme_id, const seal_wrapper *wrap, char *err,
               size_t errlen);
void store_close(kme_store *s);

/* Runs op in the next batch and returns once that batch is durably committed. */
int store_commit(kme_store *s, store_op op, void *arg);

/* The same without waiting: done(done_arg, result) is called on the writer
 * thread once the batch is durably committed (or at once if the store is
 * stopping). done must be quick and must not commit. */
typedef void (*store_done)(void *done_arg, int result);
void store_commit_async(kme_store *s, store_op op, void *arg, store_done done, void *done_arg);

/* Seals len bytes of key material into out (len + SEAL_OVERHEAD bytes)
 * under the key of epoch ep, for record id (idlen bytes) of db_name. 0, or -1. */
int store_seal(kme_store *s, const seal_epoch *ep, const char *db_name, const void *id, size_t idlen,
               const unsigned char *plain, size_t len, unsigned char *out);
/* Stores len bytes of key material sealed under epoch ep as the value of
 * key in dbi (db_name: its name, bound into the seal). 0, or non-zero. */
int store_put_sealed(kme_store *s, MDB_txn *txn, MDB_dbi dbi, const char *db_name, const MDB_val *key,
                     const unsigned char *plain, size_t len, unsigned int flags, const seal_epoch *ep);

/* The epoch of a key record that expires at `expires` (seconds), sealed at
 * now: its bucket is the end of a span of 2^k s (at least 16 s, and at
 * least a sixteenth of the time left) that holds the expiry, so a few dozen
 * epochs cover any key_ttl_seconds and a key's epoch ends soon after it. */
seal_epoch store_expiry_epoch(int64_t expires, int64_t now);
/* The epoch of a stock key for dest peer made at created_ms: 64 s of creation. */
#define STORE_STOCK_EPOCH_S 64
seal_epoch store_stock_epoch(const char *peer, int64_t created_ms);
/* The epoch of link block seq with peer: 64 consecutive blocks. */
#define STORE_BLOCK_EPOCH_SHIFT 6
seal_epoch store_block_epoch(const char *peer, uint64_t seq);
/* Opens a sealed value read from key of db_name into out (sealed_len -
 * SEAL_OVERHEAD bytes). A value that does not open (tampered, moved, or
 * sealed under another key) is logged, naming the record and never its
 * bytes, and -1 returned: the caller treats it like a corrupt store. A
 * value whose epoch key was erased (it outlived its epoch) is refused alike. */
int store_open_sealed(kme_store *s, const char *db_name, const void *key, size_t keylen, const unsigned char *sealed,
                      size_t sealed_len, unsigned char *out);

/* Read-only transaction helpers. */
int store_read_begin(kme_store *s, MDB_txn **txn);

/* Big-endian u64 for ordered keys. */
void store_put_be64(unsigned char out[8], uint64_t v);
uint64_t store_get_be64(const unsigned char in[8]);

#endif
