/* test_support.h: an in-process test server and a raw loopback WebSocket client, for tests
   that drive videoroom_signal end to end. C99 + POSIX or Winsock 2; included into the single
   test translation unit after the library's implementation and test.h.

   The server runs in the test's own thread, so nothing happens on it unless the test steps it:
   every client wait here pumps the server (ts_step) between non-blocking reads, and every wait
   is bounded (TS_TIMEOUT_MS unless told otherwise). Everything stays on loopback.

   Servers and clients are registered when created and freed by ts_reclaim (run at exit), so a
   test that stops early on a failed REQUIRE leaks nothing that LeakSanitizer would report. */
#ifndef VRS_TEST_SUPPORT_H
#define VRS_TEST_SUPPORT_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#endif

/* Every helper is static; not every test file uses every one. */
#define TS_FN static __attribute__((unused))

#define TS_TIMEOUT_MS 2000              /* the default bound on any wait */
#define TS_MAX_EVENTS 64                /* opened / closed connections remembered */
#define TS_MESSAGE_RING 64              /* messages remembered (a ring) */
#define TS_MESSAGE_KEEP 512             /* bytes of each message kept */
#define TS_LOG_KEEP 256
#define TS_CLIENT_BUFFER (256 * 1024)   /* a client's receive buffer: the largest frame it reads */
#define TS_POLL_CAPACITY 256            /* pollfds for the vrs_poll_fds path */
#define TS_MAX_LIVE 64                  /* servers and clients alive at once */

/* In a ts_request: leave this header (or part) out. NULL means "the default". */
static const char ts_omit_marker[] __attribute__((unused)) = "(omitted)";
#define TS_OMIT ts_omit_marker

/* ---------------------------------------------------------------------------------------------
   Time, and the socket calls that differ between POSIX and Winsock. The tests keep a socket in
   an int: Windows' socket handles are kernel handles, whose values fit in 32 bits.
   ------------------------------------------------------------------------------------------- */

TS_FN int64_t ts_now_ms(void) { return vrs__clock_ms(); }

#ifdef _WIN32
#define MSG_NOSIGNAL 0 /* Winsock raises no SIGPIPE */
#define SHUT_WR SD_SEND
#define TS_NONBLOCKING_CONNECT_STARTED WSAEWOULDBLOCK
#define TS_IOV_BASE(v) ((v).buf) /* a WSABUF */
#define TS_IOV_LENGTH(v) ((v).len)

TS_FN void ts_sleep_ms(int ms) {
    if (ms > 0) Sleep((DWORD)ms);
}

TS_FN int ts_socket_error(void) { return WSAGetLastError(); }
TS_FN int ts_would_block(void) { return WSAGetLastError() == WSAEWOULDBLOCK; }
TS_FN void ts_close_socket(int fd) { closesocket((SOCKET)fd); }
TS_FN void ts_set_nonblocking(int fd) {
    u_long on = 1;
    ioctlsocket((SOCKET)fd, FIONBIO, &on);
}
TS_FN int ts_poll(struct pollfd *fds, int count, int wait) { return WSAPoll(fds, (ULONG)count, wait); }
/* The test program's own reference to Winsock, as any Windows program that uses sockets
   takes: a server's vrs_destroy hands back only the server's reference, and the clients'
   sockets must outlive it. */
TS_FN void ts_start_sockets(void) {
    WSADATA data;
    if (WSAStartup(MAKEWORD(2, 2), &data) != 0) fprintf(stderr, "WSAStartup failed\n");
}
#else
TS_FN void ts_start_sockets(void) {}
#define TS_NONBLOCKING_CONNECT_STARTED EINPROGRESS
#define TS_IOV_BASE(v) ((v).iov_base)
#define TS_IOV_LENGTH(v) ((v).iov_len)

TS_FN void ts_sleep_ms(int ms) {
    struct timespec t;
    if (ms <= 0) return;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

TS_FN int ts_socket_error(void) { return errno; }
TS_FN int ts_would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }
TS_FN void ts_close_socket(int fd) { close(fd); }
TS_FN void ts_set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }
TS_FN int ts_poll(struct pollfd *fds, int count, int wait) { return poll(fds, (nfds_t)count, wait); }
#endif

/* ---------------------------------------------------------------------------------------------
   The server wrapper: a vrs_server whose callbacks record what happened
   ------------------------------------------------------------------------------------------- */

typedef struct ts_message {
    vrs_conn conn;
    int type;
    size_t length;                        /* the whole message's length */
    unsigned char data[TS_MESSAGE_KEEP];  /* its first TS_MESSAGE_KEEP bytes */
} ts_message;

