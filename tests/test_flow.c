/* Flow control over loopback: relay peers that burst events at each other, each keeping a
   window of its own events in flight (sent, not yet received by every other peer), as the
   load generator does. A receiver's queue passes send_queue_size; its senders are paused, not
   the receiver closed. Every reader gets every event in order and nobody is closed; a reader
   that stalls goes alone, with 1013, after slow_consumer_timeout_ms; a reader that is slow but
   steady keeps everyone; a paused sender is not idle, and its heartbeats are answered. The
   burst runs through the relay (vrs_step and the host's own poll loop) and through a host
   room logic that broadcasts with vrs_room_broadcast_except.

   The sockets get small buffers (8 KiB each way, as on a slow path), so that what is owed to
   a client waits in the server's queue rather than in the kernel's. */

#define FL_PEERS 8
#define FL_PAD 4000 /* an event of about 4 kB */

typedef struct fl_peer {
    ts_client *c;
    char id[37];
    int sent;                   /* events sent */
    int next_from[FL_PEERS];    /* the next seq expected from each peer */
    int received;               /* events received */
    int stalled;                /* reads nothing */
    int read_rate;              /* bytes it reads each 10 ms; 0: as fast as it can */
    int64_t read_budget_at;     /* when it may read read_rate bytes more */
    int bad, peer_left, heartbeat_replies;
} fl_peer;

typedef struct fl_room {
    ts_server *ts;
    fl_peer peers[FL_PEERS];
    int count;
    int window;                 /* events of its own a peer keeps in flight */
    int events;                 /* events each sending peer sends */
    int paused_seen;            /* a sender was seen paused */
    int host_logic;             /* the host's room logic relays (no relay join, no "from") */
} fl_room;

/* The host's room logic: every media event goes to the room's other peers. */
static int fl_host_failures;
static void fl_host_broadcast(vrs_server *server, vrs_room room, vrs_peer peer, const char *data, size_t length,
                              void *user_data) {
    (void)user_data;
    if (vrs_room_broadcast_except(server, room, peer, data, length) != VRS_OK) fl_host_failures++;
}

static void fl_small_buffers(ts_server *ts, ts_client *c) {
    vrs__conn *conn = vrs__lookup(ts->server, c->conn);
    int small = 8192;
    if (conn) setsockopt(conn->fd, SOL_SOCKET, SO_SNDBUF, (void *)&small, sizeof small);
}

/* Starts a relay server for a room of `count` peers and joins them, in order. */
static int fl_room_start(fl_room *room, ts_server *ts, int count, int window, int events) {
    int i, j, host_logic = ts->desc.room_logic.on_media_event == fl_host_broadcast;
    memset(room, 0, sizeof *room);
    room->host_logic = host_logic;
    room->ts = ts;
    room->count = count;
    room->window = window;
    room->events = events;
    if (!px_start(ts)) return 0;
    for (i = 0; i < count; i++) {
        fl_peer *p = &room->peers[i];
        p->c = ft_ws(ts, 8192);
        if (!p->c || !px_join(p->c, "room:flow", "1")) return 0;
        if (host_logic) {
            fl_small_buffers(ts, p->c);
            continue;
        }
        if (!px_relay_join(p->c, "1", "room:flow", "null", p->id, NULL, 0)) return 0;
        for (j = 0; j < i; j++)
            if (!ft_event_of_type(room->peers[j].c, "room:flow", "peerJoined", NULL, 0)) return 0;
        fl_small_buffers(ts, p->c);
    }
    return 1;
}

static int fl_peer_index(const fl_room *room, const char *id) {
    int i;
    for (i = 0; i < room->count; i++)
        if (strcmp(room->peers[i].id, id) == 0) return i;
    return -1;
}

/* One frame received by `p`: a custom event (in order from its sender), peerLeft, or a
   heartbeat reply. */
