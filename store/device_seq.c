/* The block seq counter of a link fed by QKD devices (see device_seq.h). */
#include "store/device_seq.h"
#include "store/link_blocks.h"

#include <string.h>

static size_t counter_key(unsigned char *buf, const char *peer_id)
{
    size_t n = strlen(peer_id);
    memcpy(buf, "device_seq", 11);
    memcpy(buf + 11, peer_id, n);
    return n + 11;
}

int device_seq_take(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t floor, uint64_t n, uint64_t *first)
{
    unsigned char kb[96], vb[8];
    MDB_val k = {counter_key(kb, peer_id), kb}, v;
    uint64_t next = 1, mark = 0;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        next = store_get_be64(v.mv_data);
    else if (rc == 0)
        return MDB_CORRUPTED;
    else if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = lb_ingest_mark(s, txn, peer_id, &mark)) != 0)
        return rc;
    if (next < mark)
        next = mark;
    if (next < floor)
        next = floor;
    if (next == 0)
        next = 1;
    *first = next;
    store_put_be64(vb, next + n);
    v = (MDB_val){sizeof vb, vb};
    return mdb_put(txn, s->meta, &k, &v, 0);
}
