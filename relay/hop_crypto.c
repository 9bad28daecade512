/* One relay hop's one-time pad and one-time MAC, the canonical MAC input, and
 * the read-only view of the peer's link key the receiver checks a tag with
 * (see hop_crypto.h). */
#include "relay/hop_crypto.h"
#include "runtime/otp_xor.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define HOP_DOMAIN "qkd-kme-relay-v1"

/* ---- canonical bytes ------------------------------------------------------------ */

/* Appends to p, or feeds the MAC ctx, or only counts when both are NULL. */
typedef struct {
    unsigned char *p;
    EVP_MAC_CTX *ctx;
    size_t n;
    int failed; /* an update of ctx failed */
} wbuf;

static void put(wbuf *w, const void *data, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, data, n);
    if (w->ctx && n && !EVP_MAC_update(w->ctx, data, n))
        w->failed = 1;
    w->n += n;
}

static void put_u32(wbuf *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    put(w, b, 4);
}

static void put_u64(wbuf *w, uint64_t v)
{
    put_u32(w, (uint32_t)(v >> 32));
    put_u32(w, (uint32_t)v);
}

static void put_bytes(wbuf *w, const void *data, size_t n)
{
    put_u32(w, (uint32_t)n);
    put(w, data, n);
}

static void put_str(wbuf *w, const char *s)
{
    put_bytes(w, s, strlen(s));
}

static void put_ranges(wbuf *w, const kme_range *r, size_t n)
{
    put_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u64(w, r[i].seq);
        put_u32(w, r[i].offset);
        put_u32(w, r[i].length);
    }
}

static void canonical(const kme_relay_msg *m, wbuf *w)
{
    size_t key_bytes = (size_t)m->size_bits / 8;
    put_str(w, HOP_DOMAIN);
    put_str(w, m->relay_id);
    put_str(w, m->origin);
    put_str(w, m->dest);
    put_str(w, m->master);
    put_u32(w, (uint32_t)m->slave_count);
    for (size_t i = 0; i < m->slave_count; i++)
        put_str(w, m->slaves[i]);
    put_u64(w, (uint64_t)m->size_bits);
    put_u64(w, (uint64_t)m->expires);
    put_u32(w, m->hops_left);
    put_u32(w, (uint32_t)m->key_count);
    for (size_t i = 0; i < m->key_count; i++) {
        put_str(w, m->key_ids[i]);
        put_bytes(w, m->ct + i * key_bytes, key_bytes);
    }
    put_ranges(w, m->pad, m->pad_count);
    put_ranges(w, m->mac_key, m->mac_key_count);
}

int hop_canonical_bytes(const kme_relay_msg *msg, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (kme_relay_check(msg, NULL) < 0)
        return -1;
    wbuf w = {NULL, NULL, 0, 0};
    canonical(msg, &w);
    size_t total = w.n;
    w.p = malloc(total);
    if (!w.p)
        return -1;
    w.n = 0;
    canonical(msg, &w);
    *buf = w.p;
    *len = total;
    return 0;
}

/* ---- one-time MAC and pad ----------------------------------------------------------- */

/* The tag msg should carry under mac_key: Poly1305 over its canonical bytes,
 * fed as they are produced (no copy of the ciphertexts). msg has passed
 * kme_relay_check. */
static int expected_tag(const kme_relay_msg *msg, const unsigned char mac_key[HOP_MAC_KEY_BYTES],
                        unsigned char tag[HOP_TAG_BYTES])
{
    int ok = 0;
    size_t outl = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (ctx && EVP_MAC_init(ctx, mac_key, HOP_MAC_KEY_BYTES, NULL)) {
        wbuf w = {NULL, ctx, 0, 0};
        canonical(msg, &w);
        ok = !w.failed && EVP_MAC_final(ctx, tag, &outl, HOP_TAG_BYTES) && outl == HOP_TAG_BYTES;
    }
    EVP_MAC_CTX_free(ctx); /* cleanses the key schedule */
    EVP_MAC_free(mac);
    if (!ok)
        OPENSSL_cleanse(tag, HOP_TAG_BYTES);
    return ok ? 0 : -1;
}

static int lengths_ok(const kme_relay_msg *msg, const void *a, const void *b, size_t pad_len, const void *mac_key)
{
    return a && b && mac_key && kme_relay_check(msg, NULL) == 0 && pad_len == kme_relay_payload_bytes(msg);
}

