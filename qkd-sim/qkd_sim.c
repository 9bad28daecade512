/* qkd-sim: a simulated QKD link. Owns the writing of identical random key
 * blocks (<seq>.key, written under a temporary name, fsync'ed and renamed)
 * into the two link directories, the pacing to a key rate, the optional
 * corruption of one side, and the persistent next-seq state that keeps a
 * restarted simulator from ever reusing a sequence number. With --device,
 * the two ends are served as ETSI GS QKD 014 devices instead
 * (qkd-sim/device.c). */

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "qkd-sim/device.h"

#define PROG "qkd-sim"
#define EXIT_USAGE 2
#define MIN_BLOCK 64u
#define MAX_BLOCK 16777216u
#define DEFAULT_BLOCK 65536u
#define DEFAULT_RATE 1000000u
#define STATE_NAME ".qkd-sim.state"
#define MAX_BACKLOG_NS 1000000000.0L /* catch up at most 1 s after a stall */

static const char usage_text[] =
    "usage: " PROG " --out DIR_A --out DIR_B [--rate BITS_PER_SEC] [--block-bytes N] [--count N]\n"
    "               [--corrupt FRACTION [--corrupt-side 0|1]] [--state FILE] [--quiet]\n"
    "       " PROG " --device HOST:PORT=SAE_ID --device HOST:PORT=SAE_ID --cert FILE --key FILE --client-ca FILE\n"
    "               [--fault-file FILE] [--max-held N]\n";

static const char help_text[] = "\n"
                                "Simulates a QKD link: writes identical random key blocks <seq>.key into both\n"
                                "directories (temporary name, fsync, rename), seq starting at 1.\n"
                                "\n"
                                "  --out DIR            link directory; give exactly two (created if missing)\n"
                                "  --rate BITS_PER_SEC  average key rate per side (default 1000000; 0 = unpaced)\n"
                                "  --block-bytes N      block size, 64..16777216 (default 65536)\n"
                                "  --count N            stop after N blocks (default: until SIGINT/SIGTERM)\n"
                                "  --corrupt FRACTION   fraction 0..1 of blocks with one byte flipped on one side;\n"
                                "                       each prints 'corrupted <seq>' on stdout\n"
                                "  --corrupt-side 0|1   side that gets the corrupted copy (default 1)\n"
                                "  --state FILE         next-seq state (default DIR_A/" STATE_NAME ")\n"
                                "  --quiet              no progress messages on stderr\n"
                                "\n"
                                "With --device, serves the two ends of the link as ETSI GS QKD 014 devices\n"
                                "instead (HTTPS, client certificates): enc_keys at one end, called by its SAE\n"
                                "for the other end's SAE, makes fresh keys; dec_keys at the other end hands\n"
                                "each over once. Keys are held in memory only.\n"
                                "  --device HOST:PORT=SAE_ID  one end and the one SAE it serves; give two\n"
                                "  --cert, --key FILE   the devices' server certificate and key\n"
                                "  --client-ca FILE     the CA of the SAEs' client certificates\n"
                                "  --fault-file FILE    read at each request: 'MODE [END]', MODE none, 503,\n"
                                "                       hang, short or wrong-size; END 0 or 1 (default both)\n"
                                "  --max-held N         most keys held for fetching (default 100000)\n";

struct options {
    const char *out[2];
    int n_out;
    uint64_t rate;
    uint64_t block;
    uint64_t count; /* 0: unlimited */
    double corrupt;
    int corrupt_side;
    const char *state;
    int quiet;
};

