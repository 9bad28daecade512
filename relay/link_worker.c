/* Link workers: file ingest into the store, the initiator side of the
 * key-caching protocol, stock refills; and the worker of the stock for KMEs
 * beyond the neighbours. */
#include "relay/link_worker.h"
#include "relay/link_resync.h"
#include "relay/link_source.h"
#include "relay/grant.h"
#include "relay/key_stock.h"
#include "relay/msg_auth.h"
#include "relay/reserve.h"
#include "store/store_usage.h"
#include "api/kme_msgs.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

#define INGEST_BATCH 64
#define VERIFY_BATCH 256
#define STALE_BLOCK_MS (10 * 60 * 1000)

/* ---- ingest ---------------------------------------------------------------- */

typedef struct {
    relay_link *link;
    uint64_t seq;
    unsigned char *data;
    size_t len;
    int existed; /* out: the seq was already stored */
    int spent;   /* out: the seq was used up (or passed over) and erased: never stored again */
} ingest_op_arg;

static int ingest_op(kme_store *s, MDB_txn *txn, void *arg)
{
    ingest_op_arg *a = arg;
    int rc = lb_ingest(s, txn, &a->link->lb, a->seq, a->data, a->len);
    a->existed = rc == LB_EXISTS;
    a->spent = rc == LB_SPENT;
    return rc == LB_OK || rc == LB_EXISTS || rc == LB_SPENT ? 0 : -1;
}

static int parse_block_name(const char *name, uint64_t *seq)
{
    char *end;
    if (name[0] < '0' || name[0] > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(name, &end, 10);
    if (errno || strcmp(end, ".key") != 0)
        return -1;
    *seq = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static unsigned char *read_block(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fd, &st) == 0 && st.st_size > LB_MAC_BYTES && st.st_size <= (1 << 24) &&
        (buf = malloc((size_t)st.st_size))) {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got != (size_t)st.st_size) {
            OPENSSL_cleanse(buf, got);
            free(buf);
            buf = NULL;
        }
        *len = got;
    }
    close(fd);
    return buf;
}

/* Keeps in seqs the (up to INGEST_BATCH) lowest block seqs of the directory
 * not above bound; *top gets the highest seq seen. -1 if it cannot be read. */
static int scan_lowest(const char *dir, uint64_t bound, uint64_t *seqs, size_t *n, uint64_t *top)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    *n = 0;
    *top = 0;
    while ((e = readdir(d))) {
        uint64_t seq;
        if (parse_block_name(e->d_name, &seq) != 0)
            continue;
        if (seq > *top)
            *top = seq;
        if (seq > bound)
            continue;
        if (*n < INGEST_BATCH) {
            seqs[(*n)++] = seq;
            continue;
        }
        size_t hi = 0; /* replace the highest kept, if this one is lower */
        for (size_t i = 1; i < *n; i++)
            if (seqs[i] > seqs[hi])
                hi = i;
        if (seq < seqs[hi])
            seqs[hi] = seq;
    }
    closedir(d);
    return 0;
}

