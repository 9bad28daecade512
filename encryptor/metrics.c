/* The encryptor's counters and their exposition in the Prometheus text
 * format (metrics.h). */
#include "encryptor/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include "runtime/prom_text.h"
#include "encryptor/frame.h"

static atomic_ullong counters[ENC_M_COUNT];

void enc_metrics_add(enum enc_metric m, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

uint64_t enc_metrics_get(enum enc_metric m)
{
    return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    prom_family(f, name, "counter", help);
    prom_u64(f, name, v, NULL);
}

static void gauge(FILE *f, const char *name, const char *help, uint64_t v)
{
    prom_family(f, name, "gauge", help);
    prom_u64(f, name, v, NULL);
}

static void write_bytes(FILE *f)
{
    prom_family(f, "qkd_encryptor_plaintext_bytes_total", "counter",
                "Plaintext bytes: in, read from the plaintext side to be encrypted; out, decrypted and written to it.");
    prom_u64(f, "qkd_encryptor_plaintext_bytes_total", enc_metrics_get(ENC_M_PLAINTEXT_IN), "direction", "in", NULL);
    prom_u64(f, "qkd_encryptor_plaintext_bytes_total", enc_metrics_get(ENC_M_PLAINTEXT_OUT), "direction", "out", NULL);
    prom_family(f, "qkd_encryptor_ciphertext_bytes_total", "counter",
                "Ciphertext bytes (whole frames): in, read from the peer encryptor; out, written to it.");
    prom_u64(f, "qkd_encryptor_ciphertext_bytes_total", enc_metrics_get(ENC_M_CIPHERTEXT_IN), "direction", "in", NULL);
    prom_u64(f, "qkd_encryptor_ciphertext_bytes_total", enc_metrics_get(ENC_M_CIPHERTEXT_OUT), "direction", "out",
             NULL);
}

static void write_connections(FILE *f, enc_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    size_t open = rt->active;
    pthread_mutex_unlock(&rt->lock);
    gauge(f, "qkd_encryptor_connections_open", "Connections being served now.", open);
    counter(f, "qkd_encryptor_connections_total", "Connections opened since the start.", atomic_load(&rt->opened));
    prom_family(f, "qkd_encryptor_connections_refused_total", "counter",
                "Connections refused, by reason: not_allowed (not in 'allow'), per_source and rate (the caps per "
                "source address), max_connections, setup (peer encryptor unreachable, not redirected, destination "
                "not allowed).");
    for (int r = 0; r < ENC_REFUSED_COUNT; r++)
        prom_u64(f, "qkd_encryptor_connections_refused_total", atomic_load(&rt->refused[r]), "reason",
                 admission_reason_name((enum enc_refusal)r), NULL);
    counter(f, "qkd_encryptor_connections_without_payload_total",
            "Connections the client closed before sending a byte: nothing was sent for them and no key spent.",
            atomic_load(&rt->without_payload));
    counter(f, "qkd_encryptor_tag_failures_total", "Frames whose authentication tag failed; each ended its connection.",
            atomic_load(&rt->tag_failures));
    counter(f, "qkd_encryptor_malformed_frames_total", "Malformed or out-of-order frames; each ended its connection.",
            atomic_load(&rt->malformed));
}

static void write_pads(FILE *f, enc_runtime *rt)
{
    pad_pool_stats st;
    pad_pool_get_stats(rt->pool, &st);
    gauge(f, "qkd_encryptor_pad_pool_keys", "Keys ready in the sender's pad pool.", st.keys_pooled);
    gauge(f, "qkd_encryptor_pad_pool_bytes", "Key bytes ready in the sender's pad pool.", st.bytes_pooled);
    counter(f, "qkd_encryptor_pad_fetched_keys_total", "Keys the pad pool fetched with GET_KEY.", st.keys_fetched);
    counter(f, "qkd_encryptor_pad_fetched_bytes_total", "Key bytes the pad pool fetched with GET_KEY.",
            st.bytes_fetched);
    counter(f, "qkd_encryptor_pad_spent_keys_total",
            "Keys taken from the pad pool and announced to the peer encryptor for payload: the key spent (an "
            "announced key is never used again, whether or not its connection used it up).",
            enc_metrics_get(ENC_M_PADS_SPENT));
    counter(f, "qkd_encryptor_pad_spent_bytes_total",
            "Key bytes of the spent keys; against plaintext_bytes_total{direction=\"in\"}, the key spent per payload "
            "byte carried.",
            enc_metrics_get(ENC_M_PAD_BYTES_SPENT));
    counter(f, "qkd_encryptor_pad_aged_out_keys_total", "Pooled keys dropped unused for their age.", st.keys_dropped);
    counter(f, "qkd_encryptor_pad_received_keys_total",
            "Announced keys the receivers fetched with GET_KEY_WITH_KEY_IDS.", enc_metrics_get(ENC_M_PADS_IN));
    counter(f, "qkd_encryptor_pad_stalls_total",
            "Times a stream found the pad pool empty and waited (it sends nothing meanwhile).", st.waits);
    prom_family(f, "qkd_encryptor_pad_stall_seconds_total", "counter",
                "Time streams spent waiting for the pad pool, summed over streams.");
    prom_f64(f, "qkd_encryptor_pad_stall_seconds_total", st.wait_seconds, NULL);
    prom_family(f, "qkd_encryptor_kme_errors_total", "counter",
                "Requests to this encryptor's KME that failed (no answer or an error status), by operation.");
    prom_u64(f, "qkd_encryptor_kme_errors_total", st.fetch_failures, "operation", "enc_keys", NULL);
    prom_u64(f, "qkd_encryptor_kme_errors_total", enc_metrics_get(ENC_M_PADS_IN_ERRORS), "operation", "dec_keys", NULL);
    gauge(f, "qkd_encryptor_kme_up", "1 while the KME answered the pad pool's last request.", st.kme_answered != 0);
}

char *enc_metrics_text(enc_runtime *rt, size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    prom_family(f, "qkd_encryptor_info", "gauge", "Always 1: the role, mode and peer SAE of this encryptor.");
    prom_u64(f, "qkd_encryptor_info", 1, "role", rt->cfg->role == ENC_ROLE_USERS ? "users" : "server", "mode",
             rt->cfg->mode == FRAME_MODE_OTP ? "otp" : "aes-256-gcm", "peer_sae", rt->cfg->peer_sae, NULL);
    write_bytes(f);
    write_connections(f, rt);
    write_pads(f, rt);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}
