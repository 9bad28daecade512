/* Routes inter-KME requests (verify, reserve, resolve, claimed, relay,
 * advert, grant, link_view, link_ids) from the neighbour their TLS client certificate names;
 * answers the verification side of the key-caching protocol. Each handler
 * checks its message's own tag or signature before acting. */
#include "relay/kme_port.h"
#include "api/kme_msgs.h"
#include "relay/grant.h"
#include "relay/key_stock.h"
#include "relay/link_resync.h"
#include "relay/link_source.h"
#include "relay/msg_auth.h"
#include "relay/relay.h"
#include "relay/reserve.h"
#include "relay/router.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    relay_link *l;
    const kme_verify_request *req;
    kme_verify_response *resp;
    size_t discarded; /* blocks this answer discarded for differing tags */
} respond_arg;

static int respond_op(kme_store *s, MDB_txn *txn, void *arg)
{
    respond_arg *a = arg;
    a->resp->count = 0;
    a->discarded = 0;
    int tagged = a->req->auth.key_count > 0;
    /* A tagged request's MAC keys go in the commit of its verdicts (the tag
     * was checked already, in a read transaction). */
    if (tagged && auth_take(s, txn, &a->l->lb, AUTH_VERIFY, a->req) != LM_OK)
        return -1;
    /* A block whose tags differ is discarded on the word of an untagged
     * request only while the neighbour owns too little link key to tag one;
     * otherwise such a request (anyone with its TLS key could send it)
     * verifies what matches and discards nothing. */
    int may_discard = tagged || auth_untagged_ok(s, txn, &a->l->lb, 0);
    for (size_t i = 0; i < a->req->count; i++) {
        enum lb_verdict v;
        lb_meta m;
        int rc = lb_get_meta(s, txn, a->l->lb.peer_id, a->req->seqs[i], &m);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return -1;
        int open = rc == 0 && (m.state == LB_UNVERIFIED || m.state == LB_LOCKED); /* else settled already */
        if (lb_respond_verify(s, txn, &a->l->lb, a->req->seqs[i], a->req->tags[i], may_discard, &v) != LB_OK)
            return -1;
        if (v == LB_MISMATCH && open && may_discard) {
            a->discarded++;
            log_warn("link %s: block %llu differs between the two ends; discarded", a->l->lb.peer_id,
                     (unsigned long long)a->req->seqs[i]);
        }
        a->resp->seqs[a->resp->count] = a->req->seqs[i];
        a->resp->verdicts[a->resp->count++] = (uint8_t)v;
    }
    return 0;
}

void kme_port_verify(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    kme_verify_request *vr = calloc(1, sizeof *vr);
    kme_verify_response *out = calloc(1, sizeof *out);
    auth_answer_key answer;
    etsi_problem p;
    int arc = LM_OK;
    memset(&answer, 0, sizeof answer);
    if (!vr || !out) {
        http_error(resp, 503, "out of memory", NULL);
    } else if (kme_verify_request_from_json(req->body, req->body_len, vr, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
    } else if (vr->auth.key_count && (arc = auth_check(k->store, &l->lb, AUTH_VERIFY, vr, &answer)) != LM_OK) {
        auth_check_error(resp, arc, AUTH_VERIFY, l->lb.peer_id); /* the tag first: nothing changed */
    } else {
        memcpy(out->txn_id, vr->txn_id, sizeof out->txn_id);
        respond_arg a = {l, vr, out, 0};
        if (store_commit(k->store, respond_op, &a) != 0) {
            http_error(resp, 503, "key store failure", "the verification could not be committed");
        } else {
            k->hooks.verify_failed(k->hooks.ctx, l, a.discarded);
            atomic_store(&l->peer_up, 1);
            /* The verdicts of a tagged request are tagged with its answer key. */
            out->has_tag = answer.set && auth_answer_tag(&answer, 200, "", out, out->tag) == 0;
            resp->status = 200;
            resp->body = kme_verify_response_to_json(out);
        }
    }
    auth_answer_key_wipe(&answer);
    free(vr);
    free(out);
}

enum {
    PORT_VERIFY,
    PORT_RESERVE,
    PORT_RESOLVE,
    PORT_CLAIMED,
    PORT_RELAY,
    PORT_ADVERT,
    PORT_GRANT,
    PORT_LINK_VIEW,
    PORT_LINK_IDS
};

typedef struct {
    relay_node *k;
    relay_link *l;
    http_request req; /* body and path stay valid until the request is answered */
    int op;
    http_response resp;
} port_work;

static void port_job(void *arg)
{
    port_work *w = arg;
    if (w->op == PORT_VERIFY)
        kme_port_verify(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_RESERVE)
        reserve_handle(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_RESOLVE)
        reserve_resolve_handle(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_RELAY)
        relay_handle(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_ADVERT)
        router_advert_handle(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_GRANT)
        grant_handle(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_LINK_VIEW)
        link_resync_view_handle(w->k, w->l, &w->req, &w->resp);
    else if (w->op == PORT_LINK_IDS)
        link_source_ids_handle(w->k, w->l, &w->req, &w->resp);
    else
        stock_claimed_handle(w->k, w->l, &w->req, &w->resp);
}

static void port_finish(void *arg, http_response *resp)
{
    port_work *w = arg;
    *resp = w->resp;
    free(w);
}

void kme_port_handle(void *ctx, const http_request *req, http_response *resp)
{
    relay_node *k = ctx;
    int link = req->auth == HTTP_AUTH_OK ? relay_link_index(k, req->client_cn) : -1;
    if (link < 0) {
        log_warn("KME port: refused a client that is not a configured neighbour (%s)",
                 req->auth == HTTP_AUTH_OK ? req->client_cn
                 : req->auth_reason        ? req->auth_reason
                                           : "no trusted certificate");
        http_error(resp, 401, "unauthorized", "only a configured neighbour KME may call this API");
        return;
    }
    relay_link *l = &k->links[link];
    if (req->body_too_large) {
        http_error(resp, 400, "request body too large", NULL);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        http_error(resp, 405, "method not allowed", "the inter-KME API takes POST");
        return;
    }
    int op = strcmp(req->path, "/kme/v1/verify") == 0      ? PORT_VERIFY
             : strcmp(req->path, "/kme/v1/reserve") == 0   ? PORT_RESERVE
             : strcmp(req->path, "/kme/v1/resolve") == 0   ? PORT_RESOLVE
             : strcmp(req->path, "/kme/v1/claimed") == 0   ? PORT_CLAIMED
             : strcmp(req->path, "/kme/v1/relay") == 0     ? PORT_RELAY
             : strcmp(req->path, "/kme/v1/advert") == 0    ? PORT_ADVERT
             : strcmp(req->path, "/kme/v1/grant") == 0     ? PORT_GRANT
             : strcmp(req->path, "/kme/v1/link_view") == 0 ? PORT_LINK_VIEW
             : strcmp(req->path, "/kme/v1/link_ids") == 0  ? PORT_LINK_IDS
                                                           : -1;
    if (op < 0) {
        http_error(resp, 404, "not found", "no inter-KME operation at %.200s", req->path);
        return;
    }
    /* Both commit and may take a while: off the event threads. */
    port_work *w = calloc(1, sizeof *w);
    if (!w) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    *w = (port_work){k, l, *req, op, {0, NULL, 0}};
    http_offload(req, port_job, port_finish, w);
}
