/* The store's wrapping key in a PKCS#11 token: module, token, login, key, wrap and unwrap (see pkcs11_key.h). */
#include "kme/pkcs11_key.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <p11-kit/pkcs11.h>

struct pkcs11_session {
    void *module;
    CK_FUNCTION_LIST *f;
    int initialized;
    CK_SESSION_HANDLE session;
    int open, logged_in;
    CK_OBJECT_HANDLE key;
    store_key_setting setting;
};

static const char *rv_name(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_PIN_LEN_RANGE:
        return "CKR_PIN_LEN_RANGE";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_WRAPPED_KEY_INVALID:
        return "CKR_WRAPPED_KEY_INVALID";
    case CKR_ENCRYPTED_DATA_INVALID:
        return "CKR_ENCRYPTED_DATA_INVALID";
    default:
        return "a PKCS#11 error";
    }
}

void pkcs11_close(pkcs11_session *p)
{
    if (!p)
        return;
    if (p->logged_in)
        p->f->C_Logout(p->session);
    if (p->open)
        p->f->C_CloseSession(p->session);
    if (p->initialized)
        p->f->C_Finalize(NULL);
    if (p->module)
        dlclose(p->module);
    OPENSSL_cleanse(p, sizeof *p);
    free(p);
}

/* The slot whose token's label (blank-padded to 32) is label. */
static int find_token(pkcs11_session *p, CK_SLOT_ID *slot, char *err, size_t errlen)
{
    CK_ULONG n = 0;
    CK_RV rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
    CK_SLOT_ID *slots = rv == CKR_OK ? calloc(n ? n : 1, sizeof *slots) : NULL;
    if (!slots || p->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) {
        free(slots);
        snprintf(err, errlen, "PKCS#11 module %s: cannot list its slots", p->setting.module);
        return -1;
    }
    char want[32];
    memset(want, ' ', sizeof want);
    memcpy(want, p->setting.token_label, strlen(p->setting.token_label));
    int found = 0;
    for (CK_ULONG i = 0; i < n && !found; i++) {
        CK_TOKEN_INFO info;
        if (p->f->C_GetTokenInfo(slots[i], &info) == CKR_OK && memcmp(info.label, want, sizeof want) == 0) {
            *slot = slots[i];
            found = 1;
        }
    }
    free(slots);
    if (!found)
        snprintf(err, errlen,
                 "PKCS#11 module %s: no token labelled '%s' (is it initialised, is the module's "
                 "configuration the right one?)",
                 p->setting.module, p->setting.token_label);
    return found ? 0 : -1;
}

static int login(pkcs11_session *p, char *err, size_t errlen)
{
    unsigned char pin[256];
    size_t len = sizeof pin - 1;
    if (store_key_read_secret_file(p->setting.pin_file, "PIN file", pin, &len, err, errlen) < 0)
        return -1;
    while (len && (pin[len - 1] == '\n' || pin[len - 1] == '\r'))
        len--;
    CK_RV rv = p->f->C_Login(p->session, CKU_USER, pin, len);
    OPENSSL_cleanse(pin, sizeof pin);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        snprintf(err, errlen, "PKCS#11 token '%s': login refused (%s)%s", p->setting.token_label, rv_name(rv),
                 rv == CKR_PIN_INCORRECT ? ": wrong PIN in the PIN file" : "");
        return -1;
    }
    p->logged_in = rv == CKR_OK;
    return 0;
}

/* The AES secret key labelled key_label: 1 found (*key), 0 none, -1 error. */
static int find_key(pkcs11_session *p, CK_OBJECT_HANDLE *key)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_KEY_TYPE, &type, sizeof type},
                        {CKA_LABEL, p->setting.key_label, strlen(p->setting.key_label)}};
    CK_ULONG n = 0;
    if (p->f->C_FindObjectsInit(p->session, t, 3) != CKR_OK)
        return -1;
    CK_RV rv = p->f->C_FindObjects(p->session, key, 1, &n);
    p->f->C_FindObjectsFinal(p->session);
    return rv != CKR_OK ? -1 : n == 1;
}

