/* The HTTPS listener over libmicrohttpd/GnuTLS: TLS policy, client certificate
 * identity (cached per connection, checked again after a CRL change), the
 * revocation list, bounded request bodies, wiped responses. */
#include "runtime/http_server.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "runtime/stop_signal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#define BODY_PREALLOC_MAX (1u << 20) /* bytes reserved ahead of a body's arrival */

/* How long a stopping listener waits for its deferred requests to be
 * answered. Their work goes on past it (the worker pools are joined before
 * the store closes): only an answer that comes later is not sent. */
#define STOP_WAIT_MS 15000

/* TLS 1.3 (every suite AEAD), and TLS 1.2 with ECDHE key exchange and AEAD
 * ciphers only: no CBC, no static RSA or DHE key exchange. */
#define TLS_PRIORITIES                                                                                                 \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:"             \
    "-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE"

/* The CRLs in force: replaced whole, read under crl_lock. */
typedef struct {
    gnutls_x509_crl_t *list;
    unsigned int count;
} crl_set;

struct http_server {
    struct MHD_Daemon *daemon;
    http_handler handler;
    void *ctx;
    size_t body_max;
    char *cert_pem, *key_pem, *ca_pem;
    gnutls_x509_crt_t *cas; /* the client CA certificates: they sign the CRLs */
    unsigned int ca_count;
    pthread_mutex_t crl_lock;
    crl_set crls;
    atomic_uint crl_gen; /* changes with every new CRL set */
    char name[32];
    worker_pool *workers;
    http_answer_hook on_answer;
    atomic_int deferred; /* requests suspended now */
    /* the connections, for the deadline of their requests */
    long deadline_ms;
    pthread_mutex_t conns_lock;
    struct conn_state *conns;
    pthread_t sweeper;
    int sweeper_started;
    stop_signal stop;
    atomic_ullong cut; /* connections cut at their deadline */
};

/* Per connection: the client identity, verified once per CRL set, and since
 * when the connection has been receiving its current request. */
typedef struct conn_state {
    int checked;
    unsigned int crl_gen; /* the CRL set it was checked against */
    enum http_client_auth auth;
    const char *reason;
    char cn[ETSI_ID_MAX + 1];
    struct MHD_Connection *conn;
    atomic_llong receiving_since_ms; /* monotonic; 0 while the request is handled */
    int cut;                         /* shut down by the sweeper (under conns_lock) */
    struct conn_state *prev, *next;  /* under conns_lock */
} conn_state;

/* Per request: the body read so far, and a deferred answer. */
struct http_deferred {
    http_server *server;
    struct MHD_Connection *conn;
    char *body;
    size_t len, cap;
    int too_large;
    int deferred;
    http_finish finish;
    void *work;
};
typedef struct http_deferred request_state;

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 && n < (1L << 24) ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        snprintf(err, errlen, "cannot read %s", path);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Why a verified leaf is not one end-entity client identity, or NULL when it
 * is one: then its CN is in cn. */
static const char *leaf_problem(gnutls_x509_crt_t crt, char *cn, size_t cn_size)
{
    unsigned int critical = 0, ca = 0, usage = 0;
    int pathlen = -1;
    int rc = gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, &pathlen);
    if (rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE && (rc < 0 || ca))
        return "the client certificate is a CA certificate";
    rc = gnutls_x509_crt_get_key_usage(crt, &usage, &critical);
    if (rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE &&
        (rc < 0 || (usage & (GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN)) ||
         !(usage & GNUTLS_KEY_DIGITAL_SIGNATURE)))
        return "the client certificate's key usage is not that of a client";
    int purposes = 0, client = 0;
    for (unsigned int i = 0;; i++) {
        char oid[128];
        size_t oid_len = sizeof oid;
        rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &oid_len, NULL);
        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0)
            return "the client certificate's extended key usage cannot be read";
        purposes++;
        client |= strcmp(oid, GNUTLS_KP_TLS_WWW_CLIENT) == 0;
    }
    if (purposes && !client)
        return "the client certificate is not for client authentication";
    size_t len = cn_size;
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len) != 0 || len >= cn_size - 1 ||
        strlen(cn) != len || len == 0)
        return "the client certificate's subject does not name one identity";
    char second[ETSI_ID_MAX + 2];
    size_t second_len = sizeof second;
    rc = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1, 0, second, &second_len);
    if (rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        return "the client certificate's subject holds more than one CN";
    return NULL;
}

