/* Sealing of key material at rest. Every stored value that holds key bytes
 * is nonce (12 bytes, fresh from RAND_bytes, see seal.c) | AES-256-GCM ciphertext | tag
 * (16 bytes) under an epoch key (store/epoch_keys.h), with the record's
 * identity (its database's name and its LMDB key) as associated data: a
 * value copied or moved to another record does not open. The epoch keys rest
 * sealed under the store's data key, and the data key only wrapped
 * (seal_wrapper), or in clear when the site chose "store_key":
 * "none-insecure". */
#ifndef STORE_SEAL_H
#define STORE_SEAL_H

#include <stddef.h>
#include <openssl/evp.h>

#define SEAL_KEY_BYTES 32
#define SEAL_NONCE_BYTES 12
#define SEAL_TAG_BYTES 16
#define SEAL_AEAD_OVERHEAD (SEAL_NONCE_BYTES + SEAL_TAG_BYTES)
/* A stored value: the be64 ID of the epoch key it is sealed under
 * (store/epoch_keys.h), then nonce | ciphertext | tag. */
#define SEAL_EPOCH_BYTES 8
#define SEAL_OVERHEAD (SEAL_EPOCH_BYTES + SEAL_AEAD_OVERHEAD)
#define SEAL_WRAPPED_MAX 128 /* the most bytes a wrapped data key may take */

/* The database names bound into each record's associated data. */
#define SEAL_DB_KEYS "keys"
#define SEAL_DB_BLOCK_DATA "block_data"
#define SEAL_DB_STOCK "stock"

typedef struct {
    unsigned char key[SEAL_KEY_BYTES];
    EVP_CIPHER *cipher; /* fetched once; NULL: not set */
} seal_key;

/* Takes a copy of key (the caller cleanses its own). 0, or -1. */
int seal_key_set(seal_key *k, const unsigned char key[SEAL_KEY_BYTES]);
/* Cleanses the key. */
void seal_key_clear(seal_key *k);

/* Seals len bytes of plain into out (len + SEAL_AEAD_OVERHEAD bytes) for the
 * record id (idlen bytes) of database db. 0, or -1. */
int seal_value(const seal_key *k, const char *db, const void *id, size_t idlen, const unsigned char *plain, size_t len,
               unsigned char *out);
/* Opens a sealed value into out (sealed_len - SEAL_AEAD_OVERHEAD bytes): 0, or
 * -1 when it does not authenticate for that record (out is cleansed). */
int seal_open(const seal_key *k, const char *db, const void *id, size_t idlen, const unsigned char *sealed,
              size_t sealed_len, unsigned char *out);

/* Where the wrapping key of a site lives (a key file, a PKCS#11 token): it
 * wraps the data key when a store is made and unwraps it at each open. Both
 * return 0, or -1 with a message naming what is wrong in err. */
typedef struct {
    char kind;        /* recorded with the wrapped key: 'F' key file, 'P' PKCS#11 token */
    const char *what; /* names the wrapping key in messages */
    int (*wrap)(void *ctx, const unsigned char key[SEAL_KEY_BYTES], unsigned char *out, size_t *outlen, char *err,
                size_t errlen);
    int (*unwrap)(void *ctx, const unsigned char *in, size_t inlen, unsigned char key[SEAL_KEY_BYTES], char *err,
                  size_t errlen);
    void *ctx;
} seal_wrapper;

#endif
