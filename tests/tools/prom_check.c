/* prom_check: a strict reader of the Prometheus text exposition format
 * (version 0.0.4) for the test suites, and a picker of samples from it.
 *
 *   prom_check FILE [SELECTOR...]
 *       Reads FILE ("-": standard input) and checks it: every line is a
 *       HELP, TYPE or other comment, or a sample; names and label names are
 *       valid, label values use only the escapes \\ \" \n, values are
 *       numbers (NaN, +Inf, -Inf allowed), an optional timestamp is an
 *       integer; every family has exactly one HELP and one TYPE, the TYPE
 *       before its samples, and its lines together; no sample twice (same
 *       name and labels); counters are named *_total and are >= 0;
 *       histograms have, per label set, le buckets in increasing order with
 *       non-decreasing counts ending with +Inf, and _sum and _count, the
 *       count equal to the +Inf bucket; the text ends with a newline.
 *       On a fault prints "line N: what" to stderr and exits 1.
 *       Otherwise prints one line per SELECTOR: NAME or NAME{l="v",...}
 *       picks the samples of that name whose labels include those given;
 *       the line is the sum of their values, or "-" when none matched.
 *       Without selectors prints "ok: F families, S samples".
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 16
#define TEXT_MAX 512

typedef struct {
    char name[TEXT_MAX], value[TEXT_MAX];
} label;

typedef struct {
    char name[TEXT_MAX];
    label labels[MAX_LABELS];
    size_t nlabels;
    double value;
    size_t line;
} sample;

typedef struct {
    char name[TEXT_MAX];
    char type[16];
    int help, typed, has_samples, closed;
} family;

static sample *samples;
static size_t nsamples, samples_cap;
static family *families;
static size_t nfamilies, families_cap;
static size_t lineno;

__attribute__((format(printf, 1, 2), noreturn)) static void fault(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (lineno)
        fprintf(stderr, "line %zu: ", lineno);
    else
        fprintf(stderr, "the whole text: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 64;
    p = realloc(p, *cap * size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static int name_start(int c, int colon)
{
    return isalpha(c) || c == '_' || (colon && c == ':');
}
static int name_char(int c, int colon)
{
    return isalnum(c) || c == '_' || (colon && c == ':');
}

/* A metric name (colon allowed) or label name; advances *p. */
static void read_name(const char **p, char *out, int colon, const char *what)
{
    const char *s = *p;
    size_t n = 0;
    if (!name_start((unsigned char)*s, colon))
        fault("%s expected at \"%.20s\"", what, s);
    while (name_char((unsigned char)s[n], colon))
        n++;
    if (n >= TEXT_MAX)
        fault("%s too long", what);
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
}

/* {name="value",...} after a metric name; advances *p. */
static size_t read_labels(const char **p, label *labels)
{
    const char *s = *p;
    size_t n = 0;
    if (*s != '{')
        return 0;
    s++;
    while (*s != '}') {
        if (n == MAX_LABELS)
            fault("more than %d labels", MAX_LABELS);
        read_name(&s, labels[n].name, 0, "label name");
        if (strncmp(labels[n].name, "__", 2) == 0)
            fault("label name %s is reserved", labels[n].name);
        for (size_t i = 0; i < n; i++)
            if (strcmp(labels[i].name, labels[n].name) == 0)
                fault("label %s given twice", labels[n].name);
        if (s[0] != '=' || s[1] != '"')
            fault("label %s: =\"value\" expected", labels[n].name);
        s += 2;
        size_t len = 0;
        while (*s != '"') {
            char c = *s++;
            if (c == '\0')
                fault("label %s: unterminated value", labels[n].name);
            if (c == '\\') {
                c = *s++;
                if (c == 'n')
                    c = '\n';
                else if (c != '\\' && c != '"')
                    fault("label %s: invalid escape \\%c", labels[n].name, c ? c : '0');
            }
            if (len + 1 >= TEXT_MAX)
                fault("label %s: value too long", labels[n].name);
            labels[n].value[len++] = c;
        }
        labels[n].value[len] = '\0';
        s++;
        n++;
        if (*s == ',')
            s++;
        else if (*s != '}')
            fault("',' or '}' expected after label %s", labels[n - 1].name);
    }
    *p = s + 1;
    return n;
}

