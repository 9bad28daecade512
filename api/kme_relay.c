/* Encode, decode and structural checks of the relay hop message (see kme_relay.h). */
#include "api/kme_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* ---- helpers ------------------------------------------------------------------ */

size_t kme_relay_payload_bytes(const kme_relay_msg *m)
{
    if (m->size_bits <= 0 || m->size_bits > KME_RELAY_MAX_SIZE_BITS || m->key_count > KME_RELAY_MAX_KEYS)
        return 0;
    return m->key_count * ((size_t)m->size_bits / 8);
}

static int range_cmp(const void *a, const void *b)
{
    const kme_range *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return 0;
}

int kme_ranges_disjoint(const kme_range *a, size_t na, const kme_range *b, size_t nb)
{
    if (na + nb < 2)
        return 1;
    kme_range *all = malloc((na + nb) * sizeof *all);
    if (!all)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].length)
            all[n++] = a[i];
    for (size_t i = 0; i < nb; i++)
        if (b[i].length)
            all[n++] = b[i];
    qsort(all, n, sizeof *all, range_cmp);
    int ok = 1;
    for (size_t i = 1; i < n && ok; i++)
        if (all[i].seq == all[i - 1].seq && (uint64_t)all[i - 1].offset + all[i - 1].length > all[i].offset)
            ok = 0;
    free(all);
    return ok;
}

/* Sum of the lengths, or UINT64_MAX when a range is empty or runs past 2^32. */
static uint64_t ranges_bytes(const kme_range *r, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].length == 0 || (uint64_t)r[i].offset + r[i].length > UINT32_MAX || r[i].seq > INT64_MAX)
            return UINT64_MAX;
        total += r[i].length;
    }
    return total;
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, UUID_STR_LEN);
}

/* Key IDs are canonical (lower case), so equal IDs are equal strings. */
static int key_ids_distinct(const kme_relay_msg *m)
{
    if (m->key_count < 2)
        return 1;
    char(*ids)[UUID_STR_LEN + 1] = malloc(m->key_count * sizeof *ids);
    if (!ids)
        return 0;
    memcpy(ids, m->key_ids, m->key_count * sizeof *ids);
    qsort(ids, m->key_count, sizeof *ids, id_cmp);
    int ok = 1;
    for (size_t i = 1; i < m->key_count && ok; i++)
        ok = memcmp(ids[i - 1], ids[i], UUID_STR_LEN) != 0;
    free(ids);
    return ok;
}

