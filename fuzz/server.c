/* Fuzz target: a whole server driven through scripted clients on real loopback TCP sockets
   (127.0.0.1, an ephemeral port), with small limits so that every "full" answer is reachable:
   2 connections (a third and fourth client get 503 from the reject slots), 3 channels, 2 per
   socket, 2 rooms, 2 peers a room, room ids of 8 bytes, metadata of 64, messages of 8 KiB, a
   512-byte request head, an 8 KiB send queue (past it, senders are paused: flow control), a
   slow-consumer timeout of 1 s and a pool of 8 to 64 blocks.

   Input: byte 0 is the configuration:
     bit 0     desc.on_message set: every path but the socket's is an echo WebSocket endpoint
     bit 1     desc.on_http answers plain requests with 200 (else 404)
     bit 2     desc.allowed_origins = {"http://good.example"}
     bit 3     desc.on_connect refuses a socket whose token parameter is "no"
     bit 4     max_connections 3 instead of 2
     bits 5-6  pool blocks: 16, 32, 8, 64
   byte 1 is more configuration:
     bit 0     desc.on_upgrade: refuses /refuse with 403, picks subprotocol "phoenix" on /echo
               (offered) and "chat" elsewhere (not offered: logged and dropped)
     bit 1     the server listens on "::" (IPv4 and IPv6); odd clients connect over ::1
     bit 2     the end: vrs_destroy with the clients still connected (they must see valid
               frames, a close 1001 last), instead of closing them and stepping until empty
     bit 3     small socket buffers (the server's SO_SNDBUF, the clients' SO_RCVBUF), so that
               writes stop short and queues build up (want_write, paused and resumed senders,
               held bytes, the pool under pressure, slow consumers, eviction)
     bit 4     a host room logic instead of the relay: it answers media events through the
               host API (vrs_room_broadcast[_except], vrs_peer_send, vrs_peer_push[_binary],
               vrs_room_close, vrs_close) and checks the handles it is given
   then operations, each one byte: client k = byte & 3, operation = (byte >> 2) % 14, some
   followed by argument bytes:
     0 connect            1 raw bytes (length byte, bytes)
     2 upgrade request (selector byte: socket V2/V1/no vsn, echo path, bad version, bad vsn,
       plain GET, HEAD; with an Origin, token=no, only the first 20 bytes, version 8 or the
       path /refuse)
     3 a masked frame (first byte as on the wire, length byte, payload)
     4 a Phoenix message (selector byte, argument byte) in the client's serializer: joins of
       room:a, room:b, room:c, an invalid room id, an unmatched topic, a long join_ref, leave,
       heartbeat, relay events, an unknown event, a binary push, a bare number as data
     5 close the socket      6 reset it (SO_LINGER 0)      7 shutdown(SHUT_WR)
     8 one more step         9 time passes (selector byte: 0.3, 1.1, 3.1 or 10 s)
     10 a burst of heartbeats (count byte)   11 stop / resume reading the client's socket
     12 a close frame (2 code bytes)         13 a ping
   After every operation the server is stepped once (vrs_step, timeout 0).

   Checked after every step: every table invariant (fz_check_tables: connections within
   max + reject slots, pool blocks used within the total and equal to the blocks the chains
   hold, channel and room counts equal to what a scan finds, active positions right, room
   lists and hash chains consistent, every paused connection in the one list it waits in); what each client receives is an HTTP response head (a
   101 followed by valid server frames, JSON on the Phoenix socket; or an error or plain
   response with no more bytes than its Content-Length, and none at all for HEAD); on_close
   comes once for every on_open, never for anything else. At the end every client resets its
   socket, the server is stepped (time passing) until it holds nothing, and every table must be
   empty: no connection, no pool block, no channel, no room. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define CLIENTS 4
#define MAX_OPS 256

typedef struct client {
    int fd;
    int vsn;            /* what its upgrade asked for: 2, 1, or 0 (not the Phoenix socket) */
    int reading;
    int head_done, status, websocket, closed_seen;
    int head_method;    /* its first request was HEAD */
    long content_length, body_seen;
    int ref;
    size_t sent;        /* bytes sent so far */
    fz_buffer in;
} client;

static client clients[CLIENTS];
static const uint8_t mask_bytes[4] = {0x11, 0x22, 0x33, 0x44};
static const char *const good_origins[] = {"http://good.example"};

