/* Phoenix channel layer, room table and relay room logic: docs/PROTOCOL.md (the wire protocol)
   and docs/RELAY.md (channels, rooms, the relay logic).

   The codecs are called directly (vrs__decode_v2, vrs__decode_v1, vrs__decode_v2_binary,
   vrs__envelope_pieces); everything else runs over loopback against an in-process server
   (test_support.h) with raw WebSocket clients, the server pumped while a client waits.

   Frames are compared as parsed JSON values (px_json_same: keys sorted, strings re-encoded,
   whitespace dropped), except where a test states the exact bytes on purpose: the server
   writes compact JSON in a fixed order, e.g. the join reply
       ["3","3","room:a","phx_reply",{"status":"ok","response":{}}]
   A "nothing came back" check sends a heartbeat and requires its reply to be the very next
   frame (px_quiet): frames of one socket keep their order, so anything the earlier message
   caused would have come first. Every test ends with px_finish: all clients gone, the server
   holds no connection, no pool block, no channel and no room. */

#include <stdarg.h>

#define PX_FN static __attribute__((unused))
#define PX_V2 "/socket/websocket?vsn=2.0.0"
#define PX_V1 "/socket/websocket?vsn=1.0.0"
#define PX_TEXT 8192
#define PX_WAIT_MS 2000
#define PX_OK "{\"status\":\"ok\",\"response\":{}}"

static int px_ref_counter;

/* ---------------------------------------------------------------------------------------------
   JSON as parsed values
   ------------------------------------------------------------------------------------------- */

typedef struct px_member {
    char key[256];
    long key_length;
    vrs__json_slice value;
} px_member;

static int px_member_order(const void *a, const void *b) {
    const px_member *x = (const px_member *)a, *y = (const px_member *)b;
    size_t n = (size_t)(x->key_length < y->key_length ? x->key_length : y->key_length);
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

/* Writes v in a canonical form: no whitespace, object keys sorted, strings re-encoded. */
static int px_canon_value(vrs__json_slice v, vrs__json_writer *w, int depth) {
    vrs__json_cursor cursor;
    v = vrs__json_trim(v);
    if (depth > 48) return 0;
    switch (vrs__json_kind_of(v)) {
    case VRS__JSON_NULL:
    case VRS__JSON_TRUE:
    case VRS__JSON_FALSE:
    case VRS__JSON_NUMBER:
        vrs__jw_raw(w, v.start, v.length);
        return 1;
    case VRS__JSON_STRING: {
        char *text = (char *)malloc(v.length + 1);
        long n = text ? vrs__json_string_decode(v, text, v.length + 1) : -1;
        if (n >= 0) vrs__jw_string(w, text, (size_t)n);
        free(text);
        return n >= 0;
    }
    case VRS__JSON_ARRAY: {
        vrs__json_slice element;
        int first = 1;
        vrs__json_enter(v, &cursor);
        VRS__JW_LITERAL(w, "[");
        while (vrs__json_next_element(&cursor, &element)) {
            if (!first) VRS__JW_LITERAL(w, ",");
            first = 0;
            if (!px_canon_value(element, w, depth + 1)) return 0;
        }
        VRS__JW_LITERAL(w, "]");
        return 1;
    }
    case VRS__JSON_OBJECT: {
        px_member *members = (px_member *)calloc(64, sizeof *members);
        vrs__json_slice key, value;
        int count = 0, i, ok = members != NULL;
        vrs__json_enter(v, &cursor);
        while (ok && vrs__json_next_member(&cursor, &key, &value)) {
            if (count == 64) {
                ok = 0;
                break;
            }
            members[count].key_length = vrs__json_string_decode(key, members[count].key, sizeof members[count].key);
            members[count].value = value;
            if (members[count].key_length < 0) ok = 0;
            count++;
        }
        if (ok) qsort(members, (size_t)count, sizeof *members, px_member_order);
        VRS__JW_LITERAL(w, "{");
        for (i = 0; ok && i < count; i++) {
            if (i) VRS__JW_LITERAL(w, ",");
            vrs__jw_string(w, members[i].key, (size_t)members[i].key_length);
            VRS__JW_LITERAL(w, ":");
            ok = px_canon_value(members[i].value, w, depth + 1);
        }
        VRS__JW_LITERAL(w, "}");
        free(members);
        return ok;
    }
    default:
        return 0;
    }
}

/* Canonical text of `text` into a new buffer (free it), or NULL when it is not valid JSON. */
static char *px_canon(const char *text, size_t length) {
    size_t capacity = 2 * length + 16;
    char *out = (char *)malloc(capacity + 1);
    vrs__json_writer w;
    if (!out) return NULL;
    vrs__jw_init(&w, out, capacity);
    if (!vrs__json_validate(text, length, VRS__MAX_JSON_DEPTH) ||
        !px_canon_value(vrs__slice(text, length), &w, 0) || w.overflowed) {
        free(out);
        return NULL;
    }
    out[w.length] = '\0';
    return out;
}

/* 1 when both texts are valid JSON holding the same value. */
PX_FN int px_json_same(const char *a, const char *b) {
    char *ca = a ? px_canon(a, strlen(a)) : NULL, *cb = b ? px_canon(b, strlen(b)) : NULL;
    int same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}

#define PX_CHECK_JSON(actual, expected)                                                        \
    do {                                                                                       \
        const char *px_a_ = (actual), *px_e_ = (expected);                                     \
        if (!px_json_same(px_a_, px_e_))                                                       \
            VRS_TEST_FAIL("got JSON %s\n      expected %s", px_a_ ? px_a_ : "(null)", px_e_);  \
    } while (0)

/* The value at `path` ("data.peersInRoom.0.id": object keys and array indexes) as raw JSON
   text into out; 1 when found. */
PX_FN int px_field(const char *json, const char *path, char *out, size_t capacity) {
    vrs__json_slice v = vrs__slice(json, strlen(json));
    char key[128];
    if (!vrs__json_validate(json, v.length, VRS__MAX_JSON_DEPTH)) return 0;
    while (*path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key) return 0;
        memcpy(key, path, n);
        key[n] = '\0';
        path += n;
        if (*path == '.') path++;
        if (vrs__json_kind_of(v) == VRS__JSON_ARRAY) {
            vrs__json_cursor cursor;
            vrs__json_slice element;
            int index = atoi(key), i = 0, found = 0;
            vrs__json_enter(v, &cursor);
            while (vrs__json_next_element(&cursor, &element))
                if (i++ == index) {
                    v = element;
                    found = 1;
                    break;
                }
            if (!found) return 0;
        } else if (!vrs__json_object_get(v, key, &v)) {
            return 0;
        }
    }
    v = vrs__json_trim(v);
    if (v.length >= capacity) return 0;
    memcpy(out, v.start, v.length);
    out[v.length] = '\0';
    return 1;
}

/* The string at `path`, decoded; 1 when it is there and a string. */
PX_FN int px_field_string(const char *json, const char *path, char *out, size_t capacity) {
    char raw[PX_TEXT];
    long n;
    if (!px_field(json, path, raw, sizeof raw) || raw[0] != '"') return 0;
    n = vrs__json_string_decode(vrs__slice(raw, strlen(raw)), out, capacity);
    return n >= 0 && (size_t)n < capacity;
}

PX_FN int px_slice_is(vrs__json_slice s, const char *text) {
    return s.start && s.length == strlen(text) && memcmp(s.start, text, s.length) == 0;
}

/* ---------------------------------------------------------------------------------------------
   Servers and clients
   ------------------------------------------------------------------------------------------- */

/* A Phoenix-only host: no on_message, so paths other than the socket are plain HTTP. */
/* Writes one envelope the way the server queues it (from vrs__envelope_pieces), for the codec
   tests. */
PX_FN void px_write_envelope(vrs__json_writer *w, int vsn, const char *join_ref, size_t join_ref_length,
                             const char *ref, size_t ref_length, const char *topic, size_t topic_length,
                             const char *event, const char *payload, size_t payload_length) {
    char event_json[512];
    vrs__json_writer e;
    vrs__piece pieces[VRS__ENVELOPE_PIECES], body = vrs__text_piece(payload, payload_length);
    int count, i;
    vrs__jw_init(&e, event_json, sizeof event_json);
    vrs__jw_cstring(&e, event);
    count = vrs__envelope_pieces(pieces, vsn, vrs__text_piece(join_ref, join_ref_length),
                                 vrs__text_piece(ref, ref_length), vrs__text_piece(topic, topic_length),
                                 vrs__text_piece(e.buffer, e.length), &body, 1);
    for (i = 0; i < count; i++) vrs__jw_raw(w, (const char *)pieces[i].bytes, pieces[i].length);
}

PX_FN ts_server *px_server_new(void) {
    ts_server *ts = ts_server_new();
    if (!ts) return NULL;
    ts->desc.on_message = NULL;
    ts->echo = 0;
    return ts;
}

PX_FN ts_server *px_start(ts_server *ts) {
    if (ts && ts_server_start(ts) != VRS_OK) {
        ts_server_free(ts);
        return NULL;
    }
    return ts;
}

PX_FN ts_server *px_server(void) { return px_start(px_server_new()); }

/* Frees the clients (the list ends with NULL), waits for the server to empty and checks that
   it holds no connection, no pool block, no channel and no room; then frees the server. */
PX_FN int px_finish(ts_server *ts, ...) {
    va_list args;
    ts_client *c;
    vrs_stats s;
    int clean;
    va_start(args, ts);
    while ((c = va_arg(args, ts_client *)) != NULL) ts_client_free(c);
    va_end(args);
    ts_wait_drained(ts, PX_WAIT_MS);
    s = vrs_get_stats(ts->server);
    clean = s.connections == 0 && s.open_connections == 0 && s.pool_blocks_used == 0 &&
            ts->server->channel_count == 0 && ts->server->room_count == 0;
    if (!clean)
        fprintf(stderr, "    not clean: %d connections, %d open, %d pool blocks, %d channels, %d rooms\n",
                s.connections, s.open_connections, s.pool_blocks_used, ts->server->channel_count,
                ts->server->room_count);
    ts_server_free(ts);
    return clean;
}

/* Upgrades a new client at `target` (extra: whole header lines or NULL); NULL unless 101. */
PX_FN ts_client *px_ws(ts_server *ts, const char *target, const char *extra) {
    ts_client *c = ts_client_connect(ts);
    ts_request q;
    ts_response r;
    if (!c) return NULL;
    memset(&q, 0, sizeof q);
    q.target = target;
    q.extra = extra;
    if (ts_handshake(c, &q, &r) != 101) {
        ts_client_free(c);
        return NULL;
    }
    if (ts->open_count > 0 && ts->open_count <= TS_MAX_EVENTS) c->conn = ts->opened[ts->open_count - 1];
    return c;
}

PX_FN ts_client *px_v2(ts_server *ts) { return px_ws(ts, PX_V2, NULL); }

/* One request on a fresh connection: the response status (-1: none), head kept in *r. */
PX_FN int px_try(ts_server *ts, const ts_request *q, ts_response *r) {
    ts_client *c = ts_client_connect(ts);
    int status;
    if (!c) return -1;
    status = ts_handshake(c, q, r);
    ts_client_free(c);
    return status;
}

PX_FN int px_try_target(ts_server *ts, const char *target, const char *extra) {
    ts_request q;
    ts_response r;
    memset(&q, 0, sizeof q);
    q.target = target;
    q.extra = extra;
    return px_try(ts, &q, &r);
}

__attribute__((format(printf, 2, 3))) PX_FN int px_sendf(ts_client *c, const char *format, ...) {
    char text[PX_TEXT];
    va_list args;
    int n;
    va_start(args, format);
    n = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof text) return -1;
    return ts_send_frame(c, 1, 1, text, (size_t)n);
}

/* The next frame: payload into out (NUL-terminated), opcode into *opcode. Returns the payload
   length, or -1 when no frame came in time. */
PX_FN long px_recv(ts_client *c, char *out, size_t capacity, int *opcode) {
    ts_frame f;
    size_t n;
    *opcode = 0;
    out[0] = '\0';
    if (ts_read_frame(c, &f, PX_WAIT_MS) != 1) return -1;
    n = f.length < capacity - 1 ? f.length : capacity - 1;
    memcpy(out, f.payload, n);
    out[n] = '\0';
    *opcode = f.opcode;
    return (long)f.length;
}

/* The next frame must be a text frame holding `expected` (as a JSON value). */
#define PX_EXPECT(c, expected)                                                                 \
    do {                                                                                       \
        char px_got_[PX_TEXT];                                                                 \
        int px_op_;                                                                            \
        long px_n_ = px_recv((c), px_got_, sizeof px_got_, &px_op_);                           \
        if (px_n_ < 0 || px_op_ != 1)                                                          \
            VRS_TEST_FAIL("expected %s, got no text frame (%ld, opcode %d)", (expected), px_n_, px_op_); \
        else                                                                                   \
            PX_CHECK_JSON(px_got_, (expected));                                                \
    } while (0)

/* The next frame must be a text frame with exactly these bytes. */
#define PX_EXPECT_EXACT(c, expected)                                                           \
    do {                                                                                       \
        char px_got_[PX_TEXT];                                                                 \
        int px_op_;                                                                            \
        long px_n_ = px_recv((c), px_got_, sizeof px_got_, &px_op_);                           \
        if (px_n_ < 0 || px_op_ != 1)                                                          \
            VRS_TEST_FAIL("expected %s, got no text frame (%ld, opcode %d)", (expected), px_n_, px_op_); \
        else                                                                                   \
            CHECK_EQ_STR(px_got_, (expected));                                                 \
    } while (0)

/* Sends a V2 heartbeat and requires its reply to be the next frame: nothing else came first. */
PX_FN int px_quiet(ts_client *c) {
    char expected[160], got[PX_TEXT];
    int op, ref = ++px_ref_counter;
    long n;
    snprintf(expected, sizeof expected, "[null,\"hb%d\",\"phoenix\",\"phx_reply\",%s]", ref, PX_OK);
    if (px_sendf(c, "[null,\"hb%d\",\"phoenix\",\"heartbeat\",{}]", ref) != 0) return 0;
    n = px_recv(c, got, sizeof got, &op);
    if (n >= 0 && op == 1 && strcmp(got, expected) == 0) return 1;
    fprintf(stderr, "    px_quiet: expected the heartbeat reply, got (%ld, opcode %d) %s\n", n, op, got);
    return 0;
}

/* The same for a V1 socket. */
PX_FN int px_quiet1(ts_client *c) {
    char expected[200], got[PX_TEXT];
    int op, ref = ++px_ref_counter;
    long n;
    snprintf(expected, sizeof expected,
             "{\"topic\":\"phoenix\",\"event\":\"phx_reply\",\"payload\":%s,\"ref\":\"hb%d\"}", PX_OK, ref);
    if (px_sendf(c, "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"hb%d\"}", ref) != 0)
        return 0;
    n = px_recv(c, got, sizeof got, &op);
    if (n >= 0 && op == 1 && strcmp(got, expected) == 0) return 1;
    fprintf(stderr, "    px_quiet1: expected the heartbeat reply, got (%ld, opcode %d) %s\n", n, op, got);
    return 0;
}

/* Joins `topic` with join_ref = ref = jr (a string) and reads the ok reply; 1 on success. */
PX_FN int px_join(ts_client *c, const char *topic, const char *jr) {
    char expected[600], got[PX_TEXT];
    int op;
    long n;
    snprintf(expected, sizeof expected, "[\"%s\",\"%s\",\"%s\",\"phx_reply\",%s]", jr, jr, topic, PX_OK);
    if (px_sendf(c, "[\"%s\",\"%s\",\"%s\",\"phx_join\",{}]", jr, jr, topic) != 0) return 0;
    n = px_recv(c, got, sizeof got, &op);
    if (n >= 0 && op == 1 && px_json_same(got, expected)) return 1;
    fprintf(stderr, "    px_join %s: got (%ld, opcode %d) %s\n", topic, n, op, got);
    return 0;
}

/* The error reply a join or message gets: [jr, ref, topic, "phx_reply", {error, reason}]. */
PX_FN void px_error_reply(char *out, size_t capacity, const char *jr_json, const char *ref,
                          const char *topic, const char *reason) {
    snprintf(out, capacity,
             "[%s,\"%s\",\"%s\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"%s\"}}]",
             jr_json, ref, topic, reason);
}

/* The one peer of a room (its first, in join order); id 0 when none. */
PX_FN vrs_peer px_peer_at(ts_server *ts, const char *room_id, int position) {
    vrs_peer peers[16], none;
    int count = vrs_room_peers(ts->server, vrs_find_room(ts->server, room_id), peers, 16);
    none.id = 0;
    return position < count ? peers[position] : none;
}

/* ---------------------------------------------------------------------------------------------
   Relay events
   ------------------------------------------------------------------------------------------- */

/* Sends mediaEvent {"data": D} with D = E serialized into a JSON string (the Membrane way). */
PX_FN int px_media(ts_client *c, const char *jr, const char *topic, const char *e) {
    char d[PX_TEXT];
    vrs__json_writer w;
    vrs__jw_init(&w, d, sizeof d - 1);
    vrs__jw_string(&w, e, strlen(e));
    if (w.overflowed) return -1;
    d[w.length] = '\0';
    return px_sendf(c, "[\"%s\",\"m%d\",\"%s\",\"mediaEvent\",{\"data\":%s}]", jr, ++px_ref_counter, topic, d);
}

/* Sends mediaEvent {"data": D} with D given as raw JSON text. */
PX_FN int px_media_raw(ts_client *c, const char *jr, const char *topic, const char *d) {
    return px_sendf(c, "[\"%s\",\"m%d\",\"%s\",\"mediaEvent\",{\"data\":%s}]", jr, ++px_ref_counter, topic, d);
}

/* Reads the next frame, which must be a relay push [jr, null, topic, "mediaEvent", {"data": D}]
   with D a JSON string; E (D's content) goes to out. 1 when it was one. */
