/* Unit tests of link key whose answer was lost (relay/reserve, relay/relay):
 * two relay nodes, KME_A and KME_B, over the two real stores of one link
 * (tests/unit/link_pair.h). Their neighbour clients call the other node's
 * KME port handlers directly, and the test decides when each request
 * arrives: a reserve or relay request can be held back (its sender sees the
 * answer lost) and delivered later, after the resolve that asks about it.
 *
 * Every reserve and relay request is recorded with its link ranges and the
 * answer it finally got. The rule checked (I1): once a message has used
 * bytes of link key, no later message carries any of them again. A relay
 * message uses its pad and MAC key as it leaves (its ciphertext and tag are
 * on the wire whatever the callee does); a reservation uses its ranges when
 * the callee records it. A reservation the callee never recorded (refused,
 * or withdrawn by a resolve) used nothing, and its bytes may come back. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include "tests/unit/test_pki.h"
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>
#include "api/kme_msgs.h"
#include "api/kme_relay.h"
#include "relay/relay.h"
#include "relay/reserve.h"
#include "relay/router.h"
#include "runtime/json_wipe.h"
#include "tests/unit/link_pair.h"

#define BLOCKS 64
#define MAX_SENT 256
#define MAX_HELD 32

/* ---- the two nodes -------------------------------------------------------------------- */

typedef struct side side;
struct side {
    const char *id;
    char *saes[1];
    relay_node *node;
    side *peer;
};
static side A = {"KME_A", {"SAE_A"}, NULL, NULL}, B = {"KME_B", {"SAE_B"}, NULL, NULL};

static int hook_hosts(void *ctx, const char *sae)
{
    return strcmp(((side *)ctx)->saes[0], sae) == 0;
}
static size_t hook_hosted(void *ctx, char *const **out)
{
    *out = ((side *)ctx)->saes;
    return 1;
}
static etsi_limits hook_limits(void *ctx)
{
    (void)ctx;
    return (etsi_limits){256, 128, 8192, 64, 8, 100000};
}
static void hook_relayed(void *ctx, const relay_event *e)
{
    (void)ctx;
    (void)e;
}
static void hook_link_stock(void *ctx, const relay_link *l, const lb_stock *st)
{
    (void)ctx;
    (void)l;
    (void)st;
}
static void hook_verify_failed(void *ctx, const relay_link *l, size_t blocks)
{
    (void)ctx;
    (void)l;
    (void)blocks;
}

/* ---- what went over the link ------------------------------------------------------------ */

typedef struct {
    int relay; /* a relay hop; else a reservation */
    char id[UUID_STR_LEN + 1];
    kme_range *ranges;
    size_t n;
    int status; /* the callee's answer once it got the request; 0: not (yet) */
} sent_msg;

typedef struct {
    side *from;
    char path[64], type[64];
    unsigned char *body;
    size_t len;
    size_t msg; /* index in sent */
} held_req;

static pthread_mutex_t ctl = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t running = PTHREAD_RWLOCK_INITIALIZER; /* transport calls (read) vs teardown (write) */
static int down;
static sent_msg sent[MAX_SENT];
static size_t nsent;
static held_req held[MAX_HELD];
static size_t nheld;
static int hold_reserves, hold_relays; /* hold back the next so many */
static int resolves;                   /* resolve requests sent */
static int flush_before_relay;         /* deliver what is held just before the next relay */

/* Records a reserve or relay request; its index in sent. */
static size_t record_sent(int relay, const void *body, size_t len)
{
    sent_msg m = {relay, "", NULL, 0, 0};
    etsi_problem p;
    if (relay) {
        kme_relay_msg r;
        ck_assert_int_eq(kme_relay_from_wire(body, len, &r, &p), 0);
        snprintf(m.id, sizeof m.id, "%s", r.relay_id);
        m.n = r.pad_count + r.mac_key_count;
        m.ranges = calloc(m.n, sizeof *m.ranges);
        ck_assert_ptr_nonnull(m.ranges);
        memcpy(m.ranges, r.pad, r.pad_count * sizeof *r.pad);
        memcpy(m.ranges + r.pad_count, r.mac_key, r.mac_key_count * sizeof *r.mac_key);
        kme_relay_clear(&r);
    } else {
        kme_reserve_request r;
        ck_assert_int_eq(kme_reserve_request_from_json(body, len, 1024, &r, &p), 0);
        snprintf(m.id, sizeof m.id, "%s", r.keys[0].key_id);
        m.n = r.range_count;
        m.ranges = calloc(m.n, sizeof *m.ranges);
        ck_assert_ptr_nonnull(m.ranges);
        memcpy(m.ranges, r.ranges, r.range_count * sizeof *r.ranges);
        kme_reserve_request_clear(&r);
    }
    pthread_mutex_lock(&ctl);
    ck_assert_uint_lt(nsent, MAX_SENT);
    size_t i = nsent++;
    sent[i] = m;
    pthread_mutex_unlock(&ctl);
    return i;
}

