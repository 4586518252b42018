/* Running behind a load balancer: a socket whose URL names a room joins only that room, the
   drain (upgrades answered 503, plain HTTP still served, every socket closed with one code),
   and the counters vrs_get_stats gives a metrics endpoint. */

#define CL_ROOM_ONLY "this socket may join only the room named in its URL"

TEST(cluster, url_room_binds_the_socket) {
    ts_server *ts = px_server();
    ts_client *bound, *v1, *free_socket;
    char expected[400];
    REQUIRE(ts);
    bound = px_ws(ts, "/socket/websocket?vsn=2.0.0&room=team%20a", NULL);
    v1 = px_ws(ts, "/socket/websocket?room=team&vsn=1.0.0", NULL);
    free_socket = px_v2(ts);
    REQUIRE(bound && v1 && free_socket);
    /* another room, one that differs only in length, and one with the same prefix */
    REQUIRE(px_sendf(bound, "[\"1\",\"1\",\"room:team\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"1\"", "1", "room:team", CL_ROOM_ONLY);
    PX_EXPECT_EXACT(bound, expected);
    REQUIRE(px_sendf(bound, "[\"2\",\"2\",\"room:team%%20a\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"2\"", "2", "room:team%20a", CL_ROOM_ONLY);
    PX_EXPECT_EXACT(bound, expected);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK_EQ_INT(ts->server->room_count, 0); /* a refused join creates no room */
    /* its own room (percent-decoded from the URL) */
    CHECK(px_join(bound, "room:team a", "3"));
    /* a V1 socket is bound the same way */
    REQUIRE(px_sendf(v1, "{\"topic\":\"room:team a\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"7\",\"join_ref\":\"7\"}") == 0);
    PX_EXPECT(v1, "{\"topic\":\"room:team a\",\"event\":\"phx_reply\",\"payload\":{\"status\":\"error\","
                  "\"response\":{\"reason\":\"" CL_ROOM_ONLY "\"}},\"ref\":\"7\"}");
    REQUIRE(px_sendf(v1, "{\"topic\":\"room:team\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"8\",\"join_ref\":\"8\"}") == 0);
    PX_EXPECT(v1, "{\"topic\":\"room:team\",\"event\":\"phx_reply\",\"payload\":" PX_OK ",\"ref\":\"8\"}");
    /* a socket that named no room joins any, as before */
    CHECK(px_join(free_socket, "room:team a", "1"));
    CHECK(px_join(free_socket, "room:elsewhere", "2"));
    /* other topics keep their own answer */
    REQUIRE(px_sendf(bound, "[\"4\",\"4\",\"lobby\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "null", "4", "lobby", "unmatched topic");
    PX_EXPECT_EXACT(bound, expected);
    CHECK_EQ_INT(ts->server->channel_count, 4);
    CHECK_EQ_INT((int)vrs_get_stats(ts->server).join_failures[VRS_JOIN_FAILURE_OTHER_ROOM], 3);
    CHECK_EQ_INT((int)vrs_get_stats(ts->server).join_failures[VRS_JOIN_FAILURE_UNMATCHED_TOPIC], 1);
    CHECK(px_finish(ts, bound, v1, free_socket, NULL));
}

TEST(cluster, url_room_that_is_no_room_id_is_refused) {
    char too_long[200];
    const char *const targets[] = {"/socket/websocket?vsn=2.0.0&room=", "/socket/websocket?vsn=2.0.0&room=%zz",
                                   too_long};
    ts_server *ts = px_server_new();
    size_t i;
    REQUIRE(ts);
    ts->desc.max_room_id_size = 8;
    REQUIRE(px_start(ts));
    snprintf(too_long, sizeof too_long, "/socket/websocket?vsn=2.0.0&room=123456789");
    for (i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int status = px_try_target(ts, targets[i], NULL);
        if (status != 403) VRS_TEST_FAIL("%s: %d, expected 403", targets[i], status);
    }
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_ROOM_PARAM_REFUSED], 3);
    CHECK_EQ_INT((int)vrs_get_stats(ts->server).log_counts[VRS_LOG_ROOM_PARAM_REFUSED], 3);
    CHECK_EQ_INT(ts->open_count, 0);
    /* the longest id that fits is fine */
    {
        ts_client *c = px_ws(ts, "/socket/websocket?vsn=2.0.0&room=12345678", NULL);
        REQUIRE(c);
        CHECK(px_join(c, "room:12345678", "1"));
        CHECK(px_finish(ts, c, NULL));
    }
}

TEST(cluster, drain_refuses_sockets_serves_http_and_closes_all) {
    ts_server *ts = px_server_new();
    ts_client *a, *b;
    ts_frame f;
    ts_request q;
    ts_response r;
    vrs_stats s;
    char retry_after[16];
    REQUIRE(ts);
    ts->desc.on_open = ts_on_open;
    ts->desc.on_close = ts_on_close;
    ts->desc.on_http = ts_on_http;
    ts->http_status = 503;
    ts->http_content_type = "text/plain";
    ts->http_body = "draining\n";
    REQUIRE(px_start(ts));
    a = px_v2(ts);
    b = px_ws(ts, "/socket/websocket?vsn=2.0.0&room=r", NULL);
    REQUIRE(a && b);
    CHECK(px_join(a, "room:r", "1"));
    CHECK(px_join(b, "room:r", "1"));
    vrs_drain(ts->server);
    CHECK_EQ_INT(vrs_get_stats(ts->server).draining, 1);
    /* new sockets, Phoenix or not, get 503 with Retry-After: 0 */
    memset(&q, 0, sizeof q);
    q.target = PX_V2;
    CHECK_EQ_INT(px_try(ts, &q, &r), 503);
    CHECK(ts_response_header(&r, "Retry-After", retry_after, sizeof retry_after) && strcmp(retry_after, "0") == 0);
    CHECK_EQ_INT(px_try_target(ts, "/other", NULL), 503);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_DRAINING_REFUSED], 2);
    CHECK_EQ_INT(ts->http_count, 0);
    /* a plain request still reaches on_http (the host's health check answers) */
    {
        ts_client *c = ts_client_connect(ts);
        REQUIRE(c);
        q = ts_plain_request("GET", "/health");
        CHECK_EQ_INT(ts_handshake(c, &q, &r), 503);
        CHECK_EQ_INT(ts->http_count, 1);
        CHECK_EQ_STR(ts->http_path, "/health");
        ts_client_free(c);
    }
    /* the open sockets carry on */
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    CHECK_EQ_INT(ts->server->channel_count, 2);
    /* then every one is closed with the code and reason given */
    CHECK_EQ_INT(vrs_close_all(ts->server, 999, NULL), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_close_all(ts->server, 1012, "service restart"), VRS_OK);
    CHECK_EQ_INT(ts_read_close(a, &f, PX_WAIT_MS), 1012);
    CHECK(f.length == 17 && memcmp(f.payload + 2, "service restart", 15) == 0);
    CHECK_EQ_INT(ts_read_close(b, &f, PX_WAIT_MS), 1012);
    CHECK_EQ_INT(ts_send_close(a, 1012, NULL), 0);
    CHECK_EQ_INT(ts_send_close(b, 1012, NULL), 0);
    CHECK(ts_wait_closes(ts, 2));
    CHECK_EQ_INT(ts->close_codes[0], 1012);
    CHECK_EQ_INT(ts->close_codes[1], 1012);
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT((int)s.closes_by_code[12], 2);
    CHECK_EQ_INT((int)s.connections_refused, 2);
    CHECK_EQ_INT(s.channels, 0);
    CHECK_EQ_INT(s.rooms, 0);
    CHECK(px_finish(ts, a, b, NULL));
}