/* A sample value: a decimal float, NaN, +Inf or -Inf. */
static double read_value(const char **p)
{
    const char *s = *p;
    size_t n = strcspn(s, " \t");
    char text[64];
    if (n == 0 || n >= sizeof text)
        fault("value expected");
    memcpy(text, s, n);
    text[n] = '\0';
    *p = s + n;
    if (strcmp(text, "NaN") == 0)
        return NAN;
    if (strcmp(text, "+Inf") == 0)
        return INFINITY;
    if (strcmp(text, "-Inf") == 0)
        return -INFINITY;
    const char *t = text;
    if (*t == '+' || *t == '-')
        t++;
    size_t digits = 0;
    while (isdigit((unsigned char)*t))
        t++, digits++;
    if (*t == '.')
        for (t++; isdigit((unsigned char)*t); t++)
            digits++;
    if (!digits)
        fault("invalid value \"%s\"", text);
    if (*t == 'e' || *t == 'E') {
        t++;
        if (*t == '+' || *t == '-')
            t++;
        if (!isdigit((unsigned char)*t))
            fault("invalid value \"%s\"", text);
        while (isdigit((unsigned char)*t))
            t++;
    }
    if (*t)
        fault("invalid value \"%s\"", text);
    return strtod(text, NULL);
}

static family *family_of(const char *name, int create)
{
    for (size_t i = 0; i < nfamilies; i++)
        if (strcmp(families[i].name, name) == 0)
            return &families[i];
    if (!create)
        return NULL;
    families = grow(families, &families_cap, nfamilies, sizeof *families);
    family *f = &families[nfamilies++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

/* Every line of a family stays together: entering f closes the family before. */
static void enter(family *f)
{
    static family *current;
    if (f == current)
        return;
    if (f->closed)
        fault("the lines of family %s are not together", f->name);
    if (current)
        current->closed = 1;
    current = f;
}

static void comment(const char *s)
{
    char name[TEXT_MAX];
    int help = strncmp(s, "# HELP ", 7) == 0, type = strncmp(s, "# TYPE ", 7) == 0;
    if (!help && !type)
        return; /* another comment */
    s += 7;
    read_name(&s, name, 1, "metric name");
    family *f = family_of(name, 1);
    enter(f);
    if (help) {
        if (f->help)
            fault("second HELP for %s", name);
        if (*s != ' ' || !s[1])
            fault("HELP for %s has no text", name);
        for (s++; *s; s++)
            if (*s == '\\' && s[1] != '\\' && s[1] != 'n')
                fault("HELP for %s: invalid escape", name);
            else if (*s == '\\')
                s++;
        f->help = 1;
        return;
    }
    if (f->typed)
        fault("second TYPE for %s", name);
    if (f->has_samples)
        fault("TYPE for %s after its samples", name);
    if (*s != ' ')
        fault("TYPE for %s: type expected", name);
    s++;
    if (strcmp(s, "counter") && strcmp(s, "gauge") && strcmp(s, "histogram") && strcmp(s, "summary") &&
        strcmp(s, "untyped"))
        fault("TYPE for %s: unknown type \"%s\"", name, s);
    snprintf(f->type, sizeof f->type, "%s", s);
    f->typed = 1;
}

/* The family a sample name belongs to (histogram and summary suffixes). */
static family *family_for_sample(const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(name), m = strlen(suffixes[i]);
        if (n > m && strcmp(name + n - m, suffixes[i]) == 0) {
            char base[TEXT_MAX];
            snprintf(base, sizeof base, "%.*s", (int)(n - m), name);
            family *f = family_of(base, 0);
            if (f && (strcmp(f->type, "histogram") == 0 || (i > 0 && strcmp(f->type, "summary") == 0)))
                return f;
        }
    }
    return family_of(name, 1);
}

static int same_labels(const sample *a, const sample *b, const char *skip)
{
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < a->nlabels; i++) {
        if (skip && strcmp(a->labels[i].name, skip) == 0)
            continue;
        na++;
        int found = 0;
        for (size_t j = 0; j < b->nlabels && !found; j++)
            found = strcmp(a->labels[i].name, b->labels[j].name) == 0 &&
                    strcmp(a->labels[i].value, b->labels[j].value) == 0;
        if (!found)
            return 0;
    }
    for (size_t j = 0; j < b->nlabels; j++)
        nb += !(skip && strcmp(b->labels[j].name, skip) == 0);
    return na == nb;
}

