/* Encode and decode the inter-KME messages (see api/kme.yaml). */
#include "api/kme_msgs.h"
#include "api/kme_auth_json.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static json_t *load(const char *body, size_t len, etsi_problem *p)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        etsi_problem_set(p, "malformed JSON", "%s", root ? "not an object" : jerr.text);
        return NULL;
    }
    return root;
}

static char *dump(json_t *root)
{
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static int get_uuid(json_t *obj, const char *name, char out[UUID_STR_LEN + 1], etsi_problem *p)
{
    const char *v = json_string_value(json_object_get(obj, name));
    if (!v || !uuid_is_valid(v)) {
        etsi_problem_set(p, "malformed request", "'%s' must be a UUID", name);
        return -1;
    }
    uuid_normalise(v, out);
    return 0;
}

int kme_ack_from_json(const char *body, size_t len, kme_ack *out)
{
    memset(out, 0, sizeof *out);
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(root, "message"));
    int rc = msg && kme_tag_from_json(root, &out->has_tag, out->tag) == 0 ? 0 : -1;
    if (rc == 0)
        snprintf(out->message, sizeof out->message, "%s", msg);
    else
        memset(out, 0, sizeof *out);
    json_decref(root);
    return rc;
}

char *kme_ack_with_tag(const char *body, const uint8_t tag[KME_TAG_BYTES])
{
    json_t *root = body ? json_loads(body, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    kme_tag_to_json(root, tag);
    return dump(root);
}

/* ---- verify ------------------------------------------------------------- */

char *kme_verify_request_to_json(const kme_verify_request *r)
{
    json_t *blocks = json_array();
    for (size_t i = 0; i < r->count; i++) {
        char hex[2 * KME_TAG_BYTES + 1];
        hex_encode(r->tags[i], KME_TAG_BYTES, hex);
        json_array_append_new(blocks, json_pack("{s:I,s:s}", "seq", (json_int_t)r->seqs[i], "tag", hex));
    }
    json_t *root =
        json_pack("{s:s,s:I,s:o}", "txn_id", r->txn_id, "timeout_ms", (json_int_t)r->timeout_ms, "blocks", blocks);
    kme_auth_to_json(root, &r->auth);
    return dump(root);
}

int kme_verify_request_from_json(const char *body, size_t len, kme_verify_request *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    int rc = -1;
    json_t *blocks = json_object_get(root, "blocks");
    uint64_t timeout;
    if (get_uuid(root, "txn_id", out->txn_id, p) < 0)
        goto done;
    if (kme_json_u64(json_object_get(root, "timeout_ms"), 3600000, &timeout) < 0) {
        etsi_problem_set(p, "malformed request", "'timeout_ms' must be a non-negative integer");
        goto done;
    }
    out->timeout_ms = (long)timeout;
    if (!json_is_array(blocks) || json_array_size(blocks) > KME_MAX_BLOCKS_PER_VERIFY) {
        etsi_problem_set(p, "malformed request", "'blocks' must be an array of at most %d", KME_MAX_BLOCKS_PER_VERIFY);
        goto done;
    }
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b)
    {
        if (kme_json_u64(json_object_get(b, "seq"), INT64_MAX, &out->seqs[i]) < 0 ||
            hex_decode(json_string_value(json_object_get(b, "tag")), out->tags[i], KME_TAG_BYTES) < 0) {
            etsi_problem_set(p, "malformed request", "blocks[%zu] needs a seq and a 32-digit hex tag", i);
            goto done;
        }
        out->count++;
    }
    rc = kme_auth_from_json(root, &out->auth, KME_AUTH_OPTIONAL | KME_AUTH_ANSWER, p);
done:
    json_decref(root);
    return rc;
}

static const char *const verdict_names[] = {"match", "mismatch", "missing"};

