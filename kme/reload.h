/* SIGHUP: re-reads the configuration file and puts in force what may change
 * while the KME serves: the SAEs it hosts (advertised to the other KMEs at
 * once), the ETSI limits, log_level, the audit log (reopened at its path
 * even when unchanged, which is how the log is rotated) and the listeners'
 * CRLs (sae_tls.client_crl, kme_tls.crl: re-read even when unchanged, which
 * is how a revocation takes effect; open connections are checked again at
 * their next request). A file that is not valid, a CRL that does not load or
 * is not signed by its listener's client CA, or a file that changes anything
 * else (kme_id, listeners, TLS certificates and keys, links, data_dir,
 * timeouts, stock and store settings), is refused as a whole: the refusal and
 * the setting are logged and the KME serves on unchanged. */
#ifndef KME_RELOAD_H
#define KME_RELOAD_H

#include "kme/context.h"

/* On the main thread (the one that takes the signals). */
void kme_reload(kme_context *k, const char *config_path);

#endif
