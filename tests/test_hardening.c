/* test_hardening.c: what one client or one careless description must never be able to do:
   bring a stale handle back to life by cycling its slot, read another room's cached topic,
   wrap the memory plan, pass a counter's width, get a refused socket opened, send a body
   without its head, or hide a room behind a control character. Included into the test binary
   by test_main.c, after test_phoenix.c (whose px_ helpers it uses). */

#define HD_CYCLES 5000 /* reuses of one slot: past 2,048 and 4,096, where 12-bit generations wrapped */

static vrs_conn hd_last_open;

static void hd_on_open(vrs_server *server, vrs_conn conn, void *user_data) {
    hd_last_open = conn;
    ts_on_open(server, conn, user_data);
}

/* A handle kept from the first connection of a slot stays stale while 5,000 more connections
   take that slot, each as a WebSocket opened and ended. */
TEST(hardening, stale_connection_handle_after_5000_reuses) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    vrs_conn old;
    int cycle, revived = 0, elsewhere = 0;
    REQUIRE(ts);
    ts->desc.on_open = hd_on_open;
    REQUIRE(ts_server_start(ts) == VRS_OK);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    old = hd_last_open;
    REQUIRE(vrs_conn_is_open(ts->server, old));
    ts_client_free(c);
    REQUIRE(ts_wait_drained(ts, TS_TIMEOUT_MS));
    for (cycle = 1; cycle <= HD_CYCLES; cycle++) {
        c = ts_ws_connect(ts);
        REQUIRE(c);
        if (vrs__handle_slot(hd_last_open.id) != vrs__handle_slot(old.id)) elsewhere++;
        if (vrs_conn_is_open(ts->server, old) || vrs_send_text(ts->server, old, "x", 1) != VRS_ERROR_INVALID_CONNECTION) {
            if (revived++ == 0) fprintf(stderr, "    the old handle names connection %d of its slot\n", cycle + 1);
        }
        ts_client_free(c);
        REQUIRE(ts_wait_drained(ts, TS_TIMEOUT_MS));
    }
    CHECK_EQ_INT(elsewhere, 0); /* every connection took the old one's slot (LIFO) */
    CHECK_EQ_INT(revived, 0);
    ts_server_free(ts);
}

/* Room and peer handles kept from a room's first life stay stale while 5,000 more rooms and
   peers take their slots, each joined and left. */
TEST(hardening, stale_room_and_peer_handles_after_5000_reuses) {
    ts_server *ts = px_server();
    ts_client *c;
    vrs_room old_room, room;
    vrs_peer old_peer, peer;
    int cycle, revived = 0;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:first", "0"));
    old_room = vrs_find_room(ts->server, "first");
    old_peer = px_peer_at(ts, "first", 0);
    REQUIRE(old_room.id && old_peer.id);
    for (cycle = 0; cycle <= HD_CYCLES; cycle++) {
        const char *topic = cycle ? "room:next" : "room:first";
        char jr[16], got[PX_TEXT];
        int op;
        snprintf(jr, sizeof jr, "%d", cycle);
        if (cycle > 0) {
            REQUIRE(px_join(c, topic, jr));
            room = vrs_find_room(ts->server, "next");
            peer = px_peer_at(ts, "next", 0);
            if (vrs__handle_slot(room.id) != vrs__handle_slot(old_room.id) ||
                vrs__handle_slot(peer.id) != vrs__handle_slot(old_peer.id) ||
                vrs_room_name(ts->server, old_room)[0] != '\0' || vrs_peer_id(ts->server, old_peer)[0] != '\0' ||
                vrs_room_peer_count(ts->server, old_room) != 0 ||
                vrs_peer_send(ts->server, old_peer, "1", 1) != VRS_ERROR_INVALID_CONNECTION ||
                vrs_room_broadcast(ts->server, old_room, "1", 1) != VRS_ERROR_INVALID_CONNECTION) {
                if (revived++ == 0) fprintf(stderr, "    the old handles name room and peer %d of their slots\n", cycle + 1);
            }
        }
        /* the leave's reply and phx_close, and nothing else (no push through an old handle) */
        REQUIRE(px_sendf(c, "[\"%s\",\"l%s\",\"%s\",\"phx_leave\",{}]", jr, jr, topic) == 0);
        if (px_recv(c, got, sizeof got, &op) < 0 || strstr(got, "phx_reply") == NULL ||
            px_recv(c, got, sizeof got, &op) < 0 || strstr(got, "phx_close") == NULL) {
            VRS_TEST_FAIL("cycle %d: not the leave's reply and phx_close (%s)", cycle, got);
            break;
        }
    }
    CHECK_EQ_INT(revived, 0);
    CHECK(px_quiet(c));
    CHECK(px_finish(ts, c, NULL));
}

