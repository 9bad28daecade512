/* The "store_key" setting, parsed strictly (see store_key.h). */
#include "kme/store_key.h"
#include "runtime/json_settings.h"

#include <string.h>

int store_key_parse(json_t *root, store_key_setting *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *v = json_object_get(root, "store_key");
    if (!v)
        return json_settings_fail(err, errlen,
                                  "missing setting 'store_key': give {\"file\": PATH}, {\"pkcs11\": {...}} or "
                                  "\"none-insecure\" (the data key then rests in the store in clear)");
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "none-insecure") != 0)
            return json_settings_fail(err, errlen, "setting 'store_key' must be an object or \"none-insecure\"");
        out->kind = STORE_KEY_NONE_INSECURE;
        return 0;
    }
    if (!json_is_object(v) || json_object_size(v) != 1)
        return json_settings_fail(err, errlen, "setting 'store_key' must hold exactly one of 'file' or 'pkcs11'");
    json_t *p = json_object_get(v, "pkcs11");
    if (json_object_get(v, "file")) {
        out->kind = STORE_KEY_FILE;
        return json_setting_string(v, "file", out->file, sizeof out->file, 1, err, errlen) < 0 ? -1 : 0;
    }
    if (!json_is_object(p))
        return json_settings_fail(err, errlen, "setting 'store_key' must hold exactly one of 'file' or 'pkcs11'");
    const char *known[] = {"module", "token_label", "pin_file", "key_label"};
    const char *name;
    json_t *ignored;
    json_object_foreach(p, name, ignored)
    {
        size_t i = 0;
        while (i < 4 && strcmp(name, known[i]) != 0)
            i++;
        if (i == 4)
            return json_settings_fail(err, errlen, "store_key.pkcs11: unknown setting '%s'", name);
    }
    out->kind = STORE_KEY_PKCS11;
    if (json_setting_string(p, "module", out->module, sizeof out->module, 1, err, errlen) < 0 ||
        json_setting_string(p, "token_label", out->token_label, sizeof out->token_label, 1, err, errlen) < 0 ||
        json_setting_string(p, "pin_file", out->pin_file, sizeof out->pin_file, 1, err, errlen) < 0 ||
        json_setting_string(p, "key_label", out->key_label, sizeof out->key_label, 1, err, errlen) < 0)
        return -1;
    if (!out->module[0] || !out->token_label[0] || !out->pin_file[0] || !out->key_label[0])
        return json_settings_fail(err, errlen,
                                  "store_key.pkcs11: module, token_label, pin_file and key_label "
                                  "must not be empty");
    return 0;
}

int store_key_same(const store_key_setting *a, const store_key_setting *b)
{
    return a->kind == b->kind && strcmp(a->file, b->file) == 0 && strcmp(a->module, b->module) == 0 &&
           strcmp(a->token_label, b->token_label) == 0 && strcmp(a->pin_file, b->pin_file) == 0 &&
           strcmp(a->key_label, b->key_label) == 0;
}
