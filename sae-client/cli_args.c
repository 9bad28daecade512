/* Parsing and validation of the sae-client command line (pure: no I/O). */
#include "sae-client/cli_args.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "api/etsi014.h"

#define COUNT_MAX 1000000000L

static const char usage_text[] =
    "Usage: sae-client [options] status SLAVE_SAE_ID\n"
    "       sae-client [options] get-key SLAVE_SAE_ID [--number N] [--size BITS] [--slave ID]...\n"
    "       sae-client [options] get-key-with-ids MASTER_SAE_ID KEY_ID...\n"
    "\n"
    "Asks a KME for keys over the ETSI GS QKD 014 API (mutual TLS).\n"
    "\n"
    "Options (before or after the command):\n"
    "  --kme URL          KME address https://host:port (or SAE_KME_URL)\n"
    "  --cert FILE        client certificate, PEM or .p12/.pfx (or SAE_CERT)\n"
    "  --key FILE         client private key, PEM (or SAE_KEY; default: in --cert)\n"
    "  --ca FILE          CA certificates that verify the KME (or SAE_CA)\n"
    "  --kme-id ID        the KME expected: its certificate must name exactly this\n"
    "                     KME ID, else nothing is sent (or SAE_KME_ID; recommended)\n"
    "                     A key or PKCS#12 password is read from SAE_KEY_PASSWORD.\n"
    "  --number N         get-key: number of keys (default 1)\n"
    "  --size BITS        get-key: key size in bits (default: the KME's)\n"
    "  --slave ID         get-key: an additional slave SAE (repeatable; implies POST)\n"
    "  --get, --post      request form (default GET when the request fits it, else POST)\n"
    "  --output FORMAT    json (the KME's answer, default), hex or base64 (one line\n"
    "                     'KEY_ID KEY' per key), ids (key IDs only)\n"
    "  --timeout MS       give up after MS milliseconds (default 10000)\n"
    "  --repeat N         send the request N times on one connection (default 1)\n"
    "  -h, --help         show this help\n"
    "  --version          show the version\n"
    "\n"
    "Exit status: 0 success, 1 the KME refused or answered badly, 2 usage error,\n"
    "3 transport error (cannot connect, TLS failure, timeout).\n";

const char *sae_cli_usage(void)
{
    return usage_text;
}

int sae_cli_parse_count(const char *text, long max, long *out)
{
    if (!text || !text[0] || strlen(text) > 18)
        return -1;
    long v = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (*c - '0');
    }
    if (v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

void sae_cli_opts_free(sae_cli_opts *o)
{
    free(o->slaves);
    free(o->key_ids);
    o->slaves = o->key_ids = NULL;
    o->slave_count = o->key_id_count = 0;
}

static sae_cli_action usage_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static sae_cli_action usage_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return SAE_CLI_USAGE_ERROR;
}

/* Options that take a value. */
static const char *const value_options[] = {"kme",     "kme-id", "cert", "key",   "ca",     "output",
                                            "timeout", "number", "size", "slave", "repeat", NULL};

static int takes_value(const char *name, size_t len)
{
    for (const char *const *o = value_options; *o; o++)
        if (strlen(*o) == len && strncmp(*o, name, len) == 0)
            return 1;
    return 0;
}

static sae_cli_action set_count(const char *opt, const char *value, long *out, char *err, size_t errlen)
{
    if (sae_cli_parse_count(value, COUNT_MAX, out) < 0)
        return usage_error(err, errlen, "invalid --%s '%s': expected a positive integer", opt, value);
    return SAE_CLI_RUN;
}