typedef struct ts_server {
    vrs_server *server;
    vrs_desc desc;          /* filled by ts_server_new; adjust before ts_server_start */
    int port;
    int echo;               /* 1 (default): on_message sends each message back */
    int use_poll_api;       /* 1: ts_step drives the server through vrs_poll_fds/poll/vrs_process */

    /* on_upgrade (installed only when the test sets desc.on_upgrade = ts_on_upgrade) */
    int refuse_status;
    const char *subprotocol;
    int upgrade_count;

    /* on_http (installed only when the test sets desc.on_http = ts_on_http) */
    int http_status;        /* 0: do not answer (the library answers 404) */
    const char *http_content_type;
    const char *http_extra_headers;
    const char *http_body;
    int http_count;
    char http_path[128];
    vrs_result http_result;

    /* what happened */
    int open_count;
    vrs_conn opened[TS_MAX_EVENTS];
    char open_address[TS_MAX_EVENTS][64];
    int close_count;
    vrs_conn closed[TS_MAX_EVENTS];
    int close_codes[TS_MAX_EVENTS];
    int close_user_data_ok; /* during on_close, vrs_conn_user_data still named the connection */
    long message_count;
    ts_message messages[TS_MESSAGE_RING];
    int echo_failures;
    vrs_result last_echo_result;
    int log_counts[VRS_LOG_ITEM_COUNT];
    char last_log[TS_LOG_KEEP];
    int step_errors;
    int print_logs;         /* 1: also print every log line (debugging) */
} ts_server;

typedef struct ts_client ts_client;
static ts_server *ts_live_servers[TS_MAX_LIVE];
static ts_client *ts_live_clients[TS_MAX_LIVE];
static int ts_reclaim_registered;
static void ts_reclaim(void);

static void ts_track(void **table, void *item, int add) {
    int i;
    if (add && !ts_reclaim_registered) {
        ts_reclaim_registered = 1;
        atexit(ts_reclaim);
    }
    for (i = 0; i < TS_MAX_LIVE; i++) {
        if (add && table[i] == NULL) {
            table[i] = item;
            return;
        }
        if (!add && table[i] == item) {
            table[i] = NULL;
            return;
        }
    }
}

TS_FN void ts_on_open(vrs_server *server, vrs_conn conn, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    if (ts->open_count < TS_MAX_EVENTS) {
        ts->opened[ts->open_count] = conn;
        snprintf(ts->open_address[ts->open_count], 64, "%s", vrs_conn_remote_address(server, conn));
    }
    ts->open_count++;
    /* a per-connection pointer that on_close can look for */
    if (!vrs_conn_user_data(server, conn)) vrs_conn_set_user_data(server, conn, ts);
}

TS_FN void ts_on_message(vrs_server *server, vrs_conn conn, vrs_message_type type, const void *data,
                         size_t length, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    ts_message *m = &ts->messages[ts->message_count % TS_MESSAGE_RING];
    m->conn = conn;
    m->type = (int)type;
    m->length = length;
    memcpy(m->data, data, length < TS_MESSAGE_KEEP ? length : TS_MESSAGE_KEEP);
    ts->message_count++;
    if (ts->echo) {
        ts->last_echo_result = vrs_send(server, conn, type, data, length);
        if (ts->last_echo_result != VRS_OK) ts->echo_failures++;
    }
}

TS_FN void ts_on_close(vrs_server *server, vrs_conn conn, int code, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    if (ts->close_count < TS_MAX_EVENTS) {
        ts->closed[ts->close_count] = conn;
        ts->close_codes[ts->close_count] = code;
    }
    ts->close_count++;
    if (vrs_conn_user_data(server, conn) == ts) ts->close_user_data_ok++;
}

TS_FN void ts_on_upgrade(vrs_server *server, vrs_conn conn, const vrs_request *request,
                         vrs_upgrade_answer *answer, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    (void)server;
    (void)conn;
    (void)request;
    ts->upgrade_count++;
    answer->refuse_status = ts->refuse_status;
    answer->subprotocol = ts->subprotocol;
}

TS_FN void ts_on_http(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    size_t n = request->path.length < sizeof ts->http_path - 1 ? request->path.length : sizeof ts->http_path - 1;
    memcpy(ts->http_path, request->path.ptr, n);
    ts->http_path[n] = '\0';
    ts->http_count++;
    if (ts->http_status)
        ts->http_result = vrs_http_respond(server, conn, ts->http_status, ts->http_content_type,
                                           ts->http_extra_headers, ts->http_body,
                                           ts->http_body ? strlen(ts->http_body) : 0);
}

TS_FN void ts_logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    if ((int)item >= 0 && item < VRS_LOG_ITEM_COUNT) ts->log_counts[item]++;
    snprintf(ts->last_log, sizeof ts->last_log, "%s: %s", vrs_log_item_name(item), message);
    if (ts->print_logs) fprintf(stderr, "    [log %d] %s\n", (int)level, ts->last_log);
}

