/* For the relay harnesses: a decoded hop message passes kme_relay_check
 * and comes back the same through both forms (api/kme_relay.h). */
#ifndef TESTS_FUZZ_RELAY_ROUNDTRIP_H
#define TESTS_FUZZ_RELAY_ROUNDTRIP_H

#include <stdlib.h>
#include <string.h>
#include "api/kme_relay.h"

static int relay_same(const kme_relay_msg *a, const kme_relay_msg *b)
{
    if (strcmp(a->relay_id, b->relay_id) || strcmp(a->origin, b->origin) || strcmp(a->dest, b->dest) ||
        strcmp(a->master, b->master) || a->slave_count != b->slave_count || a->size_bits != b->size_bits ||
        a->expires != b->expires || a->hops_left != b->hops_left || a->key_count != b->key_count ||
        a->pad_count != b->pad_count || a->mac_key_count != b->mac_key_count ||
        memcmp(a->tag, b->tag, sizeof a->tag) != 0)
        return 0;
    for (size_t i = 0; i < a->slave_count; i++)
        if (strcmp(a->slaves[i], b->slaves[i]) != 0)
            return 0;
    for (size_t i = 0; i < a->key_count; i++)
        if (strcmp(a->key_ids[i], b->key_ids[i]) != 0)
            return 0;
    return memcmp(a->ct, b->ct, kme_relay_payload_bytes(a)) == 0 &&
           memcmp(a->pad, b->pad, a->pad_count * sizeof *a->pad) == 0 &&
           memcmp(a->mac_key, b->mac_key, a->mac_key_count * sizeof *a->mac_key) == 0;
}

/* Aborts unless m, decoded from either form, passes the checks and encodes
 * to both forms that decode to the same message. */
static void relay_roundtrip(const kme_relay_msg *m)
{
    kme_relay_msg back;
    etsi_problem p;
    if (kme_relay_check(m, &p) != 0)
        abort();
    char *text = kme_relay_to_json(m);
    if (!text || kme_relay_from_json(text, strlen(text), &back, &p) != 0 || !relay_same(m, &back))
        abort();
    kme_relay_clear(&back);
    etsi_text_free(text);
    size_t len;
    unsigned char *wire = kme_relay_to_wire(m, &len);
    if (!wire || kme_relay_from_wire(wire, len, &back, &p) != 0 || !relay_same(m, &back))
        abort();
    kme_relay_clear(&back);
    free(wire);
}

#endif
