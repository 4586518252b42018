/* Fuzz target: the strict JSON reader (vrs__json_validate and the cursor functions) and the
   string writer (vrs__jw_string).

   Input: JSON text, as is.
   - vrs__json_validate is compared with a separate recursive-descent reference reader
     (fuzz_common.h) at several nesting limits (0, 3, 64, 1024, and 5000, which the library
     clamps to VRS__JSON_MAX_DEPTH): both accept or both reject.
   - On accepted text every value is walked with the cursor API (kind_of, enter, next_element,
     next_member) and the walk must meet exactly the values and keys the reference met, span
     for span. Every string is decoded (vrs__json_string_decode) and must equal the reference
     decoding, fit in a buffer of the token's length, be valid UTF-8, compare equal with
     vrs__json_string_equals, and survive a round trip through vrs__jw_string. Every key is
     looked up with vrs__json_object_get, which must find the last member of that name.
   - On rejected text the cursor functions still walk it: they must not crash or read past
     the end (the library documents that garbage only makes them return 0). */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

typedef struct walk_state {
    const char *base;
    fz_json_event *events; /* the walk's own record */
    size_t count, capacity;
    int check;             /* 1: the text is valid, so check everything */
} walk_state;

static void record(walk_state *w, int kind, const char *start, size_t length) {
    if (w->count == w->capacity) {
        size_t capacity = w->capacity ? w->capacity * 2 : 64;
        fz_json_event *grown = (fz_json_event *)realloc(w->events, capacity * sizeof *grown);
        FZ_CHECK(grown != NULL);
        w->events = grown;
        w->capacity = capacity;
    }
    w->events[w->count].kind = kind;
    w->events[w->count].start = (size_t)(start - w->base);
    w->events[w->count].end = (size_t)(start - w->base) + length;
    w->count++;
}

static int kind_code(vrs__json_kind kind) {
    switch (kind) {
    case VRS__JSON_NULL: return FZ_J_NULL;
    case VRS__JSON_FALSE: return FZ_J_FALSE;
    case VRS__JSON_TRUE: return FZ_J_TRUE;
    case VRS__JSON_NUMBER: return FZ_J_NUMBER;
    case VRS__JSON_STRING: return FZ_J_STRING;
    case VRS__JSON_ARRAY: return FZ_J_ARRAY;
    case VRS__JSON_OBJECT: return FZ_J_OBJECT;
    case VRS__JSON_INVALID: break;
    }
    return 0;
}

/* Decodes a string token and checks the result every way there is. */
static void check_string(walk_state *w, vrs__json_slice token) {
    size_t n = token.length, i;
    char *out = (char *)malloc(n + 1);
    uint8_t *expected = (uint8_t *)malloc(n + 1);
    long decoded;
    FZ_CHECK(out && expected);
    decoded = vrs__json_string_decode(token, out, n);
    if (!w->check) {
        free(out);
        free(expected);
        return;
    }
    {
        size_t want = fz_json_decode_string((const uint8_t *)token.start, n, expected);
        FZ_CHECK_MSG(decoded >= 0, "a valid string did not decode into its token's length");
        FZ_CHECK_MSG((size_t)decoded == want && memcmp(out, expected, want) == 0,
                     "decoded %ld bytes, the reference %zu", decoded, want);
    }
    FZ_CHECK_MSG(fz_utf8_valid((const uint8_t *)out, (size_t)decoded), "decoded string is not UTF-8");
    /* an exact fit, and one byte short */
    {
        char *exact = (char *)malloc((size_t)decoded ? (size_t)decoded : 1);
        FZ_CHECK(exact != NULL);
        FZ_CHECK(vrs__json_string_decode(token, exact, (size_t)decoded) == decoded);
        if (decoded > 0) FZ_CHECK(vrs__json_string_decode(token, exact, (size_t)decoded - 1) == -1);
        free(exact);
    }
    /* equality with the decoded text, when it has no NUL */
    if (memchr(out, 0, (size_t)decoded) == NULL) {
        out[decoded] = '\0';
        FZ_CHECK(vrs__json_string_equals(token, out) == 1);
        if (decoded > 0) {
            char saved = out[decoded - 1];
            out[decoded - 1] = '\0';
            FZ_CHECK(vrs__json_string_equals(token, out) == 0);
            out[decoded - 1] = saved;
        }
    }
    /* the writer: back to a JSON string that decodes to the same bytes */
    {
        size_t capacity = 6 * (size_t)decoded + 2;
        char *written = (char *)malloc(capacity);
        uint8_t *again = (uint8_t *)malloc(capacity);
        vrs__json_writer jw;
        FZ_CHECK(written && again);
        vrs__jw_init(&jw, written, capacity);
        vrs__jw_string(&jw, out, (size_t)decoded);
        FZ_CHECK(!jw.overflowed);
        FZ_CHECK_MSG(fz_json_valid(written, jw.length, 1), "the writer's string is not JSON");
        FZ_CHECK(fz_json_decode_string((const uint8_t *)written, jw.length, again) == (size_t)decoded);
        FZ_CHECK(memcmp(again, out, (size_t)decoded) == 0);
        for (i = 0; i < jw.length; i++) FZ_CHECK((unsigned char)written[i] >= 0x20);
        /* U+2028 and U+2029 never go out raw */
        for (i = 0; i + 2 < jw.length; i++)
            FZ_CHECK(!((unsigned char)written[i] == 0xE2 && (unsigned char)written[i + 1] == 0x80 &&
                       ((unsigned char)written[i + 2] == 0xA8 || (unsigned char)written[i + 2] == 0xA9)));
        /* too small a buffer: overflowed, nothing past the capacity */
        if (jw.length > 1) {
            vrs__json_writer small;
            vrs__jw_init(&small, written, jw.length - 1);
            vrs__jw_string(&small, out, (size_t)decoded);
            FZ_CHECK(small.overflowed && small.length <= jw.length - 1);
        }
        free(written);
        free(again);
    }
    free(out);
    free(expected);
}

