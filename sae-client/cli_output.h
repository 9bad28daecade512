/* Output formats of the sae-client program: the KME's JSON pretty-printed,
 * or one line per key (hex, base64) or per key ID. */
#ifndef SAE_CLI_OUTPUT_H
#define SAE_CLI_OUTPUT_H

#include <stddef.h>
#include <stdio.h>
#include "api/etsi014.h"
#include "sae-client/cli_args.h"

/* The JSON text body, indented. 0, or -1 when it is not JSON or cannot be written. */
int sae_cli_print_json(FILE *f, const char *body, size_t len);

/* "KEY_ID KEY" lines (SAE_OUT_HEX, SAE_OUT_BASE64) or "KEY_ID" lines
 * (SAE_OUT_IDS). Every
 * temporary copy of a key is cleansed. 0, or -1 on a write or memory failure. */
int sae_cli_print_keys(FILE *f, const etsi_key_container *c, sae_cli_output format);

#endif
