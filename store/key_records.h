/* Delivered keys held for their slave SAEs: one record per key_ID with its
 * master, designated slaves (and which have fetched it), expiry and bytes.
 * A record is erased on expiry, or once every slave here has fetched it and
 * the fetch retry window has passed (at once when the window is 0). */
#ifndef STORE_KEY_RECORDS_H
#define STORE_KEY_RECORDS_H

#include <stdint.h>
#include "api/etsi014.h"
#include "store/store.h"

#define KR_MAX_SLAVES 65

typedef struct {
    char key_id[UUID_STR_LEN + 1];
    char master[ETSI_ID_MAX + 1];
    size_t slave_count;
    char slaves[KR_MAX_SLAVES][ETSI_ID_MAX + 1];
    int64_t expires; /* unix seconds */
    const unsigned char *key;
    size_t key_len;
} key_record;

enum {
    KR_OK = 0,
    KR_UNKNOWN = 1,   /* no such key_ID here (never issued, expired or fetched) */
    KR_FOREIGN = 2,   /* the key was not issued by that master */
    KR_NOT_SLAVE = 3, /* the caller is not a designated slave of the key */
    KR_DB = 4,
    KR_EXISTS = 5,
    KR_FULL = 6, /* a slave holds its max_key_count of waiting keys already */
};

/* Stores a record (with an expiry index entry). KR_EXISTS if the ID is
 * taken; KR_FULL if a slave already has s->held_limit keys waiting. */
int kr_put(kme_store *s, MDB_txn *txn, const key_record *r);
/* Fills a record for kr_put (the key bytes are referenced, not copied). */
void kr_fill(key_record *rec, const char *key_id, const char *master, const char *const *slaves, size_t nslaves,
             int64_t expires, const unsigned char *key, size_t len);

/* dec_keys: checks every ID (all must be known, from master, for slave),
 * then copies the keys into out (allocated, caller clears) and marks them
 * fetched by slave. A slave may fetch a key it fetched already, and gets
 * the same bytes, while the record is held: a record no slave still needs
 * is kept retry_seconds more (for a slave whose answer was lost), or erased
 * at once when retry_seconds is 0, which makes every fetch a first one.
 * *retried counts the keys of out that slave had fetched before. On any
 * failure nothing changes and *bad_index names the offending ID. */
int kr_fetch(kme_store *s, MDB_txn *txn, const char *master, const char *slave, const etsi_key_ids *ids,
             int64_t retry_seconds, etsi_key_container *out, size_t *bad_index, size_t *retried);

/* kr_fetch's checks alone, in any transaction (a read transaction refuses
 * a fetch without queueing it for the writer): KR_OK when kr_fetch would
 * deliver, else its refusal with *bad_index. */
int kr_check_fetch(kme_store *s, MDB_txn *txn, const char *master, const char *slave, const etsi_key_ids *ids,
                   int64_t retry_seconds, size_t *bad_index);

/* At start: every record that all its slaves fetched gets retry_seconds
 * from now before it is erased, so a slave whose answer was lost when the
 * KME stopped can still ask again. Returns how many, or -1. */
long kr_restart_retry_window(kme_store *s, MDB_txn *txn, int64_t now, int64_t retry_seconds);

/* The designated slaves of key_id, separated by spaces, malloc'd into *out
 * (for the audit log). KR_OK, KR_UNKNOWN or KR_DB. */
int kr_slaves(kme_store *s, MDB_txn *txn, const char *key_id, char **out);

/* Erases records (and parts of records) released earlier than now; returns how many. */
int kr_expire(kme_store *s, MDB_txn *txn, int64_t now, size_t max);

/* Moves a record's expiry earlier to `expires` (never later). KR_UNKNOWN if gone. */
int kr_shorten_expiry(kme_store *s, MDB_txn *txn, const char *key_id, int64_t expires);

/* Erases one record (rollback of a reservation that did not complete). */
int kr_delete(kme_store *s, MDB_txn *txn, const char *key_id);

/* 1 when a record for key_id is held, 0 when not. */
int kr_exists(kme_store *s, MDB_txn *txn, const char *key_id);

/* How many records are held here (for operators and tests). */
long kr_count(kme_store *s, MDB_txn *txn);

/* How many keys wait here for sae as a slave (not yet fetched by it). */
long kr_held(kme_store *s, MDB_txn *txn, const char *sae);

/* At start: counts the waiting keys of every slave afresh when the store
 * has no counts yet (a store from before they were kept). 0, or -1. */
int kr_count_held_once(kme_store *s, MDB_txn *txn);

/* number fresh keys of size_bits from the DRBG (RAND_priv_bytes) with new
 * key_IDs into out. 0, or -1 with out cleared. */
int kr_fill_random(etsi_key_container *out, long number, long size_bits);

#endif
