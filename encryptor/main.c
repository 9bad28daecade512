/* The encryptor appliance: `encryptor --config FILE`. Loads the
 * configuration (exit 2 when it is wrong), starts the pad pool and the
 * listener, serves connections until SIGINT or SIGTERM, then ends them and
 * stops cleanly; SIGHUP re-reads the log level. Core dumps are disabled: the process holds key material. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <curl/curl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include "api/etsi014.h"
#include "encryptor/admin.h"
#include "encryptor/config.h"
#include "encryptor/conn.h"
#include "encryptor/frame.h"
#include "encryptor/listener.h"
#include "encryptor/pad_pool.h"
#include "runtime/log.h"
#include "runtime/json_wipe.h"

#define VERSION "1.0.0"
#define STOP_GRACE_MS 10000

static void usage(FILE *f)
{
    fprintf(f, "usage: encryptor --config FILE [--check]\n"
               "  --config FILE  the appliance's JSON configuration (see encryptor/README.md)\n"
               "  --check        validate the configuration and exit\n"
               "  --version      print the version\n");
}

static void no_core_dumps(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

/* SIGHUP: the log level is applied at once; every other setting shapes live
 * connections and pads, so a change to one is reported and waits for a
 * restart. A file that does not load changes nothing. */
static void reload(const char *path, const enc_config *running)
{
    static enc_config next;
    char err[512];
    if (enc_config_load(path, &next, err, sizeof err) < 0) {
        log_error("reload refused, running as before: %s", err);
        return;
    }
    enum log_level level;
    if (log_level_from_name(next.log_level, &level) == 0)
        log_set_level(level);
    snprintf(next.log_level, sizeof next.log_level, "%s", running->log_level);
    if (memcmp(&next, running, sizeof next) != 0)
        log_warn("reload: only log_level changes without a restart; the other changes in %s wait for one", path);
    else
        log_info("reload: %s applied", path);
}

static int run(const char *config_path, const enc_config *cfg)
{
    char err[512];
    pad_pool *pool = pad_pool_start(cfg, err, sizeof err);
    if (!pool) {
        log_error("cannot start the pad pool: %s", err);
        return 1;
    }
    enc_runtime rt;
    if (conn_runtime_init(&rt, cfg, pool) < 0) {
        log_error("out of memory");
        pad_pool_stop(pool);
        return 1;
    }
    listener *l = listener_start(&rt, &cfg->listen, err, sizeof err);
    enc_admin *admin = NULL;
    if (!l || enc_admin_start(&rt, &admin, err, sizeof err) < 0) {
        log_error("%s", err);
        if (l)
            listener_stop(l);
        pad_pool_stop(pool);
        conn_runtime_free(&rt);
        return 1;
    }
    enc_admin_set_accepting(admin, 1);
    if (admin)
        log_info("admin listener on http://%s:%s/ (metrics, health)", cfg->admin_listen.host, cfg->admin_listen.port);
    const char *mode = cfg->mode == FRAME_MODE_OTP ? "one-time pad" : "AES-256-GCM";
    if (cfg->role == ENC_ROLE_USERS)
        log_info("encryptor (users side) ready: RTMP clients on %s:%s%s, peer encryptor %s:%s (%s), %s, pads for %s "
                 "from %s",
                 cfg->listen.host, cfg->listen.port, cfg->transparent ? " (transparent)" : "", cfg->connect.host,
                 cfg->connect.port, cfg->peer_sae, mode, cfg->peer_sae, cfg->kme_url);
    else
        log_info("encryptor (server side) ready: peer encryptor %s on %s:%s, video server %s%s%s, %zu allowed "
                 "destinations, %s, pads from %s",
                 cfg->peer_sae, cfg->listen.host, cfg->listen.port, cfg->connect.host[0] ? cfg->connect.host : "-",
                 cfg->connect.host[0] ? ":" : "", cfg->connect.port, cfg->allowed_count, mode, cfg->kme_url);
    int sig;
    while ((sig = wait_for_signal()) == SIGHUP)
        reload(config_path, cfg);
    log_info("stopping (signal %d)", sig);
    enc_admin_set_accepting(admin, 0);
    listener_stop(l);
    conn_abort_all(&rt, "appliance stopping");
    int idle = conn_wait_idle(&rt, STOP_GRACE_MS);
    enc_admin_stop(admin);
    if (idle < 0) {
        /* Their threads still use the pool: leave it to the exit. */
        log_warn("some connections did not end within %d ms", STOP_GRACE_MS);
        return 1;
    }
    pad_pool_stats st;
    pad_pool_get_stats(pool, &st);
    pad_pool_stop(pool);
    conn_runtime_free(&rt);
    log_info("stopped: %llu connections, %llu refused, %llu tag failures, %llu malformed frames; %llu pads fetched "
             "(%llu bytes), %llu fetch failures, %llu waits for pads, %llu pads aged out, %zu unused pads cleansed",
             (unsigned long long)atomic_load(&rt.opened), (unsigned long long)conn_refused_total(&rt),
             (unsigned long long)atomic_load(&rt.tag_failures), (unsigned long long)atomic_load(&rt.malformed),
             (unsigned long long)st.keys_fetched, (unsigned long long)st.bytes_fetched,
             (unsigned long long)st.fetch_failures, (unsigned long long)st.waits, (unsigned long long)st.keys_dropped,
             st.keys_pooled);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("encryptor %s\n", VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "encryptor: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "encryptor: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    no_core_dumps();
    json_use_wiping_allocator();
    static enc_config cfg;
    char err[512];
    if (enc_config_load(config, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "encryptor: %s\n", err);
        return 2;
    }
    if (check) {
        printf("encryptor: %s is valid\n", config);
        return 0;
    }
    enum log_level level;
    if (log_level_from_name(cfg.log_level, &level) == 0)
        log_set_level(level);
    /* Signals are taken by sigwait in the main thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(config, &cfg);
    curl_global_cleanup();
    return rc;
}
