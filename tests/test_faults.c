/* Faults, abuse and exhaustion over loopback: stalled and slow clients, clients that vanish,
   a random churn of everything a client can do, every table at its limit, the host out of
   file descriptors, and what one client can reach of another.

   Each test asserts what a user sees (HTTP statuses, close codes, replies, events, log items,
   other clients unaffected) and ends with ft_finish: the server holds no connection, no pool
   block, no channel and no room, and every free list is whole again. The timeouts are small
   (100-300 ms) so that waiting for them stays cheap; every wait and loop is bounded. */

#ifndef _WIN32
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/time.h>
#endif

#define FT_FN static __attribute__((unused))
#define FT_V2 "/socket/websocket?vsn=2.0.0"
#define FT_WAIT_MS 2000

static int ft_ref; /* refs and join_refs: unique across the binary's life */

/* ---------------------------------------------------------------------------------------------
   Helpers
   ------------------------------------------------------------------------------------------- */

/* Frees the clients (the list ends with NULL), waits for the server to empty and checks every
   table: no connection, no WebSocket, no pool block, no channel, no room, and every free list
   back to its capacity. Then frees the server. */
static int ft_finish(ts_server *ts, ...) {
    va_list args;
    ts_client *c;
    vrs_stats s;
    vrs_server *v;
    int clean;
    va_start(args, ts);
    while ((c = va_arg(args, ts_client *)) != NULL) ts_client_free(c);
    va_end(args);
    ts_wait_drained(ts, FT_WAIT_MS);
    v = ts->server;
    s = vrs_get_stats(v);
    clean = s.connections == 0 && s.open_connections == 0 && s.pool_blocks_used == 0 && v->channel_count == 0 &&
            v->room_count == 0 && v->pool.free_count == v->pool.block_count && v->pool.inbound_used == 0 &&
            v->open_count == 0 && v->rejection_count == 0 && v->free_slot_count == v->slot_count &&
            v->free_channel_count == (uint32_t)v->desc.max_channels &&
            v->free_room_count == (uint32_t)v->desc.max_rooms;
    if (!clean)
        fprintf(stderr,
                "    not clean: %d connections, %d open, %d pool blocks (%u free of %u), %d channels, %d rooms, "
                "%d counted, %d rejections, %u/%u slots, %u/%d channel slots, %u/%d room slots\n",
                s.connections, s.open_connections, s.pool_blocks_used, v->pool.free_count, v->pool.block_count,
                v->channel_count, v->room_count, v->open_count, v->rejection_count, v->free_slot_count,
                v->slot_count, v->free_channel_count, v->desc.max_channels, v->free_room_count, v->desc.max_rooms);
    ts_server_free(ts);
    return clean;
}

/* A Phoenix V2 socket from a client with the given SO_RCVBUF (0: the default); NULL unless 101. */
FT_FN ts_client *ft_ws(ts_server *ts, int rcvbuf) {
    ts_client *c = ts_client_connect_to(ts, "127.0.0.1", ts->port, rcvbuf);
    ts_request q;
    ts_response r;
    if (!c) return NULL;
    memset(&q, 0, sizeof q);
    q.target = FT_V2;
    if (ts_handshake(c, &q, &r) != 101) {
        ts_client_free(c);
        return NULL;
    }
    if (ts->open_count > 0 && ts->open_count <= TS_MAX_EVENTS) c->conn = ts->opened[ts->open_count - 1];
    return c;
}

/* Ends the client's connection with a reset (SO_LINGER 0, then close) and frees it. */
FT_FN void ft_reset(ts_client *c) {
    struct linger linger;
    linger.l_onoff = 1;
    linger.l_linger = 0;
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, (void *)&linger, sizeof linger);
    ts_client_free(c);
}

/* The first lines of an upgrade request, without the empty line that would end it. */
static const char ft_half_head[] = "GET " FT_V2 " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";

/* One send, no retry: for clients the server may already have dropped. */
FT_FN void ft_send_quietly(ts_client *c, const void *data, size_t length) {
    ssize_t sent = send(c->fd, (const void *)data, length, MSG_NOSIGNAL);
    (void)sent;
}

/* Relay custom event to everyone else in the room, or to `to` (a peer id) when not NULL. */
FT_FN int ft_custom(ts_client *c, const char *jr, const char *topic, const char *to, const char *data) {
    char e[PX_TEXT];
    if (to)
        snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":%s}", to, data);
    else
        snprintf(e, sizeof e, "{\"type\":\"custom\",\"data\":%s}", data);
    return px_media(c, jr, topic, e);
}

/* Reads the next relay event on `topic` and checks its type; E goes to out (may be NULL). */
FT_FN int ft_event_of_type(ts_client *c, const char *topic, const char *type, char *out, size_t capacity) {
    char e[PX_TEXT], got[64];
    if (!px_event(c, topic, e, sizeof e)) return 0;
    if (!px_field_string(e, "type", got, sizeof got) || strcmp(got, type) != 0) {
        fprintf(stderr, "    expected a %s event, got %s\n", type, e);
        return 0;
    }
    if (out) snprintf(out, capacity, "%s", e);
    return 1;
}

/* The next relay event is peerLeft for `id`. */
FT_FN int ft_peer_left(ts_client *c, const char *topic, const char *id) {
    char e[PX_TEXT], who[64];
    if (!ft_event_of_type(c, topic, "peerLeft", e, sizeof e)) return 0;
    if (!px_field_string(e, "data.peerId", who, sizeof who) || strcmp(who, id) != 0) {
        fprintf(stderr, "    peerLeft for the wrong peer: %s (expected %s)\n", e, id);
        return 0;
    }
    return 1;
}

#ifndef _WIN32
/* CPU time this process has used, in milliseconds. */
static double ft_cpu_ms(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000.0 +
           (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000.0;
}
#endif

/* ---------------------------------------------------------------------------------------------
   Slowloris: stalled requests and stalled frames
   ------------------------------------------------------------------------------------------- */

/* Half a request head, then nothing: 408 at the handshake timeout. A client that drips one
   byte at a time does not push the deadline back. */
TEST(faults, slowloris_request_gets_408) {
    static const char drip_head[] = "GET " FT_V2 " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    ts_server *ts = px_server_new();
    ts_client *half, *drip;
    ts_response r;
    int64_t start, elapsed;
    size_t i;
    REQUIRE(ts);
    ts->desc.handshake_timeout_ms = 200;
    ts->desc.idle_timeout_ms = 300;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));

    half = ts_client_connect(ts);
    REQUIRE(half);
    start = ts_now_ms();
    REQUIRE(ts_send_str(half, ft_half_head) == 0);
    REQUIRE_EQ_INT(ts_read_response_head(half, &r, FT_WAIT_MS), 1);
    elapsed = ts_now_ms() - start;
    CHECK_EQ_INT(r.status, 408);
    if (elapsed < 150 || elapsed > 1000) VRS_TEST_FAIL("408 after %lld ms, expected about 200", (long long)elapsed);
    CHECK(strstr(r.head, "Connection: close\r\n") != NULL);
    CHECK(ts_read_response_body(half, &r, FT_WAIT_MS) == 1 && strncmp(r.body, "408", 3) == 0);
    CHECK(ts_wait_eof(half, FT_WAIT_MS));

    drip = ts_client_connect(ts);
    REQUIRE(drip);
    start = ts_now_ms();
    for (i = 0; i < sizeof drip_head - 1 && ts_now_ms() - start < FT_WAIT_MS; i++) {
        ft_send_quietly(drip, drip_head + i, 1);
        if (ts_client_wait_bytes(drip, 1, 40) != -1) break; /* an answer, or the end */
    }
    CHECK(i < sizeof drip_head - 1); /* the head never got finished */
    REQUIRE_EQ_INT(ts_read_response_head(drip, &r, FT_WAIT_MS), 1);
    elapsed = ts_now_ms() - start;
    CHECK_EQ_INT(r.status, 408);
    if (elapsed < 150 || elapsed > 1000) VRS_TEST_FAIL("drip: 408 after %lld ms, expected about 200", (long long)elapsed);
    CHECK(ts_wait_eof(drip, FT_WAIT_MS));

    CHECK_EQ_INT(ts->log_counts[VRS_LOG_HANDSHAKE_TIMEOUT], 2);
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK_EQ_INT(ts->close_count, 0);
    CHECK(ft_finish(ts, half, drip, NULL));
}

/* Half a frame, then nothing: the idle timeout closes with 1001; a client that never answers
   the close is dropped at the close timeout, and on_close reports the 1001. Its channel left
   the room as soon as the server closed. */
TEST(faults, slowloris_frame_gets_1001) {
    static const unsigned char half_frame[3] = {0x81, 0x80 | 40, 0x5A}; /* text, 40 bytes, mask... */
    ts_server *ts = px_server_new();
    ts_client *c;
    ts_frame f;
    int64_t start, elapsed;
    int code;
    REQUIRE(ts);
    ts->desc.handshake_timeout_ms = 200;
    ts->desc.idle_timeout_ms = 300;
    ts->desc.close_timeout_ms = 200;
    REQUIRE(px_start(ts));
    c = ft_ws(ts, 0);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:stall", "1"));
    CHECK_EQ_INT(ts->server->room_count, 1);
    start = ts_now_ms();
    REQUIRE(ts_send_raw(c, half_frame, sizeof half_frame) == 0);
    code = ts_read_close(c, &f, FT_WAIT_MS);
    elapsed = ts_now_ms() - start;
    CHECK_EQ_INT(code, 1001);
    CHECK_EQ_STR(f.reason, "idle timeout");
    if (elapsed < 250 || elapsed > 1500) VRS_TEST_FAIL("1001 after %lld ms, expected about 300", (long long)elapsed);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK_EQ_INT(ts->server->room_count, 0);
    /* we never answer the close: the server drops us */
    CHECK(ts_wait_eof(c, FT_WAIT_MS));
    CHECK(ts_wait_count(ts, &ts->close_count, 1, FT_WAIT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1001);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_IDLE_TIMEOUT], 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CLOSE_TIMEOUT], 1);
    CHECK(ft_finish(ts, c, NULL));
}

/* A flood of stalled clients, past max_connections: the slots fill, then every new client
   gets 503, those past the reject slots as soon as one frees (a refused client's socket
   lingers close_timeout_ms at most); none is left hanging or dropped without an answer. A
   client opened before the flood is served throughout, the stalled ones get 408 at their
   timeout, and then a new client works. */
