/* The key routing protocol as this KME runs it (docs/ARCHITECTURE.md, life of a key, step
 * 6): it makes its own link-state advert (links up or down, owned key stock,
 * ingest rate, hosted SAEs), floods adverts to its neighbours over
 * POST /kme/v1/advert, keeps the link-state database and the routes and
 * application directory computed from it (relay/routing.h), and records them
 * in the store for operators (`kme --routes`).
 *
 * Its own advert goes to every neighbour each second; that doubles as the
 * liveness check of each link (peer_up). A new advert (new seq) is made when
 * a link goes up or down or its stock crosses a threshold of the route cost
 * (passed on through the whole network at once), when its stock or rate
 * moved (at most every second, carried to the neighbours by the heartbeat;
 * passed on further only every few minutes), and at least every
 * ADVERT_REFRESH_MS (5 min); so a quiet network carries about one advert per
 * second per link direction, whatever its size. seq starts from the wall
 * clock in ms so it keeps rising across restarts. A neighbour that comes up
 * is sent the whole database. */
#ifndef RELAY_ROUTER_H
#define RELAY_ROUTER_H

#include <stdio.h>
#include <stdint.h>
#include "relay/node.h"
#include "runtime/http_server.h"
#include "relay/routing.h"

/* Creates the routing state with this KME's first advert: before the KME
 * port serves. 0, or -1. */
int router_init(relay_node *k);
/* Starts the advert thread. 0, or -1. */
int router_start(relay_node *k);
/* Joins the thread (after k->stopping is set) and frees the state. */
void router_stop(relay_node *k);

/* KME port: POST /kme/v1/advert from the neighbour on link from: refused
 * (400, neither stored nor passed on) unless signed by its origin
 * (relay/advert_sign.h). */
void router_advert_handle(relay_node *k, relay_link *from, const http_request *req, http_response *resp);

/* Where sae is hosted: 1 here, 2 at another KME (its ID copied to kme_out;
 * the KME may be unreachable now: the last site learned for sae is kept,
 * across restarts too), 0 never learned. */
int router_locate_sae(relay_node *k, const char *sae, char kme_out[ETSI_ID_MAX + 1]);

/* The link to send on for dest (hops set to the route's length when not
 * NULL), or NULL when there is no route. */
relay_link *router_next_hop(relay_node *k, const char *dest, unsigned *hops);

/* The hop limit of a key relayed from here now: the number of KMEs this KME
 * knows (itself and every KME it has a route to), so that any loop-free
 * path fits, at most the site's relay_max_hops. */
unsigned router_hop_limit(relay_node *k);

/* 1 when KME kme_id hosts sae by its own advert (this KME: by its config)
 * and no conflict refused that claim (routing_conflict), 0 when it does not,
 * -1 when no advert of kme_id is held (not learned yet). */
int router_kme_hosts(relay_node *k, const char *kme_id, const char *sae);

/* The stock KME kme_id advertises on its link to peer: 0, or -1 if unknown. */
int router_advertised_stock(relay_node *k, const char *kme_id, const char *peer, uint64_t *bytes);

/* What the route to dest can carry beyond its first link: the least stock
 * the KMEs on it advertise for their next link (*bytes; UINT64_MAX when the
 * route is one link). 0; -1 when there is no route, or it is longer than
 * the hop limit. */
int router_route_stock(relay_node *k, const char *dest, uint64_t *bytes);

/* For operators (the status page): calls fn once, under the router's lock,
 * with the link-state database and this KME's routes and directory, to read
 * only. fn must return quickly and must not call into the router. */
void router_inspect(relay_node *k, void (*fn)(void *ctx, const routing_db *db, const routing_table *table), void *ctx);

/* Wakes the advert thread: a link went up or down. */
void router_links_changed(relay_node *k);

/* kme --routes: prints the routes and directory last recorded in the store. */
int router_print_stored(kme_store *s, FILE *out, char *err, size_t errlen);

#endif
