/* For unit tests: a KME configuration loaded from JSON text through a
 * temporary file, as kme_config_load reads it. */
#ifndef TESTS_UNIT_CONFIG_FILE_H
#define TESTS_UNIT_CONFIG_FILE_H

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kme/config.h"

/* The settings every configuration needs (no SAEs, no links). */
#define CONFIG_BASE                                                                                                    \
    "\"kme_id\":\"KME_A\",\"data_dir\":\"/tmp/"                                                                        \
    "x\",\"store_key\":\"none-insecure\",\"sae_listen\":\"127.0.0.1:1\",\"kme_listen\":\"127.0.0.1:2\","               \
    "\"sae_tls\":{\"cert\":\"c\",\"key\":\"k\",\"client_ca\":\"a\"},\"kme_tls\":{\"cert\":\"c\",\"key\":\"k\",\"ca\":" \
    "\"a\"}"

/* kme_config_load of a file holding json; its result. */
static inline int config_load_text(const char *json, kme_config *c, char *err, size_t errlen)
{
    char path[] = "/tmp/kmecfg.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    int rc = kme_config_load(path, c, err, errlen);
    unlink(path);
    return rc;
}

#endif
