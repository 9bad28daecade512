/* Fuzzes the inter-KME messages (api/kme_msgs.h) as the receiving KME
 * decodes them. The first byte picks the decoder, modulo 8 (the seeds use
 * '0' to '7'): 0 verify request, 1 verify response, 2 reserve request,
 * 3 resolve request, 4 resolve response (to a request of 3 ranges),
 * 5 claimed, 6 grant request, 7 grant response (to a grant of seqs 1, 2, 3,
 * 5 and 8); the rest is the body. A message that decodes must encode and
 * decode again to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/kme_msgs.h"
#include "tests/fuzz/fuzz_json_init.h"

/* Aborts unless text (freed here) is not NULL. */
static const char *need(char *text)
{
    if (!text)
        abort();
    return text;
}

static void verify_request(const char *body, size_t len)
{
    static kme_verify_request r, back;
    etsi_problem p;
    if (kme_verify_request_from_json(body, len, &r, &p) < 0)
        return;
    char *text = (char *)need(kme_verify_request_to_json(&r));
    if (kme_verify_request_from_json(text, strlen(text), &back, &p) < 0 || strcmp(back.txn_id, r.txn_id) != 0 ||
        back.timeout_ms != r.timeout_ms || back.count != r.count ||
        memcmp(back.seqs, r.seqs, r.count * sizeof r.seqs[0]) != 0 ||
        memcmp(back.tags, r.tags, r.count * sizeof r.tags[0]) != 0)
        abort();
    etsi_text_free(text);
}

static void verify_response(const char *body, size_t len)
{
    static kme_verify_response r, back;
    etsi_problem p;
    if (kme_verify_response_from_json(body, len, &r, &p) < 0)
        return;
    char *text = (char *)need(kme_verify_response_to_json(&r));
    if (kme_verify_response_from_json(text, strlen(text), &back, &p) < 0 || strcmp(back.txn_id, r.txn_id) != 0 ||
        back.count != r.count || memcmp(back.seqs, r.seqs, r.count * sizeof r.seqs[0]) != 0 ||
        memcmp(back.verdicts, r.verdicts, r.count) != 0)
        abort();
    etsi_text_free(text);
}

static void reserve_request(const char *body, size_t len)
{
    kme_reserve_request r, back;
    etsi_problem p;
    if (kme_reserve_request_from_json(body, len, 1024, &r, &p) < 0)
        return;
    char *text = (char *)need(kme_reserve_request_to_json(&r));
    if (kme_reserve_request_from_json(text, strlen(text), 1024, &back, &p) < 0 || strcmp(back.master, r.master) != 0 ||
        back.slave_count != r.slave_count || memcmp(back.slaves, r.slaves, r.slave_count * sizeof r.slaves[0]) != 0 ||
        back.size_bits != r.size_bits || back.expires != r.expires || back.key_count != r.key_count ||
        back.range_count != r.range_count || memcmp(back.ranges, r.ranges, r.range_count * sizeof r.ranges[0]) != 0)
        abort();
    for (size_t i = 0; i < r.key_count; i++)
        if (strcmp(back.keys[i].key_id, r.keys[i].key_id) != 0 || back.keys[i].first_range != r.keys[i].first_range ||
            back.keys[i].nranges != r.keys[i].nranges)
            abort();
    etsi_text_free(text);
    kme_reserve_request_clear(&back);
    kme_reserve_request_clear(&r);
}

static void resolve_request(const char *body, size_t len)
{
    kme_resolve r, back;
    etsi_problem p;
    if (kme_resolve_request_from_json(body, len, &r, &p) < 0)
        return;
    char *text = (char *)need(kme_resolve_request_to_json(&r));
    if (kme_resolve_request_from_json(text, strlen(text), &back, &p) < 0 || back.count != r.count ||
        memcmp(back.ranges, r.ranges, r.count * sizeof r.ranges[0]) != 0)
        abort();
    etsi_text_free(text);
    /* The answer to it. */
    for (size_t i = 0; i < r.count; i++)
        r.used[i] = (uint8_t)(r.ranges[i].seq & 1);
    text = (char *)need(kme_resolve_response_to_json(&r));
    if (kme_resolve_response_from_json(text, strlen(text), &back, &p) < 0 || memcmp(back.used, r.used, r.count) != 0)
        abort();
    etsi_text_free(text);
    kme_resolve_clear(&back);
    kme_resolve_clear(&r);
}

static void resolve_response(const char *body, size_t len)
{
    kme_range ranges[3] = {{1, 0, 32}, {1, 32, 32}, {7, 0, 64}};
    uint8_t used[3] = {0};
    kme_resolve_reservation named[2] = {{"6899051d-1655-442f-885a-778f1004bcae", 1900000000, 0, 2, 0},
                                        {"0f0c2ae6-3a31-4f43-9e4f-3c1bd2c1a0d2", 1900000001, 2, 1, 0}};
    kme_resolve r;
    memset(&r, 0, sizeof r);
    r.count = 3;
    r.ranges = ranges;
    r.used = used;
    r.reservation_count = 2;
    r.reservations = named;
    etsi_problem p;
    kme_resolve_response_from_json(body, len, &r, &p);
}

static void claimed(const char *body, size_t len)
{
    kme_claimed c, back;
    etsi_problem p;
    if (kme_claimed_from_json(body, len, &c, &p) < 0)
        return;
    char *text = (char *)need(kme_claimed_to_json(&c));
    if (kme_claimed_from_json(text, strlen(text), &back, &p) < 0 || strcmp(back.dest, c.dest) != 0 ||
        back.count != c.count || memcmp(back.key_ids, c.key_ids, c.count * sizeof c.key_ids[0]) != 0 ||
        memcmp(back.at, c.at, c.count * sizeof c.at[0]) != 0)
        abort();
    etsi_text_free(text);
    kme_claimed_clear(&back);
    kme_claimed_clear(&c);
}

static void grant_request(const char *body, size_t len)
{
    kme_grant g, back;
    etsi_problem p;
    if (kme_grant_request_from_json(body, len, &g, &p) < 0)
        return;
    char *text = (char *)need(kme_grant_request_to_json(&g));
    if (kme_grant_request_from_json(text, strlen(text), &back, &p) < 0 || back.count != g.count ||
        memcmp(back.seqs, g.seqs, g.count * sizeof g.seqs[0]) != 0)
        abort();
    etsi_text_free(text);
    kme_grant_clear(&back);
    /* Every seq granted is accepted: the answer must decode against the request. */
    text = (char *)need(kme_grant_response_to_json(&g));
    if (kme_grant_response_from_json(text, strlen(text), &g, &back, &p) < 0 || back.count != g.count)
        abort();
    etsi_text_free(text);
    kme_grant_clear(&back);
    kme_grant_clear(&g);
}

static void grant_response(const char *body, size_t len)
{
    uint64_t seqs[] = {1, 2, 3, 5, 8};
    kme_grant request, accepted;
    memset(&request, 0, sizeof request);
    request.count = 5;
    request.seqs = seqs;
    etsi_problem p;
    if (kme_grant_response_from_json(body, len, &request, &accepted, &p) == 0)
        kme_grant_clear(&accepted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 8) {
    case 0:
        verify_request(body, len);
        break;
    case 1:
        verify_response(body, len);
        break;
    case 2:
        reserve_request(body, len);
        break;
    case 3:
        resolve_request(body, len);
        break;
    case 4:
        resolve_response(body, len);
        break;
    case 5:
        claimed(body, len);
        break;
    case 6:
        grant_request(body, len);
        break;
    default:
        grant_response(body, len);
        break;
    }
    return 0;
}
