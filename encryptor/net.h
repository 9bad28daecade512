/* TCP helpers of the encryptor: listening, connecting with a time limit,
 * whole reads and writes. */
#ifndef ENCRYPTOR_NET_H
#define ENCRYPTOR_NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include "encryptor/config.h"

/* A listening socket on ep; -1 with err set. */
int net_listen(const enc_endpoint *ep, char *err, size_t errlen);
/* A connected socket to ep (each resolved address in turn) or sa; -1 with err set. */
int net_connect(const enc_endpoint *ep, long timeout_ms, char *err, size_t errlen);
int net_connect_addr(const struct sockaddr_storage *sa, long timeout_ms, char *err, size_t errlen);

/* Exactly n bytes: 1; end of stream before the first byte: 0; otherwise -1. */
int net_read_full(int fd, void *buf, size_t n);
/* Up to n bytes (retried on EINTR): >0, 0 at end of stream, -1. */
ssize_t net_read_some(int fd, void *buf, size_t n);
/* All n bytes, or -1. Never raises SIGPIPE. */
int net_write_all(int fd, const void *buf, size_t n);
/* TCP_NODELAY and keep-alive on a connected socket. */
void net_tune(int fd);
/* "IP:PORT" of the peer of fd ("?" when unknown). */
void net_peer_text(int fd, char *out, size_t outlen);

#endif