/* A recorder with the test defaults: 127.0.0.1, an ephemeral port, 8 connections, echo on,
   logs recorded (and not printed). Adjust ts->desc, then ts_server_start. */
TS_FN ts_server *ts_server_new(void) {
    ts_server *ts = (ts_server *)calloc(1, sizeof *ts);
    if (!ts) return NULL;
    ts->desc.host = "127.0.0.1";
    ts->desc.port = VRS_PORT_ANY;
    ts->desc.max_connections = 8;
    ts->desc.close_timeout_ms = 10000; /* longer than any wait: an end of TCP seen is never the timeout's */
    ts->desc.on_open = ts_on_open;
    ts->desc.on_message = ts_on_message;
    ts->desc.on_close = ts_on_close;
    ts->desc.user_data = ts;
    ts->desc.logger.func = ts_logger;
    ts->desc.logger.user_data = ts;
    ts->echo = 1;
    ts->print_logs = getenv("TS_PRINT_LOGS") != NULL;
    ts_track((void **)ts_live_servers, ts, 1);
    return ts;
}

TS_FN vrs_result ts_server_start(ts_server *ts) {
    vrs_result result = vrs_create(&ts->desc, &ts->server);
    if (result == VRS_OK) ts->port = vrs_port(ts->server);
    return result;
}

TS_FN void ts_server_free(ts_server *ts) {
    if (!ts) return;
    if (ts->server) vrs_destroy(ts->server);
    ts_track((void **)ts_live_servers, ts, 0);
    free(ts);
}

/* ts_server_new + ts_server_start with the defaults; NULL when the server cannot start. */
TS_FN ts_server *ts_server_default(void) {
    ts_server *ts = ts_server_new();
    if (ts && ts_server_start(ts) != VRS_OK) {
        ts_server_free(ts);
        return NULL;
    }
    return ts;
}

/* One round of the server: vrs_step, or the host-driven loop when use_poll_api is set. */
TS_FN void ts_step(ts_server *ts, int timeout_ms) {
    if (!ts || !ts->server) {
        ts_sleep_ms(timeout_ms);
        return;
    }
    if (ts->use_poll_api) {
        struct pollfd fds[TS_POLL_CAPACITY];
        int count = vrs_poll_fds(ts->server, fds, TS_POLL_CAPACITY);
        int wait = vrs_timeout_ms(ts->server);
        if (wait < 0 || wait > timeout_ms) wait = timeout_ms;
        if (ts_poll(fds, count, wait) < 0 && ts_socket_error() != EINTR) ts->step_errors++;
        vrs_process(ts->server, fds, count);
    } else if (vrs_step(ts->server, timeout_ms) != VRS_OK) {
        ts->step_errors++;
    }
}

/* Runs the server for `ms` milliseconds. */
TS_FN void ts_pump(ts_server *ts, int ms) {
    int64_t deadline = ts_now_ms() + ms;
    do {
        int64_t left = deadline - ts_now_ms();
        ts_step(ts, left <= 0 ? 0 : left > 5 ? 5 : (int)left);
    } while (ts_now_ms() < deadline);
}

/* Pumps until *counter >= target; returns 1 when it got there in time. */
TS_FN int ts_wait_count(ts_server *ts, const int *counter, int target, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (*counter < target) {
        if (ts_now_ms() >= deadline) return 0;
        ts_step(ts, 1);
    }
    return 1;
}

TS_FN int ts_wait_closes(ts_server *ts, int count) {
    return ts_wait_count(ts, &ts->close_count, count, TS_TIMEOUT_MS);
}

/* Pumps until the server holds no connection, no open WebSocket and no pool block. */
TS_FN int ts_wait_drained(ts_server *ts, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        vrs_stats s = vrs_get_stats(ts->server);
        if (s.connections == 0 && s.open_connections == 0 && s.pool_blocks_used == 0) return 1;
        if (ts_now_ms() >= deadline) return 0;
        ts_step(ts, 1);
    }
}

/* The close code on_close reported for this handle, or -1. */
TS_FN int ts_close_code_of(const ts_server *ts, vrs_conn conn) {
    int i;
    for (i = 0; i < ts->close_count && i < TS_MAX_EVENTS; i++)
        if (ts->closed[i].id == conn.id) return ts->close_codes[i];
    return -1;
}

TS_FN const ts_message *ts_last_message(const ts_server *ts) {
    if (ts->message_count == 0) return NULL;
    return &ts->messages[(ts->message_count - 1) % TS_MESSAGE_RING];
}

/* ---------------------------------------------------------------------------------------------
   The raw client
   ------------------------------------------------------------------------------------------- */