/* on_open and on_close: every opened connection is closed exactly once. */
#define MAX_OPENED 512
static vrs_conn opened[MAX_OPENED];
static int opened_count, closed_count;
static uint8_t closed_flags[MAX_OPENED];

static void on_open(vrs_server *server, vrs_conn conn, void *user_data) {
    (void)user_data;
    FZ_CHECK(vrs_conn_is_open(server, conn));
    if (opened_count < MAX_OPENED) {
        opened[opened_count] = conn;
        closed_flags[opened_count] = 0;
    }
    opened_count++;
}

static void on_close(vrs_server *server, vrs_conn conn, int code, void *user_data) {
    int i, found = 0;
    (void)server;
    (void)user_data;
    /* a code a close frame may carry, 1005 (the peer's close had no code, RFC 6455 7.1.5) or
       1006 (no close frame at all) */
    FZ_CHECK_MSG(vrs__close_code_is_valid(code) || code == 1005 || code == 1006, "on_close %d", code);
    for (i = 0; i < opened_count && i < MAX_OPENED; i++)
        if (opened[i].id == conn.id && !closed_flags[i]) {
            closed_flags[i] = 1;
            found = 1;
            break;
        }
    FZ_CHECK_MSG(found || opened_count > MAX_OPENED, "on_close for a connection never opened, or closed twice");
    closed_count++;
}

static void on_message(vrs_server *server, vrs_conn conn, vrs_message_type type, const void *data, size_t length,
                       void *user_data) {
    vrs_result r;
    (void)user_data;
    if (type == VRS_MESSAGE_TEXT) FZ_CHECK(fz_utf8_valid((const uint8_t *)data, length));
    r = vrs_send(server, conn, type, data, length);
    FZ_CHECK(r == VRS_OK || r == VRS_ERROR_TOO_LARGE || r == VRS_ERROR_SLOW_CONSUMER || r == VRS_ERROR_POOL_EXHAUSTED);
}

static void on_http(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    (void)request;
    (void)user_data;
    (void)vrs_http_respond(server, conn, 200, "text/plain", "X-Fuzz: 1\r\n", "ok\n", 3);
}

static int on_connect(vrs_server *server, vrs_conn conn, const vrs_connect_info *info, void *user_data) {
    char token[8];
    (void)server;
    (void)conn;
    (void)user_data;
    return vrs_request_query(info->request, "token", token, sizeof token) == 2 && memcmp(token, "no", 2) == 0;
}

static void on_upgrade(vrs_server *server, vrs_conn conn, const vrs_request *request, vrs_upgrade_answer *answer,
                       void *user_data) {
    (void)server;
    (void)conn;
    (void)user_data;
    if (vrs_span_equals(request->path, "/refuse")) answer->refuse_status = 403;
    else answer->subprotocol = vrs_span_equals(request->path, "/echo") ? "phoenix" : "chat";
}

/* ---- a host room logic, through the public API ---- */

static int room_marker, peer_marker, rooms_alive;

static void logic_room_created(vrs_server *server, vrs_room room, void *user_data) {
    (void)user_data;
    FZ_CHECK(vrs_room_user_data(server, room) == NULL);
    FZ_CHECK(vrs_room_set_user_data(server, room, &room_marker) == VRS_OK);
    FZ_CHECK(vrs_room_peer_count(server, room) == 0);
    rooms_alive++;
}

static void logic_room_destroyed(vrs_server *server, vrs_room room, void *user_data) {
    (void)user_data;
    FZ_CHECK(vrs_room_user_data(server, room) == &room_marker);
    rooms_alive--;
    FZ_CHECK(rooms_alive >= 0);
}

static void logic_peer_joined(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data) {
    vrs_peer peers[8];
    int n, i, found = 0;
    (void)user_data;
    FZ_CHECK(vrs_peer_room(server, peer).id == room.id);
    FZ_CHECK(vrs_find_peer(server, vrs_peer_id(server, peer)).id == peer.id);
    FZ_CHECK(vrs_find_room(server, vrs_room_name(server, room)).id == room.id);
    FZ_CHECK(vrs_peer_conn(server, peer).id != 0);
    FZ_CHECK(vrs_peer_user_data(server, peer) == NULL);
    FZ_CHECK(vrs_peer_set_user_data(server, peer, &peer_marker) == VRS_OK);
    n = vrs_room_peers(server, room, peers, 8);
    FZ_CHECK(n == vrs_room_peer_count(server, room));
    for (i = 0; i < n; i++) found += peers[i].id == peer.id;
    FZ_CHECK(found == 1);
    (void)vrs_peer_send(server, peer, "\"welcome\"", 9);
    (void)vrs_room_broadcast_except(server, room, peer, "{\"joined\":true}", 15);
}

