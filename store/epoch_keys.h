/* The store's keyring: the data key (wrapped by the site's store_key) and
 * the epoch keys that every value of key material is sealed under, kept in
 * the file "epochs" beside the LMDB files, never inside them. LMDB keeps
 * the old bytes of a deleted or changed value in its free pages; this file
 * is written only in place, a fixed-size slot per key, so erasing an epoch
 * key overwrites its one copy on the disk (then fdatasync). Once the
 * records of an epoch are gone (keys past their expiry, stock dropped, link
 * blocks used up), its key is erased, and whatever of them LMDB's free
 * pages or a later copy of data.mdb still hold can no longer be opened,
 * with the wrapping key or without it.
 *
 * An epoch is named by its class and bucket (and, for link blocks and
 * stock, the peer KME):
 *   'E'  key records, by the end of their expiry's bucket (seconds);
 *   'S'  stock keys, by the 64 s bucket of their creation;
 *   'B'  link blocks, by their sequence number / 64.
 * Each epoch key is 32 bytes from RAND_priv_bytes, recorded (and synced)
 * before any value sealed under it is committed. */
#ifndef STORE_EPOCH_KEYS_H
#define STORE_EPOCH_KEYS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "store/seal.h"

#define EPOCH_STORE_ID_BYTES 16
#define EPOCH_PEER_MAX 64

typedef struct {
    char cls;         /* 'E', 'S' or 'B' */
    const char *peer; /* the peer KME for 'S' and 'B'; "" for 'E' */
    uint64_t bucket;
} seal_epoch;

typedef struct {
    uint64_t id;
    char cls;
    uint64_t bucket;
    char peer[EPOCH_PEER_MAX + 1];
    uint32_t slot;
    seal_key key;
} epoch_entry;

typedef struct {
    int fd;
    char path[1100];
    unsigned char store_id[EPOCH_STORE_ID_BYTES];
    seal_key data_key; /* seals the epoch keys in their slots */
    char wrap_kind;    /* 'N' in clear, else the seal_wrapper kind */
    pthread_rwlock_t lock;
    epoch_entry *entries; /* by id, ascending */
    size_t n, cap;
    uint64_t next_id;
    unsigned char *slot_used; /* one byte per slot */
    uint32_t nslots;
    uint64_t erased; /* epoch keys erased since open */
} epoch_keys;

/* Makes the keyring of a new store in dir (replacing any file left there):
 * a fresh data key, wrapped by wrap (kept in clear when wrap is NULL), and
 * no epoch yet. 0, or -1 with err. */
int epoch_keys_create(epoch_keys *r, const char *dir, const unsigned char store_id[EPOCH_STORE_ID_BYTES],
                      const seal_wrapper *wrap, char *err, size_t errlen);
/* Opens the keyring of the store store_id in dir: the data key unwrapped by
 * wrap, every epoch key loaded. 0, or -1 with err saying what is wrong. */
int epoch_keys_open(epoch_keys *r, const char *dir, const unsigned char store_id[EPOCH_STORE_ID_BYTES],
                    const seal_wrapper *wrap, char *err, size_t errlen);
/* Closes the keyring, its keys cleansed; a second call does nothing. */
void epoch_keys_close(epoch_keys *r);

/* Wraps the data key anew with wrap (NULL: in clear) and overwrites the
 * one wrapped copy in place: the wrapping key before is no longer needed,
 * and opens nothing of this store's file once it is overwritten. 0, or -1
 * with err (nothing changed). */
int epoch_keys_rewrap(epoch_keys *r, const seal_wrapper *wrap, char *err, size_t errlen);

/* Seals len bytes of plain into out (len + SEAL_OVERHEAD bytes) under the
 * key of epoch ep (made and recorded first if new), for record id of db.
 * 0, or -1. */
int epoch_keys_seal(epoch_keys *r, const seal_epoch *ep, const char *db, const void *id, size_t idlen,
                    const unsigned char *plain, size_t len, unsigned char *out);
/* Opens a value sealed by epoch_keys_seal into out (sealed_len -
 * SEAL_OVERHEAD bytes). 0; -1 when it does not authenticate (out cleansed);
 * -2 when its epoch key was erased. */
int epoch_keys_open_value(epoch_keys *r, const char *db, const void *id, size_t idlen, const unsigned char *sealed,
                          size_t sealed_len, unsigned char *out);

/* For a backup: a keyring file made of two reads of one (earlier, then
 * later, around the copy of data.mdb): the later header (the data key as
 * wrapped now) and every slot of class cls found in either, so that each
 * epoch the copy may name is there, and no epoch of another class. *out is
 * malloc'd (the caller cleanses and frees it). 0, or -1. */
int epoch_keys_merge_for_backup(const unsigned char *earlier, size_t elen, const unsigned char *later, size_t llen,
                                char cls, unsigned char **out, size_t *outlen);

/* The live epochs, without their keys (key left zero), in *out (malloc'd,
 * the caller frees). 0, or -1. */
int epoch_keys_list(epoch_keys *r, epoch_entry **out, size_t *n);
/* Erases the epoch keys of these IDs: each slot overwritten with zeros in
 * place, then one fdatasync, then the keys cleansed. Returns how many, or
 * -1 when the file cannot be written (none is then forgotten in memory). */
int epoch_keys_erase(epoch_keys *r, const uint64_t *ids, size_t n);

/* How many epoch keys are live, and how many were erased since the open. */
void epoch_keys_counts(epoch_keys *r, size_t *live, uint64_t *erased);

#endif
