/* demo_server: the video-room signaling server with the default relay room logic, and the
   demo web page.

   build/demo_server [--host H] [--port P] [--max-connections N] [--max-rooms N]
                     [--max-peers N] [--max-message BYTES] [--send-queue BYTES]
                     [--slow-consumer-timeout SECONDS] [--idle-timeout SECONDS] [--handshake-timeout SECONDS] [--origin URL ...]
                     [--web-root DIR] [--ice-server URL[,USERNAME,CREDENTIAL] ...]
                     [--drain-seconds SECONDS]

   Browsers open http://H:P/ (the page in examples/web), and the page, or any other Phoenix
   client, connects to ws://H:P/socket/websocket and joins topics "room:<id>". A log line is
   printed for every connection, join and leave.

   For a load balancer (examples/cluster): GET /health answers 200 while the server takes new
   sockets and 503 once it drains; GET /metrics gives vrs_get_stats in the Prometheus text
   format. SIGTERM drains: /health 503 and new sockets refused at once, then, after
   --drain-seconds (default 3: time for the balancer's health checks to notice) or as soon as no
   socket is open, every socket is closed with 1012 (service restart: clients reconnect at once
   and the balancer sends them elsewhere), and the server exits. SIGINT stops at once. On
   Windows, where console programs get no SIGTERM, Ctrl-C drains and Ctrl-Break stops. */
/* 64-bit file offsets and inode numbers on 32-bit systems too, so that web_files.h's stat()
   works on any file system. */
#define _FILE_OFFSET_BITS 64
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "web_files.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef _WIN32
#include <sys/resource.h>
#include <unistd.h>
#endif

#define DEMO_MAX_ORIGINS 16
#define DEMO_MAX_ICE_SERVERS 8
/* Descriptors besides the connections and the 503 answers: listener, epoll, a file being
   served, stdio, and some slack. */
#define DEMO_SPARE_DESCRIPTORS 64

static char ice_config[4096] = "{\"iceServers\":[]}";

static void serve_metrics(vrs_server *server, vrs_conn conn);

static void serve_http(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    (void)user_data;
    if (!vrs_span_equals(request->method, "GET") && !vrs_span_equals(request->method, "HEAD")) {
        vrs_http_respond(server, conn, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                         "405 Method Not Allowed\n", 23);
    } else if (vrs_span_equals(request->path, "/health")) {
        int draining = vrs_get_stats(server).draining;
        vrs_http_respond(server, conn, draining ? 503 : 200, "text/plain; charset=utf-8",
                         "Cache-Control: no-store\r\n", draining ? "draining\n" : "ok\n", draining ? 9 : 3);
    } else if (vrs_span_equals(request->path, "/metrics")) {
        serve_metrics(server, conn);
    } else if (vrs_span_equals(request->path, "/config.json")) {
        vrs_http_respond(server, conn, 200, "application/json", web_security_headers, ice_config,
                         strlen(ice_config));
    } else {
        web_serve_file(server, conn, request->path.ptr, request->path.length);
    }
}

/* Appends one RTCIceServer, from "URL" or "URL,USERNAME,CREDENTIAL", to the page's config. */
static int add_ice_server(const char *spec, int index) {
    char url[512], username[256] = "", credential[256] = "", entry[1200];
    const char *comma = strchr(spec, ','), *p;
    size_t length = strlen(ice_config);
    if (strlen(spec) >= sizeof url) return 0;
    for (p = spec; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < ' ') return 0; /* keep the JSON simple */
    if (comma) {
        const char *second = strchr(comma + 1, ',');
        if (!second) return 0;
        snprintf(url, sizeof url, "%.*s", (int)(comma - spec), spec);
        snprintf(username, sizeof username, "%.*s", (int)(second - comma - 1), comma + 1);
        snprintf(credential, sizeof credential, "%s", second + 1);
        snprintf(entry, sizeof entry, "%s{\"urls\":\"%s\",\"username\":\"%s\",\"credential\":\"%s\"}",
                 index ? "," : "", url, username, credential);
    } else {
        snprintf(entry, sizeof entry, "%s{\"urls\":\"%s\"}", index ? "," : "", spec);
    }
    if (length + strlen(entry) + 3 >= sizeof ice_config) return 0;
    snprintf(ice_config + length - 2, sizeof ice_config - (length - 2), "%s]}", entry);
    return 1;
}

