/* The kme daemon: loads the configuration, opens the store, starts the SAE
 * and KME listeners and the link and expiry workers; stops cleanly on SIGINT
 * or SIGTERM; SIGHUP reloads the configuration (kme/reload.h) and reopens
 * the audit log. `kme --config FILE --dump` prints the store (no key material);
 * `kme --config FILE --routes` the routes and application directory. */
#include "kme/admin.h"
#include "kme/audit.h"
#include "kme/context.h"
#include "kme/key_economy.h"
#include "kme/etsi_api.h"
#include "runtime/handler_gate.h"
#include "store/key_records.h"
#include "store/store_usage.h"
#include "runtime/log.h"
#include "kme/metrics.h"
#include "kme/reload.h"
#include "store/backup.h"
#include "store/forget_epochs.h"
#include "store/link_resync.h"
#include "kme/store_dump.h"
#include "runtime/worker_pool.h"
#include "relay/kme_port.h"
#include "relay/router.h"
#include "runtime/json_wipe.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define VERSION "1.0.0"
#define EVENT_THREADS 2   /* per listener: they never block */
#define WORKER_THREADS 32 /* SAE requests that wait on a neighbour KME */
#define PORT_THREADS 32   /* KME port requests (they wait only on KMEs further along a route) */

static int expire_op(kme_store *s, MDB_txn *txn, void *arg)
{
    int *n = arg;
    *n = kr_expire(s, txn, (int64_t)time(NULL), 64);
    return *n < 0 ? -1 : 0;
}

/* At start: the keys waiting per slave counted (once, for a store from
 * before the counts), and the keys delivered before the stop get the whole
 * retry window again, for slaves whose answers were lost with the stop. */
static int restart_retry_op(kme_store *s, MDB_txn *txn, void *arg)
{
    const kme_context *k = arg;
    if (kr_count_held_once(s, txn) < 0)
        return -1;
    long n = kr_restart_retry_window(s, txn, (int64_t)time(NULL), k->cfg.fetch_retry_seconds);
    if (n > 0)
        log_info("%ld delivered keys may be fetched again by their slaves for %ld s", n, k->cfg.fetch_retry_seconds);
    return n < 0 ? -1 : 0;
}

static void *expiry_main(void *arg)
{
    kme_context *k = arg;
    for (unsigned round = 0; !stop_signal_sleep(&k->stop, 1000); round++) {
        if (round % 5 == 0) {
            int forgot = store_forget_epochs(&k->store, (int64_t)time(NULL));
            if (forgot > 0)
                log_info("erased %d epoch keys: the key records, stock and link blocks they sealed are all gone, "
                         "and no copy of the store can open them now",
                         forgot);
            else if (forgot < 0)
                log_error("cannot erase spent epoch keys from the keyring: %s", strerror(errno));
        }
        int n = 0;
        do {
            if (store_commit(&k->store, expire_op, &n) != 0)
                break;
            if (n > 0)
                log_info("erased %d keys: expired unfetched, or delivered past the fetch retry window", n);
        } while (n == 64 && !stop_signal_raised(&k->stop));
    }
    return NULL;
}

/* kme --routes: the routes and directory last recorded in the store. */
static int print_routes(const kme_config *cfg, FILE *out, char *err, size_t errlen)
{
    kme_store s;
    if (store_key_open_store(&s, cfg->data_dir, cfg->store_max_mb, cfg->kme_id, &cfg->store_key, err, errlen) < 0)
        return -1;
    int rc = router_print_stored(&s, out, err, errlen);
    store_close(&s);
    return rc;
}

static int mark_restored_op(kme_store *s, MDB_txn *txn, void *arg)
{
    (void)arg;
    return lr_mark_restored(s, txn);
}

/* kme --restore DIR: the backup put in place, opened with the site's store
 * key to show it is whole, and marked restored: at the next start no link
 * is used before its neighbour's view is adopted (store/link_resync.h). */
static int restore(const kme_config *cfg, const char *from, char *err, size_t errlen)
{
    if (store_restore(from, cfg->data_dir, err, errlen) < 0)
        return -1;
    kme_store s;
    if (store_key_open_store(&s, cfg->data_dir, cfg->store_max_mb, cfg->kme_id, &cfg->store_key, err, errlen) < 0)
        return -1;
    int rc = store_commit(&s, mark_restored_op, NULL);
    store_close(&s);
    if (rc != 0)
        snprintf(err, errlen, "restore: cannot mark the restored store so that its links resynchronise");
    return rc != 0 ? -1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kme --config FILE [--dump | --routes | --init-store-key | --backup DIR | --restore DIR]\n"
               "  --config FILE  the site's JSON configuration\n"
               "  --init-store-key  create the wrapping key that store_key names (a new key file, or an AES key\n"
               "                 in the PKCS#11 token) and exit; an existing one is never replaced\n"
               "  --dump         print the store (link blocks, waiting keys; no key material) and exit\n"
               "  --routes       print the routes and the application directory the KME last computed, and exit\n"
               "  --backup DIR   copy the store, the KME running or not, into DIR (new or empty): link blocks\n"
               "                 only, sealed as in the store; waiting keys and stock are never backed up\n"
               "  --restore DIR  put the backup in DIR in place as the store (data_dir must hold none), and exit\n"
               "  --version      print the version\n");
}

