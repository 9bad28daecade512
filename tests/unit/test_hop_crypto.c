/* Unit tests of one relay hop: the relay message codec (api/kme_relay, both
 * the JSON form and the binary form KMEs send), the
 * canonical MAC input, seal/open with one-time pad and one-time Poly1305
 * (relay/hop_crypto), and, on two real LMDB stores, that the receiver reads
 * its link key without spending it and spends it only after the tag verified. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "api/kme_relay.h"
#include "relay/hop_crypto.h"
#include "tests/unit/link_pair.h"

#define SENTINEL 0xa5

/* ---- messages without a store ------------------------------------------------------ */

/* A message of nkeys keys of bits bits with plausible ranges: the pad in
 * three pieces on seqs 2, 4 and 6, the MAC key in two pieces on seq 8. */
static void build(kme_relay_msg *m, size_t nkeys, long bits)
{
    ck_assert_int_eq(kme_relay_alloc(m, nkeys, bits, 8, 4), 0);
    ck_assert_int_eq(uuid_generate(m->relay_id), 0);
    strcpy(m->origin, "KME_A");
    strcpy(m->dest, "KME_C");
    strcpy(m->master, "SAE_A");
    strcpy(m->slaves[0], "SAE_C");
    strcpy(m->slaves[1], "SAE_C2");
    m->slave_count = 2;
    m->expires = 1900000000;
    m->hops_left = 4;
    for (size_t i = 0; i < nkeys; i++)
        ck_assert_int_eq(uuid_generate(m->key_ids[i]), 0);
    uint32_t total = (uint32_t)kme_relay_payload_bytes(m);
    ck_assert_uint_ge(total, 3);
    uint32_t a = total / 3 + 1, b = total / 4 + 1;
    m->pad[0] = (kme_range){2, 48, a};
    m->pad[1] = (kme_range){4, 100, b};
    m->pad[2] = (kme_range){6, 48, total - a - b};
    m->pad_count = 3;
    m->mac_key[0] = (kme_range){8, 48, 20};
    m->mac_key[1] = (kme_range){8, 68, 12};
    m->mac_key_count = 2;
}

typedef struct {
    kme_relay_msg m;
    unsigned char *keys, *pad;
    unsigned char mac[HOP_MAC_KEY_BYTES];
    size_t len;
    char *json;
} sealed;

static void seal_new(sealed *s, size_t nkeys, long bits)
{
    build(&s->m, nkeys, bits);
    s->len = kme_relay_payload_bytes(&s->m);
    s->keys = malloc(s->len);
    s->pad = malloc(s->len);
    ck_assert_ptr_nonnull(s->keys);
    ck_assert_ptr_nonnull(s->pad);
    RAND_bytes(s->keys, (int)s->len);
    RAND_bytes(s->pad, (int)s->len);
    RAND_bytes(s->mac, sizeof s->mac);
    ck_assert_int_eq(hop_seal(&s->m, s->keys, s->pad, s->len, s->mac), HOP_OK);
    s->json = kme_relay_to_json(&s->m);
    ck_assert_ptr_nonnull(s->json);
}

static void seal_free(sealed *s)
{
    etsi_text_free(s->json);
    OPENSSL_cleanse(s->keys, s->len);
    OPENSSL_cleanse(s->pad, s->len);
    free(s->keys);
    free(s->pad);
    kme_relay_clear(&s->m);
}

static void decode(const char *json, kme_relay_msg *out)
{
    etsi_problem p;
    ck_assert_msg(kme_relay_from_json(json, strlen(json), out, &p) == 0, "%s: %s", p.message, p.detail);
}