PX_FN int px_event(ts_client *c, const char *topic, char *out, size_t capacity) {
    char got[PX_TEXT];
    int op, ok = 0;
    long n = px_recv(c, got, sizeof got, &op);
    vrs__message *m = (vrs__message *)calloc(1, sizeof *m);
    vrs__json_slice data;
    if (m && n >= 0 && op == 1 && (size_t)n < sizeof got && vrs__decode_v2(got, (size_t)n, m) &&
        vrs__json_is_null(m->ref) && strcmp(m->topic, topic) == 0 && strcmp(m->event, "mediaEvent") == 0 &&
        vrs__json_object_get(m->payload, "data", &data) && vrs__json_kind_of(data) == VRS__JSON_STRING) {
        long k = vrs__json_string_decode(data, out, capacity);
        ok = k >= 0 && (size_t)k < capacity && vrs__json_validate(out, (size_t)k, VRS__MAX_JSON_DEPTH);
    }
    if (!ok) fprintf(stderr, "    px_event: not a relay mediaEvent push on %s: (%ld, opcode %d) %s\n", topic, n, op, got);
    free(m);
    return ok;
}

#define PX_EXPECT_EVENT(c, topic, expected)                                                    \
    do {                                                                                       \
        char px_e_[PX_TEXT];                                                                   \
        if (!px_event((c), (topic), px_e_, sizeof px_e_))                                      \
            VRS_TEST_FAIL("expected the event %s", (expected));                                \
        else                                                                                   \
            PX_CHECK_JSON(px_e_, (expected));                                                  \
    } while (0)

/* The next frame is the relay error event {"type":"error","data":{"message":"<text>"}}. */
PX_FN int px_error_event(ts_client *c, const char *topic) {
    char e[PX_TEXT], type[32], message[256], data[PX_TEXT];
    vrs__json_cursor cursor;
    vrs__json_slice key, value;
    int members = 0;
    if (!px_event(c, topic, e, sizeof e)) return 0;
    if (!px_field_string(e, "type", type, sizeof type) || strcmp(type, "error") != 0 ||
        !px_field_string(e, "data.message", message, sizeof message) || !px_field(e, "data", data, sizeof data)) {
        fprintf(stderr, "    px_error_event: not an error event: %s\n", e);
        return 0;
    }
    vrs__json_enter(vrs__slice(data, strlen(data)), &cursor);
    while (vrs__json_next_member(&cursor, &key, &value)) members++;
    if (members != 1) fprintf(stderr, "    px_error_event: data has %d members: %s\n", members, e);
    return members == 1;
}

/* Relay join with metadata M (raw JSON, or NULL to leave it out); reads peerAccepted, checks
   its shape and writes the peer id (37 bytes) and, when asked, the whole event. */
PX_FN int px_relay_join(ts_client *c, const char *jr, const char *topic, const char *metadata, char *id,
                        char *accepted, size_t capacity) {
    char e[PX_TEXT], event[PX_TEXT], type[32];
    if (metadata) snprintf(e, sizeof e, "{\"type\":\"join\",\"data\":{\"metadata\":%s}}", metadata);
    else snprintf(e, sizeof e, "{\"type\":\"join\",\"data\":{}}");
    if (px_media(c, jr, topic, e) != 0 || !px_event(c, topic, event, sizeof event)) return 0;
    if (!px_field_string(event, "type", type, sizeof type) || strcmp(type, "peerAccepted") != 0 ||
        !px_field_string(event, "data.id", id, 37) || strlen(id) != 36) {
        fprintf(stderr, "    px_relay_join: not a peerAccepted: %s\n", event);
        return 0;
    }
    if (accepted) snprintf(accepted, capacity, "%s", event);
    return 1;
}

PX_FN int px_is_uuid_v4(const char *id) {
    int i;
    if (strlen(id) != 36) return 0;
    for (i = 0; i < 36; i++) {
        char ch = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-') return 0;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return 0;
        }
    }
    return id[14] == '4' && (id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b');
}

/* ---------------------------------------------------------------------------------------------
   A host room logic that records every callback
   ------------------------------------------------------------------------------------------- */

typedef struct px_call {
    char kind;            /* C created, J joined, M media event, L left, D destroyed */
    uint64_t room, peer;  /* handle ids */
    void *room_user_data, *peer_user_data; /* as the callback found them */
    int peer_count;       /* vrs_room_peer_count during the call */
    int consistent;       /* vrs_peer_room(peer) was the room */
    char data[256];
} px_call;

typedef struct px_rec {
    px_call calls[64];
    int count;
    int tag;              /* created/joined set room/peer user data */
    int greet;            /* joined: vrs_peer_send "hello" */
    int echo;             /* media event: vrs_peer_send D back */
    int close_on_media;   /* media event: vrs_room_close the room */
    int close_on_left;    /* every on_peer_left: vrs_room_close the room */
    int close_results[8]; /* what those vrs_room_close calls returned, in order */
    int close_count;
    vrs_server *server;
} px_rec;

static px_rec px_recorder;
static int px_room_tag, px_peer_tags[64];
static int px_foreign_user_data; /* room-logic callbacks that got another pointer than room_logic.user_data */

static void px_check_user_data(void *user_data) {
    if (user_data != &px_recorder) px_foreign_user_data++;
}

static px_call *px_record(char kind, vrs_server *server, vrs_room room, vrs_peer peer) {
    px_call *call = &px_recorder.calls[px_recorder.count < 64 ? px_recorder.count : 63];
    if (px_recorder.count < 64) px_recorder.count++;
    memset(call, 0, sizeof *call);
    call->kind = kind;
    call->room = room.id;
    call->peer = peer.id;
    call->room_user_data = vrs_room_user_data(server, room);
    call->peer_user_data = peer.id ? vrs_peer_user_data(server, peer) : NULL;
    call->peer_count = vrs_room_peer_count(server, room);
    call->consistent = peer.id ? vrs_peer_room(server, peer).id == room.id : 1;
    return call;
}

static void px_on_room_created(vrs_server *server, vrs_room room, void *user_data) {
    vrs_peer none;
    none.id = 0;
    px_check_user_data(user_data);
    px_record('C', server, room, none);
    if (px_recorder.tag) vrs_room_set_user_data(server, room, &px_room_tag);
}

static void px_on_room_destroyed(vrs_server *server, vrs_room room, void *user_data) {
    vrs_peer none;
    none.id = 0;
    px_check_user_data(user_data);
    px_record('D', server, room, none);
}

static void px_on_peer_joined(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data) {
    px_call *call = px_record('J', server, room, peer);
    px_check_user_data(user_data);
    if (px_recorder.tag) vrs_peer_set_user_data(server, peer, &px_peer_tags[call - px_recorder.calls]);
    if (px_recorder.greet) vrs_peer_send(server, peer, "\"hello\"", 7);
}

static void px_on_peer_left(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data) {
    px_check_user_data(user_data);
    px_record('L', server, room, peer);
    if (px_recorder.close_on_left) {
        vrs_result result = vrs_room_close(server, room);
        if (px_recorder.close_count < 8) px_recorder.close_results[px_recorder.close_count] = (int)result;
        px_recorder.close_count++;
    }
}

static void px_on_media_event(vrs_server *server, vrs_room room, vrs_peer peer, const char *data,
                              size_t length, void *user_data) {
    px_call *call = px_record('M', server, room, peer);
    px_check_user_data(user_data);
    snprintf(call->data, sizeof call->data, "%.*s", (int)length, data);
    if (px_recorder.echo) vrs_peer_send(server, peer, data, length);
    if (px_recorder.close_on_media) {
        vrs_result result = vrs_room_close(server, room);
        if (px_recorder.close_count < 8) px_recorder.close_results[px_recorder.close_count] = (int)result;
        px_recorder.close_count++;
    }
}

/* A server (not started) with the recording room logic. */
PX_FN ts_server *px_logic_server_new(void) {
    ts_server *ts = px_server_new();
    memset(&px_recorder, 0, sizeof px_recorder);
    px_foreign_user_data = 0;
    if (!ts) return NULL;
    ts->desc.room_logic.on_room_created = px_on_room_created;
    ts->desc.room_logic.on_room_destroyed = px_on_room_destroyed;
    ts->desc.room_logic.on_peer_joined = px_on_peer_joined;
    ts->desc.room_logic.on_peer_left = px_on_peer_left;
    ts->desc.room_logic.on_media_event = px_on_media_event;
    ts->desc.room_logic.user_data = &px_recorder;
    return ts;
}

/* "CJMLD"-style summary of the recorded calls. */
PX_FN const char *px_kinds(void) {
    static char kinds[65];
    int i;
    for (i = 0; i < px_recorder.count; i++) kinds[i] = px_recorder.calls[i].kind;
    kinds[i] = '\0';
    return kinds;
}

/* ---------------------------------------------------------------------------------------------
   Codecs
   ------------------------------------------------------------------------------------------- */

TEST(phoenix, decode_v2_accepts_arrays) {
    static vrs__message m;
    const char *t = "[\"1\",\"2\",\"room:a\",\"phx_join\",{\"x\":1},\"ignored\",7]";
    const char *u = " [ null , 7 , \"room:\\u0061\\\"b\" , \"ev\" , null ] ";
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v2(t, strlen(t), &m));
    CHECK(px_slice_is(m.join_ref, "\"1\""));
    CHECK(px_slice_is(m.ref, "\"2\""));
    CHECK(px_slice_is(m.topic_json, "\"room:a\""));
    CHECK_EQ_STR(m.topic, "room:a");
    CHECK_EQ_INT(m.topic_length, 6);
    CHECK_EQ_STR(m.event, "phx_join");
    CHECK(px_slice_is(m.payload, "{\"x\":1}"));
    CHECK_EQ_INT(m.payload_is_binary, 0);
    /* null and number refs, an escaped topic (decoded, and echoed as sent), any payload */
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v2(u, strlen(u), &m));
    CHECK(px_slice_is(m.join_ref, "null"));
    CHECK(px_slice_is(m.ref, "7"));
    CHECK(px_slice_is(m.topic_json, "\"room:\\u0061\\\"b\""));
    CHECK_EQ_STR(m.topic, "room:a\"b");
    CHECK_EQ_INT(m.topic_length, 8);
    CHECK_EQ_STR(m.event, "ev");
    CHECK(px_slice_is(m.payload, "null"));
}

TEST(phoenix, decode_v2_rejects_bad_shapes) {
    static const char *const bad[] = {
        "",                                            /* nothing */
        "[",                                           /* bad JSON */
        "[\"1\",\"2\",\"t\",\"e\",{}",                 /* unterminated */
        "[\"1\",\"2\",\"t\",\"e\",{}] x",              /* trailing garbage */
        "5",                                           /* a number */
        "\"s\"",                                       /* a string */
        "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":null}", /* the V1 shape */
        "[]",
        "[\"1\",\"2\",\"room:a\",\"phx_join\"]",       /* four elements */
        "[\"1\",\"2\",5,\"e\",{}]",                    /* non-string topic */
        "[\"1\",\"2\",null,\"e\",{}]",
        "[\"1\",\"2\",\"t\",7,{}]",                    /* non-string event */
        "[{},\"2\",\"t\",\"e\",{}]",                   /* object join_ref */
        "[\"1\",{\"r\":1},\"t\",\"e\",{}]",            /* object ref */
        "[\"1\",[],\"t\",\"e\",{}]",                   /* array ref */
        "[true,\"2\",\"t\",\"e\",{}]",                 /* boolean join_ref */
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static vrs__message m;
        memset(&m, 0, sizeof m);
        if (vrs__decode_v2(bad[i], strlen(bad[i]), &m)) VRS_TEST_FAIL("decoded: %s", bad[i]);
    }
}

TEST(phoenix, decode_v1_objects) {
    static vrs__message m;
    const char *t = "{\"topic\":\"room:a\",\"event\":\"phx_join\",\"payload\":{\"k\":[1]},\"ref\":\"2\",\"join_ref\":\"1\"}";
    const char *u = "{\"ref\":null,\"payload\":[],\"event\":\"heartbeat\",\"topic\":\"phoenix\",\"extra\":1}";
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v1(t, strlen(t), &m));
    CHECK(px_slice_is(m.join_ref, "\"1\""));
    CHECK(px_slice_is(m.ref, "\"2\""));
    CHECK(px_slice_is(m.topic_json, "\"room:a\""));
    CHECK_EQ_STR(m.topic, "room:a");
    CHECK_EQ_STR(m.event, "phx_join");
    CHECK(px_slice_is(m.payload, "{\"k\":[1]}"));
    /* any key order; join_ref optional (null) */
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v1(u, strlen(u), &m));
    CHECK(px_slice_is(m.join_ref, "null"));
    CHECK(px_slice_is(m.ref, "null"));
    CHECK_EQ_STR(m.topic, "phoenix");
    CHECK_EQ_STR(m.event, "heartbeat");
    CHECK(px_slice_is(m.payload, "[]"));
}

TEST(phoenix, decode_v1_rejects_bad_shapes) {
    static const char *const bad[] = {
        "{",
        "[null,\"1\",\"phoenix\",\"heartbeat\",{}]",   /* the V2 shape */
        "7",
        "{\"event\":\"e\",\"payload\":{},\"ref\":\"1\"}",                 /* no topic */
        "{\"topic\":\"t\",\"payload\":{},\"ref\":\"1\"}",                 /* no event */
        "{\"topic\":\"t\",\"event\":\"e\",\"ref\":\"1\"}",                /* no payload */
        "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{}}",               /* no ref */
        "{\"topic\":5,\"event\":\"e\",\"payload\":{},\"ref\":\"1\"}",     /* non-string topic */
        "{\"topic\":\"t\",\"event\":null,\"payload\":{},\"ref\":\"1\"}",  /* non-string event */
        "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":{}}",    /* object ref */
        "{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"1\",\"join_ref\":[1]}",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static vrs__message m;
        memset(&m, 0, sizeof m);
        if (vrs__decode_v1(bad[i], strlen(bad[i]), &m)) VRS_TEST_FAIL("decoded: %s", bad[i]);
    }
}

TEST(phoenix, decode_v2_binary) {
    static vrs__message m;
    static const uint8_t frame[] = {0, 1, 2, 7, 9, '1', '2', '3', 'r', 'o', 'o', 'm', ':', '"', 'x',
                                    'h', 'e', 'a', 'r', 't', 'b', 'e', 'a', 't', 0xDE, 0x00, 0xFF};
    static const uint8_t empty[] = {0, 0, 0, 6, 4, 'r', 'o', 'o', 'm', ':', 'a', 'p', 'i', 'n', 'g'};
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v2_binary(frame, sizeof frame, &m));
    CHECK(px_slice_is(m.join_ref, "\"1\""));
    CHECK(px_slice_is(m.ref, "\"23\""));
    CHECK(px_slice_is(m.topic_json, "\"room:\\\"x\"")); /* the names become JSON strings */
    CHECK_EQ_STR(m.topic, "room:\"x");
    CHECK_EQ_INT(m.topic_length, 7);
    CHECK_EQ_STR(m.event, "heartbeat");
    CHECK_EQ_INT(m.payload_is_binary, 1);
    REQUIRE_EQ_INT(m.payload.length, 3);
    CHECK_EQ_MEM(m.payload.start, "\xDE\x00\xFF", 3);
    /* empty join_ref and ref, no payload */
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v2_binary(empty, sizeof empty, &m));
    CHECK(px_slice_is(m.join_ref, "\"\""));
    CHECK(px_slice_is(m.ref, "\"\""));
    CHECK_EQ_STR(m.topic, "room:a");
    CHECK_EQ_STR(m.event, "ping");
    CHECK_EQ_INT(m.payload.length, 0);
}

TEST(phoenix, decode_v2_binary_rejects) {
    static vrs__message m;
    uint8_t frame[32];
    static const uint8_t good[] = {0, 1, 1, 6, 2, '1', '2', 'r', 'o', 'o', 'm', ':', 'a', 'e', 'v', 'P'};
    memcpy(frame, good, sizeof good);
    memset(&m, 0, sizeof m);
    REQUIRE(vrs__decode_v2_binary(frame, sizeof good, &m));
    /* kinds other than 0: the server's own reply and broadcast kinds, and anything else */
    frame[0] = 1;
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[0] = 2;
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[0] = 0x80;
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[0] = 0;
    /* shorter than its header: fewer than 5 bytes, or fewer than the sizes announce */
    CHECK(!vrs__decode_v2_binary(frame, 0, &m));
    CHECK(!vrs__decode_v2_binary(frame, 4, &m));
    CHECK(!vrs__decode_v2_binary(frame, 5, &m));
    CHECK(!vrs__decode_v2_binary(frame, sizeof good - 2, &m)); /* the event cut short */
    CHECK(vrs__decode_v2_binary(frame, sizeof good - 1, &m));  /* no payload: fine */
    frame[3] = 200;                                             /* topic longer than the frame */
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[3] = 6;
    /* invalid UTF-8 in each name */
    frame[5] = 0xFF; /* join_ref */
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[5] = '1';
    frame[6] = 0xC0; /* ref: a lone lead byte */
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[6] = '2';
    frame[11] = 0x80; /* topic: a stray continuation byte */
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[11] = ':';
    frame[14] = 0xED; /* event: cut sequence */
    CHECK(!vrs__decode_v2_binary(frame, sizeof good, &m));
    frame[14] = 'v';
    /* the payload is raw bytes: anything goes */
    frame[15] = 0xFF;
    CHECK(vrs__decode_v2_binary(frame, sizeof good, &m));
}

