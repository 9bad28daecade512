/* POST /kme/v1/link_view (api/kme.yaml): a KME whose store was restored from
 * a backup asks its neighbour for the neighbour's view of their link before
 * it uses any of it (store/link_resync.h). The answer lists every block the
 * neighbour holds a record of (its state, its owner as the neighbour sees
 * it, its used byte ranges) and the neighbour's ingest mark:
 *   {"mark": N, "blocks": [[seq, state, owner, [start, end, start, end, ...]], ...]}
 * with blocks in ascending seq order. The request lists the seqs of every
 * block the restored KME holds, ascending: {"have": [seq, ...]}; the
 * neighbour discards its blocks not among them (the restored KME will never
 * take them) before it answers. */
#ifndef API_KME_LINK_VIEW_H
#define API_KME_LINK_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"

#define KME_VIEW_MAX_EXTENTS 64
#define KME_VIEW_MAX_BLOCKS (1 << 20)

typedef struct {
    uint64_t seq;
    uint8_t state, owner; /* as store/link_blocks.h numbers them; owner from the sender's side */
    uint32_t nused;
    uint32_t used[KME_VIEW_MAX_EXTENTS][2];
} kme_view_block;

typedef struct {
    uint64_t mark;
    kme_view_block *blocks;
    size_t count, cap;
} kme_link_view;

/* Appends one block (blocks grow as needed). 0, or -1 (out of memory or too many). */
int kme_link_view_add(kme_link_view *v, const kme_view_block *b);
char *kme_link_view_to_json(const kme_link_view *v);
/* Strict: ascending seqs, extents inside [0, 2^32), start < end, at most
 * KME_VIEW_MAX_EXTENTS. 0, or -1 with p filled. */
int kme_link_view_from_json(const char *text, size_t len, kme_link_view *out, etsi_problem *p);
void kme_link_view_clear(kme_link_view *v);

char *kme_link_view_request_to_json(const uint64_t *have, size_t n);
/* Strict: ascending seqs, at most KME_VIEW_MAX_BLOCKS. *have is malloc'd. 0, or -1 with p. */
int kme_link_view_request_from_json(const char *text, size_t len, uint64_t **have, size_t *n, etsi_problem *p);

#endif
