/* The libcurl side of the SAE client: TLS set-up, keep-alive connection
 * reuse, and requests whose bodies land in a cleansing buffer. */
#include "sae-client/transport.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

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

/* Why the KME's certificate does not name exactly the pinned KME ID, or NULL
 * when it does: one CN equal to it, and every urn:qkd:kme: URI in its
 * subjectAltName naming it too. */
static const char *pin_mismatch(X509 *leaf, const char *want, char *why, size_t whylen)
{
    X509_NAME *subject = X509_get_subject_name(leaf);
    int first = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (first < 0) {
        snprintf(why, whylen, "the KME's certificate names no KME (no CN); expected %s", want);
        return why;
    }
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, first) >= 0) {
        snprintf(why, whylen, "the KME's certificate holds more than one CN; expected exactly %s", want);
        return why;
    }
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, first));
    const unsigned char *cn = ASN1_STRING_get0_data(d);
    int cn_len = ASN1_STRING_length(d);
    if (cn_len != (int)strlen(want) || memcmp(cn, want, (size_t)cn_len) != 0) {
        snprintf(why, whylen, "the KME's certificate names %.*s, not the expected %s", cn_len > 64 ? 64 : cn_len,
                 (const char *)cn, want);
        return why;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    const char *problem = NULL;
    size_t plen = strlen(SAE_KME_URI_PREFIX);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !problem; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_URI)
            continue;
        const char *uri = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t len = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (len >= plen && strncasecmp(uri, SAE_KME_URI_PREFIX, plen) == 0 &&
            (len - plen != strlen(want) || memcmp(uri + plen, want, len - plen) != 0)) {
            snprintf(why, whylen, "the KME's certificate also names another KME (%.*s); expected only %s",
                     len > 96 ? 96 : (int)len, uri, want);
            problem = why;
        }
    }
    GENERAL_NAMES_free(sans);
    return problem;
}

/* OpenSSL's verification of the KME's chain, with the pin on the leaf. */
static int verify_pin(int preverify_ok, X509_STORE_CTX *store)
{
    if (!preverify_ok || X509_STORE_CTX_get_error_depth(store) != 0)
        return preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    sae_transport *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t || !pin_mismatch(X509_STORE_CTX_get_current_cert(store), t->kme_id, t->pin_problem, sizeof t->pin_problem))
        return 1;
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static CURLcode pin_ssl_ctx(CURL *curl, void *ssl_ctx, void *userptr)
{
    (void)curl;
    SSL_CTX_set_app_data((SSL_CTX *)ssl_ctx, userptr);
    SSL_CTX_set_verify((SSL_CTX *)ssl_ctx, SSL_VERIFY_PEER, verify_pin);
    return CURLE_OK;
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
    /* TLS 1.2 with ECDHE and AEAD only, as the KME serves (TLS 1.3 suites are all AEAD). */
    SET(CURLOPT_SSL_CIPHER_LIST, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (t->kme_id[0]) {
        SET(CURLOPT_SSL_CTX_FUNCTION, pin_ssl_ctx);
        SET(CURLOPT_SSL_CTX_DATA, (void *)t);
    }
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
    if (cfg->kme_id) {
        if (!etsi_id_is_valid(cfg->kme_id)) {
            snprintf(err, errlen, "invalid KME ID '%s'", cfg->kme_id);
            return -1;
        }
        snprintf(t->kme_id, sizeof t->kme_id, "%s", cfg->kme_id);
    }
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
        snprintf(err, errlen, "cannot configure libcurl: %s%s", curl_easy_strerror(rc),
                 t->kme_id[0] && rc == CURLE_NOT_BUILT_IN ? " (pinning the KME ID needs libcurl with OpenSSL)" : "");
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
    t->pin_problem[0] = '\0';
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
        else if (t->pin_problem[0])
            snprintf(err, errlen, "KME identity refused: %s", t->pin_problem);
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
