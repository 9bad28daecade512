/* The KME's counters and their exposition in the Prometheus text format
 * (metrics.h). Request counts are lock-free; the tables by SAE, by link and
 * by destination KME are small and kept under one mutex, taken briefly by
 * the reporters and once per scrape. */
#include "kme/metrics.h"
#include "kme/key_economy.h"
#include "runtime/clock.h"
#include "runtime/prom_text.h"
#include "store/store_usage.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- requests by listener, operation and status ---------------------------------------- */

typedef struct {
    const char *listener, *operation;
} op_name;

/* The SAE port's operations, then the KME port's; each listener ends with "other". */
static const op_name ops[] = {
    {"sae", "status"},  {"sae", "enc_keys"}, {"sae", "dec_keys"}, {"sae", "other"}, {"kme", "verify"},
    {"kme", "reserve"}, {"kme", "resolve"},  {"kme", "claimed"},  {"kme", "relay"}, {"kme", "advert"},
    {"kme", "grant"},   {"kme", "link_ids"}, {"kme", "other"},
};
#define N_OPS (sizeof ops / sizeof ops[0])
#define SAE_OPS_FIRST 0
#define KME_OPS_FIRST 4
#define STATUS_MAX 600

static atomic_ullong requests[N_OPS][STATUS_MAX];

/* The index of path's operation among ops[first..], "other" when none. */
static size_t op_index(size_t first, const char *prefix, const char *path)
{
    size_t n = strlen(prefix);
    const char *op = strncmp(path, prefix, n) == 0 ? path + n : NULL;
    if (op && first == SAE_OPS_FIRST) { /* /api/v1/keys/{SAE_ID}/{operation} */
        const char *slash = strchr(op, '/');
        op = slash && slash != op ? slash + 1 : NULL;
    }
    size_t i = first;
    for (; strcmp(ops[i].operation, "other") != 0; i++)
        if (op && strcmp(ops[i].operation, op) == 0)
            break;
    return i;
}

static void count_answer(size_t op, int status)
{
    if (status < 100 || status >= STATUS_MAX)
        status = 500;
    atomic_fetch_add_explicit(&requests[op][status], 1, memory_order_relaxed);
}

void kme_metrics_sae_answer(void *ctx, const char *method, const char *path, int status)
{
    (void)ctx;
    (void)method;
    count_answer(op_index(SAE_OPS_FIRST, "/api/v1/keys/", path), status);
}

void kme_metrics_kme_answer(void *ctx, const char *method, const char *path, int status)
{
    (void)ctx;
    (void)method;
    count_answer(op_index(KME_OPS_FIRST, "/kme/v1/", path), status);
}

/* ---- the tables under the lock ------------------------------------------------------------- */

#define SAE_ROWS 1024
#define DEST_ROWS RELAY_MAX_DESTS
#define RECENT_RELAYS 64
#define RATE_WINDOW_MS 5000

enum { ROLE_MASTER, ROLE_SLAVE, ROLES };
static const char *const role_names[ROLES] = {"master", "slave"};

typedef struct {
    char sae[ETSI_ID_MAX + 1];
    uint64_t keys[ROLES], bits[ROLES];
} sae_row;

typedef struct {
    atomic_ullong verify_failures;
    int counted; /* the router has counted the stock once */
    lb_stock stock;
    int64_t rate_from_ms; /* start of the current rate window (monotonic) */
    uint64_t rate_from_bytes;
    double rate; /* bytes per second over the last full window */
} link_row;

/* Relay latency buckets, seconds: loopback hops take milliseconds, a route
 * across sites tens to hundreds. */
static const double relay_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define RELAY_BOUNDS (sizeof relay_bounds / sizeof relay_bounds[0])

typedef struct {
    char dest[ETSI_ID_MAX + 1];
    uint64_t ok, failed, keys, bytes;
    uint64_t buckets[RELAY_BOUNDS + 1]; /* successful relays by latency, not cumulative */
    double seconds;                     /* their sum */
} dest_row;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sae_row saes[SAE_ROWS];
static size_t nsaes;
static link_row links[KME_MAX_LINKS];
static dest_row dests[DEST_ROWS];
static size_t ndests;
static relay_event recent[RECENT_RELAYS]; /* ring; newest at recent_next - 1 */
static size_t recent_next, nrecent;

