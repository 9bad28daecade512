/* The strict JSON setting readers (see json_settings.h). */
#include "runtime/json_settings.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int json_settings_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int json_settings_only(json_t *obj, const char *where, const char *const *known, char *err, size_t errlen)
{
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        int found = 0;
        for (const char *const *k = known; *k && !found; k++)
            found = strcmp(*k, name) == 0;
        if (!found)
            return json_settings_fail(err, errlen, "unknown setting '%s%s'", where, name);
    }
    return 0;
}

int json_setting_string(json_t *obj, const char *name, char *out, size_t outlen, int required, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return required ? json_settings_fail(err, errlen, "missing setting '%s'", name) : 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= outlen ||
        strlen(json_string_value(v)) != json_string_length(v))
        return json_settings_fail(err, errlen, "setting '%s' must be a non-empty string of at most %zu characters",
                                  name, outlen - 1);
    snprintf(out, outlen, "%s", json_string_value(v));
    return 0;
}

int json_setting_long(json_t *obj, const char *name, long *out, long min, long max, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return json_settings_fail(err, errlen, "setting '%s' must be an integer from %ld to %ld", name, min, max);
    *out = (long)json_integer_value(v);
    return 0;
}

int json_setting_bool(json_t *obj, const char *name, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return json_settings_fail(err, errlen, "setting '%s' must be true or false", name);
    *out = json_is_true(v);
    return 0;
}

int json_setting_endpoint(json_t *obj, const char *name, char *host, size_t hostlen, long *port, int required,
                          char *err, size_t errlen)
{
    char text[300] = "";
    if (json_setting_string(obj, name, text, sizeof text, required, err, errlen) < 0)
        return -1;
    if (!text[0])
        return 0;
    char *colon = strrchr(text, ':');
    if (!colon || colon == text)
        return json_settings_fail(err, errlen, "setting '%s' must be HOST:PORT", name);
    *colon = '\0';
    char *h = text, *end;
    if (h[0] == '[') {
        size_t n = strlen(h);
        if (n < 3 || h[n - 1] != ']')
            return json_settings_fail(err, errlen, "setting '%s' must be HOST:PORT or [IPv6]:PORT", name);
        h[n - 1] = '\0';
        h++;
    } else if (strchr(h, ':')) {
        return json_settings_fail(err, errlen, "setting '%s': write an IPv6 address as [ADDRESS]:PORT", name);
    }
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 1 || p > 65535)
        return json_settings_fail(err, errlen, "setting '%s' has an invalid port", name);
    if (strlen(h) >= hostlen)
        return json_settings_fail(err, errlen, "setting '%s' has a host name that is too long", name);
    memcpy(host, h, strlen(h) + 1);
    *port = p;
    return 0;
}