struct ts_client {
    int fd;
    ts_server *ts;              /* pumped while the client waits (may be NULL) */
    unsigned char *buf;         /* received, not yet consumed: buf[rpos, wpos) */
    size_t rpos, wpos;
    unsigned char *payload;     /* the last frame's payload (ts_frame.payload points here) */
    int eof, reset;
    uint32_t mask_seed;
    vrs_conn conn;              /* the server's handle for it, once upgraded through ts_ws_* */
    size_t discarded;           /* bytes thrown away by ts_wait_eof */
    int skipped_frames;         /* frames ts_read_close passed over */
};

typedef struct ts_frame {
    int fin, rsv, opcode, masked;
    int length_code;            /* the 7-bit length field as sent: <126, 126 or 127 */
    size_t length;
    unsigned char *payload;     /* valid until the client's next read */
    int close_code;             /* for close frames: the code, or 1005 when the payload is empty */
    char reason[128];           /* for close frames: the reason, NUL-terminated */
} ts_frame;

TS_FN void ts_client_free(ts_client *c) {
    if (!c) return;
    if (c->fd >= 0) ts_close_socket(c->fd);
    free(c->buf);
    free(c->payload);
    ts_track((void **)ts_live_clients, c, 0);
    free(c);
}

/* Connects to host:port (numeric), optionally with a small SO_RCVBUF (0: the default). */
TS_FN ts_client *ts_client_connect_to(ts_server *ts, const char *host, int port, int rcvbuf) {
    struct addrinfo hints, *found = NULL;
    char port_text[16];
    ts_client *c;
    int one = 1, error = 0;
    socklen_t error_length = sizeof error;
    int64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(port_text, sizeof port_text, "%d", port);
    if (getaddrinfo(host, port_text, &hints, &found) != 0 || !found) return NULL;
    c = (ts_client *)calloc(1, sizeof *c);
    if (!c) {
        freeaddrinfo(found);
        return NULL;
    }
    c->ts = ts;
    c->buf = (unsigned char *)malloc(TS_CLIENT_BUFFER);
    c->payload = (unsigned char *)malloc(TS_CLIENT_BUFFER);
    c->mask_seed = 0x9E3779B9u ^ (uint32_t)port;
    c->fd = (int)socket(found->ai_family, SOCK_STREAM, 0);
    ts_track((void **)ts_live_clients, c, 1);
    if (c->fd < 0 || !c->buf || !c->payload) goto failed;
    if (rcvbuf > 0) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, (void *)&rcvbuf, sizeof rcvbuf);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, (void *)&one, sizeof one);
    ts_set_nonblocking(c->fd);
    if (connect(c->fd, found->ai_addr, (int)found->ai_addrlen) != 0) {
        if (ts_socket_error() != TS_NONBLOCKING_CONNECT_STARTED) goto failed;
        for (;;) {
            struct pollfd p;
            p.fd = c->fd;
            p.events = POLLOUT;
            p.revents = 0;
            if (ts_poll(&p, 1, 0) == 1) break;
            if (ts_now_ms() >= deadline) goto failed;
            ts_step(ts, 1);
        }
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *)&error, &error_length) != 0 || error != 0) goto failed;
    }
    freeaddrinfo(found);
    return c;
failed:
    freeaddrinfo(found);
    ts_client_free(c);
    return NULL;
}

TS_FN ts_client *ts_client_connect(ts_server *ts) {
    return ts_client_connect_to(ts, "127.0.0.1", ts->port, 0);
}

/* Bytes received and not yet consumed. */
TS_FN size_t ts_client_available(const ts_client *c) { return c->wpos - c->rpos; }

/* One non-blocking recv. Returns bytes read (>0), 0 at EOF, -1 when nothing is there yet,
   -2 after a reset or error, -3 when the receive buffer is full. */
TS_FN int ts_client_recv_some(ts_client *c) {
    ssize_t got;
    if (c->reset) return -2;
    if (c->eof) return 0;
    if (c->rpos == c->wpos) c->rpos = c->wpos = 0;
    if (c->wpos == TS_CLIENT_BUFFER && c->rpos > 0) {
        memmove(c->buf, c->buf + c->rpos, c->wpos - c->rpos);
        c->wpos -= c->rpos;
        c->rpos = 0;
    }
    if (c->wpos == TS_CLIENT_BUFFER) return -3;
    got = recv(c->fd, (void *)(c->buf + c->wpos), TS_CLIENT_BUFFER - c->wpos, 0);
    if (got > 0) {
        c->wpos += (size_t)got;
        return (int)got;
    }
    if (got == 0) {
        c->eof = 1;
        return 0;
    }
    if (ts_would_block()) return -1;
    c->reset = 1;
    return -2;
}

/* Pumps the server and reads until `need` bytes are buffered. Returns 1 when they are, 0 when
   the connection ended first, -1 on timeout. */
