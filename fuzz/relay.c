/* Fuzz target: the relay room logic (vrs__relay_on_media_event and friends) driven through the
   real channel path: clients on socket pairs, adopted by a real server, upgraded with a real
   HTTP request to /socket/websocket, joined with real Phoenix messages in masked frames, and
   the server stepped with vrs_step.

   Input: byte 0 is the configuration:
     bits 0-1  clients in room "a": 2 + (value % 3); one more client is in room "b"
     bit 2     every client joins the relay first ({"type":"join","data":{"metadata":..}})
     bit 3     client 0 also joins room "b" (one socket, two rooms)
     bit 4     client 1 speaks V1 (objects) instead of V2 (arrays)
     bit 5     the room-b client speaks V1
   the rest is records separated by 0xFF bytes (which valid UTF-8 never holds). A record's
   first byte says what happens, the rest is its data:
     '0'-'9'   client (digit % clients) sends mediaEvent {"data": D} on its room, where D is the
               record's data when it is JSON, else the data as a JSON string when it is UTF-8,
               else the raw bytes (an undecodable message: the socket closes with 1007)
     'b'       the same from client 0 on room "b"
     'l' 'j' 'h' 'x' 'r' 's' 'u' 'v' + digit (or any byte): phx_leave, phx_join again (a duplicate join or a
               rejoin), heartbeat, a close frame, a dropped socket, a stale join_ref, a topic never
               joined, a binary push (kind 0) - each from client (digit % clients)
     'w'       time passes (3 s: idle timers run)
     'p' + digit: that client stops (or resumes) reading its socket; the server end of every
               socket pair has a small send buffer, so its queue builds up past the 16 KiB
               send queue: the peers sending to it are paused and resumed (flow control), the
               pool (24 blocks) comes under pressure, and a client that takes nothing for the
               2 s slow-consumer timeout is closed
     anything else: as a digit, client (byte % clients)
   Peer ids are deterministic (fuzz_common.h): the k-th join gets a0000000-0000-4000-8000-0000000000kk
   in hex, so inputs can address peers ("to") by id.

   Checked after every step: the server's tables (fz_check_tables); every byte the server wrote
   to every client is a 101 response and then valid WebSocket frames, nothing after a close
   frame; every text frame is valid JSON (the reference reader) and a message of the client's
   serializer; its topic is one the client used; a mediaEvent's data is a JSON string holding a
   JSON object with a known type, and every peer id it names belongs to the room of its topic
   (never another room's), and is not the receiver's own (peerAccepted's id is its own). At
   the end every client closes and the server must come back empty. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

#include <sys/ioctl.h>

#define MAX_CLIENTS 5
#define MAX_IDS 64
#define ROOMS 2

static const char *const room_names[ROOMS] = {"a", "b"};

typedef struct client {
    int fd;           /* our end */
    int server_fd;    /* the server's end (closed by the server) */
    uint32_t slot;
    int vsn;
    int head_done, closed_seen, gone, closing, paused;
    fz_buffer in;
    int ref;
    int room;                        /* its main room */
    int joined[ROOMS];               /* rooms it sent phx_join for */
    int used[ROOMS + 1];             /* topics it sent anything to: room a, room b, room zz */
    char join_ref[ROOMS][16];
    char own[ROOMS][MAX_IDS][37];    /* every peer id its channels had, per room */
    int own_count[ROOMS];
} client;

typedef struct world {
    vrs_server *server;
    client clients[MAX_CLIENTS];
    int count;
    char ids[ROOMS][MAX_IDS][37];    /* every peer id ever in each room */
    int id_count[ROOMS];
} world;

static const uint8_t mask_bytes[4] = {0x37, 0xFA, 0x21, 0x3D};
static int queues_dropped; /* the server dropped a queue (slow consumer, empty pool) */

static void logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    (void)level;
    (void)message;
    (void)user_data;
    if (item == VRS_LOG_SLOW_CONSUMER || item == VRS_LOG_POOL_EXHAUSTED) queues_dropped = 1;
}

