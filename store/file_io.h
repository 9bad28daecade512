/* Whole-buffer file I/O of the store's own files (the keyring, backups):
 * positional reads and writes that finish short transfers, and fsync of a
 * path (a file, or a directory after a rename or create in it). */
#ifndef STORE_FILE_IO_H
#define STORE_FILE_IO_H

#include <stddef.h>
#include <sys/types.h>

/* All len bytes at offset at: 0, or -1. */
int file_write_all_at(int fd, const unsigned char *buf, size_t len, off_t at);
int file_read_all_at(int fd, unsigned char *buf, size_t len, off_t at);
/* Opens path with flags (O_RDONLY | O_DIRECTORY for a directory) and fsyncs it: 0, or -1. */
int file_sync_path(const char *path, int flags);

#endif
