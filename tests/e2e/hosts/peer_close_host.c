/* A host for the end-to-end tests of vrs_peer_close and vrs_rooms: the relay room logic on
   --host/--port, and two plain HTTP requests a test makes:
     GET /close?peer=ID[&reason=R]  ends that peer's channel with vrs_peer_close: 200, or 404
                                    with the result's name;
     GET /rooms                     {"rooms":[{"id":ROOM,"peers":N},...]} from vrs_rooms.
   SIGTERM or SIGINT: vrs_destroy, exit 0. */
#define VRS_IMPLEMENTATION
#include "../../../videoroom_signal.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static void answer_text(vrs_server *server, vrs_conn conn, int status, const char *text) {
    vrs_http_respond(server, conn, status, "text/plain", NULL, text, strlen(text));
}

static void close_peer(vrs_server *server, vrs_conn conn, const vrs_request *request) {
    char peer_id[64], reason[VRS_PEER_CLOSE_REASON_MAX + 1];
    int has_reason = vrs_request_query(request, "reason", reason, sizeof reason) >= 0;
    vrs_result result = VRS_ERROR_INVALID_ARGUMENT;
    if (vrs_request_query(request, "peer", peer_id, sizeof peer_id) >= 0)
        result = vrs_peer_close(server, vrs_find_peer(server, peer_id), has_reason ? reason : NULL);
    answer_text(server, conn, result == VRS_OK ? 200 : 404, vrs_result_string(result));
}

static void list_rooms(vrs_server *server, vrs_conn conn) {
    vrs_room rooms[64];
    int count = vrs_rooms(server, rooms, 64), i;
    char body[8192];
    size_t length;
    vrs_json_writer w;
    vrs_json_writer_init(&w, body, sizeof body);
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "rooms");
    vrs_json_begin_array(&w);
    for (i = 0; i < count; i++) {
        vrs_json_begin_object(&w);
        vrs_json_key(&w, "id");
        vrs_json_cstring(&w, vrs_room_name(server, rooms[i]));
        vrs_json_key(&w, "peers");
        vrs_json_int(&w, vrs_room_peer_count(server, rooms[i]));
        vrs_json_end_object(&w);
    }
    vrs_json_end_array(&w);
    vrs_json_end_object(&w);
    if (vrs_json_finish(&w, &length) != VRS_OK) answer_text(server, conn, 500, "too many rooms");
    else vrs_http_respond(server, conn, 200, "application/json", NULL, body, length);
}

static void on_http(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    (void)user_data;
    if (vrs_span_equals(request->path, "/close")) close_peer(server, conn, request);
    else if (vrs_span_equals(request->path, "/rooms")) list_rooms(server, conn);
    else answer_text(server, conn, 404, "not found");
}

int main(int argc, char **argv) {
    vrs_desc desc;
    vrs_server *server = NULL;
    int i;
    memset(&desc, 0, sizeof desc);
    desc.on_http = on_http;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--host") == 0) desc.host = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0) desc.port = atoi(argv[i + 1]);
    }
    signal(SIGINT, request_stop);
    signal(SIGTERM, request_stop);
#ifdef SIGPIPE
    signal(SIGPIPE, SIG_IGN);
#endif
    if (vrs_create(&desc, &server) != VRS_OK) return 1;
    while (!stop_requested) vrs_step(server, 100);
    vrs_destroy(server);
    return 0;
}