static int all_bytes(const unsigned char *b, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

START_TEST(round_trip)
{
    sealed s;
    seal_new(&s, 5, 256);
    kme_relay_msg back;
    decode(s.json, &back);
    ck_assert_str_eq(back.relay_id, s.m.relay_id);
    ck_assert_str_eq(back.origin, "KME_A");
    ck_assert_str_eq(back.dest, "KME_C");
    ck_assert_str_eq(back.slaves[1], "SAE_C2");
    ck_assert_uint_eq(back.key_count, 5);
    ck_assert_uint_eq(back.pad_count, 3);
    ck_assert_uint_eq(back.mac_key_count, 2);
    ck_assert_mem_eq(back.tag, s.m.tag, HOP_TAG_BYTES);
    ck_assert_mem_eq(back.ct, s.m.ct, s.len);
    ck_assert(memcmp(back.ct, s.keys, s.len) != 0); /* the keys do not travel in clear */
    unsigned char *out = malloc(s.len);
    ck_assert_int_eq(hop_open(&back, s.pad, s.len, s.mac, out), HOP_OK);
    ck_assert_mem_eq(out, s.keys, s.len);
    /* Encoding the decoded message gives the same text. */
    char *again = kme_relay_to_json(&back);
    ck_assert_str_eq(again, s.json);
    etsi_text_free(again);
    OPENSSL_cleanse(out, s.len);
    free(out);
    kme_relay_clear(&back);
    ck_assert_ptr_null(back.ct);
    ck_assert_uint_eq(back.key_count, 0);
    seal_free(&s);
}
END_TEST

static void decode_wire(const unsigned char *body, size_t len, kme_relay_msg *out)
{
    etsi_problem p;
    ck_assert_msg(kme_relay_from_wire(body, len, out, &p) == 0, "%s: %s", p.message, p.detail);
}

/* The head length a binary body announces. */
static size_t wire_head_len(const unsigned char *body)
{
    return (size_t)body[0] << 24 | (size_t)body[1] << 16 | (size_t)body[2] << 8 | body[3];
}

START_TEST(wire_round_trip)
{
    sealed s;
    seal_new(&s, 5, 256);
    size_t len = 0;
    unsigned char *body = kme_relay_to_wire(&s.m, &len);
    ck_assert_ptr_nonnull(body);
    /* Prefix, head, the raw ciphertext, the tag: no key material in the head. */
    size_t head_len = wire_head_len(body);
    ck_assert_uint_eq(len, KME_RELAY_WIRE_PREFIX + head_len + s.len + HOP_TAG_BYTES);
    ck_assert_int_eq(body[KME_RELAY_WIRE_PREFIX], '{');
    ck_assert_int_eq(body[KME_RELAY_WIRE_PREFIX + head_len - 1], '}');
    ck_assert_mem_eq(body + KME_RELAY_WIRE_PREFIX + head_len, s.m.ct, s.len);
    ck_assert_mem_eq(body + len - HOP_TAG_BYTES, s.m.tag, HOP_TAG_BYTES);
    ck_assert_ptr_null(memmem(body, len, s.keys, 8));
    kme_relay_msg back, from_json;
    decode_wire(body, len, &back);
    decode(s.json, &from_json);
    ck_assert_str_eq(back.relay_id, s.m.relay_id);
    ck_assert_str_eq(back.master, "SAE_A");
    ck_assert_str_eq(back.slaves[1], "SAE_C2");
    ck_assert_uint_eq(back.key_count, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(back.key_ids[i], s.m.key_ids[i]);
    ck_assert_uint_eq(back.pad_count, 3);
    ck_assert_uint_eq(back.mac_key_count, 2);
    ck_assert_mem_eq(back.ct, s.m.ct, s.len);
    ck_assert_mem_eq(back.tag, s.m.tag, HOP_TAG_BYTES);
    /* Both forms carry the same message: the same canonical bytes. */
    unsigned char *cw, *cj;
    size_t cw_len, cj_len;
    ck_assert_int_eq(hop_canonical_bytes(&back, &cw, &cw_len), 0);
    ck_assert_int_eq(hop_canonical_bytes(&from_json, &cj, &cj_len), 0);
    ck_assert_uint_eq(cw_len, cj_len);
    ck_assert_mem_eq(cw, cj, cw_len);
    free(cw);
    free(cj);
    unsigned char *out = malloc(s.len);
    ck_assert_int_eq(hop_open(&back, s.pad, s.len, s.mac, out), HOP_OK);
    ck_assert_mem_eq(out, s.keys, s.len);
    /* Encoding the decoded message gives the same bytes. */
    size_t again_len = 0;
    unsigned char *again = kme_relay_to_wire(&back, &again_len);
    ck_assert_uint_eq(again_len, len);
    ck_assert_mem_eq(again, body, len);
    /* A flipped bit of the ciphertext or of the tag still decodes, and fails the tag. */
    for (size_t at = KME_RELAY_WIRE_PREFIX + head_len; at < len; at += 7) {
        kme_relay_msg flipped;
        body[at] ^= 0x20;
        decode_wire(body, len, &flipped);
        memset(out, SENTINEL, s.len);
        ck_assert_msg(hop_open(&flipped, s.pad, s.len, s.mac, out) == HOP_BAD_TAG, "byte %zu", at);
        ck_assert(all_bytes(out, s.len, SENTINEL));
        kme_relay_clear(&flipped);
        body[at] ^= 0x20;
    }
    /* The encoder refuses what the decoder would refuse. */
    s.m.pad[0].length--;
    ck_assert_ptr_null(kme_relay_to_wire(&s.m, &again_len));
    ck_assert_uint_eq(again_len, 0);
    s.m.pad[0].length++;
    free(again);
    free(body);
    OPENSSL_cleanse(out, s.len);
    free(out);
    kme_relay_clear(&back);
    kme_relay_clear(&from_json);
    seal_free(&s);
}
END_TEST

START_TEST(limits_accepted)
{
    /* 1024 keys of 8 bits and 65 slaves are within bounds. */
    sealed s;
    build(&s.m, KME_RELAY_MAX_KEYS, 8);
    s.m.slave_count = KME_MAX_SLAVES;
    for (size_t i = 0; i < KME_MAX_SLAVES; i++)
        snprintf(s.m.slaves[i], ETSI_ID_MAX + 1, "SAE_%zu", i);
    unsigned char keys[KME_RELAY_MAX_KEYS], pad[KME_RELAY_MAX_KEYS], mac[32] = {1}, out[KME_RELAY_MAX_KEYS];
    RAND_bytes(keys, sizeof keys);
    RAND_bytes(pad, sizeof pad);
    ck_assert_int_eq(hop_seal(&s.m, keys, pad, sizeof pad, mac), HOP_OK);
    char *json = kme_relay_to_json(&s.m);
    ck_assert_ptr_nonnull(json);
    kme_relay_msg back;
    decode(json, &back);
    ck_assert_int_eq(hop_open(&back, pad, sizeof pad, mac, out), HOP_OK);
    ck_assert_mem_eq(out, keys, sizeof keys);
    kme_relay_clear(&back);
    etsi_text_free(json);
    kme_relay_clear(&s.m);
}
END_TEST

START_TEST(pad_consumed_in_order_across_keys)
{
    kme_relay_msg m;
    build(&m, 3, 24 * 8);
    unsigned char zero[72] = {0}, pad[72], keys[72], mac[32] = {7}, out[72];
    for (int i = 0; i < 72; i++)
        pad[i] = (unsigned char)(i + 1);
    /* All-zero keys: the ciphertext is the pad itself, key i getting pad bytes [24i, 24i+24). */
    ck_assert_int_eq(hop_seal(&m, zero, pad, sizeof pad, mac), HOP_OK);
    for (int k = 0; k < 3; k++)
        ck_assert_mem_eq(m.ct + 24 * k, pad + 24 * k, 24);
    RAND_bytes(keys, sizeof keys);
    ck_assert_int_eq(hop_seal(&m, keys, pad, sizeof pad, mac), HOP_OK);
    for (int i = 0; i < 72; i++)
        ck_assert_uint_eq(m.ct[i], keys[i] ^ pad[i]);
    ck_assert_int_eq(hop_open(&m, pad, sizeof pad, mac, out), HOP_OK);
    ck_assert_mem_eq(out + 48, keys + 48, 24);
    ck_assert_mem_eq(out, keys, 72);
    /* Lengths that do not match the message are refused. */
    ck_assert_int_eq(hop_seal(&m, keys, pad, 71, mac), HOP_MALFORMED);
    memset(out, SENTINEL, sizeof out);
    ck_assert_int_eq(hop_open(&m, pad, 71, mac, out), HOP_MALFORMED);
    ck_assert(all_bytes(out, sizeof out, SENTINEL));
    kme_relay_clear(&m);
}
END_TEST

/* ---- tampering ------------------------------------------------------------------------ */

typedef void (*mutation)(kme_relay_msg *m);
static void flip_ct_first(kme_relay_msg *m)
{
    m->ct[0] ^= 1;
}
static void flip_ct_key2(kme_relay_msg *m)
{
    m->ct[2 * m->size_bits / 8 + 5] ^= 0x80;
}
static void flip_ct_last(kme_relay_msg *m)
{
    m->ct[kme_relay_payload_bytes(m) - 1] ^= 0x10;
}
static void change_slave(kme_relay_msg *m)
{
    strcpy(m->slaves[1], "SAE_X");
}
static void drop_slave(kme_relay_msg *m)
{
    m->slave_count = 1;
}
static void swap_slaves(kme_relay_msg *m)
{
    char t[ETSI_ID_MAX + 1];
    strcpy(t, m->slaves[0]);
    strcpy(m->slaves[0], m->slaves[1]);
    strcpy(m->slaves[1], t);
}
static void change_master(kme_relay_msg *m)
{
    strcpy(m->master, "SAE_B");
}
static void change_origin(kme_relay_msg *m)
{
    strcpy(m->origin, "KME_B");
}
static void change_dest(kme_relay_msg *m)
{
    strcpy(m->dest, "KME_D");
}
static void change_relay_id(kme_relay_msg *m)
{
    m->relay_id[0] = m->relay_id[0] == '0' ? '1' : '0';
}
static void change_key_id(kme_relay_msg *m)
{
    m->key_ids[1][35] = m->key_ids[1][35] == '0' ? '1' : '0';
}
static void swap_keys(kme_relay_msg *m)
{
    char t[UUID_STR_LEN + 1];
    memcpy(t, m->key_ids[0], sizeof t);
    memcpy(m->key_ids[0], m->key_ids[1], sizeof t);
    memcpy(m->key_ids[1], t, sizeof t);
}
static void change_expires(kme_relay_msg *m)
{
    m->expires++;
}
static void change_hops_left(kme_relay_msg *m)
{
    m->hops_left--;
}
static void change_pad_offset(kme_relay_msg *m)
{
    m->pad[0].offset += 500;
}
static void change_pad_seq(kme_relay_msg *m)
{
    m->pad[1].seq = 10;
}
static void shift_pad_length(kme_relay_msg *m)
{
    m->pad[0].length--;
    m->pad[2].length++;
}
static void change_mac_range(kme_relay_msg *m)
{
    m->mac_key[1].offset += 100;
}
static void change_tag(kme_relay_msg *m)
{
    m->tag[15] ^= 1;
}

static const mutation mutations[] = {
    flip_ct_first,     flip_ct_key2,   flip_ct_last,     change_slave,     drop_slave, swap_slaves,    change_master,
    change_origin,     change_dest,    change_relay_id,  change_key_id,    swap_keys,  change_expires, change_hops_left,
    change_pad_offset, change_pad_seq, shift_pad_length, change_mac_range, change_tag,
};
#define NMUT (sizeof mutations / sizeof mutations[0])

START_TEST(tampered_message_fails_before_anything_else)
{
    sealed s;
    seal_new(&s, 4, 128);
    unsigned char *out = malloc(s.len);
    for (size_t i = 0; i < NMUT; i++) {
        kme_relay_msg m;
        decode(s.json, &m);
        mutations[i](&m);
        ck_assert_int_eq(kme_relay_check(&m, NULL), 0); /* still well formed: only the tag catches it */
        /* The mutated message survives the wire and still fails. */
        char *json = kme_relay_to_json(&m);
        ck_assert_ptr_nonnull(json);
        kme_relay_msg wire;
        decode(json, &wire);
        memset(out, SENTINEL, s.len);
        ck_assert_msg(hop_open(&m, s.pad, s.len, s.mac, out) == HOP_BAD_TAG, "mutation %zu", i);
        ck_assert_msg(hop_open(&wire, s.pad, s.len, s.mac, out) == HOP_BAD_TAG, "mutation %zu (wire)", i);
        ck_assert_msg(all_bytes(out, s.len, SENTINEL), "mutation %zu touched out_keys", i);
        etsi_text_free(json);
        kme_relay_clear(&wire);
        kme_relay_clear(&m);
    }
    /* A wrong MAC key: any flipped bit. */
    kme_relay_msg m;
    decode(s.json, &m);
    for (int bit = 0; bit < 8 * HOP_MAC_KEY_BYTES; bit += 37) {
        unsigned char wrong[HOP_MAC_KEY_BYTES];
        memcpy(wrong, s.mac, sizeof wrong);
        wrong[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        memset(out, SENTINEL, s.len);
        ck_assert_int_eq(hop_open(&m, s.pad, s.len, wrong, out), HOP_BAD_TAG);
        ck_assert(all_bytes(out, s.len, SENTINEL));
    }
    /* The untouched message still opens. */
    ck_assert_int_eq(hop_open(&m, s.pad, s.len, s.mac, out), HOP_OK);
    ck_assert_mem_eq(out, s.keys, s.len);
    kme_relay_clear(&m);
    OPENSSL_cleanse(out, s.len);
    free(out);
    seal_free(&s);
}
END_TEST

START_TEST(canonical_bytes_cover_every_field)
{
    sealed s;
    seal_new(&s, 4, 128);
    unsigned char *base, *other;
    size_t base_len, other_len;
    ck_assert_int_eq(hop_canonical_bytes(&s.m, &base, &base_len), 0);
    for (size_t i = 0; i < NMUT; i++) {
        kme_relay_msg m;
        decode(s.json, &m);
        mutations[i](&m);
        ck_assert_int_eq(hop_canonical_bytes(&m, &other, &other_len), 0);
        if (mutations[i] == change_tag)
            ck_assert(other_len == base_len && memcmp(other, base, base_len) == 0); /* the tag is not its own input */
        else
            ck_assert_msg(other_len != base_len || memcmp(other, base, base_len) != 0, "mutation %zu", i);
        free(other);
        kme_relay_clear(&m);
    }
    /* Length prefixes: moving a character between adjacent fields changes the bytes. */
    kme_relay_msg m;
    decode(s.json, &m);
    strcpy(m.slaves[0], "SAE_CS");
    strcpy(m.slaves[1], "AE_C2");
    ck_assert_int_eq(hop_canonical_bytes(&m, &other, &other_len), 0);
    unsigned char *third;
    size_t third_len;
    strcpy(m.slaves[0], "SAE_C");
    strcpy(m.slaves[1], "SAE_C2");
    ck_assert_int_eq(hop_canonical_bytes(&m, &third, &third_len), 0);
    ck_assert_uint_eq(third_len, base_len);
    ck_assert_mem_eq(third, base, base_len);
    ck_assert(other_len != base_len || memcmp(other, base, base_len) != 0);
    free(other);
    free(third);
    /* A malformed message has no canonical form. */
    m.pad_count = 2;
    ck_assert_int_eq(hop_canonical_bytes(&m, &other, &other_len), -1);
    ck_assert_ptr_null(other);
    kme_relay_clear(&m);
    free(base);
    seal_free(&s);
}
END_TEST

/* ---- codec rejection ---------------------------------------------------------------------- */

static void expect_rejected_text(const char *text, const char *what)
{
    kme_relay_msg out;
    etsi_problem p;
    memset(&p, 0, sizeof p);
    ck_assert_msg(kme_relay_from_json(text, strlen(text), &out, &p) == -1, "accepted: %s", what);
    ck_assert_msg(p.message[0] != '\0', "no problem set: %s", what);
    ck_assert_ptr_null(out.ct);
    ck_assert_ptr_null(out.key_ids);
    ck_assert_uint_eq(out.key_count, 0);
}

static void expect_rejected(json_t *j, const char *what)
{
    char *text = json_dumps(j, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    expect_rejected_text(text, what);
    free(text);
    json_decref(j);
}

static json_t *with(json_t *good, const char *name, json_t *value)
{
    json_t *j = json_deep_copy(good);
    json_object_set_new(j, name, value);
    return j;
}

static json_t *with_in_array(json_t *good, const char *name, size_t index, json_t *value)
{
    json_t *j = json_deep_copy(good);
    json_array_set_new(json_object_get(j, name), index, value);
    return j;
}

START_TEST(codec_rejects)
{
    sealed s;
    seal_new(&s, 3, 64); /* 24 bytes: pad ranges 9, 7, 8 on seqs 2, 4, 6 */
    json_error_t jerr;
    json_t *good = json_loads(s.json, 0, &jerr);
    ck_assert_ptr_nonnull(good);
    static const char *const members[] = {"relay_id", "origin",    "dest", "master", "slaves",  "size",
                                          "expires",  "hops_left", "keys", "pad",    "mac_key", "tag"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        json_t *j = json_deep_copy(good);
        json_object_del(j, members[i]);
        expect_rejected(j, members[i]);
        expect_rejected(with(good, members[i], json_null()), members[i]);
    }
    expect_rejected(with(good, "extra", json_true()), "unknown member");
    json_t *j = json_deep_copy(good);
    json_object_set_new(json_array_get(json_object_get(j, "keys"), 0), "extra", json_true());
    expect_rejected(j, "unknown key member");

    expect_rejected(with(good, "relay_id", json_string("not-a-uuid")), "relay_id");
    expect_rejected(with(good, "origin", json_string("KME/A")), "origin");
    expect_rejected(with(good, "dest", json_string("KME_A")), "origin == dest");
    expect_rejected(with(good, "master", json_string("")), "master");
    expect_rejected(with(good, "size", json_integer(12)), "size not a multiple of 8");
    expect_rejected(with(good, "size", json_integer(0)), "size 0");
    expect_rejected(with(good, "size", json_integer(-64)), "negative size");
    expect_rejected(with(good, "size", json_string("64")), "size as a string");
    expect_rejected(with(good, "size", json_integer(72)), "size not matching ct");
    expect_rejected(with(good, "size", json_integer(1L << 25)), "size too large");
    expect_rejected(with(good, "expires", json_integer(-1)), "expires");
    expect_rejected(with(good, "hops_left", json_integer(0)), "hops_left");
    expect_rejected(with(good, "hops_left", json_integer(256)), "hops_left beyond the wire maximum");
    /* Any hop limit up to 255 decodes: a chain of 255 links can be crossed. */
    json_t *far = with(good, "hops_left", json_integer(KME_RELAY_MAX_HOPS));
    char *far_text = json_dumps(far, JSON_COMPACT);
    kme_relay_msg far_msg;
    etsi_problem far_p;
    ck_assert_int_eq(kme_relay_from_json(far_text, strlen(far_text), &far_msg, &far_p), 0);
    ck_assert_uint_eq(far_msg.hops_left, 255);
    kme_relay_clear(&far_msg);
    free(far_text);
    json_decref(far);
    expect_rejected(with(good, "tag", json_string("00112233445566778899aabbccddeef")), "tag of 31 digits");
    expect_rejected(with(good, "tag", json_string("zz112233445566778899aabbccddeeff")), "tag not hex");
    expect_rejected(with(good, "tag", json_string("+0112233445566778899aabbccddeeff")), "tag with a sign");

    /* slaves */
    expect_rejected(with(good, "slaves", json_array()), "no slaves");
    expect_rejected(with(good, "slaves", json_pack("[s,s]", "SAE_C", "SAE_C")), "duplicate slaves");
    expect_rejected(with(good, "slaves", json_pack("[s,i]", "SAE_C", 5)), "slave not a string");
    expect_rejected(with(good, "slaves", json_pack("[s]", "SAE C")), "slave not an ID");
    json_t *many = json_array();
    for (int i = 0; i < KME_MAX_SLAVES + 1; i++) {
        char id[16];
        snprintf(id, sizeof id, "SAE_%d", i);
        json_array_append_new(many, json_string(id));
    }
    expect_rejected(with(good, "slaves", many), "66 slaves");

    /* keys */
    expect_rejected(with(good, "keys", json_array()), "no keys");
    json_t *k0 = json_array_get(json_object_get(good, "keys"), 0);
    json_t *too_many = json_array();
    for (int i = 0; i < KME_RELAY_MAX_KEYS + 1; i++)
        json_array_append_new(too_many, json_deep_copy(k0));
    expect_rejected(with(good, "keys", too_many), "1025 keys");
    j = json_deep_copy(good);
    json_array_set_new(json_object_get(j, "keys"), 1, json_deep_copy(k0));
    expect_rejected(j, "duplicate key_IDs");
    const char *id0 = json_string_value(json_object_get(k0, "key_ID"));
    expect_rejected(with_in_array(good, "keys", 0, json_pack("{s:s,s:s}", "key_ID", id0, "ct", "AAAA")), "short ct");
    expect_rejected(with_in_array(good, "keys", 0, json_pack("{s:s,s:s}", "key_ID", id0, "ct", "AAAAAAAAAAAA")),
                    "long ct");
    expect_rejected(with_in_array(good, "keys", 0, json_pack("{s:s,s:s}", "key_ID", id0, "ct", "AAAA*AAAAAA=")),
                    "ct not base64");
    expect_rejected(with_in_array(good, "keys", 0, json_pack("{s:s,s:s}", "key_ID", "x", "ct", "AAAAAAAAAAA=")),
                    "key_ID not a UUID");
    expect_rejected(with_in_array(good, "keys", 0, json_pack("{s:s}", "key_ID", id0)), "no ct");
    expect_rejected(with_in_array(good, "keys", 0, json_string("AAAAAAAAAAA=")), "key not an object");

    /* ranges */
    expect_rejected(with(good, "pad", json_array()), "no pad");
    expect_rejected(with(good, "pad", json_pack("[[I,I,I],[I,I,I]]", 2LL, 48LL, 9LL, 4LL, 100LL, 7LL)),
                    "pad short of the keys");
    expect_rejected(
        with(good, "pad", json_pack("[[I,I,I],[I,I,I],[I,I,I]]", 2LL, 48LL, 9LL, 4LL, 100LL, 7LL, 6LL, 48LL, 9LL)),
        "pad longer than the keys");
    expect_rejected(
        with(good, "pad", json_pack("[[I,I,I],[I,I,I],[I,I,I]]", 2LL, 48LL, 9LL, 2LL, 50LL, 7LL, 6LL, 48LL, 8LL)),
        "overlapping pad ranges");
    expect_rejected(with_in_array(good, "pad", 1, json_pack("[I,I]", 4LL, 100LL)), "range of two numbers");
    expect_rejected(with_in_array(good, "pad", 1, json_pack("[I,I,I]", -4LL, 100LL, 7LL)), "negative seq");
    expect_rejected(with_in_array(good, "pad", 1, json_pack("[I,I,I]", 4LL, 4294967295LL, 7LL)), "range past 2^32");
    expect_rejected(with_in_array(good, "pad", 1, json_pack("[I,I,s]", 4LL, 100LL, "7")), "length as a string");
    expect_rejected(with(good, "pad",
                         json_pack("[[I,I,I],[I,I,I],[I,I,I],[I,I,I]]", 2LL, 48LL, 9LL, 4LL, 100LL, 7LL, 6LL, 48LL, 8LL,
                                   6LL, 60LL, 0LL)),
                    "range of length 0");
    expect_rejected(with(good, "mac_key", json_pack("[[I,I,I]]", 8LL, 48LL, 31LL)), "31-byte MAC key");
    expect_rejected(with(good, "mac_key", json_pack("[[I,I,I]]", 8LL, 48LL, 33LL)), "33-byte MAC key");
    expect_rejected(with(good, "mac_key", json_pack("[[I,I,I]]", 2LL, 40LL, 32LL)), "MAC key overlapping the pad");
    expect_rejected(with(good, "mac_key", json_array()), "no MAC key");
    json_t *ranges = json_array();
    for (int i = 0; i < KME_RELAY_MAX_RANGES; i++)
        json_array_append_new(ranges, json_pack("[I,I,I]", (json_int_t)(100 + i), 48LL, 1LL));
    expect_rejected(with(good, "pad", ranges), "65536 pad ranges plus the MAC key");

    /* not JSON, not an object, duplicate members */
    expect_rejected_text("{", "truncated");
    expect_rejected_text("[]", "array");
    expect_rejected_text("", "empty");
    char *dup = malloc(strlen(s.json) + 32);
    sprintf(dup, "{\"size\":64,%s", s.json + 1);
    expect_rejected_text(dup, "duplicate member");
    free(dup);

    /* The encoder refuses what the decoder would refuse. */
    s.m.pad[0].length--;
    ck_assert_ptr_null(kme_relay_to_json(&s.m));
    s.m.pad[0].length++;
    strcpy(s.m.dest, s.m.origin);
    ck_assert_ptr_null(kme_relay_to_json(&s.m));
    json_decref(good);
    seal_free(&s);
}
END_TEST

static void expect_wire_rejected(const unsigned char *body, size_t len, const char *what)
{
    kme_relay_msg out;
    etsi_problem p;
    memset(&p, 0, sizeof p);
    ck_assert_msg(kme_relay_from_wire(body, len, &out, &p) == -1, "accepted: %s", what);
    ck_assert_msg(p.message[0] != '\0', "no problem set: %s", what);
    ck_assert_ptr_null(out.ct);
    ck_assert_ptr_null(out.key_ids);
    ck_assert_uint_eq(out.key_count, 0);
}

/* A binary body: announced head length, the head text, then tail. */
static unsigned char *wire_body(size_t announced, const char *head, const unsigned char *tail, size_t tail_len,
                                size_t *len)
{
    size_t head_len = strlen(head);
    *len = KME_RELAY_WIRE_PREFIX + head_len + tail_len;
    unsigned char *b = malloc(*len);
    ck_assert_ptr_nonnull(b);
    b[0] = (unsigned char)(announced >> 24);
    b[1] = (unsigned char)(announced >> 16);
    b[2] = (unsigned char)(announced >> 8);
    b[3] = (unsigned char)announced;
    memcpy(b + KME_RELAY_WIRE_PREFIX, head, head_len);
    memcpy(b + KME_RELAY_WIRE_PREFIX + head_len, tail, tail_len);
    return b;
}

/* The head j (consumed) before the good body's ciphertext and tag. */
static void expect_head_rejected(json_t *j, const unsigned char *tail, size_t tail_len, const char *what)
{
    char *head = json_dumps(j, JSON_COMPACT);
    ck_assert_ptr_nonnull(head);
    size_t len;
    unsigned char *b = wire_body(strlen(head), head, tail, tail_len, &len);
    expect_wire_rejected(b, len, what);
    free(b);
    free(head);
    json_decref(j);
}

START_TEST(wire_rejects_malformed_bodies)
{
    sealed s;
    seal_new(&s, 3, 64); /* 24 bytes of ciphertext */
    size_t len = 0;
    unsigned char *good = kme_relay_to_wire(&s.m, &len);
    ck_assert_ptr_nonnull(good);
    size_t head_len = wire_head_len(good);
    const unsigned char *tail = good + KME_RELAY_WIRE_PREFIX + head_len;
    size_t tail_len = len - KME_RELAY_WIRE_PREFIX - head_len;
    char *head = strndup((const char *)good + KME_RELAY_WIRE_PREFIX, head_len);
    json_error_t jerr;
    json_t *good_head = json_loads(head, 0, &jerr);
    ck_assert_ptr_nonnull(good_head);
    kme_relay_msg ok;
    decode_wire(good, len, &ok);
    kme_relay_clear(&ok);

    /* Cut anywhere, or one byte too many. */
    for (size_t n = 0; n < len; n++)
        expect_wire_rejected(good, n, "truncated body");
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, good, len);
    longer[len] = 0;
    expect_wire_rejected(longer, len + 1, "a byte after the tag");
    free(longer);

    /* The announced head length. */
    size_t n;
    unsigned char *b;
    const size_t announced[] = {0, head_len - 1, head_len + 1, len, len - KME_RELAY_WIRE_PREFIX, SIZE_MAX >> 32};
    for (size_t i = 0; i < sizeof announced / sizeof announced[0]; i++) {
        b = wire_body(announced[i], head, tail, tail_len, &n);
        expect_wire_rejected(b, n, "wrong head length");
        free(b);
    }
    b = wire_body(2, "[]", tail, tail_len, &n);
    expect_wire_rejected(b, n, "head not an object");
    free(b);
    b = wire_body(head_len, head, tail, tail_len - 1, &n);
    expect_wire_rejected(b, n, "tag one byte short");
    free(b);

    /* The head: strict like the JSON form, without the ciphertexts or the tag. */
    static const char *const members[] = {"relay_id", "origin",    "dest",    "master", "slaves", "size",
                                          "expires",  "hops_left", "key_IDs", "pad",    "mac_key"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        json_t *j = json_deep_copy(good_head);
        json_object_del(j, members[i]);
        expect_head_rejected(j, tail, tail_len, members[i]);
        expect_head_rejected(with(good_head, members[i], json_null()), tail, tail_len, members[i]);
    }
    expect_head_rejected(with(good_head, "extra", json_true()), tail, tail_len, "unknown member");
    expect_head_rejected(with(good_head, "tag", json_string("00112233445566778899aabbccddeeff")), tail, tail_len,
                         "a tag in the head");
    json_t *j = json_deep_copy(good_head);
    json_object_set(j, "keys", json_object_get(good_head, "key_IDs"));
    json_object_del(j, "key_IDs");
    expect_head_rejected(j, tail, tail_len, "'keys' for 'key_IDs'");
    expect_head_rejected(with(good_head, "size", json_integer(128)), tail, tail_len, "size not matching the ct");
    expect_head_rejected(with(good_head, "size", json_integer(32)), tail, tail_len, "size not matching the ct");
    expect_head_rejected(with(good_head, "hops_left", json_integer(0)), tail, tail_len, "hops_left");
    expect_head_rejected(with(good_head, "hops_left", json_integer(256)), tail, tail_len, "hops_left 256");
    expect_head_rejected(with(good_head, "dest", json_string("KME_A")), tail, tail_len, "origin == dest");
    expect_head_rejected(with(good_head, "key_IDs", json_array()), tail, tail_len, "no key_IDs");
    expect_head_rejected(with_in_array(good_head, "key_IDs", 0, json_string("x")), tail, tail_len, "not a UUID");
    expect_head_rejected(with_in_array(good_head, "key_IDs", 0, json_integer(5)), tail, tail_len, "not a string");
    expect_head_rejected(with_in_array(good_head, "key_IDs", 0, json_pack("{s:s}", "key_ID", s.m.key_ids[0])), tail,
                         tail_len, "a JSON-form key");
    expect_head_rejected(with_in_array(good_head, "key_IDs", 1,
                                       json_deep_copy(json_array_get(json_object_get(good_head, "key_IDs"), 0))),
                         tail, tail_len, "duplicate key_IDs");
    j = json_deep_copy(good_head);
    json_array_append_new(json_object_get(j, "key_IDs"), json_string("0190a3c1-0000-7000-8000-000000000001"));
    expect_head_rejected(j, tail, tail_len, "a key_ID more than the ciphertext holds");
    expect_head_rejected(with(good_head, "pad", json_pack("[[I,I,I]]", 2LL, 48LL, 23LL)), tail, tail_len,
                         "pad short of the keys");
    expect_head_rejected(with(good_head, "mac_key", json_pack("[[I,I,I]]", 2LL, 40LL, 32LL)), tail, tail_len,
                         "MAC key overlapping the pad");
    char *dup = malloc(head_len + 32);
    sprintf(dup, "{\"size\":64,%s", head + 1);
    b = wire_body(strlen(dup), dup, tail, tail_len, &n);
    expect_wire_rejected(b, n, "duplicate member");
    free(b);
    free(dup);
    /* The JSON form is not a binary body. */
    expect_wire_rejected((const unsigned char *)s.json, strlen(s.json), "the JSON form");

    json_decref(good_head);
    free(head);
    free(good);
    seal_free(&s);
}
END_TEST

/* ---- on two real stores: A sends, B receives on link A-B ------------------------------------ */

/* Six identical verified blocks at both ends: A owns 2, 4, 6; B owns 1, 3, 5. */
static void link_ready(void)
{
    open_stores();
    ingest_both(1, 6, 0);
    verify_state v;
    verify_all(&v);
    ck_assert_int_eq(v.n, 6);
}

/* Every block's used extents at one end, as text. */
static void dump_extents(kme_store *s, const char *peer, char *out, size_t cap)
{
    MDB_txn *t;
    size_t n = 0;
    out[0] = '\0';
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    for (uint64_t seq = 1; seq <= 8; seq++) {
        lb_meta m;
        if (lb_get_meta(s, t, peer, seq, &m))
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%llu:%u:", (unsigned long long)seq, (unsigned)m.state);
        for (uint32_t i = 0; i < m.nused; i++)
            n += (size_t)snprintf(out + n, cap - n, "[%u,%u)", m.used[i].start, m.used[i].end);
        n += (size_t)snprintf(out + n, cap - n, ";");
        ck_assert_uint_lt(n, cap);
    }
    mdb_txn_abort(t);
}

static int range_used(kme_store *s, const char *peer, const lb_range *r)
{
    MDB_txn *t;
    lb_meta m;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(lb_get_meta(s, t, peer, r->seq, &m), 0);
    mdb_txn_abort(t);
    /* Every byte of the range is inside one used extent. */
    for (uint32_t i = 0; i < m.nused; i++)
        if (m.used[i].start <= r->offset && r->offset + r->length <= m.used[i].end)
            return 1;
    return 0;
}

/* Every pad and MAC-key range of m is spent in s (on the link to KME_A). */
static void assert_message_spent(kme_store *s, const kme_relay_msg *m)
{
    for (size_t i = 0; i < m->pad_count; i++)
        ck_assert(range_used(s, "KME_A", &m->pad[i]));
    for (size_t i = 0; i < m->mac_key_count; i++)
        ck_assert(range_used(s, "KME_A", &m->mac_key[i]));
}

/* Owner A carves the MAC key and the pad with lb_allocate. */
typedef struct {
    unsigned char mac[HOP_MAC_KEY_BYTES], pad[256];
    lb_range mac_r[8], pad_r[8];
    size_t nmac, npad, pad_len;
} carve_arg;
static int do_carve(kme_store *s, MDB_txn *t, void *a)
{
    carve_arg *c = a;
    int rc = lb_allocate(s, t, &la, HOP_MAC_KEY_BYTES, c->mac, c->mac_r, 8, &c->nmac);
    return rc ? rc : lb_allocate(s, t, &la, c->pad_len, c->pad, c->pad_r, 8, &c->npad);
}

/* Receiver B reads ranges without marking them. */
typedef struct {
    const lb_range *r;
    size_t n;
    unsigned char out[512];
    int rc;
} read_arg;
static int do_read(kme_store *s, MDB_txn *t, void *a)
{
    read_arg *x = a;
    x->rc = link_mac_read(s, t, &lb_, x->r, x->n, x->out);
    return 0; /* commit whatever the call did: it must have done nothing */
}
static int read_ro(const lb_range *r, size_t n, unsigned char *out)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(&sb, &t), 0);
    int rc = link_mac_read(&sb, t, &lb_, r, n, out);
    mdb_txn_abort(t);
    return rc;
}
static int do_take(kme_store *s, MDB_txn *t, void *a)
{
    read_arg *x = a;
    x->rc = lb_take_peer_ranges(s, t, &lb_, x->r, x->n, x->out);
    return x->rc;
}

START_TEST(receiver_reads_without_spending_then_takes_after_open)
{
    link_ready();
    carve_arg c;
    memset(&c, 0, sizeof c);
    c.pad_len = 4 * 32; /* four 256-bit keys */
    ck_assert_int_eq(store_commit(&sa, do_carve, &c), LB_OK);
    kme_relay_msg m;
    ck_assert_int_eq(kme_relay_alloc(&m, 4, 256, 8, 8), 0);
    uuid_generate(m.relay_id);
    strcpy(m.origin, "KME_A");
    strcpy(m.dest, "KME_C");
    strcpy(m.master, "SAE_A");
    strcpy(m.slaves[0], "SAE_C");
    m.slave_count = 1;
    m.expires = 1900000000;
    m.hops_left = 4;
    for (int i = 0; i < 4; i++)
        uuid_generate(m.key_ids[i]);
    memcpy(m.pad, c.pad_r, c.npad * sizeof *c.pad_r);
    m.pad_count = c.npad;
    memcpy(m.mac_key, c.mac_r, c.nmac * sizeof *c.mac_r);
    m.mac_key_count = c.nmac;
    unsigned char keys[128], out[128];
    RAND_bytes(keys, sizeof keys);
    ck_assert_int_eq(hop_seal(&m, keys, c.pad, c.pad_len, c.mac), HOP_OK);
    char *json = kme_relay_to_json(&m);
    kme_relay_msg rx;
    decode(json, &rx);

    char before[4096], after[4096];
    dump_extents(&sb, "KME_A", before, sizeof before);
    /* B reads the same bytes, in a read transaction and in a committed write one. */
    unsigned char mac_b[HOP_MAC_KEY_BYTES], pad_b[128];
    ck_assert_int_eq(read_ro(rx.mac_key, rx.mac_key_count, mac_b), LB_OK);
    ck_assert_int_eq(read_ro(rx.pad, rx.pad_count, pad_b), LB_OK);
    ck_assert_mem_eq(mac_b, c.mac, sizeof mac_b);
    ck_assert_mem_eq(pad_b, c.pad, sizeof pad_b);
    read_arg r = {rx.pad, rx.pad_count, {0}, -1};
    ck_assert_int_eq(store_commit(&sb, do_read, &r), 0);
    ck_assert_int_eq(r.rc, LB_OK);
    ck_assert_mem_eq(r.out, c.pad, sizeof pad_b);
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before); /* nothing marked */
    for (size_t i = 0; i < rx.pad_count; i++)
        ck_assert(!range_used(&sb, "KME_A", &rx.pad[i]));

    /* Open with B's copies, then spend them. */
    ck_assert_int_eq(hop_open(&rx, pad_b, sizeof pad_b, mac_b, out), HOP_OK);
    ck_assert_mem_eq(out, keys, sizeof keys);
    read_arg tp = {rx.pad, rx.pad_count, {0}, -1}, tm = {rx.mac_key, rx.mac_key_count, {0}, -1};
    ck_assert_int_eq(store_commit(&sb, do_take, &tp), LB_OK);
    ck_assert_int_eq(store_commit(&sb, do_take, &tm), LB_OK);
    ck_assert_mem_eq(tp.out, pad_b, sizeof pad_b);
    ck_assert_mem_eq(tm.out, mac_b, sizeof mac_b);
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_ne(after, before);
    assert_message_spent(&sb, &rx);
    /* Spent bytes are no longer readable. */
    ck_assert_int_eq(read_ro(rx.pad, rx.pad_count, pad_b), LB_REUSED);
    ck_assert_int_eq(read_ro(rx.mac_key, rx.mac_key_count, mac_b), LB_REUSED);

    etsi_text_free(json);
    kme_relay_clear(&rx);
    kme_relay_clear(&m);
    close_stores();
}
END_TEST

