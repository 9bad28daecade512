/* HTTPS client of a link's local QKD device through its ETSI GS QKD 014 API
 * (libcurl): this KME is an SAE of the device, with its client certificate;
 * the device's server certificate is checked against the configured CA and
 * host name. Keys are asked for the peer KME's SAE ID (enc_keys) and
 * fetched by key_ID from it (dec_keys). Answers are decoded with the
 * project's ETSI 014 codecs (api/etsi014.h); errors never carry key bytes. */
#ifndef RELAY_DEVICE_CLIENT_H
#define RELAY_DEVICE_CLIENT_H

#include <stddef.h>
#include "api/etsi014.h"
#include "api/kme_link_ids.h"
#include "relay/settings.h"

typedef struct device_client device_client;

device_client *device_client_new(const relay_device_config *cfg);
void device_client_free(device_client *d);

/* POST enc_keys for number keys of the configured size for the peer's SAE.
 * 0 with out filled (exactly number keys, each of the configured size), or
 * -1 with err (a refusal, no answer in time, a malformed answer, fewer keys
 * or keys of another size: whatever did arrive is wiped). */
int device_enc_keys(device_client *d, long number, etsi_key_container *out, char *err, size_t errlen);

/* POST dec_keys for the IDs of ids (keys the peer's SAE took at the far
 * device). 0 with out holding the keys the device handed over, each of
 * size_bits (others are dropped and wiped, and counted in *wrong_size), in the order of ids; when the
 * device refuses the whole batch with a 4xx (one unknown ID spoils an ETSI
 * dec_keys), each key is asked for alone. -1 with err when the device fails
 * (5xx, no answer, malformed answer): nothing is kept. */
int device_dec_keys(device_client *d, const kme_link_ids *ids, etsi_key_container *out, size_t *wrong_size, char *err,
                    size_t errlen);

#endif
