/* Whole-buffer file I/O of the store's own files (see file_io.h). */
#include "store/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int file_write_all_at(int fd, const unsigned char *buf, size_t len, off_t at)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n, len -= (size_t)n, at += n;
    }
    return 0;
}

int file_read_all_at(int fd, unsigned char *buf, size_t len, off_t at)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n, len -= (size_t)n, at += n;
    }
    return 0;
}

int file_sync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}
