/* AES-256-GCM sealing of a frame (the explicitly configured alternative to
 * the one-time pad): one 256-bit QKD key per stretch of a direction, nonce =
 * 4 zero bytes || the frame's seq (unique within a direction, so never
 * reused under any key of it), the 28 header bytes as additional data. The
 * rotation rule (a new key every rotate_bytes or rotate_seconds) lives here
 * so that sender and receiver share it. */
#ifndef ENCRYPTOR_GCM_H
#define ENCRYPTOR_GCM_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/frame.h"

#define GCM_KEY_BYTES 32
#define GCM_NONCE_BYTES 12
#define GCM_TAG_BYTES FRAME_TAG_BYTES
/* Most bytes sealed under one key, whatever rotate_bytes says (offset is 32 bits). */
#define GCM_MAX_KEY_BYTES (1UL << 31)

void gcm_nonce(uint64_t seq, unsigned char nonce[GCM_NONCE_BYTES]);

/* The most body bytes the next frame may seal under a key that has sealed
 * `sealed` bytes since `since` (seconds, any monotonic clock); 0 when the key
 * must be rotated first. rotate_bytes 0: GCM_MAX_KEY_BYTES; rotate_seconds 0:
 * no time limit. A fresh key (sealed 0) always has room. */
size_t gcm_room(uint64_t sealed, int64_t since, int64_t now, uint64_t rotate_bytes, int64_t rotate_seconds);

/* header: the frame's encoded header (its seq gives the nonce). 0, or -1 on a
 * crypto library failure (ct and tag wiped). */
int gcm_seal(const unsigned char header[FRAME_HEADER_BYTES], uint64_t seq, const unsigned char key[GCM_KEY_BYTES],
             const unsigned char *plain, size_t n, unsigned char *ct, unsigned char tag[GCM_TAG_BYTES]);

/* -1 when the tag does not verify: plain is then wiped, never returned. */
int gcm_open(const unsigned char header[FRAME_HEADER_BYTES], uint64_t seq, const unsigned char key[GCM_KEY_BYTES],
             const unsigned char *ct, size_t n, const unsigned char tag[GCM_TAG_BYTES], unsigned char *plain);

#endif
