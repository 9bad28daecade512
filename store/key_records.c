/* Key records in LMDB: store, fetch by designated slaves (with a retry window), expiry (see key_records.h). */
#include "store/key_records.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

/* Record layout: u32 key_len | i64 expires | u8 master_len | master |
 * u8 slave_count | (u8 fetched | u8 len | id)* | key bytes sealed (key_len +
 * SEAL_OVERHEAD bytes, bound to "keys" and the key_ID: store/seal.h) */

static size_t encoded_size(const key_record *r)
{
    size_t n = 4 + 8 + 1 + strlen(r->master) + 1;
    for (size_t i = 0; i < r->slave_count; i++)
        n += 2 + strlen(r->slaves[i]);
    return n + r->key_len + SEAL_OVERHEAD;
}

typedef struct {
    uint32_t key_len;
    int64_t expires;
    const char *master;
    uint8_t master_len;
    uint8_t slave_count;
    size_t slave_off[KR_MAX_SLAVES]; /* offset of each slave's fetched byte */
    size_t key_off;
} record_view;

static int view_record(const unsigned char *p, size_t len, record_view *v)
{
    size_t o = 0;
    if (len < 14)
        return -1;
    memcpy(&v->key_len, p, 4), o += 4;
    memcpy(&v->expires, p + o, 8), o += 8;
    v->master_len = p[o++];
    v->master = (const char *)p + o;
    o += v->master_len;
    if (o >= len)
        return -1;
    v->slave_count = p[o++];
    if (v->slave_count > KR_MAX_SLAVES)
        return -1;
    for (uint8_t i = 0; i < v->slave_count; i++) {
        if (o + 2 > len)
            return -1;
        v->slave_off[i] = o;
        o += 2 + p[o + 1];
    }
    v->key_off = o;
    return o + v->key_len + SEAL_OVERHEAD == len ? 0 : -1;
}

/* Reads and parses the record of key_id: KR_OK, KR_UNKNOWN or KR_DB. */
static int get_record(kme_store *s, MDB_txn *txn, const char *key_id, MDB_val *v, record_view *rv)
{
    MDB_val k = {UUID_STR_LEN, (void *)key_id};
    int rc = mdb_get(txn, s->keys, &k, v);
    if (rc == MDB_NOTFOUND)
        return KR_UNKNOWN;
    return rc || view_record(v->mv_data, v->mv_size, rv) ? KR_DB : KR_OK;
}

/* ---- keys waiting per slave ---------------------------------------------------- */

static long held_get(kme_store *s, MDB_txn *txn, const char *sae, size_t len)
{
    MDB_val k = {len, (void *)sae}, v;
    uint64_t n = 0;
    if (mdb_get(txn, s->held, &k, &v) == 0 && v.mv_size == sizeof n)
        memcpy(&n, v.mv_data, sizeof n);
    return (long)n;
}

