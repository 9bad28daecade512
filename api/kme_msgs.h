/* Inter-KME messages under /kme/v1/ (api/kme.yaml): the key-caching
 * verification of link blocks, the reservation of link key for a slave at
 * the peer, the settling of reservations whose answer was lost, claims of
 * stock keys and grants of link blocks, with the one-time MAC each carries
 * (kme_auth) and the tag of their answers. One encode/decode of each, shared
 * by both ends. */
#ifndef API_KME_MSGS_H
#define API_KME_MSGS_H

#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"

#define KME_TAG_BYTES 16
#define KME_MAX_BLOCKS_PER_VERIFY 1024
#define KME_MAX_SLAVES 65
#define KME_MAX_RANGES 65536
#define KME_MAC_KEY_BYTES 32 /* one-time Poly1305 key */
#define KME_MAC_MAX_RANGES 8 /* ranges one MAC key spans at most */

enum kme_verdict { KME_MATCH = 0, KME_MISMATCH = 1, KME_MISSING = 2 };

typedef struct {
    uint64_t seq;
    uint32_t offset, length;
} kme_range;

/* The one-time MAC of a request (relay/msg_auth.h): the ranges of the MAC
 * key, link key the sender owns on the link (JSON "mac_key", exactly
 * KME_MAC_KEY_BYTES bytes), the ranges of the key the answer is to be tagged
 * with (JSON "answer_key", likewise; absent when the answer is not tagged),
 * and the tag (JSON "tag", 32 hex digits). key_count 0: the request carries
 * no MAC (only a verify request may). */
typedef struct {
    size_t key_count;
    kme_range key[KME_MAC_MAX_RANGES];
    size_t answer_count;
    kme_range answer[KME_MAC_MAX_RANGES];
    uint8_t tag[KME_TAG_BYTES];
} kme_auth;

/* POST /kme/v1/verify. The MAC is optional: an end that owns no link key
 * yet has none to make it with. */
typedef struct {
    char txn_id[UUID_STR_LEN + 1];
    long timeout_ms;
    size_t count;
    uint64_t seqs[KME_MAX_BLOCKS_PER_VERIFY];
    uint8_t tags[KME_MAX_BLOCKS_PER_VERIFY][KME_TAG_BYTES];
    kme_auth auth;
} kme_verify_request;

typedef struct {
    char txn_id[UUID_STR_LEN + 1];
    size_t count;
    uint64_t seqs[KME_MAX_BLOCKS_PER_VERIFY];
    uint8_t verdicts[KME_MAX_BLOCKS_PER_VERIFY];
    int has_tag; /* JSON "tag": the answer to a request with a MAC */
    uint8_t tag[KME_TAG_BYTES];
} kme_verify_response;

/* The answer of reserve and claimed, and every refusal: the ETSI error body
 * {"message", "details"} with "tag" when the answer is tagged. */
typedef struct {
    char message[128];
    int has_tag;
    uint8_t tag[KME_TAG_BYTES];
} kme_ack;
/* Reads message and tag of an answer body (-1 when it has no message). */
int kme_ack_from_json(const char *body, size_t len, kme_ack *out);
/* The JSON object body with "tag" set (a new malloc'ed text; free it with
 * etsi_text_free); NULL when body is not a JSON object or out of memory. */
char *kme_ack_with_tag(const char *body, const uint8_t tag[KME_TAG_BYTES]);

/* POST /kme/v1/reserve */
typedef struct {
    char key_id[UUID_STR_LEN + 1];
    size_t first_range, nranges; /* slice of kme_reserve_request.ranges */
} kme_reserved_key;

typedef struct {
    char master[ETSI_ID_MAX + 1];
    size_t slave_count;
    char slaves[KME_MAX_SLAVES][ETSI_ID_MAX + 1];
    long size_bits;
    int64_t expires;
    size_t key_count;
    kme_reserved_key *keys;
    size_t range_count;
    kme_range *ranges;
    kme_auth auth; /* required, with answer_key */
} kme_reserve_request;

