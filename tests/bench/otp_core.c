/* otp_core: speed of the encryptor's one-time-pad core on one CPU core.
 * A payload (64 KiB by default) is cut into frames exactly as the sender
 * cuts a stream it can read in full: each frame takes otp_room() body bytes
 * of the current key (moving to the next key only when the current one has
 * no room), gets its header from frame_header_encode() and is sealed with
 * otp_seal(); the receiver's half decodes every frame with frame_decode()
 * and opens it with otp_open(). One operation is the encryption and the
 * decryption of the whole payload; the result is checked against the
 * payload. Encryption alone, decryption alone and Poly1305 alone over the
 * same frames are timed too, to show where the time goes (encryption minus
 * Poly1305 is the XOR and the framing). Each figure is the median time of
 * one operation over batches of about 5 ms, in the best of --rounds rounds
 * of --time seconds (the least disturbed on a shared machine); the best
 * batch and the worst round are given too. Prints one line of JSON on stdout.
 *
 *   otp_core [--payload BYTES] [--key-bits BITS] [--time SECONDS] [--rounds N]
 *
 * The pads are random bytes reused from one operation to the next: the
 * figure is the cost of the computation, not of fetching key material. */
#include <getopt.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "encryptor/frame.h"
#include "encryptor/otp.h"

#define MAX_BATCHES 4096

typedef struct {
    size_t key, offset, n; /* key index, first key byte used, body bytes */
} frame_plan;

static size_t payload_bytes = 65536, key_bytes = 8192;
static double run_seconds = 0.5;
static long rounds = 3;
static unsigned char *payload, *keys, *wire, *out;
static frame_plan *plan;
static size_t nframes, nkeys, wire_bytes;
static volatile unsigned char sink;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The sender's framing of the whole payload (stream_tx.c: stx_room, stx_seal). */
static int make_plan(void)
{
    size_t cap = payload_bytes + 1, key = 0, used = 0, done = 0; /* at least one byte per frame */
    plan = calloc(cap, sizeof *plan);
    if (!plan)
        return -1;
    while (done < payload_bytes) {
        size_t room = otp_room(key_bytes, used);
        if (!room) {
            key++;
            used = 0;
            continue;
        }
        size_t n = payload_bytes - done < room ? payload_bytes - done : room;
        plan[nframes++] = (frame_plan){key, used, n};
        used += otp_slice_bytes(n);
        done += n;
    }
    nkeys = key + 1;
    return 0;
}

static int encrypt_all(void)
{
    size_t pos = 0, done = 0;
    for (size_t i = 0; i < nframes; i++) {
        const frame_plan *f = &plan[i];
        frame_header h = {FRAME_DATA, FRAME_MODE_OTP, i, (uint32_t)f->key, (uint32_t)f->offset, (uint32_t)f->n};
        unsigned char *hdr = wire + pos, *ct = hdr + FRAME_HEADER_BYTES;
        if (frame_header_encode(&h, hdr, NULL) != FRAME_OK ||
            otp_seal(hdr, keys + f->key * key_bytes + f->offset, payload + done, f->n, ct, ct + f->n) < 0)
            return -1;
        pos += frame_wire_bytes(&h);
        done += f->n;
    }
    wire_bytes = pos;
    return 0;
}

static int decrypt_all(void)
{
    size_t pos = 0, done = 0;
    for (size_t i = 0; i < nframes; i++) {
        frame_header h;
        const unsigned char *body, *tag;
        size_t used;
        if (frame_decode(wire + pos, wire_bytes - pos, &h, &body, &tag, &used, NULL) != FRAME_OK || h.seq != i ||
            h.type != FRAME_DATA || h.key_index >= nkeys || h.offset + otp_slice_bytes(h.length) > key_bytes ||
            otp_open(wire + pos, keys + (size_t)h.key_index * key_bytes + h.offset, body, h.length, tag, out + done) <
                0)
            return -1;
        pos += used;
        done += h.length;
    }
    return done == payload_bytes ? 0 : -1;
}

/* The Poly1305 of encrypt_all alone. */
static int mac_all(void)
{
    unsigned char tag[OTP_TAG_BYTES];
    size_t done = 0;
    for (size_t i = 0; i < nframes; i++) {
        if (otp_poly1305(keys + plan[i].key * key_bytes + plan[i].offset, wire, payload + done, plan[i].n, tag) < 0)
            return -1;
        done += plan[i].n;
    }
    sink = tag[0];
    return 0;
}

static int round_trip(void)
{
    return encrypt_all() < 0 ? -1 : decrypt_all();
}

/* Runs op for about run_seconds in batches; the median and the best time
 * of one op in microseconds. */
static int measure_round(int (*op)(void), double *median_us, double *best_us)
{
    static double per_op[MAX_BATCHES];
    size_t reps = 1, batches = 0;
    /* batches of about 5 ms */
    for (;;) {
        uint64_t t0 = now_ns();
        for (size_t r = 0; r < reps; r++)
            if (op() < 0)
                return -1;
        if (now_ns() - t0 >= 5000000u || reps >= (1u << 20))
            break;
        reps *= 2;
    }
    uint64_t end = now_ns() + (uint64_t)(run_seconds * 1e9);
    while (batches < MAX_BATCHES && (batches < 5 || now_ns() < end)) {
        uint64_t t0 = now_ns();
        for (size_t r = 0; r < reps; r++)
            if (op() < 0)
                return -1;
        per_op[batches++] = (double)(now_ns() - t0) / 1e3 / (double)reps;
    }
    qsort(per_op, batches, sizeof *per_op, cmp_double);
    *median_us = per_op[batches / 2];
    *best_us = per_op[0];
    return 0;
}

