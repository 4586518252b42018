/* fuzz_common.h: helpers shared by the libFuzzer targets in fuzz/. Each target is one .c file
   that defines VRS_IMPLEMENTATION, includes ../videoroom_signal.h and then this file, so the
   helpers may look at the library's private state (the tables, the pool) to check invariants.

   What is here:
   - FZ_CHECK: an invariant that aborts (libFuzzer reports it as a crash) with a message;
   - reference validators written independently of the library: UTF-8 (RFC 3629, by decoding
     code points) and JSON (RFC 8259, recursive descent) with a string decoder;
   - a WebSocket client side: masked client frames, and a checker for the frames a server
     writes (RFC 6455 rules for a server);
   - a checker of every table invariant of a vrs_server (connections, channels, rooms, pool);
   - deterministic "random" bytes for peer ids, and a time warp for the server's timers.
   Every function is static and prefixed fz_. */
#ifndef VRS_FUZZ_COMMON_H
#define VRS_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define FZ_FN static __attribute__((unused))

#define FZ_CHECK(cond)                                                                        \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "\nFUZZ INVARIANT FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#define FZ_CHECK_MSG(cond, ...)                                                               \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "\nFUZZ INVARIANT FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* A logger that drops everything (the default one prints warnings to stderr). */
FZ_FN void fz_silent_logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    (void)level;
    (void)item;
    (void)message;
    (void)user_data;
}

/* A copy in a buffer of exactly its size, so AddressSanitizer sees any read past the end. */
FZ_FN uint8_t *fz_exact_copy(const void *bytes, size_t n) {
    uint8_t *copy = (uint8_t *)malloc(n ? n : 1);
    FZ_CHECK(copy != NULL);
    if (n) memcpy(copy, bytes, n);
    return copy;
}

/* ---------------------------------------------------------------------------------------------
   A growable byte buffer
   ------------------------------------------------------------------------------------------- */

typedef struct fz_buffer {
    uint8_t *bytes;
    size_t length, capacity;
} fz_buffer;

FZ_FN void fz_put(fz_buffer *b, const void *data, size_t n) {
    if (b->length + n > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        uint8_t *grown;
        while (capacity < b->length + n) capacity *= 2;
        grown = (uint8_t *)realloc(b->bytes, capacity);
        FZ_CHECK(grown != NULL);
        b->bytes = grown;
        b->capacity = capacity;
    }
    if (n) memcpy(b->bytes + b->length, data, n);
    b->length += n;
}

FZ_FN void fz_put_str(fz_buffer *b, const char *s) { fz_put(b, s, strlen(s)); }

FZ_FN void fz_consume(fz_buffer *b, size_t n) {
    if (n >= b->length) {
        b->length = 0;
        return;
    }
    memmove(b->bytes, b->bytes + n, b->length - n);
    b->length -= n;
}

FZ_FN void fz_buffer_free(fz_buffer *b) {
    free(b->bytes);
    b->bytes = NULL;
    b->length = b->capacity = 0;
}

/* ---------------------------------------------------------------------------------------------
   Reference UTF-8 (RFC 3629): decode each sequence to its code point, then refuse overlong
   forms, surrogates and code points past U+10FFFF.
   ------------------------------------------------------------------------------------------- */

/* The sequence at p (n bytes available): its length (1-4) with *out set; 0 when it is invalid;
   -1 when the bytes present are a proper start of a sequence that runs past n. */
FZ_FN int fz_utf8_sequence(const uint8_t *p, size_t n, uint32_t *out) {
    uint32_t cp;
    int length, i;
    uint8_t b = p[0];
    if (b < 0x80) {
        *out = b;
        return 1;
    }
    if ((b & 0xE0) == 0xC0) {
        length = 2;
        cp = b & 0x1Fu;
    } else if ((b & 0xF0) == 0xE0) {
        length = 3;
        cp = b & 0x0Fu;
    } else if ((b & 0xF8) == 0xF0) {
        length = 4;
        cp = b & 0x07u;
    } else {
        return 0; /* a continuation byte, or F8-FF */
    }
    for (i = 1; i < length; i++) {
        if ((size_t)i >= n) return -1;
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if ((length == 2 && cp < 0x80) || (length == 3 && cp < 0x800) || (length == 4 && cp < 0x10000)) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp > 0x10FFFF) return 0;
    *out = cp;
    return length;
}

