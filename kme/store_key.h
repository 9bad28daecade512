/* Where the wrapping key of the store's data key lives ("store_key" in the
 * configuration): a key file readable only by the daemon, a key in a PKCS#11
 * token, or nowhere ("none-insecure": the data key rests in the store in
 * clear, for throw-away stores only). Opens the store with it, and makes the
 * wrapping key (kme --init-store-key). */
#ifndef KME_STORE_KEY_H
#define KME_STORE_KEY_H

#include <stddef.h>
#include <jansson.h>
#include "store/store.h"

enum store_key_kind { STORE_KEY_NONE_INSECURE = 0, STORE_KEY_FILE = 1, STORE_KEY_PKCS11 = 2 };

typedef struct {
    enum store_key_kind kind;
    char file[1024];      /* STORE_KEY_FILE: 32 random bytes, mode 0600 or stricter */
    char module[1024];    /* STORE_KEY_PKCS11: the module's path */
    char token_label[33]; /* the token, by its label */
    char pin_file[1024];  /* the user PIN, on the file's first line */
    char key_label[256];  /* the AES key object (CKA_LABEL) that wraps the data key */
} store_key_setting;

/* Parses root's "store_key" strictly (it is required). 0, or -1 with err. */
int store_key_parse(json_t *root, store_key_setting *out, char *err, size_t errlen);
/* 1 when the two settings name the same key. */
int store_key_same(const store_key_setting *a, const store_key_setting *b);

/* store_open with the data key unwrapped by the site's wrapping key; the
 * token or key file is used only while the store opens. 0, or -1 with err. */
int store_key_open_store(kme_store *s, const char *dir, long map_mb, const char *kme_id,
                         const store_key_setting *setting, char *err, size_t errlen);

/* Rotation of the wrapping key: the open store's data key wrapped by the
 * key setting names and written over its one wrapped copy, in place (its
 * keyring, store/epoch_keys.h). The key before is no longer needed once
 * this returns 0; -1 with err, and nothing changed, otherwise. */
int store_key_rewrap(kme_store *s, const store_key_setting *setting, char *err, size_t errlen);

/* kme --init-store-key: writes a new key file (refusing to overwrite one),
 * or generates the AES key in the token (refusing when one with its label
 * exists). 0, or -1 with err. */
int store_key_init(const store_key_setting *setting, char *err, size_t errlen);

/* Reads a secret file (a key file, a PIN file) that must be a regular file
 * not accessible to group or others. *len: the capacity of buf in, the
 * bytes read out. 0, or -1 with err naming the file and what is wrong. */
int store_key_read_secret_file(const char *path, const char *what, unsigned char *buf, size_t *len, char *err,
                               size_t errlen);

#endif
