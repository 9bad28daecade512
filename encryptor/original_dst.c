/* SO_ORIGINAL_DST and the destination text of transparent mode (original_dst.h). */
#include "encryptor/original_dst.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
 * whose kernel headers clash with the C library's. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

int original_dst(int fd, struct sockaddr_storage *out)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    memset(out, 0, sizeof *out);
    if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
        return -1;
    len = sizeof *out;
    if (local.ss_family == AF_INET6)
        return getsockopt(fd, IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, out, &len);
    return getsockopt(fd, IPPROTO_IP, SO_ORIGINAL_DST, out, &len);
}

static int parse_port(const char *text, unsigned short *port)
{
    if (!*text || strlen(text) > 5)
        return -1;
    for (const char *p = text; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    long v = strtol(text, NULL, 10);
    if (v < 1 || v > 65535 || (text[0] == '0'))
        return -1;
    *port = (unsigned short)v;
    return 0;
}

int dest_parse(const char *text, struct sockaddr_storage *out)
{
    char buf[DEST_TEXT_MAX];
    memset(out, 0, sizeof *out);
    if (!text || strlen(text) >= sizeof buf)
        return -1;
    strcpy(buf, text);
    unsigned short port;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':' || parse_port(close + 2, &port) < 0)
            return -1;
        *close = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, buf + 1, &s6->sin6_addr) != 1)
            return -1;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        return 0;
    }
    char *colon = strchr(buf, ':');
    if (!colon || parse_port(colon + 1, &port) < 0)
        return -1;
    *colon = '\0';
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, buf, &s4->sin_addr) != 1)
        return -1;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    return 0;
}

int dest_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char addr[INET6_ADDRSTRLEN];
    int n;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        if (!inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof addr))
            return -1;
        n = snprintf(out, outlen, "%s:%u", addr, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (!inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof addr))
            return -1;
        n = snprintf(out, outlen, "[%s]:%u", addr, ntohs(s6->sin6_port));
    } else {
        errno = EAFNOSUPPORT;
        return -1;
    }
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int dest_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}
