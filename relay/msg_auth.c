/* The one-time MAC of the inter-KME requests and the tag of their answers
 * (see msg_auth.h). */
#include "relay/msg_auth.h"
#include "store/store.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#define ANSWER_DOMAIN "qkd-kme-answer-v1"

static const char *const op_names[] = {"verify", "reserve", "resolve", "claimed", "grant", "link_ids"};

void auth_answer_key_wipe(auth_answer_key *k)
{
    OPENSSL_cleanse(k->key, sizeof k->key);
    k->set = 0;
}

kme_auth *auth_of(enum auth_kind kind, void *msg)
{
    switch (kind) {
    case AUTH_VERIFY:
        return &((kme_verify_request *)msg)->auth;
    case AUTH_RESERVE:
        return &((kme_reserve_request *)msg)->auth;
    case AUTH_RESOLVE:
        return &((kme_resolve *)msg)->auth;
    case AUTH_CLAIMED:
        return &((kme_claimed *)msg)->auth;
    case AUTH_GRANT:
        return &((kme_grant *)msg)->auth;
    case AUTH_LINK_IDS:
        return &((kme_link_ids *)msg)->auth;
    }
    return NULL;
}

const kme_auth *auth_of_const(enum auth_kind kind, const void *msg)
{
    return auth_of(kind, (void *)msg);
}

/* ---- canonical encodings of the requests -------------------------------------------- */

static void put_auth(link_mac_writer *w, const kme_auth *a)
{
    link_mac_put_ranges(w, a->key, a->key_count);
    link_mac_put_ranges(w, a->answer, a->answer_count);
}

static void enc_verify(link_mac_writer *w, const void *msg)
{
    const kme_verify_request *m = msg;
    link_mac_put_str(w, "qkd-kme-verify-v1");
    link_mac_put_str(w, m->txn_id);
    link_mac_put_u64(w, (uint64_t)m->timeout_ms);
    link_mac_put_u32(w, (uint32_t)m->count);
    for (size_t i = 0; i < m->count; i++) {
        link_mac_put_u64(w, m->seqs[i]);
        link_mac_put(w, m->tags[i], KME_TAG_BYTES);
    }
    put_auth(w, &m->auth);
}

static void enc_reserve(link_mac_writer *w, const void *msg)
{
    const kme_reserve_request *m = msg;
    link_mac_put_str(w, "qkd-kme-reserve-v1");
    link_mac_put_str(w, m->master);
    link_mac_put_u32(w, (uint32_t)m->slave_count);
    for (size_t i = 0; i < m->slave_count; i++)
        link_mac_put_str(w, m->slaves[i]);
    link_mac_put_u64(w, (uint64_t)m->size_bits);
    link_mac_put_u64(w, (uint64_t)m->expires);
    link_mac_put_u32(w, (uint32_t)m->key_count);
    for (size_t i = 0; i < m->key_count; i++) {
        link_mac_put_str(w, m->keys[i].key_id);
        link_mac_put_ranges(w, m->ranges + m->keys[i].first_range, m->keys[i].nranges);
    }
    put_auth(w, &m->auth);
}

static void enc_resolve(link_mac_writer *w, const void *msg)
{
    const kme_resolve *m = msg;
    link_mac_put_str(w, "qkd-kme-resolve-v1");
    link_mac_put_ranges(w, m->ranges, m->count);
    link_mac_put_u32(w, (uint32_t)m->reservation_count);
    for (size_t i = 0; i < m->reservation_count; i++) {
        link_mac_put_str(w, m->reservations[i].key_id);
        link_mac_put_u64(w, (uint64_t)m->reservations[i].expires);
        link_mac_put_u32(w, (uint32_t)m->reservations[i].count);
    }
    put_auth(w, &m->auth);
}

static void enc_claimed(link_mac_writer *w, const void *msg)
{
    const kme_claimed *m = msg;
    link_mac_put_str(w, "qkd-kme-claimed-v1");
    link_mac_put_str(w, m->dest);
    link_mac_put_u32(w, (uint32_t)m->count);
    for (size_t i = 0; i < m->count; i++) {
        link_mac_put_str(w, m->key_ids[i]);
        link_mac_put_u64(w, (uint64_t)m->at[i]);
    }
    put_auth(w, &m->auth);
}

