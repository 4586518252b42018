/* demo_server: the video-room signaling server with the default relay room logic, and the
   demo web page.

   build/demo_server [--host H] [--port P] [--max-connections N] [--max-rooms N]
                     [--max-peers N] [--max-message BYTES] [--send-queue BYTES]
                     [--idle-timeout SECONDS] [--handshake-timeout SECONDS] [--origin URL ...]
                     [--web-root DIR] [--ice-server URL[,USERNAME,CREDENTIAL] ...]

   Browsers open http://H:P/ (the page in examples/web), and the page, or any other Phoenix
   client, connects to ws://H:P/socket/websocket and joins topics "room:<id>". A log line is
   printed for every connection, join and leave. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "web_files.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define DEMO_MAX_ORIGINS 16
#define DEMO_MAX_ICE_SERVERS 8
/* Descriptors besides the connections and the 503 answers: listener, epoll, a file being
   served, stdio, and some slack. */
#define DEMO_SPARE_DESCRIPTORS 64

static char ice_config[4096] = "{\"iceServers\":[]}";

static void serve_http(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    (void)user_data;
    if (!vrs_span_equals(request->method, "GET") && !vrs_span_equals(request->method, "HEAD")) {
        vrs_http_respond(server, conn, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                         "405 Method Not Allowed\n", 23);
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

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
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
            "  --send-queue BYTES       bytes queued for one client at most; a slower one is\n"
            "                           closed with 1013 (default 262144, at least 256)\n"
            "  --idle-timeout SECONDS   close silent clients after (default 60, at most 86400)\n"
            "  --handshake-timeout SECONDS  drop unfinished requests after (default 10, at most 86400)\n"
            "  --origin URL             allow this Origin (repeatable; default: any)\n"
            "  --web-root DIR           the page's folder (default examples/web)\n"
            "  --ice-server URL[,USER,CREDENTIAL]  STUN/TURN server for the page (repeatable)\n");
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

int main(int argc, char **argv) {
    static const char *origins[DEMO_MAX_ORIGINS];
    vrs_desc desc;
    vrs_server *server = NULL;
    vrs_result result;
    int i, connections, allowed, ice_servers = 0, web_root_is_default = 1;
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
        } else if (strcmp(option, "--idle-timeout") == 0) {
            ok = parse_seconds(value, &desc.idle_timeout_ms);
        } else if (strcmp(option, "--handshake-timeout") == 0) {
            ok = parse_seconds(value, &desc.handshake_timeout_ms);
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
    signal(SIGINT, request_stop);
    signal(SIGTERM, request_stop);
    signal(SIGPIPE, SIG_IGN);
    printf("demo_server: open http://%s:%d/ (socket ws://%s:%d/socket/websocket)\n",
           desc.host ? desc.host : "127.0.0.1", vrs_port(server), desc.host ? desc.host : "127.0.0.1",
           vrs_port(server));
    fflush(stdout);
    while (!stop_requested) vrs_step(server, 1000);
    vrs_destroy(server);
    return 0;
}
