/* The SFU host's Janus message handling (examples/sfu/sfu_logic.h) against a scripted Janus:
   the logic runs in a real server with real WebSocket Phoenix clients, and its Janus socket is
   one end of socketpair(AF_UNIX, SOCK_SEQPACKET) whose other end this test plays: it reads
   every request the logic sends and writes every answer and event Janus would, errors, silence
   (timeouts, on a clock of the test's own) and the socket going away included. */
#define VRS_IMPLEMENTATION
#include "../../videoroom_signal.h"

#include "../test.h"
#include "../test_support.h"
#define SFU_MAX_PEERS 3 /* so that a test can fill the table */
#include "../../examples/sfu/sfu_logic.h"

#include <stdarg.h>

#define FJ_TEXT 65536

static sfu_host fj_host;
static int fj_janus = -1;        /* the test's end of the socket */
static int64_t fj_clock_offset;  /* added to the real clock: timeouts without waiting */
static const char *fj_join_ref = "1"; /* of the pages' channels, as joined last */

static int64_t fj_clock(void) { return sfu_monotonic_ms() + fj_clock_offset; }

/* Runs the server and the logic for a moment: what either has to do gets done. */
static void fj_run(ts_server *ts, int ms) {
    int64_t end = ts_now_ms() + ms;
    do {
        struct pollfd p = sfu_poll_fd(&fj_host);
        ts_step(ts, 0);
        if (p.fd >= 0) poll(&p, 1, sfu_timeout_ms(&fj_host) < 5 ? 0 : 5);
        sfu_process(&fj_host, p.fd >= 0 ? p.revents : 0);
    } while (ts_now_ms() < end);
}

/* A server whose room logic is the SFU logic, talking to the test's Janus. */
static ts_server *fj_start(void) {
    int pair[2];
    ts_server *ts = ts_server_new();
    if (!ts) return NULL;
    sfu_init(&fj_host, NULL, 16);
    fj_join_ref = "1";
    fj_host.clock_ms = fj_clock;
    fj_clock_offset = 0;
    ts->desc.room_logic = sfu_room_logic(&fj_host);
    ts->desc.max_message_size = 256 * 1024;
    if (ts_server_start(ts) != VRS_OK || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) {
        ts_server_free(ts);
        return NULL;
    }
    fj_host.server = ts->server;
    fj_janus = pair[0];
    sfu_adopt_socket(&fj_host, pair[1]);
    return ts;
}

static void fj_stop(ts_server *ts) {
    if (fj_janus >= 0) close(fj_janus);
    fj_janus = -1;
    if (fj_host.fd >= 0) close(fj_host.fd);
    fj_host.fd = -1;
    ts_server_free(ts);
}

/* The next request the logic sends Janus, within two seconds; "" when none came. */
static const char *fj_next(ts_server *ts) {
    static char text[FJ_TEXT];
    int64_t deadline = ts_now_ms() + 2000;
    while (ts_now_ms() < deadline) {
        ssize_t got = recv(fj_janus, text, sizeof text - 1, MSG_DONTWAIT);
        if (got > 0) {
            text[got] = '\0';
            return text;
        }
        fj_run(ts, 5);
    }
    text[0] = '\0';
    return text;
}

/* 1 when no request comes for a while. */
static int fj_silent(ts_server *ts, int ms) {
    char text[256];
    fj_run(ts, ms);
    return recv(fj_janus, text, sizeof text, MSG_DONTWAIT) < 0;
}

/* A member of a request, as text (strings decoded; numbers and objects as written). */
static const char *fj_get(const char *request, const char *path) {
    static char out[FJ_TEXT];
    vrs_span value;
    out[0] = '\0';
    if (vrs_json_find(request, strlen(request), path, &value) != VRS_OK) return "(absent)";
    if (vrs_json_get_string(value.ptr, value.length, NULL, out, sizeof out, NULL) != VRS_OK)
        snprintf(out, sizeof out, "%.*s", (int)value.length, value.ptr);
    return out;
}

