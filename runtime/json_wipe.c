/* The wiping allocator behind jansson (see json_wipe.h). */
#include "runtime/json_wipe.h"

#include <stddef.h>
#include <stdlib.h>
#include <jansson.h>
#include <openssl/crypto.h>

typedef union {
    size_t size;
    max_align_t align;
} alloc_header;

static void *wiping_malloc(size_t size)
{
    alloc_header *h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    return h + 1;
}

static void wiping_free(void *ptr)
{
    if (!ptr)
        return;
    alloc_header *h = (alloc_header *)ptr - 1;
    OPENSSL_cleanse(ptr, h->size);
    free(h);
}

void json_use_wiping_allocator(void)
{
    json_set_alloc_funcs(wiping_malloc, wiping_free);
}
