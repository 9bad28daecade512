/* AES-256-GCM seal and open of one frame, counter nonces and the rotation rule (gcm.h). */
#include "encryptor/gcm.h"

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

void gcm_nonce(uint64_t seq, unsigned char nonce[GCM_NONCE_BYTES])
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (unsigned char)(seq >> (56 - 8 * i));
}

size_t gcm_room(uint64_t sealed, int64_t since, int64_t now, uint64_t rotate_bytes, int64_t rotate_seconds)
{
    uint64_t limit = rotate_bytes && rotate_bytes < GCM_MAX_KEY_BYTES ? rotate_bytes : GCM_MAX_KEY_BYTES;
    if (sealed > 0 && (sealed >= limit || (rotate_seconds > 0 && now - since >= rotate_seconds)))
        return 0;
    uint64_t room = sealed >= limit ? 0 : limit - sealed;
    return room > FRAME_MAX_PAYLOAD ? FRAME_MAX_PAYLOAD : (size_t)room;
}

static int run(int enc, const unsigned char *header, uint64_t seq, const unsigned char *key, const unsigned char *in,
               size_t n, unsigned char *out, unsigned char *tag)
{
    unsigned char nonce[GCM_NONCE_BYTES];
    gcm_nonce(seq, nonce);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) &&
                      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE_BYTES, NULL) &&
                      EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) &&
                      EVP_CipherUpdate(ctx, NULL, &len, header, FRAME_HEADER_BYTES) &&
                      (n == 0 || EVP_CipherUpdate(ctx, out, &len, in, (int)n));
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_BYTES, tag);
    if (ok)
        ok = EVP_CipherFinal_ex(ctx, out + n, &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_BYTES, tag);
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    if (!ok) {
        OPENSSL_cleanse(out, n);
        if (enc)
            OPENSSL_cleanse(tag, GCM_TAG_BYTES);
    }
    return ok ? 0 : -1;
}

int gcm_seal(const unsigned char header[FRAME_HEADER_BYTES], uint64_t seq, const unsigned char key[GCM_KEY_BYTES],
             const unsigned char *plain, size_t n, unsigned char *ct, unsigned char tag[GCM_TAG_BYTES])
{
    return run(1, header, seq, key, plain, n, ct, tag);
}

int gcm_open(const unsigned char header[FRAME_HEADER_BYTES], uint64_t seq, const unsigned char key[GCM_KEY_BYTES],
             const unsigned char *ct, size_t n, const unsigned char tag[GCM_TAG_BYTES], unsigned char *plain)
{
    return run(0, header, seq, key, ct, n, plain, (unsigned char *)tag);
}
