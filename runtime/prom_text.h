/* Writing the Prometheus text exposition format (version 0.0.4) served at
 * /metrics on the admin listeners of kme and encryptor: a HELP and TYPE
 * header per family, then its samples, label values escaped (backslash,
 * double quote, newline). Labels are given as name, value pairs ending with
 * NULL. Label values are IDs and fixed words, never key material. */
#ifndef RUNTIME_PROM_TEXT_H
#define RUNTIME_PROM_TEXT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The content type of the exposition. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void prom_family(FILE *f, const char *name, const char *type, const char *help);

/* One sample: name{labels} value. */
void prom_u64(FILE *f, const char *name, uint64_t value, ...) __attribute__((sentinel));
void prom_f64(FILE *f, const char *name, double value, ...) __attribute__((sentinel));
void prom_vu64(FILE *f, const char *name, uint64_t value, va_list labels);
void prom_vf64(FILE *f, const char *name, double value, va_list labels);

/* The samples of one histogram: name_bucket (cumulative, le from bounds,
 * then +Inf), name_sum and name_count. counts[i] are the observations that
 * fell in bucket i alone (the last, counts[nbounds], above every bound). */
void prom_histogram(FILE *f, const char *name, const double *bounds, const uint64_t *counts, size_t nbounds, double sum,
                    ...) __attribute__((sentinel));

/* The bucket of bounds (ascending) an observation falls in: 0..nbounds. */
size_t prom_bucket_of(const double *bounds, size_t nbounds, double value);

#endif
