/* Pooled libcurl handles to neighbour KMEs with certificate-CN pinning (see peer_client.h). */
#include "relay/peer_client.h"
#include "runtime/wipe_buf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define POOL_MAX 128

typedef struct {
    char url[512];
    char peer_id[ETSI_ID_MAX + 1];
    CURL *idle[POOL_MAX];
    int nidle;
} peer_pool;

struct peer_client {
    const relay_config *cfg;
    pthread_mutex_t lock;
    peer_pool pools[RELAY_MAX_LINKS];
    size_t npools;
    peer_transport transport; /* NULL: HTTPS */
    void *transport_ctx;
};

/* Accept the chain only if the leaf's CN is the neighbour's KME ID. */
static int verify_cn(int preverify_ok, X509_STORE_CTX *store)
{
    if (!preverify_ok)
        return 0;
    if (X509_STORE_CTX_get_error_depth(store) != 0)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    const char *expected = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    X509 *leaf = X509_STORE_CTX_get_current_cert(store);
    char cn[ETSI_ID_MAX + 2] = "";
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
    return expected && n > 0 && strcmp(cn, expected) == 0;
}

static CURLcode ssl_ctx_setup(CURL *curl, void *ssl_ctx, void *userptr)
{
    (void)curl;
    SSL_CTX_set_app_data((SSL_CTX *)ssl_ctx, userptr);
    SSL_CTX_set_verify((SSL_CTX *)ssl_ctx, SSL_VERIFY_PEER, verify_cn);
    return CURLE_OK;
}

peer_client *peer_client_new(const relay_config *cfg, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    peer_client *pc = calloc(1, sizeof *pc);
    if (!pc)
        return NULL;
    pc->cfg = cfg;
    pthread_mutex_init(&pc->lock, NULL);
    for (size_t i = 0; i < cfg->link_count; i++) {
        snprintf(pc->pools[i].url, sizeof pc->pools[i].url, "%s", cfg->links[i].url);
        snprintf(pc->pools[i].peer_id, sizeof pc->pools[i].peer_id, "%s", cfg->links[i].peer_id);
    }
    pc->npools = cfg->link_count;
    return pc;
}

void peer_client_set_transport(peer_client *pc, peer_transport fn, void *ctx)
{
    pc->transport = fn;
    pc->transport_ctx = ctx;
}

void peer_client_free(peer_client *pc)
{
    if (!pc)
        return;
    for (size_t i = 0; i < pc->npools; i++)
        for (int j = 0; j < pc->pools[i].nidle; j++)
            curl_easy_cleanup(pc->pools[i].idle[j]);
    pthread_mutex_destroy(&pc->lock);
    free(pc);
}

static CURL *take_handle(peer_client *pc, peer_pool *pool)
{
    pthread_mutex_lock(&pc->lock);
    CURL *c = pool->nidle ? pool->idle[--pool->nidle] : NULL;
    pthread_mutex_unlock(&pc->lock);
    if (c)
        return c;
    c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_SSLCERT, pc->cfg->kme_cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, pc->cfg->kme_key);
    curl_easy_setopt(c, CURLOPT_CAINFO, pc->cfg->kme_ca);
    curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_setup);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, (void *)pool->peer_id);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    return c;
}

static void give_handle(peer_client *pc, peer_pool *pool, CURL *c, int reusable)
{
    pthread_mutex_lock(&pc->lock);
    if (reusable && pool->nidle < POOL_MAX) {
        pool->idle[pool->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&pc->lock);
    if (c)
        curl_easy_cleanup(c);
}

/* Called once a connection is ready and the request is about to go out:
 * from then on the peer may have received it. */
static int count_attempt(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    (*(int *)clientp)++;
    return CURL_PREREQFUNC_OK;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *userp)
{
    peer_reply *r = userp;
    size_t n = size * nmemb;
    wipe_buf b = {r->body, r->len, r->cap, (size_t)ETSI_BODY_MAX * 64};
    if (wipe_buf_append(&b, data, n) < 0)
        return 0;
    r->body = b.data;
    r->len = b.len;
    r->cap = b.cap;
    return n;
}

int peer_post(peer_client *pc, size_t link, const char *path, const char *body, long timeout_ms, peer_reply *out)
{
    return peer_post_bytes(pc, link, path, "application/json", body, strlen(body), timeout_ms, out);
}

/* Progress callback: a nonzero answer aborts the transfer. */
static int still_alive(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    const atomic_int *alive = clientp;
    return alive && !atomic_load(alive);
}

int peer_post_bytes(peer_client *pc, size_t link, const char *path, const char *content_type, const void *body,
                    size_t len, long timeout_ms, peer_reply *out)
{
    return peer_post_bytes_alive(pc, link, path, content_type, body, len, timeout_ms, NULL, out);
}

int peer_post_bytes_alive(peer_client *pc, size_t link, const char *path, const char *content_type, const void *body,
                          size_t len, long timeout_ms, const atomic_int *alive, peer_reply *out)
{
    memset(out, 0, sizeof *out);
    if (link >= pc->npools) {
        out->not_sent = 1;
        snprintf(out->error, sizeof out->error, "no such link");
        return -1;
    }
    if (pc->transport)
        return pc->transport(pc->transport_ctx, link, path, content_type, body, len, timeout_ms, out);
    peer_pool *pool = &pc->pools[link];
    CURL *c = take_handle(pc, pool);
    if (!c) {
        out->not_sent = 1;
        snprintf(out->error, sizeof out->error, "out of memory");
        return -1;
    }
    char url[1024];
    snprintf(url, sizeof url, "%s%s", pool->url, path);
    char type[128];
    snprintf(type, sizeof type, "Content-Type: %s", content_type);
    /* No "Expect: 100-continue": a neighbour takes every body, so the round
     * trip it costs before a large body goes out buys nothing. */
    struct curl_slist *headers = curl_slist_append(curl_slist_append(NULL, type), "Expect:");
    char errbuf[CURL_ERROR_SIZE] = "";
    int attempts = 0;
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, count_attempt);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, &attempts);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, alive ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, still_alive);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)alive);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->http_status);
        give_handle(pc, pool, c, 1);
        if (out->http_status != 200 && out->body) {
            etsi_problem p;
            if (etsi_error_from_json(out->body, out->len, &p) == 0)
                snprintf(out->error, sizeof out->error, "%s%s%s", p.message, p.detail[0] ? ": " : "", p.detail);
        }
        return 0;
    }
    /* libcurl resends a request whose kept-alive connection turned out dead,
     * so the final error alone does not tell whether the peer got it. */
    out->not_sent = attempts == 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        snprintf(out->error, sizeof out->error, "%s stopped answering (its link is down)", pool->peer_id);
    else
        snprintf(out->error, sizeof out->error, "%s: %s", pool->peer_id, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    give_handle(pc, pool, c, 0);
    return -1;
}

void peer_reply_clear(peer_reply *r)
{
    wipe_buf b = {r->body, r->len, r->cap > r->len ? r->cap : r->len, 0};
    wipe_buf_free(&b);
    r->body = NULL;
    r->len = r->cap = 0;
}
