/* Unit tests of the encryptor's sealing: one-time pad + Poly1305
 * (encryptor/otp), AES-256-GCM (encryptor/gcm), the order in which a
 * direction consumes its keys (encryptor/stream_tx, stream_rx) and the pad
 * pool's watermarks (encryptor/pad_pool, with a stand-in for the KME). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "encryptor/config.h"
#include "encryptor/gcm.h"
#include "encryptor/otp.h"
#include "encryptor/pad_pool.h"
#include "encryptor/stream_rx.h"
#include "encryptor/stream_tx.h"

/* ---- helpers ------------------------------------------------------------------ */

static unsigned char *random_bytes(size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(RAND_bytes(b, (int)(n ? n : 1)), 1);
    return b;
}

/* A key as both ends hold it: the sender's copy (moved into stream_tx) and
 * the receiver's copy (kept in a keyring, as pad_in keeps it). */
static pad_key make_key(size_t len, const unsigned char *bytes)
{
    pad_key k = {.len = len};
    ck_assert_int_eq(uuid_generate(k.id), 0);
    k.bytes = malloc(len);
    memcpy(k.bytes, bytes, len);
    return k;
}

typedef struct {
    stream_tx tx;
    stream_rx rx;
    keyring rx_keys;
    unsigned char *copies[64]; /* the key bytes, to check slices against */
    size_t lens[64];
    size_t nkeys;
} pair;

static int rx_get(void *arg, uint32_t index, pad_key *out)
{
    const pad_key *k = keyring_get(arg, index);
    if (!k)
        return -1;
    *out = *k;
    return 0;
}

static void pair_init(pair *p, uint8_t mode, uint64_t rotate_bytes, int64_t rotate_seconds)
{
    memset(p, 0, sizeof *p);
    stx_init(&p->tx, mode, rotate_bytes, rotate_seconds);
    srx_init(&p->rx, mode);
    keyring_init(&p->rx_keys);
}

static void pair_free(pair *p)
{
    stx_free(&p->tx);
    keyring_free(&p->rx_keys);
    for (size_t i = 0; i < p->nkeys; i++)
        free(p->copies[i]);
}

/* Announces keys of the given lengths at the sender and delivers the KEYS
 * frame to the receiver, which "fetches" its copies. */