TEST(faults, slowloris_flood) {
    enum { FLOOD = 30, MAX = 8 };
    ts_server *ts = px_server_new();
    ts_client *keep, *flood[FLOOD], *fresh;
    int ended[FLOOD], quiet = 0, got503 = 0, eof = 0, other = 0, i, count = 0;
    int64_t deadline;
    ts_response r;
    REQUIRE(ts);
    ts->desc.max_connections = MAX;
    ts->desc.handshake_timeout_ms = 1500; /* after every refused client had its answer */
    ts->desc.idle_timeout_ms = 5000;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));
    keep = ft_ws(ts, 0);
    REQUIRE(keep);
    REQUIRE(px_join(keep, "room:keep", "1"));

    for (i = 0; i < FLOOD; i++) {
        flood[i] = ts_client_connect(ts);
        REQUIRE(flood[i]);
        ft_send_quietly(flood[i], ft_half_head, sizeof ft_half_head - 1);
        ended[i] = 0;
    }
    /* everyone past the slots is answered and ends: the last ones after one linger of the
       refused before them, well before the handshake timeout */
    deadline = ts_now_ms() + 1000;
    while (count < FLOOD - (MAX - 1) && ts_now_ms() < deadline) {
        ts_step(ts, 1);
        for (i = 0; i < FLOOD; i++) {
            int got;
            if (ended[i]) continue;
            while ((got = ts_client_recv_some(flood[i])) > 0) {
            }
            if (got == 0 || got == -2) {
                ended[i] = 1;
                count++;
            }
        }
    }
    for (i = 0; i < FLOOD; i++) {
        size_t n = ts_client_available(flood[i]);
        if (!ended[i]) {
            if (n == 0) quiet++;
            else other++;
        } else if (n == 0) {
            eof++;
        } else if (n >= 12 && memcmp(flood[i]->buf + flood[i]->rpos, "HTTP/1.1 503", 12) == 0) {
            got503++;
        } else {
            other++;
        }
    }
    CHECK_EQ_INT(quiet, MAX - 1);
    CHECK_EQ_INT(got503, FLOOD - (MAX - 1));
    CHECK_EQ_INT(eof, 0);
    CHECK_EQ_INT(other, 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTIONS_FULL], FLOOD - (MAX - 1));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_HANDSHAKE_TIMEOUT], 0);
    /* the open client is still served */
    CHECK(px_quiet(keep));
    CHECK(vrs_conn_is_open(ts->server, keep->conn));

    /* the refused ones go; at capacity a new client still gets its 503 at once */
    for (i = 0; i < FLOOD; i++)
        if (ended[i]) {
            ts_client_free(flood[i]);
            flood[i] = NULL;
        }
    deadline = ts_now_ms() + FT_WAIT_MS;
    while (ts->server->rejection_count > 0 && ts_now_ms() < deadline) ts_step(ts, 1);
    CHECK_EQ_INT(ts->server->rejection_count, 0);
    CHECK_EQ_INT(px_try_target(ts, FT_V2, NULL), 503);

    /* the stalled ones time out with 408 */
    for (i = 0; i < FLOOD; i++) {
        if (!flood[i]) continue;
        if (ts_read_response_head(flood[i], &r, FT_WAIT_MS) != 1 || r.status != 408)
            VRS_TEST_FAIL("stalled client %d: expected 408, got %d", i, r.status);
        CHECK(ts_wait_eof(flood[i], FT_WAIT_MS));
        ts_client_free(flood[i]);
        flood[i] = NULL;
    }
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_HANDSHAKE_TIMEOUT], MAX - 1);

    /* once the server has seen them go, a new client works */
    deadline = ts_now_ms() + FT_WAIT_MS;
    while (vrs_get_stats(ts->server).connections > 1 && ts_now_ms() < deadline) ts_step(ts, 1);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);
    fresh = ft_ws(ts, 0);
    REQUIRE(fresh);
    CHECK(px_join(fresh, "room:keep", "1"));
    CHECK(px_quiet(fresh));
    CHECK(px_quiet(keep));
    CHECK_EQ_INT(ts->close_count, 0);
    CHECK(ft_finish(ts, keep, fresh, NULL));
}

/* ---------------------------------------------------------------------------------------------
   A client that stops reading
   ------------------------------------------------------------------------------------------- */

/* Three relay peers in a room; c has a tiny receive buffer and never reads while a and b
   exchange 2,000 custom events broadcast to the room. c's queue passes send_queue_size: a and
   b are paused until c, having taken nothing for slow_consumer_timeout_ms, is closed alone
   (1013, SLOW_CONSUMER); a and b receive every event in order, and hear peerLeft for c. (The
   server's socket for c gets a small SO_SNDBUF too: see below.) With `pool_runs_dry`, the
   shared pool is smaller than c's send queue: the high-water mark falls as the pool fills and
   senders pause before it runs dry; nobody else is closed, and c's queue is dropped with it. */
static void ft_slow_consumer(int pool_runs_dry) {
    enum { ROUNDS = 100, BATCH = 10 };
    ts_server *ts = px_server_new();
    ts_client *a, *b, *c;
    char ida[37], idb[37], idc[37], pad[300], data[400], e[PX_TEXT], field[64];
    ts_client *readers[2];
    const char *from_ids[2];
    int next_seq[2] = {0, 0}, left[2] = {0, 0}, bad[2] = {0, 0}, round, k, side;
    ts_frame f;
    REQUIRE(ts);
    ts->desc.send_queue_size = pool_runs_dry ? 262144 : 16384;
    if (pool_runs_dry) ts->desc.buffer_pool_size = 160 * 1024;
    ts->desc.idle_timeout_ms = 10000;
    ts->desc.slow_consumer_timeout_ms = 300;
    ts->desc.close_timeout_ms = 5000; /* longer than the test: c reads its 1013 before the drop */
    REQUIRE(px_start(ts));
    a = ft_ws(ts, 0);
    b = ft_ws(ts, 0);
    c = ft_ws(ts, 2048);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:slow", "1"));
    REQUIRE(px_join(b, "room:slow", "1"));
    REQUIRE(px_join(c, "room:slow", "1"));
    REQUIRE(px_relay_join(a, "1", "room:slow", "\"a\"", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:slow", "\"b\"", idb, NULL, 0));
    REQUIRE(ft_event_of_type(a, "room:slow", "peerJoined", NULL, 0));
    REQUIRE(px_relay_join(c, "1", "room:slow", "\"c\"", idc, NULL, 0));
    REQUIRE(ft_event_of_type(a, "room:slow", "peerJoined", NULL, 0));
    REQUIRE(ft_event_of_type(b, "room:slow", "peerJoined", NULL, 0));
    {
        /* Linux grows a socket's send buffer on its own (up to tcp_wmem's maximum, 4 MB or
           more), which would hold megabytes for c before its send queue saw any: the server's
           socket for c gets a small one, as on a path that is slow for real */
        vrs__conn *conn = vrs__lookup(ts->server, c->conn);
        int small = 4096;
        REQUIRE(conn);
        REQUIRE(setsockopt(conn->fd, SOL_SOCKET, SO_SNDBUF, (void *)&small, sizeof small) == 0);
    }
    memset(pad, 'x', 256);
    pad[256] = '\0';
    readers[0] = b; /* b reads what a sends */
    readers[1] = a;
    from_ids[0] = ida;
    from_ids[1] = idb;
    /* c stops reading here */
    for (round = 0; round < ROUNDS; round++) {
        for (side = 0; side < 2; side++)
            for (k = 0; k < BATCH; k++) {
                snprintf(data, sizeof data, "{\"seq\":%d,\"pad\":\"%s\"}", round * BATCH + k, pad);
                REQUIRE(ft_custom(side == 0 ? a : b, "1", "room:slow", NULL, data) == 0);
            }
        for (side = 0; side < 2; side++)
            for (k = 0; k < BATCH;) {
                char type[32], from[64];
                if (!px_event(readers[side], "room:slow", e, sizeof e)) {
                    VRS_TEST_FAIL("reader %d: no event in round %d", side, round);
                    goto done;
                }
                px_field_string(e, "type", type, sizeof type);
                if (strcmp(type, "peerLeft") == 0) {
                    if (!px_field_string(e, "data.peerId", from, sizeof from) || strcmp(from, idc) != 0) bad[side]++;
                    left[side]++;
                    continue;
                }
                if (strcmp(type, "custom") != 0 || !px_field_string(e, "from", from, sizeof from) ||
                    strcmp(from, from_ids[side]) != 0 || !px_field(e, "data.seq", field, sizeof field) ||
                    atoi(field) != next_seq[side]) {
                    if (bad[side]++ < 3) fprintf(stderr, "    reader %d expected seq %d: %s\n", side, next_seq[side], e);
                }
                next_seq[side]++;
                k++;
            }
    }
done:
    CHECK_EQ_INT(next_seq[0], ROUNDS * BATCH);
    CHECK_EQ_INT(next_seq[1], ROUNDS * BATCH);
    CHECK_EQ_INT(bad[0], 0);
    CHECK_EQ_INT(bad[1], 0);
    CHECK_EQ_INT(left[0], 1);
    CHECK_EQ_INT(left[1], 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 0);
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1013);
    CHECK(vrs_conn_is_open(ts->server, a->conn));
    CHECK(vrs_conn_is_open(ts->server, b->conn));
    CHECK_EQ_INT(ts->server->channel_count, 2);
    if (pool_runs_dry) {
        /* its queue was dropped with it, to give the pool its blocks back at once: c finds its
           connection ended, with no close frame */
        CHECK(ts_read_close(c, &f, FT_WAIT_MS) != 1013);
    } else {
        /* c reads at last: what was queued, then the 1013 */
        CHECK_EQ_INT(ts_read_close(c, &f, FT_WAIT_MS), 1013);
        CHECK(c->skipped_frames > 0);
    }
    /* a and b go on */
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    REQUIRE(ft_custom(a, "1", "room:slow", idb, "\"after\"") == 0);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":\"after\"}", ida);
    PX_EXPECT_EVENT(b, "room:slow", e);
    CHECK(ft_finish(ts, a, b, c, NULL));
}

TEST(faults, slow_consumer_closed_alone) { ft_slow_consumer(0); }

TEST(faults, slow_consumer_closed_alone_with_a_small_pool) { ft_slow_consumer(1); }

/* Clients that hold half-sent messages hold pool blocks, and at most half of the pool may hold
   received bytes: the client whose bytes would pass that is closed (1013, POOL_EXHAUSTED),
   the ones already holding keep their messages and finish them, and peers exchanging ordinary
   messages never notice. The blocks come back when a holder vanishes or finishes. */
