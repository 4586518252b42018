/* loadgen: the load generator of the benchmark (bench/run.sh runs it; see bench/README.md).

   One thread, epoll, thousands of connections. It speaks either the server's protocol (HTTP
   upgrade, masked WebSocket client frames with a random mask per frame, Phoenix V2 text frames,
   relay events) or, with --raw, the length-prefixed protocol of bench/tcp_relay.c.

   build/loadgen --mode fanout|latency|idle|storm [options]

     --host H --port P          the server (127.0.0.1:4000)
     --raw                      speak bench/tcp_relay.c's protocol (fanout and latency only)
     --rooms R --peers K        fanout topology (50 x 4)
     --size S                   bytes of each relayed payload (200): the custom event's data
                                object X as JSON text, or the raw payload
     --window W                 a sender's messages in flight (16); a message is complete once
                                every other peer of its room received it
     --seconds D --warmup T     measured seconds (3) after T seconds of warm-up (0.5)
     --rate N                   latency: offered deliveries per second, spread evenly
     --idle N                   N idle connections (joined, relay-joined, heartbeating) first
     --heartbeat SECONDS        each idle connection's heartbeat period (5), evenly spread
     --idle-window SECONDS      idle: the CPU-measuring window (5)
     --storm N --concurrency C  storm: N connections, at most C of them setting up at a time
     --server-pid PID           read the server's RSS and CPU time from /proc/PID
     --sources N                bind source addresses 127.0.0.1 .. 127.0.0.N (4)
     --quickack 0|1             TCP_QUICKACK after every read (default: 1 in latency mode only)
     --refill N                 fanout: refill a sender's window once N slots are free (1)

   Every delivery is checked: a receiver must get each message of each other sender of its
   room exactly once and in order (sequence numbers in the payload), from the right sender
   (the relay's "from" is that sender's peer id), with the payload's exact length. After the
   measured window the senders stop, everything in flight drains, and every receiver's count
   from every sender must equal what that sender sent. The last stdout line is
   "RESULT key=value ...". Exit status 0 when no error was seen. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------------------------------ */
/* Options                                                                                      */

enum { MODE_FANOUT, MODE_LATENCY, MODE_IDLE, MODE_STORM };

static const char *opt_host = "127.0.0.1";
static int opt_port = 4000;
static int opt_raw = 0;
static int opt_mode = MODE_FANOUT;
static int opt_rooms = 50, opt_peers = 4, opt_size = 200, opt_window = 16;
static double opt_seconds = 3.0, opt_warmup = 0.5, opt_rate = 0.0;
static int opt_idle = 0;
static double opt_heartbeat = 5.0, opt_idle_window = 5.0;
static int opt_storm = 2000, opt_concurrency = 200, opt_setup_concurrency = 256;
static int opt_server_pid = 0, opt_sources = 4, opt_refill = 1, opt_quickack = -1;

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, format, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static long error_count = 0;
static void report_error(const char *format, ...) {
    va_list ap;
    if (++error_count > 10) return;
    va_start(ap, format);
    fprintf(stderr, "loadgen: ERROR: ");
    vfprintf(stderr, format, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}
static void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory");
    return p;
}

static uint64_t rng_state;
static uint64_t rng_next(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static void rng_seed(void) {
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, &rng_state, sizeof rng_state) != (ssize_t)sizeof rng_state) rng_state = (uint64_t)now_ns();
    if (fd >= 0) close(fd);
    if (!rng_state) rng_state = 88172645463325252ULL;
}

static int digits_u64(uint64_t v) {
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}
static char *put_u64(char *out, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *out++ = tmp[--n];
    return out;
}
static char *put_str(char *out, const char *s, size_t n) {
    memcpy(out, s, n);
    return out + n;
}
#define PUT_LIT(out, lit) put_str((out), (lit), sizeof(lit) - 1)

/* Parses digits at *p (bounded by end); returns -1 when there are none. */
static int64_t take_u64(const char **p, const char *end) {
    const char *s = *p;
    int64_t v = 0;
    if (s >= end || *s < '0' || *s > '9') return -1;
    while (s < end && *s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    *p = s;
    return v;
}
static int take_lit(const char **p, const char *end, const char *lit, size_t n) {
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0) return 0;
    *p += n;
    return 1;
}
#define TAKE(p, end, lit) take_lit((p), (end), (lit), sizeof(lit) - 1)

static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* SHA-1 and base64, to check Sec-WebSocket-Accept. */
typedef struct { uint32_t h[5]; uint64_t length; uint8_t block[64]; size_t fill; } sha1_ctx;
static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
static void sha1_block(sha1_ctx *c, const uint8_t *b) {
    uint32_t w[80], a = c->h[0], bb = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f, k, t;
    int i;
    for (i = 0; i < 16; i++) w[i] = get_be32(b + 4 * i);
    for (i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (i = 0; i < 80; i++) {
        if (i < 20) { f = (bb & cc) | (~bb & d); k = 0x5A827999; }
        else if (i < 40) { f = bb ^ cc ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (bb & cc) | (bb & d) | (cc & d); k = 0x8F1BBCDC; }
        else { f = bb ^ cc ^ d; k = 0xCA62C1D6; }
        t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = rol32(bb, 30); bb = a; a = t;
    }
    c->h[0] += a; c->h[1] += bb; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}
static void sha1(const void *data, size_t n, uint8_t out[20]) {
    sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    const uint8_t *p = (const uint8_t *)data;
    uint8_t pad[72];
    size_t i, padn;
    c.length = (uint64_t)n * 8;
    while (n >= 64) { sha1_block(&c, p); p += 64; n -= 64; }
    memcpy(pad, p, n);
    pad[n] = 0x80;
    padn = n + 1 <= 56 ? 64 : 128;
    if (padn == 128) {
        uint8_t two[128];
        memset(two, 0, sizeof two);
        memcpy(two, pad, n + 1);
        for (i = 0; i < 8; i++) two[120 + i] = (uint8_t)(c.length >> (56 - 8 * i));
        sha1_block(&c, two);
        sha1_block(&c, two + 64);
    } else {
        memset(pad + n + 1, 0, 64 - (n + 1));
        for (i = 0; i < 8; i++) pad[56 + i] = (uint8_t)(c.length >> (56 - 8 * i));
        sha1_block(&c, pad);
    }
    for (i = 0; i < 5; i++) put_be32(out + 4 * i, c.h[i]);
}
static size_t base64(const uint8_t *in, size_t n, char *out) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18]; out[o++] = a[(v >> 12) & 63]; out[o++] = a[(v >> 6) & 63]; out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = a[v >> 18]; out[o++] = a[(v >> 12) & 63]; out[o++] = '='; out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18]; out[o++] = a[(v >> 12) & 63]; out[o++] = a[(v >> 6) & 63]; out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* A masked client frame: header, a fresh random mask, the payload XORed while it is copied. */
static size_t ws_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t n) {
    size_t h = 0, i = 0;
    uint32_t mask = (uint32_t)(rng_next() >> 32);
    uint8_t m[4];
    uint64_t mask64;
    out[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xFFFF) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        int k;
        out[h++] = 0x80 | 127;
        for (k = 7; k >= 0; k--) out[h++] = (uint8_t)((uint64_t)n >> (8 * k));
    }
    memcpy(m, &mask, 4);
    memcpy(out + h, m, 4);
    h += 4;
    memcpy(&mask64, m, 4);
    memcpy((uint8_t *)&mask64 + 4, m, 4);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, payload + i, 8);
        w ^= mask64;
        memcpy(out + h + i, &w, 8);
    }
    for (; i < n; i++) out[h + i] = payload[i] ^ m[i & 3];
    return h + n;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                  */