TEST(phoenix, write_envelope_v2_and_v1) {
    char buffer[256];
    vrs__json_writer w;
    vrs__jw_init(&w, buffer, sizeof buffer);
    px_write_envelope(&w, 2, "\"1\"", 3, "null", 4, "\"room:a\"", 8, "mediaEvent", "{\"data\":1}", 10);
    REQUIRE(!w.overflowed);
    buffer[w.length] = '\0';
    CHECK_EQ_STR(buffer, "[\"1\",null,\"room:a\",\"mediaEvent\",{\"data\":1}]");
    /* V1: topic, event, payload, ref; never a join_ref */
    vrs__jw_init(&w, buffer, sizeof buffer);
    px_write_envelope(&w, 1, "\"1\"", 3, "\"7\"", 3, "\"room:a\"", 8, "phx_reply", PX_OK, strlen(PX_OK));
    REQUIRE(!w.overflowed);
    buffer[w.length] = '\0';
    CHECK_EQ_STR(buffer, "{\"topic\":\"room:a\",\"event\":\"phx_reply\",\"payload\":{\"status\":\"ok\",\"response\":{}},"
                         "\"ref\":\"7\"}");
    CHECK(strstr(buffer, "join_ref") == NULL);
    /* the event is written as a JSON string */
    vrs__jw_init(&w, buffer, sizeof buffer);
    px_write_envelope(&w, 2, "null", 4, "null", 4, "\"t\"", 3, "a\"b", "{}", 2);
    buffer[w.length] = '\0';
    CHECK_EQ_STR(buffer, "[null,null,\"t\",\"a\\\"b\",{}]");
    /* too small a buffer overflows instead of writing half a message */
    vrs__jw_init(&w, buffer, 20);
    px_write_envelope(&w, 2, "\"1\"", 3, "null", 4, "\"room:a\"", 8, "mediaEvent", "{\"data\":1}", 10);
    CHECK(w.overflowed);
}

TEST(phoenix, push_binary_kind0_layout) {
    static const uint8_t expected[] = {0, 2, 8, 4, '1', '2', 'r', 'o', 'o', 'm', ':', 'b', 'i', 'n',
                                       'b', 'l', 'o', 'b', 0x00, 0xFF, 0x10};
    ts_server *ts = px_server();
    ts_client *a, *b;
    ts_frame f;
    vrs_peer pa, pb;
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_ws(ts, PX_V1, NULL);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:bin", "12"));
    REQUIRE(px_sendf(b, "{\"topic\":\"room:bin\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"1\",\"join_ref\":\"1\"}") == 0);
    PX_EXPECT(b, "{\"topic\":\"room:bin\",\"event\":\"phx_reply\",\"payload\":" PX_OK ",\"ref\":\"1\"}");
    pa = px_peer_at(ts, "bin", 0);
    pb = px_peer_at(ts, "bin", 1);
    REQUIRE(pa.id && pb.id);
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, pa, "blob", "\x00\xFF\x10", 3), VRS_OK);
    REQUIRE_EQ_INT(ts_read_frame(a, &f, PX_WAIT_MS), 1);
    CHECK_EQ_INT(f.opcode, 2);
    REQUIRE_EQ_INT(f.length, sizeof expected);
    CHECK_EQ_MEM(f.payload, expected, sizeof expected);
    /* V1 has no binary frames; an event must be named */
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, pb, "blob", "x", 1), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, pa, "", "x", 1), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, pa, NULL, "x", 1), VRS_ERROR_INVALID_ARGUMENT);
    CHECK(px_quiet(a));
    CHECK(px_quiet1(b));
    CHECK(px_finish(ts, a, b, NULL));
}

/* The binary header carries the join_ref string itself, not its JSON text: a join_ref sent as
   "a\"\u0031" is the three bytes a"1. A channel joined with a null join_ref uses its join's ref;
   one joined through a binary frame keeps its join_ref's bytes. */
TEST(phoenix, push_binary_join_ref_bytes) {
    static const uint8_t binary_join[] = {0, 2, 2, 6, 8, 'x', '"', 'r', '1', 'r', 'o', 'o', 'm', ':', 'c',
                                          'p', 'h', 'x', '_', 'j', 'o', 'i', 'n'};
    ts_server *ts = px_server();
    ts_client *a;
    ts_frame f;
    REQUIRE(ts);
    a = px_v2(ts);
    REQUIRE(a);
    REQUIRE(px_sendf(a, "[\"a\\\"\\u0031\",\"1\",\"room:a\",\"phx_join\",{}]") == 0);
    PX_EXPECT(a, "[\"a\\\"1\",\"1\",\"room:a\",\"phx_reply\"," PX_OK "]");
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, px_peer_at(ts, "a", 0), "e", "Z", 1), VRS_OK);
    REQUIRE_EQ_INT(ts_read_frame(a, &f, PX_WAIT_MS), 1);
    CHECK_EQ_INT(f.opcode, 2);
    REQUIRE_EQ_INT(f.length, 4 + 3 + 6 + 1 + 1);
    CHECK_EQ_MEM(f.payload, "\x00\x03\x06\x01" "a\"1" "room:a" "e" "Z", f.length);
    /* null join_ref: the join's ref */
    REQUIRE(px_sendf(a, "[null,\"77\",\"room:b\",\"phx_join\",{}]") == 0);
    PX_EXPECT(a, "[null,\"77\",\"room:b\",\"phx_reply\"," PX_OK "]");
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, px_peer_at(ts, "b", 0), "e", NULL, 0), VRS_OK);
    REQUIRE_EQ_INT(ts_read_frame(a, &f, PX_WAIT_MS), 1);
    REQUIRE_EQ_INT(f.length, 4 + 2 + 6 + 1);
    CHECK_EQ_MEM(f.payload, "\x00\x02\x06\x01" "77" "room:b" "e", f.length);
    /* joined by a binary frame with a quote in its join_ref */
    REQUIRE(ts_send_frame(a, 2, 1, binary_join, sizeof binary_join) == 0);
    PX_EXPECT(a, "[\"x\\\"\",\"r1\",\"room:c\",\"phx_reply\"," PX_OK "]");
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, px_peer_at(ts, "c", 0), "e", "", 0), VRS_OK);
    REQUIRE_EQ_INT(ts_read_frame(a, &f, PX_WAIT_MS), 1);
    REQUIRE_EQ_INT(f.length, 4 + 2 + 6 + 1);
    CHECK_EQ_MEM(f.payload, "\x00\x02\x06\x01" "x\"" "room:c" "e", f.length);
    CHECK(px_finish(ts, a, NULL));
}

/* ---------------------------------------------------------------------------------------------
   Handshake (PROTOCOL.md section 1)
   ------------------------------------------------------------------------------------------- */

/* A connect hook that records what it saw and refuses when told to. */
typedef struct px_hook_state {
    int calls, refuse;
    int token_param_length;
    char token_param[64];
    int auth_null;
    long auth_length;
    char auth[128];
    char origin[128];
} px_hook_state;
static px_hook_state px_hook;

static int px_on_connect(vrs_server *server, vrs_conn conn, const vrs_connect_info *info, void *user_data) {
    (void)server;
    (void)conn;
    (void)user_data;
    px_hook.calls++;
    px_hook.token_param_length = vrs_request_query(info->request, "token", px_hook.token_param, sizeof px_hook.token_param);
    px_hook.auth_null = info->auth_token == NULL;
    px_hook.auth_length = (long)info->auth_token_length;
    px_hook.auth[0] = '\0';
    if (info->auth_token && info->auth_token_length < sizeof px_hook.auth) {
        memcpy(px_hook.auth, info->auth_token, info->auth_token_length);
        px_hook.auth[info->auth_token_length] = '\0';
    }
    px_hook.origin[0] = '\0';
    if (info->origin.length && info->origin.length < sizeof px_hook.origin) {
        memcpy(px_hook.origin, info->origin.ptr, info->origin.length);
        px_hook.origin[info->origin.length] = '\0';
    }
    return px_hook.refuse;
}

TEST(phoenix, handshake_vsn_selects_serializer) {
    ts_server *ts = px_server();
    ts_client *c;
    REQUIRE(ts);
    /* absent: V1 */
    c = px_ws(ts, "/socket/websocket", NULL);
    REQUIRE(c);
    CHECK(px_quiet1(c));
    ts_client_free(c);
    c = px_ws(ts, "/socket/websocket?token=abc", NULL);
    REQUIRE(c);
    CHECK(px_quiet1(c));
    ts_client_free(c);
    /* 1.0.0: V1, and a V2 array on it is undecodable */
    c = px_ws(ts, PX_V1, NULL);
    REQUIRE(c);
    CHECK(px_quiet1(c));
    {
        ts_frame f;
        REQUIRE(px_sendf(c, "[null,\"1\",\"phoenix\",\"heartbeat\",{}]") == 0);
        CHECK_EQ_INT(ts_read_close(c, &f, PX_WAIT_MS), 1007);
    }
    ts_client_free(c);
    /* 2.0.0: V2, and a V1 object on it is undecodable; after 101 the server says nothing
       until the client speaks */
    c = px_ws(ts, "/socket/websocket?token=x&vsn=2.0.0", NULL);
    REQUIRE(c);
    CHECK(ts_client_quiet(c, 30));
    CHECK_EQ_INT(ts_client_available(c), 0);
    CHECK(px_quiet(c));
    {
        ts_frame f;
        REQUIRE(px_sendf(c, "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"1\"}") == 0);
        CHECK_EQ_INT(ts_read_close(c, &f, PX_WAIT_MS), 1007);
    }
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, handshake_vsn_refused) {
    static const char *const targets[] = {"/socket/websocket?vsn=2.1.0", "/socket/websocket?vsn=abc",
                                          "/socket/websocket?vsn=", "/socket/websocket?vsn=3.0.0",
                                          "/socket/websocket?vsn=2.0"};
    ts_server *ts = px_server_new();
    size_t i;
    REQUIRE(ts);
    memset(&px_hook, 0, sizeof px_hook);
    ts->desc.on_connect = px_on_connect;
    REQUIRE(px_start(ts));
    for (i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int status = px_try_target(ts, targets[i], NULL);
        if (status != 403) VRS_TEST_FAIL("%s: %d, expected 403", targets[i], status);
    }
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK_EQ_INT(px_hook.calls, 0); /* the version is checked before the connect hook */
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_VSN_REFUSED], (int)(sizeof targets / sizeof targets[0]));
    CHECK(px_finish(ts, NULL));
}

TEST(phoenix, handshake_origin_check) {
    static const char *const origins[] = {"https://good.example", "http://localhost:4000"};
    ts_server *ts = px_server_new();
    ts_client *c;
    REQUIRE(ts);
    memset(&px_hook, 0, sizeof px_hook);
    ts->desc.allowed_origins = origins;
    ts->desc.allowed_origin_count = 2;
    ts->desc.on_connect = px_on_connect;
    REQUIRE(px_start(ts));
    c = px_ws(ts, PX_V2, "Origin: https://good.example\r\n");
    CHECK(c != NULL);
    CHECK_EQ_INT(px_hook.calls, 1);
    CHECK_EQ_STR(px_hook.origin, "https://good.example");
    ts_client_free(c);
    c = px_ws(ts, PX_V2, "Origin: http://localhost:4000\r\n");
    CHECK(c != NULL);
    ts_client_free(c);
    CHECK_EQ_INT(px_hook.calls, 2);
    /* another origin: 403, and the connect hook never hears of it */
    CHECK_EQ_INT(px_try_target(ts, PX_V2, "Origin: https://evil.example\r\n"), 403);
    CHECK_EQ_INT(px_try_target(ts, PX_V2, "Origin: https://good.example.evil\r\n"), 403);
    CHECK_EQ_INT(px_hook.calls, 2);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_ORIGIN_REFUSED], 2);
    /* no Origin (not a browser): passes */
    c = px_ws(ts, PX_V2, NULL);
    REQUIRE(c);
    CHECK_EQ_INT(px_hook.calls, 3);
    CHECK_EQ_STR(px_hook.origin, "");
    CHECK(px_quiet(c));
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, handshake_connect_hook) {
    ts_server *ts = px_server_new();
    ts_client *c;
    ts_request q;
    ts_response r;
    char value[128];
    REQUIRE(ts);
    memset(&px_hook, 0, sizeof px_hook);
    ts->desc.on_connect = px_on_connect;
    REQUIRE(px_start(ts));
    /* refused: 403, no WebSocket */
    px_hook.refuse = 1;
    CHECK_EQ_INT(px_try_target(ts, PX_V2, NULL), 403);
    CHECK_EQ_INT(px_hook.calls, 1);
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CONNECT_REFUSED], 1);
    /* accepted: the hook reads the query and the decoded Phoenix 1.8 auth token
       ("user:42?>~" in base64url without padding), and the 101 names "phoenix" */
    px_hook.refuse = 0;
    c = ts_client_connect(ts);
    REQUIRE(c);
    memset(&q, 0, sizeof q);
    q.target = "/socket/websocket?token=a%20b%2Bc&vsn=2.0.0";
    q.extra = "Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.dXNlcjo0Mj8-fg\r\n";
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK_EQ_INT(px_hook.calls, 2);
    CHECK_EQ_INT(px_hook.token_param_length, 5);
    CHECK_EQ_STR(px_hook.token_param, "a b+c");
    CHECK_EQ_INT(px_hook.auth_null, 0);
    CHECK_EQ_INT(px_hook.auth_length, 10);
    CHECK_EQ_STR(px_hook.auth, "user:42?>~");
    CHECK(ts_response_header(&r, "Sec-WebSocket-Protocol", value, sizeof value));
    CHECK_EQ_STR(value, "phoenix");
    CHECK(px_quiet(c));
    ts_client_free(c);
    /* no token: NULL; no subprotocol offered: none answered; no token parameter: -1 */
    c = ts_client_connect(ts);
    REQUIRE(c);
    q.target = PX_V2;
    q.extra = NULL;
    CHECK_EQ_INT(ts_handshake(c, &q, &r), 101);
    CHECK_EQ_INT(px_hook.calls, 3);
    CHECK_EQ_INT(px_hook.auth_null, 1);
    CHECK_EQ_INT(px_hook.auth_length, 0);
    CHECK_EQ_INT(px_hook.token_param_length, -1);
    CHECK(!ts_response_header(&r, "Sec-WebSocket-Protocol", value, sizeof value));
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, handshake_http_errors) {
    ts_server *ts = px_server_new();
    ts_request q;
    ts_response r;
    char value[64];
    REQUIRE(ts);
    memset(&px_hook, 0, sizeof px_hook);
    ts->desc.on_connect = px_on_connect;
    REQUIRE(px_start(ts));
    /* not GET: 400 before anything else */
    memset(&q, 0, sizeof q);
    q.method = "POST";
    q.target = PX_V2;
    CHECK_EQ_INT(px_try(ts, &q, &r), 400);
    CHECK_EQ_INT(px_hook.calls, 0);
    /* not a valid upgrade: 400 */
    memset(&q, 0, sizeof q);
    q.target = PX_V2;
    q.key = TS_OMIT;
    CHECK_EQ_INT(px_try(ts, &q, &r), 400);
    q.key = "short";
    CHECK_EQ_INT(px_try(ts, &q, &r), 400);
    q.key = NULL;
    q.upgrade = "h2c";
    CHECK_EQ_INT(px_try(ts, &q, &r), 400);
    q.upgrade = TS_OMIT;
    q.connection = TS_OMIT;
    CHECK_EQ_INT(px_try(ts, &q, &r), 400); /* a plain GET of the socket path */
    /* version 8: 426 with the version we speak */
    memset(&q, 0, sizeof q);
    q.target = PX_V2;
    q.ws_version = "8";
    CHECK_EQ_INT(px_try(ts, &q, &r), 426);
    CHECK(ts_response_header(&r, "Sec-WebSocket-Version", value, sizeof value));
    CHECK_EQ_STR(value, "13");
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK(px_finish(ts, NULL));
}

TEST(phoenix, handshake_other_paths_404) {
    static const char *const targets[] = {"/", "/other?vsn=2.0.0", "/socket", "/socket/", "/socket/websocketx",
                                          "/socket/websocket/x", "/socket/longpoll", "/socket/longpoll?vsn=2.0.0",
                                          "/SOCKET/websocket"};
    ts_server *ts = px_server_new();
    ts_request q;
    ts_response r;
    size_t i;
    REQUIRE(ts);
    memset(&px_hook, 0, sizeof px_hook);
    ts->desc.on_connect = px_on_connect;
    REQUIRE(px_start(ts));
    for (i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int status, plain;
        for (plain = 0; plain < 2; plain++) {
            if (plain) q = ts_plain_request("GET", targets[i]);
            else {
                memset(&q, 0, sizeof q);
                q.target = targets[i];
            }
            status = px_try(ts, &q, &r);
            if (status != 404) VRS_TEST_FAIL("%s %s: %d, expected 404", plain ? "GET" : "upgrade", targets[i], status);
        }
    }
    CHECK_EQ_INT(px_hook.calls, 0);
    CHECK_EQ_INT(ts->open_count, 0);
    CHECK(px_finish(ts, NULL));
}

/* ---------------------------------------------------------------------------------------------
   Messages (PROTOCOL.md sections 2-7)
   ------------------------------------------------------------------------------------------- */