/* Reads the next request and checks it is `verb` (and, for "message", body.request = what). */
static const char *fj_expect(ts_server *ts, const char *verb, const char *body_request) {
    static char request[FJ_TEXT];
    snprintf(request, sizeof request, "%s", fj_next(ts));
    if (strcmp(fj_get(request, "janus"), verb) != 0 ||
        (body_request && strcmp(fj_get(request, "body.request"), body_request) != 0)) {
        VRS_TEST_FAIL("expected a Janus \"%s\" %s, got: %.300s", verb, body_request ? body_request : "", request);
        return NULL;
    }
    return request;
}

/* Janus answers: the text, with %T standing for the request's transaction. */
__attribute__((format(printf, 3, 4))) static void fj_answer(ts_server *ts, const char *request, const char *format, ...) {
    char pattern[FJ_TEXT], text[FJ_TEXT], transaction[64];
    const char *p;
    size_t at = 0;
    va_list args;
    va_start(args, format);
    vsnprintf(pattern, sizeof pattern, format, args);
    va_end(args);
    snprintf(transaction, sizeof transaction, "%s", request ? fj_get(request, "transaction") : "");
    for (p = pattern; *p && at + strlen(transaction) + 2 < sizeof text; p++) {
        if (p[0] == '%' && p[1] == 'T') {
            at += (size_t)snprintf(text + at, sizeof text - at, "%s", transaction);
            p++;
        } else {
            text[at++] = *p;
        }
    }
    text[at] = '\0';
    if (send(fj_janus, text, at, 0) != (ssize_t)at) VRS_TEST_FAIL("the fake Janus could not send");
    fj_run(ts, 10);
}

/* The host's own session and handle, which every test starts with. */
static int fj_control(ts_server *ts) {
    const char *r = fj_expect(ts, "create", NULL);
    if (!r) return 0;
    fj_answer(ts, r, "{\"janus\":\"success\",\"transaction\":\"%%T\",\"data\":{\"id\":1}}");
    r = fj_expect(ts, "attach", NULL);
    if (!r || strcmp(fj_get(r, "plugin"), "janus.plugin.videoroom") != 0) return 0;
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":1,\"transaction\":\"%%T\",\"data\":{\"id\":2}}");
    return fj_host.control_ready;
}

/* ---- the page's side: a Phoenix V2 client ------------------------------------------------- */

static ts_client *fj_page(ts_server *ts, const char *room) {
    ts_client *c = ts_client_connect(ts);
    ts_request q;
    ts_response r;
    char join[256];
    ts_frame f;
    if (!c) return NULL;
    memset(&q, 0, sizeof q);
    q.target = "/socket/websocket?vsn=2.0.0";
    snprintf(join, sizeof join, "[\"1\",\"1\",\"room:%s\",\"phx_join\",{}]", room);
    if (ts_handshake(c, &q, &r) != 101 || ts_send_text(c, join) != 0 || ts_read_frame(c, &f, 2000) != 1 ||
        !strstr((const char *)f.payload, "\"ok\"")) {
        ts_client_free(c);
        return NULL;
    }
    return c;
}

/* Sends a media event E (given as JSON text) the way the page does: D = E's text in a string. */
static int fj_send(ts_client *c, const char *room, const char *event) {
    static char frame[FJ_TEXT * 3];
    char topic[128];
    size_t length;
    vrs_json_writer w;
    snprintf(topic, sizeof topic, "room:%s", room);
    vrs_json_writer_init(&w, frame, sizeof frame);
    vrs_json_begin_array(&w);
    vrs_json_cstring(&w, fj_join_ref);
    vrs_json_cstring(&w, "9");
    vrs_json_cstring(&w, topic);
    vrs_json_cstring(&w, "mediaEvent");
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "data");
    vrs_json_cstring(&w, event);
    vrs_json_end_object(&w);
    vrs_json_end_array(&w);
    if (vrs_json_finish(&w, &length) != VRS_OK) return -1;
    return ts_send_text(c, frame);
}

/* The next media event the page gets, decoded to E's text; "" when none came in time. Other
   pushes (phx_reply, phx_error) are returned as they are. */
