/* Link key blocks in the store: ingest, the key-caching verification states,
 * ownership, and the byte ranges used from each block. All functions work
 * inside a write (or read) transaction the caller owns.
 *
 * A block's first LB_MAC_BYTES bytes are consumed by its verification tag
 * (a one-time Poly1305 key and a one-time pad for the tag); key material is
 * carved from the rest. Each verified block belongs to one end of the link
 * (first by the parity rule, later moved by grants of whole unused blocks);
 * an end allocates only from blocks it owns and records, for blocks the peer
 * owns, the ranges the peer reports using. No range is ever used twice.
 *
 * A block with nothing left to use at this end (verified and every byte
 * used, or discarded) is erased, record and bytes, in the transaction that
 * spends it. Per link, the store keeps counters (the stock below) and an
 * ingest mark, one past the highest seq ever stored: a seq below the mark
 * with no record is spent, and is refused as such (never stored again, never
 * verified, never used). */
#ifndef STORE_LINK_BLOCKS_H
#define STORE_LINK_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include "api/kme_msgs.h"
#include "store/store.h"

#define LB_MAC_BYTES 48
#define LB_TAG_BYTES 16
#define LB_MAX_EXTENTS 64
#define LB_MAX_RANGES 4096

enum lb_state { LB_UNVERIFIED = 0, LB_LOCKED = 1, LB_VERIFIED = 2, LB_DISCARDED = 3 };
enum lb_owner { LB_OWNER_NONE = 0, LB_OWNER_SELF = 1, LB_OWNER_PEER = 2 };
enum lb_verdict { LB_MATCH = 0, LB_MISMATCH = 1, LB_MISSING = 2 };

enum {
    LB_OK = 0,
    LB_EXISTS = 1,  /* ingest: that seq is already known */
    LB_SHORT = 2,   /* not enough owned verified key */
    LB_INVALID = 3, /* a range is not in a verified block of the right owner */
    LB_REUSED = 4,  /* a range overlaps bytes already used */
    LB_DB = 5,      /* storage failure */
    LB_LATER = 6,   /* grant: a block is not verified at this end yet */
    LB_SPENT = 7,   /* ingest: that seq was used up or discarded and erased (or passed over) */
};

typedef kme_range lb_range;

typedef struct {
    uint32_t start, end;
} lb_extent;

typedef struct {
    uint8_t state, owner;
    uint8_t granted; /* given to the peer by a grant it has not confirmed yet (owner is PEER) */
    uint32_t size;
    uint64_t txn_hash; /* verification transaction holding the lock */
    int64_t lock_deadline_ms;
    int64_t ingested_ms;
    uint8_t tag[LB_TAG_BYTES];
    uint32_t nused;
    lb_extent used[LB_MAX_EXTENTS];
} lb_meta;

/* Per-link allocation cursor kept by the single writer (a lower bound on the
 * first owned block with free bytes; only ever a hint). */
typedef struct {
    char self_id[65], peer_id[65];
    uint64_t alloc_hint;
    uint64_t verify_hint; /* lower bound on the first unverified or locked block */
    /* The store was restored from a backup and the peer's view of the link
     * is not adopted yet (store/link_resync.h): nothing is allocated or
     * granted, lest a range used since the backup go out again. */
    int frozen;
} lb_link;

void lb_link_init(lb_link *l, const char *self_id, const char *peer_id);

/* The key of a block in block_meta and block_data: peer KME ID | 0 | be64 seq.
 * buf must hold ETSI_ID_MAX + 9 bytes; returns the key's length. */
size_t lb_block_key(unsigned char *buf, const char *peer_id, uint64_t seq);

/* Which end owns verified block seq. */
enum lb_owner lb_owner_of(const lb_link *l, uint64_t seq);

/* Stores a new block (state unverified, tag computed). LB_EXISTS if known,
 * LB_SPENT if below the ingest mark. */
int lb_ingest(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, const unsigned char *data, size_t len);

int lb_get_meta(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, lb_meta *out);
/* Writes a block's record and keeps the link's counters; a block left with
 * nothing to use (block_spent) is erased instead, record and bytes. */
int lb_put_meta(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq, const lb_meta *m);
/* 1 when seq has no record but lies below the ingest mark: used up or discarded and erased. */
int lb_is_spent(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t seq);
/* Calls fn for every block of the link that has a record, lowest seq
 * first, until it returns non-zero. 0, or an LMDB error. */
int lb_for_each_block(kme_store *s, MDB_txn *txn, const char *peer_id, int (*fn)(uint64_t seq, lb_meta *m, void *arg),
                      void *arg);
/* Raises the link's ingest mark to mark (never lowers it). */
int lb_raise_ingest_mark(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t mark);
/* One past the highest seq ever stored for the link (0: none yet). */
int lb_ingest_mark(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t *mark);
/* Write transaction: stores the link's counters if it has none yet (a store
 * from before they existed) and erases its spent blocks left by such a
 * store. Returns how many it erased, or -1. */
int lb_erase_spent(kme_store *s, MDB_txn *txn, const char *peer_id);

/* Initiator: locks up to max unverified (or stale-locked) blocks for a
 * verification transaction; fills seqs/tags; returns how many. */
int lb_lock_for_verify(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t txn_hash, int64_t now_ms, int64_t deadline_ms,
                       size_t max, uint64_t *seqs, uint8_t (*tags)[LB_TAG_BYTES]);
