/* Fuzz target: the Phoenix message decoders vrs__decode_v1, vrs__decode_v2 and
   vrs__decode_v2_binary, and the envelope writer.

   Input: one client message, given to all three decoders (each reading a buffer of the exact
   size). On success:
   - join_ref and ref are scalar JSON values (string, number or null), topic_json is a JSON
     string whose decoding is m.topic (when it fits), the event and topic are valid UTF-8, the
     lengths fit their buffers, a text payload is valid JSON, a binary payload is the input's
     tail;
   - the envelope is written back (vrs__envelope_pieces, V1 and V2, as vrs__send_envelope
     writes replies) and must be valid JSON by the reference reader, and decode again (with the
     matching decoder) to the same topic, event and refs. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

static void check_scalar(vrs__json_slice v) {
    vrs__json_kind kind = vrs__json_kind_of(v);
    FZ_CHECK(kind == VRS__JSON_STRING || kind == VRS__JSON_NUMBER || kind == VRS__JSON_NULL);
    FZ_CHECK_MSG(fz_json_valid(v.start, v.length, 1), "a ref is not JSON: %.*s", (int)v.length, v.start);
}

static void check_names(const vrs__message *m) {
    FZ_CHECK(vrs__json_kind_of(m->topic_json) == VRS__JSON_STRING);
    FZ_CHECK(fz_json_valid(m->topic_json.start, m->topic_json.length, 0));
    FZ_CHECK(m->topic_length >= -1 && m->topic_length <= (long)sizeof m->topic);
    FZ_CHECK(m->event_length >= -1 && m->event_length <= (long)sizeof m->event);
    if (m->topic_length >= 0) {
        uint8_t *expected = (uint8_t *)malloc(m->topic_json.length);
        size_t n;
        FZ_CHECK(expected != NULL);
        n = fz_json_decode_string((const uint8_t *)m->topic_json.start, m->topic_json.length, expected);
        FZ_CHECK(n == (size_t)m->topic_length && memcmp(expected, m->topic, n) == 0);
        FZ_CHECK(fz_utf8_valid((const uint8_t *)m->topic, (size_t)m->topic_length));
        free(expected);
    }
    if (m->event_length >= 0) FZ_CHECK(fz_utf8_valid((const uint8_t *)m->event, (size_t)m->event_length));
}

/* The event as the server sees it: a C string (empty when it did not fit). */
static const char *event_text(const vrs__message *m, char out[65]) {
    if (m->event_length < 0) {
        out[0] = '\0';
    } else {
        memcpy(out, m->event, (size_t)m->event_length);
        out[m->event_length] = '\0';
    }
    return out;
}

static int slices_equal(vrs__json_slice a, vrs__json_slice b) {
    return a.length == b.length && (a.length == 0 || memcmp(a.start, b.start, a.length) == 0);
}

/* Writes one message as vrs__send_envelope does: the event JSON-encoded, then the envelope's
   pieces (vrs__envelope_pieces) one after the other. Returns its length, or 0 on overflow. */
static size_t write_envelope(char *out, size_t capacity, int vsn, vrs__json_slice join_ref, vrs__json_slice ref,
                             vrs__json_slice topic, const char *event, const char *payload, size_t payload_length) {
    char event_json[512];
    vrs__json_writer e, w;
    vrs__piece pieces[VRS__ENVELOPE_PIECES], body;
    int count, i;
    vrs__jw_init(&e, event_json, sizeof event_json);
    vrs__jw_cstring(&e, event);
    FZ_CHECK(!e.overflowed);
    body = vrs__text_piece(payload, payload_length);
    count = vrs__envelope_pieces(pieces, vsn, vrs__text_piece(join_ref.start, join_ref.length),
                                 vrs__text_piece(ref.start, ref.length), vrs__text_piece(topic.start, topic.length),
                                 vrs__text_piece(e.buffer, e.length), &body, 1);
    FZ_CHECK(count > 0 && count <= VRS__ENVELOPE_PIECES);
    vrs__jw_init(&w, out, capacity);
    for (i = 0; i < count; i++) vrs__jw_raw(&w, (const char *)pieces[i].bytes, pieces[i].length);
    return w.overflowed ? 0 : w.length;
}

