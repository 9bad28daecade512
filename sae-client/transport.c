/* The libcurl side of the SAE client: TLS set-up, keep-alive connection
 * reuse, and requests whose bodies land in a cleansing buffer. */
#include "sae-client/transport.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 10000L

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sae_transport *t = userdata;
    size_t n = size * nmemb;
    if (wipe_buf_append(&t->body, ptr, n) < 0) {
        t->too_large = 1;
        return 0; /* aborts the transfer */
    }
    return n;
}

static int is_pkcs12(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && (strcasecmp(path + n - 4, ".p12") == 0 || strcasecmp(path + n - 4, ".pfx") == 0);
}

static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    if (path && access(path, R_OK) != 0) {
        snprintf(err, errlen, "cannot read %s file '%s'", what, path);
        return 0;
    }
    return 1;
}

/* Sets the options that stay the same for every request of the handle. */
static CURLcode set_options(sae_transport *t, const sae_client_config *cfg)
{
    CURL *h = t->curl;
    long timeout = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                                  \
    do {                                                                                                               \
        if (rc == CURLE_OK)                                                                                            \
            rc = curl_easy_setopt(h, opt, val);                                                                        \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, "sae-client/" SAE_CLIENT_VERSION);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (cfg->ca)
        SET(CURLOPT_CAINFO, cfg->ca);
    if (cfg->cert) {
        SET(CURLOPT_SSLCERT, cfg->cert);
        SET(CURLOPT_SSLCERTTYPE, is_pkcs12(cfg->cert) ? "P12" : "PEM");
    }
    if (cfg->key) {
        SET(CURLOPT_SSLKEY, cfg->key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (cfg->key_password)
        SET(CURLOPT_KEYPASSWD, cfg->key_password);
#undef SET
    return rc;
}

int sae_transport_init(sae_transport *t, const sae_client_config *cfg, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->body.max = SAE_RESPONSE_MAX;
    if (!readable("certificate", cfg->cert, err, errlen) || !readable("key", cfg->key, err, errlen) ||
        !readable("CA", cfg->ca, err, errlen))
        return -1;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        snprintf(err, errlen, "libcurl initialisation failed: %s", curl_easy_strerror(global_rc));
        return -1;
    }
    t->curl = curl_easy_init();
    t->get_headers = curl_slist_append(NULL, "Accept: application/json");
    t->post_headers = curl_slist_append(NULL, "Accept: application/json");
    if (t->post_headers) {
        struct curl_slist *l = curl_slist_append(t->post_headers, "Content-Type: application/json");
        l = l ? curl_slist_append(l, "Expect:") : NULL;
        if (!l) {
            curl_slist_free_all(t->post_headers);
            t->post_headers = NULL;
        }
    }
    if (!t->curl || !t->get_headers || !t->post_headers) {
        snprintf(err, errlen, "out of memory");
        sae_transport_cleanup(t);
        return -1;
    }
    CURLcode rc = set_options(t, cfg);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "cannot configure libcurl: %s", curl_easy_strerror(rc));
        sae_transport_cleanup(t);
        return -1;
    }
    return 0;
}

void sae_transport_cleanup(sae_transport *t)
{
    if (t->curl)
        curl_easy_cleanup(t->curl);
    curl_slist_free_all(t->get_headers);
    curl_slist_free_all(t->post_headers);
    wipe_buf_free(&t->body);
    memset(t, 0, sizeof *t);
}

int sae_transport_request(sae_transport *t, const char *url, const char *post_body, long *status, char *err,
                          size_t errlen)
{
    CURL *h = t->curl;
    wipe_buf_reset(&t->body);
    t->errbuf[0] = '\0';
    t->too_large = 0;
    *status = 0;

    CURLcode rc = curl_easy_setopt(h, CURLOPT_URL, url);
    if (rc == CURLE_OK && post_body) {
        rc = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(post_body));
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, post_body);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->post_headers);
    } else if (rc == CURLE_OK) {
        rc = curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->get_headers);
    }
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);
    if (post_body) /* the caller frees the body: drop the pointer */
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);

    if (rc != CURLE_OK) {
        if (t->too_large)
            snprintf(err, errlen, "response larger than %ld bytes", SAE_RESPONSE_MAX);
        else
            snprintf(err, errlen, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
        wipe_buf_reset(&t->body);
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

char *sae_transport_escape(sae_transport *t, const char *segment)
{
    return curl_easy_escape(t->curl, segment, 0);
}