char *kme_verify_response_to_json(const kme_verify_response *r)
{
    json_t *results = json_array();
    for (size_t i = 0; i < r->count; i++)
        json_array_append_new(results, json_pack("{s:I,s:s}", "seq", (json_int_t)r->seqs[i], "result",
                                                 verdict_names[r->verdicts[i] % 3]));
    json_t *root = json_pack("{s:s,s:o}", "txn_id", r->txn_id, "results", results);
    if (root && r->has_tag)
        kme_tag_to_json(root, r->tag);
    return dump(root);
}

int kme_verify_response_from_json(const char *body, size_t len, kme_verify_response *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    int rc = -1;
    json_t *results = json_object_get(root, "results");
    if (get_uuid(root, "txn_id", out->txn_id, p) < 0)
        goto done;
    if (!json_is_array(results) || json_array_size(results) > KME_MAX_BLOCKS_PER_VERIFY) {
        etsi_problem_set(p, "malformed response", "'results' must be an array");
        goto done;
    }
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        const char *name = json_string_value(json_object_get(r, "result"));
        int v = -1;
        for (int k = 0; name && k < 3; k++)
            if (strcmp(name, verdict_names[k]) == 0)
                v = k;
        if (kme_json_u64(json_object_get(r, "seq"), INT64_MAX, &out->seqs[i]) < 0 || v < 0) {
            etsi_problem_set(p, "malformed response", "results[%zu] needs a seq and a result", i);
            goto done;
        }
        out->verdicts[i] = (uint8_t)v;
        out->count++;
    }
    rc = kme_tag_from_json(root, &out->has_tag, out->tag);
    if (rc < 0)
        etsi_problem_set(p, "malformed response", "'tag' must be 32 hex digits");
done:
    json_decref(root);
    return rc;
}

/* ---- reserve ------------------------------------------------------------- */

char *kme_reserve_request_to_json(const kme_reserve_request *r)
{
    json_t *slaves = json_array();
    for (size_t i = 0; i < r->slave_count; i++)
        json_array_append_new(slaves, json_string(r->slaves[i]));
    json_t *keys = json_array();
    for (size_t i = 0; i < r->key_count; i++) {
        json_t *ranges = json_array();
        for (size_t j = 0; j < r->keys[i].nranges; j++)
            json_array_append_new(ranges, kme_range_json(&r->ranges[r->keys[i].first_range + j]));
        json_array_append_new(keys, json_pack("{s:s,s:o}", "key_ID", r->keys[i].key_id, "ranges", ranges));
    }
    json_t *root = json_pack("{s:s,s:o,s:I,s:I,s:o}", "master", r->master, "slaves", slaves, "size",
                             (json_int_t)r->size_bits, "expires", (json_int_t)r->expires, "keys", keys);
    kme_auth_to_json(root, &r->auth);
    return dump(root);
}