/* The Prometheus text exposition format (version 0.0.4), written into one fixed buffer. */
static char metrics[32768];
static size_t metrics_length;

static void metric_printf(const char *format, ...) {
    va_list args;
    int n;
    if (metrics_length >= sizeof metrics) return;
    va_start(args, format);
    n = vsnprintf(metrics + metrics_length, sizeof metrics - metrics_length, format, args);
    va_end(args);
    metrics_length = n < 0 ? sizeof metrics : metrics_length + (size_t)n;
}

static void metric_family(const char *name, const char *type, const char *help) {
    metric_printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(const char *name, const char *type, const char *help, unsigned long long value) {
    metric_family(name, type, help);
    metric_printf("%s %llu\n", name, value);
}

/* Log items that end a request before it becomes a socket, with the label value for each. */
static const vrs_log_item handshake_failures[] = {
    VRS_LOG_REQUEST_TOO_LARGE, VRS_LOG_BAD_REQUEST,     VRS_LOG_BAD_UPGRADE,        VRS_LOG_UNSUPPORTED_VERSION,
    VRS_LOG_UPGRADE_REFUSED,   VRS_LOG_HANDSHAKE_TIMEOUT, VRS_LOG_ORIGIN_REFUSED,   VRS_LOG_VSN_REFUSED,
    VRS_LOG_CONNECT_REFUSED,   VRS_LOG_ROOM_PARAM_REFUSED, VRS_LOG_CONNECTIONS_FULL, VRS_LOG_DRAINING_REFUSED};

static void serve_metrics(vrs_server *server, vrs_conn conn) {
    static const int codes_always_shown[] = {1000, 1001, 1002, 1006, 1007, 1009, 1012, 1013};
    vrs_stats s = vrs_get_stats(server);
    size_t i;
    int code;
    metrics_length = 0;
    metric("vrs_connections", "gauge", "Accepted sockets in any state.", (unsigned long long)s.connections);
    metric("vrs_websocket_connections", "gauge", "Open WebSocket connections.", (unsigned long long)s.open_connections);
    metric("vrs_phoenix_sockets", "gauge", "Open Phoenix sockets.", (unsigned long long)s.phoenix_sockets);
    metric("vrs_channels", "gauge", "Joined channels (room peers).", (unsigned long long)s.channels);
    metric("vrs_relay_peers", "gauge", "Peers that joined the relay.", (unsigned long long)s.relay_peers);
    metric("vrs_rooms", "gauge", "Rooms.", (unsigned long long)s.rooms);
    metric("vrs_pool_blocks_used", "gauge", "Buffer pool blocks in use.", (unsigned long long)s.pool_blocks_used);
    metric("vrs_pool_blocks", "gauge", "Buffer pool blocks in all.", (unsigned long long)s.pool_blocks_total);
    metric("vrs_draining", "gauge", "1 while draining: new sockets refused.", (unsigned long long)s.draining);
    metric("vrs_connections_accepted_total", "counter", "Sockets accepted.", s.connections_accepted);
    metric("vrs_connections_refused_total", "counter", "Sockets answered 503 or dropped: full or draining.",
           s.connections_refused);
    metric("vrs_messages_received_total", "counter", "WebSocket messages received.", s.messages_received);
    metric("vrs_messages_sent_total", "counter", "WebSocket messages sent.", s.messages_sent);
    metric("vrs_received_bytes_total", "counter", "Bytes received from clients.", s.bytes_received);
    metric("vrs_sent_bytes_total", "counter", "Bytes sent to clients.", s.bytes_sent);
    metric("vrs_slow_consumers_closed_total", "counter", "Clients closed with 1013 for not reading.",
           s.slow_consumers_closed);
    metric_family("vrs_protocol_errors_total", "counter", "Connections the server closed for a protocol error, by close code.");
    metric_printf("vrs_protocol_errors_total{code=\"1002\"} %llu\n", (unsigned long long)s.log_counts[VRS_LOG_PROTOCOL_ERROR]);
    metric_printf("vrs_protocol_errors_total{code=\"1007\"} %llu\n",
                  (unsigned long long)(s.log_counts[VRS_LOG_INVALID_UTF8] + s.log_counts[VRS_LOG_BAD_MESSAGE]));
    metric_printf("vrs_protocol_errors_total{code=\"1009\"} %llu\n", (unsigned long long)s.log_counts[VRS_LOG_MESSAGE_TOO_LARGE]);
    metric_family("vrs_websocket_closes_total", "counter", "WebSocket connections ended, by close code.");
    for (code = 1000; code < 1000 + VRS_STATS_CLOSE_CODES; code++) {
        int shown = s.closes_by_code[code - 1000] > 0;
        for (i = 0; i < sizeof codes_always_shown / sizeof codes_always_shown[0]; i++)
            shown |= codes_always_shown[i] == code;
        if (shown) metric_printf("vrs_websocket_closes_total{code=\"%d\"} %llu\n", code,
                                 (unsigned long long)s.closes_by_code[code - 1000]);
    }
    metric_printf("vrs_websocket_closes_total{code=\"other\"} %llu\n", (unsigned long long)s.closes_other_code);
    metric_family("vrs_handshake_failures_total", "counter", "Requests refused before becoming a socket, by reason.");
    for (i = 0; i < sizeof handshake_failures / sizeof handshake_failures[0]; i++) {
        char reason[64];
        const char *name = vrs_log_item_name(handshake_failures[i]);
        size_t k;
        for (k = 0; name[k] && k + 1 < sizeof reason; k++)
            reason[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
        reason[k] = '\0';
        metric_printf("vrs_handshake_failures_total{reason=\"%s\"} %llu\n", reason,
                      (unsigned long long)s.log_counts[handshake_failures[i]]);
    }
    metric_family("vrs_join_failures_total", "counter", "Refused Phoenix joins, by the reason replied.");
    for (i = 0; i < VRS_JOIN_FAILURE_COUNT; i++)
        metric_printf("vrs_join_failures_total{reason=\"%s\"} %llu\n", vrs_join_failure_reason((vrs_join_failure)i),
                      (unsigned long long)s.join_failures[i]);
    if (metrics_length >= sizeof metrics ||
        vrs_http_respond(server, conn, 200, "text/plain; version=0.0.4; charset=utf-8", "Cache-Control: no-store\r\n",
                         metrics, metrics_length) != VRS_OK)
        vrs_http_respond(server, conn, 500, "text/plain; charset=utf-8", NULL, "metrics do not fit\n", 19);
}

static volatile sig_atomic_t stop_requested, drain_requested;

static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static void request_drain(int signal_number) {
    (void)signal_number;
    drain_requested = 1;
}

#ifdef _WIN32
static int64_t monotonic_ms(void) { return (int64_t)GetTickCount64(); }
#else
static int64_t monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}
#endif

/* Until SIGINT, or SIGTERM's drain is over: new sockets refused (and /health 503) at once,
   open ones closed with 1012 after drain_ms or as soon as none is left, then up to two
   seconds for the clients to answer the close. */
static void run(vrs_server *server, int drain_ms) {
    int64_t close_at = 0, give_up_at = 0;
    int draining = 0, closing = 0;
    while (!stop_requested) {
        vrs_step(server, draining ? 50 : 1000);
        if (drain_requested && !draining) {
            draining = 1;
            vrs_drain(server);
            close_at = monotonic_ms() + drain_ms;
            fprintf(stderr, "demo_server: draining: /health answers 503; sockets close with 1012 in %d s\n",
                    drain_ms / 1000);
        }
        if (draining && !closing && (monotonic_ms() >= close_at || vrs_get_stats(server).open_connections == 0)) {
            closing = 1;
            vrs_close_all(server, 1012, "service restart");
            give_up_at = monotonic_ms() + 2000;
        }
        if (closing && (vrs_get_stats(server).open_connections == 0 || monotonic_ms() >= give_up_at)) break;
    }
}

/* One line per connection, join and leave; warnings and errors always. */
static void print_log(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    char stamp[32];
    time_t now = time(NULL);
    (void)user_data;
    if (level == VRS_LOG_LEVEL_INFO && item != VRS_LOG_LISTENING && item != VRS_LOG_CONNECTION_OPENED &&
        item != VRS_LOG_CONNECTION_CLOSED && item != VRS_LOG_PEER_JOINED && item != VRS_LOG_PEER_LEFT)
        return;
    strftime(stamp, sizeof stamp, "%H:%M:%S", localtime(&now));
    fprintf(stderr, "%s %-7s %s: %s\n", stamp,
            level == VRS_LOG_LEVEL_ERROR ? "error" : level == VRS_LOG_LEVEL_WARNING ? "warning" : "info",
            vrs_log_item_name(item), message);
}

static void usage(void) {
    fprintf(stderr,
            "usage: demo_server [options]\n"
            "  --host H                 address to listen on (default 127.0.0.1; :: for all)\n"
            "  --port P                 port (default 4000)\n"
            "  --max-connections N      open connections (default 1024, at most 1048575)\n"
            "  --max-rooms N            rooms (default: max-connections)\n"
            "  --max-peers N            peers in one room (default 32)\n"
            "  --max-message BYTES      largest message (default 65536)\n"
            "  --send-queue BYTES       bytes queued for one client before the server stops\n"
            "                           reading its senders (default 262144, at least 256)\n"
            "  --slow-consumer-timeout SECONDS  close a client that takes none of its queued\n"
            "                           bytes for this long, with 1013 (default 20, at most 86400)\n"
            "  --idle-timeout SECONDS   close silent clients after (default 60, at most 86400)\n"
            "  --handshake-timeout SECONDS  drop unfinished requests after (default 10, at most 86400)\n"
            "  --origin URL             allow this Origin (repeatable; default: any)\n"
            "  --web-root DIR           the page's folder (default examples/web)\n"
            "  --ice-server URL[,USER,CREDENTIAL]  STUN/TURN server for the page (repeatable)\n"
            "  --drain-seconds SECONDS  on SIGTERM (Ctrl-C on Windows), keep open sockets this\n"
            "                           long before closing them with 1012 (default 3; 0: at once)\n");
}

/* A decimal number from `low` to `high`; checked before anything multiplies it. */
static int parse_number(const char *text, long low, long high, int *out) {
    char *end;
    long value;
    errno = 0;
    value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || value < low || value > high) {
        fprintf(stderr, "demo_server: %s is not a number from %ld to %ld\n", text, low, high);
        return 0;
    }
    *out = (int)value;
    return 1;
}

