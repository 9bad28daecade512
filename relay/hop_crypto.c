/* One relay hop's one-time pad and one-time MAC over its canonical bytes, on
 * the primitives of relay/link_mac.h (see hop_crypto.h). */
#include "relay/hop_crypto.h"
#include "runtime/otp_xor.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#define HOP_DOMAIN "qkd-kme-relay-v1"

/* ---- canonical bytes ------------------------------------------------------------ */

static void canonical(link_mac_writer *w, const void *msg)
{
    const kme_relay_msg *m = msg;
    size_t key_bytes = (size_t)m->size_bits / 8;
    link_mac_put_str(w, HOP_DOMAIN);
    link_mac_put_str(w, m->relay_id);
    link_mac_put_str(w, m->origin);
    link_mac_put_str(w, m->dest);
    link_mac_put_str(w, m->master);
    link_mac_put_u32(w, (uint32_t)m->slave_count);
    for (size_t i = 0; i < m->slave_count; i++)
        link_mac_put_str(w, m->slaves[i]);
    link_mac_put_u64(w, (uint64_t)m->size_bits);
    link_mac_put_u64(w, (uint64_t)m->expires);
    link_mac_put_u32(w, m->hops_left);
    link_mac_put_u32(w, (uint32_t)m->key_count);
    for (size_t i = 0; i < m->key_count; i++) {
        link_mac_put_str(w, m->key_ids[i]);
        link_mac_put_bytes(w, m->ct + i * key_bytes, key_bytes);
    }
    link_mac_put_ranges(w, m->pad, m->pad_count);
    link_mac_put_ranges(w, m->mac_key, m->mac_key_count);
}

int hop_canonical_bytes(const kme_relay_msg *msg, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (kme_relay_check(msg, NULL) < 0)
        return -1;
    return link_mac_bytes(canonical, msg, buf, len);
}

/* ---- one-time MAC and pad ----------------------------------------------------------- */

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
    if (link_mac_tag(mac_key, canonical, msg, msg->tag) < 0) {
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
    int rc = link_mac_check(mac_key, canonical, msg, msg->tag);
    if (rc != HOP_OK)
        return rc;
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

/* ---- both ends on a link ---------------------------------------------------------------- */

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
        rc = link_mac_from_lb(
            lb_allocate(s, txn, link, HOP_MAC_KEY_BYTES, mac_key, msg->mac_key, msg->mac_key_cap, &msg->mac_key_count));
    if (rc == HOP_OK)
        rc = link_mac_from_lb(lb_allocate(s, txn, link, keys_len, pad, msg->pad, msg->pad_cap, &msg->pad_count));
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
        rc = link_mac_from_lb(link_mac_read(s, txn, link, *ranges, *n, link_bytes));
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
        rc = link_mac_take(s, txn, link, ranges, n);
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
    int rc = ranges ? link_mac_take(s, txn, link, ranges, n) : HOP_FAILED;
    free(ranges);
    return rc;
}
