/* ETSI GS QKD 014 V1.1.1 messages: the one encode/decode of each, shared by
 * the KME (server side) and the SAE client library. api/etsi014.yaml is the
 * contract these functions implement. */
#ifndef API_ETSI014_H
#define API_ETSI014_H

#include <stddef.h>
#include <jansson.h>
#include "api/encoding.h"

#define ETSI_ID_MAX 64             /* longest SAE or KME ID accepted */
#define ETSI_BODY_MAX (256 * 1024) /* largest request body the KME reads */

/* A problem found while decoding or validating: becomes the ETSI error body. */
typedef struct {
    char message[128];
    char detail[256];
    char refused_by[ETSI_ID_MAX + 1]; /* the KME that refused a relayed request; "" when none named */
} etsi_problem;

/* The bounds a KME enforces and reports in Status. Sizes are in bits. */
typedef struct {
    long key_size; /* default size */
    long max_key_per_request;
    long max_key_size;
    long min_key_size;
    long max_sae_id_count; /* most additional_slave_SAE_IDs in one request */
    long max_key_count;    /* most keys the KME can hold for one slave */
} etsi_limits;

typedef struct {
    char source_kme_id[ETSI_ID_MAX + 1];
    char target_kme_id[ETSI_ID_MAX + 1];
    char master_sae_id[ETSI_ID_MAX + 1];
    char slave_sae_id[ETSI_ID_MAX + 1];
    long stored_key_count;
    etsi_limits limits;
} etsi_status;

typedef struct {
    long number;              /* keys asked for (default 1) */
    long size;                /* bits per key (default: limits.key_size) */
    char **additional_slaves; /* additional_slave_SAE_IDs */
    size_t additional_count;
    int has_extension_mandatory; /* a non-empty extension_mandatory was sent */
    char unsupported_extension[ETSI_ID_MAX + 1];
} etsi_key_request;

typedef struct {
    char (*ids)[UUID_STR_LEN + 1]; /* canonical lower-case */
    size_t count;
} etsi_key_ids;

typedef struct {
    char key_id[UUID_STR_LEN + 1];
    unsigned char *key; /* key_len bytes, cleansed by etsi_key_container_clear */
    size_t key_len;
} etsi_key;

typedef struct {
    etsi_key *keys;
    size_t count;
} etsi_key_container;

/* 1 when id is a plausible SAE/KME ID: 1..ETSI_ID_MAX printable characters, no '/'. */
int etsi_id_is_valid(const char *id);

/* enc_keys: POST body (body may be empty or NULL: defaults) or GET query
 * values (either may be NULL). Defaults: number 1, size limits->key_size.
 * Validates types and every bound of limits. 0 on success, -1 with *p set. */
int etsi_key_request_from_json(const char *body, size_t len, const etsi_limits *limits, etsi_key_request *out,
                               etsi_problem *p);
int etsi_key_request_from_query(const char *number, const char *size, const etsi_limits *limits, etsi_key_request *out,
                                etsi_problem *p);
void etsi_key_request_clear(etsi_key_request *r);
/* Client side: the POST body for a request (malloc'ed JSON text). */
char *etsi_key_request_to_json(const etsi_key_request *r);

/* dec_keys: POST body or GET key_ID. At most max_ids IDs; duplicates refused. */
int etsi_key_ids_from_json(const char *body, size_t len, long max_ids, etsi_key_ids *out, etsi_problem *p);
int etsi_key_ids_from_query(const char *key_id, etsi_key_ids *out, etsi_problem *p);
void etsi_key_ids_clear(etsi_key_ids *ids);
char *etsi_key_ids_to_json(const etsi_key_ids *ids);

/* Key container. The encoded text holds key material. */
char *etsi_key_container_to_json(const etsi_key_container *c);
int etsi_key_container_from_json(const char *body, size_t len, etsi_key_container *out, etsi_problem *p);
void etsi_key_container_clear(etsi_key_container *c);

char *etsi_status_to_json(const etsi_status *s);
int etsi_status_from_json(const char *body, size_t len, etsi_status *out, etsi_problem *p);

/* Frees (and wipes) any text returned by an etsi_*_to_json function. */
void etsi_text_free(char *text);
/* len bytes from the allocator etsi_text_free expects (for text written
 * without jansson). NULL when out of memory. */
char *etsi_text_alloc(size_t len);

/* The ETSI error body {"message": ..., "details": [{...}]}. detail may be
 * NULL or empty (then details is an empty array). */
char *etsi_error_to_json(const char *message, const char *detail);
/* The same for a request a KME further on refused: the detail also names
 * that KME ({"reason": ..., "refused_by": KME ID}); refused_by NULL or
 * empty: as etsi_error_to_json. */
char *etsi_error_refused_to_json(const char *message, const char *detail, const char *refused_by);
/* Client side: message, first detail and the KME it names as refusing, of
 * an error body (best effort). */
int etsi_error_from_json(const char *body, size_t len, etsi_problem *out);

void etsi_problem_set(etsi_problem *p, const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
