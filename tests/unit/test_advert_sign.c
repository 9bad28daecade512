/* Unit tests of the origin authentication of adverts (relay/advert_sign)
 * and of the router that relies on it (relay/router): certificates of a
 * test KME CA made here, adverts signed and checked, an advert signed by one
 * KME for another's origin refused and not stored, and an SAE claimed by a
 * second KME raising the conflict alarm without moving it. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "api/encoding.h"
#include "api/kme_advert.h"
#include "relay/advert_sign.h"
#include "relay/router.h"
#include "runtime/json_wipe.h"
#include "tests/unit/test_pki.h"

static advert_signer *signer_of(const char *id, const char *variant)
{
    char cert[64], key[64], err[256];
    snprintf(cert, sizeof cert, "%s%s.pem", id, variant);
    snprintf(key, sizeof key, "%s%s.key", id, variant);
    advert_signer *s =
        advert_signer_new(test_pki_path(cert), test_pki_path(key), test_pki_path("ca.pem"), id, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    return s;
}

static void advert_of(kme_advert *a, const char *origin, uint64_t seq, const char *peer, const char *sae)
{
    memset(a, 0, sizeof *a);
    snprintf(a->origin, sizeof a->origin, "%s", origin);
    a->seq = seq;
    a->link_count = 1;
    snprintf(a->links[0].peer, sizeof a->links[0].peer, "%s", peer);
    a->links[0].up = 1;
    a->links[0].stock_bytes = 1 << 20;
    a->sae_count = 1;
    snprintf(a->saes[0], sizeof a->saes[0], "%s", sae);
}

/* ---- signing and checking ------------------------------------------------------------ */

START_TEST(signed_adverts_check_and_altered_ones_do_not)
{
    test_pki_make();
    advert_signer *b = signer_of("KME_B", ""), *c = signer_of("KME_C", "");
    static kme_advert a, back;
    char why[200];
    etsi_problem p;
    advert_of(&a, "KME_B", 7, "KME_A", "SAE_B");
    ck_assert_int_eq(advert_verify(c, &a, why, sizeof why), -1); /* unsigned */
    ck_assert_str_eq(why, "not signed");
    ck_assert_int_eq(advert_sign(b, &a), 0);
    ck_assert_int_eq(advert_verify(c, &a, why, sizeof why), 0);
    /* Through the codec, as flooded, with age_ms grown on the way. */
    a.age_ms = 4321;
    char *t = kme_advert_to_json(&a);
    ck_assert_int_eq(kme_advert_from_json(t, strlen(t), &back, &p), 0);
    etsi_text_free(t);
    ck_assert_int_eq(advert_verify(c, &back, why, sizeof why), 0);
    ck_assert(advert_same_signed(&a, &back));
    /* Any signed member altered: bad signature. */
    back.saes[0][4] = 'C';
    ck_assert_int_eq(advert_verify(c, &back, why, sizeof why), -1);
    ck_assert_str_eq(why, "bad signature");
    ck_assert(!advert_same_signed(&a, &back));
    back = a;
    back.seq++;
    ck_assert_int_eq(advert_verify(c, &back, why, sizeof why), -1);
    back = a;
    back.links[0].up = 0;
    ck_assert_int_eq(advert_verify(c, &back, why, sizeof why), -1);
    back = a;
    back.sig[5] = back.sig[5] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(advert_verify(c, &back, why, sizeof why), -1);
    /* Signed by KME_B for origin KME_C: its certificate names another KME. */
    advert_of(&a, "KME_C", 8, "KME_A", "SAE_B");
    ck_assert_int_eq(advert_sign(b, &a), 0);
    ck_assert_int_eq(advert_verify(c, &a, why, sizeof why), -1);
    ck_assert_ptr_nonnull(strstr(why, "does not name the origin KME_C"));
    /* KME_C's name on a certificate of another CA. */
    char err[256];
    ck_assert_ptr_null(advert_signer_new(test_pki_path("KME_C.rogue.pem"), test_pki_path("KME_C.rogue.key"),
                                         test_pki_path("ca.pem"), "KME_C", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "does not chain"));
    advert_of(&a, "KME_C", 9, "KME_A", "SAE_B");
    ck_assert_int_eq(advert_sign(c, &a), 0);
    ck_assert_int_eq(advert_verify(b, &a, why, sizeof why), 0);
    /* Swap in the rogue certificate: it does not chain to the KME CA. */
    FILE *f = fopen(test_pki_path("KME_C.rogue.pem"), "r");
    X509 *rc = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    unsigned char *der = NULL;
    int n = i2d_X509(rc, &der);
    char *b64 = base64_encode(der, (size_t)n);
    snprintf(a.cert, sizeof a.cert, "%s", b64);
    ck_assert_int_eq(advert_verify(b, &a, why, sizeof why), -1);
    ck_assert_ptr_nonnull(strstr(why, "does not chain"));
    free(b64);
    OPENSSL_free(der);
    X509_free(rc);
    /* A key that is not the certificate's, or a certificate of another KME, is refused at start. */
    ck_assert_ptr_null(advert_signer_new(test_pki_path("KME_B.pem"), test_pki_path("KME_C.key"),
                                         test_pki_path("ca.pem"), "KME_B", err, sizeof err));
    ck_assert_ptr_null(advert_signer_new(test_pki_path("KME_B.pem"), test_pki_path("KME_B.key"),
                                         test_pki_path("ca.pem"), "KME_C", err, sizeof err));
    advert_signer_free(b);
    advert_signer_free(c);
    test_pki_remove();
}
END_TEST

