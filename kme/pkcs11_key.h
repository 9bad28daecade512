/* The store's data key wrapped and unwrapped by an AES key that never leaves
 * a PKCS#11 token (CKM_AES_KEY_WRAP_PAD, RFC 5649): the module loaded with
 * dlopen, the token found by its label, the user logged in with the PIN
 * from a file, the key found by its CKA_LABEL. */
#ifndef KME_PKCS11_KEY_H
#define KME_PKCS11_KEY_H

#include "kme/store_key.h"
#include "store/seal.h"

typedef struct pkcs11_session pkcs11_session;

/* Opens a logged-in session on the token of setting and finds the wrapping
 * key (need_key; else only the session). NULL with err naming what is wrong. */
pkcs11_session *pkcs11_open(const store_key_setting *setting, int need_key, char *err, size_t errlen);
void pkcs11_close(pkcs11_session *p);

/* A seal_wrapper on the session's key (its ctx is p). */
seal_wrapper pkcs11_wrapper(pkcs11_session *p, const char *what);

/* Generates the wrapping key in the token: AES-256, CKA_TOKEN, CKA_SENSITIVE,
 * not CKA_EXTRACTABLE, CKA_WRAP and CKA_UNWRAP. Refuses when the label is
 * taken. 0, or -1 with err. */
int pkcs11_generate_key(pkcs11_session *p, char *err, size_t errlen);

#endif