static void logic_peer_left(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data) {
    (void)user_data;
    FZ_CHECK(vrs_peer_user_data(server, peer) == &peer_marker);
    FZ_CHECK(vrs_room_user_data(server, room) == &room_marker);
    (void)vrs_room_broadcast(server, room, "[\"left\"]", 8);
}

/* D is a number n: n % 9 picks what the host does; anything else is broadcast. */
static void logic_media_event(vrs_server *server, vrs_room room, vrs_peer peer, const char *data, size_t length,
                              void *user_data) {
    long n;
    vrs_result r = VRS_OK;
    (void)user_data;
    FZ_CHECK(fz_json_valid(data, length, 1024));
    FZ_CHECK(vrs_peer_room(server, peer).id == room.id);
    if (length == 0 || data[0] < '0' || data[0] > '9') {
        r = vrs_room_broadcast(server, room, data, length);
    } else {
        n = strtol(data, NULL, 10);
        switch (n % 9) {
        case 0: r = vrs_room_broadcast(server, room, data, length); break;
        case 1: r = vrs_room_broadcast_except(server, room, peer, data, length); break;
        case 2: r = vrs_peer_send(server, peer, data, length); break;
        case 3: r = vrs_peer_push(server, peer, "host_event", "{\"x\":[1,2]}", 11); break;
        case 4: r = vrs_peer_push_binary(server, peer, "bin", data, length); break;
        case 5: FZ_CHECK(vrs_room_close(server, room) == VRS_OK); break;
        case 6: (void)vrs_close(server, vrs_peer_conn(server, peer), 4001, "host closes"); break;
        case 7:
            FZ_CHECK(vrs_peer_send(server, peer, "not json", 8) == VRS_ERROR_INVALID_ARGUMENT);
            FZ_CHECK(vrs_peer_push(server, peer, "\xff", "{}", 2) == VRS_ERROR_INVALID_ARGUMENT);
            break;
        default: {
            /* a large push: fills queues and the pool */
            static char big[6000];
            memset(big, 'x', sizeof big);
            big[0] = big[sizeof big - 1] = '"';
            r = vrs_room_broadcast(server, room, big, sizeof big);
            break;
        }
        }
    }
    FZ_CHECK(r == VRS_OK || r == VRS_ERROR_TOO_LARGE || r == VRS_ERROR_SLOW_CONSUMER ||
             r == VRS_ERROR_POOL_EXHAUSTED || r == VRS_ERROR_NOT_OPEN || r == VRS_ERROR_INVALID_ARGUMENT ||
             r == VRS_ERROR_INVALID_CONNECTION);
}

/* ---- clients ---- */

static int small_buffers, ipv6;

static void client_send(client *c, const void *bytes, size_t n) {
    if (c->fd < 0) return;
    fz_send_all(c->fd, bytes, n);
    c->sent += n;
}

static void client_frame(client *c, uint8_t first_byte, const void *payload, size_t n) {
    fz_buffer frame = {0};
    fz_client_frame(&frame, first_byte, payload, n, mask_bytes);
    client_send(c, frame.bytes, frame.length);
    fz_buffer_free(&frame);
}

static void client_close(client *c, int reset) {
    if (c->fd < 0) return;
    if (reset) {
        struct linger linger;
        linger.l_onoff = 1;
        linger.l_linger = 0;
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
    }
    close(c->fd);
    c->fd = -1;
    fz_buffer_free(&c->in);
}