struct side {
    const char *path;
    int dirfd;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* One line on stderr: the prefix, then the message. */
static void report(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void report(const char *prefix, const char *fmt, va_list ap)
{
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(PROG ": ", fmt, ap);
    va_end(ap);
    fputs(usage_text, stderr);
    exit(EXIT_USAGE);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(PROG ": error: ", fmt, ap);
    va_end(ap);
}

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    int seen_rate = 0, seen_block = 0, seen_count = 0, seen_corrupt = 0, seen_side = 0;

    memset(o, 0, sizeof *o);
    o->rate = DEFAULT_RATE;
    o->block = DEFAULT_BLOCK;
    o->corrupt_side = 1;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        const char *val = NULL;
        char name[32];
        const char *eq;

        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(usage_text, stdout);
            fputs(help_text, stdout);
            exit(0);
        }
        if (strcmp(opt, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (strncmp(opt, "--", 2) != 0)
            usage_error("unexpected argument '%s'", opt);
        eq = strchr(opt, '=');
        if (eq) {
            size_t n = (size_t)(eq - opt);
            if (n >= sizeof name)
                usage_error("unknown option '%s'", opt);
            memcpy(name, opt, n);
            name[n] = '\0';
            val = eq + 1;
        } else {
            if (strlen(opt) >= sizeof name)
                usage_error("unknown option '%s'", opt);
            strcpy(name, opt);
        }

        static const char *const with_value[] = {"--out",     "--rate",         "--block-bytes", "--count",
                                                 "--corrupt", "--corrupt-side", "--state"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            if (strcmp(name, with_value[k]) == 0)
                known = 1;
        if (!known)
            usage_error("unknown option '%s'", opt);
        if (!val) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                usage_error("option %s requires a value", name);
            val = argv[++i];
        }

        if (strcmp(name, "--out") == 0) {
            if (*val == '\0')
                usage_error("--out: empty directory name");
            if (o->n_out >= 2)
                usage_error("--out given more than twice (exactly two are required)");
            o->out[o->n_out++] = val;
        } else if (strcmp(name, "--rate") == 0) {
            if (seen_rate++)
                usage_error("--rate given more than once");
            if (parse_u64(val, &o->rate) != 0)
                usage_error("--rate: '%s' is not a non-negative integer (bits per second)", val);
        } else if (strcmp(name, "--block-bytes") == 0) {
            if (seen_block++)
                usage_error("--block-bytes given more than once");
            if (parse_u64(val, &o->block) != 0 || o->block < MIN_BLOCK || o->block > MAX_BLOCK)
                usage_error("--block-bytes: '%s' is not an integer in %u..%u", val, MIN_BLOCK, MAX_BLOCK);
        } else if (strcmp(name, "--count") == 0) {
            if (seen_count++)
                usage_error("--count given more than once");
            if (parse_u64(val, &o->count) != 0 || o->count == 0)
                usage_error("--count: '%s' is not a positive integer", val);
        } else if (strcmp(name, "--corrupt") == 0) {
            char *end = NULL;
            if (seen_corrupt++)
                usage_error("--corrupt given more than once");
            errno = 0;
            o->corrupt = strtod(val, &end);
            if (errno != 0 || end == val || *end != '\0' || isspace((unsigned char)*val) || !isfinite(o->corrupt) ||
                o->corrupt < 0.0 || o->corrupt > 1.0)
                usage_error("--corrupt: '%s' is not a fraction between 0 and 1", val);
        } else if (strcmp(name, "--corrupt-side") == 0) {
            if (seen_side++)
                usage_error("--corrupt-side given more than once");
            if (strcmp(val, "0") == 0)
                o->corrupt_side = 0;
            else if (strcmp(val, "1") == 0)
                o->corrupt_side = 1;
            else
                usage_error("--corrupt-side: '%s' is not 0 or 1", val);
        } else { /* --state */
            if (o->state)
                usage_error("--state given more than once");
            if (*val == '\0')
                usage_error("--state: empty file name");
            o->state = val;
        }
    }
    if (o->n_out != 2)
        usage_error("exactly two --out directories are required (got %d)", o->n_out);
    if (strcmp(o->out[0], o->out[1]) == 0)
        usage_error("the two --out directories must differ");
}

/* ------------------------------------------------------------------ files */

static int write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Renames without replacing an existing target. */
static int rename_noreplace(int dirfd, const char *from, const char *to)
{
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* File system without RENAME_NOREPLACE: check, then rename. */
    if (faccessat(dirfd, to, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(dirfd, from, dirfd, to);
}

/* Writes buf to dirfd/tmp, fsyncs it and renames it to dirfd/name. */
static int write_file_atomic(int dirfd, const char *tmp, const char *name, const unsigned char *buf, size_t len,
                             int replace)
{
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    if (close(fd) != 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    int rc = replace ? renameat(dirfd, tmp, dirfd, name) : rename_noreplace(dirfd, tmp, name);
    if (rc != 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    return 0;
}

/* Opens (creating if missing) a directory and locks it against a second
 * simulator writing into it. */
static int open_side(struct side *s, const char *path)
{
    s->path = path;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fail("cannot create directory %s: %s", path, strerror(errno));
        return -1;
    }
    s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        fail("cannot open directory %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(s->dirfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            fail("another " PROG " is writing into %s", path);
        else
            fail("cannot lock %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Matches "<digits>.key" (seq > 0) and ".<digits>.key.tmp". */
static int parse_block_name(const char *name, uint64_t *seq, int *is_tmp)
{
    const char *p = name;
    char digits[24];
    size_t n = 0;

    *is_tmp = (*p == '.');
    if (*is_tmp)
        p++;
    while (isdigit((unsigned char)p[n]) && n < sizeof digits - 1) {
        digits[n] = p[n];
        n++;
    }
    if (n == 0 || isdigit((unsigned char)p[n]))
        return -1;
    digits[n] = '\0';
    if (strcmp(p + n, *is_tmp ? ".key.tmp" : ".key") != 0)
        return -1;
    if (parse_u64(digits, seq) != 0)
        return -1;
    return 0;
}

/* Removes temporary files left by an interrupted run and returns the
 * highest seq present in the directory (0 when none). */
static int scan_side(const struct side *s, uint64_t *max_seq)
{
    int fd = dup(s->dirfd);
    DIR *d;
    struct dirent *e;

    *max_seq = 0;
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        fail("cannot read directory %s: %s", s->path, strerror(errno));
        return -1;
    }
    rewinddir(d);
    while ((e = readdir(d)) != NULL) {
        uint64_t seq;
        int is_tmp;
        if (parse_block_name(e->d_name, &seq, &is_tmp) != 0)
            continue;
        if (is_tmp)
            unlinkat(s->dirfd, e->d_name, 0);
        else if (seq > *max_seq)
            *max_seq = seq;
    }
    closedir(d);
    return 0;
}

/* ------------------------------------------------------------------ state */

struct state_file {
    char *dir;  /* directory of the state file */
    char *base; /* its name */
    char *tmp;  /* temporary name used while replacing it */
    int dirfd;
};

static int state_open(struct state_file *st, const char *path)
{
    const char *slash = strrchr(path, '/');
    memset(st, 0, sizeof *st);
    st->dirfd = -1;
    if (slash) {
        size_t n = (size_t)(slash - path);
        st->dir = n ? strndup(path, n) : strdup("/");
        st->base = strdup(slash + 1);
    } else {
        st->dir = strdup(".");
        st->base = strdup(path);
    }
    if (!st->dir || !st->base) {
        fail("out of memory");
        return -1;
    }
    if (st->base[0] == '\0') {
        fail("--state %s names a directory, not a file", path);
        return -1;
    }
    if (asprintf(&st->tmp, ".%s.tmp", st->base) < 0) {
        st->tmp = NULL;
        fail("out of memory");
        return -1;
    }
    st->dirfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        fail("cannot open the directory of state file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void state_close(struct state_file *st)
{
    if (st->dirfd >= 0)
        close(st->dirfd);
    free(st->dir);
    free(st->base);
    free(st->tmp);
}

/* Reads the next seq; *next = 0 when the file does not exist. */
static int state_load(const struct state_file *st, const char *path, uint64_t *next)
{
    char buf[64];
    ssize_t n;
    int fd = openat(st->dirfd, st->base, O_RDONLY | O_CLOEXEC);

    *next = 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        fail("cannot open state file %s: %s", path, strerror(errno));
        return -1;
    }
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0) {
        fail("cannot read state file %s: %s", path, strerror(errno));
        return -1;
    }
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (parse_u64(buf, next) != 0 || *next == 0) {
        fail("state file %s is corrupt (expected the next seq as a positive decimal number); "
             "refusing to guess",
             path);
        return -1;
    }
    return 0;
}

static int state_store(const struct state_file *st, const char *path, uint64_t next)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%" PRIu64 "\n", next);
    if (write_file_atomic(st->dirfd, st->tmp, st->base, (const unsigned char *)buf, (size_t)len, 1) != 0 ||
        fsync(st->dirfd) != 0) {
        fail("cannot write state file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- timing */

static long double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long double)ts.tv_sec * 1e9L + (long double)ts.tv_nsec;
}

/* Sleeps until the monotonic time `until` (ns) or a stop signal. Signals
 * are blocked except inside ppoll, so a signal cannot slip in between the
 * flag check and the sleep. */
static void sleep_until(long double until, const sigset_t *unblocked)
{
    while (!stop_requested) {
        long double left = until - now_ns();
        struct timespec ts = {0, 0};
        if (left > 0) {
            ts.tv_sec = (time_t)(left / 1e9L);
            ts.tv_nsec = (long)(left - (long double)ts.tv_sec * 1e9L);
            if (ts.tv_nsec < 0)
                ts.tv_nsec = 0;
            if (ts.tv_nsec > 999999999L)
                ts.tv_nsec = 999999999L;
        }
        ppoll(NULL, 0, &ts, unblocked);
        if (left <= 0)
            return;
    }
}

/* ------------------------------------------------------------------ blocks */

static int random_u64(uint64_t *v)
{
    unsigned char b[8];
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    *v = 0;
    for (int i = 0; i < 8; i++)
        *v = (*v << 8) | b[i];
    return 0;
}

/* Uniform in [0, n) without modulo bias. */
static int random_below(uint64_t n, uint64_t *out)
{
    uint64_t v, limit = UINT64_MAX - UINT64_MAX % n;
    do {
        if (random_u64(&v) != 0)
            return -1;
    } while (v >= limit);
    *out = v % n;
    return 0;
}

static int write_block(const struct side *s, uint64_t seq, const unsigned char *buf, size_t len)
{
    char name[32], tmp[40];
    snprintf(name, sizeof name, "%" PRIu64 ".key", seq);
    snprintf(tmp, sizeof tmp, ".%" PRIu64 ".key.tmp", seq);
    if (write_file_atomic(s->dirfd, tmp, name, buf, len, 0) != 0) {
        if (errno == EEXIST)
            fail("%s/%s already exists; refusing to reuse seq %" PRIu64, s->path, name, seq);
        else
            fail("cannot write %s/%s: %s", s->path, name, strerror(errno));
        return -1;
    }
    return 0;
}

/* Fills buf with fresh key and writes it to both sides; with `corrupt`, the
 * copy on `corrupt_side` has one random byte flipped. */
static int emit_block(const struct side sides[2], uint64_t seq, unsigned char *buf, size_t len, int corrupt,
                      int corrupt_side)
{
    uint64_t pos = 0, mask = 0;
    int rc = 0;

    if (RAND_bytes(buf, (int)len) != 1) {
        fail("RAND_bytes failed");
        return -1;
    }
    if (corrupt && (random_below(len, &pos) != 0 || random_below(255, &mask) != 0)) {
        fail("RAND_bytes failed");
        OPENSSL_cleanse(buf, len);
        return -1;
    }
    for (int i = 0; i < 2 && rc == 0; i++) {
        int flip = corrupt && i == corrupt_side;
        if (flip)
            buf[pos] ^= (unsigned char)(mask + 1);
        rc = write_block(&sides[i], seq, buf, len);
        if (flip)
            buf[pos] ^= (unsigned char)(mask + 1);
    }
    OPENSSL_cleanse(buf, len);
    if (rc == 0 && (fsync(sides[0].dirfd) != 0 || fsync(sides[1].dirfd) != 0)) {
        fail("cannot sync the link directories: %s", strerror(errno));
        return -1;
    }
    return rc;
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    struct options o;
    struct side sides[2] = {{NULL, -1}, {NULL, -1}};
    struct state_file st;
    char *state_path = NULL;
    unsigned char *buf = MAP_FAILED;
    uint64_t next = 0, written = 0, corrupted = 0;
    int status = 1;
    sigset_t block_set, unblocked;
    struct sigaction sa;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--device") == 0)
            return device_main(argc, argv);
    parse_args(argc, argv, &o);
    memset(&st, 0, sizeof st);
    st.dirfd = -1;

    /* Stop requests are only taken between blocks (see sleep_until). */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block_set);
    sigaddset(&block_set, SIGINT);
    sigaddset(&block_set, SIGTERM);
    sigprocmask(SIG_BLOCK, &block_set, &unblocked);
    sigdelset(&unblocked, SIGINT);
    sigdelset(&unblocked, SIGTERM);

    for (int i = 0; i < 2; i++)
        if (open_side(&sides[i], o.out[i]) != 0)
            goto out;
    {
        struct stat a, b;
        if (fstat(sides[0].dirfd, &a) != 0 || fstat(sides[1].dirfd, &b) != 0) {
            fail("cannot stat the link directories: %s", strerror(errno));
            goto out;
        }
        if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            fputs(PROG ": the two --out directories are the same directory\n", stderr);
            fputs(usage_text, stderr);
            status = EXIT_USAGE;
            goto out;
        }
    }

    if (o.state) {
        state_path = strdup(o.state);
    } else if (asprintf(&state_path, "%s/%s", o.out[0], STATE_NAME) < 0) {
        state_path = NULL;
    }
    if (!state_path) {
        fail("out of memory");
        goto out;
    }
    if (state_open(&st, state_path) != 0 || state_load(&st, state_path, &next) != 0)
        goto out;

    /* Never reuse a seq still present in either directory, even when the
     * state file was lost or points at another directory pair. */
    for (int i = 0; i < 2; i++) {
        uint64_t max_seq;
        if (scan_side(&sides[i], &max_seq) != 0)
            goto out;
        if (max_seq >= next) {
            if (next != 0 && !o.quiet)
                fprintf(stderr,
                        PROG ": %s holds seq %" PRIu64 " beyond the state file; "
                             "continuing after it\n",
                        sides[i].path, max_seq);
            next = max_seq + 1;
        }
    }
    if (next == 0)
        next = 1;

    buf = mmap(NULL, o.block, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        fail("cannot allocate a %" PRIu64 "-byte block: %s", o.block, strerror(errno));
        goto out;
    }
    (void)mlock(buf, o.block);                  /* keep key out of swap when allowed */
    (void)madvise(buf, o.block, MADV_DONTDUMP); /* and out of core files */

    if (!o.quiet) {
        fprintf(stderr, PROG ": writing %" PRIu64 "-byte blocks into %s and %s from seq %" PRIu64, o.block, o.out[0],
                o.out[1], next);
        if (o.rate)
            fprintf(stderr, " at %" PRIu64 " bit/s\n", o.rate);
        else
            fputs(" unpaced\n", stderr);
    }

    const long double period = o.rate ? (long double)o.block * 8.0L * 1e9L / (long double)o.rate : 0;
    long double due = now_ns() + period;
    status = 0;
    while (!stop_requested && (o.count == 0 || written < o.count)) {
        uint64_t seq = next;
        int corrupt = 0;

        if (o.rate)
            sleep_until(due, &unblocked);
        else
            sleep_until(0, &unblocked); /* only takes pending signals */
        if (stop_requested)
            break;
        if (seq == UINT64_MAX) {
            fail("sequence numbers exhausted");
            status = 1;
            break;
        }
        if (o.corrupt > 0.0) {
            uint64_t r;
            if (random_u64(&r) != 0) {
                fail("RAND_bytes failed");
                status = 1;
                break;
            }
            corrupt = (long double)(r >> 11) / (long double)(UINT64_C(1) << 53) < (long double)o.corrupt;
        }
        /* Reserve the seq before any file carries it: a crash may skip a
         * seq, never reuse one. */
        if (state_store(&st, state_path, seq + 1) != 0) {
            status = 1;
            break;
        }
        next = seq + 1;
        if (emit_block(sides, seq, buf, o.block, corrupt, o.corrupt_side) != 0) {
            status = 1;
            break;
        }
        written++;
        if (corrupt) {
            corrupted++;
            printf("corrupted %" PRIu64 "\n", seq);
            fflush(stdout);
        }
        if (o.rate) {
            long double now = now_ns();
            due += period;
            if (now - due > MAX_BACKLOG_NS)
                due = now; /* after a long stall, do not burst to catch up */
        }
    }

    if (!o.quiet)
        fprintf(stderr, PROG ": %s after %" PRIu64 " blocks (%" PRIu64 " corrupted); next seq %" PRIu64 "\n",
                status == 0 ? "stopped" : "failed", written, corrupted, next);

out:
    if (buf != MAP_FAILED) {
        OPENSSL_cleanse(buf, o.block);
        munmap(buf, o.block);
    }
    state_close(&st);
    free(state_path);
    for (int i = 0; i < 2; i++)
        if (sides[i].dirfd >= 0)
            close(sides[i].dirfd);
    return status;
}
