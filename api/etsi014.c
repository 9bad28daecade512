/* Encode, decode and validate the ETSI GS QKD 014 V1.1.1 messages (see api/etsi014.yaml). */
#include "api/etsi014.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

void etsi_text_free(char *text)
{
    /* Text from json_dumps comes from the jansson allocator, which may wipe
     * too (runtime/json_wipe.h). */
    if (text) {
        json_free_t f;
        json_get_alloc_funcs(NULL, &f);
        OPENSSL_cleanse(text, strlen(text));
        f(text);
    }
}

/* ---- helpers ------------------------------------------------------------- */

void etsi_problem_set(etsi_problem *p, const char *message, const char *detail_fmt, ...)
{
    if (!p)
        return;
    snprintf(p->message, sizeof p->message, "%s", message);
    p->detail[0] = '\0';
    if (detail_fmt) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(p->detail, sizeof p->detail, detail_fmt, ap);
        va_end(ap);
    }
}

int etsi_id_is_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > ETSI_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

static json_t *parse_object(const char *body, size_t len, etsi_problem *p)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        etsi_problem_set(p, "malformed JSON", "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        etsi_problem_set(p, "malformed request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

static int only_members(json_t *obj, const char *const *allowed, etsi_problem *p)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(key, *a) == 0)
                ok = 1;
        if (!ok) {
            etsi_problem_set(p, "malformed request", "unknown member '%.100s'", key);
            return -1;
        }
    }
    return 0;
}

/* Parses a decimal integer query value strictly (digits only, no sign). */
static int parse_query_long(const char *name, const char *text, long *out, etsi_problem *p)
{
    if (!text[0] || strlen(text) > 18) {
        etsi_problem_set(p, "invalid query parameter", "'%s' must be a positive integer", name);
        return -1;
    }
    long v = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9') {
            etsi_problem_set(p, "invalid query parameter", "'%s' must be a positive integer", name);
            return -1;
        }
        v = v * 10 + (*c - '0');
    }
    *out = v;
    return 0;
}

static int check_request_bounds(etsi_key_request *r, const etsi_limits *lim, etsi_problem *p)
{
    if (r->number < 1 || r->number > lim->max_key_per_request) {
        etsi_problem_set(p, "number out of range", "number must be from 1 to %ld", lim->max_key_per_request);
        return -1;
    }
    if (r->size < lim->min_key_size || r->size > lim->max_key_size) {
        etsi_problem_set(p, "size out of range", "size must be from %ld to %ld bits", lim->min_key_size,
                         lim->max_key_size);
        return -1;
    }
    if (r->size % 8 != 0) {
        etsi_problem_set(p, "size shall be a multiple of 8", "size %ld is not a multiple of 8", r->size);
        return -1;
    }
    if ((long)r->additional_count > lim->max_sae_id_count) {
        etsi_problem_set(p, "too many additional slave SAEs", "at most %ld additional_slave_SAE_IDs",
                         lim->max_sae_id_count);
        return -1;
    }
    if (r->has_extension_mandatory) {
        etsi_problem_set(p, "not all extension_mandatory parameters are supported", "unsupported extension '%s'",
                         r->unsupported_extension);
        return -1;
    }
    return 0;
}

/* ---- key request ----------------------------------------------------------- */

static int json_positive_long(json_t *v, const char *name, long *out, etsi_problem *p)
{
    if (!json_is_integer(v)) {
        etsi_problem_set(p, "malformed request", "'%s' must be an integer", name);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < LONG_MIN / 2 || x > LONG_MAX / 2) {
        etsi_problem_set(p, "malformed request", "'%s' is out of range", name);
        return -1;
    }
    *out = (long)x;
    return 0;
}

static int parse_extensions(json_t *root, etsi_key_request *r, etsi_problem *p)
{
    json_t *mand = json_object_get(root, "extension_mandatory");
    json_t *opt = json_object_get(root, "extension_optional");
    json_t *lists[2] = {mand, opt};
    const char *names[2] = {"extension_mandatory", "extension_optional"};
    for (int i = 0; i < 2; i++) {
        if (!lists[i])
            continue;
        if (!json_is_array(lists[i])) {
            etsi_problem_set(p, "malformed request", "'%s' must be an array of objects", names[i]);
            return -1;
        }
        size_t k;
        json_t *item;
        json_array_foreach(lists[i], k, item)
        {
            if (!json_is_object(item)) {
                etsi_problem_set(p, "malformed request", "'%s' must be an array of objects", names[i]);
                return -1;
            }
            /* No extension is supported: any mandatory member is refused. */
            if (i == 0 && json_object_size(item) > 0 && !r->has_extension_mandatory) {
                r->has_extension_mandatory = 1;
                const char *key = json_object_iter_key(json_object_iter(item));
                snprintf(r->unsupported_extension, sizeof r->unsupported_extension, "%s", key);
            }
        }
    }
    return 0;
}

