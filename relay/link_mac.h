/* One-time MACs keyed with link key: the primitives the relay hop
 * (relay/hop_crypto.h) and every other authenticated inter-KME message
 * (relay/msg_auth.h) share.
 *
 * A sender carves a fresh 32-byte Poly1305 key from link key it owns on the
 * link (lb_allocate: those bytes serve nothing else, invariant I1) and tags a
 * canonical encoding of its message. The receiver reads its copy of the same
 * bytes without spending them (link_mac_read), checks the tag before it acts,
 * and marks them used (link_mac_take) in the commit that carries the
 * message's effect. Without the link key nobody can make a tag the receiver
 * accepts; a key is never used for two messages.
 *
 * Canonical encodings are written with the link_mac_writer: fixed-width
 * integers big endian, each string or byte field prefixed by its u32 length.
 * The same writer only counts, fills a buffer, or feeds the MAC as the
 * bytes are produced. */
#ifndef RELAY_LINK_MAC_H
#define RELAY_LINK_MAC_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "api/kme_msgs.h"
#include "store/link_blocks.h"

#define LINK_MAC_KEY_BYTES 32 /* one-time Poly1305 key */
#define LINK_MAC_TAG_BYTES 16

/* Results shared by the relay hop (HOP_*) and the other messages. */
enum {
    LM_OK = 0,
    LM_BAD_TAG = 1,   /* the tag does not authenticate the message: nothing else was done */
    LM_MALFORMED = 2, /* the message breaks a structural rule, or a length does not match */
    LM_INVALID = 3,   /* a range is not in a verified block the sending end owns */
    LM_REUSED = 4,    /* a range overlaps link key already used */
    LM_SHORT = 5,     /* sender: not enough owned link key */
    LM_FAILED = 6,    /* storage or crypto library failure */
};

/* The LM_* result of an LB_* one. */
int link_mac_from_lb(int lb_rc);

/* Appends to p, or feeds the MAC ctx, or only counts when both are NULL. */
typedef struct {
    unsigned char *p;
    EVP_MAC_CTX *ctx;
    size_t n;
    int failed; /* an update of ctx failed */
} link_mac_writer;

void link_mac_put(link_mac_writer *w, const void *data, size_t n);
void link_mac_put_u32(link_mac_writer *w, uint32_t v);
void link_mac_put_u64(link_mac_writer *w, uint64_t v);
void link_mac_put_bytes(link_mac_writer *w, const void *data, size_t n); /* u32 length, bytes */
void link_mac_put_str(link_mac_writer *w, const char *s);
void link_mac_put_ranges(link_mac_writer *w, const kme_range *r,
                         size_t n); /* u32 n, (u64 seq, u32 offset, u32 length) */

/* Writes the canonical encoding of msg. */
typedef void (*link_mac_encoder)(link_mac_writer *w, const void *msg);

/* The canonical bytes of msg: *buf is malloc'ed (wipe and free it). 0, or -1. */
int link_mac_bytes(link_mac_encoder enc, const void *msg, unsigned char **buf, size_t *len);

/* tag = Poly1305(key, canonical bytes of msg), fed as they are produced. 0, or
 * -1 (then tag is wiped). */
int link_mac_tag(const unsigned char key[LINK_MAC_KEY_BYTES], link_mac_encoder enc, const void *msg,
                 unsigned char tag[LINK_MAC_TAG_BYTES]);

/* Compares tag with the one msg should carry under key, in constant time:
 * LM_OK, LM_BAD_TAG or LM_FAILED. */
int link_mac_check(const unsigned char key[LINK_MAC_KEY_BYTES], link_mac_encoder enc, const void *msg,
                   const unsigned char tag[LINK_MAC_TAG_BYTES]);

/* Receiver, read only (a read transaction will do): copies the bytes of
 * ranges, in order, to out without marking them used. Every range must lie
 * in a verified block owned by the peer of link, within the block, not
 * overlap bytes already used there nor another of the ranges.
 * Returns LB_OK, LB_INVALID, LB_REUSED or LB_DB like lb_take_peer_ranges;
 * on failure out is wiped. */
int link_mac_read(kme_store *s, MDB_txn *txn, const lb_link *link, const lb_range *ranges, size_t n,
                  unsigned char *out);

/* Sender, inside its write transaction: carves nbytes of link key it owns
 * (lb_allocate) into out, the ranges (at most cap) into ranges. LM_OK,
 * LM_SHORT (nothing changed) or LM_FAILED (abort the transaction). */
int link_mac_carve(kme_store *s, MDB_txn *txn, lb_link *link, size_t nbytes, unsigned char *out, kme_range *ranges,
                   size_t cap, size_t *n);

/* Receiver, inside the commit of the message's effect: marks ranges used
 * (lb_take_peer_ranges, which checks again that each lies in a verified
 * block of the peer's and overlaps nothing used). LM_OK, LM_INVALID,
 * LM_REUSED or LM_FAILED. */
int link_mac_take(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_range *ranges, size_t n);

#endif