/* ---- the router at KME_A, hub of a star A-B, A-C -------------------------------------------- */

static size_t conflicts_seen = (size_t)-1;

static int hosts_a(void *ctx, const char *sae)
{
    (void)ctx;
    return strcmp(sae, "SAE_A") == 0;
}

static size_t hosted_a(void *ctx, char *const **out)
{
    static char *const saes[] = {"SAE_A"};
    (void)ctx;
    *out = saes;
    return 1;
}

static void link_stock(void *ctx, const relay_link *l, const lb_stock *st)
{
    (void)ctx;
    (void)l;
    (void)st;
}

static void sae_conflicts(void *ctx, size_t n)
{
    (void)ctx;
    conflicts_seen = n;
}

static int post_advert(relay_node *k, size_t link, const kme_advert *a, char **answer)
{
    char *body = kme_advert_to_json(a);
    ck_assert_ptr_nonnull(body);
    http_request req;
    http_response resp = {0, NULL, 0};
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.body = body;
    req.body_len = strlen(body);
    router_advert_handle(k, &k->links[link], &req, &resp);
    etsi_text_free(body);
    *answer = strdup(resp.body ? resp.body : "");
    etsi_text_free(resp.body);
    return resp.status;
}

typedef struct {
    int held_c; /* an advert of KME_C is held */
    uint64_t seq_c;
    size_t conflicts;
    char kept[ETSI_ID_MAX + 1];
} view;

static void look(void *ctx, const routing_db *db, const routing_table *table)
{
    view *v = ctx;
    const kme_advert *c = routing_db_find(db, "KME_C");
    v->held_c = c != NULL;
    v->seq_c = c ? c->seq : 0;
    v->conflicts = table->conflict_count;
    snprintf(v->kept, sizeof v->kept, "%s", table->conflict_count ? table->conflicts[0].kept : "");
}

