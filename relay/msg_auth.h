/* The one-time MAC of the inter-KME requests besides the relay hop (verify,
 * reserve, resolve, claimed, grant, link_ids) and the tag of their answers, on the
 * primitives of relay/link_mac.h: TLS says which neighbour is calling; the
 * MAC says that the message is the one that neighbour's KME made, for whoever
 * holds its TLS key but not the link key.
 *
 * Request. Inside the commit that makes the message, the sender carves from
 * link key it owns on the link 32 bytes of MAC key and, when the answer is to
 * be tagged, 32 bytes of answer key (one lb_allocate: no byte is used twice,
 * invariant I1), records their ranges in the message's kme_auth and tags its
 * canonical encoding:
 *   verify:  "qkd-kme-verify-v1" | txn_id | u64 timeout_ms | u32 n, (u64 seq, 16-byte tag)
 *   reserve: "qkd-kme-reserve-v1" | master | u32 n, slaves | u64 size | u64 expires |
 *            u32 n, (key_ID, ranges of the key)
 *   resolve: "qkd-kme-resolve-v1" | ranges | u32 n, (key_ID, u64 expires, u32 ranges)
 *   claimed: "qkd-kme-claimed-v1" | dest | u32 n, (key_ID, u64 at)
 *   grant:   "qkd-kme-grant-v1" | u32 n, u64 seqs
 *   link_ids: "qkd-kme-link-ids-v1" | u64 seq | u64 size | u32 n, key_IDs
 * each followed by the MAC-key ranges and the answer-key ranges (u32 n, then
 * (u64 seq, u32 offset, u32 length) each; strings and bytes length-prefixed,
 * relay/link_mac.h). The receiver checks the tag before it acts, in a read
 * transaction, reading its copies of both keys without spending them
 * (auth_check); a request that does not authenticate changes nothing. The
 * commit that carries the request's effect marks both sets of ranges used
 * (auth_take). An authentic request refused for another reason has its
 * ranges taken in a commit of their own (auth_refuse) so that the refusal
 * can be tagged.
 *
 * Answer. The receiver tags its answer with the answer key:
 *   Poly1305(answer key, "qkd-kme-answer-v1" | op | the request's tag |
 *            u32 HTTP status | message | content)
 * where message is the "message" of an ack or a refusal ("" for the 200
 * answers of verify, resolve and grant) and content that of those answers:
 *   verify: txn_id | u32 n, (u64 seq, u32 verdict); resolve: u32 n, u8 used
 *   each, u32 n, u8 withdrawn each (in the order asked); grant: u32 n, u64 accepted seqs;
 *   link_ids: u64 seq | u32 n, key_IDs | u64 next_seq; anything else: nothing.
 * The sender acts on an answer only when its tag verifies; an answer without
 * a good tag counts as no answer. */
#ifndef RELAY_MSG_AUTH_H
#define RELAY_MSG_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include "api/kme_link_ids.h"
#include "api/kme_msgs.h"
#include "relay/link_mac.h"
#include "relay/peer_client.h"
#include "runtime/http_server.h"
#include "store/link_blocks.h"

enum auth_kind { AUTH_VERIFY, AUTH_RESERVE, AUTH_RESOLVE, AUTH_CLAIMED, AUTH_GRANT, AUTH_LINK_IDS };

/* The key an answer is tagged with: held by the sender of a request until its
 * answer came, and by the receiver until it tagged the answer. */
typedef struct {
    enum auth_kind kind;
    int set;                        /* key holds a key */
    uint8_t req_tag[KME_TAG_BYTES]; /* the request's tag */
    unsigned char key[LINK_MAC_KEY_BYTES];
} auth_answer_key;

/* Wipes the key (set 0). */
void auth_answer_key_wipe(auth_answer_key *k);

/* The kme_auth of msg, a kme_verify_request, kme_reserve_request,
 * kme_resolve, kme_claimed, kme_grant or kme_link_ids as kind says. */