static void verify_client(http_server *s, struct MHD_Connection *conn, conn_state *cs)
{
    cs->checked = 1;
    cs->crl_gen = atomic_load(&s->crl_gen);
    cs->auth = HTTP_AUTH_NO_CERT;
    cs->reason = "a client certificate is required";
    cs->cn[0] = '\0';
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return;
    gnutls_session_t tls = (gnutls_session_t)ci->tls_session;
    unsigned int n = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(tls, &n);
    if (!chain || n == 0)
        return;
    cs->auth = HTTP_AUTH_UNTRUSTED;
    cs->reason = "the client certificate is not trusted";
    unsigned int status = 0;
    gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    if (gnutls_certificate_verify_peers(tls, &purpose, 1, &status) != 0 || status != 0)
        return;
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) != 0)
        return;
    char cn[ETSI_ID_MAX + 2] = "";
    const char *problem = "the client certificate cannot be read";
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == 0)
        problem = leaf_problem(crt, cn, sizeof cn);
    if (problem) {
        cs->auth = HTTP_AUTH_REFUSED;
        cs->reason = problem;
        log_warn("%s: refused a client: %s", s->name, problem);
    } else {
        pthread_mutex_lock(&s->crl_lock);
        int revoked = s->crls.count ? gnutls_x509_crt_check_revocation(crt, s->crls.list, s->crls.count) : 0;
        pthread_mutex_unlock(&s->crl_lock);
        if (revoked != 0) {
            cs->auth = HTTP_AUTH_REVOKED;
            cs->reason = "the client certificate is revoked";
            log_warn("%s: refused the revoked certificate of %s", s->name, cn);
        } else {
            memcpy(cs->cn, cn, strlen(cn) + 1);
            cs->auth = HTTP_AUTH_OK;
            cs->reason = NULL;
        }
    }
    gnutls_x509_crt_deinit(crt);
}

static void crl_set_free(crl_set *c)
{
    for (unsigned int i = 0; i < c->count; i++)
        gnutls_x509_crl_deinit(c->list[i]);
    gnutls_free(c->list);
    c->list = NULL;
    c->count = 0;
}

struct http_crl {
    crl_set set;
    unsigned int revoked;
    int stale;
};

http_crl *http_crl_load(const http_server *s, const char *crl_file, char *err, size_t errlen)
{
    http_crl *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!crl_file || !crl_file[0])
        return c;
    char *pem = read_file(crl_file, err, errlen);
    if (!pem) {
        free(c);
        return NULL;
    }
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned int)strlen(pem)};
    int rc = gnutls_x509_crl_list_import2(&c->set.list, &c->set.count, &d, GNUTLS_X509_FMT_PEM, 0);
    free(pem);
    if (rc < 0 || c->set.count == 0) {
        snprintf(err, errlen, "%s: %s holds no CRL in PEM form", s->name, crl_file);
        http_crl_free(c);
        return NULL;
    }
    for (unsigned int i = 0; i < c->set.count; i++) {
        unsigned int status = 0;
        if (gnutls_x509_crl_verify(c->set.list[i], s->cas, s->ca_count, 0, &status) < 0 ||
            (status & ~(unsigned int)GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED) != 0) {
            snprintf(err, errlen, "%s: CRL %u of %s is not signed by the client CA", s->name, i + 1, crl_file);
            http_crl_free(c);
            return NULL;
        }
        c->stale |= (status & GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED) != 0;
        int n = gnutls_x509_crl_get_crt_count(c->set.list[i]);
        c->revoked += n > 0 ? (unsigned int)n : 0;
    }
    return c;
}

unsigned int http_crl_revoked(const http_crl *c)
{
    return c->revoked;
}

int http_crl_stale(const http_crl *c)
{
    return c->stale;
}

void http_crl_free(http_crl *c)
{
    if (!c)
        return;
    crl_set_free(&c->set);
    free(c);
}

void http_server_use_crl(http_server *s, http_crl *c)
{
    crl_set next = c->set;
    free(c);
    pthread_mutex_lock(&s->crl_lock);
    crl_set old = s->crls;
    s->crls = next;
    atomic_fetch_add(&s->crl_gen, 1);
    pthread_mutex_unlock(&s->crl_lock);
    crl_set_free(&old);
}

/* Connections are listed from their opening (before the TLS handshake) to
 * their closing; MHD tells of the closing before it closes the socket. */
