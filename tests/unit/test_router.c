/* Unit tests of the router (relay/router.c) of a relay node over a real
 * store, its advert thread not started: router_init's first own advert on a
 * node with no neighbours, where SAEs are (router_locate_sae, through the
 * daemon's hooks for the SAEs hosted here), the next hop (router_next_hop,
 * NULL for an unknown or unreachable KME), and the routes and directory the
 * neighbours' adverts make (router_advert_handle, as the KME port runs it). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "relay/router.h"
#include "relay/routing.h"
#include "runtime/json_wipe.h"
#include "tests/unit/node_fixture.h"

static char dir[64];
static kme_store st;
static test_site site;
static relay_node *n;
static const char *const a_saes[] = {"SAE_A", "SAE_A2", NULL};
static const char *const to_b[] = {"KME_B", NULL};
static const char *const to_a[] = {"KME_A", NULL};
static const char *const to_a_and_c[] = {"KME_A", "KME_C", NULL};
static const char *const to_b_only[] = {"KME_B", NULL};
static const char *const b_saes[] = {"SAE_B", NULL};
static const char *const c_saes[] = {"SAE_C", NULL};

/* KME_A's node, with links to peers (NULL-terminated; NULL: none), up or not. */
static void node_ready(const char *const *peers, int up)
{
    temp_store_open(&st, dir, "KME_A");
    site_init(&site, a_saes);
    relay_config c;
    node_config(&c, "KME_A", peers);
    n = node_open(&c, &st, &site, up);
    ck_assert_ptr_nonnull(n->router);
}

static void node_done(void)
{
    node_close(n);
    temp_store_close(&st, dir);
}

/* What router_inspect shows. */
typedef struct {
    size_t adverts, routes, saes;
    char own_origin[ETSI_ID_MAX + 1];
    size_t own_saes;
    char path_to_c[4][ETSI_ID_MAX + 1];
    uint32_t hops_to_c;
} view;

static void look(void *ctx, const routing_db *db, const routing_table *table)
{
    view *v = ctx;
    v->adverts = db->count;
    v->routes = table->route_count;
    v->saes = table->sae_count;
    const kme_advert *own = routing_db_find(db, "KME_A");
    if (own) {
        snprintf(v->own_origin, sizeof v->own_origin, "%s", own->origin);
        v->own_saes = own->sae_count;
    }
    const routing_route *r = routing_route_to(table, "KME_C");
    if (r && r->hops < 4) {
        v->hops_to_c = r->hops;
        for (uint32_t i = 0; i <= r->hops; i++)
            snprintf(v->path_to_c[i], sizeof v->path_to_c[i], "%s", r->path[i]);
    }
}

static view inspect(void)
{
    view v;
    memset(&v, 0, sizeof v);
    router_inspect(n, look, &v);
    return v;
}

START_TEST(no_neighbours)
{
    node_ready(NULL, 0);
    char kme[ETSI_ID_MAX + 1] = "untouched";
    ck_assert_int_eq(router_locate_sae(n, "SAE_A", kme), 1);
    ck_assert_int_eq(router_locate_sae(n, "SAE_A2", kme), 1);
    ck_assert_int_eq(router_locate_sae(n, "SAE_X", kme), 0);
    ck_assert_str_eq(kme, "untouched");
    unsigned hops = 99;
    ck_assert_ptr_null(router_next_hop(n, "KME_B", &hops));
    ck_assert_ptr_null(router_next_hop(n, "KME_A", &hops));
    ck_assert_uint_eq(hops, 99);
    ck_assert_int_eq(router_kme_hosts(n, "KME_A", "SAE_A2"), 1);
    ck_assert_int_eq(router_kme_hosts(n, "KME_A", "SAE_X"), 0);
    ck_assert_int_eq(router_kme_hosts(n, "KME_B", "SAE_B"), -1);
    uint64_t bytes = 7;
    ck_assert_int_eq(router_advertised_stock(n, "KME_B", "KME_A", &bytes), -1);
    ck_assert_uint_eq(bytes, 7);
    /* The first own advert is in the database before anything is served. */
    view v = inspect();
    ck_assert_uint_eq(v.adverts, 1);
    ck_assert_str_eq(v.own_origin, "KME_A");
    ck_assert_uint_eq(v.own_saes, 2);
    ck_assert_uint_eq(v.routes, 0);
    ck_assert_uint_eq(v.saes, 2);
    /* The SAEs hosted here are the daemon's answer of the moment (a reload). */
    site.saes[site.nsaes++] = "SAE_A3";
    ck_assert_int_eq(router_locate_sae(n, "SAE_A3", kme), 1);
    site.nsaes = 1;
    ck_assert_int_eq(router_locate_sae(n, "SAE_A2", kme), 0);
    node_done();
}
END_TEST