static void fl_take(fl_room *room, fl_peer *p, const ts_frame *f) {
    static char text[PX_TEXT * 2], e[PX_TEXT * 2];
    static vrs__message m;
    vrs__json_slice data;
    char type[32], from[64], seq[32];
    long k;
    int sender;
    if (f->opcode != 1 || f->length >= sizeof text) {
        p->bad++;
        return;
    }
    memcpy(text, f->payload, f->length);
    text[f->length] = '\0';
    memset(&m, 0, sizeof m);
    if (!vrs__decode_v2(text, f->length, &m)) {
        p->bad++;
        return;
    }
    if (strcmp(m.event, "phx_reply") == 0 && strcmp(m.topic, "phoenix") == 0) {
        p->heartbeat_replies++;
        return;
    }
    if (strcmp(m.event, "mediaEvent") != 0 || !vrs__json_object_get(m.payload, "data", &data) ||
        (k = vrs__json_string_decode(data, e, sizeof e)) < 0 || (size_t)k >= sizeof e) {
        p->bad++;
        return;
    }
    e[k] = '\0';
    px_field_string(e, "type", type, sizeof type);
    if (strcmp(type, "peerLeft") == 0) {
        p->peer_left++;
        return;
    }
    if (room->host_logic) /* no "from": the sender's index travels in the data */
        sender = px_field(e, "data.peer", from, sizeof from) ? atoi(from) : -1;
    else
        sender = px_field_string(e, "from", from, sizeof from) ? fl_peer_index(room, from) : -1;
    if (strcmp(type, "custom") != 0 || sender < 0 || sender >= room->count || !px_field(e, "data.seq", seq, sizeof seq) ||
        atoi(seq) != p->next_from[sender]) {
        if (p->bad++ < 3) fprintf(stderr, "    peer %d: unexpected event %.120s\n", (int)(p - room->peers), e);
        return;
    }
    p->next_from[sender]++;
    p->received++;
}

/* Reads what `p` may read now (all of it, or its rate's worth) and takes every whole frame. */
static void fl_read(fl_room *room, fl_peer *p) {
    ts_client *c = p->c;
    ts_frame f;
    if (p->stalled || c->eof || c->reset) return;
    if (p->read_rate == 0) {
        while (ts_client_recv_some(c) > 0) {
        }
    } else {
        int64_t now = ts_now_ms();
        if (now >= p->read_budget_at) {
            size_t space = TS_CLIENT_BUFFER - c->wpos, take = (size_t)p->read_rate;
            ssize_t got;
            if (c->rpos > 0) {
                memmove(c->buf, c->buf + c->rpos, c->wpos - c->rpos);
                c->wpos -= c->rpos;
                c->rpos = 0;
                space = TS_CLIENT_BUFFER - c->wpos;
            }
            got = recv(c->fd, (void *)(c->buf + c->wpos), take < space ? take : space, 0);
            if (got > 0) c->wpos += (size_t)got;
            else if (got == 0) c->eof = 1;
            p->read_budget_at = now + 10;
        }
    }
    while (ts_read_frame(c, &f, 0) == 1) fl_take(room, p, &f);
}

/* The fewest of p's events any other reader has received. */
static int fl_delivered(const fl_room *room, int sender) {
    int i, least = INT32_MAX;
    for (i = 0; i < room->count; i++) {
        const fl_peer *r = &room->peers[i];
        if (i == sender || r->stalled) continue;
        if (r->next_from[sender] < least) least = r->next_from[sender];
    }
    return least;
}

static void fl_send(fl_room *room, int i) {
    static char data[FL_PAD + 64], pad[FL_PAD + 1];
    fl_peer *p = &room->peers[i];
    if (!pad[0]) memset(pad, 'x', FL_PAD);
    while (p->sent < room->events && p->sent - fl_delivered(room, i) < room->window) {
        snprintf(data, sizeof data, "{\"seq\":%d,\"peer\":%d,\"pad\":\"%s\"}", p->sent, i, pad);
        if (ft_custom(p->c, "1", "room:flow", NULL, data) != 0) {
            p->bad++;
            return;
        }
        p->sent++;
    }
}

/* Runs the burst until every reader has every event of the senders (those in `senders`), or
   `timeout_ms` passes. `each_round` (may be NULL) runs once a round. Returns 1 when done. */
static int fl_run(fl_room *room, const int *senders, int timeout_ms, void (*each_round)(fl_room *)) {
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        int i, done = 1;
        for (i = 0; i < room->count; i++)
            if (senders[i]) fl_send(room, i);
        ts_step(room->ts, 0);
        for (i = 0; i < room->count; i++) {
            vrs__conn *conn = vrs__lookup(room->ts->server, room->peers[i].c->conn);
            if (conn && conn->paused) room->paused_seen = 1;
        }
        for (i = 0; i < room->count; i++) fl_read(room, &room->peers[i]);
        if (each_round) each_round(room);
        for (i = 0; i < room->count; i++) {
            int j;
            if (room->peers[i].stalled) continue;
            for (j = 0; j < room->count; j++)
                if (j != i && senders[j] && room->peers[i].next_from[j] < room->events) done = 0;
        }
        if (done) return 1;
        if (ts_now_ms() >= deadline) return 0;
    }
}

