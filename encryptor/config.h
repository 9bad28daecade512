/* The encryptor's configuration: a strict JSON file (unknown settings,
 * wrong types and out-of-range values are refused with a message naming the
 * setting). See encryptor/README.md for every setting and an example. */
#ifndef ENCRYPTOR_CONFIG_H
#define ENCRYPTOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "api/etsi014.h"

#define ENC_MAX_ALLOWED 32
#define ENC_MAX_ALLOW_NETS 64
#define ENC_PATH_MAX 1024

enum enc_role { ENC_ROLE_USERS = 1, ENC_ROLE_SERVER = 2 };

typedef struct {
    char host[256]; /* name or numeric address, without brackets */
    char port[8];
} enc_endpoint;

/* An IPv4 network of the allow list, host byte order. */
typedef struct {
    uint32_t addr;
    uint32_t mask;
} enc_net;

typedef struct {
    int role;
    enc_endpoint listen;
    enc_endpoint connect; /* empty host when not set */
    char peer_sae[ETSI_ID_MAX + 1];
    char kme_url[512];
    char kme_cert[ENC_PATH_MAX];
    char kme_key[ENC_PATH_MAX];   /* empty: taken from cert */
    char kme_ca[ENC_PATH_MAX];    /* empty: system store */
    char kme_id[ETSI_ID_MAX + 1]; /* the KME expected (its certificate's CN); empty: not pinned */
    int transparent;
    struct sockaddr_storage allowed[ENC_MAX_ALLOWED];
    size_t allowed_count;
    int mode;               /* FRAME_MODE_OTP or FRAME_MODE_GCM */
    uint64_t rotate_bytes;  /* AES-256-GCM; 0: not set */
    int64_t rotate_seconds; /* AES-256-GCM; 0: not set */
    long pad_key_bits;      /* size of each key asked of the KME */
    long pad_batch_keys;    /* keys per GET_KEY request */
    long low_watermark_bytes;
    long high_watermark_bytes;
    long pad_max_age_seconds; /* pooled keys older than this are dropped */
    long announce_keys;       /* keys each connection direction announces ahead */
    long coalesce_ms;         /* how long a sender gathers small writes before sealing them; 0: never */
    long max_connections;
    long max_connections_per_source;
    long new_connections_per_second; /* per source address (token bucket); 0: no limit */
    long new_connections_burst;
    enc_net allow[ENC_MAX_ALLOW_NETS]; /* client networks accepted on the listening port */
    size_t allow_count;                /* 0: any address */
    long connect_timeout_ms;
    char log_level[16];
    enc_endpoint admin_listen; /* metrics and health (plain HTTP, IPv4); empty host: none */
} enc_config;

/* 0, or -1 with a message in err. */
int enc_config_load(const char *path, enc_config *c, char *err, size_t errlen);
/* The same from JSON text (files named in it must exist). */
int enc_config_parse(const char *text, enc_config *c, char *err, size_t errlen);

#endif
