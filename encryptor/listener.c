/* The accept loop (listener.h). */
#include "encryptor/listener.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "encryptor/net.h"
#include "runtime/log.h"

struct listener {
    enc_runtime *rt;
    int fd;
    atomic_int stopping;
    pthread_t thread;
};

static void *accept_main(void *arg)
{
    listener *l = arg;
    while (!atomic_load(&l->stopping)) {
        struct pollfd p = {l->fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0)
            continue;
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("cannot accept a connection: %s", strerror(errno));
                usleep(100000);
            }
            continue;
        }
        conn_start(l->rt, fd);
    }
    return NULL;
}

listener *listener_start(enc_runtime *rt, const enc_endpoint *ep, char *err, size_t errlen)
{
    listener *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->rt = rt;
    if ((l->fd = net_listen(ep, err, errlen)) < 0) {
        free(l);
        return NULL;
    }
    if (pthread_create(&l->thread, NULL, accept_main, l) != 0) {
        snprintf(err, errlen, "cannot start the accept thread");
        close(l->fd);
        free(l);
        return NULL;
    }
    return l;
}

void listener_stop(listener *l)
{
    if (!l)
        return;
    atomic_store(&l->stopping, 1);
    pthread_join(l->thread, NULL);
    close(l->fd);
    free(l);
}