static int known(char list[][37], int count, const char *id, size_t n) {
    int i;
    if (n != 36) return 0;
    for (i = 0; i < count; i++)
        if (memcmp(list[i], id, 36) == 0) return 1;
    return 0;
}

static void remember(char list[][37], int *count, const char *id) {
    if (known(list, *count, id, strlen(id)) || *count >= MAX_IDS) return;
    memcpy(list[*count], id, 37);
    (*count)++;
}

/* Which peer ids are in which room, and whose they are: read from the tables. */
static void scan(world *w) {
    int r, i, c;
    for (r = 0; r < ROOMS; r++) {
        vrs_room room = vrs_find_room(w->server, room_names[r]);
        vrs_peer peers[16];
        int n = vrs_room_peers(w->server, room, peers, 16);
        for (i = 0; i < n; i++) {
            const char *id = vrs_peer_id(w->server, peers[i]);
            vrs__conn *conn = vrs__lookup(w->server, vrs_peer_conn(w->server, peers[i]));
            FZ_CHECK(strlen(id) == 36 && conn != NULL);
            remember(w->ids[r], &w->id_count[r], id);
            for (c = 0; c < w->count; c++)
                if (w->clients[c].slot == (uint32_t)(conn - w->server->conns) && !w->clients[c].gone)
                    remember(w->clients[c].own[r], &w->clients[c].own_count[r], id);
        }
    }
}

/* ---- what the server sends ---- */

static int string_is(vrs__json_slice token, const char *text) {
    return vrs__json_kind_of(token) == VRS__JSON_STRING && vrs__json_string_equals(token, text);
}

/* A peer id named in an event for room r, received by client c. own: 1 when it must be the
   receiver's own id, 0 when it must not be. */
static void check_id(world *w, client *c, int r, vrs__json_slice token, int own) {
    char id[64];
    long n;
    FZ_CHECK(vrs__json_kind_of(token) == VRS__JSON_STRING);
    n = vrs__json_string_decode(token, id, sizeof id);
    FZ_CHECK_MSG(n == 36, "a peer id of %ld bytes", n);
    FZ_CHECK_MSG(known(w->ids[r], w->id_count[r], id, 36), "room %s: event names peer %.36s of another room",
                 room_names[r], id);
    if (own) FZ_CHECK_MSG(known(c->own[r], c->own_count[r], id, 36), "peerAccepted names another peer");
    else FZ_CHECK_MSG(!known(c->own[r], c->own_count[r], id, 36), "a client hears about its own peer");
}

static void check_media_event(world *w, client *c, int r, vrs__json_slice payload) {
    vrs__json_slice d, type, data, member;
    char *e;
    long n;
    FZ_CHECK(vrs__json_kind_of(payload) == VRS__JSON_OBJECT && vrs__json_object_get(payload, "data", &d));
    FZ_CHECK_MSG(vrs__json_kind_of(d) == VRS__JSON_STRING, "the relay sent data that is not a JSON string");
    e = (char *)malloc(d.length + 1);
    FZ_CHECK(e != NULL);
    n = vrs__json_string_decode(d, e, d.length + 1);
    FZ_CHECK(n >= 0);
    FZ_CHECK_MSG(fz_json_valid(e, (size_t)n, 1024), "the relay's event is not JSON: %.*s", (int)n, e);
    {
        vrs__json_slice event = vrs__slice(e, (size_t)n);
        FZ_CHECK(vrs__json_kind_of(event) == VRS__JSON_OBJECT);
        FZ_CHECK(vrs__json_object_get(event, "type", &type));
        if (string_is(type, "error")) {
            FZ_CHECK(vrs__json_object_get(event, "data", &data) && vrs__json_object_get(data, "message", &member));
            FZ_CHECK(vrs__json_kind_of(member) == VRS__JSON_STRING);
        } else if (string_is(type, "peerAccepted")) {
            vrs__json_slice list, item, id;
            vrs__json_cursor cursor;
            FZ_CHECK(vrs__json_object_get(event, "data", &data));
            FZ_CHECK(vrs__json_object_get(data, "id", &id));
            check_id(w, c, r, id, 1);
            FZ_CHECK(vrs__json_object_get(data, "peersInRoom", &list) && vrs__json_kind_of(list) == VRS__JSON_ARRAY);
            vrs__json_enter(list, &cursor);
            while (vrs__json_next_element(&cursor, &item)) {
                FZ_CHECK(vrs__json_object_get(item, "id", &id));
                check_id(w, c, r, id, 0);
                FZ_CHECK(vrs__json_object_get(item, "metadata", &member));
            }
        } else if (string_is(type, "peerJoined")) {
            vrs__json_slice peer, id;
            FZ_CHECK(vrs__json_object_get(event, "data", &data) && vrs__json_object_get(data, "peer", &peer));
            FZ_CHECK(vrs__json_object_get(peer, "id", &id));
            check_id(w, c, r, id, 0);
            FZ_CHECK(vrs__json_object_get(peer, "metadata", &member));
        } else if (string_is(type, "peerLeft") || string_is(type, "peerUpdated")) {
            vrs__json_slice id;
            FZ_CHECK(vrs__json_object_get(event, "data", &data) && vrs__json_object_get(data, "peerId", &id));
            check_id(w, c, r, id, 0);
            if (string_is(type, "peerUpdated")) FZ_CHECK(vrs__json_object_get(data, "metadata", &member));
        } else if (string_is(type, "custom")) {
            vrs__json_slice from;
            FZ_CHECK(vrs__json_object_get(event, "from", &from));
            check_id(w, c, r, from, 0);
            FZ_CHECK(vrs__json_object_get(event, "data", &member));
        } else {
            FZ_CHECK_MSG(0, "unknown relay event: %.*s", (int)n, e);
        }
    }
    free(e);
}