TEST(faults, pool_hogs) {
    enum { FRAGMENT = 12000 }; /* three blocks each */
    static char first[FRAGMENT];
    static const char reply[] = "[null,\"hog\",\"phoenix\",\"phx_reply\"," PX_OK "]";
    ts_server *ts = px_server_new();
    ts_client *a, *b, *hog[4];
    char ida[37], idb[37], e[200];
    ts_frame f;
    int i, n;
    REQUIRE(ts);
    ts->desc.buffer_pool_size = 16 * VRS_BLOCK_SIZE; /* at most 8 blocks of received bytes */
    ts->desc.idle_timeout_ms = 30000;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));
    /* a heartbeat padded with whitespace: still one valid message when whole */
    n = snprintf(first, sizeof first, "[null,\"hog\",\"phoenix\",\"heartbeat\",{}");
    memset(first + n, ' ', FRAGMENT - (size_t)n);
    a = ft_ws(ts, 0);
    b = ft_ws(ts, 0);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:h", "1"));
    REQUIRE(px_join(b, "room:h", "1"));
    REQUIRE(px_relay_join(a, "1", "room:h", "null", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:h", "null", idb, NULL, 0));
    REQUIRE(ft_event_of_type(a, "room:h", "peerJoined", NULL, 0));
    for (i = 0; i < 3; i++) {
        hog[i] = ft_ws(ts, 0);
        REQUIRE(hog[i]);
        REQUIRE(ts_send_frame(hog[i], 1, 0, first, FRAGMENT) == 0);
        ts_pump(ts, 20);
    }
    /* the third did not fit */
    CHECK_EQ_INT(ts_read_close(hog[2], &f, FT_WAIT_MS), 1013);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 1);
    CHECK(ts_wait_count(ts, &ts->close_count, 1, FT_WAIT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, hog[2]->conn), 1013);
    CHECK_EQ_INT(ts->server->pool.inbound_used, 6);
    /* the others never notice */
    for (i = 0; i < 20; i++) {
        snprintf(e, sizeof e, "%d", i);
        REQUIRE(ft_custom(i % 2 ? a : b, "1", "room:h", NULL, e) == 0);
        if (!ft_event_of_type(i % 2 ? b : a, "room:h", "custom", NULL, 0)) VRS_TEST_FAIL("event %d lost", i);
    }
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    CHECK(vrs_conn_is_open(ts->server, hog[0]->conn) && vrs_conn_is_open(ts->server, hog[1]->conn));
    /* a holder vanishes: its blocks come back, and a new holder fits */
    ft_reset(hog[0]);
    hog[0] = NULL;
    CHECK(ts_wait_count(ts, &ts->close_count, 2, FT_WAIT_MS));
    CHECK_EQ_INT(ts->server->pool.inbound_used, 3);
    hog[3] = ft_ws(ts, 0);
    REQUIRE(hog[3]);
    REQUIRE(ts_send_frame(hog[3], 1, 0, first, FRAGMENT) == 0);
    ts_pump(ts, 20);
    CHECK_EQ_INT(ts->server->pool.inbound_used, 6);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 1);
    /* the holders finish their messages: answered, and the blocks come back */
    REQUIRE(ts_send_frame(hog[1], 0, 1, "  ]", 3) == 0);
    REQUIRE(ts_send_frame(hog[3], 0, 1, "]", 1) == 0);
    PX_EXPECT_EXACT(hog[1], reply);
    PX_EXPECT_EXACT(hog[3], reply);
    CHECK_EQ_INT(ts->server->pool.inbound_used, 0);
    CHECK_EQ_INT(vrs_get_stats(ts->server).pool_blocks_used, 0);
    CHECK(px_quiet(hog[1]));
    CHECK(ft_finish(ts, a, b, hog[1], hog[2], hog[3], NULL));
}

/* ---------------------------------------------------------------------------------------------
   Clients that vanish
   ------------------------------------------------------------------------------------------- */

/* A relay peer that ends without a close frame, four ways: its TCP connection closes after half
   a frame, it resets, it half-closes (shutdown(SHUT_WR)), or it resets with bytes queued both
   ways. The server notices at once, on_close reports 1006 and the room hears peerLeft. A client
   that vanishes during its handshake leaves nothing behind and no on_close. */
TEST(faults, vanishing_clients) {
    static const char *const ways[] = {"closed mid-frame", "reset", "half-closed", "reset with bytes queued"};
    static const unsigned char half_frame[5] = {0x81, 0x80 | 60, 1, 2, 3};
    ts_server *ts = px_server_new();
    ts_client *observer, *v, *h;
    char ido[37], idv[37], big[1100];
    int way, i;
    REQUIRE(ts);
    ts->desc.idle_timeout_ms = 10000;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));
    observer = ft_ws(ts, 0);
    REQUIRE(observer);
    REQUIRE(px_join(observer, "room:v", "1"));
    REQUIRE(px_relay_join(observer, "1", "room:v", "\"observer\"", ido, NULL, 0));
    memset(big, 0, sizeof big);
    big[0] = '"';
    memset(big + 1, 'q', 1000);
    big[1001] = '"';
    for (way = 0; way < 4; way++) {
        vrs_conn handle;
        int closes = ts->close_count, resets = ts->log_counts[VRS_LOG_CONNECTION_RESET];
        v = ft_ws(ts, way == 3 ? 2048 : 0);
        REQUIRE(v);
        handle = v->conn;
        REQUIRE(px_join(v, "room:v", "1"));
        REQUIRE(px_relay_join(v, "1", "room:v", "null", idv, NULL, 0));
        REQUIRE(ft_event_of_type(observer, "room:v", "peerJoined", NULL, 0));
        switch (way) {
        case 0: { /* the first fragment of a message (held in pool blocks), then half a frame */
            static char fragment[6000];
            static const unsigned char continuation_cut[4] = {0x80, 0x80 | 60, 1, 2}; /* mask cut short */
            memset(fragment, 'f', sizeof fragment);
            REQUIRE(ts_send_frame(v, 1, 0, fragment, sizeof fragment) == 0);
            ts_pump(ts, 20);
            CHECK(ts->server->pool.inbound_used >= 2);
            REQUIRE(ts_send_raw(v, continuation_cut, sizeof continuation_cut) == 0);
            ts_pump(ts, 10);
            ts_client_free(v);
            break;
        }
        case 1:
            ft_reset(v);
            break;
        case 2:
            REQUIRE(shutdown(v->fd, SHUT_WR) == 0);
            CHECK(ts_wait_eof(v, FT_WAIT_MS)); /* the server ends its side too */
            CHECK_EQ_INT(v->discarded, 0);     /* and sends nothing first */
            ts_client_free(v);
            break;
        default:
            for (i = 0; i < 60; i++) REQUIRE(ft_custom(observer, "1", "room:v", idv, big) == 0);
            ts_pump(ts, 30);
            REQUIRE(ts_send_raw(v, half_frame, sizeof half_frame) == 0);
            ts_pump(ts, 10);
            ft_reset(v);
            break;
        }
        if (!ts_wait_count(ts, &ts->close_count, closes + 1, FT_WAIT_MS)) VRS_TEST_FAIL("%s: no on_close", ways[way]);
        if (ts_close_code_of(ts, handle) != 1006)
            VRS_TEST_FAIL("%s: on_close reported %d, expected 1006", ways[way], ts_close_code_of(ts, handle));
        if (ts->log_counts[VRS_LOG_CONNECTION_RESET] != resets + 1)
            VRS_TEST_FAIL("%s: CONNECTION_RESET not logged once", ways[way]);
        if (!ft_peer_left(observer, "room:v", idv)) VRS_TEST_FAIL("%s: the room did not hear peerLeft", ways[way]);
        CHECK_EQ_INT(ts->server->channel_count, 1);
        CHECK_EQ_INT(vrs_room_peer_count(ts->server, vrs_find_room(ts->server, "v")), 1);
        CHECK_EQ_INT(ts->server->pool.inbound_used, 0);
        CHECK_EQ_INT(vrs_get_stats(ts->server).pool_blocks_used, 0);
    }
    CHECK(px_quiet(observer));
    /* during the handshake: half a request, then gone */
    h = ts_client_connect(ts);
    REQUIRE(h);
    REQUIRE(ts_send_str(h, ft_half_head) == 0);
    ts_pump(ts, 10);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 2);
    ft_reset(h);
    {
        int64_t deadline = ts_now_ms() + FT_WAIT_MS;
        while (vrs_get_stats(ts->server).connections > 1 && ts_now_ms() < deadline) ts_step(ts, 1);
    }
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);
    CHECK_EQ_INT(ts->close_count, 4); /* nothing for a connection that never opened */
    CHECK_EQ_INT(ts->open_count, 5);
    CHECK(ft_finish(ts, observer, NULL));
}

/* ---------------------------------------------------------------------------------------------
   Churn: a bounded random script over ~20 clients
   ------------------------------------------------------------------------------------------- */

#define FT_CH_CLIENTS 20
#define FT_CH_ROOMS 5
#define FT_CH_OPS 3000

typedef struct ft_peer {
    ts_client *c;
    int jr[FT_CH_ROOMS];         /* join_ref of its channel on room:c<k>; 0 when not joined */
    int relay[FT_CH_ROOMS];      /* that channel joined the relay */
    char id[FT_CH_ROOMS][37];    /* and got this peer id */
    long expected, received;     /* relay pushes caused by other peers */
    long pongs_expected, pongs;  /* answers to our pings */
    long unexpected;             /* frames nothing explains */
} ft_peer;

static ft_peer ft_peers[FT_CH_CLIENTS];
static uint32_t ft_seed;
static ts_server *ft_churn_ts;

static uint32_t ft_rand(uint32_t n) {
    ft_seed = ft_seed * 1664525u + 1013904223u;
    return (ft_seed >> 8) % n;
}

static void ft_topic(char *out, int k) { snprintf(out, 16, "room:c%d", k); }

/* Every other peer whose channel on room k joined the relay hears one more push. */
static void ft_expect_others(const ft_peer *p, int k) {
    int i;
    for (i = 0; i < FT_CH_CLIENTS; i++) {
        ft_peer *q = &ft_peers[i];
        if (q != p && q->c && q->jr[k] && q->relay[k]) q->expected++;
    }
}

/* What a frame the current op did not wait for is: a relay push from another peer counts as
   received; anything else is unexpected. */
static void ft_account(ft_peer *p, const char *text, long n, int opcode) {
    static vrs__message m;
    vrs__json_slice data;
    char e[PX_TEXT], type[32];
    memset(&m, 0, sizeof m);
    if (opcode == 10) {
        p->pongs++;
        return;
    }
    if (opcode == 1 && n >= 0 && vrs__decode_v2(text, (size_t)n, &m) && strcmp(m.event, "mediaEvent") == 0 &&
        vrs__json_is_null(m.ref) && vrs__json_object_get(m.payload, "data", &data) &&
        vrs__json_kind_of(data) == VRS__JSON_STRING && vrs__json_string_decode(data, e, sizeof e) > 0 &&
        px_field_string(e, "type", type, sizeof type) &&
        (strcmp(type, "peerJoined") == 0 || strcmp(type, "peerLeft") == 0 || strcmp(type, "peerUpdated") == 0 ||
         strcmp(type, "custom") == 0)) {
        p->received++;
        return;
    }
    if (p->unexpected++ < 5)
        fprintf(stderr, "    churn: unexpected frame (opcode %d): %.300s\n", opcode, opcode == 1 ? text : "");
}

