/* Resynchronising a restored store's links: the worker's side and the
 * neighbour's (see link_resync.h). */
#include "relay/link_resync.h"
#include "relay/key_stock.h"
#include "relay/peer_client.h"
#include "runtime/log.h"
#include "store/link_resync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int freeze_op(kme_store *s, MDB_txn *txn, void *arg)
{
    relay_node *k = arg;
    for (size_t i = 0; i < k->cfg.link_count; i++) {
        relay_link *l = &k->links[i];
        l->lb.frozen = lr_pending(s, txn, l->lb.peer_id);
        atomic_store(&l->resync_needed, l->lb.frozen);
        if (l->lb.frozen)
            log_warn("link %s: the store was restored from a backup: none of the link's key is used until %s's view "
                     "of it is adopted",
                     l->lb.peer_id, l->lb.peer_id);
    }
    return 0;
}

int link_resync_load(relay_node *k)
{
    return store_commit(k->store, freeze_op, k) == 0 ? 0 : -1;
}

typedef struct {
    relay_link *l;
    const kme_link_view *view;
    size_t kept, dropped;
} adopt_arg;

static int adopt_op(kme_store *s, MDB_txn *txn, void *arg)
{
    adopt_arg *a = arg;
    return lr_adopt_view(s, txn, &a->l->lb, a->view, &a->kept, &a->dropped);
}

static int unfreeze_op(kme_store *s, MDB_txn *txn, void *arg)
{
    (void)s, (void)txn;
    ((relay_link *)arg)->lb.frozen = 0;
    return 0;
}

int link_resync_once(relay_node *k, relay_link *l)
{
    if (!atomic_load(&l->resync_needed))
        return 0;
    peer_reply reply;
    memset(&reply, 0, sizeof reply);
    kme_link_view view;
    etsi_problem p;
    uint64_t *have = NULL;
    size_t nhave = 0;
    MDB_txn *txn;
    char *body = NULL;
    if (store_read_begin(k->store, &txn) == 0) {
        if (lr_seqs_of(k->store, txn, l->lb.peer_id, &have, &nhave) == 0)
            body = kme_link_view_request_to_json(have, nhave);
        mdb_txn_abort(txn);
    }
    free(have);
    int rc = body ? peer_post(k->peers, l->index, "/kme/v1/link_view", body, k->cfg.peer_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    if (rc < 0 && !reply.error[0])
        snprintf(reply.error, sizeof reply.error, "cannot read this end's blocks");
    if (rc < 0 || reply.http_status != 200) {
        log_warn("link %s: cannot get the neighbour's view of the link yet (%s); the link stays unused", l->lb.peer_id,
                 rc < 0 ? reply.error : "refused");
        peer_reply_clear(&reply);
        return -1;
    }
    rc = kme_link_view_from_json(reply.body, reply.len, &view, &p);
    peer_reply_clear(&reply);
    if (rc < 0) {
        log_warn("link %s: the neighbour's view of the link is not valid (%s); the link stays unused", l->lb.peer_id,
                 p.detail);
        return -1;
    }
    adopt_arg a = {l, &view, 0, 0};
    rc = store_commit(k->store, adopt_op, &a) == 0 && store_commit(k->store, unfreeze_op, l) == 0 ? 1 : -1;
    if (rc == 1)
        atomic_store(&l->resync_needed, 0);
    if (rc == 1)
        log_info("link %s: resynchronised after the restore: %zu blocks kept, %zu discarded, ingest mark %llu; the "
                 "link is in use again",
                 l->lb.peer_id, a.kept, a.dropped, (unsigned long long)view.mark);
    else
        log_error("link %s: cannot adopt the neighbour's view of the link; the link stays unused", l->lb.peer_id);
    kme_link_view_clear(&view);
    return rc;
}

typedef struct {
    const char *peer_id;
    const uint64_t *have;
    size_t nhave, discarded;
    kme_link_view *out;
} answer_arg;

static int answer_op(kme_store *s, MDB_txn *txn, void *arg)
{
    answer_arg *a = arg;
    return lr_answer_view(s, txn, a->peer_id, a->have, a->nhave, a->out, &a->discarded);
}

void link_resync_view_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    uint64_t *have;
    size_t nhave;
    etsi_problem p;
    if (kme_link_view_request_from_json(req->body, req->body_len, &have, &nhave, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    kme_link_view view;
    answer_arg a = {l->lb.peer_id, have, nhave, 0, &view};
    int rc = store_commit(k->store, answer_op, &a);
    free(have);
    if (rc != 0) {
        http_error(resp, 503, "key store failure", "the link's blocks could not be read");
        return;
    }
    /* The keys this KME delivered there ahead of demand went with its old store. */
    relay_dest *d = relay_dest_get(k, l->lb.peer_id, 0);
    long dropped = d ? stock_drop_all(k, d) : 0;
    resp->body = kme_link_view_to_json(&view);
    kme_link_view_clear(&view);
    if (!resp->body) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    resp->status = 200;
    log_warn("link %s: the neighbour restored its store from a backup: sent it this end's view of the link; "
             "discarded %zu blocks it no longer has and %ld stock keys held for it",
             l->lb.peer_id, a.discarded, dropped);
}
