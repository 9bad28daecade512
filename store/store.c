/* Opens and closes the LMDB environment and its named databases; checks the store belongs to this KME. */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

/* Records the owner KME ID on first open; refuses a store made by another KME. */
static int check_identity(kme_store *s, MDB_txn *txn, const char *kme_id, char *err, size_t errlen)
{
    MDB_val k = {8, "kme_id\0\0"}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
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

int store_open(kme_store *s, const char *dir, long map_mb, const char *kme_id, char *err, size_t errlen)
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
    if ((rc = check_identity(s, txn, kme_id, err, errlen)))
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
