/* A store restored from a backup (store/backup.h) and its links: until each
 * link has adopted its neighbour's view of their blocks, nothing is
 * allocated on it (lb_link.frozen), since this end's view is as old as the
 * backup. The neighbour's view wins: a block it no longer has is discarded
 * here; for one it holds verified and this end has not discarded (the
 * backup may have caught a verification half-way), the block is verified
 * here too, the owner is the one it names and the used ranges are those of
 * both ends together; the ingest mark is raised to
 * the neighbour's, so no seq it has seen is taken in again. */
#ifndef STORE_LINK_RESYNC_H
#define STORE_LINK_RESYNC_H

#include <stddef.h>
#include <stdint.h>
#include "api/kme_link_view.h"
#include "store/link_blocks.h"

/* store_restore's last step: every link of the store must resynchronise. */
int lr_mark_restored(kme_store *s, MDB_txn *txn);
/* 1 when the link to peer_id still has to adopt its neighbour's view; 0
 * when not (or the store was never restored). */
int lr_pending(kme_store *s, MDB_txn *txn, const char *peer_id);
/* Adopts the neighbour's view (its blocks sorted by seq, owners from its
 * side, and its ingest mark) for link l and records the link as
 * resynchronised; the caller unfreezes l once that is committed. *kept and
 * *dropped count this end's blocks. 0, or -1. */
int lr_adopt_view(kme_store *s, MDB_txn *txn, lb_link *l, const kme_link_view *view, size_t *kept, size_t *dropped);
/* This end's blocks of the link (their seqs, ascending) into *seqs (malloc'd). 0, or -1. */
int lr_seqs_of(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t **seqs, size_t *n);
/* The neighbour's side (a write transaction): discards its blocks of the
 * link to peer_id that the restored end does not have (have: ascending),
 * then gives its view of the link. *discarded counts them. 0, or -1. */
int lr_answer_view(kme_store *s, MDB_txn *txn, const char *peer_id, const uint64_t *have, size_t nhave,
                   kme_link_view *out, size_t *discarded);

#endif