static const char *label_value(const sample *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}

static int whole(double v)
{
    return v >= 0 && v < 1.8e19 && v == (double)(unsigned long long)v;
}

static void sample_line(const char *s)
{
    samples = grow(samples, &samples_cap, nsamples, sizeof *samples);
    sample *x = &samples[nsamples];
    memset(x, 0, sizeof *x);
    x->line = lineno;
    read_name(&s, x->name, 1, "metric name");
    x->nlabels = read_labels(&s, x->labels);
    if (*s != ' ' && *s != '\t')
        fault("space and value expected after %s", x->name);
    while (*s == ' ' || *s == '\t')
        s++;
    x->value = read_value(&s);
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s) { /* timestamp */
        const char *t = *s == '-' ? s + 1 : s;
        if (!isdigit((unsigned char)*t))
            fault("invalid timestamp \"%s\"", s);
        while (isdigit((unsigned char)*t))
            t++;
        while (*t == ' ' || *t == '\t')
            t++;
        if (*t)
            fault("unexpected text after the value: \"%s\"", s);
    }
    family *f = family_for_sample(x->name);
    enter(f);
    if (!f->typed)
        fault("sample %s before the TYPE of its family", x->name);
    f->has_samples = 1;
    for (size_t i = 0; i < nsamples; i++)
        if (strcmp(samples[i].name, x->name) == 0 && same_labels(&samples[i], x, NULL))
            fault("sample %s given twice (first on line %zu)", x->name, samples[i].line);
    if (strcmp(f->type, "counter") == 0) {
        size_t n = strlen(f->name);
        if (n < 6 || strcmp(f->name + n - 6, "_total") != 0)
            fault("counter %s is not named *_total", f->name);
        if (!(x->value >= 0))
            fault("counter %s has a negative or NaN value", x->name);
    }
    if (strcmp(f->type, "histogram") == 0) {
        int bucket = strcmp(x->name + strlen(f->name), "_bucket") == 0;
        const char *le = label_value(x, "le");
        if (bucket != (le != NULL))
            fault("%s: le belongs to the _bucket samples only", x->name);
        if (bucket && strcmp(le, "+Inf") != 0) {
            const char *p = le;
            double v = read_value(&p);
            if (isnan(v))
                fault("%s: le is NaN", x->name);
        }
        if (strcmp(x->name + strlen(f->name), "_sum") != 0 && !whole(x->value))
            fault("%s: a bucket or count must be a whole number >= 0", x->name);
    }
    nsamples++;
}

