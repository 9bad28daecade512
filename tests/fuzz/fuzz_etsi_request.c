/* Fuzzes what an SAE sends its KME (api/etsi014.h): the bodies of enc_keys
 * and dec_keys (etsi_key_request_from_json, etsi_key_ids_from_json) and the
 * query values of their GET forms (etsi_key_request_from_query with number
 * and size split at the first '&', etsi_key_ids_from_query). What decodes
 * must encode and decode again to the same request. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/etsi014.h"
#include "runtime/json_wipe.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The defaults of kme/config.c. */
static const etsi_limits limits = {.key_size = 256,
                                   .max_key_per_request = 1024,
                                   .max_key_size = 65536,
                                   .min_key_size = 8,
                                   .max_sae_id_count = 8,
                                   .max_key_count = 100000};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_use_wiping_allocator();
    return 0;
}

static void key_request(const char *body, size_t len)
{
    etsi_key_request r, back;
    etsi_problem p;
    if (etsi_key_request_from_json(body, len, &limits, &r, &p) < 0)
        return;
    char *text = etsi_key_request_to_json(&r);
    if (!text || etsi_key_request_from_json(text, strlen(text), &limits, &back, &p) < 0)
        abort();
    if (back.number != r.number || back.size != r.size || back.additional_count != r.additional_count)
        abort();
    for (size_t i = 0; i < r.additional_count; i++)
        if (strcmp(back.additional_slaves[i], r.additional_slaves[i]) != 0)
            abort();
    etsi_text_free(text);
    etsi_key_request_clear(&back);
    etsi_key_request_clear(&r);
}

static void key_ids(const char *body, size_t len)
{
    etsi_key_ids ids, back;
    etsi_problem p;
    if (etsi_key_ids_from_json(body, len, limits.max_key_per_request, &ids, &p) < 0)
        return;
    char *text = etsi_key_ids_to_json(&ids);
    if (!text || etsi_key_ids_from_json(text, strlen(text), limits.max_key_per_request, &back, &p) < 0)
        abort();
    if (back.count != ids.count || memcmp(back.ids, ids.ids, ids.count * sizeof *ids.ids) != 0)
        abort();
    etsi_text_free(text);
    etsi_key_ids_clear(&back);
    etsi_key_ids_clear(&ids);
}

static void queries(char *text)
{
    etsi_key_request r;
    etsi_key_ids ids;
    etsi_problem p;
    if (etsi_key_ids_from_query(text, &ids, &p) == 0)
        etsi_key_ids_clear(&ids);
    char *amp = strchr(text, '&');
    if (amp)
        *amp = '\0';
    if (etsi_key_request_from_query(text, amp ? amp + 1 : NULL, &limits, &r, &p) == 0)
        etsi_key_request_clear(&r);
    if (etsi_key_request_from_query(NULL, text, &limits, &r, &p) == 0)
        etsi_key_request_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    key_request((const char *)data, size);
    key_ids((const char *)data, size);
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    queries(text);
    free(text);
    return 0;
}
