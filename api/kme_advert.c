/* Encode, decode and validate the link-state advert (see kme_advert.h). */
#include "api/kme_advert.h"

#include <stdio.h>
#include <string.h>

#define MALFORMED "malformed advert"

static char *dump(json_t *root)
{
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

static json_t *link_to_json(const kme_advert_link *l)
{
    return json_pack("{s:s,s:b,s:I,s:I}", "peer", l->peer, "up", l->up ? 1 : 0, "stock_bytes",
                     (json_int_t)l->stock_bytes, "rate_bps", (json_int_t)l->rate_bps);
}

char *kme_advert_to_json(const kme_advert *a)
{
    json_t *links = json_array();
    json_t *saes = json_array();
    for (size_t i = 0; i < a->link_count && i < KME_ADVERT_MAX_LINKS; i++)
        json_array_append_new(links, link_to_json(&a->links[i]));
    for (size_t i = 0; i < a->sae_count && i < KME_ADVERT_MAX_SAES; i++)
        json_array_append_new(saes, json_string(a->saes[i]));
    json_t *root = json_pack("{s:s,s:I,s:I,s:o,s:o}", "origin", a->origin, "seq", (json_int_t)a->seq, "age_ms",
                             (json_int_t)a->age_ms, "links", links, "saes", saes);
    if (root && a->cert[0])
        json_object_set_new(root, "cert", json_string(a->cert));
    if (root && a->sig[0])
        json_object_set_new(root, "sig", json_string(a->sig));
    return dump(root);
}

/* ---- decode ----------------------------------------------------------------- */

static int get_u64(json_t *obj, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_id(json_t *v, char out[ETSI_ID_MAX + 1])
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v) || !etsi_id_is_valid(s))
        return -1;
    snprintf(out, ETSI_ID_MAX + 1, "%s", s);
    return 0;
}

static int link_from_json(json_t *v, size_t i, kme_advert_link *l, etsi_problem *p)
{
    json_t *up = json_object_get(v, "up");
    if (!json_is_object(v) || get_id(json_object_get(v, "peer"), l->peer) < 0 || !json_is_boolean(up) ||
        get_u64(v, "stock_bytes", &l->stock_bytes) < 0 || get_u64(v, "rate_bps", &l->rate_bps) < 0) {
        etsi_problem_set(p, MALFORMED,
                         "links[%zu] needs a KME ID 'peer', a boolean 'up' and non-negative integers "
                         "'stock_bytes' and 'rate_bps'",
                         i);
        return -1;
    }
    l->up = json_is_true(up);
    return 0;
}

