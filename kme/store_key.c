/* The key file wrapping (AES-256 key wrap with padding, RFC 5649), opening
 * the store with the site's wrapping key, and making that key (see store_key.h). */
#include "kme/store_key.h"
#include "kme/pkcs11_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define KEY_FILE_BYTES 32

int store_key_read_secret_file(const char *path, const char *what, unsigned char *buf, size_t *len, char *err,
                               size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(errno));
        return -1;
    }
    int rc = -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s %s: not a regular file", what, path);
    } else if (st.st_mode & 077) {
        snprintf(err, errlen, "%s %s: readable or writable by group or others (mode %04o): refused; chmod 600 it", what,
                 path, (unsigned)(st.st_mode & 07777));
    } else {
        ssize_t n = read(fd, buf, *len);
        char extra;
        if (n < 0)
            snprintf(err, errlen, "%s %s: cannot read: %s", what, path, strerror(errno));
        else if ((size_t)n == *len && read(fd, &extra, 1) > 0)
            snprintf(err, errlen, "%s %s: too long", what, path);
        else
            *len = (size_t)n, rc = 0;
    }
    close(fd);
    return rc;
}

/* ---- key file --------------------------------------------------------------------- */

typedef struct {
    unsigned char kek[KEY_FILE_BYTES];
} key_file;

static int load_key_file(key_file *f, const char *path, char *err, size_t errlen)
{
    size_t len = sizeof f->kek;
    if (store_key_read_secret_file(path, "store key file", f->kek, &len, err, errlen) < 0)
        return -1;
    if (len != sizeof f->kek) {
        OPENSSL_cleanse(f->kek, sizeof f->kek);
        snprintf(err, errlen, "store key file %s: holds %zu bytes, not %d random bytes", path, len, KEY_FILE_BYTES);
        return -1;
    }
    return 0;
}

/* AES-256 key wrap with padding (RFC 5649) under the key file's key. */
static int key_wrap(const key_file *f, int enc, const unsigned char *in, size_t inlen, unsigned char *out,
                    size_t *outlen)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, ok = 0;
    if (c && ctx) {
        EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_CipherInit_ex2(ctx, c, f->kek, NULL, enc, NULL) == 1 && (size_t)(inlen + 16) <= *outlen &&
             EVP_CipherUpdate(ctx, out, &l1, in, (int)inlen) == 1 && EVP_CipherFinal_ex(ctx, out + l1, &l2) == 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
    if (ok)
        *outlen = (size_t)(l1 + l2);
    return ok ? 0 : -1;
}

static int file_wrap(void *ctx, const unsigned char key[SEAL_KEY_BYTES], unsigned char *out, size_t *outlen, char *err,
                     size_t errlen)
{
    if (key_wrap(ctx, 1, key, SEAL_KEY_BYTES, out, outlen) == 0)
        return 0;
    snprintf(err, errlen, "AES key wrap failed");
    return -1;
}

static int file_unwrap(void *ctx, const unsigned char *in, size_t inlen, unsigned char key[SEAL_KEY_BYTES], char *err,
                       size_t errlen)
{
    unsigned char out[SEAL_WRAPPED_MAX + 16];
    size_t outlen = sizeof out;
    int rc = key_wrap(ctx, 0, in, inlen, out, &outlen) == 0 && outlen == SEAL_KEY_BYTES ? 0 : -1;
    if (rc == 0)
        memcpy(key, out, SEAL_KEY_BYTES);
    else
        snprintf(err, errlen, "the wrapped key does not verify under this key file");
    OPENSSL_cleanse(out, sizeof out);
    return rc;
}

/* ---- the store opened with the site's wrapping key ------------------------------------------ */

/* Runs use(ctx, wrapper) with the site's wrapping key at hand (NULL for
 * none-insecure): the key file read or the token session open only for it. */
typedef int (*wrapper_use)(void *ctx, const seal_wrapper *w, char *err, size_t errlen);

static int with_wrapper(const store_key_setting *setting, wrapper_use use, void *ctx, char *err, size_t errlen)
{
    char what[1400];
    int rc;
    if (setting->kind == STORE_KEY_NONE_INSECURE)
        return use(ctx, NULL, err, errlen);
    if (setting->kind == STORE_KEY_FILE) {
        key_file f;
        if (load_key_file(&f, setting->file, err, errlen) < 0)
            return -1;
        snprintf(what, sizeof what, "the key file %s", setting->file);
        seal_wrapper w = {'F', what, file_wrap, file_unwrap, &f};
        rc = use(ctx, &w, err, errlen);
        OPENSSL_cleanse(&f, sizeof f);
        return rc;
    }
    pkcs11_session *p = pkcs11_open(setting, 1, err, errlen);
    if (!p)
        return -1;
    snprintf(what, sizeof what, "the key '%s' of PKCS#11 token '%s'", setting->key_label, setting->token_label);
    seal_wrapper w = pkcs11_wrapper(p, what);
    rc = use(ctx, &w, err, errlen);
    pkcs11_close(p);
    return rc;
}

typedef struct {
    kme_store *s;
    const char *dir, *kme_id;
    long map_mb;
} open_arg;

static int open_with(void *ctx, const seal_wrapper *w, char *err, size_t errlen)
{
    open_arg *a = ctx;
    return store_open(a->s, a->dir, a->map_mb, a->kme_id, w, err, errlen);
}

int store_key_open_store(kme_store *s, const char *dir, long map_mb, const char *kme_id,
                         const store_key_setting *setting, char *err, size_t errlen)
{
    open_arg a = {s, dir, kme_id, map_mb};
    return with_wrapper(setting, open_with, &a, err, errlen);
}

static int rewrap_with(void *ctx, const seal_wrapper *w, char *err, size_t errlen)
{
    return epoch_keys_rewrap(&((kme_store *)ctx)->epochs, w, err, errlen);
}

int store_key_rewrap(kme_store *s, const store_key_setting *setting, char *err, size_t errlen)
{
    return with_wrapper(setting, rewrap_with, s, err, errlen);
}

int store_key_init(const store_key_setting *setting, char *err, size_t errlen)
{
    if (setting->kind == STORE_KEY_NONE_INSECURE) {
        snprintf(err, errlen, "store_key is \"none-insecure\": there is no wrapping key to create");
        return -1;
    }
    if (setting->kind == STORE_KEY_PKCS11) {
        pkcs11_session *p = pkcs11_open(setting, 0, err, errlen);
        if (!p)
            return -1;
        int rc = pkcs11_generate_key(p, err, errlen);
        pkcs11_close(p);
        return rc;
    }
    unsigned char key[KEY_FILE_BYTES];
    int fd = open(setting->file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "store key file %s: cannot create: %s%s", setting->file, strerror(errno),
                 errno == EEXIST ? " (never overwritten: the stores it wraps would be lost)" : "");
        return -1;
    }
    int rc =
        RAND_priv_bytes(key, sizeof key) == 1 && write(fd, key, sizeof key) == (ssize_t)sizeof key && fsync(fd) == 0
            ? 0
            : -1;
    OPENSSL_cleanse(key, sizeof key);
    if (close(fd) < 0)
        rc = -1;
    if (rc < 0) {
        unlink(setting->file);
        snprintf(err, errlen, "store key file %s: cannot write: %s", setting->file, strerror(errno));
    }
    return rc;
}
