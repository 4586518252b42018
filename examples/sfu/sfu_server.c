/* sfu_server: the video-room signaling server whose rooms are rooms of a Janus SFU: every
   browser sends one stream up, and Janus forwards it to the others (sfu_logic.h; the media
   events are in README.md). It serves the demo page, which /config.json puts in SFU mode.

   build/sfu_server [--host H] [--port P] [--janus SOCKET] [--max-peers N] [--web-root DIR]
                    [--ice-server URL]

   Janus must run with the configuration in examples/sfu/janus (its pfunix socket is SOCKET,
   default build/sfu/janus.sock); `make demo-sfu` starts both. One thread: the server's
   descriptors and Janus's socket are polled together (vrs_poll_fds, vrs_process). */
/* 64-bit file offsets and inode numbers on 32-bit systems too, so that web_files.h's stat()
   works on any file system. */
#define _FILE_OFFSET_BITS 64
#define VRS_IMPLEMENTATION
#include "../../videoroom_signal.h"
#include "../web_files.h"
#include "sfu_logic.h"

#include <signal.h>
#include <stdlib.h>

static sfu_host host;
static char page_config[1024];

static void serve_http(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    (void)user_data;
    if (!vrs_span_equals(request->method, "GET") && !vrs_span_equals(request->method, "HEAD")) {
        vrs_http_respond(server, conn, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                         "405 Method Not Allowed\n", 23);
    } else if (vrs_span_equals(request->path, "/config.json")) {
        vrs_http_respond(server, conn, 200, "application/json", web_security_headers, page_config,
                         strlen(page_config));
    } else {
        web_serve_file(server, conn, request->path.ptr, request->path.length);
    }
}

static void print_line(const char *line, void *user_data) {
    (void)user_data;
    fprintf(stderr, "sfu_server: %s\n", line);
}

static void print_log(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    (void)user_data;
    if (level == VRS_LOG_LEVEL_INFO && item != VRS_LOG_LISTENING && item != VRS_LOG_PEER_JOINED && item != VRS_LOG_PEER_LEFT)
        return;
    fprintf(stderr, "sfu_server: %s: %s\n", vrs_log_item_name(item), message);
}

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: sfu_server [--host H] [--port P] [--janus SOCKET] [--max-peers N] [--web-root DIR]\n"
                    "                  [--ice-server URL] [--verbose 1]\n"
                    "  --janus SOCKET   Janus's pfunix socket (default build/sfu/janus.sock)\n"
                    "  --max-peers N    peers in one room, and publishers in its Janus room (default 16)\n"
                    "  --ice-server URL a STUN server for the page (one; no credentials)\n"
                    "  --verbose 1      log the start of every message to and from Janus\n");
}

int main(int argc, char **argv) {
    vrs_desc desc;
    vrs_server *server = NULL;
    struct pollfd *fds;
    int i, capacity, web_root_is_default = 1, verbose = 0;
    const char *socket_path = "build/sfu/janus.sock", *ice_server = NULL;
    vrs_json_writer config;
    memset(&desc, 0, sizeof desc);
    desc.max_peers_per_room = 16;
    /* Janus's offers to a subscriber grow with the room (two m-lines per publisher), and go to
       the page as a JSON string inside a JSON string. */
    desc.max_message_size = 256 * 1024;
    desc.send_queue_size = 1024 * 1024;
    for (i = 1; i < argc; i += 2) {
        const char *option = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long number = value ? strtol(value, &end, 10) : 0;
        if (!value || end == value || *end) number = 0; /* numbers only, whole: "12abc" is refused */
        if (!value) {
            usage();
            return strcmp(option, "--help") == 0 ? 0 : 2;
        } else if (strcmp(option, "--host") == 0) {
            desc.host = value;
        } else if (strcmp(option, "--port") == 0 && number > 0 && number < 65536) {
            desc.port = (int)number;
        } else if (strcmp(option, "--janus") == 0) {
            socket_path = value;
        } else if (strcmp(option, "--max-peers") == 0 && number > 0 && number <= SFU_MAX_FEEDS) {
            desc.max_peers_per_room = (int)number;
        } else if (strcmp(option, "--web-root") == 0) {
            web_root = value;
            web_root_is_default = 0;
        } else if (strcmp(option, "--verbose") == 0) {
            verbose = strcmp(value, "1") == 0;
        } else if (strcmp(option, "--ice-server") == 0) {
            ice_server = value;
        } else {
            fprintf(stderr, "sfu_server: bad option %s %s\n", option, value);
            usage();
            return 2;
        }
    }
    if (web_root_is_default) web_find_root(argv[0]);
    /* The page learns here that the rooms are an SFU's: {"mode":"sfu","iceServers":[...]}. */
    vrs_json_writer_init(&config, page_config, sizeof page_config);
    vrs_json_begin_object(&config);
    vrs_json_key(&config, "mode");
    vrs_json_cstring(&config, "sfu");
    vrs_json_key(&config, "iceServers");
    vrs_json_begin_array(&config);
    if (ice_server) {
        vrs_json_begin_object(&config);
        vrs_json_key(&config, "urls");
        vrs_json_cstring(&config, ice_server);
        vrs_json_end_object(&config);
    }
    vrs_json_end_array(&config);
    vrs_json_end_object(&config);
    if (vrs_json_finish(&config, NULL) != VRS_OK) {
        fprintf(stderr, "sfu_server: --ice-server is too long or not UTF-8\n");
        return 2;
    }

    sfu_init(&host, socket_path, desc.max_peers_per_room);
    host.log = print_line;
    host.verbose = verbose;
    desc.room_logic = sfu_room_logic(&host);
    desc.on_http = serve_http;
    desc.logger.func = print_log;
    if (vrs_create(&desc, &server) != VRS_OK) return 1;
    host.server = server;
    capacity = (desc.max_connections ? desc.max_connections : 1024) + VRS_REJECT_SLOTS + 2;
    fds = (struct pollfd *)malloc((size_t)capacity * sizeof *fds);
    if (!fds) return 1;
    signal(SIGINT, request_stop);
    signal(SIGTERM, request_stop);
    signal(SIGPIPE, SIG_IGN);
    sfu_connect(&host);
    if (host.fd < 0) fprintf(stderr, "sfu_server: Janus is not at %s yet: retrying every second\n", socket_path);
    printf("sfu_server: open http://%s:%d/ (Janus at %s)\n", desc.host ? desc.host : "127.0.0.1", vrs_port(server),
           socket_path);
    fflush(stdout);
    while (!stop_requested) {
        /* The server's descriptors, then Janus's: one poll for both. */
        int count = vrs_poll_fds(server, fds, capacity - 1), timeout = vrs_timeout_ms(server), janus_timeout;
        fds[count] = sfu_poll_fd(&host);
        janus_timeout = sfu_timeout_ms(&host);
        if (timeout < 0 || janus_timeout < timeout) timeout = janus_timeout;
        if (poll(fds, (nfds_t)count + 1, timeout) < 0 && errno != EINTR) break;
        vrs_process(server, fds, count);
        sfu_process(&host, fds[count].revents);
    }
    vrs_destroy(server); /* the peers leave: their Janus sessions are destroyed */
    sfu_flush(&host);
    free(fds);
    return 0;
}