static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_state *cs = calloc(1, sizeof *cs);
        if (!cs)
            return;
        cs->conn = conn;
        atomic_store(&cs->receiving_since_ms, clock_mono_ms());
        pthread_mutex_lock(&s->conns_lock);
        cs->next = s->conns;
        if (s->conns)
            s->conns->prev = cs;
        s->conns = cs;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = cs;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_state *cs = *socket_context;
        if (cs) {
            pthread_mutex_lock(&s->conns_lock);
            if (cs->prev)
                cs->prev->next = cs->next;
            else
                s->conns = cs->next;
            if (cs->next)
                cs->next->prev = cs->prev;
            pthread_mutex_unlock(&s->conns_lock);
            free(cs);
        }
        *socket_context = NULL;
    }
}

/* Cuts every connection whose current request has been arriving for longer
 * than the deadline (a slow handshake, headers or body); a request being
 * handled (deferred too) is never cut. Shutting the socket down makes MHD
 * see its end and close the connection on its own thread. */
static void *sweeper_main(void *arg)
{
    http_server *s = arg;
    while (!stop_signal_sleep(&s->stop, 500)) {
        int64_t now = clock_mono_ms();
        pthread_mutex_lock(&s->conns_lock);
        for (conn_state *cs = s->conns; cs; cs = cs->next) {
            int64_t since = atomic_load(&cs->receiving_since_ms);
            if (cs->cut || since == 0 || now - since <= s->deadline_ms)
                continue;
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(cs->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (ci && ci->connect_fd != MHD_INVALID_SOCKET) {
                shutdown(ci->connect_fd, SHUT_RDWR);
                cs->cut = 1;
                atomic_fetch_add(&s->cut, 1);
            }
        }
        pthread_mutex_unlock(&s->conns_lock);
    }
    return NULL;
}

static conn_state *state_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void wipe_text(void *text)
{
    etsi_text_free(text);
}

static enum MHD_Result send_response(http_server *s, struct MHD_Connection *conn, const char *method, const char *url,
                                     http_response *r)
{
    if (!r->body) {
        r->status = 503;
        r->body = etsi_error_to_json("internal error", "the response could not be built");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(strlen(r->body), r->body, wipe_text);
    if (!resp) {
        etsi_text_free(r->body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->retry_after_s > 0) {
        char secs[24];
        snprintf(secs, sizeof secs, "%ld", r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    conn_state *cs = state_of(conn);
    if (cs && cs->auth != HTTP_AUTH_OK) /* nothing more is read from it */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (cs) /* the next request starts now */
        atomic_store(&cs->receiving_since_ms, clock_mono_ms());
    if (s->on_answer) /* before the client can see the answer */
        s->on_answer(s->ctx, method, url, r->status);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The request is in (or refused before its body): the handler answers it,
 * now or once resumed. */
static enum MHD_Result handle(http_server *s, struct MHD_Connection *conn, const char *method, const char *url,
                              request_state *rs, conn_state *cs)
{
    atomic_store(&cs->receiving_since_ms, 0);
    http_request req = {conn,
                        method,
                        url,
                        cs->auth,
                        cs->reason,
                        "",
                        rs->body,
                        rs->len,
                        rs->too_large,
                        rs,
                        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)};
    memcpy(req.client_cn, cs->cn, sizeof req.client_cn);
    http_response resp = {0, NULL, 0};
    s->handler(s->ctx, &req, &resp);
    if (rs->deferred)
        return MHD_YES; /* answered when resumed */
    return send_response(s, conn, method, url, &resp);
}

/* A deferred request's work is done: its answer, built by its finish. */
static void finish_deferred(http_server *s, request_state *rs, http_response *resp)
{
    rs->deferred = 0;
    rs->finish(rs->work, resp);
    atomic_fetch_sub(&s->deferred, 1);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    http_server *s = cls;
    request_state *rs = *req_cls;
    if (rs && rs->deferred) {
        /* Resumed: the deferred work is done. */
        http_response resp = {0, NULL, 0};
        finish_deferred(s, rs, &resp);
        return send_response(s, conn, method, url, &resp);
    }
    conn_state *cs = state_of(conn);
    conn_state fallback = {0};
    if (!cs)
        cs = &fallback;
    if (!cs->checked || cs->crl_gen != atomic_load(&s->crl_gen))
        verify_client(s, conn, cs);
    if (!rs) {
        rs = calloc(1, sizeof *rs);
        if (!rs)
            return MHD_NO;
        rs->server = s;
        rs->conn = conn;
        *req_cls = rs;
        if (cs->auth != HTTP_AUTH_OK) {
            /* Refused before any byte of its body is read (or kept). */
            *upload_data_size = 0;
            return handle(s, conn, method, url, rs, cs);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;
        if (announced > s->body_max) {
            rs->too_large = 1;
        } else {
            /* Room for the announced body at once (up to BODY_PREALLOC_MAX, so
             * a Content-Length alone reserves little): no copies while it grows. */
            size_t first = announced < BODY_PREALLOC_MAX ? (size_t)announced : BODY_PREALLOC_MAX;
            if (first && (rs->body = malloc(first + 1)) != NULL)
                rs->cap = first + 1;
            return MHD_YES;
        }
    }
    if (*upload_data_size > 0) {
        if (rs->len + *upload_data_size > s->body_max) {
            rs->too_large = 1;
            return MHD_NO; /* a chunked body beyond the bound: drop the connection */
        }
        if (rs->len + *upload_data_size + 1 > rs->cap) {
            size_t cap = (rs->len + *upload_data_size + 1) * 2;
            char *nb = realloc(rs->body, cap);
            if (!nb)
                return MHD_NO;
            rs->body = nb;
            rs->cap = cap;
        }
        memcpy(rs->body + rs->len, upload_data, *upload_data_size);
        rs->len += *upload_data_size;
        rs->body[rs->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }

    return handle(s, conn, method, url, rs, cs);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    http_server *s = cls;
    request_state *rs = *req_cls;
    if (rs && rs->deferred) {
        /* Resumed, but ended before its answer could be queued (the client
         * left, or the listener is stopping): the work is done; its answer is
         * built and dropped so that what it holds is released and counted. */
        http_response resp = {0, NULL, 0};
        finish_deferred(s, rs, &resp);
        etsi_text_free(resp.body);
        log_debug("%s: a deferred request ended without its answer (code %d)", s->name, (int)toe);
    }
    if (rs) {
        free(rs->body);
        free(rs);
        *req_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    http_server *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_debug("%s: %s", s->name, msg);
}

http_server *http_server_start(const http_server_options *o, char *err, size_t errlen)
{
    http_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->handler = o->handler;
    s->ctx = o->ctx;
    s->body_max = o->body_max;
    pthread_mutex_init(&s->crl_lock, NULL);
    snprintf(s->name, sizeof s->name, "%s", o->name);
    if (!(s->cert_pem = read_file(o->cert_file, err, errlen)) || !(s->key_pem = read_file(o->key_file, err, errlen)) ||
        !(s->ca_pem = read_file(o->client_ca_file, err, errlen)))
        goto fail;
    gnutls_datum_t ca = {(unsigned char *)s->ca_pem, (unsigned int)strlen(s->ca_pem)};
    if (gnutls_x509_crt_list_import2(&s->cas, &s->ca_count, &ca, GNUTLS_X509_FMT_PEM, 0) < 0 || s->ca_count == 0) {
        snprintf(err, errlen, "%s: %s holds no CA certificate in PEM form", o->name, o->client_ca_file);
        goto fail;
    }
    http_crl *crl = http_crl_load(s, o->crl_file, err, errlen);
    if (!crl)
        goto fail;
    if (http_crl_stale(crl))
        log_warn("%s: the CRL %s is past its nextUpdate (its revocations apply; issue a fresh one)", o->name,
                 o->crl_file);
    http_server_use_crl(s, crl);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->listen->port);
    const char *host = strcmp(o->listen->host, "localhost") == 0 ? "127.0.0.1" : o->listen->host;
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(err, errlen, "%s: listen address %s must be an IPv4 address", o->name, o->listen->host);
        goto fail;
    }
    s->workers = o->workers;
    s->on_answer = o->on_answer;
    s->deadline_ms = o->connection_timeout_s * 1000;
    pthread_mutex_init(&s->conns_lock, NULL);
    stop_signal_init(&s->stop);
    s->daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TLS | MHD_USE_ERROR_LOG,
        (uint16_t)o->listen->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_HTTPS_MEM_CERT, s->cert_pem, MHD_OPTION_HTTPS_MEM_KEY, s->key_pem, MHD_OPTION_HTTPS_MEM_TRUST,
        s->ca_pem, MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)o->connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)o->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, 512,
        MHD_OPTION_THREAD_POOL_SIZE, o->event_threads ? o->event_threads : 2u, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)o->connection_limit_per_address, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "%s: cannot listen on %s:%d (address in use, or bad certificate/key/CA)", o->name,
                 o->listen->host, o->listen->port);
        goto fail;
    }
    if (pthread_create(&s->sweeper, NULL, sweeper_main, s) != 0) {
        snprintf(err, errlen, "%s: cannot start the deadline sweeper", o->name);
        goto fail;
    }
    s->sweeper_started = 1;
    return s;
fail:
    http_server_stop(s);
    return NULL;
}

void http_server_stop(http_server *s)
{
    if (!s)
        return;
    if (s->sweeper_started) {
        stop_signal_raise(&s->stop);
        pthread_join(s->sweeper, NULL);
        s->sweeper_started = 0;
    }
    if (s->daemon) {
        /* No new connections (refused at once: the socket stops listening);
         * let suspended requests finish first. The socket is closed only once
         * the daemon's threads are gone: they may still hold its number. */
        MHD_socket fd = MHD_quiesce_daemon(s->daemon);
        if (fd != MHD_INVALID_SOCKET)
            shutdown(fd, SHUT_RDWR);
        for (int i = 0; i < STOP_WAIT_MS / 10 && atomic_load(&s->deferred) > 0; i++) {
            if (i == 100)
                log_info("%s: waiting for %d requests in progress", s->name, atomic_load(&s->deferred));
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        }
        if (atomic_load(&s->deferred) > 0) {
            /* Stopping the daemon would pull their connections from under
             * them: the listener is left to them until the process ends. */
            log_warn("%s: %d requests still in progress after %d s; the listener is left to them", s->name,
                     atomic_load(&s->deferred), STOP_WAIT_MS / 1000);
            return;
        }
        MHD_stop_daemon(s->daemon);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
    if (s->key_pem) {
        memset(s->key_pem, 0, strlen(s->key_pem));
        free(s->key_pem);
    }
    free(s->cert_pem);
    free(s->ca_pem);
    for (unsigned int i = 0; i < s->ca_count; i++)
        gnutls_x509_crt_deinit(s->cas[i]);
    gnutls_free(s->cas);
    crl_set_free(&s->crls);
    pthread_mutex_destroy(&s->crl_lock);
    free(s);
}

http_deferred *http_defer(const http_request *req, http_finish finish, void *work)
{
    request_state *rs = req->state;
    rs->deferred = 1;
    rs->finish = finish;
    rs->work = work;
    atomic_fetch_add(&rs->server->deferred, 1);
    MHD_suspend_connection(rs->conn);
    return rs;
}

void http_resume(http_deferred *d)
{
    MHD_resume_connection(d->conn);
}

typedef struct {
    http_job job;
    void *work;
    http_deferred *d;
} offload_arg;

static void run_offloaded(void *arg)
{
    offload_arg *o = arg;
    o->job(o->work);
    http_deferred *d = o->d;
    free(o);
    http_resume(d);
}

void http_offload(const http_request *req, http_job job, http_finish finish, void *work)
{
    request_state *rs = req->state;
    http_deferred *d = http_defer(req, finish, work);
    offload_arg *o = malloc(sizeof *o);
    if (o) {
        *o = (offload_arg){job, work, d};
        if (worker_pool_submit(rs->server->workers, run_offloaded, o) == 0)
            return;
        free(o);
    }
    job(work); /* no pool: run it here rather than lose the request */
    http_resume(d);
}

const char *http_query(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

static void error_v(http_response *resp, int status, const char *refused_by, const char *message,
                    const char *detail_fmt, va_list ap)
{
    char detail[512] = "";
    if (detail_fmt)
        vsnprintf(detail, sizeof detail, detail_fmt, ap);
    resp->status = status;
    resp->body = etsi_error_refused_to_json(message, detail, refused_by);
    resp->retry_after_s = 0;
}

void http_error(http_response *resp, int status, const char *message, const char *detail_fmt, ...)
{
    va_list ap;
    va_start(ap, detail_fmt);
    error_v(resp, status, NULL, message, detail_fmt, ap);
    va_end(ap);
}

void http_error_refused(http_response *resp, int status, const char *refused_by, const char *message,
                        const char *detail_fmt, ...)
{
    va_list ap;
    va_start(ap, detail_fmt);
    error_v(resp, status, refused_by, message, detail_fmt, ap);
    va_end(ap);
}
