/* The key relay at the origin, at each KME on the way and at the destination (see relay.h). */
#include "relay/relay.h"
#include "api/kme_relay.h"
#include "store/key_records.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "relay/hop_crypto.h"
#include "relay/reserve.h"
#include "relay/router.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/crypto.h>

#define MAC_KEY_RANGES 8

enum { RELAY_OK = 0, RELAY_HOP = 1, RELAY_REPLAY = 2, RELAY_EXISTS = 3, RELAY_FAILED = 4 };

/* Room for the pad's ranges: the pad may span many link blocks. */
static size_t pad_cap_for(size_t bytes)
{
    size_t cap = 64 + bytes / 256;
    return cap < KME_RELAY_MAX_RANGES - MAC_KEY_RANGES ? cap : KME_RELAY_MAX_RANGES - MAC_KEY_RANGES;
}

/* ---- one hop out -------------------------------------------------------------- */

typedef struct {
    relay_link *in; /* the link a message came in on (NULL at the origin) */
    const kme_relay_msg *in_msg;
    relay_link *out;
    kme_relay_msg *out_msg;
    unsigned char *plain; /* the keys; at a KME on the way, recovered from in_msg */
    size_t len;
    int hop_rc;
} pass_arg;

/* Takes the incoming pad (when there is one; its tag was checked and plain
 * recovered by authentic) and seals with a new one. */
static int pass_op(kme_store *s, MDB_txn *txn, void *arg)
{
    pass_arg *a = arg;
    a->hop_rc = HOP_OK;
    if (a->in_msg)
        a->hop_rc = hop_take_checked(s, txn, &a->in->lb, a->in_msg);
    if (a->hop_rc == HOP_OK)
        a->hop_rc = hop_seal_from_link(s, txn, &a->out->lb, a->out_msg, a->plain, a->len);
    return a->hop_rc == HOP_OK ? RELAY_OK : RELAY_HOP;
}

/* Sends a sealed message on link l and waits for the answer, allowing hops
 * links ahead. 0 when the next KME answered 200; otherwise the ranges of the
 * message are settled and resp holds the error. */
static int send_sealed(relay_node *k, relay_link *l, unsigned hops, const kme_relay_msg *m, http_response *resp)
{
    size_t len = 0;
    unsigned char *body = kme_relay_to_wire(m, &len);
    peer_reply reply;
    memset(&reply, 0, sizeof reply);
    int rc = -1;
    if (body) {
        if (log_enabled(LOG_DEBUG)) {
            size_t n;
            kme_range *ranges = hop_ranges(m, &n);
            if (ranges)
                reserve_log_ranges(l, "relay", m->relay_id, ranges, n);
            free(ranges);
        }
        /* Ends early when the neighbour stops answering its heartbeats: the
         * routes move away from it within a few seconds, and so does the answer. */
        rc = peer_post_bytes_alive(k->peers, l->index, "/kme/v1/relay", KME_RELAY_WIRE_TYPE, body, len,
                                   (long)hops * k->cfg.peer_timeout_ms, &l->peer_up, &reply);
        OPENSSL_cleanse(body, len);
    } else {
        reply.not_sent = 1;
        snprintf(reply.error, sizeof reply.error, "out of memory");
    }
    free(body);
    if (rc == 0 && reply.http_status == 200) {
        atomic_store(&l->peer_up, 1);
        peer_reply_clear(&reply);
        return 0;
    }
    /* Not confirmed. Never sent: the bytes go back. Otherwise the ciphertext
     * and the tag may be on the wire whatever the neighbour recorded (an
     * answer lost, a refusal): pad and MAC key stay spent for good, as a
     * second message under them would pad twice and tag twice. */
    if (rc < 0 && atomic_exchange(&l->peer_up, 0))
        router_links_changed(k);
    if (rc < 0 && reply.not_sent) {
        size_t n;
        kme_range *ranges = hop_ranges(m, &n);
        if (!ranges || reserve_release_ranges(k, l, ranges, n) != 0)
            log_error("link %s: could not give back the ranges of relay %s; they stay spent", l->lb.peer_id,
                      m->relay_id);
        free(ranges);
    }
    /* One line per refused relay: at its origin, which answers the SAE; the
     * KMEs on the way pass the refusal back at debug level. */
    if (strcmp(m->origin, k->cfg.kme_id) == 0)
        log_warn("relay %s to %s via %s not confirmed: %s", m->relay_id, m->dest, l->lb.peer_id,
                 reply.error[0] ? reply.error : "refused");
    else
        log_debug("relay %s to %s via %s not confirmed: %s", m->relay_id, m->dest, l->lb.peer_id,
                  reply.error[0] ? reply.error : "refused");
    /* Every refusal names the KME that refused: this one when the next hop
     * could not be reached, else the next hop. One that already names a KME
     * further on goes back as it is, not wrapped once more per hop (the
     * reason would not fit). */
    etsi_problem why;
    if (rc < 0)
        http_error_refused(resp, 503, k->cfg.kme_id, "peer KME unreachable",
                           "KME %s (on the way to %s) could not be reached: %s", l->lb.peer_id, m->dest, reply.error);
    else if (reply.http_status == 503 && reply.body && etsi_error_from_json(reply.body, reply.len, &why) == 0 &&
             why.refused_by[0])
        http_error_refused(resp, 503, why.refused_by, why.message, "%s", why.detail);
    else
        http_error_refused(resp, 503, l->lb.peer_id, "key relay failed", "KME %s (on the way to %s) answered %ld: %s",
                           l->lb.peer_id, m->dest, reply.http_status, reply.error);
    peer_reply_clear(&reply);
    return -1;
}

