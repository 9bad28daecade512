/* qkd-sim --device: each end of a simulated QKD link served as an ETSI GS
 * QKD 014 device over HTTPS with client certificates (runtime/http_server,
 * api/etsi014 codecs). Owns the table of key pairs: enc_keys at one end
 * (called by that end's SAE for the other end's SAE) makes fresh keys with
 * RAND_bytes, hands them to the caller and holds the same bytes for the
 * other end; dec_keys there hands each over once and forgets it. Keys live
 * in memory only: a restarted device has none.
 *
 * Fault injection for the tests: --fault-file FILE is read at each request;
 * "MODE [END]" (END 0 or 1; none: both ends) with MODE one of none, 503
 * (refuse), hang (answer after 30 s), short (one key fewer than asked or
 * named), wrong-size (each key one byte short). */
#include "qkd-sim/device.h"
#include "api/etsi014.h"
#include "runtime/http_server.h"
#include "runtime/json_wipe.h"
#include "runtime/log.h"
#include "runtime/stop_signal.h"
#include "runtime/worker_pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define PROG "qkd-sim"
#define HANG_MS 30000
#define DEFAULT_MAX_HELD 100000

enum fault { FAULT_NONE, FAULT_503, FAULT_HANG, FAULT_SHORT, FAULT_WRONG_SIZE };

typedef struct {
    char key_id[UUID_STR_LEN + 1];
    int for_end; /* the end whose SAE may fetch it */
    unsigned char *key;
    size_t len;
} held_key;

typedef struct device device;

typedef struct {
    device *dev;
    int index;
    net_endpoint listen;
    char sae_id[ETSI_ID_MAX + 1]; /* the one SAE this end serves */
    http_server *server;
} device_end;

struct device {
    device_end ends[2];
    const char *fault_file;
    long max_held;
    pthread_mutex_t lock;
    held_key *held;
    size_t nheld;
    stop_signal stop;
};

static const char usage_text[] =
    "usage: " PROG " --device HOST:PORT=SAE_ID --device HOST:PORT=SAE_ID --cert FILE --key FILE --client-ca FILE\n"
    "               [--fault-file FILE] [--max-held N]\n";

static void usage_error(const char *msg, const char *arg) __attribute__((noreturn));
static void usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, PROG ": %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", usage_text);
    exit(2);
}

static enum fault read_fault(device *d, int end)
{
    if (!d->fault_file)
        return FAULT_NONE;
    FILE *f = fopen(d->fault_file, "r");
    if (!f)
        return FAULT_NONE;
    char mode[32] = "", which[8] = "";
    int n = fscanf(f, "%31s %7s", mode, which);
    fclose(f);
    if (n < 1 || (n == 2 && atoi(which) != end))
        return FAULT_NONE;
    return strcmp(mode, "503") == 0          ? FAULT_503
           : strcmp(mode, "hang") == 0       ? FAULT_HANG
           : strcmp(mode, "short") == 0      ? FAULT_SHORT
           : strcmp(mode, "wrong-size") == 0 ? FAULT_WRONG_SIZE
                                             : FAULT_NONE;
}

static const etsi_limits limits = {.key_size = 256,
                                   .max_key_per_request = 1024,
                                   .max_key_size = 8192,
                                   .min_key_size = 64,
                                   .max_sae_id_count = 0,
                                   .max_key_count = DEFAULT_MAX_HELD};