int kme_reserve_request_from_json(const char *body, size_t len, long max_keys, kme_reserve_request *out,
                                  etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    int rc = -1;
    const char *master = json_string_value(json_object_get(root, "master"));
    json_t *slaves = json_object_get(root, "slaves");
    json_t *keys = json_object_get(root, "keys");
    uint64_t size, expires;
    if (!master || !etsi_id_is_valid(master) || !json_is_array(slaves) || json_array_size(slaves) == 0 ||
        json_array_size(slaves) > KME_MAX_SLAVES || !json_is_array(keys) || json_array_size(keys) == 0 ||
        (long)json_array_size(keys) > max_keys || kme_json_u64(json_object_get(root, "size"), 1u << 24, &size) < 0 ||
        size == 0 || size % 8 || kme_json_u64(json_object_get(root, "expires"), INT64_MAX, &expires) < 0) {
        etsi_problem_set(p, "malformed request", "reserve needs master, slaves, size, expires and keys");
        goto done;
    }
    snprintf(out->master, sizeof out->master, "%s", master);
    out->size_bits = (long)size;
    out->expires = (int64_t)expires;
    size_t i;
    json_t *v;
    json_array_foreach(slaves, i, v)
    {
        if (!json_is_string(v) || !etsi_id_is_valid(json_string_value(v))) {
            etsi_problem_set(p, "malformed request", "slaves[%zu] is not an SAE ID", i);
            goto done;
        }
        snprintf(out->slaves[out->slave_count++], ETSI_ID_MAX + 1, "%s", json_string_value(v));
    }
    size_t total_ranges = 0;
    json_array_foreach(keys, i, v) total_ranges += json_array_size(json_object_get(v, "ranges"));
    if (total_ranges == 0 || total_ranges > KME_MAX_RANGES) {
        etsi_problem_set(p, "malformed request", "between 1 and %d ranges in all", KME_MAX_RANGES);
        goto done;
    }
    out->keys = calloc(json_array_size(keys), sizeof *out->keys);
    out->ranges = calloc(total_ranges, sizeof *out->ranges);
    if (!out->keys || !out->ranges)
        goto done;
    json_array_foreach(keys, i, v)
    {
        kme_reserved_key *k = &out->keys[out->key_count];
        json_t *ranges = json_object_get(v, "ranges");
        if (get_uuid(v, "key_ID", k->key_id, p) < 0 || !json_is_array(ranges) || json_array_size(ranges) == 0)
            goto bad_key;
        k->first_range = out->range_count;
        uint64_t bytes = 0;
        size_t j;
        json_t *g;
        json_array_foreach(ranges, j, g)
        {
            kme_range *r = &out->ranges[out->range_count];
            if (kme_range_from_json(g, r) < 0)
                goto bad_key;
            bytes += r->length;
            out->range_count++;
            k->nranges++;
        }
        if (bytes * 8 != size)
            goto bad_key;
        out->key_count++;
    }
    rc = kme_auth_from_json(root, &out->auth, KME_AUTH_ANSWER, p);
    goto done;
bad_key:
    etsi_problem_set(p, "malformed request", "keys[%zu] needs a UUID key_ID and ranges covering size bits", i);
done:
    json_decref(root);
    if (rc < 0)
        kme_reserve_request_clear(out);
    return rc;
}

void kme_reserve_request_clear(kme_reserve_request *r)
{
    free(r->keys);
    free(r->ranges);
    r->keys = NULL;
    r->ranges = NULL;
    r->key_count = r->range_count = 0;
}

/* ---- resolve -------------------------------------------------------------- */

char *kme_resolve_request_to_json(const kme_resolve *r)
{
    json_t *reservations = json_array();
    for (size_t i = 0; i < r->reservation_count; i++) {
        const kme_resolve_reservation *v = &r->reservations[i];
        json_array_append_new(reservations, json_pack("{s:s,s:I,s:I}", "key_ID", v->key_id, "expires",
                                                      (json_int_t)v->expires, "ranges", (json_int_t)v->count));
    }
    json_t *root = json_pack("{s:o}", "ranges", kme_ranges_json(r->ranges, r->count));
    if (r->reservation_count)
        json_object_set_new(root, "reservations", reservations);
    else
        json_decref(reservations);
    kme_auth_to_json(root, &r->auth);
    return dump(root);
}

/* The optional "reservations" of a request: they cover out->ranges in order
 * (none named when absent or empty). */
static int get_reservations(json_t *list, kme_resolve *out, etsi_problem *p)
{
    if (!list || (json_is_array(list) && json_array_size(list) == 0))
        return 0;
    if (!json_is_array(list) || json_array_size(list) > out->count) {
        etsi_problem_set(p, "malformed request", "'reservations' must be an array of at most one per range");
        return -1;
    }
    out->reservations = calloc(json_array_size(list) ? json_array_size(list) : 1, sizeof *out->reservations);
    if (!out->reservations)
        return -1;
    size_t i, next = 0;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        kme_resolve_reservation *v = &out->reservations[i];
        uint64_t count, expires;
        if (!json_is_object(e) || get_uuid(e, "key_ID", v->key_id, p) < 0 ||
            kme_json_u64(json_object_get(e, "expires"), INT64_MAX, &expires) ||
            kme_json_u64(json_object_get(e, "ranges"), out->count - next, &count) || count == 0) {
            etsi_problem_set(p, "malformed request",
                             "reservations[%zu] must have a key_ID, its expires and its number of ranges", i);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->reservations[j].key_id, v->key_id) == 0) {
                etsi_problem_set(p, "malformed request", "reservations[%zu] names a key_ID twice", i);
                return -1;
            }
        v->expires = (int64_t)expires;
        v->first = next;
        v->count = count;
        next += count;
        out->reservation_count++;
    }
    if (next != out->count) {
        etsi_problem_set(p, "malformed request", "'reservations' must cover every range, in order");
        return -1;
    }
    return 0;
}