enum { FT_AWAIT_REPLY, FT_AWAIT_CLOSE, FT_AWAIT_RELAY };

/* Reads frames until the one awaited, accounting for every other. REPLY: phx_reply with ref
   `what` (its status into out). CLOSE: phx_close on topic with join_ref `what`. RELAY: a relay
   push on topic of type `what` (E into out). */
static int ft_await(ft_peer *p, int kind, const char *what, const char *topic, char *out, size_t capacity) {
    static vrs__message m;
    char text[PX_TEXT], quoted[64];
    int64_t deadline = ts_now_ms() + FT_WAIT_MS;
    snprintf(quoted, sizeof quoted, "\"%s\"", what);
    while (ts_now_ms() < deadline) {
        int op;
        long n = px_recv(p->c, text, sizeof text, &op);
        if (n < 0) break;
        memset(&m, 0, sizeof m);
        if (op == 1 && vrs__decode_v2(text, (size_t)n, &m)) {
            if (kind == FT_AWAIT_REPLY && strcmp(m.event, "phx_reply") == 0 && px_slice_is(m.ref, quoted)) {
                if (out && !px_field_string(text, "4.status", out, capacity)) out[0] = '\0';
                return 1;
            }
            if (kind == FT_AWAIT_CLOSE && strcmp(m.event, "phx_close") == 0 && strcmp(m.topic, topic) == 0 &&
                px_slice_is(m.join_ref, quoted))
                return 1;
            if (kind == FT_AWAIT_RELAY && strcmp(m.event, "mediaEvent") == 0 && strcmp(m.topic, topic) == 0) {
                vrs__json_slice data;
                char e[PX_TEXT], type[32];
                if (vrs__json_object_get(m.payload, "data", &data) && vrs__json_kind_of(data) == VRS__JSON_STRING &&
                    vrs__json_string_decode(data, e, sizeof e) > 0 && px_field_string(e, "type", type, sizeof type) &&
                    strcmp(type, what) == 0) {
                    if (out) snprintf(out, capacity, "%s", e);
                    return 1;
                }
            }
        }
        ft_account(p, text, n, op);
    }
    fprintf(stderr, "    churn: awaited %s %s on %s in vain\n",
            kind == FT_AWAIT_REPLY ? "reply" : kind == FT_AWAIT_CLOSE ? "phx_close" : "relay event", what,
            topic ? topic : "-");
    return 0;
}

/* Reads every whole frame already there. */
static void ft_drain(ft_peer *p) {
    ts_frame f;
    while (p->c && ts_read_frame(p->c, &f, 0) == 1) {
        char text[PX_TEXT];
        size_t n = f.length < sizeof text - 1 ? f.length : sizeof text - 1;
        memcpy(text, f.payload, n);
        text[n] = '\0';
        ft_account(p, text, (long)f.length, f.opcode);
    }
}

/* A heartbeat, answered: the server has handled everything this client sent before it. */
static int ft_sync(ft_peer *p) {
    char ref[16], status[16];
    snprintf(ref, sizeof ref, "%d", ++ft_ref);
    if (px_sendf(p->c, "[null,\"%s\",\"phoenix\",\"heartbeat\",{}]", ref) != 0) return 0;
    return ft_await(p, FT_AWAIT_REPLY, ref, NULL, status, sizeof status) && strcmp(status, "ok") == 0;
}

/* A joined room of p (relay-joined when asked), chosen at random; -1 when none. */
static int ft_pick_room(const ft_peer *p, int relay) {
    int start = (int)ft_rand(FT_CH_ROOMS), i;
    for (i = 0; i < FT_CH_ROOMS; i++) {
        int k = (start + i) % FT_CH_ROOMS;
        if (p->jr[k] && (!relay || p->relay[k])) return k;
    }
    return -1;
}

/* The peer leaves in one of three ways; the others hear peerLeft for each relay channel. */
static int ft_churn_disconnect(ft_peer *p, int how) {
    int closes = ft_churn_ts->close_count, k, ok = 1;
    if (how == 0) {
        ts_client_free(p->c);
    } else if (how == 1) {
        ft_reset(p->c);
    } else {
        /* how 2: a close handshake; how 3: a violation the server closes for */
        ts_frame f;
        int64_t deadline = ts_now_ms() + FT_WAIT_MS;
        int expected_code = 1000, violation = (int)ft_rand(4);
        ft_drain(p);
        if (how == 2) {
            ok = ts_send_close(p->c, 1000, "bye") == 0;
        } else if (violation == 0) {
            expected_code = 1007;
            ok = ts_send_text(p->c, "[\"1\",\"1\",\"room:c0\",\"phx_join\"") == 0; /* not JSON */
        } else if (violation == 1) {
            expected_code = 1007;
            ok = ts_send_frame(p->c, 1, 1, "[\"\xC3\x28\"]", 5) == 0; /* not UTF-8 */
        } else {
            ts_frame_spec spec;
            memset(&spec, 0, sizeof spec);
            spec.opcode = 1;
            if (violation == 2) {
                expected_code = 1009; /* a header announcing more than max_message_size */
                spec.declare_length = 1;
                spec.declared_length = 20000;
            } else {
                expected_code = 1002;
                spec.unmasked = 1;
            }
            ok = ts_send_frame_spec(p->c, &spec, "[]", violation == 2 ? 0 : 2) == 0;
        }
        while (ok) {
            int64_t left = deadline - ts_now_ms();
            if (ts_read_frame(p->c, &f, left > 0 ? (int)left : 0) != 1) {
                ok = 0;
                break;
            }
            if (f.opcode == 8) {
                ok = f.close_code == expected_code;
                if (!ok) fprintf(stderr, "    churn: closed with %d, expected %d\n", f.close_code, expected_code);
                break;
            }
            {
                char text[PX_TEXT];
                size_t n = f.length < sizeof text - 1 ? f.length : sizeof text - 1;
                memcpy(text, f.payload, n);
                text[n] = '\0';
                ft_account(p, text, (long)f.length, f.opcode);
            }
        }
        if (!ok) fprintf(stderr, "    churn: no close frame\n");
        ts_client_free(p->c);
    }
    p->c = NULL;
    if (!ts_wait_count(ft_churn_ts, &ft_churn_ts->close_count, closes + 1, FT_WAIT_MS)) ok = 0;
    for (k = 0; k < FT_CH_ROOMS; k++) {
        if (p->jr[k] && p->relay[k]) ft_expect_others(p, k);
        p->jr[k] = p->relay[k] = 0;
    }
    p->expected = p->received = p->pongs = p->pongs_expected = 0;
    return ok;
}

static int ft_churn_join(ft_peer *p, int k) {
    char topic[16], jr[16], old[16], status[16];
    ft_topic(topic, k);
    snprintf(jr, sizeof jr, "%d", ++ft_ref);
    if (px_sendf(p->c, "[\"%s\",\"%s\",\"%s\",\"phx_join\",{}]", jr, jr, topic) != 0) return 0;
    if (!ft_await(p, FT_AWAIT_REPLY, jr, topic, status, sizeof status) || strcmp(status, "ok") != 0) return 0;
    if (p->jr[k]) { /* a duplicate join: the old channel ends */
        snprintf(old, sizeof old, "%d", p->jr[k]);
        if (!ft_await(p, FT_AWAIT_CLOSE, old, topic, NULL, 0)) return 0;
        if (p->relay[k]) ft_expect_others(p, k);
    }
    p->jr[k] = atoi(jr);
    p->relay[k] = 0;
    return 1;
}

static int ft_churn_leave(ft_peer *p) {
    char topic[16], jr[16], ref[16], status[16];
    int k = ft_pick_room(p, 0);
    snprintf(ref, sizeof ref, "%d", ++ft_ref);
    if (k < 0) { /* leaving a topic not joined: ok, and no phx_close */
        ft_topic(topic, (int)ft_rand(FT_CH_ROOMS));
        if (px_sendf(p->c, "[null,\"%s\",\"%s\",\"phx_leave\",{}]", ref, topic) != 0) return 0;
        return ft_await(p, FT_AWAIT_REPLY, ref, topic, status, sizeof status) && strcmp(status, "ok") == 0 &&
               ft_sync(p);
    }
    ft_topic(topic, k);
    snprintf(jr, sizeof jr, "%d", p->jr[k]);
    if (px_sendf(p->c, "[\"%s\",\"%s\",\"%s\",\"phx_leave\",{}]", jr, ref, topic) != 0) return 0;
    if (!ft_await(p, FT_AWAIT_REPLY, ref, topic, status, sizeof status) || strcmp(status, "ok") != 0) return 0;
    if (!ft_await(p, FT_AWAIT_CLOSE, jr, topic, NULL, 0)) return 0;
    if (p->relay[k]) ft_expect_others(p, k);
    p->jr[k] = p->relay[k] = 0;
    return 1;
}

static int ft_churn_relay_join(ft_peer *p, int op) {
    char topic[16], jr[16], e[PX_TEXT], accepted[PX_TEXT], list[PX_TEXT], id[64];
    int k = ft_pick_room(p, 0), listed = 0, model = 0, i;
    vrs__json_cursor cursor;
    vrs__json_slice element;
    if (k < 0) return ft_churn_join(p, (int)ft_rand(FT_CH_ROOMS));
    ft_topic(topic, k);
    snprintf(jr, sizeof jr, "%d", p->jr[k]);
    snprintf(e, sizeof e, "{\"type\":\"join\",\"data\":{\"metadata\":{\"op\":%d}}}", op);
    if (px_media(p->c, jr, topic, e) != 0) return 0;
    if (p->relay[k]) /* a second relay join: an error event, nothing else */
        return ft_await(p, FT_AWAIT_RELAY, "error", topic, NULL, 0) && ft_sync(p);
    if (!ft_await(p, FT_AWAIT_RELAY, "peerAccepted", topic, accepted, sizeof accepted)) return 0;
    if (!px_field_string(accepted, "data.id", id, sizeof id) || !px_is_uuid_v4(id)) return 0;
    if (!px_field(accepted, "data.peersInRoom", list, sizeof list)) return 0;
    vrs__json_enter(vrs__slice(list, strlen(list)), &cursor);
    while (vrs__json_next_element(&cursor, &element)) listed++;
    for (i = 0; i < FT_CH_CLIENTS; i++)
        if (&ft_peers[i] != p && ft_peers[i].c && ft_peers[i].jr[k] && ft_peers[i].relay[k]) model++;
    if (listed != model) {
        fprintf(stderr, "    churn: peerAccepted lists %d peers, the model has %d: %s\n", listed, model, accepted);
        return 0;
    }
    ft_expect_others(p, k);
    p->relay[k] = 1;
    memcpy(p->id[k], id, 37); /* a UUID: 36 characters and the NUL */
    return 1;
}

