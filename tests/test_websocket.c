/* End-to-end tests of the WebSocket server (RFC 6455 over HTTP/1.1): a real vrs_server on an
   ephemeral loopback port, stepped in this thread, and raw clients from test_support.h that
   send exact bytes, broken ones included. Each rule of the header's "THE WEBSOCKET SERVER"
   section has a test that fails without it: the HTTP status, the close code, the log item.
   Every test ends by checking that the server's tables are empty again. */

#define WS_EXAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_EXAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Every test ends here: no connection, no WebSocket and no pool block left, no failed step. */
#define WS_END(ts)                                                                          \
    do {                                                                                    \
        CHECK(ts_wait_drained((ts), TS_TIMEOUT_MS));                                        \
        CHECK_EQ_INT((ts)->step_errors, 0);                                                 \
        ts_server_free(ts);                                                                 \
    } while (0)

static ts_request ws_request(void) {
    ts_request q;
    memset(&q, 0, sizeof q);
    return q;
}

/* Reads an HTTP error answer: the status, "Connection: close", the body Content-Length
   announces, then the end of the connection with nothing more. `out` may be NULL. */
static int ws_expect_http_error(ts_client *c, int status, ts_response *out) {
    ts_response local, *r = out ? out : &local;
    char value[128];
    int ok = 1;
    if (ts_read_response_head(c, r, TS_TIMEOUT_MS) != 1) {
        fprintf(stderr, "    no response head (expected %d)\n", status);
        return 0;
    }
    if (r->status != status) {
        fprintf(stderr, "    status %d, expected %d\n", r->status, status);
        ok = 0;
    }
    if (!ts_response_header(r, "Connection", value, sizeof value) || strcmp(value, "close") != 0) {
        fprintf(stderr, "    %d without \"Connection: close\"\n", r->status);
        ok = 0;
    }
    if (ts_read_response_body(c, r, TS_TIMEOUT_MS) != 1) {
        fprintf(stderr, "    %d: body shorter than its Content-Length\n", r->status);
        ok = 0;
    } else if (r->body_length == 0) {
        fprintf(stderr, "    %d: no body\n", r->status);
        ok = 0;
    }
    if (!ts_wait_eof(c, TS_TIMEOUT_MS)) {
        fprintf(stderr, "    the server kept the connection open after %d\n", r->status);
        ok = 0;
    } else if (c->discarded) {
        fprintf(stderr, "    %lu bytes after the %d response\n", (unsigned long)c->discarded, r->status);
        ok = 0;
    }
    return ok;
}

/* Connects, sends the request and expects the error answer. */
static int ws_request_answer(ts_server *ts, const ts_request *q, int status, ts_response *out) {
    ts_client *c = ts_client_connect(ts);
    int ok;
    if (!c) return 0;
    ok = ts_send_request(c, q) == 0 && ws_expect_http_error(c, status, out);
    ts_client_free(c);
    return ok;
}

/* A clean close from the client: close 1000, the echo, the end of TCP. Frees the client. */
static int ws_close_cleanly(ts_client *c) {
    ts_frame f;
    int ok = ts_send_close(c, 1000, NULL) == 0 && ts_read_close(c, &f, TS_TIMEOUT_MS) == 1000 &&
             ts_wait_eof(c, TS_TIMEOUT_MS);
    if (!ok) fprintf(stderr, "    the clean close failed\n");
    ts_client_free(c);
    return ok;
}

/* Sends a text message and expects it back, whole and final. */
static int ws_echo_text(ts_client *c, const char *text) {
    ts_frame f;
    size_t n = strlen(text);
    if (ts_send_text(c, text) != 0) return 0;
    if (ts_read_frame(c, &f, TS_TIMEOUT_MS) != 1) {
        fprintf(stderr, "    no echo of \"%s\"\n", text);
        return 0;
    }
    if (f.opcode != 1 || !f.fin || f.rsv || f.masked || f.length != n || memcmp(f.payload, text, n) != 0) {
        fprintf(stderr, "    bad echo of \"%s\": opcode %d fin %d length %lu\n", text, f.opcode, f.fin,
                (unsigned long)f.length);
        return 0;
    }
    return 1;
}

/* Opens a connection on `ts`, sends one frame, and expects: a close with `code` as the first
   frame back, the end of TCP, on_close(code) and one more `item` in the log. */
static int ws_check_violation(ts_server *ts, const ts_frame_spec *s, const void *payload,
                              size_t length, int code, vrs_log_item item) {
    ts_client *c = ts_ws_connect(ts);
    int before = ts->log_counts[item], ok = 1, got;
    ts_frame f;
    if (!c) {
        fprintf(stderr, "    cannot connect\n");
        return 0;
    }
    ts_send_frame_spec(c, s, payload, length);
    got = ts_read_close(c, &f, TS_TIMEOUT_MS);
    if (got != code) {
        fprintf(stderr, "    opcode %d (rsv %d): close %d, expected %d\n", s->opcode, s->rsv, got, code);
        ok = 0;
    }
    if (c->skipped_frames) {
        fprintf(stderr, "    %d frames came before the close\n", c->skipped_frames);
        ok = 0;
    }
    if (!ts_wait_eof(c, TS_TIMEOUT_MS)) {
        fprintf(stderr, "    no end of TCP after close %d\n", code);
        ok = 0;
    }
    if (ts_close_code_of(ts, c->conn) != code) {
        fprintf(stderr, "    on_close reported %d, expected %d\n", ts_close_code_of(ts, c->conn), code);
        ok = 0;
    }
    if (ts->log_counts[item] != before + 1) {
        fprintf(stderr, "    %s not logged\n", vrs_log_item_name(item));
        ok = 0;
    }
    ts_client_free(c);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
   The opening handshake
   ------------------------------------------------------------------------------------------- */

TEST(websocket, handshake_accepts_with_rfc_example_key) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_request q = ws_request();
    ts_response r;
    char value[128];
    REQUIRE(ts);
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(strncmp(r.head, "HTTP/1.1 101 ", 13) == 0);
    CHECK(ts_response_header(&r, "Sec-WebSocket-Accept", value, sizeof value));
    CHECK_EQ_STR(value, WS_EXAMPLE_ACCEPT);
    CHECK(ts_response_header(&r, "Upgrade", value, sizeof value));
    CHECK_EQ_STR(value, "websocket");
    CHECK(ts_response_header(&r, "Connection", value, sizeof value));
    CHECK_EQ_STR(value, "Upgrade");
    CHECK(!ts_response_header(&r, "Sec-WebSocket-Protocol", value, sizeof value));
    CHECK_EQ_INT(ts->open_count, 1);
    CHECK_EQ_INT(vrs_get_stats(ts->server).open_connections, 1);
    c->conn = ts->opened[0];
    CHECK(vrs_conn_is_open(ts->server, c->conn));
    CHECK(strncmp(vrs_conn_remote_address(ts->server, c->conn), "127.0.0.1:", 10) == 0);
    CHECK(ws_echo_text(c, "hello"));
    CHECK(ws_close_cleanly(c));
    CHECK_EQ_INT(ts->close_count, 1);
    WS_END(ts);
}

TEST(websocket, handshake_header_names_are_case_insensitive) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_request q = ws_request();
    ts_response r;
    char value[128];
    REQUIRE(ts);
    q.host = q.upgrade = q.connection = q.key = q.ws_version = TS_OMIT;
    q.extra = "host: 127.0.0.1\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n"
              "sec-websocket-key: " WS_EXAMPLE_KEY "\r\nSEC-WEBSOCKET-VERSION: 13\r\n";
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(ts_response_header(&r, "Sec-WebSocket-Accept", value, sizeof value));
    CHECK_EQ_STR(value, WS_EXAMPLE_ACCEPT);
    CHECK(ws_echo_text(c, "case"));
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, handshake_connection_token_lists) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_request q = ws_request();
    ts_response r;
    REQUIRE(ts);
    q.connection = "keep-alive, Upgrade";
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(ws_echo_text(c, "list"));
    CHECK(ws_close_cleanly(c));
    /* the token in a second Connection header line counts too */
    q.connection = TS_OMIT;
    q.extra = "Connection: keep-alive\r\nConnection: upgrade\r\n";
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(ws_close_cleanly(c));
    CHECK_EQ_INT(ts->open_count, 2);
    WS_END(ts);
}

/* One bad upgrade request per test: `setup` changes the valid request. */
#define WS_BAD_REQUEST_TEST(name, status, item, ...)                                        \
    TEST(websocket, name) {                                                                 \
        ts_server *ts = ts_server_default();                                                \
        ts_request q = ws_request();                                                        \
        REQUIRE(ts);                                                                        \
        __VA_ARGS__;                                                                        \
        CHECK(ws_request_answer(ts, &q, status, NULL));                                     \
        CHECK_EQ_INT(ts->log_counts[item], 1);                                              \
        CHECK_EQ_INT(ts->open_count, 0);                                                    \
        WS_END(ts);                                                                         \
    }

WS_BAD_REQUEST_TEST(handshake_missing_key_400, 400, VRS_LOG_BAD_UPGRADE, q.key = TS_OMIT)
WS_BAD_REQUEST_TEST(handshake_key_not_base64_400, 400, VRS_LOG_BAD_UPGRADE, q.key = "!!!!!!!!!!!!!!!!!!!!!!!!")
WS_BAD_REQUEST_TEST(handshake_key_bad_padding_400, 400, VRS_LOG_BAD_UPGRADE, q.key = "dGhlIHNhbXBsZSBub25jZQ=A")
/* base64 of 15 bytes ("0123456789abcde") and of 17 bytes ("0123456789abcdefg") */
WS_BAD_REQUEST_TEST(handshake_key_of_15_bytes_400, 400, VRS_LOG_BAD_UPGRADE, q.key = "MDEyMzQ1Njc4OWFiY2Rl")
WS_BAD_REQUEST_TEST(handshake_key_of_17_bytes_400, 400, VRS_LOG_BAD_UPGRADE, q.key = "MDEyMzQ1Njc4OWFiY2RlZmc=")
WS_BAD_REQUEST_TEST(handshake_missing_upgrade_400, 400, VRS_LOG_BAD_UPGRADE, q.upgrade = TS_OMIT)
WS_BAD_REQUEST_TEST(handshake_upgrade_not_websocket_400, 400, VRS_LOG_BAD_UPGRADE, q.upgrade = "h2c")
WS_BAD_REQUEST_TEST(handshake_connection_without_upgrade_400, 400, VRS_LOG_BAD_UPGRADE, q.connection = "keep-alive")
WS_BAD_REQUEST_TEST(handshake_post_400, 400, VRS_LOG_BAD_UPGRADE, q.method = "POST")
WS_BAD_REQUEST_TEST(handshake_http10_400, 400, VRS_LOG_BAD_UPGRADE, q.version = "HTTP/1.0")
WS_BAD_REQUEST_TEST(handshake_missing_host_400, 400, VRS_LOG_BAD_REQUEST, q.host = TS_OMIT)
WS_BAD_REQUEST_TEST(handshake_garbage_request_line_400, 400, VRS_LOG_BAD_REQUEST,
                    q.method = "this is", q.target = "not", q.version = "http at all")