/* Locked. The row of id in a table of rows of size bytes whose first member
 * is the ID, added when there is room; NULL when full. */
static void *row_of(void *rows, size_t size, size_t *n, size_t max, const char *id)
{
    char *r = rows;
    for (size_t i = 0; i < *n; i++, r += size)
        if (strcmp(r, id) == 0)
            return r;
    if (*n == max)
        return NULL;
    (*n)++;
    snprintf(r, ETSI_ID_MAX + 1, "%s", id);
    return r;
}

void kme_metrics_delivered(kme_context *k, const char *sae, const char *role, size_t keys, size_t bits)
{
    (void)k;
    int r = !role ? -1 : strcmp(role, "master") == 0 ? ROLE_MASTER : strcmp(role, "slave") == 0 ? ROLE_SLAVE : -1;
    if (r < 0 || !sae)
        return;
    pthread_mutex_lock(&lock);
    sae_row *row = row_of(saes, sizeof *saes, &nsaes, SAE_ROWS, sae);
    if (row) {
        row->keys[r] += keys;
        row->bits[r] += bits;
    }
    pthread_mutex_unlock(&lock);
}

void kme_metrics_link_stock(void *ctx, const relay_link *l, const lb_stock *st)
{
    (void)ctx;
    if (l->index >= KME_MAX_LINKS)
        return;
    uint64_t ingested = atomic_load(&l->ingested_bytes);
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&lock);
    link_row *row = &links[l->index];
    row->stock = *st;
    row->counted = 1;
    if (!row->rate_from_ms) {
        row->rate_from_ms = now;
        row->rate_from_bytes = ingested;
    } else if (now - row->rate_from_ms >= RATE_WINDOW_MS) {
        row->rate = (double)(ingested - row->rate_from_bytes) * 1000.0 / (double)(now - row->rate_from_ms);
        row->rate_from_ms = now;
        row->rate_from_bytes = ingested;
    }
    pthread_mutex_unlock(&lock);
}

void kme_metrics_verify_failed(void *ctx, const relay_link *l, size_t blocks)
{
    (void)ctx;
    if (l->index < KME_MAX_LINKS && blocks)
        atomic_fetch_add(&links[l->index].verify_failures, blocks);
}

static atomic_size_t sae_conflicts;

void kme_metrics_sae_conflicts(void *ctx, size_t count)
{
    (void)ctx;
    atomic_store(&sae_conflicts, count);
}

void kme_metrics_relay(void *ctx, const relay_event *e)
{
    (void)ctx;
    pthread_mutex_lock(&lock);
    recent[recent_next] = *e;
    recent_next = (recent_next + 1) % RECENT_RELAYS;
    if (nrecent < RECENT_RELAYS)
        nrecent++;
    dest_row *row = row_of(dests, sizeof *dests, &ndests, DEST_ROWS, e->dest);
    if (row && e->ok) {
        row->ok++;
        row->keys += e->keys;
        row->bytes += e->bytes;
        row->buckets[prom_bucket_of(relay_bounds, RELAY_BOUNDS, e->seconds)]++;
        row->seconds += e->seconds;
    } else if (row) {
        row->failed++;
    }
    pthread_mutex_unlock(&lock);
}

