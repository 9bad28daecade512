/* Writes the audit log: one JSON line per key handed out, the lines of one
 * answer in one write(2); reopened on reload (see audit.h). */
#include "kme/audit.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAILURE_REPORT_S 60 /* a failing audit log is reported at most this often */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the state below */
static int fd = -1;
static char path_in_use[1024];
static unsigned long long lost_lines; /* since the last report */
static time_t last_report;
static atomic_int enabled; /* fd is open: lines are worth building */

int audit_open(const char *path, char *err, size_t errlen)
{
    int fresh = -1;
    if (path && *path) {
        fresh = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fresh < 0) {
            snprintf(err, errlen, "cannot open the audit log %s: %s", path, strerror(errno));
            return -1;
        }
    }
    pthread_mutex_lock(&lock);
    int old = fd;
    fd = fresh;
    snprintf(path_in_use, sizeof path_in_use, "%s", fresh >= 0 ? path : "");
    atomic_store(&enabled, fresh >= 0);
    pthread_mutex_unlock(&lock);
    if (old >= 0)
        close(old);
    return 0;
}

void audit_close(void)
{
    char ignored[8];
    audit_open(NULL, ignored, sizeof ignored);
}

/* Appends text (lines lines) to the audit log; under the lock. */
static void append(const char *text, size_t len, size_t lines)
{
    pthread_mutex_lock(&lock);
    int failed = 0;
    if (fd >= 0) {
        size_t done = 0;
        while (done < len) {
            ssize_t n = write(fd, text + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                failed = n < 0 ? errno : EIO;
                break;
            }
            done += (size_t)n;
        }
    }
    time_t now = time(NULL);
    if (failed) {
        lost_lines += lines;
        if (now - last_report >= FAILURE_REPORT_S) {
            log_error("audit log %s: write failed (%s); %llu lines lost since the last report; requests are "
                      "still answered",
                      path_in_use, strerror(failed), lost_lines);
            last_report = now;
            lost_lines = 0;
        }
    } else if (lost_lines && now - last_report >= FAILURE_REPORT_S) {
        log_error("audit log %s: %llu more lines lost before writing worked again", path_in_use, lost_lines);
        last_report = now;
        lost_lines = 0;
    }
    pthread_mutex_unlock(&lock);
}

/* A JSON string. The IDs written are validated (printable, no quote or
 * backslash); anything else is escaped all the same. */
static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* The fields every line starts with, up to "slaves". */
static void put_head(FILE *f, const char *time_text, const kme_context *k, const char *event, const char *key_id,
                     const char *master)
{
    fprintf(f, "{\"time\":\"%s\",\"kme\":", time_text);
    put_string(f, k->cfg.kme_id);
    fprintf(f, ",\"event\":\"%s\",\"key_ID\":", event);
    put_string(f, key_id);
    fputs(",\"master\":", f);
    put_string(f, master);
}

static void now_text(char out[64])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* The lines of one answer, built in memory and appended with one write. */
typedef struct {
    FILE *f; /* a memstream over text */
    char *text;
    size_t len;
    size_t lines;
    char when[64];
} line_batch;

/* Starts a batch of count lines stamped now: the stream to write them to;
 * NULL when the log is off or there is nothing to write, or (logged) when
 * out of memory. */
static FILE *begin(line_batch *b, size_t count)
{
    if (!atomic_load(&enabled) || count == 0)
        return NULL; /* nothing to write */
    b->text = NULL;
    b->len = 0;
    b->lines = count;
    now_text(b->when);
    b->f = open_memstream(&b->text, &b->len);
    if (!b->f) {
        log_error("audit log: out of memory; %zu lines lost", count);
        return NULL;
    }
    return b->f;
}

/* Ends the batch's lines and appends them. */
static void finish(line_batch *b)
{
    if (fclose(b->f) == 0 && b->text)
        append(b->text, b->len, b->lines);
    else
        log_error("audit log: out of memory; %zu lines lost", b->lines);
    free(b->text);
}