typedef struct {
    double median_us; /* best round's median */
    double best_us;   /* best batch */
    double worst_us;  /* worst round's median */
} timing;

static int measure(int (*op)(void), timing *t)
{
    *t = (timing){0, 0, 0};
    for (long r = 0; r < rounds; r++) {
        double med, best;
        if (measure_round(op, &med, &best) < 0)
            return -1;
        if (r == 0 || med < t->median_us)
            t->median_us = med;
        if (r == 0 || best < t->best_us)
            t->best_us = best;
        if (med > t->worst_us)
            t->worst_us = med;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: otp_core [--payload BYTES] [--key-bits BITS] [--time SECONDS] [--rounds N]\n"
               "  --payload   bytes encrypted and decrypted per operation (65536)\n"
               "  --key-bits  size of each pad key, as the encryptor's pad_key_bits (65536)\n"
               "  --time      seconds per round of each measurement (0.5)\n"
               "  --rounds    rounds of each measurement, the best kept (3)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"payload", required_argument, NULL, 'p'}, {"key-bits", required_argument, NULL, 'k'},
        {"time", required_argument, NULL, 't'},    {"rounds", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'p':
            payload_bytes = strtoul(optarg, &end, 10);
            if (*end || payload_bytes < 1 || payload_bytes > (64u << 20))
                return usage(stderr), 2;
            break;
        case 'k': {
            unsigned long bits = strtoul(optarg, &end, 10);
            if (*end || bits % 8 || bits / 8 < OTP_MIN_SLICE || bits > (1u << 24))
                return usage(stderr), 2;
            key_bytes = bits / 8;
            break;
        }
        case 't':
            run_seconds = strtod(optarg, &end);
            if (*end || run_seconds <= 0 || run_seconds > 60)
                return usage(stderr), 2;
            break;
        case 'r':
            rounds = strtol(optarg, &end, 10);
            if (*end || rounds < 1 || rounds > 100)
                return usage(stderr), 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (make_plan() < 0)
        return fprintf(stderr, "otp_core: out of memory\n"), 1;
    payload = malloc(payload_bytes);
    out = malloc(payload_bytes);
    keys = malloc(nkeys * key_bytes);
    wire = malloc(payload_bytes + nframes * (FRAME_HEADER_BYTES + FRAME_TAG_BYTES));
    if (!payload || !out || !keys || !wire)
        return fprintf(stderr, "otp_core: out of memory\n"), 1;
    if (RAND_bytes(payload, (int)payload_bytes) != 1 || RAND_bytes(keys, (int)(nkeys * key_bytes)) != 1)
        return fprintf(stderr, "otp_core: no random bytes\n"), 1;

    /* Correctness first: the round trip gives the payload back, and a
     * flipped ciphertext bit is refused. */
    memset(out, 0, payload_bytes);
    if (round_trip() < 0 || memcmp(out, payload, payload_bytes) != 0)
        return fprintf(stderr, "otp_core: the round trip does not give the payload back\n"), 1;
    wire[FRAME_HEADER_BYTES] ^= 1;
    if (decrypt_all() == 0)
        return fprintf(stderr, "otp_core: a flipped ciphertext bit was accepted\n"), 1;
    wire[FRAME_HEADER_BYTES] ^= 1;

    timing rt, enc, dec, mac;
    if (measure(round_trip, &rt) < 0 || measure(encrypt_all, &enc) < 0 || measure(decrypt_all, &dec) < 0 ||
        measure(mac_all, &mac) < 0)
        return fprintf(stderr, "otp_core: an operation failed while timed\n"), 1;
    if (memcmp(out, payload, payload_bytes) != 0)
        return fprintf(stderr, "otp_core: wrong plaintext after the timed runs\n"), 1;

    size_t key_used = 0;
    for (size_t i = 0; i < nframes; i++)
        key_used += otp_slice_bytes(plan[i].n);
    double mb = (double)payload_bytes / 1e6, rest = enc.median_us - mac.median_us;
    printf("{\"payload_bytes\":%zu,\"key_bits\":%zu,\"frames\":%zu,\"keys\":%zu,\"wire_bytes\":%zu,"
           "\"key_bytes_used\":%zu,\"key_per_payload_byte\":%.4f,"
           "\"enc_dec_us\":%.2f,\"enc_dec_best_us\":%.2f,\"enc_dec_worst_round_us\":%.2f,\"enc_dec_mb_s\":%.1f,"
           "\"encrypt_us\":%.2f,\"encrypt_mb_s\":%.1f,\"decrypt_us\":%.2f,\"decrypt_mb_s\":%.1f,"
           "\"poly1305_us\":%.2f,\"poly1305_mb_s\":%.1f,\"xor_framing_us\":%.2f,"
           "\"per_frame_ns\":%.0f,\"time_s\":%.2f,\"rounds\":%ld}\n",
           payload_bytes, key_bytes * 8, nframes, nkeys, wire_bytes, key_used, (double)key_used / (double)payload_bytes,
           rt.median_us, rt.best_us, rt.worst_us, mb / (rt.median_us / 1e6), enc.median_us, mb / (enc.median_us / 1e6),
           dec.median_us, mb / (dec.median_us / 1e6), mac.median_us, mb / (mac.median_us / 1e6), rest > 0 ? rest : 0.0,
           rt.median_us * 1e3 / (double)(2 * nframes), run_seconds, rounds);
    free(plan);
    free(payload);
    free(out);
    free(keys);
    free(wire);
    return 0;
}