pkcs11_session *pkcs11_open(const store_key_setting *setting, int need_key, char *err, size_t errlen)
{
    pkcs11_session *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->setting = *setting;
    CK_C_GetFunctionList get_list = NULL;
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    CK_SLOT_ID slot = 0;
    CK_RV rv;
    p->module = dlopen(setting->module, RTLD_NOW | RTLD_LOCAL);
    if (!p->module) {
        const char *why = dlerror();
        snprintf(err, errlen, "PKCS#11 module %s cannot be loaded: %s", setting->module, why ? why : "?");
        goto fail;
    }
    *(void **)&get_list = dlsym(p->module, "C_GetFunctionList");
    if (!get_list || get_list(&p->f) != CKR_OK || !p->f) {
        snprintf(err, errlen, "%s is not a PKCS#11 module (no C_GetFunctionList)", setting->module);
        goto fail;
    }
    if ((rv = p->f->C_Initialize(&args)) != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        snprintf(err, errlen, "PKCS#11 module %s: C_Initialize failed (%s)", setting->module, rv_name(rv));
        goto fail;
    }
    p->initialized = rv == CKR_OK;
    if (find_token(p, &slot, err, errlen) < 0)
        goto fail;
    if ((rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->session)) != CKR_OK) {
        snprintf(err, errlen, "PKCS#11 token '%s': cannot open a session (%s)", setting->token_label, rv_name(rv));
        goto fail;
    }
    p->open = 1;
    if (login(p, err, errlen) < 0)
        goto fail;
    if (need_key) {
        int found = find_key(p, &p->key);
        if (found <= 0) {
            snprintf(err, errlen,
                     found < 0 ? "PKCS#11 token '%s': cannot search for the key '%s'"
                               : "PKCS#11 token '%s' holds no AES key labelled '%s' (create it with kme "
                                 "--init-store-key)",
                     setting->token_label, setting->key_label);
            goto fail;
        }
    }
    return p;
fail:
    pkcs11_close(p);
    return NULL;
}

static int p11_wrap(void *ctx, const unsigned char key[SEAL_KEY_BYTES], unsigned char *out, size_t *outlen, char *err,
                    size_t errlen)
{
    pkcs11_session *p = ctx;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_KEY_TYPE, &type, sizeof type},
                        {CKA_TOKEN, &no, sizeof no},
                        {CKA_EXTRACTABLE, &yes, sizeof yes},
                        {CKA_VALUE, (void *)key, SEAL_KEY_BYTES}};
    CK_OBJECT_HANDLE obj;
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG n = *outlen;
    CK_RV rv = p->f->C_CreateObject(p->session, t, 5, &obj);
    if (rv == CKR_OK) {
        rv = p->f->C_WrapKey(p->session, &m, p->key, obj, out, &n);
        p->f->C_DestroyObject(p->session, obj);
    }
    if (rv != CKR_OK) {
        snprintf(err, errlen, "PKCS#11 token '%s': cannot wrap with key '%s' (%s)", p->setting.token_label,
                 p->setting.key_label, rv_name(rv));
        return -1;
    }
    *outlen = n;
    return 0;
}

static int p11_unwrap(void *ctx, const unsigned char *in, size_t inlen, unsigned char key[SEAL_KEY_BYTES], char *err,
                      size_t errlen)
{
    pkcs11_session *p = ctx;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_KEY_TYPE, &type, sizeof type},
                        {CKA_TOKEN, &no, sizeof no},
                        {CKA_SENSITIVE, &no, sizeof no},
                        {CKA_EXTRACTABLE, &yes, sizeof yes}};
    CK_OBJECT_HANDLE obj;
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_RV rv = p->f->C_UnwrapKey(p->session, &m, p->key, (CK_BYTE *)in, inlen, t, 5, &obj);
    if (rv != CKR_OK) {
        snprintf(err, errlen, "the token refuses to unwrap it (%s)", rv_name(rv));
        return -1;
    }
    CK_ATTRIBUTE value = {CKA_VALUE, key, SEAL_KEY_BYTES};
    rv = p->f->C_GetAttributeValue(p->session, obj, &value, 1);
    p->f->C_DestroyObject(p->session, obj);
    if (rv != CKR_OK || value.ulValueLen != SEAL_KEY_BYTES) {
        OPENSSL_cleanse(key, SEAL_KEY_BYTES);
        snprintf(err, errlen, "the unwrapped key cannot be read from the token (%s)", rv_name(rv));
        return -1;
    }
    return 0;
}

seal_wrapper pkcs11_wrapper(pkcs11_session *p, const char *what)
{
    return (seal_wrapper){'P', what, p11_wrap, p11_unwrap, p};
}

int pkcs11_generate_key(pkcs11_session *p, char *err, size_t errlen)
{
    CK_OBJECT_HANDLE key;
    int found = find_key(p, &key);
    if (found != 0) {
        snprintf(err, errlen,
                 found > 0 ? "PKCS#11 token '%s' holds a key labelled '%s' already: never replaced (the stores it "
                             "wraps would be lost)"
                           : "PKCS#11 token '%s': cannot search for the key '%s'",
                 p->setting.token_label, p->setting.key_label);
        return -1;
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},   {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no}, {CKA_WRAP, &yes, sizeof yes},
        {CKA_UNWRAP, &yes, sizeof yes},    {CKA_ENCRYPT, &no, sizeof no},
        {CKA_DECRYPT, &no, sizeof no},     {CKA_LABEL, p->setting.key_label, strlen(p->setting.key_label)}};
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_RV rv = p->f->C_GenerateKey(p->session, &m, t, sizeof t / sizeof t[0], &key);
    if (rv != CKR_OK) {
        snprintf(err, errlen, "PKCS#11 token '%s': cannot generate the key '%s' (%s)", p->setting.token_label,
                 p->setting.key_label, rv_name(rv));
        return -1;
    }
    return 0;
}
