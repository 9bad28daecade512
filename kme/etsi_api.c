/* ETSI GS QKD 014 request handling: authentication, routing, validation and answers. */
#include "kme/etsi_api.h"
#include "kme/audit.h"
#include "kme/context.h"
#include "store/key_records.h"
#include "store/store_usage.h"
#include "kme/key_supply.h"
#include "runtime/log.h"
#include "kme/metrics.h"

#include <string.h>
#include <microhttpd.h>

#define PREFIX "/api/v1/keys/"

typedef struct {
    const char *const *allowed;
    const char *unknown;
} query_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    query_check *q = cls;
    for (const char *const *a = q->allowed; *a; a++)
        if (strcmp(key, *a) == 0)
            return MHD_YES;
    q->unknown = key;
    return MHD_NO;
}

/* Refuses query parameters the operation does not define. */
static int query_ok(const http_request *req, const char *const *allowed, http_response *resp)
{
    query_check q = {allowed, NULL};
    MHD_get_connection_values(req->connection, MHD_GET_ARGUMENT_KIND, check_arg, &q);
    if (q.unknown) {
        http_error(resp, 400, "invalid query parameter", "unknown query parameter '%.64s'", q.unknown);
        return 0;
    }
    return 1;
}

/* Keys committed for an SAE, about to be answered: the audit log and the metrics. */
static void note_handed_out(kme_context *k, const char *sae, const char *role, const etsi_key_container *keys)
{
    size_t bits = 0;
    for (size_t i = 0; i < keys->count; i++)
        bits += keys->keys[i].key_len * 8;
    kme_metrics_delivered(k, sae, role, keys->count, bits);
}

static void answer_keys(http_response *resp, etsi_key_container *keys)
{
    resp->status = 200;
    resp->body = etsi_key_container_to_json(keys);
    etsi_key_container_clear(keys);
}

static void get_status(kme_context *k, const char *caller, const char *slave, http_response *resp)
{
    char kme[ETSI_ID_MAX + 1];
    supply_where where = supply_locate_sae(k, slave, kme);
    if (where == SUPPLY_UNKNOWN) {
        http_error(resp, 400, "unknown slave SAE", "SAE %s is not known to %s", slave, k->cfg.kme_id);
        return;
    }
    etsi_status st;
    memset(&st, 0, sizeof st);
    snprintf(st.source_kme_id, sizeof st.source_kme_id, "%s", k->cfg.kme_id);
    snprintf(st.target_kme_id, sizeof st.target_kme_id, "%s", where == SUPPLY_HERE ? k->cfg.kme_id : kme);
    snprintf(st.master_sae_id, sizeof st.master_sae_id, "%s", caller);
    snprintf(st.slave_sae_id, sizeof st.slave_sae_id, "%s", slave);
    st.limits = kme_config_limits(&k->cfg);
    if (where == SUPPLY_HERE)
        st.limits.max_key_count = kme_config_max_held(&k->cfg, slave);
    st.stored_key_count = supply_stored_key_count(k, caller, slave);
    resp->status = 200;
    resp->body = etsi_status_to_json(&st);
}

/* A write the store refused while its map is used up (a store failure, or
 * keys that could not be stored): the answer names the full store (still
 * 503) rather than a failure. */
static void name_full_store(kme_context *k, http_response *resp)
{
    etsi_problem p;
    if (resp->status != 503 || !resp->body || etsi_error_from_json(resp->body, strlen(resp->body), &p) != 0 ||
        (strcmp(p.message, "key store failure") != 0 && !strstr(p.detail, "could not be stored")) ||
        !store_is_full(&k->store))
        return;
    etsi_text_free(resp->body);
    http_error(resp, 503, "key store full",
               "the key store has no room left (store_max_mb %ld); keys fetched or expired make room again",
               k->cfg.store_max_mb);
    log_warn("key store full: a request that needed to store keys was refused (store_max_mb %ld)", k->cfg.store_max_mb);
}

/* ---- enc_keys: one local commit without blocking, or the blocking path on a worker ---- */

typedef struct {
    kme_context *k;
    char caller[ETSI_ID_MAX + 1], slave[ETSI_ID_MAX + 1];
    etsi_key_request kr;
    http_deferred *d;
    supply_request supply;
    http_response answer; /* blocking path: the encoded answer, or the error */
} enc_work;

static void enc_resume(void *arg)
{
    http_resume(((enc_work *)arg)->d);
}

static void enc_blocking(void *arg)
{
    enc_work *w = arg;
    supply_request *a = &w->supply;
    if (supply_run(a) == 0) { /* committed; the answer is encoded here, off the event threads */
        audit_enc(w->k, w->caller, w->slave, &w->kr, &a->out, &a->trace);
        note_handed_out(w->k, w->caller, "master", &a->out);
        answer_keys(&w->answer, &a->out);
    } else {
        w->answer = a->resp;
    }
    supply_request_clear(a);
}

