/* HTTPS client for the KME port of neighbour KMEs (libcurl): mutual TLS with
 * this KME's certificate, the neighbour's certificate CN checked against its
 * configured KME ID, kept-alive connections pooled per neighbour. */
#ifndef RELAY_PEER_CLIENT_H
#define RELAY_PEER_CLIENT_H

#include <stdatomic.h>
#include <stddef.h>
#include "relay/settings.h"

typedef struct peer_client peer_client;

typedef struct {
    long http_status; /* 0 when no HTTP answer arrived */
    int not_sent;     /* 1 when the request provably never reached the peer */
    char error[512];  /* transport error or the peer's error message */
    char *body;       /* response body (wiped by peer_reply_clear) */
    size_t len;
    size_t cap; /* bytes allocated at body */
} peer_reply;

peer_client *peer_client_new(const relay_config *cfg, char *err, size_t errlen);
void peer_client_free(peer_client *pc);

/* POSTs JSON body to path (e.g. "/kme/v1/verify") of the neighbour at link
 * index link. Returns 0 when an HTTP answer (any status) arrived. */
int peer_post(peer_client *pc, size_t link, const char *path, const char *body, long timeout_ms, peer_reply *out);
/* Likewise with a body of len bytes of the given Content-Type. */
int peer_post_bytes(peer_client *pc, size_t link, const char *path, const char *content_type, const void *body,
                    size_t len, long timeout_ms, peer_reply *out);
/* Likewise, giving up as soon as *alive is 0 (checked about once a second
 * while waiting): the link's peer_up, cleared when the neighbour stops
 * answering its heartbeats, so that a request held by a silent neighbour
 * ends when the routes move away from it, not when its timeout runs out. */
int peer_post_bytes_alive(peer_client *pc, size_t link, const char *path, const char *content_type, const void *body,
                          size_t len, long timeout_ms, const atomic_int *alive, peer_reply *out);
void peer_reply_clear(peer_reply *r);

/* Where requests go instead of HTTPS: fn answers each as peer_post_bytes
 * would (its return value and *out). For tests that drive two relay nodes in
 * one process and decide when each request arrives. */
typedef int (*peer_transport)(void *ctx, size_t link, const char *path, const char *content_type, const void *body,
                              size_t len, long timeout_ms, peer_reply *out);
void peer_client_set_transport(peer_client *pc, peer_transport fn, void *ctx);

#endif