START_TEST(router_refuses_a_forged_origin_and_keeps_a_claimed_sae)
{
    test_pki_make();
    char sdir[] = "/tmp/advertstore.XXXXXX", err[256], *answer;
    ck_assert_ptr_nonnull(mkdtemp(sdir));
    static kme_store store;
    ck_assert_int_eq(store_open(&store, sdir, 64, "KME_A", NULL, err, sizeof err), 0);
    relay_node *k = calloc(1, sizeof *k);
    ck_assert_ptr_nonnull(k);
    k->store = &store;
    strcpy(k->cfg.kme_id, "KME_A");
    snprintf(k->cfg.kme_cert, sizeof k->cfg.kme_cert, "%s", test_pki_path("KME_A.pem"));
    snprintf(k->cfg.kme_key, sizeof k->cfg.kme_key, "%s", test_pki_path("KME_A.key"));
    snprintf(k->cfg.kme_ca, sizeof k->cfg.kme_ca, "%s", test_pki_path("ca.pem"));
    const char *peers[] = {"KME_B", "KME_C"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(k->cfg.links[i].peer_id, sizeof k->cfg.links[i].peer_id, "%s", peers[i]);
        lb_link_init(&k->links[i].lb, "KME_A", peers[i]);
        k->links[i].index = i;
        atomic_store(&k->links[i].peer_up, 1);
    }
    k->cfg.link_count = 2;
    k->hooks.hosts_sae = hosts_a;
    k->hooks.hosted_saes = hosted_a;
    k->hooks.link_stock = link_stock;
    k->hooks.sae_conflicts = sae_conflicts;
    ck_assert_int_eq(router_init(k), 0);
    advert_signer *b = signer_of("KME_B", ""), *c = signer_of("KME_C", "");
    static kme_advert adv;
    /* KME_C hosts SAE_C; A learns it. */
    advert_of(&adv, "KME_C", 100, "KME_A", "SAE_C");
    ck_assert_int_eq(advert_sign(c, &adv), 0);
    ck_assert_int_eq(post_advert(k, 1, &adv, &answer), 200);
    free(answer);
    advert_of(&adv, "KME_B", 100, "KME_A", "SAE_B");
    ck_assert_int_eq(advert_sign(b, &adv), 0);
    ck_assert_int_eq(post_advert(k, 0, &adv, &answer), 200);
    free(answer);
    char kme[ETSI_ID_MAX + 1];
    ck_assert_int_eq(router_locate_sae(k, "SAE_C", kme), 2);
    ck_assert_str_eq(kme, "KME_C");
    ck_assert_int_eq(router_kme_hosts(k, "KME_C", "SAE_C"), 1);
    ck_assert_uint_eq(conflicts_seen, 0);
    /* KME_B, signing with its own key, speaks for KME_C (links down, SAE_C
     * gone): refused, not stored (so not flooded on). Unsigned: the same. */
    advert_of(&adv, "KME_C", 200, "KME_A", "SAE_B");
    adv.links[0].up = 0;
    ck_assert_int_eq(advert_sign(b, &adv), 0);
    ck_assert_int_eq(post_advert(k, 0, &adv, &answer), 400);
    ck_assert_ptr_nonnull(strstr(answer, "advert not authentic"));
    free(answer);
    adv.cert[0] = adv.sig[0] = '\0';
    ck_assert_int_eq(post_advert(k, 0, &adv, &answer), 400);
    free(answer);
    view v;
    router_inspect(k, look, &v);
    ck_assert_int_eq(v.held_c, 1);
    ck_assert_uint_eq(v.seq_c, 100);
    ck_assert_int_eq(router_locate_sae(k, "SAE_C", kme), 2);
    ck_assert_str_eq(kme, "KME_C");
    /* KME_B claims SAE_C in its own signed advert: its ID sorts first, but
     * the SAE stays where it was first learned, and the alarm is up. */
    advert_of(&adv, "KME_B", 101, "KME_A", "SAE_B");
    strcpy(adv.saes[adv.sae_count++], "SAE_C");
    ck_assert_int_eq(advert_sign(b, &adv), 0);
    ck_assert_int_eq(post_advert(k, 0, &adv, &answer), 200);
    free(answer);
    ck_assert_int_eq(router_locate_sae(k, "SAE_C", kme), 2);
    ck_assert_str_eq(kme, "KME_C");
    ck_assert_int_eq(router_kme_hosts(k, "KME_C", "SAE_C"), 1);
    ck_assert_int_eq(router_kme_hosts(k, "KME_B", "SAE_C"), 0); /* its claim is not believed */
    ck_assert_uint_eq(conflicts_seen, 1);
    router_inspect(k, look, &v);
    ck_assert_uint_eq(v.conflicts, 1);
    ck_assert_str_eq(v.kept, "KME_C");
    /* B drops the claim: the alarm ends. */
    advert_of(&adv, "KME_B", 102, "KME_A", "SAE_B");
    ck_assert_int_eq(advert_sign(b, &adv), 0);
    ck_assert_int_eq(post_advert(k, 0, &adv, &answer), 200);
    free(answer);
    ck_assert_uint_eq(conflicts_seen, 0);
    router_stop(k);
    advert_signer_free(b);
    advert_signer_free(c);
    store_close(&store);
    free(k);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", sdir);
    ck_assert_int_eq(system(cmd), 0);
    test_pki_remove();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    Suite *s = suite_create("advert_sign");
    TCase *tc = tcase_create("advert_sign");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, signed_adverts_check_and_altered_ones_do_not);
    tcase_add_test(tc, router_refuses_a_forged_origin_and_keeps_a_claimed_sae);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