static void check_text(world *w, client *c, const uint8_t *p, size_t n) {
    vrs__message *m = (vrs__message *)calloc(1, sizeof *m);
    int r = -1, ok;
    FZ_CHECK(m != NULL);
    FZ_CHECK_MSG(fz_json_valid(p, n, 1024), "the server sent text that is not JSON: %.*s", (int)(n < 200 ? n : 200), p);
    ok = c->vsn == 2 ? vrs__decode_v2((const char *)p, n, m) : vrs__decode_v1((const char *)p, n, m);
    FZ_CHECK_MSG(ok, "the server sent a message its client cannot decode: %.*s", (int)(n < 200 ? n : 200), p);
    FZ_CHECK(m->topic_length >= 0);
    if (m->topic_length == 6 && memcmp(m->topic, "room:a", 6) == 0) r = 0;
    else if (m->topic_length == 6 && memcmp(m->topic, "room:b", 6) == 0) r = 1;
    if (r >= 0) FZ_CHECK_MSG(c->used[r], "client hears about room %s, which it never used", room_names[r]);
    else if (m->topic_length == 7 && memcmp(m->topic, "room:zz", 7) == 0) FZ_CHECK(c->used[ROOMS]);
    else FZ_CHECK_MSG(m->topic_length == 7 && memcmp(m->topic, "phoenix", 7) == 0, "topic %.*s", (int)m->topic_length, m->topic);
    FZ_CHECK(m->event_length > 0);
    if (strcmp(m->event, "phx_reply") == 0) {
        vrs__json_slice status, response;
        FZ_CHECK(vrs__json_object_get(m->payload, "status", &status) && vrs__json_object_get(m->payload, "response", &response));
        FZ_CHECK(string_is(status, "ok") || string_is(status, "error"));
        FZ_CHECK(vrs__json_kind_of(response) == VRS__JSON_OBJECT);
    } else if (strcmp(m->event, "phx_close") == 0 || strcmp(m->event, "phx_error") == 0) {
        FZ_CHECK(r >= 0 && vrs__json_kind_of(m->payload) == VRS__JSON_OBJECT);
    } else {
        FZ_CHECK_MSG(strcmp(m->event, "mediaEvent") == 0, "event %s", m->event);
        FZ_CHECK_MSG(r >= 0 && c->joined[r], "a mediaEvent on a topic the client never joined");
        FZ_CHECK(vrs__json_is_null(m->ref));
        check_media_event(w, c, r, m->payload);
    }
    free(m);
}