START_TEST(read_ranges_refusals)
{
    link_ready();
    ingest_both(7, 8, 0); /* 7 and 8: ingested, not verified */
    unsigned char out[512];
    char before[4096], after[4096];
    dump_extents(&sb, "KME_A", before, sizeof before);
    const lb_range own_block[] = {{1, 100, 10}}; /* B owns odd seqs */
    const lb_range unknown[] = {{99, 100, 10}};
    const lb_range unverified[] = {{8, 100, 10}};
    const lb_range past_end[] = {{2, BLOCK - 5, 10}};
    const lb_range empty[] = {{2, 100, 0}};
    const lb_range mac_area[] = {{2, 10, 10}}; /* bytes the verification tag used */
    const lb_range self_overlap[] = {{2, 100, 10}, {4, 100, 10}, {2, 105, 10}};
    const lb_range fine[] = {{2, 100, 10}, {4, 100, 10}, {2, 110, 10}};
    ck_assert_int_eq(read_ro(own_block, 1, out), LB_INVALID);
    ck_assert_int_eq(read_ro(unknown, 1, out), LB_INVALID);
    ck_assert_int_eq(read_ro(unverified, 1, out), LB_INVALID);
    ck_assert_int_eq(read_ro(past_end, 1, out), LB_INVALID);
    ck_assert_int_eq(read_ro(empty, 1, out), LB_INVALID);
    ck_assert_int_eq(read_ro(mac_area, 1, out), LB_REUSED);
    ck_assert_int_eq(read_ro(self_overlap, 3, out), LB_REUSED);
    ck_assert_int_eq(read_ro(fine, 3, out), LB_OK);
    /* Two adjacent ranges read the same bytes as the one range they make up. */
    const lb_range joined[] = {{2, 100, 20}};
    unsigned char whole[20];
    ck_assert_int_eq(read_ro(joined, 1, whole), LB_OK);
    ck_assert_mem_eq(out, whole, 10);
    ck_assert_mem_eq(out + 20, whole + 10, 10);
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    close_stores();
}
END_TEST