/* Seconds, up to a day, as the milliseconds the description takes. */
static int parse_seconds(const char *text, int *milliseconds) {
    int seconds;
    if (!parse_number(text, 1, 86400, &seconds)) return 0;
    *milliseconds = seconds * 1000;
    return 1;
}

/* Raises the soft descriptor limit as far as `connections` need, up to the hard limit, and
   returns how many connections the limit then allows (`connections` when all fit). Each
   connection is one socket, and up to VRS_REJECT_SLOTS more answer 503 when all are taken. */
#ifdef _WIN32
/* Windows sets no per-process limit on sockets to raise. */
static int fit_descriptor_limit(int connections, unsigned long *limit_out) {
    *limit_out = 0;
    return connections;
}
#else
static int fit_descriptor_limit(int connections, unsigned long *limit_out) {
    const rlim_t spare = VRS_REJECT_SLOTS + DEMO_SPARE_DESCRIPTORS;
    const rlim_t needed = (rlim_t)connections + spare;
    struct rlimit limit;
    *limit_out = 0;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return connections; /* unknown: nothing to say */
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
        struct rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed ? limit.rlim_max : needed;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit.rlim_cur = raised.rlim_cur;
    }
    if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= needed) return connections;
    *limit_out = (unsigned long)limit.rlim_cur;
    return limit.rlim_cur > spare ? (int)(limit.rlim_cur - spare) : 0;
}
#endif