static int links_from_json(json_t *links, kme_advert *out, etsi_problem *p)
{
    if (!json_is_array(links) || json_array_size(links) > KME_ADVERT_MAX_LINKS) {
        etsi_problem_set(p, MALFORMED, "'links' must be an array of at most %d links", KME_ADVERT_MAX_LINKS);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(links, i, v)
    {
        if (link_from_json(v, i, &out->links[i], p) < 0)
            return -1;
        out->link_count++;
    }
    return 0;
}

static int saes_from_json(json_t *saes, kme_advert *out, etsi_problem *p)
{
    if (!json_is_array(saes) || json_array_size(saes) > KME_ADVERT_MAX_SAES) {
        etsi_problem_set(p, MALFORMED, "'saes' must be an array of at most %d SAE IDs", KME_ADVERT_MAX_SAES);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(saes, i, v)
    {
        if (get_id(v, out->saes[i]) < 0) {
            etsi_problem_set(p, MALFORMED, "saes[%zu] is not an SAE ID", i);
            return -1;
        }
        out->sae_count++;
    }
    return 0;
}

static int header_from_json(json_t *root, kme_advert *out, etsi_problem *p)
{
    if (get_id(json_object_get(root, "origin"), out->origin) < 0) {
        etsi_problem_set(p, MALFORMED, "'origin' must be a KME ID");
        return -1;
    }
    if (get_u64(root, "seq", &out->seq) < 0 || get_u64(root, "age_ms", &out->age_ms) < 0) {
        etsi_problem_set(p, MALFORMED, "'seq' and 'age_ms' must be non-negative integers");
        return -1;
    }
    return 0;
}

/* A required base64 member of at most max characters. */
static int get_base64(json_t *root, const char *name, char *out, size_t max)
{
    json_t *v = json_object_get(root, name);
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;
    if (!s || n == 0 || n > max || n != json_string_length(v) || n % 4 ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != n)
        return -1;
    memcpy(out, s, n + 1);
    return 0;
}

static int signature_from_json(json_t *root, kme_advert *out, etsi_problem *p)
{
    if (get_base64(root, "cert", out->cert, KME_ADVERT_CERT_MAX) < 0 ||
        get_base64(root, "sig", out->sig, KME_ADVERT_SIG_MAX) < 0) {
        etsi_problem_set(p, MALFORMED, "an advert needs its origin's certificate 'cert' and signature 'sig' (base64)");
        return -1;
    }
    return 0;
}

int kme_advert_from_json(const char *body, size_t len, kme_advert *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(root)) {
        etsi_problem_set(p, "malformed JSON", "%s", root ? "not an object" : body ? jerr.text : "empty body");
        json_decref(root);
        return -1;
    }
    int rc = -1;
    if (header_from_json(root, out, p) == 0 && links_from_json(json_object_get(root, "links"), out, p) == 0 &&
        saes_from_json(json_object_get(root, "saes"), out, p) == 0 && kme_advert_validate(out, p) == 0 &&
        signature_from_json(root, out, p) == 0)
        rc = 0;
    json_decref(root);
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}

/* ---- validation ------------------------------------------------------------- */

static int valid_id(const char *id, size_t cap)
{
    return memchr(id, 0, cap) != NULL && etsi_id_is_valid(id);
}

static int check_links(const kme_advert *a, etsi_problem *p)
{
    for (size_t i = 0; i < a->link_count; i++) {
        const kme_advert_link *l = &a->links[i];
        if (!valid_id(l->peer, sizeof l->peer) || strcmp(l->peer, a->origin) == 0) {
            etsi_problem_set(p, MALFORMED, "links[%zu]: 'peer' must be a KME ID other than the origin", i);
            return -1;
        }
        if (l->stock_bytes > INT64_MAX || l->rate_bps > INT64_MAX) {
            etsi_problem_set(p, MALFORMED, "links[%zu]: counters must be at most %lld", i, (long long)INT64_MAX);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->links[j].peer, l->peer) == 0) {
                etsi_problem_set(p, MALFORMED, "links[%zu]: peer '%s' listed twice", i, l->peer);
                return -1;
            }
    }
    return 0;
}

static int check_saes(const kme_advert *a, etsi_problem *p)
{
    for (size_t i = 0; i < a->sae_count; i++) {
        if (!valid_id(a->saes[i], sizeof a->saes[i])) {
            etsi_problem_set(p, MALFORMED, "saes[%zu] is not an SAE ID", i);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->saes[j], a->saes[i]) == 0) {
                etsi_problem_set(p, MALFORMED, "saes[%zu]: '%s' listed twice", i, a->saes[i]);
                return -1;
            }
    }
    return 0;
}

int kme_advert_validate(const kme_advert *a, etsi_problem *p)
{
    if (!valid_id(a->origin, sizeof a->origin)) {
        etsi_problem_set(p, MALFORMED, "'origin' must be a KME ID");
        return -1;
    }
    if (a->seq > INT64_MAX || a->age_ms > INT64_MAX) {
        etsi_problem_set(p, MALFORMED, "'seq' and 'age_ms' must be at most %lld", (long long)INT64_MAX);
        return -1;
    }
    if (a->link_count > KME_ADVERT_MAX_LINKS || a->sae_count > KME_ADVERT_MAX_SAES) {
        etsi_problem_set(p, MALFORMED, "at most %d links and %d SAEs", KME_ADVERT_MAX_LINKS, KME_ADVERT_MAX_SAES);
        return -1;
    }
    return check_links(a, p) < 0 || check_saes(a, p) < 0 ? -1 : 0;
}

const kme_advert_link *kme_advert_find_link(const kme_advert *a, const char *peer)
{
    for (size_t i = 0; i < a->link_count && i < KME_ADVERT_MAX_LINKS; i++)
        if (strcmp(a->links[i].peer, peer) == 0)
            return &a->links[i];
    return NULL;
}