kme_auth *auth_of(enum auth_kind kind, void *msg);
const kme_auth *auth_of_const(enum auth_kind kind, const void *msg);

/* The canonical bytes of a request (malloc'ed: wipe and free). 0, or -1. */
int auth_canonical_bytes(enum auth_kind kind, const void *msg, unsigned char **buf, size_t *len);

/* Sender, inside its write transaction, once msg is complete: carves the MAC
 * key (and, when answer is not NULL, the answer key into it) from link key
 * owned on link and tags msg. LM_OK; LM_SHORT (nothing changed); otherwise
 * the caller aborts the transaction. On failure msg's kme_auth and answer are
 * wiped. */
int auth_seal_from_link(kme_store *s, MDB_txn *txn, lb_link *link, enum auth_kind kind, void *msg,
                        auth_answer_key *answer);

/* Receiver, read only (a read transaction will do): reads the MAC key and
 * answer key of msg from its copy of the link key, without spending them, and
 * checks the tag. LM_OK (answer, when not NULL, then holds the answer key if
 * the request names one), LM_MALFORMED (no MAC), LM_BAD_TAG, LM_INVALID,
 * LM_REUSED or LM_FAILED; nothing is written. */
int auth_check_from_link(kme_store *s, MDB_txn *txn, const lb_link *link, enum auth_kind kind, const void *msg,
                         auth_answer_key *answer);
/* The same in a read transaction of its own. */
int auth_check(kme_store *s, const lb_link *link, enum auth_kind kind, const void *msg, auth_answer_key *answer);

/* Receiver: the refusal of a request auth_check did not pass (rc), named
 * after its operation; logged. */
void auth_check_error(http_response *resp, int rc, enum auth_kind kind, const char *peer_id);

/* Receiver, inside the commit of the request's effect: marks the MAC-key and
 * answer-key ranges used. LM_OK, LM_INVALID, LM_REUSED or LM_FAILED (abort). */
int auth_take(kme_store *s, MDB_txn *txn, const lb_link *link, enum auth_kind kind, const void *msg);

/* An authentic request refused for another reason (resp holds the refusal):
 * takes its ranges in a commit of their own and tags resp. 0; -1 when they
 * could not be taken (resp is then left untagged). */
int auth_refuse(kme_store *s, const lb_link *link, enum auth_kind kind, const void *msg, const auth_answer_key *k,
                http_response *resp);

/* The tag of an answer with this status, message and content (a
 * kme_verify_response, kme_resolve, kme_grant or kme_link_ids for the 200
 * answers of verify, resolve, grant and link_ids; NULL otherwise). 0, or -1. */
int auth_answer_tag(const auth_answer_key *k, long status, const char *message, const void *content,
                    uint8_t tag[KME_TAG_BYTES]);

/* 1 when tag (has_tag set) is the tag of that answer under k. */
int auth_answer_ok(const auth_answer_key *k, long status, const char *message, const void *content, int has_tag,
                   const uint8_t tag[KME_TAG_BYTES]);

/* Receiver: tags the ack or refusal in resp (its status and the message of
 * its body). 0, or -1 (resp unchanged). */
int auth_tag_response(const auth_answer_key *k, http_response *resp);

/* Sender: 1 when reply is an ack or a refusal tagged with k. */
int auth_reply_ok(const auth_answer_key *k, const peer_reply *reply);

/* Receiver: whether a request without a MAC from the neighbour on link may
 * be taken, in txn. Only while this end counts the neighbour's free owned
 * key below what one MAC needs. That count never falls short of the truth
 * (key the neighbour spent in a message that never arrived still counts as
 * its own here), so whoever holds the neighbour's TLS key but not the link
 * key cannot pass for a neighbour without key once it has some. With
 * also_when_self_short, also while this end owns too little itself: when
 * both ends ran dry and such a lost message left this end's count too high,
 * the link must still be able to start again. */
int auth_untagged_ok(kme_store *s, MDB_txn *txn, const lb_link *link, int also_when_self_short);

#endif
