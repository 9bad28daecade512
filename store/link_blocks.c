/* Link blocks in LMDB: ingest, verification states, ownership and used byte ranges (see link_blocks.h). */
#include "store/link_blocks.h"

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* A meta record: the fixed header, nused extents, then one byte 1 only when
 * the block is granted and pending (records written before grants existed
 * end after the extents and decode as not granted). */
#define META_HEADER 50
#define META_MAX (META_HEADER + LB_MAX_EXTENTS * sizeof(lb_extent) + 1)

void lb_link_init(lb_link *l, const char *self_id, const char *peer_id)
{
    memset(l, 0, sizeof *l);
    snprintf(l->self_id, sizeof l->self_id, "%s", self_id);
    snprintf(l->peer_id, sizeof l->peer_id, "%s", peer_id);
}

enum lb_owner lb_owner_of(const lb_link *l, uint64_t seq)
{
    int self_is_lower = strcmp(l->self_id, l->peer_id) < 0;
    int lower_owns = (seq % 2) == 0;
    return (self_is_lower == lower_owns) ? LB_OWNER_SELF : LB_OWNER_PEER;
}

/* ---- keys and (de)serialisation ----------------------------------------- */

size_t lb_block_key(unsigned char *buf, const char *peer_id, uint64_t seq)
{
    size_t n = strlen(peer_id);
    memcpy(buf, peer_id, n);
    buf[n] = 0;
    store_put_be64(buf + n + 1, seq);
    return n + 9;
}

static size_t meta_encode(const lb_meta *m, unsigned char *out)
{
    unsigned char *p = out;
    *p++ = m->state;
    *p++ = m->owner;
    memcpy(p, &m->size, 4), p += 4;
    memcpy(p, &m->txn_hash, 8), p += 8;
    memcpy(p, &m->lock_deadline_ms, 8), p += 8;
    memcpy(p, &m->ingested_ms, 8), p += 8;
    memcpy(p, m->tag, LB_TAG_BYTES), p += LB_TAG_BYTES;
    memcpy(p, &m->nused, 4), p += 4;
    memcpy(p, m->used, m->nused * sizeof(lb_extent)), p += m->nused * sizeof(lb_extent);
    if (m->granted)
        *p++ = 1;
    return (size_t)(p - out);
}

static int meta_decode(const unsigned char *p, size_t len, lb_meta *m)
{
    if (len < META_HEADER)
        return -1;
    memset(m, 0, sizeof *m);
    m->state = *p++;
    m->owner = *p++;
    memcpy(&m->size, p, 4), p += 4;
    memcpy(&m->txn_hash, p, 8), p += 8;
    memcpy(&m->lock_deadline_ms, p, 8), p += 8;
    memcpy(&m->ingested_ms, p, 8), p += 8;
    memcpy(m->tag, p, LB_TAG_BYTES), p += LB_TAG_BYTES;
    memcpy(&m->nused, p, 4), p += 4;
    if (m->nused > LB_MAX_EXTENTS)
        return -1;
    size_t body = META_HEADER + m->nused * sizeof(lb_extent);
    if (len != body && !(len == body + 1 && p[m->nused * sizeof(lb_extent)] == 1))
        return -1;
    memcpy(m->used, p, m->nused * sizeof(lb_extent));
    m->granted = len == body + 1;
    return 0;
}

int lb_get_meta(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, lb_meta *out)
{
    unsigned char kb[80];
    MDB_val k = {lb_block_key(kb, peer_id, seq), kb}, v;
    int rc = mdb_get(txn, s->block_meta, &k, &v);
    if (rc)
        return rc;
    return meta_decode(v.mv_data, v.mv_size, out) ? MDB_CORRUPTED : 0;
}

/* ---- per-link counters -------------------------------------------------------
 *
 * One record per link in the meta database, changed in the transaction that
 * changes a block: the free bytes by state and owner, how many blocks were
 * ever verified or discarded, and the ingest mark (one past the highest seq
 * ever stored). A block with no record below the mark was used up or
 * discarded and erased: it is spent. A store written before the counters
 * existed has no record: it is counted once from the blocks. */

typedef struct {
    lb_stock st;
    uint64_t mark;
} lb_counts;

#define COUNTS_BYTES (6 * 8)

static size_t counts_key(unsigned char *buf, const char *peer_id)
{
    size_t n = strlen(peer_id);
    memcpy(buf, "lb_counts", 10);
    memcpy(buf + 10, peer_id, n);
    return n + 10;
}

static uint64_t meta_free(const lb_meta *m)
{
    uint32_t used = lb_extents_used_bytes(m);
    return used >= m->size ? 0 : m->size - used;
}