/* Reads what the server wrote to a client and checks it. */
static void receive(world *w, client *c) {
    size_t at = 0;
    int ended;
    if (c->fd < 0 || c->paused) return;
    ended = fz_drain(c->fd, &c->in);
    if (!c->head_done) {
        int status;
        long content_length;
        size_t head = fz_parse_response_head(c->in.bytes, c->in.length, &status, &content_length);
        if (!head) {
            FZ_CHECK_MSG(!ended, "the connection ended before the response");
            return;
        }
        FZ_CHECK_MSG(status == 101, "upgrade answered %d", status);
        c->head_done = 1;
        at = head;
    }
    while (at < c->in.length) {
        fz_server_frame f;
        size_t n = fz_parse_server_frame(c->in.bytes + at, c->in.length - at, &f);
        if (!n) break;
        FZ_CHECK_MSG(!c->closed_seen, "a frame after the close frame");
        FZ_CHECK(f.opcode == 1 || f.opcode == 8);
        if (f.opcode == 8) c->closed_seen = 1;
        else check_text(w, c, f.payload, f.length);
        at += n;
    }
    fz_consume(&c->in, at);
    /* a dropped queue may end inside a frame; nothing else may */
    if (ended && !queues_dropped) FZ_CHECK_MSG(c->in.length == 0, "the stream ended inside a frame");
}

/* ---- what the clients send ---- */

static void send_frame(client *c, uint8_t first_byte, const void *payload, size_t n) {
    fz_buffer frame = {0};
    if (c->fd < 0 || c->closing) return;
    fz_client_frame(&frame, first_byte, payload, n, mask_bytes);
    fz_send_all(c->fd, frame.bytes, frame.length);
    fz_buffer_free(&frame);
}

/* One Phoenix message in the client's serializer; every part but `event` is JSON text. */
static void send_message(client *c, const char *join_ref, const char *topic, const char *event, const char *payload,
                         size_t payload_length) {
    fz_buffer m = {0};
    char ref[24];
    snprintf(ref, sizeof ref, "\"%d\"", ++c->ref);
    if (c->vsn == 2) {
        fz_put_str(&m, "[");
        fz_put_str(&m, join_ref);
        fz_put_str(&m, ",");
        fz_put_str(&m, ref);
        fz_put_str(&m, ",\"");
        fz_put_str(&m, topic);
        fz_put_str(&m, "\",\"");
        fz_put_str(&m, event);
        fz_put_str(&m, "\",");
        fz_put(&m, payload, payload_length);
        fz_put_str(&m, "]");
    } else {
        fz_put_str(&m, "{\"topic\":\"");
        fz_put_str(&m, topic);
        fz_put_str(&m, "\",\"event\":\"");
        fz_put_str(&m, event);
        fz_put_str(&m, "\",\"payload\":");
        fz_put(&m, payload, payload_length);
        fz_put_str(&m, ",\"ref\":");
        fz_put_str(&m, ref);
        fz_put_str(&m, ",\"join_ref\":");
        fz_put_str(&m, join_ref);
        fz_put_str(&m, "}");
    }
    send_frame(c, 0x81, m.bytes, m.length);
    fz_buffer_free(&m);
}

static void topic_of(int room, char out[16]) { snprintf(out, 16, "room:%s", room_names[room]); }

static void join(client *c, int room) {
    char topic[16];
    topic_of(room, topic);
    snprintf(c->join_ref[room], sizeof c->join_ref[room], "\"%d\"", c->ref + 1);
    c->joined[room] = c->used[room] = 1;
    send_message(c, c->join_ref[room], topic, "phx_join", "{}", 2);
}