int main(int argc, char **argv) {
    static const char *origins[DEMO_MAX_ORIGINS];
    vrs_desc desc;
    vrs_server *server = NULL;
    vrs_result result;
    int i, connections, allowed, ice_servers = 0, web_root_is_default = 1, drain_seconds = 3;
    unsigned long descriptor_limit;
    memset(&desc, 0, sizeof desc);
    desc.logger.func = print_log;
    desc.on_http = serve_http;
    for (i = 1; i < argc; i += 2) { /* every option but --help takes a value */
        const char *option = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = value != NULL;
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            usage();
            return 0;
        } else if (!ok) {
            ok = 0;
        } else if (strcmp(option, "--host") == 0) {
            desc.host = value;
        } else if (strcmp(option, "--port") == 0) {
            ok = parse_number(value, 1, 65535, &desc.port);
        } else if (strcmp(option, "--max-connections") == 0) {
            ok = parse_number(value, 1, 1048575, &desc.max_connections); /* the header's limit */
        } else if (strcmp(option, "--max-rooms") == 0) {
            ok = parse_number(value, 1, 2097151, &desc.max_rooms);
        } else if (strcmp(option, "--max-peers") == 0) {
            ok = parse_number(value, 1, INT_MAX, &desc.max_peers_per_room);
        } else if (strcmp(option, "--max-message") == 0) {
            ok = parse_number(value, 1, INT_MAX, &desc.max_message_size);
        } else if (strcmp(option, "--send-queue") == 0) {
            ok = parse_number(value, 256, INT_MAX, &desc.send_queue_size);
        } else if (strcmp(option, "--slow-consumer-timeout") == 0) {
            ok = parse_seconds(value, &desc.slow_consumer_timeout_ms);
        } else if (strcmp(option, "--idle-timeout") == 0) {
            ok = parse_seconds(value, &desc.idle_timeout_ms);
        } else if (strcmp(option, "--handshake-timeout") == 0) {
            ok = parse_seconds(value, &desc.handshake_timeout_ms);
        } else if (strcmp(option, "--drain-seconds") == 0) {
            ok = parse_number(value, 0, 3600, &drain_seconds);
        } else if (strcmp(option, "--web-root") == 0) {
            web_root = value;
            web_root_is_default = 0;
        } else if (strcmp(option, "--ice-server") == 0 && ice_servers < DEMO_MAX_ICE_SERVERS) {
            ok = add_ice_server(value, ice_servers++);
        } else if (strcmp(option, "--origin") == 0 && desc.allowed_origin_count < DEMO_MAX_ORIGINS) {
            origins[desc.allowed_origin_count++] = value;
            desc.allowed_origins = origins;
        } else {
            ok = 0;
        }
        if (!ok) {
            fprintf(stderr, "demo_server: bad option %s%s%s\n", option, value ? " " : "", value ? value : "");
            usage();
            return 2;
        }
    }
    if (web_root_is_default) web_find_root(argv[0]);
    result = vrs_create(&desc, &server);
    if (result != VRS_OK) {
        fprintf(stderr, "demo_server: %s\n", vrs_result_string(result));
        return 1;
    }
    /* Too few descriptors only warns: past the limit the server keeps the clients it has and
       new ones wait in the listen backlog, and bench/run.sh relies on starting with
       --max-connections 12000 under a lower hard limit (its scenarios shrink to fit). */
    connections = desc.max_connections ? desc.max_connections : 1024; /* the header's default */
    allowed = fit_descriptor_limit(connections, &descriptor_limit);
    if (allowed < connections)
        fprintf(stderr,
                "demo_server: warning: --max-connections %d needs %d descriptors but the limit is %lu, "
                "room for %d connections; raise the limit (ulimit -Hn) or lower --max-connections\n",
                connections, connections + VRS_REJECT_SLOTS + DEMO_SPARE_DESCRIPTORS, descriptor_limit,
                allowed);
#ifdef _WIN32
    /* A Windows console program gets Ctrl-C and Ctrl-Break, never SIGTERM: Ctrl-C drains, as
       SIGTERM does elsewhere, and Ctrl-Break stops at once. */
    signal(SIGINT, request_drain);
    signal(SIGBREAK, request_stop);
#else
    signal(SIGINT, request_stop);
    signal(SIGTERM, request_drain);
    signal(SIGPIPE, SIG_IGN);
#endif
    printf("demo_server: open http://%s:%d/ (socket ws://%s:%d/socket/websocket)\n",
           desc.host ? desc.host : "127.0.0.1", vrs_port(server), desc.host ? desc.host : "127.0.0.1",
           vrs_port(server));
    fflush(stdout);
    run(server, drain_seconds * 1000);
    vrs_destroy(server);
    return 0;
}
