/* Test fixture: a relay node (relay/node.h) over a real store in a
 * temporary directory, with the daemon's hooks answered by the test (the
 * SAEs hosted, the ETSI limits, the relay events recorded; the other
 * reports ignored). Its neighbours' URLs name a loopback port that refuses
 * connections, so whatever it sends reaches no one; the neighbours' adverts
 * are handed to it as its KME port would (router_advert_handle). Also:
 * requests for the handlers, the checks of ETSI error answers, and what the
 * store holds (key records fetched as dec_keys does, stock records). */
#ifndef TESTS_UNIT_NODE_FIXTURE_H
#define TESTS_UNIT_NODE_FIXTURE_H

#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <jansson.h>
#include "api/kme_advert.h"
#include "tests/unit/test_pki.h"
#include "relay/advert_sign.h"
#include "relay/node.h"
#include "relay/router.h"
#include "store/key_records.h"

/* What the test says of the site a node runs at. */
typedef struct {
    char *saes[8]; /* hosted here */
    size_t nsaes;
    etsi_limits limits;
    int relayed;      /* relay events reported */
    relay_event last; /* the last of them */
} test_site;

static inline void site_init(test_site *s, const char *const *saes)
{
    memset(s, 0, sizeof *s);
    for (; saes && *saes && s->nsaes < 8; saes++)
        s->saes[s->nsaes++] = (char *)*saes;
    s->limits = (etsi_limits){.key_size = 256,
                              .max_key_per_request = 1024,
                              .max_key_size = 65536,
                              .min_key_size = 8,
                              .max_sae_id_count = 8,
                              .max_key_count = 100000};
}

static int site_hosts_sae(void *ctx, const char *sae)
{
    test_site *s = ctx;
    for (size_t i = 0; i < s->nsaes; i++)
        if (strcmp(s->saes[i], sae) == 0)
            return 1;
    return 0;
}

static size_t site_hosted_saes(void *ctx, char *const **out)
{
    test_site *s = ctx;
    *out = s->saes;
    return s->nsaes;
}

static etsi_limits site_limits(void *ctx)
{
    return ((test_site *)ctx)->limits;
}

static void site_relayed(void *ctx, const relay_event *e)
{
    test_site *s = ctx;
    s->relayed++;
    s->last = *e;
}

static void site_link_stock(void *ctx, const relay_link *l, const lb_stock *st)
{
    (void)ctx;
    (void)l;
    (void)st;
}

static void site_verify_failed(void *ctx, const relay_link *l, size_t blocks)
{
    (void)ctx;
    (void)l;
    (void)blocks;
}

/* A loopback TCP port bound but not listening: connections to it are refused. */
static int refusing_fd = -1;