TS_FN int ts_client_wait_bytes(ts_client *c, size_t need, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        int r;
        if (ts_client_available(c) >= need) return 1;
        r = ts_client_recv_some(c);
        if (r > 0) continue;
        if (r == 0 || r == -2) return 0;
        if (r == -3 || ts_now_ms() >= deadline) return -1;
        ts_step(c->ts, 1);
    }
}

/* Sends every byte, pumping the server (and draining our receive side) while the socket is
   full. Returns 0, or -1 when the socket failed or the bytes did not go within the bound. */
TS_FN int ts_send_raw(ts_client *c, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    int64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
    while (length > 0) {
        ssize_t sent = send(c->fd, (const void *)p, length, MSG_NOSIGNAL);
        if (sent > 0) {
            p += sent;
            length -= (size_t)sent;
            continue;
        }
        if (sent < 0 && ts_would_block()) {
            if (ts_now_ms() >= deadline) return -1;
            ts_client_recv_some(c);
            ts_step(c->ts, 1);
            continue;
        }
        return -1;
    }
    return 0;
}

TS_FN int ts_send_str(ts_client *c, const char *text) { return ts_send_raw(c, text, strlen(text)); }

/* Pumps for `ms` and reports whether the client stayed quiet: 1 when no byte and no end
   arrived (nothing is consumed). */
TS_FN int ts_client_quiet(ts_client *c, int ms) {
    int64_t deadline = ts_now_ms() + ms;
    size_t before = ts_client_available(c);
    while (ts_now_ms() < deadline) {
        int r = ts_client_recv_some(c);
        if (r == 0 || r == -2) return 0;
        ts_step(c->ts, 1);
    }
    ts_client_recv_some(c);
    return ts_client_available(c) == before && !c->eof && !c->reset;
}

/* Reads and throws away bytes until the connection ends. Returns 1 at EOF or reset, 0 on
   timeout; c->discarded counts the bytes thrown away. */
TS_FN int ts_wait_eof(ts_client *c, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        int r;
        c->discarded += ts_client_available(c);
        c->rpos = c->wpos = 0;
        r = ts_client_recv_some(c);
        if (r > 0) continue;
        if (r == 0 || r == -2) return 1;
        if (ts_now_ms() >= deadline) return 0;
        ts_step(c->ts, 1);
    }
}

/* ---------------------------------------------------------------------------------------------
   HTTP
   ------------------------------------------------------------------------------------------- */

/* A request head. Each field NULL takes the default of a valid upgrade request; TS_OMIT
   leaves that header out. `extra` is whole header lines, each ending in "\r\n". */
typedef struct ts_request {
    const char *method;       /* "GET" */
    const char *target;       /* "/" */
    const char *version;      /* "HTTP/1.1" */
    const char *host;         /* "127.0.0.1" */
    const char *upgrade;      /* "websocket" */
    const char *connection;   /* "Upgrade" */
    const char *key;          /* the RFC 6455 example key, "dGhlIHNhbXBsZSBub25jZQ==" */
    const char *ws_version;   /* "13" */
    const char *extra;        /* "" */
} ts_request;

/* A plain (non-upgrade) request's defaults: no Upgrade, Connection or Sec-WebSocket-*. */
TS_FN ts_request ts_plain_request(const char *method, const char *target) {
    ts_request q;
    memset(&q, 0, sizeof q);
    q.method = method;
    q.target = target;
    q.upgrade = q.connection = q.key = q.ws_version = TS_OMIT;
    return q;
}

static void ts_append(char *out, size_t capacity, size_t *at, const char *name, const char *value) {
    int n;
    if (value == TS_OMIT || *at >= capacity) return;
    n = name ? snprintf(out + *at, capacity - *at, "%s: %s\r\n", name, value)
             : snprintf(out + *at, capacity - *at, "%s", value);
    if (n > 0) *at += (size_t)n < capacity - *at ? (size_t)n : capacity - *at - 1;
}

/* Writes the request head; returns its length. */
TS_FN size_t ts_format_request(const ts_request *q, char *out, size_t capacity) {
    size_t at = 0;
    int n = snprintf(out, capacity, "%s %s %s\r\n", q->method ? q->method : "GET",
                     q->target ? q->target : "/", q->version ? q->version : "HTTP/1.1");
    if (n < 0 || (size_t)n >= capacity) return 0;
    at = (size_t)n;
    ts_append(out, capacity, &at, "Host", q->host ? q->host : "127.0.0.1");
    ts_append(out, capacity, &at, "Upgrade", q->upgrade ? q->upgrade : "websocket");
    ts_append(out, capacity, &at, "Connection", q->connection ? q->connection : "Upgrade");
    ts_append(out, capacity, &at, "Sec-WebSocket-Key", q->key ? q->key : "dGhlIHNhbXBsZSBub25jZQ==");
    ts_append(out, capacity, &at, "Sec-WebSocket-Version", q->ws_version ? q->ws_version : "13");
    ts_append(out, capacity, &at, NULL, q->extra ? q->extra : "");
    ts_append(out, capacity, &at, NULL, "\r\n");
    return at;
}