/* Adds (sign 1) or takes away (sign -1) what one block counts for. */
static void count_block(lb_stock *st, const lb_meta *m, int sign)
{
    uint64_t free_bytes = meta_free(m), one = 1;
    if (sign < 0) {
        free_bytes = 0 - free_bytes;
        one = 0 - one;
    }
    if (m->state == LB_VERIFIED) {
        st->verified_blocks += one;
        if (m->owner == LB_OWNER_SELF)
            st->owned_free += free_bytes;
        else
            st->peer_free += free_bytes;
    } else if (m->state == LB_DISCARDED) {
        st->discarded_blocks += one;
    } else {
        st->unverified += free_bytes;
    }
}

static int count_from_blocks(kme_store *s, MDB_txn *txn, const char *peer_id, lb_counts *c);

static int counts_get(kme_store *s, MDB_txn *txn, const char *peer_id, lb_counts *c)
{
    unsigned char kb[96];
    MDB_val k = {counts_key(kb, peer_id), kb}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return count_from_blocks(s, txn, peer_id, c);
    if (rc)
        return rc;
    if (v.mv_size != COUNTS_BYTES)
        return MDB_CORRUPTED;
    const unsigned char *p = v.mv_data;
    uint64_t *f[] = {&c->st.owned_free,      &c->st.peer_free,        &c->st.unverified,
                     &c->st.verified_blocks, &c->st.discarded_blocks, &c->mark};
    for (size_t i = 0; i < 6; i++)
        *f[i] = store_get_be64(p + 8 * i);
    return 0;
}

