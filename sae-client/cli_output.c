/* Formatting of KME answers for the sae-client program. */
#include "sae-client/cli_output.h"

#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include "api/encoding.h"

int sae_cli_print_json(FILE *f, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root)
        return -1;
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text)
        return -1;
    int rc = fputs(text, f) < 0 || fputc('\n', f) == EOF ? -1 : 0;
    etsi_text_free(text);
    return rc;
}

/* The key in the chosen text form, malloc'ed; NULL when out of memory. */
static char *encode_key(const etsi_key *k, sae_cli_output format)
{
    if (format == SAE_OUT_BASE64)
        return base64_encode(k->key, k->key_len);
    char *hex = malloc(2 * k->key_len + 1);
    if (hex)
        hex_encode(k->key, k->key_len, hex);
    return hex;
}

int sae_cli_print_keys(FILE *f, const etsi_key_container *c, sae_cli_output format)
{
    for (size_t i = 0; i < c->count; i++) {
        const etsi_key *k = &c->keys[i];
        if (format == SAE_OUT_IDS) {
            if (fprintf(f, "%s\n", k->key_id) < 0)
                return -1;
            continue;
        }
        char *text = encode_key(k, format);
        if (!text)
            return -1;
        int rc = fprintf(f, "%s %s\n", k->key_id, text);
        OPENSSL_cleanse(text, strlen(text));
        free(text);
        if (rc < 0)
            return -1;
    }
    return 0;
}
