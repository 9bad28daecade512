/* Prints a KME store as JSON without key material (see store_dump.h). */
#include "kme/store_dump.h"
#include "store/store.h"
#include "store/link_blocks.h"

#include <string.h>
#include <jansson.h>

static const char *const state_names[] = {"unverified", "locked", "verified", "discarded"};
static const char *const owner_names[] = {"none", "self", "peer"};

static json_t *dump_blocks(kme_store *s, MDB_txn *txn, const char *peer_id)
{
    json_t *arr = json_array();
    MDB_cursor *c;
    if (mdb_cursor_open(txn, s->block_meta, &c))
        return arr;
    size_t plen = strlen(peer_id) + 1;
    unsigned char kb[80];
    memcpy(kb, peer_id, plen);
    memset(kb + plen, 0, 8);
    MDB_val k = {plen + 8, kb}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == plen + 8 && memcmp(k.mv_data, kb, plen) == 0) {
        uint64_t seq = store_get_be64((unsigned char *)k.mv_data + plen);
        lb_meta m;
        if (lb_get_meta(s, txn, peer_id, seq, &m) == 0) {
            json_t *used = json_array();
            for (uint32_t i = 0; i < m.nused; i++)
                json_array_append_new(used, json_pack("[I,I]", (json_int_t)m.used[i].start, (json_int_t)m.used[i].end));
            json_t *block =
                json_pack("{s:I,s:s,s:s,s:I,s:o}", "seq", (json_int_t)seq, "state", state_names[m.state & 3], "owner",
                          owner_names[m.owner % 3], "size", (json_int_t)m.size, "used", used);
            if (block && m.granted)
                json_object_set_new(block, "granted", json_true()); /* given to the peer, not yet confirmed */
            json_array_append_new(arr, block);
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return arr;
}

/* Every record of database dbi, each appended to an array by row. */
typedef void (*dump_row)(const MDB_val *k, const MDB_val *v, json_t *arr);
static json_t *dump_db(MDB_txn *txn, MDB_dbi dbi, dump_row row)
{
    json_t *arr = json_array();
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(txn, dbi, &c))
        return arr;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        row(&k, &v, arr);
    mdb_cursor_close(c);
    return arr;
}

/* One key record: ID, master, slaves and who fetched; never the bytes.
 * Appended to arr when some slave has yet to fetch it (waiting), or when
 * every slave has (delivered: held for the fetch retry window). */
static void key_record_row(const MDB_val *kv, const MDB_val *vv, json_t *arr, int delivered)
{
    MDB_val k = *kv, v = *vv;
    const unsigned char *p = v.mv_data;
    uint32_t key_len;
    int64_t expires;
    memcpy(&key_len, p, 4);
    memcpy(&expires, p + 4, 8);
    size_t o = 12;
    int mlen = p[o++];
    json_t *slaves = json_array();
    const char *master = (const char *)p + o;
    o += (size_t)mlen;
    int nslaves = p[o++], waiting = 0;
    for (int i = 0; i < nslaves && o + 2 <= v.mv_size; i++) {
        json_array_append_new(
            slaves, json_pack("{s:s%,s:b}", "id", (const char *)p + o + 2, (size_t)p[o + 1], "fetched", p[o]));
        waiting += !p[o];
        o += 2 + p[o + 1];
    }
    if ((waiting == 0) != delivered) {
        json_decref(slaves);
        return;
    }
    json_array_append_new(arr, json_pack("{s:s%,s:s%,s:I,s:I,s:o}", "key_ID", (const char *)k.mv_data, k.mv_size,
                                         "master", master, (size_t)mlen, "size", (json_int_t)key_len * 8, "expires",
                                         (json_int_t)expires, "slaves", slaves));
}

static void waiting_key_row(const MDB_val *kv, const MDB_val *vv, json_t *arr)
{
    key_record_row(kv, vv, arr, 0);
}

static void delivered_key_row(const MDB_val *kv, const MDB_val *vv, json_t *arr)
{
    key_record_row(kv, vv, arr, 1);
}