/* A valid UUID in lower case (one pass: checked on every key of every hop). */
static int is_canonical_uuid(const char *id)
{
    for (int i = 0; i < UUID_STR_LEN; i++) {
        char c = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23 ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return id[UUID_STR_LEN] == '\0';
}

int kme_relay_check(const kme_relay_msg *m, etsi_problem *p)
{
    const char *what = NULL;
    if (!is_canonical_uuid(m->relay_id))
        what = "'relay_id' must be a UUID";
    else if (!etsi_id_is_valid(m->origin) || !etsi_id_is_valid(m->dest) || strcmp(m->origin, m->dest) == 0)
        what = "'origin' and 'dest' must be two different KME IDs";
    else if (!etsi_id_is_valid(m->master))
        what = "'master' must be an SAE ID";
    else if (m->slave_count == 0 || m->slave_count > KME_MAX_SLAVES)
        what = "'slaves' must name 1 to 65 SAE IDs";
    else if (m->size_bits <= 0 || m->size_bits > KME_RELAY_MAX_SIZE_BITS || m->size_bits % 8)
        what = "'size' must be a positive multiple of 8 bits, at most 2^24";
    else if (m->expires < 0)
        what = "'expires' must be a unix time";
    else if (m->hops_left == 0 || m->hops_left > KME_RELAY_MAX_HOPS)
        what = "'hops_left' must be 1 to 255";
    else if (m->key_count == 0 || m->key_count > KME_RELAY_MAX_KEYS || !m->key_ids || !m->ct)
        what = "'keys' must hold 1 to 1024 keys";
    else if (m->pad_count == 0 || m->mac_key_count == 0 || !m->pad || !m->mac_key ||
             m->pad_count + m->mac_key_count > KME_RELAY_MAX_RANGES)
        what = "'pad' and 'mac_key' must hold 1 to 65536 ranges in all";
    else if (ranges_bytes(m->pad, m->pad_count) != kme_relay_payload_bytes(m))
        what = "'pad' must cover exactly the keys' bytes";
    else if (ranges_bytes(m->mac_key, m->mac_key_count) != KME_RELAY_MAC_KEY_BYTES)
        what = "'mac_key' must cover exactly 32 bytes";
    else if (!kme_ranges_disjoint(m->pad, m->pad_count, m->mac_key, m->mac_key_count))
        what = "'pad' and 'mac_key' ranges must not overlap";
    if (!what) {
        for (size_t i = 0; i < m->slave_count && !what; i++) {
            if (!etsi_id_is_valid(m->slaves[i]))
                what = "'slaves' must be SAE IDs";
            for (size_t j = 0; j < i && !what; j++)
                if (strcmp(m->slaves[i], m->slaves[j]) == 0)
                    what = "'slaves' must be distinct";
        }
        for (size_t i = 0; i < m->key_count && !what; i++)
            if (!is_canonical_uuid(m->key_ids[i]))
                what = "every key_ID must be a UUID";
        if (!what && !key_ids_distinct(m))
            what = "key_IDs must be distinct";
    }
    if (what) {
        etsi_problem_set(p, "malformed relay", "%s", what);
        return -1;
    }
    return 0;
}

int kme_relay_alloc(kme_relay_msg *m, size_t key_count, long size_bits, size_t pad_cap, size_t mac_cap)
{
    memset(m, 0, sizeof *m);
    if (key_count == 0 || key_count > KME_RELAY_MAX_KEYS || size_bits <= 0 || size_bits > KME_RELAY_MAX_SIZE_BITS ||
        size_bits % 8 || pad_cap == 0 || mac_cap == 0 || pad_cap > KME_RELAY_MAX_RANGES ||
        mac_cap > KME_RELAY_MAX_RANGES)
        return -1;
    m->key_count = key_count;
    m->size_bits = size_bits;
    m->key_ids = calloc(key_count, sizeof *m->key_ids);
    m->ct = calloc(key_count, (size_t)size_bits / 8);
    m->pad = calloc(pad_cap, sizeof *m->pad);
    m->mac_key = calloc(mac_cap, sizeof *m->mac_key);
    m->pad_cap = pad_cap;
    m->mac_key_cap = mac_cap;
    if (!m->key_ids || !m->ct || !m->pad || !m->mac_key) {
        kme_relay_clear(m);
        return -1;
    }
    return 0;
}

void kme_relay_clear(kme_relay_msg *m)
{
    if (m->ct) {
        size_t n = kme_relay_payload_bytes(m);
        if (n)
            OPENSSL_cleanse(m->ct, n);
    }
    free(m->ct);
    free(m->key_ids);
    free(m->pad);
    free(m->mac_key);
    OPENSSL_cleanse(m, sizeof *m);
    memset(m, 0, sizeof *m);
}

/* ---- encode --------------------------------------------------------------------- */

static char *put_ranges(char *p, const char *name, const kme_range *r, size_t n)
{
    p += sprintf(p, ",\"%s\":[", name);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s[%llu,%lu,%lu]", i ? "," : "", (unsigned long long)r[i].seq, (unsigned long)r[i].offset,
                     (unsigned long)r[i].length);
    return p + sprintf(p, "]");
}

/* Room for the members put_common writes and the keys, per_key bytes each. */
static size_t text_bound(const kme_relay_msg *m, size_t per_key)
{
    return 512 + (4 + m->slave_count) * (ETSI_ID_MAX + 4) + m->key_count * (UUID_STR_LEN + 32 + per_key) +
           (m->pad_count + m->mac_key_count) * 48;
}

/* The opening brace and the members both forms share (all but the keys and
 * the tag). Written directly rather than through jansson objects: every
 * string is a checked ID or UUID, so nothing needs escaping. */
static char *put_common(char *p, const kme_relay_msg *m)
{
    p += sprintf(p, "{\"relay_id\":\"%s\",\"origin\":\"%s\",\"dest\":\"%s\",\"master\":\"%s\",\"slaves\":[",
                 m->relay_id, m->origin, m->dest, m->master);
    for (size_t i = 0; i < m->slave_count; i++)
        p += sprintf(p, "%s\"%s\"", i ? "," : "", m->slaves[i]);
    p += sprintf(p, "],\"size\":%ld,\"expires\":%lld,\"hops_left\":%lu", m->size_bits, (long long)m->expires,
                 (unsigned long)m->hops_left);
    p = put_ranges(p, "pad", m->pad, m->pad_count);
    return put_ranges(p, "mac_key", m->mac_key, m->mac_key_count);
}

