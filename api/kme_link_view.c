/* The link view message: encode and strict decode (see kme_link_view.h). */
#include "api/kme_link_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

int kme_link_view_add(kme_link_view *v, const kme_view_block *b)
{
    if (v->count == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        if (cap > KME_VIEW_MAX_BLOCKS)
            return -1;
        kme_view_block *n = realloc(v->blocks, cap * sizeof *n);
        if (!n)
            return -1;
        v->blocks = n, v->cap = cap;
    }
    v->blocks[v->count++] = *b;
    return 0;
}

void kme_link_view_clear(kme_link_view *v)
{
    free(v->blocks);
    memset(v, 0, sizeof *v);
}

char *kme_link_view_to_json(const kme_link_view *v)
{
    json_t *blocks = json_array(), *root = json_object();
    int ok = blocks && root;
    for (size_t i = 0; ok && i < v->count; i++) {
        const kme_view_block *b = &v->blocks[i];
        json_t *used = json_array();
        for (uint32_t j = 0; used && j < b->nused; j++)
            ok = ok && json_array_append_new(used, json_integer(b->used[j][0])) == 0 &&
                 json_array_append_new(used, json_integer(b->used[j][1])) == 0;
        json_t *one = used ? json_pack("[IiiO]", (json_int_t)b->seq, (int)b->state, (int)b->owner, used) : NULL;
        json_decref(used);
        ok = ok && one && json_array_append_new(blocks, one) == 0;
    }
    char *text = NULL;
    if (ok && json_object_set_new(root, "mark", json_integer((json_int_t)v->mark)) == 0 &&
        json_object_set(root, "blocks", blocks) == 0)
        text = json_dumps(root, JSON_COMPACT);
    json_decref(blocks);
    json_decref(root);
    return text;
}

static int fail(etsi_problem *p, const char *detail)
{
    snprintf(p->message, sizeof p->message, "bad link view");
    snprintf(p->detail, sizeof p->detail, "%s", detail);
    return -1;
}

static int decode_block(json_t *e, kme_view_block *b, etsi_problem *p)
{
    json_t *seq = json_array_get(e, 0), *st = json_array_get(e, 1), *ow = json_array_get(e, 2),
           *used = json_array_get(e, 3);
    if (!json_is_array(e) || json_array_size(e) != 4 || !json_is_integer(seq) || json_integer_value(seq) < 0 ||
        !json_is_integer(st) || json_integer_value(st) < 0 || json_integer_value(st) > 3 || !json_is_integer(ow) ||
        json_integer_value(ow) < 0 || json_integer_value(ow) > 2 || !json_is_array(used) ||
        json_array_size(used) % 2 != 0 || json_array_size(used) / 2 > KME_VIEW_MAX_EXTENTS)
        return fail(p, "a block is not [seq, state, owner, [start, end, ...]]");
    memset(b, 0, sizeof *b);
    b->seq = (uint64_t)json_integer_value(seq);
    b->state = (uint8_t)json_integer_value(st);
    b->owner = (uint8_t)json_integer_value(ow);
    b->nused = (uint32_t)(json_array_size(used) / 2);
    for (uint32_t j = 0; j < b->nused; j++) {
        json_t *s = json_array_get(used, 2 * j), *t = json_array_get(used, 2 * j + 1);
        if (!json_is_integer(s) || !json_is_integer(t) || json_integer_value(s) < 0 ||
            json_integer_value(t) <= json_integer_value(s) || json_integer_value(t) > UINT32_MAX)
            return fail(p, "a used range is not start < end within 32 bits");
        b->used[j][0] = (uint32_t)json_integer_value(s);
        b->used[j][1] = (uint32_t)json_integer_value(t);
    }
    return 0;
}

int kme_link_view_from_json(const char *text, size_t len, kme_link_view *out, etsi_problem *p)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *mark = json_object_get(root, "mark"), *blocks = json_object_get(root, "blocks");
    int rc = 0;
    if (!json_is_object(root) || json_object_size(root) != 2 || !json_is_integer(mark) ||
        json_integer_value(mark) < 0 || !json_is_array(blocks) || json_array_size(blocks) > KME_VIEW_MAX_BLOCKS) {
        rc = fail(p, "the link view is not {\"mark\": N, \"blocks\": [...]}");
    } else {
        out->mark = (uint64_t)json_integer_value(mark);
        for (size_t i = 0; rc == 0 && i < json_array_size(blocks); i++) {
            kme_view_block b;
            rc = decode_block(json_array_get(blocks, i), &b, p);
            if (rc == 0 && out->count > 0 && b.seq <= out->blocks[out->count - 1].seq)
                rc = fail(p, "the blocks are not in ascending seq order");
            if (rc == 0 && kme_link_view_add(out, &b) < 0)
                rc = fail(p, "out of memory");
        }
    }
    json_decref(root);
    if (rc < 0)
        kme_link_view_clear(out);
    return rc;
}

char *kme_link_view_request_to_json(const uint64_t *have, size_t n)
{
    json_t *list = json_array(), *root = json_object();
    int ok = list && root;
    for (size_t i = 0; ok && i < n; i++)
        ok = json_array_append_new(list, json_integer((json_int_t)have[i])) == 0;
    char *text = ok && json_object_set(root, "have", list) == 0 ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(list);
    json_decref(root);
    return text;
}

int kme_link_view_request_from_json(const char *text, size_t len, uint64_t **have, size_t *n, etsi_problem *p)
{
    *have = NULL;
    *n = 0;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr), *list = json_object_get(root, "have");
    int rc = 0;
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(list) ||
        json_array_size(list) > KME_VIEW_MAX_BLOCKS) {
        rc = fail(p, "the request is not {\"have\": [seq, ...]}");
    } else if (!(*have = malloc((json_array_size(list) ? json_array_size(list) : 1) * sizeof **have))) {
        rc = fail(p, "out of memory");
    } else {
        for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
            json_t *e = json_array_get(list, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                (i > 0 && (uint64_t)json_integer_value(e) <= (*have)[i - 1]))
                rc = fail(p, "the seqs are not ascending integers");
            else
                (*have)[(*n)++] = (uint64_t)json_integer_value(e);
        }
    }
    json_decref(root);
    if (rc < 0) {
        free(*have);
        *have = NULL;
        *n = 0;
    }
    return rc;
}
