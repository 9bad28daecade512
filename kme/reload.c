/* Applies a re-read configuration file to the running KME, or refuses it
 * whole (see reload.h). */
#include "kme/reload.h"
#include "kme/audit.h"
#include "kme/store_key.h"
#include "runtime/log.h"
#include "relay/router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char text[1024];
    size_t len;
} summary;

__attribute__((format(printf, 2, 3))) static void add(summary *s, const char *fmt, ...)
{
    if (s->len >= sizeof s->text - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->text + s->len, sizeof s->text - s->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        s->len = s->len + (size_t)n < sizeof s->text ? s->len + (size_t)n : sizeof s->text - 1;
}

static int lists(const kme_live_config *c, const char *sae)
{
    for (size_t i = 0; i < c->sae_count; i++)
        if (strcmp(c->saes[i], sae) == 0)
            return 1;
    return 0;
}

/* The SAEs in a and not in b, after label. */
static void add_missing(summary *s, const char *label, const kme_live_config *a, const kme_live_config *b)
{
    const char *sep = label;
    for (size_t i = 0; i < a->sae_count; i++)
        if (!lists(b, a->saes[i])) {
            add(s, "%s%s", sep, a->saes[i]);
            sep = " ";
        }
    if (sep != label)
        add(s, "; ");
}

/* The CRLs read anew for both listeners. */
typedef struct {
    http_crl *sae, *kme;
} crls;

static void crls_free(crls *c)
{
    http_crl_free(c->sae);
    http_crl_free(c->kme);
    c->sae = c->kme = NULL;
}

/* Reads the CRL files next names (re-read even when unchanged, which is how
 * a new revocation takes effect); 0, or -1 with err. */
static int crls_load(kme_context *k, const kme_config *next, crls *out, char *err, size_t errlen)
{
    out->sae = out->kme = NULL;
    if (k->sae_port && !(out->sae = http_crl_load(k->sae_port, next->sae_client_crl, err, errlen)))
        return -1;
    if (k->kme_port && !(out->kme = http_crl_load(k->kme_port, next->kme_crl, err, errlen))) {
        crls_free(out);
        return -1;
    }
    return 0;
}

static void describe_crl(summary *s, const char *what, const char *path, const http_crl *c)
{
    if (!c)
        return;
    if (path[0])
        add(s, "%s CRL %s: %u revoked%s; ", what, path, http_crl_revoked(c),
            http_crl_stale(c) ? " (past its nextUpdate: issue a fresh one)" : "");
    else
        add(s, "%s: no CRL; ", what);
}

/* What the reload changes, for the log. */
static void describe(summary *s, const kme_config *cur, const kme_config *next, const crls *c)
{
    const kme_live_config *a = kme_config_live(cur), *b = kme_config_live(next);
    add_missing(s, "SAEs added: ", b, a);
    add_missing(s, "SAEs removed: ", a, b);
    if (memcmp(&a->limits, &b->limits, sizeof a->limits) != 0)
        add(s, "limits changed; ");
    if (memcmp(&a->policy, &b->policy, sizeof a->policy) != 0)
        add(s, "key_economy changed; ");
    if (strcmp(cur->log_level, next->log_level) != 0)
        add(s, "log_level %s; ", next->log_level);
    if (next->audit_log[0])
        add(s, "audit log %s %s; ", next->audit_log, strcmp(cur->audit_log, next->audit_log) ? "opened" : "reopened");
    else if (cur->audit_log[0])
        add(s, "audit log closed; ");
    describe_crl(s, "SAE port", next->sae_client_crl, c->sae);
    describe_crl(s, "KME port", next->kme_crl, c->kme);
    if (!store_key_same(&cur->store_key, &next->store_key))
        add(s, "store_key rotated: the store's data key is now wrapped by the new key alone; ");
    if (s->len == 0)
        add(s, "nothing changed; ");
    s->text[s->len >= 2 ? s->len - 2 : 0] = '\0'; /* the last "; " */
}

/* A changed store_key is a rotation: the data key wrapped by the new key,
 * in place of its wrapping by the old (kme/store_key.h). */
static int rotate_store_key(kme_context *k, const kme_config *next, char *err, size_t errlen)
{
    if (store_key_same(&k->cfg.store_key, &next->store_key))
        return 0;
    char why[400];
    if (store_key_rewrap(&k->store, &next->store_key, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "store_key cannot be rotated: %s", why);
    return -1;
}

void kme_reload(kme_context *k, const char *config_path)
{
    char err[512];
    kme_config *next = malloc(sizeof *next);
    if (!next) {
        log_error("reload refused: out of memory; serving on with the configuration in force");
        return;
    }
    if (kme_config_load(config_path, next, err, sizeof err) < 0) {
        log_error("reload refused: %s; serving on with the configuration in force", err);
        free(next);
        return;
    }
    const char *fixed = kme_config_fixed_change(&k->cfg, next);
    crls c = {NULL, NULL};
    if (fixed) {
        log_error("reload refused: setting '%s' cannot change while the KME runs (restart it for that); serving on "
                  "with the configuration in force",
                  fixed);
    } else if (crls_load(k, next, &c, err, sizeof err) < 0 || audit_open(next->audit_log, err, sizeof err) < 0 ||
               rotate_store_key(k, next, err, sizeof err) < 0) {
        log_error("reload refused: %s; serving on with the configuration in force", err);
        crls_free(&c);
    } else {
        /* Nothing below can fail. */
        summary s = {"", 0};
        describe(&s, &k->cfg, next, &c);
        k->cfg.store_key = next->store_key; /* read by this thread only */
        if (c.sae)
            http_server_use_crl(k->sae_port, c.sae);
        if (c.kme)
            http_server_use_crl(k->kme_port, c.kme);
        /* Read by this thread only. */
        memcpy(k->cfg.sae_client_crl, next->sae_client_crl, sizeof k->cfg.sae_client_crl);
        memcpy(k->cfg.kme_crl, next->kme_crl, sizeof k->cfg.kme_crl);
        kme_config_publish_live(&k->cfg, next);
        enum log_level level;
        if (log_level_from_name(next->log_level, &level) == 0)
            log_set_level(level);
        /* Read by this thread only. */
        memcpy(k->cfg.log_level, next->log_level, sizeof k->cfg.log_level);
        memcpy(k->cfg.audit_log, next->audit_log, sizeof k->cfg.audit_log);
        router_links_changed(&k->net); /* a new advert now when the SAEs changed */
        log_info("%s: configuration reloaded: %s", k->cfg.kme_id, s.text);
    }
    kme_config_free(next);
    free(next);
}