int link_ingest_once(relay_node *k, relay_link *l)
{
    const relay_link_config *lc = &k->cfg.links[l->index];
    if (store_check_high_water(k->store))
        return 0; /* the store is above its high-water mark: the files wait */
    /* A seq below the link's ingest mark is refused as spent, so the blocks
     * go in lowest first and none may be passed over. A block file named
     * while the directory is read may be missed by that reading, so a second
     * reading takes the lowest seqs up to the highest the first one saw: the
     * device names its files in order, so every seq below that one was named
     * before the second reading began. */
    uint64_t seqs[INGEST_BATCH], top;
    size_t n = 0;
    if (scan_lowest(lc->key_dir, UINT64_MAX, seqs, &n, &top))
        return -1;
    if (n == 0)
        return 0;
    if (scan_lowest(lc->key_dir, top, seqs, &n, &top))
        return -1;
    if (n == 0)
        return 0;
    qsort(seqs, n, sizeof seqs[0], cmp_u64);

    lb_stock stock = {0};
    MDB_txn *rtxn;
    if (store_read_begin(k->store, &rtxn) == 0) {
        lb_get_stock(k->store, rtxn, &l->lb, &stock);
        mdb_txn_abort(rtxn);
    }
    uint64_t unused = stock.owned_free + stock.peer_free + stock.unverified;
    int stored = 0;
    for (size_t i = 0; i < n && i < INGEST_BATCH; i++) {
        if (unused >= (uint64_t)k->cfg.link_stock_max_bytes)
            break; /* full: leave the files for later */
        char path[1200];
        snprintf(path, sizeof path, "%s/%llu.key", lc->key_dir, (unsigned long long)seqs[i]);
        ingest_op_arg a = {l, seqs[i], NULL, 0, 0, 0};
        a.data = read_block(path, &a.len);
        if (!a.data) {
            log_warn("link %s: cannot read block file %s; removing it", lc->peer_id, path);
            unlink(path);
            continue;
        }
        int rc = store_commit(k->store, ingest_op, &a);
        OPENSSL_cleanse(a.data, a.len);
        free(a.data);
        if (rc != 0) {
            log_error("link %s: cannot store block %llu", lc->peer_id, (unsigned long long)seqs[i]);
            break;
        }
        if (a.existed)
            log_warn("link %s: block %llu was already stored; removing the duplicate file", lc->peer_id,
                     (unsigned long long)seqs[i]);
        else if (a.spent)
            log_warn("link %s: block %llu is below the link's ingest mark (used up, or arrived after later blocks); "
                     "refused as spent, removing the file",
                     lc->peer_id, (unsigned long long)seqs[i]);
        else {
            stored++;
            unused += a.len;
            atomic_fetch_add(&l->ingested_bytes, a.len);
        }
        unlink(path); /* only after the commit */
    }
    return stored;
}

/* ---- verification (initiator) ------------------------------------------------ */

struct link_verify_txn {
    relay_link *link;
    uint64_t txn_hash;
    int64_t now, deadline;
    kme_verify_request req;
    kme_verify_response resp;
    int settled;
    size_t discarded;       /* blocks this transaction discarded for differing tags */
    auth_answer_key answer; /* the key the verdicts are tagged with (set when the request is tagged) */
};

/* Locks the blocks and tags the request with link key this end owns; an end
 * that owns none yet (a new link) sends it untagged: its block tags alone
 * then decide what is verified. */
static int lock_op(kme_store *s, MDB_txn *txn, void *arg)
{
    link_verify_txn *a = arg;
    int n = lb_lock_for_verify(s, txn, &a->link->lb, a->txn_hash, a->now, a->deadline, VERIFY_BATCH, a->req.seqs,
                               a->req.tags);
    if (n < 0)
        return -1;
    a->req.count = (size_t)n;
    if (n == 0)
        return 0;
    int arc = auth_seal_from_link(s, txn, &a->link->lb, AUTH_VERIFY, &a->req, &a->answer);
    return arc == LM_OK || arc == LM_SHORT ? 0 : -1;
}

static int apply_op(kme_store *s, MDB_txn *txn, void *arg)
{
    link_verify_txn *a = arg;
    a->settled = 0;
    a->discarded = 0;
    for (size_t i = 0; i < a->resp.count; i++) {
        /* Only blocks that were part of this transaction. */
        int ours = 0;
        for (size_t j = 0; j < a->req.count && !ours; j++)
            ours = a->req.seqs[j] == a->resp.seqs[i];
        if (!ours)
            continue;
        lb_meta m;
        int rc = lb_get_meta(s, txn, a->link->lb.peer_id, a->resp.seqs[i], &m);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return -1;
        /* else settled already (and perhaps used up and erased) */
        int open = rc == 0 && m.state == LB_LOCKED && m.txn_hash == a->txn_hash;
        if (lb_apply_verdict(s, txn, &a->link->lb, a->resp.seqs[i], a->txn_hash,
                             (enum lb_verdict)a->resp.verdicts[i]) != LB_OK)
            return -1;
        if (a->resp.verdicts[i] == KME_MISMATCH && open) {
            a->discarded++;
            log_warn("link %s: block %llu differs between the two ends; discarded", a->link->lb.peer_id,
                     (unsigned long long)a->resp.seqs[i]);
        }
        if (a->resp.verdicts[i] != KME_MISSING)
            a->settled++;
    }
    return 0;
}