static sae_cli_action set_option(sae_cli_opts *o, const char *name, const char *value, char *err, size_t errlen)
{
    if (strcmp(name, "kme") == 0)
        o->kme_url = value;
    else if (strcmp(name, "kme-id") == 0)
        o->kme_id = value;
    else if (strcmp(name, "cert") == 0)
        o->cert = value;
    else if (strcmp(name, "key") == 0)
        o->key = value;
    else if (strcmp(name, "ca") == 0)
        o->ca = value;
    else if (strcmp(name, "slave") == 0)
        o->slaves[o->slave_count++] = (char *)value;
    else if (strcmp(name, "timeout") == 0)
        return set_count(name, value, &o->timeout_ms, err, errlen);
    else if (strcmp(name, "number") == 0)
        return set_count(name, value, &o->number, err, errlen);
    else if (strcmp(name, "size") == 0)
        return set_count(name, value, &o->size, err, errlen);
    else if (strcmp(name, "repeat") == 0)
        return set_count(name, value, &o->repeat, err, errlen);
    else if (strcmp(name, "output") == 0) {
        static const char *const names[] = {"json", "hex", "base64", "ids"};
        for (int i = 0; i < 4; i++)
            if (strcmp(value, names[i]) == 0) {
                o->output = (sae_cli_output)i;
                return SAE_CLI_RUN;
            }
        return usage_error(err, errlen, "invalid --output '%s': expected json, hex, base64 or ids", value);
    }
    return SAE_CLI_RUN;
}

static sae_cli_action set_form(sae_cli_opts *o, sae_cli_form form, char *err, size_t errlen)
{
    if (o->form != SAE_FORM_AUTO && o->form != form)
        return usage_error(err, errlen, "--get and --post exclude each other");
    o->form = form;
    return SAE_CLI_RUN;
}