static void media_event(client *c, int room, const uint8_t *d, size_t n) {
    fz_buffer payload = {0};
    char topic[16];
    topic_of(room, topic);
    c->used[room] = 1;
    fz_put_str(&payload, "{\"data\":");
    if (fz_json_valid(d, n, VRS__MAX_JSON_DEPTH - 2)) {
        fz_put(&payload, d, n);
    } else if (fz_utf8_valid(d, n)) {
        char *encoded = (char *)malloc(6 * n + 2);
        vrs__json_writer jw;
        FZ_CHECK(encoded != NULL);
        vrs__jw_init(&jw, encoded, 6 * n + 2);
        vrs__jw_string(&jw, (const char *)d, n);
        fz_put(&payload, jw.buffer, jw.length);
        free(encoded);
    } else {
        fz_put(&payload, d, n);
    }
    fz_put_str(&payload, "}");
    send_message(c, c->joined[room] ? c->join_ref[room] : "null", topic, "mediaEvent", (const char *)payload.bytes,
                 payload.length);
    fz_buffer_free(&payload);
}

/* Steps the server until it has read what the clients sent, then checks everything. */
static void settle(world *w) {
    int i, round;
    for (round = 0; round < 8; round++) {
        int pending = 0;
        FZ_CHECK(vrs_step(w->server, 0) == VRS_OK);
        for (i = 0; i < w->count; i++) {
            client *c = &w->clients[i];
            vrs__conn *conn = &w->server->conns[c->slot];
            int unread = 0;
            if (conn->state == VRS__FREE || conn->fd != c->server_fd) continue;
            if (ioctl(conn->fd, FIONREAD, &unread) == 0 && unread > 0) pending = 1;
        }
        if (!pending) break;
    }
    fz_check_tables(w->server);
    scan(w);
    for (i = 0; i < w->count; i++) receive(w, &w->clients[i]);
}

static void connect_client(world *w, client *c, int vsn) {
    int fds[2];
    vrs__conn *conn;
    char request[512];
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    fz_nonblocking(fds[1]);
    {
        int small = 4096;
        setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    }
    c->fd = fds[1];
    c->server_fd = fds[0];
    c->vsn = vsn;
    conn = fz_adopt(w->server, fds[0]);
    c->slot = (uint32_t)(conn - w->server->conns);
    snprintf(request, sizeof request,
             "GET /socket/websocket?token=t&vsn=%s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: phoenix\r\n\r\n",
             vsn == 2 ? "2.0.0" : "1.0.0");
    fz_send_all(c->fd, request, strlen(request));
}