static void client_connect(client *c, int port, int over_ipv6) {
    struct sockaddr_storage address;
    socklen_t address_length;
    int fd, one = 1;
    if (c->fd >= 0) return;
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->reading = 1;
    memset(&address, 0, sizeof address);
    if (over_ipv6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_addr = in6addr_loopback;
        address_length = sizeof *v6;
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address_length = sizeof *v4;
    }
    fd = socket(address.ss_family, SOCK_STREAM, 0);
    FZ_CHECK(fd >= 0);
    if (small_buffers) {
        int size = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    if (connect(fd, (struct sockaddr *)&address, address_length) != 0) {
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fz_nonblocking(fd);
    c->fd = fd;
}

/* Checks what the server sent a client so far. */
static void client_receive(client *c) {
    size_t at = 0;
    if (c->fd < 0 || !c->reading) return;
    fz_drain(c->fd, &c->in);
    if (!c->head_done) {
        size_t head = fz_parse_response_head(c->in.bytes, c->in.length, &c->status, &c->content_length);
        if (!head) {
            FZ_CHECK_MSG(c->in.length < 4096, "a response head of more than 4 KiB");
            return;
        }
        c->head_done = 1;
        c->websocket = c->status == 101;
        if (!c->websocket) FZ_CHECK_MSG(c->content_length >= 0, "a %d response without Content-Length", c->status);
        at = head;
    }
    if (!c->websocket) {
        c->body_seen += (long)(c->in.length - at);
        /* a response to a HEAD request the server read (not a 503 sent before reading, a 408,
           a 431 or 400 for a head it could not parse) carries no content (RFC 9110 9.3.2) */
        if (c->head_method && (c->status == 200 || c->status == 403 || c->status == 404 || c->status == 426))
            FZ_CHECK_MSG(c->body_seen == 0, "a %d response to HEAD with content", c->status);
        FZ_CHECK_MSG(c->body_seen <= c->content_length, "%ld body bytes after a %d response of %ld", c->body_seen,
                     c->status, c->content_length);
        c->in.length = 0;
        return;
    }
    while (at < c->in.length) {
        fz_server_frame f;
        size_t n = fz_parse_server_frame(c->in.bytes + at, c->in.length - at, &f);
        if (!n) break;
        FZ_CHECK_MSG(!c->closed_seen, "a frame after the close frame");
        if (f.opcode == 8) c->closed_seen = 1;
        if (f.opcode == 1 && c->vsn)
            FZ_CHECK_MSG(fz_json_valid(f.payload, f.length, 1024), "the Phoenix socket sent text that is not JSON");
        at += n;
    }
    fz_consume(&c->in, at);
}

static void upgrade(client *c, uint8_t selector) {
    char request[768];
    const char *target, *method = "GET", *version = "13";
    int n, websocket_headers = 1, vsn = 0;
    switch (selector & 7) {
    case 0: target = "/socket/websocket?vsn=2.0.0"; vsn = 2; break;
    case 1: target = "/socket/websocket?vsn=1.0.0"; vsn = 1; break;
    case 2: target = "/socket/websocket"; vsn = 1; break;
    case 3: target = (selector & 0x80) ? "/refuse" : "/echo"; break;
    case 4: target = "/socket/websocket?vsn=2.0.0"; version = "8"; vsn = 2; break;
    case 5: target = "/socket/websocket?vsn=3.0.0"; vsn = 2; break;
    case 6: target = "/"; websocket_headers = 0; break;
    default: target = "/"; method = "HEAD"; websocket_headers = 0; break;
    }
    if ((selector & 0x10) && vsn == 2) target = "/socket/websocket?token=no&vsn=2.0.0";
    if (selector & 0x40) version = "8";
    /* which endpoint the connection is on is known only when this request is its first byte:
       the Phoenix socket's text must be JSON, an echo endpoint's need not */
    if (c->sent == 0) {
        c->vsn = vsn;
        c->head_method = method[0] == 'H';
    }
    if (websocket_headers)
        n = snprintf(request, sizeof request,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: %s\r\n"
                     "Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.dG9rZW4\r\n\r\n",
                     method, target, (selector & 0x08) ? "Origin: http://evil.example\r\n" : "Origin: http://good.example\r\n",
                     version);
    else
        n = snprintf(request, sizeof request, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, target);
    FZ_CHECK(n > 0 && (size_t)n < sizeof request);
    client_send(c, request, (selector & 0x20) ? 20 : (size_t)n);
}

static void phoenix(client *c, uint8_t selector, uint8_t argument) {
    static const char *const rooms[] = {"room:a", "room:b", "room:c", "room:toolongid"};
    char payload[256], message[512];
    const char *topic = rooms[argument & 3], *event = "mediaEvent", *join_ref = "\"1\"", *long_ref = "";
    int n, vsn = c->vsn ? c->vsn : 2;
    switch (selector % 15) {
    case 0: case 1: case 2: case 3:
        topic = rooms[selector % 4];
        event = "phx_join";
        snprintf(payload, sizeof payload, "{}");
        break;
    case 4: event = "phx_leave"; snprintf(payload, sizeof payload, "{}"); break;
    case 5: topic = "phoenix"; event = "heartbeat"; snprintf(payload, sizeof payload, "{}"); break;
    case 6:
        snprintf(payload, sizeof payload,
                 "{\"data\":\"{\\\"type\\\":\\\"join\\\",\\\"data\\\":{\\\"metadata\\\":{\\\"n\\\":\\\"%.*s\\\"}}}\"}",
                 argument & 63, "0123456789012345678901234567890123456789012345678901234567890123");
        break;
    case 7: snprintf(payload, sizeof payload, "{\"data\":{\"type\":\"custom\",\"data\":%d}}", argument); break;
    case 8: snprintf(payload, sizeof payload, "{\"data\":{\"type\":\"leave\"}}"); break;
    case 9:
        snprintf(payload, sizeof payload, "{\"data\":{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":%d}}}",
                 argument);
        break;
    case 10: event = "unknown"; snprintf(payload, sizeof payload, "{}"); break;
    case 11: topic = rooms[0]; snprintf(payload, sizeof payload, "{\"data\":%d}", argument); break;
    case 12: /* a join_ref longer than the server keeps, or no join_ref and a long ref */
        topic = rooms[argument & 1];
        event = "phx_join";
        join_ref = (argument & 2) ? "null" : "\"0123456789012345678901234567890123456789012345\"";
        snprintf(payload, sizeof payload, "{}");
        if (argument & 2) long_ref = "0123456789012345678901234567890123456789";
        break;
    case 13: topic = "lobby"; event = "phx_join"; snprintf(payload, sizeof payload, "{}"); break;
    default: {
        /* a binary push, kind 0: refs "1" and "2" */
        uint8_t b[64];
        size_t t = strlen(topic);
        b[0] = 0;
        b[1] = 1;
        b[2] = 1;
        b[3] = (uint8_t)t;
        b[4] = 10;
        b[5] = '1';
        b[6] = '2';
        memcpy(b + 7, topic, t);
        memcpy(b + 7 + t, "mediaEvent", 10);
        b[17 + t] = argument;
        client_frame(c, 0x82, b, 18 + t);
        return;
    }
    }
    c->ref++;
    if (vsn == 2)
        n = snprintf(message, sizeof message, "[%s,\"%d%s\",\"%s\",\"%s\",%s]", join_ref, c->ref, long_ref, topic,
                     event, payload);
    else
        n = snprintf(message, sizeof message,
                     "{\"topic\":\"%s\",\"event\":\"%s\",\"payload\":%s,\"ref\":\"%d%s\",\"join_ref\":%s}", topic,
                     event, payload, c->ref, long_ref, join_ref);
    FZ_CHECK(n > 0 && (size_t)n < sizeof message);
    client_frame(c, 0x81, message, (size_t)n);
}

