/* Unit tests of key routing: the advert codec (api/kme_advert), the
 * link-state database and the routes computed over small networks (star,
 * five-site mesh, square, lines), with a walk of the next-hop chain from every
 * node to every destination in each of them. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/kme_advert.h"
#include "relay/routing.h"

#define MAX_NODES 8
#define PLENTY (1024 * 1024)

/* ---- a network of adverts, one db and one table per node ------------------ */

typedef struct {
    size_t n;
    kme_advert adv[MAX_NODES];
    int dead[MAX_NODES];
    routing_db db[MAX_NODES];
    routing_table table[MAX_NODES];
} net;

static net *net_new(const char *const *ids, size_t n)
{
    net *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(t->adv[i].origin, sizeof t->adv[i].origin, "%s", ids[i]);
        t->adv[i].seq = 1;
        routing_db_init(&t->db[i], NULL);
    }
    return t;
}

static void net_free(net *t)
{
    for (size_t i = 0; i < t->n; i++) {
        routing_table_clear(&t->table[i]);
        routing_db_clear(&t->db[i]);
    }
    free(t);
}

static size_t idx(const net *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->adv[i].origin, id) == 0)
            return i;
    ck_abort_msg("no node %s", id);
    return 0;
}

/* from's view of its link to `to` (added when missing). */
static void set_side(net *t, const char *from, const char *to, int up, uint64_t stock)
{
    kme_advert *a = &t->adv[idx(t, from)];
    kme_advert_link *l = (kme_advert_link *)kme_advert_find_link(a, to);
    if (!l) {
        l = &a->links[a->link_count++];
        snprintf(l->peer, sizeof l->peer, "%s", to);
    }
    l->up = up;
    l->stock_bytes = stock;
    l->rate_bps = 1000000;
}

static void link_up(net *t, const char *a, const char *b)
{
    set_side(t, a, b, 1, PLENTY);
    set_side(t, b, a, 1, PLENTY);
}

static void add_sae(net *t, const char *kme, const char *sae)
{
    kme_advert *a = &t->adv[idx(t, kme)];
    snprintf(a->saes[a->sae_count++], ETSI_ID_MAX + 1, "%s", sae);
}

/* origin makes a new advert: bumps its seq. */
static void bump(net *t, const char *origin)
{
    t->adv[idx(t, origin)].seq++;
}

/* Floods every live advert to every live db, each db in its own order. */
static void flood(net *t, int64_t now_ms)
{
    for (size_t d = 0; d < t->n; d++)
        for (size_t k = 0; k < t->n; k++) {
            size_t o = (d + k) % t->n;
            if (!t->dead[o] && !t->dead[d])
                routing_db_accept(&t->db[d], &t->adv[o], now_ms);
        }
}

static void compute_all(net *t)
{
    for (size_t i = 0; i < t->n; i++) {
        routing_table_clear(&t->table[i]);
        if (!t->dead[i])
            ck_assert_int_eq(routing_compute(&t->db[i], t->adv[i].origin, &t->table[i]), 0);
    }
}

/* From every live node to every other: following next hops reaches the
 * destination along exactly the path the source computed, the cost falls at
 * every hop, and reachability is symmetric. Returns the reachable pairs. */
static int walk_all(net *t)
{
    int pairs = 0;
    for (size_t s = 0; s < t->n; s++)
        for (size_t d = 0; d < t->n; d++) {
            if (s == d || t->dead[s] || t->dead[d])
                continue;
            const char *dest = t->adv[d].origin;
            const routing_route *r = routing_route_to(&t->table[s], dest);
            const routing_route *back = routing_route_to(&t->table[d], t->adv[s].origin);
            ck_assert_msg((r == NULL) == (back == NULL), "%s and %s disagree on reachability", t->adv[s].origin, dest);
            if (!r)
                continue;
            pairs++;
            ck_assert_str_eq(r->path[0], t->adv[s].origin);
            ck_assert_str_eq(r->path[r->hops], dest);
            ck_assert_str_eq(r->next_hop, r->path[1]);
            size_t cur = s;
            uint64_t left = r->cost;
            for (uint32_t h = 1; h <= r->hops; h++) {
                const routing_route *step = routing_route_to(&t->table[cur], dest);
                ck_assert_ptr_nonnull(step);
                ck_assert_uint_eq(step->cost, left);
                ck_assert_msg(strcmp(step->next_hop, r->path[h]) == 0, "%s->%s: at %s next hop %s, planned %s",
                              t->adv[s].origin, dest, t->adv[cur].origin, step->next_hop, r->path[h]);
                size_t next = idx(t, step->next_hop);
                const routing_route *hop = routing_route_to(&t->table[cur], step->next_hop);
                ck_assert_ptr_nonnull(hop);
                ck_assert_uint_eq(hop->hops, 1); /* a neighbour */
                ck_assert_uint_lt(step->cost - hop->cost, left);
                left -= hop->cost;
                cur = next;
            }
            ck_assert_uint_eq(cur, d);
            ck_assert_uint_eq(left, 0);
            ck_assert_ptr_null(routing_next_hop(&t->table[d], dest)); /* arrived */
        }
    return pairs;
}

