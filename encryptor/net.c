/* TCP helpers: listen, connect with a time limit, whole reads and writes (net.h). */
#include "encryptor/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "encryptor/original_dst.h"

void net_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

int net_listen(const enc_endpoint *ep, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int rc = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", ep->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            snprintf(err, errlen, "cannot listen on %s:%s: %s", ep->host, ep->port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int connect_one(const struct sockaddr *sa, socklen_t len, long timeout_ms)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) < 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd p = {fd, POLLOUT, 0};
        int n;
        do
            n = poll(&p, 1, (int)timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n == 0)
            errno = ETIMEDOUT;
        if (n <= 0)
            goto fail;
        int so = 0;
        socklen_t sl = sizeof so;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0 || so) {
            errno = so ? so : errno;
            goto fail;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    net_tune(fd);
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int net_connect(const enc_endpoint *ep, long timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", ep->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
        fd = connect_one(a->ai_addr, a->ai_addrlen, timeout_ms);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s:%s: %s", ep->host, ep->port, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

int net_connect_addr(const struct sockaddr_storage *sa, long timeout_ms, char *err, size_t errlen)
{
    socklen_t len = sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = connect_one((const struct sockaddr *)sa, len, timeout_ms);
    if (fd < 0) {
        int e = errno;
        char text[DEST_TEXT_MAX] = "?";
        dest_format((const struct sockaddr *)sa, text, sizeof text);
        snprintf(err, errlen, "cannot connect to %s: %s", text, strerror(e));
    }
    return fd;
}

ssize_t net_read_some(int fd, void *buf, size_t n)
{
    ssize_t r;
    do
        r = recv(fd, buf, n, 0);
    while (r < 0 && errno == EINTR);
    return r;
}

int net_read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = net_read_some(fd, (unsigned char *)buf + got, n - got);
        if (r == 0 && got == 0)
            return 0;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 1;
}

int net_write_all(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, (const unsigned char *)buf + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

void net_peer_text(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0 || dest_format((struct sockaddr *)&ss, out, outlen) < 0)
        snprintf(out, outlen, "?");
}