TS_FN int ts_send_request(ts_client *c, const ts_request *q) {
    char head[8192];
    size_t n = ts_format_request(q, head, sizeof head);
    return n ? ts_send_raw(c, head, n) : -1;
}

typedef struct ts_response {
    int status;
    char head[4096];          /* the whole head, NUL-terminated */
    size_t head_length;
    char body[4096];          /* filled by ts_read_response_body, NUL-terminated */
    size_t body_length;
} ts_response;

/* Reads a response head (up to the empty line). Returns 1, 0 when the connection ended first,
   -1 on timeout or a head too large. */
TS_FN int ts_read_response_head(ts_client *c, ts_response *r, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    memset(r, 0, sizeof *r);
    r->status = -1;
    for (;;) {
        size_t i, n = ts_client_available(c);
        const unsigned char *p = c->buf + c->rpos;
        for (i = 0; i + 3 < n; i++) {
            if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
                size_t length = i + 4;
                if (length >= sizeof r->head) return -1;
                memcpy(r->head, p, length);
                r->head[length] = '\0';
                r->head_length = length;
                c->rpos += length;
                if (strncmp(r->head, "HTTP/1.1 ", 9) == 0) r->status = atoi(r->head + 9);
                return 1;
            }
        }
        if (n >= sizeof r->head) return -1;
        {
            int got = ts_client_wait_bytes(c, n + 1, (int)(deadline - ts_now_ms() > 0 ? deadline - ts_now_ms() : 0));
            if (got != 1) return got;
        }
    }
}

static int ts_lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