static void expect_route(net *t, const char *from, const char *to, const char *path, uint64_t cost)
{
    const routing_route *r = routing_route_to(&t->table[idx(t, from)], to);
    ck_assert_msg(r != NULL, "%s->%s unreachable", from, to);
    char got[256] = "";
    for (uint32_t i = 0; i <= r->hops; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", r->path[i] + 4);
    ck_assert_msg(strcmp(got, path) == 0, "%s->%s: path %s, expected %s", from, to, got, path);
    ck_assert_uint_eq(r->cost, cost);
    ck_assert_uint_eq(r->hops, (strlen(path) + 1) / 2 - 1);
}

static void expect_unreachable(net *t, const char *from, const char *to)
{
    ck_assert_ptr_null(routing_route_to(&t->table[idx(t, from)], to));
    ck_assert_ptr_null(routing_next_hop(&t->table[idx(t, from)], to));
}

static const char *const ABCDE[] = {"KME_A", "KME_B", "KME_C", "KME_D", "KME_E"};

/* ---- codec ------------------------------------------------------------------- */

START_TEST(advert_round_trip)
{
    static kme_advert a, back;
    etsi_problem p;
    strcpy(a.origin, "KME_A");
    a.seq = INT64_MAX;
    a.age_ms = 1234;
    a.link_count = 2;
    strcpy(a.links[0].peer, "KME_B");
    a.links[0].up = 1;
    a.links[0].stock_bytes = 1ULL << 40;
    a.links[0].rate_bps = 2000000;
    strcpy(a.links[1].peer, "KME_C");
    a.sae_count = 2;
    strcpy(a.saes[0], "SAE_A");
    strcpy(a.saes[1], "SAE_A2");
    strcpy(a.cert, "MIIBCDEF");
    strcpy(a.sig, "MEUCIQ==");
    char *t = kme_advert_to_json(&a);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(kme_advert_from_json(t, strlen(t), &back, &p), 0);
    etsi_text_free(t);
    ck_assert_mem_eq(&back, &a, sizeof a);

    const char *extra = "{\"origin\":\"KME_Z\",\"seq\":0,\"age_ms\":0,\"links\":[],\"saes\":[],\"future\":{},"
                        "\"cert\":\"QUJD\",\"sig\":\"QUJD\"}";
    ck_assert_int_eq(kme_advert_from_json(extra, strlen(extra), &back, &p), 0);
    ck_assert_str_eq(back.origin, "KME_Z");
    ck_assert_uint_eq(back.link_count + back.sae_count, 0);
}
END_TEST

#define SIGNED "\"cert\":\"QUJD\",\"sig\":\"QUJD\""
#define HEAD "\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0," SIGNED
#define LINK(peer) "{\"peer\":\"" peer "\",\"up\":true,\"stock_bytes\":1,\"rate_bps\":1}"

/* An advert with count links (links != 0) or count SAEs. */
static char *many(int links, int count)
{
    size_t cap = 100000, len = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    len += (size_t)snprintf(s, cap, "{" HEAD ",\"%s\":[],\"%s\":[", links ? "saes" : "links", links ? "links" : "saes");
    for (int i = 0; i < count; i++) {
        const char *sep = i ? "," : "";
        if (links)
            len += (size_t)snprintf(s + len, cap - len,
                                    "%s{\"peer\":\"K%d\",\"up\":false,\"stock_bytes\":0,\"rate_bps\":0}", sep, i);
        else
            len += (size_t)snprintf(s + len, cap - len, "%s\"S%d\"", sep, i);
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

START_TEST(advert_rejections)
{
    static kme_advert out;
    etsi_problem p;
    const char *bad[] = {
        "",
        "[]",
        "{" HEAD ",\"links\":[],\"saes\":[]",
        "{\"seq\":1,\"age_ms\":0,\"links\":[],\"saes\":[]}",                      /* no origin */
        "{\"origin\":\"KME A\",\"seq\":1,\"age_ms\":0,\"links\":[],\"saes\":[]}", /* bad ID */
        "{\"origin\":\"\",\"seq\":1,\"age_ms\":0,\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":-1,\"age_ms\":0,\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":\"1\",\"age_ms\":0,\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1.5,\"age_ms\":0,\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1,\"links\":[],\"saes\":[]}", /* no age */
        "{\"origin\":\"KME_A\",\"seq\":1,\"seq\":2,\"age_ms\":0,\"links\":[],\"saes\":[]}",
        "{" HEAD ",\"saes\":[]}", /* no links */
        "{" HEAD ",\"links\":{},\"saes\":[]}",
        "{" HEAD ",\"links\":[]}",                              /* no saes */
        "{" HEAD ",\"links\":[" LINK("KME_A") "],\"saes\":[]}", /* link to itself */
        "{" HEAD ",\"links\":[" LINK("KME/B") "],\"saes\":[]}",
        "{" HEAD ",\"links\":[" LINK("KME_B") "," LINK("KME_B") "],\"saes\":[]}",
        "{" HEAD ",\"links\":[{\"peer\":\"KME_B\",\"up\":1,\"stock_bytes\":1,\"rate_bps\":1}],\"saes\":[]}",
        "{" HEAD ",\"links\":[{\"peer\":\"KME_B\",\"up\":true,\"stock_bytes\":-1,\"rate_bps\":1}],\"saes\":[]}",
        "{" HEAD ",\"links\":[{\"peer\":\"KME_B\",\"up\":true,\"stock_bytes\":1}],\"saes\":[]}",
        "{" HEAD ",\"links\":[\"KME_B\"],\"saes\":[]}",
        "{" HEAD ",\"links\":[],\"saes\":[\"SAE_B\",\"SAE_B\"]}",
        "{" HEAD ",\"links\":[],\"saes\":[\"SAE B\"]}",
        "{" HEAD ",\"links\":[],\"saes\":[7]}",
        "{" HEAD ",\"links\":[],\"saes\":[\"SAE\\u0000B\"]}",
        "{" HEAD ",\"links\":[],\"saes\":[\""
        "0123456789012345678901234567890123456789012345678901234567890123X"
        "\"]}",
        /* unsigned, or the signature or certificate not base64 */
        "{\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0,\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0,\"cert\":\"QUJD\",\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0,\"sig\":\"QUJD\",\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0,\"cert\":\"QUJD\",\"sig\":\"QU*D\",\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0,\"cert\":\"\",\"sig\":\"QUJD\",\"links\":[],\"saes\":[]}",
        "{\"origin\":\"KME_A\",\"seq\":1,\"age_ms\":0,\"cert\":\"QUJD\",\"sig\":7,\"links\":[],\"saes\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&p, 0, sizeof p);
        ck_assert_msg(kme_advert_from_json(bad[i], strlen(bad[i]), &out, &p) == -1, "accepted %s", bad[i]);
        ck_assert_msg(p.message[0] && (p.detail[0] || strcmp(p.message, "malformed JSON") == 0), "no problem for %s",
                      bad[i]);
        ck_assert_uint_eq(out.link_count + out.sae_count, 0);
    }
    ck_assert_int_eq(kme_advert_from_json(NULL, 0, &out, &p), -1);

    /* the bounds: 64 links and 256 SAEs pass, one more does not */
    int limits[] = {KME_ADVERT_MAX_SAES, KME_ADVERT_MAX_LINKS};
    for (int c = 0; c < 2; c++)
        for (int extra = 0; extra <= 1; extra++) {
            char *s = many(c, limits[c] + extra);
            ck_assert_int_eq(kme_advert_from_json(s, strlen(s), &out, &p), extra ? -1 : 0);
            free(s);
        }

    /* validate guards what the local KME builds itself */
    static kme_advert a;
    strcpy(a.origin, "KME_A");
    ck_assert_int_eq(kme_advert_validate(&a, NULL), 0);
    a.seq = (uint64_t)INT64_MAX + 1;
    ck_assert_int_eq(kme_advert_validate(&a, &p), -1);
    a.seq = 1;
    a.sae_count = KME_ADVERT_MAX_SAES + 1;
    ck_assert_int_eq(kme_advert_validate(&a, &p), -1);
}
END_TEST

/* ---- database ------------------------------------------------------------------ */

START_TEST(db_accept_and_expire)
{
    static kme_advert a, copy;
    routing_db db;
    routing_db_init(&db, NULL);
    strcpy(a.origin, "KME_B");
    a.seq = 5;
    a.age_ms = 1000;
    ck_assert_int_eq(routing_db_accept(&db, &a, 10000), ROUTING_NEW);
    ck_assert_int_eq(routing_db_accept(&db, &a, 10001), ROUTING_DUPLICATE);
    a.seq = 4;
    ck_assert_int_eq(routing_db_accept(&db, &a, 10002), ROUTING_STALE);
    ck_assert_uint_eq(routing_db_find(&db, "KME_B")->seq, 5);
    a.seq = 6;
    a.age_ms = ROUTING_DEFAULT_MAX_AGE_MS + 1;
    ck_assert_int_eq(routing_db_accept(&db, &a, 10003), ROUTING_TOO_OLD);
    a.age_ms = 0;
    a.sae_count = 2;
    strcpy(a.saes[0], "SAE_X");
    strcpy(a.saes[1], "SAE_X");
    ck_assert_int_eq(routing_db_accept(&db, &a, 10003), ROUTING_INVALID);
    ck_assert_uint_eq(routing_db_find(&db, "KME_B")->seq, 5);

    /* age at receipt (1000) plus time held */
    ck_assert_int_eq(routing_db_flood_copy(&db, "KME_B", 12500, &copy), 0);
    ck_assert_uint_eq(copy.age_ms, 3500);
    ck_assert_uint_eq(copy.seq, 5);
    ck_assert_int_eq(routing_db_flood_copy(&db, "KME_Q", 12500, &copy), -1);
    ck_assert_ptr_null(routing_db_find(&db, "KME_Q"));

    strcpy(a.origin, "KME_A");
    a.sae_count = 0;
    a.seq = 1;
    ck_assert_int_eq(routing_db_accept(&db, &a, 15000), ROUTING_NEW);
    ck_assert_uint_eq(db.count, 2);
    ck_assert_str_eq(db.entries[0]->advert.origin, "KME_A"); /* kept in ID order */

    /* KME_B: 1000 + (19000 - 10000) = 10000 ms old */
    ck_assert_uint_eq(routing_db_expire(&db, 19000, 10000), 0);
    ck_assert_uint_eq(routing_db_expire(&db, 19001, 10000), 1);
    ck_assert_ptr_null(routing_db_find(&db, "KME_B"));
    ck_assert_ptr_nonnull(routing_db_find(&db, "KME_A"));
    /* once expired, an origin that restarted its counter is heard again */
    strcpy(a.origin, "KME_B");
    a.seq = 1;
    ck_assert_int_eq(routing_db_accept(&db, &a, 19002), ROUTING_NEW);
    routing_db_clear(&db);
    ck_assert_uint_eq(db.count, 0);
}
END_TEST

START_TEST(db_is_bounded)
{
    static kme_advert a;
    routing_db db;
    routing_db_init(&db, NULL);
    for (int i = 0; i <= ROUTING_MAX_KMES; i++) {
        snprintf(a.origin, sizeof a.origin, "KME_%03d", i);
        ck_assert_int_eq(routing_db_accept(&db, &a, 0), i < ROUTING_MAX_KMES ? ROUTING_NEW : ROUTING_FULL);
    }
    ck_assert_uint_eq(db.count, ROUTING_MAX_KMES);
    routing_db_clear(&db);
}
END_TEST

/* ---- routes ------------------------------------------------------------------ */

START_TEST(star_goes_through_hub)
{
    net *t = net_new(ABCDE, 3);
    link_up(t, "KME_A", "KME_B");
    link_up(t, "KME_A", "KME_C");
    add_sae(t, "KME_A", "SAE_A");
    add_sae(t, "KME_B", "SAE_B");
    add_sae(t, "KME_C", "SAE_C");
    flood(t, 0);
    compute_all(t);
    expect_route(t, "KME_B", "KME_C", "B,A,C", 2);
    expect_route(t, "KME_C", "KME_B", "C,A,B", 2);
    expect_route(t, "KME_B", "KME_A", "B,A", 1);
    ck_assert_str_eq(routing_next_hop(&t->table[1], "KME_C"), "KME_A");
    ck_assert_ptr_null(routing_next_hop(&t->table[1], "KME_B")); /* self */
    ck_assert_ptr_null(routing_next_hop(&t->table[1], "KME_Q"));
    ck_assert_str_eq(routing_locate_sae(&t->table[1], "SAE_C"), "KME_C");
    ck_assert_str_eq(routing_locate_sae(&t->table[1], "SAE_B"), "KME_B");
    ck_assert_ptr_null(routing_locate_sae(&t->table[1], "SAE_Q"));
    ck_assert_uint_eq(t->table[1].conflict_count, 0);
    ck_assert_int_eq(walk_all(t), 6);
    net_free(t);
}
END_TEST

static net *mesh(void)
{
    net *t = net_new(ABCDE, 5);
    link_up(t, "KME_A", "KME_B");
    link_up(t, "KME_B", "KME_C");
    link_up(t, "KME_C", "KME_D");
    link_up(t, "KME_D", "KME_E");
    link_up(t, "KME_E", "KME_A");
    link_up(t, "KME_A", "KME_C");
    for (size_t i = 0; i < 5; i++) {
        char sae[16];
        snprintf(sae, sizeof sae, "SAE_%c", 'A' + (int)i);
        add_sae(t, ABCDE[i], sae);
    }
    flood(t, 0);
    compute_all(t);
    return t;
}

START_TEST(mesh_shortest_paths_and_cut)
{
    net *t = mesh();
    expect_route(t, "KME_A", "KME_C", "A,C", 1);
    expect_route(t, "KME_A", "KME_D", "A,C,D", 2); /* ties with A,E,D: C < E */
    expect_route(t, "KME_B", "KME_D", "B,C,D", 2);
    expect_route(t, "KME_B", "KME_E", "B,A,E", 2);
    expect_route(t, "KME_E", "KME_C", "E,A,C", 2);
    expect_route(t, "KME_D", "KME_B", "D,C,B", 2);
    ck_assert_int_eq(walk_all(t), 20);

    /* D reports C-D down; C still says up: the link is out both ways */
    set_side(t, "KME_D", "KME_C", 0, PLENTY);
    bump(t, "KME_D");
    flood(t, 1000);
    compute_all(t);
    expect_route(t, "KME_A", "KME_D", "A,E,D", 2);
    expect_route(t, "KME_C", "KME_D", "C,A,E,D", 3);
    expect_route(t, "KME_D", "KME_C", "D,E,A,C", 3);
    expect_route(t, "KME_B", "KME_D", "B,A,E,D", 3);
    ck_assert_int_eq(walk_all(t), 20);

    /* the old advert of D arriving late changes nothing */
    static kme_advert old;
    old = t->adv[3];
    old.seq--;
    ck_assert_int_eq(routing_db_accept(&t->db[0], &old, 1500), ROUTING_STALE);
    net_free(t);
}
END_TEST

START_TEST(expired_kme_is_unreachable)
{
    net *t = mesh();
    ck_assert_str_eq(routing_locate_sae(&t->table[0], "SAE_C"), "KME_C");
    /* everyone but C refreshes at 2/3 of the max age; at 7/6 of it C's
     * advert is too old, the others are not */
    const int64_t refresh = ROUTING_DEFAULT_MAX_AGE_MS / 3 * 2, later = ROUTING_DEFAULT_MAX_AGE_MS / 6 * 7;
    t->dead[2] = 1;
    for (size_t i = 0; i < t->n; i++)
        if (!t->dead[i])
            bump(t, ABCDE[i]);
    flood(t, refresh);
    for (size_t i = 0; i < t->n; i++)
        if (!t->dead[i])
            ck_assert_uint_eq(routing_db_expire(&t->db[i], later, ROUTING_DEFAULT_MAX_AGE_MS), 1);
    compute_all(t);
    for (size_t i = 0; i < t->n; i++)
        if (!t->dead[i]) {
            expect_unreachable(t, ABCDE[i], "KME_C");
            ck_assert_ptr_null(routing_locate_sae(&t->table[i], "SAE_C"));
        }
    expect_route(t, "KME_A", "KME_D", "A,E,D", 2);
    expect_route(t, "KME_B", "KME_D", "B,A,E,D", 3);
    expect_route(t, "KME_D", "KME_B", "D,E,A,B", 3);
    ck_assert_int_eq(walk_all(t), 12);
    net_free(t);
}
END_TEST

START_TEST(dry_link_routed_around)
{
    net *t = net_new(ABCDE, 4); /* square A-B-C-D-A */
    link_up(t, "KME_A", "KME_B");
    link_up(t, "KME_B", "KME_C");
    link_up(t, "KME_C", "KME_D");
    link_up(t, "KME_D", "KME_A");
    flood(t, 0);
    compute_all(t);
    expect_route(t, "KME_A", "KME_C", "A,B,C", 2);
    ck_assert_int_eq(walk_all(t), 12);

    /* A owns no key on A-B: A avoids sending over it; B -> A is unaffected */
    set_side(t, "KME_A", "KME_B", 1, 0);
    bump(t, "KME_A");
    flood(t, 1000);
    compute_all(t);
    expect_route(t, "KME_A", "KME_C", "A,D,C", 2);
    expect_route(t, "KME_A", "KME_B", "A,D,C,B", 3);
    expect_route(t, "KME_B", "KME_A", "B,A", 1);
    expect_route(t, "KME_C", "KME_A", "C,B,A", 2);
    ck_assert_int_eq(walk_all(t), 12);

    /* low stock costs 1 + 4 */
    set_side(t, "KME_A", "KME_B", 1, ROUTING_DEFAULT_LOW_STOCK_BYTES - 1);
    bump(t, "KME_A");
    flood(t, 2000);
    compute_all(t);
    expect_route(t, "KME_A", "KME_B", "A,D,C,B", 3);
    set_side(t, "KME_D", "KME_A", 0, PLENTY);
    bump(t, "KME_D");
    flood(t, 3000);
    compute_all(t);
    expect_route(t, "KME_A", "KME_B", "A,B", 1 + ROUTING_DEFAULT_LOW_STOCK_PENALTY);
    ck_assert_int_eq(walk_all(t), 12);
    net_free(t);
}
END_TEST

START_TEST(dry_link_used_when_only_path)
{
    net *t = net_new(ABCDE, 3); /* line A-B-C */
    link_up(t, "KME_A", "KME_B");
    link_up(t, "KME_B", "KME_C");
    set_side(t, "KME_A", "KME_B", 1, 0);
    flood(t, 0);
    compute_all(t);
    expect_route(t, "KME_A", "KME_B", "A,B", 1 + ROUTING_DEFAULT_EMPTY_PENALTY);
    expect_route(t, "KME_A", "KME_C", "A,B,C", 2 + ROUTING_DEFAULT_EMPTY_PENALTY);
    expect_route(t, "KME_C", "KME_A", "C,B,A", 2);
    ck_assert_int_eq(walk_all(t), 6);
    net_free(t);
}
END_TEST

START_TEST(one_way_links_unused)
{
    net *t = net_new(ABCDE, 3); /* triangle; B says A-B is down */
    link_up(t, "KME_A", "KME_B");
    link_up(t, "KME_B", "KME_C");
    link_up(t, "KME_C", "KME_A");
    set_side(t, "KME_B", "KME_A", 0, PLENTY);
    flood(t, 0);
    compute_all(t);
    expect_route(t, "KME_A", "KME_B", "A,C,B", 2);
    expect_route(t, "KME_B", "KME_A", "B,C,A", 2);
    ck_assert_int_eq(walk_all(t), 6);
    net_free(t);

    t = net_new(ABCDE, 3); /* A lists B and C, neither lists A */
    link_up(t, "KME_B", "KME_C");
    set_side(t, "KME_A", "KME_B", 1, PLENTY);
    set_side(t, "KME_A", "KME_C", 1, PLENTY);
    add_sae(t, "KME_A", "SAE_A");
    flood(t, 0);
    compute_all(t);
    expect_unreachable(t, "KME_A", "KME_B");
    expect_unreachable(t, "KME_B", "KME_A");
    expect_route(t, "KME_B", "KME_C", "B,C", 1);
    ck_assert_ptr_null(routing_locate_sae(&t->table[1], "SAE_A"));
    ck_assert_str_eq(routing_locate_sae(&t->table[0], "SAE_A"), "KME_A");
    ck_assert_uint_eq(t->table[0].route_count, 0);
    ck_assert_int_eq(walk_all(t), 2);
    net_free(t);
}
END_TEST

START_TEST(no_own_advert_no_routes)
{
    net *t = net_new(ABCDE, 2);
    link_up(t, "KME_A", "KME_B");
    routing_db_accept(&t->db[0], &t->adv[1], 0); /* A knows B, not itself */
    ck_assert_int_eq(routing_compute(&t->db[0], "KME_A", &t->table[0]), 0);
    ck_assert_uint_eq(t->table[0].route_count + t->table[0].sae_count, 0);
    ck_assert_int_eq(routing_compute(&t->db[0], "bad id", &t->table[0]), -1);
    net_free(t);
}
END_TEST

/* ---- directory ----------------------------------------------------------------- */

START_TEST(directory_conflicts)
{
    net *t = mesh();
    add_sae(t, "KME_C", "SAE_X");
    add_sae(t, "KME_E", "SAE_X");
    add_sae(t, "KME_B", "SAE_X");
    add_sae(t, "KME_D", "SAE_D2");
    for (size_t i = 0; i < t->n; i++)
        bump(t, ABCDE[i]);
    flood(t, 1000);
    compute_all(t);
    /* Nothing learned before: no claim is used, whatever the IDs' order. */
    for (size_t i = 0; i < t->n; i++) {
        const routing_table *tb = &t->table[i];
        ck_assert_ptr_null(routing_locate_sae(tb, "SAE_X"));
        ck_assert_str_eq(routing_locate_sae(tb, "SAE_D2"), "KME_D");
        ck_assert_uint_eq(tb->sae_count, 6);
        ck_assert_uint_eq(tb->conflict_count, 3);
        for (size_t c = 0; c < 3; c++) {
            ck_assert_str_eq(tb->conflicts[c].sae, "SAE_X");
            ck_assert_str_eq(tb->conflicts[c].kept, "");
        }
        ck_assert_str_eq(tb->conflicts[0].dropped, "KME_B");
        ck_assert_str_eq(tb->conflicts[1].dropped, "KME_C");
        ck_assert_str_eq(tb->conflicts[2].dropped, "KME_E");
    }
    /* self's own SAEs are in the directory too */
    ck_assert_str_eq(routing_locate_sae(&t->table[0], "SAE_A"), "KME_A");
    net_free(t);
}
END_TEST

/* Compute at node i with prior (the directory as first learned). */
static void compute_with(net *t, size_t i, const routing_sae *prior, size_t n)
{
    routing_table_clear(&t->table[i]);
    ck_assert_int_eq(routing_compute_prior(&t->db[i], t->adv[i].origin, prior, n, &t->table[i]), 0);
}

START_TEST(later_claim_moves_no_sae)
{
    /* D hosts SAE_D; then KME_B, whose ID sorts first, claims it too. */
    net *t = mesh();
    for (size_t i = 0; i < t->n; i++)
        bump(t, ABCDE[i]);
    flood(t, 1000);
    size_t a = idx(t, "KME_A");
    compute_with(t, a, NULL, 0);
    ck_assert_str_eq(routing_locate_sae(&t->table[a], "SAE_D"), "KME_D");
    ck_assert_uint_eq(t->table[a].conflict_count, 0);
    /* What A learned so far, as its router keeps it. */
    size_t nprior = t->table[a].sae_count;
    routing_sae *prior = malloc(nprior * sizeof *prior);
    ck_assert_ptr_nonnull(prior);
    memcpy(prior, t->table[a].saes, nprior * sizeof *prior);
    add_sae(t, "KME_B", "SAE_D");
    bump(t, "KME_B");
    flood(t, 2000);
    compute_with(t, a, prior, nprior);
    ck_assert_str_eq(routing_locate_sae(&t->table[a], "SAE_D"), "KME_D"); /* not KME_B */
    ck_assert_uint_eq(t->table[a].conflict_count, 1);
    ck_assert_str_eq(t->table[a].conflicts[0].sae, "SAE_D");
    ck_assert_str_eq(t->table[a].conflicts[0].kept, "KME_D");
    ck_assert_str_eq(t->table[a].conflicts[0].dropped, "KME_B");
    /* The routes to both KMEs are as before. */
    ck_assert_str_eq(routing_next_hop(&t->table[a], "KME_D"), "KME_C");
    /* Where nothing was learned before (B itself here), no claim is used. */
    size_t b = idx(t, "KME_B");
    compute_with(t, b, NULL, 0);
    ck_assert_ptr_null(routing_locate_sae(&t->table[b], "SAE_D"));
    /* Once B drops the claim, the conflict ends. */
    t->adv[b].sae_count--;
    bump(t, "KME_B");
    flood(t, 3000);
    compute_with(t, a, prior, nprior);
    ck_assert_uint_eq(t->table[a].conflict_count, 0);
    ck_assert_str_eq(routing_locate_sae(&t->table[a], "SAE_D"), "KME_D");
    free(prior);
    net_free(t);
}
END_TEST

START_TEST(operator_view)
{
    net *t = net_new(ABCDE, 3);
    link_up(t, "KME_A", "KME_B");
    link_up(t, "KME_A", "KME_C");
    add_sae(t, "KME_B", "SAE_B");
    add_sae(t, "KME_C", "SAE_B");
    flood(t, 0);
    compute_all(t);
    char *text = routing_table_to_json(&t->table[1]);
    ck_assert_ptr_nonnull(text);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    etsi_text_free(text);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(root, "self")), "KME_B");
    json_t *routes = json_object_get(root, "routes");
    ck_assert_uint_eq(json_array_size(routes), 2);
    json_t *c = json_array_get(routes, 1);
    ck_assert_str_eq(json_string_value(json_object_get(c, "dest")), "KME_C");
    ck_assert_str_eq(json_string_value(json_object_get(c, "next_hop")), "KME_A");
    ck_assert_int_eq(json_integer_value(json_object_get(c, "cost")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "hops")), 2);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(c, "path"), 1)), "KME_A");
    /* SAE_B claimed by B and C with nothing learned before: in no directory. */
    ck_assert_ptr_null(json_object_get(json_object_get(root, "directory"), "SAE_B"));
    json_t *conflict = json_array_get(json_object_get(root, "conflicts"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(conflict, "dropped")), "KME_C");
    ck_assert(json_is_null(json_object_get(conflict, "kept")));
    json_decref(root);

    routing_table empty;
    memset(&empty, 0, sizeof empty);
    text = routing_table_to_json(&empty);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "{\"self\":\"\",\"routes\":[],\"directory\":{},\"conflicts\":[]}");
    etsi_text_free(text);
    net_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("routing");
    add_check(s, advert_round_trip, 0);
    add_check(s, advert_rejections, 0);
    add_check(s, db_accept_and_expire, 0);
    add_check(s, db_is_bounded, 0);
    add_check(s, star_goes_through_hub, 30);
    add_check(s, mesh_shortest_paths_and_cut, 30);
    add_check(s, expired_kme_is_unreachable, 30);
    add_check(s, dry_link_routed_around, 30);
    add_check(s, dry_link_used_when_only_path, 30);
    add_check(s, one_way_links_unused, 30);
    add_check(s, no_own_advert_no_routes, 30);
    add_check(s, directory_conflicts, 30);
    add_check(s, later_claim_moves_no_sae, 30);
    add_check(s, operator_view, 30);
    return run_suite(s);
}