static const char *fj_event(ts_server *ts, ts_client *c) {
    static char text[FJ_TEXT];
    ts_frame f;
    int64_t deadline = ts_now_ms() + 2000;
    text[0] = '\0';
    while (ts_now_ms() < deadline) {
        fj_run(ts, 5);
        if (ts_read_frame(c, &f, 5) != 1) continue;
        /* [join_ref, ref, topic, "mediaEvent", {"data": D}] */
        if (vrs_json_get_string((const char *)f.payload, f.length, "3", text, sizeof text, NULL) == VRS_OK &&
            strcmp(text, "mediaEvent") == 0 &&
            vrs_json_get_string((const char *)f.payload, f.length, "4.data", text, sizeof text, NULL) == VRS_OK)
            return text;
        snprintf(text, sizeof text, "%.*s", (int)f.length, (const char *)f.payload);
        return text;
    }
    return text;
}

/* The next media event must be of `type`; returns it. */
static const char *fj_expect_event(ts_server *ts, ts_client *c, const char *type) {
    const char *e = fj_event(ts, c);
    if (strcmp(fj_get(e, "type"), type) != 0) {
        VRS_TEST_FAIL("expected a %s media event, got: %.300s", type, e);
        return NULL;
    }
    return e;
}

/* The next media event must be a `custom` one of this type for this connection; returns it. */
static const char *fj_expect_custom(ts_server *ts, ts_client *c, const char *type, const char *connection) {
    const char *e = fj_expect_event(ts, c, "custom");
    if (!e) return NULL;
    CHECK_EQ_STR(fj_get(e, "data.type"), type);
    CHECK_EQ_STR(fj_get(e, "data.data.connection"), connection);
    return e;
}

/* 1 when the page gets nothing for a while. */
static int fj_page_quiet(ts_server *ts, ts_client *c) {
    ts_frame f;
    fj_run(ts, 100);
    return ts_read_frame(c, &f, 50) == -1;
}

/* A peer joins the room through the logic: Janus session S, publisher handle H, feed F. The
   room is created first when `creates_room`. Returns the page, with peerAccepted read. */
static ts_client *fj_join(ts_server *ts, const char *room, int creates_room, int s, int h, int f, const char **accepted) {
    ts_client *c = fj_page(ts, room);
    const char *r;
    if (!c) return NULL;
    fj_send(c, room, "{\"type\":\"join\",\"data\":{\"metadata\":{\"name\":\"N\"}}}");
    if (creates_room) {
        r = fj_expect(ts, "message", "create");
        if (!r) return c;
        fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":1,\"transaction\":\"%%T\",\"sender\":2,"
                         "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"created\",\"room\":77}}}");
    }
    r = fj_expect(ts, "create", NULL);
    if (!r) return c;
    fj_answer(ts, r, "{\"janus\":\"success\",\"transaction\":\"%%T\",\"data\":{\"id\":%d}}", s);
    r = fj_expect(ts, "attach", NULL);
    if (!r) return c;
    CHECK_EQ_INT(atoi(fj_get(r, "session_id")), s);
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":%d,\"transaction\":\"%%T\",\"data\":{\"id\":%d}}", s, h);
    r = fj_expect(ts, "message", "join");
    if (!r) return c;
    CHECK_EQ_STR(fj_get(r, "body.ptype"), "publisher");
    CHECK_EQ_STR(fj_get(r, "body.room"), "77");
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":%d,\"transaction\":\"%%T\"}", s);
    fj_answer(ts, r, "{\"janus\":\"event\",\"session_id\":%d,\"transaction\":\"%%T\",\"sender\":%d,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"joined\",\"room\":77,"
                     "\"id\":%d,\"publishers\":[]}}}", s, h, f);
    *accepted = fj_expect_event(ts, c, "peerAccepted");
    return c;
}

/* The page publishes: its offer reaches Janus, Janus's answer the page, and the connection
   comes up (webrtcup). */