static int counts_put(kme_store *s, MDB_txn *txn, const char *peer_id, const lb_counts *c)
{
    unsigned char kb[96], vb[COUNTS_BYTES];
    const uint64_t f[] = {c->st.owned_free,      c->st.peer_free,        c->st.unverified,
                          c->st.verified_blocks, c->st.discarded_blocks, c->mark};
    for (size_t i = 0; i < 6; i++)
        store_put_be64(vb + 8 * i, f[i]);
    MDB_val k = {counts_key(kb, peer_id), kb}, v = {sizeof vb, vb};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* Nothing of the block is left to use at this end: its record can go. */
static int block_spent(const lb_meta *m)
{
    return m->state == LB_DISCARDED || (m->state == LB_VERIFIED && meta_free(m) == 0);
}

int lb_put_meta(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, const lb_meta *m)
{
    unsigned char kb[80], vb[META_MAX];
    lb_counts c;
    lb_meta old;
    int rc = counts_get(s, txn, peer_id, &c);
    if (rc)
        return rc;
    rc = lb_get_meta(s, txn, peer_id, seq, &old);
    if (rc == 0)
        count_block(&c.st, &old, -1);
    else if (rc != MDB_NOTFOUND)
        return rc;
    count_block(&c.st, m, 1);
    if (seq >= c.mark)
        c.mark = seq + 1;
    MDB_val k = {lb_block_key(kb, peer_id, seq), kb}, v = {meta_encode(m, vb), vb};
    if (block_spent(m)) {
        /* Used up or discarded: the record and the bytes go, the mark keeps it spent. */
        rc = rc == 0 ? mdb_del(txn, s->block_meta, &k, NULL) : 0;
        if (rc == 0) {
            rc = mdb_del(txn, s->block_data, &k, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        }
    } else {
        rc = mdb_put(txn, s->block_meta, &k, &v, 0);
    }
    return rc ? rc : counts_put(s, txn, peer_id, &c);
}

int lb_is_spent(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq)
{
    lb_meta m;
    lb_counts c;
    if (lb_get_meta(s, txn, peer_id, seq, &m) != MDB_NOTFOUND || counts_get(s, txn, peer_id, &c))
        return 0;
    return seq < c.mark;
}

int lb_raise_ingest_mark(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t mark)
{
    lb_counts c;
    int rc = counts_get(s, txn, peer_id, &c);
    if (rc || c.mark >= mark)
        return rc;
    c.mark = mark;
    return counts_put(s, txn, peer_id, &c);
}

int lb_ingest_mark(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t *mark)
{
    lb_counts c;
    int rc = counts_get(s, txn, peer_id, &c);
    *mark = rc ? 0 : c.mark;
    return rc;
}

static int get_data(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, MDB_val *v)
{
    unsigned char kb[80];
    MDB_val k = {lb_block_key(kb, peer_id, seq), kb};
    return mdb_get(txn, s->block_data, &k, v);
}

/* A block's bytes rest sealed in chunks of BLOCK_CHUNK bytes (the last may
 * be shorter), each nonce | ciphertext | tag, bound to the block's key and
 * the chunk's index: a carve opens only the chunks it reads. */
#define BLOCK_CHUNK 4096
#define SEALED_CHUNK (BLOCK_CHUNK + SEAL_OVERHEAD)

/* The chunk's identity: the block's key then its index (be64). */
static size_t chunk_id(unsigned char *id, const MDB_val *k, uint32_t index)
{
    memcpy(id, k->mv_data, k->mv_size);
    store_put_be64(id + k->mv_size, index);
    return k->mv_size + 8;
}

static size_t sealed_block_size(size_t len)
{
    return len + (len + BLOCK_CHUNK - 1) / BLOCK_CHUNK * SEAL_OVERHEAD;
}

/* The plain length of a sealed block of size bytes, or 0 if it cannot be one. */
static size_t plain_block_size(size_t size)
{
    size_t rest = size % SEALED_CHUNK;
    if (rest != 0 && rest <= SEAL_OVERHEAD)
        return 0;
    return size / SEALED_CHUNK * BLOCK_CHUNK + (rest ? rest - SEAL_OVERHEAD : 0);
}

static int put_data(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, const unsigned char *data,
                    size_t len)
{
    unsigned char kb[80], id[96];
    MDB_val k = {lb_block_key(kb, peer_id, seq), kb}, v = {sealed_block_size(len), NULL};
    if (mdb_put(txn, s->block_data, &k, &v, MDB_RESERVE))
        return LB_DB;
    unsigned char *w = v.mv_data;
    seal_epoch ep = store_block_epoch(peer_id, seq);
    for (uint32_t i = 0; (size_t)i * BLOCK_CHUNK < len; i++) {
        size_t n = len - (size_t)i * BLOCK_CHUNK < BLOCK_CHUNK ? len - (size_t)i * BLOCK_CHUNK : BLOCK_CHUNK;
        if (store_seal(s, &ep, SEAL_DB_BLOCK_DATA, id, chunk_id(id, &k, i), data + (size_t)i * BLOCK_CHUNK, n,
                       w + (size_t)i * SEALED_CHUNK))
            return LB_DB;
    }
    return LB_OK;
}

/* Copies bytes [start, start + len) of block seq into out, opening the
 * chunks that hold them (store/seal.h) into a buffer cleansed after. LB_OK,
 * or LB_DB when the block is missing, too short or does not authenticate. */
static int read_block_bytes(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, uint32_t start, uint32_t len,
                            unsigned char *out)
{
    unsigned char kb[80], id[96], plain[BLOCK_CHUNK];
    MDB_val k = {lb_block_key(kb, peer_id, seq), kb}, v;
    if (mdb_get(txn, s->block_data, &k, &v))
        return LB_DB;
    size_t size = plain_block_size(v.mv_size), end = (size_t)start + len, done = 0;
    if (len == 0 || end > size)
        return len == 0 && end <= size ? LB_OK : LB_DB;
    int rc = LB_OK;
    for (uint32_t i = start / BLOCK_CHUNK; rc == LB_OK && (size_t)i * BLOCK_CHUNK < end; i++) {
        size_t from = (size_t)i * BLOCK_CHUNK, n = size - from < BLOCK_CHUNK ? size - from : BLOCK_CHUNK;
        if (store_open_sealed(s, SEAL_DB_BLOCK_DATA, id, chunk_id(id, &k, i),
                              (const unsigned char *)v.mv_data + (size_t)i * SEALED_CHUNK, n + SEAL_OVERHEAD, plain)) {
            rc = LB_DB;
            break;
        }
        size_t lo = from > start ? from : start, hi = from + n < end ? from + n : end;
        memcpy(out + done, plain + (lo - from), hi - lo);
        done += hi - lo;
    }
    OPENSSL_cleanse(plain, sizeof plain);
    if (rc != LB_OK)
        OPENSSL_cleanse(out, done);
    return rc;
}

/* ---- extents --------------------------------------------------------------- */

int lb_extents_overlap(const lb_meta *m, uint32_t start, uint32_t end)
{
    for (uint32_t i = 0; i < m->nused; i++)
        if (start < m->used[i].end && m->used[i].start < end)
            return 1;
    return 0;
}

int lb_extents_add(lb_meta *m, uint32_t start, uint32_t end)
{
    if (start >= end)
        return 0;
    lb_extent tmp[LB_MAX_EXTENTS + 1];
    uint32_t n = 0, i = 0;
    while (i < m->nused && m->used[i].end < start)
        tmp[n++] = m->used[i++];
    lb_extent cur = {start, end};
    while (i < m->nused && m->used[i].start <= cur.end) {
        if (m->used[i].start < cur.start)
            cur.start = m->used[i].start;
        if (m->used[i].end > cur.end)
            cur.end = m->used[i].end;
        i++;
    }
    tmp[n++] = cur;
    while (i < m->nused)
        tmp[n++] = m->used[i++];
    if (n > LB_MAX_EXTENTS)
        return -1;
    memcpy(m->used, tmp, n * sizeof *tmp);
    m->nused = n;
    return 0;
}

void lb_extents_remove(lb_meta *m, uint32_t start, uint32_t end)
{
    lb_extent tmp[LB_MAX_EXTENTS * 2];
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->nused; i++) {
        lb_extent e = m->used[i];
        if (e.end <= start || e.start >= end) {
            tmp[n++] = e;
            continue;
        }
        if (e.start < start)
            tmp[n++] = (lb_extent){e.start, start};
        if (e.end > end)
            tmp[n++] = (lb_extent){end, e.end};
    }
    if (n > LB_MAX_EXTENTS)
        n = LB_MAX_EXTENTS; /* cannot happen for ranges that were allocated whole */
    memcpy(m->used, tmp, n * sizeof *tmp);
    m->nused = n;
}

uint32_t lb_extents_used_bytes(const lb_meta *m)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < m->nused; i++)
        total += m->used[i].end - m->used[i].start;
    return total;
}