static void set_status(size_t i, int status)
{
    if (i == SIZE_MAX)
        return;
    pthread_mutex_lock(&ctl);
    if (sent[i].status != 200)
        sent[i].status = status;
    pthread_mutex_unlock(&ctl);
}

/* The callee's KME port, called directly. */
static int call_port(side *from, const char *path, const char *type, const void *body, size_t len, http_response *resp)
{
    relay_node *k = from->peer->node;
    relay_link *l = &k->links[0];
    http_request req;
    memset(&req, 0, sizeof req);
    memset(resp, 0, sizeof *resp);
    req.method = "POST";
    req.path = path;
    req.auth = HTTP_AUTH_OK;
    snprintf(req.client_cn, sizeof req.client_cn, "%s", from->id);
    req.body = body;
    req.body_len = len;
    req.content_type = type;
    if (strcmp(path, "/kme/v1/reserve") == 0)
        reserve_handle(k, l, &req, resp);
    else if (strcmp(path, "/kme/v1/resolve") == 0)
        reserve_resolve_handle(k, l, &req, resp);
    else if (strcmp(path, "/kme/v1/relay") == 0)
        relay_handle(k, l, &req, resp);
    else if (strcmp(path, "/kme/v1/advert") == 0)
        router_advert_handle(k, l, &req, resp);
    else
        http_error(resp, 404, "not found", NULL);
    return resp->status;
}

/* Delivers every request held back, in the order they were sent. */
static void deliver_held(void)
{
    for (;;) {
        pthread_mutex_lock(&ctl);
        held_req h = nheld ? held[0] : (held_req){0};
        if (nheld)
            memmove(held, held + 1, --nheld * sizeof *held);
        pthread_mutex_unlock(&ctl);
        if (!h.body)
            return;
        http_response resp;
        set_status(h.msg, call_port(h.from, h.path, h.type, h.body, h.len, &resp));
        etsi_text_free(resp.body);
        OPENSSL_cleanse(h.body, h.len);
        free(h.body);
    }
}

/* The neighbour client's transport (relay/peer_client.h). */
static int transport(void *ctx, size_t link, const char *path, const char *type, const void *body, size_t len,
                     long timeout_ms, peer_reply *out)
{
    (void)link;
    (void)timeout_ms;
    side *from = ctx;
    int rc = -1;
    pthread_rwlock_rdlock(&running);
    if (down) {
        out->not_sent = 1;
        snprintf(out->error, sizeof out->error, "stopping");
        goto done;
    }
    int relay = strcmp(path, "/kme/v1/relay") == 0, reserve = strcmp(path, "/kme/v1/reserve") == 0;
    resolves += strcmp(path, "/kme/v1/resolve") == 0;
    size_t msg = relay || reserve ? record_sent(relay, body, len) : SIZE_MAX;
    pthread_mutex_lock(&ctl);
    int hold = (reserve && hold_reserves > 0) || (relay && hold_relays > 0);
    int flush = relay && flush_before_relay;
    if (hold) {
        *(reserve ? &hold_reserves : &hold_relays) -= 1;
        ck_assert_uint_lt(nheld, MAX_HELD);
        held_req *h = &held[nheld++];
        h->from = from;
        snprintf(h->path, sizeof h->path, "%s", path);
        snprintf(h->type, sizeof h->type, "%s", type);
        h->body = malloc(len);
        ck_assert_ptr_nonnull(h->body);
        memcpy(h->body, body, len);
        h->len = len;
        h->msg = msg;
    }
    if (flush)
        flush_before_relay = 0;
    pthread_mutex_unlock(&ctl);
    if (hold) {
        snprintf(out->error, sizeof out->error, "timed out (the answer was lost)");
        goto done; /* not_sent stays 0: it did leave */
    }
    if (flush)
        deliver_held();
    http_response resp;
    int status = call_port(from, path, type, body, len, &resp);
    set_status(msg, status);
    out->http_status = status;
    if (resp.body) {
        out->len = strlen(resp.body);
        out->body = malloc(out->len + 1);
        ck_assert_ptr_nonnull(out->body);
        memcpy(out->body, resp.body, out->len + 1);
        etsi_problem p;
        if (status != 200 && etsi_error_from_json(resp.body, out->len, &p) == 0)
            snprintf(out->error, sizeof out->error, "%s: %s", p.message, p.detail);
        etsi_text_free(resp.body);
    }
    rc = 0;
done:
    pthread_rwlock_unlock(&running);
    return rc;
}