static void fj_publish(ts_server *ts, ts_client *c, const char *room, int s, int h) {
    const char *r, *e;
    fj_send(c, room, "{\"type\":\"custom\",\"data\":{\"type\":\"sdpOffer\",\"data\":{\"connection\":\"publish\",\"sdp\":\"v=0 offer\\r\\n\"}}}");
    r = fj_expect(ts, "message", "publish");
    if (!r) return;
    CHECK_EQ_STR(fj_get(r, "jsep.type"), "offer");
    CHECK_EQ_STR(fj_get(r, "jsep.sdp"), "v=0 offer\r\n");
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":%d,\"transaction\":\"%%T\"}", s);
    fj_answer(ts, r, "{\"janus\":\"event\",\"session_id\":%d,\"transaction\":\"%%T\",\"sender\":%d,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"event\",\"room\":77,"
                     "\"configured\":\"ok\",\"streams\":[{\"type\":\"audio\",\"mindex\":0,\"mid\":\"0\"},"
                     "{\"type\":\"video\",\"mindex\":1,\"mid\":\"1\"}]}},\"jsep\":{\"type\":\"answer\",\"sdp\":\"v=0 answer\"}}", s, h);
    e = fj_expect_custom(ts, c, "sdpAnswer", "publish");
    if (!e) return;
    CHECK_EQ_STR(fj_get(e, "data.data.sdp"), "v=0 answer");
    fj_answer(ts, NULL, "{\"janus\":\"webrtcup\",\"session_id\":%d,\"sender\":%d}", s, h);
}