/* ---- tags ------------------------------------------------------------------ */

int lb_compute_tag(uint64_t seq, const unsigned char *data, size_t len, uint8_t tag[LB_TAG_BYTES])
{
    if (len <= LB_MAC_BYTES)
        return -1;
    int ok = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    unsigned char seqb[8];
    size_t outl = 0;
    store_put_be64(seqb, seq);
    if (ctx && EVP_MAC_init(ctx, data, 32, NULL) && EVP_MAC_update(ctx, seqb, 8) &&
        EVP_MAC_update(ctx, data + LB_MAC_BYTES, len - LB_MAC_BYTES) && EVP_MAC_final(ctx, tag, &outl, LB_TAG_BYTES) &&
        outl == LB_TAG_BYTES) {
        for (int i = 0; i < LB_TAG_BYTES; i++)
            tag[i] ^= data[32 + i];
        ok = 1;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? 0 : -1;
}

/* ---- ingest and verification ------------------------------------------------- */

int lb_ingest(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, const unsigned char *data, size_t len)
{
    lb_meta m;
    int rc = lb_get_meta(s, txn, l->peer_id, seq, &m);
    if (rc == 0)
        return LB_EXISTS;
    if (rc != MDB_NOTFOUND || len <= LB_MAC_BYTES || len > UINT32_MAX)
        return LB_DB;
    uint64_t mark;
    if (lb_ingest_mark(s, txn, l->peer_id, &mark))
        return LB_DB;
    if (seq < mark)
        return LB_SPENT; /* erased, or passed over: never stored again */
    memset(&m, 0, sizeof m);
    m.state = LB_UNVERIFIED;
    m.size = (uint32_t)len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m.ingested_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (lb_compute_tag(seq, data, len, m.tag) < 0)
        return LB_DB;
    lb_extents_add(&m, 0, LB_MAC_BYTES);
    if (seq < l->verify_hint)
        l->verify_hint = seq;
    if (put_data(s, txn, l->peer_id, seq, data, len) != LB_OK)
        return LB_DB;
    return lb_put_meta(s, txn, l->peer_id, seq, &m) ? LB_DB : LB_OK;
}

/* Iterates the metas of one link from seq `from`; fn returns 1 to stop. */
typedef int (*meta_visit)(uint64_t seq, lb_meta *m, void *arg);
static int for_each_meta(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t from, meta_visit fn, void *arg)
{
    unsigned char kb[80];
    size_t plen = strlen(peer_id) + 1;
    MDB_val k = {lb_block_key(kb, peer_id, from), kb}, v;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->block_meta, &c);
    if (rc)
        return rc;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != plen + 8 || memcmp(k.mv_data, kb, plen) != 0)
            break;
        lb_meta m;
        uint64_t seq = store_get_be64((unsigned char *)k.mv_data + plen);
        if (meta_decode(v.mv_data, v.mv_size, &m) == 0 && fn(seq, &m, arg))
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int lb_for_each_block(kme_store *s, MDB_txn *txn, const char *peer_id, int (*fn)(uint64_t seq, lb_meta *m, void *arg),
                      void *arg)
{
    return for_each_meta(s, txn, peer_id, 0, fn, arg);
}

typedef struct {
    uint64_t txn_hash;
    int64_t now, deadline;
    size_t max, n;
    uint64_t *seqs;
    uint8_t (*tags)[LB_TAG_BYTES];
    int found_open;
    uint64_t first_open, last_seen;
} lock_ctx;

static int collect_lockable(uint64_t seq, lb_meta *m, void *arg)
{
    lock_ctx *c = arg;
    c->last_seen = seq;
    if ((m->state == LB_UNVERIFIED || m->state == LB_LOCKED) && !c->found_open) {
        c->found_open = 1;
        c->first_open = seq;
    }
    if (m->state == LB_UNVERIFIED || (m->state == LB_LOCKED && m->lock_deadline_ms <= c->now)) {
        c->seqs[c->n] = seq;
        memcpy(c->tags[c->n], m->tag, LB_TAG_BYTES);
        c->n++;
    }
    return c->n >= c->max;
}

