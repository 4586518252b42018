/* Fuzz target: the WebSocket frame reader, vrs__read_frames, through a real server and a
   connection adopted on one end of a socket pair.

   Input: byte 0 is the configuration:
     bit 0     which server: A (max_message_size 300, 16 pool blocks, a send queue of 1024
               bytes) or B (65536, 4 pool blocks: at most 2 for received bytes, so long
               fragmented messages exhaust it). The server's end of the socket pair has a
               small send buffer, so echoes queue up (slow consumer, empty pool).
     bits 1-3  number of cut points (0-7)
     bit 4     echo every message back (vrs_send)
     bit 5     the host closes (vrs_close 4000) on the second message, and pings on the first
     bit 6     open through the real handshake (vrs__read_request with an upgrade request,
               the first piece of the stream arriving in the same read as "early" frames)
     bit 7     run the end-of-step pass (vrs__attend) after every piece, not only at the end
   then 2 bytes per cut point (little-endian, modulo the stream's length + 1); the rest is
   the byte stream from the client, fed in the pieces the cuts make (each copied to a buffer
   of its exact size, since the reader unmasks in place).

   Checked: the cuts do not matter (the same stream in one piece delivers the same messages,
   writes the same bytes and closes with the same code, unless a queue or the pool ran out or
   the end-of-step pass ran between pieces); every delivered message fits max_message_size and text is valid UTF-8 (by the
   reference validator); nothing is delivered after on_close; on_close comes at most once;
   everything the server wrote to the other end is an optional 101 response and then valid
   server frames (fuzz_common.h), nothing after a close frame (the queue is flushed before the
   connection is released; only a queue the server dropped may end inside a frame); once the
   connection is released
   the pool is whole again (no block used, none counted as inbound) and no connection is left. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

/* What one run did: the messages delivered (each as type, 8-byte length, bytes), the bytes
   the server wrote, the close code on_close reported. */
typedef struct outcome {
    fz_buffer messages;
    fz_buffer written;
    int close_code;
} outcome;

typedef struct harness {
    vrs_server *server;
    int max_message_size;
    int echo, host_close;
    int messages, closes;
    int queue_dropped; /* logged a slow consumer or an empty pool */
    vrs_conn conn;
    outcome *out;
} harness;

static harness servers[2];

static const char upgrade_request[] =
    "GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

static void on_message(vrs_server *server, vrs_conn conn, vrs_message_type type, const void *data, size_t length,
                       void *user_data) {
    harness *h = (harness *)user_data;
    FZ_CHECK(h->closes == 0);
    FZ_CHECK(type == VRS_MESSAGE_TEXT || type == VRS_MESSAGE_BINARY);
    FZ_CHECK(length <= (size_t)h->max_message_size);
    if (type == VRS_MESSAGE_TEXT)
        FZ_CHECK_MSG(fz_utf8_valid((const uint8_t *)data, length), "a text message of %zu bytes is not UTF-8", length);
    FZ_CHECK(vrs_conn_is_open(server, conn));
    h->messages++;
    {
        uint8_t header[9];
        int k;
        header[0] = (uint8_t)type;
        for (k = 0; k < 8; k++) header[1 + k] = (uint8_t)((uint64_t)length >> (8 * k));
        fz_put(&h->out->messages, header, sizeof header);
        fz_put(&h->out->messages, data, length);
    }
    if (h->echo) {
        vrs_result r = vrs_send(server, conn, type, data, length);
        FZ_CHECK(r == VRS_OK || r == VRS_ERROR_TOO_LARGE || r == VRS_ERROR_SLOW_CONSUMER || r == VRS_ERROR_POOL_EXHAUSTED);
    }
    if (h->host_close && h->messages == 1) (void)vrs_send_ping(server, conn, "p", 1);
    if (h->host_close && h->messages == 2) FZ_CHECK(vrs_close(server, conn, 4000, "host") == VRS_OK);
}