enum { S_NEW, S_CONNECTING, S_HANDSHAKE, S_JOINING, S_RELAY_JOINING, S_READY, S_CLOSED };
enum { K_IDLE, K_ACTIVE, K_STORM };

typedef struct conn {
    int fd;
    uint8_t state, kind, want_out, closing;
    int32_t peer;          /* active: index into the peer arrays; else -1 */
    int32_t room;          /* room number within its kind */
    uint32_t ref;          /* next Phoenix ref */
    uint8_t *in;           /* bytes of an unfinished frame (or response head) */
    uint32_t in_len, in_cap;
    uint8_t *out;          /* bytes the socket did not take */
    uint32_t out_len, out_off, out_cap;
    int64_t t_start, t_done;
    int64_t t_connected, t_upgraded, t_joined; /* phases of a join, for the storm */
    char key[25];          /* Sec-WebSocket-Key */
} conn;

static conn *conns;
static int conn_count;
static int epfd;
static struct sockaddr_in server_addr;

/* index ranges */
static int idle_first, idle_end, active_first, active_end, storm_first, storm_end;

/* setup */
static int setup_next, setup_end, setup_inflight, setup_limit, setup_ready;

/* active peers */
static int peer_count;                  /* rooms * peers */
static char (*peer_uuid)[37];
static uint32_t *peer_sent, *peer_done; /* per sender */
static uint32_t *expected;              /* [receiver * K + local sender] next sequence due */
static uint16_t *acks;                  /* [sender * W + seq % W] receivers that have it */
static int *peer_others;                /* relay peers this peer knows of */
static int peers_ready;

/* counters */
static uint64_t deliveries, delivery_bytes_wire, measured_deliveries, measured_wire;
static uint64_t messages_sent;
static uint64_t hb_sent, hb_ok;
static int measuring;
static int64_t *samples;
static size_t sample_count, sample_cap;
static int64_t *storm_times;
static double storm_phase_ms[4];
static int storm_done;

static uint8_t *rbuf;
static char *xs; /* opt_size bytes of 'x': the padding every payload carries */
#define RBUF_SIZE (256 * 1024)
static uint8_t *scratch, *frame_out;
static size_t scratch_cap;

static void ep_set(conn *c, int out) {
    struct epoll_event ev;
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
    ev.data.u32 = (uint32_t)(c - conns);
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
    c->want_out = (uint8_t)out;
}

static void buf_append(uint8_t **buf, uint32_t *len, uint32_t *cap, const void *data, size_t n) {
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 512;
        while (want < *len + n) want *= 2;
        *buf = (uint8_t *)realloc(*buf, want);
        if (!*buf) die("out of memory");
        *cap = (uint32_t)want;
    }
    memcpy(*buf + *len, data, n);
    *len += (uint32_t)n;
}

static int failed_connections;
static void conn_fail(conn *c, const char *why) {
    failed_connections++;
    report_error("connection %d (%s): %s", (int)(c - conns),
                 c->kind == K_ACTIVE ? "active" : c->kind == K_IDLE ? "idle" : "storm", why);
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = S_CLOSED;
}

/* Writes now what the socket takes; keeps the rest and asks for EPOLLOUT. */
static void conn_send(conn *c, const void *data, size_t n) {
    ssize_t w = 0;
    if (c->state == S_CLOSED) return;
    if (c->out_len == c->out_off) {
        c->out_len = c->out_off = 0;
        w = write(c->fd, data, n);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                conn_fail(c, strerror(errno));
                return;
            }
            w = 0;
        }
        if ((size_t)w == n) return;
    }
    buf_append(&c->out, &c->out_len, &c->out_cap, (const uint8_t *)data + w, n - (size_t)w);
    if (!c->want_out) ep_set(c, 1);
}

static void conn_flush(conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            conn_fail(c, strerror(errno));
            return;
        }
        c->out_off += (uint32_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) ep_set(c, 0);
}

static int conn_blocked(const conn *c) { return c->out_off < c->out_len; }

static void start_connect(int index) {
    conn *c = &conns[index];
    struct sockaddr_in src;
    struct epoll_event ev;
    int one = 1, fd;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise the descriptor limit)", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt_sources > 1) {
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7F000001u + (uint32_t)(index % opt_sources));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) die("bind 127.0.0.%d: %s", 1 + index % opt_sources, strerror(errno));
    }
    c->fd = fd;
    c->state = S_CONNECTING;
    c->t_start = now_ns();
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u32 = (uint32_t)index;
    c->want_out = 1;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) != 0 && errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
}

static size_t topic_of(const conn *c, char *out) {
    const char *prefix = c->kind == K_ACTIVE ? "f" : c->kind == K_IDLE ? "i" : "s";
    return (size_t)sprintf(out, "room:%s%d", prefix, c->room);
}

static void send_text(conn *c, const char *text, size_t n) {
    size_t f = ws_frame(frame_out, 1, (const uint8_t *)text, n);
    conn_send(c, frame_out, f);
}

static void on_connected(conn *c) {
    c->t_connected = now_ns();
    if (opt_raw) {
        uint8_t m[9];
        put_be32(m, 5);
        m[4] = 'J';
        put_be32(m + 5, (uint32_t)c->room);
        c->state = S_RELAY_JOINING;
        ep_set(c, 0);
        conn_send(c, m, sizeof m);
    } else {
        uint8_t raw[16];
        char request[512];
        int i, n;
        for (i = 0; i < 16; i++) raw[i] = (uint8_t)rng_next();
        base64(raw, 16, c->key);
        n = snprintf(request, sizeof request,
                     "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Origin: http://%s:%d\r\n\r\n",
                     opt_host, opt_port, c->key, opt_host, opt_port);
        c->state = S_HANDSHAKE;
        ep_set(c, 0);
        conn_send(c, request, (size_t)n);
    }
}

static void send_join(conn *c) {
    char topic[64], text[256];
    size_t t = topic_of(c, topic);
    int n = snprintf(text, sizeof text, "[\"1\",\"1\",\"%.*s\",\"phx_join\",{}]", (int)t, topic);
    c->ref = 2;
    c->state = S_JOINING;
    send_text(c, text, (size_t)n);
}

static void send_relay_join(conn *c) {
    char topic[64], text[512];
    size_t t = topic_of(c, topic);
    int n = snprintf(text, sizeof text,
                     "[\"1\",\"%u\",\"%.*s\",\"mediaEvent\",{\"data\":\"{\\\"type\\\":\\\"join\\\",\\\"data\\\":"
                     "{\\\"metadata\\\":{\\\"displayName\\\":\\\"bench-%d\\\"}}}\"}]",
                     c->ref++, (int)t, topic, (int)(c - conns));
    c->state = S_RELAY_JOINING;
    send_text(c, text, (size_t)n);
}

