/* Fuzzes the link view message (api/kme_link_view.h) as each end decodes
 * it: the first byte picks the decoder, modulo 2 (the seeds use '0' and
 * '1'): 0 the restored KME's request, 1 the neighbour's answer; the rest is
 * the body. A message that decodes must encode and decode again to the same
 * message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/kme_link_view.h"
#include "tests/fuzz/fuzz_json_init.h"

static void request(const char *body, size_t len)
{
    uint64_t *have, *back;
    size_t n, m;
    etsi_problem p;
    if (kme_link_view_request_from_json(body, len, &have, &n, &p) < 0)
        return;
    char *text = kme_link_view_request_to_json(have, n);
    if (!text || kme_link_view_request_from_json(text, strlen(text), &back, &m, &p) < 0 || m != n ||
        memcmp(back, have, n * sizeof *have) != 0)
        abort();
    etsi_text_free(text);
    free(have);
    free(back);
}

static void answer(const char *body, size_t len)
{
    kme_link_view v, back;
    etsi_problem p;
    if (kme_link_view_from_json(body, len, &v, &p) < 0)
        return;
    char *text = kme_link_view_to_json(&v);
    if (!text || kme_link_view_from_json(text, strlen(text), &back, &p) < 0 || back.mark != v.mark ||
        back.count != v.count)
        abort();
    for (size_t i = 0; i < v.count; i++) {
        const kme_view_block *a = &v.blocks[i], *b = &back.blocks[i];
        if (a->seq != b->seq || a->state != b->state || a->owner != b->owner || a->nused != b->nused ||
            memcmp(a->used, b->used, a->nused * sizeof a->used[0]) != 0)
            abort();
    }
    etsi_text_free(text);
    kme_link_view_clear(&v);
    kme_link_view_clear(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        request((const char *)data + 1, size - 1);
    else
        answer((const char *)data + 1, size - 1);
    return 0;
}
