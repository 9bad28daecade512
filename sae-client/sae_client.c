/* The SAE client library's public calls: handle lifecycle, the ETSI 014
 * request URLs and bodies, and the mapping of answers to sae_result. */
#include "sae-client/sae_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "sae-client/transport.h"

struct sae_client {
    sae_transport t;
    char *base_url; /* https://host:port, no trailing '/' */
    int keep_response;
};

sae_client *sae_client_new(const sae_client_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->kme_url || strncasecmp(cfg->kme_url, "https://", 8) != 0 || !cfg->kme_url[8]) {
        snprintf(err, errlen, "the KME URL must be https://host:port");
        return NULL;
    }
    sae_client *c = calloc(1, sizeof *c);
    if (!c || !(c->base_url = strdup(cfg->kme_url))) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    size_t n = strlen(c->base_url);
    while (n > 8 && c->base_url[n - 1] == '/')
        c->base_url[--n] = '\0';
    c->keep_response = cfg->keep_response;
    if (sae_transport_init(&c->t, cfg, err, errlen) < 0) {
        free(c->base_url);
        free(c);
        return NULL;
    }
    return c;
}

void sae_client_free(sae_client *c)
{
    if (!c)
        return;
    sae_transport_cleanup(&c->t);
    free(c->base_url);
    free(c);
}

const char *sae_client_response(const sae_client *c, size_t *len)
{
    if (!c->keep_response)
        return NULL;
    if (len)
        *len = c->t.body.len;
    return c->t.body.data ? c->t.body.data : "";
}

/* ---- results --------------------------------------------------------------- */

static int fail(sae_result *res, sae_error error, const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(sae_result *res, sae_error error, const char *message, const char *detail_fmt, ...)
{
    char detail[sizeof res->problem.detail] = "";
    if (detail_fmt) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof detail, detail_fmt, ap);
        va_end(ap);
    }
    res->error = error;
    etsi_problem_set(&res->problem, message, "%s", detail);
    return -1;
}

static int fail_transport(sae_result *res, const char *text)
{
    res->error = SAE_ERR_TRANSPORT;
    snprintf(res->transport, sizeof res->transport, "%s", text);
    return -1;
}

/* A decoding problem of a 200 answer. JSON parse errors may quote the text
 * near the fault, which can be key material: that part is dropped. */
static int fail_response(sae_result *res)
{
    char *near = strstr(res->problem.detail, " near ");
    if (near)
        *near = '\0';
    res->error = SAE_ERR_RESPONSE;
    return -1;
}

/* The body of the last answer, never NULL. */
static const char *body_text(const sae_client *c, size_t *len)
{
    *len = c->t.body.len;
    return c->t.body.data ? c->t.body.data : "";
}

/* Ends a call: the body is cleansed unless the caller asked to keep it. */
static int finish(sae_client *c, int rc)
{
    if (!c->keep_response)
        wipe_buf_reset(&c->t.body);
    return rc;
}

/* ---- requests -------------------------------------------------------------- */

/* {base}/api/v1/keys/{sae_id}/{leaf}{query}; NULL when out of memory. */
static char *make_url(sae_client *c, const char *sae_id, const char *leaf, const char *query)
{
    char *esc = sae_transport_escape(&c->t, sae_id);
    if (!esc)
        return NULL;
    char *url = NULL;
    if (asprintf(&url, "%s/api/v1/keys/%s/%s%s", c->base_url, esc, leaf, query) < 0)
        url = NULL;
    curl_free(esc);
    return url;
}

/* Sends one request. 0 when the KME answered 200; otherwise -1 with res set. */
static int exchange(sae_client *c, const char *url, const char *post_body, sae_result *res)
{
    long status = 0;
    if (sae_transport_request(&c->t, url, post_body, &status, res->transport, sizeof res->transport) < 0) {
        res->error = SAE_ERR_TRANSPORT;
        return -1;
    }
    res->http_status = status;
    if (status == 200)
        return 0;
    size_t len;
    const char *body = body_text(c, &len);
    res->error = SAE_ERR_KME;
    if (etsi_error_from_json(body, len, &res->problem) < 0)
        etsi_problem_set(&res->problem, "the answer is not an ETSI error body", NULL);
    return -1;
}