static inline void refusing_url(char *out, size_t cap)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    if (refusing_fd < 0) {
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        refusing_fd = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(refusing_fd, 0);
        ck_assert_int_eq(bind(refusing_fd, (struct sockaddr *)&a, sizeof a), 0);
    }
    ck_assert_int_eq(getsockname(refusing_fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(out, cap, "https://127.0.0.1:%d", ntohs(a.sin_port));
}

/* A store for KME id in a new temporary directory (dir: 64 bytes). */
static inline void temp_store_open(kme_store *s, char *dir, const char *id)
{
    char err[256] = "";
    strcpy(dir, "/tmp/unitstore.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_msg(store_open(s, dir, 64, id, NULL, err, sizeof err) == 0, "store_open: %s", err);
}

static inline void temp_store_close(kme_store *s, const char *dir)
{
    char cmd[128];
    store_close(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Settings of node id with links to the KMEs in peers (NULL-terminated). */
static inline void node_config(relay_config *c, const char *id, const char *const *peers)
{
    memset(c, 0, sizeof *c);
    snprintf(c->kme_id, sizeof c->kme_id, "%s", id);
    /* Adverts are signed with the KME certificate's key: real ones. */
    test_pki_kme_files(id, c->kme_cert, c->kme_key, c->kme_ca, sizeof c->kme_cert);
    for (; peers && *peers; peers++) {
        relay_link_config *l = &c->links[c->link_count++];
        snprintf(l->peer_id, sizeof l->peer_id, "%s", *peers);
        refusing_url(l->url, sizeof l->url);
        snprintf(l->key_dir, sizeof l->key_dir, "/nonexistent/keys");
    }
    c->key_ttl_seconds = 3600;
    c->peer_timeout_ms = 2000;
    c->verify_timeout_ms = 2000;
    c->link_stock_max_bytes = 1 << 20;
    c->stock_max_keys = 100;
    c->stock_max_age_s = 60;
}

/* A node over store (relay_node_init). links_up: its links count as up
 * from the start (as after a successful contact), so its first advert
 * offers them to the routes. */
static inline relay_node *node_open(const relay_config *c, kme_store *store, test_site *site, int links_up)
{
    relay_node *n = calloc(1, sizeof *n);
    ck_assert_ptr_nonnull(n);
    for (size_t i = 0; i < c->link_count; i++)
        atomic_store(&n->links[i].peer_up, links_up);
    relay_hooks hooks = {site,
                         site_hosts_sae,
                         site_hosted_saes,
                         site_limits,
                         site_relayed,
                         site_link_stock,
                         site_verify_failed,
                         NULL,
                         NULL,
                         NULL};
    char err[256] = "";
    ck_assert_msg(relay_node_init(n, c, store, &hooks, err, sizeof err) == 0, "relay_node_init: %s", err);
    return n;
}

static inline void node_close(relay_node *n)
{
    relay_node_stop(n);
    free(n);
}

/* A request to a handler of the KME port or the SAE port: no connection
 * (no query arguments), a body of len bytes. */
static inline http_request request_of(const char *method, const char *path, const void *body, size_t len,
                                      const char *content_type)
{
    http_request r;
    memset(&r, 0, sizeof r);
    r.method = method;
    r.path = path;
    r.auth = HTTP_AUTH_OK;
    r.body = body;
    r.body_len = len;
    r.content_type = content_type;
    return r;
}

/* Hands n the advert of origin (KME_A..KME_D, signed with its test key) as
 * received on link from: seq, links up to
 * each of peers (NULL-terminated) with stock bytes each, saes hosted there
 * (NULL-terminated). Returns the status answered (its body freed). */
static inline int advert_to(relay_node *n, size_t from, const char *origin, uint64_t seq, const char *const *peers,
                            uint64_t stock, const char *const *saes)
{
    kme_advert *a = calloc(1, sizeof *a);
    ck_assert_ptr_nonnull(a);
    snprintf(a->origin, sizeof a->origin, "%s", origin);
    a->seq = seq;
    for (; peers && *peers; peers++) {
        kme_advert_link *l = &a->links[a->link_count++];
        snprintf(l->peer, sizeof l->peer, "%s", *peers);
        l->up = 1;
        l->stock_bytes = stock;
    }
    for (; saes && *saes; saes++)
        snprintf(a->saes[a->sae_count++], ETSI_ID_MAX + 1, "%s", *saes);
    /* Signed by the origin with its test certificate's key. */
    char cert[ETSI_ID_MAX + 8], key[ETSI_ID_MAX + 8], err[256] = "";
    snprintf(cert, sizeof cert, "%s.pem", origin);
    snprintf(key, sizeof key, "%s.key", origin);
    advert_signer *signer =
        advert_signer_new(test_pki_path(cert), test_pki_path(key), test_pki_path("ca.pem"), origin, err, sizeof err);
    ck_assert_msg(signer != NULL, "advert_signer_new: %s", err);
    ck_assert_int_eq(advert_sign(signer, a), 0);
    advert_signer_free(signer);
    char *json = kme_advert_to_json(a);
    ck_assert_ptr_nonnull(json);
    http_request req = request_of("POST", "/kme/v1/advert", json, strlen(json), "application/json");
    http_response resp = {0, NULL, 0};
    router_advert_handle(n, &n->links[from], &req, &resp);
    etsi_text_free(json);
    etsi_text_free(resp.body);
    free(a);
    return resp.status;
}

/* resp is an answer in the ETSI error shape: status, and a body
 * {"message": message, "details": [...]} (any message when NULL); its body
 * is freed. */
static inline void expect_error(http_response *resp, int status, const char *message)
{
    ck_assert_ptr_nonnull(resp->body);
    ck_assert_msg(resp->status == status, "status %d, want %d: %s", resp->status, status, resp->body);
    json_error_t jerr;
    json_t *root = json_loads(resp->body, 0, &jerr);
    ck_assert_msg(json_is_object(root), "not a JSON object: %s", resp->body);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(root, "message")));
    if (message)
        ck_assert_str_eq(json_string_value(json_object_get(root, "message")), message);
    ck_assert(json_is_array(json_object_get(root, "details")));
    json_decref(root);
    etsi_text_free(resp->body);
    resp->body = NULL;
}

/* The first detail's reason of an ETSI error body ("" when none). */
static inline void error_reason(const http_response *resp, char *out, size_t cap)
{
    etsi_problem p;
    ck_assert_int_eq(etsi_error_from_json(resp->body, strlen(resp->body), &p), 0);
    snprintf(out, cap, "%s", p.detail);
}

/* Key records held in the store. */
static inline long records_in(kme_store *s)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    long n = kr_count(s, t);
    mdb_txn_abort(t);
    return n;
}

typedef struct {
    const char *master, *slave;
    etsi_key_ids ids;
    etsi_key_container out;
    size_t bad, retried;
} fetch_arg;

static int fetch_op(kme_store *s, MDB_txn *t, void *arg)
{
    fetch_arg *f = arg;
    etsi_key_container_clear(&f->out);
    return kr_fetch(s, t, f->master, f->slave, &f->ids, 0, &f->out, &f->bad, &f->retried);
}

/* dec_keys as the store sees it: slave fetches the keys of which (by ID),
 * issued by master, into out (cleared by the caller). The KR_ result. */
static inline int fetch_keys(kme_store *s, const char *master, const char *slave, const etsi_key_container *which,
                             etsi_key_container *out)
{
    fetch_arg f;
    memset(&f, 0, sizeof f);
    f.master = master;
    f.slave = slave;
    f.ids.ids = calloc(which->count ? which->count : 1, sizeof *f.ids.ids);
    ck_assert_ptr_nonnull(f.ids.ids);
    for (size_t i = 0; i < which->count; i++)
        memcpy(f.ids.ids[i], which->keys[i].key_id, UUID_STR_LEN + 1);
    f.ids.count = which->count;
    int rc = store_commit(s, fetch_op, &f);
    etsi_key_ids_clear(&f.ids);
    *out = f.out;
    return rc;
}

/* Stock records as the relay layer keeps them in the store's stock
 * database (store/store.h): peer \0 master \0 slave \0 be32 size_bits |
 * be64 created_ms | key_ID -> the key's bytes. */
typedef struct {
    const char *peer, *master, *slave;
    long size_bits;
    int64_t created_ms;
    const etsi_key *key;
} stock_record;

static int stock_put_op(kme_store *s, MDB_txn *t, void *arg)
{
    const stock_record *r = arg;
    unsigned char kb[3 * (ETSI_ID_MAX + 1) + 4 + 8 + UUID_STR_LEN], be[8];
    size_t n = 0;
    const char *parts[3] = {r->peer, r->master, r->slave};
    for (int i = 0; i < 3; i++) {
        memcpy(kb + n, parts[i], strlen(parts[i]) + 1);
        n += strlen(parts[i]) + 1;
    }
    store_put_be64(be, (uint64_t)r->size_bits);
    memcpy(kb + n, be + 4, 4);
    n += 4;
    store_put_be64(kb + n, (uint64_t)r->created_ms);
    n += 8;
    memcpy(kb + n, r->key->key_id, UUID_STR_LEN);
    n += UUID_STR_LEN;
    MDB_val k = {n, kb};
    seal_epoch ep = store_stock_epoch(r->peer, r->created_ms);
    return store_put_sealed(s, t, s->stock, SEAL_DB_STOCK, &k, r->key->key, r->key->key_len, MDB_NOOVERWRITE, &ep);
}

/* Puts keys into the stock of (peer, master, slave, their size), the i-th
 * created at created_ms + i. */
static inline void stock_put(kme_store *s, const char *peer, const char *master, const char *slave,
                             const etsi_key_container *keys, int64_t created_ms)
{
    for (size_t i = 0; i < keys->count; i++) {
        stock_record r = {peer,          master, slave, (long)keys->keys[i].key_len * 8, created_ms + (int64_t)i,
                          &keys->keys[i]};
        ck_assert_int_eq(store_commit(s, stock_put_op, &r), 0);
    }
}

/* Records in the store's stock database. */
static inline long stock_records(kme_store *s)
{
    MDB_txn *t;
    MDB_stat st;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(mdb_stat(t, s->stock, &st), 0);
    mdb_txn_abort(t);
    return (long)st.ms_entries;
}

/* The same keys, IDs and bytes, in the same order. */
static inline void expect_same_keys(const etsi_key_container *a, const etsi_key_container *b)
{
    ck_assert_uint_eq(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        ck_assert_str_eq(a->keys[i].key_id, b->keys[i].key_id);
        ck_assert_uint_eq(a->keys[i].key_len, b->keys[i].key_len);
        ck_assert_mem_eq(a->keys[i].key, b->keys[i].key, a->keys[i].key_len);
    }
}

#endif