static void fl_report(const fl_room *room) {
    int i;
    for (i = 0; i < room->count; i++) {
        vrs__conn *conn = vrs__lookup(room->ts->server, room->peers[i].c->conn);
        fprintf(stderr, "    peer %d: sent %d, received %d, bad %d%s; server: queue %lu, held %lu, paused %d on %d\n", i,
                room->peers[i].sent, room->peers[i].received, room->peers[i].bad,
                room->peers[i].stalled ? " (stalled)" : "", conn ? (unsigned long)conn->outbound.length : 0,
                conn ? (unsigned long)conn->held.length : 0, conn ? conn->paused : -1,
                conn ? (int)conn->blocked_on : -1);
    }
}

static void fl_free(fl_room *room) {
    int i;
    for (i = 0; i < room->count; i++) ts_client_free(room->peers[i].c);
}

/* 8 peers, each bursting 96 events of 4 kB with 32 in flight, through 64 KiB send queues:
   each reader can be owed 7 x 32 events (about 900 kB). Every reader gets every event in
   order; nobody is closed; senders were paused on the way. With `host_logic`, the host's room
   logic relays: each media event is broadcast to the others with vrs_room_broadcast_except
   while the sender's message is handled, so the sender is the one paused, and no broadcast
   fails. */
static void fl_burst(int use_poll_api, int host_logic) {
    ts_server *ts = px_server_new();
    fl_room room;
    int senders[FL_PEERS], i;
    REQUIRE(ts);
    ts->use_poll_api = use_poll_api;
    ts->desc.send_queue_size = 65536;
    ts->desc.idle_timeout_ms = 30000;
    if (host_logic) ts->desc.room_logic.on_media_event = fl_host_broadcast;
    fl_host_failures = 0;
    if (!fl_room_start(&room, ts, FL_PEERS, 32, 96)) {
        fl_free(&room);
        REQUIRE(0);
    }
    for (i = 0; i < FL_PEERS; i++) senders[i] = 1;
    if (!fl_run(&room, senders, 30000, NULL)) {
        VRS_TEST_FAIL("the burst did not finish");
        fl_report(&room);
    }
    for (i = 0; i < FL_PEERS; i++) {
        CHECK_EQ_INT(room.peers[i].received, (FL_PEERS - 1) * 96);
        CHECK_EQ_INT(room.peers[i].bad, 0);
        CHECK(vrs_conn_is_open(ts->server, room.peers[i].c->conn));
    }
    CHECK(room.paused_seen);
    CHECK_EQ_INT(fl_host_failures, 0);
    CHECK_EQ_INT(ts->close_count, 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 0);
    fl_free(&room);
    CHECK(ft_finish(ts, NULL));
}

TEST(flow, burst_reaches_every_reader_in_order) { fl_burst(0, 0); }

TEST(flow, burst_reaches_every_reader_host_poll_loop) { fl_burst(1, 0); }

TEST(flow, burst_through_the_host_logic_never_fails_a_broadcast) { fl_burst(0, 1); }

/* The same burst with one reader that stops reading: its senders wait for it, and once it has
   taken nothing for slow_consumer_timeout_ms it alone is closed with 1013; the others get
   every event and hear that it left. */
TEST(flow, stalled_reader_goes_alone_after_the_timeout) {
    enum { TIMEOUT = 500 };
    ts_server *ts = px_server_new();
    fl_room room;
    int senders[FL_PEERS], i;
    int64_t stalled_at, closed_at = 0;
    vrs_conn stalled_conn;
    REQUIRE(ts);
    ts->desc.send_queue_size = 65536;
    ts->desc.idle_timeout_ms = 30000;
    ts->desc.close_timeout_ms = 5000;
    ts->desc.slow_consumer_timeout_ms = TIMEOUT;
    if (!fl_room_start(&room, ts, FL_PEERS, 32, 96)) {
        fl_free(&room);
        REQUIRE(0);
    }
    for (i = 0; i < FL_PEERS; i++) senders[i] = i != 3;
    room.peers[3].stalled = 1;
    stalled_conn = room.peers[3].c->conn;
    stalled_at = ts_now_ms();
    {
        int64_t deadline = stalled_at + 30000;
        /* until the stalled one is closed, then to the end of the burst */
        while (ts->close_count == 0 && ts_now_ms() < deadline) fl_run(&room, senders, 5, NULL);
        closed_at = ts_now_ms();
        if (!fl_run(&room, senders, 30000, NULL)) {
            VRS_TEST_FAIL("the burst did not finish");
            fl_report(&room);
        }
    }
    CHECK(room.paused_seen);
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts_close_code_of(ts, stalled_conn), 1013);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 0);
    if (closed_at - stalled_at < TIMEOUT)
        VRS_TEST_FAIL("closed %lld ms after it stalled, before the timeout", (long long)(closed_at - stalled_at));
    for (i = 0; i < FL_PEERS; i++) {
        if (i == 3) continue;
        CHECK_EQ_INT(room.peers[i].received, (FL_PEERS - 2) * 96);
        CHECK_EQ_INT(room.peers[i].bad, 0);
        CHECK_EQ_INT(room.peers[i].peer_left, 1);
        CHECK(vrs_conn_is_open(ts->server, room.peers[i].c->conn));
    }
    fl_free(&room);
    CHECK(ft_finish(ts, NULL));
}

