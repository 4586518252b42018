/* Regression tests for the bugs the fuzz targets in fuzz/ found, one TEST each, named after
   what was wrong. Included into the test translation unit after the library's implementation,
   test.h and test_support.h; every helper here is prefixed fr_. */

/* ---- fuzz/server.c: the library's own answers to a HEAD request carried a body ----
   A HEAD request that on_http did not answer got the 404 with its body "404 Not Found\n",
   and so did the 400 for a HEAD without Host and for a HEAD to the Phoenix socket; only
   vrs_http_respond left the body out. A response to HEAD has no content (RFC 9110 9.3.2):
   a client reading it takes the body for the start of the next response. */

/* Sends q on a new connection: the answer must be `status` with a Content-Length and no
   bytes after the head before the connection ends. */
static void fr_expect_head_answer(ts_server *ts, const ts_request *q, int status) {
    ts_client *c = ts_client_connect(ts);
    ts_response r;
    char value[32];
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, q, &r), status);
    CHECK(ts_response_header(&r, "Content-Length", value, sizeof value));
    CHECK(atoi(value) > 0); /* the length the body would have, as for GET */
    CHECK(ts_wait_eof(c, TS_TIMEOUT_MS));
    CHECK_EQ_INT(c->discarded, 0); /* no body */
    ts_client_free(c);
}

TEST(fuzz_regressions, head_error_answers_have_no_body) {
    ts_server *ts = ts_server_new();
    ts_request q;
    ts_client *c;
    ts_response r;
    REQUIRE(ts);
    REQUIRE_EQ_INT(ts_server_start(ts), VRS_OK);
    q = ts_plain_request("HEAD", "/nothing-here");
    fr_expect_head_answer(ts, &q, 404); /* no on_http */
    q.host = TS_OMIT;
    fr_expect_head_answer(ts, &q, 400); /* HTTP/1.1 without Host */
    q = ts_plain_request("HEAD", "/socket/websocket?vsn=2.0.0");
    fr_expect_head_answer(ts, &q, 400); /* the Phoenix socket answers GET only */
    /* GET still gets the body */
    q = ts_plain_request("GET", "/nothing-here");
    c = ts_client_connect(ts);
    REQUIRE(c);
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 404);
    CHECK_EQ_INT(ts_read_response_body(c, &r, TS_TIMEOUT_MS), 1);
    CHECK_EQ_STR(r.body, "404 Not Found\n");
    ts_client_free(c);
    CHECK(ts_wait_drained(ts, TS_TIMEOUT_MS));
    CHECK_EQ_INT(ts->step_errors, 0);
    ts_server_free(ts);
}