int kme_resolve_request_from_json(const char *body, size_t len, kme_resolve *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    json_t *ranges = json_object_get(root, "ranges");
    int rc = -1;
    if (!json_is_array(ranges) || json_array_size(ranges) == 0 || json_array_size(ranges) > KME_MAX_RANGES) {
        etsi_problem_set(p, "malformed request", "'ranges' must be an array of 1 to %d ranges", KME_MAX_RANGES);
        goto done;
    }
    out->ranges = calloc(json_array_size(ranges), sizeof *out->ranges);
    out->used = calloc(json_array_size(ranges), 1);
    if (!out->ranges || !out->used)
        goto done;
    size_t i;
    json_t *g;
    json_array_foreach(ranges, i, g)
    {
        if (kme_range_from_json(g, &out->ranges[i]) < 0) {
            etsi_problem_set(p, "malformed request", "ranges[%zu] must be [seq, offset, length]", i);
            goto done;
        }
        out->count++;
    }
    rc = get_reservations(json_object_get(root, "reservations"), out, p);
    if (rc == 0)
        rc = kme_auth_from_json(root, &out->auth, KME_AUTH_ANSWER, p);
done:
    json_decref(root);
    if (rc < 0)
        kme_resolve_clear(out);
    return rc;
}

char *kme_resolve_response_to_json(const kme_resolve *r)
{
    json_t *used = json_array(), *withdrawn = json_array();
    for (size_t i = 0; i < r->count; i++)
        json_array_append_new(used, json_boolean(r->used[i]));
    for (size_t i = 0; i < r->reservation_count; i++)
        if (r->reservations[i].withdrawn)
            json_array_append_new(withdrawn, json_string(r->reservations[i].key_id));
    json_t *root = json_pack("{s:o,s:o}", "used", used, "withdrawn", withdrawn);
    if (root && r->has_tag)
        kme_tag_to_json(root, r->tag);
    return dump(root);
}

int kme_resolve_response_from_json(const char *body, size_t len, kme_resolve *inout, etsi_problem *p)
{
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    json_t *used = json_object_get(root, "used"), *withdrawn = json_object_get(root, "withdrawn");
    int rc = -1;
    inout->final = 0;
    for (size_t i = 0; i < inout->reservation_count; i++)
        inout->reservations[i].withdrawn = 0;
    if (!json_is_array(used) || json_array_size(used) != inout->count) {
        etsi_problem_set(p, "malformed response", "'used' must have one boolean per range");
        goto done;
    }
    for (size_t i = 0; i < inout->count; i++) {
        json_t *v = json_array_get(used, i);
        if (!json_is_boolean(v)) {
            etsi_problem_set(p, "malformed response", "used[%zu] must be a boolean", i);
            goto done;
        }
        inout->used[i] = json_is_true(v);
    }
    if (withdrawn && !json_is_array(withdrawn)) {
        etsi_problem_set(p, "malformed response", "'withdrawn' must be an array of key_IDs");
        goto done;
    }
    size_t i;
    json_t *w;
    json_array_foreach(withdrawn, i, w)
    {
        const char *id = json_string_value(w);
        size_t j = 0;
        while (id && j < inout->reservation_count && strcasecmp(inout->reservations[j].key_id, id) != 0)
            j++;
        if (!id || j == inout->reservation_count) {
            etsi_problem_set(p, "malformed response", "withdrawn[%zu] is not a reservation asked about", i);
            goto done;
        }
        inout->reservations[j].withdrawn = 1;
    }
    inout->final = withdrawn != NULL;
    rc = kme_tag_from_json(root, &inout->has_tag, inout->tag);
    if (rc < 0)
        etsi_problem_set(p, "malformed response", "'tag' must be 32 hex digits");
done:
    if (rc < 0)
        for (size_t j = 0; j < inout->reservation_count; j++)
            inout->reservations[j].withdrawn = 0;
    json_decref(root);
    return rc;
}

