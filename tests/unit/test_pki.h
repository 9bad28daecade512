/* A test KME CA and its certificates, made with OpenSSL in a temporary
 * directory for the unit tests that need real ones (adverts are signed with
 * the KME certificate's key): ca.pem; KME_A..KME_D .pem/.key of that CA;
 * KME_C.rogue.pem/.key of another CA of the same name. */
#ifndef TESTS_UNIT_TEST_PKI_H
#define TESTS_UNIT_TEST_PKI_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char test_pki_dir[64];

static inline X509 *test_pki_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    ck_assert_ptr_nonnull(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (ca) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        X509_EXTENSION *ku = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
        X509_add_ext(x, bc, -1);
        X509_add_ext(x, ku, -1);
        X509_EXTENSION_free(bc);
        X509_EXTENSION_free(ku);
    }
    ck_assert_int_gt(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()), 0);
    return x;
}

static inline void test_pki_write(const char *name, X509 *cert, EVP_PKEY *key)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", test_pki_dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    if (cert)
        ck_assert_int_eq(PEM_write_X509(f, cert), 1);
    else
        ck_assert_int_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* The path of a file of the test PKI (one of 8 rotating buffers). */
static inline const char *test_pki_path(const char *name)
{
    static char paths[8][256];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 256, "%s/%s", test_pki_dir, name);
    return p;
}

static inline void test_pki_make(void)
{
    strcpy(test_pki_dir, "/tmp/unitpki.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(test_pki_dir));
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *rogue_key = EVP_EC_gen("P-256");
    X509 *ca = test_pki_cert("KME CA", ca_key, NULL, NULL, 1),
         *rogue = test_pki_cert("KME CA", rogue_key, NULL, NULL, 1);
    test_pki_write("ca.pem", ca, NULL);
    const char *ids[] = {"KME_A", "KME_B", "KME_C", "KME_D"};
    for (int i = 0; i < 4; i++) {
        char name[32];
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = test_pki_cert(ids[i], key, ca, ca_key, 0);
        snprintf(name, sizeof name, "%s.pem", ids[i]);
        test_pki_write(name, cert, NULL);
        snprintf(name, sizeof name, "%s.key", ids[i]);
        test_pki_write(name, NULL, key);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = test_pki_cert("KME_C", key, rogue, rogue_key, 0);
    test_pki_write("KME_C.rogue.pem", cert, NULL);
    test_pki_write("KME_C.rogue.key", NULL, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    X509_free(ca);
    X509_free(rogue);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(rogue_key);
}

/* Removes the directory (none made: nothing to do). */
static inline void test_pki_remove(void)
{
    char cmd[128];
    if (!test_pki_dir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf %s", test_pki_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", test_pki_dir);
    test_pki_dir[0] = '\0';
}

/* The certificate, key and CA files of KME id, the PKI made on first use
 * (and removed when the process that made it exits). */
static inline void test_pki_kme_files(const char *id, char *cert, char *key, char *ca, size_t cap)
{
    if (!test_pki_dir[0]) {
        test_pki_make();
        atexit(test_pki_remove);
    }
    char name[64];
    snprintf(name, sizeof name, "%s.pem", id);
    snprintf(cert, cap, "%s", test_pki_path(name));
    snprintf(name, sizeof name, "%s.key", id);
    snprintf(key, cap, "%s", test_pki_path(name));
    snprintf(ca, cap, "%s", test_pki_path("ca.pem"));
}

#endif