TEST(sfu, two_peers_publish_and_subscribe_through_janus) {
    ts_server *ts = fj_start();
    ts_client *a, *b;
    const char *accepted, *r, *e;
    char a_id[64], b_id[64], expected[512];
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_join(ts, "r", 1, 10, 11, 501, &accepted);
    REQUIRE(a && accepted);
    snprintf(a_id, sizeof a_id, "%s", fj_get(accepted, "data.id"));
    CHECK_EQ_STR(fj_get(accepted, "data.peersInRoom"), "[]");
    fj_publish(ts, a, "r", 10, 11);
    CHECK(fj_silent(ts, 50)); /* nobody to subscribe to A yet, and A has nobody to receive */

    b = fj_join(ts, "r", 0, 20, 21, 502, &accepted);
    REQUIRE(b && accepted);
    snprintf(b_id, sizeof b_id, "%s", fj_get(accepted, "data.id"));
    /* B is told who is in, with A's tracks; A is told B joined. */
    snprintf(expected, sizeof expected, "[{\"id\":\"%s\",\"metadata\":{\"name\":\"N\"},\"trackIdToMetadata\":"
             "{\"%s:0\":{\"kind\":\"audio\"},\"%s:1\":{\"kind\":\"video\"}}}]", a_id, a_id, a_id);
    CHECK_EQ_STR(fj_get(accepted, "data.peersInRoom"), expected);
    e = fj_expect_event(ts, a, "peerJoined");
    if (e) CHECK_EQ_STR(fj_get(e, "data.peer.id"), b_id);
    fj_send(b, "r", "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":{\"name\":\"B\",\"muted\":true}}}");
    e = fj_expect_event(ts, a, "peerUpdated");
    if (e) {
        CHECK_EQ_STR(fj_get(e, "data.peerId"), b_id);
        CHECK_EQ_STR(fj_get(e, "data.metadata.name"), "B");
    }

    /* B subscribes to A's feed: one subscriber handle, joined with the feed, Janus offers. */
    r = fj_expect(ts, "attach", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "session_id"), "20");
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":20,\"transaction\":\"%%T\",\"data\":{\"id\":22}}");
    r = fj_expect(ts, "message", "join");
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "handle_id"), "22");
    CHECK_EQ_STR(fj_get(r, "body.ptype"), "subscriber");
    CHECK_EQ_STR(fj_get(r, "body.streams"), "[{\"feed\":501}]");
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":20,\"transaction\":\"%%T\"}");
    fj_answer(ts, r, "{\"janus\":\"event\",\"session_id\":20,\"transaction\":\"%%T\",\"sender\":22,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"attached\",\"room\":77,"
                     "\"streams\":[{\"type\":\"audio\",\"active\":true,\"mindex\":0,\"mid\":\"0\",\"feed_id\":501,\"feed_mid\":\"0\"},"
                     "{\"type\":\"video\",\"active\":true,\"mindex\":1,\"mid\":\"1\",\"feed_id\":501,\"feed_mid\":\"1\"}]}},"
                     "\"jsep\":{\"type\":\"offer\",\"sdp\":\"v=0 subscriber offer\"}}");
    e = fj_expect_custom(ts, b, "sdpOffer", "subscribe");
    REQUIRE(e);
    CHECK_EQ_STR(fj_get(e, "data.data.sdp"), "v=0 subscriber offer");
    snprintf(expected, sizeof expected, "{\"0\":\"%s:0\",\"1\":\"%s:1\"}", a_id, a_id);
    CHECK_EQ_STR(fj_get(e, "data.data.midToTrackId"), expected);

    /* B answers and trickles; Janus starts. */
    fj_send(b, "r", "{\"type\":\"custom\",\"data\":{\"type\":\"sdpAnswer\",\"data\":{\"connection\":\"subscribe\",\"sdp\":\"v=0 sub answer\"}}}");
    r = fj_expect(ts, "message", "start");
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "handle_id"), "22");
    CHECK_EQ_STR(fj_get(r, "jsep.type"), "answer");
    CHECK_EQ_STR(fj_get(r, "jsep.sdp"), "v=0 sub answer");
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":20,\"transaction\":\"%%T\"}");
    fj_answer(ts, r, "{\"janus\":\"event\",\"session_id\":20,\"transaction\":\"%%T\",\"sender\":22,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"event\",\"started\":\"ok\"}}}");
    fj_send(b, "r", "{\"type\":\"custom\",\"data\":{\"type\":\"candidate\",\"data\":{\"connection\":\"subscribe\","
                    "\"candidate\":{\"candidate\":\"candidate:1 1 udp 1 10.0.0.1 5000 typ host\",\"sdpMid\":\"0\"}}}}");
    r = fj_expect(ts, "trickle", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "handle_id"), "22");
    CHECK_EQ_STR(fj_get(r, "candidate.sdpMid"), "0");
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":20,\"transaction\":\"%%T\"}");
    fj_send(b, "r", "{\"type\":\"custom\",\"data\":{\"type\":\"candidate\",\"data\":{\"connection\":\"subscribe\",\"candidate\":null}}}");
    r = fj_expect(ts, "trickle", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "candidate"), "{\"completed\":true}");
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":20,\"transaction\":\"%%T\"}");

    /* Janus trickles a candidate on B's subscriber handle (with full_trickle), then ends them. */
    fj_answer(ts, NULL, "{\"janus\":\"trickle\",\"session_id\":20,\"sender\":22,"
                        "\"candidate\":{\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\"candidate\":\"candidate:2 1 udp 9 10.0.0.2 20000 typ host\"}}");
    e = fj_expect_custom(ts, b, "candidate", "subscribe");
    REQUIRE(e);
    CHECK_EQ_STR(fj_get(e, "data.data.candidate.candidate"), "candidate:2 1 udp 9 10.0.0.2 20000 typ host");
    fj_answer(ts, NULL, "{\"janus\":\"trickle\",\"session_id\":20,\"sender\":22,\"candidate\":{\"completed\":true}}");
    e = fj_expect_custom(ts, b, "candidate", "subscribe");
    REQUIRE(e);
    CHECK_EQ_STR(fj_get(e, "data.data.candidate"), "null");
    CHECK(fj_page_quiet(ts, a));

    /* B publishes: A is told of B's tracks and subscribes to B, with a handle of its own. */
    fj_publish(ts, b, "r", 20, 21);
    e = fj_expect_event(ts, a, "tracksAdded");
    if (e) CHECK_EQ_STR(fj_get(e, "data.peerId"), b_id);
    r = fj_expect(ts, "attach", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "session_id"), "10");

    ts_client_free(a);
    ts_client_free(b);
    fj_stop(ts);
}

