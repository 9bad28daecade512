/* One-time-pad sealing of a frame: ciphertext = payload XOR pad, tag =
 * one-time Poly1305 over the header and the ciphertext. Both come from one
 * slice of a QKD key: the 32-byte MAC key first, then the pad (frame.h). The
 * rule of which slice a frame may use lives here too, so that sender and
 * receiver apply the same one: slices are consumed in order, never twice. */
#ifndef ENCRYPTOR_OTP_H
#define ENCRYPTOR_OTP_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/frame.h"

#define OTP_MAC_KEY_BYTES 32
#define OTP_TAG_BYTES FRAME_TAG_BYTES
/* A key with fewer unused bytes than this cannot carry another frame. */
#define OTP_MIN_SLICE (OTP_MAC_KEY_BYTES + 1)

/* Key bytes a frame with n body bytes consumes. */
static inline size_t otp_slice_bytes(size_t n)
{
    return OTP_MAC_KEY_BYTES + n;
}

/* The most body bytes a frame can carry from a key of key_len bytes whose
 * first offset bytes are used; 0 when the key is spent (the sender moves to
 * the next key, and only then). */
size_t otp_room(size_t key_len, size_t offset);

/* slice: otp_slice_bytes(n) key bytes (MAC key, then pad). Writes n bytes of
 * ciphertext to ct and the tag. 0, or -1 on a crypto library failure (then
 * ct and tag are wiped). */
int otp_seal(const unsigned char header[FRAME_HEADER_BYTES], const unsigned char *slice, const unsigned char *plain,
             size_t n, unsigned char *ct, unsigned char tag[OTP_TAG_BYTES]);

/* Checks the tag (constant time) first: on failure returns -1 and leaves
 * plain untouched. Otherwise writes the n payload bytes and returns 0. */
int otp_open(const unsigned char header[FRAME_HEADER_BYTES], const unsigned char *slice, const unsigned char *ct,
             size_t n, const unsigned char tag[OTP_TAG_BYTES], unsigned char *plain);

/* One-time Poly1305 of header || body under key (exposed for the tests). */
int otp_poly1305(const unsigned char key[OTP_MAC_KEY_BYTES], const unsigned char *header, const unsigned char *body,
                 size_t n, unsigned char tag[OTP_TAG_BYTES]);

#endif