WS_BAD_REQUEST_TEST(handshake_obsolete_line_folding_400, 400, VRS_LOG_BAD_REQUEST,
                    q.extra = "X-Folded: a\r\n  b\r\n")

TEST(websocket, handshake_version_8_gets_426) {
    ts_server *ts = ts_server_default();
    ts_request q = ws_request();
    ts_response r;
    char value[64];
    REQUIRE(ts);
    q.ws_version = "8";
    CHECK(ws_request_answer(ts, &q, 426, &r));
    CHECK(ts_response_header(&r, "Sec-WebSocket-Version", value, sizeof value));
    CHECK_EQ_STR(value, "13");
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_UNSUPPORTED_VERSION], 1);
    /* no version at all is not 13 either */
    q.ws_version = TS_OMIT;
    CHECK(ws_request_answer(ts, &q, 426, NULL));
    CHECK_EQ_INT(ts->open_count, 0);
    WS_END(ts);
}

TEST(websocket, handshake_request_too_large_gets_431) {
    ts_server *ts = ts_server_new();
    ts_request q = ws_request();
    char filler[1200];
    REQUIRE(ts);
    ts->desc.max_request_size = 512;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    memcpy(filler, "X-Filler: ", 10);
    memset(filler + 10, 'a', 1000);
    memcpy(filler + 1010, "\r\n", 3);
    q.extra = filler;
    CHECK(ws_request_answer(ts, &q, 431, NULL));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_REQUEST_TOO_LARGE], 1);
    /* a head just under the limit still passes */
    memset(filler + 10, 'a', 200);
    memcpy(filler + 210, "\r\n", 3);
    {
        ts_client *c = ts_client_connect(ts);
        ts_response r;
        REQUIRE(c);
        CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
        CHECK(ws_close_cleanly(c));
    }
    WS_END(ts);
}

TEST(websocket, handshake_too_many_headers_gets_431) {
    ts_server *ts = ts_server_default();
    ts_request q = ws_request();
    char extra[2048];
    size_t at = 0;
    int i;
    REQUIRE(ts);
    for (i = 0; i < VRS_MAX_HEADERS; i++) at += (size_t)snprintf(extra + at, sizeof extra - at, "X-%d: v\r\n", i);
    q.extra = extra;
    CHECK(ws_request_answer(ts, &q, 431, NULL));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_REQUEST_TOO_LARGE], 1);
    WS_END(ts);
}

TEST(websocket, handshake_split_across_many_sends) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_request q = ws_request();
    ts_response r;
    char head[1024], value[64];
    size_t n, at = 0;
    REQUIRE(ts);
    n = ts_format_request(&q, head, sizeof head);
    REQUIRE(n > 0);
    c = ts_client_connect(ts);
    REQUIRE(c);
    while (at < n) {
        size_t piece = at < 40 ? 1 : 7; /* byte by byte, then in small pieces */
        if (piece > n - at) piece = n - at;
        REQUIRE(ts_send_raw(c, head + at, piece) == 0);
        at += piece;
        ts_pump(ts, 1);
        ts_client_recv_some(c);
        if (at < n) CHECK_EQ_INT(ts_client_available(c), 0); /* no answer to half a request */
    }
    CHECK_EQ_INT(ts_read_response_head(c, &r, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(r.status, 101);
    CHECK(ts_response_header(&r, "Sec-WebSocket-Accept", value, sizeof value));
    CHECK_EQ_STR(value, WS_EXAMPLE_ACCEPT);
    CHECK_EQ_INT(ts->open_count, 1);
    c->conn = ts->opened[0];
    CHECK(ws_echo_text(c, "slow but complete"));
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, handshake_frames_sent_with_the_request) {
    /* a client that does not wait for the 101: its first frame arrives with the head */
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_request q = ws_request();
    ts_frame_spec s;
    ts_response r;
    ts_frame f;
    unsigned char bytes[1024];
    size_t n;
    REQUIRE(ts);
    c = ts_client_connect(ts);
    REQUIRE(c);
    n = ts_format_request(&q, (char *)bytes, sizeof bytes);
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    n += ts_build_frame(c, &s, "early", 5, bytes + n, sizeof bytes - n);
    REQUIRE(ts_send_raw(c, bytes, n) == 0);
    CHECK_EQ_INT(ts_read_response_head(c, &r, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(r.status, 101);
    CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 1);
    CHECK(f.length == 5 && memcmp(f.payload, "early", 5) == 0);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   Plain HTTP and the host's hooks
   ------------------------------------------------------------------------------------------- */

TEST(websocket, http_without_hook_gets_404) {
    ts_server *ts = ts_server_default();
    ts_request q = ts_plain_request("GET", "/index.html");
    REQUIRE(ts);
    CHECK(ws_request_answer(ts, &q, 404, NULL));
    /* HTTP/1.0 without Host is a fine plain request */
    q.version = "HTTP/1.0";
    q.host = TS_OMIT;
    CHECK(ws_request_answer(ts, &q, 404, NULL));
    CHECK_EQ_INT(ts->open_count, 0);
    WS_END(ts);
}

TEST(websocket, http_hook_answers_with_body) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_request q = ts_plain_request("GET", "/status?verbose=1");
    ts_response r;
    char value[128];
    REQUIRE(ts);
    ts->desc.on_http = ts_on_http;
    ts->http_status = 200;
    ts->http_content_type = "text/plain";
    ts->http_extra_headers = "X-Test: yes\r\n";
    ts->http_body = "hello from on_http";
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 200);
    CHECK_EQ_INT(ts->http_result, VRS_OK);
    CHECK_EQ_STR(ts->http_path, "/status");
    CHECK(ts_response_header(&r, "Content-Type", value, sizeof value));
    CHECK_EQ_STR(value, "text/plain");
    CHECK(ts_response_header(&r, "Content-Length", value, sizeof value));
    CHECK_EQ_STR(value, "18");
    CHECK(ts_response_header(&r, "X-Test", value, sizeof value));
    CHECK_EQ_STR(value, "yes");
    CHECK(ts_response_header(&r, "Connection", value, sizeof value));
    CHECK_EQ_STR(value, "close");
    CHECK_EQ_INT(ts_read_response_body(c, &r, TS_TIMEOUT_MS), 1);
    CHECK_EQ_STR(r.body, "hello from on_http");
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(c->discarded, 0);
    ts_client_free(c);
    /* a hook that does not answer leaves the request to the 404 */
    ts->http_status = 0;
    CHECK(ws_request_answer(ts, &q, 404, NULL));
    CHECK_EQ_INT(ts->http_count, 2);
    WS_END(ts);
}

TEST(websocket, http_head_gets_headers_without_body) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_request q = ts_plain_request("HEAD", "/status");
    ts_response r;
    char value[64];
    REQUIRE(ts);
    ts->desc.on_http = ts_on_http;
    ts->http_status = 200;
    ts->http_body = "twelve bytes";
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 200);
    CHECK(ts_response_header(&r, "Content-Length", value, sizeof value));
    CHECK_EQ_STR(value, "12");
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(c->discarded, 0); /* no body */
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, upgrade_hook_refuses_with_403) {
    ts_server *ts = ts_server_new();
    ts_request q = ws_request();
    REQUIRE(ts);
    ts->desc.on_upgrade = ts_on_upgrade;
    ts->refuse_status = 403;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    CHECK(ws_request_answer(ts, &q, 403, NULL));
    CHECK_EQ_INT(ts->upgrade_count, 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_UPGRADE_REFUSED], 1);
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK_EQ_INT(ts->close_count, 0);
    WS_END(ts);
}

TEST(websocket, upgrade_hook_subprotocol_offered_is_echoed) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_request q = ws_request();
    ts_response r;
    char value[64];
    REQUIRE(ts);
    ts->desc.on_upgrade = ts_on_upgrade;
    ts->subprotocol = "chat";
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    q.extra = "Sec-WebSocket-Protocol: superchat, chat\r\n";
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(ts_response_header(&r, "Sec-WebSocket-Protocol", value, sizeof value));
    CHECK_EQ_STR(value, "chat");
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SUBPROTOCOL_NOT_OFFERED], 0);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, upgrade_hook_subprotocol_not_offered_is_not_sent) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_request q = ws_request();
    ts_response r;
    char value[64];
    REQUIRE(ts);
    ts->desc.on_upgrade = ts_on_upgrade;
    ts->subprotocol = "chat";
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    q.extra = "Sec-WebSocket-Protocol: superchat, chatty\r\n";
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(!ts_response_header(&r, "Sec-WebSocket-Protocol", value, sizeof value));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SUBPROTOCOL_NOT_OFFERED], 1);
    CHECK(ws_echo_text(c, "still open"));
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   Data frames
   ------------------------------------------------------------------------------------------- */

