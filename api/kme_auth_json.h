/* The JSON members the inter-KME messages share (api/kme_msgs.h,
 * api/kme_link_ids.h): ranges of link key ([seq, offset, length]), the
 * one-time MAC of a request ("mac_key", "answer_key", "tag") and the tag of
 * an answer ("tag", 32 hex digits). */
#ifndef API_KME_AUTH_JSON_H
#define API_KME_AUTH_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "api/kme_msgs.h"

/* A JSON integer from 0 to max. 0, or -1. */
int kme_json_u64(json_t *v, uint64_t max, uint64_t *out);

/* [seq, offset, length] with length > 0. 0, or -1. */
int kme_range_from_json(json_t *g, kme_range *r);
json_t *kme_range_json(const kme_range *r);
json_t *kme_ranges_json(const kme_range *r, size_t n);

/* An answer's "tag". The decoder takes an absent tag (*has 0) and refuses a
 * malformed one (-1). */
void kme_tag_to_json(json_t *root, const uint8_t tag[KME_TAG_BYTES]);
int kme_tag_from_json(json_t *root, int *has, uint8_t tag[KME_TAG_BYTES]);

/* A request's MAC members; nothing when key_count is 0. */
void kme_auth_to_json(json_t *root, const kme_auth *a);

enum {
    KME_AUTH_OPTIONAL = 1, /* a request without a MAC is taken (its handler decides) */
    KME_AUTH_ANSWER = 2,   /* the MAC comes with answer_key */
};
/* The MAC members of a request: mac_key, answer_key (when flags has
 * KME_AUTH_ANSWER; otherwise refused) and tag. 0, or -1 with *p. */
int kme_auth_from_json(json_t *root, kme_auth *out, int flags, etsi_problem *p);

#endif