FZ_FN int fz_utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = fz_utf8_sequence(p + i, n - i, &cp);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* 1 when the incomplete sequence p[0..n) (n < its length) can be completed to a valid one. */
FZ_FN int fz_utf8_completable_tail(const uint8_t *p, size_t n) {
    static const uint8_t candidates[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
    uint8_t trial[4];
    uint32_t cp;
    int need, c1, c2, c3;
    if (n == 0) return 1;
    need = (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (need == 0 || (size_t)need <= n) return 0;
    memcpy(trial, p, n);
    for (c1 = 0; c1 < 6; c1++)
        for (c2 = 0; c2 < 6; c2++)
            for (c3 = 0; c3 < 6; c3++) {
                size_t k;
                int pick[3];
                pick[0] = c1;
                pick[1] = c2;
                pick[2] = c3;
                for (k = n; k < (size_t)need; k++) trial[k] = candidates[pick[k - n]];
                if (fz_utf8_sequence(trial, (size_t)need, &cp) == need) return 1;
            }
    return 0;
}

/* 1 when p[0..n) is a prefix of some valid UTF-8 text. */
FZ_FN int fz_utf8_valid_prefix(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = fz_utf8_sequence(p + i, n - i, &cp);
        if (k == 0) return 0;
        if (k < 0) return fz_utf8_completable_tail(p + i, n - i);
        i += (size_t)k;
    }
    return 1;
}

FZ_FN size_t fz_utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------------------------------------
   Reference JSON (RFC 8259): recursive descent, nesting limited to max_depth arrays/objects.
   It records every value (and every object key) it passes in preorder, so that a walk with
   the library's cursor API can be compared with it span by span.
   ------------------------------------------------------------------------------------------- */

enum { FZ_J_NULL = 1, FZ_J_FALSE, FZ_J_TRUE, FZ_J_NUMBER, FZ_J_STRING, FZ_J_ARRAY, FZ_J_OBJECT, FZ_J_KEY };

typedef struct fz_json_event {
    int kind;
    size_t start, end;
} fz_json_event;

typedef struct fz_json {
    const uint8_t *p;
    size_t n, i;
    int max_depth;
    fz_json_event *events; /* NULL: do not record */
    size_t event_count, event_capacity;
} fz_json;

/* Appends one event to a list that grows as needed. */
FZ_FN void fz_events_push(fz_json_event **events, size_t *count, size_t *capacity, int kind, size_t start,
                          size_t end) {
    if (*count == *capacity) {
        size_t grown_capacity = *capacity ? *capacity * 2 : 64;
        fz_json_event *grown = (fz_json_event *)realloc(*events, grown_capacity * sizeof *grown);
        FZ_CHECK(grown != NULL);
        *events = grown;
        *capacity = grown_capacity;
    }
    (*events)[*count].kind = kind;
    (*events)[*count].start = start;
    (*events)[*count].end = end;
    ++*count;
}

FZ_FN void fz_json_record(fz_json *j, int kind, size_t start, size_t end) {
    if (j->events) fz_events_push(&j->events, &j->event_count, &j->event_capacity, kind, start, end);
}

FZ_FN void fz_json_ws(fz_json *j) {
    while (j->i < j->n && (j->p[j->i] == ' ' || j->p[j->i] == '\t' || j->p[j->i] == '\n' || j->p[j->i] == '\r'))
        j->i++;
}

FZ_FN int fz_json_hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

FZ_FN int fz_json_string(fz_json *j) {
    FZ_CHECK(j->p[j->i] == '"');
    j->i++;
    while (j->i < j->n) {
        uint8_t c = j->p[j->i];
        if (c == '"') {
            j->i++;
            return 1;
        }
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (j->i + 1 >= j->n) return 0;
            c = j->p[j->i + 1];
            if (c == 'u') {
                int k;
                if (j->i + 6 > j->n) return 0;
                for (k = 2; k < 6; k++)
                    if (fz_json_hex(j->p[j->i + k]) < 0) return 0;
                j->i += 6;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
                       c == 't') {
                j->i += 2;
            } else {
                return 0;
            }
        } else if (c < 0x80) {
            j->i++;
        } else {
            uint32_t cp;
            int k = fz_utf8_sequence(j->p + j->i, j->n - j->i, &cp);
            if (k <= 0) return 0;
            j->i += (size_t)k;
        }
    }
    return 0;
}