static void ws_echo_lengths(int opcode) {
    static const size_t lengths[] = {0, 1, 125, 126, 65535, 65536};
    ts_server *ts = ts_server_default();
    ts_client *c;
    unsigned char *payload = (unsigned char *)malloc(65536);
    size_t i, k;
    REQUIRE(ts && payload);
    c = ts_ws_connect(ts);
    if (!c) free(payload);
    REQUIRE(c);
    for (k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        size_t n = lengths[k];
        ts_frame f;
        for (i = 0; i < n; i++)
            payload[i] = opcode == 1 ? (unsigned char)('a' + (i + k) % 26) : (unsigned char)(i * 7 + k);
        CHECK_EQ_INT(ts_send_frame(c, opcode, 1, payload, n), 0);
        if (ts_read_frame(c, &f, TS_TIMEOUT_MS) != 1) {
            VRS_TEST_FAIL("no echo of %lu bytes", (unsigned long)n);
            break;
        }
        CHECK_EQ_INT(f.opcode, opcode);
        CHECK(f.fin && !f.masked && !f.rsv);
        CHECK_EQ_INT(f.length, n);
        /* the server writes the minimal length encoding */
        CHECK_EQ_INT(f.length_code, n < 126 ? (int)n : n <= 0xFFFF ? 126 : 127);
        if (f.length == n) CHECK(n == 0 || memcmp(f.payload, payload, n) == 0);
        CHECK_EQ_INT(ts_last_message(ts)->type, opcode);
        CHECK_EQ_INT(ts_last_message(ts)->length, n);
    }
    CHECK_EQ_INT(ts->message_count, (long)(sizeof lengths / sizeof lengths[0]));
    CHECK_EQ_INT(ts->echo_failures, 0);
    free(payload);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, echo_text_across_length_encodings) { ws_echo_lengths(1); }
TEST(websocket, echo_binary_across_length_encodings) { ws_echo_lengths(2); }

TEST(websocket, echo_many_messages_in_one_write) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame_spec s;
    unsigned char bytes[4096];
    size_t n = 0;
    int i;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    for (i = 0; i < 50; i++) {
        char text[24];
        snprintf(text, sizeof text, "message %d", i);
        n += ts_build_frame(c, &s, text, strlen(text), bytes + n, sizeof bytes - n);
    }
    REQUIRE(ts_send_raw(c, bytes, n) == 0);
    for (i = 0; i < 50; i++) {
        char text[24];
        ts_frame f;
        snprintf(text, sizeof text, "message %d", i);
        REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
        CHECK(f.opcode == 1 && f.length == strlen(text) && memcmp(f.payload, text, f.length) == 0);
    }
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, unmasked_client_frame_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    s.unmasked = 1;
    CHECK(ws_check_violation(ts, &s, "hi", 2, 1002, VRS_LOG_PROTOCOL_ERROR));
    CHECK_EQ_INT(ts->message_count, 0);
    WS_END(ts);
}

TEST(websocket, reserved_bits_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    int rsv;
    REQUIRE(ts);
    for (rsv = 1; rsv <= 4; rsv <<= 1) {
        memset(&s, 0, sizeof s);
        s.opcode = 1;
        s.rsv = rsv;
        CHECK(ws_check_violation(ts, &s, "hi", 2, 1002, VRS_LOG_PROTOCOL_ERROR));
    }
    /* on a control frame too */
    memset(&s, 0, sizeof s);
    s.opcode = 9;
    s.rsv = 4;
    CHECK(ws_check_violation(ts, &s, "", 0, 1002, VRS_LOG_PROTOCOL_ERROR));
    CHECK_EQ_INT(ts->message_count, 0);
    WS_END(ts);
}

TEST(websocket, reserved_opcodes_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    int opcode;
    REQUIRE(ts);
    for (opcode = 3; opcode <= 15; opcode++) {
        if (opcode >= 8 && opcode <= 10) continue;
        memset(&s, 0, sizeof s);
        s.opcode = opcode;
        CHECK(ws_check_violation(ts, &s, "x", 1, 1002, VRS_LOG_PROTOCOL_ERROR));
    }
    WS_END(ts);
}

TEST(websocket, ping_over_125_bytes_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    unsigned char payload[126];
    REQUIRE(ts);
    memset(payload, 'p', sizeof payload);
    memset(&s, 0, sizeof s);
    s.opcode = 9;
    CHECK(ws_check_violation(ts, &s, payload, 126, 1002, VRS_LOG_PROTOCOL_ERROR));
    WS_END(ts);
}

TEST(websocket, fragmented_ping_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 9;
    s.nonfinal = 1;
    CHECK(ws_check_violation(ts, &s, "ping", 4, 1002, VRS_LOG_PROTOCOL_ERROR));
    WS_END(ts);
}

TEST(websocket, continuation_without_message_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 0;
    CHECK(ws_check_violation(ts, &s, "orphan", 6, 1002, VRS_LOG_PROTOCOL_ERROR));
    CHECK_EQ_INT(ts->message_count, 0);
    WS_END(ts);
}

TEST(websocket, new_message_inside_fragmented_one_1002) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, "first ", 6), 0);
    CHECK(ts_client_quiet(c, 20));
    CHECK_EQ_INT(ts_send_frame(c, 2, 1, "second", 6), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1002);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1002);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_PROTOCOL_ERROR], 1);
    CHECK_EQ_INT(ts->message_count, 0);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, non_minimal_lengths_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    unsigned char payload[200];
    REQUIRE(ts);
    memset(payload, 'n', sizeof payload);
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    s.length_bytes = 2; /* 5 in the 16-bit form */
    CHECK(ws_check_violation(ts, &s, payload, 5, 1002, VRS_LOG_PROTOCOL_ERROR));
    s.length_bytes = 8; /* 5 in the 64-bit form */
    CHECK(ws_check_violation(ts, &s, payload, 5, 1002, VRS_LOG_PROTOCOL_ERROR));
    s.length_bytes = 8; /* 200 fits 16 bits */
    CHECK(ws_check_violation(ts, &s, payload, 200, 1002, VRS_LOG_PROTOCOL_ERROR));
    s.opcode = 9; /* a control frame's 16-bit form says more than 125 */
    s.length_bytes = 2;
    CHECK(ws_check_violation(ts, &s, payload, 5, 1002, VRS_LOG_PROTOCOL_ERROR));
    CHECK_EQ_INT(ts->message_count, 0);
    WS_END(ts);
}

TEST(websocket, length_with_top_bit_set_1002) {
    ts_server *ts = ts_server_new();
    ts_frame_spec s;
    REQUIRE(ts);
    ts->desc.max_message_size = 1000;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    memset(&s, 0, sizeof s);
    s.opcode = 2;
    s.length_bytes = 8;
    s.declare_length = 1;
    s.declared_length = (uint64_t)1 << 63 | 5; /* the header alone: 1002, not 1009 */
    CHECK(ws_check_violation(ts, &s, NULL, 0, 1002, VRS_LOG_PROTOCOL_ERROR));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_MESSAGE_TOO_LARGE], 0);
    WS_END(ts);
}

TEST(websocket, fragmented_text_with_ping_and_pong_between) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    const ts_message *m;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, "Hello, ", 7), 0);
    CHECK_EQ_INT(ts_send_frame(c, 9, 1, "mid-ping", 8), 0);
    /* the ping is answered at once, mid-message */
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 10);
    CHECK(f.fin && f.length == 8 && memcmp(f.payload, "mid-ping", 8) == 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 0, "fragmented ", 11), 0);
    CHECK_EQ_INT(ts_send_frame(c, 10, 1, "unsolicited", 11), 0);
    CHECK(ts_client_quiet(c, 20));
    CHECK_EQ_INT(ts->message_count, 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, "world", 5), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 1);
    CHECK(f.fin && f.length == 23 && memcmp(f.payload, "Hello, fragmented world", 23) == 0);
    CHECK_EQ_INT(ts->message_count, 1);
    m = ts_last_message(ts);
    REQUIRE(m);
    CHECK_EQ_INT(m->type, VRS_MESSAGE_TEXT);
    CHECK(m->length == 23 && memcmp(m->data, "Hello, fragmented world", 23) == 0);
    CHECK(ts_client_quiet(c, 20)); /* nothing answers the pong */
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, fragmented_binary_in_ten_with_ping_and_pong_in_one_write) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame_spec s;
    ts_frame f;
    unsigned char message[10000], *bytes = (unsigned char *)malloc(20000);
    size_t n = 0;
    int i;
    REQUIRE(ts && bytes);
    c = ts_ws_connect(ts);
    if (!c) free(bytes);
    REQUIRE(c);
    for (i = 0; i < 10000; i++) message[i] = (unsigned char)(i * 31 + 7);
    for (i = 0; i < 10; i++) {
        memset(&s, 0, sizeof s);
        s.opcode = i == 0 ? 2 : 0;
        s.nonfinal = i < 9;
        n += ts_build_frame(c, &s, message + i * 1000, 1000, bytes + n, 20000 - n);
        if (i == 3) {
            memset(&s, 0, sizeof s);
            s.opcode = 9;
            n += ts_build_frame(c, &s, "between", 7, bytes + n, 20000 - n);
        }
        if (i == 6) {
            memset(&s, 0, sizeof s);
            s.opcode = 10;
            n += ts_build_frame(c, &s, "pong", 4, bytes + n, 20000 - n);
        }
    }
    CHECK_EQ_INT(ts_send_raw(c, bytes, n), 0);
    free(bytes);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 10);
    CHECK(f.length == 7 && memcmp(f.payload, "between", 7) == 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 2);
    CHECK(f.fin);
    CHECK(f.length == 10000 && memcmp(f.payload, message, 10000) == 0);
    CHECK_EQ_INT(ts->message_count, 1);
    CHECK(ts_client_quiet(c, 20));
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, fragmented_message_with_empty_first_fragments) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    /* text: "" then "hello" */
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, "", 0), 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, "hello", 5), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 1);
    CHECK(f.length == 5 && memcmp(f.payload, "hello", 5) == 0);
    REQUIRE(ts->message_count == 1);
    CHECK_EQ_INT(ts_last_message(ts)->type, VRS_MESSAGE_TEXT);
    /* binary: "", "", then 3 bytes */
    CHECK_EQ_INT(ts_send_frame(c, 2, 0, "", 0), 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 0, "", 0), 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, "\x01\x02\x03", 3), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 2);
    CHECK(f.length == 3 && memcmp(f.payload, "\x01\x02\x03", 3) == 0);
    CHECK_EQ_INT(ts_last_message(ts)->type, VRS_MESSAGE_BINARY);
    /* all empty */
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, "", 0), 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, "", 0), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 1 && f.length == 0);
    CHECK_EQ_INT(ts->echo_failures, 0);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, message_too_large_1009_from_the_header_alone) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_frame_spec s;
    unsigned char payload[1000];
    ts_frame f;
    REQUIRE(ts);
    ts->desc.max_message_size = 1000;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    /* exactly the maximum passes */
    memset(payload, 'm', sizeof payload);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 2, 1, payload, 1000), 0);
    CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 2 && f.length == 1000);
    CHECK(ws_close_cleanly(c));
    /* one more byte, announced by a header sent without its payload */
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    s.declare_length = 1;
    s.declared_length = 1001;
    CHECK(ws_check_violation(ts, &s, NULL, 0, 1009, VRS_LOG_MESSAGE_TOO_LARGE));
    s.opcode = 2;
    s.declared_length = (uint64_t)1 << 40;
    CHECK(ws_check_violation(ts, &s, NULL, 0, 1009, VRS_LOG_MESSAGE_TOO_LARGE));
    CHECK_EQ_INT(ts->message_count, 1);
    WS_END(ts);
}