/* The two ends of a hop on the link, each in one store transaction. */
typedef struct {
    kme_relay_msg *m;
    const unsigned char *keys;
    unsigned char out[256];
    size_t len;
    int rc;
} hop_arg;
static int do_seal(kme_store *s, MDB_txn *t, void *a)
{
    hop_arg *h = a;
    h->rc = hop_seal_from_link(s, t, &la, h->m, h->keys, h->len);
    return h->rc; /* a failed seal must not keep its carving */
}
static int do_open(kme_store *s, MDB_txn *t, void *a)
{
    hop_arg *h = a;
    h->rc = hop_open_from_link(s, t, &lb_, h->m, h->out, h->len);
    /* Commit even a refused message: the test shows it wrote nothing. */
    return h->rc == HOP_OK || h->rc == HOP_BAD_TAG || h->rc == HOP_INVALID || h->rc == HOP_REUSED ? 0 : h->rc;
}

static int do_take_checked(kme_store *s, MDB_txn *t, void *a)
{
    hop_arg *h = a;
    h->rc = hop_take_checked(s, t, &lb_, h->m);
    /* Commit even a refused take: the test shows it wrote nothing. */
    return h->rc == HOP_OK || h->rc == HOP_INVALID || h->rc == HOP_REUSED ? 0 : h->rc;
}