/* Initiator: applies the peer's verdict for one block of transaction txn_hash. */
int lb_apply_verdict(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, uint64_t txn_hash, enum lb_verdict v);
/* Responder: compares the peer's tag with ours and settles the block: a
 * match verifies it; a mismatch discards it when may_discard is set, and
 * otherwise leaves it as it is (answered LB_MISMATCH all the same). A block
 * erased here is answered LB_MISMATCH, one never stored LB_MISSING. */
int lb_respond_verify(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t seq, const uint8_t tag[LB_TAG_BYTES],
                      int may_discard, enum lb_verdict *out);
/* Discards unverified blocks older than max_age_ms whose peer never had them. */
int lb_discard_stale(kme_store *s, MDB_txn *txn, const lb_link *l, int64_t now_ms, int64_t max_age_ms);

/* Owner side: carves nbytes from owned verified blocks; out gets the bytes,
 * ranges the pieces. LB_SHORT when there is not enough (nothing changes). */
int lb_allocate(kme_store *s, MDB_txn *txn, lb_link *l, size_t nbytes, unsigned char *out, lb_range *ranges,
                size_t max_ranges, size_t *nranges);
/* Owner side: gives ranges back (the peer provably never recorded them). */
int lb_release(kme_store *s, MDB_txn *txn, lb_link *l, const lb_range *ranges, size_t nranges);
/* Non-owner side: records ranges the peer used from blocks it owns and copies
 * their bytes to out. LB_INVALID / LB_REUSED (also for an erased block)
 * refuse the whole call. */
int lb_take_peer_ranges(kme_store *s, MDB_txn *txn, const lb_link *l, const lb_range *ranges, size_t nranges,
                        unsigned char *out);

/* Grants: ownership rebalanced by whole blocks. A block is grantable when it
 * is verified, owned here, not pending and unused beyond its verification
 * bytes. The grantor commits first (blocks become the peer's, pending), the
 * grantee takes them, then the grantor settles the answer. */

/* Grantor: gives away grantable blocks worth at most max_bytes free bytes,
 * lowest seq first (at most max blocks); each becomes owned by the peer with
 * granted set. Fills seqs, *n and *bytes (their free bytes). */
int lb_grant_pick(kme_store *s, MDB_txn *txn, lb_link *l, uint64_t max_bytes, uint64_t *seqs, size_t max, size_t *n,
                  uint64_t *bytes);
/* Grantor: blocks given away and not yet confirmed (at most max), with their free bytes. */
int lb_grant_pending(kme_store *s, MDB_txn *txn, const lb_link *l, uint64_t *seqs, size_t max, size_t *n,
                     uint64_t *bytes);
/* Grantee: takes each listed block that is verified, owned by the peer and
 * unused beyond its verification bytes; a block already owned here counts as
 * taken (a grant sent again). accepted[i] is 1 for each taken; *taken_bytes
 * (may be NULL): free bytes of the blocks this call made owned here.
 * LB_LATER (the caller aborts) when a listed block is still unverified or
 * locked here: refusing it would be final, and an older copy of the request
 * arriving once it is verified could then give it two owners. */
int lb_grant_accept(kme_store *s, MDB_txn *txn, lb_link *l, const uint64_t *seqs, size_t n, uint8_t *accepted,
                    uint64_t *taken_bytes);
/* Grantor: settles a pending grant with the grantee's answer. Accepted blocks
 * stay the peer's (granted cleared), refused ones come back to this end.
 * Blocks no longer pending are left alone. *confirmed_bytes (may be NULL):
 * free bytes of the blocks whose grant this confirmed. */
int lb_grant_settle(kme_store *s, MDB_txn *txn, lb_link *l, const uint64_t *seqs, size_t n, const uint8_t *accepted,
                    uint64_t *confirmed_bytes);

/* Free bytes by owner and state, and the blocks ever verified and ever
 * discarded on the link; read from the link's counters (no scan). */
typedef struct {
    uint64_t owned_free, peer_free, unverified, verified_blocks, discarded_blocks;
} lb_stock;
int lb_get_stock(kme_store *s, MDB_txn *txn, const lb_link *l, lb_stock *out);
/* The same counted from the blocks stored, one by one (for checks): the free
 * bytes, and the verified blocks still stored (discarded ones are erased). */
int lb_recount_stock(kme_store *s, MDB_txn *txn, const char *peer_id, lb_stock *out);
/* Copies the bytes of ranges of the link to peer_id into out, in order,
 * whatever their state (the caller checked it). LB_OK or LB_DB. */
int lb_read_ranges(kme_store *s, MDB_txn *txn, const char *peer_id, const lb_range *ranges, size_t n,
                   unsigned char *out);

/* Extent sets (sorted, non-overlapping, merged). */
int lb_extents_overlap(const lb_meta *m, uint32_t start, uint32_t end);
int lb_extents_add(lb_meta *m, uint32_t start, uint32_t end);
void lb_extents_remove(lb_meta *m, uint32_t start, uint32_t end);
uint32_t lb_extents_used_bytes(const lb_meta *m);

/* The verification tag of a block: Poly1305 over seq and bytes [48, len)
 * keyed with bytes [0, 32), then one-time padded with bytes [32, 48). */
int lb_compute_tag(uint64_t seq, const unsigned char *data, size_t len, uint8_t tag[LB_TAG_BYTES]);

#endif