static void on_close(vrs_server *server, vrs_conn conn, int code, void *user_data) {
    harness *h = (harness *)user_data;
    (void)server;
    FZ_CHECK(conn.id == h->conn.id);
    FZ_CHECK(code >= 1000 && code <= 4999);
    h->closes++;
    h->out->close_code = code;
}

static void logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    harness *h = (harness *)user_data;
    (void)level;
    (void)message;
    if (item == VRS_LOG_SLOW_CONSUMER || item == VRS_LOG_POOL_EXHAUSTED) h->queue_dropped = 1;
}

static void create(harness *h, int max_message_size, int pool_blocks, int send_queue_size) {
    vrs_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.port = VRS_PORT_ANY;
    desc.max_connections = 2;
    desc.max_message_size = max_message_size;
    desc.max_request_size = 1024;
    desc.send_queue_size = send_queue_size;
    desc.buffer_pool_size = pool_blocks * VRS_BLOCK_SIZE;
    desc.disable_phoenix = 1;
    desc.on_message = on_message;
    desc.on_close = on_close;
    desc.user_data = h;
    desc.logger.func = logger;
    desc.logger.user_data = h;
    h->max_message_size = max_message_size;
    FZ_CHECK(vrs_create(&desc, &h->server) == VRS_OK);
}

static void teardown(void) {
    if (servers[0].server) vrs_destroy(servers[0].server);
    if (servers[1].server) vrs_destroy(servers[1].server);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    create(&servers[0], 300, 16, 1024);
    create(&servers[1], 65536, 4, 65536);
    atexit(teardown);
    return 0;
}