START_TEST(adverts_make_routes_and_the_directory)
{
    node_ready(to_b, 1);
    char kme[ETSI_ID_MAX + 1] = "";
    /* Nothing heard from B yet. */
    ck_assert_ptr_null(router_next_hop(n, "KME_B", NULL));
    ck_assert_int_eq(router_locate_sae(n, "SAE_B", kme), 0);

    ck_assert_int_eq(advert_to(n, 0, "KME_B", 10, to_a, 5000, b_saes), 200);
    unsigned hops = 0;
    ck_assert_ptr_eq(router_next_hop(n, "KME_B", &hops), &n->links[0]);
    ck_assert_uint_eq(hops, 1);
    ck_assert_int_eq(router_locate_sae(n, "SAE_B", kme), 2);
    ck_assert_str_eq(kme, "KME_B");
    ck_assert_int_eq(router_kme_hosts(n, "KME_B", "SAE_B"), 1);
    ck_assert_int_eq(router_kme_hosts(n, "KME_B", "SAE_A"), 0);
    uint64_t bytes = 0;
    ck_assert_int_eq(router_advertised_stock(n, "KME_B", "KME_A", &bytes), 0);
    ck_assert_uint_eq(bytes, 5000);
    ck_assert_ptr_null(router_next_hop(n, "KME_C", NULL));

    /* KME_C behind B: two hops, through B. */
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 11, to_a_and_c, 5000, b_saes), 200);
    ck_assert_ptr_null(router_next_hop(n, "KME_C", NULL)); /* C has not said so */
    ck_assert_int_eq(advert_to(n, 0, "KME_C", 1, to_b_only, 5000, c_saes), 200);
    ck_assert_ptr_eq(router_next_hop(n, "KME_C", &hops), &n->links[0]);
    ck_assert_uint_eq(hops, 2);
    ck_assert_int_eq(router_locate_sae(n, "SAE_C", kme), 2);
    ck_assert_str_eq(kme, "KME_C");
    view v = inspect();
    ck_assert_uint_eq(v.adverts, 3);
    ck_assert_uint_eq(v.routes, 2);
    ck_assert_uint_eq(v.saes, 4);
    ck_assert_uint_eq(v.hops_to_c, 2);
    ck_assert_str_eq(v.path_to_c[0], "KME_A");
    ck_assert_str_eq(v.path_to_c[1], "KME_B");
    ck_assert_str_eq(v.path_to_c[2], "KME_C");
    ck_assert_ptr_null(router_next_hop(n, "KME_D", NULL));
    node_done();
}
END_TEST

START_TEST(link_down_here_no_route)
{
    node_ready(to_b, 0);
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 10, to_a, 5000, b_saes), 200);
    /* B's advert is held, but a link is used only when both ends say it is up. */
    ck_assert_int_eq(router_kme_hosts(n, "KME_B", "SAE_B"), 1);
    ck_assert_ptr_null(router_next_hop(n, "KME_B", NULL));
    char kme[ETSI_ID_MAX + 1] = "";
    ck_assert_int_eq(router_locate_sae(n, "SAE_B", kme), 0);
    ck_assert_uint_eq(inspect().routes, 0);
    node_done();
}
END_TEST

START_TEST(adverts_refused_or_dropped)
{
    node_ready(to_b, 1);
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 10, to_a, 5000, b_saes), 200);
    static const char *const bodies[] = {
        "",
        "not json",
        "{}",
        "{\"origin\":\"KME_B\",\"seq\":-1,\"age_ms\":0,\"links\":[],\"saes\":[]}",
        /* a link to itself */
        "{\"origin\":\"KME_B\",\"seq\":20,\"age_ms\":0,\"links\":[{\"peer\":\"KME_B\",\"up\":true,\"stock_bytes\":1,"
        "\"rate_bps\":0}],\"saes\":[]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_request req = request_of("POST", "/kme/v1/advert", bodies[i], strlen(bodies[i]), "application/json");
        http_response resp = {0, NULL, 0};
        router_advert_handle(n, &n->links[0], &req, &resp);
        ck_assert_msg(resp.status == 400, "body %zu: %d", i, resp.status);
        expect_error(&resp, 400, NULL);
    }
    /* The same seq again, or an older one: answered, not taken. */
    static const char *const other_saes[] = {"SAE_B9", NULL};
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 10, to_a, 5000, other_saes), 200);
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 9, to_a, 5000, other_saes), 200);
    char kme[ETSI_ID_MAX + 1] = "";
    ck_assert_int_eq(router_locate_sae(n, "SAE_B9", kme), 0);
    ck_assert_int_eq(router_kme_hosts(n, "KME_B", "SAE_B"), 1);
    /* This KME's own advert coming back is not taken as news. */
    static const char *const fake_saes[] = {"SAE_EVE", NULL};
    ck_assert_int_eq(advert_to(n, 0, "KME_A", 1, to_b, 5000, fake_saes), 200);
    ck_assert_int_eq(router_locate_sae(n, "SAE_EVE", kme), 0);
    ck_assert_int_eq(router_kme_hosts(n, "KME_A", "SAE_EVE"), 0);
    ck_assert_uint_eq(inspect().own_saes, 2);
    node_done();
}
END_TEST

START_TEST(last_known_site_kept)
{
    node_ready(to_b, 1);
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 10, to_a, 5000, b_saes), 200);
    /* B no longer lists SAE_B: where it was last seen still answers. */
    static const char *const now_saes[] = {"SAE_B2", NULL};
    ck_assert_int_eq(advert_to(n, 0, "KME_B", 11, to_a, 5000, now_saes), 200);
    char kme[ETSI_ID_MAX + 1] = "";
    ck_assert_int_eq(router_kme_hosts(n, "KME_B", "SAE_B"), 0);
    ck_assert_int_eq(router_locate_sae(n, "SAE_B", kme), 2);
    ck_assert_str_eq(kme, "KME_B");
    ck_assert_int_eq(router_locate_sae(n, "SAE_B2", kme), 2);
    node_done();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator(); /* as the daemon runs */
    const TTest *const checks[] = {no_neighbours,           adverts_make_routes_and_the_directory,
                                   link_down_here_no_route, adverts_refused_or_dropped,
                                   last_known_site_kept,    NULL};
    return run_checks("router", checks, 60, NULL, NULL);
}