TEST(cluster, stats_count_what_happened) {
    ts_server *ts = px_server_new();
    ts_client *a, *b, *bad;
    char id[37];
    vrs_stats s;
    REQUIRE(ts);
    ts->desc.max_peers_per_room = 2;
    REQUIRE(px_start(ts));
    s = vrs_get_stats(ts->server);
    CHECK(s.connections_accepted == 0 && s.bytes_received == 0 && s.bytes_sent == 0);
    a = px_v2(ts);
    b = px_ws(ts, "/socket/websocket?vsn=2.0.0&room=s", NULL);
    REQUIRE(a && b);
    CHECK(px_join(a, "room:s", "1"));
    CHECK(px_join(a, "room:t", "2"));
    CHECK(px_join(b, "room:s", "1"));
    CHECK(px_relay_join(a, "1", "room:s", "{}", id, NULL, 0));
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT((int)s.connections_accepted, 2);
    CHECK_EQ_INT(s.phoenix_sockets, 2);
    CHECK_EQ_INT(s.channels, 3);
    CHECK_EQ_INT(s.relay_peers, 1);
    CHECK_EQ_INT(s.rooms, 2);
    CHECK_EQ_INT(s.draining, 0);
    CHECK(s.bytes_received > 0 && s.bytes_sent > 0);
    /* a third peer for a room of two, a refused version, an undecodable message */
    bad = px_v2(ts);
    REQUIRE(bad);
    REQUIRE(px_sendf(bad, "[\"1\",\"1\",\"room:s\",\"phx_join\",{}]") == 0);
    {
        char expected[300];
        ts_frame f;
        px_error_reply(expected, sizeof expected, "\"1\"", "1", "room:s", "room is full");
        PX_EXPECT_EXACT(bad, expected);
        CHECK_EQ_INT(px_try_target(ts, "/socket/websocket?vsn=3.0.0", NULL), 403);
        REQUIRE(px_sendf(bad, "[") == 0);
        CHECK_EQ_INT(ts_read_close(bad, &f, PX_WAIT_MS), 1007);
    }
    ts_client_free(bad);
    CHECK(ts_wait_count(ts, &ts->log_counts[VRS_LOG_CONNECTION_CLOSED], 1, PX_WAIT_MS));
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT((int)s.join_failures[VRS_JOIN_FAILURE_ROOM_FULL], 1);
    CHECK_EQ_INT((int)s.log_counts[VRS_LOG_VSN_REFUSED], 1);
    CHECK_EQ_INT((int)s.log_counts[VRS_LOG_BAD_MESSAGE], 1);
    CHECK_EQ_INT((int)s.closes_by_code[7], 1);
    CHECK_EQ_INT((int)s.connections_accepted, 4);
    CHECK_EQ_INT(s.phoenix_sockets, 2);
    CHECK_EQ_STR(vrs_join_failure_reason(VRS_JOIN_FAILURE_SERVER_FULL), "server is full");
    CHECK(px_finish(ts, a, b, NULL));
}