static void enc_grant(link_mac_writer *w, const void *msg)
{
    const kme_grant *m = msg;
    link_mac_put_str(w, "qkd-kme-grant-v1");
    link_mac_put_u32(w, (uint32_t)m->count);
    for (size_t i = 0; i < m->count; i++)
        link_mac_put_u64(w, m->seqs[i]);
    put_auth(w, &m->auth);
}

static void enc_link_ids(link_mac_writer *w, const void *msg)
{
    const kme_link_ids *m = msg;
    link_mac_put_str(w, "qkd-kme-link-ids-v1");
    link_mac_put_u64(w, m->seq);
    link_mac_put_u64(w, (uint64_t)m->size_bits);
    link_mac_put_u32(w, (uint32_t)m->count);
    for (size_t i = 0; i < m->count; i++)
        link_mac_put_str(w, m->ids[i]);
    put_auth(w, &m->auth);
}

static link_mac_encoder encoder_of(enum auth_kind kind)
{
    static const link_mac_encoder enc[] = {enc_verify, enc_reserve, enc_resolve, enc_claimed, enc_grant, enc_link_ids};
    return enc[kind];
}

int auth_canonical_bytes(enum auth_kind kind, const void *msg, unsigned char **buf, size_t *len)
{
    return link_mac_bytes(encoder_of(kind), msg, buf, len);
}

/* ---- request: sender ---------------------------------------------------------------- */

/* Splits the ranges of 2 * KME_MAC_KEY_BYTES carved bytes into the MAC key
 * (the first half) and the answer key (the second). */
static void split_keys(const kme_range *r, size_t n, kme_auth *a)
{
    uint32_t at = 0;
    a->key_count = a->answer_count = 0;
    for (size_t i = 0; i < n; i++) {
        kme_range piece = r[i];
        if (at < KME_MAC_KEY_BYTES) {
            kme_range head = piece;
            if (head.length > KME_MAC_KEY_BYTES - at)
                head.length = KME_MAC_KEY_BYTES - at;
            a->key[a->key_count++] = head;
            piece.offset += head.length;
            piece.length -= head.length;
            at += head.length;
        }
        if (piece.length) {
            a->answer[a->answer_count++] = piece;
            at += piece.length;
        }
    }
}

int auth_seal_from_link(kme_store *s, MDB_txn *txn, lb_link *link, enum auth_kind kind, void *msg,
                        auth_answer_key *answer)
{
    kme_auth *a = auth_of(kind, msg);
    unsigned char keys[2 * KME_MAC_KEY_BYTES];
    kme_range r[KME_MAC_MAX_RANGES];
    size_t n = 0, want = answer ? 2 * KME_MAC_KEY_BYTES : KME_MAC_KEY_BYTES;
    memset(a, 0, sizeof *a);
    if (answer)
        auth_answer_key_wipe(answer);
    /* At most KME_MAC_MAX_RANGES ranges in all: split in two, neither half
     * has more. */
    int rc = link_mac_carve(s, txn, link, want, keys, r, KME_MAC_MAX_RANGES, &n);
    if (rc == LM_OK) {
        if (answer) {
            split_keys(r, n, a);
        } else {
            memcpy(a->key, r, n * sizeof *r);
            a->key_count = n;
        }
        rc = link_mac_tag(keys, encoder_of(kind), msg, a->tag) == 0 ? LM_OK : LM_FAILED;
    }
    if (rc == LM_OK && answer) {
        answer->kind = kind;
        memcpy(answer->req_tag, a->tag, KME_TAG_BYTES);
        memcpy(answer->key, keys + KME_MAC_KEY_BYTES, KME_MAC_KEY_BYTES);
        answer->set = 1;
    }
    OPENSSL_cleanse(keys, sizeof keys);
    if (rc != LM_OK)
        memset(a, 0, sizeof *a);
    return rc;
}

/* ---- request: receiver -------------------------------------------------------------- */

/* The MAC-key ranges then the answer-key ranges of a, into r (2 * KME_MAC_MAX_RANGES). */
static size_t all_ranges(const kme_auth *a, kme_range *r)
{
    memcpy(r, a->key, a->key_count * sizeof *r);
    memcpy(r + a->key_count, a->answer, a->answer_count * sizeof *r);
    return a->key_count + a->answer_count;
}