static void heartbeats(client *c, int count) {
    fz_buffer burst = {0};
    int i;
    for (i = 0; i < count; i++) {
        char message[64];
        int n = snprintf(message, sizeof message, "[null,\"%d\",\"phoenix\",\"heartbeat\",{}]", ++c->ref);
        fz_client_frame(&burst, 0x81, message, (size_t)n, mask_bytes);
    }
    client_send(c, burst.bytes, burst.length);
    fz_buffer_free(&burst);
}

static void step(vrs_server *server) {
    int i;
    FZ_CHECK(vrs_step(server, 0) == VRS_OK);
    fz_check_tables(server);
    if (small_buffers) {
        uint32_t k;
        for (k = 0; k < server->active_count; k++) {
            int size = 4096;
            setsockopt(server->conns[server->active[k]].fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        }
    }
    for (i = 0; i < CLIENTS; i++) client_receive(&clients[i]);
    /* the host logic hears of every room created and destroyed */
    FZ_CHECK(rooms_alive == (server->desc.room_logic.on_room_created ? server->room_count : 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int pool_blocks[] = {16, 32, 8, 64};
    static const int warps[] = {300, 1100, 3100, 10000};
    vrs_desc desc;
    vrs_server *server = NULL;
    size_t at = 2;
    int i, ops = 0, port, host_logic;
    uint8_t config, more;
    if (size < 2) return 0;
    config = data[0];
    more = data[1];
    memset(&desc, 0, sizeof desc);
    desc.host = (more & 0x02) ? "::" : "127.0.0.1";
    desc.port = VRS_PORT_ANY;
    desc.max_connections = (config & 0x10) ? 3 : 2;
    desc.max_message_size = 8192;
    desc.max_request_size = 512;
    desc.send_queue_size = 8192;
    desc.buffer_pool_size = pool_blocks[(config >> 5) & 3] * VRS_BLOCK_SIZE;
    desc.handshake_timeout_ms = 1000;
    desc.idle_timeout_ms = 3000;
    desc.close_timeout_ms = 500;
    desc.slow_consumer_timeout_ms = 1000;
    desc.max_channels = 3;
    desc.max_channels_per_socket = 2;
    desc.max_rooms = 2;
    desc.max_peers_per_room = 2;
    desc.max_room_id_size = 8;
    desc.max_metadata_size = 64;
    desc.logger.func = fz_silent_logger;
    desc.on_open = on_open;
    desc.on_close = on_close;
    opened_count = closed_count = 0;
    if (config & 0x01) desc.on_message = on_message;
    if (config & 0x02) desc.on_http = on_http;
    if (config & 0x04) {
        desc.allowed_origins = good_origins;
        desc.allowed_origin_count = 1;
    }
    if (config & 0x08) desc.on_connect = on_connect;
    if (more & 0x01) desc.on_upgrade = on_upgrade;
    host_logic = (more & 0x10) != 0;
    if (host_logic) {
        desc.room_logic.on_room_created = logic_room_created;
        desc.room_logic.on_room_destroyed = logic_room_destroyed;
        desc.room_logic.on_peer_joined = logic_peer_joined;
        desc.room_logic.on_peer_left = logic_peer_left;
        desc.room_logic.on_media_event = logic_media_event;
    }
    small_buffers = (more & 0x08) != 0;
    ipv6 = (more & 0x02) != 0;
    rooms_alive = 0;
    FZ_CHECK(vrs_create(&desc, &server) == VRS_OK);
    fz_deterministic_ids(server, 32);
    port = vrs_port(server);
    for (i = 0; i < CLIENTS; i++) {
        memset(&clients[i], 0, sizeof clients[i]);
        clients[i].fd = -1;
    }

    while (at < size && ops++ < MAX_OPS) {
        uint8_t o = data[at++];
        client *c = &clients[o & 3];
        uint8_t a = at < size ? data[at] : 0, b = at + 1 < size ? data[at + 1] : 0;
        switch ((o >> 2) % 14) {
        case 0: client_connect(c, port, ipv6 && (o & 1)); break;
        case 1: {
            size_t n = a;
            at++;
            if (at > size) at = size;
            if (n > size - at) n = size - at;
            client_send(c, data + at, n);
            at += n;
            break;
        }
        case 2: upgrade(c, a); at++; break;
        case 3: {
            size_t n = b;
            at += 2;
            if (at > size) at = size;
            if (n > size - at) n = size - at;
            client_frame(c, a, data + at, n);
            at += n;
            break;
        }
        case 4: phoenix(c, a, b); at += 2; break;
        case 5: client_close(c, 0); break;
        case 6: client_close(c, 1); break;
        case 7: if (c->fd >= 0) shutdown(c->fd, SHUT_WR); break;
        case 8: break; /* the step below */
        case 9: fz_warp(server, warps[a & 3]); at++; break;
        case 10: heartbeats(c, 1 + (a & 63) * 4); at++; break;
        case 11: c->reading = !c->reading; break;
        case 12: {
            uint8_t payload[2];
            payload[0] = a;
            payload[1] = b;
            client_frame(c, 0x88, payload, 2);
            at += 2;
            break;
        }
        default: client_frame(c, 0x89, "ping", 4); break;
        }
        step(server);
    }

    if (more & 0x04) {
        /* the host shuts down with clients connected: one attempt to send them 1001 */
        vrs_destroy(server);
        FZ_CHECK(rooms_alive == 0);
        FZ_CHECK_MSG(opened_count == closed_count, "%d opened, %d closed", opened_count, closed_count);
        for (i = 0; i < CLIENTS; i++) {
            clients[i].reading = 1;
            client_receive(&clients[i]);
            client_close(&clients[i], 1);
        }
        return 0;
    }
    /* every client goes away; the server must come back to empty tables */
    for (i = 0; i < CLIENTS; i++) client_close(&clients[i], 1);
    for (i = 0; i < 40 && vrs_get_stats(server).connections > 0; i++) {
        FZ_CHECK(vrs_step(server, i < 20 ? 0 : 5) == VRS_OK);
        fz_check_tables(server);
        fz_warp(server, 1000);
    }
    fz_check_empty(server);
    FZ_CHECK(rooms_alive == 0);
    FZ_CHECK_MSG(opened_count == closed_count, "%d opened, %d closed", opened_count, closed_count);
    vrs_destroy(server);
    return 0;
}
