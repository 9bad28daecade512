/* Backup and restore of a store that cannot hand out a key twice.
 *
 * A backup is taken online: a compacting copy of the LMDB environment (no
 * free page, so nothing erased before the copy comes along), from which
 * every key record, its expiry index and waiting count, and all stock are
 * then dropped, and compacted again; beside it the keyring with the link
 * block epochs only (store/epoch_keys.h). What a backup holds is the link
 * key material and the state of each block, sealed as in the store.
 *
 * Keys that were waiting for slaves, and stock delivered to far KMEs, are
 * never restored: they may have been handed out since, and a restored copy
 * would hand them out again. Link ranges used since the backup stay spent
 * because the neighbour, which recorded them, refuses any reservation of
 * them (and a refused range is spent at both ends), blocks used up since are
 * below the neighbour's ingest mark, and blocks given away by a grant since
 * are owned by the neighbour, which refuses them too. */
#ifndef STORE_BACKUP_H
#define STORE_BACKUP_H

#include <stddef.h>

/* Copies the store in data_dir (the KME may be running) into dest, a new or
 * empty directory. 0, or -1 with err. */
int store_backup(const char *data_dir, const char *dest, char *err, size_t errlen);

/* Puts the backup in src in place as the store in data_dir, which must hold
 * no store (the KME stopped, its store moved away). 0, or -1 with err. */
int store_restore(const char *src, const char *data_dir, char *err, size_t errlen);

#endif