/* Sorts argv into options and positional arguments. */
static sae_cli_action scan(int argc, char **argv, sae_cli_opts *o, char **pos, size_t *npos, char *err, size_t errlen)
{
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (only_positional || arg[0] != '-' || arg[1] == '\0') {
            pos[(*npos)++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            return SAE_CLI_HELP;
        if (strcmp(arg, "--version") == 0)
            return SAE_CLI_VERSION;
        sae_cli_action a = SAE_CLI_RUN;
        if (strcmp(arg, "--get") == 0)
            a = set_form(o, SAE_FORM_GET, err, errlen);
        else if (strcmp(arg, "--post") == 0)
            a = set_form(o, SAE_FORM_POST, err, errlen);
        else {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            if (arg[1] != '-' || !takes_value(name, len))
                return usage_error(err, errlen, "unknown option '%s'", arg);
            char opt[16];
            snprintf(opt, sizeof opt, "%.*s", (int)len, name);
            const char *value = eq ? eq + 1 : NULL;
            if (!value) {
                if (i + 1 >= argc)
                    return usage_error(err, errlen, "option '--%s' needs a value", opt);
                value = argv[++i];
            }
            a = set_option(o, opt, value, err, errlen);
        }
        if (a != SAE_CLI_RUN)
            return a;
    }
    return SAE_CLI_RUN;
}

static sae_cli_action check_sae_id(const char *what, const char *id, char *err, size_t errlen)
{
    if (!etsi_id_is_valid(id))
        return usage_error(err, errlen,
                           "invalid %s '%s': 1 to %d printable characters without '/', quotes "
                           "or spaces",
                           what, id, ETSI_ID_MAX);
    return SAE_CLI_RUN;
}

/* The command and its positional arguments. */
static sae_cli_action take_command(sae_cli_opts *o, char **pos, size_t npos, char *err, size_t errlen)
{
    if (npos == 0)
        return usage_error(err, errlen, "missing command (status, get-key or get-key-with-ids)");
    const char *cmd = pos[0];
    if (strcmp(cmd, "status") == 0)
        o->command = SAE_CMD_STATUS;
    else if (strcmp(cmd, "get-key") == 0)
        o->command = SAE_CMD_GET_KEY;
    else if (strcmp(cmd, "get-key-with-ids") == 0)
        o->command = SAE_CMD_GET_KEY_WITH_IDS;
    else
        return usage_error(err, errlen, "unknown command '%s'", cmd);

    if (o->command == SAE_CMD_GET_KEY_WITH_IDS) {
        if (npos < 3)
            return usage_error(err, errlen, "%s needs MASTER_SAE_ID and at least one KEY_ID", cmd);
    } else if (npos != 2) {
        return usage_error(err, errlen, npos < 2 ? "%s needs SLAVE_SAE_ID" : "%s takes one SLAVE_SAE_ID", cmd);
    }
    o->sae_id = pos[1];
    if (check_sae_id(o->command == SAE_CMD_GET_KEY_WITH_IDS ? "master SAE ID" : "slave SAE ID", o->sae_id, err,
                     errlen) != SAE_CLI_RUN)
        return SAE_CLI_USAGE_ERROR;
    for (size_t i = 2; i < npos; i++) {
        if (!uuid_is_valid(pos[i]))
            return usage_error(err, errlen, "invalid key ID '%s': expected a UUID", pos[i]);
        for (size_t j = 0; j < o->key_id_count; j++)
            if (strcasecmp(o->key_ids[j], pos[i]) == 0)
                return usage_error(err, errlen, "key ID '%s' is given twice", pos[i]);
        o->key_ids[o->key_id_count++] = pos[i];
    }
    return SAE_CLI_RUN;
}

/* Cross-checks of the options against the command. */
static sae_cli_action check_options(sae_cli_opts *o, char *err, size_t errlen)
{
    if (o->command != SAE_CMD_GET_KEY) {
        const char *opt = o->number ? "--number" : o->size ? "--size" : o->slave_count ? "--slave" : NULL;
        if (opt)
            return usage_error(err, errlen, "%s applies to get-key only", opt);
    }
    for (size_t i = 0; i < o->slave_count; i++)
        if (check_sae_id("--slave SAE ID", o->slaves[i], err, errlen) != SAE_CLI_RUN)
            return SAE_CLI_USAGE_ERROR;
    if (o->command == SAE_CMD_STATUS && o->output != SAE_OUT_JSON)
        return usage_error(err, errlen, "status answers in JSON only: --output %s applies to keys",
                           o->output == SAE_OUT_HEX      ? "hex"
                           : o->output == SAE_OUT_BASE64 ? "base64"
                                                         : "ids");
    if (o->command == SAE_CMD_STATUS && o->form == SAE_FORM_POST)
        return usage_error(err, errlen, "status is a GET request: --post does not apply");

    int needs_post = (o->command == SAE_CMD_GET_KEY && o->slave_count > 0) ||
                     (o->command == SAE_CMD_GET_KEY_WITH_IDS && o->key_id_count > 1);
    if (needs_post && o->form == SAE_FORM_GET)
        return usage_error(err, errlen, "--get cannot carry %s: use --post",
                           o->command == SAE_CMD_GET_KEY ? "additional slave SAE IDs" : "several key IDs");
    o->use_post = o->form == SAE_FORM_POST || needs_post;

    if (!o->kme_url || !o->kme_url[0])
        return usage_error(err, errlen, "no KME given: use --kme URL or set SAE_KME_URL");
    if (strncasecmp(o->kme_url, "https://", 8) != 0 || !o->kme_url[8])
        return usage_error(err, errlen, "invalid KME URL '%s': expected https://host:port", o->kme_url);
    if (o->key && !o->cert)
        return usage_error(err, errlen, "a client key needs its certificate: use --cert FILE");
    if (o->kme_id && !etsi_id_is_valid(o->kme_id))
        return usage_error(err, errlen,
                           "invalid --kme-id '%s': 1 to %d printable characters without '/', quotes "
                           "or spaces",
                           o->kme_id, ETSI_ID_MAX);
    return SAE_CLI_RUN;
}

sae_cli_action sae_cli_parse(int argc, char **argv, const sae_cli_env *env, sae_cli_opts *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    if (env) {
        out->kme_url = env->kme_url;
        out->cert = env->cert;
        out->key = env->key;
        out->ca = env->ca;
        out->kme_id = env->kme_id && env->kme_id[0] ? env->kme_id : NULL;
    }
    out->repeat = 1;
    size_t cap = argc > 0 ? (size_t)argc : 1;
    out->slaves = calloc(cap, sizeof *out->slaves);
    out->key_ids = calloc(cap, sizeof *out->key_ids);
    char **pos = calloc(cap, sizeof *pos);
    size_t npos = 0;
    sae_cli_action a;
    if (!out->slaves || !out->key_ids || !pos)
        a = usage_error(err, errlen, "out of memory");
    else if ((a = scan(argc, argv, out, pos, &npos, err, errlen)) == SAE_CLI_RUN &&
             (a = take_command(out, pos, npos, err, errlen)) == SAE_CLI_RUN)
        a = check_options(out, err, errlen);
    free(pos);
    return a;
}