static int request(sae_client *c, const char *sae_id, const char *leaf, const char *query, const char *post_body,
                   sae_result *res)
{
    char *url = make_url(c, sae_id, leaf, query);
    if (!url)
        return fail_transport(res, "out of memory");
    int rc = exchange(c, url, post_body, res);
    free(url);
    return rc;
}

/* Starts a call: a fresh result, and no body left from the previous call. */
static sae_result *start(sae_client *c, sae_result *res, sae_result *local)
{
    wipe_buf_reset(&c->t.body);
    if (!res)
        res = local;
    memset(res, 0, sizeof *res);
    return res;
}

/* ---- status ---------------------------------------------------------------- */

int sae_client_get_status(sae_client *c, const char *slave_sae_id, etsi_status *out, sae_result *res)
{
    sae_result local;
    res = start(c, res, &local);
    memset(out, 0, sizeof *out);
    if (!slave_sae_id || !etsi_id_is_valid(slave_sae_id))
        return fail(res, SAE_ERR_ARGUMENT, "invalid SAE ID", "slave SAE ID is not a valid SAE ID");
    if (request(c, slave_sae_id, "status", "", NULL, res) < 0)
        return finish(c, -1);
    size_t len;
    const char *body = body_text(c, &len);
    if (etsi_status_from_json(body, len, out, &res->problem) < 0)
        return finish(c, fail_response(res));
    return finish(c, 0);
}

/* ---- get key ----------------------------------------------------------------- */

static int check_key_request(const char *slave, const etsi_key_request *req, int use_post, sae_result *res)
{
    if (!slave || !etsi_id_is_valid(slave))
        return fail(res, SAE_ERR_ARGUMENT, "invalid SAE ID", "slave SAE ID is not a valid SAE ID");
    if (req->number < 0 || req->size < 0)
        return fail(res, SAE_ERR_ARGUMENT, "invalid key request", "number and size must be positive");
    for (size_t i = 0; i < req->additional_count; i++)
        if (!req->additional_slaves[i] || !etsi_id_is_valid(req->additional_slaves[i]))
            return fail(res, SAE_ERR_ARGUMENT, "invalid SAE ID", "additional slave SAE ID %zu is not a valid SAE ID",
                        i + 1);
    if (req->additional_count > 0 && !use_post)
        return fail(res, SAE_ERR_ARGUMENT, "POST required", "additional slave SAE IDs need POST");
    return 0;
}

/* The container must hold what was asked for: count and, when given, size. */
static int check_container(const etsi_key_container *out, long number, long size, sae_result *res)
{
    if ((long)out->count != number)
        return fail(res, SAE_ERR_RESPONSE, "unexpected key container", "%zu keys instead of %ld", out->count, number);
    for (size_t i = 0; size > 0 && i < out->count; i++)
        if ((long)out->keys[i].key_len * 8 != size)
            return fail(res, SAE_ERR_RESPONSE, "unexpected key container", "key %s has %zu bits instead of %ld",
                        out->keys[i].key_id, out->keys[i].key_len * 8, size);
    return 0;
}

static int decode_container(sae_client *c, etsi_key_container *out, sae_result *res)
{
    size_t len;
    const char *body = body_text(c, &len);
    if (etsi_key_container_from_json(body, len, out, &res->problem) < 0)
        return fail_response(res);
    return 0;
}