static void fill_header(kme_relay_msg *m)
{
    uuid_generate(m->relay_id);
    strcpy(m->origin, "KME_A");
    strcpy(m->dest, "KME_C");
    strcpy(m->master, "SAE_A");
    strcpy(m->slaves[0], "SAE_C");
    m->slave_count = 1;
    m->expires = 1900000000;
    m->hops_left = 4;
    for (size_t i = 0; i < m->key_count; i++)
        uuid_generate(m->key_ids[i]);
}

START_TEST(tampered_hop_spends_nothing_at_the_receiver)
{
    link_ready();
    lb_stock a0 = pair_stock(&sa, &la), b0 = pair_stock(&sb, &lb_);
    kme_relay_msg m;
    ck_assert_int_eq(kme_relay_alloc(&m, 6, 256, 16, 4), 0); /* 192 bytes */
    fill_header(&m);
    unsigned char keys[192];
    RAND_bytes(keys, sizeof keys);
    hop_arg seal = {&m, keys, {0}, sizeof keys, -1};
    ck_assert_int_eq(store_commit(&sa, do_seal, &seal), 0);
    ck_assert_int_eq(seal.rc, HOP_OK);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, a0.owned_free - 192 - HOP_MAC_KEY_BYTES);
    char *json = kme_relay_to_json(&m);
    ck_assert_ptr_nonnull(json);

    char before[4096], after[4096];
    dump_extents(&sb, "KME_A", before, sizeof before);
    /* Forged or damaged versions: refused, out untouched, no byte spent at B. */
    for (int kind = 0; kind < 5; kind++) {
        kme_relay_msg rx;
        decode(json, &rx);
        int want = HOP_BAD_TAG;
        switch (kind) {
        case 0:
            rx.ct[100] ^= 4;
            break;
        case 1:
            rx.tag[0] ^= 1;
            break;
        case 2:
            strcpy(rx.slaves[0], "SAE_EVE");
            break;
        case 3:
            rx.pad[0].seq = 1;
            want = HOP_INVALID;
            break; /* a block B owns */
        case 4:
            rx.mac_key[0].offset = 0;
            want = HOP_REUSED;
            break; /* the verification bytes */
        }
        hop_arg h = {&rx, NULL, {0}, sizeof keys, -1};
        memset(h.out, SENTINEL, sizeof h.out);
        ck_assert_int_eq(store_commit(&sb, do_open, &h), 0);
        ck_assert_msg(h.rc == want, "kind %d: %d", kind, h.rc);
        ck_assert(all_bytes(h.out, sizeof h.out, SENTINEL));
        dump_extents(&sb, "KME_A", after, sizeof after);
        ck_assert_str_eq(after, before);
        kme_relay_clear(&rx);
    }
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, b0.peer_free);

    /* The read-only check: the genuine message opens, a damaged one does not,
     * and neither spends anything. */
    kme_relay_msg rx;
    decode(json, &rx);
    unsigned char seen[192];
    MDB_txn *rt;
    ck_assert_int_eq(store_read_begin(&sb, &rt), 0);
    ck_assert_int_eq(hop_check_from_link(&sb, rt, &lb_, &rx, seen, sizeof seen), HOP_OK);
    ck_assert_mem_eq(seen, keys, sizeof keys);
    rx.ct[7] ^= 1;
    ck_assert_int_eq(hop_check_from_link(&sb, rt, &lb_, &rx, seen, sizeof seen), HOP_BAD_TAG);
    ck_assert(all_bytes(seen, sizeof seen, 0));
    rx.ct[7] ^= 1;
    mdb_txn_abort(rt);
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);

    /* The genuine message opens and spends exactly its ranges. */
    hop_arg h = {&rx, NULL, {0}, sizeof keys, -1};
    ck_assert_int_eq(store_commit(&sb, do_open, &h), 0);
    ck_assert_int_eq(h.rc, HOP_OK);
    ck_assert_mem_eq(h.out, keys, sizeof keys);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, b0.peer_free - 192 - HOP_MAC_KEY_BYTES);
    assert_message_spent(&sb, &rx);
    /* Both ends now agree on what is spent. */
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, pair_stock(&sb, &lb_).peer_free);

    /* A replay is refused as reuse, out untouched. */
    dump_extents(&sb, "KME_A", before, sizeof before);
    memset(h.out, SENTINEL, sizeof h.out);
    ck_assert_int_eq(store_commit(&sb, do_open, &h), 0);
    ck_assert_int_eq(h.rc, HOP_REUSED);
    ck_assert(all_bytes(h.out, sizeof h.out, SENTINEL));
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);

    /* A seal that would need more link key than A owns: refused, nothing spent. */
    kme_relay_msg big;
    ck_assert_int_eq(kme_relay_alloc(&big, 1, 8 * 4096, 16, 4), 0);
    fill_header(&big);
    unsigned char *bk = calloc(1, 4096);
    lb_stock a1 = pair_stock(&sa, &la);
    hop_arg hb = {&big, bk, {0}, 4096, -1};
    ck_assert_int_eq(store_commit(&sa, do_seal, &hb), HOP_SHORT);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, a1.owned_free);
    ck_assert_uint_eq(big.pad_count, 0);
    free(bk);
    kme_relay_clear(&big);

    kme_relay_clear(&rx);
    etsi_text_free(json);
    kme_relay_clear(&m);
    close_stores();
}
END_TEST