static int ft_churn_custom(ft_peer *p, int op) {
    char topic[16], jr[16], data[32];
    int k = ft_pick_room(p, 1), mode = (int)ft_rand(4), i, start;
    if (k < 0) return ft_churn_relay_join(p, op);
    ft_topic(topic, k);
    snprintf(jr, sizeof jr, "%d", p->jr[k]);
    snprintf(data, sizeof data, "{\"op\":%d}", op);
    start = (int)ft_rand(FT_CH_CLIENTS);
    if (mode == 2 || mode == 3) {
        /* to one peer: in this room (it hears), or in another room (the sender gets an error) */
        for (i = 0; i < FT_CH_CLIENTS; i++) {
            ft_peer *q = &ft_peers[(start + i) % FT_CH_CLIENTS];
            int j = mode == 2 ? k : (k + 1 + (int)ft_rand(FT_CH_ROOMS - 1)) % FT_CH_ROOMS;
            if (q == p || !q->c || !q->jr[j] || !q->relay[j]) continue;
            if (mode == 3) { /* q's channel in room j is a peer of room j, not of room k */
                if (ft_custom(p->c, jr, topic, q->id[j], data) != 0) return 0;
                return ft_await(p, FT_AWAIT_RELAY, "error", topic, NULL, 0) && ft_sync(p);
            }
            if (ft_custom(p->c, jr, topic, q->id[j], data) != 0) return 0;
            q->expected++;
            return ft_sync(p);
        }
    }
    if (ft_custom(p->c, jr, topic, NULL, data) != 0) return 0;
    ft_expect_others(p, k);
    return ft_sync(p);
}

/* A custom event to the room in three fragments, with a ping between them: the pong comes at
   once, the event whole. */
static int ft_churn_fragmented(ft_peer *p, int op) {
    char topic[16], e[200], d[400], text[800], ping[16];
    vrs__json_writer w;
    size_t n, third;
    int k = ft_pick_room(p, 1);
    if (k < 0) return ft_churn_relay_join(p, op);
    ft_topic(topic, k);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"data\":{\"fragmented\":%d}}", op);
    vrs__jw_init(&w, d, sizeof d - 1);
    vrs__jw_string(&w, e, strlen(e));
    d[w.length] = '\0';
    n = (size_t)snprintf(text, sizeof text, "[\"%d\",\"f%d\",\"%s\",\"mediaEvent\",{\"data\":%s}]", p->jr[k], op,
                         topic, d);
    third = n / 3;
    snprintf(ping, sizeof ping, "p%d", op);
    if (ts_send_frame(p->c, 1, 0, text, third) != 0 || ts_send_frame(p->c, 9, 1, ping, strlen(ping)) != 0 ||
        ts_send_frame(p->c, 0, 0, text + third, third) != 0 ||
        ts_send_frame(p->c, 0, 1, text + 2 * third, n - 2 * third) != 0)
        return 0;
    p->pongs_expected++;
    ft_expect_others(p, k);
    return ft_sync(p);
}

static int ft_churn_relay_leave(ft_peer *p) {
    char topic[16], jr[16];
    int k = ft_pick_room(p, 1);
    if (k < 0) { /* not in the relay: an error event */
        k = ft_pick_room(p, 0);
        if (k < 0) return ft_sync(p);
        ft_topic(topic, k);
        snprintf(jr, sizeof jr, "%d", p->jr[k]);
        if (px_media(p->c, jr, topic, "{\"type\":\"leave\"}") != 0) return 0;
        return ft_await(p, FT_AWAIT_RELAY, "error", topic, NULL, 0) && ft_sync(p);
    }
    ft_topic(topic, k);
    snprintf(jr, sizeof jr, "%d", p->jr[k]);
    if (px_media(p->c, jr, topic, "{\"type\":\"leave\"}") != 0) return 0;
    ft_expect_others(p, k);
    p->relay[k] = 0;
    return ft_sync(p);
}

static int ft_churn_media(ft_peer *p, int op) {
    char topic[16], jr[16], e[200];
    int k = ft_pick_room(p, 0);
    if (k < 0) return ft_sync(p);
    ft_topic(topic, k);
    snprintf(jr, sizeof jr, "%d", p->jr[k]);
    if (!p->relay[k] || ft_rand(3) == 0) { /* an event the relay does not know: an error event */
        if (px_media(p->c, jr, topic, "{\"type\":\"tracksAdded\",\"data\":{}}") != 0) return 0;
        return ft_await(p, FT_AWAIT_RELAY, "error", topic, NULL, 0) && ft_sync(p);
    }
    snprintf(e, sizeof e, "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":{\"op\":%d}}}", op);
    if (px_media(p->c, jr, topic, e) != 0) return 0;
    ft_expect_others(p, k);
    return ft_sync(p);
}

/* Everyone has read what was sent to them, and the server's tables match the model. */
static int ft_churn_checkpoint(ts_server *ts, int op) {
    int i, k, channels = 0, rooms = 0, relay = 0, server_relay = 0, ok = 1;
    int64_t deadline = ts_now_ms() + FT_WAIT_MS;
    for (;;) {
        int behind = 0;
        for (i = 0; i < FT_CH_CLIENTS; i++) {
            ft_drain(&ft_peers[i]);
            if (ft_peers[i].c && ft_peers[i].received < ft_peers[i].expected) behind = 1;
        }
        if (!behind || ts_now_ms() >= deadline) break;
        ts_step(ts, 1);
    }
    for (i = 0; i < FT_CH_CLIENTS; i++) {
        ft_peer *p = &ft_peers[i];
        if (!p->c) continue;
        if (p->received != p->expected || p->unexpected || p->pongs != p->pongs_expected) {
            fprintf(stderr, "    churn op %d: client %d received %ld pushes, expected %ld; %ld unexpected; %ld/%ld pongs\n",
                    op, i, p->received, p->expected, p->unexpected, p->pongs, p->pongs_expected);
            ok = 0;
        }
        for (k = 0; k < FT_CH_ROOMS; k++) {
            if (p->jr[k]) channels++;
            if (p->jr[k] && p->relay[k]) {
                vrs_peer peer = vrs_find_peer(ts->server, p->id[k]);
                char name[16];
                relay++;
                snprintf(name, sizeof name, "c%d", k);
                if (peer.id == 0 || vrs_peer_room(ts->server, peer).id != vrs_find_room(ts->server, name).id) {
                    fprintf(stderr, "    churn op %d: peer %s not found in room %s\n", op, p->id[k], name);
                    ok = 0;
                }
            }
        }
    }
    for (k = 0; k < FT_CH_ROOMS; k++) {
        char name[16];
        int members = 0;
        for (i = 0; i < FT_CH_CLIENTS; i++)
            if (ft_peers[i].c && ft_peers[i].jr[k]) members++;
        snprintf(name, sizeof name, "c%d", k);
        if (members) rooms++;
        if (vrs_room_peer_count(ts->server, vrs_find_room(ts->server, name)) != members) {
            fprintf(stderr, "    churn op %d: room %s has %d peers, the model %d\n", op, name,
                    vrs_room_peer_count(ts->server, vrs_find_room(ts->server, name)), members);
            ok = 0;
        }
    }
    for (i = 0; i < ts->server->desc.max_channels; i++)
        if (ts->server->channels[i].in_use && ts->server->channels[i].relay_joined) server_relay++;
    if (channels != ts->server->channel_count || rooms != ts->server->room_count || relay != server_relay) {
        fprintf(stderr, "    churn op %d: server has %d channels, %d rooms, %d relay peers; the model %d, %d, %d\n", op,
                ts->server->channel_count, ts->server->room_count, server_relay, channels, rooms, relay);
        ok = 0;
    }
    return ok;
}

TEST(faults, churn) {
    ts_server *ts = px_server_new();
    int op, i, failures = 0, counts[13];
    vrs_stats s;
    REQUIRE(ts);
    ts->desc.max_connections = 32;
    ts->desc.max_channels = 128;
    ts->desc.max_message_size = 16384;
    ts->desc.idle_timeout_ms = 30000;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));
    ft_churn_ts = ts;
    memset(ft_peers, 0, sizeof ft_peers);
    memset(counts, 0, sizeof counts);
    ft_seed = 20240611u;
    for (op = 1; op <= FT_CH_OPS && failures < 5; op++) {
        ft_peer *p = &ft_peers[ft_rand(FT_CH_CLIENTS)];
        int what = (int)ft_rand(100), ok;
        if (!p->c) {
            p->c = ft_ws(ts, 0);
            ok = p->c != NULL;
            counts[0]++;
        } else if (what < 18) {
            ok = ft_churn_join(p, (int)ft_rand(FT_CH_ROOMS));
            counts[1]++;
        } else if (what < 25) {
            ok = ft_churn_leave(p);
            counts[2]++;
        } else if (what < 38) {
            ok = ft_churn_relay_join(p, op);
            counts[3]++;
        } else if (what < 52) {
            ok = ft_churn_custom(p, op);
            counts[4]++;
        } else if (what < 58) {
            ok = ft_churn_fragmented(p, op);
            counts[5]++;
        } else if (what < 63) {
            ok = ft_churn_relay_leave(p);
            counts[6]++;
        } else if (what < 70) {
            ok = ft_churn_media(p, op);
            counts[7]++;
        } else if (what < 79) {
            ok = ft_sync(p);
            counts[8]++;
        } else if (what < 85) {
            ok = ft_churn_disconnect(p, 0);
            counts[9]++;
        } else if (what < 90) {
            ok = ft_churn_disconnect(p, 1);
            counts[10]++;
        } else if (what < 94) {
            ok = ft_churn_disconnect(p, 2);
            counts[11]++;
        } else {
            ok = ft_churn_disconnect(p, 3);
            counts[12]++;
        }
        if (!ok) {
            VRS_TEST_FAIL("churn op %d (kind %d) failed", op, what);
            failures++;
        }
        if (op % 25 == 0)
            for (i = 0; i < FT_CH_CLIENTS; i++) ft_drain(&ft_peers[i]);
        if (op % 250 == 0 && !ft_churn_checkpoint(ts, op)) {
            VRS_TEST_FAIL("churn checkpoint at op %d", op);
            failures++;
        }
    }
    CHECK(ft_churn_checkpoint(ts, op));
    for (i = 0; i < 13; i++)
        if (counts[i] < 20) VRS_TEST_FAIL("churn: operation kind %d ran only %d times", i, counts[i]);
    CHECK(ts->log_counts[VRS_LOG_CONNECTION_RESET] > 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 0);
    /* everyone goes, each in one of the three ways */
    for (i = 0; i < FT_CH_CLIENTS; i++)
        if (ft_peers[i].c) CHECK(ft_churn_disconnect(&ft_peers[i], i % 4));
    CHECK(ts_wait_drained(ts, FT_WAIT_MS));
    CHECK_EQ_INT(ts->close_count, ts->open_count);
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT(s.pool_blocks_used, 0);
    CHECK_EQ_INT(ts->server->pool.free_count, ts->server->pool.block_count);
    CHECK(ft_finish(ts, NULL));
}