/* Copies the value of the first header `name` (case-insensitive) into out; 1 when found. */
TS_FN int ts_response_header(const ts_response *r, const char *name, char *out, size_t capacity) {
    const char *line = strstr(r->head, "\r\n");
    size_t name_length = strlen(name);
    while (line && line[2] != '\r' && line[2] != '\0') {
        const char *start = line + 2, *end = strstr(start, "\r\n");
        size_t i;
        if (!end) break;
        for (i = 0; i < name_length && start + i < end; i++)
            if (ts_lower((unsigned char)start[i]) != ts_lower((unsigned char)name[i])) break;
        if (i == name_length && start[i] == ':') {
            const char *v = start + i + 1;
            size_t n;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            n = (size_t)(end - v);
            if (n >= capacity) n = capacity - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
        line = end;
    }
    if (capacity) out[0] = '\0';
    return 0;
}

/* Reads Content-Length bytes of body (0 when there is no Content-Length). Returns 1, 0 when
   the connection ended first, -1 on timeout or a body too large. */
TS_FN int ts_read_response_body(ts_client *c, ts_response *r, int timeout_ms) {
    char value[32];
    size_t length = 0;
    int got;
    if (ts_response_header(r, "Content-Length", value, sizeof value)) length = (size_t)strtoul(value, NULL, 10);
    if (length >= sizeof r->body) return -1;
    got = ts_client_wait_bytes(c, length, timeout_ms);
    if (got != 1) return got;
    memcpy(r->body, c->buf + c->rpos, length);
    r->body[length] = '\0';
    r->body_length = length;
    c->rpos += length;
    return 1;
}

/* Sends the request and reads the response head; returns the status, or -1. */
TS_FN int ts_handshake(ts_client *c, const ts_request *q, ts_response *r) {
    if (ts_send_request(c, q) != 0) return -1;
    if (ts_read_response_head(c, r, TS_TIMEOUT_MS) != 1) return -1;
    return r->status;
}

/* Upgrades an already connected client with the default request; 1 on 101. Remembers the
   server's handle (the connection on_open saw last). */
TS_FN int ts_ws_upgrade(ts_client *c) {
    ts_request q;
    ts_response r;
    memset(&q, 0, sizeof q);
    if (ts_handshake(c, &q, &r) != 101) return 0;
    if (c->ts && c->ts->open_count > 0 && c->ts->open_count <= TS_MAX_EVENTS)
        c->conn = c->ts->opened[c->ts->open_count - 1];
    return 1;
}

/* Connects and upgrades; NULL when either fails. */
TS_FN ts_client *ts_ws_connect(ts_server *ts) {
    ts_client *c = ts_client_connect(ts);
    if (c && !ts_ws_upgrade(c)) {
        ts_client_free(c);
        return NULL;
    }
    return c;
}

/* ---------------------------------------------------------------------------------------------
   Frames
   ------------------------------------------------------------------------------------------- */

/* How to write a client frame. Zero-initialised: a final, masked frame with the minimal
   length encoding and the payload's length. */
typedef struct ts_frame_spec {
    int opcode;
    int nonfinal;               /* 1: FIN clear */
    int rsv;                    /* the three reserved bits as a value: RSV1 = 4, RSV2 = 2, RSV3 = 1 */
    int unmasked;               /* 1: no mask (a protocol error from a client) */
    int length_bytes;           /* 0: minimal; 1: 7-bit, 2: 16-bit (126), 8: 64-bit (127) */
    int declare_length;         /* 1: the header says declared_length, whatever the payload */
    uint64_t declared_length;
} ts_frame_spec;

static uint32_t ts_next_mask(ts_client *c) {
    c->mask_seed = c->mask_seed * 1664525u + 1013904223u;
    return c->mask_seed;
}

/* Writes header and (masked) payload into out; returns the frame's length, 0 when out is too
   small. */
TS_FN size_t ts_build_frame(ts_client *c, const ts_frame_spec *s, const void *payload, size_t length,
                            unsigned char *out, size_t capacity) {
    uint64_t declared = s->declare_length ? s->declared_length : (uint64_t)length;
    int bytes = s->length_bytes;
    size_t at = 0, i;
    unsigned char mask[4];
    const unsigned char *p = (const unsigned char *)payload;
    if (bytes == 0) bytes = declared < 126 ? 1 : declared <= 0xFFFF ? 2 : 8;
    if (capacity < 14 + length) return 0;
    out[at++] = (unsigned char)((s->nonfinal ? 0 : 0x80) | (s->rsv & 7) << 4 | (s->opcode & 0x0F));
    if (bytes == 1) {
        out[at++] = (unsigned char)((s->unmasked ? 0 : 0x80) | (declared & 0x7F));
    } else if (bytes == 2) {
        out[at++] = (unsigned char)((s->unmasked ? 0 : 0x80) | 126);
        out[at++] = (unsigned char)(declared >> 8);
        out[at++] = (unsigned char)declared;
    } else {
        out[at++] = (unsigned char)((s->unmasked ? 0 : 0x80) | 127);
        for (i = 0; i < 8; i++) out[at++] = (unsigned char)(declared >> (56 - 8 * i));
    }
    if (!s->unmasked) {
        uint32_t m = ts_next_mask(c);
        for (i = 0; i < 4; i++) mask[i] = (unsigned char)(m >> (8 * i));
        memcpy(out + at, mask, 4);
        at += 4;
    }
    for (i = 0; i < length; i++) out[at + i] = s->unmasked ? p[i] : (unsigned char)(p[i] ^ mask[i & 3]);
    return at + length;
}

TS_FN int ts_send_frame_spec(ts_client *c, const ts_frame_spec *s, const void *payload, size_t length) {
    unsigned char *frame = (unsigned char *)malloc(length + 14);
    size_t n;
    int result;
    if (!frame) return -1;
    n = ts_build_frame(c, s, payload, length, frame, length + 14);
    result = n ? ts_send_raw(c, frame, n) : -1;
    free(frame);
    return result;
}

TS_FN int ts_send_frame(ts_client *c, int opcode, int fin, const void *payload, size_t length) {
    ts_frame_spec s;
    memset(&s, 0, sizeof s);
    s.opcode = opcode;
    s.nonfinal = !fin;
    return ts_send_frame_spec(c, &s, payload, length);
}

TS_FN int ts_send_text(ts_client *c, const char *text) { return ts_send_frame(c, 1, 1, text, strlen(text)); }

/* A close frame: code < 0 sends an empty payload; reason may be NULL. */
TS_FN int ts_send_close(ts_client *c, int code, const char *reason) {
    unsigned char payload[125] = {0};
    size_t n = 0, reason_length = reason ? strlen(reason) : 0;
    if (code >= 0) {
        payload[0] = (unsigned char)(code >> 8);
        payload[1] = (unsigned char)code;
        if (reason_length > 123) reason_length = 123;
        if (reason_length) memcpy(payload + 2, reason, reason_length);
        n = 2 + reason_length;
    }
    return ts_send_frame(c, 8, 1, payload, n);
}

/* Reads one frame. Returns 1, 0 when the connection ended before a whole frame, -1 on timeout,
   -3 when the frame is larger than the client's buffer. */
TS_FN int ts_read_frame(ts_client *c, ts_frame *f, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    const unsigned char *p;
    size_t header = 2, i;
    uint64_t length;
    int got;
#define TS_LEFT ((int)(deadline - ts_now_ms() > 0 ? deadline - ts_now_ms() : 0))
    memset(f, 0, sizeof *f);
    if ((got = ts_client_wait_bytes(c, 2, TS_LEFT)) != 1) return got;
    p = c->buf + c->rpos;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0x0F;
    f->masked = p[1] >> 7;
    f->length_code = p[1] & 0x7F;
    header += (f->length_code == 126 ? 2 : f->length_code == 127 ? 8 : 0) + (f->masked ? 4 : 0);
    if ((got = ts_client_wait_bytes(c, header, TS_LEFT)) != 1) return got;
    p = c->buf + c->rpos;
    length = (uint64_t)f->length_code;
    if (f->length_code == 126) length = (uint64_t)p[2] << 8 | p[3];
    if (f->length_code == 127)
        for (length = 0, i = 0; i < 8; i++) length = length << 8 | p[2 + i];
    if (length > TS_CLIENT_BUFFER - header) return -3;
    if ((got = ts_client_wait_bytes(c, header + (size_t)length, TS_LEFT)) != 1) return got;
#undef TS_LEFT
    p = c->buf + c->rpos;
    f->length = (size_t)length;
    for (i = 0; i < f->length; i++)
        c->payload[i] = f->masked ? (unsigned char)(p[header + i] ^ p[header - 4 + (i & 3)]) : p[header + i];
    f->payload = c->payload;
    c->rpos += header + f->length;
    if (f->opcode == 8) {
        f->close_code = f->length >= 2 ? (f->payload[0] << 8 | f->payload[1]) : 1005;
        if (f->length > 2) {
            size_t n = f->length - 2 < sizeof f->reason - 1 ? f->length - 2 : sizeof f->reason - 1;
            memcpy(f->reason, f->payload + 2, n);
            f->reason[n] = '\0';
        }
    }
    return 1;
}

/* Reads frames until a close frame, counting others in c->skipped_frames. Returns the close
   code (1005 for an empty close), -1 when the connection ended without one, -2 on timeout. */
TS_FN int ts_read_close(ts_client *c, ts_frame *f, int timeout_ms) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - ts_now_ms();
        int got = ts_read_frame(c, f, left > 0 ? (int)left : 0);
        if (got == 0) return -1;
        if (got != 1) return -2;
        if (f->opcode == 8) return f->close_code;
        c->skipped_frames++;
    }
}