TEST(sfu, peers_that_join_while_the_room_is_made_all_go_on) {
    ts_server *ts = fj_start();
    ts_client *pages[3];
    const char *r;
    int i, sessions = 0;
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    for (i = 0; i < 3; i++) {
        pages[i] = fj_page(ts, "r");
        REQUIRE(pages[i]);
        fj_send(pages[i], "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    }
    /* One room is asked for; once Janus has made it, each of the three gets a session. */
    r = fj_expect(ts, "message", "create");
    REQUIRE(r);
    CHECK(fj_silent(ts, 50));
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":1,\"transaction\":\"%%T\",\"sender\":2,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"created\",\"room\":77}}}");
    for (i = 0; i < 3; i++) sessions += fj_expect(ts, "create", NULL) != NULL;
    CHECK_EQ_INT(sessions, 3);
    for (i = 0; i < 3; i++) ts_client_free(pages[i]);
    fj_stop(ts);
}

TEST(sfu, a_peer_past_the_hosts_table_is_told) {
    ts_server *ts = fj_start();
    ts_client *pages[SFU_MAX_PEERS + 1];
    const char *e;
    int i;
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    for (i = 0; i <= SFU_MAX_PEERS; i++) {
        pages[i] = fj_page(ts, "r");
        REQUIRE(pages[i]);
    }
    fj_send(pages[SFU_MAX_PEERS], "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    e = fj_expect_event(ts, pages[SFU_MAX_PEERS], "error");
    if (e) CHECK_EQ_STR(fj_get(e, "data.message"), "the SFU host is full: try again later");
    CHECK(fj_silent(ts, 50));
    fj_send(pages[0], "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    CHECK(fj_expect(ts, "message", "create") != NULL); /* the others go on as ever */
    for (i = 0; i <= SFU_MAX_PEERS; i++) ts_client_free(pages[i]);
    fj_stop(ts);
}

TEST(sfu, a_janus_error_reaches_that_peer_alone) {
    ts_server *ts = fj_start();
    ts_client *a, *b;
    const char *accepted, *r, *e;
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_join(ts, "r", 1, 10, 11, 501, &accepted);
    REQUIRE(a && accepted);
    b = fj_join(ts, "r", 0, 20, 21, 502, &accepted);
    REQUIRE(b && accepted);
    CHECK(fj_expect_event(ts, a, "peerJoined") != NULL);
    fj_send(b, "r", "{\"type\":\"custom\",\"data\":{\"type\":\"sdpOffer\",\"data\":{\"connection\":\"publish\",\"sdp\":\"bad\"}}}");
    r = fj_expect(ts, "message", "publish");
    REQUIRE(r);
    fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":20,\"transaction\":\"%%T\"}");
    fj_answer(ts, r, "{\"janus\":\"event\",\"session_id\":20,\"transaction\":\"%%T\",\"sender\":21,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"event\",\"error_code\":434,"
                     "\"error\":\"Invalid SDP\"}}}");
    e = fj_expect_event(ts, b, "error");
    if (e) CHECK_EQ_STR(fj_get(e, "data.message"), "media server: Invalid SDP");
    CHECK(fj_page_quiet(ts, a));

    /* A Janus-level error (a bad trickle, say) also goes to its sender only. */
    fj_send(a, "r", "{\"type\":\"custom\",\"data\":{\"type\":\"candidate\",\"data\":{\"connection\":\"publish\",\"candidate\":{}}}}");
    r = fj_expect(ts, "trickle", NULL);
    REQUIRE(r);
    fj_answer(ts, r, "{\"janus\":\"error\",\"session_id\":10,\"transaction\":\"%%T\",\"error\":{\"code\":456,\"reason\":\"Missing mandatory element\"}}");
    CHECK(fj_page_quiet(ts, a)); /* a trickle's failure is logged, not shown */
    CHECK(fj_page_quiet(ts, b));

    /* A page that sends something this logic does not know is told so, alone. */
    fj_send(a, "r", "{\"type\":\"custom\",\"data\":{\"type\":\"sdpOffer\",\"data\":{\"connection\":\"sideways\",\"sdp\":\"x\"}}}");
    CHECK(fj_expect_event(ts, a, "error") != NULL);
    CHECK(fj_page_quiet(ts, b));
    ts_client_free(a);
    ts_client_free(b);
    fj_stop(ts);
}

TEST(sfu, a_request_janus_never_answers_fails_in_time) {
    ts_server *ts = fj_start();
    ts_client *a;
    const char *r, *e;
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_page(ts, "r");
    REQUIRE(a);
    fj_send(a, "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    r = fj_expect(ts, "message", "create");
    REQUIRE(r);
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":1,\"transaction\":\"%%T\",\"sender\":2,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"created\",\"room\":77}}}");
    r = fj_expect(ts, "create", NULL);
    REQUIRE(r);
    /* Janus stays silent past the deadline. */
    fj_clock_offset += SFU_REQUEST_TIMEOUT_MS + 1;
    e = fj_expect_event(ts, a, "error");
    if (e) CHECK_EQ_STR(fj_get(e, "data.message"), "media server: no answer in time");
    /* The page may join again; the answer that comes too late is not taken for it, and the
       session it made is destroyed. */
    fj_answer(ts, r, "{\"janus\":\"success\",\"transaction\":\"%%T\",\"data\":{\"id\":99}}");
    CHECK(fj_silent(ts, 50));
    fj_send(a, "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    CHECK(fj_expect(ts, "create", NULL) != NULL);
    ts_client_free(a);
    fj_stop(ts);
}

TEST(sfu, sessions_get_keepalives) {
    ts_server *ts = fj_start();
    ts_client *a;
    const char *accepted, *r;
    int control = 0, peer = 0, i;
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_join(ts, "r", 1, 10, 11, 501, &accepted);
    REQUIRE(a && accepted);
    fj_clock_offset += SFU_KEEPALIVE_MS + 1;
    for (i = 0; i < 2; i++) {
        r = fj_expect(ts, "keepalive", NULL);
        if (!r) break;
        control += strcmp(fj_get(r, "session_id"), "1") == 0;
        peer += strcmp(fj_get(r, "session_id"), "10") == 0;
        fj_answer(ts, r, "{\"janus\":\"ack\",\"session_id\":%s,\"transaction\":\"%%T\"}", fj_get(r, "session_id"));
    }
    CHECK_EQ_INT(control, 1);
    CHECK_EQ_INT(peer, 1);
    CHECK(fj_silent(ts, 50));
    ts_client_free(a);
    fj_stop(ts);
}

TEST(sfu, a_peer_that_leaves_has_its_session_destroyed) {
    ts_server *ts = fj_start();
    ts_client *a, *b, *c;
    const char *accepted, *r, *e;
    char a_id[64];
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_join(ts, "r", 1, 10, 11, 501, &accepted);
    REQUIRE(a && accepted);
    snprintf(a_id, sizeof a_id, "%s", fj_get(accepted, "data.id"));
    fj_publish(ts, a, "r", 10, 11);
    b = fj_join(ts, "r", 0, 20, 21, 502, &accepted);
    REQUIRE(b && accepted);
    r = fj_expect(ts, "attach", NULL); /* B's subscriber handle: left unanswered */
    REQUIRE(r);
    CHECK(fj_expect_event(ts, a, "peerJoined") != NULL);

    /* A's socket goes: B is told A's tracks and A are gone; Janus destroys A's session. */
    ts_client_free(a);
    e = fj_expect_event(ts, b, "tracksRemoved");
    if (e) CHECK(strstr(fj_get(e, "data.trackIds"), a_id) != NULL);
    e = fj_expect_event(ts, b, "peerLeft");
    if (e) CHECK_EQ_STR(fj_get(e, "data.peerId"), a_id);
    r = fj_expect(ts, "destroy", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "session_id"), "10");
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":10,\"transaction\":\"%%T\"}");

    /* C leaves in the middle of its setup: the session Janus makes for it afterwards is
       destroyed at once. */
    c = fj_page(ts, "r");
    REQUIRE(c);
    fj_send(c, "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    r = fj_expect(ts, "create", NULL);
    REQUIRE(r);
    ts_client_free(c);
    fj_run(ts, 50);
    fj_answer(ts, r, "{\"janus\":\"success\",\"transaction\":\"%%T\",\"data\":{\"id\":30}}");
    r = fj_expect(ts, "destroy", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "session_id"), "30");

    /* The last peer goes: its session, then the Janus room. */
    ts_client_free(b);
    r = fj_expect(ts, "destroy", NULL);
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "session_id"), "20");
    r = fj_expect(ts, "message", "destroy");
    REQUIRE(r);
    CHECK_EQ_STR(fj_get(r, "body.room"), "77");
    fj_stop(ts);
}