static void send_heartbeat(conn *c) {
    char text[96];
    int n = snprintf(text, sizeof text, "[null,\"%u\",\"phoenix\",\"heartbeat\",{}]", c->ref++);
    send_text(c, text, (size_t)n);
    hb_sent++;
}

static void became_ready(conn *c) {
    c->state = S_READY;
    c->t_done = now_ns();
    setup_inflight--;
    setup_ready++;
    if (c->kind == K_STORM) storm_times[storm_done++] = c->t_done - c->t_start;
}

static void peer_maybe_ready(conn *c) {
    if (c->kind == K_ACTIVE && peer_others[c->peer] == opt_peers - 1) peers_ready++;
}

/* ------------------------------------------------------------------------------------------ */
/* Deliveries                                                                                   */

static void add_sample(int64_t v) {
    if (sample_count == sample_cap) {
        sample_cap = sample_cap ? sample_cap * 2 : 1 << 20;
        samples = (int64_t *)realloc(samples, sample_cap * sizeof *samples);
        if (!samples) die("out of memory");
    }
    samples[sample_count++] = v;
}

/* Receiver r got sender g's message q, sent at t. */
static void on_delivery(int r, uint32_t g, uint32_t q, int64_t t, int64_t now, size_t wire) {
    int K = opt_peers, W = opt_window;
    uint32_t ls;
    uint16_t *a;
    if (g >= (uint32_t)peer_count || (int)g / K != r / K || (int)g == r) {
        report_error("receiver %d got a message of sender %u (not a peer of its room)", r, g);
        return;
    }
    ls = g % (uint32_t)K;
    if (expected[(size_t)r * K + ls] != q) {
        report_error("receiver %d from sender %u: sequence %u, expected %u", r, g, q, expected[(size_t)r * K + ls]);
        expected[(size_t)r * K + ls] = q + 1;
        return;
    }
    expected[(size_t)r * K + ls] = q + 1;
    a = &acks[(size_t)g * W + q % (uint32_t)W];
    if (++*a == K - 1) {
        *a = 0;
        if (peer_done[g] != q) report_error("sender %u: message %u completed before %u", g, q, peer_done[g]);
        peer_done[g] = q + 1;
    }
    deliveries++;
    delivery_bytes_wire += wire;
    if (measuring) {
        measured_deliveries++;
        measured_wire += wire;
        if (opt_mode == MODE_LATENCY) add_sample(now - t);
    }
}

/* Phoenix frames from the server. Pushes look like
   ["1",null,"room:f3","mediaEvent",{"data":"{\"type\":\"custom\",\"from\":\"ID\",\"data\":X}"}] */
static const char MEDIA[] = ",\"mediaEvent\",{\"data\":\"{\\\"type\\\":\\\"";

static void on_custom(conn *c, const char *p, const char *end, int64_t now, size_t wire) {
    int64_t g, q, t;
    const char *pad;
    size_t expect_pad;
    const char *id;
    if (!TAKE(&p, end, "\\\",\\\"from\\\":\\\"") || end - p < 36) goto bad;
    id = p;
    p += 36;
    if (!TAKE(&p, end, "\\\",\\\"data\\\":{\\\"s\\\":") || (g = take_u64(&p, end)) < 0 ||
        !TAKE(&p, end, ",\\\"q\\\":") || (q = take_u64(&p, end)) < 0 || !TAKE(&p, end, ",\\\"t\\\":") ||
        (t = take_u64(&p, end)) < 0 || !TAKE(&p, end, ",\\\"p\\\":\\\""))
        goto bad;
    pad = p;
    expect_pad = (size_t)opt_size - 23 - (size_t)digits_u64((uint64_t)g) - (size_t)digits_u64((uint64_t)q) -
                 (size_t)digits_u64((uint64_t)t);
    if ((size_t)(end - pad) < expect_pad || memcmp(pad, xs, expect_pad) != 0) goto bad;
    p += expect_pad;
    if (!TAKE(&p, end, "\\\"}}\"}]") || p != end) goto bad;
    if (g < peer_count && memcmp(id, peer_uuid[g], 36) != 0) {
        report_error("receiver %d: message of sender %lld carries another peer's id", c->peer, (long long)g);
        return;
    }
    on_delivery(c->peer, (uint32_t)g, (uint32_t)q, t, now, wire);
    return;
bad:
    report_error("malformed custom event: %.*s", (int)(end - p > 200 ? 200 : end - p), p);
}

static void on_text(conn *c, const char *text, size_t n, int64_t now, size_t wire) {
    const char *end = text + n, *p = (const char *)memmem(text, n, MEDIA, sizeof MEDIA - 1);
    if (p) {
        p += sizeof MEDIA - 1;
        if (TAKE(&p, end, "custom")) {
            if (c->kind == K_ACTIVE && c->state == S_READY) on_custom(c, p, end, now, wire);
            else report_error("custom event on a connection that is not an active peer");
        } else if (TAKE(&p, end, "peerJoined")) {
            if (c->kind == K_ACTIVE) {
                peer_others[c->peer]++;
                peer_maybe_ready(c);
            }
        } else if (TAKE(&p, end, "peerAccepted")) {
            int others = 0;
            const char *q;
            if (c->state != S_RELAY_JOINING || !TAKE(&p, end, "\\\",\\\"data\\\":{\\\"id\\\":\\\"") || end - p < 36) {
                report_error("unexpected peerAccepted: %.*s", (int)n, text);
                return;
            }
            if (c->kind == K_ACTIVE) memcpy(peer_uuid[c->peer], p, 36);
            q = p + 36; /* the others, each listed as {"id":..,"metadata":..} */
            while ((q = (const char *)memmem(q, (size_t)(end - q), "{\\\"id\\\":\\\"", 10)) != NULL) {
                others++;
                q += 10;
            }
            became_ready(c);
            if (c->kind == K_ACTIVE) {
                peer_others[c->peer] += others;
                peer_maybe_ready(c);
            }
        } else {
            report_error("unexpected relay event: %.*s", (int)(n > 300 ? 300 : n), text);
        }
        return;
    }
    if (memmem(text, n, "\"phx_reply\"", 11)) {
        int ok = memmem(text, n, "\"status\":\"ok\"", 13) != NULL;
        if (!ok) {
            report_error("error reply: %.*s", (int)n, text);
        } else if (n >= 10 && memmem(text, n, "\"phoenix\"", 9)) {
            hb_ok++;
        } else if (c->state == S_JOINING) {
            c->t_joined = now;
            send_relay_join(c);
        } else {
            report_error("unexpected reply: %.*s", (int)n, text);
        }
        return;
    }
    report_error("unexpected message: %.*s", (int)(n > 300 ? 300 : n), text);
}

/* Raw protocol: [u32 length][payload]; 'A' + u32 members, or 'M' + u32 sender + u32 seq +
   u64 time + padding. */