static relay_node *node_new(kme_store *s, side *me)
{
    relay_node *n = calloc(1, sizeof *n);
    ck_assert_ptr_nonnull(n);
    relay_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.kme_id, sizeof cfg.kme_id, "%s", me->id);
    /* Adverts are signed with the KME certificate's key: the test PKI's. */
    test_pki_kme_files(me->id, cfg.kme_cert, cfg.kme_key, cfg.kme_ca, sizeof cfg.kme_cert);
    snprintf(cfg.links[0].peer_id, sizeof cfg.links[0].peer_id, "%s", me->peer->id);
    snprintf(cfg.links[0].url, sizeof cfg.links[0].url, "https://%s.invalid", me->peer->id);
    snprintf(cfg.links[0].key_dir, sizeof cfg.links[0].key_dir, "/nonexistent");
    cfg.link_count = 1;
    cfg.key_ttl_seconds = 3600;
    cfg.peer_timeout_ms = 1000;
    cfg.verify_timeout_ms = 1000;
    cfg.link_stock_max_bytes = 1L << 30;
    cfg.stock_max_age_s = 600;
    relay_hooks h = {me,   hook_hosts, hook_hosted, hook_limits, hook_relayed, hook_link_stock, hook_verify_failed,
                     NULL, NULL,       NULL};
    char err[256];
    ck_assert_int_eq(relay_node_init(n, &cfg, s, &h, err, sizeof err), 0);
    peer_client_set_transport(n->peers, transport, me);
    return n;
}

static int routed(void)
{
    return router_next_hop(A.node, "KME_B", NULL) && router_kme_hosts(B.node, "KME_A", "SAE_A") == 1 &&
           router_kme_hosts(A.node, "KME_B", "SAE_B") == 1;
}

/* Both stores with BLOCKS verified blocks (A owns the even seqs), both
 * nodes up and routed to each other. */
static void world_up(void)
{
    verify_state v;
    open_stores();
    ingest_both(1, BLOCKS, 0);
    verify_all(&v);
    ck_assert_int_eq(v.n, BLOCKS);
    A.peer = &B;
    B.peer = &A;
    A.node = node_new(&sa, &A);
    B.node = node_new(&sb, &B);
    char err[256];
    ck_assert_int_eq(relay_node_start_routing(A.node, err, sizeof err), 0);
    ck_assert_int_eq(relay_node_start_routing(B.node, err, sizeof err), 0);
    for (int i = 0; i < 300 && !routed(); i++)
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    ck_assert_msg(routed(), "the two nodes did not learn each other's routes");
}

static void world_down(void)
{
    deliver_held();
    pthread_rwlock_wrlock(&running);
    down = 1;
    pthread_rwlock_unlock(&running);
    relay_node_stop(A.node);
    relay_node_stop(B.node);
    free(A.node);
    free(B.node);
    for (size_t i = 0; i < nsent; i++)
        free(sent[i].ranges);
    close_stores();
}

/* ---- what a master asks for ----------------------------------------------------------- */

/* SAE_A asks for n keys for SAE_B, reserved on the link: 0, or -1 (the ETSI error given). */
static int reserve(long n)
{
    const char *slaves[] = {"SAE_B"};
    reserve_request r = {"SAE_A", NULL, 0, slaves, 1, n, 256, 0, 0};
    etsi_key_container out;
    http_response resp = {0, NULL, 0};
    int rc = reserve_link_keys(A.node, &A.node->links[0], &r, &out, &resp);
    if (rc == 0)
        etsi_key_container_clear(&out);
    etsi_text_free(resp.body);
    return rc;
}

