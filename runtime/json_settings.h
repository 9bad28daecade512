/* Strict readers of JSON configuration files, shared by every program's
 * config loader: each setting is checked for its type and bounds, and a
 * fault gives one clear message naming the setting. Each reader returns 0
 * (an absent optional setting leaves *out as it was), or -1 with err set. */
#ifndef RUNTIME_JSON_SETTINGS_H
#define RUNTIME_JSON_SETTINGS_H

#include <stddef.h>
#include <jansson.h>

/* Writes the message into err and returns -1. */
int json_settings_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Refuses a member of obj not named in known (NULL-terminated); where
 * prefixes the name in the message ("kme." for a nested object). */
int json_settings_only(json_t *obj, const char *where, const char *const *known, char *err, size_t errlen);

/* A non-empty string of at most outlen - 1 characters (no NUL inside). */
int json_setting_string(json_t *obj, const char *name, char *out, size_t outlen, int required, char *err,
                        size_t errlen);
/* An integer from min to max. */
int json_setting_long(json_t *obj, const char *name, long *out, long min, long max, char *err, size_t errlen);
/* true or false (as 1 or 0). */
int json_setting_bool(json_t *obj, const char *name, int *out, char *err, size_t errlen);
/* "HOST:PORT" or "[IPv6]:PORT": the host (brackets removed) into host, the
 * port (1 to 65535) into *port. An absent optional one leaves both as they were. */
int json_setting_endpoint(json_t *obj, const char *name, char *host, size_t hostlen, long *port, int required,
                          char *err, size_t errlen);

#endif