static uint64_t hash_txn_id(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h ? h : 1;
}

link_verify_txn *link_verify_begin(relay_node *k, relay_link *l, int *rc)
{
    link_verify_txn *t = calloc(1, sizeof *t);
    *rc = -1;
    if (!t)
        return NULL;
    uuid_generate(t->req.txn_id);
    t->req.timeout_ms = k->cfg.verify_timeout_ms;
    t->link = l;
    t->txn_hash = hash_txn_id(t->req.txn_id);
    t->now = clock_wall_ms();
    t->deadline = t->now + k->cfg.verify_timeout_ms;
    if (store_commit(k->store, lock_op, t) == 0)
        *rc = 0;
    if (*rc < 0 || t->req.count == 0) {
        link_verify_free(t);
        return NULL;
    }
    return t;
}

char *link_verify_request_text(const link_verify_txn *t, size_t *blocks)
{
    *blocks = t->req.count;
    return kme_verify_request_to_json(&t->req);
}

int link_verify_finish(relay_node *k, link_verify_txn *t, const char *body, size_t len)
{
    relay_link *l = t->link;
    etsi_problem p;
    if (kme_verify_response_from_json(body, len, &t->resp, &p) < 0 || strcmp(t->resp.txn_id, t->req.txn_id)) {
        log_warn("link %s: bad verification answer: %s", l->lb.peer_id, p.message);
        return -1;
    }
    /* The verdicts on a tagged request count only with the answer key's tag. */
    if (t->answer.set && !auth_answer_ok(&t->answer, 200, "", &t->resp, t->resp.has_tag, t->resp.tag)) {
        log_warn("link %s: the verdicts on %zu blocks are not authentic; they stay locked until the timeout and "
                 "are retried",
                 l->lb.peer_id, t->req.count);
        return -1;
    }
    if (store_commit(k->store, apply_op, t) != 0)
        return -1;
    k->hooks.verify_failed(k->hooks.ctx, l, t->discarded);
    return t->settled;
}

void link_verify_free(link_verify_txn *t)
{
    if (!t)
        return;
    auth_answer_key_wipe(&t->answer);
    free(t);
}