int sae_client_get_key(sae_client *c, const char *slave_sae_id, const etsi_key_request *req, int use_post,
                       etsi_key_container *out, sae_result *res)
{
    sae_result local;
    res = start(c, res, &local);
    memset(out, 0, sizeof *out);
    etsi_key_request r = {0};
    if (req)
        r = *req;
    if (check_key_request(slave_sae_id, &r, use_post, res) < 0)
        return -1;

    int rc;
    if (use_post) {
        if (r.number == 0)
            r.number = 1;
        char *body = etsi_key_request_to_json(&r);
        if (!body)
            return fail_transport(res, "out of memory");
        rc = request(c, slave_sae_id, "enc_keys", "", body, res);
        etsi_text_free(body);
    } else {
        char query[64] = "";
        if (r.number > 0 && r.size > 0)
            snprintf(query, sizeof query, "?number=%ld&size=%ld", r.number, r.size);
        else if (r.number > 0)
            snprintf(query, sizeof query, "?number=%ld", r.number);
        else if (r.size > 0)
            snprintf(query, sizeof query, "?size=%ld", r.size);
        rc = request(c, slave_sae_id, "enc_keys", query, NULL, res);
    }
    if (rc == 0)
        rc = decode_container(c, out, res);
    if (rc == 0 && (rc = check_container(out, r.number ? r.number : 1, r.size, res)) < 0)
        etsi_key_container_clear(out);
    return finish(c, rc);
}

/* ---- get key with key IDs -------------------------------------------------- */

/* Every requested ID must come back, and nothing else. */
static int check_ids(const etsi_key_container *out, const etsi_key_ids *ids, sae_result *res)
{
    if (out->count != ids->count)
        return fail(res, SAE_ERR_RESPONSE, "unexpected key container", "%zu keys instead of %zu", out->count,
                    ids->count);
    for (size_t i = 0; i < ids->count; i++) {
        char want[UUID_STR_LEN + 1];
        uuid_normalise(ids->ids[i], want);
        size_t j = 0;
        while (j < out->count && strcmp(out->keys[j].key_id, want) != 0)
            j++;
        if (j == out->count)
            return fail(res, SAE_ERR_RESPONSE, "unexpected key container", "key %s is missing", want);
    }
    return 0;
}

int sae_client_get_key_with_ids(sae_client *c, const char *master_sae_id, const etsi_key_ids *ids, int use_post,
                                etsi_key_container *out, sae_result *res)
{
    sae_result local;
    res = start(c, res, &local);
    memset(out, 0, sizeof *out);
    if (!master_sae_id || !etsi_id_is_valid(master_sae_id))
        return fail(res, SAE_ERR_ARGUMENT, "invalid SAE ID", "master SAE ID is not a valid SAE ID");
    if (!ids || ids->count == 0)
        return fail(res, SAE_ERR_ARGUMENT, "missing key_ID", "at least one key ID is required");
    for (size_t i = 0; i < ids->count; i++)
        if (!uuid_is_valid(ids->ids[i]))
            return fail(res, SAE_ERR_ARGUMENT, "invalid key_ID", "key ID %zu is not a UUID", i + 1);
    if (ids->count > 1 && !use_post)
        return fail(res, SAE_ERR_ARGUMENT, "POST required", "several key IDs need POST");

    int rc;
    if (use_post) {
        char *body = etsi_key_ids_to_json(ids);
        if (!body)
            return fail_transport(res, "out of memory");
        rc = request(c, master_sae_id, "dec_keys", "", body, res);
        etsi_text_free(body);
    } else {
        char query[16 + UUID_STR_LEN];
        char id[UUID_STR_LEN + 1];
        uuid_normalise(ids->ids[0], id);
        snprintf(query, sizeof query, "?key_ID=%s", id);
        rc = request(c, master_sae_id, "dec_keys", query, NULL, res);
    }
    if (rc == 0)
        rc = decode_container(c, out, res);
    if (rc == 0 && (rc = check_ids(out, ids, res)) < 0)
        etsi_key_container_clear(out);
    return finish(c, rc);
}
