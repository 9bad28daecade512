/* The sending half of one connection direction, without sockets: the keys
 * taken from the pad pool in announcement order, the position in them, the
 * frame sequence, and the building of KEYS and sealed frames. A key is used
 * from its first byte on, slice after slice (otp.h) or frame after frame
 * until rotation (gcm.h); the sender moves to the next key only when the
 * current one has no room left, and then drops (cleanses) the old one. */
#ifndef ENCRYPTOR_STREAM_TX_H
#define ENCRYPTOR_STREAM_TX_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/frame.h"
#include "encryptor/keyring.h"

typedef struct {
    uint8_t mode;           /* FRAME_MODE_OTP or FRAME_MODE_GCM */
    keyring ring;           /* announced keys, by index */
    uint64_t seq;           /* seq of the next frame */
    uint32_t cur;           /* index of the key in use */
    uint64_t used;          /* OTP: bytes of key cur consumed; GCM: bytes sealed under it */
    int64_t since;          /* GCM: when key cur sealed its first frame */
    int started;            /* key cur has sealed a frame */
    uint64_t rotate_bytes;  /* GCM */
    int64_t rotate_seconds; /* GCM */
    uint64_t keys_started;  /* keys that carried at least one frame */
} stream_tx;

void stx_init(stream_tx *t, uint8_t mode, uint64_t rotate_bytes, int64_t rotate_seconds);
/* Cleanses and frees every key still held. */
void stx_free(stream_tx *t);

/* Announced keys the sender has not started using yet. */
size_t stx_keys_ahead(const stream_tx *t);

/* Announces keys[0..n) (1..FRAME_MAX_KEYS; takes their bytes, the array is
 * emptied): writes the KEYS frame to out (FRAME_MAX_BYTES) and its size to
 * *len. 0, or -1 (nothing taken). */
int stx_announce(stream_tx *t, pad_key *keys, size_t n, unsigned char *out, size_t *len);

/* The most body bytes the next sealed frame can carry, moving first to the
 * next announced key when the current one has no room. 0: no announced key
 * has room, announce more first. now: monotonic seconds (GCM rotation). */
size_t stx_room(stream_tx *t, int64_t now);

/* Seals a frame of type (OPEN, DATA or FIN) with n <= stx_room() body bytes
 * into out (FRAME_MAX_BYTES); *len gets its size. 0, or -1. */
int stx_seal(stream_tx *t, uint8_t type, const unsigned char *plain, size_t n, int64_t now, unsigned char *out,
             size_t *len);

#endif