FZ_FN int fz_json_digits(fz_json *j) {
    size_t start = j->i;
    while (j->i < j->n && j->p[j->i] >= '0' && j->p[j->i] <= '9') j->i++;
    return j->i > start;
}

FZ_FN int fz_json_number(fz_json *j) {
    if (j->i < j->n && j->p[j->i] == '-') j->i++;
    if (j->i >= j->n) return 0;
    if (j->p[j->i] == '0') {
        j->i++;
    } else if (j->p[j->i] >= '1' && j->p[j->i] <= '9') {
        fz_json_digits(j);
    } else {
        return 0;
    }
    if (j->i < j->n && j->p[j->i] == '.') {
        j->i++;
        if (!fz_json_digits(j)) return 0;
    }
    if (j->i < j->n && (j->p[j->i] == 'e' || j->p[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->p[j->i] == '+' || j->p[j->i] == '-')) j->i++;
        if (!fz_json_digits(j)) return 0;
    }
    return 1;
}

FZ_FN int fz_json_word(fz_json *j, const char *word) {
    size_t n = strlen(word);
    if (j->n - j->i < n || memcmp(j->p + j->i, word, n) != 0) return 0;
    j->i += n;
    return 1;
}

FZ_FN int fz_json_value(fz_json *j, int depth) {
    size_t start, slot;
    int kind, ok;
    fz_json_ws(j);
    if (j->i >= j->n) return 0;
    start = j->i;
    slot = j->event_count;
    fz_json_record(j, 0, start, start); /* filled in below, once the end is known */
    switch (j->p[j->i]) {
    case '{':
    case '[': {
        int is_object = j->p[j->i] == '{';
        uint8_t close = is_object ? '}' : ']';
        kind = is_object ? FZ_J_OBJECT : FZ_J_ARRAY;
        if (depth >= j->max_depth) return 0;
        j->i++;
        fz_json_ws(j);
        if (j->i < j->n && j->p[j->i] == close) {
            j->i++;
            ok = 1;
            break;
        }
        for (;;) {
            if (is_object) {
                size_t key_start;
                fz_json_ws(j);
                if (j->i >= j->n || j->p[j->i] != '"') return 0;
                key_start = j->i;
                if (!fz_json_string(j)) return 0;
                fz_json_record(j, FZ_J_KEY, key_start, j->i);
                fz_json_ws(j);
                if (j->i >= j->n || j->p[j->i] != ':') return 0;
                j->i++;
            }
            if (!fz_json_value(j, depth + 1)) return 0;
            fz_json_ws(j);
            if (j->i >= j->n) return 0;
            if (j->p[j->i] == ',') {
                j->i++;
                continue;
            }
            if (j->p[j->i] != close) return 0;
            j->i++;
            break;
        }
        ok = 1;
        break;
    }
    case '"':
        kind = FZ_J_STRING;
        ok = fz_json_string(j);
        break;
    case 't':
        kind = FZ_J_TRUE;
        ok = fz_json_word(j, "true");
        break;
    case 'f':
        kind = FZ_J_FALSE;
        ok = fz_json_word(j, "false");
        break;
    case 'n':
        kind = FZ_J_NULL;
        ok = fz_json_word(j, "null");
        break;
    default:
        kind = FZ_J_NUMBER;
        ok = fz_json_number(j);
        break;
    }
    if (!ok) return 0;
    if (j->events) {
        j->events[slot].kind = kind;
        j->events[slot].end = j->i;
    }
    return 1;
}

/* 1 when text is exactly one JSON value with optional whitespace around it, nested at most
   max_depth deep. */
FZ_FN int fz_json_run(fz_json *j, const void *text, size_t n, int max_depth) {
    int ok;
    j->p = (const uint8_t *)text;
    j->n = n;
    j->i = 0;
    j->max_depth = max_depth;
    j->event_count = 0;
    ok = fz_json_value(j, 0);
    if (ok) {
        fz_json_ws(j);
        ok = j->i == j->n;
    }
    return ok;
}

FZ_FN int fz_json_valid(const void *text, size_t n, int max_depth) {
    fz_json j;
    memset(&j, 0, sizeof j);
    return fz_json_run(&j, text, n, max_depth);
}