char *kme_relay_to_json(const kme_relay_msg *m)
{
    if (kme_relay_check(m, NULL) < 0)
        return NULL;
    size_t key_bytes = (size_t)m->size_bits / 8;
    char *text = etsi_text_alloc(text_bound(m, 4 * ((key_bytes + 2) / 3))), *p = text;
    if (!text)
        return NULL;
    p = put_common(p, m);
    p += sprintf(p, ",\"keys\":[");
    for (size_t i = 0; i < m->key_count; i++) {
        p += sprintf(p, "%s{\"key_ID\":\"%s\",\"ct\":\"", i ? "," : "", m->key_ids[i]);
        p += EVP_EncodeBlock((unsigned char *)p, m->ct + i * key_bytes, (int)key_bytes);
        p += sprintf(p, "\"}");
    }
    char tag[2 * KME_RELAY_TAG_BYTES + 1];
    hex_encode(m->tag, KME_RELAY_TAG_BYTES, tag);
    sprintf(p, "],\"tag\":\"%s\"}", tag);
    return text;
}

unsigned char *kme_relay_to_wire(const kme_relay_msg *m, size_t *len)
{
    *len = 0;
    if (kme_relay_check(m, NULL) < 0)
        return NULL;
    size_t ct_len = kme_relay_payload_bytes(m);
    unsigned char *body = malloc(KME_RELAY_WIRE_PREFIX + text_bound(m, 0) + ct_len + KME_RELAY_TAG_BYTES);
    if (!body)
        return NULL;
    char *head = (char *)body + KME_RELAY_WIRE_PREFIX, *p = put_common(head, m);
    p += sprintf(p, ",\"key_IDs\":[");
    for (size_t i = 0; i < m->key_count; i++)
        p += sprintf(p, "%s\"%s\"", i ? "," : "", m->key_ids[i]);
    p += sprintf(p, "]}");
    size_t head_len = (size_t)(p - head);
    for (int i = 0; i < KME_RELAY_WIRE_PREFIX; i++)
        body[i] = (unsigned char)(head_len >> (8 * (KME_RELAY_WIRE_PREFIX - 1 - i)));
    memcpy(body + KME_RELAY_WIRE_PREFIX + head_len, m->ct, ct_len);
    memcpy(body + KME_RELAY_WIRE_PREFIX + head_len + ct_len, m->tag, KME_RELAY_TAG_BYTES);
    *len = KME_RELAY_WIRE_PREFIX + head_len + ct_len + KME_RELAY_TAG_BYTES;
    return body;
}

/* ---- decode --------------------------------------------------------------------- */

static int only_members(json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(key, *a) == 0;
        if (!ok)
            return -1;
    }
    return 0;
}