/* 1 when IPv6 loopback works here (a socket can bind ::1). */
TS_FN int ts_ipv6_available(void) {
    struct sockaddr_in6 a;
    int fd = (int)socket(AF_INET6, SOCK_STREAM, 0), ok;
    if (fd < 0) return 0;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)(void *)&a, sizeof a) == 0;
    ts_close_socket(fd);
    return ok;
}

/* Two connected non-blocking stream sockets: a socket pair, or on Windows (which has none
   for TCP) the two ends of one loopback connection. They are accepted from one listener kept
   for the whole run: a listener per pair would leave its port held by the closed connection's
   TIME_WAIT, and thousands of pairs would use up the ephemeral ports. Returns 0 on success, as
   socketpair. */
TS_FN int ts_socket_pair(int fds[2]) {
#ifdef _WIN32
    static SOCKET listener = INVALID_SOCKET;
    static struct sockaddr_in a;
    SOCKET client, server = INVALID_SOCKET;
    if (listener == INVALID_SOCKET) {
        int length = sizeof a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        listener = socket(AF_INET, SOCK_STREAM, 0);
        if (listener == INVALID_SOCKET) return -1;
        if (bind(listener, (struct sockaddr *)(void *)&a, sizeof a) != 0 || listen(listener, 4) != 0 ||
            getsockname(listener, (struct sockaddr *)(void *)&a, &length) != 0) {
            closesocket(listener);
            listener = INVALID_SOCKET;
            return -1;
        }
    }
    client = socket(AF_INET, SOCK_STREAM, 0);
    if (client == INVALID_SOCKET) return -1;
    if (connect(client, (struct sockaddr *)(void *)&a, sizeof a) != 0 ||
        (server = accept(listener, NULL, NULL)) == INVALID_SOCKET) {
        closesocket(client);
        return -1;
    }
    fds[0] = (int)server;
    fds[1] = (int)client;
#else
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return -1;
#endif
    ts_set_nonblocking(fds[0]);
    ts_set_nonblocking(fds[1]);
    return 0;
}

/* Frees every server and client still alive (at exit, or by a test that wants a clean slate). */
static void ts_reclaim(void) {
    int i;
    for (i = 0; i < TS_MAX_LIVE; i++)
        if (ts_live_clients[i]) ts_client_free(ts_live_clients[i]);
    for (i = 0; i < TS_MAX_LIVE; i++)
        if (ts_live_servers[i]) ts_server_free(ts_live_servers[i]);
}

#endif
