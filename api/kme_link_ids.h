/* POST /kme/v1/link_ids (api/kme.yaml): the ID handshake of a link fed by
 * ETSI GS QKD 014 devices. The end whose KME ID sorts first took keys from
 * its device with enc_keys and names them to the other end, with the seq of
 * the one link block they make and the size of each key:
 *   {"seq": N, "size": BITS, "key_IDs": ["uuid", ...]}
 * The other end fetches them from its own device with dec_keys, stores the
 * keys it got (in the order named) as block seq, and answers which those
 * are, with its ingest mark after the commit (one past the highest seq it
 * ever stored on the link):
 *   {"seq": N, "key_IDs": ["uuid", ...], "next_seq": M}
 * An empty key_IDs: nothing was stored. No key bytes travel.
 *
 * Like the other inter-KME requests, the request carries the one-time MAC
 * of link key its sender owns ("mac_key", "answer_key", "tag": kme_auth,
 * relay/msg_auth.h), and the answer to such a request the answer key's
 * "tag"; only a link whose initiator owns no key yet sends it without. */
#ifndef API_KME_LINK_IDS_H
#define API_KME_LINK_IDS_H

#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"
#include "api/kme_msgs.h"

#define KME_MAX_LINK_IDS 1024

typedef struct {
    uint64_t seq;
    long size_bits;                /* request only */
    size_t count;                  /* key_IDs */
    char (*ids)[UUID_STR_LEN + 1]; /* canonical lower-case */
    uint64_t next_seq;             /* answer only */
    kme_auth auth;                 /* request only; key_count 0: no MAC */
    int has_tag;                   /* answer only: "tag" present */
    uint8_t tag[KME_TAG_BYTES];
} kme_link_ids;

/* Adds a key_ID (canonicalised; at most KME_MAX_LINK_IDS). 0, or -1. */
int kme_link_ids_add(kme_link_ids *m, const char *id);
void kme_link_ids_clear(kme_link_ids *m);

char *kme_link_ids_request_to_json(const kme_link_ids *m);
/* Strict: 1..KME_MAX_LINK_IDS distinct UUIDs, size 8..65536 and a multiple
 * of 8, seq a non-negative integer, the MAC members whole (with answer_key)
 * or absent. 0, or -1 with *p. */
int kme_link_ids_request_from_json(const char *body, size_t len, kme_link_ids *out, etsi_problem *p);
char *kme_link_ids_response_to_json(const kme_link_ids *m);
/* Refuses an answer for another seq, whose key_IDs are not a subsequence of
 * the request's (each named once, in the request's order), or whose tag is
 * malformed. */
int kme_link_ids_response_from_json(const char *body, size_t len, const kme_link_ids *request, kme_link_ids *out,
                                    etsi_problem *p);

#endif