static void enc_finish_common(enc_work *w, int rc, etsi_key_container *keys, http_response *err, http_response *resp)
{
    if (rc == 0) {
        log_debug("enc_keys: %ld keys of %ld bits for master %s, slave %s", w->kr.number, w->kr.size, w->caller,
                  w->slave);
        answer_keys(resp, keys);
    } else {
        *resp = *err;
        name_full_store(w->k, resp);
    }
    etsi_key_request_clear(&w->kr);
    free(w);
}

static void enc_finish_fast(void *arg, http_response *resp)
{
    enc_work *w = arg;
    supply_request *a = &w->supply;
    supply_finish(a);
    if (a->rc == 0) {
        audit_enc(w->k, w->caller, w->slave, &w->kr, &a->out, &a->trace);
        note_handed_out(w->k, w->caller, "master", &a->out);
    }
    supply_request_clear(a);
    enc_finish_common(w, a->rc, &a->out, &a->resp, resp);
}

static void enc_finish_blocking(void *arg, http_response *resp)
{
    enc_work *w = arg;
    if (w->supply.rc == 0)
        log_debug("enc_keys: %ld keys of %ld bits for master %s, slave %s", w->kr.number, w->kr.size, w->caller,
                  w->slave);
    *resp = w->answer; /* the answer, or the error */
    if (w->supply.rc != 0)
        name_full_store(w->k, resp);
    etsi_key_request_clear(&w->kr);
    free(w);
}

static void enc_keys(kme_context *k, const http_request *req, const char *caller, const char *slave, int post,
                     http_response *resp)
{
    enc_work *w = calloc(1, sizeof *w);
    if (!w) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    etsi_problem p;
    etsi_limits limits = kme_config_limits(&k->cfg);
    int rc = post
                 ? etsi_key_request_from_json(req->body, req->body_len, &limits, &w->kr, &p)
                 : etsi_key_request_from_query(http_query(req, "number"), http_query(req, "size"), &limits, &w->kr, &p);
    if (rc < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        free(w);
        return;
    }
    w->k = k;
    snprintf(w->caller, sizeof w->caller, "%s", caller);
    snprintf(w->slave, sizeof w->slave, "%s", slave);
    switch (supply_prepare(k, w->caller, w->slave, &w->kr, &w->supply)) {
    case SUPPLY_REFUSED:
        *resp = w->supply.resp;
        name_full_store(k, resp);
        supply_request_clear(&w->supply);
        etsi_key_request_clear(&w->kr);
        free(w);
        break;
    case SUPPLY_NOW:
        /* Suspend before submitting: the commit may complete before this handler returns. */
        w->d = http_defer(req, enc_finish_fast, w);
        supply_start(&w->supply, enc_resume, w);
        break;
    case SUPPLY_BLOCKING:
        http_offload(req, enc_blocking, enc_finish_blocking, w);
        break;
    }
}

/* ---- dec_keys: one commit, without blocking ---- */

typedef struct {
    kme_context *k;
    char master[ETSI_ID_MAX + 1], slave[ETSI_ID_MAX + 1];
    etsi_key_ids ids;
    etsi_key_container keys;
    char **key_slaves; /* the designated slaves of each key, for the audit log */
    size_t bad, retried;
    int rc;
    http_deferred *d;
} dec_work;

static void free_key_slaves(dec_work *w)
{
    for (size_t i = 0; w->key_slaves && i < w->ids.count; i++)
        free(w->key_slaves[i]);
    free(w->key_slaves);
    w->key_slaves = NULL;
}

static int fetch_op(kme_store *s, MDB_txn *txn, void *arg)
{
    dec_work *w = arg;
    etsi_key_container_clear(&w->keys); /* from an earlier run of this batch */
    free_key_slaves(w);
    /* Read before the fetch, which erases the records no slave still needs. */
    w->key_slaves = calloc(w->ids.count ? w->ids.count : 1, sizeof *w->key_slaves);
    for (size_t i = 0; w->key_slaves && i < w->ids.count; i++)
        if (kr_slaves(s, txn, w->ids.ids[i], &w->key_slaves[i]) == KR_DB)
            return KR_DB;
    return kr_fetch(s, txn, w->master, w->slave, &w->ids, w->k->cfg.fetch_retry_seconds, &w->keys, &w->bad,
                    &w->retried);
}

static void fetch_done(void *arg, int result)
{
    dec_work *w = arg;
    w->rc = result;
    http_resume(w->d);
}