size_t kme_metrics_recent_relays(kme_context *k, relay_event *out, size_t max)
{
    (void)k;
    pthread_mutex_lock(&lock);
    size_t n = 0;
    for (; n < max && n < nrecent; n++)
        out[n] = recent[(recent_next + RECENT_RELAYS - 1 - n) % RECENT_RELAYS];
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- the exposition ------------------------------------------------------------------------- */

static void write_requests(FILE *f)
{
    prom_family(f, "qkd_kme_requests_total", "counter",
                "Requests answered, by listener (sae: the ETSI GS QKD 014 port, kme: the inter-KME port), "
                "operation and HTTP status.");
    char code[16];
    for (size_t op = 0; op < N_OPS; op++)
        for (int status = 100; status < STATUS_MAX; status++) {
            uint64_t n = atomic_load_explicit(&requests[op][status], memory_order_relaxed);
            if (!n)
                continue;
            snprintf(code, sizeof code, "%d", status);
            prom_u64(f, "qkd_kme_requests_total", n, "listener", ops[op].listener, "operation", ops[op].operation,
                     "code", code, NULL);
        }
}

/* Locked. */
static void write_links(FILE *f, kme_context *k)
{
    size_t n = k->cfg.link_count < KME_MAX_LINKS ? k->cfg.link_count : KME_MAX_LINKS;
    prom_family(f, "qkd_kme_link_up", "gauge", "1 while the last contact with the neighbour over the link succeeded.");
    for (size_t i = 0; i < n; i++)
        prom_u64(f, "qkd_kme_link_up", (uint64_t)(atomic_load(&k->net.links[i].peer_up) != 0), "link",
                 k->net.links[i].lb.peer_id, NULL);
    prom_family(f, "qkd_kme_link_source_up", "gauge",
                "1 while the link's key source delivers (a QKD device that keeps failing makes it 0, and the link is "
                "advertised down).");
    for (size_t i = 0; i < n; i++)
        prom_u64(f, "qkd_kme_link_source_up", (uint64_t)(atomic_load(&k->net.links[i].source_down) == 0), "link",
                 k->net.links[i].lb.peer_id, NULL);
    prom_family(f, "qkd_kme_link_key_stock_bytes", "gauge",
                "Unused verified link key, by the end of the link that owns it (self: this KME allocates it).");
    for (size_t i = 0; i < n; i++)
        if (links[i].counted) {
            prom_u64(f, "qkd_kme_link_key_stock_bytes", links[i].stock.owned_free, "link", k->net.links[i].lb.peer_id,
                     "owner", "self", NULL);
            prom_u64(f, "qkd_kme_link_key_stock_bytes", links[i].stock.peer_free, "link", k->net.links[i].lb.peer_id,
                     "owner", "peer", NULL);
        }
    prom_family(f, "qkd_kme_link_unverified_bytes", "gauge",
                "Ingested link key not yet compared with the other end (unverified or locked in a verification).");
    for (size_t i = 0; i < n; i++)
        if (links[i].counted)
            prom_u64(f, "qkd_kme_link_unverified_bytes", links[i].stock.unverified, "link", k->net.links[i].lb.peer_id,
                     NULL);
    prom_family(f, "qkd_kme_link_blocks", "gauge",
                "Link key blocks verified, and discarded, on the link since the store began (a block used up or "
                "discarded is erased; it still counts).");
    for (size_t i = 0; i < n; i++)
        if (links[i].counted) {
            prom_u64(f, "qkd_kme_link_blocks", links[i].stock.verified_blocks, "link", k->net.links[i].lb.peer_id,
                     "state", "verified", NULL);
            prom_u64(f, "qkd_kme_link_blocks", links[i].stock.discarded_blocks, "link", k->net.links[i].lb.peer_id,
                     "state", "discarded", NULL);
        }
    prom_family(f, "qkd_kme_link_ingested_bytes_total", "counter",
                "Link key ingested from the QKD device's key files since the KME started.");
    for (size_t i = 0; i < n; i++)
        prom_u64(f, "qkd_kme_link_ingested_bytes_total", atomic_load(&k->net.links[i].ingested_bytes), "link",
                 k->net.links[i].lb.peer_id, NULL);
    prom_family(f, "qkd_kme_link_ingest_rate_bytes_per_second", "gauge",
                "Link key ingested per second over the last 5 s window.");
    for (size_t i = 0; i < n; i++)
        if (links[i].counted)
            prom_f64(f, "qkd_kme_link_ingest_rate_bytes_per_second", links[i].rate, "link", k->net.links[i].lb.peer_id,
                     NULL);
    prom_family(f, "qkd_kme_link_verify_failures_total", "counter",
                "Link key blocks this end discarded because the two ends' verification tags differed.");
    for (size_t i = 0; i < n; i++)
        prom_u64(f, "qkd_kme_link_verify_failures_total", atomic_load(&links[i].verify_failures), "link",
                 k->net.links[i].lb.peer_id, NULL);
}

/* Locked. */
static void write_delivered(FILE *f)
{
    prom_family(f, "qkd_kme_delivered_keys_total", "counter",
                "Keys handed to an SAE of this KME: as master (enc_keys) or as slave (dec_keys).");
    for (size_t i = 0; i < nsaes; i++)
        for (int r = 0; r < ROLES; r++)
            if (saes[i].keys[r])
                prom_u64(f, "qkd_kme_delivered_keys_total", saes[i].keys[r], "sae", saes[i].sae, "role", role_names[r],
                         NULL);
    prom_family(f, "qkd_kme_delivered_bits_total", "counter", "Key bits handed to an SAE of this KME, by role.");
    for (size_t i = 0; i < nsaes; i++)
        for (int r = 0; r < ROLES; r++)
            if (saes[i].keys[r])
                prom_u64(f, "qkd_kme_delivered_bits_total", saes[i].bits[r], "sae", saes[i].sae, "role", role_names[r],
                         NULL);
}

/* Locked. */
static void write_relays(FILE *f)
{
    prom_family(f, "qkd_kme_relays_total", "counter",
                "Relay messages this KME originated, by destination KME and result (ok: the destination committed).");
    for (size_t i = 0; i < ndests; i++) {
        prom_u64(f, "qkd_kme_relays_total", dests[i].ok, "dest", dests[i].dest, "result", "ok", NULL);
        prom_u64(f, "qkd_kme_relays_total", dests[i].failed, "dest", dests[i].dest, "result", "failed", NULL);
    }
    prom_family(f, "qkd_kme_relayed_keys_total", "counter",
                "Keys this KME relayed to a destination KME (committed there).");
    for (size_t i = 0; i < ndests; i++)
        prom_u64(f, "qkd_kme_relayed_keys_total", dests[i].keys, "dest", dests[i].dest, NULL);
    prom_family(f, "qkd_kme_relayed_bytes_total", "counter",
                "Key material this KME relayed to a destination KME (committed there).");
    for (size_t i = 0; i < ndests; i++)
        prom_u64(f, "qkd_kme_relayed_bytes_total", dests[i].bytes, "dest", dests[i].dest, NULL);
    prom_family(f, "qkd_kme_relay_latency_seconds", "histogram",
                "Successful relays originated here: from sealing the first hop to the destination's acknowledgement.");
    for (size_t i = 0; i < ndests; i++)
        prom_histogram(f, "qkd_kme_relay_latency_seconds", relay_bounds, dests[i].buckets, RELAY_BOUNDS,
                       dests[i].seconds, "dest", dests[i].dest, NULL);
}

/* Entries of two databases of the store (an O(1) read). */
static void write_store(FILE *f, kme_context *k)
{
    MDB_txn *txn = NULL;
    MDB_stat waiting = {0}, stock = {0};
    int ok = k->store.env && store_read_begin(&k->store, &txn) == 0;
    if (ok) {
        ok = mdb_stat(txn, k->store.keys, &waiting) == 0 && mdb_stat(txn, k->store.stock, &stock) == 0;
        mdb_txn_abort(txn);
    }
    prom_family(f, "qkd_kme_waiting_keys", "gauge", "Keys in the store waiting for their slave SAEs to fetch them.");
    if (ok)
        prom_u64(f, "qkd_kme_waiting_keys", (uint64_t)waiting.ms_entries, NULL);
    prom_family(f, "qkd_kme_stock_keys", "gauge", "Keys reserved or relayed ahead of demand, held in the store.");
    if (ok)
        prom_u64(f, "qkd_kme_stock_keys", (uint64_t)stock.ms_entries, NULL);
    store_usage u;
    ok = k->store.env && store_usage_read(&k->store, &u) == 0;
    prom_family(f, "qkd_kme_store_map_used_bytes", "gauge",
                "Bytes of the store's LMDB map in use (pages allocated less those on the free list).");
    if (ok)
        prom_u64(f, "qkd_kme_store_map_used_bytes", u.used_bytes, NULL);
    prom_family(f, "qkd_kme_store_map_size_bytes", "gauge", "The store's LMDB map size (store_max_mb).");
    if (ok)
        prom_u64(f, "qkd_kme_store_map_size_bytes", u.map_bytes, NULL);
    prom_family(f, "qkd_kme_store_high_water", "gauge",
                "1 while the store is above its high-water mark (store_high_water_percent): link ingest paused.");
    if (k->store.env)
        prom_u64(f, "qkd_kme_store_high_water", (uint64_t)store_above_high_water(&k->store), NULL);
    size_t live = 0;
    uint64_t erased = 0;
    if (k->store.env)
        epoch_keys_counts(&k->store.epochs, &live, &erased);
    prom_family(f, "qkd_kme_store_epoch_keys", "gauge",
                "Epoch keys in the store's keyring: the keys its key material is sealed under.");
    if (k->store.env)
        prom_u64(f, "qkd_kme_store_epoch_keys", (uint64_t)live, NULL);
    prom_family(f, "qkd_kme_store_epoch_keys_erased_total", "counter",
                "Epoch keys erased since the start, once every record sealed under them was gone.");
    if (k->store.env)
        prom_u64(f, "qkd_kme_store_epoch_keys_erased_total", erased, NULL);
}

/* The key economy's figures, one family a pass. */
typedef struct {
    FILE *f;
    kme_context *k;
    int family;
} economy_pass;

static void write_economy_row(void *ctx, const economy_view *v)
{
    economy_pass *p = ctx;
    if (p->family == 0) {
        prom_u64(p->f, "qkd_kme_sae_charged_bytes_total", v->charged, "sae", v->sae, "class", sae_class_name(v->cls),
                 NULL);
    } else if (p->family == 1) {
        for (int r = 0; r < ECONOMY_REASONS; r++)
            prom_u64(p->f, "qkd_kme_sae_refusals_total", v->refused[r], "sae", v->sae, "reason",
                     economy_reason_name((economy_reason)r), NULL);
    } else {
        size_t n = p->k->cfg.link_count < ECONOMY_MAX_LINKS ? p->k->cfg.link_count : ECONOMY_MAX_LINKS;
        for (size_t li = 0; li < n; li++)
            if (v->share_Bps[li] > 0)
                prom_u64(p->f, "qkd_kme_sae_share_bytes_per_second", (uint64_t)v->share_Bps[li], "sae", v->sae, "link",
                         p->k->net.links[li].lb.peer_id, NULL);
    }
}

static void write_economy(FILE *f, kme_context *k)
{
    static const char *const families[3][2] = {
        {"qkd_kme_sae_charged_bytes_total", "Link key spent for an SAE at this KME (carved, relayed or drawn from "
                                            "stock for its requests, and relays for it passing through), by SAE."},
        {"qkd_kme_sae_refusals_total", "Requests of an SAE the key economy refused, by reason."},
        {"qkd_kme_sae_share_bytes_per_second", "On a scarce link, the share of its key rate an SAE asking for it "
                                               "may take now (class priority, then weight)."}};
    if (!k->economy)
        return;
    for (int fam = 0; fam < 3; fam++) {
        prom_family(f, families[fam][0], fam == 2 ? "gauge" : "counter", families[fam][1]);
        economy_pass p = {f, k, fam};
        economy_each_sae(k->economy, write_economy_row, &p);
    }
}

char *kme_metrics_text(kme_context *k, size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    prom_family(f, "qkd_kme_up", "gauge", "1 while the KME serves.");
    prom_u64(f, "qkd_kme_up", (uint64_t)(atomic_load(&k->serving) && !stop_signal_raised(&k->stop)), "kme",
             k->cfg.kme_id, NULL);
    write_requests(f);
    write_store(f, k);
    prom_family(f, "qkd_kme_sae_conflicts", "gauge",
                "SAEs claimed by more than one KME in the adverts this KME holds (an alarm: the claims of a KME "
                "other than the one first learned are refused).");
    prom_u64(f, "qkd_kme_sae_conflicts", (uint64_t)atomic_load(&sae_conflicts), NULL);
    pthread_mutex_lock(&lock);
    write_links(f, k);
    write_delivered(f);
    write_relays(f);
    pthread_mutex_unlock(&lock);
    write_economy(f, k);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}