static void announce(pair *p, const size_t *lens, size_t n)
{
    pad_key keys[FRAME_MAX_KEYS];
    unsigned char frame[FRAME_MAX_BYTES];
    size_t len;
    for (size_t i = 0; i < n; i++) {
        unsigned char *b = random_bytes(lens[i]);
        keys[i] = make_key(lens[i], b);
        p->copies[p->nkeys] = b;
        p->lens[p->nkeys++] = lens[i];
    }
    ck_assert_int_eq(stx_announce(&p->tx, keys, n, frame, &len), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_null(keys[i].bytes); /* moved into the sender's ring */
    frame_header h;
    const unsigned char *body, *tag;
    size_t used;
    ck_assert_int_eq(frame_decode(frame, len, &h, &body, &tag, &used, NULL), FRAME_OK);
    char ids[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
    size_t got;
    ck_assert_int_eq(frame_keys_decode(body, h.length, ids, &got, NULL), FRAME_OK);
    ck_assert_uint_eq(got, n);
    ck_assert_int_eq(srx_keys(&p->rx, &h, got, NULL), SRX_OK);
    for (size_t i = 0; i < n; i++) {
        int64_t index = keyring_announce(&p->rx_keys, ids[i], 1000);
        ck_assert_int_ge(index, 0);
        pad_key k = make_key(lens[i], p->copies[p->nkeys - n + i]);
        strcpy(k.id, ids[i]);
        ck_assert_int_eq(keyring_fill(&p->rx_keys, (uint32_t)index, &k), 0);
    }
}

/* Seals n bytes at the sender; the frame goes to out (FRAME_MAX_BYTES). */
static size_t seal(pair *p, uint8_t type, const unsigned char *plain, size_t n, int64_t now, unsigned char *out)
{
    size_t len = 0;
    ck_assert_int_eq(stx_seal(&p->tx, type, plain, n, now, out, &len), 0);
    return len;
}

static int open_frame(pair *p, const unsigned char *frame, size_t len, unsigned char *plain)
{
    frame_header h;
    const unsigned char *body, *tag;
    size_t used;
    if (frame_decode(frame, len, &h, &body, &tag, &used, NULL) != FRAME_OK || used != len)
        return -100;
    return srx_open(&p->rx, frame, &h, body, tag, rx_get, &p->rx_keys, plain, NULL);
}

/* ---- one-time pad ---------------------------------------------------------------- */

START_TEST(otp_round_trip)
{
    unsigned char header[FRAME_HEADER_BYTES];
    frame_header h = {FRAME_DATA, FRAME_MODE_OTP, 3, 0, 0, 1000};
    ck_assert_int_eq(frame_header_encode(&h, header, NULL), FRAME_OK);
    unsigned char *slice = random_bytes(otp_slice_bytes(1000)), *plain = random_bytes(1000);
    unsigned char ct[1000], back[1000], tag[OTP_TAG_BYTES];
    ck_assert_int_eq(otp_seal(header, slice, plain, 1000, ct, tag), 0);
    for (size_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(ct[i], plain[i] ^ slice[OTP_MAC_KEY_BYTES + i]);
    unsigned char want[OTP_TAG_BYTES];
    ck_assert_int_eq(otp_poly1305(slice, header, ct, 1000, want), 0);
    ck_assert_int_eq(memcmp(want, tag, sizeof tag), 0);
    ck_assert_int_eq(otp_open(header, slice, ct, 1000, tag, back), 0);
    ck_assert_int_eq(memcmp(back, plain, 1000), 0);
    /* An empty body (FIN) still carries a tag over the header. */
    ck_assert_int_eq(otp_seal(header, slice, plain, 0, ct, tag), 0);
    ck_assert_int_eq(otp_open(header, slice, ct, 0, tag, back), 0);
    free(slice);
    free(plain);
}
END_TEST

/* Any single flipped bit in the header, the ciphertext or the tag fails, and
 * the receiver's output is left untouched. */
START_TEST(otp_flipped_bit_fails)
{
    unsigned char header[FRAME_HEADER_BYTES];
    frame_header h = {FRAME_DATA, FRAME_MODE_OTP, 77, 5, 320, 64};
    ck_assert_int_eq(frame_header_encode(&h, header, NULL), FRAME_OK);
    unsigned char *slice = random_bytes(otp_slice_bytes(64)), *plain = random_bytes(64);
    unsigned char ct[64], tag[OTP_TAG_BYTES], out[64];
    ck_assert_int_eq(otp_seal(header, slice, plain, 64, ct, tag), 0);
    for (size_t bit = 0; bit < 8 * (sizeof header + sizeof ct + sizeof tag); bit++) {
        unsigned char hb[sizeof header], cb[sizeof ct], tb[sizeof tag];
        memcpy(hb, header, sizeof hb);
        memcpy(cb, ct, sizeof cb);
        memcpy(tb, tag, sizeof tb);
        size_t byte = bit / 8;
        unsigned char mask = (unsigned char)(1u << (bit % 8));
        if (byte < sizeof hb)
            hb[byte] ^= mask;
        else if (byte < sizeof hb + sizeof cb)
            cb[byte - sizeof hb] ^= mask;
        else
            tb[byte - sizeof hb - sizeof cb] ^= mask;
        memset(out, 0x5a, sizeof out);
        ck_assert_msg(otp_open(hb, slice, cb, sizeof cb, tb, out) < 0, "bit %zu flipped undetected", bit);
        for (size_t i = 0; i < sizeof out; i++)
            ck_assert_uint_eq(out[i], 0x5a);
    }
    free(slice);
    free(plain);
}
END_TEST

/* A whole direction over keys of assorted sizes: every frame opens, and the
 * slices each frame consumed (MAC key, then pad) are disjoint, contiguous
 * from the first byte of each key, in key order, and a key is left only when
 * it has no room for another frame. */
START_TEST(otp_consumption_in_order_never_overlaps)
{
    pair p;
    pair_init(&p, FRAME_MODE_OTP, 0, 0);
    static const size_t lens[] = {128, 33, 257, 1000, 4096, 64, 20000, 40, 512};
    const size_t nk = sizeof lens / sizeof lens[0];
    announce(&p, lens, 4);
    announce(&p, lens + 4, nk - 4);
    unsigned char *used[16];
    for (size_t k = 0; k < nk; k++)
        used[k] = calloc(lens[k], 1);
    unsigned char frame[FRAME_MAX_BYTES], plain[FRAME_MAX_PAYLOAD], back[FRAME_MAX_PAYLOAD];
    uint32_t last_key = 0;
    uint64_t last_end = 0;
    size_t frames = 0, sizes[] = {1, 7, 100, 3000, 95, 16384, 31, 2};
    for (;;) {
        size_t room = stx_room(&p.tx, 0);
        if (!room)
            break;
        size_t n = sizes[frames % 8] < room ? sizes[frames % 8] : room;
        ck_assert_int_eq(RAND_bytes(plain, (int)n), 1);
        size_t len = seal(&p, FRAME_DATA, plain, n, 0, frame);
        frame_header h;
        ck_assert_int_eq(frame_header_decode(frame, &h, NULL), FRAME_OK);
        ck_assert_uint_eq(h.seq, frames + 2); /* after two KEYS frames */
        /* In order: same key right after the previous slice, or the next key
         * from its start once the previous one had no room left. */
        if (h.key_index == last_key) {
            ck_assert_uint_eq(h.offset, last_end);
        } else {
            ck_assert_uint_eq(h.key_index, last_key + 1);
            ck_assert_uint_eq(h.offset, 0);
            ck_assert_uint_lt(lens[last_key] - last_end, OTP_MIN_SLICE);
        }
        for (size_t i = h.offset; i < h.offset + otp_slice_bytes(n); i++) {
            ck_assert_uint_lt(i, lens[h.key_index]);
            ck_assert_msg(!used[h.key_index][i], "key %u byte %zu used twice", h.key_index, i);
            used[h.key_index][i] = 1;
        }
        /* The pad is the slice after the 32-byte MAC key. */
        const unsigned char *pad = p.copies[h.key_index] + h.offset + OTP_MAC_KEY_BYTES;
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(frame[FRAME_HEADER_BYTES + i], plain[i] ^ pad[i]);
        last_key = h.key_index;
        last_end = h.offset + otp_slice_bytes(n);
        memset(back, 0, n);
        ck_assert_int_eq(open_frame(&p, frame, len, back), SRX_OK);
        ck_assert_int_eq(memcmp(back, plain, n), 0);
        keyring_drop_before(&p.rx_keys, p.rx.cur);
        frames++;
    }
    ck_assert_uint_eq(last_key, nk - 1);
    ck_assert_uint_lt(lens[nk - 1] - last_end, OTP_MIN_SLICE);
    ck_assert_uint_eq(p.tx.keys_started, nk); /* even the 33-byte key carries one 1-byte frame */
    for (size_t k = 0; k < nk; k++)
        free(used[k]);
    pair_free(&p);
}
END_TEST

/* The receiver refuses replays, reordering, skipped key bytes and unannounced
 * keys before opening anything. */
START_TEST(receiver_enforces_order)
{
    pair p;
    pair_init(&p, FRAME_MODE_OTP, 0, 0);
    static const size_t lens[] = {1024, 1024};
    announce(&p, lens, 2);
    unsigned char f1[FRAME_MAX_BYTES], f2[FRAME_MAX_BYTES], back[FRAME_MAX_PAYLOAD], plain[100] = {1, 2, 3};
    size_t l1 = seal(&p, FRAME_DATA, plain, 100, 0, f1);
    size_t l2 = seal(&p, FRAME_DATA, plain, 100, 0, f2);
    ck_assert_int_eq(open_frame(&p, f2, l2, back), SRX_MALFORMED); /* out of order */
    ck_assert_int_eq(open_frame(&p, f1, l1, back), SRX_OK);
    ck_assert_int_eq(open_frame(&p, f1, l1, back), SRX_MALFORMED); /* replay */
    ck_assert_int_eq(open_frame(&p, f2, l2, back), SRX_OK);

    /* A forged frame that jumps to the next key while this one has room. */
    unsigned char forged[FRAME_MAX_BYTES];
    frame_header h = {FRAME_DATA, FRAME_MODE_OTP, p.rx.seq, 1, 0, 10};
    ck_assert_int_eq(frame_header_encode(&h, forged, NULL), FRAME_OK);
    memset(forged + FRAME_HEADER_BYTES, 0, 10 + OTP_TAG_BYTES);
    ck_assert_int_eq(open_frame(&p, forged, frame_wire_bytes(&h), back), SRX_MALFORMED);
    /* ... at the wrong offset, on an unannounced key, in the wrong mode. */
    h = (frame_header){FRAME_DATA, FRAME_MODE_OTP, p.rx.seq, 0, 0, 10};
    ck_assert_int_eq(frame_header_encode(&h, forged, NULL), FRAME_OK);
    ck_assert_int_eq(open_frame(&p, forged, frame_wire_bytes(&h), back), SRX_MALFORMED);
    h.key_index = 2;
    ck_assert_int_eq(frame_header_encode(&h, forged, NULL), FRAME_OK);
    ck_assert_int_eq(open_frame(&p, forged, frame_wire_bytes(&h), back), SRX_MALFORMED);
    h = (frame_header){FRAME_DATA, FRAME_MODE_GCM, p.rx.seq, 0, (uint32_t)p.rx.used, 10};
    ck_assert_int_eq(frame_header_encode(&h, forged, NULL), FRAME_OK);
    ck_assert_int_eq(open_frame(&p, forged, frame_wire_bytes(&h), back), SRX_MALFORMED);
    /* A frame running past the end of its key. */
    h = (frame_header){FRAME_DATA, FRAME_MODE_OTP, p.rx.seq, 0, (uint32_t)p.rx.used, 1024};
    ck_assert_int_eq(frame_header_encode(&h, forged, NULL), FRAME_OK);
    ck_assert_int_eq(open_frame(&p, forged, frame_wire_bytes(&h), back), SRX_MALFORMED);
    /* The right place but a made-up tag. */
    h.length = 10;
    ck_assert_int_eq(frame_header_encode(&h, forged, NULL), FRAME_OK);
    ck_assert_int_eq(open_frame(&p, forged, frame_wire_bytes(&h), back), SRX_BAD_TAG);
    /* KEYS with the wrong first index, or announcing too far ahead. */
    h = (frame_header){FRAME_KEYS, FRAME_MODE_OTP, p.rx.seq, 5, 0, 36};
    ck_assert_int_eq(srx_keys(&p.rx, &h, 1, NULL), SRX_MALFORMED);
    h.key_index = p.rx.announced;
    stream_rx saved = p.rx;
    int rc = SRX_OK;
    for (int i = 0; i < 10 && rc == SRX_OK; i++) {
        h.seq = p.rx.seq;
        h.key_index = p.rx.announced;
        rc = srx_keys(&p.rx, &h, FRAME_MAX_KEYS, NULL);
    }
    ck_assert_int_eq(rc, SRX_MALFORMED);
    ck_assert_uint_le(p.rx.announced - p.rx.cur, RX_MAX_AHEAD);
    p.rx = saved;
    pair_free(&p);
}
END_TEST

/* Every single-bit change of a sealed frame on the wire is refused, in both
 * modes, and nothing reaches the output. */
static void flip_every_bit(uint8_t mode, size_t key_len)
{
    pair p;
    pair_init(&p, mode, 0, mode == FRAME_MODE_GCM ? 60 : 0);
    size_t lens[] = {key_len};
    announce(&p, lens, 1);
    unsigned char frame[FRAME_MAX_BYTES], bad[FRAME_MAX_BYTES], out[64], plain[40];
    memset(plain, 'p', sizeof plain);
    size_t len = seal(&p, FRAME_DATA, plain, sizeof plain, 0, frame);
    for (size_t bit = 0; bit < 8 * len; bit++) {
        memcpy(bad, frame, len);
        bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        stream_rx saved = p.rx;
        memset(out, 0, sizeof out);
        ck_assert_msg(open_frame(&p, bad, len, out) != SRX_OK, "bit %zu flipped undetected", bit);
        ck_assert_msg(memchr(out, 'p', sizeof out) == NULL, "bit %zu: plaintext released", bit);
        ck_assert_uint_eq(p.rx.seq, saved.seq);
        p.rx = saved;
    }
    ck_assert_int_eq(open_frame(&p, frame, len, out), SRX_OK);
    ck_assert_int_eq(memcmp(out, plain, sizeof plain), 0);
    pair_free(&p);
}

START_TEST(flipped_bit_on_the_wire_fails)
{
    flip_every_bit(FRAME_MODE_OTP, 256);
    flip_every_bit(FRAME_MODE_GCM, GCM_KEY_BYTES);
}
END_TEST

/* ---- AES-256-GCM --------------------------------------------------------------- */

START_TEST(gcm_round_trip_and_tamper)
{
    unsigned char header[FRAME_HEADER_BYTES];
    frame_header h = {FRAME_DATA, FRAME_MODE_GCM, 12, 0, 0, 500};
    ck_assert_int_eq(frame_header_encode(&h, header, NULL), FRAME_OK);
    unsigned char *key = random_bytes(GCM_KEY_BYTES), *plain = random_bytes(500);
    unsigned char ct[500], back[500], tag[GCM_TAG_BYTES];
    ck_assert_int_eq(gcm_seal(header, 12, key, plain, 500, ct, tag), 0);
    ck_assert_int_ne(memcmp(ct, plain, 500), 0);
    ck_assert_int_eq(gcm_open(header, 12, key, ct, 500, tag, back), 0);
    ck_assert_int_eq(memcmp(back, plain, 500), 0);
    ck_assert_int_lt(gcm_open(header, 13, key, ct, 500, tag, back), 0); /* other nonce */
    tag[0] ^= 1;
    ck_assert_int_lt(gcm_open(header, 12, key, ct, 500, tag, back), 0);
    unsigned char nonce[GCM_NONCE_BYTES];
    gcm_nonce(0x0102030405060708ULL, nonce);
    static const unsigned char want[GCM_NONCE_BYTES] = {0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_int_eq(memcmp(nonce, want, sizeof want), 0);
    free(key);
    free(plain);
}
END_TEST

static int cmp_nonce(const void *a, const void *b)
{
    return memcmp(a, b, GCM_NONCE_BYTES);
}

/* Rotation every rotate_bytes and every rotate_seconds moves to the next
 * announced key; no nonce repeats across the whole direction. */
START_TEST(gcm_rotation_and_nonce_uniqueness)
{
    pair p;
    pair_init(&p, FRAME_MODE_GCM, 8192, 10);
    size_t lens[FRAME_MAX_KEYS];
    for (size_t i = 0; i < FRAME_MAX_KEYS; i++)
        lens[i] = GCM_KEY_BYTES;
    announce(&p, lens, FRAME_MAX_KEYS);
    enum { FRAMES = 200 };
    static unsigned char nonces[FRAMES][GCM_NONCE_BYTES];
    unsigned char frame[FRAME_MAX_BYTES], plain[3000], back[3000];
    int64_t now = 1000;
    uint32_t key = 0;
    uint64_t under_key = 0;
    size_t rotations = 0, n = 0;
    for (; n < FRAMES; n++) {
        if (n == 150)
            now += 11; /* time-based rotation */
        size_t room = stx_room(&p.tx, now);
        if (!room)
            announce(&p, lens, FRAME_MAX_KEYS), room = stx_room(&p.tx, now);
        ck_assert_uint_gt(room, 0);
        size_t len_plain = room < 1500 ? room : 1500;
        ck_assert_int_eq(RAND_bytes(plain, (int)len_plain), 1);
        size_t len = seal(&p, FRAME_DATA, plain, len_plain, now, frame);
        frame_header h;
        ck_assert_int_eq(frame_header_decode(frame, &h, NULL), FRAME_OK);
        if (h.key_index != key) {
            ck_assert_uint_eq(h.key_index, key + 1);
            ck_assert(under_key >= 8192 - 1500 || n == 150);
            key = h.key_index;
            under_key = 0;
            rotations++;
        }
        ck_assert_uint_eq(h.offset, under_key);
        under_key += len_plain;
        ck_assert_uint_le(under_key, 8192);
        gcm_nonce(h.seq, nonces[n]);
        ck_assert_int_eq(open_frame(&p, frame, len, back), SRX_OK);
        ck_assert_int_eq(memcmp(back, plain, len_plain), 0);
        keyring_drop_before(&p.rx_keys, p.rx.cur);
    }
    ck_assert_uint_ge(rotations, 30);
    qsort(nonces, FRAMES, GCM_NONCE_BYTES, cmp_nonce);
    for (size_t i = 1; i < FRAMES; i++)
        ck_assert_msg(memcmp(nonces[i - 1], nonces[i], GCM_NONCE_BYTES) != 0, "nonce reused");
    /* The time rule alone: an idle key is rotated once rotate_seconds passed. */
    ck_assert_uint_eq(gcm_room(1, 0, 9, 0, 10), FRAME_MAX_PAYLOAD);
    ck_assert_uint_eq(gcm_room(1, 0, 10, 0, 10), 0);
    ck_assert_uint_eq(gcm_room(0, 0, 100, 0, 10), FRAME_MAX_PAYLOAD); /* a fresh key always has room */
    ck_assert_uint_eq(gcm_room(8000, 0, 0, 8192, 0), 192);
    pair_free(&p);
}
END_TEST

/* ---- pad pool ---------------------------------------------------------------------- */

typedef struct {
    atomic_long requests, keys;
    atomic_int fail;
} fake_kme;

static int fake_fetch(void *arg, long number, long bits, etsi_key_container *out, char *err, size_t errlen)
{
    fake_kme *f = arg;
    atomic_fetch_add(&f->requests, 1);
    if (atomic_load(&f->fail)) {
        snprintf(err, errlen, "no key");
        return -1;
    }
    out->keys = calloc((size_t)number, sizeof *out->keys);
    out->count = (size_t)number;
    for (long i = 0; i < number; i++) {
        uuid_generate(out->keys[i].key_id);
        out->keys[i].key_len = (size_t)bits / 8;
        out->keys[i].key = random_bytes((size_t)bits / 8);
    }
    atomic_fetch_add(&f->keys, number);
    return 0;
}

static void wait_pooled(pad_pool *p, size_t at_least)
{
    pad_pool_stats st;
    for (int i = 0; i < 500; i++) {
        pad_pool_get_stats(p, &st);
        if (st.bytes_pooled >= at_least)
            return;
        usleep(10000);
    }
    ck_abort_msg("the pool did not fill");
}

START_TEST(pool_watermarks)
{
    enc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    strcpy(cfg.peer_sae, "SAE_C");
    cfg.pad_key_bits = 8192; /* 1 KiB keys */
    cfg.pad_batch_keys = 4;
    cfg.low_watermark_bytes = 8 * 1024;
    cfg.high_watermark_bytes = 20 * 1024;
    cfg.pad_max_age_seconds = 600;
    fake_kme f = {0};
    char err[256];
    pad_pool *p = pad_pool_start_with(&cfg, fake_fetch, &f, err, sizeof err);
    ck_assert_ptr_nonnull(p);
    wait_pooled(p, 20 * 1024);
    usleep(100000);
    pad_pool_stats st;
    pad_pool_get_stats(p, &st);
    ck_assert_uint_eq(st.bytes_pooled, 20 * 1024);  /* filled to the high watermark, no further */
    ck_assert_uint_eq(atomic_load(&f.requests), 5); /* in batches of at most 4 keys */

    /* Taking down to just above the low watermark fetches nothing. */
    pad_key keys[16];
    char seen[64][UUID_STR_LEN + 1];
    size_t nseen = 0;
    ck_assert_uint_eq(pad_pool_take(p, keys, 12, 0, NULL, NULL), 12);
    for (size_t i = 0; i < 12; i++) {
        strcpy(seen[nseen++], keys[i].id);
        ck_assert_uint_eq(keys[i].len, 1024);
        pad_key_clear(&keys[i]);
    }
    usleep(200000);
    ck_assert_uint_eq(atomic_load(&f.requests), 5);
    /* Below it, the fetcher refills up to the high watermark. */
    ck_assert_uint_eq(pad_pool_take(p, keys, 1, 0, NULL, NULL), 1);
    strcpy(seen[nseen++], keys[0].id);
    pad_key_clear(&keys[0]);
    wait_pooled(p, 20 * 1024);
    pad_pool_get_stats(p, &st);
    ck_assert_uint_eq(st.bytes_pooled, 20 * 1024);

    /* Empty pool, KME failing: a waiting taker gives up when cancelled, and
     * the wait is counted. */
    atomic_store(&f.fail, 1);
    while (pad_pool_take(p, keys, 16, 0, NULL, NULL) > 0)
        for (size_t i = 0; i < 16 && keys[i].bytes; i++) {
            if (nseen < 64)
                strcpy(seen[nseen++], keys[i].id);
            pad_key_clear(&keys[i]);
            memset(&keys[i], 0, sizeof keys[i]);
        }
    atomic_int cancel = 1;
    int waited = 0;
    ck_assert_uint_eq(pad_pool_take(p, keys, 1, 1, &cancel, &waited), 0);
    ck_assert_int_eq(waited, 1);
    pad_pool_get_stats(p, &st);
    ck_assert_uint_ge(st.waits, 1);
    /* Every key left the pool once. */
    for (size_t i = 0; i < nseen; i++)
        for (size_t j = i + 1; j < nseen; j++)
            ck_assert_str_ne(seen[i], seen[j]);
    pad_pool_stop(p);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {otp_round_trip,
                                   otp_flipped_bit_fails,
                                   otp_consumption_in_order_never_overlaps,
                                   receiver_enforces_order,
                                   flipped_bit_on_the_wire_fails,
                                   gcm_round_trip_and_tamper,
                                   gcm_rotation_and_nonce_uniqueness,
                                   pool_watermarks,
                                   NULL};
    return run_checks("encryptor_stream", checks, 60, NULL, NULL);
}