/* SAE_A's keys relayed to KME_B for SAE_B: 0, or -1. */
static int relay(size_t n)
{
    etsi_key_container keys = {0};
    keys.keys = calloc(n, sizeof *keys.keys);
    ck_assert_ptr_nonnull(keys.keys);
    for (size_t i = 0; i < n; i++) {
        keys.keys[i].key_len = 32;
        keys.keys[i].key = malloc(32);
        ck_assert_ptr_nonnull(keys.keys[i].key);
        RAND_bytes(keys.keys[i].key, 32);
        ck_assert_int_eq(uuid_generate(keys.keys[i].key_id), 0);
        keys.count++;
    }
    const char *slaves[] = {"SAE_B"};
    int rc = -1;
    for (int tries = 0; tries < 100; tries++) {
        http_response resp = {0, NULL, 0};
        rc = relay_keys_to(A.node, "KME_B", "SAE_A", slaves, 1, &keys, 0, &resp);
        /* A lost answer takes the link out of A's routes until the next
         * advert gets through; nothing is carved without a route. */
        int no_route = rc != 0 && resp.body && strstr(resp.body, "\"no route\"");
        if (rc != 0 && !no_route && !(resp.body && strstr(resp.body, "the answer was lost")))
            fprintf(stderr, "relay refused: %d %s\n", resp.status, resp.body ? resp.body : "");
        etsi_text_free(resp.body);
        if (!no_route)
            break;
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    etsi_key_container_clear(&keys);
    return rc;
}

/* ---- the checks ------------------------------------------------------------------------- */

static int overlap(const kme_range *a, const kme_range *b)
{
    return a->seq == b->seq && a->offset < b->offset + b->length && b->offset < a->offset + a->length;
}

/* Messages that carried bytes an earlier message had used (see the top). */
static size_t reused_bytes(void)
{
    size_t bad = 0;
    for (size_t i = 0; i < nsent; i++) {
        const sent_msg *u = &sent[i];
        if (!u->relay && u->status != 200)
            continue; /* never recorded: it used nothing */
        for (size_t j = i + 1; j < nsent; j++) {
            int shared = 0;
            for (size_t x = 0; x < u->n && !shared; x++)
                for (size_t y = 0; y < sent[j].n && !shared; y++)
                    shared = overlap(&u->ranges[x], &sent[j].ranges[y]);
            if (shared) {
                fprintf(stderr, "%s %s (answer %d) carries bytes %s %s (answer %d) used\n",
                        sent[j].relay ? "relay" : "reservation", sent[j].id, sent[j].status,
                        u->relay ? "relay" : "reservation", u->id, u->status);
                bad++;
            }
        }
    }
    return bad;
}

/* The dumps agree: every byte B recorded as used in a block A owns is used at A. */
static void assert_owner_covers(void)
{
    for (uint64_t seq = 2; seq <= BLOCKS; seq += 2) {
        lb_meta a, b;
        if (!pair_has_meta(&sb, "KME_A", seq, &b)) {
            /* B recorded every byte: A, the owner, has used them all too. */
            ck_assert(pair_spent(&sb, "KME_A", seq));
            ck_assert_msg(pair_spent(&sa, "KME_B", seq), "block %llu: used up at B, not at A (the owner)",
                          (unsigned long long)seq);
            continue;
        }
        if (!pair_has_meta(&sa, "KME_B", seq, &a)) {
            ck_assert(pair_spent(&sa, "KME_B", seq)); /* used up by its owner: nothing left to hand out */
            continue;
        }
        ck_assert_int_eq(a.owner, LB_OWNER_SELF);
        for (uint32_t i = 0; i < b.nused; i++) {
            int covered = 0;
            for (uint32_t j = 0; j < a.nused && !covered; j++)
                covered = a.used[j].start <= b.used[i].start && b.used[i].end <= a.used[j].end;
            ck_assert_msg(covered, "block %llu: B used [%u, %u) that A (the owner) has free", (unsigned long long)seq,
                          b.used[i].start, b.used[i].end);
        }
    }
}

static size_t entries(kme_store *s, MDB_dbi db)
{
    MDB_txn *t;
    MDB_stat st;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(mdb_stat(t, db, &st), 0);
    mdb_txn_abort(t);
    return st.ms_entries;
}
static size_t in_doubt_at_a(void)
{
    return entries(&sa, sa.in_doubt);
}

/* ---- tests ------------------------------------------------------------------------------ */

/* The answers to reservations are lost; A asks B about them (resolve) before
 * they arrive; they arrive just before A's next relay, whose pad A carves
 * from the lowest free bytes it owns. */
START_TEST(reservations_that_arrive_after_resolve_never_share_bytes)
{
    world_up();
    int relays_ok = 0, reserved_ok = 0;
    for (int round = 0; round < 6; round++) {
        hold_reserves = 3;
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(reserve(2), -1); /* the master is told 503: no answer from B */
        ck_assert_uint_eq(in_doubt_at_a(), 3);
        ck_assert_int_ge(reserve_resolve_once(A.node, &A.node->links[0]), 0);
        ck_assert_uint_eq(in_doubt_at_a(), 0);
        flush_before_relay = 1;
        relays_ok += relay(4) == 0;
        reserved_ok += reserve(3) == 0;
    }
    ck_assert_uint_eq(reused_bytes(), 0);
    assert_owner_covers();
    ck_assert_int_eq(relays_ok, 6);
    ck_assert_int_eq(reserved_ok, 6);
    world_down();
}
END_TEST

/* The answers to relay messages are lost; B gets them only after A has
 * asked (resolve) and relayed again. */
START_TEST(a_relay_whose_answer_was_lost_keeps_its_pad_spent)
{
    world_up();
    int ok = 0;
    for (int round = 0; round < 6; round++) {
        hold_relays = 2;
        ck_assert_int_eq(relay(4), -1);
        ck_assert_int_eq(relay(2), -1);
        ck_assert_int_ge(reserve_resolve_once(A.node, &A.node->links[0]), 0);
        ok += relay(4) == 0;
        ok += reserve(2) == 0;
        deliver_held();
    }
    ck_assert_uint_eq(reused_bytes(), 0);
    assert_owner_covers();
    ck_assert_int_eq(ok, 12);
    ck_assert_uint_eq(in_doubt_at_a(), 0);
    world_down();
}
END_TEST

/* B's writer is busy (held here by an operation that waits on a gate) while
 * a reservation whose answer A lost is queued behind it; A's resolve comes
 * meanwhile. */
static sem_t gate_entered, gate_open, gate_done;
static int hold_writer(kme_store *s, MDB_txn *txn, void *arg)
{
    (void)s;
    (void)txn;
    (void)arg;
    sem_post(&gate_entered);
    sem_wait(&gate_open);
    return 0;
}
static void gate_finished(void *arg, int result)
{
    (void)arg;
    (void)result;
    sem_post(&gate_done);
}
static void *deliver_thread(void *arg)
{
    (void)arg;
    deliver_held();
    return NULL;
}
static void *resolve_thread(void *arg)
{
    (void)arg;
    reserve_resolve_once(A.node, &A.node->links[0]);
    return NULL;
}
static int queued(kme_store *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->queue_head != NULL;
    pthread_mutex_unlock(&s->lock);
    return n;
}

START_TEST(resolve_waits_for_a_reservation_queued_in_the_writer)
{
    world_up();
    hold_reserves = 1;
    ck_assert_int_eq(reserve(4), -1);
    ck_assert_uint_eq(in_doubt_at_a(), 1);
    sem_init(&gate_entered, 0, 0);
    sem_init(&gate_open, 0, 0);
    sem_init(&gate_done, 0, 0);
    store_commit_async(&sb, hold_writer, NULL, gate_finished, NULL);
    sem_wait(&gate_entered);
    pthread_t deliverer, resolver;
    ck_assert_int_eq(pthread_create(&deliverer, NULL, deliver_thread, NULL), 0);
    for (int i = 0; i < 1000 && !queued(&sb); i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    ck_assert_msg(queued(&sb), "the reservation did not reach B's writer");
    ck_assert_int_eq(pthread_create(&resolver, NULL, resolve_thread, NULL), 0);
    /* Long enough for an answer read beside the writer; one from inside it waits. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    int answered_early = pthread_timedjoin_np(resolver, NULL, &until) == 0;
    sem_post(&gate_open);
    sem_wait(&gate_done);
    pthread_join(deliverer, NULL);
    if (!answered_early)
        pthread_join(resolver, NULL);
    ck_assert_msg(!answered_early, "B answered the resolve while the reservation waited in its writer");
    ck_assert_int_eq(sent[0].status, 200); /* B recorded the reservation */
    ck_assert_uint_eq(in_doubt_at_a(), 0);
    assert_owner_covers(); /* so A must not have taken its bytes back */
    ck_assert_int_eq(reserve(4), 0);
    ck_assert_uint_eq(reused_bytes(), 0);
    world_down();
}
END_TEST

/* An in-doubt record written before reservations carried their expiry (its
 * ranges alone; it may be a relay message's): never asked about, it is
 * settled with its bytes spent. */
typedef struct {
    lb_link *l;
    lb_range r[8];
    size_t n;
    unsigned char out[160];
} carve_arg;
static int do_carve(kme_store *s, MDB_txn *t, void *arg)
{
    carve_arg *c = arg;
    return lb_allocate(s, t, c->l, sizeof c->out, c->out, c->r, 8, &c->n);
}
static int do_old_doubt(kme_store *s, MDB_txn *t, void *arg)
{
    carve_arg *c = arg;
    unsigned char kb[6 + UUID_STR_LEN];
    memcpy(kb, "KME_B", 6);
    memcpy(kb + 6, "6899051d-1655-442f-885a-778f1004bcae", UUID_STR_LEN);
    MDB_val k = {sizeof kb, kb}, v = {c->n * sizeof *c->r, c->r};
    return mdb_put(t, s->in_doubt, &k, &v, 0);
}

START_TEST(an_in_doubt_record_of_the_older_layout_stays_spent)
{
    world_up();
    carve_arg c = {&A.node->links[0].lb, {{0, 0, 0}}, 0, {0}};
    ck_assert_int_eq(store_commit(&sa, do_carve, &c), 0);
    ck_assert_int_eq(store_commit(&sa, do_old_doubt, &c), 0);
    ck_assert_uint_eq(in_doubt_at_a(), 1);
    ck_assert_int_eq(reserve_resolve_once(A.node, &A.node->links[0]), 1);
    ck_assert_uint_eq(in_doubt_at_a(), 0);
    ck_assert_int_eq(resolves, 0); /* nothing asked */
    for (size_t i = 0; i < c.n; i++) {
        lb_meta m;
        if (!pair_has_meta(&sa, "KME_B", c.r[i].seq, &m)) {
            ck_assert(pair_spent(&sa, "KME_B", c.r[i].seq)); /* used up: spent */
            continue;
        }
        ck_assert(lb_extents_overlap(&m, c.r[i].offset, c.r[i].offset + c.r[i].length));
    }
    ck_assert_int_eq(reserve(2), 0);
    ck_assert_uint_eq(reused_bytes(), 0);
    OPENSSL_cleanse(c.out, sizeof c.out);
    world_down();
}
END_TEST

/* A reservation arriving over RESERVE_LATE_S after its keys expired is
 * refused for its age; so a withdrawal is kept only until then. */
START_TEST(withdrawals_are_kept_until_age_refuses_the_reservation)
{
    world_up();
    A.node->cfg.key_ttl_seconds = -RESERVE_LATE_S - 60; /* sent with keys expired over an hour ago */
    ck_assert_int_eq(reserve(1), -1);
    ck_assert_int_eq(sent[0].status, 503); /* too late: nothing recorded, the bytes go back */
    hold_reserves = 1;
    ck_assert_int_eq(reserve(1), -1);
    ck_assert_int_eq(reserve_resolve_once(A.node, &A.node->links[0]), 1);
    ck_assert_uint_eq(entries(&sb, sb.withdrawn), 1);
    A.node->cfg.key_ttl_seconds = 3600;
    hold_reserves = 1;
    ck_assert_int_eq(reserve(1), -1);
    ck_assert_int_eq(reserve_resolve_once(A.node, &A.node->links[0]), 1);
    ck_assert_uint_eq(entries(&sb, sb.withdrawn), 1); /* the old withdrawal forgotten, the new one kept */
    deliver_held();
    ck_assert_int_eq(sent[1].status, 503); /* refused for its age */
    ck_assert_int_eq(sent[2].status, 503); /* refused as withdrawn */
    ck_assert_int_eq(reserve(2), 0);
    ck_assert_uint_eq(reused_bytes(), 0);
    assert_owner_covers();
    world_down();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    const TTest *const checks[] = {
        reservations_that_arrive_after_resolve_never_share_bytes, a_relay_whose_answer_was_lost_keeps_its_pad_spent,
        resolve_waits_for_a_reservation_queued_in_the_writer,     an_in_doubt_record_of_the_older_layout_stays_spent,
        withdrawals_are_kept_until_age_refuses_the_reservation,   NULL};
    return run_checks("lost_answers", checks, 60, NULL, NULL);
}