int etsi_key_request_from_json(const char *body, size_t len, const etsi_limits *limits, etsi_key_request *out,
                               etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    out->number = 1;
    out->size = limits->key_size;
    if (!body || len == 0)
        return check_request_bounds(out, limits, p);

    json_t *root = parse_object(body, len, p);
    if (!root)
        return -1;
    static const char *const allowed[] = {
        "number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional", NULL};
    int rc = -1;
    json_t *v;
    if (only_members(root, allowed, p) < 0)
        goto done;
    if ((v = json_object_get(root, "number")) && json_positive_long(v, "number", &out->number, p) < 0)
        goto done;
    if ((v = json_object_get(root, "size")) && json_positive_long(v, "size", &out->size, p) < 0)
        goto done;
    if ((v = json_object_get(root, "additional_slave_SAE_IDs"))) {
        if (!json_is_array(v)) {
            etsi_problem_set(p, "malformed request", "'additional_slave_SAE_IDs' must be an array of strings");
            goto done;
        }
        size_t n = json_array_size(v);
        if ((long)n > limits->max_sae_id_count) {
            etsi_problem_set(p, "too many additional slave SAEs", "at most %ld additional_slave_SAE_IDs",
                             limits->max_sae_id_count);
            goto done;
        }
        out->additional_slaves = calloc(n ? n : 1, sizeof(char *));
        if (!out->additional_slaves) {
            etsi_problem_set(p, "out of memory", NULL);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(v, i);
            if (!json_is_string(s) || !etsi_id_is_valid(json_string_value(s))) {
                etsi_problem_set(p, "malformed request", "additional_slave_SAE_IDs[%zu] must be an SAE ID string", i);
                goto done;
            }
            for (size_t j = 0; j < out->additional_count; j++) {
                if (strcmp(out->additional_slaves[j], json_string_value(s)) == 0) {
                    etsi_problem_set(p, "malformed request", "additional slave SAE '%s' is listed twice",
                                     json_string_value(s));
                    goto done;
                }
            }
            out->additional_slaves[out->additional_count++] = strdup(json_string_value(s));
        }
    }
    if (parse_extensions(root, out, p) < 0)
        goto done;
    rc = check_request_bounds(out, limits, p);
done:
    json_decref(root);
    if (rc < 0)
        etsi_key_request_clear(out);
    return rc;
}

int etsi_key_request_from_query(const char *number, const char *size, const etsi_limits *limits, etsi_key_request *out,
                                etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    out->number = 1;
    out->size = limits->key_size;
    if (number && parse_query_long("number", number, &out->number, p) < 0)
        return -1;
    if (size && parse_query_long("size", size, &out->size, p) < 0)
        return -1;
    return check_request_bounds(out, limits, p);
}

void etsi_key_request_clear(etsi_key_request *r)
{
    for (size_t i = 0; i < r->additional_count; i++)
        free(r->additional_slaves[i]);
    free(r->additional_slaves);
    r->additional_slaves = NULL;
    r->additional_count = 0;
}

