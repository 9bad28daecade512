/* The receiving half of one connection direction, without sockets: the
 * order every frame must keep (seq, announcement indexes, key and offset)
 * and the opening of sealed frames. Whatever breaks the order or fails its
 * tag is refused before a byte of it is returned; the caller then ends the
 * connection. */
#ifndef ENCRYPTOR_STREAM_RX_H
#define ENCRYPTOR_STREAM_RX_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/frame.h"
#include "encryptor/keyring.h"

/* Most announced keys the receiver holds ahead of the one in use. */
#define RX_MAX_AHEAD 64

typedef struct {
    uint8_t mode;
    uint64_t seq;       /* seq the next frame must carry */
    uint32_t announced; /* key_IDs announced so far */
    uint32_t cur;       /* index of the key in use */
    uint64_t used;      /* as stream_tx.used */
    int started;        /* key cur has opened a frame */
} stream_rx;

enum { SRX_OK = 0, SRX_MALFORMED = 1, SRX_BAD_TAG = 2, SRX_NO_KEY = 3 };

/* Gives the key at index (a non-owning copy that stays valid until the
 * caller drops keys before index); may wait for it. 0, or -1 when it cannot
 * be had. */
typedef int (*srx_key_fn)(void *arg, uint32_t index, pad_key *out);

void srx_init(stream_rx *r, uint8_t mode);

/* A KEYS frame announcing n key_IDs: checks its seq, mode and first index.
 * SRX_OK or SRX_MALFORMED. */
int srx_keys(stream_rx *r, const frame_header *h, size_t n, const char **why);

/* A sealed frame: header (its 28 encoded bytes) and h (decoded), body of
 * h->length bytes and its tag. Checks the order, gets the key, checks the
 * tag and only then writes the payload to plain (h->length bytes) and moves
 * on. SRX_OK, SRX_MALFORMED, SRX_NO_KEY or SRX_BAD_TAG with *why set. */
int srx_open(stream_rx *r, const unsigned char header[FRAME_HEADER_BYTES], const frame_header *h,
             const unsigned char *body, const unsigned char *tag, srx_key_fn get_key, void *arg, unsigned char *plain,
             const char **why);

#endif
