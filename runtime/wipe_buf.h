/* A growable byte buffer for HTTP response bodies that may hold key
 * material (the SAE client's, the neighbour and device clients'): every
 * byte it ever held is cleansed before its memory is reused or released. */
#ifndef RUNTIME_WIPE_BUF_H
#define RUNTIME_WIPE_BUF_H

#include <stddef.h>

typedef struct {
    char *data; /* NUL-terminated after len bytes (when data is not NULL) */
    size_t len;
    size_t cap;
    size_t max; /* appends beyond this many bytes fail */
} wipe_buf;

/* 0, or -1 when the buffer would exceed max or memory runs out. */
int wipe_buf_append(wipe_buf *b, const void *bytes, size_t n);
/* Cleanses the content and empties the buffer; keeps its memory. */
void wipe_buf_reset(wipe_buf *b);
/* Cleanses and releases the memory. */
void wipe_buf_free(wipe_buf *b);

#endif
