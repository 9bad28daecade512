/* Test fixture: the daemon's context (kme/context.h) for KME_A, as the
 * daemon builds it but without its listeners: the configuration loaded from
 * a file, the store in a temporary directory, and the relay node wired by
 * kme_wire_relay. Its one link, to KME_B, names a loopback port that refuses
 * connections. Between kme_open and kme_wire the store may be filled (stock
 * is counted when the node is wired). */
#ifndef TESTS_UNIT_KME_FIXTURE_H
#define TESTS_UNIT_KME_FIXTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kme/context.h"
#include "tests/unit/config_file.h"
#include "kme/key_economy.h"
#include "tests/unit/node_fixture.h"

static char kme_dir[64];

/* KME_A hosting saes (a JSON array) with more settings (JSON members,
 * each with a leading comma, or ""), its store open, its node not wired. */
static inline kme_context *kme_open(const char *saes, const char *more)
{
    kme_context *k = calloc(1, sizeof *k);
    ck_assert_ptr_nonnull(k);
    char url[128], json[2048], err[256] = "";
    refusing_url(url, sizeof url);
    snprintf(json, sizeof json,
             "{" CONFIG_BASE ",\"saes\":%s,\"links\":[{\"peer\":\"KME_B\",\"url\":\"%s\",\"key_dir\":\"/tmp/l\"}]%s}",
             saes, url, more);
    ck_assert_msg(config_load_text(json, &k->cfg, err, sizeof err) == 0, "config: %s", err);
    /* The KME certificate signs adverts: KME_A's of the test PKI. */
    test_pki_kme_files("KME_A", k->cfg.kme_cert, k->cfg.kme_key, k->cfg.kme_ca, sizeof k->cfg.kme_cert);
    stop_signal_init(&k->stop);
    temp_store_open(&k->store, kme_dir, k->cfg.kme_id);
    k->economy = economy_new();
    ck_assert_ptr_nonnull(k->economy);
    return k;
}

/* kme_wire_relay, the link counted as up when links_up is set. */
static inline void kme_wire(kme_context *k, int links_up)
{
    char err[256] = "";
    atomic_store(&k->net.links[0].peer_up, links_up);
    ck_assert_msg(kme_wire_relay(k, err, sizeof err) == 0, "kme_wire_relay: %s", err);
}

static inline void kme_close(kme_context *k)
{
    relay_node_stop(&k->net);
    temp_store_close(&k->store, kme_dir);
    kme_config_free(&k->cfg);
    economy_free(k->economy);
    free(k);
}

/* The network seen from KME_A: KME_B (SAE_B, SAE_B2) on the link, KME_C
 * (SAE_C) behind it, both links up. */
static inline void kme_learn_network(kme_context *k)
{
    static const char *const b_links[] = {"KME_A", "KME_C", NULL}, *const b_saes[] = {"SAE_B", "SAE_B2", NULL};
    static const char *const c_links[] = {"KME_B", NULL}, *const c_saes[] = {"SAE_C", NULL};
    ck_assert_int_eq(advert_to(&k->net, 0, "KME_B", 1, b_links, 1 << 20, b_saes), 200);
    ck_assert_int_eq(advert_to(&k->net, 0, "KME_C", 1, c_links, 1 << 20, c_saes), 200);
}

#endif