TEST(websocket, fragments_passing_the_maximum_1009) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_frame_spec s;
    unsigned char payload[600];
    ts_frame f;
    REQUIRE(ts);
    ts->desc.max_message_size = 1000;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    memset(payload, 'f', sizeof payload);
    /* 600 + 400 is the maximum: delivered */
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, payload, 600), 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, payload, 400), 0);
    CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 1 && f.length == 1000);
    CHECK(ws_close_cleanly(c));
    /* 600 + 401: the second header alone closes */
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, payload, 600), 0);
    memset(&s, 0, sizeof s);
    s.opcode = 0;
    s.declare_length = 1;
    s.declared_length = 401;
    CHECK_EQ_INT(ts_send_frame_spec(c, &s, NULL, 0), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1009);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1009);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_MESSAGE_TOO_LARGE], 1);
    ts_client_free(c);
    CHECK_EQ_INT(ts->message_count, 1);
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   UTF-8
   ------------------------------------------------------------------------------------------- */

TEST(websocket, invalid_utf8_text_1007) {
    static const char *const bad[] = {
        "abc\xff",               /* never valid */
        "\xc0\xaf",              /* overlong '/' */
        "\xed\xa0\x80",          /* a surrogate */
        "\xf4\x90\x80\x80",      /* past U+10FFFF */
        "ends mid character \xe2\x82", /* truncated at the end of the message */
    };
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    size_t i;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(ws_check_violation(ts, &s, bad[i], strlen(bad[i]), 1007, VRS_LOG_INVALID_UTF8));
    /* binary messages are not UTF-8 checked */
    {
        ts_client *c = ts_ws_connect(ts);
        ts_frame f;
        REQUIRE(c);
        CHECK_EQ_INT(ts_send_frame(c, 2, 1, "\xff\xfe", 2), 0);
        CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
        CHECK(f.opcode == 2 && f.length == 2);
        CHECK(ws_close_cleanly(c));
    }
    CHECK_EQ_INT(ts->message_count, 1);
    WS_END(ts);
}

TEST(websocket, invalid_utf8_across_fragments_fails_fast) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    /* valid so far: a character left open at the fragment's end */
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, "ok \xe2\x82", 5), 0);
    CHECK(ts_client_quiet(c, 30));
    /* its next byte is no continuation byte: 1007 now, before any final fragment */
    CHECK_EQ_INT(ts_send_frame(c, 0, 0, "( more", 6), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1007);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1007);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_INVALID_UTF8], 1);
    CHECK_EQ_INT(ts->message_count, 0);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, invalid_utf8_mid_payload_fails_before_the_rest) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame_spec s;
    ts_frame f;
    unsigned char text[100], frame[200];
    size_t n;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    memset(text, 'u', sizeof text);
    text[30] = 0xC3; /* a two-byte lead ... */
    text[31] = 'x';  /* ... without its continuation */
    memset(&s, 0, sizeof s);
    s.opcode = 1;
    n = ts_build_frame(c, &s, text, sizeof text, frame, sizeof frame);
    REQUIRE(n == 2 + 4 + 100);
    CHECK_EQ_INT(ts_send_raw(c, frame, 6 + 20), 0); /* header and 20 good bytes */
    CHECK(ts_client_quiet(c, 30));
    CHECK_EQ_INT(ts_send_raw(c, frame + 26, 30), 0); /* up to byte 50, the bad one inside */
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1007);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_INVALID_UTF8], 1);
    CHECK_EQ_INT(ts->message_count, 0);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, valid_utf8_split_across_fragments_is_delivered) {
    static const char whole[] = "a\xe2\x82\xac b \xf0\x9d\x84\x9e z"; /* "a€ b 𝄞 z" */
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    const ts_message *m;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, whole, 2), 0);          /* "a" + E2 */
    CHECK_EQ_INT(ts_send_frame(c, 0, 0, whole + 2, 1), 0);      /* 82 */
    CHECK_EQ_INT(ts_send_frame(c, 0, 0, whole + 3, 5), 0);      /* AC " b " F0 */
    CHECK_EQ_INT(ts_send_frame(c, 0, 0, whole + 8, 2), 0);      /* 9D 84 */
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, whole + 10, sizeof whole - 1 - 10), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 1);
    CHECK(f.length == sizeof whole - 1 && memcmp(f.payload, whole, sizeof whole - 1) == 0);
    m = ts_last_message(ts);
    REQUIRE(m);
    CHECK(m->length == sizeof whole - 1 && memcmp(m->data, whole, sizeof whole - 1) == 0);
    /* and a multi-byte character split between two reads of one frame */
    {
        ts_frame_spec s;
        unsigned char frame[64];
        size_t n;
        memset(&s, 0, sizeof s);
        s.opcode = 1;
        n = ts_build_frame(c, &s, whole, sizeof whole - 1, frame, sizeof frame);
        CHECK_EQ_INT(ts_send_raw(c, frame, 6 + 3), 0); /* ends after E2 82 */
        CHECK(ts_client_quiet(c, 20));
        CHECK_EQ_INT(ts_send_raw(c, frame + 9, n - 9), 0);
        REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
        CHECK(f.opcode == 1 && f.length == sizeof whole - 1 && memcmp(f.payload, whole, f.length) == 0);
    }
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_INVALID_UTF8], 0);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   Ping and pong
   ------------------------------------------------------------------------------------------- */

TEST(websocket, ping_gets_pong_with_the_same_payload) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    unsigned char payload[125];
    int i;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    for (i = 0; i < 125; i++) payload[i] = (unsigned char)(i * 3);
    CHECK_EQ_INT(ts_send_frame(c, 9, 1, "are you there", 13), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 10 && f.fin && f.length == 13 && memcmp(f.payload, "are you there", 13) == 0);
    CHECK_EQ_INT(ts_send_frame(c, 9, 1, payload, 125), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 10 && f.length == 125 && memcmp(f.payload, payload, 125) == 0);
    CHECK_EQ_INT(ts_send_frame(c, 9, 1, "", 0), 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 10 && f.length == 0);
    CHECK_EQ_INT(ts->message_count, 0); /* pings are not messages */
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, unsolicited_pong_is_ignored) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_frame(c, 10, 1, "heartbeat", 9), 0);
    CHECK(ts_client_quiet(c, 30));
    CHECK_EQ_INT(ts->message_count, 0);
    CHECK(vrs_conn_is_open(ts->server, c->conn));
    CHECK(ws_echo_text(c, "after the pong"));
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, host_ping_reaches_the_client) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    unsigned char big[126];
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(vrs_send_ping(ts->server, c->conn, "hb-1", 4), VRS_OK);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 9 && f.fin && !f.masked && f.length == 4 && memcmp(f.payload, "hb-1", 4) == 0);
    /* the client's pong is consumed by the server */
    CHECK_EQ_INT(ts_send_frame(c, 10, 1, "hb-1", 4), 0);
    CHECK(ts_client_quiet(c, 20));
    CHECK_EQ_INT(ts->message_count, 0);
    memset(big, 0, sizeof big);
    CHECK_EQ_INT(vrs_send_ping(ts->server, c->conn, big, 126), VRS_ERROR_TOO_LARGE);
    CHECK(ws_echo_text(c, "still fine"));
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   The closing handshake
   ------------------------------------------------------------------------------------------- */

TEST(websocket, client_close_is_echoed_then_tcp_ends) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    vrs_conn conn;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    conn = c->conn;
    CHECK_EQ_INT(ts_send_close(c, 1000, "done"), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1000);
    CHECK(f.fin);
    CHECK_EQ_INT(c->skipped_frames, 0);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS)); /* the server ends TCP after its close */
    CHECK_EQ_INT(c->discarded, 0);
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts_close_code_of(ts, conn), 1000);
    CHECK_EQ_INT(ts->close_user_data_ok, 1);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, close_codes_3000_and_4999_are_echoed) {
    static const int codes[] = {3000, 4999, 1001, 1003, 1007, 1014};
    ts_server *ts = ts_server_default();
    size_t i;
    REQUIRE(ts);
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ts_client *c = ts_ws_connect(ts);
        ts_frame f;
        REQUIRE(c);
        CHECK_EQ_INT(ts_send_close(c, codes[i], "reason"), 0);
        CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), codes[i]);
        CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
        CHECK_EQ_INT(ts_close_code_of(ts, c->conn), codes[i]);
        ts_client_free(c);
    }
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_PROTOCOL_ERROR], 0);
    WS_END(ts);
}

TEST(websocket, empty_close_is_echoed_empty) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_send_close(c, -1, NULL), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1005);
    CHECK_EQ_INT(f.length, 0);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1005); /* "no status received" */
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, invalid_close_codes_1002) {
    static const int codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    size_t i;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 8;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        unsigned char payload[2];
        payload[0] = (unsigned char)(codes[i] >> 8);
        payload[1] = (unsigned char)codes[i];
        if (!ws_check_violation(ts, &s, payload, 2, 1002, VRS_LOG_PROTOCOL_ERROR))
            VRS_TEST_FAIL("close code %d was not refused with 1002", codes[i]);
    }
    WS_END(ts);
}

TEST(websocket, close_with_one_byte_payload_1002) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 8;
    CHECK(ws_check_violation(ts, &s, "\x03", 1, 1002, VRS_LOG_PROTOCOL_ERROR));
    WS_END(ts);
}

TEST(websocket, close_with_invalid_utf8_reason_1007) {
    ts_server *ts = ts_server_default();
    ts_frame_spec s;
    REQUIRE(ts);
    memset(&s, 0, sizeof s);
    s.opcode = 8;
    CHECK(ws_check_violation(ts, &s, "\x03\xe8ok\xff", 5, 1007, VRS_LOG_INVALID_UTF8));
    WS_END(ts);
}

