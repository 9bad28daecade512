/* Resynchronising a restored store's links with their neighbours (see link_resync.h). */
#include "store/link_resync.h"

#include <stdlib.h>
#include <string.h>

#define META_RESTORED "restored"
#define META_RESYNCED "resynced:" /* then the peer's KME ID */

static size_t resynced_key(unsigned char *buf, const char *peer_id)
{
    size_t n = strlen(META_RESYNCED), p = strlen(peer_id);
    memcpy(buf, META_RESYNCED, n);
    memcpy(buf + n, peer_id, p);
    return n + p;
}

int lr_mark_restored(kme_store *s, MDB_txn *txn)
{
    MDB_val k = {strlen(META_RESTORED), META_RESTORED}, v = {1, "1"};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

int lr_pending(kme_store *s, MDB_txn *txn, const char *peer_id)
{
    unsigned char kb[96];
    MDB_val k = {strlen(META_RESTORED), META_RESTORED}, v;
    if (mdb_get(txn, s->meta, &k, &v) != 0)
        return 0;
    MDB_val rk = {resynced_key(kb, peer_id), kb};
    return mdb_get(txn, s->meta, &rk, &v) != 0;
}

typedef struct {
    uint64_t *seqs;
    size_t n, cap;
} seq_list;

static int collect(uint64_t seq, lb_meta *m, void *arg)
{
    (void)m;
    seq_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        uint64_t *n = realloc(l->seqs, cap * sizeof *n);
        if (!n)
            return 1;
        l->seqs = n, l->cap = cap;
    }
    l->seqs[l->n++] = seq;
    return 0;
}

static const kme_view_block *find(const kme_view_block *view, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (view[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && view[lo].seq == seq ? &view[lo] : NULL;
}

static int verified(uint8_t state)
{
    return state == LB_VERIFIED;
}

/* The block as both ends together say: its owner the neighbour's, its used
 * ranges both ends'; all of it used when they do not fit the record. */
static void merge(lb_meta *m, const kme_view_block *peer)
{
    /* Owned here only when the neighbour says so; any doubt, the neighbour's. */
    m->owner = peer->owner == LB_OWNER_PEER ? LB_OWNER_SELF : LB_OWNER_PEER;
    m->granted = 0;
    for (uint32_t i = 0; i < peer->nused; i++)
        if (peer->used[i][1] > m->size || lb_extents_add(m, peer->used[i][0], peer->used[i][1]) < 0) {
            m->nused = 0;
            lb_extents_add(m, 0, m->size);
            return;
        }
}

int lr_adopt_view(kme_store *s, MDB_txn *txn, lb_link *l, const kme_link_view *view, size_t *kept, size_t *dropped)
{
    seq_list mine = {NULL, 0, 0};
    *kept = *dropped = 0;
    int rc = lb_for_each_block(s, txn, l->peer_id, collect, &mine) ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < mine.n; i++) {
        lb_meta m;
        if (lb_get_meta(s, txn, l->peer_id, mine.seqs[i], &m)) {
            rc = -1;
            break;
        }
        const kme_view_block *p = find(view->blocks, view->count, mine.seqs[i]);
        if (p && verified(p->state) && m.state != LB_DISCARDED) {
            /* Verified there, with this end as it ran before the restore, on
             * these same bytes (a block's bytes never change): verified here
             * too, even when the backup caught it still unverified or locked. */
            m.state = LB_VERIFIED;
            m.txn_hash = 0;
            m.lock_deadline_ms = 0;
            merge(&m, p);
            (*kept)++;
        } else if (p && !verified(p->state) && !verified(m.state) && p->state != LB_DISCARDED &&
                   m.state != LB_DISCARDED) {
            (*kept)++; /* not verified at either end yet: the verification settles it */
            continue;
        } else {
            m.state = LB_DISCARDED; /* gone there, or settled otherwise: never used here */
            (*dropped)++;
        }
        rc = lb_put_meta(s, txn, l->peer_id, mine.seqs[i], &m) ? -1 : 0;
    }
    free(mine.seqs);
    unsigned char kb[96];
    MDB_val rk = {resynced_key(kb, l->peer_id), kb}, v = {1, "1"};
    if (rc == 0 && (lb_raise_ingest_mark(s, txn, l->peer_id, view->mark) || mdb_put(txn, s->meta, &rk, &v, 0)))
        rc = -1;
    if (rc == 0) {
        l->alloc_hint = 0;
        l->verify_hint = 0;
    }
    return rc;
}

typedef struct {
    kme_link_view *out;
    int failed;
} view_arg;

static int add_block(uint64_t seq, lb_meta *m, void *arg)
{
    view_arg *a = arg;
    kme_view_block b;
    memset(&b, 0, sizeof b);
    b.seq = seq;
    b.state = m->state;
    b.owner = m->owner;
    b.nused = m->nused < KME_VIEW_MAX_EXTENTS ? m->nused : KME_VIEW_MAX_EXTENTS;
    for (uint32_t i = 0; i < b.nused; i++) {
        b.used[i][0] = m->used[i].start;
        b.used[i][1] = m->used[i].end;
    }
    a->failed = kme_link_view_add(a->out, &b) < 0;
    return a->failed;
}

int lr_seqs_of(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t **seqs, size_t *n)
{
    seq_list l = {NULL, 0, 0};
    if (lb_for_each_block(s, txn, peer_id, collect, &l)) {
        free(l.seqs);
        return -1;
    }
    *seqs = l.seqs;
    *n = l.n;
    return 0;
}

static int holds(const uint64_t *have, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (have[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && have[lo] == seq;
}

int lr_answer_view(kme_store *s, MDB_txn *txn, const char *peer_id, const uint64_t *have, size_t nhave,
                   kme_link_view *out, size_t *discarded)
{
    memset(out, 0, sizeof *out);
    *discarded = 0;
    seq_list mine = {NULL, 0, 0};
    int rc = lb_for_each_block(s, txn, peer_id, collect, &mine) ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < mine.n; i++) {
        if (holds(have, nhave, mine.seqs[i]))
            continue;
        lb_meta m;
        rc = lb_get_meta(s, txn, peer_id, mine.seqs[i], &m) ? -1 : 0;
        if (rc == 0) {
            m.state = LB_DISCARDED; /* the restored end lacks it, and never takes it now */
            rc = lb_put_meta(s, txn, peer_id, mine.seqs[i], &m) ? -1 : 0;
            (*discarded)++;
        }
    }
    free(mine.seqs);
    if (rc < 0)
        return -1;
    view_arg a = {out, 0};
    if (lb_ingest_mark(s, txn, peer_id, &out->mark) || lb_for_each_block(s, txn, peer_id, add_block, &a) || a.failed) {
        kme_link_view_clear(out);
        return -1;
    }
    return 0;
}
