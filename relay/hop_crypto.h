/* The cryptography of one relay hop X -> Y (docs/ARCHITECTURE.md, life of a key, step 5):
 * X one-time-pads the relayed keys with fresh link key it owns on link X-Y
 * and authenticates the whole message (api/kme_relay.h) with a one-time
 * Poly1305 key carved from the same link; Y checks the tag before anything
 * else, then removes the pad with its copy of the link key.
 *
 * The sender carves pad and MAC key with lb_allocate; the receiver reads its
 * copies with link_mac_read (read only) and marks them used with
 * lb_take_peer_ranges only once the tag has verified, so a forged or
 * damaged message spends no link key at the receiver. hop_seal_from_link and
 * hop_open_from_link do exactly that inside the caller's write transaction;
 * a KME receiving a hop checks the tag first in a read transaction
 * (hop_check_from_link), then takes the ranges in the commit that uses the
 * keys (hop_take_checked). */
#ifndef RELAY_HOP_CRYPTO_H
#define RELAY_HOP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "api/kme_relay.h"
#include "relay/link_mac.h"
#include "store/link_blocks.h"

#define HOP_MAC_KEY_BYTES KME_RELAY_MAC_KEY_BYTES /* 32, LINK_MAC_KEY_BYTES */
#define HOP_TAG_BYTES KME_RELAY_TAG_BYTES         /* 16, LINK_MAC_TAG_BYTES */

/* The results of relay/link_mac.h. */
enum {
    HOP_OK = LM_OK,
    HOP_BAD_TAG = LM_BAD_TAG,     /* the tag does not authenticate the message: nothing else was done */
    HOP_MALFORMED = LM_MALFORMED, /* the message breaks a rule of kme_relay_check, or a length does not match */
    HOP_INVALID = LM_INVALID,     /* a range is not in a verified block the sending end owns */
    HOP_REUSED = LM_REUSED,       /* a range overlaps link key already used */
    HOP_SHORT = LM_SHORT,         /* sender: not enough owned link key */
    HOP_FAILED = LM_FAILED,       /* storage or crypto library failure */
};

/* The MAC input: a canonical encoding of every field but the tag, in a fixed
 * order, each variable-length field prefixed by its length (big endian):
 *   "qkd-kme-relay-v1" | relay_id | origin | dest | master |
 *   u32 slave_count, slaves | u64 size_bits | u64 expires | u32 hops_left |
 *   u32 key_count, (key_ID | ct) per key |
 *   u32 pad_count, (u64 seq, u32 offset, u32 length) per range |
 *   u32 mac_key_count, ranges likewise
 * where a string or byte field is u32 length then its bytes. *buf is
 * malloc'ed; wipe (OPENSSL_cleanse) and free it. 0, or -1 (nothing allocated). */
int hop_canonical_bytes(const kme_relay_msg *msg, unsigned char **buf, size_t *len);

/* Sender: ct = keys_plain XOR pad (the pad consumed in order across the keys)
 * and tag = Poly1305(mac_key, canonical bytes). keys_plain and pad are
 * pad_len = kme_relay_payload_bytes(msg) bytes; msg must pass
 * kme_relay_check apart from the tag. HOP_OK, HOP_MALFORMED or HOP_FAILED
 * (then the ciphertexts and the tag are wiped). */
int hop_seal(kme_relay_msg *msg, const unsigned char *keys_plain, const unsigned char *pad, size_t pad_len,
             const unsigned char mac_key[HOP_MAC_KEY_BYTES]);

/* Receiver: checks the tag (in constant time) first; on HOP_BAD_TAG,
 * HOP_MALFORMED or HOP_FAILED out_keys is untouched. On HOP_OK out_keys
 * (pad_len bytes) holds the keys, key i at i * size_bits/8. */
int hop_open(const kme_relay_msg *msg, const unsigned char *pad, size_t pad_len,
             const unsigned char mac_key[HOP_MAC_KEY_BYTES], unsigned char *out_keys);

/* Sender, inside the caller's write transaction: carves the MAC key and the
 * pad from blocks owned on link (lb_allocate), records their ranges in msg
 * (pad ranges at most msg->pad_cap, MAC-key ranges at most msg->mac_key_cap)
 * and seals. On any failure the caller must abort the transaction (the
 * ranges were marked used in it); msg's ranges, ciphertexts and tag are then
 * wiped. */
int hop_seal_from_link(kme_store *s, MDB_txn *txn, lb_link *link, kme_relay_msg *msg, const unsigned char *keys_plain,
                       size_t keys_len);

/* Receiver, read only (a read transaction will do): the checks of
 * hop_open_from_link, tag first, without spending anything. On HOP_OK
 * out_keys holds the keys; otherwise it is wiped. */
int hop_check_from_link(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg,
                        unsigned char *out_keys, size_t keys_len);

/* Receiver, inside the caller's write transaction: reads the MAC key and pad
 * (link_mac_read), opens the message and, only when the tag verified,
 * marks both sets of ranges used (lb_take_peer_ranges). keys_len must be
 * kme_relay_payload_bytes(msg). On any failure out_keys is untouched and the
 * caller aborts the transaction; a message that fails before its tag
 * verified (HOP_BAD_TAG, HOP_MALFORMED, HOP_INVALID, HOP_REUSED) has written
 * nothing in it. */
int hop_open_from_link(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg,
                       unsigned char *out_keys, size_t keys_len);

/* The ranges of msg, MAC-key ranges first then the pad's (*n of them):
 * malloc'ed, or NULL when out of memory. */
lb_range *hop_ranges(const kme_relay_msg *msg, size_t *n);

/* Receiver, inside the caller's write transaction, for a message whose tag
 * hop_check_from_link verified in an earlier (read) transaction: marks its
 * MAC-key and pad ranges used (lb_take_peer_ranges, which checks again that
 * each lies in a verified block of the peer's and overlaps nothing used), so
 * the keys recovered then stand without reading the link key a second time.
 * HOP_OK, HOP_INVALID, HOP_REUSED or HOP_FAILED; on failure the caller aborts
 * the transaction. */
int hop_take_checked(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg);

#endif
