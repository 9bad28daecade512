/* Forgetting: the epoch keys whose records are all gone are erased (see
 * forget_epochs.h). Each class has a rule that also guarantees no record
 * can be sealed under the epoch again, so an epoch judged spent on a
 * committed snapshot stays spent while it is erased. */
#include "store/forget_epochs.h"
#include "store/link_blocks.h"

#include <stdlib.h>
#include <string.h>

#define GRACE_S 2 /* a bucket is judged only this long after its end */

typedef struct {
    char peer[EPOCH_PEER_MAX + 1];
    uint64_t bucket;
} stock_bucket;

typedef struct {
    stock_bucket *b;
    size_t n, cap;
} stock_buckets;

/* Every (dest, 64 s bucket) that still holds stock; stock is small (a few
 * watermarks per pair), so one pass over its keys. */
static int live_stock(kme_store *s, MDB_txn *txn, stock_buckets *out)
{
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(txn, s->stock, &c))
        return -1;
    int rc = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        /* peer \0 master \0 slave \0 be32 size | be64 created_ms | key_ID */
        const unsigned char *p = k.mv_data, *end = p + k.mv_size, *at = p;
        for (int zeros = 0; at < end && zeros < 3; at++)
            zeros += *at == 0;
        size_t plen = strnlen((const char *)p, k.mv_size);
        if (end - at < 12 || plen > EPOCH_PEER_MAX)
            continue;
        seal_epoch ep = store_stock_epoch((const char *)p, (int64_t)store_get_be64(at + 4));
        size_t i = 0;
        while (i < out->n && (out->b[i].bucket != ep.bucket || strcmp(out->b[i].peer, ep.peer) != 0))
            i++;
        if (i < out->n)
            continue;
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 16;
            stock_bucket *nb = realloc(out->b, cap * sizeof *nb);
            if (!nb) {
                rc = -1;
                break;
            }
            out->b = nb, out->cap = cap;
        }
        memcpy(out->b[out->n].peer, p, plen);
        out->b[out->n].peer[plen] = '\0';
        out->b[out->n++].bucket = ep.bucket;
    }
    mdb_cursor_close(c);
    return rc;
}

/* No block of the bucket is left, and none can come: the ingest mark is past it. */
static int blocks_gone(kme_store *s, MDB_txn *txn, const epoch_entry *e)
{
    uint64_t lo = e->bucket << STORE_BLOCK_EPOCH_SHIFT, hi = (e->bucket + 1) << STORE_BLOCK_EPOCH_SHIFT, mark = 0;
    if (lb_ingest_mark(s, txn, e->peer, &mark) || mark < hi)
        return 0;
    unsigned char kb[96], hb[96];
    MDB_val k = {lb_block_key(kb, e->peer, lo), kb}, v;
    size_t hlen = lb_block_key(hb, e->peer, hi);
    MDB_cursor *c;
    if (mdb_cursor_open(txn, s->block_meta, &c))
        return 0;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    /* The first record at or after lo: none, or one at or past hi (or of another peer). */
    int gone =
        rc == MDB_NOTFOUND ||
        (rc == 0 && (k.mv_size != hlen || memcmp(k.mv_data, hb, hlen - 8) != 0 || memcmp(k.mv_data, hb, hlen) >= 0));
    mdb_cursor_close(c);
    return gone;
}

static int spent(kme_store *s, MDB_txn *txn, const epoch_entry *e, int64_t now, uint64_t first_expiry,
                 const stock_buckets *stock)
{
    switch (e->cls) {
    case 'E': /* every record of it expires before the bucket's end */
        return (int64_t)e->bucket + GRACE_S <= now && first_expiry >= e->bucket;
    case 'S':
        if ((int64_t)((e->bucket + 1) * STORE_STOCK_EPOCH_S) + GRACE_S > now)
            return 0;
        for (size_t i = 0; i < stock->n; i++)
            if (stock->b[i].bucket == e->bucket && strcmp(stock->b[i].peer, e->peer) == 0)
                return 0;
        return 1;
    case 'B':
        return blocks_gone(s, txn, e);
    default:
        return 0;
    }
}

int store_forget_epochs(kme_store *s, int64_t now)
{
    epoch_entry *list;
    size_t n;
    if (epoch_keys_list(&s->epochs, &list, &n) < 0)
        return -1;
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    stock_buckets stock = {NULL, 0, 0};
    MDB_txn *txn = NULL;
    size_t nids = 0;
    int rc = ids && store_read_begin(s, &txn) == 0 && live_stock(s, txn, &stock) == 0 ? 0 : -1;
    if (rc == 0) {
        uint64_t first_expiry = UINT64_MAX;
        MDB_cursor *c;
        MDB_val k, v;
        if (mdb_cursor_open(txn, s->key_expiry, &c) == 0) {
            if (mdb_cursor_get(c, &k, &v, MDB_FIRST) == 0 && k.mv_size >= 8)
                first_expiry = store_get_be64(k.mv_data);
            mdb_cursor_close(c);
        } else {
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < n; i++)
            if (spent(s, txn, &list[i], now, first_expiry, &stock))
                ids[nids++] = list[i].id;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc == 0 && nids > 0)
        rc = epoch_keys_erase(&s->epochs, ids, nids);
    free(stock.b);
    free(ids);
    free(list);
    return rc;
}