int link_verify_once(relay_node *k, relay_link *l)
{
    int rc;
    size_t blocks = 0;
    link_verify_txn *t = link_verify_begin(k, l, &rc);
    if (!t)
        return rc; /* 0: nothing to verify */
    char *body = link_verify_request_text(t, &blocks);
    peer_reply reply;
    memset(&reply, 0, sizeof reply);
    rc = body ? peer_post(k->peers, l->index, "/kme/v1/verify", body, k->cfg.verify_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    int result = -1;
    if (rc < 0 || reply.http_status != 200) {
        atomic_store(&l->peer_up, rc == 0);
        log_warn("link %s: verification of %zu blocks failed (%s); they stay locked until the timeout and are retried",
                 l->lb.peer_id, blocks, rc < 0 ? reply.error : "peer refused");
    } else {
        atomic_store(&l->peer_up, 1);
        result = link_verify_finish(k, t, reply.body, reply.len);
    }
    peer_reply_clear(&reply);
    link_verify_free(t);
    return result;
}

/* While the neighbour is down: an empty verification tells when it is back. */
static void probe_peer(relay_node *k, relay_link *l)
{
    kme_verify_request *req = calloc(1, sizeof *req);
    if (!req)
        return;
    uuid_generate(req->txn_id);
    char *body = kme_verify_request_to_json(req);
    peer_reply reply;
    int rc = body ? peer_post(k->peers, l->index, "/kme/v1/verify", body, k->cfg.peer_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    if (rc == 0 && reply.http_status == 200 && !atomic_exchange(&l->peer_up, 1))
        log_info("link %s: neighbour reachable again", l->lb.peer_id);
    if (body)
        peer_reply_clear(&reply);
    free(req);
}

/* ---- the worker loop ------------------------------------------------------------ */

typedef struct {
    relay_link *link;
    int64_t now;
} stale_arg;

static int stale_op(kme_store *s, MDB_txn *txn, void *arg)
{
    stale_arg *a = arg;
    return lb_discard_stale(s, txn, &a->link->lb, a->now, STALE_BLOCK_MS) < 0 ? -1 : 0;
}

typedef struct {
    relay_node *k;
    relay_link *l;
} worker_arg;

/* Once per start: the link's counters, and the erasure of spent blocks a
 * store from before erasure left behind. */
static int erase_spent_op(kme_store *s, MDB_txn *txn, void *arg)
{
    relay_link *l = arg;
    int n = lb_erase_spent(s, txn, l->lb.peer_id);
    if (n > 0)
        log_info("link %s: erased %d used up or discarded blocks", l->lb.peer_id, n);
    return n < 0 ? -1 : 0;
}

static void *worker_main(void *arg)
{
    worker_arg *w = arg;
    relay_node *k = w->k;
    relay_link *l = w->l;
    free(w);
    relay_dest *d = relay_dest_get(k, l->lb.peer_id, 1);
    int64_t last_stale = 0, last_probe = 0;
    if (store_commit(k->store, erase_spent_op, l) != 0)
        log_warn("link %s: cannot count its blocks; the stock is counted again at the next change", l->lb.peer_id);
    while (!stop_signal_raised(&k->stop)) {
        if (!atomic_load(&l->peer_up) && clock_wall_ms() - last_probe >= 1000) {
            last_probe = clock_wall_ms();
            probe_peer(k, l);
        }
        int ingested = link_source_ingest_once(k, l);
        int settled = l->initiator ? link_verify_once(k, l) : 0;
        long refilled = d ? stock_refill_once(k, d) : 0;
        if (atomic_load(&l->peer_up)) {
            link_resync_once(k, l);
            reserve_resolve_once(k, l);
            if (d)
                stock_send_claims(k, d);
            grant_once(k, l);
        }
        if (clock_wall_ms() - last_stale > 60000) {
            stale_arg sa = {l, clock_wall_ms()};
            store_commit(k->store, stale_op, &sa);
            last_stale = sa.now;
        }
        if (ingested <= 0 && settled <= 0 && refilled <= 0 && relay_sleep(k, settled < 0 ? 500 : 100))
            break;
    }
    if (d && atomic_load(&l->peer_up))
        stock_send_claims(k, d); /* best effort: untold keys just expire later */
    return NULL;
}

/* Stock for the KMEs beyond the neighbours: refilled by relay, claims passed along the route. */
static void *remote_stock_main(void *arg)
{
    relay_node *k = arg;
    while (!stop_signal_raised(&k->stop)) {
        long refilled = 0;
        size_t n = atomic_load(&k->dest_count);
        for (size_t i = 0; i < n && !stop_signal_raised(&k->stop); i++) {
            relay_dest *d = &k->dests[i];
            if (d->link)
                continue;
            refilled += stock_refill_once(k, d);
            stock_send_claims(k, d);
        }
        if (refilled <= 0 && relay_sleep(k, 100))
            break;
    }
    size_t n = atomic_load(&k->dest_count);
    for (size_t i = 0; i < n; i++)
        if (!k->dests[i].link)
            stock_send_claims(k, &k->dests[i]);
    return NULL;
}

int link_workers_start(relay_node *k)
{
    if (pthread_create(&k->remote_stock_worker, NULL, remote_stock_main, k) != 0)
        return -1;
    k->remote_stock_started = 1;
    for (size_t i = 0; i < k->cfg.link_count; i++) {
        relay_link *l = &k->links[i];
        worker_arg *w = malloc(sizeof *w);
        if (!w)
            return -1;
        *w = (worker_arg){k, l};
        if (pthread_create(&l->worker, NULL, worker_main, w) != 0) {
            free(w);
            return -1;
        }
        l->worker_started = 1;
    }
    return 0;
}

void link_workers_join(relay_node *k)
{
    if (k->remote_stock_started)
        pthread_join(k->remote_stock_worker, NULL);
    k->remote_stock_started = 0;
    for (size_t i = 0; i < k->cfg.link_count; i++)
        if (k->links[i].worker_started)
            pthread_join(k->links[i].worker, NULL);
}
