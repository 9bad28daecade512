/* XOR + one-time Poly1305 seal and open of one frame (otp.h). */
#include "encryptor/otp.h"
#include "runtime/otp_xor.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

static EVP_MAC *poly1305;
static pthread_once_t poly_once = PTHREAD_ONCE_INIT;

static void fetch_poly1305(void)
{
    poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
}

size_t otp_room(size_t key_len, size_t offset)
{
    if (offset > key_len || key_len - offset < OTP_MIN_SLICE)
        return 0;
    size_t room = key_len - offset - OTP_MAC_KEY_BYTES;
    return room > FRAME_MAX_PAYLOAD ? FRAME_MAX_PAYLOAD : room;
}

int otp_poly1305(const unsigned char key[OTP_MAC_KEY_BYTES], const unsigned char *header, const unsigned char *body,
                 size_t n, unsigned char tag[OTP_TAG_BYTES])
{
    pthread_once(&poly_once, fetch_poly1305);
    if (!poly1305)
        return -1;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(poly1305);
    size_t outl = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, OTP_MAC_KEY_BYTES, NULL) &&
             EVP_MAC_update(ctx, header, FRAME_HEADER_BYTES) && (n == 0 || EVP_MAC_update(ctx, body, n)) &&
             EVP_MAC_final(ctx, tag, &outl, OTP_TAG_BYTES) && outl == OTP_TAG_BYTES;
    EVP_MAC_CTX_free(ctx); /* cleanses the key schedule */
    if (!ok)
        OPENSSL_cleanse(tag, OTP_TAG_BYTES);
    return ok ? 0 : -1;
}

int otp_seal(const unsigned char header[FRAME_HEADER_BYTES], const unsigned char *slice, const unsigned char *plain,
             size_t n, unsigned char *ct, unsigned char tag[OTP_TAG_BYTES])
{
    const unsigned char *pad = slice + OTP_MAC_KEY_BYTES;
    otp_xor(ct, plain, pad, n);
    if (otp_poly1305(slice, header, ct, n, tag) < 0) {
        OPENSSL_cleanse(ct, n);
        return -1;
    }
    return 0;
}

int otp_open(const unsigned char header[FRAME_HEADER_BYTES], const unsigned char *slice, const unsigned char *ct,
             size_t n, const unsigned char tag[OTP_TAG_BYTES], unsigned char *plain)
{
    unsigned char want[OTP_TAG_BYTES];
    int rc = otp_poly1305(slice, header, ct, n, want);
    if (rc == 0 && CRYPTO_memcmp(want, tag, OTP_TAG_BYTES) != 0)
        rc = -1;
    OPENSSL_cleanse(want, sizeof want);
    if (rc < 0)
        return -1;
    const unsigned char *pad = slice + OTP_MAC_KEY_BYTES;
    otp_xor(plain, ct, pad, n);
    return 0;
}
