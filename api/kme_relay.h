/* The hop message of the key relay, POST /kme/v1/relay (docs/ARCHITECTURE.md, life of a
 * key, step 5): one encode/decode shared by the sending and the receiving KME
 * of a hop, and the structural checks both ends apply.
 *
 * Binary form (Content-Type application/octet-stream), what KMEs send:
 *   u32 H (big endian) | head: H bytes of JSON | ct | tag (16 bytes)
 * head = {"relay_id": uuid, "origin": KME_ID, "dest": KME_ID, "master": SAE_ID,
 *         "slaves": [SAE_ID...], "size": bits, "expires": unix s, "hops_left": n,
 *         "key_IDs": [uuid...], "pad": [[seq, offset, length]...],
 *         "mac_key": [[seq, offset, length]...]}
 * and ct the key_count * size/8 bytes of ciphertext, key i at i * size/8.
 * The head carries no key material, so the receiver parses a few kilobytes
 * of JSON whatever the size of the keys.
 *
 * JSON form (application/json), also accepted: the members of the head with
 * "keys": [{"key_ID": uuid, "ct": base64}] in place of "key_IDs", and
 * "tag": hex.
 *
 * The ciphertexts are the relayed keys one-time padded with link key; the
 * pad ranges, in order, cover exactly key_count * size/8 bytes and the MAC-key
 * ranges exactly KME_RELAY_MAC_KEY_BYTES bytes of the same link, no two
 * ranges overlapping. The tag authenticates every other field
 * (relay/hop_crypto.h); it is the same in both forms. */
#ifndef API_KME_RELAY_H
#define API_KME_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include "api/kme_msgs.h"

#define KME_RELAY_MAX_KEYS 1024
#define KME_RELAY_MAX_SIZE_BITS (1L << 24) /* the largest key size relayed */
#define KME_RELAY_CHUNK_BYTES (4u << 20)   /* key bytes in one relay message at most (one larger key alone) */
/* The largest body the KME port reads: the largest relay message in its
 * JSON form (the chunk's key bytes in base64) with room for its head (key
 * IDs, slaves, pad and MAC key ranges). Every other inter-KME message is
 * smaller. */
#define KME_PORT_BODY_MAX ((size_t)KME_RELAY_CHUNK_BYTES / 3 * 4 + (2u << 20))
#define KME_RELAY_MAC_KEY_BYTES 32          /* one-time Poly1305 key */
#define KME_RELAY_TAG_BYTES KME_TAG_BYTES   /* 16 */
#define KME_RELAY_MAX_RANGES KME_MAX_RANGES /* pad and mac_key ranges together */
/* The most links a relayed key may cross by the wire format: a loop-free path
 * through every KME a routing database holds (ROUTING_MAX_KMES, 256). The
 * origin starts hops_left at the number of KMEs it knows, at most the
 * site's relay_max_hops (relay/relay.c). */
#define KME_RELAY_MAX_HOPS 255
#define KME_RELAY_WIRE_TYPE "application/octet-stream" /* Content-Type of the binary form */
#define KME_RELAY_WIRE_PREFIX 4                        /* bytes of the head length before the head */

typedef struct {
    char relay_id[UUID_STR_LEN + 1];
    char origin[ETSI_ID_MAX + 1]; /* the master's KME */
    char dest[ETSI_ID_MAX + 1];   /* the slaves' KME */
    char master[ETSI_ID_MAX + 1];
    size_t slave_count;
    char slaves[KME_MAX_SLAVES][ETSI_ID_MAX + 1];
    long size_bits;
    int64_t expires;
    uint32_t hops_left; /* links the key may still cross, this one included (1..KME_RELAY_MAX_HOPS) */
    size_t key_count;
    char (*key_ids)[UUID_STR_LEN + 1];
    unsigned char *ct; /* key_count * size_bits/8 bytes; key i at ct + i * size_bits/8 */
    size_t pad_count, pad_cap;
    kme_range *pad;
    size_t mac_key_count, mac_key_cap;
    kme_range *mac_key;
    uint8_t tag[KME_RELAY_TAG_BYTES];
} kme_relay_msg;

/* Bytes of ciphertext (and of pad) the message carries: key_count * size/8. */
size_t kme_relay_payload_bytes(const kme_relay_msg *m);

/* Sender side: zeroes m and allocates key_count key IDs, a zeroed ciphertext
 * buffer for keys of size_bits, room for pad_cap pad ranges and mac_cap
 * MAC-key ranges (pad_count = mac_key_count = 0). 0, or -1 (nothing kept). */
int kme_relay_alloc(kme_relay_msg *m, size_t key_count, long size_bits, size_t pad_cap, size_t mac_cap);

/* Every structural rule of the message (IDs, bounds, distinct key IDs and
 * slaves, origin != dest, pad and MAC-key coverage, no overlapping ranges).
 * The tag is not checked here. 0, or -1 with *p set (p may be NULL). */
int kme_relay_check(const kme_relay_msg *m, etsi_problem *p);

/* NULL when the message breaks a rule of kme_relay_check. Free the text with
 * etsi_text_free. */
char *kme_relay_to_json(const kme_relay_msg *m);

/* The binary form: NULL when the message breaks a rule of kme_relay_check or
 * memory ran out. *len is set to its size; free it with free (wipe it first
 * like any buffer that held the ciphertexts). */
unsigned char *kme_relay_to_wire(const kme_relay_msg *m, size_t *len);

/* Strict, like kme_relay_from_json (below) for the head; besides, the head length
 * must leave exactly key_count * size/8 bytes of ciphertext and the tag. */
int kme_relay_from_wire(const unsigned char *body, size_t len, kme_relay_msg *out, etsi_problem *p);

/* Strict: unknown members, wrong types, out-of-bound values, bad base64 or hex,
 * ciphertexts not exactly size/8 bytes and every kme_relay_check rule are
 * refused with -1 and *p set (out is then empty). */
int kme_relay_from_json(const char *body, size_t len, kme_relay_msg *out, etsi_problem *p);

/* Wipes the ciphertexts and the tag and frees everything; m is left empty. */
void kme_relay_clear(kme_relay_msg *m);

/* 1 when no byte is named by two of the ranges of a and b together (ranges of
 * length 0 count as overlapping nothing); 0 otherwise or when out of memory. */
int kme_ranges_disjoint(const kme_range *a, size_t na, const kme_range *b, size_t nb);

#endif
