/* Command line of the sae-client program: parsing and validation of the
 * arguments into one request, before anything is sent. */
#ifndef SAE_CLI_ARGS_H
#define SAE_CLI_ARGS_H

#include <stddef.h>

typedef enum { SAE_CMD_NONE, SAE_CMD_STATUS, SAE_CMD_GET_KEY, SAE_CMD_GET_KEY_WITH_IDS } sae_cli_command;
typedef enum { SAE_OUT_JSON, SAE_OUT_HEX, SAE_OUT_BASE64, SAE_OUT_IDS } sae_cli_output;
typedef enum { SAE_FORM_AUTO, SAE_FORM_GET, SAE_FORM_POST } sae_cli_form;

/* Defaults taken from the environment (each may be NULL). */
typedef struct {
    const char *kme_url; /* SAE_KME_URL */
    const char *cert;    /* SAE_CERT */
    const char *key;     /* SAE_KEY */
    const char *ca;      /* SAE_CA */
    const char *kme_id;  /* SAE_KME_ID */
} sae_cli_env;

/* A parsed command line. Strings point into argv or the environment. */
typedef struct {
    sae_cli_command command;
    const char *sae_id; /* slave (status, get-key) or master (get-key-with-ids) */
    const char *kme_url, *cert, *key, *ca;
    const char *kme_id; /* the KME ID pinned; NULL: not pinned */
    long timeout_ms;    /* 0: library default */
    long number;        /* 0: not given */
    long size;          /* 0: not given */
    char **slaves;      /* --slave values */
    size_t slave_count;
    char **key_ids; /* get-key-with-ids arguments */
    size_t key_id_count;
    sae_cli_form form; /* as asked */
    int use_post;      /* the form the request is sent in */
    sae_cli_output output;
    long repeat; /* times the request is sent on one connection */
} sae_cli_opts;

typedef enum { SAE_CLI_RUN, SAE_CLI_HELP, SAE_CLI_VERSION, SAE_CLI_USAGE_ERROR } sae_cli_action;

/* Parses argv[1..argc-1]. On SAE_CLI_USAGE_ERROR err holds the reason. Free
 * the result with sae_cli_opts_free whatever the outcome. */
sae_cli_action sae_cli_parse(int argc, char **argv, const sae_cli_env *env, sae_cli_opts *out, char *err,
                             size_t errlen);
void sae_cli_opts_free(sae_cli_opts *o);

/* Strict positive decimal integer (digits only, at most max). 0 or -1. */
int sae_cli_parse_count(const char *text, long max, long *out);

/* The usage text printed by --help. */
const char *sae_cli_usage(void);

#endif