int lb_lock_for_verify(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t txn_hash, int64_t now_ms, int64_t deadline_ms,
                       size_t max, uint64_t *seqs, uint8_t (*tags)[LB_TAG_BYTES])
{
    lock_ctx c = {txn_hash, now_ms, deadline_ms, max, 0, seqs, tags, 0, 0, 0};
    if (for_each_meta(s, txn, l->peer_id, l->verify_hint, collect_lockable, &c))
        return -1;
    /* Next time start at the first block still open, or after the last one seen. */
    if (c.found_open)
        l->verify_hint = c.first_open;
    else if (c.last_seen >= l->verify_hint)
        l->verify_hint = c.last_seen + 1;
    for (size_t i = 0; i < c.n; i++) {
        lb_meta m;
        if (lb_get_meta(s, txn, l->peer_id, seqs[i], &m))
            return -1;
        m.state = LB_LOCKED;
        m.txn_hash = txn_hash;
        m.lock_deadline_ms = deadline_ms;
        if (lb_put_meta(s, txn, l->peer_id, seqs[i], &m))
            return -1;
    }
    return (int)c.n;
}

static int settle(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, lb_meta *m, int match)
{
    if (match) {
        m->state = LB_VERIFIED;
        m->owner = (uint8_t)lb_owner_of(l, seq);
        if (m->owner == LB_OWNER_SELF && seq < l->alloc_hint)
            l->alloc_hint = seq;
    } else {
        m->state = LB_DISCARDED;
        m->owner = LB_OWNER_NONE;
    }
    m->txn_hash = 0;
    m->lock_deadline_ms = 0;
    return lb_put_meta(s, txn, l->peer_id, seq, m) ? LB_DB : LB_OK;
}

int lb_apply_verdict(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, uint64_t txn_hash, enum lb_verdict v)
{
    lb_meta m;
    int rc = lb_get_meta(s, txn, l->peer_id, seq, &m);
    if (rc == MDB_NOTFOUND)
        return LB_OK; /* settled, used up and erased already */
    if (rc)
        return LB_DB;
    if (m.state != LB_LOCKED || m.txn_hash != txn_hash)
        return LB_OK; /* settled by another transaction already */
    if (v == LB_MISSING) {
        if (seq < l->verify_hint)
            l->verify_hint = seq;
        m.state = LB_UNVERIFIED;
        m.txn_hash = 0;
        m.lock_deadline_ms = 0;
        return lb_put_meta(s, txn, l->peer_id, seq, &m) ? LB_DB : LB_OK;
    }
    return settle(s, txn, l, seq, &m, v == LB_MATCH);
}

int lb_respond_verify(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, const uint8_t tag[LB_TAG_BYTES],
                      int may_discard, enum lb_verdict *out)
{
    lb_meta m;
    int rc = lb_get_meta(s, txn, l->peer_id, seq, &m);
    if (rc == MDB_NOTFOUND) {
        /* Erased here (used up or discarded): the initiator may not use it. */
        *out = lb_is_spent(s, txn, l->peer_id, seq) ? LB_MISMATCH : LB_MISSING;
        return LB_OK;
    }
    if (rc)
        return LB_DB;
    int match = CRYPTO_memcmp(m.tag, tag, LB_TAG_BYTES) == 0;
    if (m.state == LB_VERIFIED || m.state == LB_DISCARDED) {
        /* Asked again (the initiator lost our answer): same verdict, no change. */
        *out = (m.state == LB_VERIFIED && match) ? LB_MATCH : LB_MISMATCH;
        return LB_OK;
    }
    *out = match ? LB_MATCH : LB_MISMATCH;
    if (!match && !may_discard)
        return LB_OK;
    return settle(s, txn, l, seq, &m, match);
}

typedef struct {
    int64_t cutoff;
    size_t n;
    uint64_t seqs[256];
} stale_ctx;

static int collect_stale(uint64_t seq, lb_meta *m, void *arg)
{
    stale_ctx *c = arg;
    if (m->state == LB_UNVERIFIED && m->ingested_ms < c->cutoff)
        c->seqs[c->n++] = seq;
    return c->n >= sizeof c->seqs / sizeof c->seqs[0];
}

int lb_discard_stale(kme_store *s, MDB_txn *txn, const lb_link *l, int64_t now_ms, int64_t max_age_ms)
{
    stale_ctx c = {now_ms - max_age_ms, 0, {0}};
    if (for_each_meta(s, txn, l->peer_id, 0, collect_stale, &c))
        return -1;
    for (size_t i = 0; i < c.n; i++) {
        lb_meta m;
        if (lb_get_meta(s, txn, l->peer_id, c.seqs[i], &m))
            return -1;
        m.state = LB_DISCARDED;
        if (lb_put_meta(s, txn, l->peer_id, c.seqs[i], &m))
            return -1;
    }
    return (int)c.n;
}