/* The same, recording the values passed in j->events (j zeroed by the caller, or reused;
   fz_json_free releases it). */
FZ_FN int fz_json_valid_recording(fz_json *j, const void *text, size_t n, int max_depth) {
    if (!j->events) {
        j->event_capacity = 64;
        j->events = (fz_json_event *)malloc(j->event_capacity * sizeof *j->events);
        FZ_CHECK(j->events != NULL);
    }
    return fz_json_run(j, text, n, max_depth);
}

FZ_FN void fz_json_free(fz_json *j) {
    free(j->events);
    memset(j, 0, sizeof *j);
}

/* Decodes a validated string token (quotes included) as documented by the library: escapes
   resolved, a surrogate pair joined, a surrogate without its partner becomes U+FFFD. `out`
   needs room for the token's length. Returns the decoded length. */
FZ_FN size_t fz_json_decode_string(const uint8_t *token, size_t n, uint8_t *out) {
    size_t i = 1, o = 0;
    FZ_CHECK(n >= 2 && token[0] == '"' && token[n - 1] == '"');
    n--;
    while (i < n) {
        uint8_t c = token[i];
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        c = token[i + 1];
        if (c != 'u') {
            switch (c) {
            case 'b': out[o++] = '\b'; break;
            case 'f': out[o++] = '\f'; break;
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            default: out[o++] = c; break; /* " \ / */
            }
            i += 2;
            continue;
        }
        {
            uint32_t unit = 0, cp;
            int k;
            for (k = 2; k < 6; k++) unit = unit * 16 + (uint32_t)fz_json_hex(token[i + k]);
            i += 6;
            cp = unit;
            if (unit >= 0xD800 && unit <= 0xDBFF) {
                uint32_t low = 0;
                int have_low = 0;
                if (i + 6 <= n && token[i] == '\\' && token[i + 1] == 'u') {
                    have_low = 1;
                    for (k = 2; k < 6; k++) {
                        int h = fz_json_hex(token[i + k]);
                        if (h < 0) have_low = 0;
                        low = low * 16 + (uint32_t)(h < 0 ? 0 : h);
                    }
                }
                if (have_low && low >= 0xDC00 && low <= 0xDFFF) {
                    cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                } else {
                    cp = 0xFFFD;
                }
            } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
                cp = 0xFFFD;
            }
            o += fz_utf8_encode(cp, out + o);
        }
    }
    return o;
}

/* ---------------------------------------------------------------------------------------------
   WebSocket, the client's side
   ------------------------------------------------------------------------------------------- */