/* enc_keys at end e for the other end's SAE. */
static void enc_keys(device_end *e, const http_request *req, enum fault fault, http_response *resp)
{
    device *d = e->dev;
    etsi_key_request kr;
    etsi_problem p;
    int rc = strcmp(req->method, "POST") == 0
                 ? etsi_key_request_from_json(req->body, req->body_len, &limits, &kr, &p)
                 : etsi_key_request_from_query(http_query(req, "number"), http_query(req, "size"), &limits, &kr, &p);
    if (rc < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    if (kr.additional_count) {
        etsi_key_request_clear(&kr);
        http_error(resp, 400, "additional slaves not supported", "a QKD link has one SAE at each end");
        return;
    }
    size_t n = (size_t)kr.number, len = (size_t)kr.size / 8;
    etsi_key_request_clear(&kr);
    etsi_key_container c = {calloc(n, sizeof(etsi_key)), 0};
    pthread_mutex_lock(&d->lock);
    held_key *grown = (long)(d->nheld + n) <= d->max_held ? realloc(d->held, (d->nheld + n) * sizeof *d->held) : NULL;
    if (grown)
        d->held = grown;
    for (size_t i = 0; grown && c.keys && i < n; i++) {
        held_key *h = &d->held[d->nheld];
        etsi_key *k = &c.keys[c.count];
        uuid_generate(h->key_id);
        h->for_end = 1 - e->index;
        h->len = len;
        h->key = malloc(len);
        k->key = malloc(len);
        if (!h->key || !k->key || RAND_bytes(h->key, (int)len) != 1) {
            free(h->key);
            free(k->key);
            k->key = NULL;
            break;
        }
        memcpy(k->key, h->key, len);
        memcpy(k->key_id, h->key_id, sizeof k->key_id);
        k->key_len = fault == FAULT_WRONG_SIZE ? len - 1 : len;
        d->nheld++;
        c.count++;
    }
    pthread_mutex_unlock(&d->lock);
    if (c.count < n) {
        etsi_key_container_clear(&c);
        http_error(resp, 503, "keys not available", "the device holds too many keys not yet fetched");
        return;
    }
    if (fault == FAULT_SHORT && c.count > 0) { /* the last one never reaches the caller */
        c.count--;
        OPENSSL_cleanse(c.keys[c.count].key, len);
        free(c.keys[c.count].key);
    }
    resp->status = 200;
    resp->body = etsi_key_container_to_json(&c);
    etsi_key_container_clear(&c);
}

/* dec_keys at end e of keys the other end's SAE took: each once. */
static void dec_keys(device_end *e, const http_request *req, enum fault fault, http_response *resp)
{
    device *d = e->dev;
    etsi_key_ids ids;
    etsi_problem p;
    int rc = strcmp(req->method, "POST") == 0 ? etsi_key_ids_from_json(req->body, req->body_len, 1024, &ids, &p)
                                              : etsi_key_ids_from_query(http_query(req, "key_ID"), &ids, &p);
    if (rc < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    etsi_key_container c = {calloc(ids.count ? ids.count : 1, sizeof(etsi_key)), 0};
    size_t *at = calloc(ids.count ? ids.count : 1, sizeof *at);
    pthread_mutex_lock(&d->lock);
    size_t missing = ids.count;
    for (size_t i = 0; c.keys && at && i < ids.count; i++) {
        size_t j = 0;
        while (j < d->nheld && (strcmp(d->held[j].key_id, ids.ids[i]) || d->held[j].for_end != e->index))
            j++;
        if (j == d->nheld) {
            missing = i;
            break;
        }
        at[i] = j;
        if (i + 1 == ids.count)
            missing = ids.count;
    }
    if (c.keys && at && missing == ids.count) { /* all or nothing, as ETSI 014 asks */
        for (size_t i = 0; i < ids.count; i++) {
            held_key *h = &d->held[at[i]];
            etsi_key *k = &c.keys[c.count++];
            memcpy(k->key_id, h->key_id, sizeof k->key_id);
            k->key = h->key;
            k->key_len = fault == FAULT_WRONG_SIZE ? h->len - 1 : h->len;
            h->key = NULL;
        }
        size_t w = 0; /* forget the keys handed over */
        for (size_t j = 0; j < d->nheld; j++)
            if (d->held[j].key)
                d->held[w++] = d->held[j];
        d->nheld = w;
    }
    pthread_mutex_unlock(&d->lock);
    if (!c.keys || !at) {
        http_error(resp, 503, "out of memory", NULL);
    } else if (missing < ids.count) {
        http_error(resp, 400, "key not found", "key_ID %s is not held for this SAE", ids.ids[missing]);
    } else {
        if (fault == FAULT_SHORT && c.count > 0) /* handed over, but lost on the way */
            c.count--, OPENSSL_cleanse(c.keys[c.count].key, c.keys[c.count].key_len), free(c.keys[c.count].key);
        resp->status = 200;
        resp->body = etsi_key_container_to_json(&c);
    }
    free(at);
    etsi_key_ids_clear(&ids);
    etsi_key_container_clear(&c);
}

static void status(device_end *e, http_response *resp)
{
    device *d = e->dev;
    etsi_status s = {.limits = limits};
    snprintf(s.source_kme_id, sizeof s.source_kme_id, "QKD_SIM_%d", e->index);
    snprintf(s.target_kme_id, sizeof s.target_kme_id, "QKD_SIM_%d", 1 - e->index);
    snprintf(s.master_sae_id, sizeof s.master_sae_id, "%s", e->sae_id);
    snprintf(s.slave_sae_id, sizeof s.slave_sae_id, "%s", d->ends[1 - e->index].sae_id);
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->nheld; i++)
        s.stored_key_count += d->held[i].for_end == e->index;
    pthread_mutex_unlock(&d->lock);
    resp->status = 200;
    resp->body = etsi_status_to_json(&s);
}

typedef struct {
    device_end *e;
    http_request req;
    enum fault fault;
    http_response resp;
} job;

static void run_job(void *arg)
{
    job *j = arg;
    if (j->fault == FAULT_HANG) {
        stop_signal_sleep(&j->e->dev->stop, HANG_MS);
        http_error(&j->resp, 503, "device stalled", NULL);
        return;
    }
    if (strstr(j->req.path, "/enc_keys"))
        enc_keys(j->e, &j->req, j->fault, &j->resp);
    else
        dec_keys(j->e, &j->req, j->fault, &j->resp);
}

static void finish_job(void *arg, http_response *resp)
{
    job *j = arg;
    *resp = j->resp;
    free(j);
}

static void handle(void *ctx, const http_request *req, http_response *resp)
{
    device_end *e = ctx;
    if (req->auth != HTTP_AUTH_OK || strcmp(req->client_cn, e->sae_id) != 0) {
        http_error(resp, 401, "unauthorized", "only SAE %s is served at this end of the link", e->sae_id);
        return;
    }
    if (req->body_too_large) {
        http_error(resp, 400, "request body too large", NULL);
        return;
    }
    const char *peer = e->dev->ends[1 - e->index].sae_id;
    char id[ETSI_ID_MAX + 2] = "", op[16] = "";
    const char *p = strncmp(req->path, "/api/v1/keys/", 13) == 0 ? req->path + 13 : NULL;
    const char *slash = p ? strchr(p, '/') : NULL;
    if (slash && (size_t)(slash - p) < sizeof id && strlen(slash + 1) < sizeof op) {
        memcpy(id, p, (size_t)(slash - p));
        snprintf(op, sizeof op, "%s", slash + 1);
    }
    int known = strcmp(op, "enc_keys") == 0 || strcmp(op, "dec_keys") == 0 || strcmp(op, "status") == 0;
    if (!known) {
        http_error(resp, 404, "not found", "no ETSI 014 operation at %.200s", req->path);
        return;
    }
    if (strcmp(id, peer) != 0) {
        http_error(resp, 400, "unknown SAE", "the SAE at the other end of this link is %s", peer);
        return;
    }
    if (strcmp(op, "status") == 0) {
        status(e, resp);
        return;
    }
    enum fault fault = read_fault(e->dev, e->index);
    if (fault == FAULT_503) {
        http_error(resp, 503, "device unavailable", "fault injected");
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    *j = (job){e, *req, fault, {0, NULL, 0}};
    http_offload(req, run_job, finish_job, j);
}

static void parse_end(const char *arg, device_end *e)
{
    const char *eq = strrchr(arg, '=');
    const char *colon = eq ? memrchr(arg, ':', (size_t)(eq - arg)) : NULL;
    if (!eq || !colon || colon == arg || (size_t)(colon - arg) >= sizeof e->listen.host || !etsi_id_is_valid(eq + 1) ||
        strlen(eq + 1) > ETSI_ID_MAX)
        usage_error("--device must be HOST:PORT=SAE_ID", arg);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end != eq || port < 1 || port > 65535)
        usage_error("--device: bad port", arg);
    memcpy(e->listen.host, arg, (size_t)(colon - arg));
    e->listen.port = (int)port;
    snprintf(e->sae_id, sizeof e->sae_id, "%s", eq + 1);
}

static void on_stop(int sig)
{
    (void)sig;
}

int device_main(int argc, char **argv)
{
    static device d;
    const char *cert = NULL, *key = NULL, *ca = NULL;
    int nends = 0;
    d.max_held = DEFAULT_MAX_HELD;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (i + 1 >= argc)
            usage_error("option needs a value", o);
        const char *v = argv[++i];
        if (strcmp(o, "--device") == 0) {
            if (nends == 2)
                usage_error("--device given more than twice", v);
            parse_end(v, &d.ends[nends++]);
        } else if (strcmp(o, "--cert") == 0)
            cert = v;
        else if (strcmp(o, "--key") == 0)
            key = v;
        else if (strcmp(o, "--client-ca") == 0)
            ca = v;
        else if (strcmp(o, "--fault-file") == 0)
            d.fault_file = v;
        else if (strcmp(o, "--max-held") == 0) {
            char *end;
            d.max_held = strtol(v, &end, 10);
            if (*end || d.max_held < 1)
                usage_error("--max-held must be a positive integer", v);
        } else
            usage_error("unknown option", o);
    }
    if (nends != 2 || !cert || !key || !ca)
        usage_error("two --device, --cert, --key and --client-ca are required", NULL);
    if (strcmp(d.ends[0].sae_id, d.ends[1].sae_id) == 0)
        usage_error("the two ends need different SAE IDs", d.ends[0].sae_id);

    json_use_wiping_allocator();
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread; taken below with sigwait */
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_mutex_init(&d.lock, NULL);
    stop_signal_init(&d.stop);
    worker_pool *workers = worker_pool_start(8);
    int status = 1;
    char err[512];
    for (int i = 0; i < 2; i++) {
        device_end *e = &d.ends[i];
        e->dev = &d;
        e->index = i;
        http_server_options o = {.listen = &e->listen,
                                 .cert_file = cert,
                                 .key_file = key,
                                 .client_ca_file = ca,
                                 .connection_limit = 256,
                                 .connection_timeout_s = 60,
                                 .body_max = ETSI_BODY_MAX,
                                 .handler = handle,
                                 .ctx = e,
                                 .name = i ? "device end 1" : "device end 0",
                                 .event_threads = 2,
                                 .workers = workers};
        if (!workers || !(e->server = http_server_start(&o, err, sizeof err))) {
            fprintf(stderr, PROG ": %s\n", workers ? err : "cannot start workers");
            goto out;
        }
    }
    fprintf(stderr, PROG ": ETSI 014 device ends on %s:%d (SAE %s) and %s:%d (SAE %s)\n", d.ends[0].listen.host,
            d.ends[0].listen.port, d.ends[0].sae_id, d.ends[1].listen.host, d.ends[1].listen.port, d.ends[1].sae_id);
    int sig;
    sigwait(&set, &sig);
    status = 0;
out:
    stop_signal_raise(&d.stop);
    for (int i = 0; i < 2; i++)
        http_server_stop(d.ends[i].server);
    if (workers)
        worker_pool_stop(workers);
    for (size_t i = 0; i < d.nheld; i++) {
        OPENSSL_cleanse(d.held[i].key, d.held[i].len);
        free(d.held[i].key);
    }
    free(d.held);
    return status;
}