/* How a KME receives a hop: the tag checked in a read transaction (nothing
 * spent), then the ranges taken in the commit that uses the keys. */
START_TEST(checked_in_a_read_then_taken_in_a_write)
{
    link_ready();
    lb_stock b0 = pair_stock(&sb, &lb_);
    kme_relay_msg m;
    ck_assert_int_eq(kme_relay_alloc(&m, 4, 256, 16, 4), 0); /* 128 bytes */
    fill_header(&m);
    unsigned char keys[128], seen[128];
    RAND_bytes(keys, sizeof keys);
    hop_arg seal = {&m, keys, {0}, sizeof keys, -1};
    ck_assert_int_eq(store_commit(&sa, do_seal, &seal), 0);
    ck_assert_int_eq(seal.rc, HOP_OK);
    size_t len = 0;
    unsigned char *body = kme_relay_to_wire(&m, &len);
    ck_assert_ptr_nonnull(body);
    char before[4096], after[4096];
    dump_extents(&sb, "KME_A", before, sizeof before);

    /* A bit flipped on the wire: the check refuses it and spends nothing. */
    kme_relay_msg rx;
    MDB_txn *rt;
    body[len - HOP_TAG_BYTES - 3] ^= 1;
    decode_wire(body, len, &rx);
    ck_assert_int_eq(store_read_begin(&sb, &rt), 0);
    ck_assert_int_eq(hop_check_from_link(&sb, rt, &lb_, &rx, seen, sizeof seen), HOP_BAD_TAG);
    mdb_txn_abort(rt);
    ck_assert(all_bytes(seen, sizeof seen, 0));
    kme_relay_clear(&rx);
    body[len - HOP_TAG_BYTES - 3] ^= 1;
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);

    /* The genuine message: checked, then taken. */
    decode_wire(body, len, &rx);
    ck_assert_int_eq(store_read_begin(&sb, &rt), 0);
    ck_assert_int_eq(hop_check_from_link(&sb, rt, &lb_, &rx, seen, sizeof seen), HOP_OK);
    mdb_txn_abort(rt);
    ck_assert_mem_eq(seen, keys, sizeof keys);
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    hop_arg h = {&rx, NULL, {0}, sizeof keys, -1};
    ck_assert_int_eq(store_commit(&sb, do_take_checked, &h), 0);
    ck_assert_int_eq(h.rc, HOP_OK);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, b0.peer_free - sizeof keys - HOP_MAC_KEY_BYTES);
    assert_message_spent(&sb, &rx);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, pair_stock(&sb, &lb_).peer_free);

    /* Taken once only: a replay, or a message racing for the same ranges
     * between its check and its commit, is refused and changes nothing. */
    dump_extents(&sb, "KME_A", before, sizeof before);
    ck_assert_int_eq(store_commit(&sb, do_take_checked, &h), 0);
    ck_assert_int_eq(h.rc, HOP_REUSED);
    dump_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_int_eq(store_read_begin(&sb, &rt), 0);
    ck_assert_int_eq(hop_check_from_link(&sb, rt, &lb_, &rx, seen, sizeof seen), HOP_REUSED);
    mdb_txn_abort(rt);

    free(body);
    kme_relay_clear(&rx);
    kme_relay_clear(&m);
    close_stores();
}
END_TEST