static int get_u64(json_t *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_id(json_t *obj, const char *name, char out[ETSI_ID_MAX + 1])
{
    const char *v = json_string_value(json_object_get(obj, name));
    if (!v || !etsi_id_is_valid(v))
        return -1;
    snprintf(out, ETSI_ID_MAX + 1, "%s", v);
    return 0;
}

static int get_uuid(json_t *v, char out[UUID_STR_LEN + 1])
{
    const char *s = json_string_value(v);
    if (!s || !uuid_is_valid(s))
        return -1;
    uuid_normalise(s, out);
    return 0;
}

/* Fills out[0..n) from a JSON array of [seq, offset, length]; -1 on any fault. */
static int ranges_from_json(json_t *a, kme_range *out)
{
    size_t i;
    json_t *g;
    json_array_foreach(a, i, g)
    {
        uint64_t seq, off, length;
        if (!json_is_array(g) || json_array_size(g) != 3 || get_u64(json_array_get(g, 0), INT64_MAX, &seq) ||
            get_u64(json_array_get(g, 1), UINT32_MAX, &off) || get_u64(json_array_get(g, 2), UINT32_MAX, &length) ||
            length == 0 || off + length > UINT32_MAX)
            return -1;
        out[i] = (kme_range){seq, (uint32_t)off, (uint32_t)length};
    }
    return 0;
}

/* The two forms: all in JSON, or a JSON head before the raw bytes. */
enum relay_form { FORM_JSON, FORM_WIRE };

static const char *const json_members[] = {"relay_id",  "origin", "dest", "master",  "slaves", "size", "expires",
                                           "hops_left", "keys",   "pad",  "mac_key", "tag",    NULL};
static const char *const head_members[] = {"relay_id", "origin",    "dest",    "master", "slaves",  "size",
                                           "expires",  "hops_left", "key_IDs", "pad",    "mac_key", NULL};
static const char *const key_members[] = {"key_ID", "ct", NULL};

/* The key_ID of one item of the keys array, or NULL when the item is not of
 * the form's shape: {"key_ID", "ct" of b64_len characters} in JSON, a bare
 * string in a head. */
static json_t *key_id_of(json_t *item, enum relay_form form, size_t b64_len)
{
    if (form == FORM_WIRE)
        return json_is_string(item) ? item : NULL;
    const char *ct = json_string_value(json_object_get(item, "ct"));
    if (!json_is_object(item) || only_members(item, key_members) < 0 || !ct || strlen(ct) != b64_len)
        return NULL;
    return json_object_get(item, "key_ID");
}

/* Everything but the ciphertexts and the tag, from the object root of the
 * given form, into out (allocated: key IDs, a zeroed ciphertext buffer and
 * the ranges). In the binary form the body carries ct_len bytes of
 * ciphertext, which the head must announce exactly: nothing is allocated
 * for more than the body holds. NULL, or what is wrong; *oom is set when
 * memory ran out. */
static const char *common_from_json(json_t *root, enum relay_form form, size_t ct_len, kme_relay_msg *out, int *oom)
{
    json_t *slaves = json_object_get(root, "slaves"),
           *keys = json_object_get(root, form == FORM_WIRE ? "key_IDs" : "keys"), *pad = json_object_get(root, "pad"),
           *mac = json_object_get(root, "mac_key");
    uint64_t size = 0, expires = 0, hops = 0;
    *oom = 0;
    if (only_members(root, form == FORM_WIRE ? head_members : json_members) < 0)
        return "unknown member";
    if (get_uuid(json_object_get(root, "relay_id"), out->relay_id) < 0)
        return "'relay_id' must be a UUID";
    if (get_id(root, "origin", out->origin) < 0 || get_id(root, "dest", out->dest) < 0)
        return "'origin' and 'dest' must be KME IDs";
    if (get_id(root, "master", out->master) < 0)
        return "'master' must be an SAE ID";
    if (!json_is_array(slaves) || json_array_size(slaves) == 0 || json_array_size(slaves) > KME_MAX_SLAVES)
        return "'slaves' must be an array of 1 to 65 SAE IDs";
    if (get_u64(json_object_get(root, "size"), KME_RELAY_MAX_SIZE_BITS, &size) < 0 || size == 0 || size % 8)
        return "'size' must be a positive multiple of 8 bits, at most 2^24";
    if (get_u64(json_object_get(root, "expires"), INT64_MAX, &expires) < 0)
        return "'expires' must be a unix time";
    if (get_u64(json_object_get(root, "hops_left"), KME_RELAY_MAX_HOPS, &hops) < 0 || hops == 0)
        return "'hops_left' must be 1 to 255";
    if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > KME_RELAY_MAX_KEYS)
        return form == FORM_WIRE ? "'key_IDs' must be an array of 1 to 1024 key IDs"
                                 : "'keys' must be an array of 1 to 1024 keys";
    if (!json_is_array(pad) || !json_is_array(mac) || json_array_size(pad) == 0 || json_array_size(mac) == 0 ||
        json_array_size(pad) + json_array_size(mac) > KME_RELAY_MAX_RANGES)
        return "'pad' and 'mac_key' must be arrays of 1 to 65536 ranges in all";
    out->size_bits = (long)size;
    out->expires = (int64_t)expires;
    out->hops_left = (uint32_t)hops;

    size_t i;
    json_t *v;
    json_array_foreach(slaves, i, v)
    {
        if (!json_is_string(v) || !etsi_id_is_valid(json_string_value(v)))
            return "'slaves' must be SAE IDs";
        snprintf(out->slaves[out->slave_count++], ETSI_ID_MAX + 1, "%s", json_string_value(v));
    }

    /* Check every key's shape before allocating. */
    size_t key_bytes = size / 8, b64_len = 4 * ((key_bytes + 2) / 3);
    const char *bad_key = form == FORM_WIRE ? "every key_ID must be a UUID"
                                            : "every key needs a UUID key_ID and a base64 'ct' of size/8 bytes";
    json_array_foreach(keys, i, v)
    {
        if (!key_id_of(v, form, b64_len))
            return bad_key;
    }
    size_t nkeys = json_array_size(keys);
    if (form == FORM_WIRE && nkeys * key_bytes != ct_len)
        return "the body after the head must be exactly the keys' ciphertext and the 16-byte tag";
    out->key_ids = calloc(nkeys, sizeof *out->key_ids);
    out->ct = calloc(nkeys, key_bytes);
    out->pad = calloc(json_array_size(pad), sizeof *out->pad);
    out->mac_key = calloc(json_array_size(mac), sizeof *out->mac_key);
    if (!out->key_ids || !out->ct || !out->pad || !out->mac_key) {
        *oom = 1;
        return "the relay could not be decoded";
    }
    out->key_count = nkeys; /* from here kme_relay_clear wipes the whole ciphertext buffer */
    out->pad_cap = json_array_size(pad);
    out->mac_key_cap = json_array_size(mac);
    json_array_foreach(keys, i, v)
    {
        if (get_uuid(key_id_of(v, form, b64_len), out->key_ids[i]) < 0)
            return bad_key;
    }
    if (ranges_from_json(pad, out->pad) < 0 || ranges_from_json(mac, out->mac_key) < 0)
        return "every range must be [seq, offset, length] with length > 0";
    out->pad_count = out->pad_cap;
    out->mac_key_count = out->mac_key_cap;
    return NULL;
}