/* Per histogram and label set: buckets increasing, ending with +Inf = _count; a _sum. */
static void check_histograms(void)
{
    for (size_t h = 0; h < nfamilies; h++) {
        family *f = &families[h];
        if (strcmp(f->type, "histogram") != 0)
            continue;
        char bucket[TEXT_MAX + 8], sum[TEXT_MAX + 8], count[TEXT_MAX + 8];
        snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
        snprintf(sum, sizeof sum, "%s_sum", f->name);
        snprintf(count, sizeof count, "%s_count", f->name);
        for (size_t i = 0; i < nsamples; i++) {
            const sample *c = &samples[i];
            if (strcmp(c->name, count) != 0)
                continue;
            lineno = c->line;
            double last_le = -INFINITY, last_n = 0, inf = -1;
            int have_sum = 0;
            for (size_t j = 0; j < nsamples; j++) {
                const sample *b = &samples[j];
                if (strcmp(b->name, sum) == 0 && same_labels(b, c, NULL))
                    have_sum = 1;
                if (strcmp(b->name, bucket) != 0 || !same_labels(b, c, "le"))
                    continue;
                const char *p = label_value(b, "le");
                double le = strcmp(p, "+Inf") == 0 ? INFINITY : read_value(&p);
                lineno = b->line;
                if (inf >= 0)
                    fault("%s: a bucket after +Inf", bucket);
                if (!(le > last_le))
                    fault("%s: le not increasing", bucket);
                if (b->value < last_n)
                    fault("%s: bucket counts decrease", bucket);
                last_le = le;
                last_n = b->value;
                if (isinf(le))
                    inf = b->value;
            }
            lineno = c->line;
            if (inf < 0)
                fault("%s: no +Inf bucket for this label set", f->name);
            if (inf != c->value)
                fault("%s: _count %.17g differs from the +Inf bucket %.17g", f->name, c->value, inf);
            if (!have_sum)
                fault("%s: no _sum for this label set", f->name);
        }
        for (size_t j = 0; j < nsamples; j++) { /* buckets without a count */
            const sample *b = &samples[j];
            int counted = 0;
            if (strcmp(b->name, bucket) != 0 && strcmp(b->name, sum) != 0)
                continue;
            for (size_t i = 0; i < nsamples && !counted; i++)
                counted = strcmp(samples[i].name, count) == 0 &&
                          same_labels(b, &samples[i], strcmp(b->name, bucket) == 0 ? "le" : NULL);
            lineno = b->line;
            if (!counted)
                fault("%s: no _count for this label set", b->name);
        }
    }
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "prom_check: cannot read %s\n", path);
        exit(2);
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (f != stdin)
        fclose(f);
    if (!buf) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void select_samples(const char *selector)
{
    sample want;
    memset(&want, 0, sizeof want);
    const char *s = selector;
    lineno = 0;
    read_name(&s, want.name, 1, "selector name");
    want.nlabels = read_labels(&s, want.labels);
    if (*s)
        fault("selector %s: unexpected \"%s\"", selector, s);
    double total = 0;
    int matched = 0;
    for (size_t i = 0; i < nsamples; i++) {
        if (strcmp(samples[i].name, want.name) != 0)
            continue;
        int ok = 1;
        for (size_t l = 0; l < want.nlabels && ok; l++) {
            const char *v = label_value(&samples[i], want.labels[l].name);
            ok = v && strcmp(v, want.labels[l].value) == 0;
        }
        if (ok) {
            total += samples[i].value;
            matched = 1;
        }
    }
    if (matched)
        printf("%.17g\n", total);
    else
        printf("-\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: prom_check FILE [SELECTOR...]\n");
        return 2;
    }
    size_t len;
    char *text = read_all(argv[1], &len);
    if (strlen(text) != len) {
        lineno = 0;
        fault("the text holds a NUL byte");
    }
    if (len && text[len - 1] != '\n') {
        lineno = 0;
        fault("the text does not end with a newline");
    }
    char *line = text;
    while (*line) {
        char *end = strchr(line, '\n');
        *end = '\0';
        lineno++;
        if (line[0] == '#')
            comment(line);
        else if (line[0])
            sample_line(line);
        line = end + 1;
    }
    for (size_t i = 0; i < nfamilies; i++) {
        lineno = 0;
        if (!families[i].help || !families[i].typed)
            fault("family %s lacks its %s line", families[i].name, families[i].help ? "TYPE" : "HELP");
    }
    check_histograms();
    if (argc == 2)
        printf("ok: %zu families, %zu samples\n", nfamilies, nsamples);
    for (int i = 2; i < argc; i++)
        select_samples(argv[i]);
    free(text);
    free(samples);
    free(families);
    return 0;
}
