/* Fuzz target: the HTTP/1.1 request-head parser and the upgrade checks.

   Input: the bytes a client sends before its first frame.
   - vrs__http_head_length finds the end of the head; the head must end in an empty line.
   - vrs__http_parse parses it (each in a buffer of its exact size, so ASan sees any over-read;
     also the whole input, which the library must survive even though it is not a head). On
     success: every span lies inside the head, the method is a token, the target has no
     controls or spaces, path + "?" + query is the target, header names are tokens, values
     hold no CR/LF/controls and are trimmed; at most VRS_MAX_HEADERS headers.
   - the lookups: vrs_request_header (the first of that name), vrs_request_query (several
     names and capacities; the result fits and is terminated), vrs_request_offers_subprotocol,
     the Phoenix auth token, vrs__vsn_major, vrs__check_upgrade (a valid upgrade is a GET over
     HTTP/1.1+ with a 16-byte base64 key and version 13) and the Sec-WebSocket-Accept value. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

static int inside(const char *base, size_t n, vrs_span s) {
    return s.ptr >= base && s.ptr <= base + n && s.length <= (size_t)(base + n - s.ptr);
}

static int is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int nocase_equal(vrs_span s, const char *text) {
    size_t n = strlen(text);
    return s.length == n && strncasecmp(s.ptr, text, n) == 0;
}

static void check_query(const vrs_request *r, const char *name) {
    static const size_t capacities[] = {0, 1, 2, 5, 16, 64, 300};
    size_t c;
    for (c = 0; c < sizeof capacities / sizeof capacities[0]; c++) {
        size_t capacity = capacities[c];
        char *out = (char *)malloc(capacity ? capacity : 1);
        int got;
        FZ_CHECK(out != NULL);
        got = vrs_request_query(r, name, capacity ? out : NULL, capacity);
        FZ_CHECK(got >= -2);
        if (got >= 0) {
            FZ_CHECK((size_t)got < capacity);
            FZ_CHECK(out[got] == '\0');
        }
        free(out);
    }
}

static void check_request(const char *head, size_t n, const vrs_request *r) {
    int i;
    vrs__upgrade_check upgrade;
    FZ_CHECK(r->header_count >= 0 && r->header_count <= VRS_MAX_HEADERS);
    FZ_CHECK(inside(head, n, r->method) && r->method.length > 0);
    for (i = 0; i < (int)r->method.length; i++) FZ_CHECK(is_tchar((unsigned char)r->method.ptr[i]));
    FZ_CHECK(inside(head, n, r->target) && r->target.length > 0);
    for (i = 0; i < (int)r->target.length; i++)
        FZ_CHECK((unsigned char)r->target.ptr[i] > ' ' && r->target.ptr[i] != 0x7F);
    FZ_CHECK(r->path.ptr == r->target.ptr && r->path.length <= r->target.length);
    FZ_CHECK(memchr(r->path.ptr, '?', r->path.length) == NULL);
    if (r->path.length < r->target.length) {
        FZ_CHECK(r->target.ptr[r->path.length] == '?');
        FZ_CHECK(r->query.ptr == r->target.ptr + r->path.length + 1);
        FZ_CHECK(r->path.length + 1 + r->query.length == r->target.length);
    } else {
        FZ_CHECK(r->query.length == 0);
    }
    FZ_CHECK(r->minor_version >= 0 && r->minor_version <= 9);
    for (i = 0; i < r->header_count; i++) {
        vrs_span name = r->headers[i].name, value = r->headers[i].value;
        size_t k;
        FZ_CHECK(inside(head, n, name) && name.length > 0);
        FZ_CHECK(inside(head, n, value));
        for (k = 0; k < name.length; k++) FZ_CHECK(is_tchar((unsigned char)name.ptr[k]));
        FZ_CHECK(name.ptr[name.length] == ':');
        for (k = 0; k < value.length; k++) {
            unsigned char c = (unsigned char)value.ptr[k];
            FZ_CHECK((c >= 0x20 || c == '\t') && c != 0x7F);
        }
        if (value.length) {
            FZ_CHECK(value.ptr[0] != ' ' && value.ptr[0] != '\t');
            FZ_CHECK(value.ptr[value.length - 1] != ' ' && value.ptr[value.length - 1] != '\t');
        }
        /* vrs_request_header finds the first header of this name */
        {
            char lookup[128];
            vrs_span got;
            int first;
            if (name.length >= sizeof lookup) continue;
            memcpy(lookup, name.ptr, name.length);
            lookup[name.length] = '\0';
            got = vrs_request_header(r, lookup);
            for (first = 0; first < r->header_count; first++)
                if (nocase_equal(r->headers[first].name, lookup)) break;
            FZ_CHECK(first <= i);
            FZ_CHECK(got.ptr == r->headers[first].value.ptr && got.length == r->headers[first].value.length);
            FZ_CHECK(vrs__header_present(r, lookup));
        }
    }
    FZ_CHECK(vrs_request_header(r, "X-Absent-Header-For-Fuzzing").length == 0);

    check_query(r, "vsn");
    check_query(r, "token");
    check_query(r, "");
    check_query(r, "a");
    {
        char vsn[16];
        int length = vrs_request_query(r, "vsn", vsn, sizeof vsn);
        if (length >= 0) {
            int major = vrs__vsn_major(vsn);
            FZ_CHECK(major >= 0 && major <= 2);
            if (major) FZ_CHECK(vsn[0] == '0' + major && vsn[1] == '.' && vsn[2] == '0' && vsn[3] == '.');
        }
    }
    {
        char token[1024];
        long length = vrs__auth_token(r, token, sizeof token);
        FZ_CHECK(length >= -1 && length <= (long)sizeof token);
    }
    (void)vrs_request_offers_subprotocol(r, "phoenix");
    (void)vrs_request_offers_subprotocol(r, "");
    (void)vrs__headers_list_token(r, "Connection", "upgrade");

    upgrade = vrs__check_upgrade(r);
    if (upgrade == VRS__UPGRADE_VALID || upgrade == VRS__UPGRADE_VERSION) {
        vrs_span key = vrs_request_header(r, "Sec-WebSocket-Key");
        uint8_t decoded[18];
        char accept[29];
        FZ_CHECK(vrs_span_equals(r->method, "GET") && r->minor_version >= 1);
        FZ_CHECK(key.length == 24 && vrs__base64_decode(key.ptr, key.length, decoded, sizeof decoded) == 16);
        FZ_CHECK(vrs__headers_list_token(r, "Upgrade", "websocket"));
        vrs__websocket_accept(key.ptr, key.length, accept);
        FZ_CHECK(strlen(accept) == 28);
        if (upgrade == VRS__UPGRADE_VALID) FZ_CHECK(vrs_span_equals(vrs_request_header(r, "Sec-WebSocket-Version"), "13"));
    }
    if (upgrade == VRS__NOT_AN_UPGRADE) {
        FZ_CHECK(!vrs__header_present(r, "Upgrade") && !vrs__header_present(r, "Sec-WebSocket-Key") &&
                 !vrs__header_present(r, "Sec-WebSocket-Version"));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vrs_request request;
    size_t head_length = vrs__http_head_length((const char *)data, size);
    FZ_CHECK(head_length <= size);
    if (head_length) {
        char *head = (char *)fz_exact_copy(data, head_length);
        vrs__parse_status status;
        FZ_CHECK(head[head_length - 1] == '\n');
        FZ_CHECK(head_length >= 2 && (head[head_length - 2] == '\n' ||
                                      (head_length >= 3 && head[head_length - 2] == '\r' && head[head_length - 3] == '\n')));
        /* the first empty line: no earlier one */
        FZ_CHECK(vrs__http_head_length(head, head_length) == head_length);
        FZ_CHECK(vrs__http_head_length(head, head_length - 1) == 0);
        status = vrs__http_parse(head, head_length, &request);
        FZ_CHECK(status == VRS__PARSE_DONE || status == VRS__PARSE_BAD || status == VRS__PARSE_TOO_MANY_HEADERS);
        if (status == VRS__PARSE_DONE) check_request(head, head_length, &request);
        free(head);
    }
    /* the parser must survive any bytes, head or not */
    if (size > 0) {
        char *all = (char *)fz_exact_copy(data, size);
        if (vrs__http_parse(all, size, &request) == VRS__PARSE_DONE) check_request(all, size, &request);
        free(all);
    }
    return 0;
}