/* A head that announces far more ciphertext than the body carries (1024
 * keys of 2^24 bits: 2 GiB) is refused before the decoder reserves room
 * for it. Outside the sanitizers the check's process may address 512 MB
 * only, so a decoder that allocated first would fail with "out of memory". */
START_TEST(wire_head_announcing_more_than_the_body_is_refused_before_allocating)
{
#ifndef __SANITIZE_ADDRESS__
    struct rlimit as = {512UL << 20, 512UL << 20};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &as), 0);
#endif
    sealed s;
    seal_new(&s, 1, 64);
    size_t len = 0;
    unsigned char *good = kme_relay_to_wire(&s.m, &len);
    ck_assert_ptr_nonnull(good);
    size_t head_len = wire_head_len(good);
    const unsigned char *tail = good + KME_RELAY_WIRE_PREFIX + head_len;
    size_t tail_len = len - KME_RELAY_WIRE_PREFIX - head_len;
    json_error_t jerr;
    json_t *head = json_loadb((const char *)good + KME_RELAY_WIRE_PREFIX, head_len, 0, &jerr);
    ck_assert_ptr_nonnull(head);
    json_t *ids = json_array();
    for (int i = 0; i < KME_RELAY_MAX_KEYS; i++) {
        char id[UUID_STR_LEN + 1];
        snprintf(id, sizeof id, "0190a3c1-0000-7000-8000-%012x", i);
        json_array_append_new(ids, json_string(id));
    }
    json_t *j = with(head, "size", json_integer(KME_RELAY_MAX_SIZE_BITS));
    json_object_set_new(j, "key_IDs", ids);
    char *text = json_dumps(j, JSON_COMPACT);
    size_t n;
    unsigned char *b = wire_body(strlen(text), text, tail, tail_len, &n);
    kme_relay_msg out;
    etsi_problem p;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(kme_relay_from_wire(b, n, &out, &p), -1);
    ck_assert_str_eq(p.message, "malformed relay");
    ck_assert_ptr_null(out.ct);
    free(b);
    free(text);
    json_decref(j);
    json_decref(head);
    free(good);
    seal_free(&s);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {round_trip,
                                   wire_round_trip,
                                   limits_accepted,
                                   pad_consumed_in_order_across_keys,
                                   tampered_message_fails_before_anything_else,
                                   canonical_bytes_cover_every_field,
                                   codec_rejects,
                                   wire_rejects_malformed_bodies,
                                   wire_head_announcing_more_than_the_body_is_refused_before_allocating,
                                   receiver_reads_without_spending_then_takes_after_open,
                                   read_ranges_refusals,
                                   tampered_hop_spends_nothing_at_the_receiver,
                                   checked_in_a_read_then_taken_in_a_write,
                                   NULL};
    return run_checks("hop_crypto", checks, 60, NULL, NULL);
}
