/* echo_server: echoes every text and binary message, on any path. It is what WebSocket
   conformance suites (Autobahn's fuzzingclient) are pointed at, so its limits are generous:
   messages up to 16 MiB, as the suite's largest cases send.

   build/echo_server --port N [--host H] */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static void echo(vrs_server *server, vrs_conn conn, vrs_message_type type, const void *data,
                 size_t length, void *user_data) {
    (void)user_data;
    vrs_send(server, conn, type, data, length);
}

static void usage(void) {
    fprintf(stderr, "usage: echo_server [--host H] [--port N]\n"
                    "  --host H   address to listen on (default 127.0.0.1; :: for every address)\n"
                    "  --port N   port (default 9001)\n");
}

int main(int argc, char **argv) {
    vrs_desc desc;
    vrs_server *server = NULL;
    vrs_result result;
    int i;
    memset(&desc, 0, sizeof desc);
    desc.port = 9001;
    desc.max_connections = 256;
    desc.max_message_size = 16 * 1024 * 1024 + 1024;
    desc.send_queue_size = 20 * 1024 * 1024;
    desc.buffer_pool_size = 96 * 1024 * 1024;
    desc.on_message = echo;
    desc.disable_phoenix = 1; /* every path is a plain WebSocket */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            desc.port = atoi(argv[++i]);
            if (desc.port == 0) desc.port = VRS_PORT_ANY;
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            desc.host = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    result = vrs_create(&desc, &server);
    if (result != VRS_OK) {
        fprintf(stderr, "echo_server: %s\n", vrs_result_string(result));
        return 1;
    }
    signal(SIGINT, request_stop);
    signal(SIGTERM, request_stop);
    printf("echo_server listening on %s port %d\n", desc.host ? desc.host : "127.0.0.1", vrs_port(server));
    fflush(stdout);
    while (!stop_requested) vrs_step(server, 1000);
    vrs_destroy(server);
    return 0;
}
