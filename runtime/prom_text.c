/* The Prometheus text exposition format: headers, escaping, samples and
 * histograms (prom_text.h). */
#include "runtime/prom_text.h"

#include <math.h>

static void put_escaped(FILE *f, const char *s, int quotes)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' && quotes)
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s ", name);
    put_escaped(f, help, 0);
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* name{a="x",b="y"[,le="..."]} with the pairs of labels. */
static void put_name(FILE *f, const char *name, va_list labels, const char *le)
{
    fputs(name, f);
    va_list ap;
    va_copy(ap, labels);
    const char *label = va_arg(ap, const char *);
    int any = 0;
    for (; label; label = va_arg(ap, const char *)) {
        const char *value = va_arg(ap, const char *);
        fprintf(f, "%s%s=\"", any ? "," : "{", label);
        put_escaped(f, value ? value : "", 1);
        fputc('"', f);
        any = 1;
    }
    va_end(ap);
    if (le)
        fprintf(f, "%sle=\"%s\"", any ? "," : "{", le);
    if (any || le)
        fputc('}', f);
}

static void put_f64(FILE *f, double v)
{
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else
        fprintf(f, "%.9g", v);
}

void prom_vu64(FILE *f, const char *name, uint64_t value, va_list labels)
{
    put_name(f, name, labels, NULL);
    fprintf(f, " %llu\n", (unsigned long long)value);
}

void prom_vf64(FILE *f, const char *name, double value, va_list labels)
{
    put_name(f, name, labels, NULL);
    fputc(' ', f);
    put_f64(f, value);
    fputc('\n', f);
}

void prom_u64(FILE *f, const char *name, uint64_t value, ...)
{
    va_list ap;
    va_start(ap, value);
    prom_vu64(f, name, value, ap);
    va_end(ap);
}

void prom_f64(FILE *f, const char *name, double value, ...)
{
    va_list ap;
    va_start(ap, value);
    prom_vf64(f, name, value, ap);
    va_end(ap);
}

void prom_histogram(FILE *f, const char *name, const double *bounds, const uint64_t *counts, size_t nbounds, double sum,
                    ...)
{
    char metric[160], le[40];
    va_list ap;
    va_start(ap, sum);
    uint64_t total = 0;
    snprintf(metric, sizeof metric, "%s_bucket", name);
    for (size_t i = 0; i <= nbounds; i++) {
        total += counts[i];
        if (i < nbounds)
            snprintf(le, sizeof le, "%.9g", bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        put_name(f, metric, ap, le);
        fprintf(f, " %llu\n", (unsigned long long)total);
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    prom_vf64(f, metric, sum, ap);
    snprintf(metric, sizeof metric, "%s_count", name);
    prom_vu64(f, metric, total, ap);
    va_end(ap);
}

size_t prom_bucket_of(const double *bounds, size_t nbounds, double value)
{
    size_t i = 0;
    while (i < nbounds && value > bounds[i])
        i++;
    return i;
}
