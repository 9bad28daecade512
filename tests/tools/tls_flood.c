/* tls_flood: a crowd of unwanted clients for the adversary tests. Opens
 * COUNT connections from a chosen local address to a TLS port and holds
 * them, in one of three ways:
 *   nocert     TLS handshake without a client certificate, then the headers
 *              of a POST announcing a body of LENGTH bytes (1 MB), and no
 *              body byte;
 *   slowbody   TLS handshake (with --cert/--key when given), the same
 *              headers, then one body byte per INTERVAL ms;
 *   slowhello  plain TCP, one byte of a 512-byte TLS handshake record per
 *              INTERVAL ms.
 * Every second it rewrites STATUS (one line: "opened N answered N
 * status401 N closed N refused N") so that a test can wait for a state; it
 * ends when every connection is closed or after HOLD seconds, and prints
 * the last line. Never key material: it reads only status lines. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096

enum mode { NOCERT, SLOWBODY, SLOWHELLO };

typedef struct {
    int fd;
    SSL *ssl;
    int open;
    int answered; /* an HTTP status line arrived */
    int status;
    size_t sent; /* slowhello: bytes of the hello sent */
} client;

static client clients[MAX_CONNS];

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int tcp_open(const char *bind_addr, const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in local = {0}, remote = {0};
    local.sin_family = AF_INET;
    if (inet_pton(AF_INET, bind_addr, &local.sin_addr) != 1 || bind(fd, (struct sockaddr *)&local, sizeof local)) {
        close(fd);
        return -1;
    }
    remote.sin_family = AF_INET;
    remote.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &remote.sin_addr) != 1 || connect(fd, (struct sockaddr *)&remote, sizeof remote)) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void close_client(client *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->open = 0;
}

/* Reads what the server sent, if anything: a status line is noted; the end
 * of the connection closes the client. */
static void poll_client(client *c)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    if (!c->open || poll(&p, 1, 0) <= 0)
        return;
    char buf[512];
    int n;
    if (c->ssl) {
        n = SSL_read(c->ssl, buf, sizeof buf - 1);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            close_client(c);
            return;
        }
    } else {
        n = (int)read(c->fd, buf, sizeof buf - 1);
        if (n <= 0) {
            close_client(c);
            return;
        }
    }
    buf[n] = '\0';
    int status;
    if (!c->answered && sscanf(buf, "HTTP/1.%*d %d", &status) == 1) {
        c->answered = 1;
        c->status = status;
    }
}

static void write_status(const char *path, int total, int refused, int final)
{
    int open = 0, answered = 0, s401 = 0;
    for (int i = 0; i < total; i++) {
        open += clients[i].open;
        answered += clients[i].answered;
        s401 += clients[i].status == 401;
    }
    char line[200];
    snprintf(line, sizeof line, "opened %d answered %d status401 %d closed %d refused %d open %d\n", total - refused,
             answered, s401, total - refused - open, refused, open);
    if (path) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fputs(line, f);
            fclose(f);
            rename(tmp, path);
        }
    }
    if (final)
        fputs(line, stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: tls_flood --connect HOST:PORT --bind ADDR --count N --mode nocert|slowbody|slowhello\n"
                    "                 [--cert PEM --key PEM] [--path PATH] [--length BYTES] [--interval-ms MS]\n"
                    "                 [--hold-s S]\n"
                    "                 [--status FILE]\n");
}

int main(int argc, char **argv)
{
    const char *connect_to = NULL, *bind_addr = "127.0.0.1", *cert = NULL, *key = NULL, *status_path = NULL;
    const char *path = "/api/v1/keys/SAE_B/enc_keys";
    int count = 0, interval_ms = 1000, hold_s = 60;
    long length = 1000000;
    enum mode mode = NOCERT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--connect"))
            connect_to = v;
        else if (!strcmp(a, "--bind"))
            bind_addr = v;
        else if (!strcmp(a, "--count"))
            count = atoi(v);
        else if (!strcmp(a, "--cert"))
            cert = v;
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--path"))
            path = v;
        else if (!strcmp(a, "--interval-ms"))
            interval_ms = atoi(v);
        else if (!strcmp(a, "--length"))
            length = atol(v);
        else if (!strcmp(a, "--hold-s"))
            hold_s = atoi(v);
        else if (!strcmp(a, "--status"))
            status_path = v;
        else if (!strcmp(a, "--mode"))
            mode = !strcmp(v, "slowbody") ? SLOWBODY : !strcmp(v, "slowhello") ? SLOWHELLO : NOCERT;
        else {
            usage();
            return 2;
        }
        i++;
    }
    char host[256];
    int port;
    if (!connect_to || count <= 0 || count > MAX_CONNS || sscanf(connect_to, "%255[^:]:%d", host, &port) != 2) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (cert && key &&
        (SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
        fprintf(stderr, "tls_flood: cannot load %s / %s\n", cert, key);
        return 2;
    }
    char headers[512];
    snprintf(headers, sizeof headers,
             "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %ld\r\n\r\n", path,
             host, length);
    /* A handshake record announcing 512 bytes: its header, then the body
     * (zeros), which a server waits for byte by byte. */
    static unsigned char hello[5 + 512] = {0x16, 0x03, 0x01, 0x02, 0x00};
    int refused = 0;
    for (int i = 0; i < count; i++) {
        client *c = &clients[i];
        c->fd = tcp_open(bind_addr, host, port);
        if (c->fd < 0) {
            refused++;
            continue;
        }
        c->open = 1;
        if (mode == SLOWHELLO) {
            if (write(c->fd, hello, 1) == 1)
                c->sent = 1;
            continue;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        if (SSL_connect(c->ssl) != 1 || SSL_write(c->ssl, headers, (int)strlen(headers)) <= 0) {
            close_client(c);
            refused++; /* closed before the request was in */
            continue;
        }
        poll_client(c);
        if (i % 50 == 0)
            write_status(status_path, i + 1, refused, 0);
    }
    long end = now_ms() + hold_s * 1000L, next_byte = now_ms() + interval_ms;
    for (;;) {
        int open = 0;
        for (int i = 0; i < count; i++) {
            poll_client(&clients[i]);
            open += clients[i].open;
        }
        write_status(status_path, count, refused, 0);
        if (!open || now_ms() >= end)
            break;
        if (mode != NOCERT && now_ms() >= next_byte) {
            for (int i = 0; i < count; i++) {
                client *c = &clients[i];
                if (!c->open)
                    continue;
                if (mode == SLOWBODY) {
                    if (SSL_write(c->ssl, " ", 1) <= 0)
                        close_client(c);
                } else if (c->sent < sizeof hello) {
                    if (write(c->fd, hello + c->sent, 1) == 1)
                        c->sent++;
                    else
                        close_client(c);
                }
            }
            next_byte = now_ms() + interval_ms;
        }
        usleep(200 * 1000);
    }
    write_status(status_path, count, refused, 1);
    for (int i = 0; i < count; i++)
        if (clients[i].open)
            close_client(&clients[i]);
    SSL_CTX_free(ctx);
    return 0;
}
