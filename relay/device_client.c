/* The ETSI 014 client of a link's QKD device (see device_client.h). */
#include "relay/device_client.h"
#include "runtime/wipe_buf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

struct device_client {
    relay_device_config cfg;
    pthread_mutex_t lock; /* one request at a time on the kept-alive handle */
    CURL *curl;
};

typedef struct {
    wipe_buf body;
    long status;
} device_reply;

device_client *device_client_new(const relay_device_config *cfg)
{
    device_client *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cfg = *cfg;
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

void device_client_free(device_client *d)
{
    if (!d)
        return;
    if (d->curl)
        curl_easy_cleanup(d->curl);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static size_t collect(char *data, size_t size, size_t nmemb, void *userp)
{
    device_reply *r = userp;
    size_t n = size * nmemb;
    return wipe_buf_append(&r->body, data, n) == 0 ? n : 0;
}

static void reply_clear(device_reply *r)
{
    wipe_buf_free(&r->body);
    r->status = 0;
}

static CURL *handle(device_client *d)
{
    if (d->curl)
        return d->curl;
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_SSLCERT, d->cfg.cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, d->cfg.key);
    curl_easy_setopt(c, CURLOPT_CAINFO, d->cfg.ca);
    curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    d->curl = c;
    return c;
}

/* POSTs body to the path under /api/v1/keys/{peer SAE}/. 0 when an HTTP
 * answer arrived (any status), -1 with err. Called with the lock held. */
static int post(device_client *d, const char *op, const char *body, device_reply *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->body.max = (size_t)ETSI_BODY_MAX * 64;
    CURL *c = handle(d);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char url[1024];
    snprintf(url, sizeof url, "%s/api/v1/keys/%s/%s", d->cfg.url, d->cfg.peer_sae_id, op);
    struct curl_slist *headers =
        curl_slist_append(curl_slist_append(NULL, "Content-Type: application/json"), "Expect:");
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, d->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->cfg.timeout_ms < 2000 ? d->cfg.timeout_ms : 2000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s %s: %s", d->cfg.url, op, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        reply_clear(out);
        curl_easy_cleanup(c); /* a connection left mid-answer is not reused */
        d->curl = NULL;
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->status != 200) {
        etsi_problem p = {"", "", ""};
        if (!out->body.data || etsi_error_from_json(out->body.data, out->body.len, &p) != 0)
            snprintf(p.message, sizeof p.message, "no ETSI error body");
        snprintf(err, errlen, "%s %s: HTTP %ld: %.120s%s%.120s", d->cfg.url, op, out->status, p.message,
                 p.detail[0] ? ": " : "", p.detail);
    }
    return 0;
}

static int decode(device_client *d, const char *op, device_reply *r, etsi_key_container *out, char *err, size_t errlen)
{
    etsi_problem p;
    if (etsi_key_container_from_json(r->body.data ? r->body.data : "", r->body.len, out, &p) != 0) {
        snprintf(err, errlen, "%s %s: %s: %s", d->cfg.url, op, p.message, p.detail);
        return -1;
    }
    return 0;
}

int device_enc_keys(device_client *d, long number, etsi_key_container *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    etsi_key_request req = {.number = number, .size = d->cfg.key_size_bits};
    char *body = etsi_key_request_to_json(&req);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    device_reply r;
    pthread_mutex_lock(&d->lock);
    int rc = post(d, "enc_keys", body, &r, err, errlen);
    pthread_mutex_unlock(&d->lock);
    etsi_text_free(body);
    if (rc == 0 && r.status == 200 && decode(d, "enc_keys", &r, out, err, errlen) == 0) {
        size_t want = (size_t)(d->cfg.key_size_bits / 8), bad = out->count;
        for (size_t i = 0; i < out->count && bad == out->count; i++)
            if (out->keys[i].key_len != want)
                bad = i;
        if (out->count != (size_t)number)
            snprintf(err, errlen, "%s enc_keys: %zu keys for %ld asked", d->cfg.url, out->count, number);
        else if (bad < out->count)
            snprintf(err, errlen, "%s enc_keys: key %s has %zu bytes, not %zu", d->cfg.url, out->keys[bad].key_id,
                     out->keys[bad].key_len, want);
        else
            rc = 1;
    }
    reply_clear(&r);
    if (rc != 1) {
        etsi_key_container_clear(out);
        return -1;
    }
    return 0;
}

/* One dec_keys request for the IDs [from, to) of ids: 0 with the keys in
 * out (appended), 1 when the device refused them (4xx), -1 on a fault. */
static int dec_some(device_client *d, const kme_link_ids *ids, size_t from, size_t to, etsi_key_container *out,
                    size_t *wrong_size, char *err, size_t errlen)
{
    etsi_key_ids req = {ids->ids + from, to - from};
    char *body = etsi_key_ids_to_json(&req);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    device_reply r;
    etsi_key_container got = {0};
    pthread_mutex_lock(&d->lock);
    int rc = post(d, "dec_keys", body, &r, err, errlen);
    pthread_mutex_unlock(&d->lock);
    etsi_text_free(body);
    if (rc == 0 && r.status >= 400 && r.status < 500)
        rc = 1;
    else if (rc == 0 && (r.status != 200 || decode(d, "dec_keys", &r, &got, err, errlen) != 0))
        rc = -1;
    reply_clear(&r);
    if (rc != 0)
        return rc;
    /* Keep, in the order asked, each asked-for key of the right size. */
    size_t want = (size_t)(ids->size_bits / 8);
    for (size_t i = from; i < to; i++)
        for (size_t j = 0; j < got.count; j++)
            if (got.keys[j].key && strcmp(got.keys[j].key_id, ids->ids[i]) == 0) {
                if (got.keys[j].key_len != want) {
                    (*wrong_size)++;
                    break;
                }
                out->keys[out->count++] = got.keys[j];
                got.keys[j].key = NULL;
                got.keys[j].key_len = 0;
                break;
            }
    etsi_key_container_clear(&got);
    return 0;
}

int device_dec_keys(device_client *d, const kme_link_ids *ids, etsi_key_container *out, size_t *wrong_size, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    *wrong_size = 0;
    out->keys = calloc(ids->count ? ids->count : 1, sizeof *out->keys);
    if (!out->keys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = dec_some(d, ids, 0, ids->count, out, wrong_size, err, errlen);
    for (size_t i = 0; rc == 1 && i < ids->count; i++) { /* refused as a batch: one by one */
        int one = dec_some(d, ids, i, i + 1, out, wrong_size, err, errlen);
        if (one < 0)
            rc = -1;
    }
    if (rc < 0) {
        etsi_key_container_clear(out);
        return -1;
    }
    return 0;
}