/* Stock keys: IDs and designation only (the value is the sealed key). */
static void stock_row(const MDB_val *kv, const MDB_val *vv, json_t *arr)
{
    MDB_val k = *kv, v = *vv;
    const char *peer = k.mv_data, *master = peer + strlen(peer) + 1, *slave = master + strlen(master) + 1;
    const unsigned char *tail = (const unsigned char *)slave + strlen(slave) + 1;
    if ((size_t)(tail - (const unsigned char *)k.mv_data) + 4 + 8 + UUID_STR_LEN == k.mv_size &&
        v.mv_size >= SEAL_OVERHEAD)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I,s:s%}", "peer", peer, "master", master, "slave", slave,
                                             "size", (json_int_t)(v.mv_size - SEAL_OVERHEAD) * 8, "key_ID",
                                             (const char *)tail + 12, (size_t)UUID_STR_LEN));
}

/* Reservations whose answer was lost: their ranges stay spent until settled.
 * A record is be64 expires then the ranges; one of the older layout (ranges
 * alone) has no expires. */
static void in_doubt_row(const MDB_val *kv, const MDB_val *vv, json_t *arr)
{
    MDB_val k = *kv, v = *vv;
    const char *peer = k.mv_data;
    size_t plen = strlen(peer) + 1, head = v.mv_size % sizeof(kme_range) == 8 ? 8 : 0;
    json_t *ranges = json_array();
    for (size_t i = 0; i < (v.mv_size - head) / sizeof(kme_range); i++) {
        kme_range r; /* LMDB values are not aligned */
        memcpy(&r, (const unsigned char *)v.mv_data + head + i * sizeof r, sizeof r);
        json_array_append_new(ranges,
                              json_pack("[I,I,I]", (json_int_t)r.seq, (json_int_t)r.offset, (json_int_t)r.length));
    }
    if (k.mv_size != plen + UUID_STR_LEN) {
        json_decref(ranges);
        return;
    }
    json_t *e =
        json_pack("{s:s,s:s%,s:o}", "peer", peer, "key_ID", peer + plen, (size_t)UUID_STR_LEN, "ranges", ranges);
    if (e && head)
        json_object_set_new(e, "expires", json_integer((json_int_t)store_get_be64(v.mv_data)));
    json_array_append_new(arr, e);
}

/* The neighbours' reservations withdrawn here (resolve): refused should they arrive. */
static void withdrawn_row(const MDB_val *kv, const MDB_val *vv, json_t *arr)
{
    const char *peer = kv->mv_data;
    size_t plen = strlen(peer) + 1;
    if (kv->mv_size == plen + UUID_STR_LEN && vv->mv_size == 8)
        json_array_append_new(arr, json_pack("{s:s,s:s%,s:I}", "peer", peer, "key_ID", peer + plen,
                                             (size_t)UUID_STR_LEN, "expires", (json_int_t)store_get_be64(vv->mv_data)));
}

int store_dump(const kme_config *cfg, FILE *out, char *err, size_t errlen)
{
    kme_store s;
    if (store_key_open_store(&s, cfg->data_dir, cfg->store_max_mb, cfg->kme_id, &cfg->store_key, err, errlen) < 0)
        return -1;
    MDB_txn *txn;
    if (store_read_begin(&s, &txn)) {
        snprintf(err, errlen, "cannot read the store");
        store_close(&s);
        return -1;
    }
    json_t *links = json_object(), *marks = json_object();
    for (size_t i = 0; i < cfg->link_count; i++) {
        uint64_t mark = 0;
        json_object_set_new(links, cfg->links[i].peer_id, dump_blocks(&s, txn, cfg->links[i].peer_id));
        lb_ingest_mark(&s, txn, cfg->links[i].peer_id, &mark);
        json_object_set_new(marks, cfg->links[i].peer_id, json_integer((json_int_t)mark));
    }
    json_t *root =
        json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "kme_id", cfg->kme_id, "links", links, "ingest_marks", marks,
                  "keys", dump_db(txn, s.keys, waiting_key_row), "delivered", dump_db(txn, s.keys, delivered_key_row),
                  "stock", dump_db(txn, s.stock, stock_row), "in_doubt", dump_db(txn, s.in_doubt, in_doubt_row),
                  "withdrawn", dump_db(txn, s.withdrawn, withdrawn_row));
    mdb_txn_abort(txn);
    store_close(&s);
    json_dumpf(root, out, JSON_INDENT(1));
    fputc('\n', out);
    json_decref(root);
    return 0;
}