static int compare_sizes(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* What the server wrote: an optional 101 head, then whole, valid frames; nothing after close. */
static void check_written(const fz_buffer *out, int handshake, int may_end_inside) {
    size_t at = 0;
    int closed = 0;
    if (handshake) {
        int status;
        long content_length;
        size_t head = fz_parse_response_head(out->bytes, out->length, &status, &content_length);
        FZ_CHECK_MSG(head > 0 && status == 101, "no 101 response");
        at = head;
    }
    while (at < out->length) {
        fz_server_frame f;
        size_t n = fz_parse_server_frame(out->bytes + at, out->length - at, &f);
        if (n == 0 && may_end_inside) break;
        FZ_CHECK_MSG(n > 0, "the server wrote a partial frame (%zu bytes left)", out->length - at);
        FZ_CHECK_MSG(!closed, "a frame after the close frame");
        if (f.opcode == 8) closed = 1;
        at += n;
    }
}

/* Feeds `stream` cut at `cuts` through a fresh connection and releases it. */
static void run(harness *h, const uint8_t *stream, size_t n, const size_t *cuts, size_t cut_count, int handshake,
                int attend_each, outcome *out) {
    vrs_server *s = h->server;
    vrs__conn *conn;
    int fds[2];
    size_t i, start = 0;
    memset(out, 0, sizeof *out);
    h->out = out;
    h->messages = h->closes = h->queue_dropped = 0;
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    fz_nonblocking(fds[1]);
    {
        int small = 4096;
        setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    }
    conn = fz_adopt(s, fds[0]);
    h->conn = vrs__handle(s, conn);
    if (!handshake) {
        /* open as vrs__open_websocket leaves it */
        memset(&conn->reader, 0, sizeof conn->reader);
        conn->state = VRS__OPEN;
        conn->announced = 1;
        s->websocket_count++;
    }
    for (i = 0; i <= cut_count; i++) {
        size_t end = i < cut_count ? cuts[i] : n;
        if (conn->state == VRS__FREE) break;
        if (handshake && i == 0) {
            /* the request and the first piece in one read, in the read buffer as vrs__read has it */
            size_t total = sizeof upgrade_request - 1 + (end - start);
            FZ_CHECK(total <= VRS__READ_BUFFER_SIZE);
            memcpy(s->read_buffer, upgrade_request, sizeof upgrade_request - 1);
            memcpy(s->read_buffer + sizeof upgrade_request - 1, stream + start, end - start);
            vrs__read_request(s, conn, s->read_buffer, total);
            FZ_CHECK(conn->state != VRS__READING_REQUEST);
            h->conn = vrs__handle(s, conn);
        } else {
            uint8_t *piece = fz_exact_copy(stream + start, end - start);
            vrs__read_frames(s, conn, piece, end - start, 1);
            free(piece);
        }
        start = end;
        if (attend_each) {
            vrs__attend(s);
            fz_drain(fds[1], &out->written);
        }
    }
    vrs__attend(s);
    fz_drain(fds[1], &out->written);
    /* let everything queued go out, as the poll loop would once the socket drains */
    for (i = 0; i < 10000 && conn->state != VRS__FREE && conn->outbound.length > 0 && !conn->dead; i++) {
        vrs__flush(s, conn);
        vrs__attend(s);
        fz_drain(fds[1], &out->written);
    }
    if (conn->state != VRS__FREE) {
        vrs__kill(s, conn, VRS__CLOSE_ABNORMAL);
        vrs__attend(s);
    }
    fz_drain(fds[1], &out->written);
    close(fds[1]);
    FZ_CHECK(h->closes <= 1);
    check_written(&out->written, handshake, h->queue_dropped);
    /* the connection is gone and so is everything it held */
    fz_check_empty(s);
    FZ_CHECK(s->websocket_count == 0 && s->active_count == 0);
    h->out = NULL;
}

static void outcome_free(outcome *o) {
    fz_buffer_free(&o->messages);
    fz_buffer_free(&o->written);
}

static int same_bytes(const fz_buffer *a, const fz_buffer *b) {
    return a->length == b->length && (a->length == 0 || memcmp(a->bytes, b->bytes, a->length) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    harness *h;
    int handshake, attend_each, dropped;
    size_t cuts[8], cut_count, i, n;
    const uint8_t *stream;
    outcome in_pieces, whole;
    if (size < 1) return 0;
    h = &servers[data[0] & 1];
    cut_count = (data[0] >> 1) & 7;
    h->echo = (data[0] >> 4) & 1;
    h->host_close = (data[0] >> 5) & 1;
    handshake = (data[0] >> 6) & 1;
    attend_each = (data[0] >> 7) & 1;
    if (size < 1 + 2 * cut_count) return 0;
    stream = data + 1 + 2 * cut_count;
    n = size - 1 - 2 * cut_count;
    for (i = 0; i < cut_count; i++) cuts[i] = (size_t)(data[1 + 2 * i] | data[2 + 2 * i] << 8) % (n + 1);
    qsort(cuts, cut_count, sizeof cuts[0], compare_sizes);

    run(h, stream, n, cuts, cut_count, handshake, attend_each, &in_pieces);
    dropped = h->queue_dropped;
    /* Where the stream is cut must not matter: the same stream in one piece delivers the same
       messages, writes the same bytes and closes the same way. (Not when a queue or the pool
       ran out: how much is buffered depends on the pieces; nor when the end-of-step pass runs
       between pieces, which lets writes go out early.) */
    if (cut_count > 0 && !attend_each && !dropped) {
        run(h, stream, n, NULL, 0, handshake, 0, &whole);
        if (!h->queue_dropped) {
            FZ_CHECK_MSG(same_bytes(&in_pieces.messages, &whole.messages),
                         "in pieces %zu bytes of messages were delivered, in one piece %zu", in_pieces.messages.length,
                         whole.messages.length);
            FZ_CHECK_MSG(same_bytes(&in_pieces.written, &whole.written),
                         "in pieces the server wrote %zu bytes, in one piece %zu", in_pieces.written.length,
                         whole.written.length);
            FZ_CHECK_MSG(in_pieces.close_code == whole.close_code, "closed with %d in pieces, %d in one piece",
                         in_pieces.close_code, whole.close_code);
        }
        outcome_free(&whole);
    }
    outcome_free(&in_pieces);
    return 0;
}