TEST(websocket, host_close_with_reason) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 1000, "bye"), VRS_OK);
    CHECK(!vrs_conn_is_open(ts->server, c->conn));
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 1000, "again"), VRS_ERROR_NOT_OPEN);
    CHECK_EQ_INT(vrs_send_text(ts->server, c->conn, "late", 4), VRS_ERROR_NOT_OPEN);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1000);
    CHECK_EQ_STR(f.reason, "bye");
    CHECK_EQ_INT(c->skipped_frames, 0);
    CHECK_EQ_INT(ts->close_count, 0); /* on_close waits for the client's answer */
    CHECK_EQ_INT(ts_send_close(c, 1000, NULL), 0);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1000);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CLOSE_TIMEOUT], 0);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, host_close_bad_arguments) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    char reason[125];
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    memset(reason, 'r', 124);
    reason[124] = '\0';
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 1005, NULL), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 999, NULL), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 1000, reason), VRS_ERROR_INVALID_ARGUMENT);
    CHECK(vrs_conn_is_open(ts->server, c->conn));
    reason[123] = '\0'; /* 123 bytes is the most a close frame holds */
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 4000, reason), VRS_OK);
    {
        ts_frame f;
        CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 4000);
        CHECK_EQ_INT(f.length, 125);
    }
    CHECK_EQ_INT(ts_send_close(c, 4000, NULL), 0);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, host_close_unanswered_times_out) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_frame f;
    int64_t started;
    REQUIRE(ts);
    ts->desc.close_timeout_ms = 200;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    started = ts_now_ms();
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 1000, "bye"), VRS_OK);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1000);
    /* the client never answers: the server waits close_timeout, then drops TCP */
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK(ts_now_ms() - started >= 150);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CLOSE_TIMEOUT], 1);
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1000);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, client_vanishing_reports_1006) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    vrs_conn conn;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    conn = c->conn;
    CHECK(ws_echo_text(c, "here"));
    ts_client_free(c); /* TCP ends without a close frame */
    CHECK(ts_wait_closes(ts, 1));
    CHECK_EQ_INT(ts_close_code_of(ts, conn), 1006);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTION_RESET], 1);
    /* and in the middle of a fragmented message */
    c = ts_ws_connect(ts);
    REQUIRE(c);
    conn = c->conn;
    CHECK_EQ_INT(ts_send_frame(c, 1, 0, "half a message", 14), 0);
    ts_pump(ts, 10);
    ts_client_free(c);
    CHECK(ts_wait_closes(ts, 2));
    CHECK_EQ_INT(ts_close_code_of(ts, conn), 1006);
    WS_END(ts);
}

TEST(websocket, server_shutdown_sends_1001) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    vrs_destroy(ts->server);
    ts->server = NULL;
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts->close_codes[0], 1001);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1001);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    ts_client_free(c);
    ts_server_free(ts);
}

/* ---------------------------------------------------------------------------------------------
   Timers and limits
   ------------------------------------------------------------------------------------------- */

TEST(websocket, handshake_timeout_gets_408) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    int64_t started;
    REQUIRE(ts);
    ts->desc.handshake_timeout_ms = 150;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    c = ts_client_connect(ts);
    REQUIRE(c);
    started = ts_now_ms();
    CHECK_EQ_INT(ts_send_str(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr"), 0);
    CHECK(ws_expect_http_error(c, 408, NULL));
    CHECK(ts_now_ms() - started >= 100);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_HANDSHAKE_TIMEOUT], 1);
    ts_client_free(c);
    /* a client that sends nothing at all */
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK(ws_expect_http_error(c, 408, NULL));
    ts_client_free(c);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_HANDSHAKE_TIMEOUT], 2);
    CHECK_EQ_INT(ts->open_count, 0);
    WS_END(ts);
}

TEST(websocket, idle_timeout_closes_with_1001) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    ts_frame f;
    int i;
    REQUIRE(ts);
    ts->desc.idle_timeout_ms = 300; /* six times the gap between messages: a slow machine keeps up */
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    /* traffic from the client keeps it alive well past the timeout */
    for (i = 0; i < 6; i++) {
        CHECK(ws_echo_text(c, "tick"));
        ts_pump(ts, 50);
    }
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_IDLE_TIMEOUT], 0);
    /* then silence */
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1001);
    CHECK_EQ_INT(c->skipped_frames, 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_IDLE_TIMEOUT], 1);
    CHECK_EQ_INT(ts_send_close(c, 1001, NULL), 0);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1001);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, connection_limit_answers_503) {
    ts_server *ts = ts_server_new();
    ts_client *a, *b, *third, *d;
    ts_request q = ws_request();
    REQUIRE(ts);
    ts->desc.max_connections = 2;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    a = ts_ws_connect(ts);
    b = ts_ws_connect(ts);
    REQUIRE(a && b);
    third = ts_client_connect(ts);
    REQUIRE(third);
    /* answered at once, before any request byte */
    CHECK(ws_expect_http_error(third, 503, NULL));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTIONS_FULL], 1);
    ts_client_free(third);
    /* one that sends its request anyway gets the same */
    third = ts_client_connect(ts);
    REQUIRE(third);
    CHECK_EQ_INT(ts_send_request(third, &q), 0);
    CHECK(ws_expect_http_error(third, 503, NULL));
    ts_client_free(third);
    CHECK_EQ_INT(ts->open_count, 2);
    CHECK(ws_echo_text(a, "a still works"));
    CHECK(ws_echo_text(b, "b still works"));
    /* once one has gone, a new client is accepted */
    CHECK(ws_close_cleanly(a));
    {
        int64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
        while (vrs_get_stats(ts->server).connections > 1 && ts_now_ms() < deadline) ts_step(ts, 1);
        CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);
    }
    d = ts_ws_connect(ts);
    REQUIRE(d);
    CHECK(ws_echo_text(d, "d is in"));
    CHECK(ws_echo_text(b, "b too"));
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTIONS_FULL], 2);
    CHECK(ws_close_cleanly(b));
    CHECK(ws_close_cleanly(d));
    WS_END(ts);
}