/* ---- allocation ------------------------------------------------------------------ */

typedef struct {
    size_t want, got;
    lb_range *ranges;
    size_t max_ranges, n;
    uint64_t first_free_seq;
    int found_free;
} alloc_ctx;

/* Plans allocation from gaps of owned verified blocks, without changing anything. */
static int plan_alloc(uint64_t seq, lb_meta *m, void *arg)
{
    alloc_ctx *c = arg;
    if (m->state != LB_VERIFIED || m->owner != LB_OWNER_SELF)
        return 0;
    uint32_t pos = 0;
    for (uint32_t i = 0; i <= m->nused && c->got < c->want; i++) {
        uint32_t gap_end = i < m->nused ? m->used[i].start : m->size;
        if (gap_end > pos) {
            if (!c->found_free) {
                c->found_free = 1;
                c->first_free_seq = seq;
            }
            if (c->n >= c->max_ranges)
                return 1;
            uint32_t take = gap_end - pos;
            if (take > c->want - c->got)
                take = (uint32_t)(c->want - c->got);
            c->ranges[c->n++] = (lb_range){seq, pos, take};
            c->got += take;
        }
        if (i < m->nused)
            pos = m->used[i].end;
    }
    return c->got >= c->want;
}

static int mark_ranges(kme_store *s, MDB_txn *txn, const char *peer_id, const lb_range *ranges, size_t n,
                       unsigned char *out, int add)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        lb_meta m;
        if (lb_get_meta(s, txn, peer_id, ranges[i].seq, &m))
            return LB_DB;
        uint32_t start = ranges[i].offset, end = ranges[i].offset + ranges[i].length;
        if (add) {
            if (out && read_block_bytes(s, txn, peer_id, ranges[i].seq, start, ranges[i].length, out + off) != LB_OK) {
                OPENSSL_cleanse(out, off);
                return LB_DB;
            }
            if (lb_extents_add(&m, start, end) < 0)
                return LB_DB;
        } else {
            lb_extents_remove(&m, start, end);
        }
        off += ranges[i].length;
        if (lb_put_meta(s, txn, peer_id, ranges[i].seq, &m)) /* erases the block once used up */
            return LB_DB;
    }
    return LB_OK;
}

int lb_allocate(kme_store *s, MDB_txn *txn, lb_link *l, size_t nbytes, unsigned char *out, lb_range *ranges,
                size_t max_ranges, size_t *nranges)
{
    if (l->frozen)
        return LB_SHORT; /* restored, the peer's view not adopted yet: this end's may be stale */
    alloc_ctx c = {nbytes, 0, ranges, max_ranges, 0, 0, 0};
    if (for_each_meta(s, txn, l->peer_id, l->alloc_hint, plan_alloc, &c))
        return LB_DB;
    if (c.got < nbytes && l->alloc_hint > 0) {
        /* The hint may have run ahead: it is moved inside transactions that
         * can still abort. Look again from the first block before refusing. */
        l->alloc_hint = 0;
        c = (alloc_ctx){nbytes, 0, ranges, max_ranges, 0, 0, 0};
        if (for_each_meta(s, txn, l->peer_id, 0, plan_alloc, &c))
            return LB_DB;
    }
    if (c.got < nbytes)
        return LB_SHORT;
    int rc = mark_ranges(s, txn, l->peer_id, ranges, c.n, out, 1);
    if (rc == LB_OK) {
        *nranges = c.n;
        if (c.found_free)
            l->alloc_hint = c.first_free_seq;
    }
    return rc;
}

int lb_release(kme_store *s, MDB_txn *txn, lb_link *l, const lb_range *ranges, size_t nranges)
{
    for (size_t i = 0; i < nranges; i++) {
        MDB_val data;
        int rc = get_data(s, txn, l->peer_id, ranges[i].seq, &data);
        if (rc == MDB_NOTFOUND)
            continue; /* the block was used up and its bytes erased: they stay spent */
        if (rc)
            return LB_DB;
        if (ranges[i].seq < l->alloc_hint)
            l->alloc_hint = ranges[i].seq;
        if (mark_ranges(s, txn, l->peer_id, &ranges[i], 1, NULL, 0) != LB_OK)
            return LB_DB;
    }
    return LB_OK;
}

