/* A store of one KME in a fresh temporary directory, for the unit tests
 * that work on one real LMDB store: opened by temp_store_open, closed and
 * removed with its directory by temp_store_remove. */
#ifndef TESTS_UNIT_TEMP_STORE_H
#define TESTS_UNIT_TEMP_STORE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store/store.h"

typedef struct {
    char dir[64];
    kme_store store;
} temp_store;

static inline void temp_store_open(temp_store *t, const char *kme_id)
{
    char err[256];
    strcpy(t->dir, "/tmp/kmestore.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    ck_assert_int_eq(store_open(&t->store, t->dir, 64, kme_id, NULL, err, sizeof err), 0);
}

static inline void temp_store_remove(temp_store *t)
{
    char cmd[100];
    store_close(&t->store);
    snprintf(cmd, sizeof cmd, "rm -rf %s", t->dir);
    ck_assert_int_eq(system(cmd), 0);
}

#endif
