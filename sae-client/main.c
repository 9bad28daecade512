/* The sae-client command: asks a KME for status or keys over ETSI GS QKD 014
 * and prints the answer. Exit status: 0 success, 1 KME error, 2 usage error,
 * 3 transport error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "api/etsi014.h"
#include "sae-client/cli_args.h"
#include "sae-client/cli_output.h"
#include "sae-client/sae_client.h"
#include "runtime/json_wipe.h"

enum { EXIT_KME = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

/* stdout's buffer: it holds printed keys, so it is cleansed before exit. */
static char out_buffer[BUFSIZ];

static int report(const sae_result *res, const char *kme_url)
{
    const etsi_problem *p = &res->problem;
    const char *open = p->detail[0] ? " (" : "", *close = p->detail[0] ? ")" : "";
    switch (res->error) {
    case SAE_ERR_TRANSPORT:
        fprintf(stderr, "sae-client: request to %s failed: %s\n", kme_url, res->transport);
        return EXIT_TRANSPORT;
    case SAE_ERR_KME:
        fprintf(stderr, "sae-client: KME answered HTTP %ld: %s%s%s%s\n", res->http_status, p->message, open, p->detail,
                close);
        return EXIT_KME;
    case SAE_ERR_RESPONSE:
        fprintf(stderr, "sae-client: KME answered HTTP %ld with an unusable body: %s%s%s%s\n", res->http_status,
                p->message, open, p->detail, close);
        return EXIT_KME;
    case SAE_ERR_ARGUMENT:
        fprintf(stderr, "sae-client: %s%s%s%s\n", p->message, open, p->detail, close);
        return EXIT_USAGE;
    case SAE_OK:
        break;
    }
    return 0;
}

static int print_failed(void)
{
    fprintf(stderr, "sae-client: cannot write the answer\n");
    return EXIT_KME;
}

static int print_answer(sae_client *c, const sae_cli_opts *o, const etsi_key_container *keys)
{
    int rc;
    if (o->output == SAE_OUT_JSON) {
        size_t len = 0;
        const char *body = sae_client_response(c, &len);
        rc = body ? sae_cli_print_json(stdout, body, len) : -1;
    } else {
        rc = sae_cli_print_keys(stdout, keys, o->output);
    }
    return rc < 0 ? print_failed() : 0;
}

static int get_key(sae_client *c, const sae_cli_opts *o, etsi_key_container *keys, sae_result *res)
{
    etsi_key_request req = {.number = o->number, .size = o->size};
    req.additional_slaves = o->slaves;
    req.additional_count = o->slave_count;
    return sae_client_get_key(c, o->sae_id, &req, o->use_post, keys, res);
}

static int get_key_with_ids(sae_client *c, const sae_cli_opts *o, etsi_key_container *keys, sae_result *res)
{
    etsi_key_ids ids = {calloc(o->key_id_count, sizeof *ids.ids), o->key_id_count};
    if (!ids.ids) {
        memset(res, 0, sizeof *res);
        res->error = SAE_ERR_TRANSPORT;
        snprintf(res->transport, sizeof res->transport, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < ids.count; i++)
        uuid_normalise(o->key_ids[i], ids.ids[i]);
    int rc = sae_client_get_key_with_ids(c, o->sae_id, &ids, o->use_post, keys, res);
    etsi_key_ids_clear(&ids);
    return rc;
}

/* One request and its output; returns the exit status. */
static int run_once(sae_client *c, const sae_cli_opts *o)
{
    sae_result res;
    etsi_key_container keys = {0};
    int rc;
    if (o->command == SAE_CMD_STATUS) {
        etsi_status st;
        rc = sae_client_get_status(c, o->sae_id, &st, &res);
    } else if (o->command == SAE_CMD_GET_KEY) {
        rc = get_key(c, o, &keys, &res);
    } else {
        rc = get_key_with_ids(c, o, &keys, &res);
    }
    int status = rc < 0 ? report(&res, o->kme_url) : print_answer(c, o, &keys);
    etsi_key_container_clear(&keys);
    return status;
}

static int run(const sae_cli_opts *o)
{
    sae_client_config cfg = {
        .kme_url = o->kme_url,
        .cert = o->cert,
        .key = o->key,
        .ca = o->ca,
        .kme_id = o->kme_id,
        .key_password = getenv("SAE_KEY_PASSWORD"),
        .timeout_ms = o->timeout_ms,
        .keep_response = o->output == SAE_OUT_JSON,
    };
    char err[256];
    sae_client *c = sae_client_new(&cfg, err, sizeof err);
    if (!c) {
        fprintf(stderr, "sae-client: %s\n", err);
        return EXIT_USAGE;
    }
    int status = 0;
    for (long i = 0; i < o->repeat && status == 0; i++)
        status = run_once(c, o);
    sae_client_free(c);
    return status;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);
    json_use_wiping_allocator();

    sae_cli_env env = {getenv("SAE_KME_URL"), getenv("SAE_CERT"), getenv("SAE_KEY"), getenv("SAE_CA"),
                       getenv("SAE_KME_ID")};
    sae_cli_opts opts;
    char err[512];
    int status = 0;
    switch (sae_cli_parse(argc, argv, &env, &opts, err, sizeof err)) {
    case SAE_CLI_HELP:
        fputs(sae_cli_usage(), stdout);
        break;
    case SAE_CLI_VERSION:
        printf("sae-client %s\n", SAE_CLIENT_VERSION);
        break;
    case SAE_CLI_USAGE_ERROR:
        fprintf(stderr, "sae-client: %s\nTry 'sae-client --help' for more information.\n", err);
        status = EXIT_USAGE;
        break;
    case SAE_CLI_RUN:
        status = run(&opts);
        break;
    }
    sae_cli_opts_free(&opts);
    if (fflush(stdout) != 0 && status == 0)
        status = print_failed();
    OPENSSL_cleanse(out_buffer, sizeof out_buffer);
    return status;
}
