/* Ending one connection from any of its threads (conn_state.h). */
#include "encryptor/conn_state.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

void conn_abort(conn *c, const char *fmt, ...)
{
    if (atomic_exchange(&c->aborted, 1))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    int fd = atomic_load(&c->plain_fd);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    fd = atomic_load(&c->cipher_fd);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}