static void round_trip(const vrs__message *m, int vsn) {
    char event[65];
    const char *payload = m->payload_is_binary ? "{}" : m->payload.start;
    size_t payload_length = m->payload_is_binary ? 2 : m->payload.length;
    size_t capacity = m->join_ref.length + m->ref.length + m->topic_json.length + 6 * 64 + payload_length + 64;
    char *buffer = (char *)malloc(capacity);
    vrs__json_writer w;
    vrs__message *again = (vrs__message *)calloc(1, sizeof *again);
    FZ_CHECK(buffer && again);
    event_text(m, event);
    vrs__jw_init(&w, buffer, capacity);
    w.length = write_envelope(buffer, capacity, vsn, m->join_ref, m->ref, m->topic_json, event, payload,
                              payload_length);
    w.overflowed = w.length == 0;
    FZ_CHECK(!w.overflowed);
    FZ_CHECK_MSG(fz_json_valid(w.buffer, w.length, VRS__MAX_JSON_DEPTH + 2), "envelope is not JSON: %.*s",
                 (int)(w.length < 300 ? w.length : 300), w.buffer);
    FZ_CHECK(vrs__json_validate(w.buffer, w.length, VRS__MAX_JSON_DEPTH + 2));
    if (vsn == 2) {
        FZ_CHECK(vrs__decode_v2(w.buffer, w.length, again));
        FZ_CHECK(slices_equal(again->join_ref, m->join_ref));
    } else {
        FZ_CHECK(vrs__decode_v1(w.buffer, w.length, again));
        FZ_CHECK(vrs__json_is_null(again->join_ref));
    }
    FZ_CHECK(slices_equal(again->ref, m->ref));
    FZ_CHECK(slices_equal(again->topic_json, m->topic_json));
    FZ_CHECK(again->topic_length == m->topic_length);
    if (m->topic_length >= 0) FZ_CHECK(memcmp(again->topic, m->topic, (size_t)m->topic_length) == 0);
    {
        char event_again[65];
        size_t n = strlen(event);
        FZ_CHECK(again->event_length == (long)n && memcmp(again->event, event, n) == 0);
        (void)event_again;
    }
    FZ_CHECK(again->payload.length == payload_length && memcmp(again->payload.start, payload, payload_length) == 0);
    free(again);
    free(buffer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = fz_exact_copy(data, size);
    vrs__message *m = (vrs__message *)malloc(sizeof *m);
    int decoder;
    FZ_CHECK(m != NULL);
    for (decoder = 0; decoder < 3; decoder++) {
        int ok;
        memset(m, 0, offsetof(vrs__message, encoded));
        if (decoder == 0) ok = vrs__decode_v1((const char *)copy, size, m);
        else if (decoder == 1) ok = vrs__decode_v2((const char *)copy, size, m);
        else ok = vrs__decode_v2_binary(copy, size, m);
        if (!ok) continue;
        check_scalar(m->join_ref);
        check_scalar(m->ref);
        check_names(m);
        if (decoder < 2) {
            FZ_CHECK(!m->payload_is_binary);
            FZ_CHECK(fz_json_valid(m->payload.start, m->payload.length, VRS__MAX_JSON_DEPTH));
            FZ_CHECK(fz_json_valid(copy, size, VRS__MAX_JSON_DEPTH));
        } else {
            FZ_CHECK(m->payload_is_binary && copy[0] == 0);
            FZ_CHECK(m->payload.start >= (const char *)copy && m->payload.start + m->payload.length == (const char *)copy + size);
            FZ_CHECK(vrs__json_kind_of(m->join_ref) == VRS__JSON_STRING && vrs__json_kind_of(m->ref) == VRS__JSON_STRING);
            FZ_CHECK((size_t)m->topic_length == copy[3]);
            FZ_CHECK(m->event_length == (copy[4] < 64 ? (long)copy[4] : -1));
        }
        round_trip(m, 2);
        round_trip(m, 1);
    }
    free(m);
    free(copy);
    return 0;
}