int lb_take_peer_ranges(kme_store *s, MDB_txn *txn, const lb_link *l, const lb_range *ranges, size_t nranges,
                        unsigned char *out)
{
    for (size_t i = 0; i < nranges; i++) {
        lb_meta m;
        int rc = lb_get_meta(s, txn, l->peer_id, ranges[i].seq, &m);
        if (rc)
            return rc == MDB_NOTFOUND && lb_is_spent(s, txn, l->peer_id, ranges[i].seq) ? LB_REUSED : LB_INVALID;
        uint64_t end = (uint64_t)ranges[i].offset + ranges[i].length;
        if (m.state != LB_VERIFIED || m.owner != LB_OWNER_PEER || ranges[i].length == 0 || end > m.size)
            return LB_INVALID;
        if (lb_extents_overlap(&m, ranges[i].offset, (uint32_t)end))
            return LB_REUSED;
        /* Ranges within one request must not overlap each other either. */
        for (size_t j = 0; j < i; j++)
            if (ranges[j].seq == ranges[i].seq && ranges[i].offset < ranges[j].offset + ranges[j].length &&
                ranges[j].offset < end)
                return LB_REUSED;
    }
    return mark_ranges(s, txn, l->peer_id, ranges, nranges, out, 1);
}

int lb_read_ranges(kme_store *s, MDB_txn *txn, const char *peer_id, const lb_range *ranges, size_t n,
                   unsigned char *out)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (read_block_bytes(s, txn, peer_id, ranges[i].seq, ranges[i].offset, ranges[i].length, out + off) != LB_OK) {
            OPENSSL_cleanse(out, off);
            return LB_DB;
        }
        off += ranges[i].length;
    }
    return LB_OK;
}

int lb_get_stock(kme_store *s, MDB_txn *txn, const lb_link *l, lb_stock *out)
{
    lb_counts c;
    int rc = counts_get(s, txn, l->peer_id, &c);
    *out = rc ? (lb_stock){0} : c.st;
    return rc;
}

typedef struct {
    lb_counts *c;
} mark_ctx;

static int count_block_and_mark(uint64_t seq, lb_meta *m, void *arg)
{
    lb_counts *c = ((mark_ctx *)arg)->c;
    count_block(&c->st, m, 1);
    if (seq >= c->mark)
        c->mark = seq + 1;
    return 0;
}

/* The counters of a store written before they existed: every block counted
 * once (it never erased a block, so the ever-verified and ever-discarded
 * counts are those of its records). */
static int count_from_blocks(kme_store *s, MDB_txn *txn, const char *peer_id, lb_counts *c)
{
    memset(c, 0, sizeof *c);
    mark_ctx x = {c};
    return for_each_meta(s, txn, peer_id, 0, count_block_and_mark, &x);
}

int lb_recount_stock(kme_store *s, MDB_txn *txn, const char *peer_id, lb_stock *out)
{
    lb_counts c;
    int rc = count_from_blocks(s, txn, peer_id, &c);
    *out = rc ? (lb_stock){0} : c.st;
    return rc;
}

int lb_erase_spent(kme_store *s, MDB_txn *txn, const char *peer_id)
{
    lb_counts c;
    int rc = counts_get(s, txn, peer_id, &c);
    if (rc || (rc = counts_put(s, txn, peer_id, &c)))
        return -1;
    unsigned char kb[80];
    size_t plen = strlen(peer_id) + 1;
    MDB_val k = {lb_block_key(kb, peer_id, 0), kb}, v;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, s->block_meta, &cur))
        return -1;
    int n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == plen + 8 && memcmp(k.mv_data, kb, plen) == 0) {
        lb_meta m;
        if (meta_decode(v.mv_data, v.mv_size, &m) == 0 && block_spent(&m)) {
            MDB_val dk = k;
            int drc = mdb_del(txn, s->block_data, &dk, NULL);
            if ((drc && drc != MDB_NOTFOUND) || mdb_cursor_del(cur, 0)) {
                n = -1;
                break;
            }
            n++;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* after a delete: the record that followed it */
    }
    mdb_cursor_close(cur);
    return n < 0 || (rc && rc != MDB_NOTFOUND) ? -1 : n;
}

/* ---- grants ------------------------------------------------------------------------ */

static uint64_t free_bytes_of(const lb_meta *m)
{
    return m->size - lb_extents_used_bytes(m);
}

/* Nothing of the block is used past its verification bytes. */
static int unused_block(const lb_meta *m)
{
    return !lb_extents_overlap(m, LB_MAC_BYTES, m->size);
}

static void lower_alloc_hint(lb_link *l, uint64_t seq)
{
    if (seq < l->alloc_hint)
        l->alloc_hint = seq;
}

typedef struct {
    int pending; /* collect pending blocks (else grantable ones) */
    uint64_t budget, bytes;
    uint64_t *seqs;
    size_t max, n;
} grant_ctx;