/* ---------------------------------------------------------------------------------------------
   Tables at their limits, refused again and again
   ------------------------------------------------------------------------------------------- */

/* Joins `topic` on c: returns the join_ref (> 0) on ok, 0 on an error reply (its reason into
   reason), -1 when no proper reply came. */
static int ft_join(ts_client *c, const char *topic, char *reason, size_t capacity) {
    char got[PX_TEXT], expected_head[200], status[16];
    int op, jr = ++ft_ref;
    long n;
    reason[0] = '\0';
    if (px_sendf(c, "[\"%d\",\"%d\",\"%s\",\"phx_join\",{}]", jr, jr, topic) != 0) return -1;
    n = px_recv(c, got, sizeof got, &op);
    snprintf(expected_head, sizeof expected_head, "[\"%d\",\"%d\",\"%s\",\"phx_reply\",", jr, jr, topic);
    if (n < 0 || op != 1 || strncmp(got, expected_head, strlen(expected_head)) != 0 ||
        !px_field_string(got, "4.status", status, sizeof status)) {
        fprintf(stderr, "    ft_join %s: %s\n", topic, got);
        return -1;
    }
    if (strcmp(status, "ok") == 0) return jr;
    if (!px_field_string(got, "4.response.reason", reason, capacity)) return -1;
    return 0;
}

static int ft_leave(ts_client *c, const char *topic, int jr) {
    char expected[300];
    int ref = ++ft_ref, ok = 1;
    char got[PX_TEXT];
    int op;
    if (px_sendf(c, "[\"%d\",\"%d\",\"%s\",\"phx_leave\",{}]", jr, ref, topic) != 0) return 0;
    snprintf(expected, sizeof expected, "[\"%d\",\"%d\",\"%s\",\"phx_reply\",%s]", jr, ref, topic, PX_OK);
    ok &= px_recv(c, got, sizeof got, &op) > 0 && strcmp(got, expected) == 0;
    snprintf(expected, sizeof expected, "[\"%d\",\"%d\",\"%s\",\"phx_close\",{}]", jr, jr, topic);
    ok &= px_recv(c, got, sizeof got, &op) > 0 && strcmp(got, expected) == 0;
    return ok;
}

typedef struct ft_joined {
    ts_client *c;
    char topic[32];
    int jr;
} ft_joined;

/* Joins (client, topic) pairs in order until the first refusal, which must give `reason`; then
   `refusals - 1` more refused joins (of `refused_topic` with %d, by the refused client), each
   with that reason; then leaves everything. Returns how many joins were admitted, -1 when an
   answer was not the documented one. */
static int ft_admitted(ts_server *ts, ts_client *const *clients, const char *const *topics, int pairs,
                       const char *reason, const char *refused_topic, int refusals) {
    ft_joined joined[16];
    char got_reason[128], topic[32];
    int count = 0, i, refused_by = -1, wrong = 0;
    for (i = 0; i < pairs && i < 16; i++) {
        int jr = ft_join(clients[i], topics[i], got_reason, sizeof got_reason);
        if (jr < 0) return -1;
        if (jr == 0) {
            if (strcmp(got_reason, reason) != 0) {
                fprintf(stderr, "    refused with \"%s\", expected \"%s\"\n", got_reason, reason);
                wrong++;
            }
            refused_by = i;
            break;
        }
        joined[count].c = clients[i];
        snprintf(joined[count].topic, sizeof joined[count].topic, "%s", topics[i]);
        joined[count].jr = jr;
        count++;
    }
    if (refused_by < 0) {
        fprintf(stderr, "    every join was admitted; expected \"%s\"\n", reason);
        wrong++;
    } else {
        for (i = 1; i < refusals; i++) {
            snprintf(topic, sizeof topic, refused_topic, i);
            if (ft_join(clients[refused_by], topic, got_reason, sizeof got_reason) != 0 ||
                strcmp(got_reason, reason) != 0) {
                if (wrong++ < 3) fprintf(stderr, "    refusal %d: \"%s\", expected \"%s\"\n", i, got_reason, reason);
            }
        }
    }
    for (i = count - 1; i >= 0; i--)
        if (!ft_leave(joined[i].c, joined[i].topic, joined[i].jr)) wrong++;
    if (ts->server->channel_count != 0 || ts->server->room_count != 0) {
        fprintf(stderr, "    after leaving: %d channels, %d rooms\n", ts->server->channel_count, ts->server->room_count);
        wrong++;
    }
    return wrong ? -1 : count;
}

typedef struct ft_capacity {
    int rooms, peers, per_socket, channels;
} ft_capacity;

/* max_rooms 3, max_peers_per_room 2, max_channels_per_socket 3, max_channels 6. */
static ft_capacity ft_measure(ts_server *ts, ts_client *a, ts_client *b, ts_client *c, int refusals) {
    ft_capacity cap;
    ts_client *const rooms_c[] = {a, b, c, a, b, c};
    const char *const rooms_t[] = {"room:r0", "room:r1", "room:r2", "room:r3", "room:r4", "room:r5"};
    ts_client *const peers_c[] = {a, b, c};
    const char *const peers_t[] = {"room:p", "room:p", "room:p"};
    ts_client *const socket_c[] = {a, a, a, a, a};
    const char *const socket_t[] = {"room:q0", "room:q1", "room:q2", "room:q3", "room:q4"};
    ts_client *const all_c[] = {a, a, a, b, b, b, c, c};
    const char *const all_t[] = {"room:s0", "room:s1", "room:s2", "room:s0", "room:s1", "room:s2", "room:s0", "room:s1"};
    cap.rooms = ft_admitted(ts, rooms_c, rooms_t, 6, "failed to start room", "room:rx%d", refusals);
    cap.peers = ft_admitted(ts, peers_c, peers_t, 3, "room is full", "room:p", refusals);
    cap.per_socket = ft_admitted(ts, socket_c, socket_t, 5, "too many channels joined", "room:qx%d", refusals);
    cap.channels = ft_admitted(ts, all_c, all_t, 8, "server is full", "room:sx%d", refusals);
    return cap;
}

TEST(faults, limits_refused_many_times_without_leaking) {
    ts_server *ts = px_server_new();
    ts_client *a, *b, *c;
    ft_capacity before, during, after;
    REQUIRE(ts);
    ts->desc.max_rooms = 3;
    ts->desc.max_peers_per_room = 2;
    ts->desc.max_channels_per_socket = 3;
    ts->desc.max_channels = 6;
    ts->desc.idle_timeout_ms = 30000;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));
    a = ft_ws(ts, 0);
    b = ft_ws(ts, 0);
    c = ft_ws(ts, 0);
    REQUIRE(a && b && c);
    before = ft_measure(ts, a, b, c, 1);
    CHECK_EQ_INT(before.rooms, 3);
    CHECK_EQ_INT(before.peers, 2);
    CHECK_EQ_INT(before.per_socket, 3);
    CHECK_EQ_INT(before.channels, 6);
    during = ft_measure(ts, a, b, c, 200);
    after = ft_measure(ts, a, b, c, 1);
    CHECK_EQ_INT(during.rooms, 3);
    CHECK_EQ_INT(during.peers, 2);
    CHECK_EQ_INT(during.per_socket, 3);
    CHECK_EQ_INT(during.channels, 6);
    CHECK_EQ_INT(after.rooms, 3);
    CHECK_EQ_INT(after.peers, 2);
    CHECK_EQ_INT(after.per_socket, 3);
    CHECK_EQ_INT(after.channels, 6);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_ROOM_TABLE_FULL], 202);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CHANNEL_TABLE_FULL], 202);
    CHECK_EQ_INT(ts->server->free_channel_count, 6);
    CHECK_EQ_INT(ts->server->free_room_count, 3);
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    CHECK(px_quiet(c));
    CHECK(ft_finish(ts, a, b, c, NULL));
}

/* Metadata one byte over max_metadata_size, 200 times on join and 200 times on update: the
   error event every time, nobody else hears, nothing stored; at the limit it is stored (in pool
   blocks: longer than a channel keeps inline) and comes back byte for byte. */
