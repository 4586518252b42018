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
     the end (the library documents that garbage only makes them return 0).
   - Escaped mode (vrs__json_validate_recording with escaped = 1), when the text E is UTF-8:
     E is escaped by vrs__jw_string_content into D's content, which is read in escaped mode
     and compared with E read plainly, at nesting limits 1024 and 2. Escaped mode must accept
     exactly when the plain reading accepts and E has no raw U+2028/U+2029 (the writer's only
     escapes that a valid E holds besides E's own quotes, backslashes and whitespace); then it
     must record as many top-level members, and each recorded key and value, decoded as D
     decodes it, must be the plain reading's bytes. Record capacities 8, 1, 0 and no record
     all run, and nothing past the capacity is written. A second D escapes every '/' as `\/`
     too (as some writers do): when E has a '/', escaped mode must return 0. A third D is what
     JSON.stringify writes, U+2028/U+2029 raw: escaped mode must accept every valid E in it.
   - The public helpers (vrs_json_*): check_public below. */
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
    size_t offset = (size_t)(start - w->base);
    fz_events_push(&w->events, &w->count, &w->capacity, kind, offset, offset + length);
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

/* ---- Escaped mode: E read where it stands inside a string D ---- */

/* A raw U+2028 or U+2029 in E: the writer escapes them (\u2028, \u2029), which escaped mode
   leaves to the decoded reading. */
static int has_line_separator(const char *e, size_t n) {
    size_t i;
    for (i = 0; i + 2 < n; i++)
        if ((unsigned char)e[i] == 0xE2 && (unsigned char)e[i + 1] == 0x80 &&
            ((unsigned char)e[i + 2] == 0xA8 || (unsigned char)e[i + 2] == 0xA9))
            return 1;
    return 0;
}

/* A slice escaped mode recorded, decoded as a string of D with that content, must be the bytes
   the plain reading recorded for the same member. */
static void check_decoded_slice(vrs__json_slice escaped, const char *content, size_t content_length,
                                vrs__json_slice plain, const char *what, int index) {
    char *quoted = (char *)malloc(escaped.length + 2), *out = (char *)malloc(escaped.length + 1);
    vrs__json_slice token;
    long decoded;
    FZ_CHECK(quoted && out);
    FZ_CHECK_MSG((escaped.start == NULL) == (plain.start == NULL), "member %d: %s recorded in one mode only", index,
                 what);
    if (escaped.start)
        FZ_CHECK_MSG(escaped.start >= content && escaped.length <= content_length - (size_t)(escaped.start - content),
                     "member %d: %s slice outside the text", index, what);
    quoted[0] = '"';
    if (escaped.length) memcpy(quoted + 1, escaped.start, escaped.length);
    quoted[escaped.length + 1] = '"';
    token.start = quoted;
    token.length = escaped.length + 2;
    /* decoding never lengthens: capacity = the slice's length */
    decoded = vrs__json_string_decode(token, out, escaped.length);
    FZ_CHECK_MSG(decoded >= 0, "member %d: escaped %s \"%.*s\" does not decode", index, what, (int)escaped.length,
                 escaped.start ? escaped.start : "");
    FZ_CHECK_MSG((size_t)decoded == plain.length && (plain.length == 0 || memcmp(out, plain.start, plain.length) == 0),
                 "member %d: escaped %s decodes to \"%.*s\", plain %s is \"%.*s\"", index, what, (int)decoded, out, what,
                 (int)plain.length, plain.start ? plain.start : "");
    free(quoted);
    free(out);
}

/* Reads D's content in escaped mode and compares it with the plain reading of E (`plain`:
   its verdict; `p`: its record, capacity 8). `must_accept`: the verdict escaped mode owes. */
static void check_escaped(const char *content, size_t length, int max_depth, int plain, const vrs__json_record *p,
                          int must_accept, const char *form) {
    static const int capacities[] = {8, 1, 0};
    size_t c;
    int got = vrs__json_validate_recording(content, length, max_depth, 1, NULL);
    FZ_CHECK_MSG(got == must_accept, "%s, max_depth %d, no record: escaped mode says %d, expected %d (plain %d)", form,
                 max_depth, got, must_accept, plain);
    for (c = 0; c < sizeof capacities / sizeof capacities[0]; c++) {
        vrs__json_member members[9];
        vrs__json_record record;
        int capacity = capacities[c], i;
        memset(members, 0, sizeof members);
        memset(&record, 0, sizeof record);
        record.members = capacity ? members : NULL;
        record.capacity = capacity;
        record.nested_parent = -1;
        got = vrs__json_validate_recording(content, length, max_depth, 1, &record);
        FZ_CHECK_MSG(got == must_accept, "%s, max_depth %d, capacity %d: escaped mode says %d, expected %d (plain %d)",
                     form, max_depth, capacity, got, must_accept, plain);
        /* an overflowing record writes nothing past its capacity */
        for (i = capacity; i < 9; i++) FZ_CHECK(members[i].value.start == NULL && members[i].key.start == NULL);
        if (!got) continue;
        FZ_CHECK_MSG(record.count == p->count, "%s, max_depth %d, capacity %d: escaped mode counts %d members, plain %d",
                     form, max_depth, capacity, record.count, p->count);
        for (i = 0; i < record.count && i < capacity; i++) {
            check_decoded_slice(members[i].key, content, length, p->members[i].key, "key", i);
            check_decoded_slice(members[i].value, content, length, p->members[i].value, "value", i);
        }
    }
}

/* E as D would carry it, read both ways. E must be valid UTF-8 (the writer's precondition). */
static void check_escaped_forms(const char *text, size_t size) {
    static const int depths[] = {1024, 2};
    size_t capacity = 6 * size + 16, i, slashes = 0;
    char *written = (char *)malloc(capacity), *content, *with_slashes = NULL, *stringified = NULL;
    size_t stringified_length = 0;
    int separator = has_line_separator(text, size);
    size_t d;
    vrs__json_writer jw;
    FZ_CHECK(written != NULL);
    vrs__jw_init(&jw, written, capacity);
    vrs__jw_string_content(&jw, text, size);
    FZ_CHECK(!jw.overflowed);
    content = (char *)fz_exact_copy(written, jw.length); /* so ASan sees a read past D's end */
    /* D as JSON.stringify writes it, which is the writer's D but for U+2028/U+2029, left raw:
       escaped mode must then read every valid E. Each backslash of D begins an escape. */
    if (separator) {
        size_t o = 0;
        stringified = (char *)malloc(jw.length);
        FZ_CHECK(stringified != NULL);
        for (i = 0; i < jw.length; i++) {
            if (written[i] == '\\' && jw.length - i >= 6 && written[i + 1] == 'u' &&
                (memcmp(written + i + 2, "2028", 4) == 0 || memcmp(written + i + 2, "2029", 4) == 0)) {
                memcpy(stringified + o, written[i + 5] == '8' ? "\xE2\x80\xA8" : "\xE2\x80\xA9", 3);
                o += 3;
                i += 5;
                continue;
            }
            if (written[i] == '\\') stringified[o++] = written[i++]; /* the escape's letter is no backslash */
            stringified[o++] = written[i];
        }
        stringified_length = o;
        {
            char *exact = (char *)fz_exact_copy(stringified, o);
            free(stringified);
            stringified = exact;
        }
    }
    /* the second D: '/' only comes from E (the writer never adds one), and goes out as \/ */
    for (i = 0; i < jw.length; i++) slashes += written[i] == '/';
    if (slashes) {
        size_t o = 0;
        with_slashes = (char *)fz_exact_copy(written, jw.length + slashes);
        for (i = 0; i < jw.length; i++) {
            if (written[i] == '/') with_slashes[o++] = '\\';
            with_slashes[o++] = written[i];
        }
    }
    for (d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        vrs__json_member members[8];
        vrs__json_record record;
        int plain;
        memset(&record, 0, sizeof record);
        record.members = members;
        record.capacity = 8;
        record.nested_parent = -1;
        plain = vrs__json_validate_recording(text, size, depths[d], 0, &record);
        check_escaped(content, jw.length, depths[d], plain, &record, plain && !separator, "D");
        /* with no '/' the second D is the first; with no U+2028/U+2029, the third */
        if (slashes) check_escaped(with_slashes, jw.length + slashes, depths[d], plain, &record, 0, "D with \\/");
        if (separator)
            check_escaped(stringified, stringified_length, depths[d], plain, &record, plain, "D as JSON.stringify");
    }
    free(written);
    free(content);
    free(with_slashes);
    free(stringified);
}

/* The public helpers (vrs_json_*) on the same text: they accept exactly what validation
   accepts, find every top-level member and element the iteration meets, decode strings as the
   private decoder does, read integers as strtoll does, and the writer's string and raw value
   read back as the input bytes. */
static void check_public(const char *text, size_t size, int valid) {
    vrs_json_iterator it;
    vrs_span key, value, whole;
    char *out = (char *)malloc(size + 1);
    FZ_CHECK(out != NULL);
    FZ_CHECK((vrs_json_type_of(text, size) == VRS_JSON_INVALID) == !valid);
    FZ_CHECK((vrs_json_find(text, size, "", &whole) == VRS_OK) == valid);
    if (valid && vrs_json_iterate(text, size, NULL, &it) == VRS_OK) {
        int index = 0;
        while (vrs_json_next(&it, &key, &value)) {
            size_t length = 0;
            vrs_span found;
            char path[16];
            vrs_json_type type = vrs_json_type_of(value.ptr, value.length);
            FZ_CHECK(type != VRS_JSON_INVALID);
            if (it.is_object) {
                FZ_CHECK(vrs_json_get_string(key.ptr, key.length, "", out, size + 1, &length) == VRS_OK);
                if (!memchr(out, 0, length)) FZ_CHECK(vrs_json_member(text, size, out, &found) == VRS_OK);
                if (!memchr(out, 0, length) && !memchr(out, '.', length))
                    FZ_CHECK(vrs_json_find(text, size, out, &found) == VRS_OK);
            } else {
                snprintf(path, sizeof path, "%d", index);
                FZ_CHECK(vrs_json_find(text, size, path, &found) == VRS_OK);
                FZ_CHECK(found.ptr == value.ptr && found.length == value.length);
            }
            if (type == VRS_JSON_STRING) {
                vrs__json_slice token;
                long want;
                token.start = value.ptr;
                token.length = value.length;
                want = vrs__json_string_decode(token, out, size);
                FZ_CHECK(want >= 0);
                {
                    char *again = (char *)malloc((size_t)want + 1);
                    FZ_CHECK(again != NULL);
                    FZ_CHECK(vrs_json_get_string(value.ptr, value.length, "", again, (size_t)want + 1, &length) == VRS_OK);
                    FZ_CHECK(length == (size_t)want && memcmp(again, out, length) == 0 && again[length] == '\0');
                    if (want > 0)
                        FZ_CHECK(vrs_json_get_string(value.ptr, value.length, "", again, (size_t)want, &length) ==
                                 VRS_ERROR_BUFFER_TOO_SMALL);
                    free(again);
                }
            } else if (type == VRS_JSON_NUMBER) {
                int64_t number = 0;
                vrs_result got = vrs_json_get_int(value.ptr, value.length, "", &number);
                char digits[32];
                int integral = value.length < sizeof digits && !memchr(value.ptr, '.', value.length) &&
                               !memchr(value.ptr, 'e', value.length) && !memchr(value.ptr, 'E', value.length);
                if (integral) {
                    long long reference;
                    memcpy(digits, value.ptr, value.length);
                    digits[value.length] = '\0';
                    errno = 0;
                    reference = strtoll(digits, NULL, 10);
                    integral = errno == 0;
                    if (integral) FZ_CHECK(got == VRS_OK && number == reference);
                }
                if (!integral) FZ_CHECK(got == VRS_ERROR_WRONG_TYPE);
            }
            index++;
        }
    }
    free(out);
    /* the writer: the input as a string beside the input as a raw value */
    {
        size_t capacity = 6 * size + 16, length = 0, decoded_length = 0;
        char *written = (char *)malloc(capacity), *decoded = (char *)malloc(size + 1);
        vrs_json_writer w;
        int utf8 = fz_utf8_valid((const uint8_t *)text, size);
        FZ_CHECK(written && decoded);
        vrs_json_writer_init(&w, written, capacity);
        vrs_json_begin_array(&w);
        vrs_json_string(&w, text, size);
        vrs_json_raw(&w, text, size);
        vrs_json_end_array(&w);
        FZ_CHECK((vrs_json_finish(&w, &length) == VRS_OK) == (utf8 && valid));
        if (utf8 && valid) {
            FZ_CHECK(vrs_json_get_string(written, length, "0", decoded, size + 1, &decoded_length) == VRS_OK);
            FZ_CHECK(decoded_length == size && memcmp(decoded, text, size) == 0);
            FZ_CHECK(vrs_json_find(written, length, "1", &value) == VRS_OK);
            FZ_CHECK(value.length == whole.length && memcmp(value.ptr, whole.ptr, whole.length) == 0);
            vrs_json_writer_init(&w, written, length - 1);
            vrs_json_begin_array(&w);
            vrs_json_string(&w, text, size);
            vrs_json_raw(&w, text, size);
            vrs_json_end_array(&w);
            FZ_CHECK(vrs_json_finish(&w, NULL) == VRS_ERROR_BUFFER_TOO_SMALL);
        }
        free(written);
        free(decoded);
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
    if (fz_utf8_valid(data, size)) check_escaped_forms(text, size);
    check_public(text, size, valid);
    free(w.events);
    fz_json_free(&reference);
    free(text);
    return 0;
}