/* Appends one masked client frame. first_byte: FIN, RSV and opcode as they go on the wire. */
FZ_FN void fz_client_frame(fz_buffer *out, uint8_t first_byte, const void *payload, size_t n, const uint8_t mask[4]) {
    uint8_t header[14];
    size_t h = 0, i;
    header[h++] = first_byte;
    if (n < 126) {
        header[h++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xFFFF) {
        header[h++] = 0x80 | 126;
        header[h++] = (uint8_t)(n >> 8);
        header[h++] = (uint8_t)n;
    } else {
        int k;
        header[h++] = 0x80 | 127;
        for (k = 7; k >= 0; k--) header[h++] = (uint8_t)((uint64_t)n >> (8 * k));
    }
    memcpy(header + h, mask, 4);
    h += 4;
    fz_put(out, header, h);
    {
        size_t at = out->length;
        fz_put(out, payload, n);
        for (i = 0; i < n; i++) out->bytes[at + i] ^= mask[i & 3];
    }
}

/* One frame a server wrote, parsed and checked against RFC 6455's rules for a server: FIN set
   (this server never fragments), no RSV bits, a known opcode, no mask, the shortest length
   encoding, control frames of at most 125 bytes, a close payload of 0 or 2+ bytes with a code
   a server may send and a UTF-8 reason, text in UTF-8. Returns the frame's total length, or 0
   when the buffer does not hold a whole frame yet. */
typedef struct fz_server_frame {
    int opcode;
    const uint8_t *payload;
    size_t length;
    int close_code; /* for a close frame: its code, or 1005 when it has none */
} fz_server_frame;

FZ_FN size_t fz_parse_server_frame(const uint8_t *p, size_t n, fz_server_frame *f) {
    size_t header = 2;
    uint64_t length;
    if (n < 2) return 0;
    FZ_CHECK_MSG((p[0] & 0x80) != 0, "server frame without FIN: %02x", p[0]);
    FZ_CHECK_MSG((p[0] & 0x70) == 0, "server frame with RSV bits: %02x", p[0]);
    f->opcode = p[0] & 0x0F;
    FZ_CHECK_MSG(f->opcode == 1 || f->opcode == 2 || f->opcode == 8 || f->opcode == 9 || f->opcode == 10,
                 "server frame opcode %d", f->opcode);
    FZ_CHECK_MSG((p[1] & 0x80) == 0, "masked server frame");
    length = p[1] & 0x7F;
    if (length == 126) {
        if (n < 4) return 0;
        length = (uint64_t)p[2] << 8 | p[3];
        FZ_CHECK_MSG(length >= 126, "non-minimal 16-bit length %llu", (unsigned long long)length);
        header = 4;
    } else if (length == 127) {
        int k;
        if (n < 10) return 0;
        length = 0;
        for (k = 0; k < 8; k++) length = length << 8 | p[2 + k];
        FZ_CHECK_MSG(length > 0xFFFF && !(length >> 63), "non-minimal 64-bit length %llu", (unsigned long long)length);
        header = 10;
    }
    if (f->opcode >= 8) FZ_CHECK_MSG(length <= 125, "control frame of %llu bytes", (unsigned long long)length);
    if (n - header < length) return 0;
    f->payload = p + header;
    f->length = (size_t)length;
    f->close_code = 0;
    if (f->opcode == 1) FZ_CHECK_MSG(fz_utf8_valid(f->payload, f->length), "text frame not UTF-8");
    if (f->opcode == 8) {
        FZ_CHECK_MSG(f->length != 1, "close frame of 1 byte");
        if (f->length >= 2) {
            int code = f->payload[0] << 8 | f->payload[1];
            FZ_CHECK_MSG((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999),
                         "server sent close code %d", code);
            FZ_CHECK_MSG(fz_utf8_valid(f->payload + 2, f->length - 2), "close reason not UTF-8");
            f->close_code = code;
        } else {
            f->close_code = 1005;
        }
    }
    return header + (size_t)length;
}

/* The head of an HTTP response at the start of `p`: its length (0 when incomplete), with the
   status and Content-Length (-1 when absent). Checks the status line's shape. */
FZ_FN size_t fz_parse_response_head(const uint8_t *p, size_t n, int *status, long *content_length) {
    size_t i, end = 0;
    for (i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            end = i + 4;
            break;
        }
    if (!end) return 0;
    FZ_CHECK_MSG(end >= 12 && memcmp(p, "HTTP/1.1 ", 9) == 0 && p[9] >= '1' && p[9] <= '9' && p[10] >= '0' &&
                     p[10] <= '9' && p[11] >= '0' && p[11] <= '9',
                 "bad status line: %.*s", (int)(end < 40 ? end : 40), (const char *)p);
    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    *content_length = -1;
    for (i = 0; i + 16 < end; i++)
        if ((p[i] == '\n') && strncasecmp((const char *)p + i + 1, "Content-Length:", 15) == 0) {
            *content_length = strtol((const char *)p + i + 16, NULL, 10);
            break;
        }
    return end;
}

/* Reads everything available on a non-blocking socket into b. Returns 1 at the end of the
   stream (or an error such as a reset), else 0. */
FZ_FN int fz_drain(int fd, fz_buffer *b) {
    uint8_t chunk[16384];
    for (;;) {
        ssize_t got = recv(fd, chunk, sizeof chunk, 0);
        if (got > 0) {
            if (b) fz_put(b, chunk, (size_t)got);
            continue;
        }
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return 1;
    }
}

FZ_FN void fz_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

/* Writes as much as the socket takes now. */
FZ_FN void fz_send_all(int fd, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    while (n > 0) {
        ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return;
        p += sent;
        n -= (size_t)sent;
    }
}

/* ---------------------------------------------------------------------------------------------
   The server's private state: invariants, deterministic ids, time
   ------------------------------------------------------------------------------------------- */

/* Blocks of one chain, checking that its links and length agree. */
FZ_FN uint32_t fz_chain_blocks(const vrs_server *s, const vrs__chain *c) {
    uint32_t count = 0, block = c->head;
    size_t bytes = 0;
    if (c->head == VRS__NONE) {
        FZ_CHECK(c->tail == VRS__NONE && c->length == 0);
        return 0;
    }
    FZ_CHECK(c->length > 0);
    for (;;) {
        FZ_CHECK(block < s->pool.block_count);
        count++;
        FZ_CHECK(count <= s->pool.block_count);
        bytes += (block == c->tail ? c->tail_fill : VRS_BLOCK_SIZE) - (block == c->head ? c->head_offset : 0);
        if (block == c->tail) break;
        block = s->pool.next[block];
    }
    FZ_CHECK_MSG(bytes == c->length, "chain holds %zu bytes, says %zu", bytes, c->length);
    return count;
}

/* Every table invariant of a server between steps. */
/* Flow control: a connection is paused exactly when it waits in one list (its receiver's, or
   the pool's), and only while open; a receiver with waiters is open; bytes are held only by a
   paused connection (the end-of-step pass parsed those of the resumed ones); epoll watches
   for reading exactly the connections that are not paused. */
static void fz_check_flow(vrs_server *s, const vrs__conn *conn) {
    uint32_t slot = (uint32_t)(conn - s->conns), index, count = 0;
    FZ_CHECK(conn->paused == (conn->blocked_on != VRS__NONE));
    FZ_CHECK(!conn->ready);
    if (conn->held.length > 0) FZ_CHECK(conn->paused);
    FZ_CHECK(conn->held.length <= 65536);
    if (conn->paused) {
        uint32_t *list = conn->blocked_on == VRS__POOL_WAIT ? &s->pool_waiters : &s->conns[conn->blocked_on].first_waiter;
        int found = 0;
        FZ_CHECK(conn->state == VRS__OPEN);
        if (conn->blocked_on != VRS__POOL_WAIT) FZ_CHECK(conn->blocked_on < s->slot_count);
        for (index = *list; index != VRS__NONE && count <= s->slot_count; index = s->conns[index].next_waiter, count++)
            if (index == slot) found = 1;
        FZ_CHECK_MSG(found, "paused connection %u is not in the list it waits in", slot);
    }
    count = 0;
    for (index = conn->first_waiter; index != VRS__NONE; index = s->conns[index].next_waiter) {
        FZ_CHECK(index < s->slot_count && s->conns[index].blocked_on == slot);
        FZ_CHECK(++count <= s->slot_count);
    }
    if (count) FZ_CHECK(conn->state == VRS__OPEN);
#ifdef VRS_USE_EPOLL
    FZ_CHECK(conn->watching_read == !conn->paused);
#endif
}

FZ_FN void fz_check_tables(vrs_server *s) {
    uint32_t i, blocks = 0, inbound_blocks = 0, free_walk = 0, block;
    int websockets = 0, opens = 0, rejections = 0, channels = 0, rooms = 0;
    vrs_stats stats = vrs_get_stats(s);
    FZ_CHECK(s->dirty_head == VRS__NONE && s->attention_head == VRS__NONE && s->ready_head == VRS__NONE);
    FZ_CHECK(s->active_count + s->free_slot_count == s->slot_count);
    FZ_CHECK(stats.connections == (int)s->active_count);
    FZ_CHECK(stats.connections <= s->desc.max_connections + VRS_REJECT_SLOTS);
    FZ_CHECK(stats.pool_blocks_used >= 0 && stats.pool_blocks_used <= stats.pool_blocks_total);
    for (i = 0; i < s->active_count; i++) {
        uint32_t slot = s->active[i], index, count = 0;
        vrs__conn *conn = &s->conns[slot];
        FZ_CHECK(slot < s->slot_count);
        FZ_CHECK(conn->state != VRS__FREE);
        FZ_CHECK_MSG(conn->active_position == i, "slot %u at %u says %u", slot, i, conn->active_position);
        FZ_CHECK(!conn->dead && !conn->close_owed && !conn->dirty && !conn->attention);
        FZ_CHECK(conn->fd >= 0);
        if (conn->announced) websockets++;
        if (conn->announced) FZ_CHECK(conn->state == VRS__OPEN || conn->state == VRS__CLOSING);
        if (conn->is_rejection) rejections++;
        else opens++;
        blocks += fz_chain_blocks(s, &conn->outbound);
        inbound_blocks += fz_chain_blocks(s, &conn->inbound) + fz_chain_blocks(s, &conn->held);
        if (conn->state == VRS__DRAINING) FZ_CHECK(conn->inbound.length == 0 && conn->held.length == 0);
        fz_check_flow(s, conn);
        for (index = conn->first_channel; index != VRS__NONE; index = s->channels[index].next_in_conn) {
            FZ_CHECK(index < (uint32_t)s->desc.max_channels);
            FZ_CHECK(s->channels[index].in_use && s->channels[index].conn == slot);
            count++;
            FZ_CHECK(count <= (uint32_t)s->desc.max_channels);
        }
        FZ_CHECK_MSG(count == conn->channel_count, "conn lists %u channels, counts %u", count, conn->channel_count);
        if (count) FZ_CHECK(conn->phoenix && conn->state == VRS__OPEN);
        if (!s->desc.disable_phoenix) FZ_CHECK(conn->channel_count <= (uint32_t)s->desc.max_channels_per_socket);
    }
    for (i = 0; i < s->free_slot_count; i++) FZ_CHECK(s->conns[s->free_slots[i]].state == VRS__FREE);
    FZ_CHECK(websockets == s->websocket_count && stats.open_connections == websockets);
    FZ_CHECK(opens == s->open_count && rejections == s->rejection_count);
    {
        uint32_t paused = 0, index, pool_waiting = 0;
        for (i = 0; i < s->active_count; i++) paused += s->conns[s->active[i]].paused;
        FZ_CHECK_MSG(paused == s->paused_count, "%u paused, counted %u", paused, s->paused_count);
        for (index = s->pool_waiters; index != VRS__NONE; index = s->conns[index].next_waiter) {
            FZ_CHECK(index < s->slot_count && s->conns[index].blocked_on == VRS__POOL_WAIT);
            FZ_CHECK(++pool_waiting <= s->slot_count);
        }
    }
    FZ_CHECK(opens <= s->desc.max_connections && rejections <= VRS_REJECT_SLOTS);
    for (i = 0; i < (uint32_t)s->desc.max_channels; i++) {
        vrs__channel *c = &s->channels[i];
        if (!c->in_use) continue;
        channels++;
        FZ_CHECK(c->room < (uint32_t)s->desc.max_rooms && s->rooms[c->room].in_use);
        FZ_CHECK(c->conn < s->slot_count && s->conns[c->conn].state == VRS__OPEN);
        blocks += fz_chain_blocks(s, &c->metadata_overflow);
        if (c->metadata_length <= VRS__INLINE_METADATA) FZ_CHECK(c->metadata_overflow.length == 0);
        else FZ_CHECK(c->metadata_overflow.length == c->metadata_length);
        FZ_CHECK(c->metadata_length <= (uint32_t)s->desc.max_metadata_size);
        FZ_CHECK(c->join_ref_length <= VRS__REF_MAX && c->push_ref_length <= VRS__REF_MAX);
        FZ_CHECK(strlen(c->peer_id) == 36);
    }
    FZ_CHECK_MSG(channels == s->channel_count, "%d channels in use, count %d", channels, s->channel_count);
    FZ_CHECK(s->free_channel_count + (uint32_t)s->channel_count == (uint32_t)s->desc.max_channels);
    for (i = 0; i < (uint32_t)s->desc.max_rooms; i++) {
        vrs__room *r = &s->rooms[i];
        uint32_t index, prev = VRS__NONE;
        int peers = 0;
        if (!r->in_use) continue;
        rooms++;
        for (index = r->first_peer; index != VRS__NONE; index = s->channels[index].next_in_room) {
            FZ_CHECK(index < (uint32_t)s->desc.max_channels);
            FZ_CHECK(s->channels[index].in_use && s->channels[index].room == i);
            FZ_CHECK(s->channels[index].prev_in_room == prev);
            prev = index;
            peers++;
            FZ_CHECK(peers <= s->desc.max_channels);
        }
        FZ_CHECK(r->last_peer == prev);
        FZ_CHECK_MSG(peers == r->peer_count, "room lists %d peers, counts %d", peers, r->peer_count);
        FZ_CHECK_MSG(peers > 0, "an empty room is left in the table");
        FZ_CHECK(peers <= s->desc.max_peers_per_room);
        FZ_CHECK(r->id_length >= 1 && r->id_length <= (uint16_t)s->desc.max_room_id_size);
        FZ_CHECK(vrs__room_find(s, vrs__room_id(s, i), r->id_length) == i);
    }
    FZ_CHECK_MSG(rooms == s->room_count, "%d rooms in use, count %d", rooms, s->room_count);
    FZ_CHECK(s->free_room_count + (uint32_t)s->room_count == (uint32_t)s->desc.max_rooms);
    /* every in-use channel of a room is in that room's list */
    {
        int listed = 0;
        for (i = 0; i < (uint32_t)s->desc.max_rooms; i++)
            if (s->rooms[i].in_use) listed += s->rooms[i].peer_count;
        FZ_CHECK(listed == channels);
    }
    for (block = s->pool.free_head; block != VRS__NONE; block = s->pool.next[block]) {
        FZ_CHECK(block < s->pool.block_count);
        free_walk++;
        FZ_CHECK(free_walk <= s->pool.block_count);
    }
    FZ_CHECK(free_walk == s->pool.free_count);
    FZ_CHECK(inbound_blocks == s->pool.inbound_used);
    FZ_CHECK(s->pool.inbound_used <= s->pool.block_count / 2);
    FZ_CHECK_MSG(blocks + inbound_blocks == s->pool.block_count - s->pool.free_count,
                 "%u blocks in chains, %u taken from the pool", blocks + inbound_blocks,
                 s->pool.block_count - s->pool.free_count);
}

/* After everything is closed: the tables are as vrs_create left them. */
FZ_FN void fz_check_empty(vrs_server *s) {
    vrs_stats stats = vrs_get_stats(s);
    fz_check_tables(s);
    FZ_CHECK_MSG(stats.connections == 0, "%d connections left", stats.connections);
    FZ_CHECK(stats.open_connections == 0);
    FZ_CHECK_MSG(stats.pool_blocks_used == 0, "%d pool blocks still used", stats.pool_blocks_used);
    FZ_CHECK(s->pool.inbound_used == 0);
    FZ_CHECK_MSG(s->channel_count == 0, "%d channels left", s->channel_count);
    FZ_CHECK_MSG(s->room_count == 0, "%d rooms left", s->room_count);
    FZ_CHECK(s->open_count == 0 && s->rejection_count == 0);
}

/* Peer ids from a pipe of known bytes instead of /dev/urandom, so a run can be replayed:
   id k is the 16-byte big-endian counter k. `count` ids; after them, reading fails (and the
   server answers joins with "failed to start room"). */
FZ_FN void fz_deterministic_ids(vrs_server *s, int count) {
    int fds[2], k;
    uint8_t block[16];
    if (pipe(fds) != 0) return;
    if (s->random_fd >= 0) close(s->random_fd);
    s->random_fd = fds[0];
    s->random_fill = s->random_used = 0;
    for (k = 0; k < count; k++) {
        memset(block, 0, sizeof block);
        block[0] = 0xA0;
        block[14] = (uint8_t)(k >> 8);
        block[15] = (uint8_t)k;
        if (write(fds[1], block, sizeof block) != (ssize_t)sizeof block) break;
    }
    close(fds[1]);
}

/* Moves the server's clock forward by `ms` as far as its timers can tell: every deadline comes
   that much closer. */
FZ_FN void fz_warp(vrs_server *s, int64_t ms) {
    uint32_t i;
    for (i = 0; i < s->active_count; i++) {
        vrs__conn *conn = &s->conns[s->active[i]];
        conn->deadline_ms -= ms;
        conn->idle_deadline_ms -= ms;
        conn->progress_ms -= ms;
    }
    if (s->next_timer_ms != INT64_MAX) s->next_timer_ms -= ms;
    s->accept_paused_until_ms -= ms;
}

/* Takes a socket pair end as an accepted connection (as vrs__accept does); returns the slot. */
FZ_FN vrs__conn *fz_adopt(vrs_server *s, int fd) {
    struct sockaddr_storage address;
    vrs__conn *conn;
    memset(&address, 0, sizeof address);
    address.ss_family = AF_UNIX;
    fz_nonblocking(fd);
    FZ_CHECK(s->free_slot_count > 0 && s->open_count < s->desc.max_connections);
    conn = vrs__adopt(s, fd, &address, 0);
    vrs__set_deadline(s, conn, s->now_ms + s->desc.handshake_timeout_ms);
    return conn;
}

#endif /* VRS_FUZZ_COMMON_H */
