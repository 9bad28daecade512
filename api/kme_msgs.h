/* Inter-KME messages under /kme/v1/ (api/kme.yaml): the key-caching
 * verification of link blocks and the reservation of link key for a slave at
 * the peer. One encode/decode of each, shared by both ends. */
#ifndef API_KME_MSGS_H
#define API_KME_MSGS_H

#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"

#define KME_TAG_BYTES 16
#define KME_MAX_BLOCKS_PER_VERIFY 1024
#define KME_MAX_SLAVES 65
#define KME_MAX_RANGES 65536

enum kme_verdict { KME_MATCH = 0, KME_MISMATCH = 1, KME_MISSING = 2 };

typedef struct {
    uint64_t seq;
    uint32_t offset, length;
} kme_range;

/* POST /kme/v1/verify */
typedef struct {
    char txn_id[UUID_STR_LEN + 1];
    long timeout_ms;
    size_t count;
    uint64_t seqs[KME_MAX_BLOCKS_PER_VERIFY];
    uint8_t tags[KME_MAX_BLOCKS_PER_VERIFY][KME_TAG_BYTES];
} kme_verify_request;

typedef struct {
    char txn_id[UUID_STR_LEN + 1];
    size_t count;
    uint64_t seqs[KME_MAX_BLOCKS_PER_VERIFY];
    uint8_t verdicts[KME_MAX_BLOCKS_PER_VERIFY];
} kme_verify_response;

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
} kme_reserve_request;

/* POST /kme/v1/resolve: settles reservations whose answer was lost. The
 * caller names each (its first key_ID and its expiry) with its slice of the
 * ranges; the callee answers, from inside its writer, which ranges it has
 * recorded as used, and withdraws every named reservation it has not
 * recorded: it refuses it for good should it still arrive.
 * Request {"ranges": [[seq, offset, length]...], "reservations": [{"key_ID",
 * "expires", "ranges": count}...]} (the reservations cover the ranges in
 * order); response {"used": [bool...], "withdrawn": [key_ID...]}. A request
 * naming none (an older caller) is answered every range used, and
 * an answer without "withdrawn" (an older callee) withdraws nothing. */
typedef struct {
    char key_id[UUID_STR_LEN + 1];
    int64_t expires;
    size_t first, count; /* slice of kme_resolve.ranges */
    uint8_t withdrawn;   /* response */
} kme_resolve_reservation;

typedef struct {
    size_t count;
    kme_range *ranges;
    uint8_t *used;            /* response */
    size_t reservation_count; /* 0: the caller did not name its reservations */
    kme_resolve_reservation *reservations;
    int final; /* response: the callee said what it withdrew */
} kme_resolve;

char *kme_resolve_request_to_json(const kme_resolve *r);
int kme_resolve_request_from_json(const char *body, size_t len, kme_resolve *out, etsi_problem *p);
char *kme_resolve_response_to_json(const kme_resolve *r);
int kme_resolve_response_from_json(const char *body, size_t len, kme_resolve *inout, etsi_problem *p);
void kme_resolve_clear(kme_resolve *r);

/* POST /kme/v1/claimed: stock keys handed to their master at these times;
 * the KME holding them (dest; empty: the callee) lets each expire
 * key_ttl_seconds after. A callee that is not dest passes it on along its
 * route. JSON: {"claims": [[key_ID, unix s]...], "dest": KME_ID (optional)}. */
typedef struct {
    char dest[ETSI_ID_MAX + 1];
    size_t count;
    char (*key_ids)[UUID_STR_LEN + 1];
    int64_t *at;
} kme_claimed;
char *kme_claimed_to_json(const kme_claimed *c);
int kme_claimed_from_json(const char *body, size_t len, kme_claimed *out, etsi_problem *p);
void kme_claimed_clear(kme_claimed *c);

/* POST /kme/v1/grant: the caller gives the callee whole blocks of their link
 * that it owned, unused (request {"seqs": [seq...]}, 1 to KME_MAX_RANGES
 * distinct); the callee answers which it took ({"accepted": [seq...]}, a
 * subset of the request). */
typedef struct {
    size_t count;
    uint64_t *seqs;
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