void kme_resolve_clear(kme_resolve *r)
{
    free(r->ranges);
    free(r->used);
    free(r->reservations);
    r->ranges = NULL;
    r->used = NULL;
    r->reservations = NULL;
    r->count = r->reservation_count = 0;
}

/* ---- claimed ---------------------------------------------------------------- */

char *kme_claimed_to_json(const kme_claimed *c)
{
    json_t *claims = json_array();
    for (size_t i = 0; i < c->count; i++)
        json_array_append_new(claims, json_pack("[s,I]", c->key_ids[i], (json_int_t)c->at[i]));
    json_t *root = json_pack("{s:o}", "claims", claims);
    if (root && c->dest[0])
        json_object_set_new(root, "dest", json_string(c->dest));
    kme_auth_to_json(root, &c->auth);
    return dump(root);
}

int kme_claimed_from_json(const char *body, size_t len, kme_claimed *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    json_t *claims = json_object_get(root, "claims"), *dest = json_object_get(root, "dest");
    int rc = -1;
    size_t n = json_array_size(claims);
    if (dest && (!json_is_string(dest) || !etsi_id_is_valid(json_string_value(dest)))) {
        etsi_problem_set(p, "malformed request", "'dest' must be a KME ID");
        goto done;
    }
    if (dest)
        snprintf(out->dest, sizeof out->dest, "%s", json_string_value(dest));
    if (!json_is_array(claims) || n == 0 || n > KME_MAX_RANGES) {
        etsi_problem_set(p, "malformed request", "'claims' must be an array of 1 to %d [key_ID, time]", KME_MAX_RANGES);
        goto done;
    }
    out->key_ids = calloc(n, sizeof *out->key_ids);
    out->at = calloc(n, sizeof *out->at);
    if (!out->key_ids || !out->at)
        goto done;
    size_t i;
    json_t *c;
    json_array_foreach(claims, i, c)
    {
        const char *id = json_string_value(json_array_get(c, 0));
        uint64_t at;
        if (!json_is_array(c) || json_array_size(c) != 2 || !id || !uuid_is_valid(id) ||
            kme_json_u64(json_array_get(c, 1), INT64_MAX, &at)) {
            etsi_problem_set(p, "malformed request", "claims[%zu] must be [key_ID, unix time]", i);
            goto done;
        }
        uuid_normalise(id, out->key_ids[i]);
        out->at[i] = (int64_t)at;
        out->count++;
    }
    rc = kme_auth_from_json(root, &out->auth, 0, p);
done:
    json_decref(root);
    if (rc < 0)
        kme_claimed_clear(out);
    return rc;
}

void kme_claimed_clear(kme_claimed *c)
{
    free(c->key_ids);
    free(c->at);
    c->key_ids = NULL;
    c->at = NULL;
    c->count = 0;
}

/* ---- grant ------------------------------------------------------------------- */

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A sorted copy of seqs (NULL when out of memory); n may be 0. */
static uint64_t *sorted_seqs(const uint64_t *seqs, size_t n)
{
    uint64_t *s = malloc((n ? n : 1) * sizeof *s);
    if (s && n) {
        memcpy(s, seqs, n * sizeof *s);
        qsort(s, n, sizeof *s, cmp_seq);
    }
    return s;
}

static json_t *seq_array(const kme_grant *g)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < g->count; i++)
        json_array_append_new(arr, json_integer((json_int_t)g->seqs[i]));
    return arr;
}