TEST(websocket, slow_consumer_is_closed_alone) {
    ts_server *ts = ts_server_new();
    ts_client *slow, *fast;
    unsigned char *chunk = (unsigned char *)calloc(1, 16384);
    vrs_result result = VRS_OK;
    vrs_conn slow_conn;
    ts_frame last;
    int i, echoes = 0, got, saw_pollout = 0;
    REQUIRE(ts && chunk);
    ts->desc.send_queue_size = 64 * 1024;
    ts->desc.buffer_pool_size = 4 * 1024 * 1024; /* the queue's hard cap comes before the pool's end */
    ts->desc.close_timeout_ms = 200;
    if (ts_server_start(ts) != VRS_OK) free(chunk);
    REQUIRE(ts->server);
    slow = ts_client_connect_to(ts, "127.0.0.1", ts->port, 4096);
    if (!slow || !ts_ws_upgrade(slow)) free(chunk);
    REQUIRE(slow && slow->conn.id);
    slow_conn = slow->conn;
    fast = ts_ws_connect(ts);
    if (!fast) free(chunk);
    REQUIRE(fast);
    /* the host sends the slow client 16 KiB a step; it never reads. The fast one keeps
       exchanging numbered messages and must get every one back, in order. */
    for (i = 0; i < 4000 && result == VRS_OK; i++) {
        char text[32];
        ts_frame f;
        result = vrs_send_binary(ts->server, slow_conn, chunk, 16384);
        snprintf(text, sizeof text, "seq %d", i);
        if (ts_send_text(fast, text) != 0 || ts_read_frame(fast, &f, TS_TIMEOUT_MS) != 1 || f.opcode != 1 ||
            f.length != strlen(text) || memcmp(f.payload, text, f.length) != 0) {
            VRS_TEST_FAIL("the fast client lost message %d", i);
            break;
        }
        echoes++;
        if (!saw_pollout) {
#ifdef VRS_USE_EPOLL
            saw_pollout = ts->server->conns[vrs__handle_slot(slow_conn.id) - 1].watching_write;
#else
            struct pollfd fds[TS_POLL_CAPACITY];
            int k, n = vrs_poll_fds(ts->server, fds, TS_POLL_CAPACITY);
            for (k = 1; k < n; k++)
                if (fds[k].events & POLLOUT) saw_pollout = 1;
#endif
        }
    }
    free(chunk);
    CHECK_EQ_INT(result, VRS_ERROR_SLOW_CONSUMER);
    CHECK(saw_pollout); /* the server waited for the socket to take more */
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 1);
    CHECK(vrs_send_binary(ts->server, slow_conn, "x", 1) != VRS_OK);
    /* the fast client carries on */
    for (i = 0; i < 20; i++) CHECK(ws_echo_text(fast, "after the slow one"));
    CHECK(ts_wait_closes(ts, 1));
    CHECK_EQ_INT(ts_close_code_of(ts, slow_conn), 1013);
    CHECK_EQ_INT(vrs_send_binary(ts->server, slow_conn, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    /* the slow client, reading at last, finds a close 1013 or the end of TCP */
    got = ts_read_close(slow, &last, 5000);
    CHECK(got == 1013 || got == -1);
    CHECK(slow->skipped_frames > 0);
    ts_client_free(slow);
    CHECK(echoes > 0);
    CHECK(ws_close_cleanly(fast));
    CHECK_EQ_INT(ts->close_count, 2);
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   The API around connections
   ------------------------------------------------------------------------------------------- */

TEST(websocket, stale_handle_after_close) {
    ts_server *ts = ts_server_default();
    ts_client *c, *next;
    ts_frame f;
    vrs_conn old, none;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    old = c->conn;
    CHECK_EQ_INT(vrs_send_text(ts->server, old, "from the host", 13), VRS_OK);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 1 && f.length == 13);
    CHECK_EQ_INT(vrs_send(ts->server, old, (vrs_message_type)3, "x", 1), VRS_ERROR_INVALID_ARGUMENT);
    CHECK(vrs_conn_user_data(ts->server, old) == ts);
    /* the close handshake is over (on_close ran) but TCP is still up: the handle is stale */
    CHECK_EQ_INT(ts_send_close(c, 1000, NULL), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 1000);
    CHECK_EQ_INT(ts->close_count, 1);
    CHECK_EQ_INT(ts->close_user_data_ok, 1);
    CHECK_EQ_INT(vrs_send_text(ts->server, old, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_send_ping(ts->server, old, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_close(ts->server, old, 1000, NULL), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_conn_set_user_data(ts->server, old, NULL), VRS_ERROR_INVALID_CONNECTION);
    CHECK(vrs_conn_user_data(ts->server, old) == NULL);
    CHECK(!vrs_conn_is_open(ts->server, old));
    CHECK_EQ_STR(vrs_conn_remote_address(ts->server, old), "");
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    ts_client_free(c);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    CHECK_EQ_INT(vrs_send_text(ts->server, old, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    /* the slot is reused by the next client; the old handle never reaches it */
    next = ts_ws_connect(ts);
    REQUIRE(next);
    CHECK(next->conn.id != old.id);
    CHECK_EQ_INT(vrs__handle_slot(next->conn.id), vrs__handle_slot(old.id)); /* same slot */
    CHECK_EQ_INT(vrs_send_text(ts->server, old, "not for you", 11), VRS_ERROR_INVALID_CONNECTION);
    CHECK(ts_client_quiet(next, 20));
    none.id = 0;
    CHECK_EQ_INT(vrs_send_text(ts->server, none, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    none.id = VRS__INDEX_MASK; /* a slot past the table */
    CHECK_EQ_INT(vrs_send_text(ts->server, none, "x", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK(ws_close_cleanly(next));
    WS_END(ts);
}

TEST(websocket, send_limits) {
    ts_server *ts = ts_server_new();
    ts_client *c;
    unsigned char *big;
    size_t limit;
    REQUIRE(ts);
    ts->desc.send_queue_size = 65536;
    ts->desc.max_message_size = 4096;
    ts->desc.max_peers_per_room = 1;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    /* the hard cap of a queue: twice send_queue_size, and a message from each peer of a room */
    limit = ts->server->queue_limit;
    CHECK_EQ_INT(limit, 2 * 65536 + 2 * (4096 + 1024));
    big = (unsigned char *)calloc(1, limit);
    c = ts_ws_connect(ts);
    if (!c || !big) free(big);
    REQUIRE(c && big);
    /* a message that can never fit the queue is refused without closing anyone */
    CHECK_EQ_INT(vrs_send_binary(ts->server, c->conn, big, limit - 9), VRS_ERROR_TOO_LARGE);
    CHECK(vrs_conn_is_open(ts->server, c->conn));
    /* one that fits passes send_queue_size: nobody is paused by the host's own sends */
    CHECK_EQ_INT(vrs_send_binary(ts->server, c->conn, big, limit - 10), VRS_OK);
    free(big);
    {
        ts_frame f;
        CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
        CHECK(f.opcode == 2 && f.length == limit - 10);
    }
    CHECK_EQ_INT(vrs_get_stats(ts->server).messages_sent, 1);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, stats_count_and_return_to_zero) {
    ts_server *ts = ts_server_default();
    ts_client *c[3], *raw;
    vrs_stats s;
    int i;
    REQUIRE(ts);
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT(s.connections, 0);
    CHECK_EQ_INT(s.pool_blocks_used, 0);
    CHECK(s.pool_blocks_total > 0);
    for (i = 0; i < 3; i++) {
        c[i] = ts_ws_connect(ts);
        REQUIRE(c[i]);
    }
    raw = ts_client_connect(ts);
    REQUIRE(raw);
    ts_pump(ts, 5);
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT(s.connections, 4);
    CHECK_EQ_INT(s.open_connections, 3);
    CHECK_EQ_INT(s.pool_blocks_used, 0); /* idle connections hold no buffer */
    /* half a message holds a block until it is whole */
    CHECK_EQ_INT(ts_send_frame(c[0], 2, 0, "part", 4), 0);
    ts_pump(ts, 5);
    CHECK(vrs_get_stats(ts->server).pool_blocks_used > 0);
    CHECK_EQ_INT(ts_send_frame(c[0], 0, 1, "rest", 4), 0);
    {
        ts_frame f;
        CHECK_EQ_INT(ts_read_frame(c[0], &f, TS_TIMEOUT_MS), 1);
        CHECK(f.length == 8 && memcmp(f.payload, "partrest", 8) == 0);
    }
    CHECK_EQ_INT(vrs_get_stats(ts->server).pool_blocks_used, 0);
    for (i = 0; i < 3; i++) CHECK(ws_echo_text(c[i], "count me"));
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT(s.messages_received, 4);
    CHECK_EQ_INT(s.messages_sent, 4);
    CHECK(ws_close_cleanly(c[0]));
    ts_client_free(c[1]);
    ts_client_free(raw);
    CHECK_EQ_INT(vrs_close(ts->server, c[2]->conn, 1000, NULL), VRS_OK);
    {
        ts_frame f;
        CHECK_EQ_INT(ts_read_close(c[2], &f, TS_TIMEOUT_MS), 1000);
        CHECK_EQ_INT(ts_send_close(c[2], 1000, NULL), 0);
        CHECK(ts_wait_eof(c[2], TS_TIMEOUT_MS));
    }
    ts_client_free(c[2]);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    s = vrs_get_stats(ts->server);
    CHECK_EQ_INT(s.connections, 0);
    CHECK_EQ_INT(s.open_connections, 0);
    CHECK_EQ_INT(s.pool_blocks_used, 0);
    CHECK_EQ_INT(ts->close_count, 3);
    WS_END(ts);
}

TEST(websocket, memory_size_and_caller_memory) {
    ts_server *ts = ts_server_new();
    vrs_server *server = (vrs_server *)&server; /* must be reset to NULL on failure */
    vrs_desc d;
    size_t size;
    void *block;
    REQUIRE(ts);
    ts->desc.max_connections = 4;
    ts->desc.max_message_size = 4096;
    ts->desc.send_queue_size = 16384;
    size = vrs_memory_size(&ts->desc);
    CHECK(size > 0);
    block = malloc(size);
    REQUIRE(block);
    /* one byte short */
    d = ts->desc;
    d.memory = block;
    d.memory_size = size - 1;
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_OUT_OF_MEMORY);
    CHECK(server == NULL);
    /* exactly enough: a working server in the caller's memory */
    ts->desc.memory = block;
    ts->desc.memory_size = size;
    CHECK_EQ_INT(ts_server_start(ts), VRS_OK);
    if (ts->server) {
        ts_client *c = ts_ws_connect(ts);
        CHECK(c != NULL);
        if (c) {
            CHECK(ws_echo_text(c, "in the caller's memory"));
            CHECK(ws_close_cleanly(c));
        }
        CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    }
    ts_server_free(ts); /* vrs_destroy leaves the caller's block alone */
    free(block);
    /* an invalid description reserves nothing */
    memset(&d, 0, sizeof d);
    d.max_request_size = 10;
    CHECK_EQ_INT(vrs_memory_size(&d), 0);
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_INVALID_ARGUMENT);
}

/* What vrs_create logged last. */
static struct {
    vrs_log_item item;
    char message[256];
    int count;
} ws_create_log;

static void ws_create_logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    (void)level;
    (void)user_data;
    ws_create_log.item = item;
    snprintf(ws_create_log.message, sizeof ws_create_log.message, "%s", message);
    ws_create_log.count++;
}

static void *ws_refusing_alloc(size_t size, void *user_data) {
    (void)size;
    (void)user_data;
    return NULL;
}

static void ws_unused_free(void *pointer, void *user_data) {
    (void)pointer;
    (void)user_data;
}

TEST(websocket, create_failures_are_logged_with_their_reason) {
    static const char *const origins[] = {"http://a"};
    static const struct {
        const char *field; /* what the log line names */
        int value;
    } bad[] = {
        {"port", 70000}, {"port", -2}, {"max_connections", -1}, {"max_connections", 2000000},
        {"max_message_size", -1}, {"max_request_size", 10}, {"send_queue_size", 10}, {"buffer_pool_size", 100},
        {"handshake_timeout_ms", -1}, {"idle_timeout_ms", -1}, {"close_timeout_ms", -1},
        {"socket_path", 0}, {"max_channels_per_socket", -1}, {"max_channels", -1}, {"max_rooms", -1},
        {"max_peers_per_room", -5}, {"max_room_id_size", 251}, {"max_metadata_size", 70000},
        {"allowed_origin_count", -1},
    };
    vrs_desc d;
    vrs_server *server = NULL, *first = NULL;
    size_t i;
    char want[64];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&d, 0, sizeof d);
        memset(&ws_create_log, 0, sizeof ws_create_log);
        d.port = VRS_PORT_ANY;
        d.logger.func = ws_create_logger;
#define WS_SET(name) if (strcmp(bad[i].field, #name) == 0) d.name = bad[i].value
        WS_SET(port); WS_SET(max_connections); WS_SET(max_message_size); WS_SET(max_request_size);
        WS_SET(send_queue_size); WS_SET(buffer_pool_size); WS_SET(handshake_timeout_ms); WS_SET(idle_timeout_ms);
        WS_SET(close_timeout_ms); WS_SET(max_channels_per_socket); WS_SET(max_channels); WS_SET(max_rooms);
        WS_SET(max_peers_per_room); WS_SET(max_room_id_size); WS_SET(max_metadata_size);
#undef WS_SET
        if (strcmp(bad[i].field, "socket_path") == 0) d.socket_path = "socket";
        if (strcmp(bad[i].field, "allowed_origin_count") == 0) {
            d.allowed_origins = origins;
            d.allowed_origin_count = -1;
        }
        CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_INVALID_ARGUMENT);
        CHECK(server == NULL);
        CHECK_EQ_INT(ws_create_log.count, 1);
        CHECK_EQ_INT(ws_create_log.item, VRS_LOG_INVALID_DESCRIPTION);
        snprintf(want, sizeof want, "desc.%s", bad[i].field);
        if (!strstr(ws_create_log.message, want)) VRS_TEST_FAIL("%s: logged \"%s\"", bad[i].field, ws_create_log.message);
    }
    /* the whole line: the field, its value and its range */
    memset(&d, 0, sizeof d);
    d.port = VRS_PORT_ANY;
    d.logger.func = ws_create_logger;
    d.max_rooms = (int)VRS__INDEX_MASK + 1;
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_INVALID_ARGUMENT);
    {
        char line[256];
        snprintf(line, sizeof line, "vrs_create: a description field is out of range (desc.max_rooms = %d: 1 to %d)",
                 (int)VRS__INDEX_MASK + 1, (int)VRS__INDEX_MASK);
        CHECK_EQ_STR(ws_create_log.message, line);
    }
    d.max_rooms = 0;
    d.max_peers_per_room = -5;
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_STR(ws_create_log.message,
                 "vrs_create: a description field is out of range (desc.max_peers_per_room = -5: at least 1)");
    /* a block one byte short */
    memset(&d, 0, sizeof d);
    d.port = VRS_PORT_ANY;
    d.max_connections = 4;
    d.logger.func = ws_create_logger;
    d.memory_size = vrs_memory_size(&d) - 1;
    d.memory = malloc(d.memory_size);
    REQUIRE(d.memory != NULL);
    memset(&ws_create_log, 0, sizeof ws_create_log);
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_OUT_OF_MEMORY);
    CHECK_EQ_INT(ws_create_log.item, VRS_LOG_OUT_OF_MEMORY);
    CHECK(strstr(ws_create_log.message, "desc.memory_size") != NULL);
    free(d.memory);
    d.memory = NULL;
    d.memory_size = 0;
    /* an allocator that gives nothing */
    d.allocator.alloc = ws_refusing_alloc;
    d.allocator.free = ws_unused_free;
    memset(&ws_create_log, 0, sizeof ws_create_log);
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_OUT_OF_MEMORY);
    CHECK_EQ_INT(ws_create_log.item, VRS_LOG_OUT_OF_MEMORY);
    CHECK(strstr(ws_create_log.message, "allocator") != NULL);
    memset(&d.allocator, 0, sizeof d.allocator);
    /* a port already taken */
    REQUIRE_EQ_INT(vrs_create(&d, &first), VRS_OK);
    d.port = vrs_port(first);
    memset(&ws_create_log, 0, sizeof ws_create_log);
    CHECK_EQ_INT(vrs_create(&d, &server), VRS_ERROR_ADDRESS);
    CHECK_EQ_INT(ws_create_log.item, VRS_LOG_LISTEN_FAILED);
    vrs_destroy(first);
    /* no server pointer */
    memset(&ws_create_log, 0, sizeof ws_create_log);
    CHECK_EQ_INT(vrs_create(&d, NULL), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ws_create_log.item, VRS_LOG_INVALID_DESCRIPTION);
    CHECK(server == NULL);
}

