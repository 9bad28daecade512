/* Fuzzes the encryptor's configuration parser (enc_config_parse,
 * encryptor/config.h: the same checks as enc_config_load, from text). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "encryptor/config.h"
#include "tests/fuzz/fuzz_json_init.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    static enc_config c;
    char err[512];
    enc_config_parse(text, &c, err, sizeof err);
    free(text);
    return 0;
}
