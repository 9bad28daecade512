/* Fuzzes the routing advert as a KME receives it (kme_advert_from_json,
 * then kme_advert_validate; api/kme_advert.h). What decodes must validate
 * and encode and decode again to the same advert. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/kme_advert.h"
#include "tests/fuzz/fuzz_json_init.h"

static int same(const kme_advert *a, const kme_advert *b)
{
    if (strcmp(a->origin, b->origin) || a->seq != b->seq || a->age_ms != b->age_ms || a->link_count != b->link_count ||
        a->sae_count != b->sae_count)
        return 0;
    for (size_t i = 0; i < a->link_count; i++)
        if (strcmp(a->links[i].peer, b->links[i].peer) || a->links[i].up != b->links[i].up ||
            a->links[i].stock_bytes != b->links[i].stock_bytes || a->links[i].rate_bps != b->links[i].rate_bps)
            return 0;
    for (size_t i = 0; i < a->sae_count; i++)
        if (strcmp(a->saes[i], b->saes[i]) != 0)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kme_advert a, back;
    etsi_problem p;
    if (kme_advert_from_json((const char *)data, size, &a, &p) != 0)
        return 0;
    if (kme_advert_validate(&a, &p) != 0)
        abort();
    char *text = kme_advert_to_json(&a);
    if (!text || kme_advert_from_json(text, strlen(text), &back, &p) != 0 || !same(&a, &back))
        abort();
    etsi_text_free(text);
    return 0;
}
