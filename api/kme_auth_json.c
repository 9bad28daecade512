/* The JSON members the inter-KME messages share (see kme_auth_json.h). */
#include "api/kme_auth_json.h"

#include "api/encoding.h"

#include <string.h>

int kme_json_u64(json_t *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* [seq, offset, length] with length > 0. */
int kme_range_from_json(json_t *g, kme_range *r)
{
    uint64_t off, length;
    if (!json_is_array(g) || json_array_size(g) != 3 || kme_json_u64(json_array_get(g, 0), INT64_MAX, &r->seq) ||
        kme_json_u64(json_array_get(g, 1), UINT32_MAX, &off) ||
        kme_json_u64(json_array_get(g, 2), UINT32_MAX, &length) || length == 0)
        return -1;
    r->offset = (uint32_t)off;
    r->length = (uint32_t)length;
    return 0;
}

json_t *kme_range_json(const kme_range *r)
{
    return json_pack("[I,I,I]", (json_int_t)r->seq, (json_int_t)r->offset, (json_int_t)r->length);
}

json_t *kme_ranges_json(const kme_range *r, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, kme_range_json(&r[i]));
    return arr;
}

/* ---- the MAC of a request and the tag of an answer -------------------------- */

void kme_tag_to_json(json_t *root, const uint8_t tag[KME_TAG_BYTES])
{
    char hex[2 * KME_TAG_BYTES + 1];
    hex_encode(tag, KME_TAG_BYTES, hex);
    json_object_set_new(root, "tag", json_string(hex));
}

/* An optional "tag": 0 (*has set when present), or -1 when malformed. */
int kme_tag_from_json(json_t *root, int *has, uint8_t tag[KME_TAG_BYTES])
{
    json_t *v = json_object_get(root, "tag");
    *has = 0;
    if (!v)
        return 0;
    if (hex_decode(json_string_value(v), tag, KME_TAG_BYTES) < 0)
        return -1;
    *has = 1;
    return 0;
}

void kme_auth_to_json(json_t *root, const kme_auth *a)
{
    if (!root || a->key_count == 0)
        return;
    json_object_set_new(root, "mac_key", kme_ranges_json(a->key, a->key_count));
    if (a->answer_count)
        json_object_set_new(root, "answer_key", kme_ranges_json(a->answer, a->answer_count));
    kme_tag_to_json(root, a->tag);
}

/* The ranges of one MAC key: 1 to KME_MAC_MAX_RANGES, KME_MAC_KEY_BYTES in all. */
static int mac_ranges_from_json(json_t *arr, kme_range *out, size_t *n)
{
    size_t i;
    json_t *g;
    uint64_t total = 0;
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > KME_MAC_MAX_RANGES)
        return -1;
    json_array_foreach(arr, i, g)
    {
        if (kme_range_from_json(g, &out[i]) < 0)
            return -1;
        total += out[i].length;
    }
    if (total != KME_MAC_KEY_BYTES)
        return -1;
    *n = json_array_size(arr);
    return 0;
}

/* The MAC members of a request: mac_key, answer_key (when flags has
 * KME_AUTH_ANSWER; otherwise refused) and tag. */
int kme_auth_from_json(json_t *root, kme_auth *out, int flags, etsi_problem *p)
{
    json_t *key = json_object_get(root, "mac_key"), *answer = json_object_get(root, "answer_key");
    int has_tag = 0;
    memset(out, 0, sizeof *out);
    if (!key && !answer && !json_object_get(root, "tag") && (flags & KME_AUTH_OPTIONAL))
        return 0;
    if (mac_ranges_from_json(key, out->key, &out->key_count) < 0 ||
        ((flags & KME_AUTH_ANSWER) ? mac_ranges_from_json(answer, out->answer, &out->answer_count) < 0
                                   : answer != NULL) ||
        kme_tag_from_json(root, &has_tag, out->tag) < 0 || !has_tag) {
        memset(out, 0, sizeof *out);
        etsi_problem_set(p, "malformed request",
                         "the request needs 'mac_key'%s (ranges of %d bytes of link key) and a 32-digit hex 'tag'",
                         (flags & KME_AUTH_ANSWER) ? " and 'answer_key'" : "", KME_MAC_KEY_BYTES);
        return -1;
    }
    return 0;
}
