/* Unit tests of the encryptor's wire format (encryptor/frame), its
 * configuration (encryptor/config) and the destination text of transparent
 * mode (encryptor/original_dst). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "encryptor/config.h"
#include "encryptor/frame.h"
#include "encryptor/original_dst.h"

static const char *const ID[3] = {"6f1b0e3c-1c7e-4b8e-9d0a-3f2b1c4d5e6f", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                                  "ffffffff-0000-4000-8000-000000000001"};

static void put_ids(char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t n)
{
    for (size_t i = 0; i < n; i++)
        strcpy(ids[i], ID[i % 3]);
}

/* ---- frames ------------------------------------------------------------------ */

static int same_header(const frame_header *a, const frame_header *b)
{
    return a->type == b->type && a->mode == b->mode && a->seq == b->seq && a->key_index == b->key_index &&
           a->offset == b->offset && a->length == b->length;
}

START_TEST(header_round_trip)
{
    const frame_header cases[] = {
        {FRAME_KEYS, FRAME_MODE_OTP, 0, 0, 0, 36},
        {FRAME_KEYS, FRAME_MODE_GCM, 7, 100, 0, 16 * 36},
        {FRAME_OPEN, FRAME_MODE_OTP, 1, 0, 0, 0},
        {FRAME_OPEN, FRAME_MODE_OTP, 1, 0, 0, FRAME_MAX_DEST},
        {FRAME_DATA, FRAME_MODE_OTP, 0x0102030405060708ULL, 0xa0b0c0d0, 0x11223344, 1},
        {FRAME_DATA, FRAME_MODE_GCM, UINT64_MAX, UINT32_MAX, UINT32_MAX, FRAME_MAX_PAYLOAD},
        {FRAME_FIN, FRAME_MODE_GCM, 9, 3, 8, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char b[FRAME_HEADER_BYTES];
        frame_header d;
        ck_assert_int_eq(frame_header_encode(&cases[i], b, NULL), FRAME_OK);
        ck_assert_int_eq(memcmp(b, "QKE\x01", 4), 0);
        ck_assert_int_eq(frame_header_decode(b, &d, NULL), FRAME_OK);
        ck_assert_msg(same_header(&d, &cases[i]), "case %zu differs", i);
    }
    /* Big-endian fields at their documented offsets. */
    unsigned char b[FRAME_HEADER_BYTES];
    frame_header h = {FRAME_DATA, FRAME_MODE_OTP, 0x0102030405060708ULL, 0x090a0b0c, 0x0d0e0f10, 0x0111};
    ck_assert_int_eq(frame_header_encode(&h, b, NULL), FRAME_OK);
    static const unsigned char want[FRAME_HEADER_BYTES] = {'Q', 'K', 'E', 1,  3,  1,  0,  0,  1,  2,  3, 4, 5, 6,
                                                           7,   8,   9,   10, 11, 12, 13, 14, 15, 16, 0, 0, 1, 0x11};
    ck_assert_int_eq(memcmp(b, want, sizeof want), 0);
}
END_TEST

START_TEST(whole_frame_decode)
{
    unsigned char buf[FRAME_MAX_BYTES + 10];
    frame_header h = {FRAME_DATA, FRAME_MODE_OTP, 5, 2, 64, 100}, d;
    ck_assert_int_eq(frame_header_encode(&h, buf, NULL), FRAME_OK);
    for (int i = 0; i < 100 + FRAME_TAG_BYTES; i++)
        buf[FRAME_HEADER_BYTES + i] = (unsigned char)i;
    size_t total = frame_wire_bytes(&h), used = 0;
    ck_assert_uint_eq(total, FRAME_HEADER_BYTES + 100 + FRAME_TAG_BYTES);
    const unsigned char *body, *tag;
    for (size_t n = 0; n < total; n++)
        ck_assert_int_eq(frame_decode(buf, n, &d, &body, &tag, &used, NULL), FRAME_NEED_MORE);
    ck_assert_int_eq(frame_decode(buf, total + 10, &d, &body, &tag, &used, NULL), FRAME_OK);
    ck_assert_uint_eq(used, total);
    ck_assert_ptr_eq(body, buf + FRAME_HEADER_BYTES);
    ck_assert_ptr_eq(tag, buf + FRAME_HEADER_BYTES + 100);

    char ids[3][FRAME_KEY_ID_BYTES + 1];
    put_ids(ids, 3);
    h = (frame_header){FRAME_KEYS, FRAME_MODE_GCM, 0, 4, 0, 3 * FRAME_KEY_ID_BYTES};
    ck_assert_int_eq(frame_header_encode(&h, buf, NULL), FRAME_OK);
    ck_assert_int_eq(frame_keys_encode((const char(*)[FRAME_KEY_ID_BYTES + 1]) ids, 3, buf + FRAME_HEADER_BYTES, NULL),
                     FRAME_OK);
    ck_assert_int_eq(frame_decode(buf, frame_wire_bytes(&h), &d, &body, &tag, &used, NULL), FRAME_OK);
    ck_assert_ptr_null(tag);
    ck_assert_uint_eq(used, FRAME_HEADER_BYTES + 3 * 36);
    char back[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
    size_t n;
    ck_assert_int_eq(frame_keys_decode(body, d.length, back, &n, NULL), FRAME_OK);
    ck_assert_uint_eq(n, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_str_eq(back[i], ID[i]);
}
END_TEST

/* Every header rule is enforced by the decoder (and by the encoder). */
START_TEST(header_strict_rejections)
{
    unsigned char good[FRAME_HEADER_BYTES], b[FRAME_HEADER_BYTES];
    frame_header h = {FRAME_DATA, FRAME_MODE_OTP, 1, 0, 0, 10}, d;
    ck_assert_int_eq(frame_header_encode(&h, good, NULL), FRAME_OK);
    struct {
        size_t at;
        unsigned char value;
    } pokes[] = {
        {0, 'X'},   {2, 'F'},  {3, 0},    {3, 2}, /* magic and version */
        {4, 0},     {4, 5},    {4, 0xff},         /* type */
        {5, 0},     {5, 3},                       /* mode */
        {6, 1},     {7, 0x80},                    /* reserved */
        {25, 0x40}, {24, 1},                      /* length over the maximum */
    };
    for (size_t i = 0; i < sizeof pokes / sizeof pokes[0]; i++) {
        memcpy(b, good, sizeof b);
        b[pokes[i].at] = pokes[i].value;
        const char *why = NULL;
        ck_assert_msg(frame_header_decode(b, &d, &why) == FRAME_BAD, "poke %zu accepted", i);
        ck_assert_ptr_nonnull(why);
    }
    const frame_header bad[] = {
        {FRAME_DATA, FRAME_MODE_OTP, 0, 0, 0, 0},                     /* empty DATA */
        {FRAME_DATA, FRAME_MODE_OTP, 0, 0, 0, FRAME_MAX_PAYLOAD + 1}, /* too long */
        {FRAME_FIN, FRAME_MODE_OTP, 0, 0, 0, 1},                      /* FIN with a body */
        {FRAME_OPEN, FRAME_MODE_OTP, 0, 0, 0, FRAME_MAX_DEST + 1},    /* destination too long */
        {FRAME_KEYS, FRAME_MODE_OTP, 0, 0, 0, 0},                     /* no key_IDs */
        {FRAME_KEYS, FRAME_MODE_OTP, 0, 0, 0, 35},                    /* not whole key_IDs */
        {FRAME_KEYS, FRAME_MODE_OTP, 0, 0, 0, 17 * 36},               /* too many */
        {FRAME_KEYS, FRAME_MODE_OTP, 0, 0, 1, 36},                    /* KEYS with an offset */
        {FRAME_KEYS, FRAME_MODE_OTP, 0, UINT32_MAX - 3, 0, 36},       /* indexes would wrap */
        {0, FRAME_MODE_OTP, 0, 0, 0, 1},
        {FRAME_DATA, 0, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(frame_header_encode(&bad[i], b, NULL) == FRAME_BAD, "encoded bad header %zu", i);
        /* Force the bytes and check the decoder refuses them too. */
        memcpy(b, good, sizeof b);
        b[4] = bad[i].type;
        b[5] = bad[i].mode;
        for (int k = 0; k < 4; k++) {
            b[16 + k] = (unsigned char)(bad[i].key_index >> (24 - 8 * k));
            b[20 + k] = (unsigned char)(bad[i].offset >> (24 - 8 * k));
            b[24 + k] = (unsigned char)(bad[i].length >> (24 - 8 * k));
        }
        ck_assert_msg(frame_header_decode(b, &d, NULL) == FRAME_BAD, "decoded bad header %zu", i);
    }
    const unsigned char *body, *tag;
    size_t used;
    memcpy(b, good, sizeof b);
    b[0] = 'q';
    ck_assert_int_eq(frame_decode(b, sizeof b, &d, &body, &tag, &used, NULL), FRAME_BAD);
}
END_TEST

START_TEST(keys_body_strict)
{
    char ids[FRAME_MAX_KEYS + 1][FRAME_KEY_ID_BYTES + 1], back[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
    unsigned char body[(FRAME_MAX_KEYS + 1) * FRAME_KEY_ID_BYTES];
    size_t n;
    for (size_t i = 0; i <= FRAME_MAX_KEYS; i++)
        snprintf(ids[i], sizeof ids[i], "00000000-0000-4000-8000-%012zx", i);
    const char(*cids)[FRAME_KEY_ID_BYTES + 1] = (const char(*)[FRAME_KEY_ID_BYTES + 1]) ids;
    ck_assert_int_eq(frame_keys_encode(cids, FRAME_MAX_KEYS, body, NULL), FRAME_OK);
    ck_assert_int_eq(frame_keys_decode(body, FRAME_MAX_KEYS * 36, back, &n, NULL), FRAME_OK);
    ck_assert_uint_eq(n, FRAME_MAX_KEYS);
    ck_assert_str_eq(back[15], ids[15]);
    ck_assert_int_eq(frame_keys_encode(cids, 0, body, NULL), FRAME_BAD);
    ck_assert_int_eq(frame_keys_encode(cids, FRAME_MAX_KEYS + 1, body, NULL), FRAME_BAD);
    ck_assert_int_eq(frame_keys_decode(body, 0, back, &n, NULL), FRAME_BAD);
    ck_assert_int_eq(frame_keys_decode(body, 37, back, &n, NULL), FRAME_BAD);

    static const char *const wrong[] = {
        "6F1B0E3C-1C7E-4B8E-9D0A-3F2B1C4D5E6F", /* upper case: not canonical */
        "6f1b0e3c-1c7e-4b8e-9d0a-3f2b1c4d5e6g", /* not hex */
        "6f1b0e3c11c7e-4b8e-9d0a-3f2b1c4d5e6f", /* misplaced dash */
    };
    for (size_t i = 0; i < 3; i++) {
        memcpy(body, wrong[i], 36);
        ck_assert_msg(frame_keys_decode(body, 36, back, &n, NULL) == FRAME_BAD, "accepted %s", wrong[i]);
        ck_assert_uint_eq(n, 0);
        strcpy(ids[0], wrong[i]);
        ck_assert_int_eq(frame_keys_encode(cids, 1, body, NULL), FRAME_BAD);
    }
    memcpy(body, ID[0], 36);
    body[10] = '\0';
    ck_assert_int_eq(frame_keys_decode(body, 36, back, &n, NULL), FRAME_BAD);
    memcpy(body, ID[1], 36);
    memcpy(body + 36, ID[1], 36);
    ck_assert_int_eq(frame_keys_decode(body, 72, back, &n, NULL), FRAME_BAD); /* duplicate */
}
END_TEST

/* ---- destinations -------------------------------------------------------------- */

START_TEST(destination_text)
{
    struct sockaddr_storage a, b;
    char text[DEST_TEXT_MAX];
    ck_assert_int_eq(dest_parse("10.1.2.3:1935", &a), 0);
    ck_assert_int_eq(dest_format((struct sockaddr *)&a, text, sizeof text), 0);
    ck_assert_str_eq(text, "10.1.2.3:1935");
    ck_assert_int_eq(dest_parse("[2001:db8::1]:1935", &b), 0);
    ck_assert_int_eq(dest_format((struct sockaddr *)&b, text, sizeof text), 0);
    ck_assert_str_eq(text, "[2001:db8::1]:1935");
    ck_assert_int_eq(dest_equal(&a, &b), 0);
    ck_assert_int_eq(dest_parse("[2001:0db8:0::1]:1935", &a), 0);
    ck_assert_int_eq(dest_equal(&a, &b), 1);
    ck_assert_int_eq(dest_parse("10.1.2.3:1936", &a), 0);
    ck_assert_int_eq(dest_parse("10.1.2.3:1935", &b), 0);
    ck_assert_int_eq(dest_equal(&a, &b), 0);
    static const char *const bad[] = {"",
                                      "10.1.2.3",
                                      "10.1.2.3:",
                                      "10.1.2.3:0",
                                      "10.1.2.3:65536",
                                      "10.1.2.3:01935",
                                      "10.1.2:1935",
                                      "host:1935",
                                      "2001:db8::1:1935",
                                      "[2001:db8::1]1935",
                                      "[10.1.2.3]:1935",
                                      "10.1.2.3:19a5",
                                      " 10.1.2.3:1935"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(dest_parse(bad[i], &a) < 0, "accepted '%s'", bad[i]);
}
END_TEST

/* ---- configuration ------------------------------------------------------------- */

static char cert_path[64];

static void make_cert(void)
{
    strcpy(cert_path, "/tmp/enc-unit-cert-XXXXXX");
    int fd = mkstemp(cert_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x\n", 2), 2);
    close(fd);
}

/* A server-side config with one extra setting text (may be empty). */
static int parse_with(const char *role_part, const char *extra, enc_config *c, char *err, size_t errlen)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{%s, \"peer_sae\": \"SAE_B\", \"kme\": {\"url\": \"https://localhost:8443\", \"cert\": \"%s\", \"key\": "
             "\"%s\", \"ca\": \"%s\"}%s%s}",
             role_part, cert_path, cert_path, cert_path, extra[0] ? ", " : "", extra);
    return enc_config_parse(text, c, err, errlen);
}

#define SERVER "\"role\": \"server\", \"listen\": \"0.0.0.0:7935\", \"connect\": \"127.0.0.1:19350\""
#define USERS "\"role\": \"users\", \"listen\": \"127.0.0.1:1935\", \"connect\": \"[::1]:7935\""

START_TEST(config_defaults_and_values)
{
    make_cert();
    enc_config c;
    char err[256] = "";
    ck_assert_msg(parse_with(SERVER, "", &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.role, ENC_ROLE_SERVER);
    ck_assert_str_eq(c.listen.host, "0.0.0.0");
    ck_assert_str_eq(c.listen.port, "7935");
    ck_assert_str_eq(c.connect.port, "19350");
    ck_assert_int_eq(c.mode, FRAME_MODE_OTP);
    ck_assert_int_eq(c.pad_key_bits, 65536);
    ck_assert_int_eq(c.low_watermark_bytes, 16 * 8192);
    ck_assert_int_eq(c.high_watermark_bytes, 64 * 8192);
    ck_assert_int_eq(c.transparent, 0);
    ck_assert_str_eq(c.log_level, "info");
    ck_assert_str_eq(c.kme_id, "");

    ck_assert_msg(parse_with(USERS,
                             "\"transparent\": true, \"mode\": \"aes-256-gcm\", \"rotate_bytes\": 1048576, "
                             "\"rotate_seconds\": 30, \"log_level\": \"debug\", \"announce_keys\": 8",
                             &c, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(c.role, ENC_ROLE_USERS);
    ck_assert_str_eq(c.connect.host, "::1");
    ck_assert_int_eq(c.transparent, 1);
    ck_assert_int_eq(c.mode, FRAME_MODE_GCM);
    ck_assert_int_eq(c.pad_key_bits, 256);
    ck_assert_uint_eq(c.rotate_bytes, 1048576);
    ck_assert_int_eq(c.rotate_seconds, 30);
    ck_assert_int_eq(c.announce_keys, 8);

    ck_assert_msg(parse_with("\"role\": \"server\", \"listen\": \"0.0.0.0:7935\"",
                             "\"allowed_destinations\": [\"10.0.0.5:1935\", \"[2001:db8::5]:1935\"]", &c, err,
                             sizeof err) == 0,
                  "%s", err);
    ck_assert_uint_eq(c.allowed_count, 2);
    ck_assert_str_eq(c.connect.host, "");

    char text[4096];
    snprintf(text, sizeof text,
             "{" SERVER ", \"peer_sae\": \"SAE_B\", \"kme\": {\"url\": \"https://localhost:8443\", \"kme_id\": "
             "\"KME_C\", \"cert\": \"%s\"}}",
             cert_path);
    ck_assert_msg(enc_config_parse(text, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c.kme_id, "KME_C");
    snprintf(text, sizeof text,
             "{" SERVER ", \"peer_sae\": \"SAE_B\", \"kme\": {\"url\": \"https://localhost:8443\", \"kme_id\": "
             "\"KME C\", \"cert\": \"%s\"}}",
             cert_path);
    ck_assert_int_lt(enc_config_parse(text, &c, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "kme.kme_id"));
    unlink(cert_path);
}
END_TEST

START_TEST(config_rejections)
{
    make_cert();
    static const struct {
        const char *role, *extra, *expect;
    } cases[] = {
        {SERVER, "\"colour\": 1", "unknown setting 'colour'"},
        {"\"role\": \"middle\", \"listen\": \"0.0.0.0:1\", \"connect\": \"1.2.3.4:5\"", "", "role"},
        {"\"role\": \"users\", \"listen\": \"0.0.0.0:1\"", "", "missing setting 'connect'"},
        {"\"role\": \"server\", \"listen\": \"0.0.0.0:1\"", "", "needs 'connect' or 'allowed_destinations'"},
        {"\"role\": \"users\", \"listen\": \"0.0.0.0\", \"connect\": \"1.2.3.4:5\"", "", "HOST:PORT"},
        {"\"role\": \"users\", \"listen\": \"0.0.0.0:70000\", \"connect\": \"1.2.3.4:5\"", "", "invalid port"},
        {"\"role\": \"users\", \"listen\": \"::1:1935\", \"connect\": \"1.2.3.4:5\"", "", "[ADDRESS]:PORT"},
        {SERVER, "\"transparent\": true", "'transparent' belongs to role \"users\""},
        {USERS, "\"allowed_destinations\": [\"1.2.3.4:5\"]", "belongs to role \"server\""},
        {SERVER, "\"allowed_destinations\": [\"example.com:1935\"]", "entry 1"},
        {SERVER, "\"transparent\": 1", "true or false"},
        {SERVER, "\"mode\": \"aes\"", "'mode'"},
        {SERVER, "\"rotate_bytes\": 65536", "belong to mode \"aes-256-gcm\""},
        {SERVER, "\"mode\": \"aes-256-gcm\"", "needs 'rotate_bytes' or 'rotate_seconds'"},
        {SERVER, "\"mode\": \"aes-256-gcm\", \"rotate_seconds\": 0", "from 1 to"},
        {SERVER, "\"mode\": \"aes-256-gcm\", \"rotate_seconds\": 5, \"pad_key_bits\": 512", "pad_key_bits"},
        {SERVER, "\"pad_key_bits\": 1001", "from 1024"},
        {SERVER, "\"pad_key_bits\": 1028", "multiple of 8"},
        {SERVER, "\"low_watermark_bytes\": 100000, \"high_watermark_bytes\": 50000", "low_watermark_bytes <="},
        {SERVER, "\"high_watermark_bytes\": 100, \"low_watermark_bytes\": 10", "at least one key"},
        {SERVER, "\"pad_batch_keys\": \"8\"", "'pad_batch_keys'"},
        {SERVER, "\"announce_keys\": 17", "'announce_keys'"},
        {SERVER, "\"log_level\": \"loud\"", "log_level"},
        {SERVER, "\"peer_sae\": \"SAE_C\"", "invalid JSON"}, /* duplicate key */
    };
    enc_config c;
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(parse_with(cases[i].role, cases[i].extra, &c, err, sizeof err) < 0, "case %zu accepted", i);
        ck_assert_msg(strstr(err, cases[i].expect), "case %zu: '%s' lacks '%s'", i, err, cases[i].expect);
    }
    ck_assert_int_lt(enc_config_parse("[1]", &c, err, sizeof err), 0);
    ck_assert_int_lt(enc_config_parse("{\"role\": \"users\", \"listen\": \"a:1\", \"connect\": \"b:2\", \"peer_sae\": "
                                      "\"SAE_B\", \"kme\": {\"url\": \"http://x:1\", \"cert\": \"/nonexistent\"}}",
                                      &c, err, sizeof err),
                     0);
    ck_assert_ptr_nonnull(strstr(err, "kme.cert"));
    ck_assert_int_lt(enc_config_parse("{\"role\": \"users\", \"listen\": \"a:1\", \"connect\": \"b:2\", \"peer_sae\": "
                                      "\"SAE/B\", \"kme\": {}}",
                                      &c, err, sizeof err),
                     0);
    ck_assert_ptr_nonnull(strstr(err, "peer_sae"));
    ck_assert_int_lt(enc_config_load("/nonexistent/enc.json", &c, err, sizeof err), 0);
    unlink(cert_path);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {
        header_round_trip, whole_frame_decode,         header_strict_rejections, keys_body_strict,
        destination_text,  config_defaults_and_values, config_rejections,        NULL};
    return run_checks("encryptor_frame", checks, 0, NULL, NULL);
}
