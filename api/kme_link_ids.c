/* The link_ids message of the device handshake: encode and strict decode
 * (see kme_link_ids.h). */
#include "api/kme_link_ids.h"
#include "api/kme_auth_json.h"

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

int kme_link_ids_add(kme_link_ids *m, const char *id)
{
    if (m->count >= KME_MAX_LINK_IDS || !uuid_is_valid(id))
        return -1;
    if (!m->ids && !(m->ids = calloc(KME_MAX_LINK_IDS, sizeof *m->ids)))
        return -1;
    uuid_normalise(id, m->ids[m->count++]);
    return 0;
}

void kme_link_ids_clear(kme_link_ids *m)
{
    free(m->ids);
    memset(m, 0, sizeof *m);
}

static json_t *ids_json(const kme_link_ids *m)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < m->count; i++)
        json_array_append_new(arr, json_string(m->ids[i]));
    return arr;
}

static char *dump(json_t *root)
{
    char *text = json_is_object(root) ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

char *kme_link_ids_request_to_json(const kme_link_ids *m)
{
    json_t *root =
        json_pack("{s:I,s:I,s:o}", "seq", (json_int_t)m->seq, "size", (json_int_t)m->size_bits, "key_IDs", ids_json(m));
    kme_auth_to_json(root, &m->auth);
    return dump(root);
}

char *kme_link_ids_response_to_json(const kme_link_ids *m)
{
    json_t *root = json_pack("{s:I,s:o,s:I}", "seq", (json_int_t)m->seq, "key_IDs", ids_json(m), "next_seq",
                             (json_int_t)m->next_seq);
    if (root && m->has_tag)
        kme_tag_to_json(root, m->tag);
    return dump(root);
}

static json_t *load(const char *body, size_t len, const char *what, etsi_problem *p)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        etsi_problem_set(p, what, "%s", root ? "not a JSON object" : jerr.text);
        return NULL;
    }
    return root;
}

static int get_u64(json_t *root, const char *name, uint64_t *out)
{
    return kme_json_u64(json_object_get(root, name), INT64_MAX, out);
}

/* The key_IDs array: at most KME_MAX_LINK_IDS UUIDs, none twice. */
static int get_ids(json_t *root, const char *what, kme_link_ids *out, etsi_problem *p)
{
    json_t *arr = json_object_get(root, "key_IDs");
    if (!json_is_array(arr) || json_array_size(arr) > KME_MAX_LINK_IDS) {
        etsi_problem_set(p, what, "'key_IDs' must be an array of at most %d UUIDs", KME_MAX_LINK_IDS);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *id = json_string_value(v);
        if (!id || kme_link_ids_add(out, id) < 0) {
            etsi_problem_set(p, what, "key_IDs[%zu] must be a UUID", i);
            return -1;
        }
        for (size_t j = 0; j + 1 < out->count; j++)
            if (strcmp(out->ids[j], out->ids[out->count - 1]) == 0) {
                etsi_problem_set(p, what, "key_IDs[%zu] names a key twice", i);
                return -1;
            }
    }
    return 0;
}

int kme_link_ids_request_from_json(const char *body, size_t len, kme_link_ids *out, etsi_problem *p)
{
    static const char what[] = "malformed request";
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, what, p);
    if (!root)
        return -1;
    uint64_t size = 0;
    int rc = -1;
    if (get_u64(root, "seq", &out->seq) < 0)
        etsi_problem_set(p, what, "'seq' must be a non-negative integer");
    else if (get_u64(root, "size", &size) < 0 || size < 8 || size > 65536 || size % 8)
        etsi_problem_set(p, what, "'size' must be a multiple of 8 from 8 to 65536 (bits)");
    else if (get_ids(root, what, out, p) == 0) {
        if (out->count == 0)
            etsi_problem_set(p, what, "'key_IDs' must name at least one key");
        else
            rc = kme_auth_from_json(root, &out->auth, KME_AUTH_OPTIONAL | KME_AUTH_ANSWER, p);
    }
    out->size_bits = (long)size;
    json_decref(root);
    if (rc < 0)
        kme_link_ids_clear(out);
    return rc;
}

int kme_link_ids_response_from_json(const char *body, size_t len, const kme_link_ids *request, kme_link_ids *out,
                                    etsi_problem *p)
{
    static const char what[] = "malformed response";
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, what, p);
    if (!root)
        return -1;
    int rc = -1;
    if (get_u64(root, "seq", &out->seq) < 0 || out->seq != request->seq)
        etsi_problem_set(p, what, "'seq' must be the seq of the request");
    else if (get_u64(root, "next_seq", &out->next_seq) < 0)
        etsi_problem_set(p, what, "'next_seq' must be a non-negative integer");
    else if (kme_tag_from_json(root, &out->has_tag, out->tag) < 0)
        etsi_problem_set(p, what, "'tag' must be 32 hex digits");
    else if (get_ids(root, what, out, p) == 0) {
        size_t j = 0; /* each answered ID is a later one of the request */
        rc = 0;
        for (size_t i = 0; rc == 0 && i < out->count; i++) {
            while (j < request->count && strcmp(request->ids[j], out->ids[i]) != 0)
                j++;
            if (j++ >= request->count) {
                etsi_problem_set(p, what, "key_IDs[%zu] was not asked for, or is out of order", i);
                rc = -1;
            }
        }
    }
    json_decref(root);
    if (rc < 0)
        kme_link_ids_clear(out);
    return rc;
}