static void drop(client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->gone = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    world *w;
    vrs_desc desc;
    int i, room_a_clients;
    size_t at;
    uint8_t config;
    if (size < 1) return 0;
    config = data[0];
    w = (world *)calloc(1, sizeof *w);
    FZ_CHECK(w != NULL);
    memset(&desc, 0, sizeof desc);
    desc.port = VRS_PORT_ANY;
    desc.max_connections = 6;
    desc.max_message_size = 8192;
    desc.max_request_size = 1024;
    desc.send_queue_size = 16384;
    desc.slow_consumer_timeout_ms = 2000;
    desc.buffer_pool_size = 24 * VRS_BLOCK_SIZE;
    desc.handshake_timeout_ms = 2000;
    desc.idle_timeout_ms = 5000;
    desc.close_timeout_ms = 1000;
    desc.max_channels = 12;
    desc.max_rooms = 4;
    desc.max_peers_per_room = 4;
    desc.max_metadata_size = 256;
    desc.logger.func = logger;
    queues_dropped = 0;
    FZ_CHECK(vrs_create(&desc, &w->server) == VRS_OK);
    fz_deterministic_ids(w->server, 64);

    room_a_clients = 2 + (config & 3) % 3;
    w->count = room_a_clients + 1;
    for (i = 0; i < w->count; i++) {
        client *c = &w->clients[i];
        int vsn = 2;
        if (i == 1 && (config & 0x10)) vsn = 1;
        if (i == room_a_clients && (config & 0x20)) vsn = 1;
        c->room = i == room_a_clients ? 1 : 0;
        connect_client(w, c, vsn);
    }
    settle(w);
    for (i = 0; i < w->count; i++) {
        FZ_CHECK(w->clients[i].head_done);
        join(&w->clients[i], w->clients[i].room);
        settle(w);
    }
    if (config & 0x08) {
        join(&w->clients[0], 1);
        settle(w);
    }
    if (config & 0x04) {
        for (i = 0; i < w->count; i++) {
            char event[96];
            snprintf(event, sizeof event, "{\"type\":\"join\",\"data\":{\"metadata\":{\"name\":\"p%d\"}}}", i);
            media_event(&w->clients[i], w->clients[i].room, (const uint8_t *)event, strlen(event));
            settle(w);
        }
    }

    at = 1;
    while (at < size) {
        size_t end = at;
        const uint8_t *record = data + at, *rest;
        size_t n, rest_n;
        uint8_t op;
        client *c;
        while (end < size && data[end] != 0xFF) end++;
        n = end - at;
        at = end + 1;
        if (n == 0) continue;
        op = record[0];
        rest = record + 1;
        rest_n = n - 1;
        if (op >= '0' && op <= '9') {
            c = &w->clients[(op - '0') % w->count];
            media_event(c, c->room, rest, rest_n);
        } else if (op == 'b') {
            media_event(&w->clients[0], 1, rest, rest_n);
        } else if (op == 'w') {
            fz_warp(w->server, 3000);
        } else if (strchr("ljhxrsuvp", op) && op != 0) {
            char topic[16];
            int who = rest_n ? (rest[0] >= '0' && rest[0] <= '9' ? rest[0] - '0' : rest[0]) : 0;
            c = &w->clients[who % w->count];
            topic_of(c->room, topic);
            switch (op) {
            case 'l': c->used[c->room] = 1; send_message(c, c->join_ref[c->room], topic, "phx_leave", "{}", 2); break;
            case 'j': join(c, c->room); break;
            case 'h': send_message(c, "null", "phoenix", "heartbeat", "{}", 2); break;
            case 'x': {
                static const uint8_t bye[] = {0x03, 0xE8, 'b', 'y', 'e'};
                send_frame(c, 0x88, bye, sizeof bye);
                c->closing = 1;
                break;
            }
            case 'r': drop(c); break;
            case 'p': c->paused = !c->paused; break;
            case 's': c->used[c->room] = 1; send_message(c, "\"999999\"", topic, "mediaEvent", "{\"data\":{\"type\":\"leave\"}}", 25); break;
            case 'u':
                c->used[ROOMS] = 1;
                send_message(c, "null", "room:zz", "mediaEvent", "{\"data\":1}", 10);
                break;
            case 'v': {
                /* kind 0 push: join_ref, ref, topic, event, payload */
                fz_buffer b = {0};
                uint8_t header[5];
                const char *jr = c->join_ref[c->room];
                size_t jr_n = strlen(jr) >= 2 ? strlen(jr) - 2 : 0; /* without the quotes */
                header[0] = 0;
                header[1] = (uint8_t)jr_n;
                header[2] = 1;
                header[3] = (uint8_t)strlen(topic);
                header[4] = 10;
                fz_put(&b, header, 5);
                fz_put(&b, jr + 1, jr_n);
                fz_put_str(&b, "9");
                fz_put_str(&b, topic);
                fz_put_str(&b, "mediaEvent");
                if (rest_n > 1) fz_put(&b, rest + 1, rest_n - 1);
                send_frame(c, 0x82, b.bytes, b.length);
                fz_buffer_free(&b);
                break;
            }
            }
        } else {
            c = &w->clients[op % w->count];
            media_event(c, c->room, rest, rest_n);
        }
        settle(w);
    }

    /* everyone leaves; the server must come back empty */
    for (i = 0; i < w->count; i++) {
        client *c = &w->clients[i];
        if (c->fd >= 0) {
            struct linger linger;
            linger.l_onoff = 1;
            linger.l_linger = 0;
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
        }
        drop(c);
    }
    for (i = 0; i < 20 && w->server->active_count > 0; i++) {
        FZ_CHECK(vrs_step(w->server, 0) == VRS_OK);
        fz_check_tables(w->server);
        fz_warp(w->server, 2000);
    }
    fz_check_empty(w->server);
    vrs_destroy(w->server);
    for (i = 0; i < w->count; i++) fz_buffer_free(&w->clients[i].in);
    free(w);
    return 0;
}
