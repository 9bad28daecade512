/* Transparent mode: the destination a client meant before an iptables
 * REDIRECT rule sent its connection here (SO_ORIGINAL_DST), and the numeric
 * "IP:PORT" / "[IPv6]:PORT" text that carries it to the server side, which
 * connects there only when it is on its allow-list. */
#ifndef ENCRYPTOR_ORIGINAL_DST_H
#define ENCRYPTOR_ORIGINAL_DST_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest destination text, with its NUL ("[" 45 "]:" 5). */
#define DEST_TEXT_MAX 56

/* The pre-NAT destination of accepted socket fd. 0, or -1 with errno
 * (ENOENT: the connection was not redirected). */
int original_dst(int fd, struct sockaddr_storage *out);

/* Strict numeric parse of "A.B.C.D:PORT" or "[IPv6]:PORT" (port 1..65535). 0 or -1. */
int dest_parse(const char *text, struct sockaddr_storage *out);
/* The canonical text of an IPv4 or IPv6 address and port (out: DEST_TEXT_MAX). 0 or -1. */
int dest_format(const struct sockaddr *sa, char *out, size_t outlen);
/* 1 when both name the same address family, address and port. */
int dest_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

#endif
