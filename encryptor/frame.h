/* The wire format between two encryptors: one TCP connection per client
 * connection, carrying in each direction a sequence of frames. This header
 * is the definition of the format; frame.c is its only encoder and decoder.
 *
 * Every frame starts with a fixed 28-byte header, all integers big-endian:
 *
 *   off size field
 *    0   4   magic      "QKE" followed by the version byte 0x01
 *    4   1   type       1 KEYS, 2 OPEN, 3 DATA, 4 FIN
 *    5   1   mode       1 one-time pad + Poly1305, 2 AES-256-GCM
 *    6   2   reserved   0
 *    8   8   seq        frame number in this direction: 0, 1, 2, ... (KEYS included)
 *   16   4   key_index  sealed frames: index of the key in the list of key_IDs
 *                       announced in this direction (0-based, across all KEYS
 *                       frames); KEYS: index given to its first key_ID
 *   20   4   offset     one-time pad: first byte of the key this frame uses;
 *                       AES-256-GCM: bytes already sealed under this key; KEYS: 0
 *   24   4   length     body bytes, at most FRAME_MAX_PAYLOAD
 *   28   length         body
 *    .   16  tag        sealed frames (OPEN, DATA, FIN) only
 *
 * KEYS  body: 1..FRAME_MAX_KEYS canonical lower-case UUID key_IDs, 36 bytes
 *       each, no separator. Announces the keys the sender will use next; it
 *       precedes every sealed frame that uses them. Not sealed: a tampered list
 *       makes the receiver fetch different keys, so the first frame sealed
 *       with them fails its tag.
 * OPEN  body: ciphertext of the destination "IP:PORT" or "[IPv6]:PORT"
 *       (0..FRAME_MAX_DEST bytes; empty: the receiver's configured address).
 *       Sent once, by the users side, as its first sealed frame.
 * DATA  body: 1..FRAME_MAX_PAYLOAD bytes of ciphertext.
 * FIN   body: empty. The sender's plaintext side reached end of stream; a
 *       ciphertext connection that ends without FIN was cut, not closed.
 *
 * Sealing (otp.c, gcm.c): the MAC or AEAD covers the 28 header bytes and the
 * body ciphertext. One-time pad: a frame of n body bytes consumes bytes
 * [offset, offset + 32 + n) of its key: the first 32 are the Poly1305 key,
 * the next n the pad. AES-256-GCM: the key is the whole 32-byte key_ID, the
 * nonce is 4 zero bytes followed by seq, the header is the additional data. */
#ifndef ENCRYPTOR_FRAME_H
#define ENCRYPTOR_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC "QKE\x01"
#define FRAME_HEADER_BYTES 28
#define FRAME_TAG_BYTES 16
#define FRAME_MAX_PAYLOAD 16384
#define FRAME_KEY_ID_BYTES 36
#define FRAME_MAX_KEYS 16
#define FRAME_MAX_DEST 64
#define FRAME_MAX_BYTES (FRAME_HEADER_BYTES + FRAME_MAX_PAYLOAD + FRAME_TAG_BYTES)

enum frame_type { FRAME_KEYS = 1, FRAME_OPEN = 2, FRAME_DATA = 3, FRAME_FIN = 4 };
enum frame_mode { FRAME_MODE_OTP = 1, FRAME_MODE_GCM = 2 };

typedef struct {
    uint8_t type;
    uint8_t mode;
    uint64_t seq;
    uint32_t key_index;
    uint32_t offset;
    uint32_t length;
} frame_header;

enum { FRAME_OK = 0, FRAME_NEED_MORE = 1, FRAME_BAD = -1 };

/* Tag bytes after the body of a frame of this type: 0 for KEYS, 16 otherwise. */
size_t frame_tag_bytes(uint8_t type);
/* Header + body + tag. */
size_t frame_wire_bytes(const frame_header *h);

/* FRAME_OK when h obeys every rule above; FRAME_BAD with *why set otherwise. */
int frame_header_check(const frame_header *h, const char **why);
/* Checks h, then writes its 28 bytes. FRAME_OK or FRAME_BAD. */
int frame_header_encode(const frame_header *h, unsigned char out[FRAME_HEADER_BYTES], const char **why);
/* Strict: wrong magic or version, unknown type or mode, non-zero reserved
 * bits and any length the type does not allow are FRAME_BAD. */
int frame_header_decode(const unsigned char in[FRAME_HEADER_BYTES], frame_header *h, const char **why);

/* A whole frame at the start of buf: FRAME_OK with *body, *tag (NULL for
 * KEYS) pointing into buf and *consumed set; FRAME_NEED_MORE when buf holds
 * only part of one; FRAME_BAD when the header is invalid. */
int frame_decode(const unsigned char *buf, size_t len, frame_header *h, const unsigned char **body,
                 const unsigned char **tag, size_t *consumed, const char **why);

/* KEYS body: n (1..FRAME_MAX_KEYS) canonical key_IDs into out
 * (n * FRAME_KEY_ID_BYTES bytes). FRAME_OK or FRAME_BAD. */
int frame_keys_encode(const char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t n, unsigned char *out, const char **why);
/* KEYS body back into NUL-terminated key_IDs; each must be a canonical
 * lower-case UUID. ids holds FRAME_MAX_KEYS. FRAME_OK or FRAME_BAD. */
int frame_keys_decode(const unsigned char *body, size_t len, char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t *n,
                      const char **why);

#endif
