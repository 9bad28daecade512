/* Opens and closes the LMDB environment and its named databases; checks the
 * store belongs to this KME; opens its keyring (made at the first open) and
 * seals and opens the values of key material. */
#include "store/store.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

/* The meta records of sealing: the format (absent in a store written before
 * records were sealed) and the store's ID, which its keyring (the file
 * "epochs", store/epoch_keys.h) must carry. */
#define META_SEAL_FORMAT "seal_format"
#define SEAL_FORMAT "aes-256-gcm/epochs-1"
#define META_STORE_ID "store_id"

void store_put_be64(unsigned char out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)v;
        v >>= 8;
    }
}

uint64_t store_get_be64(const unsigned char in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Records the owner KME ID on first open (*fresh set); refuses a store made by another KME. */
static int check_identity(kme_store *s, MDB_txn *txn, const char *kme_id, int *fresh, char *err, size_t errlen)
{
    MDB_val k = {8, "kme_id\0\0"}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    *fresh = rc == MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
        v.mv_size = strlen(kme_id);
        v.mv_data = (void *)kme_id;
        return mdb_put(txn, s->meta, &k, &v, 0);
    }
    if (rc)
        return rc;
    if (v.mv_size != strlen(kme_id) || memcmp(v.mv_data, kme_id, v.mv_size) != 0) {
        snprintf(err, errlen, "the store belongs to KME %.*s, not %s", (int)v.mv_size, (char *)v.mv_data, kme_id);
        return -1;
    }
    return 0;
}

static int put_meta(kme_store *s, MDB_txn *txn, const char *name, const void *data, size_t len)
{
    MDB_val k = {strlen(name), (void *)name}, v = {len, (void *)data};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* A new store: a fresh ID in the meta and a new keyring beside it. */
static int make_keyring(kme_store *s, MDB_txn *txn, const char *dir, const seal_wrapper *wrap, char *err, size_t errlen)
{
    unsigned char id[EPOCH_STORE_ID_BYTES];
    if (RAND_bytes(id, sizeof id) != 1) {
        snprintf(err, errlen, "cannot make the store's ID: no randomness");
        return -1;
    }
    if (put_meta(s, txn, META_STORE_ID, id, sizeof id) ||
        put_meta(s, txn, META_SEAL_FORMAT, SEAL_FORMAT, strlen(SEAL_FORMAT))) {
        snprintf(err, errlen, "cannot record the store's ID");
        return -1;
    }
    return epoch_keys_create(&s->epochs, dir, id, wrap, err, errlen);
}

/* An existing store: its format checked and its keyring opened. */
static int load_keyring(kme_store *s, MDB_txn *txn, const seal_wrapper *wrap, const char *dir, char *err, size_t errlen)
{
    MDB_val fk = {strlen(META_SEAL_FORMAT), META_SEAL_FORMAT}, ik = {strlen(META_STORE_ID), META_STORE_ID}, fv, iv;
    if (mdb_get(txn, s->meta, &fk, &fv) != 0) {
        snprintf(err, errlen,
                 "the store in %s was written before key material was sealed: its keys rest in clear. Refused: "
                 "drain it with the version that wrote it (let its keys be fetched or expire), then move it away "
                 "and start with an empty data_dir",
                 dir);
        return -1;
    }
    if (fv.mv_size != strlen(SEAL_FORMAT) || memcmp(fv.mv_data, SEAL_FORMAT, fv.mv_size) != 0) {
        snprintf(err, errlen, "the store in %s has an unknown seal format '%.*s'", dir, (int)fv.mv_size,
                 (char *)fv.mv_data);
        return -1;
    }
    if (mdb_get(txn, s->meta, &ik, &iv) != 0 || iv.mv_size != EPOCH_STORE_ID_BYTES) {
        snprintf(err, errlen, "the store in %s has no ID: it is damaged", dir);
        return -1;
    }
    return epoch_keys_open(&s->epochs, dir, iv.mv_data, wrap, err, errlen);
}

seal_epoch store_expiry_epoch(int64_t expires, int64_t now)
{
    int64_t left = expires > now ? expires - now : 0;
    uint64_t span = 16;
    while (span < (uint64_t)1 << 30 && span * 16 < (uint64_t)left)
        span <<= 1;
    uint64_t at = expires > 0 ? (uint64_t)expires : 0;
    seal_epoch ep = {'E', "", (at / span + 1) * span};
    return ep;
}

seal_epoch store_stock_epoch(const char *peer, int64_t created_ms)
{
    seal_epoch ep = {'S', peer, created_ms > 0 ? (uint64_t)created_ms / 1000 / STORE_STOCK_EPOCH_S : 0};
    return ep;
}

seal_epoch store_block_epoch(const char *peer, uint64_t seq)
{
    seal_epoch ep = {'B', peer, seq >> STORE_BLOCK_EPOCH_SHIFT};
    return ep;
}

int store_seal(kme_store *s, const seal_epoch *ep, const char *db_name, const void *id, size_t idlen,
               const unsigned char *plain, size_t len, unsigned char *out)
{
    return epoch_keys_seal(&s->epochs, ep, db_name, id, idlen, plain, len, out);
}

int store_put_sealed(kme_store *s, MDB_txn *txn, MDB_dbi dbi, const char *db_name, const MDB_val *key,
                     const unsigned char *plain, size_t len, unsigned int flags, const seal_epoch *ep)
{
    MDB_val k = *key, v = {len + SEAL_OVERHEAD, NULL};
    int rc = mdb_put(txn, dbi, &k, &v, flags | MDB_RESERVE);
    if (rc)
        return rc;
    return store_seal(s, ep, db_name, key->mv_data, key->mv_size, plain, len, v.mv_data);
}

int store_open_sealed(kme_store *s, const char *db_name, const void *key, size_t keylen, const unsigned char *sealed,
                      size_t sealed_len, unsigned char *out)
{
    int rc = epoch_keys_open_value(&s->epochs, db_name, key, keylen, sealed, sealed_len, out);
    if (rc == 0)
        return 0;
    /* The record named by its key between quotes: printable bytes as they
     * are (IDs), others as '.', and so are a quote and a backslash, which no
     * ID holds, lest a key's binary bytes end the name early. */
    char name[97];
    size_t n = keylen < sizeof name - 1 ? keylen : sizeof name - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = ((const unsigned char *)key)[i];
        name[i] = c >= 0x20 && c < 0x7f && c != '\'' && c != '\\' ? (char)c : '.';
    }
    name[n] = '\0';
    if (rc == -2)
        log_error("key store: the sealed %s record '%s' outlived its epoch, whose key is erased: refused, never served",
                  db_name, name);
    else
        log_error("key store: the sealed %s record '%s' does not authenticate (tampered, moved or damaged): refused, "
                  "never served",
                  db_name, name);
    return -1;
}

