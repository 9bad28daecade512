/* Byte encodings used on the wire: standard padded base64, hex and UUID key IDs. */
#ifndef API_ENCODING_H
#define API_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 36 /* without the terminating NUL */

/* Standard base64 with padding. The returned string is malloc'ed; NULL on failure. */
char *base64_encode(const unsigned char *data, size_t len);
/* Strict decode: rejects characters outside the alphabet, bad padding and
 * lengths not a multiple of 4. Returns malloc'ed bytes (cleanse before free
 * when they are key material) and sets *out_len; NULL when invalid. */
unsigned char *base64_decode(const char *text, size_t *out_len);

/* Lower-case hex; out must hold 2*len+1 bytes. */
void hex_encode(const unsigned char *data, size_t len, char *out);
/* Exactly 2*n hex digits (any case) into n bytes; -1 on anything else. */
int hex_decode(const char *hex, unsigned char *out, size_t n);

/* A fresh UUID in canonical lower-case form, version 7: the Unix time in ms,
 * then 74 random bits (IDs made close in time sort together). out: 37 bytes. */
int uuid_generate(char out[UUID_STR_LEN + 1]);
/* 1 when text is a canonical UUID (8-4-4-4-12 hex digits, any case). */
int uuid_is_valid(const char *text);
/* Canonical lower-case copy of a valid UUID into out (37 bytes). */
void uuid_normalise(const char *text, char out[UUID_STR_LEN + 1]);

#endif