TEST(websocket, host_driven_poll_loop) {
    ts_server *ts = ts_server_new();
    ts_client *c, *raw;
    ts_frame f;
    struct pollfd fds[TS_POLL_CAPACITY];
    int n, k, timeout;
    REQUIRE(ts);
    ts->use_poll_api = 1; /* every ts_step: vrs_poll_fds, poll(), vrs_process */
    ts->desc.handshake_timeout_ms = 300;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    n = vrs_poll_fds(ts->server, fds, TS_POLL_CAPACITY);
#ifdef VRS_USE_EPOLL
    CHECK_EQ_INT(n, 1); /* the epoll instance */
#else
    CHECK_EQ_INT(n, 2); /* the listener and the wake-up descriptor */
#endif
    CHECK(fds[0].fd != VRS__NO_SOCKET && fds[0].events == POLLIN);
    raw = ts_client_connect(ts);
    REQUIRE(raw);
    ts_pump(ts, 5);
    timeout = vrs_timeout_ms(ts->server); /* the handshake timer */
    CHECK(timeout >= 0 && timeout <= 300);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    n = vrs_poll_fds(ts->server, fds, TS_POLL_CAPACITY);
#ifdef VRS_USE_EPOLL
    CHECK_EQ_INT(n, 1); /* the epoll instance stands for every socket */
    CHECK(fds[0].fd == ts->server->epoll_fd && fds[0].events == POLLIN);
    (void)k;
#else
    CHECK_EQ_INT(n, 4); /* the listener, the wake-up and the two clients */
    for (k = 1; k < n; k++) CHECK_EQ_INT(fds[k].events, POLLIN); /* nothing pending: no POLLOUT */
#endif
    CHECK(ws_echo_text(c, "through vrs_process"));
    CHECK_EQ_INT(ts_send_frame(c, 9, 1, "p", 1), 0);
    CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(f.opcode, 10);
    CHECK(ws_expect_http_error(raw, 408, NULL)); /* the timer runs in the host's loop too */
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_HANDSHAKE_TIMEOUT], 1);
    ts_client_free(raw);
    CHECK(ws_close_cleanly(c));
    CHECK_EQ_INT(ts->close_count, 1);
    WS_END(ts);
}

/* One round of a host's own loop: the server's descriptors, then the host's own `own_fd` after
   them in the same array, one poll() of at most max_wait_ms, and the whole array handed to
   vrs_process. Returns what poll() returned; *server_ready says whether a server descriptor was. */
static int ws_own_loop_round(vrs_server *server, int own_fd, int max_wait_ms, int *server_ready) {
    struct pollfd fds[TS_POLL_CAPACITY];
    int n = vrs_poll_fds(server, fds, TS_POLL_CAPACITY - 1), wait = vrs_timeout_ms(server), ready, k;
    if (wait < 0 || wait > max_wait_ms) wait = max_wait_ms;
    fds[n].fd = own_fd;
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    ready = ts_poll(fds, n + 1, wait);
    *server_ready = 0;
    for (k = 0; k < n; k++) *server_ready |= fds[k].revents != 0;
    if (fds[n].revents & POLLIN) {
        char byte;
        if (recv(own_fd, &byte, 1, 0) != 1) ready = -1;
    }
    vrs_process(server, fds, n + 1);
    return ready;
}

/* A host's own loop from a fresh server, built with poll() and with epoll: the first
   vrs_poll_fds/vrs_timeout_ms describe a server that accepts (with epoll, the listener was
   registered only inside the first vrs_process, and vrs_timeout_ms said -1: the host's poll
   slept for ever), and a descriptor of the host's after the server's disturbs nothing. */
TEST(websocket, own_poll_loop_accepts_from_a_fresh_server) {
    ts_server *ts = ts_server_new();
    int own[2] = {-1, -1}, client, server_ready = 0, rounds;
    struct sockaddr_in to;
    char answer[512] = "";
    size_t got = 0;
    static const char request[] = "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(ts);
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    REQUIRE(ts_socket_pair(own) == 0); /* the host's own descriptor: any that poll() watches */
    CHECK_EQ_INT(vrs_timeout_ms(ts->server), -1); /* no timer: the host may wait for ever */
    client = (int)socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(client >= 0);
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)ts->port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(client, (struct sockaddr *)&to, sizeof to) == 0);
    ts_set_nonblocking(client);
    /* the very first wait of the host's loop wakes for the client (bounded, so that a failure
       cannot hang the test) */
    CHECK(ws_own_loop_round(ts->server, own[0], TS_TIMEOUT_MS, &server_ready) > 0);
    CHECK(server_ready);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);
    /* the host's own descriptor is the host's: the server ignores it */
    CHECK(send(own[1], "x", 1, 0) == 1);
    CHECK(ws_own_loop_round(ts->server, own[0], TS_TIMEOUT_MS, &server_ready) == 1);
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1);
    /* a request through the host's loop alone gets its answer (404: no on_http) */
    REQUIRE(send(client, request, sizeof request - 1, 0) == (ssize_t)(sizeof request - 1));
    for (rounds = 0; rounds < 50 && !strstr(answer, "\r\n\r\n"); rounds++) {
        ssize_t n;
        ws_own_loop_round(ts->server, own[0], 50, &server_ready);
        n = recv(client, answer + got, sizeof answer - 1 - got, 0);
        if (n > 0) got += (size_t)n;
        answer[got] = '\0';
    }
    CHECK(strncmp(answer, "HTTP/1.1 404", 12) == 0);
    ts_close_socket(client);
    ts_close_socket(own[0]);
    ts_close_socket(own[1]);
    ts_server_free(ts);
}

/* A port another server listens on is refused at vrs_create (on Windows too, where the
   listener takes the port exclusively): VRS_ERROR_ADDRESS, no server, and one LISTEN_FAILED
   line that says where and why; the first server goes on serving. */
TEST(websocket, port_in_use_is_refused) {
    ts_server *first = ts_server_default(), *second;
    ts_client *c;
    char where[64];
    const char *at;
    REQUIRE(first);
    second = ts_server_new();
    REQUIRE(second);
    second->desc.port = first->port;
    CHECK_EQ_INT(ts_server_start(second), VRS_ERROR_ADDRESS);
    CHECK(second->server == NULL);
    CHECK_EQ_INT(second->log_counts[VRS_LOG_LISTEN_FAILED], 1);
    snprintf(where, sizeof where, "127.0.0.1 port %d: ", first->port);
    at = strstr(second->last_log, where);
    CHECK(at != NULL && strlen(at) > strlen(where) + 3); /* and the system's reason */
    if (at == NULL) fprintf(stderr, "    log: %s\n", second->last_log);
    ts_server_free(second);
    c = ts_ws_connect(first);
    CHECK(c != NULL);
    ts_client_free(c);
    WS_END(first);
}

TEST(websocket, ipv6_dual_stack) {
    ts_server *ts;
    ts_client *c6, *c4;
    if (!ts_ipv6_available()) SKIP("no IPv6 loopback on this machine");
    ts = ts_server_new();
    REQUIRE(ts);
    ts->desc.host = "::";
    if (ts_server_start(ts) != VRS_OK) {
        ts_server_free(ts);
        SKIP("cannot listen on ::");
    }
    c6 = ts_client_connect_to(ts, "::1", ts->port, 0);
    REQUIRE(c6);
    CHECK(ts_ws_upgrade(c6));
    CHECK(strncmp(ts->open_address[0], "[::1]:", 6) == 0);
    CHECK(ws_echo_text(c6, "over IPv6"));
    c4 = ts_client_connect_to(ts, "127.0.0.1", ts->port, 0);
    REQUIRE(c4);
    CHECK(ts_ws_upgrade(c4));
    CHECK(strncmp(ts->open_address[1], "127.0.0.1:", 10) == 0);
    CHECK(ws_echo_text(c4, "over IPv4"));
    CHECK(ws_close_cleanly(c6));
    CHECK(ws_close_cleanly(c4));
    WS_END(ts);
}

