/* Parses and looks up the key economy's policy (see sae_policy.h). */
#include "kme/sae_policy.h"
#include "runtime/json_settings.h"

#include <stdio.h>
#include <string.h>

static const char *const class_names[SAE_CLASS_COUNT] = {"critical", "standard", "bulk"};

const char *sae_class_name(sae_class c)
{
    return c < SAE_CLASS_COUNT ? class_names[c] : "?";
}

void sae_policy_defaults(sae_policy_set *set)
{
    memset(set, 0, sizeof *set);
    set->def.cls = SAE_CLASS_STANDARD;
    set->def.weight = 1;
    set->fair_share_below_bytes = 1L << 20;
}

/* One policy object: its members override base. */
static int parse_one(json_t *obj, const char *where, const sae_policy *base, sae_policy *out, char *err, size_t errlen)
{
    static const char *const known[] = {"class", "weight", "rate_bps", "burst_bytes", "max_key_count", NULL};
    char name[32] = "";
    char sae[ETSI_ID_MAX + 1];
    memcpy(sae, out->sae, sizeof sae);
    *out = *base;
    memcpy(out->sae, sae, sizeof sae);
    if (!json_is_object(obj))
        return json_settings_fail(err, errlen, "setting '%s' must be an object", where);
    if (json_settings_only(obj, where, known, err, errlen) < 0 ||
        json_setting_string(obj, "class", name, sizeof name, 0, err, errlen) < 0 ||
        json_setting_long(obj, "weight", &out->weight, 1, 1000, err, errlen) < 0 ||
        json_setting_long(obj, "rate_bps", &out->rate_bps, 0, 1L << 40, err, errlen) < 0 ||
        json_setting_long(obj, "burst_bytes", &out->burst_bytes, 0, 1L << 40, err, errlen) < 0 ||
        json_setting_long(obj, "max_key_count", &out->max_key_count, 0, 1L << 40, err, errlen) < 0)
        return -1;
    if (name[0]) {
        size_t c = 0;
        while (c < SAE_CLASS_COUNT && strcmp(name, class_names[c]) != 0)
            c++;
        if (c == SAE_CLASS_COUNT)
            return json_settings_fail(err, errlen, "%sclass must be critical, standard or bulk", where);
        out->cls = (sae_class)c;
    }
    return 0;
}

int sae_policy_parse(json_t *root, sae_policy_set *set, char *err, size_t errlen)
{
    static const char *const known[] = {"critical_floor_bytes", "fair_share_below_bytes", "default", "saes", NULL};
    sae_policy_defaults(set);
    json_t *eco = json_object_get(root, "key_economy");
    if (!eco)
        return 0;
    if (!json_is_object(eco))
        return json_settings_fail(err, errlen, "setting '%s' must be an object", "key_economy");
    if (json_settings_only(eco, "key_economy.", known, err, errlen) < 0 ||
        json_setting_long(eco, "critical_floor_bytes", &set->critical_floor_bytes, 0, 1L << 40, err, errlen) < 0 ||
        json_setting_long(eco, "fair_share_below_bytes", &set->fair_share_below_bytes, 0, 1L << 40, err, errlen) < 0)
        return -1;
    json_t *def = json_object_get(eco, "default");
    if (def && parse_one(def, "key_economy.default.", &set->def, &set->def, err, errlen) < 0)
        return -1;
    json_t *saes = json_object_get(eco, "saes");
    if (!saes)
        return 0;
    if (!json_is_object(saes))
        return json_settings_fail(err, errlen, "setting '%s' must be an object", "key_economy.saes");
    const char *id;
    json_t *one;
    json_object_foreach(saes, id, one)
    {
        if (!etsi_id_is_valid(id))
            return json_settings_fail(err, errlen, "key_economy.saes: '%.80s' is not a valid SAE ID", id);
        if (set->count == SAE_POLICY_MAX)
            return json_settings_fail(err, errlen, "key_economy.saes: more than %d SAEs", SAE_POLICY_MAX);
        sae_policy *p = &set->list[set->count++];
        snprintf(p->sae, sizeof p->sae, "%s", id);
        char where[ETSI_ID_MAX + 32];
        snprintf(where, sizeof where, "key_economy.saes.%s.", id);
        if (parse_one(one, where, &set->def, p, err, errlen) < 0)
            return -1;
    }
    return 0;
}

const sae_policy *sae_policy_of(const sae_policy_set *set, const char *sae)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->list[i].sae, sae) == 0)
            return &set->list[i];
    return &set->def;
}