TEST(phoenix, heartbeat_reply) {
    ts_server *ts = px_server();
    ts_client *c;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_sendf(c, "[null,\"5\",\"phoenix\",\"heartbeat\",{}]") == 0);
    PX_EXPECT_EXACT(c, "[null,\"5\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    /* the reply's join_ref is null whatever was sent, and the payload does not matter */
    REQUIRE(px_sendf(c, "[\"9\",6,\"phoenix\",\"heartbeat\",{\"x\":[1]}]") == 0);
    PX_EXPECT_EXACT(c, "[null,6,\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, join_reply_and_unmatched_topic) {
    ts_server *ts = px_server();
    ts_client *c;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_sendf(c, "[\"3\",\"3\",\"room:a\",\"phx_join\",{}]") == 0);
    PX_EXPECT_EXACT(c, "[\"3\",\"3\",\"room:a\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    CHECK_EQ_INT(ts->server->channel_count, 1);
    CHECK_EQ_INT(ts->server->room_count, 1);
    CHECK(vrs_find_room(ts->server, "a").id != 0);
    /* no route for the topic: join_ref null whatever was sent */
    REQUIRE(px_sendf(c, "[\"4\",\"4\",\"lobby\",\"phx_join\",{}]") == 0);
    PX_EXPECT_EXACT(c, "[null,\"4\",\"lobby\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}]");
    REQUIRE(px_sendf(c, "[\"5\",\"5\",\"phoenix\",\"phx_join\",{}]") == 0);
    PX_EXPECT(c, "[null,\"5\",\"phoenix\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}]");
    REQUIRE(px_sendf(c, "[\"6\",\"6\",\"rooms:a\",\"phx_join\",{}]") == 0);
    PX_EXPECT(c, "[null,\"6\",\"rooms:a\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}]");
    CHECK_EQ_INT(ts->server->channel_count, 1);
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, event_to_unjoined_topic) {
    ts_server *ts = px_server();
    ts_client *c;
    char expected[300];
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:a", "1"));
    REQUIRE(px_sendf(c, "[\"1\",\"2\",\"room:b\",\"mediaEvent\",{\"data\":1}]") == 0);
    px_error_reply(expected, sizeof expected, "null", "2", "room:b", "unmatched topic");
    PX_EXPECT_EXACT(c, expected);
    REQUIRE(px_sendf(c, "[null,\"3\",\"lobby\",\"custom\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "null", "3", "lobby", "unmatched topic");
    PX_EXPECT(c, expected);
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, stale_join_ref_dropped) {
    ts_server *ts = px_logic_server_new();
    ts_client *c;
    char expected[300];
    REQUIRE(ts && px_start(ts));
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:s", "3"));
    /* another join_ref: dropped silently, nothing reaches the room logic */
    REQUIRE(px_sendf(c, "[\"9\",\"4\",\"room:s\",\"mediaEvent\",{\"data\":1}]") == 0);
    REQUIRE(px_sendf(c, "[\"9\",\"5\",\"room:s\",\"bogus\",{}]") == 0);
    REQUIRE(px_sendf(c, "[3,\"6\",\"room:s\",\"mediaEvent\",{\"data\":1}]") == 0); /* 3 is not "3" */
    REQUIRE(px_sendf(c, "[\"9\",\"7\",\"room:s\",\"phx_leave\",{}]") == 0);        /* a stale leave */
    CHECK(px_quiet(c));
    CHECK_EQ_STR(px_kinds(), "CJ");
    CHECK_EQ_INT(ts->server->channel_count, 1);
    /* a null join_ref is accepted; replies carry the channel's join_ref */
    REQUIRE(px_sendf(c, "[null,\"8\",\"room:s\",\"mediaEvent\",{\"data\":2}]") == 0);
    REQUIRE(px_sendf(c, "[null,\"9\",\"room:s\",\"bogus\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"3\"", "9", "room:s", "unhandled event");
    PX_EXPECT_EXACT(c, expected);
    REQUIRE(px_sendf(c, "[\"3\",\"10\",\"room:s\",\"mediaEvent\",{\"data\":3}]") == 0);
    CHECK(px_quiet(c));
    CHECK_EQ_STR(px_kinds(), "CJMM");
    CHECK_EQ_STR(px_recorder.calls[2].data, "2");
    CHECK_EQ_STR(px_recorder.calls[3].data, "3");
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, null_join_ref) {
    ts_server *ts = px_server();
    ts_client *c;
    vrs_peer p;
    char expected[300];
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_sendf(c, "[null,\"7\",\"room:n\",\"phx_join\",{}]") == 0);
    PX_EXPECT_EXACT(c, "[null,\"7\",\"room:n\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    /* pushes carry the join's ref as join_ref */
    p = px_peer_at(ts, "n", 0);
    REQUIRE(p.id);
    CHECK_EQ_INT(vrs_peer_send(ts->server, p, "1", 1), VRS_OK);
    PX_EXPECT_EXACT(c, "[\"7\",null,\"room:n\",\"mediaEvent\",{\"data\":1}]");
    /* so do replies on the channel */
    REQUIRE(px_sendf(c, "[null,\"8\",\"room:n\",\"bogus\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"7\"", "8", "room:n", "unhandled event");
    PX_EXPECT(c, expected);
    /* phx_close carries null */
    REQUIRE(px_sendf(c, "[null,\"9\",\"room:n\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(c, "[\"7\",\"9\",\"room:n\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT_EXACT(c, "[null,null,\"room:n\",\"phx_close\",{}]");
    /* and phx_error too */
    REQUIRE(px_sendf(c, "[null,\"11\",\"room:e\",\"phx_join\",{}]") == 0);
    PX_EXPECT(c, "[null,\"11\",\"room:e\",\"phx_reply\"," PX_OK "]");
    CHECK_EQ_INT(vrs_room_close(ts->server, vrs_find_room(ts->server, "e")), VRS_OK);
    {
        char got[PX_TEXT], field[64];
        int op;
        REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
        CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "null") == 0);
        CHECK(px_field(got, "1", field, sizeof field) && strcmp(field, "null") == 0);
        CHECK(px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_error") == 0);
    }
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, leave_reply_then_close) {
    ts_server *ts = px_server();
    ts_client *c;
    char expected[300];
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:l", "3"));
    REQUIRE(px_sendf(c, "[\"3\",\"5\",\"room:l\",\"phx_leave\",{}]") == 0);
    PX_EXPECT_EXACT(c, "[\"3\",\"5\",\"room:l\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    PX_EXPECT_EXACT(c, "[\"3\",\"3\",\"room:l\",\"phx_close\",{}]");
    CHECK(px_quiet(c));
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(vrs_find_room(ts->server, "l").id, 0);
    /* the topic is unjoined */
    REQUIRE(px_sendf(c, "[\"3\",\"6\",\"room:l\",\"custom\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "null", "6", "room:l", "unmatched topic");
    PX_EXPECT(c, expected);
    /* a leave with a null join_ref on a joined topic: the channel's join_ref in both */
    REQUIRE(px_join(c, "room:l", "7"));
    REQUIRE(px_sendf(c, "[null,\"8\",\"room:l\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(c, "[\"7\",\"8\",\"room:l\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(c, "[\"7\",\"7\",\"room:l\",\"phx_close\",{}]");
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, leave_unjoined_topic) {
    ts_server *ts = px_server();
    ts_client *c;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_sendf(c, "[\"4\",\"2\",\"room:q\",\"phx_leave\",{}]") == 0);
    PX_EXPECT_EXACT(c, "[\"4\",\"2\",\"room:q\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    CHECK(px_quiet(c)); /* no phx_close */
    REQUIRE(px_sendf(c, "[null,\"3\",\"lobby\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(c, "[null,\"3\",\"lobby\",\"phx_reply\"," PX_OK "]");
    CHECK(px_quiet(c));
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, duplicate_join) {
    ts_server *ts = px_server();
    ts_client *a, *b;
    char ida[37], idb[37], ida2[37], accepted[PX_TEXT], expected[600], field[64];
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:d", "1"));
    REQUIRE(px_join(b, "room:d", "1"));
    REQUIRE(px_relay_join(a, "1", "room:d", "null", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:d", "null", idb, NULL, 0));
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":null}}}", idb);
    PX_EXPECT_EVENT(a, "room:d", expected);
    /* a joins again: the new reply first, then phx_close with the OLD join_ref */
    REQUIRE(px_sendf(a, "[\"5\",\"5\",\"room:d\",\"phx_join\",{}]") == 0);
    PX_EXPECT_EXACT(a, "[\"5\",\"5\",\"room:d\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    PX_EXPECT_EXACT(a, "[\"1\",\"1\",\"room:d\",\"phx_close\",{}]");
    CHECK(px_quiet(a));
    /* the old peer left the relay */
    snprintf(expected, sizeof expected, "{\"type\":\"peerLeft\",\"data\":{\"peerId\":\"%s\"}}", ida);
    PX_EXPECT_EVENT(b, "room:d", expected);
    CHECK(px_quiet(b));
    CHECK_EQ_INT(ts->server->channel_count, 2);
    CHECK_EQ_INT(ts->server->room_count, 1);
    /* the old join_ref is stale now */
    REQUIRE(px_sendf(a, "[\"1\",\"6\",\"room:d\",\"bogus\",{}]") == 0);
    CHECK(px_quiet(a));
    /* the new channel is a new peer */
    REQUIRE(px_relay_join(a, "5", "room:d", "null", ida2, accepted, sizeof accepted));
    CHECK(strcmp(ida, ida2) != 0);
    CHECK(px_field_string(accepted, "data.peersInRoom.0.id", field, sizeof field) && strcmp(field, idb) == 0);
    CHECK(!px_field(accepted, "data.peersInRoom.1", field, sizeof field));
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":null}}}", ida2);
    PX_EXPECT_EVENT(b, "room:d", expected);
    /* a duplicate join of a channel alone in its room: the room goes and comes back */
    REQUIRE(px_join(b, "room:solo", "2"));
    REQUIRE(px_sendf(b, "[\"3\",\"3\",\"room:solo\",\"phx_join\",{}]") == 0);
    PX_EXPECT(b, "[\"3\",\"3\",\"room:solo\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(b, "[\"2\",\"2\",\"room:solo\",\"phx_close\",{}]");
    CHECK_EQ_INT(vrs_room_peer_count(ts->server, vrs_find_room(ts->server, "solo")), 1);
    CHECK(px_finish(ts, a, b, NULL));
}

TEST(phoenix, max_channels_per_socket) {
    ts_server *ts = px_server_new();
    ts_client *c;
    char expected[300];
    REQUIRE(ts);
    ts->desc.max_channels_per_socket = 2;
    REQUIRE(px_start(ts));
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:a", "1"));
    REQUIRE(px_join(c, "room:b", "2"));
    REQUIRE(px_sendf(c, "[\"3\",\"3\",\"room:c\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"3\"", "3", "room:c", "too many channels joined");
    PX_EXPECT_EXACT(c, expected);
    CHECK(px_quiet(c));
    CHECK_EQ_INT(ts->server->channel_count, 2);
    CHECK_EQ_INT(vrs_find_room(ts->server, "c").id, 0);
    /* a duplicate join is not a new channel */
    REQUIRE(px_join(c, "room:a", "4"));
    PX_EXPECT(c, "[\"1\",\"1\",\"room:a\",\"phx_close\",{}]");
    /* after a leave there is room again */
    REQUIRE(px_sendf(c, "[\"2\",\"5\",\"room:b\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(c, "[\"2\",\"5\",\"room:b\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(c, "[\"2\",\"2\",\"room:b\",\"phx_close\",{}]");
    CHECK(px_join(c, "room:c", "6"));
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, channel_table_full) {
    ts_server *ts = px_server_new();
    ts_client *a, *b;
    char got[PX_TEXT], status[32];
    int op;
    REQUIRE(ts);
    ts->desc.max_channels = 1;
    REQUIRE(px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:a", "1"));
    REQUIRE(px_sendf(b, "[\"1\",\"1\",\"room:b\",\"phx_join\",{}]") == 0);
    REQUIRE(px_recv(b, got, sizeof got, &op) > 0);
    CHECK(px_field_string(got, "4.status", status, sizeof status) && strcmp(status, "error") == 0);
    CHECK(px_field_string(got, "4.response.reason", status, sizeof status));
    CHECK_EQ_INT(ts->server->room_count, 1);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_CHANNEL_TABLE_FULL], 1);
    CHECK(px_finish(ts, a, b, NULL));
}

TEST(phoenix, unknown_event_and_media_event_without_data) {
    static const char *const bad[] = {
        "[\"1\",\"%d\",\"room:u\",\"dance\",{}]",
        "[\"1\",\"%d\",\"room:u\",\"mediaEvent\",{}]",
        "[\"1\",\"%d\",\"room:u\",\"mediaEvent\",{\"datum\":1}]",
        "[\"1\",\"%d\",\"room:u\",\"mediaEvent\",5]",
        "[\"1\",\"%d\",\"room:u\",\"mediaEvent\",[{\"data\":1}]]",
    };
    ts_server *ts = px_server();
    ts_client *c;
    char id[37];
    size_t i;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:u", "1"));
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char got[PX_TEXT], field[128], message[128];
        int op, ref = 100 + (int)i;
        snprintf(message, sizeof message, bad[i], ref);
        REQUIRE(px_sendf(c, "%s", message) == 0);
        if (px_recv(c, got, sizeof got, &op) < 0) {
            VRS_TEST_FAIL("no reply to %s", message);
            continue;
        }
        snprintf(message, sizeof message, "%d", ref);
        if (!(px_field(got, "0", field, sizeof field) && strcmp(field, "\"1\"") == 0 &&
              px_field_string(got, "1", field, sizeof field) && strcmp(field, message) == 0 &&
              px_field_string(got, "2", field, sizeof field) && strcmp(field, "room:u") == 0 &&
              px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_reply") == 0 &&
              px_field_string(got, "4.status", field, sizeof field) && strcmp(field, "error") == 0 &&
              px_field_string(got, "4.response.reason", field, sizeof field) && field[0]))
            VRS_TEST_FAIL("not an error reply: %s", got);
    }
    /* the channel stays and works */
    CHECK_EQ_INT(ts->server->channel_count, 1);
    CHECK(px_relay_join(c, "1", "room:u", "null", id, NULL, 0));
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, media_event_data_null) {
    ts_server *ts = px_logic_server_new();
    ts_client *c;
    REQUIRE(ts && px_start(ts));
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_join(c, "room:m", "1"));
    REQUIRE(px_sendf(c, "[\"1\",\"2\",\"room:m\",\"mediaEvent\",{\"data\":null}]") == 0);
    REQUIRE(px_sendf(c, "[\"1\",\"3\",\"room:m\",\"mediaEvent\",{\"data\" : {\"a\":[1,2]} , \"other\":1}]") == 0);
    REQUIRE(px_sendf(c, "[\"1\",\"4\",\"room:m\",\"mediaEvent\",{\"data\":\"{\\\"type\\\":\\\"x\\\"}\"}]") == 0);
    CHECK(px_quiet(c)); /* a mediaEvent with data gets no reply */
    REQUIRE_EQ_INT(px_recorder.count, 5);
    CHECK_EQ_STR(px_kinds(), "CJMMM");
    CHECK_EQ_STR(px_recorder.calls[2].data, "null");
    CHECK_EQ_STR(px_recorder.calls[3].data, "{\"a\":[1,2]}");
    CHECK_EQ_STR(px_recorder.calls[4].data, "\"{\\\"type\\\":\\\"x\\\"}\"");
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, undecodable_closes_1007) {
    typedef struct px_bad { const char *target; int opcode; const char *bytes; size_t length; } px_bad;
    static const px_bad cases[] = {
        {PX_V2, 1, "[", 0},
        {PX_V2, 1, "{\"a\":1}", 0},
        {PX_V2, 1, "5", 0},
        {PX_V2, 1, "[\"1\",\"2\",\"room:a\",\"phx_join\"]", 0},
        {PX_V2, 1, "[\"1\",\"2\",5,\"phx_join\",{}]", 0},
        {PX_V2, 2, "\x01\x00\x00\x07\x09", 5},          /* binary kind 1 */
        {PX_V2, 2, "\x00\x01\x01\x07", 4},               /* shorter than the header */
        {PX_V2, 2, "\x00\x01\x01\x07\x09" "12pho", 10},  /* shorter than the header says */
        {PX_V1, 1, "[null,\"1\",\"phoenix\",\"heartbeat\",{}]", 0},
        {PX_V1, 1, "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{}}", 0},
        {PX_V1, 2, "\x00\x00\x01\x07\x09" "1phoenixheartbeat", 22}, /* binary on V1 */
    };
    ts_server *ts = px_server();
    size_t i;
    REQUIRE(ts);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ts_client *c = px_ws(ts, cases[i].target, NULL);
        ts_frame f;
        int code;
        if (!c) {
            VRS_TEST_FAIL("case %d: no socket", (int)i);
            continue;
        }
        ts_send_frame(c, cases[i].opcode, 1, cases[i].bytes,
                      cases[i].length ? cases[i].length : strlen(cases[i].bytes)); /* 0: text, strlen */
        code = ts_read_close(c, &f, PX_WAIT_MS);
        if (code != 1007) VRS_TEST_FAIL("case %d: close %d, expected 1007", (int)i, code);
        if (c->skipped_frames) VRS_TEST_FAIL("case %d: %d frames before the close", (int)i, c->skipped_frames);
        ts_client_free(c);
    }
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_BAD_MESSAGE], (int)(sizeof cases / sizeof cases[0]));
    CHECK(px_finish(ts, NULL));
}

/* Frames after an undecodable one, in the same TCP segment, are not acted on. */
TEST(phoenix, nothing_after_undecodable) {
    static const char join[] = "[\"1\",\"1\",\"room:a\",\"phx_join\",{}]";
    ts_server *ts = px_logic_server_new();
    ts_client *a;
    ts_frame f;
    ts_frame_spec spec;
    unsigned char bytes[256];
    size_t n;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    REQUIRE(a);
    memset(&spec, 0, sizeof spec);
    spec.opcode = 1;
    n = ts_build_frame(a, &spec, "[", 1, bytes, sizeof bytes);
    n += ts_build_frame(a, &spec, join, sizeof join - 1, bytes + n, sizeof bytes - n);
    REQUIRE(ts_send_raw(a, bytes, n) == 0);
    CHECK_EQ_INT(ts_read_close(a, &f, PX_WAIT_MS), 1007);
    CHECK_EQ_INT(a->skipped_frames, 0);
    CHECK_EQ_STR(px_kinds(), "");
    CHECK(px_finish(ts, a, NULL));
}

/* phoenix.js rejoins every errored channel at once: a burst of joins in one segment. */
TEST(phoenix, join_burst) {
    ts_server *ts = px_server();
    ts_client *a;
    char burst[256], expected[200];
    int i;
    REQUIRE(ts);
    a = px_v2(ts);
    REQUIRE(a);
    {
        ts_frame_spec spec;
        unsigned char bytes[2048];
        size_t n = 0;
        memset(&spec, 0, sizeof spec);
        spec.opcode = 1;
        for (i = 0; i < 6; i++) {
            snprintf(burst, sizeof burst, "[\"%d\",\"%d\",\"room:b%d\",\"phx_join\",{}]", 10 + i, 10 + i, i);
            n += ts_build_frame(a, &spec, burst, strlen(burst), bytes + n, sizeof bytes - n);
        }
        REQUIRE(ts_send_raw(a, bytes, n) == 0);
    }
    for (i = 0; i < 6; i++) {
        snprintf(expected, sizeof expected, "[\"%d\",\"%d\",\"room:b%d\",\"phx_reply\",%s]", 10 + i, 10 + i, i, PX_OK);
        PX_EXPECT_EXACT(a, expected);
    }
    CHECK_EQ_INT(ts->server->channel_count, 6);
    CHECK_EQ_INT(ts->server->room_count, 6);
    CHECK(px_finish(ts, a, NULL));
}

TEST(phoenix, v1_serializer) {
    ts_server *ts = px_server();
    ts_client *c, *d;
    char got[PX_TEXT];
    int op;
    vrs_peer p;
    REQUIRE(ts);
    c = px_ws(ts, PX_V1, NULL);
    d = px_ws(ts, PX_V1, NULL);
    REQUIRE(c && d);
    REQUIRE(px_sendf(c, "{\"topic\":\"room:v\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"1\",\"join_ref\":\"1\"}") == 0);
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:v\",\"event\":\"phx_reply\",\"payload\":{\"status\":\"ok\",\"response\":{}},\"ref\":\"1\"}");
    p = px_peer_at(ts, "v", 0);
    REQUIRE(p.id);
    /* a push: ref null, no join_ref */
    CHECK_EQ_INT(vrs_peer_send(ts->server, p, "{\"x\":1}", 7), VRS_OK);
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:v\",\"event\":\"mediaEvent\",\"payload\":{\"data\":{\"x\":1}},\"ref\":null}");
    /* errors */
    REQUIRE(px_sendf(c, "{\"topic\":\"lobby\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"2\",\"join_ref\":\"2\"}") == 0);
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    PX_CHECK_JSON(got, "{\"topic\":\"lobby\",\"event\":\"phx_reply\",\"payload\":{\"status\":\"error\",\"response\":"
                       "{\"reason\":\"unmatched topic\"}},\"ref\":\"2\"}");
    CHECK(strstr(got, "join_ref") == NULL);
    /* relay events over V1 */
    REQUIRE(px_sendf(c, "{\"topic\":\"room:v\",\"event\":\"mediaEvent\",\"payload\":{\"data\":{\"type\":\"join\"}},\"ref\":\"3\"}") == 0);
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK(strstr(got, "join_ref") == NULL);
    CHECK(strstr(got, "peerAccepted") != NULL);
    /* a duplicate join: phx_close carries the old join_ref as ref */
    REQUIRE(px_sendf(c, "{\"topic\":\"room:v\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"4\",\"join_ref\":\"4\"}") == 0);
    PX_EXPECT(c, "{\"topic\":\"room:v\",\"event\":\"phx_reply\",\"payload\":" PX_OK ",\"ref\":\"4\"}");
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:v\",\"event\":\"phx_close\",\"payload\":{},\"ref\":\"1\"}");
    /* leave: the reply, then phx_close with the join_ref as ref */
    REQUIRE(px_sendf(c, "{\"topic\":\"room:v\",\"event\":\"phx_leave\",\"payload\":{},\"ref\":\"5\",\"join_ref\":\"4\"}") == 0);
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:v\",\"event\":\"phx_reply\",\"payload\":{\"status\":\"ok\",\"response\":{}},\"ref\":\"5\"}");
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:v\",\"event\":\"phx_close\",\"payload\":{},\"ref\":\"4\"}");
    CHECK(px_quiet1(c));
    /* a join without join_ref: phx_close and phx_error carry ref null */
    REQUIRE(px_sendf(d, "{\"topic\":\"room:w\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"6\"}") == 0);
    PX_EXPECT(d, "{\"topic\":\"room:w\",\"event\":\"phx_reply\",\"payload\":" PX_OK ",\"ref\":\"6\"}");
    REQUIRE(px_sendf(d, "{\"topic\":\"room:w\",\"event\":\"phx_leave\",\"payload\":{},\"ref\":\"7\"}") == 0);
    PX_EXPECT(d, "{\"topic\":\"room:w\",\"event\":\"phx_reply\",\"payload\":" PX_OK ",\"ref\":\"7\"}");
    REQUIRE(px_recv(d, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:w\",\"event\":\"phx_close\",\"payload\":{},\"ref\":null}");
    REQUIRE(px_sendf(d, "{\"topic\":\"room:w\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"8\"}") == 0);
    PX_EXPECT(d, "{\"topic\":\"room:w\",\"event\":\"phx_reply\",\"payload\":" PX_OK ",\"ref\":\"8\"}");
    CHECK_EQ_INT(vrs_room_close(ts->server, vrs_find_room(ts->server, "w")), VRS_OK);
    REQUIRE(px_recv(d, got, sizeof got, &op) > 0);
    CHECK_EQ_STR(got, "{\"topic\":\"room:w\",\"event\":\"phx_error\",\"payload\":{\"reason\":\"room closed\"},\"ref\":null}");
    CHECK(px_quiet1(d));
    CHECK(px_finish(ts, c, d, NULL));
}

TEST(phoenix, binary_client_push) {
    static const uint8_t heartbeat[] = {0, 0, 1, 7, 9, '5', 'p', 'h', 'o', 'e', 'n', 'i', 'x',
                                        'h', 'e', 'a', 'r', 't', 'b', 'e', 'a', 't'};
    static const uint8_t join[] = {0, 1, 1, 8, 8, '7', '7', 'r', 'o', 'o', 'm', ':', 'b', 'i', 'n',
                                   'p', 'h', 'x', '_', 'j', 'o', 'i', 'n'};
    static const uint8_t media[] = {0, 1, 1, 8, 10, '7', '8', 'r', 'o', 'o', 'm', ':', 'b', 'i', 'n',
                                    'm', 'e', 'd', 'i', 'a', 'E', 'v', 'e', 'n', 't', 0x01, 0x02};
    static const uint8_t leave[] = {0, 1, 1, 8, 9, '7', '9', 'r', 'o', 'o', 'm', ':', 'b', 'i', 'n',
                                    'p', 'h', 'x', '_', 'l', 'e', 'a', 'v', 'e'};
    ts_server *ts = px_server();
    ts_client *c;
    char got[PX_TEXT], field[64];
    int op;
    REQUIRE(ts);
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(ts_send_frame(c, 2, 1, heartbeat, sizeof heartbeat) == 0);
    PX_EXPECT(c, "[null,\"5\",\"phoenix\",\"phx_reply\"," PX_OK "]");
    REQUIRE(ts_send_frame(c, 2, 1, join, sizeof join) == 0);
    PX_EXPECT(c, "[\"7\",\"7\",\"room:bin\",\"phx_reply\"," PX_OK "]");
    /* a binary payload is not {"data": D}: an error reply, the channel stays */
    REQUIRE(ts_send_frame(c, 2, 1, media, sizeof media) == 0);
    REQUIRE(px_recv(c, got, sizeof got, &op) > 0);
    CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "\"7\"") == 0);
    CHECK(px_field_string(got, "4.status", field, sizeof field) && strcmp(field, "error") == 0);
    REQUIRE(ts_send_frame(c, 2, 1, leave, sizeof leave) == 0);
    PX_EXPECT(c, "[\"7\",\"9\",\"room:bin\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(c, "[\"7\",\"7\",\"room:bin\",\"phx_close\",{}]");
    CHECK(px_finish(ts, c, NULL));
}

/* ---------------------------------------------------------------------------------------------
   Rooms
   ------------------------------------------------------------------------------------------- */

TEST(phoenix, room_full) {
    ts_server *ts = px_server_new();
    ts_client *a, *b, *c;
    char expected[300];
    REQUIRE(ts);
    ts->desc.max_peers_per_room = 2;
    REQUIRE(px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:f", "1"));
    REQUIRE(px_join(b, "room:f", "1"));
    CHECK_EQ_INT(ts->server->room_count, 1);
    CHECK_EQ_INT(vrs_room_peer_count(ts->server, vrs_find_room(ts->server, "f")), 2);
    REQUIRE(px_sendf(c, "[\"1\",\"1\",\"room:f\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"1\"", "1", "room:f", "room is full");
    PX_EXPECT_EXACT(c, expected);
    CHECK(px_quiet(c)); /* no phx_close */
    /* the topic stays unjoined */
    REQUIRE(px_sendf(c, "[\"1\",\"2\",\"room:f\",\"custom\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "null", "2", "room:f", "unmatched topic");
    PX_EXPECT(c, expected);
    CHECK(px_join(c, "room:g", "3"));
    /* a place frees up */
    REQUIRE(px_sendf(a, "[\"1\",\"2\",\"room:f\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"1\",\"2\",\"room:f\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"1\",\"1\",\"room:f\",\"phx_close\",{}]");
    CHECK(px_join(c, "room:f", "4"));
    CHECK_EQ_INT(ts->server->channel_count, 3);
    CHECK(px_finish(ts, a, b, c, NULL));
}

TEST(phoenix, room_table_full_and_reuse) {
    ts_server *ts = px_server_new();
    ts_client *a, *b;
    char expected[300];
    vrs_room first;
    REQUIRE(ts);
    ts->desc.max_rooms = 1;
    REQUIRE(px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:a", "1"));
    first = vrs_find_room(ts->server, "a");
    CHECK(first.id != 0);
    CHECK_EQ_STR(vrs_room_name(ts->server, first), "a");
    REQUIRE(px_sendf(b, "[\"1\",\"1\",\"room:b\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"1\"", "1", "room:b", "failed to start room");
    PX_EXPECT_EXACT(b, expected);
    CHECK_EQ_INT(ts->log_counts[VRS_LOG_ROOM_TABLE_FULL], 1);
    CHECK(px_quiet(b));
    CHECK(px_join(b, "room:a", "2")); /* an existing room is no new room */
    /* the last peer goes: the room is freed */
    REQUIRE(px_sendf(a, "[\"1\",\"2\",\"room:a\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"1\",\"2\",\"room:a\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"1\",\"1\",\"room:a\",\"phx_close\",{}]");
    CHECK_EQ_INT(ts->server->room_count, 1);
    REQUIRE(px_sendf(b, "[\"2\",\"3\",\"room:a\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(b, "[\"2\",\"3\",\"room:a\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(b, "[\"2\",\"2\",\"room:a\",\"phx_close\",{}]");
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(vrs_find_room(ts->server, "a").id, 0);
    CHECK_EQ_STR(vrs_room_name(ts->server, first), "");
    /* and reused */
    CHECK(px_join(b, "room:b", "4"));
    CHECK(vrs_find_room(ts->server, "b").id != 0);
    CHECK(vrs_find_room(ts->server, "b").id != first.id);
    CHECK_EQ_INT(vrs_find_room(ts->server, "a").id, 0);
    CHECK(px_finish(ts, a, b, NULL));
}

TEST(phoenix, invalid_room_id) {
    ts_server *ts = px_server_new();
    ts_client *c;
    char expected[300];
    REQUIRE(ts);
    ts->desc.max_room_id_size = 8;
    REQUIRE(px_start(ts));
    c = px_v2(ts);
    REQUIRE(c);
    REQUIRE(px_sendf(c, "[\"1\",\"1\",\"room:\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"1\"", "1", "room:", "invalid room id");
    PX_EXPECT_EXACT(c, expected);
    REQUIRE(px_sendf(c, "[\"2\",\"2\",\"room:123456789\",\"phx_join\",{}]") == 0);
    px_error_reply(expected, sizeof expected, "\"2\"", "2", "room:123456789", "invalid room id");
    PX_EXPECT(c, expected);
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK(px_join(c, "room:12345678", "3"));
    CHECK(vrs_find_room(ts->server, "12345678").id != 0);
    CHECK(px_finish(ts, c, NULL));
}

TEST(phoenix, rooms_are_isolated) {
    ts_server *ts = px_server();
    ts_client *a, *b, *c;
    char ida[37], idb[37], idc[37], e[400], expected[400];
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:a", "1"));
    REQUIRE(px_join(b, "room:a", "1"));
    REQUIRE(px_join(c, "room:b", "1"));
    REQUIRE(px_relay_join(a, "1", "room:a", "1", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:a", "2", idb, NULL, 0));
    REQUIRE(px_event(a, "room:a", e, sizeof e)); /* peerJoined b */
    REQUIRE(px_relay_join(c, "1", "room:b", "3", idc, NULL, 0));
    CHECK(vrs_find_peer(ts->server, idc).id != 0);
    /* a peer of another room is an unknown target, and hears nothing */
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":\"psst\"}", idc);
    REQUIRE(px_media(a, "1", "room:a", e) == 0);
    CHECK(px_error_event(a, "room:a"));
    CHECK(px_quiet(c));
    CHECK(px_quiet(b));
    /* a broadcast stays in the room */
    REQUIRE(px_media(a, "1", "room:a", "{\"type\":\"custom\",\"data\":7}") == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":7}", ida);
    PX_EXPECT_EVENT(b, "room:a", expected);
    CHECK(px_quiet(c));
    CHECK(px_quiet(a));
    /* the peer of room b reaching into room a */
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":1}", ida);
    REQUIRE(px_media(c, "1", "room:b", e) == 0);
    CHECK(px_error_event(c, "room:b"));
    CHECK(px_quiet(a));
    CHECK(px_finish(ts, a, b, c, NULL));
}

/* ---------------------------------------------------------------------------------------------
   The host's room logic
   ------------------------------------------------------------------------------------------- */

TEST(phoenix, logic_callback_order) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b;
    vrs_room r;
    vrs_peer pa, pb;
    int i;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:o", "1"));
    r = vrs_find_room(ts->server, "o");
    pa = px_peer_at(ts, "o", 0);
    REQUIRE(r.id && pa.id);
    REQUIRE(px_join(b, "room:o", "1"));
    pb = px_peer_at(ts, "o", 1);
    REQUIRE(pb.id);
    REQUIRE(px_sendf(a, "[\"1\",\"2\",\"room:o\",\"mediaEvent\",{\"data\":{\"a\":1}}]") == 0);
    CHECK(px_quiet(a));
    REQUIRE(px_sendf(b, "[\"1\",\"2\",\"room:o\",\"mediaEvent\",{\"data\":[true]}]") == 0);
    CHECK(px_quiet(b));
    REQUIRE(px_sendf(a, "[\"1\",\"3\",\"room:o\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"1\",\"3\",\"room:o\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"1\",\"1\",\"room:o\",\"phx_close\",{}]");
    ts_client_free(b);
    b = NULL;
    REQUIRE(ts_wait_count(ts, &ts->close_count, 1, PX_WAIT_MS));
    CHECK_EQ_STR(px_kinds(), "CJJMMLLD");
    for (i = 0; i < px_recorder.count; i++) {
        px_call *call = &px_recorder.calls[i];
        if (call->room != r.id)
            VRS_TEST_FAIL("call %d (%c): room %llu, expected %llu", i, call->kind,
                          (unsigned long long)call->room, (unsigned long long)r.id);
        if (!call->consistent) VRS_TEST_FAIL("call %d (%c): vrs_peer_room disagrees", i, call->kind);
    }
    CHECK_EQ_INT(px_recorder.calls[1].peer, pa.id);
    CHECK_EQ_INT(px_recorder.calls[1].peer_count, 1);
    CHECK_EQ_INT(px_recorder.calls[2].peer, pb.id);
    CHECK_EQ_INT(px_recorder.calls[2].peer_count, 2);
    CHECK_EQ_INT(px_recorder.calls[3].peer, pa.id);
    CHECK_EQ_STR(px_recorder.calls[3].data, "{\"a\":1}");
    CHECK_EQ_INT(px_recorder.calls[4].peer, pb.id);
    CHECK_EQ_STR(px_recorder.calls[4].data, "[true]");
    /* while the room logic hears that a peer left, the peer's handle still works, but it no
       longer counts in its room (so the callback may close the room) */
    CHECK_EQ_INT(px_recorder.calls[5].peer, pa.id);
    CHECK_EQ_INT(px_recorder.calls[5].peer_count, 1);
    CHECK_EQ_INT(px_recorder.calls[6].peer, pb.id); /* the socket closed */
    CHECK_EQ_INT(px_recorder.calls[6].peer_count, 0);
    CHECK_EQ_INT(vrs_find_room(ts->server, "o").id, 0);
    /* a new join starts a new room */
    REQUIRE(px_join(a, "room:o", "4"));
    CHECK_EQ_STR(px_kinds(), "CJJMMLLDCJ");
    CHECK(px_recorder.calls[8].room != r.id);
    CHECK(px_finish(ts, a, NULL));
}

TEST(phoenix, logic_send_broadcast) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b, *c;
    vrs_room r;
    vrs_peer pa, pb;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    /* a push from on_peer_joined comes after the join's reply */
    px_recorder.greet = 1;
    REQUIRE(px_join(a, "room:x", "1"));
    PX_EXPECT_EXACT(a, "[\"1\",null,\"room:x\",\"mediaEvent\",{\"data\":\"hello\"}]");
    px_recorder.greet = 0;
    REQUIRE(px_join(b, "room:x", "2"));
    REQUIRE(px_join(c, "room:x", "3"));
    r = vrs_find_room(ts->server, "x");
    pa = px_peer_at(ts, "x", 0);
    pb = px_peer_at(ts, "x", 1);
    REQUIRE(r.id && pa.id && pb.id);
    /* to one */
    CHECK_EQ_INT(vrs_peer_send(ts->server, pb, "{\"to\":\"b\"}", 10), VRS_OK);
    PX_EXPECT_EXACT(b, "[\"2\",null,\"room:x\",\"mediaEvent\",{\"data\":{\"to\":\"b\"}}]");
    CHECK(px_quiet(a));
    CHECK(px_quiet(c));
    /* to all */
    CHECK_EQ_INT(vrs_room_broadcast(ts->server, r, "[1,2]", 5), VRS_OK);
    PX_EXPECT(a, "[\"1\",null,\"room:x\",\"mediaEvent\",{\"data\":[1,2]}]");
    PX_EXPECT(b, "[\"2\",null,\"room:x\",\"mediaEvent\",{\"data\":[1,2]}]");
    PX_EXPECT(c, "[\"3\",null,\"room:x\",\"mediaEvent\",{\"data\":[1,2]}]");
    /* to all but one */
    CHECK_EQ_INT(vrs_room_broadcast_except(ts->server, r, pb, "\"x\"", 3), VRS_OK);
    PX_EXPECT(a, "[\"1\",null,\"room:x\",\"mediaEvent\",{\"data\":\"x\"}]");
    PX_EXPECT(c, "[\"3\",null,\"room:x\",\"mediaEvent\",{\"data\":\"x\"}]");
    CHECK(px_quiet(b));
    CHECK(px_quiet(a));
    CHECK(px_quiet(c));
    /* any event */
    CHECK_EQ_INT(vrs_peer_push(ts->server, pa, "custom_event", "{\"k\":true}", 10), VRS_OK);
    PX_EXPECT_EXACT(a, "[\"1\",null,\"room:x\",\"custom_event\",{\"k\":true}]");
    /* from inside on_media_event */
    px_recorder.echo = 1;
    REQUIRE(px_sendf(c, "[\"3\",\"9\",\"room:x\",\"mediaEvent\",{\"data\":{\"q\":1}}]") == 0);
    PX_EXPECT(c, "[\"3\",null,\"room:x\",\"mediaEvent\",{\"data\":{\"q\":1}}]");
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    CHECK(px_finish(ts, a, b, c, NULL));
}

TEST(phoenix, logic_room_close) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b;
    vrs_room r;
    char got[PX_TEXT], field[64], expected[300];
    int op;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:c", "1"));
    REQUIRE(px_sendf(b, "[null,\"5\",\"room:c\",\"phx_join\",{}]") == 0);
    PX_EXPECT(b, "[null,\"5\",\"room:c\",\"phx_reply\"," PX_OK "]");
    r = vrs_find_room(ts->server, "c");
    REQUIRE(r.id);
    CHECK_EQ_INT(vrs_room_close(ts->server, r), VRS_OK);
    /* each channel: [jr, jr, topic, "phx_error", {"reason": ..}] */
    REQUIRE(px_recv(a, got, sizeof got, &op) > 0);
    CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "\"1\"") == 0);
    CHECK(px_field(got, "1", field, sizeof field) && strcmp(field, "\"1\"") == 0);
    CHECK(px_field_string(got, "2", field, sizeof field) && strcmp(field, "room:c") == 0);
    CHECK(px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_error") == 0);
    CHECK(px_field_string(got, "4.reason", field, sizeof field));
    REQUIRE(px_recv(b, got, sizeof got, &op) > 0);
    CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "null") == 0);
    CHECK(px_field(got, "1", field, sizeof field) && strcmp(field, "null") == 0);
    CHECK(px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_error") == 0);
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    /* the room is destroyed */
    CHECK_EQ_STR(px_kinds(), "CJJLLD");
    CHECK_EQ_INT(px_recorder.calls[5].room, r.id);
    CHECK_EQ_INT(vrs_find_room(ts->server, "c").id, 0);
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    CHECK_EQ_INT(vrs_room_close(ts->server, r), VRS_ERROR_INVALID_CONNECTION);
    /* the topics are unjoined; a new join starts afresh */
    REQUIRE(px_sendf(a, "[\"1\",\"2\",\"room:c\",\"mediaEvent\",{\"data\":1}]") == 0);
    px_error_reply(expected, sizeof expected, "null", "2", "room:c", "unmatched topic");
    PX_EXPECT(a, expected);
    REQUIRE(px_join(a, "room:c", "3"));
    CHECK_EQ_STR(px_kinds(), "CJJLLDCJ");
    CHECK(vrs_find_room(ts->server, "c").id != 0);
    CHECK(vrs_find_room(ts->server, "c").id != r.id);
    CHECK(px_finish(ts, a, b, NULL));
}

/* phx_error, as a check of its envelope: [jr, jr, topic, "phx_error", {"reason": <string>}]. */
PX_FN int px_is_phx_error(const char *frame, const char *jr_json, const char *topic) {
    char field[128];
    return px_field(frame, "0", field, sizeof field) && strcmp(field, jr_json) == 0 &&
           px_field(frame, "1", field, sizeof field) && strcmp(field, jr_json) == 0 &&
           px_field_string(frame, "2", field, sizeof field) && strcmp(field, topic) == 0 &&
           px_field_string(frame, "3", field, sizeof field) && strcmp(field, "phx_error") == 0 &&
           px_field_string(frame, "4.reason", field, sizeof field);
}

#define PX_EXPECT_PHX_ERROR(c, jr_json, topic)                                                 \
    do {                                                                                       \
        char px_got_[PX_TEXT];                                                                 \
        int px_op_;                                                                            \
        if (px_recv((c), px_got_, sizeof px_got_, &px_op_) < 0 || !px_is_phx_error(px_got_, (jr_json), (topic))) \
            VRS_TEST_FAIL("expected phx_error for %s on %s, got %s", (jr_json), (topic), px_got_); \
    } while (0)

/* The header lets a callback call any vrs_ function but vrs_step/vrs_process/vrs_destroy:
   the room logic closes the room from on_media_event ("kick everyone") and from
   on_peer_left ("the owner left"), including while the room is already closing. */
TEST(phoenix, logic_room_close_from_callbacks) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b, *c;
    int i, destroyed;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    /* from on_media_event: every channel, the sender's too, ends with phx_error */
    REQUIRE(px_join(a, "room:k", "1"));
    REQUIRE(px_join(b, "room:k", "2"));
    REQUIRE(px_join(c, "room:k", "3"));
    px_recorder.close_on_media = 1;
    REQUIRE(px_sendf(a, "[\"1\",\"5\",\"room:k\",\"mediaEvent\",{\"data\":1}]") == 0);
    PX_EXPECT_PHX_ERROR(a, "\"1\"", "room:k");
    PX_EXPECT_PHX_ERROR(b, "\"2\"", "room:k");
    PX_EXPECT_PHX_ERROR(c, "\"3\"", "room:k");
    CHECK(px_quiet(a) && px_quiet(b) && px_quiet(c));
    CHECK_EQ_STR(px_kinds(), "CJJJMLLLD");
    CHECK_EQ_INT(px_recorder.close_results[0], VRS_OK);
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    px_recorder.close_on_media = 0;
    /* from every on_peer_left, after a phx_leave: the leaver gets its phx_close, the others
       phx_error, the room is destroyed once */
    px_recorder.count = 0;
    REQUIRE(px_join(a, "room:k", "6"));
    REQUIRE(px_join(b, "room:k", "7"));
    REQUIRE(px_join(c, "room:k", "8"));
    px_recorder.close_on_left = 1;
    REQUIRE(px_sendf(a, "[\"6\",\"9\",\"room:k\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"6\",\"9\",\"room:k\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"6\",\"6\",\"room:k\",\"phx_close\",{}]");
    PX_EXPECT_PHX_ERROR(b, "\"7\"", "room:k");
    PX_EXPECT_PHX_ERROR(c, "\"8\"", "room:k");
    CHECK(px_quiet(a) && px_quiet(b) && px_quiet(c));
    CHECK_EQ_STR(px_kinds(), "CJJJLLLD");
    for (i = 0; i < px_recorder.close_count && i < 8; i++) CHECK_EQ_INT(px_recorder.close_results[i], VRS_OK);
    CHECK_EQ_INT(ts->server->room_count, 0);
    CHECK_EQ_INT(ts->server->channel_count, 0);
    /* from every on_peer_left, after a socket closed */
    px_recorder.count = 0;
    REQUIRE(px_join(a, "room:k", "10"));
    REQUIRE(px_join(b, "room:k", "11"));
    REQUIRE(px_join(c, "room:k", "12"));
    ts_client_free(b);
    b = NULL;
    PX_EXPECT_PHX_ERROR(a, "\"10\"", "room:k");
    PX_EXPECT_PHX_ERROR(c, "\"12\"", "room:k");
    CHECK(px_quiet(a) && px_quiet(c));
    CHECK_EQ_STR(px_kinds(), "CJJJLLLD");
    /* vrs_room_close from the host while every on_peer_left closes it again: one phx_error each */
    px_recorder.count = 0;
    REQUIRE(px_join(a, "room:k", "13"));
    REQUIRE(px_join(c, "room:k", "14"));
    CHECK_EQ_INT(vrs_room_close(ts->server, vrs_find_room(ts->server, "k")), VRS_OK);
    PX_EXPECT_PHX_ERROR(a, "\"13\"", "room:k");
    PX_EXPECT_PHX_ERROR(c, "\"14\"", "room:k");
    CHECK(px_quiet(a) && px_quiet(c));
    CHECK_EQ_STR(px_kinds(), "CJJLLD");
    for (i = 0, destroyed = 0; i < px_recorder.count; i++) destroyed += px_recorder.calls[i].kind == 'D';
    CHECK_EQ_INT(destroyed, 1);
    CHECK(px_finish(ts, a, c, NULL));
}

/* vrs_destroy ends every peer and room as a leaving socket does: on_peer_left for each peer,
   on_room_destroyed for each room, on_close (1001) for each socket, so that a host frees what
   its user pointers hold there. Room-logic callbacks get room_logic.user_data, the others
   desc.user_data, as always; what they ask of the server then does no harm. */
TEST(phoenix, logic_destroy_ends_rooms) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:1", "1"));
    REQUIRE(px_join(b, "room:1", "1"));
    REQUIRE(px_join(b, "room:2", "2"));
    CHECK_EQ_STR(px_kinds(), "CJJCJ");
    px_recorder.close_on_left = 1; /* each on_peer_left also calls vrs_room_close */
    vrs_destroy(ts->server);
    ts->server = NULL;
    CHECK(ts->desc.user_data == ts && ts->desc.room_logic.user_data == &px_recorder);
    CHECK_EQ_INT(px_foreign_user_data, 0);
    CHECK_EQ_INT(ts->close_count, 2);
    CHECK_EQ_INT(ts->close_codes[0], 1001);
    CHECK_EQ_INT(ts->close_codes[1], 1001);
    ts_server_free(ts);
    {
        int i, left = 0, destroyed = 0;
        REQUIRE_EQ_INT(px_recorder.count, 10);
        for (i = 5; i < 10; i++) {
            px_call *call = &px_recorder.calls[i];
            if (call->kind == 'L') left++;
            if (call->kind == 'D') {
                int j;
                destroyed++;
                for (j = i + 1; j < 10; j++) /* no peer of a destroyed room leaves after it */
                    if (px_recorder.calls[j].room == call->room) VRS_TEST_FAIL("call %d after its room went", j);
            }
        }
        CHECK_EQ_INT(left, 3);
        CHECK_EQ_INT(destroyed, 2);
    }
    ts_client_free(a);
    ts_client_free(b);
}

/* A media event larger than max_message_size never reaches the room: close 1009. */
TEST(phoenix, media_event_too_large) {
    ts_server *ts = px_logic_server_new();
    ts_client *a;
    ts_frame f;
    char big[3000];
    REQUIRE(ts);
    ts->desc.max_message_size = 1024;
    REQUIRE(px_start(ts));
    a = px_v2(ts);
    REQUIRE(a);
    REQUIRE(px_join(a, "room:t", "1"));
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    REQUIRE(px_sendf(a, "[\"1\",\"2\",\"room:t\",\"mediaEvent\",{\"data\":\"%s\"}]", big) == 0);
    CHECK_EQ_INT(ts_read_close(a, &f, PX_WAIT_MS), 1009);
    CHECK_EQ_INT(a->skipped_frames, 0);
    CHECK(px_finish(ts, a, NULL));
    CHECK_EQ_STR(px_kinds(), "CJLD");
}

TEST(phoenix, logic_stale_handles) {
    ts_server *ts = px_logic_server_new();
    ts_client *a;
    vrs_room r, r2, none;
    vrs_peer p, p2, nobody;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    REQUIRE(a);
    REQUIRE(px_join(a, "room:h", "1"));
    r = vrs_find_room(ts->server, "h");
    p = px_peer_at(ts, "h", 0);
    REQUIRE(r.id && p.id);
    REQUIRE(px_sendf(a, "[\"1\",\"2\",\"room:h\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"1\",\"2\",\"room:h\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"1\",\"1\",\"room:h\",\"phx_close\",{}]");
    /* the same slots are taken again: the old handles must not reach them */
    REQUIRE(px_join(a, "room:h", "3"));
    r2 = vrs_find_room(ts->server, "h");
    p2 = px_peer_at(ts, "h", 0);
    REQUIRE(r2.id && p2.id);
    CHECK(r2.id != r.id);
    CHECK(p2.id != p.id);
    none.id = 0;
    nobody.id = 0;
    CHECK_EQ_INT(vrs_peer_send(ts->server, p, "1", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_peer_push(ts->server, p, "ev", "{}", 2), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_peer_push_binary(ts->server, p, "ev", "x", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_peer_set_user_data(ts->server, p, &px_room_tag), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_room_broadcast(ts->server, r, "1", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_room_broadcast_except(ts->server, r, p2, "1", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_room_set_user_data(ts->server, r, &px_room_tag), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_room_close(ts->server, r), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_peer_send(ts->server, nobody, "1", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_INT(vrs_room_broadcast(ts->server, none, "1", 1), VRS_ERROR_INVALID_CONNECTION);
    CHECK_EQ_STR(vrs_peer_id(ts->server, p), "");
    CHECK_EQ_STR(vrs_room_name(ts->server, r), "");
    CHECK_EQ_INT(vrs_peer_room(ts->server, p).id, 0);
    CHECK_EQ_INT(vrs_peer_conn(ts->server, p).id, 0);
    CHECK_EQ_INT(vrs_room_peer_count(ts->server, r), 0);
    CHECK_EQ_INT(vrs_room_peers(ts->server, r, &p2, 1), 0);
    CHECK(vrs_peer_user_data(ts->server, p) == NULL);
    CHECK(vrs_room_user_data(ts->server, r) == NULL);
    CHECK(px_quiet(a)); /* nothing reached the new channel */
    CHECK_EQ_INT(vrs_peer_room(ts->server, px_peer_at(ts, "h", 0)).id, r2.id);
    CHECK(vrs_room_user_data(ts->server, r2) == NULL);
    CHECK(px_finish(ts, a, NULL));
}

TEST(phoenix, logic_user_data_and_lookups) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b, *c;
    vrs_room r;
    vrs_peer peers[4], found;
    int i;
    REQUIRE(ts && px_start(ts));
    px_recorder.tag = 1;
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:u", "1"));
    REQUIRE(px_join(b, "room:u", "1"));
    REQUIRE(px_join(c, "room:u", "1"));
    r = vrs_find_room(ts->server, "u");
    REQUIRE(r.id);
    CHECK_EQ_STR(vrs_room_name(ts->server, r), "u");
    CHECK_EQ_INT(vrs_room_peer_count(ts->server, r), 3);
    /* the room's peers, in the order they joined */
    REQUIRE_EQ_INT(vrs_room_peers(ts->server, r, peers, 4), 3);
    CHECK_EQ_INT(peers[0].id, px_recorder.calls[1].peer);
    CHECK_EQ_INT(peers[1].id, px_recorder.calls[2].peer);
    CHECK_EQ_INT(peers[2].id, px_recorder.calls[3].peer);
    CHECK_EQ_INT(vrs_room_peers(ts->server, r, peers, 2), 2);
    CHECK_EQ_INT(vrs_peer_conn(ts->server, peers[0]).id, a->conn.id);
    CHECK_EQ_INT(vrs_peer_conn(ts->server, peers[1]).id, b->conn.id);
    vrs_room_peers(ts->server, r, peers, 4);
    CHECK_EQ_INT(vrs_peer_conn(ts->server, peers[2]).id, c->conn.id);
    for (i = 0; i < 3; i++) {
        const char *id = vrs_peer_id(ts->server, peers[i]);
        CHECK(px_is_uuid_v4(id));
        found = vrs_find_peer(ts->server, id);
        CHECK_EQ_INT(found.id, peers[i].id);
        CHECK_EQ_INT(vrs_peer_room(ts->server, peers[i]).id, r.id);
    }
    CHECK_EQ_INT(vrs_find_peer(ts->server, "not-a-peer").id, 0);
    CHECK_EQ_INT(vrs_find_peer(ts->server, "00000000-0000-4000-8000-000000000000").id, 0);
    CHECK_EQ_INT(vrs_find_room(ts->server, "nope").id, 0);
    /* user data set in the callbacks, seen by the host and by later callbacks */
    CHECK(vrs_room_user_data(ts->server, r) == &px_room_tag);
    CHECK(px_recorder.calls[0].room_user_data == NULL);
    CHECK(px_recorder.calls[1].peer_user_data == NULL);
    CHECK(vrs_peer_user_data(ts->server, peers[0]) == &px_peer_tags[1]);
    CHECK(vrs_peer_user_data(ts->server, peers[1]) == &px_peer_tags[2]);
    CHECK(vrs_peer_user_data(ts->server, peers[2]) == &px_peer_tags[3]);
    REQUIRE(px_sendf(b, "[\"1\",\"2\",\"room:u\",\"mediaEvent\",{\"data\":0}]") == 0);
    CHECK(px_quiet(b));
    REQUIRE_EQ_INT(px_recorder.count, 5);
    CHECK(px_recorder.calls[4].peer_user_data == &px_peer_tags[2]);
    CHECK(px_recorder.calls[4].room_user_data == &px_room_tag);
    /* set by the host */
    CHECK_EQ_INT(vrs_peer_set_user_data(ts->server, peers[2], &px_peer_tags[40]), VRS_OK);
    CHECK(vrs_peer_user_data(ts->server, peers[2]) == &px_peer_tags[40]);
    CHECK_EQ_INT(vrs_room_set_user_data(ts->server, r, &px_peer_tags[41]), VRS_OK);
    /* each goes: its on_peer_left still sees its data, on_room_destroyed the room's */
    ts_client_free(c);
    c = NULL;
    REQUIRE(ts_wait_count(ts, &ts->close_count, 1, PX_WAIT_MS));
    REQUIRE_EQ_INT(px_recorder.count, 6);
    CHECK_EQ_INT(px_recorder.calls[5].kind, 'L');
    CHECK(px_recorder.calls[5].peer_user_data == &px_peer_tags[40]);
    ts_client_free(a);
    a = NULL;
    ts_client_free(b);
    b = NULL;
    REQUIRE(ts_wait_count(ts, &ts->close_count, 3, PX_WAIT_MS));
    CHECK_EQ_STR(px_kinds(), "CJJJMLLLD");
    CHECK(px_recorder.calls[8].room_user_data == &px_peer_tags[41]);
    /* a new room and peer start without user data */
    px_recorder.tag = 0;
    a = px_v2(ts);
    REQUIRE(a);
    REQUIRE(px_join(a, "room:u", "1"));
    CHECK(vrs_room_user_data(ts->server, vrs_find_room(ts->server, "u")) == NULL);
    CHECK(vrs_peer_user_data(ts->server, px_peer_at(ts, "u", 0)) == NULL);
    CHECK(px_finish(ts, a, NULL));
}

TEST(phoenix, logic_invalid_data) {
    static const char *const bad[] = {"{", "", "1 2", "[1,]", "{\"a\"}", "nul", "\"\xff\""};
    ts_server *ts = px_logic_server_new();
    ts_client *a;
    vrs_room r;
    vrs_peer p;
    size_t i;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    REQUIRE(a);
    REQUIRE(px_join(a, "room:i", "1"));
    r = vrs_find_room(ts->server, "i");
    p = px_peer_at(ts, "i", 0);
    REQUIRE(r.id && p.id);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        if (vrs_peer_send(ts->server, p, bad[i], n) != VRS_ERROR_INVALID_ARGUMENT) VRS_TEST_FAIL("vrs_peer_send took %s", bad[i]);
        if (vrs_room_broadcast(ts->server, r, bad[i], n) != VRS_ERROR_INVALID_ARGUMENT) VRS_TEST_FAIL("vrs_room_broadcast took %s", bad[i]);
        if (vrs_room_broadcast_except(ts->server, r, p, bad[i], n) != VRS_ERROR_INVALID_ARGUMENT)
            VRS_TEST_FAIL("vrs_room_broadcast_except took %s", bad[i]);
        if (vrs_peer_push(ts->server, p, "ev", bad[i], n) != VRS_ERROR_INVALID_ARGUMENT) VRS_TEST_FAIL("vrs_peer_push took %s", bad[i]);
    }
    CHECK_EQ_INT(vrs_peer_send(ts->server, p, NULL, 0), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_peer_push(ts->server, p, NULL, "{}", 2), VRS_ERROR_INVALID_ARGUMENT);
    /* the event name goes into a text frame, which must be UTF-8 */
    CHECK_EQ_INT(vrs_peer_push(ts->server, p, "ev\xff", "{}", 2), VRS_ERROR_INVALID_ARGUMENT);
    CHECK_EQ_INT(vrs_peer_push(ts->server, p, "\xc3\xa9v\xe2\x80\xa8", "{}", 2), VRS_OK);
    PX_EXPECT_EXACT(a, "[\"1\",null,\"room:i\",\"\xc3\xa9v\\u2028\",{}]");
    CHECK(px_quiet(a)); /* nothing was sent */
    /* a length shorter than the text: only that much is D */
    CHECK_EQ_INT(vrs_peer_send(ts->server, p, "12345", 2), VRS_OK);
    PX_EXPECT_EXACT(a, "[\"1\",null,\"room:i\",\"mediaEvent\",{\"data\":12}]");
    CHECK(px_finish(ts, a, NULL));
}

/* vrs_peer_close ends one channel: its client gets phx_close with the reason (V2 and V1), the
   room logic hears the peer leave at once, the socket's other channel stays, and the last peer
   takes its room with it; vrs_rooms lists what is left. */
TEST(phoenix, logic_peer_close_ends_one_channel) {
    ts_server *ts = px_logic_server_new();
    ts_client *a, *b;
    vrs_room rooms[4];
    char long_reason[VRS_PEER_CLOSE_REASON_MAX + 2];
    vrs_peer pa;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    b = px_ws(ts, PX_V1, NULL);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:k", "1"));
    REQUIRE(px_join(a, "room:other", "2"));
    REQUIRE(px_sendf(b, "{\"topic\":\"room:k\",\"event\":\"phx_join\",\"payload\":{},\"ref\":\"9\"}") == 0);
    PX_EXPECT_EXACT(b, "{\"topic\":\"room:k\",\"event\":\"phx_reply\",\"payload\":{\"status\":\"ok\",\"response\":{}},\"ref\":\"9\"}");
    CHECK_EQ_INT(vrs_rooms(ts->server, rooms, 4), 2);
    CHECK_EQ_INT(vrs_rooms(ts->server, rooms, 1), 1);
    pa = px_peer_at(ts, "k", 0);
    REQUIRE(pa.id);
    /* refusals change nothing */
    memset(long_reason, 'x', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    CHECK_EQ_INT(vrs_peer_close(ts->server, pa, long_reason), VRS_ERROR_TOO_LARGE);
    CHECK_EQ_INT(vrs_peer_close(ts->server, pa, "\xff"), VRS_ERROR_INVALID_ARGUMENT);
    CHECK(px_quiet(a));
    px_recorder.count = 0;
    CHECK_EQ_INT(vrs_peer_close(ts->server, pa, "too \"loud\""), VRS_OK);
    CHECK_EQ_STR(px_kinds(), "L"); /* heard at once, from inside the call */
    PX_EXPECT_EXACT(a, "[\"1\",\"1\",\"room:k\",\"phx_close\",{\"reason\":\"too \\\"loud\\\"\"}]");
    CHECK_EQ_INT(vrs_peer_close(ts->server, pa, NULL), VRS_ERROR_INVALID_CONNECTION); /* stale now */
    CHECK_EQ_INT(vrs_room_peer_count(ts->server, vrs_find_room(ts->server, "k")), 1);
    CHECK(px_quiet(a)); /* the socket and its other channel stay */
    CHECK(vrs_peer_send(ts->server, px_peer_at(ts, "other", 0), "1", 1) == VRS_OK);
    PX_EXPECT_EXACT(a, "[\"2\",null,\"room:other\",\"mediaEvent\",{\"data\":1}]");
    /* V1, no reason: {}, and the join's join_ref as ref (this join sent none); the room goes
       with its last peer */
    CHECK_EQ_INT(vrs_peer_close(ts->server, px_peer_at(ts, "k", 0), NULL), VRS_OK);
    PX_EXPECT_EXACT(b, "{\"topic\":\"room:k\",\"event\":\"phx_close\",\"payload\":{},\"ref\":null}");
    CHECK_EQ_STR(px_kinds(), "LLD");
    CHECK_EQ_INT(vrs_rooms(ts->server, rooms, 4), 1);
    CHECK_EQ_STR(vrs_room_name(ts->server, rooms[0]), "other");
    CHECK(px_quiet1(b));
    CHECK(px_finish(ts, a, b, NULL));
}

TEST(phoenix, logic_push_refuses_reserved_events_and_non_objects) {
    static const char *const reserved[] = {"phx_reply", "phx_close", "phx_error", "phx_join", "phx_leave", "phx_"};
    static const char *const not_objects[] = {"[]", "1", "\"text\"", "null", "true", " [ {} ] "};
    ts_server *ts = px_logic_server_new();
    ts_client *a;
    vrs_peer p;
    size_t i;
    REQUIRE(ts && px_start(ts));
    a = px_v2(ts);
    REQUIRE(a);
    REQUIRE(px_join(a, "room:r", "1"));
    p = px_peer_at(ts, "r", 0);
    REQUIRE(p.id);
    for (i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        CHECK_EQ_INT(vrs_peer_push(ts->server, p, reserved[i], "{}", 2), VRS_ERROR_RESERVED_EVENT);
        CHECK_EQ_INT(vrs_peer_push_binary(ts->server, p, reserved[i], "x", 1), VRS_ERROR_RESERVED_EVENT);
    }
    for (i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++)
        CHECK_EQ_INT(vrs_peer_push(ts->server, p, "ev", not_objects[i], strlen(not_objects[i])), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_STR(vrs_result_string(VRS_ERROR_RESERVED_EVENT), "reserved event name (phx_...)");
    CHECK(px_quiet(a)); /* nothing was sent */
    /* names that only look alike pass */
    CHECK_EQ_INT(vrs_peer_push(ts->server, p, "phx", " {} ", 4), VRS_OK);
    PX_EXPECT_EXACT(a, "[\"1\",null,\"room:r\",\"phx\", {} ]");
    CHECK_EQ_INT(vrs_peer_push(ts->server, p, "PHX_reply", "{}", 2), VRS_OK);
    PX_EXPECT_EXACT(a, "[\"1\",null,\"room:r\",\"PHX_reply\",{}]");
    CHECK(px_finish(ts, a, NULL));
}

/* ---------------------------------------------------------------------------------------------
   The relay logic (RELAY.md)
   ------------------------------------------------------------------------------------------- */

TEST(phoenix, relay_full_flow) {
    ts_server *ts = px_server();
    ts_client *a, *b, *c;
    char ida[37], idb[37], idc[37], idc2[37], accepted[PX_TEXT], expected[1000], e[400];
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:r", "1"));
    REQUIRE(px_join(b, "room:r", "2"));
    REQUIRE(px_join(c, "room:r", "3"));
    /* a: accepted alone */
    REQUIRE(px_relay_join(a, "1", "room:r", "{\"name\":\"a\"}", ida, accepted, sizeof accepted));
    snprintf(expected, sizeof expected, "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[]}}", ida);
    PX_CHECK_JSON(accepted, expected);
    CHECK(px_quiet(b)); /* b has not joined the relay: it hears nothing */
    /* b: accepted with a listed; a hears of b */
    REQUIRE(px_relay_join(b, "2", "room:r", "{\"name\":\"b\"}", idb, accepted, sizeof accepted));
    snprintf(expected, sizeof expected,
             "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":{\"name\":\"a\"}}]}}",
             idb, ida);
    PX_CHECK_JSON(accepted, expected);
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":{\"name\":\"b\"}}}}", idb);
    PX_EXPECT_EVENT(a, "room:r", expected);
    /* c, without metadata: null; a and b listed in the order they joined */
    REQUIRE(px_relay_join(c, "3", "room:r", NULL, idc, accepted, sizeof accepted));
    snprintf(expected, sizeof expected,
             "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":{\"name\":\"a\"}},"
             "{\"id\":\"%s\",\"metadata\":{\"name\":\"b\"}}]}}",
             idc, ida, idb);
    PX_CHECK_JSON(accepted, expected);
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":null}}}", idc);
    PX_EXPECT_EVENT(a, "room:r", expected);
    PX_EXPECT_EVENT(b, "room:r", expected);
    /* custom to one: only the target hears, with "from" */
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":{\"sdp\":\"v=0\\r\\n\",\"n\":[1,2.5,null]}}", idb);
    REQUIRE(px_media(a, "1", "room:r", e) == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":{\"sdp\":\"v=0\\r\\n\",\"n\":[1,2.5,null]}}", ida);
    PX_EXPECT_EVENT(b, "room:r", expected);
    CHECK(px_quiet(c));
    CHECK(px_quiet(a));
    /* custom to all: every other joined peer; no data: null */
    REQUIRE(px_media(c, "3", "room:r", "{\"type\":\"custom\"}") == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":null}", idc);
    PX_EXPECT_EVENT(a, "room:r", expected);
    PX_EXPECT_EVENT(b, "room:r", expected);
    CHECK(px_quiet(c));
    /* updatePeerMetadata: stored, others hear */
    REQUIRE(px_media(b, "2", "room:r", "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":{\"name\":\"b2\"}}}") == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"peerUpdated\",\"data\":{\"peerId\":\"%s\",\"metadata\":{\"name\":\"b2\"}}}", idb);
    PX_EXPECT_EVENT(a, "room:r", expected);
    PX_EXPECT_EVENT(c, "room:r", expected);
    CHECK(px_quiet(b));
    /* relay leave: others hear peerLeft, the channel stays */
    REQUIRE(px_media(c, "3", "room:r", "{\"type\":\"leave\"}") == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"peerLeft\",\"data\":{\"peerId\":\"%s\"}}", idc);
    PX_EXPECT_EVENT(a, "room:r", expected);
    PX_EXPECT_EVENT(b, "room:r", expected);
    CHECK(px_quiet(c));
    CHECK_EQ_INT(ts->server->channel_count, 3);
    /* a left peer is no target and hears no broadcast */
    REQUIRE(px_media(a, "1", "room:r", "{\"type\":\"custom\",\"data\":1}") == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":1}", ida);
    PX_EXPECT_EVENT(b, "room:r", expected);
    CHECK(px_quiet(c));
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":1}", idc);
    REQUIRE(px_media(a, "1", "room:r", e) == 0);
    CHECK(px_error_event(a, "room:r"));
    /* rejoin: the same id, the others listed with their current metadata */
    REQUIRE(px_relay_join(c, "3", "room:r", "[\"c\"]", idc2, accepted, sizeof accepted));
    CHECK_EQ_STR(idc2, idc);
    snprintf(expected, sizeof expected,
             "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":{\"name\":\"a\"}},"
             "{\"id\":\"%s\",\"metadata\":{\"name\":\"b2\"}}]}}",
             idc, ida, idb);
    PX_CHECK_JSON(accepted, expected);
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":[\"c\"]}}}", idc);
    PX_EXPECT_EVENT(a, "room:r", expected);
    PX_EXPECT_EVENT(b, "room:r", expected);
    /* phx_leave of a joined peer: peerLeft */
    REQUIRE(px_sendf(a, "[\"1\",\"50\",\"room:r\",\"phx_leave\",{}]") == 0);
    PX_EXPECT(a, "[\"1\",\"50\",\"room:r\",\"phx_reply\"," PX_OK "]");
    PX_EXPECT(a, "[\"1\",\"1\",\"room:r\",\"phx_close\",{}]");
    snprintf(expected, sizeof expected, "{\"type\":\"peerLeft\",\"data\":{\"peerId\":\"%s\"}}", ida);
    PX_EXPECT_EVENT(b, "room:r", expected);
    PX_EXPECT_EVENT(c, "room:r", expected);
    CHECK(px_quiet(a));
    CHECK(px_finish(ts, a, b, c, NULL));
}

/* Sends mediaEvent with E in a D that JSON.stringify would not write: '{' as \u007b and '/' as
   \/, so that the relay must decode D to read E. */
static int px_media_unusual_escapes(ts_client *c, const char *jr, const char *topic, const char *e) {
    char d[PX_TEXT];
    size_t n = 0;
    d[n++] = '"';
    for (; *e && n < sizeof d - 8; e++) {
        unsigned char ch = (unsigned char)*e;
        if (ch == '{') n += (size_t)sprintf(d + n, "\\u007b");
        else if (ch == '/') n += (size_t)sprintf(d + n, "\\/");
        else if (ch == '"' || ch == '\\') n += (size_t)sprintf(d + n, "\\%c", ch);
        else if (ch < 0x20) n += (size_t)sprintf(d + n, "\\u%04x", ch);
        else d[n++] = (char)ch;
    }
    d[n++] = '"';
    d[n] = '\0';
    return px_media_raw(c, jr, topic, d);
}

/* X, E's data, reaches the others exactly as the sender wrote it, whatever escapes D used: the
   relay reads the usual D in place and passes X on as D escapes it, and decodes any other. */
TEST(phoenix, relay_custom_passes_data_on_exactly) {
    static const char *const datas[] = {
        "{\"sdp\":\"v=0\\r\\no=- 1 2 IN IP4 127.0.0.1\\r\\n\",\"type\":\"offer\"}",
        "\"say \\\"hi\\\" \\\\ back\\/slash \\u00e9\\ud83d\\ude00 \\u2028\"",
        "[ 1, -2.5e+3,true , false,null,{ },[]]",
        "{\"nested\":\"{\\\"deep\\\":\\\"\\\\\\\\\\\"}\",\"url\":\"https://x/y?z=1\"}",
        "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
        "null", "0",
    };
    ts_server *ts = px_server();
    ts_client *a, *b, *c;
    char ida[37], idb[37], idc[37], e[PX_TEXT], expected[PX_TEXT], got[PX_TEXT];
    size_t i;
    int form;
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:x", "1") && px_join(b, "room:x", "2") && px_join(c, "room:x", "3"));
    REQUIRE(px_relay_join(a, "1", "room:x", NULL, ida, NULL, 0));
    REQUIRE(px_relay_join(b, "2", "room:x", NULL, idb, NULL, 0));
    REQUIRE(px_event(a, "room:x", got, sizeof got));
    REQUIRE(px_relay_join(c, "3", "room:x", NULL, idc, NULL, 0));
    REQUIRE(px_event(a, "room:x", got, sizeof got) && px_event(b, "room:x", got, sizeof got));
    for (i = 0; i < sizeof datas / sizeof datas[0]; i++) {
        for (form = 0; form < 4; form++) {
            /* to all, then to c alone; E as stringify writes it, then with unusual escapes */
            if (form & 2) snprintf(e, sizeof e, "{ \"to\":\"%s\", \"type\" : \"custom\",\n\"data\":%s }", idc, datas[i]);
            else snprintf(e, sizeof e, "{\"type\":\"custom\",\"data\":%s}", datas[i]);
            if (form & 1) REQUIRE(px_media_unusual_escapes(a, "1", "room:x", e) == 0);
            else REQUIRE(px_media(a, "1", "room:x", e) == 0);
            snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":%s}", ida, datas[i]);
            if (!(form & 2)) {
                REQUIRE(px_event(b, "room:x", got, sizeof got));
                CHECK_EQ_STR(got, expected);
            }
            REQUIRE(px_event(c, "room:x", got, sizeof got));
            CHECK_EQ_STR(got, expected);
        }
    }
    /* keys, type and target with escapes of E's own: read decoded, the same meaning */
    snprintf(e, sizeof e, "{\"t\\u0079pe\":\"cust\\u006fm\",\"t\\u006f\":\"%.35s\\u00%02x\",\"data\":1}", idc,
             (unsigned char)idc[35]);
    REQUIRE(px_media(a, "1", "room:x", e) == 0);
    snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":1}", ida);
    REQUIRE(px_event(c, "room:x", got, sizeof got));
    CHECK_EQ_STR(got, expected);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"t\\u006f\":\"%s\",\"data\":1}", idc);
    REQUIRE(px_media(a, "1", "room:x", e) == 0);
    REQUIRE(px_event(c, "room:x", got, sizeof got));
    CHECK_EQ_STR(got, expected);
    CHECK(px_quiet(b)); /* to c alone */
    /* a repeated key: the last one counts, read either way */
    for (form = 0; form < 2; form++) {
        const char *twice = "{\"type\":\"join\",\"data\":1,\"type\":\"custom\",\"data\":2}";
        REQUIRE((form ? px_media_unusual_escapes(a, "1", "room:x", twice) : px_media(a, "1", "room:x", twice)) == 0);
        snprintf(expected, sizeof expected, "{\"type\":\"custom\",\"from\":\"%s\",\"data\":2}", ida);
        REQUIRE(px_event(b, "room:x", got, sizeof got) && px_event(c, "room:x", got, sizeof got));
        CHECK_EQ_STR(got, expected);
        REQUIRE((form ? px_media_unusual_escapes(a, "1", "room:x", "{\"type\":\"custom\",\"type\":\"hop\"}")
                      : px_media(a, "1", "room:x", "{\"type\":\"custom\",\"type\":\"hop\"}")) == 0);
        CHECK(px_error_event(a, "room:x"));
    }
    /* an unknown target, a target that is no string, and E that is no JSON: errors either way */
    for (form = 0; form < 2; form++) {
        static const char *const wrong[] = {
            "{\"type\":\"custom\",\"to\":\"00000000-0000-4000-8000-000000000000\",\"data\":1}",
            "{\"type\":\"custom\",\"to\":7,\"data\":1}",
            "{\"type\":\"custom\",\"data\":[1,}",
            "{\"type\":\"custom\",\"data\":\"\\x\"}",
        };
        for (i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
            REQUIRE((form ? px_media_unusual_escapes(a, "1", "room:x", wrong[i]) : px_media(a, "1", "room:x", wrong[i])) == 0);
            CHECK(px_error_event(a, "room:x"));
        }
    }
    CHECK(px_quiet(b));
    CHECK(px_quiet(c));
    CHECK(px_finish(ts, a, b, c, NULL));
}

TEST(phoenix, relay_socket_close_peer_left) {
    ts_server *ts = px_server();
    ts_client *a, *b, *c, *d;
    char ida[37], idb[37], idc[37], e[PX_TEXT], expected[400];
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    d = px_v2(ts);
    REQUIRE(a && b && c && d);
    REQUIRE(px_join(a, "room:s", "1"));
    REQUIRE(px_join(b, "room:s", "1"));
    REQUIRE(px_join(c, "room:s", "1"));
    REQUIRE(px_join(d, "room:s", "1"));
    REQUIRE(px_relay_join(a, "1", "room:s", "1", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:s", "2", idb, NULL, 0));
    REQUIRE(px_event(a, "room:s", e, sizeof e));
    REQUIRE(px_relay_join(c, "1", "room:s", "3", idc, NULL, 0));
    REQUIRE(px_event(a, "room:s", e, sizeof e));
    REQUIRE(px_event(b, "room:s", e, sizeof e));
    /* b's socket closes: the joined peers hear peerLeft */
    ts_client_free(b);
    b = NULL;
    REQUIRE(ts_wait_count(ts, &ts->close_count, 1, PX_WAIT_MS));
    snprintf(expected, sizeof expected, "{\"type\":\"peerLeft\",\"data\":{\"peerId\":\"%s\"}}", idb);
    PX_EXPECT_EVENT(a, "room:s", expected);
    PX_EXPECT_EVENT(c, "room:s", expected);
    CHECK(px_quiet(d)); /* d never joined the relay */
    /* d's socket closes: it never joined the relay, so nobody hears of it */
    ts_client_free(d);
    d = NULL;
    REQUIRE(ts_wait_count(ts, &ts->close_count, 2, PX_WAIT_MS));
    CHECK(px_quiet(a));
    CHECK(px_quiet(c));
    CHECK_EQ_INT(ts->server->channel_count, 2);
    CHECK(px_finish(ts, a, c, NULL));
}

TEST(phoenix, relay_data_as_object) {
    ts_server *ts = px_server();
    ts_client *a, *b;
    char got[PX_TEXT], ida[37], idb[37], expected[400], e[PX_TEXT];
    int op;
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:o", "1"));
    REQUIRE(px_join(b, "room:o", "1"));
    REQUIRE(px_relay_join(a, "1", "room:o", "null", ida, NULL, 0));
    /* D as an object, not a string holding one */
    REQUIRE(px_media_raw(b, "1", "room:o", "{\"type\":\"join\",\"data\":{\"metadata\":{\"x\":1}}}") == 0);
    REQUIRE(px_event(b, "room:o", e, sizeof e));
    CHECK(px_field_string(e, "data.id", idb, sizeof idb));
    snprintf(expected, sizeof expected,
             "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":null}]}}", idb, ida);
    PX_CHECK_JSON(e, expected);
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":{\"x\":1}}}}", idb);
    PX_EXPECT_EVENT(a, "room:o", expected);
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":\"hi\"}", ida);
    REQUIRE(px_media_raw(b, "1", "room:o", e) == 0);
    /* the events the room sends are always a JSON string holding compact JSON */
    REQUIRE(px_recv(a, got, sizeof got, &op) > 0);
    snprintf(expected, sizeof expected,
             "[\"1\",null,\"room:o\",\"mediaEvent\",{\"data\":\"{\\\"type\\\":\\\"custom\\\",\\\"from\\\":\\\"%s\\\",\\\"data\\\":\\\"hi\\\"}\"}]",
             idb);
    CHECK_EQ_STR(got, expected);
    CHECK(px_finish(ts, a, b, NULL));
}

TEST(phoenix, relay_errors) {
    ts_server *ts = px_server();
    ts_client *a, *b;
    char ida[37], idb[37], e[400];
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:e", "1"));
    REQUIRE(px_join(b, "room:e", "1"));
    REQUIRE(px_relay_join(b, "1", "room:e", "null", idb, NULL, 0));
    /* before join */
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"custom\",\"data\":1}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"leave\"}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":1}}") == 0);
    CHECK(px_error_event(a, "room:e"));
    /* unknown type, no type, D not JSON, E not an object */
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"dance\"}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":5}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"data\":{}}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"join\"") == 0); /* a string, not JSON */
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "[{\"type\":\"join\"}]") == 0); /* an array */
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media_raw(a, "1", "room:e", "5") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media_raw(a, "1", "room:e", "null") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media_raw(a, "1", "room:e", "[1]") == 0);
    CHECK(px_error_event(a, "room:e"));
    CHECK(px_quiet(b)); /* none of that reached b */
    /* joined: unknown targets, self as target */
    REQUIRE(px_relay_join(a, "1", "room:e", "null", ida, NULL, 0));
    snprintf(e, sizeof e, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":null}}}", ida);
    PX_EXPECT_EVENT(b, "room:e", e);
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"custom\",\"to\":\"00000000-0000-4000-8000-000000000000\",\"data\":1}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"custom\",\"to\":5,\"data\":1}") == 0);
    CHECK(px_error_event(a, "room:e"));
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"custom\",\"to\":null,\"data\":1}") == 0);
    CHECK(px_error_event(a, "room:e"));
    snprintf(e, sizeof e, "{\"type\":\"custom\",\"to\":\"%s\",\"data\":1}", ida);
    REQUIRE(px_media(a, "1", "room:e", e) == 0);
    CHECK(px_error_event(a, "room:e"));
    /* a second join: an error, nothing else changes */
    REQUIRE(px_media(a, "1", "room:e", "{\"type\":\"join\",\"data\":{\"metadata\":\"again\"}}") == 0);
    CHECK(px_error_event(a, "room:e"));
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    {
        ts_client *c = px_v2(ts);
        char accepted[PX_TEXT], idc[37];
        REQUIRE(c);
        REQUIRE(px_join(c, "room:e", "1"));
        REQUIRE(px_relay_join(c, "1", "room:e", "0", idc, accepted, sizeof accepted));
        snprintf(e, sizeof e,
                 "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":null},"
                 "{\"id\":\"%s\",\"metadata\":null}]}}",
                 idc, idb, ida);
        PX_CHECK_JSON(accepted, e);
        CHECK(px_finish(ts, a, b, c, NULL));
    }
}

TEST(phoenix, relay_metadata_limits) {
    ts_server *ts = px_server_new();
    ts_client *a, *b, *c;
    char ida[37], idb[37], idc[37], accepted[PX_TEXT], expected[600];
    REQUIRE(ts);
    ts->desc.max_metadata_size = 16;
    REQUIRE(px_start(ts));
    a = px_v2(ts);
    b = px_v2(ts);
    c = px_v2(ts);
    REQUIRE(a && b && c);
    REQUIRE(px_join(a, "room:m", "1"));
    REQUIRE(px_join(b, "room:m", "1"));
    REQUIRE(px_join(c, "room:m", "1"));
    REQUIRE(px_relay_join(b, "1", "room:m", "null", idb, NULL, 0));
    /* 17 bytes of M on join: an error, not joined, b hears nothing */
    REQUIRE(px_media(a, "1", "room:m", "{\"type\":\"join\",\"data\":{\"metadata\":\"0123456789abcde\"}}") == 0);
    CHECK(px_error_event(a, "room:m"));
    CHECK(px_quiet(b));
    REQUIRE(px_media(a, "1", "room:m", "{\"type\":\"custom\",\"data\":1}") == 0);
    CHECK(px_error_event(a, "room:m")); /* still not joined */
    /* 16 bytes: fine */
    REQUIRE(px_relay_join(a, "1", "room:m", "\"0123456789abcd\"", ida, NULL, 0));
    snprintf(expected, sizeof expected, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"%s\",\"metadata\":\"0123456789abcd\"}}}", ida);
    PX_EXPECT_EVENT(b, "room:m", expected);
    /* too large an update: an error, the stored metadata unchanged, nobody hears */
    REQUIRE(px_media(a, "1", "room:m", "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":[1,2,3,4,5,6,7,8,9]}}") == 0);
    CHECK(px_error_event(a, "room:m"));
    CHECK(px_quiet(b));
    REQUIRE(px_relay_join(c, "1", "room:m", NULL, idc, accepted, sizeof accepted));
    snprintf(expected, sizeof expected,
             "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":null},"
             "{\"id\":\"%s\",\"metadata\":\"0123456789abcd\"}]}}",
             idc, idb, ida);
    PX_CHECK_JSON(accepted, expected);
    CHECK(px_finish(ts, a, b, c, NULL));
}

TEST(phoenix, relay_large_metadata_in_pool) {
    ts_server *ts = px_server();
    ts_client *a, *b;
    char ida[37], idb[37], metadata[900], accepted[PX_TEXT], field[PX_TEXT], expected[PX_TEXT];
    size_t i, at = 0;
    REQUIRE(ts);
    /* 700-odd bytes of metadata with escapes and non-ASCII text: longer than the 96 bytes a
       channel keeps inline, so it lives in pool blocks */
    at += (size_t)snprintf(metadata + at, sizeof metadata - at, "{\"name\":\"caf\xC3\xA9 \\\"q\\\"\",\"blob\":\"");
    for (i = 0; i < 600; i++) metadata[at++] = (char)('a' + i % 26);
    at += (size_t)snprintf(metadata + at, sizeof metadata - at, "\",\"n\":[1,{\"k\":null}]}");
    REQUIRE(at > 96 && at < 1024);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:big", "1"));
    REQUIRE(px_join(b, "room:big", "1"));
    REQUIRE(px_relay_join(a, "1", "room:big", metadata, ida, NULL, 0));
    CHECK(vrs_get_stats(ts->server).pool_blocks_used > 0);
    REQUIRE(px_relay_join(b, "1", "room:big", "\"small\"", idb, accepted, sizeof accepted));
    CHECK(px_field(accepted, "data.peersInRoom.0.metadata", field, sizeof field));
    CHECK_EQ_STR(field, metadata); /* byte for byte, as received */
    snprintf(expected, sizeof expected, "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"%s\",\"peersInRoom\":[{\"id\":\"%s\",\"metadata\":%s}]}}",
             idb, ida, metadata);
    PX_CHECK_JSON(accepted, expected);
    /* replaced by a small one, then back to a large one */
    REQUIRE(px_media(a, "1", "room:big", "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":1}}") == 0);
    REQUIRE(px_event(b, "room:big", field, sizeof field));
    snprintf(expected, sizeof expected, "{\"type\":\"updatePeerMetadata\",\"data\":{\"metadata\":%s}}", metadata);
    REQUIRE(px_media(a, "1", "room:big", expected) == 0);
    REQUIRE(px_event(b, "room:big", field, sizeof field));
    snprintf(expected, sizeof expected, "{\"type\":\"peerUpdated\",\"data\":{\"peerId\":\"%s\",\"metadata\":%s}}", ida, metadata);
    PX_CHECK_JSON(field, expected);
    {
        ts_client *c = px_v2(ts);
        char idc[37];
        REQUIRE(c);
        REQUIRE(px_join(c, "room:big", "1"));
        REQUIRE(px_relay_join(c, "1", "room:big", NULL, idc, accepted, sizeof accepted));
        CHECK(px_field(accepted, "data.peersInRoom.0.metadata", field, sizeof field));
        CHECK_EQ_STR(field, metadata);
        CHECK(px_finish(ts, a, b, c, NULL));
    }
}

TEST(phoenix, relay_peer_ids_uuid_v4) {
    ts_server *ts = px_server();
    ts_client *c[5];
    char ids[5][37];
    int i, j;
    REQUIRE(ts);
    for (i = 0; i < 5; i++) {
        c[i] = px_v2(ts);
        REQUIRE(c[i]);
        REQUIRE(px_join(c[i], i < 3 ? "room:id1" : "room:id2", "1"));
        REQUIRE(px_relay_join(c[i], "1", i < 3 ? "room:id1" : "room:id2", "null", ids[i], NULL, 0));
        if (!px_is_uuid_v4(ids[i])) VRS_TEST_FAIL("not a UUID v4: %s", ids[i]);
        CHECK_EQ_STR(vrs_peer_id(ts->server, vrs_find_peer(ts->server, ids[i])), ids[i]);
        for (j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0) VRS_TEST_FAIL("the same id twice: %s", ids[i]);
    }
    CHECK(px_finish(ts, c[0], c[1], c[2], c[3], c[4], NULL));
}

TEST(phoenix, relay_room_close_sends_no_peer_left) {
    ts_server *ts = px_server();
    ts_client *a, *b;
    char ida[37], idb[37], got[PX_TEXT], field[64], e[PX_TEXT];
    int op;
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:z", "1"));
    REQUIRE(px_join(b, "room:z", "2"));
    REQUIRE(px_relay_join(a, "1", "room:z", "null", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "2", "room:z", "null", idb, NULL, 0));
    REQUIRE(px_event(a, "room:z", e, sizeof e));
    CHECK_EQ_INT(vrs_room_close(ts->server, vrs_find_room(ts->server, "z")), VRS_OK);
    REQUIRE(px_recv(a, got, sizeof got, &op) > 0);
    CHECK(px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_error") == 0);
    CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "\"1\"") == 0);
    REQUIRE(px_recv(b, got, sizeof got, &op) > 0);
    CHECK(px_field_string(got, "3", field, sizeof field) && strcmp(field, "phx_error") == 0);
    CHECK(px_field(got, "0", field, sizeof field) && strcmp(field, "\"2\"") == 0);
    CHECK(px_quiet(a));
    CHECK(px_quiet(b));
    CHECK_EQ_INT(ts->server->room_count, 0);
    /* rejoin, as phoenix.js does after phx_error: a new room, new ids */
    REQUIRE(px_join(a, "room:z", "3"));
    REQUIRE(px_relay_join(a, "3", "room:z", "null", idb, got, sizeof got));
    CHECK(strcmp(idb, ida) != 0);
    CHECK(!px_field(got, "data.peersInRoom.0", field, sizeof field));
    CHECK(px_finish(ts, a, b, NULL));
}

/* A socket the server closes (here for an undecodable message) leaves its rooms at once: the
   others hear peerLeft while the closed client has not yet answered the close, instead of
   after close_timeout_ms. */
TEST(phoenix, relay_peer_left_as_soon_as_the_server_closes) {
    ts_server *ts = px_server_new();
    ts_client *a, *b;
    ts_frame f;
    char ida[37], idb[37], e[PX_TEXT], expected[400];
    REQUIRE(ts);
    ts->desc.close_timeout_ms = 5000; /* longer than the waits below */
    ts = px_start(ts);
    REQUIRE(ts);
    a = px_v2(ts);
    b = px_v2(ts);
    REQUIRE(a && b);
    REQUIRE(px_join(a, "room:q", "1"));
    REQUIRE(px_join(b, "room:q", "1"));
    REQUIRE(px_relay_join(a, "1", "room:q", "1", ida, NULL, 0));
    REQUIRE(px_relay_join(b, "1", "room:q", "2", idb, NULL, 0));
    REQUIRE(px_event(a, "room:q", e, sizeof e)); /* peerJoined */
    REQUIRE(ts_send_text(b, "not json") == 0);
    REQUIRE_EQ_INT(ts_read_close(b, &f, PX_WAIT_MS), 1007); /* b does not answer the close */
    snprintf(expected, sizeof expected, "{\"type\":\"peerLeft\",\"data\":{\"peerId\":\"%s\"}}", idb);
    PX_EXPECT_EVENT(a, "room:q", expected);
    CHECK_EQ_INT(ts->server->channel_count, 1);
    ts_client_free(b);
    CHECK(px_finish(ts, a, NULL));
}