TEST(faults, metadata_too_large_many_times) {
    enum { LIMIT = 200 };
    ts_server *ts = px_server_new();
    ts_client *a, *b, *c;
    char fits[LIMIT + 1], over[LIMIT + 2], e[PX_TEXT], message[64], ida[37], idb[37], idc[37], field[PX_TEXT];
    int i, wrong = 0;
    REQUIRE(ts);
    ts->desc.max_metadata_size = LIMIT;
    ts->desc.idle_timeout_ms = 30000;
    REQUIRE(px_start(ts));
    /* JSON strings of exactly LIMIT and LIMIT + 1 bytes, quotes included */
    fits[0] = over[0] = '"';
    memset(fits + 1, 'm', LIMIT - 2);
    memset(over + 1, 'm', LIMIT - 1);
    fits[LIMIT - 1] = over[LIMIT] = '"';
    fits[LIMIT] = over[LIMIT + 1] = '\0';
    a = ft_ws(ts, 0);
    b = ft_ws(ts, 0);
    c = ft_ws(ts, 0);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:meta", "1"));
    REQUIRE(px_join(b, "room:meta", "1"));
    REQUIRE(px_join(c, "room:meta", "1"));
    REQUIRE(px_relay_join(b, "1", "room:meta", "null", idb, NULL, 0));
    for (i = 0; i < 200; i++) {
        snprintf(e, sizeof e, "{\"type\":\"join\",\"data\":{\"metadata\":%s}}", over);
        if (px_media(a, "1", "room:meta", e) != 0 || !ft_event_of_type(a, "room:meta", "error", field, sizeof field) ||
            !px_field_string(field, "data.message", message, sizeof message) || strcmp(message, "metadata too large") != 0)
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(px_quiet(b));
    CHECK_EQ_INT(vrs_get_stats(ts->server).pool_blocks_used, 0);
    REQUIRE(px_relay_join(a, "1", "room:meta", fits, ida, NULL, 0));
    CHECK(vrs_get_stats(ts->server).pool_blocks_used > 0);
    snprintf(e, sizeof e, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":%s}}}", ida, fits);
    PX_EXPECT_EVENT(b, "room:meta", e);
    wrong = 0;
    for (i = 0; i < 200; i++) {
        snprintf(e, sizeof e, "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":%s}}", over);
        if (px_media(a, "1", "room:meta", e) != 0 || !ft_event_of_type(a, "room:meta", "error", field, sizeof field) ||
            !px_field_string(field, "data.message", message, sizeof message) || strcmp(message, "metadata too large") != 0)
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(px_quiet(b));
    /* what c is told of a: the metadata as it was stored */
    REQUIRE(px_relay_join(c, "1", "room:meta", NULL, idc, field, sizeof field));
    snprintf(e, sizeof e, "%s", field);
    CHECK(px_field(e, "data.peersInRoom.1.metadata", field, sizeof field));
    CHECK_EQ_STR(field, fits);
    CHECK(ft_finish(ts, a, b, c, NULL));
}

/* ---------------------------------------------------------------------------------------------
   The host out of file descriptors
   ------------------------------------------------------------------------------------------- */

#ifndef _WIN32
static int ft_highest_fd(rlim_t limit) {
    int fd, highest = -1, end = limit > 65536 ? 65536 : (int)limit;
    for (fd = 0; fd < end; fd++)
        if (fcntl(fd, F_GETFD) != -1) highest = fd;
    return highest;
}

/* With RLIMIT_NOFILE lowered so that no descriptor is left, accept fails with EMFILE while
   clients are connecting: the server logs DESCRIPTOR_LIMIT, does not spin (little CPU over
   300 ms of vrs_step), keeps serving the open client, and once descriptors are back it accepts
   and serves the clients that waited in the backlog. Run through vrs_step, and through the
   host's own poll loop (vrs_poll_fds, poll, vrs_process). */
static void ft_out_of_file_descriptors(int use_poll_api) {
    enum { PENDING = 4, MAX_FILLERS = 4096 };
    struct rlimit saved, lowered;
    ts_server *ts = px_server_new();
    ts_client *early, *pending[PENDING + 1];
    static int fillers[MAX_FILLERS];
    int filler_count = 0, i, fd, filled_errno, logs;
    int64_t start, wall;
    double cpu;
    REQUIRE(ts);
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    ts->use_poll_api = use_poll_api;
    ts->desc.max_connections = 16;
    ts->desc.handshake_timeout_ms = 5000;
    ts->desc.idle_timeout_ms = 30000;
    ts->desc.close_timeout_ms = 300;
    REQUIRE(px_start(ts));
    early = ft_ws(ts, 0);
    REQUIRE(early);
    REQUIRE(px_join(early, "room:fd", "1"));
    /* clients connect (into the backlog) while the server is not stepped */
    for (i = 0; i < PENDING; i++) {
        pending[i] = ts_client_connect_to(NULL, "127.0.0.1", ts->port, 0);
        REQUIRE(pending[i]);
        pending[i]->ts = ts;
    }
    pending[PENDING] = NULL;
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);

    /* no descriptor left: every hole below the limit filled. The limit leaves room for at
       least one filler, which is handed back below for one more client's socket. */
    lowered = saved;
    lowered.rlim_cur = (rlim_t)ft_highest_fd(saved.rlim_cur) + 2;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
    while (filler_count < MAX_FILLERS && (fd = dup(early->fd)) >= 0) fillers[filler_count++] = fd;
    filled_errno = errno;
    if (filled_errno != EMFILE || filler_count == 0) {
        while (filler_count > 0) close(fillers[--filler_count]);
        setrlimit(RLIMIT_NOFILE, &saved);
        VRS_TEST_FAIL("could not use up the descriptors (%s)", strerror(filled_errno));
        CHECK(ft_finish(ts, early, pending[0], pending[1], pending[2], pending[3], NULL));
        return;
    }

    start = ts_now_ms();
    cpu = ft_cpu_ms();
    while (ts_now_ms() - start < 300) {
        if (use_poll_api) ts_step(ts, 100);
        else vrs_step(ts->server, 100);
    }
    cpu = ft_cpu_ms() - cpu;
    wall = ts_now_ms() - start;
    logs = ts->log_counts[VRS_LOG_DESCRIPTOR_LIMIT];
    CHECK(logs >= 1);
    if (logs > 8) VRS_TEST_FAIL("DESCRIPTOR_LIMIT logged %d times in %lld ms: accept is retried too often", logs, (long long)wall);
    if (cpu * 4 > (double)wall) VRS_TEST_FAIL("%.1f ms of CPU in %lld ms: the server spins", cpu, (long long)wall);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_ACCEPT_FAILED], 0);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);
    /* the open client is still served */
    CHECK(px_quiet(early));

    /* one more client connects meanwhile, with a descriptor handed back for its socket */
    close(fillers[--filler_count]);
    pending[PENDING] = ts_client_connect_to(NULL, "127.0.0.1", ts->port, 0);
    CHECK(pending[PENDING] != NULL);
    if (pending[PENDING]) pending[PENDING]->ts = ts;
    ts_pump(ts, 150);
    CHECK(ts->log_counts[VRS_LOG_DESCRIPTOR_LIMIT] > logs);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);

    /* descriptors come back: the waiting clients are accepted and served */
    while (filler_count > 0) close(fillers[--filler_count]);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    for (i = 0; i <= PENDING; i++) {
        ts_request q;
        ts_response r;
        char topic[32];
        if (!pending[i]) continue;
        memset(&q, 0, sizeof q);
        q.target = FT_V2;
        if (ts_handshake(pending[i], &q, &r) != 101) {
            VRS_TEST_FAIL("pending client %d: no 101 after the limit was lifted (%d)", i, r.status);
            continue;
        }
        snprintf(topic, sizeof topic, "room:fd%d", i);
        CHECK(px_join(pending[i], topic, "1"));
        CHECK(px_quiet(pending[i]));
    }
    CHECK(px_quiet(early));
    CHECK_EQ_INT(ts->server->room_count, PENDING + 2);
    CHECK(ft_finish(ts, early, pending[0], pending[1], pending[2], pending[3],
                    pending[4] ? pending[4] : NULL, NULL));
}

#else
/* Windows has no per-process descriptor limit that a test could lower (RLIMIT_NOFILE), and
   Winsock's accept reports exhaustion (WSAEMFILE, WSAENOBUFS) only when the system runs out. */
static void ft_out_of_file_descriptors(int use_poll_api) {
    (void)use_poll_api;
    SKIP("Windows has no descriptor limit (RLIMIT_NOFILE) a test can lower to make accept fail");
}
#endif

TEST(faults, out_of_file_descriptors) { ft_out_of_file_descriptors(0); }

TEST(faults, out_of_file_descriptors_host_poll_loop) { ft_out_of_file_descriptors(1); }

/* ---------------------------------------------------------------------------------------------
   Security
   ------------------------------------------------------------------------------------------- */

/* No peer reaches a peer of another room: a custom event "to" a peer id of another room gets
   the sender an error and reaches nobody, also when the sender's own socket has a channel in
   that other room (each channel is its own peer). */
TEST(faults, no_peer_reaches_another_room) {
    ts_server *ts = px_server();
    ts_client *a, *a2, *b;
    char ida[37], ida2[37], idb[37], idax[37], e[400];
    REQUIRE(ts);
    a = ft_ws(ts, 0);
    a2 = ft_ws(ts, 0);
    b = ft_ws(ts, 0);
    REQUIRE(a && a2 && b);
    REQUIRE(px_join(a, "room:x", "1"));
    REQUIRE(px_join(a2, "room:x", "1"));
    REQUIRE(px_join(b, "room:y", "1"));
    REQUIRE(px_relay_join(a, "1", "room:x", "null", ida, NULL, 0));
    REQUIRE(px_relay_join(a2, "1", "room:x", "null", ida2, NULL, 0));
    REQUIRE(ft_event_of_type(a, "room:x", "peerJoined", NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:y", "null", idb, NULL, 0));
    /* to a peer of room y, from room x: an error to the sender alone */
    REQUIRE(ft_custom(a, "1", "room:x", idb, "{\"sdp\":\"secret\"}") == 0);
    CHECK(px_error_event(a, "room:x"));
    CHECK(px_quiet(b));
    CHECK(px_quiet(a2));
    /* a custom to everyone in x reaches a2 only */
    REQUIRE(ft_custom(a, "1", "room:x", NULL, "1") == 0);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":1}", ida);
    PX_EXPECT_EVENT(a2, "room:x", e);
    CHECK(px_quiet(b));
    /* a also joins room y on the same socket: that channel is another peer, in room y */
    REQUIRE(px_join(a, "room:y", "2"));
    REQUIRE(px_relay_join(a, "2", "room:y", "null", idax, NULL, 0));
    CHECK(strcmp(idax, ida) != 0);
    snprintf(e, sizeof e, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":null}}}", idax);
    PX_EXPECT_EVENT(b, "room:y", e);
    /* still nothing from room x reaches b; from room y it does */
    REQUIRE(ft_custom(a, "1", "room:x", idb, "2") == 0);
    CHECK(px_error_event(a, "room:x"));
    CHECK(px_quiet(b));
    REQUIRE(ft_custom(a, "2", "room:y", idb, "3") == 0);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":3}", idax);
    PX_EXPECT_EVENT(b, "room:y", e);
    /* and b cannot reach a's room-x peer from room y */
    REQUIRE(ft_custom(b, "1", "room:y", ida, "4") == 0);
    CHECK(px_error_event(b, "room:y"));
    CHECK(px_quiet(a));
    CHECK(px_quiet(a2));
    /* nor use a topic it has not joined */
    REQUIRE(ft_custom(b, "1", "room:x", ida, "5") == 0);
    {
        char got[PX_TEXT], field[64];
        int op;
        CHECK(px_recv(b, got, sizeof got, &op) > 0);
        CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "null") == 0);
        CHECK(px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_reply") == 0);
        CHECK(px_field_string(got, "4.response.reason", field, sizeof field) &&
              strcmp(field, "unmatched topic") == 0);
    }
    CHECK(px_quiet(a));
    CHECK(px_quiet(a2));
    CHECK(ft_finish(ts, a, a2, b, NULL));
}

/* Peer ids are UUID v4, distinct across 2,000 joins and never reused in a server's life. */
static int ft_compare_ids(const void *x, const void *y) { return strcmp((const char *)x, (const char *)y); }