static void on_raw(conn *c, const uint8_t *p, size_t n, int64_t now) {
    if (n >= 1 && p[0] == 'A' && c->state == S_RELAY_JOINING) {
        became_ready(c);
        peer_others[c->peer] = opt_peers - 1; /* the run starts once every peer has joined */
        peer_maybe_ready(c);
    } else if (n == (size_t)opt_size && p[0] == 'M' && c->state == S_READY) {
        uint64_t t = 0;
        int i;
        for (i = 0; i < 8; i++) t = t << 8 | p[9 + i];
        if (memcmp(p + 17, xs, n - 17) != 0) {
            report_error("raw payload corrupted");
            return;
        }
        on_delivery(c->peer, get_be32(p + 1), get_be32(p + 5), (int64_t)t, now, n + 4);
    } else {
        report_error("unexpected raw message (kind %d, %zu bytes)", n ? p[0] : -1, n);
    }
}

/* The value of header `name` (with its colon) in a response head, or NULL. Names are matched
   without regard to case, as HTTP asks: a proxy in front of the server (HAProxy) writes them
   in lower case. */
static const char *header_value(const char *head, const char *end, const char *name) {
    size_t length = strlen(name);
    const char *line = (const char *)memmem(head, (size_t)(end - head), "\r\n", 2);
    while (line && line + 2 + length <= end) {
        line += 2;
        if (strncasecmp(line, name, length) == 0) {
            line += length;
            while (line < end && *line == ' ') line++;
            return line;
        }
        line = (const char *)memmem(line, (size_t)(end - line), "\r\n", 2);
    }
    return NULL;
}

