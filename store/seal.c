/* AES-256-GCM sealing of stored key material, bound to the record's identity (see seal.h). */
#include "store/seal.h"

#include <pthread.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

/* Nonces come from a pool of RAND_bytes output per thread, refilled 4 KiB at
 * a time: one DRBG call per 341 seals instead of one each (the DRBG call
 * costs more than sealing a key). A nonce is public (it is stored beside its
 * ciphertext), so the pool holds nothing secret. A forked child starts with
 * an empty pool, never with its parent's nonces. */
#define NONCE_POOL_BYTES (341 * SEAL_NONCE_BYTES)
static _Thread_local unsigned char nonce_pool[NONCE_POOL_BYTES];
static _Thread_local size_t nonce_left;
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void nonce_pool_forget(void)
{
    nonce_left = 0;
}
static void nonce_pool_init(void)
{
    pthread_atfork(NULL, NULL, nonce_pool_forget);
}

static int fresh_nonce(unsigned char out[SEAL_NONCE_BYTES])
{
    pthread_once(&nonce_once, nonce_pool_init);
    if (nonce_left < SEAL_NONCE_BYTES) {
        if (RAND_bytes(nonce_pool, sizeof nonce_pool) != 1)
            return -1;
        nonce_left = sizeof nonce_pool;
    }
    memcpy(out, nonce_pool + sizeof nonce_pool - nonce_left, SEAL_NONCE_BYTES);
    nonce_left -= SEAL_NONCE_BYTES;
    return 0;
}

int seal_key_set(seal_key *k, const unsigned char key[SEAL_KEY_BYTES])
{
    seal_key_clear(k);
    k->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!k->cipher)
        return -1;
    memcpy(k->key, key, SEAL_KEY_BYTES);
    return 0;
}

void seal_key_clear(seal_key *k)
{
    OPENSSL_cleanse(k->key, sizeof k->key);
    EVP_CIPHER_free(k->cipher);
    k->cipher = NULL;
}

/* The associated data: the database's name, a zero byte, the record's key. */
static int add_identity(EVP_CIPHER_CTX *ctx, const char *db, const void *id, size_t idlen)
{
    int outl;
    return EVP_CipherUpdate(ctx, NULL, &outl, (const unsigned char *)db, (int)strlen(db) + 1) == 1 &&
           (idlen == 0 || EVP_CipherUpdate(ctx, NULL, &outl, id, (int)idlen) == 1);
}

int seal_value(const seal_key *k, const char *db, const void *id, size_t idlen, const unsigned char *plain, size_t len,
               unsigned char *out)
{
    if (!k->cipher || len > (size_t)1 << 30 || fresh_nonce(out) != 0)
        return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok = ctx && EVP_EncryptInit_ex2(ctx, k->cipher, k->key, out, NULL) == 1 &&
                       add_identity(ctx, db, id, idlen) &&
                       (len == 0 || EVP_EncryptUpdate(ctx, out + SEAL_NONCE_BYTES, &outl, plain, (int)len) == 1) &&
                       (size_t)outl == len;
    int fl = 0;
    ok = ok && EVP_EncryptFinal_ex(ctx, out + SEAL_NONCE_BYTES + len, &fl) == 1 && fl == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG_BYTES, out + SEAL_NONCE_BYTES + len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int seal_open(const seal_key *k, const char *db, const void *id, size_t idlen, const unsigned char *sealed,
              size_t sealed_len, unsigned char *out)
{
    if (!k->cipher || sealed_len < SEAL_AEAD_OVERHEAD || sealed_len - SEAL_AEAD_OVERHEAD > (size_t)1 << 30)
        return -1;
    size_t len = sealed_len - SEAL_AEAD_OVERHEAD;
    const unsigned char *tag = sealed + SEAL_NONCE_BYTES + len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, fl = 0;
    int ok = ctx && EVP_DecryptInit_ex2(ctx, k->cipher, k->key, sealed, NULL) == 1 &&
             add_identity(ctx, db, id, idlen) &&
             (len == 0 || EVP_DecryptUpdate(ctx, out, &outl, sealed + SEAL_NONCE_BYTES, (int)len) == 1) &&
             (size_t)outl == len && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SEAL_TAG_BYTES, (void *)tag) == 1 &&
             EVP_DecryptFinal_ex(ctx, out + len, &fl) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        OPENSSL_cleanse(out, len);
    return ok ? 0 : -1;
}