/* A slot whose generation would wrap is retired: the handles it gave out stay stale forever
   and the next owner gets another slot. (The generation is advanced here by hand: 2^43 real
   reuses would take months.) */
TEST(hardening, slot_retired_before_its_generation_wraps) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    vrs_conn last_of_slot;
    uint32_t slot;
    REQUIRE(ts);
    ts->desc.on_open = hd_on_open;
    REQUIRE(ts_server_start(ts) == VRS_OK);
    slot = ts->server->free_slots[ts->server->free_slot_count - 1]; /* the next one handed out */
    ts->server->conns[slot].generation = VRS__GENERATION_LIMIT - 1;
    c = ts_ws_connect(ts);
    REQUIRE(c);
    last_of_slot = hd_last_open;
    CHECK_EQ_INT(vrs__handle_slot(last_of_slot.id), slot + 1);
    CHECK(vrs_conn_is_open(ts->server, last_of_slot));
    ts_client_free(c);
    REQUIRE(ts_wait_drained(ts, TS_TIMEOUT_MS));
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK(vrs__handle_slot(hd_last_open.id) != slot + 1);
    CHECK(!vrs_conn_is_open(ts->server, last_of_slot));
    CHECK_EQ_INT(vrs_send_text(ts->server, last_of_slot, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK(ts_client_quiet(c, 20));
    CHECK_EQ_INT(ts->server->free_slot_count, ts->server->slot_count - 2); /* one in use, one retired */
    ts_client_free(c);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    ts_server_free(ts);
}

/* The same for a room slot and a channel slot. */
TEST(hardening, room_and_peer_slots_retired_before_their_generations_wrap) {
    ts_server *ts = px_server();
    ts_client *c;
    vrs_room last_room;
    vrs_peer last_peer;
    uint32_t room_slot, channel_slot;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    room_slot = ts->server->free_rooms[ts->server->free_room_count - 1];
    channel_slot = ts->server->free_channels[ts->server->free_channel_count - 1];
    ts->server->rooms[room_slot].generation = VRS__GENERATION_LIMIT - 1;
    ts->server->channels[channel_slot].generation = VRS__GENERATION_LIMIT - 1;
    REQUIRE(px_join(c, "room:last", "1"));
    last_room = vrs_find_room(ts->server, "last");
    last_peer = px_peer_at(ts, "last", 0);
    CHECK_EQ_INT(vrs__handle_slot(last_room.id), room_slot + 1);
    CHECK_EQ_INT(vrs__handle_slot(last_peer.id), channel_slot + 1);
    REQUIRE(px_sendf(c, "[\"1\",\"2\",\"room:last\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(c, "[\"1\",\"2\",\"room:last\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(c, "[\"1\",\"1\",\"room:last\",\"phx_close\",{}]");
    REQUIRE(px_join(c, "room:after", "3"));
    CHECK(vrs__handle_slot(vrs_find_room(ts->server, "after").id) != room_slot + 1);
    CHECK(vrs__handle_slot(px_peer_at(ts, "after", 0).id) != channel_slot + 1);
    CHECK_EQ_STR(vrs_room_name(ts->server, last_room), "");
    CHECK_EQ_STR(vrs_peer_id(ts->server, last_peer), "");
    CHECK_EQ_INT(vrs_peer_send(ts->server, last_peer, "1", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK(px_quiet(c));
    CHECK_EQ_INT(ts->server->free_room_count, (uint32_t)ts->server->desc.max_rooms - 2);
    CHECK(px_finish(ts, c, NULL));
}

/* The remote sequence: a relay push caches room "secret"'s topic; the room goes, and 4,095
   more rooms are created and destroyed in its slot (join, leave), so that a 12-bit generation
   would come back to the cached one; a new room in that slot must push under its own topic. */
TEST(hardening, relay_topic_cache_dies_with_its_room) {
    ts_server *ts = px_server();
    ts_client *a, *b;
    char ida[37], idb[37], expected[400];
    int cycle;
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:secret", "s"));
    REQUIRE(px_relay_join(a, "s", "room:secret", "{}", ida, NULL, 0));
    REQUIRE(px_sendf(a, "[\"s\",\"ls\",\"room:secret\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"s\",\"ls\",\"room:secret\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"s\",\"s\",\"room:secret\",\"phx_close\",{}]");
    for (cycle = 1; cycle < 4096; cycle++) {
        char jr[16], got[PX_TEXT];
        int op;
        snprintf(jr, sizeof jr, "%d", cycle);
        REQUIRE(px_join(a, "room:cycle", jr));
        REQUIRE(px_sendf(a, "[\"%s\",\"l%s\",\"room:cycle\",\"phx_leave\",{}]", jr, jr) == 0);
        REQUIRE(px_recv(a, got, sizeof got, &op) > 0 && px_recv(a, got, sizeof got, &op) > 0);
    }
    REQUIRE(px_join(a, "room:fresh", "f"));
    REQUIRE(px_join(b, "room:fresh", "g"));
    REQUIRE(px_relay_join(a, "f", "room:fresh", "{\"n\":\"a\"}", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "g", "room:fresh", "{\"n\":\"b\"}", idb, NULL, 0));
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":{\"n\":\"b\"}}}}", idb);
    PX_EXPECT_EVENT(a, "room:fresh", expected);
    CHECK(px_quiet(a) && px_quiet(b));
    CHECK(px_finish(ts, a, b, NULL));
}

/* ---------------------------------------------------------------------------------------------
   The memory plan and the description's limits
   ------------------------------------------------------------------------------------------- */

static int hd_log_counts[VRS_LOG_ITEM_COUNT];

static void hd_logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    (void)level;
    (void)message;
    (void)user_data;
    if ((int)item >= 0 && item < VRS_LOG_ITEM_COUNT) hd_log_counts[item]++;
}

static vrs_desc hd_desc(void) {
    vrs_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.host = "127.0.0.1";
    desc.port = VRS_PORT_ANY;
    desc.logger.func = hd_logger;
    memset(hd_log_counts, 0, sizeof hd_log_counts);
    return desc;
}

TEST(hardening, size_arithmetic_reports_overflow) {
    int fits = 1;
    size_t at = 0;
    CHECK_EQ_INT(vrs__size_add((size_t)-1 - 1, 1, &fits), (long long)((size_t)-1));
    CHECK(fits);
    vrs__size_add((size_t)-1, 1, &fits);
    CHECK(!fits);
    fits = 1;
    CHECK_EQ_INT(vrs__size_mul((size_t)-1 / 2, 2, &fits), (long long)((size_t)-1 - 1));
    CHECK(fits);
    vrs__size_mul((size_t)-1 / 2 + 1, 2, &fits);
    CHECK(!fits);
    fits = 1;
    at = (size_t)-1 - 10; /* aligning past the end overflows too */
    vrs__place(&at, 1, 1, 64, &fits);
    CHECK(!fits);
}

/* The two descriptions that wrapped a 32-bit plan to a few MB: refused there, with a log
   line; on 64 bits their plan holds every buffer they ask for. */
TEST(hardening, memory_plan_never_wraps) {
    vrs_desc huge_message = hd_desc(), huge_listing = hd_desc();
    vrs_server *server = NULL;
    size_t a, b;
    huge_message.max_message_size = 0x7FFFFFFF;
    huge_listing.max_peers_per_room = 65536;
    huge_listing.max_metadata_size = 65535;
    a = vrs_memory_size(&huge_message);
    b = vrs_memory_size(&huge_listing);
    if (SIZE_MAX <= 0xFFFFFFFFu) {
        CHECK_EQ_INT(a, 0);
        CHECK_EQ_INT(b, 0);
        CHECK_EQ_INT(hd_log_counts[VRS_LOG_MEMORY_PLAN_TOO_LARGE], 2);
        CHECK_EQ_INT(vrs_create(&huge_message, &server), VRS_ERROR_INVALID_ARGUMENT);
        CHECK(server == NULL);
        CHECK_EQ_INT(vrs_create(&huge_listing, &server), VRS_ERROR_INVALID_ARGUMENT);
        CHECK(server == NULL);
        CHECK_EQ_INT(hd_log_counts[VRS_LOG_MEMORY_PLAN_TOO_LARGE], 4);
    } else {
        /* assembly, decoded copy and the relay's inner and outer buffers: each at least one message */
        CHECK(a / 5 >= (size_t)0x7FFFFFFF);
        /* the listing of 65,536 peers with 65,535 bytes of metadata each, inner and outer */
        CHECK(b / 3 >= (size_t)65536 * 65535);
        CHECK_EQ_INT(hd_log_counts[VRS_LOG_MEMORY_PLAN_TOO_LARGE], 0);
    }
}

/* The documented range of connections: 1,048,575, with the default tables (twice as many
   channels) sized to fit; one more is refused. */
TEST(hardening, max_connections_1048575_accepted) {
    vrs_desc desc = hd_desc(), over = hd_desc();
    vrs_desc resolved;
    desc.max_connections = 1048575;
    over.max_connections = 1048576;
    resolved = vrs__resolve_defaults(&desc);
    CHECK(vrs__desc_is_valid(&resolved));
    CHECK_EQ_INT(resolved.max_channels, 2 * 1048575);
    CHECK_EQ_INT(resolved.max_rooms, 1048575);
    CHECK(vrs_memory_size(&desc) > (size_t)1048575 * sizeof(vrs__conn)); /* 32-bit too: about 3.5 GB */
    CHECK_EQ_INT(vrs_memory_size(&over), 0);
    desc.max_channels = (int)VRS__INDEX_MASK + 1; /* more than a handle can name */
    CHECK_EQ_INT(vrs_memory_size(&desc), 0);
}

/* A per-socket channel limit above 65,535 is enforced at its value. (The socket's count is
   set near the limit by hand: 70,000 joins on one socket would take minutes.) */
TEST(hardening, channels_per_socket_limit_of_70000) {
    ts_server *ts = px_server_new();
    ts_client *c;
    char expected[300];
    REQUIRE(ts);
    ts->desc.max_channels_per_socket = 70000;
    REQUIRE(px_start(ts));
    c = px_v2(ts);
    REQUIRE(c);
    ts->server->conns[vrs__handle_slot(c->conn.id) - 1].channel_count = 69999;
    CHECK(px_join(c, "room:a", "1")); /* the 70,000th */
    REQUIRE(px_sendf(c, "[\"2\",\"2\",\"room:b\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"2\"", "2", "room:b", "too many channels joined");
    PX_EXPECT_EXACT(c, expected);
    CHECK_EQ_INT(ts->server->channel_count, 1);
    CHECK(px_finish(ts, c, NULL));
}

/* A length near SIZE_MAX is too large, not a small frame after the header's bytes wrap it. */
TEST(hardening, send_length_that_would_wrap) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(vrs_send_text(ts->server, c->conn, "x", SIZE_MAX), VRS_ERROR_TOO_LARGE);
    CHECK_EQ_INT(vrs_send_binary(ts->server, c->conn, "x", SIZE_MAX - 9), VRS_ERROR_TOO_LARGE);
    CHECK(vrs_conn_is_open(ts->server, c->conn));
    CHECK_EQ_INT(vrs_send_text(ts->server, c->conn, "ok", 2), VRS_OK);
    {
        ts_frame f; /* "ok" arrives, and nothing came before it */
        CHECK(ts_read_frame(c, &f, TS_TIMEOUT_MS) == 1 && f.opcode == 1 && f.length == 2 && memcmp(f.payload, "ok", 2) == 0);
    }
    ts_client_free(c);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    ts_server_free(ts);
}

/* ---------------------------------------------------------------------------------------------
   Responses from hooks, and response heads that do not fit
   ------------------------------------------------------------------------------------------- */

static vrs_result hd_hook_result;

static void hd_respond_on_upgrade(vrs_server *server, vrs_conn conn, const vrs_request *request,
                                  vrs_upgrade_answer *answer, void *user_data) {
    (void)request;
    (void)answer;
    ((ts_server *)user_data)->upgrade_count++;
    hd_hook_result = vrs_http_respond(server, conn, 401, "text/plain", "WWW-Authenticate: Bearer\r\n", "who?\n", 5);
}

static int hd_respond_on_connect(vrs_server *server, vrs_conn conn, const vrs_connect_info *info, void *user_data) {
    (void)info;
    (void)user_data;
    hd_hook_result = vrs_http_respond(server, conn, 401, "text/plain", "WWW-Authenticate: Bearer\r\n", "who?\n", 5);
    return 0; /* the response alone must refuse */
}

/* The client gets the hook's response and the end of the connection: no 101, no on_open. */
static void hd_expect_refused_by_response(ts_server *ts, const char *target, vrs_log_item item) {
    ts_client *c = ts_client_connect(ts);
    ts_request q;
    ts_response r;
    char header[64];
    REQUIRE(c);
    memset(&q, 0, sizeof q);
    q.target = target;
    hd_hook_result = VRS_ERROR_SYSTEM;
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 401);
    CHECK_EQ_INT(hd_hook_result, VRS_OK);
    CHECK(ts_response_header(&r, "WWW-Authenticate", header, sizeof header) && strcmp(header, "Bearer") == 0);
    CHECK(ts_read_response_body(c, &r, TS_TIMEOUT_MS) == 1 && r.body_length == 5);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(c->discarded, 0); /* nothing after the response: no 101 */
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK_EQ_INT(ts->log_counts[item], 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTION_OPENED], 0);
    ts_client_free(c);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
}

TEST(hardening, response_from_on_upgrade_refuses) {
    ts_server *ts = ts_server_new();
    REQUIRE(ts);
    ts->desc.disable_phoenix = 1;
    ts->desc.on_upgrade = hd_respond_on_upgrade;
    REQUIRE(ts_server_start(ts) == VRS_OK);
    hd_expect_refused_by_response(ts, "/", VRS_LOG_UPGRADE_REFUSED);
    CHECK_EQ_INT(ts->upgrade_count, 1);
    ts_server_free(ts);
}

TEST(hardening, response_from_on_connect_refuses) {
    ts_server *ts = px_server_new();
    REQUIRE(ts);
    ts->desc.on_connect = hd_respond_on_connect;
    REQUIRE(px_start(ts));
    hd_expect_refused_by_response(ts, PX_V2, VRS_LOG_CONNECT_REFUSED);
    CHECK(px_finish(ts, NULL));
}

static char hd_long_headers[1200];

/* Answers first with headers that cannot fit the head, then, refused, with short ones. */
static void hd_respond_twice(vrs_server *server, vrs_conn conn, const vrs_request *request, void *user_data) {
    ts_server *ts = (ts_server *)user_data;
    (void)request;
    ts->http_count++;
    ts->http_result = vrs_http_respond(server, conn, 200, "text/plain", hd_long_headers, "BODY\n", 5);
    if (ts->http_result != VRS_OK) vrs_http_respond(server, conn, 200, "text/plain", NULL, "SHORT\n", 6);
}

TEST(hardening, response_head_that_does_not_fit) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_request q;
    ts_response r;
    size_t i;
    REQUIRE(ts);
    for (i = 0; i + 2 < 1100; i++) hd_long_headers[i] = "X-Long: y"[i < 9 ? i : 8];
    memcpy(hd_long_headers + i, "\r\n", 3);
    ts->desc.on_message = NULL;
    ts->desc.on_http = hd_respond_twice;
    REQUIRE(ts_server_start(ts) == VRS_OK);
    c = ts_client_connect(ts);
    REQUIRE(c);
    q = ts_plain_request("GET", "/page");
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 200);
    CHECK_EQ_INT(ts->http_result, VRS_ERROR_TOO_LARGE);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_RESPONSE_HEAD_TOO_LARGE], 1);
    CHECK(ts_read_response_body(c, &r, TS_TIMEOUT_MS) == 1 && r.body_length == 6);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(c->discarded, 0);
    ts_client_free(c);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    ts_server_free(ts);
}

/* ---------------------------------------------------------------------------------------------
   Room ids
   ------------------------------------------------------------------------------------------- */

TEST(hardening, room_ids_with_control_characters) {
    static const char *const topics[] = {"room:admins\\u0000evil", "room:\\u0000", "room:a\\nb",
                                         "room:tab\\there", "room:\\u001f", "room:del\\u007f"};
    ts_server *ts = px_server();
    ts_client *c;
    char expected[300], jr[8];
    size_t i;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:admins", "0"));
    for (i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        snprintf(jr, sizeof jr, "%d", (int)i + 1);
        REQUIRE(px_sendf(c, "[\"%s\",\"%s\",\"%s\",\"phx_join\",{}]", jr, jr, topics[i]) == 0);
        snprintf(expected, sizeof expected,
                 "[\"%s\",\"%s\",\"%s\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"invalid room id\"}}]",
                 jr, jr, topics[i]);
        PX_EXPECT_EXACT(c, expected);
    }
    CHECK_EQ_INT(ts->server->room_count, 1);
    CHECK_EQ_INT(ts->server->channel_count, 1);
    CHECK(px_join(c, "room:caf\\u00e9 \\u2603", "9")); /* other characters are fine */
    CHECK(px_finish(ts, c, NULL));
}