int hop_seal(kme_relay_msg *msg, const unsigned char *keys_plain, const unsigned char *pad, size_t pad_len,
             const unsigned char mac_key[HOP_MAC_KEY_BYTES])
{
    if (!lengths_ok(msg, keys_plain, pad, pad_len, mac_key))
        return HOP_MALFORMED;
    otp_xor(msg->ct, keys_plain, pad, pad_len);
    if (expected_tag(msg, mac_key, msg->tag) < 0) {
        OPENSSL_cleanse(msg->ct, pad_len);
        OPENSSL_cleanse(msg->tag, HOP_TAG_BYTES);
        return HOP_FAILED;
    }
    return HOP_OK;
}

/* hop_open once the lengths are known to be right. */
static int open_checked(const kme_relay_msg *msg, const unsigned char *pad, size_t pad_len,
                        const unsigned char mac_key[HOP_MAC_KEY_BYTES], unsigned char *out_keys)
{
    unsigned char tag[HOP_TAG_BYTES];
    if (expected_tag(msg, mac_key, tag) < 0)
        return HOP_FAILED;
    int match = CRYPTO_memcmp(tag, msg->tag, HOP_TAG_BYTES) == 0;
    OPENSSL_cleanse(tag, sizeof tag);
    if (!match)
        return HOP_BAD_TAG;
    otp_xor(out_keys, msg->ct, pad, pad_len);
    return HOP_OK;
}

int hop_open(const kme_relay_msg *msg, const unsigned char *pad, size_t pad_len,
             const unsigned char mac_key[HOP_MAC_KEY_BYTES], unsigned char *out_keys)
{
    if (!lengths_ok(msg, pad, out_keys, pad_len, mac_key))
        return HOP_MALFORMED;
    return open_checked(msg, pad, pad_len, mac_key, out_keys);
}

/* ---- reading the peer's link key without spending it -------------------------------- */

int hop_read_ranges(kme_store *s, MDB_txn *txn, const lb_link *link, const lb_range *ranges, size_t n,
                    unsigned char *out)
{
    if (n == 0)
        return LB_OK;
    if (!ranges || !out)
        return LB_INVALID;
    /* Check every range before copying any byte. */
    for (size_t i = 0; i < n; i++) {
        lb_meta m;
        int rc = lb_get_meta(s, txn, link->peer_id, ranges[i].seq, &m);
        if (rc == MDB_NOTFOUND)
            return LB_INVALID;
        if (rc)
            return LB_DB;
        uint64_t end = (uint64_t)ranges[i].offset + ranges[i].length;
        if (m.state != LB_VERIFIED || m.owner != LB_OWNER_PEER || ranges[i].length == 0 || end > m.size)
            return LB_INVALID;
        if (lb_extents_overlap(&m, ranges[i].offset, (uint32_t)end))
            return LB_REUSED;
    }
    if (!kme_ranges_disjoint(ranges, n, NULL, 0))
        return LB_REUSED;
    return lb_read_ranges(s, txn, link->peer_id, ranges, n, out);
}

/* ---- both ends on a link ---------------------------------------------------------------- */

static int from_lb(int lrc)
{
    switch (lrc) {
    case LB_OK:
        return HOP_OK;
    case LB_SHORT:
        return HOP_SHORT;
    case LB_INVALID:
        return HOP_INVALID;
    case LB_REUSED:
        return HOP_REUSED;
    default:
        return HOP_FAILED;
    }
}

