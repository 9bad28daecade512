/* The audit log (config "audit_log"): one JSON object per line for every key
 * handed to an SAE, written after the commit and before the answer leaves.
 *
 *   {"time":"2025-05-01T10:00:00.123Z","kme":"KME_B","event":"enc","key_ID":"...",
 *    "master":"SAE_B","slaves":["SAE_C"],"sae":"SAE_B","bits":256,
 *    "source":"relay","route":["KME_B","KME_A","KME_C"]}
 *
 * event "enc": the key went to its master (enc_keys); "dec": to the slave
 * named in "sae" (dec_keys). enc lines also say where the key came from
 * ("source": local, link, relay or stock) and how it reached the slaves'
 * sites ("route"): "local" for slaves here; the path of KME IDs from this KME
 * to the slaves' site; for stock relayed to a KME further away, whose path is
 * not recorded, that KME's ID as a string; with slaves at several sites an
 * object giving one of these per slave SAE. Never key material.
 *
 * The file is opened with O_APPEND (mode 0600); the lines of one answer are
 * written with one write(2) under a lock, so lines never interleave. A write
 * that fails is logged (at most once a minute, with the count of lines lost)
 * and does not fail the request: the keys are already committed, and
 * refusing the answer would not undo that. Callable from any thread. */
#ifndef KME_AUDIT_H
#define KME_AUDIT_H

#include <stddef.h>
#include "kme/context.h"
#include "kme/key_supply.h"

/* Opens path (created when missing) and makes it the audit log, closing the
 * one before; "" closes it. On failure the one before stays in use and -1
 * is returned with a message in err. Reopening the same path after the file
 * was moved starts a new file (log rotation). */
int audit_open(const char *path, char *err, size_t errlen);
/* At exit. */
void audit_close(void);

/* Keys handed to master for slave (and req's additional slaves). */
void audit_enc(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
               const etsi_key_container *keys, const supply_trace *trace);

/* Keys handed to slave, issued by master; key_slaves[i] are the designated
 * slaves of keys->keys[i], separated by spaces (NULL when not known). */
void audit_dec(kme_context *k, const char *master, const char *slave, const etsi_key_container *keys,
               char *const *key_slaves);

#endif