static void hop_error(http_response *resp, int hop_rc, const char *link_peer)
{
    switch (hop_rc) {
    case HOP_SHORT:
        http_error(resp, 503, "not enough key material", "link to %s has too little key to relay these keys now",
                   link_peer);
        break;
    case HOP_BAD_TAG:
        http_error(resp, 400, "relay not authentic", "the tag does not authenticate the message; nothing was spent");
        break;
    case HOP_MALFORMED:
        http_error(resp, 400, "malformed relay", "the message does not match its pad");
        break;
    case HOP_INVALID:
        http_error(resp, 503, "link blocks not usable here", "a range is not in a block verified and owned by %s",
                   link_peer);
        break;
    case HOP_REUSED:
        http_error(resp, 409, "link key reused", "a range overlaps link key already used");
        break;
    default:
        http_error(resp, 503, "key store failure", "the relay could not be committed");
    }
}

/* Seals plain on the next link toward m's dest (taking in's pad first when
 * in_msg is set), sends, and waits for the answer. *via (may be NULL) is set
 * to the link chosen, NULL when there was no route. */
static int pass_on(relay_node *k, relay_link *in, const kme_relay_msg *in_msg, kme_relay_msg *out_msg,
                   unsigned char *plain, size_t len, relay_link **via, http_response *resp)
{
    unsigned hops = 0;
    relay_link *next = router_next_hop(k, out_msg->dest, &hops);
    if (via)
        *via = next != in ? next : NULL;
    if (!next || next == in) {
        http_error(resp, 503, "no route", "%s has no route to KME %s now", k->cfg.kme_id, out_msg->dest);
        return -1;
    }
    /* A relay passing through: its master pays this link's pad and MAC key. */
    long spent = in_msg ? (long)(len + HOP_MAC_KEY_BYTES) : 0;
    if (spent && k->hooks.spend && k->hooks.spend(k->hooks.ctx, out_msg->master, next, spent, resp) != 0)
        return -1;
    pass_arg a = {in, in_msg, next, out_msg, plain, len, HOP_OK};
    int rc = store_commit(k->store, pass_op, &a);
    if (rc != RELAY_OK) {
        if (spent && k->hooks.refund)
            k->hooks.refund(k->hooks.ctx, out_msg->master, next, spent);
        hop_error(resp, rc == RELAY_HOP ? a.hop_rc : HOP_FAILED,
                  rc == RELAY_HOP && a.hop_rc == HOP_SHORT ? next->lb.peer_id
                  : in                                     ? in->lb.peer_id
                                                           : next->lb.peer_id);
        return -1;
    }
    return send_sealed(k, next, hops, out_msg, resp);
}

/* ---- origin ------------------------------------------------------------------- */