int store_open(kme_store *s, const char *dir, long map_mb, const char *kme_id, const seal_wrapper *wrap, char *err,
               size_t errlen)
{
    memset(s, 0, sizeof *s);
    int rc;
    MDB_txn *txn = NULL;
    if (mkdir_p(dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_maxdbs(s->env, 16)) ||
        (rc = mdb_env_set_mapsize(s->env, (size_t)map_mb * 1024 * 1024)) ||
        (rc = mdb_env_set_maxreaders(s->env, 1024)) || (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)))
        goto fail;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) || (rc = mdb_dbi_open(txn, "keys", MDB_CREATE, &s->keys)) ||
        (rc = mdb_dbi_open(txn, "key_expiry", MDB_CREATE, &s->key_expiry)) ||
        (rc = mdb_dbi_open(txn, "block_meta", MDB_CREATE, &s->block_meta)) ||
        (rc = mdb_dbi_open(txn, "block_data", MDB_CREATE, &s->block_data)) ||
        (rc = mdb_dbi_open(txn, "stock", MDB_CREATE, &s->stock)) ||
        (rc = mdb_dbi_open(txn, "in_doubt", MDB_CREATE, &s->in_doubt)) ||
        (rc = mdb_dbi_open(txn, "withdrawn", MDB_CREATE, &s->withdrawn)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) ||
        (rc = mdb_dbi_open(txn, "held", MDB_CREATE, &s->held)))
        goto fail;
    int fresh = 0;
    if ((rc = check_identity(s, txn, kme_id, &fresh, err, errlen)))
        goto fail_noerr;
    if ((rc = fresh ? make_keyring(s, txn, dir, wrap, err, errlen) : load_keyring(s, txn, wrap, dir, err, errlen)))
        goto fail_noerr;
    if ((rc = mdb_txn_commit(txn))) {
        txn = NULL;
        goto fail;
    }
    int stale = 0;
    mdb_reader_check(s->env, &stale);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    return 0;
fail:
    snprintf(err, errlen, "cannot open the key store in %s: %s", dir, mdb_strerror(rc));
fail_noerr:
    epoch_keys_close(&s->epochs);
    if (txn)
        mdb_txn_abort(txn);
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
    return -1;
}

int store_read_begin(kme_store *s, MDB_txn **txn)
{
    return mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
}