int auth_check_from_link(kme_store *s, MDB_txn *txn, const lb_link *link, enum auth_kind kind, const void *msg,
                         auth_answer_key *answer)
{
    const kme_auth *a = auth_of_const(kind, msg);
    kme_range r[2 * KME_MAC_MAX_RANGES];
    unsigned char keys[2 * KME_MAC_KEY_BYTES];
    if (answer)
        auth_answer_key_wipe(answer);
    if (a->key_count == 0 || a->key_count > KME_MAC_MAX_RANGES || a->answer_count > KME_MAC_MAX_RANGES)
        return LM_MALFORMED;
    size_t n = all_ranges(a, r), bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += r[i].length;
    if (bytes != (a->answer_count ? 2 : 1) * (size_t)KME_MAC_KEY_BYTES)
        return LM_MALFORMED;
    int rc = link_mac_from_lb(link_mac_read(s, txn, link, r, n, keys));
    if (rc == LM_OK)
        rc = link_mac_check(keys, encoder_of(kind), msg, a->tag);
    if (rc == LM_OK && answer && a->answer_count) {
        answer->kind = kind;
        memcpy(answer->req_tag, a->tag, KME_TAG_BYTES);
        memcpy(answer->key, keys + KME_MAC_KEY_BYTES, KME_MAC_KEY_BYTES);
        answer->set = 1;
    }
    OPENSSL_cleanse(keys, sizeof keys);
    return rc;
}

int auth_check(kme_store *s, const lb_link *link, enum auth_kind kind, const void *msg, auth_answer_key *answer)
{
    MDB_txn *txn;
    if (store_read_begin(s, &txn))
        return LM_FAILED;
    int rc = auth_check_from_link(s, txn, link, kind, msg, answer);
    mdb_txn_abort(txn);
    return rc;
}

void auth_check_error(http_response *resp, int rc, enum auth_kind kind, const char *peer_id)
{
    switch (rc) {
    case LM_BAD_TAG:
        log_warn("link %s: refused a %s request whose tag does not authenticate it", peer_id, op_names[kind]);
        http_error(resp, 400, "request not authentic",
                   "the tag does not authenticate the %s request; nothing was spent", op_names[kind]);
        break;
    case LM_MALFORMED:
        http_error(resp, 400, "malformed request", "the %s request carries no MAC", op_names[kind]);
        break;
    case LM_INVALID:
        http_error(resp, 503, "link blocks not usable here",
                   "a MAC-key range is not in a block verified and owned by %s", peer_id);
        break;
    case LM_REUSED:
        log_warn("link %s: refused a %s request whose MAC key reuses link key", peer_id, op_names[kind]);
        http_error(resp, 409, "link key reused", "a MAC-key range overlaps bytes already used");
        break;
    default:
        http_error(resp, 503, "key store failure", "the %s request could not be checked", op_names[kind]);
    }
}

int auth_take(kme_store *s, MDB_txn *txn, const lb_link *link, enum auth_kind kind, const void *msg)
{
    const kme_auth *a = auth_of_const(kind, msg);
    kme_range r[2 * KME_MAC_MAX_RANGES];
    if (a->key_count == 0 || a->key_count > KME_MAC_MAX_RANGES || a->answer_count > KME_MAC_MAX_RANGES)
        return LM_MALFORMED;
    return link_mac_take(s, txn, link, r, all_ranges(a, r));
}

typedef struct {
    const lb_link *link;
    enum auth_kind kind;
    const void *msg;
} take_arg;

static int take_op(kme_store *s, MDB_txn *txn, void *arg)
{
    take_arg *t = arg;
    return auth_take(s, txn, t->link, t->kind, t->msg);
}

int auth_refuse(kme_store *s, const lb_link *link, enum auth_kind kind, const void *msg, const auth_answer_key *k,
                http_response *resp)
{
    take_arg t = {link, kind, msg};
    if (!k->set || store_commit(s, take_op, &t) != 0)
        return -1;
    return auth_tag_response(k, resp);
}

/* ---- answers -------------------------------------------------------------------------- */