/* One relay message carrying keys[0..count) to dest. */
static int relay_chunk(relay_node *k, const char *dest, const char *master, const char *const *slaves, size_t nslaves,
                       const etsi_key *keys, size_t count, long extra_ttl_s, http_response *resp)
{
    size_t key_bytes = keys[0].key_len, len = count * key_bytes;
    kme_relay_msg m;
    unsigned char *plain = malloc(len);
    if (!plain || kme_relay_alloc(&m, count, (long)key_bytes * 8, pad_cap_for(len), MAC_KEY_RANGES) < 0) {
        free(plain);
        http_error(resp, 503, "out of memory", NULL);
        return -1;
    }
    uuid_generate(m.relay_id);
    snprintf(m.origin, sizeof m.origin, "%s", k->cfg.kme_id);
    snprintf(m.dest, sizeof m.dest, "%s", dest);
    snprintf(m.master, sizeof m.master, "%s", master);
    for (size_t i = 0; i < nslaves; i++)
        snprintf(m.slaves[m.slave_count++], ETSI_ID_MAX + 1, "%s", slaves[i]);
    m.expires = (int64_t)time(NULL) + k->cfg.key_ttl_seconds + extra_ttl_s;
    m.hops_left = router_hop_limit(k);
    for (size_t i = 0; i < count; i++) {
        memcpy(m.key_ids[i], keys[i].key_id, UUID_STR_LEN + 1);
        memcpy(plain + i * key_bytes, keys[i].key, key_bytes);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    relay_link *via = NULL;
    int rc = pass_on(k, NULL, NULL, &m, plain, len, &via, resp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    OPENSSL_cleanse(plain, len);
    free(plain);
    kme_relay_clear(&m);
    relay_event e = {.at_ms = clock_wall_ms(), .keys = (unsigned)count, .bytes = (unsigned long)len, .ok = rc == 0};
    e.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    snprintf(e.dest, sizeof e.dest, "%s", dest);
    snprintf(e.via, sizeof e.via, "%s", via ? via->lb.peer_id : "");
    k->hooks.relayed(k->hooks.ctx, &e);
    return rc;
}

int relay_keys_to(relay_node *k, const char *dest, const char *master, const char *const *slaves, size_t nslaves,
                  const etsi_key_container *keys, long extra_ttl_s, http_response *resp)
{
    if (keys->count == 0 || nslaves == 0 || nslaves > KME_MAX_SLAVES ||
        keys->keys[0].key_len * 8 > (size_t)KME_RELAY_MAX_SIZE_BITS) {
        http_error(resp, 400, "cannot relay these keys", "1 to %d slaves and keys of at most %ld bits", KME_MAX_SLAVES,
                   KME_RELAY_MAX_SIZE_BITS);
        return -1;
    }
    /* Messages of at most KME_RELAY_MAX_KEYS keys and about KME_RELAY_CHUNK_BYTES of key. */
    size_t per = KME_RELAY_CHUNK_BYTES / keys->keys[0].key_len;
    per = per < 1 ? 1 : per > KME_RELAY_MAX_KEYS ? KME_RELAY_MAX_KEYS : per;
    for (size_t off = 0; off < keys->count; off += per) {
        size_t n = keys->count - off < per ? keys->count - off : per;
        if (relay_chunk(k, dest, master, slaves, nslaves, keys->keys + off, n, extra_ttl_s, resp) != 0)
            return -1; /* keys of earlier messages were never handed out: they expire at dest */
    }
    return 0;
}

/* ---- destination ----------------------------------------------------------------- */

typedef struct {
    relay_node *k;
    relay_link *in;
    const kme_relay_msg *m;
    unsigned char *plain;
    size_t len;
    int hop_rc;
} deliver_arg;

static int deliver_op(kme_store *s, MDB_txn *txn, void *arg)
{
    deliver_arg *a = arg;
    const kme_relay_msg *m = a->m;
    if (kr_exists(s, txn, m->key_ids[0]))
        return RELAY_REPLAY;                             /* the same message again: already committed */
    a->hop_rc = hop_take_checked(s, txn, &a->in->lb, m); /* authentic recovered plain */
    if (a->hop_rc != HOP_OK)
        return RELAY_HOP;
    int64_t max_expiry = (int64_t)time(NULL) + a->k->cfg.key_ttl_seconds + a->k->cfg.stock_max_age_s;
    size_t key_bytes = (size_t)m->size_bits / 8;
    const char *slaves[KME_MAX_SLAVES];
    for (size_t j = 0; j < m->slave_count; j++)
        slaves[j] = m->slaves[j];
    int64_t expires = m->expires < max_expiry ? m->expires : max_expiry;
    for (size_t i = 0; i < m->key_count; i++) {
        key_record rec;
        kr_fill(&rec, m->key_ids[i], m->master, slaves, m->slave_count, expires, a->plain + i * key_bytes, key_bytes);
        int rc = kr_put(s, txn, &rec);
        if (rc != KR_OK)
            return rc == KR_EXISTS ? RELAY_EXISTS : RELAY_FAILED;
    }
    return RELAY_OK;
}

/* 0 when the message may be delivered here; else resp holds the refusal. */
static int check_delivery(relay_node *k, const kme_relay_msg *m, http_response *resp)
{
    for (size_t i = 0; i < m->slave_count; i++) {
        if (!relay_hosts_sae(k, m->slaves[i])) {
            http_error(resp, 400, "unknown slave SAE", "SAE %s is not hosted by %s", m->slaves[i], k->cfg.kme_id);
            return -1;
        }
    }
    int hosts = router_kme_hosts(k, m->origin, m->master);
    if (hosts < 0) {
        http_error(resp, 503, "routes not learned yet", "%s has no advert of KME %s yet", k->cfg.kme_id, m->origin);
        return -1;
    }
    if (hosts == 0) {
        http_error(resp, 400, "unknown master SAE", "SAE %s is not hosted by %s", m->master, m->origin);
        return -1;
    }
    return 0;
}

static void deliver(relay_node *k, relay_link *in, const kme_relay_msg *m, unsigned char *plain, size_t len,
                    http_response *resp)
{
    if (check_delivery(k, m, resp) < 0)
        return;
    deliver_arg a = {k, in, m, plain, len, HOP_OK};
    int rc = store_commit(k->store, deliver_op, &a);
    if (rc == RELAY_OK || rc == RELAY_REPLAY) {
        resp->status = 200;
        resp->body = etsi_error_to_json("committed", NULL);
    } else if (rc == RELAY_EXISTS) {
        http_error(resp, 409, "key_ID reused", "a key_ID of the relay is already in use here");
    } else {
        hop_error(resp, rc == RELAY_HOP ? a.hop_rc : HOP_FAILED, in->lb.peer_id);
    }
}

/* ---- a KME on the way ----------------------------------------------------------- */

static void forward(relay_node *k, relay_link *in, const kme_relay_msg *m, unsigned char *plain, size_t len,
                    http_response *resp)
{
    if (m->hops_left <= 1) {
        http_error(resp, 503, "no route", "the relay reached its hop limit at %s", k->cfg.kme_id);
        return;
    }
    kme_relay_msg out;
    if (kme_relay_alloc(&out, m->key_count, m->size_bits, pad_cap_for(len), MAC_KEY_RANGES) < 0) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    memcpy(out.relay_id, m->relay_id, sizeof out.relay_id);
    memcpy(out.origin, m->origin, sizeof out.origin);
    memcpy(out.dest, m->dest, sizeof out.dest);
    memcpy(out.master, m->master, sizeof out.master);
    out.slave_count = m->slave_count;
    memcpy(out.slaves, m->slaves, sizeof out.slaves);
    out.expires = m->expires;
    out.hops_left = m->hops_left - 1;
    memcpy(out.key_ids, m->key_ids, m->key_count * sizeof *m->key_ids);
    if (pass_on(k, in, m, &out, plain, len, NULL, resp) == 0) {
        resp->status = 200;
        resp->body = etsi_error_to_json("committed", NULL);
    }
    kme_relay_clear(&out);
}

/* The tag, before anything else (read only: nothing is spent here); on
 * success plain holds the keys, and the commit that follows only marks the
 * link ranges used (hop_take_checked). */
static int authentic(relay_node *k, relay_link *in, const kme_relay_msg *m, unsigned char *plain, size_t len,
                     http_response *resp)
{
    MDB_txn *txn;
    int rc = store_read_begin(k->store, &txn) ? HOP_FAILED : HOP_OK;
    if (rc == HOP_OK) {
        rc = hop_check_from_link(k->store, txn, &in->lb, m, plain, len);
        mdb_txn_abort(txn);
    }
    if (rc != HOP_OK)
        hop_error(resp, rc, in->lb.peer_id);
    return rc == HOP_OK ? 0 : -1;
}

/* 1 when the request's Content-Type names the binary form (parameters aside). */
static int is_wire(const char *content_type)
{
    size_t n = strlen(KME_RELAY_WIRE_TYPE);
    return content_type && strncasecmp(content_type, KME_RELAY_WIRE_TYPE, n) == 0 &&
           (content_type[n] == '\0' || content_type[n] == ';' || content_type[n] == ' ');
}

void relay_handle(relay_node *k, relay_link *from, const http_request *req, http_response *resp)
{
    kme_relay_msg m;
    etsi_problem p;
    int rc = is_wire(req->content_type) ? kme_relay_from_wire((const unsigned char *)req->body, req->body_len, &m, &p)
                                        : kme_relay_from_json(req->body, req->body_len, &m, &p);
    if (rc < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    size_t len = kme_relay_payload_bytes(&m);
    unsigned char *plain = malloc(len);
    if (!plain)
        http_error(resp, 503, "out of memory", NULL);
    else if (authentic(k, from, &m, plain, len, resp) < 0)
        ; /* refused: resp says why */
    else if (strcmp(m.dest, k->cfg.kme_id) == 0)
        deliver(k, from, &m, plain, len, resp);
    else if (strcmp(m.origin, k->cfg.kme_id) == 0)
        http_error(resp, 400, "malformed relay", "a relay may not come back to its origin");
    else
        forward(k, from, &m, plain, len, resp);
    if (resp->status >= 400 && resp->status != 503)
        log_warn("relay %s from %s refused (%d)", m.relay_id, from->lb.peer_id, resp->status);
    if (plain) {
        OPENSSL_cleanse(plain, len);
        free(plain);
    }
    kme_relay_clear(&m);
}