/* ---- enc ------------------------------------------------------------------------ */

static void put_site_route(FILE *f, const supply_site *s)
{
    if (s->path_len == 0) { /* not known: the site's KME */
        put_string(f, s->kme);
        return;
    }
    fputc('[', f);
    for (size_t i = 0; i < s->path_len; i++) {
        if (i)
            fputc(',', f);
        put_string(f, s->path[i]);
    }
    fputc(']', f);
}

static void put_fresh_route(FILE *f, const supply_trace *t)
{
    if (t->nsites == 0) {
        fputs("\"local\"", f);
        return;
    }
    if (t->nsites == 1 && t->nlocal == 0) {
        put_site_route(f, &t->sites[0]);
        return;
    }
    /* Slaves at several sites: the way to each slave. */
    int first = 1;
    fputc('{', f);
    for (size_t i = 0; i < t->nlocal; i++, first = 0) {
        fputs(first ? "" : ",", f);
        put_string(f, t->local[i]);
        fputs(":\"local\"", f);
    }
    for (size_t s = 0; s < t->nsites; s++)
        for (size_t i = 0; i < t->sites[s].nslaves; i++, first = 0) {
            fputs(first ? "" : ",", f);
            put_string(f, t->sites[s].slaves[i]);
            fputc(':', f);
            put_site_route(f, &t->sites[s]);
        }
    fputc('}', f);
}

static const char *source_name(supply_source s)
{
    switch (s) {
    case SUPPLY_LINK:
        return "link";
    case SUPPLY_RELAY:
        return "relay";
    case SUPPLY_STOCK:
        return "stock";
    default:
        return "local";
    }
}

void audit_enc(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
               const etsi_key_container *keys, const supply_trace *trace)
{
    line_batch b;
    FILE *f = begin(&b, keys->count);
    if (!f)
        return;
    for (size_t i = 0; i < keys->count; i++) {
        int stocked = (long)i < trace->stocked;
        const etsi_key *key = &keys->keys[i];
        put_head(f, b.when, k, "enc", key->key_id, master);
        fputs(",\"slaves\":[", f);
        put_string(f, slave);
        for (size_t j = 0; j < req->additional_count; j++) {
            fputc(',', f);
            put_string(f, req->additional_slaves[j]);
        }
        fputs("],\"sae\":", f);
        put_string(f, master);
        fprintf(f, ",\"bits\":%zu,\"source\":\"%s\",\"route\":", key->key_len * 8,
                source_name(stocked ? SUPPLY_STOCK : trace->fresh));
        if (stocked)
            put_site_route(f, &trace->stock);
        else
            put_fresh_route(f, trace);
        fputs("}\n", f);
    }
    finish(&b);
}

/* ---- dec ------------------------------------------------------------------------ */

void audit_dec(kme_context *k, const char *master, const char *slave, const etsi_key_container *keys,
               char *const *key_slaves)
{
    line_batch b;
    FILE *f = begin(&b, keys->count);
    if (!f)
        return;
    for (size_t i = 0; i < keys->count; i++) {
        const etsi_key *key = &keys->keys[i];
        put_head(f, b.when, k, "dec", key->key_id, master);
        fputs(",\"slaves\":[", f);
        const char *list = key_slaves && key_slaves[i] ? key_slaves[i] : slave;
        char id[ETSI_ID_MAX + 1];
        int first = 1;
        while (*list) {
            size_t n = strcspn(list, " ");
            if (n > 0 && n <= ETSI_ID_MAX) {
                memcpy(id, list, n);
                id[n] = '\0';
                fputs(first ? "" : ",", f);
                put_string(f, id);
                first = 0;
            }
            list += n;
            list += strspn(list, " ");
        }
        fputs("],\"sae\":", f);
        put_string(f, slave);
        fprintf(f, ",\"bits\":%zu}\n", key->key_len * 8);
    }
    finish(&b);
}
