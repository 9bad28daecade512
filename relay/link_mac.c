/* One-time Poly1305 MACs keyed with link key, the canonical writer they are
 * computed over, and the read-only view of the peer's link key a receiver
 * checks a tag with (see link_mac.h). */
#include "relay/link_mac.h"
#include "api/kme_relay.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

int link_mac_from_lb(int lb_rc)
{
    switch (lb_rc) {
    case LB_OK:
        return LM_OK;
    case LB_SHORT:
        return LM_SHORT;
    case LB_INVALID:
        return LM_INVALID;
    case LB_REUSED:
        return LM_REUSED;
    default:
        return LM_FAILED;
    }
}

/* ---- canonical bytes ------------------------------------------------------------ */

void link_mac_put(link_mac_writer *w, const void *data, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, data, n);
    if (w->ctx && n && !EVP_MAC_update(w->ctx, data, n))
        w->failed = 1;
    w->n += n;
}

void link_mac_put_u32(link_mac_writer *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    link_mac_put(w, b, 4);
}

void link_mac_put_u64(link_mac_writer *w, uint64_t v)
{
    link_mac_put_u32(w, (uint32_t)(v >> 32));
    link_mac_put_u32(w, (uint32_t)v);
}

void link_mac_put_bytes(link_mac_writer *w, const void *data, size_t n)
{
    link_mac_put_u32(w, (uint32_t)n);
    link_mac_put(w, data, n);
}

void link_mac_put_str(link_mac_writer *w, const char *s)
{
    link_mac_put_bytes(w, s, strlen(s));
}

void link_mac_put_ranges(link_mac_writer *w, const kme_range *r, size_t n)
{
    link_mac_put_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        link_mac_put_u64(w, r[i].seq);
        link_mac_put_u32(w, r[i].offset);
        link_mac_put_u32(w, r[i].length);
    }
}

int link_mac_bytes(link_mac_encoder enc, const void *msg, unsigned char **buf, size_t *len)
{
    link_mac_writer w = {NULL, NULL, 0, 0};
    enc(&w, msg);
    size_t total = w.n;
    *buf = NULL;
    *len = 0;
    w.p = malloc(total ? total : 1);
    if (!w.p)
        return -1;
    w.n = 0;
    enc(&w, msg);
    *buf = w.p;
    *len = total;
    return 0;
}

/* ---- the one-time MAC --------------------------------------------------------------- */

int link_mac_tag(const unsigned char key[LINK_MAC_KEY_BYTES], link_mac_encoder enc, const void *msg,
                 unsigned char tag[LINK_MAC_TAG_BYTES])
{
    int ok = 0;
    size_t outl = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (ctx && EVP_MAC_init(ctx, key, LINK_MAC_KEY_BYTES, NULL)) {
        link_mac_writer w = {NULL, ctx, 0, 0};
        enc(&w, msg);
        ok = !w.failed && EVP_MAC_final(ctx, tag, &outl, LINK_MAC_TAG_BYTES) && outl == LINK_MAC_TAG_BYTES;
    }
    EVP_MAC_CTX_free(ctx); /* cleanses the key schedule */
    EVP_MAC_free(mac);
    if (!ok)
        OPENSSL_cleanse(tag, LINK_MAC_TAG_BYTES);
    return ok ? 0 : -1;
}

int link_mac_check(const unsigned char key[LINK_MAC_KEY_BYTES], link_mac_encoder enc, const void *msg,
                   const unsigned char tag[LINK_MAC_TAG_BYTES])
{
    unsigned char want[LINK_MAC_TAG_BYTES];
    if (link_mac_tag(key, enc, msg, want) < 0)
        return LM_FAILED;
    int match = CRYPTO_memcmp(want, tag, LINK_MAC_TAG_BYTES) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return match ? LM_OK : LM_BAD_TAG;
}

/* ---- link key ------------------------------------------------------------------------ */

int link_mac_read(kme_store *s, MDB_txn *txn, const lb_link *link, const lb_range *ranges, size_t n, unsigned char *out)
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
            return lb_is_spent(s, txn, link->peer_id, ranges[i].seq) ? LB_REUSED : LB_INVALID;
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

int link_mac_carve(kme_store *s, MDB_txn *txn, lb_link *link, size_t nbytes, unsigned char *out, kme_range *ranges,
                   size_t cap, size_t *n)
{
    *n = 0;
    return link_mac_from_lb(lb_allocate(s, txn, link, nbytes, out, ranges, cap, n));
}

int link_mac_take(kme_store *s, MDB_txn *txn, const lb_link *link, const kme_range *ranges, size_t n)
{
    return link_mac_from_lb(lb_take_peer_ranges(s, txn, link, ranges, n, NULL));
}
