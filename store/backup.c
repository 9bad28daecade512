/* Online backup and restore of a store (see backup.h). */
#include "store/backup.h"
#include "store/epoch_keys.h"
#include "store/file_io.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <lmdb.h>
#include <openssl/crypto.h>

/* The databases a backup never carries: keys for slaves, and stock. */
static const char *const dropped[] = {"keys", "key_expiry", "held", "stock"};

static int read_whole(const char *path, unsigned char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    size_t got = 0;
    while (*buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!*buf || got != (size_t)st.st_size) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    *len = got;
    return 0;
}

/* Writes buf to path (new, mode 0600) and syncs it. */
static int write_new(const char *path, const unsigned char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc = file_write_all_at(fd, buf, len, 0) == 0 && fsync(fd) == 0 ? 0 : -1;
    close(fd);
    return rc;
}

/* Copies src to dst (new, mode 0600), synced. */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int rc = in >= 0 && out >= 0 ? 0 : -1;
    static unsigned char buf[1 << 20];
    for (off_t at = 0; rc == 0;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0 || file_write_all_at(out, buf, (size_t)n, at) < 0)
            rc = -1;
        at += n;
    }
    if (rc == 0 && fsync(out) < 0)
        rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static int empty_or_new_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n == 0 ? 0 : -1;
}

static void remove_env(const char *dir)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
}

/* A compacting copy of the environment in from (read-only) into to. */
static int copy_env(const char *from, const char *to, unsigned int open_flags)
{
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc)
        return rc;
    if (!(rc = mdb_env_set_maxdbs(env, 16)) && !(rc = mdb_env_open(env, from, open_flags | MDB_NOTLS, 0600)))
        rc = mdb_env_copy2(env, to, MDB_CP_COMPACT);
    mdb_env_close(env);
    return rc;
}

/* Drops keys and stock from the staged copy, and records when it was taken. */
static int strip_keys(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&env);
    if (rc)
        return rc;
    if ((rc = mdb_env_set_maxdbs(env, 16)) || (rc = mdb_env_set_mapsize(env, (size_t)1 << 36)) ||
        (rc = mdb_env_open(env, dir, MDB_NOTLS, 0600)) || (rc = mdb_txn_begin(env, NULL, 0, &txn)))
        goto out;
    for (size_t i = 0; i < sizeof dropped / sizeof *dropped && rc == 0; i++) {
        MDB_dbi dbi;
        rc = mdb_dbi_open(txn, dropped[i], 0, &dbi);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        else if (rc == 0)
            rc = mdb_drop(txn, dbi, 0);
    }
    MDB_dbi meta;
    unsigned char when[8];
    store_put_be64(when, (uint64_t)time(NULL));
    MDB_val k = {15, "backup_taken_at"}, v = {sizeof when, when};
    if (rc == 0 && !(rc = mdb_dbi_open(txn, "meta", 0, &meta)))
        rc = mdb_put(txn, meta, &k, &v, 0);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
out:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

int store_backup(const char *data_dir, const char *dest, char *err, size_t errlen)
{
    char ring_path[1100], stage[1100], out_ring[1100];
    snprintf(ring_path, sizeof ring_path, "%s/epochs", data_dir);
    snprintf(stage, sizeof stage, "%s/.stage", dest);
    snprintf(out_ring, sizeof out_ring, "%s/epochs", dest);
    if (empty_or_new_dir(dest) < 0) {
        snprintf(err, errlen, "backup: %s must be a new or empty directory", dest);
        return -1;
    }
    unsigned char *earlier = NULL, *later = NULL, *merged = NULL;
    size_t elen = 0, llen = 0, mlen = 0;
    int rc;
    if (read_whole(ring_path, &earlier, &elen) < 0) {
        snprintf(err, errlen, "backup: cannot read %s: %s", ring_path, strerror(errno));
        return -1;
    }
    if (mkdir(stage, 0700) < 0) {
        snprintf(err, errlen, "backup: cannot create %s: %s", stage, strerror(errno));
        rc = -1;
    } else if ((rc = copy_env(data_dir, stage, MDB_RDONLY))) {
        snprintf(err, errlen, "backup: cannot copy the store in %s: %s", data_dir, mdb_strerror(rc));
    } else if (read_whole(ring_path, &later, &llen) < 0 ||
               epoch_keys_merge_for_backup(earlier, elen, later, llen, 'B', &merged, &mlen) < 0) {
        snprintf(err, errlen, "backup: cannot read the keyring %s", ring_path);
        rc = -1;
    } else if ((rc = strip_keys(stage)) || (rc = copy_env(stage, dest, 0))) {
        snprintf(err, errlen, "backup: cannot write the copy in %s: %s", dest, mdb_strerror(rc));
    } else if (write_new(out_ring, merged, mlen) < 0 || file_sync_path(dest, O_RDONLY | O_DIRECTORY) < 0) {
        snprintf(err, errlen, "backup: cannot write %s: %s", out_ring, strerror(errno));
        rc = -1;
    }
    remove_env(stage);
    if (earlier)
        OPENSSL_cleanse(earlier, elen);
    if (later)
        OPENSSL_cleanse(later, llen);
    if (merged)
        OPENSSL_cleanse(merged, mlen);
    free(earlier);
    free(later);
    free(merged);
    return rc ? -1 : 0;
}

int store_restore(const char *src, const char *data_dir, char *err, size_t errlen)
{
    char from_db[1100], from_ring[1100], to_db[1100], to_ring[1100];
    snprintf(from_db, sizeof from_db, "%s/data.mdb", src);
    snprintf(from_ring, sizeof from_ring, "%s/epochs", src);
    snprintf(to_db, sizeof to_db, "%s/data.mdb", data_dir);
    snprintf(to_ring, sizeof to_ring, "%s/epochs", data_dir);
    if (access(from_db, R_OK) < 0 || access(from_ring, R_OK) < 0) {
        snprintf(err, errlen, "restore: %s is not a backup made by kme --backup (data.mdb and epochs)", src);
        return -1;
    }
    if (access(to_db, F_OK) == 0 || access(to_ring, F_OK) == 0) {
        snprintf(err, errlen,
                 "restore: %s holds a store: stop the KME and move it away first (it is never overwritten)", data_dir);
        return -1;
    }
    if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "restore: cannot create %s: %s", data_dir, strerror(errno));
        return -1;
    }
    if (copy_file(from_db, to_db) < 0 || copy_file(from_ring, to_ring) < 0 ||
        file_sync_path(data_dir, O_RDONLY | O_DIRECTORY) < 0) {
        snprintf(err, errlen, "restore: cannot copy %s into %s: %s", src, data_dir, strerror(errno));
        unlink(to_db);
        unlink(to_ring);
        return -1;
    }
    return 0;
}