static void dec_finish(void *arg, http_response *resp)
{
    dec_work *w = arg;
    const char *id = w->ids.count ? w->ids.ids[w->bad] : "";
    switch (w->rc) {
    case KR_OK: /* committed */
        if (w->retried)
            log_info("%s fetched %zu of %zu keys again (a retry after a lost answer)", w->slave, w->retried,
                     w->keys.count);
        audit_dec(w->k, w->master, w->slave, &w->keys, w->key_slaves);
        note_handed_out(w->k, w->slave, "slave", &w->keys);
        answer_keys(resp, &w->keys);
        break;
    case KR_UNKNOWN:
        http_error(resp, 400, "key_ID not available", "key_ID %s is unknown here, expired or already fetched by %s", id,
                   w->slave);
        break;
    case KR_FOREIGN:
        http_error(resp, 400, "key_ID of another master", "key_ID %s was not issued to master %s", id, w->master);
        break;
    case KR_NOT_SLAVE:
        http_error(resp, 401, "not a designated slave", "SAE %s is not a slave of key_ID %s", w->slave, id);
        break;
    default:
        http_error(resp, 503, "key store failure", "the keys could not be read");
        name_full_store(w->k, resp);
    }
    etsi_key_container_clear(&w->keys);
    free_key_slaves(w);
    etsi_key_ids_clear(&w->ids);
    free(w);
}

static void dec_keys(kme_context *k, const http_request *req, const char *caller, const char *master, int post,
                     http_response *resp)
{
    dec_work *w = calloc(1, sizeof *w);
    etsi_problem p;
    if (!w) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    int rc = post ? etsi_key_ids_from_json(req->body, req->body_len, kme_config_limits(&k->cfg).max_key_per_request,
                                           &w->ids, &p)
                  : etsi_key_ids_from_query(http_query(req, "key_ID"), &w->ids, &p);
    if (rc < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        free(w);
        return;
    }
    if (supply_locate_sae(k, master, NULL) == SUPPLY_UNKNOWN) {
        http_error(resp, 400, "unknown master SAE", "SAE %s is not known to %s", master, k->cfg.kme_id);
        etsi_key_ids_clear(&w->ids);
        free(w);
        return;
    }
    w->k = k;
    snprintf(w->master, sizeof w->master, "%s", master);
    snprintf(w->slave, sizeof w->slave, "%s", caller);
    /* A fetch the store refuses as it stands is refused here, from a read
     * transaction: it never waits for, nor delays, the writer's batch. */
    MDB_txn *rt;
    if (store_read_begin(&k->store, &rt) == 0) {
        w->rc = kr_check_fetch(&k->store, rt, w->master, w->slave, &w->ids, k->cfg.fetch_retry_seconds, &w->bad);
        mdb_txn_abort(rt);
        if (w->rc != KR_OK && w->rc != KR_DB) {
            dec_finish(w, resp);
            return;
        }
    }
    w->d = http_defer(req, dec_finish, w);
    store_commit_async(&k->store, fetch_op, w, fetch_done, w);
}

void etsi_api_handle(void *ctx, const http_request *req, http_response *resp)
{
    kme_context *k = ctx;
    if (req->auth != HTTP_AUTH_OK) {
        const char *why = req->auth_reason                 ? req->auth_reason
                          : req->auth == HTTP_AUTH_NO_CERT ? "a client certificate is required"
                                                           : "the client certificate is not trusted";
        http_error(resp, 401, "unauthorized", "%s", why);
        return;
    }
    if (!kme_config_hosts_sae(&k->cfg, req->client_cn)) {
        http_error(resp, 401, "unauthorized", "SAE %s is not registered at %s", req->client_cn, k->cfg.kme_id);
        return;
    }
    const char *caller = req->client_cn;
    char id[ETSI_ID_MAX + 1];
    const char *rest = strncmp(req->path, PREFIX, strlen(PREFIX)) == 0 ? req->path + strlen(PREFIX) : NULL;
    const char *slash = rest ? strchr(rest, '/') : NULL;
    if (!slash || slash == rest || (size_t)(slash - rest) > ETSI_ID_MAX) {
        http_error(resp, 404, "not found", "no operation at %.200s", req->path);
        return;
    }
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    const char *op = slash + 1;
    int get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
    int is_status = strcmp(op, "status") == 0, is_enc = strcmp(op, "enc_keys") == 0,
        is_dec = strcmp(op, "dec_keys") == 0;
    if (!is_status && !is_enc && !is_dec) {
        http_error(resp, 404, "not found", "no operation at %.200s", req->path);
        return;
    }
    if (!(get || (post && !is_status))) {
        http_error(resp, 405, "method not allowed", "%s takes %s", op, is_status ? "GET" : "GET or POST");
        return;
    }
    if (!etsi_id_is_valid(id)) {
        http_error(resp, 400, "invalid SAE ID", "the SAE ID in the path is not valid");
        return;
    }
    if (req->body_too_large) {
        http_error(resp, 400, "request body too large", "at most %d bytes", ETSI_BODY_MAX);
        return;
    }
    static const char *const no_args[] = {NULL};
    static const char *const enc_args[] = {"number", "size", NULL};
    static const char *const dec_args[] = {"key_ID", NULL};
    const char *const *allowed = post || is_status ? no_args : is_enc ? enc_args : dec_args;
    if (!query_ok(req, allowed, resp))
        return;
    if (is_status)
        get_status(k, caller, id, resp);
    else if (is_enc)
        enc_keys(k, req, caller, id, post, resp);
    else
        dec_keys(k, req, caller, id, post, resp);
}