TEST(sfu, janus_going_away_closes_the_rooms_and_joins_wait_for_it) {
    ts_server *ts = fj_start();
    ts_client *a;
    const char *accepted, *r, *e;
    int pair[2];
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_join(ts, "r", 1, 10, 11, 501, &accepted);
    REQUIRE(a && accepted);
    /* Janus stops: the page's channel gets phx_error (phoenix.js rejoins). */
    close(fj_janus);
    fj_janus = -1;
    e = fj_event(ts, a);
    CHECK(strstr(e, "\"phx_error\"") != NULL);
    CHECK(fj_host.fd < 0);
    /* The page rejoins while Janus is away: its join waits. */
    REQUIRE(ts_send_text(a, "[\"2\",\"2\",\"room:r\",\"phx_join\",{}]") == 0);
    fj_join_ref = "2";
    e = fj_event(ts, a);
    CHECK(strstr(e, "\"ok\"") != NULL);
    fj_send(a, "r", "{\"type\":\"join\",\"data\":{\"metadata\":{}}}");
    e = fj_expect_event(ts, a, "error");
    if (e) CHECK_EQ_STR(fj_get(e, "data.message"), "the media server is unavailable: you will join when it is back");
    CHECK(fj_page_quiet(ts, a));
    /* Janus is back: the host's session, the room, the peer's session, in that order. */
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) == 0);
    fj_janus = pair[0];
    sfu_adopt_socket(&fj_host, pair[1]);
    REQUIRE(fj_control(ts));
    r = fj_expect(ts, "message", "create");
    REQUIRE(r);
    fj_answer(ts, r, "{\"janus\":\"success\",\"session_id\":1,\"transaction\":\"%%T\",\"sender\":2,"
                     "\"plugindata\":{\"plugin\":\"janus.plugin.videoroom\",\"data\":{\"videoroom\":\"created\",\"room\":78}}}");
    r = fj_expect(ts, "create", NULL);
    REQUIRE(r);
    fj_answer(ts, r, "{\"janus\":\"success\",\"transaction\":\"%%T\",\"data\":{\"id\":40}}");
    CHECK(fj_expect(ts, "attach", NULL) != NULL);
    ts_client_free(a);
    fj_stop(ts);
}

TEST(sfu, janus_sending_garbage_disturbs_nothing) {
    ts_server *ts = fj_start();
    ts_client *a;
    const char *accepted;
    REQUIRE(ts);
    REQUIRE(fj_control(ts));
    a = fj_join(ts, "r", 1, 10, 11, 501, &accepted);
    REQUIRE(a && accepted);
    fj_answer(ts, NULL, "not json");
    fj_answer(ts, NULL, "{\"janus\":\"success\",\"transaction\":\"12345\"}"); /* no such transaction */
    fj_answer(ts, NULL, "{\"janus\":\"event\",\"sender\":999,\"plugindata\":{}}"); /* no such handle */
    fj_answer(ts, NULL, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    CHECK(fj_page_quiet(ts, a));
    CHECK(fj_host.fd >= 0);
    fj_send(a, "r", "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":{\"name\":\"M\"}}}");
    CHECK(fj_silent(ts, 50)); /* metadata stays with the host */
    CHECK(fj_page_quiet(ts, a)); /* and goes to the others only (there are none) */
    ts_client_free(a);
    fj_stop(ts);
}

int main(int argc, char **argv) { return vrs_test_main(argc, argv); }
