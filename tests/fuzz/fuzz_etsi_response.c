/* Fuzzes what a KME answers an SAE, as the SAE client library decodes it
 * (api/etsi014.h): the key container (etsi_key_container_from_json), the
 * status (etsi_status_from_json) and the error body (etsi_error_from_json).
 * A container that decodes must encode and decode again to the same keys. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/etsi014.h"
#include "tests/fuzz/fuzz_json_init.h"

static void container(const char *body, size_t len)
{
    etsi_key_container c, back;
    etsi_problem p;
    if (etsi_key_container_from_json(body, len, &c, &p) < 0)
        return;
    char *text = etsi_key_container_to_json(&c);
    if (!text || etsi_key_container_from_json(text, strlen(text), &back, &p) < 0 || back.count != c.count)
        abort();
    for (size_t i = 0; i < c.count; i++)
        if (strcmp(back.keys[i].key_id, c.keys[i].key_id) != 0 || back.keys[i].key_len != c.keys[i].key_len ||
            memcmp(back.keys[i].key, c.keys[i].key, c.keys[i].key_len) != 0)
            abort();
    etsi_text_free(text);
    etsi_key_container_clear(&back);
    etsi_key_container_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    etsi_status s;
    etsi_problem p;
    container(body, size);
    etsi_status_from_json(body, size, &s, &p);
    etsi_error_from_json(body, size, &p);
    return 0;
}