char *etsi_key_request_to_json(const etsi_key_request *r)
{
    json_t *root = json_object();
    json_object_set_new(root, "number", json_integer(r->number));
    if (r->size > 0)
        json_object_set_new(root, "size", json_integer(r->size));
    if (r->additional_count) {
        json_t *a = json_array();
        for (size_t i = 0; i < r->additional_count; i++)
            json_array_append_new(a, json_string(r->additional_slaves[i]));
        json_object_set_new(root, "additional_slave_SAE_IDs", a);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* ---- key IDs --------------------------------------------------------------- */

static int add_key_id(etsi_key_ids *out, const char *id, size_t index, etsi_problem *p)
{
    if (!uuid_is_valid(id)) {
        etsi_problem_set(p, "invalid key_ID", "key_IDs[%zu] is not a UUID", index);
        return -1;
    }
    char norm[UUID_STR_LEN + 1];
    uuid_normalise(id, norm);
    for (size_t i = 0; i < out->count; i++) {
        if (strcmp(out->ids[i], norm) == 0) {
            etsi_problem_set(p, "duplicate key_ID", "key_ID %s is requested twice", norm);
            return -1;
        }
    }
    memcpy(out->ids[out->count++], norm, sizeof norm);
    return 0;
}

int etsi_key_ids_from_json(const char *body, size_t len, long max_ids, etsi_key_ids *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    if (!body || len == 0) {
        etsi_problem_set(p, "malformed request", "a body with key_IDs is required");
        return -1;
    }
    json_t *root = parse_object(body, len, p);
    if (!root)
        return -1;
    static const char *const allowed[] = {"key_IDs", "key_IDs_extension", NULL};
    int rc = -1;
    json_t *ids = json_object_get(root, "key_IDs");
    json_t *ext = json_object_get(root, "key_IDs_extension");
    if (only_members(root, allowed, p) < 0)
        goto done;
    if (ext && !json_is_object(ext)) {
        etsi_problem_set(p, "malformed request", "'key_IDs_extension' must be an object");
        goto done;
    }
    if (!json_is_array(ids) || json_array_size(ids) == 0) {
        etsi_problem_set(p, "malformed request", "'key_IDs' must be a non-empty array");
        goto done;
    }
    if ((long)json_array_size(ids) > max_ids) {
        etsi_problem_set(p, "too many key_IDs", "at most %ld key_IDs in one request", max_ids);
        goto done;
    }
    out->ids = calloc(json_array_size(ids), sizeof *out->ids);
    if (!out->ids) {
        etsi_problem_set(p, "out of memory", NULL);
        goto done;
    }
    size_t i;
    json_t *item;
    json_array_foreach(ids, i, item)
    {
        static const char *const item_allowed[] = {"key_ID", "key_ID_extension", NULL};
        json_t *id = json_object_get(item, "key_ID");
        json_t *iext = json_object_get(item, "key_ID_extension");
        if (!json_is_object(item) || !json_is_string(id)) {
            etsi_problem_set(p, "malformed request", "key_IDs[%zu] must be an object with a key_ID string", i);
            goto done;
        }
        if (only_members(item, item_allowed, p) < 0)
            goto done;
        if (iext && !json_is_object(iext)) {
            etsi_problem_set(p, "malformed request", "key_IDs[%zu].key_ID_extension must be an object", i);
            goto done;
        }
        if (add_key_id(out, json_string_value(id), i, p) < 0)
            goto done;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        etsi_key_ids_clear(out);
    return rc;
}

int etsi_key_ids_from_query(const char *key_id, etsi_key_ids *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    if (!key_id) {
        etsi_problem_set(p, "missing key_ID", "the key_ID query parameter is required");
        return -1;
    }
    out->ids = calloc(1, sizeof *out->ids);
    if (!out->ids) {
        etsi_problem_set(p, "out of memory", NULL);
        return -1;
    }
    if (add_key_id(out, key_id, 0, p) < 0) {
        etsi_key_ids_clear(out);
        return -1;
    }
    return 0;
}

void etsi_key_ids_clear(etsi_key_ids *ids)
{
    free(ids->ids);
    ids->ids = NULL;
    ids->count = 0;
}

char *etsi_key_ids_to_json(const etsi_key_ids *ids)
{
    json_t *root = json_object();
    json_t *a = json_array();
    for (size_t i = 0; i < ids->count; i++)
        json_array_append_new(a, json_pack("{s:s}", "key_ID", ids->ids[i]));
    json_object_set_new(root, "key_IDs", a);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* ---- key container --------------------------------------------------------- */

char *etsi_text_alloc(size_t len)
{
    json_malloc_t m;
    json_get_alloc_funcs(&m, NULL);
    return m(len);
}

/* Written directly rather than through jansson objects: key_IDs and base64
 * need no escaping, and this is the largest answer the KME gives. */
char *etsi_key_container_to_json(const etsi_key_container *c)
{
    size_t len = sizeof "{\"keys\":[]}";
    for (size_t i = 0; i < c->count; i++)
        len += sizeof "{\"key_ID\":\"\",\"key\":\"\"}," + UUID_STR_LEN + 4 * ((c->keys[i].key_len + 2) / 3);
    char *text = etsi_text_alloc(len), *p = text;
    if (!text)
        return NULL;
    p += sprintf(p, "{\"keys\":[");
    for (size_t i = 0; i < c->count; i++) {
        if (c->keys[i].key_len > 0x3fffffff) {
            etsi_text_free(text);
            return NULL;
        }
        p += sprintf(p, "%s{\"key_ID\":\"%.36s\",\"key\":\"", i ? "," : "", c->keys[i].key_id);
        p += EVP_EncodeBlock((unsigned char *)p, c->keys[i].key, (int)c->keys[i].key_len);
        p += sprintf(p, "\"}");
    }
    sprintf(p, "]}");
    return text;
}

int etsi_key_container_from_json(const char *body, size_t len, etsi_key_container *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = parse_object(body, len, p);
    if (!root)
        return -1;
    int rc = -1;
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        etsi_problem_set(p, "malformed key container", "'keys' must be an array");
        goto done;
    }
    out->keys = calloc(json_array_size(keys) ? json_array_size(keys) : 1, sizeof *out->keys);
    if (!out->keys)
        goto done;
    size_t i;
    json_t *item;
    json_array_foreach(keys, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "key_ID"));
        const char *key = json_string_value(json_object_get(item, "key"));
        if (!id || !key || !uuid_is_valid(id)) {
            etsi_problem_set(p, "malformed key container", "keys[%zu] needs a UUID key_ID and a key", i);
            goto done;
        }
        etsi_key *k = &out->keys[out->count];
        uuid_normalise(id, k->key_id);
        k->key = base64_decode(key, &k->key_len);
        if (!k->key) {
            etsi_problem_set(p, "malformed key container", "keys[%zu].key is not base64", i);
            goto done;
        }
        out->count++;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        etsi_key_container_clear(out);
    return rc;
}

void etsi_key_container_clear(etsi_key_container *c)
{
    for (size_t i = 0; i < c->count; i++) {
        if (c->keys[i].key) {
            OPENSSL_cleanse(c->keys[i].key, c->keys[i].key_len);
            free(c->keys[i].key);
        }
    }
    free(c->keys);
    c->keys = NULL;
    c->count = 0;
}

/* ---- status ---------------------------------------------------------------- */

char *etsi_status_to_json(const etsi_status *s)
{
    json_t *root =
        json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "source_KME_ID", s->source_kme_id, "target_KME_ID",
                  s->target_kme_id, "master_SAE_ID", s->master_sae_id, "slave_SAE_ID", s->slave_sae_id, "key_size",
                  (json_int_t)s->limits.key_size, "stored_key_count", (json_int_t)s->stored_key_count, "max_key_count",
                  (json_int_t)s->limits.max_key_count, "max_key_per_request", (json_int_t)s->limits.max_key_per_request,
                  "max_key_size", (json_int_t)s->limits.max_key_size, "min_key_size",
                  (json_int_t)s->limits.min_key_size, "max_SAE_ID_count", (json_int_t)s->limits.max_sae_id_count);
    if (!root)
        return NULL;
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

int etsi_status_from_json(const char *body, size_t len, etsi_status *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = parse_object(body, len, p);
    if (!root)
        return -1;
    const char *src, *dst, *master, *slave;
    json_int_t ks, stored, maxc, maxreq, maxsize, minsize, maxsae;
    json_error_t jerr;
    int rc = json_unpack_ex(root, &jerr, 0, "{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "source_KME_ID", &src,
                            "target_KME_ID", &dst, "master_SAE_ID", &master, "slave_SAE_ID", &slave, "key_size", &ks,
                            "stored_key_count", &stored, "max_key_count", &maxc, "max_key_per_request", &maxreq,
                            "max_key_size", &maxsize, "min_key_size", &minsize, "max_SAE_ID_count", &maxsae);
    if (rc == 0) {
        snprintf(out->source_kme_id, sizeof out->source_kme_id, "%s", src);
        snprintf(out->target_kme_id, sizeof out->target_kme_id, "%s", dst);
        snprintf(out->master_sae_id, sizeof out->master_sae_id, "%s", master);
        snprintf(out->slave_sae_id, sizeof out->slave_sae_id, "%s", slave);
        out->stored_key_count = (long)stored;
        out->limits = (etsi_limits){(long)ks, (long)maxreq, (long)maxsize, (long)minsize, (long)maxsae, (long)maxc};
    } else {
        etsi_problem_set(p, "malformed status", "%s", jerr.text);
    }
    json_decref(root);
    return rc == 0 ? 0 : -1;
}

/* ---- error ----------------------------------------------------------------- */

char *etsi_error_to_json(const char *message, const char *detail)
{
    return etsi_error_refused_to_json(message, detail, NULL);
}

char *etsi_error_refused_to_json(const char *message, const char *detail, const char *refused_by)
{
    json_t *details = json_array();
    if (refused_by && refused_by[0])
        json_array_append_new(details,
                              json_pack("{s:s,s:s}", "reason", detail ? detail : "", "refused_by", refused_by));
    else if (detail && detail[0])
        json_array_append_new(details, json_pack("{s:s}", "reason", detail));
    json_t *root = json_pack("{s:s,s:o}", "message", message, "details", details);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

int etsi_error_from_json(const char *body, size_t len, etsi_problem *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    const char *msg = root ? json_string_value(json_object_get(root, "message")) : NULL;
    if (!msg) {
        json_decref(root);
        return -1;
    }
    snprintf(out->message, sizeof out->message, "%s", msg);
    json_t *d0 = json_array_get(json_object_get(root, "details"), 0);
    if (d0) {
        char *text = json_dumps(d0, JSON_COMPACT);
        const char *reason = json_string_value(json_object_get(d0, "reason"));
        snprintf(out->detail, sizeof out->detail, "%s", reason ? reason : (text ? text : ""));
        const char *by = json_string_value(json_object_get(d0, "refused_by"));
        if (by && strlen(by) <= ETSI_ID_MAX)
            snprintf(out->refused_by, sizeof out->refused_by, "%s", by);
        etsi_text_free(text);
    }
    json_decref(root);
    return 0;
}