int hop_seal_from_link(kme_store *s, MDB_txn *txn, lb_link *link, kme_relay_msg *msg, const unsigned char *keys_plain,
                       size_t keys_len)
{
    if (!keys_plain || keys_len == 0 || keys_len != kme_relay_payload_bytes(msg) || !msg->ct || !msg->pad ||
        !msg->mac_key || msg->pad_cap == 0 || msg->mac_key_cap == 0)
        return HOP_MALFORMED;
    unsigned char mac_key[HOP_MAC_KEY_BYTES];
    unsigned char *pad = malloc(keys_len);
    int rc = pad ? HOP_OK : HOP_FAILED;
    msg->pad_count = msg->mac_key_count = 0;
    if (rc == HOP_OK)
        rc = from_lb(
            lb_allocate(s, txn, link, HOP_MAC_KEY_BYTES, mac_key, msg->mac_key, msg->mac_key_cap, &msg->mac_key_count));
    if (rc == HOP_OK)
        rc = from_lb(lb_allocate(s, txn, link, keys_len, pad, msg->pad, msg->pad_cap, &msg->pad_count));
    if (rc == HOP_OK)
        rc = hop_seal(msg, keys_plain, pad, keys_len, mac_key);
    OPENSSL_cleanse(mac_key, sizeof mac_key);
    if (pad) {
        OPENSSL_cleanse(pad, keys_len);
        free(pad);
    }
    if (rc != HOP_OK) {
        OPENSSL_cleanse(msg->ct, keys_len);
        OPENSSL_cleanse(msg->tag, HOP_TAG_BYTES);
        OPENSSL_cleanse(msg->pad, msg->pad_cap * sizeof *msg->pad);
        OPENSSL_cleanse(msg->mac_key, msg->mac_key_cap * sizeof *msg->mac_key);
        msg->pad_count = msg->mac_key_count = 0;
    }
    return rc;
}

lb_range *hop_ranges(const kme_relay_msg *msg, size_t *n)
{
    *n = msg->mac_key_count + msg->pad_count;
    lb_range *r = malloc(*n * sizeof *r);
    if (r) {
        memcpy(r, msg->mac_key, msg->mac_key_count * sizeof *r);
        memcpy(r + msg->mac_key_count, msg->pad, msg->pad_count * sizeof *r);
    }
    return r;
}

/* Reads the MAC key and pad of msg (MAC-key ranges first, into *ranges) and
 * opens it into keys (keys_len bytes), spending nothing. */
static int open_reading(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg, unsigned char *keys,
                        size_t keys_len, lb_range **ranges, size_t *n)
{
    if (!keys || kme_relay_check(msg, NULL) < 0 || keys_len != kme_relay_payload_bytes(msg))
        return HOP_MALFORMED;
    *ranges = hop_ranges(msg, n);
    unsigned char *link_bytes = malloc(HOP_MAC_KEY_BYTES + keys_len);
    int rc = *ranges && link_bytes ? HOP_OK : HOP_FAILED;
    if (rc == HOP_OK)
        rc = from_lb(hop_read_ranges(s, txn, link, *ranges, *n, link_bytes));
    if (rc == HOP_OK)
        rc = open_checked(msg, link_bytes + HOP_MAC_KEY_BYTES, keys_len, link_bytes, keys);
    if (link_bytes) {
        OPENSSL_cleanse(link_bytes, HOP_MAC_KEY_BYTES + keys_len);
        free(link_bytes);
    }
    return rc;
}

int hop_check_from_link(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg,
                        unsigned char *out_keys, size_t keys_len)
{
    lb_range *ranges = NULL;
    size_t n = 0;
    int rc = open_reading(s, txn, link, msg, out_keys, keys_len, &ranges, &n);
    free(ranges);
    if (rc != HOP_OK && out_keys && keys_len == kme_relay_payload_bytes(msg))
        OPENSSL_cleanse(out_keys, keys_len);
    return rc;
}

int hop_open_from_link(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg,
                       unsigned char *out_keys, size_t keys_len)
{
    if (!out_keys || keys_len != kme_relay_payload_bytes(msg))
        return HOP_MALFORMED;
    unsigned char *keys = malloc(keys_len ? keys_len : 1);
    lb_range *ranges = NULL;
    size_t n = 0;
    int rc = keys ? open_reading(s, txn, link, msg, keys, keys_len, &ranges, &n) : HOP_FAILED;
    if (rc == HOP_OK) /* authentic: now, and only now, the link key is spent */
        rc = from_lb(lb_take_peer_ranges(s, txn, link, ranges, n, NULL));
    if (rc == HOP_OK)
        memcpy(out_keys, keys, keys_len);
    if (keys) {
        OPENSSL_cleanse(keys, keys_len);
        free(keys);
    }
    free(ranges);
    return rc;
}

int hop_take_checked(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_relay_msg *msg)
{
    size_t n = 0;
    lb_range *ranges = hop_ranges(msg, &n);
    int rc = ranges ? from_lb(lb_take_peer_ranges(s, txn, link, ranges, n, NULL)) : HOP_FAILED;
    free(ranges);
    return rc;
}