/* Fills out from the array of seqs arr (at most max, no seq twice); what
 * names the message in problems. */
static int get_seqs(json_t *arr, size_t max, const char *what, const char *name, kme_grant *out, etsi_problem *p)
{
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n > max) {
        etsi_problem_set(p, what, "'%s' must be an array of at most %zu seqs", name, max);
        return -1;
    }
    out->seqs = calloc(n ? n : 1, sizeof *out->seqs);
    if (!out->seqs) {
        etsi_problem_set(p, "out of memory", NULL);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (kme_json_u64(v, INT64_MAX, &out->seqs[i]) < 0) {
            etsi_problem_set(p, what, "%s[%zu] must be a non-negative integer", name, i);
            return -1;
        }
        out->count++;
    }
    uint64_t *sorted = sorted_seqs(out->seqs, n);
    int oom = !sorted, dup = 0;
    for (size_t j = 1; !oom && j < n && !dup; j++)
        dup = sorted[j] == sorted[j - 1];
    free(sorted);
    if (oom)
        etsi_problem_set(p, "out of memory", NULL);
    else if (dup)
        etsi_problem_set(p, what, "'%s' must not name a seq twice", name);
    return oom || dup ? -1 : 0;
}

char *kme_grant_request_to_json(const kme_grant *g)
{
    json_t *root = json_pack("{s:o}", "seqs", seq_array(g));
    kme_auth_to_json(root, &g->auth);
    return dump(root);
}

int kme_grant_request_from_json(const char *body, size_t len, kme_grant *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    json_t *seqs = json_object_get(root, "seqs");
    int rc = -1;
    if (json_array_size(seqs) == 0)
        etsi_problem_set(p, "malformed request", "'seqs' must be an array of 1 to %d seqs", KME_MAX_RANGES);
    else
        rc = get_seqs(seqs, KME_MAX_RANGES, "malformed request", "seqs", out, p);
    if (rc == 0)
        rc = kme_auth_from_json(root, &out->auth, KME_AUTH_ANSWER, p);
    json_decref(root);
    if (rc < 0)
        kme_grant_clear(out);
    return rc;
}

char *kme_grant_response_to_json(const kme_grant *accepted)
{
    json_t *root = json_pack("{s:o}", "accepted", seq_array(accepted));
    if (root && accepted->has_tag)
        kme_tag_to_json(root, accepted->tag);
    return dump(root);
}

/* 0 when every seq of sub is in set. */
static int check_subset(const kme_grant *sub, const kme_grant *set, etsi_problem *p)
{
    uint64_t *sorted = sorted_seqs(set->seqs, set->count);
    if (!sorted) {
        etsi_problem_set(p, "out of memory", NULL);
        return -1;
    }
    size_t i = 0;
    while (i < sub->count && bsearch(&sub->seqs[i], sorted, set->count, sizeof *sorted, cmp_seq))
        i++;
    free(sorted);
    if (i < sub->count) {
        etsi_problem_set(p, "malformed response", "accepted[%zu] was not granted", i);
        return -1;
    }
    return 0;
}

int kme_grant_response_from_json(const char *body, size_t len, const kme_grant *request, kme_grant *accepted,
                                 etsi_problem *p)
{
    memset(accepted, 0, sizeof *accepted);
    json_t *root = load(body, len, p);
    if (!root)
        return -1;
    int rc = get_seqs(json_object_get(root, "accepted"), request->count, "malformed response", "accepted", accepted, p);
    if (rc == 0)
        rc = check_subset(accepted, request, p);
    if (rc == 0 && (rc = kme_tag_from_json(root, &accepted->has_tag, accepted->tag)) < 0)
        etsi_problem_set(p, "malformed response", "'tag' must be 32 hex digits");
    json_decref(root);
    if (rc < 0)
        kme_grant_clear(accepted);
    return rc;
}

void kme_grant_clear(kme_grant *g)
{
    free(g->seqs);
    g->seqs = NULL;
    g->count = 0;
}
