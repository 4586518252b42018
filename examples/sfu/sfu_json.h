/* sfu_json.h: the little JSON the SFU host needs: find a value by its path of keys, walk an
   array, read a string or a whole number, and write objects with escaped strings into a
   fixed buffer. Values are handed around as raw spans of the text they came from, so an SDP
   read from one message is written into another without being decoded.

   Every reader is bounded by the text's length and returns 0 on anything malformed; a writer
   that runs out of room remembers it (json_writer.failed) and writes nothing more. */
#ifndef SFU_JSON_H
#define SFU_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct json_span { const char *ptr; size_t length; } json_span;

/* ---- reading ------------------------------------------------------------------------------- */

static size_t json_skip_space(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* The end of the value starting at s[i] (after spaces), or 0 when it is malformed. Nesting
   is bounded so that hostile input cannot exhaust the stack. */
static size_t json_value_end(const char *s, size_t n, size_t i, int depth) {
    i = json_skip_space(s, n, i);
    if (i >= n || depth > 64) return 0;
    if (s[i] == '"') {
        for (i++; i < n; i++) {
            if (s[i] == '\\') i++;
            else if (s[i] == '"') return i + 1;
            else if ((unsigned char)s[i] < 0x20) return 0;
        }
        return 0;
    }
    if (s[i] == '{' || s[i] == '[') {
        char close = s[i] == '{' ? '}' : ']';
        int object = s[i] == '{';
        i = json_skip_space(s, n, i + 1);
        if (i < n && s[i] == close) return i + 1;
        for (;;) {
            if (object) {
                if (i >= n || s[i] != '"') return 0;
                i = json_value_end(s, n, i, depth + 1);
                if (!i) return 0;
                i = json_skip_space(s, n, i);
                if (i >= n || s[i] != ':') return 0;
                i++;
            }
            i = json_value_end(s, n, i, depth + 1);
            if (!i) return 0;
            i = json_skip_space(s, n, i);
            if (i >= n) return 0;
            if (s[i] == close) return i + 1;
            if (s[i] != ',') return 0;
            i = json_skip_space(s, n, i + 1);
        }
    }
    {
        size_t start = i;
        while (i < n && (s[i] == '-' || s[i] == '+' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') ||
                         (s[i] >= 'a' && s[i] <= 'z')))
            i++;
        return i > start ? i : 0;
    }
}

/* The value of `key` in the object `object` (a raw span); 0 when absent or not an object. */
static int json_member(json_span object, const char *key, json_span *out) {
    const char *s = object.ptr;
    size_t n = object.length, i = json_skip_space(s, n, 0), key_length = strlen(key);
    if (i >= n || s[i] != '{') return 0;
    i = json_skip_space(s, n, i + 1);
    while (i < n && s[i] == '"') {
        size_t key_end = json_value_end(s, n, i, 0), value_start, value_end;
        if (!key_end) return 0;
        value_start = json_skip_space(s, n, key_end);
        if (value_start >= n || s[value_start] != ':') return 0;
        value_start = json_skip_space(s, n, value_start + 1);
        value_end = json_value_end(s, n, value_start, 0);
        if (!value_end) return 0;
        /* Keys are compared as written: the keys looked up here are never escaped. */
        if (key_end - i - 2 == key_length && memcmp(s + i + 1, key, key_length) == 0) {
            out->ptr = s + value_start;
            out->length = value_end - value_start;
            return 1;
        }
        i = json_skip_space(s, n, value_end);
        if (i < n && s[i] == ',') i = json_skip_space(s, n, i + 1);
    }
    return 0;
}

/* The value at a path of keys separated by dots ("plugindata.data.videoroom"). */
static int json_path(json_span root, const char *path, json_span *out) {
    char key[64];
    json_span at = root;
    while (*path) {
        size_t length = strcspn(path, ".");
        if (length >= sizeof key) return 0;
        memcpy(key, path, length);
        key[length] = '\0';
        if (!json_member(at, key, &at)) return 0;
        path += length + (path[length] == '.');
    }
    *out = at;
    return 1;
}

/* Walks an array: start with *cursor = 0; each call gives the next element. */
static int json_next_element(json_span array, size_t *cursor, json_span *out) {
    const char *s = array.ptr;
    size_t n = array.length, i = *cursor, end;
    if (i == 0) {
        i = json_skip_space(s, n, 0);
        if (i >= n || s[i] != '[') return 0;
        i++;
    }
    i = json_skip_space(s, n, i);
    if (i >= n || s[i] == ']') return 0;
    end = json_value_end(s, n, i, 0);
    if (!end) return 0;
    out->ptr = s + i;
    out->length = end - i;
    end = json_skip_space(s, n, end);
    *cursor = end < n && s[end] == ',' ? end + 1 : end;
    return 1;
}

static int json_is_string(json_span value) { return value.length >= 2 && value.ptr[0] == '"'; }

static int json_hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    int k;
    for (k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Decodes a JSON string into out (NUL-terminated, UTF-8); returns its length or -1 when the
   value is not a string or does not fit. */
static long json_string(json_span value, char *out, size_t capacity) {
    size_t i, o = 0;
    if (!json_is_string(value) || capacity == 0) return -1;
    for (i = 1; i + 1 < value.length; i++) {
        unsigned c = (unsigned char)value.ptr[i];
        if (c == '\\') {
            char e = value.ptr[++i];
            if (i + 1 >= value.length) return -1;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                unsigned low;
                if (i + 5 > value.length - 1 || !json_hex4(value.ptr + i + 1, &c)) return -1;
                i += 4;
                if (c >= 0xD800 && c < 0xDC00 && i + 7 <= value.length - 1 && value.ptr[i + 1] == '\\' &&
                    value.ptr[i + 2] == 'u' && json_hex4(value.ptr + i + 3, &low) && low >= 0xDC00 && low < 0xE000) {
                    c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                } else if (c >= 0xD800 && c < 0xE000) {
                    c = 0xFFFD;
                }
                break;
            }
            default: c = (unsigned char)e; break; /* \" \\ \/ */
            }
            if (o + 4 >= capacity) return -1;
            if (c < 0x80) out[o++] = (char)c;
            else if (c < 0x800) { out[o++] = (char)(0xC0 | c >> 6); out[o++] = (char)(0x80 | (c & 63)); }
            else if (c < 0x10000) {
                out[o++] = (char)(0xE0 | c >> 12); out[o++] = (char)(0x80 | (c >> 6 & 63));
                out[o++] = (char)(0x80 | (c & 63));
            } else {
                out[o++] = (char)(0xF0 | c >> 18); out[o++] = (char)(0x80 | (c >> 12 & 63));
                out[o++] = (char)(0x80 | (c >> 6 & 63)); out[o++] = (char)(0x80 | (c & 63));
            }
            continue;
        }
        if (o + 1 >= capacity) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

/* 1 when the value is the string `text` (compared decoded). */
static int json_string_is(json_span value, const char *text) {
    char buffer[128];
    long length = json_string(value, buffer, sizeof buffer);
    return length >= 0 && strcmp(buffer, text) == 0;
}

/* A whole number from 0 to 2^63-1 (Janus ids are below 2^53). */
static int json_uint(json_span value, uint64_t *out) {
    uint64_t v = 0;
    size_t i;
    if (value.length == 0 || value.length > 19) return 0;
    for (i = 0; i < value.length; i++) {
        if (value.ptr[i] < '0' || value.ptr[i] > '9') return 0;
        v = v * 10 + (uint64_t)(value.ptr[i] - '0');
    }
    *out = v;
    return 1;
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct json_writer {
    char *out;
    size_t capacity, length;
    int failed;
} json_writer;

static json_writer json_writer_on(char *buffer, size_t capacity) {
    json_writer w;
    w.out = buffer;
    w.capacity = capacity;
    w.length = 0;
    w.failed = capacity == 0;
    if (capacity) buffer[0] = '\0';
    return w;
}

static void json_raw(json_writer *w, const char *text, size_t length) {
    if (w->failed || w->length + length + 1 > w->capacity) {
        w->failed = 1;
        return;
    }
    memcpy(w->out + w->length, text, length);
    w->length += length;
    w->out[w->length] = '\0';
}

static void json_text(json_writer *w, const char *text) { json_raw(w, text, strlen(text)); }
static void json_span_raw(json_writer *w, json_span value) { json_raw(w, value.ptr, value.length); }

/* A JSON string holding `length` bytes of text (escaped as RFC 8259 requires). */
static void json_quoted(json_writer *w, const char *text, size_t length) {
    size_t i;
    json_raw(w, "\"", 1);
    for (i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        char escaped[8];
        if (c == '"' || c == '\\') {
            escaped[0] = '\\';
            escaped[1] = (char)c;
            json_raw(w, escaped, 2);
        } else if (c < 0x20) {
            snprintf(escaped, sizeof escaped, "\\u%04x", c);
            json_raw(w, escaped, 6);
        } else {
            json_raw(w, (const char *)&text[i], 1);
        }
    }
    json_raw(w, "\"", 1);
}

static void json_uint_text(json_writer *w, uint64_t value) {
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)value);
    json_text(w, digits);
}

#endif /* SFU_JSON_H */