static void no_core_dumps(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Each listener's requests pass a gate that closes before the listener
 * stops (runtime/handler_gate.h). */
static handler_gate sae_gate, kme_gate;

static void sae_port_gated(void *ctx, const http_request *req, http_response *resp)
{
    handler_gate_run(&sae_gate, etsi_api_handle, ctx, req, resp);
}

static void kme_port_gated(void *ctx, const http_request *req, http_response *resp)
{
    handler_gate_run(&kme_gate, kme_port_handle, ctx, req, resp);
}

/* The signals the main thread takes: SIGHUP reloads, the others stop. */
static void handled_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

static int wait_for_signal(void)
{
    sigset_t set;
    handled_signals(&set);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

static int run(kme_context *k, const char *config_path)
{
    char err[512];
    if (audit_open(k->cfg.audit_log, err, sizeof err) < 0) {
        log_error("%s", err);
        return 1;
    }
    if (store_key_open_store(&k->store, k->cfg.data_dir, k->cfg.store_max_mb, k->cfg.kme_id, &k->cfg.store_key, err,
                             sizeof err) < 0) {
        log_error("%s", err);
        audit_close();
        return 1;
    }
    store_set_high_water(&k->store, (unsigned)k->cfg.store_high_water_percent);
    store_check_high_water(&k->store);
    int rc = 1;
    k->economy = economy_new();
    if (!k->economy) {
        log_error("%s: out of memory", k->cfg.kme_id);
        store_close(&k->store);
        audit_close();
        return 1;
    }
    http_server *sae = NULL, *kme = NULL;
    pthread_t expiry;
    int expiry_started = 0;
    /* Two pools, so requests from SAEs waiting on a neighbour never hold up the
     * neighbours' requests to this KME. */
    worker_pool *workers = worker_pool_start(WORKER_THREADS), *port_workers = worker_pool_start(PORT_THREADS);
    /* What both listeners share, then what each has of its own. */
    http_server_options so = {.connection_limit = k->cfg.connection_limit,
                              .connection_timeout_s = k->cfg.connection_timeout_s,
                              .event_threads = EVENT_THREADS,
                              .connection_limit_per_address = k->cfg.connection_limit_per_address},
                        ko = so;
    so.listen = &k->cfg.sae_listen;
    so.cert_file = k->cfg.sae_cert;
    so.key_file = k->cfg.sae_key;
    so.client_ca_file = k->cfg.sae_client_ca;
    so.crl_file = k->cfg.sae_client_crl;
    so.body_max = ETSI_BODY_MAX;
    so.handler = sae_port_gated;
    so.ctx = k;
    so.name = "SAE port";
    so.workers = workers;
    so.on_answer = kme_metrics_sae_answer;
    ko.listen = &k->cfg.kme_listen;
    ko.cert_file = k->cfg.kme_cert;
    ko.key_file = k->cfg.kme_key;
    ko.client_ca_file = k->cfg.kme_ca;
    ko.crl_file = k->cfg.kme_crl;
    ko.body_max = KME_PORT_BODY_MAX;
    ko.handler = kme_port_gated;
    ko.ctx = &k->net;
    ko.name = "KME port";
    ko.workers = port_workers;
    ko.on_answer = kme_metrics_kme_answer;
    /* The KME port and the routes first, so the neighbours' adverts are
     * coming in by the time SAEs are served. */
    int wired = kme_wire_relay(k, err, sizeof err) == 0;
    if (!wired) {
        log_error("%s", err);
        goto stop;
    }
    if (!workers || !port_workers || !(kme = http_server_start(&ko, err, sizeof err))) {
        log_error("%s", err);
        goto stop;
    }
    k->kme_port = kme;
    if (relay_node_start_routing(&k->net, err, sizeof err) < 0) {
        log_error("%s", err);
        goto stop;
    }
    if (!(sae = http_server_start(&so, err, sizeof err))) {
        log_error("%s", err);
        goto stop;
    }
    k->sae_port = sae;
    if (relay_node_start_links(&k->net, err, sizeof err) < 0) {
        log_error("%s", err);
        goto stop;
    }
    if (store_commit(&k->store, restart_retry_op, k) != 0) {
        log_error("cannot read the delivered keys from the store");
        goto stop;
    }
    if (pthread_create(&expiry, NULL, expiry_main, k) != 0) {
        log_error("cannot start the expiry worker");
        goto stop;
    }
    expiry_started = 1;
    if (kme_admin_start(k, err, sizeof err) < 0) {
        log_error("%s", err);
        goto stop;
    }
    atomic_store(&k->serving, 1);
    log_info("%s ready: SAE port %s:%d, KME port %s:%d, %zu SAEs, %zu links", k->cfg.kme_id, k->cfg.sae_listen.host,
             k->cfg.sae_listen.port, k->cfg.kme_listen.host, k->cfg.kme_listen.port,
             kme_config_live(&k->cfg)->sae_count, k->cfg.link_count);
    int sig;
    while ((sig = wait_for_signal()) == SIGHUP)
        kme_reload(k, config_path);
    log_info("%s: stopping (signal %d)", k->cfg.kme_id, sig);
    rc = 0;
stop:
    atomic_store(&k->serving, 0);
    /* The admin listener reads the router and the dests: it goes before them. */
    kme_admin_stop(k);
    /* Then the API listeners: in-flight requests finish and commit; new ones (also
     * on kept-alive connections) are refused meanwhile. */
    handler_gate_close(&sae_gate);
    k->sae_port = NULL;
    http_server_stop(sae);
    handler_gate_close(&kme_gate);
    k->kme_port = NULL;
    http_server_stop(kme);
    worker_pool_stop(workers);
    worker_pool_stop(port_workers);
    stop_signal_raise(&k->stop);
    if (wired)
        relay_node_stop(&k->net);
    if (expiry_started)
        pthread_join(expiry, NULL);
    if (k->store.batches)
        log_info("%s: %llu store operations in %llu synced commits (%.1f per commit)", k->cfg.kme_id,
                 (unsigned long long)k->store.ops, (unsigned long long)k->store.batches,
                 (double)k->store.ops / (double)k->store.batches);
    store_close(&k->store);
    economy_free(k->economy);
    k->economy = NULL;
    audit_close();
    log_info("%s: stopped", k->cfg.kme_id);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int dump = 0, routes = 0, init_key = 0;
    const char *backup_to = NULL, *restore_from = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--dump") == 0) {
            dump = 1;
        } else if (strcmp(argv[i], "--routes") == 0) {
            routes = 1;
        } else if (strcmp(argv[i], "--init-store-key") == 0) {
            init_key = 1;
        } else if (strcmp(argv[i], "--backup") == 0 && i + 1 < argc) {
            backup_to = argv[++i];
        } else if (strcmp(argv[i], "--restore") == 0 && i + 1 < argc) {
            restore_from = argv[++i];
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("kme %s\n", VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "kme: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "kme: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    no_core_dumps();
    json_use_wiping_allocator();
    static kme_context k;
    char err[512];
    if (kme_config_load(config, &k.cfg, err, sizeof err) < 0) {
        fprintf(stderr, "kme: %s\n", err);
        return 2;
    }
    enum log_level level;
    if (log_level_from_name(k.cfg.log_level, &level) == 0)
        log_set_level(level);
    int rc;
    if (init_key) {
        rc = store_key_init(&k.cfg.store_key, err, sizeof err) < 0;
        if (rc)
            fprintf(stderr, "kme: %s\n", err);
        else
            printf("kme: the store's wrapping key is created\n");
    } else if (backup_to || restore_from) {
        rc = (backup_to ? store_backup(k.cfg.data_dir, backup_to, err, sizeof err)
                        : restore(&k.cfg, restore_from, err, sizeof err)) < 0;
        if (rc)
            fprintf(stderr, "kme: %s\n", err);
        else if (backup_to)
            printf("kme: the store is backed up in %s (link blocks; no waiting key, no stock)\n", backup_to);
        else
            printf("kme: the store is restored from %s; start the KME: keys that were waiting and stock are not "
                   "restored, and link key used since the backup stays spent\n",
                   restore_from);
    } else if (dump || routes) {
        rc = (dump ? store_dump(&k.cfg, stdout, err, sizeof err) : print_routes(&k.cfg, stdout, err, sizeof err)) < 0;
        if (rc)
            fprintf(stderr, "kme: %s\n", err);
    } else {
        /* Signals are taken by sigwait in the main thread only. */
        sigset_t set;
        handled_signals(&set);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        stop_signal_init(&k.stop);
        rc = run(&k, config);
        curl_global_cleanup();
    }
    kme_config_free(&k.cfg);
    return rc;
}