static void walk(walk_state *w, vrs__json_slice value, int depth) {
    vrs__json_kind kind = vrs__json_kind_of(value);
    vrs__json_cursor cursor;
    if (w->check) FZ_CHECK(kind != VRS__JSON_INVALID);
    record(w, kind_code(kind), value.start, value.length);
    if (depth > 5000) return;
    if (kind == VRS__JSON_STRING) {
        check_string(w, value);
    } else if (kind == VRS__JSON_ARRAY) {
        vrs__json_slice element;
        int entered = vrs__json_enter(value, &cursor);
        if (w->check) FZ_CHECK(entered);
        while (vrs__json_next_element(&cursor, &element)) walk(w, element, depth + 1);
        if (w->check) FZ_CHECK(cursor.at == cursor.end);
    } else if (kind == VRS__JSON_OBJECT) {
        vrs__json_slice key, member;
        int entered = vrs__json_enter(value, &cursor), members = 0;
        if (w->check) FZ_CHECK(entered);
        while (vrs__json_next_member(&cursor, &key, &member)) {
            record(w, FZ_J_KEY, key.start, key.length);
            check_string(w, key);
            walk(w, member, depth + 1);
            members++;
        }
        if (w->check) FZ_CHECK(cursor.at == cursor.end);
        /* lookups by name: the last member of that name wins */
        if (w->check && members <= 16) {
            vrs__json_cursor again;
            vrs__json_enter(value, &again);
            while (vrs__json_next_member(&again, &key, &member)) {
                char name[256];
                long length = vrs__json_string_decode(key, name, sizeof name - 1);
                vrs__json_cursor scan;
                vrs__json_slice k2, v2, last, found;
                if (length < 0 || memchr(name, 0, (size_t)length)) continue;
                name[length] = '\0';
                last.start = NULL;
                last.length = 0;
                vrs__json_enter(value, &scan);
                while (vrs__json_next_member(&scan, &k2, &v2))
                    if (vrs__json_string_equals(k2, name)) last = v2;
                FZ_CHECK(vrs__json_object_get(value, name, &found));
                FZ_CHECK(found.start == last.start && found.length == last.length);
            }
        }
    } else if (kind == VRS__JSON_NUMBER && w->check) {
        /* a number's slice is exactly what the reader scanned */
        FZ_CHECK(vrs__json_scan_number(value.start, value.start + value.length) == value.start + value.length);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int depths[] = {1024, 64, 3, 0, 5000};
    char *text = (char *)fz_exact_copy(data, size);
    size_t d;
    int valid = 0;
    fz_json reference;
    walk_state w;
    memset(&reference, 0, sizeof reference);
    memset(&w, 0, sizeof w);
    for (d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        int limit = depths[d] > VRS__JSON_MAX_DEPTH ? VRS__JSON_MAX_DEPTH : depths[d];
        int got = vrs__json_validate(text, size, depths[d]);
        int want = d == 0 ? fz_json_valid_recording(&reference, text, size, limit) : fz_json_valid(text, size, limit);
        FZ_CHECK_MSG(got == want, "max_depth %d: vrs__json_validate says %d, the reference %d", depths[d], got, want);
        if (d == 0) valid = got;
    }
    FZ_CHECK(vrs__json_validate(NULL, 0, 64) == 0);
    w.base = text;
    w.check = valid;
    {
        vrs__json_slice whole;
        whole.start = text;
        whole.length = size;
        whole = vrs__json_trim(whole);
        if (valid || size > 0) walk(&w, whole, 0);
    }
    if (valid) {
        size_t i;
        FZ_CHECK_MSG(w.count == reference.event_count, "the walk met %zu values, the reference %zu", w.count,
                     reference.event_count);
        for (i = 0; i < w.count; i++)
            FZ_CHECK_MSG(w.events[i].kind == reference.events[i].kind && w.events[i].start == reference.events[i].start &&
                             w.events[i].end == reference.events[i].end,
                         "value %zu: walk kind %d [%zu,%zu), reference kind %d [%zu,%zu)", i, w.events[i].kind,
                         w.events[i].start, w.events[i].end, reference.events[i].kind, reference.events[i].start,
                         reference.events[i].end);
    }
    free(w.events);
    fz_json_free(&reference);
    free(text);
    return 0;
}