/* POST /kme/v1/resolve: settles reservations whose answer was lost. The
 * caller names each (its first key_ID and its expiry) with its slice of the
 * ranges; the callee answers, from inside its writer, which ranges it has
 * recorded as used, and withdraws every named reservation it has not
 * recorded: it refuses it for good should it still arrive.
 * Request {"ranges": [[seq, offset, length]...], "reservations": [{"key_ID",
 * "expires", "ranges": count}...], MAC} (the reservations cover the ranges in
 * order; the MAC is required, with answer_key); response {"used": [bool...],
 * "withdrawn": [key_ID...], "tag"}. A request naming none (an older caller)
 * is answered every range used, and an answer without "withdrawn" (an older
 * callee) withdraws nothing. */
typedef struct {
    char key_id[UUID_STR_LEN + 1];
    int64_t expires;
    size_t first, count; /* slice of kme_resolve.ranges */
    uint8_t withdrawn;   /* response */
} kme_resolve_reservation;

typedef struct {
    size_t count;
    kme_range *ranges;
    size_t reservation_count; /* 0: the caller did not name its reservations */
    kme_resolve_reservation *reservations;
    kme_auth auth;
    uint8_t *used; /* response */
    int final;     /* response: the callee said what it withdrew */
    int has_tag;   /* response */
    uint8_t tag[KME_TAG_BYTES];
} kme_resolve;

char *kme_resolve_request_to_json(const kme_resolve *r);
int kme_resolve_request_from_json(const char *body, size_t len, kme_resolve *out, etsi_problem *p);
char *kme_resolve_response_to_json(const kme_resolve *r);
int kme_resolve_response_from_json(const char *body, size_t len, kme_resolve *inout, etsi_problem *p);
void kme_resolve_clear(kme_resolve *r);

/* POST /kme/v1/claimed: stock keys handed to their master at these times;
 * the KME holding them (dest; empty: the callee) lets each expire
 * key_ttl_seconds after. A callee that is not dest passes it on along its
 * route, with a MAC of its own. JSON: {"claims": [[key_ID, unix s]...],
 * "dest": KME_ID (optional), "mac_key", "tag"}: the MAC is required, without
 * answer_key (the answer is an untagged kme_ack). */
typedef struct {
    char dest[ETSI_ID_MAX + 1];
    size_t count;
    char (*key_ids)[UUID_STR_LEN + 1];
    int64_t *at;
    kme_auth auth;
} kme_claimed;
char *kme_claimed_to_json(const kme_claimed *c);
int kme_claimed_from_json(const char *body, size_t len, kme_claimed *out, etsi_problem *p);
void kme_claimed_clear(kme_claimed *c);

/* POST /kme/v1/grant: the caller gives the callee whole blocks of their link
 * that it owned, unused (request {"seqs": [seq...], "mac_key", "answer_key",
 * "tag"}, 1 to KME_MAX_RANGES distinct seqs, the MAC required); the callee
 * answers which it took ({"accepted": [seq...], "tag"}, a subset of the
 * request). */
typedef struct {
    size_t count;
    uint64_t *seqs;
    kme_auth auth; /* request */
    int has_tag;   /* response */
    uint8_t tag[KME_TAG_BYTES];
} kme_grant;
char *kme_grant_request_to_json(const kme_grant *g);
int kme_grant_request_from_json(const char *body, size_t len, kme_grant *out, etsi_problem *p);
char *kme_grant_response_to_json(const kme_grant *accepted);
/* Refuses an answer naming a seq twice or one that request does not list. */
int kme_grant_response_from_json(const char *body, size_t len, const kme_grant *request, kme_grant *accepted,
                                 etsi_problem *p);
void kme_grant_clear(kme_grant *g);

char *kme_verify_request_to_json(const kme_verify_request *r);
int kme_verify_request_from_json(const char *body, size_t len, kme_verify_request *out, etsi_problem *p);
char *kme_verify_response_to_json(const kme_verify_response *r);
int kme_verify_response_from_json(const char *body, size_t len, kme_verify_response *out, etsi_problem *p);

char *kme_reserve_request_to_json(const kme_reserve_request *r);
int kme_reserve_request_from_json(const char *body, size_t len, long max_keys, kme_reserve_request *out,
                                  etsi_problem *p);
void kme_reserve_request_clear(kme_reserve_request *r);

#endif