TEST(faults, peer_ids_unique_over_2000_joins) {
    enum { CLIENTS = 4, JOINS = 2000 };
    static char ids[JOINS][37];
    ts_server *ts = px_server();
    ts_client *c[CLIENTS];
    int jr[CLIENTS], n, i, bad = 0, repeats = 0;
    REQUIRE(ts);
    for (i = 0; i < CLIENTS; i++) {
        c[i] = ft_ws(ts, 0);
        REQUIRE(c[i]);
        jr[i] = 0;
    }
    for (n = 0; n < JOINS; n++) {
        int k = n % CLIENTS, old = jr[k];
        char topic[32], jrs[16], reason[64];
        /* each client rejoins its own room: the duplicate join ends the old channel (its room
           goes with it) and a new channel gets a new id */
        snprintf(topic, sizeof topic, "room:uuid%d", k);
        jr[k] = ft_join(c[k], topic, reason, sizeof reason);
        if (jr[k] <= 0) {
            VRS_TEST_FAIL("join %d refused: %s", n, reason);
            break;
        }
        if (old) {
            char got[PX_TEXT], expected[200];
            int op;
            snprintf(expected, sizeof expected, "[\"%d\",\"%d\",\"%s\",\"phx_close\",{}]", old, old, topic);
            if (px_recv(c[k], got, sizeof got, &op) < 0 || strcmp(got, expected) != 0) bad++;
        }
        snprintf(jrs, sizeof jrs, "%d", jr[k]);
        if (!px_relay_join(c[k], jrs, topic, "null", ids[n], NULL, 0)) {
            VRS_TEST_FAIL("relay join %d failed", n);
            break;
        }
        if (!px_is_uuid_v4(ids[n]) && bad++ < 3) fprintf(stderr, "    not a UUID v4: %s\n", ids[n]);
    }
    REQUIRE_EQ_INT(n, JOINS);
    CHECK_EQ_INT(bad, 0);
    qsort(ids, JOINS, sizeof ids[0], ft_compare_ids);
    for (i = 1; i < JOINS; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0 && repeats++ < 3) fprintf(stderr, "    the same id twice: %s\n", ids[i]);
    CHECK_EQ_INT(repeats, 0);
    CHECK_EQ_INT(ts->server->channel_count, CLIENTS);
    CHECK(ft_finish(ts, c[0], c[1], c[2], c[3], NULL));
}

/* The origin allow-list and the connect hook act before any channel exists: a refused socket
   gets 403 even when a join frame follows its request head at once, and the room logic never
   hears of it (no room, no peer, no on_open). The accepted socket's early join is served. */
typedef struct ft_hook {
    int calls;
} ft_hook;
static ft_hook ft_hook_state;

static int ft_on_connect(vrs_server *server, vrs_conn conn, const vrs_connect_info *info, void *user_data) {
    char token[32];
    (void)server;
    (void)conn;
    (void)user_data;
    ft_hook_state.calls++;
    return !(vrs_request_query(info->request, "token", token, sizeof token) == 4 && strcmp(token, "good") == 0);
}

/* Sends the request head and a join frame in one write; returns the response status (-1: none)
   and, for a 101, the reply frame's text in `reply`. */
static int ft_pipelined_join(ts_server *ts, const char *target, const char *extra, ts_client **out,
                             char *reply, size_t capacity) {
    ts_client *c = ts_client_connect(ts);
    ts_request q;
    ts_response r;
    ts_frame_spec spec;
    unsigned char buf[4096];
    static const char join[] = "[\"1\",\"1\",\"room:guarded\",\"phx_join\",{}]";
    size_t n;
    int status = -1;
    *out = c;
    reply[0] = '\0';
    if (!c) return -1;
    memset(&q, 0, sizeof q);
    q.target = target;
    q.extra = extra;
    n = ts_format_request(&q, (char *)buf, sizeof buf);
    memset(&spec, 0, sizeof spec);
    spec.opcode = 1;
    n += ts_build_frame(c, &spec, join, sizeof join - 1, buf + n, sizeof buf - n);
    if (ts_send_raw(c, buf, n) != 0 || ts_read_response_head(c, &r, FT_WAIT_MS) != 1) return -1;
    status = r.status;
    if (status == 101) {
        int op;
        px_recv(c, reply, capacity, &op);
    }
    return status;
}

TEST(faults, refused_sockets_never_reach_a_room) {
    static const char *const origins[] = {"https://good.example"};
    ts_server *ts = px_logic_server_new();
    ts_client *c;
    char reply[PX_TEXT];
    int calls;
    REQUIRE(ts);
    ts->desc.allowed_origins = origins;
    ts->desc.allowed_origin_count = 1;
    ts->desc.on_connect = ft_on_connect;
    ts->desc.close_timeout_ms = 300;
    memset(&ft_hook_state, 0, sizeof ft_hook_state);
    REQUIRE(px_start(ts));
    /* a foreign origin: 403 before the hook, the early join never handled */
    CHECK_EQ_INT(ft_pipelined_join(ts, FT_V2 "&token=good", "Origin: https://evil.example\r\n", &c, reply,
                                   sizeof reply), 403);
    CHECK(c && ts_wait_eof(c, FT_WAIT_MS));
    ts_client_free(c);
    CHECK_EQ_INT(ft_hook_state.calls, 0);
    /* the hook refuses: 403 */
    CHECK_EQ_INT(ft_pipelined_join(ts, FT_V2 "&token=bad", "Origin: https://good.example\r\n", &c, reply,
                                   sizeof reply), 403);
    CHECK(c && ts_wait_eof(c, FT_WAIT_MS));
    ts_client_free(c);
    CHECK_EQ_INT(ft_hook_state.calls, 1);
    /* many more, alternating */
    for (calls = 0; calls < 50; calls++) {
        int status = ft_pipelined_join(ts, calls % 2 ? FT_V2 : FT_V2 "&token=good",
                                       calls % 2 ? "Origin: https://good.example\r\n" : "Origin: null\r\n", &c,
                                       reply, sizeof reply);
        if (status != 403) VRS_TEST_FAIL("attempt %d: %d, expected 403", calls, status);
        ts_client_free(c);
    }
    ts_pump(ts, 20);
    CHECK_EQ_INT(ft_hook_state.calls, 26);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_ORIGIN_REFUSED], 26);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECT_REFUSED], 26);
    CHECK_EQ_INT(px_recorder.count, 0); /* no room created, no peer joined */
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK_EQ_INT(ts->open_count, 0);
    /* accepted: its early join is served */
    CHECK_EQ_INT(ft_pipelined_join(ts, FT_V2 "&token=good", "Origin: https://good.example\r\n", &c, reply,
                                   sizeof reply), 101);
    CHECK_EQ_STR(reply, "[\"1\",\"1\",\"room:guarded\",\"phx_reply\"," PX_OK "]");
    CHECK_EQ_STR(px_kinds(), "CJ");
    CHECK_EQ_INT(ts->server->channel_count, 1);
    CHECK(ft_finish(ts, c, NULL));
}

/* ---------------------------------------------------------------------------------------------
   Refusal at capacity
   ------------------------------------------------------------------------------------------- */

/* Eight clients hold every slot; sixty more arrive at once, each sending its upgrade request as
   soon as it is connected and closing once the server has ended. Every one gets its 503, then
   the end of TCP; none is reset or left unanswered (those past the slots that answer wait in
   the listen backlog for one), and the eight keep working. */
TEST(faults, refusal_burst_every_client_answered) {
    enum { MAX = 8, BURST = 60 };
    static const char request[] = "GET " FT_V2 " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n";
    ts_server *ts = px_server_new();
    ts_client *held[MAX];
    char ids[MAX][37], got[BURST][256], e[PX_TEXT];
    size_t length[BURST];
    int fds[BURST], sent[BURST], ended[BURST], reset[BURST], i, k, done = 0, answered = 0, resets = 0;
    int64_t deadline;
    struct sockaddr_in address;
    REQUIRE(ts);
    ts->desc.max_connections = MAX;
    ts->desc.idle_timeout_ms = 30000;
    REQUIRE(px_start(ts));
    for (i = 0; i < MAX; i++) {
        held[i] = ft_ws(ts, 0);
        REQUIRE(held[i]);
        REQUIRE(px_join(held[i], "room:full", "1"));
        REQUIRE(px_relay_join(held[i], "1", "room:full", "null", ids[i], NULL, 0));
        for (k = 0; k < i; k++) REQUIRE(ft_event_of_type(held[k], "room:full", "peerJoined", NULL, 0));
    }
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)ts->port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < BURST; i++) {
        fds[i] = (int)socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fds[i] >= 0);
        ts_set_nonblocking(fds[i]);
        if (connect(fds[i], (struct sockaddr *)(void *)&address, sizeof address) != 0)
            REQUIRE(ts_socket_error() == TS_NONBLOCKING_CONNECT_STARTED);
        sent[i] = ended[i] = reset[i] = 0;
        length[i] = 0;
    }
    deadline = ts_now_ms() + 10000;
    while (done < BURST && ts_now_ms() < deadline) {
        ts_step(ts, 1);
        for (i = 0; i < BURST; i++) {
            if (ended[i]) continue;
            if (!sent[i]) {
                struct pollfd p;
                p.fd = fds[i];
                p.events = POLLOUT;
                p.revents = 0;
                if (ts_poll(&p, 1, 0) == 1 && send(fds[i], request, sizeof request - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof request - 1))
                    sent[i] = 1;
                if (!sent[i] && (p.revents & (POLLERR | POLLHUP))) reset[i] = ended[i] = 1, done++;
                continue;
            }
            for (;;) {
                char scratch[256];
                ssize_t n = recv(fds[i], scratch, sizeof scratch, 0);
                if (n > 0) {
                    size_t keep = (size_t)n < sizeof got[i] - 1 - length[i] ? (size_t)n : sizeof got[i] - 1 - length[i];
                    memcpy(got[i] + length[i], scratch, keep);
                    length[i] += keep;
                    continue;
                }
                if (n == 0 || !ts_would_block()) {
                    reset[i] = n < 0;
                    ended[i] = 1;
                    done++;
                    ts_close_socket(fds[i]); /* as a client does once the server has ended */
                    fds[i] = -1;
                }
                break;
            }
        }
    }
    for (i = 0; i < BURST; i++) {
        got[i][length[i]] = '\0';
        if (ended[i] && !reset[i] && strncmp(got[i], "HTTP/1.1 503 ", 13) == 0 && strstr(got[i], "\r\n\r\n503 "))
            answered++;
        else if (answered + resets < 3)
            fprintf(stderr, "    client %d: %s%s, got \"%.40s\"\n", i, ended[i] ? "ended" : "still waiting",
                    reset[i] ? " by a reset" : "", got[i]);
        resets += reset[i];
        if (fds[i] >= 0) ts_close_socket(fds[i]);
    }
    CHECK_EQ_INT(answered, BURST);
    CHECK_EQ_INT(resets, 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTIONS_FULL], BURST);
    /* the refusals left nothing behind, and the eight keep working */
    deadline = ts_now_ms() + FT_WAIT_MS;
    while (vrs_get_stats(ts->server).connections > MAX && ts_now_ms() < deadline) ts_step(ts, 1);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, MAX);
    CHECK_EQ_INT(ts->server->rejection_count, 0);
    REQUIRE(ft_custom(held[0], "1", "room:full", NULL, "\"after the burst\"") == 0);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":\"after the burst\"}", ids[0]);
    for (i = 1; i < MAX; i++) PX_EXPECT_EVENT(held[i], "room:full", e);
    for (i = 0; i < MAX; i++) CHECK(px_quiet(held[i]));
    CHECK_EQ_INT(ts->close_count, 0);
    CHECK(ft_finish(ts, held[0], held[1], held[2], held[3], held[4], held[5], held[6], held[7], NULL));
}