/* ---------------------------------------------------------------------------------------------
   Edges: bytes split anywhere, exact limits, the shared pool
   ------------------------------------------------------------------------------------------- */

TEST(websocket, frames_split_at_every_byte) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame_spec s;
    ts_frame f;
    unsigned char frames[512], text[300];
    size_t n = 0, i;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    memset(text, 'b', sizeof text);
    memcpy(text + 100, "\xe2\x82\xac", 3);
    memset(&s, 0, sizeof s);
    s.opcode = 9;
    n += ts_build_frame(c, &s, "split ping", 10, frames + n, sizeof frames - n);
    s.opcode = 1; /* 16-bit length */
    n += ts_build_frame(c, &s, text, 300, frames + n, sizeof frames - n);
    s.opcode = 8;
    n += ts_build_frame(c, &s, "\x0f\xa0split close", 13, frames + n, sizeof frames - n);
    for (i = 0; i < n; i++) {
        REQUIRE(ts_send_raw(c, frames + i, 1) == 0);
        ts_pump(ts, 0);
    }
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 10 && f.length == 10 && memcmp(f.payload, "split ping", 10) == 0);
    REQUIRE_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 1 && f.length == 300 && memcmp(f.payload, text, 300) == 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 4000);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 4000);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, request_head_of_exactly_max_request_size) {
    ts_server *ts = ts_server_new();
    ts_request q = ws_request();
    ts_client *c;
    ts_response r;
    char head[1024], filler[600];
    size_t base;
    REQUIRE(ts);
    ts->desc.max_request_size = 512;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    q.extra = "X-Filler: \r\n";
    base = ts_format_request(&q, head, sizeof head);
    REQUIRE(base < 500);
    /* pad the filler so that the whole head is 512 bytes, then 513 */
    memcpy(filler, "X-Filler: ", 10);
    memset(filler + 10, 'p', 512 - base);
    memcpy(filler + 10 + (512 - base), "\r\n", 3);
    q.extra = filler;
    REQUIRE_EQ_INT(ts_format_request(&q, head, sizeof head), 512);
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK(ws_close_cleanly(c));
    memset(filler + 10, 'p', 512 - base + 1);
    memcpy(filler + 10 + (512 - base + 1), "\r\n", 3);
    REQUIRE_EQ_INT(ts_format_request(&q, head, sizeof head), 513);
    CHECK(ws_request_answer(ts, &q, 431, NULL));
    WS_END(ts);
}

TEST(websocket, early_frame_after_a_split_head) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_request q = ws_request();
    ts_frame_spec s;
    ts_response r;
    ts_frame f;
    unsigned char bytes[1024];
    size_t n;
    REQUIRE(ts);
    c = ts_client_connect(ts);
    REQUIRE(c);
    n = ts_format_request(&q, (char *)bytes, sizeof bytes);
    memset(&s, 0, sizeof s);
    s.opcode = 2;
    n += ts_build_frame(c, &s, "\x00\x01\x02", 3, bytes + n, sizeof bytes - n);
    REQUIRE(ts_send_raw(c, bytes, 30) == 0);
    ts_pump(ts, 5);
    REQUIRE(ts_send_raw(c, bytes + 30, n - 30) == 0);
    CHECK_EQ_INT(ts_read_response_head(c, &r, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(r.status, 101);
    CHECK_EQ_INT(ts_read_frame(c, &f, TS_TIMEOUT_MS), 1);
    CHECK(f.opcode == 2 && f.length == 3 && memcmp(f.payload, "\x00\x01\x02", 3) == 0);
    CHECK(ws_close_cleanly(c));
    WS_END(ts);
}

TEST(websocket, rejections_beyond_the_reject_slots_wait_for_one) {
    ts_server *ts = ts_server_new();
    ts_client *open, *rejected[VRS_REJECT_SLOTS + 1];
    ts_response r;
    int i;
    REQUIRE(ts);
    ts->desc.max_connections = 1;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    open = ts_ws_connect(ts);
    REQUIRE(open);
    for (i = 0; i < VRS_REJECT_SLOTS; i++) {
        rejected[i] = ts_client_connect(ts);
        REQUIRE(rejected[i]);
        /* read the 503 but leave the connection up: the reject slot stays taken */
        CHECK_EQ_INT(ts_read_response_head(rejected[i], &r, TS_TIMEOUT_MS), 1);
        CHECK_EQ_INT(r.status, 503);
    }
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1 + VRS_REJECT_SLOTS);
    /* every reject slot is busy: the next client waits in the backlog, unanswered */
    rejected[VRS_REJECT_SLOTS] = ts_client_connect(ts);
    REQUIRE(rejected[VRS_REJECT_SLOTS]);
    CHECK(ts_client_quiet(rejected[VRS_REJECT_SLOTS], 200));
    CHECK_EQ_INT(vrs_get_stats(ts->server).connections, 1 + VRS_REJECT_SLOTS);
    /* one refused client goes: the waiting one gets its 503, then the end of TCP */
    ts_client_free(rejected[0]);
    rejected[0] = NULL;
    CHECK_EQ_INT(ts_read_response_head(rejected[VRS_REJECT_SLOTS], &r, TS_TIMEOUT_MS), 1);
    CHECK_EQ_INT(r.status, 503);
    CHECK_EQ_INT(ts_read_response_body(rejected[VRS_REJECT_SLOTS], &r, TS_TIMEOUT_MS), 1);
    CHECK(ts_wait_eof(rejected[VRS_REJECT_SLOTS], TS_TIMEOUT_MS));
    CHECK(!rejected[VRS_REJECT_SLOTS]->reset);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECTIONS_FULL], VRS_REJECT_SLOTS + 1);
    for (i = 0; i <= VRS_REJECT_SLOTS; i++) ts_client_free(rejected[i]);
    CHECK(ws_echo_text(open, "unbothered"));
    CHECK(ws_close_cleanly(open));
    WS_END(ts);
}

TEST(websocket, data_after_host_close_is_ignored) {
    ts_server *ts = ts_server_default();
    ts_client *c;
    ts_frame f;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(vrs_close(ts->server, c->conn, 4001, "closing"), VRS_OK);
    /* the client had these in flight before it saw our close */
    CHECK_EQ_INT(ts_send_text(c, "in flight"), 0);
    CHECK_EQ_INT(ts_send_frame(c, 2, 0, "frag", 4), 0);
    CHECK_EQ_INT(ts_send_frame(c, 0, 1, "ment", 4), 0);
    CHECK_EQ_INT(ts_send_frame(c, 9, 1, "ping", 4), 0);
    CHECK_EQ_INT(ts_read_close(c, &f, TS_TIMEOUT_MS), 4001);
    CHECK_EQ_STR(f.reason, "closing");
    CHECK_EQ_INT(c->skipped_frames, 0); /* no echo, no pong after our close */
    CHECK_EQ_INT(ts_send_close(c, 4001, NULL), 0);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(c->discarded, 0);
    CHECK_EQ_INT(ts->message_count, 0);
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 4001);
    ts_client_free(c);
    WS_END(ts);
}

TEST(websocket, pool_run_dry_by_one_client_closes_it_with_1013) {
    ts_server *ts = ts_server_new();
    ts_client *slow, *other;
    unsigned char *chunk = (unsigned char *)calloc(1, 8192);
    vrs_result result = VRS_OK;
    vrs_conn slow_conn;
    ts_frame f;
    int i, got;
    REQUIRE(ts && chunk);
    ts->desc.buffer_pool_size = 24 * 4096;  /* smaller than the send queue */
    ts->desc.send_queue_size = 1024 * 1024;
    ts->desc.max_message_size = 8192;
    ts->desc.close_timeout_ms = 200;
    if (ts_server_start(ts) != VRS_OK) free(chunk);
    REQUIRE(ts->server);
    slow = ts_client_connect_to(ts, "127.0.0.1", ts->port, 4096);
    if (!slow || !ts_ws_upgrade(slow)) free(chunk);
    REQUIRE(slow && slow->conn.id);
    slow_conn = slow->conn;
    for (i = 0; i < 4000 && result == VRS_OK; i++) {
        result = vrs_send_binary(ts->server, slow_conn, chunk, 8192);
        ts_pump(ts, 0);
    }
    free(chunk);
    /* the pool ran dry before the send queue's limit: the client holding the most queued bytes
       is the one not reading, and it is closed as a slow consumer */
    CHECK_EQ_INT(result, VRS_ERROR_SLOW_CONSUMER);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_SLOW_CONSUMER], 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 0);
    CHECK(ts_wait_closes(ts, 1));
    CHECK_EQ_INT(ts_close_code_of(ts, slow_conn), 1013);
    got = ts_read_close(slow, &f, 5000);
    CHECK(got == 1013 || got == -1);
    ts_client_free(slow);
    /* the blocks come back: a new client works */
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    other = ts_ws_connect(ts);
    REQUIRE(other);
    CHECK(ws_echo_text(other, "the pool is back"));
    CHECK(ws_close_cleanly(other));
    WS_END(ts);
}

TEST(websocket, received_bytes_may_hold_only_half_the_pool) {
    ts_server *ts = ts_server_new();
    ts_client *c, *other;
    unsigned char fragment[4000];
    ts_frame f;
    int i, code = -2;
    REQUIRE(ts);
    ts->desc.buffer_pool_size = 16 * 4096;  /* received bytes: at most 8 blocks */
    ts->desc.max_message_size = 60000;
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    other = ts_ws_connect(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c && other);
    memset(fragment, 'h', sizeof fragment);
    CHECK_EQ_INT(ts_send_frame(c, 2, 0, fragment, sizeof fragment), 0);
    for (i = 1; i < 14; i++) {
        CHECK_EQ_INT(ts_send_frame(c, 0, 0, fragment, sizeof fragment), 0);
        ts_pump(ts, 1);
        if (ts_client_available(c) || ts_client_recv_some(c) > 0) break;
    }
    code = ts_read_close(c, &f, TS_TIMEOUT_MS);
    CHECK_EQ_INT(code, 1013);
    CHECK(i <= 9); /* 8 blocks hold 32768 bytes: the 9th fragment cannot fit */
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_POOL_EXHAUSTED], 1);
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts_close_code_of(ts, c->conn), 1013);
    ts_client_free(c);
    /* the sending side was never starved */
    CHECK(ws_echo_text(other, "still answered"));
    CHECK(ws_close_cleanly(other));
    WS_END(ts);
}