typedef struct {
    const auth_answer_key *k;
    long status;
    const char *message;
    const void *content;
} answer_view;

static void enc_answer(link_mac_writer *w, const void *arg)
{
    const answer_view *v = arg;
    link_mac_put_str(w, ANSWER_DOMAIN);
    link_mac_put_str(w, op_names[v->k->kind]);
    link_mac_put(w, v->k->req_tag, KME_TAG_BYTES);
    link_mac_put_u32(w, (uint32_t)v->status);
    link_mac_put_str(w, v->message ? v->message : "");
    if (!v->content)
        return;
    if (v->k->kind == AUTH_VERIFY) {
        const kme_verify_response *r = v->content;
        link_mac_put_str(w, r->txn_id);
        link_mac_put_u32(w, (uint32_t)r->count);
        for (size_t i = 0; i < r->count; i++) {
            link_mac_put_u64(w, r->seqs[i]);
            link_mac_put_u32(w, r->verdicts[i]);
        }
    } else if (v->k->kind == AUTH_RESOLVE) {
        const kme_resolve *r = v->content;
        link_mac_put_u32(w, (uint32_t)r->count);
        for (size_t i = 0; i < r->count; i++) {
            unsigned char used = r->used[i] ? 1 : 0;
            link_mac_put(w, &used, 1);
        }
        link_mac_put_u32(w, (uint32_t)r->reservation_count);
        for (size_t i = 0; i < r->reservation_count; i++) {
            unsigned char withdrawn = r->reservations[i].withdrawn ? 1 : 0;
            link_mac_put(w, &withdrawn, 1);
        }
    } else if (v->k->kind == AUTH_GRANT) {
        const kme_grant *g = v->content;
        link_mac_put_u32(w, (uint32_t)g->count);
        for (size_t i = 0; i < g->count; i++)
            link_mac_put_u64(w, g->seqs[i]);
    } else if (v->k->kind == AUTH_LINK_IDS) {
        const kme_link_ids *m = v->content;
        link_mac_put_u64(w, m->seq);
        link_mac_put_u32(w, (uint32_t)m->count);
        for (size_t i = 0; i < m->count; i++)
            link_mac_put_str(w, m->ids[i]);
        link_mac_put_u64(w, m->next_seq);
    }
}

int auth_answer_tag(const auth_answer_key *k, long status, const char *message, const void *content,
                    uint8_t tag[KME_TAG_BYTES])
{
    if (!k->set)
        return -1;
    answer_view v = {k, status, message, content};
    return link_mac_tag(k->key, enc_answer, &v, tag);
}

int auth_answer_ok(const auth_answer_key *k, long status, const char *message, const void *content, int has_tag,
                   const uint8_t tag[KME_TAG_BYTES])
{
    if (!k->set || !has_tag)
        return 0;
    answer_view v = {k, status, message, content};
    return link_mac_check(k->key, enc_answer, &v, tag) == LM_OK;
}

int auth_tag_response(const auth_answer_key *k, http_response *resp)
{
    kme_ack ack;
    uint8_t tag[KME_TAG_BYTES];
    if (!resp->body || kme_ack_from_json(resp->body, strlen(resp->body), &ack) < 0 ||
        auth_answer_tag(k, resp->status, ack.message, NULL, tag) < 0)
        return -1;
    char *tagged = kme_ack_with_tag(resp->body, tag);
    if (!tagged)
        return -1;
    etsi_text_free(resp->body);
    resp->body = tagged;
    return 0;
}

int auth_reply_ok(const auth_answer_key *k, const peer_reply *reply)
{
    kme_ack ack;
    if (!reply->body || kme_ack_from_json(reply->body, reply->len, &ack) < 0)
        return 0;
    return auth_answer_ok(k, reply->http_status, ack.message, NULL, ack.has_tag, ack.tag);
}

/* ---- requests without a MAC ----------------------------------------------------------- */

int auth_untagged_ok(kme_store *s, MDB_txn *txn, const lb_link *link, int also_when_self_short)
{
    lb_stock st;
    if (lb_get_stock(s, txn, link, &st) != 0)
        return 0;
    return st.peer_free < 2 * KME_MAC_KEY_BYTES || (also_when_self_short && st.owned_free < 2 * KME_MAC_KEY_BYTES);
}
