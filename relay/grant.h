/* The grant message (docs/ARCHITECTURE.md, life of a key, step 3): owns the rebalancing of
 * link block ownership between the two ends of a link. The end with much
 * more owned free key gives whole unused blocks to the other over
 * POST /kme/v1/grant.
 *
 * The grantor commits first: the blocks become the peer's, marked pending
 * (lb_meta.granted, kept across restarts). The grantee takes in one commit
 * the blocks it can (verified, owned by the grantor, unused beyond the
 * verification bytes; blocks it owns already count as taken) and answers
 * which. The grantor then clears the mark of the accepted blocks and takes
 * the refused ones back. Without an answer the blocks stay pending and the
 * same grant is sent again before any new one. At no time may both ends
 * allocate from one block. */
#ifndef RELAY_GRANT_H
#define RELAY_GRANT_H

#include <stdint.h>
#include "relay/node.h"
#include "runtime/http_server.h"

#define GRANT_MAX_BLOCKS 1024         /* blocks in one grant */
#define GRANT_INTERVAL_MS 2000        /* at most one grant attempt per link this often */
#define GRANT_LOW_BYTES (1024 * 1024) /* the neighbour is short below this */

/* The policy: how many free bytes this end should give when it owns
 * self_free and the neighbour advertises peer_free; 0: none. Grants happen
 * when self_free exceeds 4 x peer_free and peer_free is below GRANT_LOW_BYTES
 * or a quarter of both together; the amount is half the difference. */
uint64_t grant_policy_bytes(uint64_t self_free, uint64_t peer_free);

/* One grant as the grantor's store operations see it. */
typedef struct {
    lb_link *link;
    uint64_t want_bytes; /* in: size of a new grant; 0: only resume a pending one */
    int retry;           /* out: the blocks are a pending grant to send again */
    size_t count;        /* out: blocks in the grant */
    uint64_t bytes;      /* out: their free bytes */
    uint64_t seqs[GRANT_MAX_BLOCKS];
    uint8_t accepted[GRANT_MAX_BLOCKS]; /* in to grant_settle_op: the grantee's answer */
    uint64_t confirmed_bytes;           /* out of grant_settle_op */
} grant_batch;

/* store_op: the grantor's first commit. Lists the pending grant if there is
 * one (retry set, nothing new given); otherwise gives away grantable blocks
 * worth at most want_bytes (count 0: nothing to give). */
int grant_start_op(kme_store *s, MDB_txn *txn, void *batch);
/* store_op: the grantor's second commit, with accepted[] filled. */
int grant_settle_op(kme_store *s, MDB_txn *txn, void *batch);

/* Link worker: one round of the policy and protocol on link l. Returns the
 * bytes the neighbour confirmed, 0 when there was nothing to do, -1 on
 * failure (a grant left pending is sent again next time). Call from the
 * link's own worker only. */
long grant_once(relay_node *k, relay_link *l);

/* KME port: POST /kme/v1/grant from the neighbour on link l (commits; call
 * off the event threads). */
void grant_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

#endif