/* One reader takes a few kB every 10 ms, steadily, far slower than the others: it is behind
   all along but makes progress, so nobody is closed and everyone gets every event. */
TEST(flow, slow_but_steady_reader_keeps_everyone) {
    ts_server *ts = px_server_new();
    fl_room room;
    int senders[FL_PEERS], i;
    REQUIRE(ts);
    ts->desc.send_queue_size = 65536;
    ts->desc.idle_timeout_ms = 30000;
    ts->desc.slow_consumer_timeout_ms = 500;
    if (!fl_room_start(&room, ts, 4, 32, 64)) {
        fl_free(&room);
        REQUIRE(0);
    }
    for (i = 0; i < 4; i++) senders[i] = 1;
    room.peers[2].read_rate = 6000;
    if (!fl_run(&room, senders, 30000, NULL)) {
        VRS_TEST_FAIL("the burst did not finish");
        fl_report(&room);
    }
    for (i = 0; i < 4; i++) {
        CHECK_EQ_INT(room.peers[i].received, 3 * 64);
        CHECK_EQ_INT(room.peers[i].bad, 0);
    }
    CHECK(room.paused_seen);
    CHECK_EQ_INT(ts->close_count, 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 0);
    fl_free(&room);
    CHECK(ft_finish(ts, NULL));
}

/* A sender paused behind a stalled reader for longer than the idle timeout: bytes it sent wait
   to be read, so it is not idle; its heartbeat, sent during the pause, is answered once the
   stalled reader has gone. */
static void fl_heartbeat_round(fl_room *room) {
    static int64_t last;
    fl_peer *stalled = &room->peers[1];
    /* the stalled reader still writes: it is not idle either */
    if (ts_now_ms() - last >= 100 && !stalled->c->eof && !stalled->c->reset) {
        last = ts_now_ms();
        px_sendf(stalled->c, "[null,\"hbb\",\"phoenix\",\"heartbeat\",{}]");
    }
}

TEST(flow, paused_sender_is_not_idle_and_its_heartbeat_is_answered) {
    ts_server *ts = px_server_new();
    fl_room room;
    int senders[FL_PEERS] = {1, 0}, sent_heartbeat = 0;
    int64_t deadline;
    REQUIRE(ts);
    ts->desc.send_queue_size = 16384;
    ts->desc.idle_timeout_ms = 300;
    ts->desc.close_timeout_ms = 5000;
    ts->desc.slow_consumer_timeout_ms = 1200;
    if (!fl_room_start(&room, ts, 2, 1000, 64)) {
        fl_free(&room);
        REQUIRE(0);
    }
    room.peers[1].stalled = 1;
    /* a sends until it is paused, then its heartbeat */
    deadline = ts_now_ms() + 5000;
    while (ts_now_ms() < deadline && ts->close_count == 0) {
        vrs__conn *a = vrs__lookup(ts->server, room.peers[0].c->conn);
        fl_run(&room, senders, 5, fl_heartbeat_round);
        if (a && a->paused && !sent_heartbeat) {
            REQUIRE(px_sendf(room.peers[0].c, "[null,\"hb\",\"phoenix\",\"heartbeat\",{}]") == 0);
            sent_heartbeat = 1;
            room.events = room.peers[0].sent; /* nothing more after it */
        }
    }
    CHECK(sent_heartbeat);
    CHECK(room.paused_seen);
    /* the stalled reader went, with 1013, not the paused sender with 1001 */
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts_close_code_of(ts, room.peers[1].c->conn), 1013);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_IDLE_TIMEOUT], 0);
    deadline = ts_now_ms() + 2000;
    while (ts_now_ms() < deadline && room.peers[0].heartbeat_replies == 0) {
        ts_step(ts, 1);
        fl_read(&room, &room.peers[0]);
    }
    CHECK_EQ_INT(room.peers[0].heartbeat_replies, 1);
    CHECK_EQ_INT(room.peers[0].peer_left, 1);
    CHECK_EQ_INT(room.peers[0].bad, 0);
    CHECK(vrs_conn_is_open(ts->server, room.peers[0].c->conn));
    fl_free(&room);
    CHECK(ft_finish(ts, NULL));
}