/* Adds delta to the waiting count of one slave (never below 0). */
static int held_add(kme_store *s, MDB_txn *txn, const char *sae, size_t len, long delta)
{
    long n = held_get(s, txn, sae, len) + delta;
    MDB_val k = {len, (void *)sae};
    if (n <= 0) {
        int rc = mdb_del(txn, s->held, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    uint64_t u = (uint64_t)n;
    MDB_val v = {sizeof u, &u};
    return mdb_put(txn, s->held, &k, &v, 0);
}

/* Adds delta for every slave of a parsed record that has not fetched it.
 * The IDs are copied first: an update ends the record's bytes' validity. */
static int held_add_waiting(kme_store *s, MDB_txn *txn, const unsigned char *p, const record_view *rv, long delta)
{
    char ids[KR_MAX_SLAVES][ETSI_ID_MAX + 1];
    size_t lens[KR_MAX_SLAVES], n = 0;
    for (int i = 0; i < rv->slave_count; i++) {
        const unsigned char *e = p + rv->slave_off[i];
        if (e[0] || e[1] > ETSI_ID_MAX)
            continue;
        memcpy(ids[n], e + 2, e[1]);
        lens[n++] = e[1];
    }
    for (size_t i = 0; i < n; i++)
        if (held_add(s, txn, ids[i], lens[i], delta))
            return -1;
    return 0;
}

long kr_held(kme_store *s, MDB_txn *txn, const char *sae)
{
    return held_get(s, txn, sae, strlen(sae));
}

static void expiry_key(unsigned char out[8 + UUID_STR_LEN], int64_t expires, const char *key_id)
{
    store_put_be64(out, (uint64_t)expires);
    memcpy(out + 8, key_id, UUID_STR_LEN);
}

int kr_put(kme_store *s, MDB_txn *txn, const key_record *r)
{
    for (size_t i = 0; i < r->slave_count && s->held_limit; i++) {
        long limit = s->held_limit(s->held_limit_ctx, r->slaves[i]);
        if (limit > 0 && kr_held(s, txn, r->slaves[i]) >= limit)
            return KR_FULL;
    }
    MDB_val k = {UUID_STR_LEN, (void *)r->key_id}, v = {encoded_size(r), NULL};
    int rc = mdb_put(txn, s->keys, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    if (rc == MDB_KEYEXIST)
        return KR_EXISTS;
    if (rc)
        return KR_DB;
    unsigned char *p = v.mv_data;
    uint32_t klen = (uint32_t)r->key_len;
    memcpy(p, &klen, 4), p += 4;
    memcpy(p, &r->expires, 8), p += 8;
    *p++ = (unsigned char)strlen(r->master);
    memcpy(p, r->master, strlen(r->master)), p += strlen(r->master);
    *p++ = (unsigned char)r->slave_count;
    for (size_t i = 0; i < r->slave_count; i++) {
        size_t n = strlen(r->slaves[i]);
        *p++ = 0;
        *p++ = (unsigned char)n;
        memcpy(p, r->slaves[i], n), p += n;
    }
    seal_epoch ep = store_expiry_epoch(r->expires, (int64_t)time(NULL));
    if (store_seal(s, &ep, SEAL_DB_KEYS, r->key_id, UUID_STR_LEN, r->key, r->key_len, p))
        return KR_DB;
    for (size_t i = 0; i < r->slave_count; i++)
        if (held_add(s, txn, r->slaves[i], strlen(r->slaves[i]), 1))
            return KR_DB;
    unsigned char ek[8 + UUID_STR_LEN];
    expiry_key(ek, r->expires, r->key_id);
    MDB_val ekv = {sizeof ek, ek}, empty = {0, NULL};
    return mdb_put(txn, s->key_expiry, &ekv, &empty, 0) ? KR_DB : KR_OK;
}

static int slave_index(const unsigned char *p, const record_view *v, const char *slave)
{
    size_t n = strlen(slave);
    for (int i = 0; i < v->slave_count; i++) {
        const unsigned char *e = p + v->slave_off[i];
        if (e[1] == n && memcmp(e + 2, slave, n) == 0)
            return i;
    }
    return -1;
}

static int erase(kme_store *s, MDB_txn *txn, const char *key_id, int64_t expires)
{
    unsigned char ek[8 + UUID_STR_LEN];
    expiry_key(ek, expires, key_id);
    MDB_val k = {UUID_STR_LEN, (void *)key_id}, ekv = {sizeof ek, ek}, v;
    record_view rv;
    int rc = get_record(s, txn, key_id, &v, &rv);
    if (rc == KR_OK && held_add_waiting(s, txn, v.mv_data, &rv, -1))
        return -1;
    rc = mdb_del(txn, s->keys, &k, NULL);
    if (rc == 0) {
        rc = mdb_del(txn, s->key_expiry, &ekv, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    return rc;
}

/* A record whose expiry moves later is sealed anew under the epoch of its
 * new expiry (its old one may end, and be erased, before it). */
static int reseal_for(kme_store *s, const char *key_id, unsigned char *sealed, uint32_t key_len, int64_t expires)
{
    unsigned char *plain = malloc(key_len ? key_len : 1);
    int rc =
        plain ? store_open_sealed(s, SEAL_DB_KEYS, key_id, UUID_STR_LEN, sealed, key_len + SEAL_OVERHEAD, plain) : -1;
    if (rc == 0) {
        seal_epoch ep = store_expiry_epoch(expires, (int64_t)time(NULL));
        rc = store_seal(s, &ep, SEAL_DB_KEYS, key_id, UUID_STR_LEN, plain, key_len, sealed);
        OPENSSL_cleanse(plain, key_len);
    }
    free(plain);
    return rc;
}

/* The record's expiry moved to `expires` (earlier or later), with its index entry. */
static int move_expiry(kme_store *s, MDB_txn *txn, const char *key_id, const MDB_val *v, const record_view *rv,
                       int64_t expires, int set_fetched)
{
    MDB_val k = {UUID_STR_LEN, (void *)key_id};
    unsigned char old_ek[8 + UUID_STR_LEN], new_ek[8 + UUID_STR_LEN];
    expiry_key(old_ek, rv->expires, key_id);
    expiry_key(new_ek, expires, key_id);
    MDB_val ok = {sizeof old_ek, old_ek}, nk = {sizeof new_ek, new_ek}, empty = {0, NULL};
    /* Rewrite in place: the record's expiry field follows its key length. */
    unsigned char *copy = malloc(v->mv_size);
    if (!copy)
        return KR_DB;
    memcpy(copy, v->mv_data, v->mv_size);
    memcpy(copy + 4, &expires, 8);
    if (set_fetched >= 0)
        copy[rv->slave_off[set_fetched]] = 1;
    MDB_val nv = {v->mv_size, copy};
    int rc = expires > rv->expires ? reseal_for(s, key_id, copy + rv->key_off, rv->key_len, expires) : 0;
    if (rc == 0)
        rc = mdb_put(txn, s->keys, &k, &nv, 0);
    OPENSSL_cleanse(copy, nv.mv_size);
    free(copy);
    if (rc)
        return KR_DB;
    if (expires == rv->expires)
        return KR_OK;
    rc = mdb_del(txn, s->key_expiry, &ok, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return KR_DB;
    return mdb_put(txn, s->key_expiry, &nk, &empty, 0) ? KR_DB : KR_OK;
}

static int fetched_by(const MDB_val *v, const record_view *rv, int slave)
{
    return ((const unsigned char *)v->mv_data)[rv->slave_off[slave]] != 0;
}

/* How many slaves other than `except` have not fetched the record yet. */
static int waiting_slaves(const MDB_val *v, const record_view *rv, int except)
{
    int n = 0;
    for (int j = 0; j < rv->slave_count; j++)
        if (j != except && !fetched_by(v, rv, j))
            n++;
    return n;
}

int kr_check_fetch(kme_store *s, MDB_txn *txn, const char *master, const char *slave, const etsi_key_ids *ids,
                   int64_t retry_seconds, size_t *bad_index)
{
    int64_t now = (int64_t)time(NULL);
    /* Every ID must be deliverable to this slave, and unexpired (the expiry
     * worker erases it later: until then it is refused here). */
    for (size_t i = 0; i < ids->count; i++) {
        MDB_val v;
        record_view rv;
        *bad_index = i;
        int rc = get_record(s, txn, ids->ids[i], &v, &rv);
        if (rc != KR_OK)
            return rc;
        if (rv.expires <= now)
            return KR_UNKNOWN;
        if (rv.master_len != strlen(master) || memcmp(rv.master, master, rv.master_len) != 0)
            return KR_FOREIGN;
        int si = slave_index(v.mv_data, &rv, slave);
        if (si < 0)
            return KR_NOT_SLAVE;
        if (fetched_by(&v, &rv, si) && retry_seconds <= 0)
            return KR_UNKNOWN; /* this slave fetched it already */
    }
    return KR_OK;
}

int kr_fetch(kme_store *s, MDB_txn *txn, const char *master, const char *slave, const etsi_key_ids *ids,
             int64_t retry_seconds, etsi_key_container *out, size_t *bad_index, size_t *retried)
{
    memset(out, 0, sizeof *out);
    *retried = 0;
    int64_t now = (int64_t)time(NULL);
    int rc = kr_check_fetch(s, txn, master, slave, ids, retry_seconds, bad_index);
    if (rc != KR_OK)
        return rc;
    out->keys = calloc(ids->count, sizeof *out->keys);
    if (!out->keys)
        return KR_DB;
    /* Pass 2: copy, mark fetched; a record no slave still needs is erased,
     * or held for the retry window. */
    for (size_t i = 0; i < ids->count; i++) {
        MDB_val v;
        record_view rv;
        if (get_record(s, txn, ids->ids[i], &v, &rv) != KR_OK)
            goto db_fail;
        etsi_key *key = &out->keys[out->count];
        memcpy(key->key_id, ids->ids[i], sizeof key->key_id);
        key->key = malloc(rv.key_len ? rv.key_len : 1);
        if (!key->key)
            goto db_fail;
        key->key_len = rv.key_len;
        out->count++;
        if (store_open_sealed(s, SEAL_DB_KEYS, ids->ids[i], UUID_STR_LEN, (unsigned char *)v.mv_data + rv.key_off,
                              rv.key_len + SEAL_OVERHEAD, key->key))
            goto db_fail;
        int si = slave_index(v.mv_data, &rv, slave);
        if (fetched_by(&v, &rv, si)) {
            (*retried)++;
            continue;
        }
        /* The slave no longer waits for it: counted here unless the erase
         * below counts it (it reads the record as not fetched by the slave). */
        int counted_here = waiting_slaves(&v, &rv, si) > 0 || retry_seconds > 0;
        if (waiting_slaves(&v, &rv, si) > 0)
            rc = move_expiry(s, txn, ids->ids[i], &v, &rv, rv.expires, si);
        else if (retry_seconds <= 0)
            rc = erase(s, txn, ids->ids[i], rv.expires);
        else
            rc = move_expiry(s, txn, ids->ids[i], &v, &rv,
                             now + retry_seconds < rv.expires ? now + retry_seconds : rv.expires, si);
        if (rc || (counted_here && held_add(s, txn, slave, strlen(slave), -1)))
            goto db_fail;
    }
    return KR_OK;
db_fail:
    etsi_key_container_clear(out);
    return KR_DB;
}

long kr_restart_retry_window(kme_store *s, MDB_txn *txn, int64_t now, int64_t retry_seconds)
{
    if (retry_seconds <= 0)
        return 0;
    /* Every record due before now + retry_seconds, collected first: the
     * moves below rewrite the index the cursor walks. */
    MDB_cursor *c;
    MDB_val k, v;
    size_t n = 0, cap = 0;
    char(*due)[UUID_STR_LEN + 1] = NULL;
    if (mdb_cursor_open(txn, s->key_expiry, &c))
        return -1;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0 && (int64_t)store_get_be64(k.mv_data) < now + retry_seconds) {
        if (n == cap) {
            void *grown = realloc(due, (cap = cap ? cap * 2 : 64) * sizeof *due);
            if (!grown) {
                rc = -1;
                break;
            }
            due = grown;
        }
        memcpy(due[n], (char *)k.mv_data + 8, UUID_STR_LEN);
        due[n++][UUID_STR_LEN] = '\0';
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    long moved = rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
    for (size_t i = 0; i < n && moved >= 0; i++) {
        record_view rv;
        if (get_record(s, txn, due[i], &v, &rv) != KR_OK || rv.slave_count == 0 || waiting_slaves(&v, &rv, -1) > 0)
            continue;
        if (move_expiry(s, txn, due[i], &v, &rv, now + retry_seconds, -1) != KR_OK)
            moved = -1;
        else
            moved++;
    }
    free(due);
    return moved;
}

int kr_slaves(kme_store *s, MDB_txn *txn, const char *key_id, char **out)
{
    MDB_val v;
    record_view rv;
    *out = NULL;
    int rc = get_record(s, txn, key_id, &v, &rv);
    if (rc != KR_OK)
        return rc;
    const unsigned char *p = v.mv_data;
    size_t len = 1;
    for (int i = 0; i < rv.slave_count; i++)
        len += (size_t)p[rv.slave_off[i] + 1] + 1;
    char *list = malloc(len), *w = list;
    if (!list)
        return KR_DB;
    for (int i = 0; i < rv.slave_count; i++) {
        size_t n = p[rv.slave_off[i] + 1];
        if (i)
            *w++ = ' ';
        memcpy(w, p + rv.slave_off[i] + 2, n);
        w += n;
    }
    *w = '\0';
    *out = list;
    return KR_OK;
}

int kr_exists(kme_store *s, MDB_txn *txn, const char *key_id)
{
    MDB_val k = {UUID_STR_LEN, (void *)key_id}, v;
    return mdb_get(txn, s->keys, &k, &v) == 0;
}

int kr_delete(kme_store *s, MDB_txn *txn, const char *key_id)
{
    MDB_val v;
    record_view rv;
    int rc = get_record(s, txn, key_id, &v, &rv);
    if (rc != KR_OK)
        return rc == KR_UNKNOWN ? KR_OK : rc;
    return erase(s, txn, key_id, rv.expires) ? KR_DB : KR_OK;
}

int kr_expire(kme_store *s, MDB_txn *txn, int64_t now, size_t max)
{
    MDB_cursor *c;
    MDB_val k, v;
    int n = 0;
    if (mdb_cursor_open(txn, s->key_expiry, &c))
        return -1;
    char ids[64][UUID_STR_LEN + 1];
    int64_t exps[64];
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0 && (size_t)n < max && n < 64) {
        int64_t exp = (int64_t)store_get_be64(k.mv_data);
        if (exp > now)
            break;
        memcpy(ids[n], (char *)k.mv_data + 8, UUID_STR_LEN);
        ids[n][UUID_STR_LEN] = '\0';
        exps[n] = exp;
        n++;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    for (int i = 0; i < n; i++)
        if (erase(s, txn, ids[i], exps[i]) && kr_delete(s, txn, ids[i]))
            return -1;
    return n;
}

int kr_shorten_expiry(kme_store *s, MDB_txn *txn, const char *key_id, int64_t expires)
{
    MDB_val v;
    record_view rv;
    int rc = get_record(s, txn, key_id, &v, &rv);
    if (rc != KR_OK)
        return rc;
    return expires >= rv.expires ? KR_OK : move_expiry(s, txn, key_id, &v, &rv, expires, -1);
}

int kr_count_held_once(kme_store *s, MDB_txn *txn)
{
    static const char flag[] = "held_counted";
    MDB_val fk = {sizeof flag - 1, (void *)flag}, fv, k, v;
    if (mdb_get(txn, s->meta, &fk, &fv) == 0)
        return 0;
    MDB_cursor *c;
    if (mdb_drop(txn, s->held, 0) || mdb_cursor_open(txn, s->keys, &c))
        return -1;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        record_view rv;
        if (view_record(v.mv_data, v.mv_size, &rv) == 0 && held_add_waiting(s, txn, v.mv_data, &rv, 1)) {
            mdb_cursor_close(c);
            return -1;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    unsigned char one = 1;
    fv.mv_size = 1;
    fv.mv_data = &one;
    return rc == MDB_NOTFOUND && mdb_put(txn, s->meta, &fk, &fv, 0) == 0 ? 0 : -1;
}

long kr_count(kme_store *s, MDB_txn *txn)
{
    MDB_stat st;
    return mdb_stat(txn, s->keys, &st) ? -1 : (long)st.ms_entries;
}

int kr_fill_random(etsi_key_container *out, long number, long size_bits)
{
    memset(out, 0, sizeof *out);
    if (number <= 0)
        return 0;
    out->keys = calloc((size_t)number, sizeof *out->keys);
    if (!out->keys)
        return -1;
    for (long i = 0; i < number; i++) {
        etsi_key *key = &out->keys[i];
        key->key_len = (size_t)size_bits / 8;
        key->key = malloc(key->key_len);
        if (!key->key)
            break;
        out->count++;
        if (RAND_priv_bytes(key->key, (int)key->key_len) != 1 || uuid_generate(key->key_id) < 0)
            break;
        if (i + 1 == number)
            return 0;
    }
    etsi_key_container_clear(out);
    return -1;
}

void kr_fill(key_record *rec, const char *key_id, const char *master, const char *const *slaves, size_t nslaves,
             int64_t expires, const unsigned char *key, size_t len)
{
    memset(rec, 0, sizeof *rec);
    memcpy(rec->key_id, key_id, sizeof rec->key_id);
    snprintf(rec->master, sizeof rec->master, "%s", master);
    for (size_t i = 0; i < nslaves && i < KR_MAX_SLAVES; i++)
        snprintf(rec->slaves[rec->slave_count++], ETSI_ID_MAX + 1, "%s", slaves[i]);
    rec->expires = expires;
    rec->key = key;
    rec->key_len = len;
}