static int collect_grant(uint64_t seq, lb_meta *m, void *arg)
{
    grant_ctx *c = arg;
    uint64_t free_bytes = free_bytes_of(m);
    int take = c->pending ? m->granted && m->owner == LB_OWNER_PEER
                          : m->state == LB_VERIFIED && m->owner == LB_OWNER_SELF && !m->granted && unused_block(m) &&
                                free_bytes <= c->budget - c->bytes;
    if (take) {
        c->seqs[c->n++] = seq;
        c->bytes += free_bytes;
    }
    return c->n >= c->max || (!c->pending && c->bytes == c->budget);
}

int lb_grant_pick(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t max_bytes, uint64_t *seqs, size_t max, size_t *n,
                  uint64_t *bytes)
{
    grant_ctx c = {0, max_bytes, 0, seqs, max, 0};
    *n = 0;
    *bytes = 0;
    if (max == 0 || max_bytes == 0 || l->frozen)
        return LB_OK;
    if (for_each_meta(s, txn, l->peer_id, l->alloc_hint, collect_grant, &c))
        return LB_DB;
    for (size_t i = 0; i < c.n; i++) {
        lb_meta m;
        if (lb_get_meta(s, txn, l->peer_id, seqs[i], &m))
            return LB_DB;
        m.owner = LB_OWNER_PEER;
        m.granted = 1;
        if (lb_put_meta(s, txn, l->peer_id, seqs[i], &m))
            return LB_DB;
    }
    *n = c.n;
    *bytes = c.bytes;
    return LB_OK;
}

int lb_grant_pending(kme_store *s, MDB_txn *txn, const lb_link *l, uint64_t *seqs, size_t max, size_t *n,
                     uint64_t *bytes)
{
    grant_ctx c = {1, 0, 0, seqs, max, 0};
    *n = 0;
    *bytes = 0;
    if (max == 0)
        return LB_OK;
    if (for_each_meta(s, txn, l->peer_id, 0, collect_grant, &c))
        return LB_DB;
    *n = c.n;
    *bytes = c.bytes;
    return LB_OK;
}

/* Grantee: 1 when seq is (now) owned here, 0 when refused, -1 on failure.
 * *taken gets the free bytes of a block this call made owned here. */
static int accept_one(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, uint64_t *taken)
{
    lb_meta m;
    *taken = 0;
    int rc = lb_get_meta(s, txn, l->peer_id, seq, &m);
    if (rc == MDB_NOTFOUND)
        /* Erased here: a grantable block is unused, so this end took it
         * (an earlier copy of this grant) and used it up. Refusing it would
         * give it back to the grantor, bytes and all. */
        return lb_is_spent(s, txn, l->peer_id, seq) ? 1 : 0;
    if (rc)
        return -1;
    if (m.state == LB_UNVERIFIED || m.state == LB_LOCKED)
        return 2; /* verified at the other end, not yet here: ask again later */
    if (m.state != LB_VERIFIED)
        return 0;
    if (m.owner == LB_OWNER_SELF)
        return 1; /* taken by an earlier copy of this grant */
    if (m.owner != LB_OWNER_PEER || !unused_block(&m))
        return 0;
    /* Also ends a grant of this block from here still pending: it came back. */
    m.owner = LB_OWNER_SELF;
    m.granted = 0;
    if (lb_put_meta(s, txn, l->peer_id, seq, &m))
        return -1;
    lower_alloc_hint(l, seq);
    *taken = free_bytes_of(&m);
    return 1;
}

int lb_grant_accept(kme_store *s, MDB_txn *txn, lb_link *l, const uint64_t *seqs, size_t n, uint8_t *accepted,
                    uint64_t *taken_bytes)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t taken;
        int rc = accept_one(s, txn, l, seqs[i], &taken);
        if (rc < 0)
            return LB_DB;
        if (rc == 2)
            return LB_LATER; /* the caller aborts: nothing changes */
        accepted[i] = (uint8_t)rc;
        total += taken;
    }
    if (taken_bytes)
        *taken_bytes = total;
    return LB_OK;
}

int lb_grant_settle(kme_store *s, MDB_txn *txn, lb_link *l, const uint64_t *seqs, size_t n, const uint8_t *accepted,
                    uint64_t *confirmed_bytes)
{
    uint64_t confirmed = 0;
    for (size_t i = 0; i < n; i++) {
        lb_meta m;
        int rc = lb_get_meta(s, txn, l->peer_id, seqs[i], &m);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return LB_DB;
        if (!m.granted || m.owner != LB_OWNER_PEER)
            continue; /* settled already */
        m.granted = 0;
        if (accepted[i]) {
            confirmed += free_bytes_of(&m);
        } else {
            m.owner = LB_OWNER_SELF;
            lower_alloc_hint(l, seqs[i]);
        }
        if (lb_put_meta(s, txn, l->peer_id, seqs[i], &m))
            return LB_DB;
    }
    if (confirmed_bytes)
        *confirmed_bytes = confirmed;
    return LB_OK;
}