static int on_handshake(conn *c, const uint8_t *data, size_t n, size_t *used) {
    const char *head = (const char *)data, *end = (const char *)memmem(data, n, "\r\n\r\n", 4), *accept;
    char expect[64], joined[128];
    uint8_t digest[20];
    if (!end) {
        *used = 0;
        return n < 8192;
    }
    *used = (size_t)(end + 4 - head);
    if (n < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
        conn_fail(c, "handshake refused");
        return 0;
    }
    snprintf(joined, sizeof joined, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    sha1(joined, strlen(joined), digest);
    base64(digest, 20, expect);
    accept = header_value(head, end, "Sec-WebSocket-Accept:");
    if (!accept || end - accept < 28 || memcmp(accept, expect, 28) != 0) {
        conn_fail(c, "bad Sec-WebSocket-Accept");
        return 0;
    }
    c->t_upgraded = now_ns();
    send_join(c);
    return 1;
}

static void on_readable(conn *c) {
    size_t have = c->in_len, total, off = 0;
    ssize_t got;
    int64_t now;
    if (have) memcpy(rbuf, c->in, have);
    got = read(c->fd, rbuf + have, RBUF_SIZE - have);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        conn_fail(c, strerror(errno));
        return;
    }
    if (got == 0) {
        conn_fail(c, "the server closed the connection");
        return;
    }
    if (opt_quickack) {
        /* Acknowledge at once what the server sent, every time (Linux turns quick-ack mode
           off by itself): see bench/README.md on delayed ACKs and BBR on loopback. */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    now = now_ns();
    total = have + (size_t)got;
    if (c->state == S_HANDSHAKE) {
        size_t used;
        if (!on_handshake(c, rbuf, total, &used)) {
            if (c->state != S_CLOSED) conn_fail(c, "response head too large");
            return;
        }
        off = used;
        if (!used) {
            c->in_len = 0;
            buf_append(&c->in, &c->in_len, &c->in_cap, rbuf, total);
            return;
        }
    }
    while (c->state != S_CLOSED) {
        size_t left = total - off, header, length;
        const uint8_t *p = rbuf + off;
        if (opt_raw) {
            if (left < 4) break;
            length = get_be32(p);
            header = 4;
        } else {
            if (left < 2) break;
            length = p[1] & 0x7F;
            header = 2;
            if (p[1] & 0x80) {
                conn_fail(c, "masked frame from the server");
                return;
            }
            if (length == 126) {
                if (left < 4) break;
                length = (size_t)p[2] << 8 | p[3];
                header = 4;
            } else if (length == 127) {
                int i;
                if (left < 10) break;
                for (length = 0, i = 2; i < 10; i++) length = length << 8 | p[i];
                header = 10;
            }
        }
        if (header + length > RBUF_SIZE / 2) {
            conn_fail(c, "message too large");
            return;
        }
        if (left < header + length) break;
        if (opt_raw) {
            on_raw(c, p + header, length, now);
        } else {
            int opcode = p[0] & 0x0F;
            if (!(p[0] & 0x80)) report_error("fragmented frame from the server");
            if (opcode == 1) on_text(c, (const char *)p + header, length, now, header + length);
            else if (opcode == 8) {
                char why[160];
                snprintf(why, sizeof why, "close frame from the server, code %d %.*s",
                         length >= 2 ? p[header] << 8 | p[header + 1] : 0, (int)(length > 2 ? length - 2 : 0),
                         (const char *)p + header + 2);
                conn_fail(c, why);
                return;
            } else report_error("unexpected frame opcode %d", opcode);
        }
        off += header + length;
    }
    c->in_len = 0;
    if (c->state != S_CLOSED && off < total) buf_append(&c->in, &c->in_len, &c->in_cap, rbuf + off, total - off);
}

/* ------------------------------------------------------------------------------------------ */
/* Sending relayed messages                                                                     */

/* Appends one relayed message of sender g (connection c) to out; returns its length. */
static size_t build_message(conn *c, uint8_t *out, uint32_t g, uint32_t q, int64_t t) {
    if (opt_raw) {
        int i;
        put_be32(out, (uint32_t)opt_size);
        out[4] = 'M';
        put_be32(out + 5, g);
        put_be32(out + 9, q);
        for (i = 0; i < 8; i++) out[13 + i] = (uint8_t)((uint64_t)t >> (56 - 8 * i));
        memset(out + 21, 'x', (size_t)opt_size - 17);
        return 4 + (size_t)opt_size;
    } else {
        char *s = (char *)scratch, *p = s;
        size_t pad = (size_t)opt_size - 23 - (size_t)digits_u64(g) - (size_t)digits_u64(q) - (size_t)digits_u64((uint64_t)t);
        p = PUT_LIT(p, "[\"1\",\"");
        p = put_u64(p, c->ref++);
        p = PUT_LIT(p, "\",\"room:f");
        p = put_u64(p, (uint64_t)c->room);
        p = PUT_LIT(p, "\",\"mediaEvent\",{\"data\":\"{\\\"type\\\":\\\"custom\\\",\\\"data\\\":{\\\"s\\\":");
        p = put_u64(p, g);
        p = PUT_LIT(p, ",\\\"q\\\":");
        p = put_u64(p, q);
        p = PUT_LIT(p, ",\\\"t\\\":");
        p = put_u64(p, (uint64_t)t);
        p = PUT_LIT(p, ",\\\"p\\\":\\\"");
        memset(p, 'x', pad);
        p += pad;
        p = PUT_LIT(p, "\\\"}}\"}]");
        return ws_frame(out, 1, (const uint8_t *)s, (size_t)(p - s));
    }
}

static size_t message_capacity(void) { return (size_t)opt_size * 2 + 512; }

static uint8_t *batch;
static int sending; /* senders may start new messages */

/* Fills sender g's window with as many messages as it has room for, in one write. */
static void top_up(uint32_t g) {
    conn *c = &conns[active_first + (int)g];
    size_t n = 0;
    int64_t t;
    if (c->state != S_READY || conn_blocked(c)) return;
    if (peer_sent[g] - peer_done[g] + (uint32_t)opt_refill > (uint32_t)opt_window) return;
    t = now_ns();
    while (peer_sent[g] - peer_done[g] < (uint32_t)opt_window) {
        n += build_message(c, batch + n, g, peer_sent[g], t);
        peer_sent[g]++;
        messages_sent++;
    }
    conn_send(c, batch, n);
}

/* Latency mode: one message of sender g, now. Returns 0 when its window is full. */
static int send_one(uint32_t g) {
    conn *c = &conns[active_first + (int)g];
    size_t n;
    if (c->state != S_READY || conn_blocked(c) || peer_sent[g] - peer_done[g] >= (uint32_t)opt_window) return 0;
    n = build_message(c, batch, g, peer_sent[g], now_ns());
    peer_sent[g]++;
    messages_sent++;
    conn_send(c, batch, n);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* The server's resources                                                                       */

static long server_rss_kb(void) {
    char path[64], line[256];
    long kb = -1;
    FILE *f;
    if (!opt_server_pid) return -1;
    snprintf(path, sizeof path, "/proc/%d/status", opt_server_pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* utime + stime from /proc/PID/stat, in seconds. */
static double server_cpu_stat(void) {
    char path[64], text[2048], *p;
    unsigned long utime = 0, stime = 0;
    FILE *f;
    size_t n;
    int field;
    if (!opt_server_pid) return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", opt_server_pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    p = strrchr(text, ')');
    if (!p) return -1;
    p += 2; /* field 3, the state */
    for (field = 3; field < 14 && p; field++) p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
    if (!p || sscanf(p, "%lu %lu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Time on the CPU from /proc/PID/schedstat (nanoseconds), a finer clock than stat's ticks. */
static double server_cpu_schedstat(void) {
    char path[64];
    unsigned long long ns = 0;
    FILE *f;
    int ok;
    if (!opt_server_pid) return -1;
    snprintf(path, sizeof path, "/proc/%d/schedstat", opt_server_pid);
    if (!(f = fopen(path, "r"))) return -1;
    ok = fscanf(f, "%llu", &ns) == 1;
    fclose(f);
    return ok ? (double)ns / 1e9 : -1;
}

/* Seconds a process spent runnable but waiting for its CPU (the second field of schedstat):
   on a machine where something else runs, the share of the measured time it lost. */
static double wait_schedstat(int pid) {
    char path[64];
    unsigned long long run = 0, wait = 0;
    FILE *f;
    int ok;
    if (pid) snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    else snprintf(path, sizeof path, "/proc/self/schedstat");
    if (!(f = fopen(path, "r"))) return -1;
    ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
    fclose(f);
    return ok ? (double)wait / 1e9 : -1;
}

static double self_cpu(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static long tcp_mem_pages(void) {
    char line[256];
    long pages = -1;
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        char *m = strstr(line, " mem ");
        if (strncmp(line, "TCP:", 4) == 0 && m) pages = strtol(m + 5, NULL, 10);
    }
    fclose(f);
    return pages;
}

/* Busy (non-idle, non-iowait) and total jiffies of cpu0 and cpu1 from /proc/stat: where the
   server (core 0) and the generator (core 1) run, softirq work included. */
static void core_times(unsigned long long busy[2], unsigned long long total[2]) {
    char line[512];
    FILE *f = fopen("/proc/stat", "r");
    busy[0] = busy[1] = total[0] = total[1] = 0;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v[8] = {0};
        int cpu;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) == 9 && cpu >= 0 && cpu < 2) {
            total[cpu] = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
            busy[cpu] = total[cpu] - v[3] - v[4];
        }
    }
    fclose(f);
}
static double core_busy(const unsigned long long b0[2], const unsigned long long t0[2],
                        const unsigned long long b1[2], const unsigned long long t1[2], int cpu) {
    return t1[cpu] > t0[cpu] ? (double)(b1[cpu] - b0[cpu]) / (double)(t1[cpu] - t0[cpu]) : -1.0;
}

/* One edge of the measured window: the CPU time each process used and waited for, each core's
   busy and total time, the messages sent. Before it is taken: zeros, -1 where unknown. */
typedef struct window_edge {
    double generator_cpu, server_cpu, server_wait, generator_wait;
    unsigned long long core_busy[2], core_total[2];
    uint64_t messages;
} window_edge;

static window_edge window_edge_unknown(void) {
    window_edge e;
    memset(&e, 0, sizeof e);
    e.server_cpu = e.server_wait = e.generator_wait = -1;
    return e;
}

static window_edge window_edge_now(void) {
    window_edge e;
    e.generator_cpu = self_cpu();
    e.server_cpu = server_cpu_schedstat();
    core_times(e.core_busy, e.core_total);
    e.server_wait = opt_server_pid ? wait_schedstat(opt_server_pid) : -1;
    e.generator_wait = wait_schedstat(0);
    e.messages = messages_sent;
    return e;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}
static double percentile_us(const int64_t *v, size_t n, double p) {
    size_t i;
    if (!n) return -1;
    i = (size_t)(p * (double)(n - 1) + 0.5);
    if (i >= n) i = n - 1;
    return (double)v[i] / 1000.0;
}

/* ------------------------------------------------------------------------------------------ */
/* The loop                                                                                     */

static struct epoll_event events[4096];

/* Heartbeats: idle connection i beats at t0 + (i + k N) P / N. */
static int hb_running;
static int64_t hb_next_time, hb_interval;
static int hb_next_index;

static void run_heartbeats(int64_t now) {
    int n = idle_end - idle_first;
    if (!hb_running || n <= 0) return;
    while (hb_next_time <= now) {
        conn *c = &conns[idle_first + hb_next_index];
        if (c->state == S_READY && !conn_blocked(c)) send_heartbeat(c);
        hb_next_index++;
        if (hb_next_index == n) hb_next_index = 0;
        hb_next_time += hb_interval;
    }
}

static void poll_once(int timeout_ms) {
    int n, i;
    n = epoll_wait(epfd, events, (int)(sizeof events / sizeof events[0]), timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (i = 0; i < n; i++) {
        conn *c = &conns[events[i].data.u32];
        uint32_t e = events[i].events;
        if (c->state == S_CLOSED) continue;
        if (c->state == S_CONNECTING) {
            int err = 0;
            socklen_t len = sizeof err;
            if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                conn_fail(c, strerror(err));
                continue;
            }
            on_connected(c);
            continue;
        }
        if (e & EPOLLOUT) conn_flush(c);
        if (c->state != S_CLOSED && (e & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
    }
}

static int dead_connections(int first, int end) {
    int i, dead = 0;
    for (i = first; i < end; i++) dead += conns[i].state == S_CLOSED;
    return dead;
}

/* Opens connections [first, end) with at most `limit` setting up at a time, until all are
   ready (or fails). */
static void setup_range(int first, int end, int limit, double timeout_s) {
    int64_t deadline = now_ns() + (int64_t)(timeout_s * 1e9);
    int target = setup_ready + (end - first);
    setup_next = first;
    setup_end = end;
    setup_limit = limit;
    while (setup_ready < target) {
        int64_t now;
        while (setup_next < setup_end && setup_inflight < setup_limit) {
            start_connect(setup_next++);
            setup_inflight++;
        }
        poll_once(hb_running ? 1 : 10);
        now = now_ns();
        run_heartbeats(now);
        if (now > deadline) die("setup timed out: %d of %d connections ready", end - first - (target - setup_ready), end - first);
        if (failed_connections) die("a connection failed during setup");
    }
}

static void run_for(double seconds) {
    int64_t end = now_ns() + (int64_t)(seconds * 1e9);
    int64_t now;
    while ((now = now_ns()) < end) {
        int64_t wait = end - now;
        if (hb_running && hb_next_time - now < wait) wait = hb_next_time - now;
        poll_once(wait < 0 ? 0 : (int)(wait / 1000000));
        run_heartbeats(now_ns());
    }
}

static void start_heartbeats(void) {
    int n = idle_end - idle_first;
    if (n <= 0 || hb_running) return;
    hb_running = 1;
    hb_interval = (int64_t)(opt_heartbeat * 1e9 / n);
    if (hb_interval < 1) hb_interval = 1;
    hb_next_time = now_ns();
    hb_next_index = 0;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --mode fanout|latency|idle|storm [--raw] [--host H] [--port P]\n"
                    "  [--rooms R] [--peers K] [--size S] [--window W] [--seconds D] [--warmup T]\n"
                    "  [--rate DELIVERIES_PER_S] [--idle N] [--heartbeat S] [--idle-window S]\n"
                    "  [--storm N] [--concurrency C] [--server-pid PID] [--sources N]\n");
    exit(2);
}

static void parse_options(int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--raw") == 0) { opt_raw = 1; continue; }
        if (!v) usage();
        i++;
        if (strcmp(o, "--mode") == 0) {
            if (strcmp(v, "fanout") == 0) opt_mode = MODE_FANOUT;
            else if (strcmp(v, "latency") == 0) opt_mode = MODE_LATENCY;
            else if (strcmp(v, "idle") == 0) opt_mode = MODE_IDLE;
            else if (strcmp(v, "storm") == 0) opt_mode = MODE_STORM;
            else usage();
        } else if (strcmp(o, "--host") == 0) opt_host = v;
        else if (strcmp(o, "--port") == 0) opt_port = atoi(v);
        else if (strcmp(o, "--rooms") == 0) opt_rooms = atoi(v);
        else if (strcmp(o, "--peers") == 0) opt_peers = atoi(v);
        else if (strcmp(o, "--size") == 0) opt_size = atoi(v);
        else if (strcmp(o, "--window") == 0) opt_window = atoi(v);
        else if (strcmp(o, "--seconds") == 0) opt_seconds = atof(v);
        else if (strcmp(o, "--warmup") == 0) opt_warmup = atof(v);
        else if (strcmp(o, "--rate") == 0) opt_rate = atof(v);
        else if (strcmp(o, "--idle") == 0) opt_idle = atoi(v);
        else if (strcmp(o, "--heartbeat") == 0) opt_heartbeat = atof(v);
        else if (strcmp(o, "--idle-window") == 0) opt_idle_window = atof(v);
        else if (strcmp(o, "--storm") == 0) opt_storm = atoi(v);
        else if (strcmp(o, "--concurrency") == 0) opt_concurrency = atoi(v);
        else if (strcmp(o, "--server-pid") == 0) opt_server_pid = atoi(v);
        else if (strcmp(o, "--sources") == 0) opt_sources = atoi(v);
        else if (strcmp(o, "--refill") == 0) opt_refill = atoi(v);
        else if (strcmp(o, "--quickack") == 0) opt_quickack = atoi(v);
        else usage();
    }
    if (opt_rooms < 1 || opt_peers < 2 || opt_window < 1 || opt_window > 60000 || opt_size < 80 ||
        opt_size > 60000 || opt_sources < 1 || opt_sources > 250 || opt_concurrency < 1 || opt_seconds <= 0)
        usage();
    if (opt_raw && (opt_mode == MODE_IDLE || opt_mode == MODE_STORM)) die("--raw runs fanout and latency only");
    if (opt_mode == MODE_LATENCY && opt_rate <= 0) die("latency needs --rate");
    /* Quick ACKs by default when measuring latency: one event at a time makes small segments,
       and on loopback (BBR keeps a small congestion window there) a sender can then wait for
       a delayed ACK (40 ms) or a tail-loss probe; a client that acknowledges at once removes
       that from the server's figures and the bare relay's alike. Throughput runs batch, and
       there the extra system call per read would only slow the generator. */
    if (opt_quickack < 0) opt_quickack = opt_mode == MODE_LATENCY;
}

int main(int argc, char **argv) {
    struct rlimit limit;
    int i, active = 0, storm = 0;
    long rss_before, rss_after = -1, tcp_before, tcp_after = -1;
    double setup_idle_s = 0, setup_active_s = 0;
    int64_t t0;

    parse_options(argc, argv);
    rng_seed();
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &server_addr.sin_addr) != 1) die("--host must be an IPv4 address");

    if (opt_mode == MODE_FANOUT || opt_mode == MODE_LATENCY) active = opt_rooms * opt_peers;
    if (opt_mode == MODE_STORM) storm = opt_storm;
    idle_first = 0;
    idle_end = opt_idle;
    active_first = idle_end;
    active_end = active_first + active;
    storm_first = active_end;
    storm_end = storm_first + storm;
    conn_count = storm_end;
    getrlimit(RLIMIT_NOFILE, &limit);
    if ((rlim_t)conn_count + 64 > limit.rlim_cur)
        die("%d connections need more descriptors than RLIMIT_NOFILE allows (%lu)", conn_count,
            (unsigned long)limit.rlim_cur);

    conns = (conn *)xcalloc((size_t)conn_count, sizeof *conns);
    for (i = 0; i < conn_count; i++) {
        conn *c = &conns[i];
        c->fd = -1;
        c->peer = -1;
        if (i < idle_end) {
            c->kind = K_IDLE;
            c->room = i / 4;
        } else if (i < active_end) {
            c->kind = K_ACTIVE;
            c->peer = i - active_first;
            c->room = c->peer / opt_peers;
        } else {
            c->kind = K_STORM;
            c->room = (i - storm_first) / 4;
        }
    }
    peer_count = active;
    peer_uuid = (char (*)[37])xcalloc((size_t)peer_count, sizeof *peer_uuid);
    peer_sent = (uint32_t *)xcalloc((size_t)peer_count, sizeof(uint32_t));
    peer_done = (uint32_t *)xcalloc((size_t)peer_count, sizeof(uint32_t));
    peer_others = (int *)xcalloc((size_t)peer_count, sizeof(int));
    expected = (uint32_t *)xcalloc((size_t)peer_count * (size_t)opt_peers, sizeof(uint32_t));
    acks = (uint16_t *)xcalloc((size_t)peer_count * (size_t)opt_window, sizeof(uint16_t));
    storm_times = (int64_t *)xcalloc((size_t)storm + 1, sizeof(int64_t));
    rbuf = (uint8_t *)xmalloc(RBUF_SIZE);
    xs = (char *)xmalloc((size_t)opt_size);
    memset(xs, 'x', (size_t)opt_size);
    scratch_cap = message_capacity();
    scratch = (uint8_t *)xmalloc(scratch_cap);
    frame_out = (uint8_t *)xmalloc(scratch_cap + 16);
    batch = (uint8_t *)xmalloc((size_t)opt_window * (scratch_cap + 16));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));

    rss_before = server_rss_kb();
    tcp_before = tcp_mem_pages();

    /* Idle connections first: joined, relay-joined, heartbeating. */
    if (idle_end > idle_first) {
        t0 = now_ns();
        start_heartbeats();
        setup_range(idle_first, idle_end, opt_setup_concurrency, 120);
        setup_idle_s = (double)(now_ns() - t0) / 1e9;
        fprintf(stderr, "loadgen: %d idle connections joined in %.2f s\n", idle_end - idle_first, setup_idle_s);
        run_for(0.5);
        rss_after = server_rss_kb();
        tcp_after = tcp_mem_pages();
    }

    if (opt_mode == MODE_IDLE) {
        double s0, s1, q0, q1, w0, w1, iw0, iw1, ilw0, ilw1;
        uint64_t hb0, hbok0;
        int n = idle_end - idle_first;
        run_for(1.0);
        s0 = server_cpu_stat();
        q0 = server_cpu_schedstat();
        iw0 = wait_schedstat(opt_server_pid);
        ilw0 = wait_schedstat(0);
        hb0 = hb_sent;
        hbok0 = hb_ok;
        w0 = (double)now_ns() / 1e9;
        run_for(opt_idle_window);
        w1 = (double)now_ns() / 1e9;
        s1 = server_cpu_stat();
        q1 = server_cpu_schedstat();
        iw1 = wait_schedstat(opt_server_pid);
        ilw1 = wait_schedstat(0);
        {
            uint64_t sent = hb_sent - hb0, ok = hb_ok - hbok0;
            uint64_t outstanding;
            run_for(0.5); /* replies in flight */
            outstanding = hb_sent - hb_ok;
            if (outstanding > (uint64_t)(n / 50 + 2)) report_error("%llu heartbeats unanswered", (unsigned long long)outstanding);
            error_count += dead_connections(idle_first, idle_end);
            printf("RESULT mode=idle connections=%d setup_s=%.3f joins_per_s=%.0f rss_before_kb=%ld rss_after_kb=%ld "
                   "rss_per_conn_bytes=%.0f rss_total_per_conn_bytes=%.0f tcp_mem_kb_delta=%ld heartbeat_s=%.1f "
                   "heartbeats_per_s=%.0f replies_per_s=%.0f cpu_ms_per_s=%.3f cpu_ms_per_s_schedstat=%.3f "
                   "window_s=%.2f server_wait=%.3f loadgen_wait=%.3f errors=%ld\n",
                   n, setup_idle_s, n / setup_idle_s, rss_before, rss_after,
                   rss_before >= 0 && rss_after >= 0 ? (double)(rss_after - rss_before) * 1024.0 / n : -1.0,
                   rss_after >= 0 ? (double)rss_after * 1024.0 / n : -1.0,
                   tcp_before >= 0 && tcp_after >= 0 ? (tcp_after - tcp_before) * (sysconf(_SC_PAGESIZE) / 1024) : -1L,
                   opt_heartbeat, (double)sent / (w1 - w0), (double)ok / (w1 - w0),
                   s0 >= 0 ? (s1 - s0) * 1000.0 / (w1 - w0) : -1.0, q0 >= 0 ? (q1 - q0) * 1000.0 / (w1 - w0) : -1.0,
                   w1 - w0, iw0 >= 0 ? (iw1 - iw0) / (w1 - w0) : -1.0, ilw0 >= 0 ? (ilw1 - ilw0) / (w1 - w0) : -1.0,
                   error_count);
        }
        return error_count ? 1 : 0;
    }

    if (opt_mode == MODE_STORM) {
        double secs, q0, q1, g0, g1, w0, w1, lw0, lw1;
        t0 = now_ns();
        q0 = server_cpu_schedstat();
        w0 = wait_schedstat(opt_server_pid);
        lw0 = wait_schedstat(0);
        g0 = self_cpu();
        setup_range(storm_first, storm_end, opt_concurrency, 120);
        secs = (double)(now_ns() - t0) / 1e9;
        q1 = server_cpu_schedstat();
        w1 = wait_schedstat(opt_server_pid);
        lw1 = wait_schedstat(0);
        g1 = self_cpu();
        qsort(storm_times, (size_t)storm_done, sizeof(int64_t), cmp_i64);
        { /* median of each phase: TCP connect, WebSocket upgrade, channel join, relay join */
            int64_t *phase = (int64_t *)xcalloc((size_t)storm + 1, sizeof(int64_t));
            int k, n;
            for (k = 0; k < 4; k++) {
                for (n = 0, i = storm_first; i < storm_end; i++) {
                    conn *c = &conns[i];
                    if (c->state != S_READY) continue;
                    phase[n++] = k == 0 ? c->t_connected - c->t_start : k == 1 ? c->t_upgraded - c->t_connected
                                 : k == 2 ? c->t_joined - c->t_upgraded : c->t_done - c->t_joined;
                }
                qsort(phase, (size_t)n, sizeof(int64_t), cmp_i64);
                storm_phase_ms[k] = percentile_us(phase, (size_t)n, 0.5) / 1000;
            }
            free(phase);
        }
        error_count += dead_connections(storm_first, storm_end);
        printf("RESULT mode=storm connections=%d concurrency=%d seconds=%.3f joins_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
               "max_ms=%.3f server_cpu=%.3f loadgen_cpu=%.3f server_wait=%.3f loadgen_wait=%.3f connect_p50_ms=%.3f "
               "upgrade_p50_ms=%.3f join_p50_ms=%.3f relay_join_p50_ms=%.3f errors=%ld\n",
               storm, opt_concurrency, secs, storm / secs, percentile_us(storm_times, (size_t)storm_done, 0.50) / 1000,
               percentile_us(storm_times, (size_t)storm_done, 0.99) / 1000,
               percentile_us(storm_times, (size_t)storm_done, 1.0) / 1000, q0 >= 0 ? (q1 - q0) / secs : -1.0,
               (g1 - g0) / secs, w0 >= 0 ? (w1 - w0) / secs : -1.0, lw0 >= 0 ? (lw1 - lw0) / secs : -1.0,
               storm_phase_ms[0], storm_phase_ms[1], storm_phase_ms[2], storm_phase_ms[3], error_count);
        return error_count ? 1 : 0;
    }

    /* fanout and latency */
    t0 = now_ns();
    setup_range(active_first, active_end, opt_setup_concurrency, 60);
    while (peers_ready < peer_count) { /* every peer knows every other one of its room */
        poll_once(10);
        run_heartbeats(now_ns());
        if (now_ns() - t0 > 60000000000LL) die("peers never saw each other join");
    }
    setup_active_s = (double)(now_ns() - t0) / 1e9;
    {
        int64_t start = now_ns(), warm_end = start + (int64_t)(opt_warmup * 1e9),
                measure_end = warm_end + (int64_t)(opt_seconds * 1e9), now;
        double interval_ns = 0, next_send = (double)start;
        uint32_t rr = 0;
        uint64_t skipped = 0, offered = 0;
        window_edge w0 = window_edge_unknown(), w1 = window_edge_unknown();
        int64_t lag_max = 0;
        double lag_sum = 0;
        uint64_t lag_count = 0;
        int64_t measure_start = 0, measure_stop = 0, drain_deadline;
        int phase = 0; /* 0 warm-up, 1 measuring, 2 draining */
        if (opt_mode == MODE_LATENCY) interval_ns = 1e9 * (opt_peers - 1) / opt_rate;
        sending = 1;
        for (;;) {
            int timeout = 0;
            now = now_ns();
            if (phase == 0 && now >= warm_end) {
                phase = 1;
                measuring = 1;
                measure_start = now;
                w0 = window_edge_now();
            } else if (phase == 1 && now >= measure_end) {
                phase = 2;
                measuring = 0;
                sending = 0;
                measure_stop = now;
                w1 = window_edge_now();
                break;
            }
            if (opt_mode == MODE_FANOUT) {
                uint32_t g;
                for (g = 0; g < (uint32_t)peer_count; g++) top_up(g);
                timeout = 1;
            } else {
                /* paced: messages due by now go out, each from the next sender in turn */
                int guard = 0;
                while (next_send <= (double)now && guard++ < 100000) {
                    int tries;
                    offered++;
                    if (measuring) { /* how late the generator is against its own schedule */
                        int64_t lag = now_ns() - (int64_t)next_send;
                        if (lag > lag_max) lag_max = lag;
                        lag_sum += (double)lag;
                        lag_count++;
                    }
                    for (tries = 0; tries < peer_count; tries++) {
                        uint32_t g = rr++ % (uint32_t)peer_count;
                        if (send_one(g)) break;
                    }
                    if (tries == peer_count) skipped++;
                    next_send += interval_ns;
                }
                timeout = next_send - (double)now_ns() > 1.5e6 ? 1 : 0;
            }
            poll_once(timeout);
            run_heartbeats(now_ns());
            if (error_count > 1000) {
                if (phase == 1) {
                    measure_stop = now_ns();
                    w1 = window_edge_now();
                }
                measuring = 0;
                sending = 0;
                break;
            }
        }
        /* drain: no new messages; everything sent must arrive everywhere */
        drain_deadline = now_ns() + 10000000000LL;
        for (;;) {
            int g, pending = 0;
            for (g = 0; g < peer_count; g++) pending += peer_done[g] != peer_sent[g];
            if (!pending) break;
            if (now_ns() > drain_deadline) {
                report_error("%d senders still have messages undelivered after 10 s", pending);
                break;
            }
            poll_once(1);
            run_heartbeats(now_ns());
        }
        {
            int r, verified = 1;
            double secs = (double)(measure_stop - measure_start) / 1e9;
            if (measure_start == 0 || measure_stop <= measure_start) { /* ended before the window */
                secs = 1e-9;
                error_count++;
            }
            for (r = 0; r < peer_count; r++) {
                int s, base = r / opt_peers * opt_peers;
                for (s = 0; s < opt_peers; s++) {
                    if (base + s == r) continue;
                    if (expected[(size_t)r * opt_peers + s] != peer_sent[base + s]) {
                        if (verified) report_error("receiver %d got %u of sender %d's %u messages", r,
                                                   expected[(size_t)r * opt_peers + s], base + s, peer_sent[base + s]);
                        verified = 0;
                    }
                }
            }
            error_count += dead_connections(0, conn_count);
            if (error_count) verified = 0;
            qsort(samples, sample_count, sizeof(int64_t), cmp_i64);
            printf("RESULT mode=%s target=%s rooms=%d peers=%d size=%d window=%d idle=%d seconds=%.3f "
                   "deliveries=%llu deliveries_per_s=%.0f messages_per_s=%.0f mb_per_s=%.2f wire_mb_per_s=%.2f "
                   "server_cpu=%.3f loadgen_cpu=%.3f core0_busy=%.3f core1_busy=%.3f server_wait=%.3f loadgen_wait=%.3f offered_per_s=%.0f skipped=%llu p50_us=%.1f p99_us=%.1f "
                   "p999_us=%.1f max_us=%.1f send_lag_mean_us=%.1f send_lag_max_us=%.1f samples=%zu total_deliveries=%llu setup_s=%.3f idle_setup_s=%.3f "
                   "idle_rss_per_conn_bytes=%.0f verified=%d errors=%ld\n",
                   opt_mode == MODE_FANOUT ? "fanout" : "latency", opt_raw ? "tcp_relay" : "server", opt_rooms,
                   opt_peers, opt_size, opt_window, opt_idle, secs, (unsigned long long)measured_deliveries,
                   measured_deliveries / secs, (double)(w1.messages - w0.messages) / secs,
                   measured_deliveries * (double)opt_size / secs / 1e6, measured_wire / secs / 1e6,
                   w0.server_cpu >= 0 && w1.server_cpu >= 0 ? (w1.server_cpu - w0.server_cpu) / secs : -1.0,
                   (w1.generator_cpu - w0.generator_cpu) / secs,
                   core_busy(w0.core_busy, w0.core_total, w1.core_busy, w1.core_total, 0),
                   core_busy(w0.core_busy, w0.core_total, w1.core_busy, w1.core_total, 1),
                   w0.server_wait >= 0 && w1.server_wait >= 0 ? (w1.server_wait - w0.server_wait) / secs : -1.0,
                   w0.generator_wait >= 0 && w1.generator_wait >= 0 ? (w1.generator_wait - w0.generator_wait) / secs
                                                                    : -1.0,
                   opt_mode == MODE_LATENCY ? opt_rate : 0.0, (unsigned long long)skipped,
                   percentile_us(samples, sample_count, 0.50), percentile_us(samples, sample_count, 0.99),
                   percentile_us(samples, sample_count, 0.999), percentile_us(samples, sample_count, 1.0),
                   lag_count ? lag_sum / (double)lag_count / 1000.0 : 0.0, (double)lag_max / 1000.0, sample_count,
                   (unsigned long long)deliveries, setup_active_s, setup_idle_s,
                   rss_before >= 0 && rss_after >= 0 && opt_idle ? (double)(rss_after - rss_before) * 1024.0 / opt_idle : -1.0,
                   verified, error_count);
            (void)offered;
            (void)tcp_after;
            return error_count ? 1 : 0;
        }
    }
}
