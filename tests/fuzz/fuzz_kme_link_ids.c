/* Fuzzes the link_ids message of the device handshake (api/kme_link_ids.h)
 * as each end decodes it: the first byte picks the decoder, modulo 2 (the
 * seeds use '0' and '1'): 0 the request, 1 the answer (to a request naming
 * three key_IDs, seq 7); the rest is the body. A message that decodes must
 * encode and decode again to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/kme_link_ids.h"
#include "tests/fuzz/fuzz_json_init.h"

static int same(const kme_link_ids *a, const kme_link_ids *b)
{
    return a->seq == b->seq && a->count == b->count &&
           (a->count == 0 || memcmp(a->ids, b->ids, a->count * sizeof *a->ids) == 0) &&
           memcmp(&a->auth, &b->auth, sizeof a->auth) == 0 && a->has_tag == b->has_tag &&
           memcmp(a->tag, b->tag, sizeof a->tag) == 0;
}

static void request(const char *body, size_t len)
{
    kme_link_ids m, back;
    etsi_problem p;
    if (kme_link_ids_request_from_json(body, len, &m, &p) < 0)
        return;
    char *text = kme_link_ids_request_to_json(&m);
    if (!text || kme_link_ids_request_from_json(text, strlen(text), &back, &p) < 0 || !same(&m, &back) ||
        back.size_bits != m.size_bits)
        abort();
    etsi_text_free(text);
    kme_link_ids_clear(&m);
    kme_link_ids_clear(&back);
}

static void answer(const char *body, size_t len)
{
    kme_link_ids req = {0}, m, back;
    etsi_problem p;
    req.seq = 7;
    req.size_bits = 256;
    if (kme_link_ids_add(&req, "01a241da-4ece-7e60-b12a-9cc52b8dcf19") < 0 ||
        kme_link_ids_add(&req, "01a241da-4ece-78e4-937a-8c7bb5b61e7f") < 0 ||
        kme_link_ids_add(&req, "01a241da-4ece-78e4-937a-8c7bb5b61e80") < 0)
        abort();
    if (kme_link_ids_response_from_json(body, len, &req, &m, &p) == 0) {
        char *text = kme_link_ids_response_to_json(&m);
        if (!text || kme_link_ids_response_from_json(text, strlen(text), &req, &back, &p) < 0 || !same(&m, &back) ||
            back.next_seq != m.next_seq)
            abort();
        etsi_text_free(text);
        kme_link_ids_clear(&m);
        kme_link_ids_clear(&back);
    }
    kme_link_ids_clear(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2)
        answer((const char *)data + 1, size - 1);
    else
        request((const char *)data + 1, size - 1);
    return 0;
}
