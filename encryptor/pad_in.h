/* The receiver's In-buffer of one connection direction: as soon as a KEYS
 * frame arrives its key_IDs are queued here, and a fetcher thread with its
 * own SAE client gets them with GET_KEY_WITH_KEY_IDS (POST, several IDs at
 * once; master: the peer encryptor), ahead of the data frames that use them.
 * The KME hands each key_ID out once, so each is fetched once.
 *
 * KEYS frames are not sealed, so until a sealed frame of the direction has
 * verified (pad_in_trust) a key is fetched only when a sealed frame that
 * passed every order check asks for it (pad_in_get): a KEYS frame alone, or
 * bytes that are no frame, fetch nothing, and a peer that holds no key of
 * the pair makes the receiver fetch the one key its first sealed frame
 * names, never the whole announcement, per connection. */
#ifndef ENCRYPTOR_PAD_IN_H
#define ENCRYPTOR_PAD_IN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "encryptor/config.h"
#include "encryptor/frame.h"
#include "encryptor/keyring.h"

typedef struct pad_in pad_in;

/* NULL with err set. */
pad_in *pad_in_start(const enc_config *cfg, char *err, size_t errlen);
/* Queues n announced key_IDs; they get the next indexes. 0, or -1 when more
 * than RX_MAX_AHEAD keys would be held. */
int pad_in_announce(pad_in *p, const char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t n);
/* A sealed frame of this direction verified: the peer holds the pair's keys,
 * and every announced key may be fetched ahead of use. */
void pad_in_trust(pad_in *p);
/* Waits until the key at index is fetched (asking for it when the peer is
 * not trusted yet); *out is a non-owning copy valid
 * until pad_in_release_before passes index. -1 when it was dropped, its fetch
 * failed, or *cancel became non-zero. */
int pad_in_get(pad_in *p, uint32_t index, pad_key *out, const atomic_int *cancel);
/* Cleanses the keys below index. */
void pad_in_release_before(pad_in *p, uint32_t index);
/* Keys fetched so far. */
uint64_t pad_in_fetched(pad_in *p);
/* Why fetching failed ("" when it did not). */
void pad_in_error(pad_in *p, char *out, size_t outlen);
/* Stops the fetcher (after its request in flight), cleanses and frees. */
void pad_in_stop(pad_in *p);

#endif