/* The ciphertexts and the tag of the JSON form, into out (allocated). */
static const char *secrets_from_json(json_t *root, kme_relay_msg *out)
{
    if (hex_decode(json_string_value(json_object_get(root, "tag")), out->tag, KME_RELAY_TAG_BYTES) < 0)
        return "'tag' must be 32 hex digits";
    size_t key_bytes = (size_t)out->size_bits / 8, i;
    json_t *v;
    json_array_foreach(json_object_get(root, "keys"), i, v)
    {
        size_t n = 0;
        unsigned char *ct = base64_decode(json_string_value(json_object_get(v, "ct")), &n);
        int ok = ct && n == key_bytes;
        if (ok)
            memcpy(out->ct + i * key_bytes, ct, key_bytes);
        if (ct) {
            OPENSSL_cleanse(ct, n);
            free(ct);
        }
        if (!ok)
            return "every key needs a UUID key_ID and a base64 'ct' of size/8 bytes";
    }
    return NULL;
}

/* Decodes the object text[0..len) of the given form; for FORM_WIRE, tail
 * (tail_len bytes) must be exactly the ciphertexts then the tag. */
static int decode(const char *text, size_t len, enum relay_form form, const unsigned char *tail, size_t tail_len,
                  kme_relay_msg *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        etsi_problem_set(p, "malformed JSON", "%s", root ? "not an object" : jerr.text);
        json_decref(root);
        return -1;
    }
    int oom = 0, rc = -1;
    /* The binary form's tail: the ciphertext, then the tag (from_wire made
     * sure the tag is there). */
    size_t ct_len = tail_len >= KME_RELAY_TAG_BYTES ? tail_len - KME_RELAY_TAG_BYTES : 0;
    const char *what = common_from_json(root, form, ct_len, out, &oom);
    if (!what && form == FORM_JSON) {
        what = secrets_from_json(root, out);
    } else if (!what) { /* the head announced exactly ct_len bytes of ciphertext */
        memcpy(out->ct, tail, ct_len);
        memcpy(out->tag, tail + ct_len, KME_RELAY_TAG_BYTES);
    }
    if (what)
        etsi_problem_set(p, oom ? "out of memory" : "malformed relay", "%s", what);
    else if (kme_relay_check(out, p) == 0)
        rc = 0;
    json_decref(root);
    if (rc < 0)
        kme_relay_clear(out);
    return rc;
}

int kme_relay_from_json(const char *body, size_t len, kme_relay_msg *out, etsi_problem *p)
{
    return decode(body, len, FORM_JSON, NULL, 0, out, p);
}

int kme_relay_from_wire(const unsigned char *body, size_t len, kme_relay_msg *out, etsi_problem *p)
{
    size_t head_len = 0;
    for (int i = 0; i < KME_RELAY_WIRE_PREFIX && len >= KME_RELAY_WIRE_PREFIX; i++)
        head_len = head_len << 8 | body[i];
    if (len < KME_RELAY_WIRE_PREFIX + KME_RELAY_TAG_BYTES || head_len == 0 ||
        head_len > len - KME_RELAY_WIRE_PREFIX - KME_RELAY_TAG_BYTES) {
        memset(out, 0, sizeof *out);
        etsi_problem_set(p, "malformed relay", "%s",
                         "the body must be a 4-byte head length, the head, the "
                         "ciphertext and the tag");
        return -1;
    }
    const unsigned char *head = body + KME_RELAY_WIRE_PREFIX, *tail = head + head_len;
    return decode((const char *)head, head_len, FORM_WIRE, tail, len - KME_RELAY_WIRE_PREFIX - head_len, out, p);
}
