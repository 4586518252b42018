/* Tests of the codecs and parsers under the WebSocket server: SHA-1, base64, the
   Sec-WebSocket-Accept value, the incremental UTF-8 validator, HTTP request heads, the frame
   reader (fed every input split at every boundary), close codes, server frame headers and the
   block pool. Included into the test translation unit after the library's implementation, so the
   private vrs__ functions are reachable; every helper here is prefixed codec_. */
#include <errno.h>

/* ---- Small helpers ---- */

/* A C string literal and its length, for byte strings that may hold NUL bytes. */
#define CODEC_BYTES(literal) (literal), (sizeof(literal) - 1)

static void codec_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A copy in a buffer of exactly its size (at least one byte), so ASan sees any read past it. */
static uint8_t *codec_exact_copy(const void *bytes, size_t n) {
    uint8_t *copy = (uint8_t *)malloc(n ? n : 1);
    if (!copy) {
        fprintf(stderr, "codec tests: out of memory\n");
        exit(2);
    }
    if (n) memcpy(copy, bytes, n);
    return copy;
}

static uint32_t codec_random(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

/* A growable byte buffer. */
typedef struct codec_buffer {
    uint8_t *bytes;
    size_t length, capacity;
} codec_buffer;

static void codec_buffer_put(codec_buffer *b, const void *data, size_t n) {
    if (b->length + n > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 64;
        uint8_t *grown;
        while (capacity < b->length + n) capacity *= 2;
        grown = (uint8_t *)realloc(b->bytes, capacity);
        if (!grown) {
            fprintf(stderr, "codec tests: out of memory\n");
            exit(2);
        }
        b->bytes = grown;
        b->capacity = capacity;
    }
    if (n) memcpy(b->bytes + b->length, data, n);
    b->length += n;
}

static void codec_buffer_free(codec_buffer *b) {
    free(b->bytes);
    b->bytes = NULL;
    b->length = b->capacity = 0;
}

/* ---- SHA-1 (FIPS 180) ---- */

static void codec_sha1_hex(const void *data, size_t n, char out[41]) {
    vrs__sha1 h;
    uint8_t digest[20];
    vrs__sha1_init(&h);
    vrs__sha1_update(&h, data, n);
    vrs__sha1_final(&h, digest);
    codec_hex(digest, 20, out);
}

TEST(codec, sha1_fips_vectors) {
    char hex[41];
    codec_sha1_hex("abc", 3, hex);
    CHECK_EQ_STR(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    codec_sha1_hex("", 0, hex);
    CHECK_EQ_STR(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    codec_sha1_hex(CODEC_BYTES("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), hex);
    CHECK_EQ_STR(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    codec_sha1_hex(CODEC_BYTES("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                               "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                   hex);
    CHECK_EQ_STR(hex, "a49b2446a02c645bf419f995b67091253a04a259");
}

/* Lengths around the padding boundary (55/56 bytes fit one final block or need two). */
TEST(codec, sha1_padding_boundaries) {
    static const struct { size_t n; const char *hex; } cases[] = {
        {55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"},
        {56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"},
        {63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"},
        {64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"},
        {65, "11655326c708d70319be2610e8a57d9a5b959d3b"},
        {119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"},
        {120, "f34c1488385346a55709ba056ddd08280dd4c6d6"},
    };
    char a[120], hex[41];
    size_t i;
    memset(a, 'a', sizeof a);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        codec_sha1_hex(a, cases[i].n, hex);
        if (strcmp(hex, cases[i].hex) != 0)
            VRS_TEST_FAIL("SHA-1 of %zu 'a's: %s, expected %s", cases[i].n, hex, cases[i].hex);
    }
}

TEST(codec, sha1_million_a_uneven_pieces) {
    static const size_t pieces[] = {1, 7, 63, 64, 65, 0, 127, 128, 999, 1000, 3, 55, 56, 500};
    uint8_t *a = (uint8_t *)malloc(1000), digest[20];
    vrs__sha1 h;
    size_t fed = 0, k = 0;
    char hex[41];
    REQUIRE(a != NULL);
    memset(a, 'a', 1000);
    vrs__sha1_init(&h);
    while (fed < 1000000) {
        size_t take = pieces[k++ % (sizeof pieces / sizeof pieces[0])];
        if (take > 1000000 - fed) take = 1000000 - fed;
        vrs__sha1_update(&h, a, take);
        fed += take;
    }
    vrs__sha1_final(&h, digest);
    codec_hex(digest, 20, hex);
    CHECK_EQ_STR(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
}

TEST(codec, sha1_bytewise_equals_whole) {
    uint8_t data[300];
    uint32_t seed = 12345;
    size_t n, i;
    int failures = 0;
    for (i = 0; i < sizeof data; i++) data[i] = (uint8_t)codec_random(&seed);
    for (n = 0; n <= sizeof data && failures < 3; n++) {
        vrs__sha1 whole, bytewise, split;
        uint8_t d1[20], d2[20], d3[20];
        vrs__sha1_init(&whole);
        vrs__sha1_update(&whole, data, n);
        vrs__sha1_final(&whole, d1);
        vrs__sha1_init(&bytewise);
        for (i = 0; i < n; i++) vrs__sha1_update(&bytewise, data + i, 1);
        vrs__sha1_final(&bytewise, d2);
        vrs__sha1_init(&split);
        vrs__sha1_update(&split, data, n / 3);
        vrs__sha1_update(&split, data + n / 3, n - n / 3);
        vrs__sha1_final(&split, d3);
        if (memcmp(d1, d2, 20) != 0 || memcmp(d1, d3, 20) != 0) {
            VRS_TEST_FAIL("SHA-1 of %zu bytes differs when fed in pieces", n);
            failures++;
        }
    }
}

/* ---- Base64 (RFC 4648) and Sec-WebSocket-Accept ---- */

TEST(codec, base64_rfc4648_vectors) {
    static const char *const vectors[][2] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    size_t i;
    for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const char *plain = vectors[i][0], *encoded = vectors[i][1];
        char out[16];
        uint8_t decoded[16];
        uint8_t *in = codec_exact_copy(encoded, strlen(encoded));
        size_t written;
        long got;
        memset(out, 'x', sizeof out);
        written = vrs__base64_encode((const uint8_t *)plain, strlen(plain), out);
        CHECK_EQ_INT(written, strlen(encoded));
        CHECK_EQ_STR(out, encoded);
        got = vrs__base64_decode((const char *)in, strlen(encoded), decoded, sizeof decoded);
        CHECK_EQ_INT(got, strlen(plain));
        if (got == (long)strlen(plain)) CHECK_EQ_MEM(decoded, plain, strlen(plain));
        /* the exact capacity is enough */
        got = vrs__base64_decode((const char *)in, strlen(encoded), decoded, strlen(plain));
        CHECK_EQ_INT(got, strlen(plain));
        free(in);
    }
}

TEST(codec, base64_strict_decode_rejects) {
    static const struct { const char *text; size_t length; } bad[] = {
        {CODEC_BYTES("Z")}, {CODEC_BYTES("Zg")}, {CODEC_BYTES("Zg=")}, {CODEC_BYTES("Zm9vY")},
        {CODEC_BYTES("Zm9v=")},                           /* wrong lengths */
        {CODEC_BYTES("Zm9!")}, {CODEC_BYTES("Zm 9")}, {CODEC_BYTES("Zm-v")}, {CODEC_BYTES("Zm_v")},
        {CODEC_BYTES("Zm9v\n")}, {CODEC_BYTES("Zm9\0")}, {CODEC_BYTES("Zm9v\xC3\xA9==")},
        {CODEC_BYTES("Zg==Zg==")}, {CODEC_BYTES("Zm8=Zm9v")}, {CODEC_BYTES("Z=g=")},
        {CODEC_BYTES("Zm=v")}, {CODEC_BYTES("Zg=A")}, {CODEC_BYTES("====")}, {CODEC_BYTES("Z===")},
        {CODEC_BYTES("=Zg=")},                            /* padding in the wrong place */
        {CODEC_BYTES("Zh==")}, {CODEC_BYTES("Zv==")}, {CODEC_BYTES("Zm9=")}, {CODEC_BYTES("Zm+=")},
        {CODEC_BYTES("dGhlIHNhbXBsZSBub25jZR==")},        /* non-zero unused bits */
    };
    uint8_t out[32];
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *in = codec_exact_copy(bad[i].text, bad[i].length);
        long got = vrs__base64_decode((const char *)in, bad[i].length, out, sizeof out);
        if (got != -1) VRS_TEST_FAIL("base64 \"%s\" decoded to %ld bytes, expected a rejection", bad[i].text, got);
        free(in);
    }
    /* the canonical forms of the rejected ones decode */
    CHECK_EQ_INT(vrs__base64_decode("Zg==", 4, out, sizeof out), 1);
    CHECK_EQ_INT(vrs__base64_decode("Zm8=", 4, out, sizeof out), 2);
    /* too little room */
    CHECK_EQ_INT(vrs__base64_decode("Zm9vYmFy", 8, out, 5), -1);
    CHECK_EQ_INT(vrs__base64_decode("Zm9vYmFy", 8, out, 6), 6);
    CHECK_EQ_INT(vrs__base64_decode("Zm9vYg==", 8, out, 3), -1);
    CHECK_EQ_INT(vrs__base64_decode("Zm9vYg==", 8, out, 4), 4);
    CHECK_EQ_INT(vrs__base64_decode("Zm9vYmE=", 8, out, 4), -1);
    CHECK_EQ_INT(vrs__base64_decode("Zg==", 4, out, 0), -1);
    CHECK_EQ_INT(vrs__base64_decode("Zm8=", 4, out, 1), -1);
    CHECK_EQ_INT(vrs__base64_decode("", 0, out, 0), 0);
}

TEST(codec, base64_round_trip_every_length) {
    uint8_t data[64], decoded[64];
    char encoded[4 * 22 + 1];
    uint32_t seed = 99;
    size_t n, i;
    for (i = 0; i < sizeof data; i++) data[i] = (uint8_t)codec_random(&seed);
    data[0] = 0xFF;
    data[1] = 0x00;
    for (n = 0; n <= sizeof data; n++) {
        size_t written = vrs__base64_encode(data, n, encoded);
        long got;
        uint8_t *in;
        CHECK_EQ_INT(written, 4 * ((n + 2) / 3));
        CHECK_EQ_INT(strlen(encoded), written);
        in = codec_exact_copy(encoded, written);
        got = vrs__base64_decode((const char *)in, written, decoded, n);
        CHECK_EQ_INT(got, n);
        if (got == (long)n) CHECK_EQ_MEM(decoded, data, n);
        if (n > 0) CHECK_EQ_INT(vrs__base64_decode((const char *)in, written, decoded, n - 1), -1);
        free(in);
    }
}

TEST(codec, websocket_accept_rfc6455_example) {
    char accept[29];
    memset(accept, 'x', sizeof accept);
    vrs__websocket_accept(CODEC_BYTES("dGhlIHNhbXBsZSBub25jZQ=="), accept);
    CHECK_EQ_STR(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ---- UTF-8 ---- */

typedef struct codec_utf8_sample {
    const char *bytes;
    size_t length;
    int valid;
    int reject_at; /* index of the first impossible byte; -1 when never rejected */
} codec_utf8_sample;

static const codec_utf8_sample codec_utf8_samples[] = {
    /* valid */
    {CODEC_BYTES(""), 1, -1},
    {CODEC_BYTES("hello, world"), 1, -1},
    {CODEC_BYTES("\x01\x7F"), 1, -1},
    {CODEC_BYTES("\xC2\x80"), 1, -1},                  /* U+0080 */
    {CODEC_BYTES("\xDF\xBF"), 1, -1},                  /* U+07FF */
    {CODEC_BYTES("\xE0\xA0\x80"), 1, -1},              /* U+0800 */
    {CODEC_BYTES("\xED\x9F\xBF"), 1, -1},              /* U+D7FF */
    {CODEC_BYTES("\xEE\x80\x80"), 1, -1},              /* U+E000 */
    {CODEC_BYTES("\xEF\xBF\xBF"), 1, -1},              /* U+FFFF */
    {CODEC_BYTES("\xF0\x90\x80\x80"), 1, -1},          /* U+10000 */
    {CODEC_BYTES("\xF4\x8F\xBF\xBF"), 1, -1},          /* U+10FFFF */
    {CODEC_BYTES("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"), 1, -1}, /* Autobahn's "kosme" */
    {CODEC_BYTES("Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!"), 1, -1},
    {CODEC_BYTES("0123456789ABCDEF\xF0\x9F\x98\x80" "0123456789ABCDEF\xE2\x82\xAC"), 1, -1},
    /* overlong forms */
    {CODEC_BYTES("\xC0\x80"), 0, 0},
    {CODEC_BYTES("\xC1\xBF"), 0, 0},
    {CODEC_BYTES("\xE0\x80\x80"), 0, 1},
    {CODEC_BYTES("\xE0\x9F\xBF"), 0, 1},
    {CODEC_BYTES("\xF0\x80\x80\x80"), 0, 1},
    {CODEC_BYTES("\xF0\x8F\xBF\xBF"), 0, 1},
    /* surrogates */
    {CODEC_BYTES("\xED\xA0\x80"), 0, 1},
    {CODEC_BYTES("\xED\xBF\xBF"), 0, 1},
    {CODEC_BYTES("\xED\xA0\x80\xED\xB0\x80"), 0, 1},
    {CODEC_BYTES("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80" "edited"), 0, 12},
    /* past U+10FFFF */
    {CODEC_BYTES("\xF4\x90\x80\x80"), 0, 1},
    {CODEC_BYTES("\xF5\x80\x80\x80"), 0, 0},
    {CODEC_BYTES("\xF7\xBF\xBF\xBF"), 0, 0},
    {CODEC_BYTES("\xF8\x88\x80\x80\x80"), 0, 0},
    {CODEC_BYTES("\xFC\x84\x80\x80\x80\x80"), 0, 0},
    {CODEC_BYTES("\xFE"), 0, 0},
    {CODEC_BYTES("\xFF"), 0, 0},
    /* lone continuation bytes and a lead byte cut short by another character */
    {CODEC_BYTES("\x80"), 0, 0},
    {CODEC_BYTES("\xBF"), 0, 0},
    {CODEC_BYTES("a\x80" "b"), 0, 1},
    {CODEC_BYTES("\xC2\x80\x80"), 0, 2},
    {CODEC_BYTES("\xC2" "A"), 0, 1},
    {CODEC_BYTES("\xE2\x82" "A"), 0, 2},
    {CODEC_BYTES("\xF0\x90\x80" "A"), 0, 3},
    {CODEC_BYTES("\xE2\xC2\xA0"), 0, 1},
    {CODEC_BYTES("0123456789ABCDEF\xFF" "0123456789"), 0, 16},
    {CODEC_BYTES("0123456789ABCDEF\xE0\x80\x80"), 0, 17},
    /* truncated at the end: not valid, yet nothing impossible has been seen */
    {CODEC_BYTES("\xC2"), 0, -1},
    {CODEC_BYTES("\xE0\xA0"), 0, -1},
    {CODEC_BYTES("\xED\x9F"), 0, -1},
    {CODEC_BYTES("\xF0\x90\x80"), 0, -1},
    {CODEC_BYTES("\xF4\x8F\xBF"), 0, -1},
    {CODEC_BYTES("abc\xE2\x82"), 0, -1},
    {CODEC_BYTES("0123456789ABCDEF\xF0\x9F\x98"), 0, -1},
};

static void codec_utf8_describe(const codec_utf8_sample *s, char *out, size_t size) {
    size_t i, at = 0;
    out[0] = '\0';
    for (i = 0; i < s->length && at + 4 < size; i++) at += (size_t)snprintf(out + at, size - at, "%02X ", (unsigned char)s->bytes[i]);
}

TEST(codec, utf8_samples_and_every_split) {
    size_t k;
    for (k = 0; k < sizeof codec_utf8_samples / sizeof codec_utf8_samples[0]; k++) {
        const codec_utf8_sample *s = &codec_utf8_samples[k];
        uint8_t *p = codec_exact_copy(s->bytes, s->length);
        size_t n = s->length, i, j, shortest = 0;
        uint32_t whole = vrs__utf8_feed(VRS__UTF8_ACCEPT, p, n), state;
        char name[200];
        int failed = 0;
        codec_utf8_describe(s, name, sizeof name);
        if (vrs__utf8_is_valid(p, n) != s->valid) {
            VRS_TEST_FAIL("UTF-8 [%s]: is_valid %d, expected %d", name, !s->valid, s->valid);
            failed = 1;
        }
        if (s->valid && whole != VRS__UTF8_ACCEPT) failed = 1;
        if (!s->valid && s->reject_at >= 0 && whole != VRS__UTF8_REJECT) failed = 1;
        if (!s->valid && s->reject_at < 0 && (whole == VRS__UTF8_REJECT || whole == VRS__UTF8_ACCEPT)) failed = 1;
        if (failed) VRS_TEST_FAIL("UTF-8 [%s]: final state %08X is wrong", name, (unsigned)whole);
        /* fail fast: the shortest rejected prefix ends at the first impossible byte */
        for (i = 0; i <= n; i++) {
            uint8_t *prefix = codec_exact_copy(p, i);
            int rejected = vrs__utf8_feed(VRS__UTF8_ACCEPT, prefix, i) == VRS__UTF8_REJECT;
            free(prefix);
            if (rejected) {
                shortest = i;
                break;
            }
        }
        if (s->reject_at >= 0 && shortest != (size_t)s->reject_at + 1)
            VRS_TEST_FAIL("UTF-8 [%s]: first rejected after %zu bytes, expected %d", name, shortest, s->reject_at + 1);
        if (s->reject_at < 0 && shortest != 0)
            VRS_TEST_FAIL("UTF-8 [%s]: rejected after %zu bytes, expected never", name, shortest);
        /* two pieces at every boundary, three pieces at every pair, and single bytes */
        for (i = 0; i <= n; i++) {
            state = vrs__utf8_feed(VRS__UTF8_ACCEPT, p, i);
            state = vrs__utf8_feed(state, p + i, n - i);
            if (state != whole) VRS_TEST_FAIL("UTF-8 [%s]: split at %zu gives %08X, whole %08X", name, i, (unsigned)state, (unsigned)whole);
            for (j = i; j <= n; j++) {
                state = vrs__utf8_feed(VRS__UTF8_ACCEPT, p, i);
                state = vrs__utf8_feed(state, p + i, j - i);
                state = vrs__utf8_feed(state, p + j, n - j);
                if (state != whole) VRS_TEST_FAIL("UTF-8 [%s]: split at %zu and %zu gives %08X", name, i, j, (unsigned)state);
            }
        }
        state = VRS__UTF8_ACCEPT;
        for (i = 0; i < n; i++) {
            uint8_t *one = codec_exact_copy(p + i, 1);
            state = vrs__utf8_feed(state, one, 1);
            free(one);
            if (state == VRS__UTF8_REJECT && (s->reject_at < 0 || i < (size_t)s->reject_at))
                VRS_TEST_FAIL("UTF-8 [%s]: fed byte by byte, rejected at byte %zu", name, i);
            if (s->reject_at >= 0 && i == (size_t)s->reject_at && state != VRS__UTF8_REJECT)
                VRS_TEST_FAIL("UTF-8 [%s]: fed byte by byte, not rejected at byte %zu", name, i);
        }
        if (state != whole) VRS_TEST_FAIL("UTF-8 [%s]: byte by byte gives %08X, whole %08X", name, (unsigned)state, (unsigned)whole);
        free(p);
    }
}

/* Long ASCII runs take the eight-bytes-at-a-time path: one bad byte anywhere must still be
   found at its own position, whatever the alignment and whatever follows it. */
TEST(codec, utf8_ascii_runs_with_one_bad_byte) {
    static const uint8_t bad_bytes[] = {0x80, 0xBF, 0xC0, 0xFF};
    static const size_t tails[] = {0, 1, 7, 8, 9, 30};
    uint8_t run[80];
    size_t position, t, b, i;
    memset(run, 'q', sizeof run);
    for (position = 0; position <= 40; position++) {
        for (t = 0; t < sizeof tails / sizeof tails[0]; t++) {
            size_t n = position + 1 + tails[t];
            uint8_t *p;
            /* all ASCII: valid */
            p = codec_exact_copy(run, n);
            if (!vrs__utf8_is_valid(p, n)) VRS_TEST_FAIL("ASCII run of %zu bytes refused", n);
            /* a two-byte character at the position (when it fits) */
            if (position + 1 < n) {
                p[position] = 0xC3;
                p[position + 1] = 0xA9;
                if (!vrs__utf8_is_valid(p, n)) VRS_TEST_FAIL("U+00E9 at %zu of %zu refused", position, n);
            }
            free(p);
            for (b = 0; b < sizeof bad_bytes; b++) {
                size_t shortest = 0;
                p = codec_exact_copy(run, n);
                p[position] = bad_bytes[b];
                if (vrs__utf8_feed(VRS__UTF8_ACCEPT, p, n) != VRS__UTF8_REJECT)
                    VRS_TEST_FAIL("byte %02X at %zu of %zu not rejected", bad_bytes[b], position, n);
                for (i = 1; i <= n; i++)
                    if (vrs__utf8_feed(VRS__UTF8_ACCEPT, p, i) == VRS__UTF8_REJECT) {
                        shortest = i;
                        break;
                    }
                if (shortest != position + 1)
                    VRS_TEST_FAIL("byte %02X at %zu of %zu: first rejected after %zu bytes", bad_bytes[b], position, n, shortest);
                free(p);
            }
            /* a lead byte as the very last byte: truncated, not rejected */
            p = codec_exact_copy(run, n);
            p[n - 1] = 0xE2;
            {
                uint32_t state = vrs__utf8_feed(VRS__UTF8_ACCEPT, p, n);
                if (state == VRS__UTF8_REJECT || state == VRS__UTF8_ACCEPT)
                    VRS_TEST_FAIL("a lead byte ending a run of %zu: state %08X", n, (unsigned)state);
            }
            free(p);
        }
    }
}

/* ---- HTTP request heads ---- */

static size_t codec_head_length(const char *text, size_t n) {
    uint8_t *copy = codec_exact_copy(text, n);
    size_t length = vrs__http_head_length((const char *)copy, n);
    free(copy);
    return length;
}

/* Parses a head that stays alive (a literal or a caller's buffer) after checking that the head
   measurer finds all of it. */
static vrs__parse_status codec_parse(const char *head, vrs_request *request) {
    size_t n = strlen(head);
    if (vrs__http_head_length(head, n) != n) return (vrs__parse_status)99;
    return vrs__http_parse(head, n, request);
}

/* Parses an exact-size copy: for heads that must be refused. */
static vrs__parse_status codec_parse_copy(const char *head) {
    size_t n = strlen(head);
    uint8_t *copy = codec_exact_copy(head, n);
    vrs_request request;
    vrs__parse_status status = vrs__http_parse((const char *)copy, n, &request);
    free(copy);
    return status;
}

static int codec_span_is(vrs_span span, const char *text) {
    return span.ptr != NULL && vrs_span_equals(span, text);
}

TEST(codec, http_head_length) {
    static const char crlf[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char lf[] = "GET / HTTP/1.1\nHost: a\n\n";
    static const char mixed[] = "GET / HTTP/1.1\r\nHost: a\n\r\n";
    static const char mixed2[] = "GET / HTTP/1.1\r\nHost: a\r\n\n";
    static const char followed[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x85" "abcd";
    size_t i;
    CHECK_EQ_INT(codec_head_length(crlf, strlen(crlf)), strlen(crlf));
    CHECK_EQ_INT(codec_head_length(lf, strlen(lf)), strlen(lf));
    CHECK_EQ_INT(codec_head_length(mixed, strlen(mixed)), strlen(mixed));
    CHECK_EQ_INT(codec_head_length(mixed2, strlen(mixed2)), strlen(mixed2));
    CHECK_EQ_INT(codec_head_length(followed, sizeof followed - 1), strlen(crlf));
    for (i = 0; i < strlen(crlf); i++)
        if (codec_head_length(crlf, i) != 0) VRS_TEST_FAIL("CRLF head cut at %zu measured as whole", i);
    for (i = 0; i < strlen(lf); i++)
        if (codec_head_length(lf, i) != 0) VRS_TEST_FAIL("LF head cut at %zu measured as whole", i);
    CHECK_EQ_INT(codec_head_length("", 0), 0);
    CHECK_EQ_INT(codec_head_length(CODEC_BYTES("GET / HTTP/1.1\r\nHost: a\r\n\r")), 0);
    CHECK_EQ_INT(codec_head_length(CODEC_BYTES("GET / HTTP/1.1\r\nHost: a\r\n")), 0);
    CHECK_EQ_INT(codec_head_length(CODEC_BYTES("GET / HTTP/1.1\r\nHost: a\r\r\n")), 0);
}

TEST(codec, http_parse_good_heads) {
    static const char head[] = "GET /chat/room?room=lobby&x=1 HTTP/1.1\r\n"
                               "Host: example.com:4000\r\n"
                               "X-Spaced: \t value with  inner\tspaces \t \r\n"
                               "X-Empty:\r\n"
                               "x-obs-text: caf\xC3\xA9\r\n"
                               "\r\n";
    vrs_request r;
    REQUIRE_EQ_INT(codec_parse(head, &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(r.method, "GET"));
    CHECK(codec_span_is(r.target, "/chat/room?room=lobby&x=1"));
    CHECK(codec_span_is(r.path, "/chat/room"));
    CHECK(codec_span_is(r.query, "room=lobby&x=1"));
    CHECK_EQ_INT(r.minor_version, 1);
    REQUIRE_EQ_INT(r.header_count, 4);
    CHECK(codec_span_is(r.headers[0].name, "Host"));
    CHECK(codec_span_is(r.headers[0].value, "example.com:4000"));
    CHECK(codec_span_is(r.headers[1].name, "X-Spaced"));
    CHECK(codec_span_is(r.headers[1].value, "value with  inner\tspaces"));
    CHECK(codec_span_is(r.headers[2].name, "X-Empty"));
    CHECK_EQ_INT(r.headers[2].value.length, 0);
    CHECK(codec_span_is(r.headers[3].name, "x-obs-text"));
    CHECK(codec_span_is(r.headers[3].value, "caf\xC3\xA9"));

    REQUIRE_EQ_INT(codec_parse("POST /upload HTTP/1.0\nHost:a\n\n", &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(r.method, "POST"));
    CHECK(codec_span_is(r.path, "/upload"));
    CHECK_EQ_INT(r.query.length, 0);
    CHECK(r.query.ptr != NULL);
    CHECK_EQ_INT(r.minor_version, 0);
    CHECK_EQ_INT(r.header_count, 1);
    CHECK(codec_span_is(r.headers[0].value, "a"));

    REQUIRE_EQ_INT(codec_parse("OPTIONS * HTTP/1.1\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(r.target, "*"));
    CHECK_EQ_INT(r.header_count, 0);

    REQUIRE_EQ_INT(codec_parse("GET /? HTTP/1.1\r\nHost: a\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(r.path, "/"));
    CHECK_EQ_INT(r.query.length, 0);

    REQUIRE_EQ_INT(codec_parse("GET /a?b?c=d HTTP/1.1\r\nHost: a\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(r.path, "/a"));
    CHECK(codec_span_is(r.query, "b?c=d"));

    REQUIRE_EQ_INT(codec_parse("M-SEARCH~! /x HTTP/1.9\r\nA:b\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(r.method, "M-SEARCH~!"));
    CHECK_EQ_INT(r.minor_version, 9);
}

TEST(codec, http_parse_bad_heads) {
    static const char *const bad[] = {
        "GET /\r\n\r\n",                                   /* no version */
        "GET / \r\n\r\n",
        "GET\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.x\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        " / HTTP/1.1\r\n\r\n",                            /* empty method */
        "GET  / HTTP/1.1\r\n\r\n",                        /* empty target */
        "G(T / HTTP/1.1\r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "GET /a\x01" "b HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",            /* space before the colon */
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n continued\r\n\r\n", /* obsolete folding */
        "GET / HTTP/1.1\r\nHost: a\r\n\tcontinued\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n",        /* control characters in a value */
        "GET / HTTP/1.1\r\nX: a\x7F" "b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: \x1B\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nX\x80: a\r\n\r\n",
        "GET / HTTP/1.1\r\nX(y): a\r\n\r\n",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vrs__parse_status status = codec_parse_copy(bad[i]);
        if (status != VRS__PARSE_BAD) VRS_TEST_FAIL("head #%zu parsed with status %d, expected BAD", i, (int)status);
    }
    /* a head with no empty line at all (parse is given only whole heads, but must not run off) */
    CHECK_EQ_INT(codec_parse_copy("GET / HTTP/1.1\r\nHost: a\r\n"), VRS__PARSE_BAD);
}

TEST(codec, http_parse_header_limit) {
    char head[4096];
    vrs_request r;
    int i;
    strcpy(head, "GET / HTTP/1.1\r\n");
    for (i = 0; i < VRS_MAX_HEADERS; i++) sprintf(head + strlen(head), "X-%d: v%d\r\n", i, i);
    strcat(head, "\r\n");
    REQUIRE_EQ_INT(codec_parse(head, &r), VRS__PARSE_DONE);
    CHECK_EQ_INT(r.header_count, VRS_MAX_HEADERS);
    CHECK(codec_span_is(r.headers[VRS_MAX_HEADERS - 1].value, "v63"));
    head[strlen(head) - 2] = '\0';
    strcat(head, "X-64: v64\r\n\r\n");
    CHECK_EQ_INT(codec_parse(head, &r), VRS__PARSE_TOO_MANY_HEADERS);
    CHECK_EQ_INT(codec_parse_copy(head), VRS__PARSE_TOO_MANY_HEADERS);
}

#define CODEC_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define CODEC_V13 "Sec-WebSocket-Version: 13\r\n"

TEST(codec, http_check_upgrade_outcomes) {
    static const struct { const char *head; vrs__upgrade_check expected; } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", VRS__NOT_AN_UPGRADE},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", VRS__NOT_AN_UPGRADE},
        {"POST /form HTTP/1.1\r\nHost: a\r\n\r\n", VRS__NOT_AN_UPGRADE},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_VALID},
        {"GET /s HTTP/1.1\r\nHost: a\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_VALID},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: foo/1, websocket\r\nConnection: keep-alive\r\nConnection: upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_VALID},
        /* 400 */
        {"POST /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n", VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n" CODEC_KEY CODEC_V13 "\r\n", VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" CODEC_KEY CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n" CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n" CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=\r\n" CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" CODEC_V13 "\r\n",
         VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\n" CODEC_V13 "\r\n", VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\n" CODEC_KEY "\r\n", VRS__UPGRADE_BAD},
        {"GET /s HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", VRS__UPGRADE_BAD},
        /* 426 */
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_KEY
         "Sec-WebSocket-Version: 8\r\n\r\n",
         VRS__UPGRADE_VERSION},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_KEY "\r\n",
         VRS__UPGRADE_VERSION},
        {"GET /s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" CODEC_KEY
         "Sec-WebSocket-Version: 13, 8\r\n\r\n",
         VRS__UPGRADE_VERSION},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vrs_request r;
        vrs__upgrade_check got;
        if (codec_parse(cases[i].head, &r) != VRS__PARSE_DONE) {
            VRS_TEST_FAIL("upgrade case #%zu does not parse", i);
            continue;
        }
        got = vrs__check_upgrade(&r);
        if (got != cases[i].expected)
            VRS_TEST_FAIL("upgrade case #%zu: outcome %d, expected %d", i, (int)got, (int)cases[i].expected);
    }
}

TEST(codec, request_header_case_insensitive) {
    static const char head[] = "GET / HTTP/1.1\r\nHost: one\r\nX-Thing: first\r\nx-thing: second\r\n\r\n";
    vrs_request r;
    vrs_span none;
    REQUIRE_EQ_INT(codec_parse(head, &r), VRS__PARSE_DONE);
    CHECK(codec_span_is(vrs_request_header(&r, "Host"), "one"));
    CHECK(codec_span_is(vrs_request_header(&r, "host"), "one"));
    CHECK(codec_span_is(vrs_request_header(&r, "HOST"), "one"));
    CHECK(codec_span_is(vrs_request_header(&r, "x-THING"), "first"));
    none = vrs_request_header(&r, "X-Missing");
    CHECK_EQ_INT(none.length, 0);
    CHECK(none.ptr != NULL);
    CHECK_EQ_INT(vrs_request_header(&r, "Hos").length, 0);
    CHECK_EQ_INT(vrs_request_header(&r, "Hostx").length, 0);
    CHECK_EQ_INT(vrs_request_header(&r, "").length, 0);
}

static int codec_query(const vrs_request *r, const char *name, size_t capacity, char *out) {
    memset(out, '#', 64);
    return vrs_request_query(r, name, out, capacity);
}

TEST(codec, request_query_decoding) {
    static const char head[] = "GET /p?a=1&b=hello%20world&c=x+y&d=&e&f=%zz&g=%4&ab=2&h=%2B%26%3d&i=%41"
                               "&&j=caf%C3%A9&k=a%00b&t=%"
                               " HTTP/1.1\r\nHost: a\r\n\r\n";
    vrs_request r;
    char out[64];
    REQUIRE_EQ_INT(codec_parse(head, &r), VRS__PARSE_DONE);
    CHECK_EQ_INT(codec_query(&r, "a", sizeof out, out), 1);
    CHECK_EQ_STR(out, "1");
    CHECK_EQ_INT(codec_query(&r, "ab", sizeof out, out), 1);
    CHECK_EQ_STR(out, "2");
    CHECK_EQ_INT(codec_query(&r, "b", sizeof out, out), 11);
    CHECK_EQ_STR(out, "hello world");
    CHECK_EQ_INT(codec_query(&r, "c", sizeof out, out), 3);
    CHECK_EQ_STR(out, "x y");
    CHECK_EQ_INT(codec_query(&r, "d", sizeof out, out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(codec_query(&r, "e", sizeof out, out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(codec_query(&r, "h", sizeof out, out), 3);
    CHECK_EQ_STR(out, "+&=");
    CHECK_EQ_INT(codec_query(&r, "i", sizeof out, out), 1);
    CHECK_EQ_STR(out, "A");
    CHECK_EQ_INT(codec_query(&r, "j", sizeof out, out), 5);
    CHECK_EQ_STR(out, "caf\xC3\xA9");
    CHECK_EQ_INT(codec_query(&r, "k", sizeof out, out), 3);
    CHECK_EQ_MEM(out, "a\0b", 4);
    /* malformed percent escapes: present but unusable */
    CHECK_EQ_INT(codec_query(&r, "f", sizeof out, out), -2);
    CHECK_EQ_INT(codec_query(&r, "g", sizeof out, out), -2);
    CHECK_EQ_INT(codec_query(&r, "t", sizeof out, out), -2);
    /* missing */
    CHECK_EQ_INT(codec_query(&r, "z", sizeof out, out), -1);
    CHECK_EQ_INT(codec_query(&r, "A", sizeof out, out), -1);
    CHECK_EQ_INT(codec_query(&r, "hello", sizeof out, out), -1);
    /* capacity: the value and its NUL */
    CHECK_EQ_INT(codec_query(&r, "b", 11, out), -2);
    CHECK_EQ_INT(codec_query(&r, "b", 12, out), 11);
    CHECK_EQ_STR(out, "hello world");
    CHECK_EQ_INT(codec_query(&r, "a", 1, out), -2);
    CHECK_EQ_INT(codec_query(&r, "a", 2, out), 1);
    CHECK_EQ_INT(codec_query(&r, "d", 1, out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(codec_query(&r, "a", 0, out), -2);
    CHECK_EQ_INT(codec_query(&r, "z", 0, out), -1);
    CHECK_EQ_INT(out[0], '#');

    REQUIRE_EQ_INT(codec_parse("GET /no-query HTTP/1.1\r\nHost: a\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK_EQ_INT(codec_query(&r, "a", sizeof out, out), -1);
    REQUIRE_EQ_INT(codec_parse("GET /?&&x=%7e&y HTTP/1.1\r\nHost: a\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK_EQ_INT(codec_query(&r, "x", sizeof out, out), 1);
    CHECK_EQ_STR(out, "~");
    CHECK_EQ_INT(codec_query(&r, "y", sizeof out, out), 0);
}

TEST(codec, request_offers_subprotocol_lists) {
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\n"
                               "Sec-WebSocket-Protocol: phoenix,  v2.json ,chat\r\n"
                               "Sec-WebSocket-Protocol: , other,,\r\n\r\n";
    vrs_request r;
    REQUIRE_EQ_INT(codec_parse(head, &r), VRS__PARSE_DONE);
    CHECK(vrs_request_offers_subprotocol(&r, "phoenix"));
    CHECK(vrs_request_offers_subprotocol(&r, "v2.json"));
    CHECK(vrs_request_offers_subprotocol(&r, "chat"));
    CHECK(vrs_request_offers_subprotocol(&r, "other"));
    CHECK(!vrs_request_offers_subprotocol(&r, "pho"));
    CHECK(!vrs_request_offers_subprotocol(&r, "phoenixx"));
    CHECK(!vrs_request_offers_subprotocol(&r, "v2"));
    CHECK(!vrs_request_offers_subprotocol(&r, "json"));
    CHECK(!vrs_request_offers_subprotocol(&r, ""));
    CHECK(!vrs_request_offers_subprotocol(&r, "phoenix, v2.json"));
    REQUIRE_EQ_INT(codec_parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK(!vrs_request_offers_subprotocol(&r, "phoenix"));
    REQUIRE_EQ_INT(codec_parse("GET / HTTP/1.1\r\nsec-websocket-protocol: solo\r\n\r\n", &r), VRS__PARSE_DONE);
    CHECK(vrs_request_offers_subprotocol(&r, "solo"));
}

/* ---- The frame reader, fed every input split at every boundary ---- */

#define CODEC_MAX_MESSAGES 16
#define CODEC_EVERY_SPLIT_LIMIT 2048 /* streams up to this long are split at every byte */
#define CODEC_GIVE_UP 3              /* failing splits reported per case before moving on */

/* A client byte stream, with where its frames start. */
typedef struct codec_stream {
    codec_buffer bytes;
    int frame_count;
    size_t frame_starts[64], payload_starts[64], payload_lengths[64];
} codec_stream;

/* Appends one client frame. first_byte holds FIN, RSV and the opcode; `form` forces the
   length encoding (0: the shortest, 126: 16-bit, 127: 64-bit); `declared` is the length the
   header states, `payload`/n what actually follows. */
static void codec_frame_ex(codec_stream *s, int first_byte, int masked, int form, uint64_t declared,
                           const void *payload, size_t n) {
    uint8_t header[14], mask[4];
    size_t h = 0, i;
    uint8_t mask_bit = masked ? 0x80 : 0;
    const uint8_t *p = (const uint8_t *)payload;
    int k = s->frame_count;
    if (form == 0) form = declared < 126 ? 0 : declared <= 0xFFFF ? 126 : 127;
    header[h++] = (uint8_t)first_byte;
    if (form == 0) {
        header[h++] = (uint8_t)(mask_bit | declared);
    } else if (form == 126) {
        header[h++] = (uint8_t)(mask_bit | 126);
        header[h++] = (uint8_t)(declared >> 8);
        header[h++] = (uint8_t)declared;
    } else {
        header[h++] = (uint8_t)(mask_bit | 127);
        for (i = 0; i < 8; i++) header[h++] = (uint8_t)(declared >> (56 - 8 * i));
    }
    /* a different key for every frame, some with zero bytes */
    mask[0] = (uint8_t)(0x5A ^ (k * 37));
    mask[1] = (uint8_t)(k % 3 == 0 ? 0 : 0xC3 + k);
    mask[2] = (uint8_t)(0x81 + 11 * k);
    mask[3] = (uint8_t)(0xFF - k);
    if (masked) {
        memcpy(header + h, mask, 4);
        h += 4;
    }
    if (s->frame_count < 64) {
        s->frame_starts[s->frame_count] = s->bytes.length;
        s->payload_starts[s->frame_count] = s->bytes.length + h;
        s->payload_lengths[s->frame_count] = n;
        s->frame_count++;
    }
    codec_buffer_put(&s->bytes, header, h);
    for (i = 0; i < n; i++) {
        uint8_t b = (uint8_t)(p[i] ^ (masked ? mask[i & 3] : 0));
        codec_buffer_put(&s->bytes, &b, 1);
    }
}

/* A masked frame with the shortest length encoding. */
static void codec_frame(codec_stream *s, int first_byte, const void *payload, size_t n) {
    codec_frame_ex(s, first_byte, 1, 0, n, payload, n);
}

static void codec_close_frame(codec_stream *s, int code, const char *reason, size_t reason_length) {
    uint8_t payload[125];
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason_length) memcpy(payload + 2, reason, reason_length);
    codec_frame(s, 0x88, payload, 2 + reason_length);
}

/* What a case must produce, however its bytes are split. */
typedef struct codec_expect {
    int message_count;
    int types[CODEC_MAX_MESSAGES];
    const uint8_t *data[CODEC_MAX_MESSAGES];
    size_t lengths[CODEC_MAX_MESSAGES];
    codec_buffer written; /* the frames the server writes */
    int close_code;       /* on_close during the feed; 0 while the connection stays open */
    int log_item;         /* the first problem logged, -1 for none */
} codec_expect;

static void codec_expect_init(codec_expect *e) {
    memset(e, 0, sizeof *e);
    e->log_item = -1;
}

static void codec_expect_message(codec_expect *e, int type, const void *data, size_t length) {
    if (e->message_count < CODEC_MAX_MESSAGES) {
        e->types[e->message_count] = type;
        e->data[e->message_count] = (const uint8_t *)data;
        e->lengths[e->message_count] = length;
        e->message_count++;
    }
}

static void codec_expect_pong(codec_expect *e, const void *payload, size_t length) {
    uint8_t header[2];
    header[0] = 0x8A;
    header[1] = (uint8_t)length;
    codec_buffer_put(&e->written, header, 2);
    codec_buffer_put(&e->written, payload, length);
}

/* The server's close frame (code 0: an empty one) and the code on_close reports. */
static void codec_expect_close(codec_expect *e, int written_code, int reported_code) {
    uint8_t frame[4];
    frame[0] = 0x88;
    frame[1] = written_code ? 2 : 0;
    frame[2] = (uint8_t)(written_code >> 8);
    frame[3] = (uint8_t)written_code;
    codec_buffer_put(&e->written, frame, written_code ? 4 : 2);
    e->close_code = reported_code;
}

/* What one run produced. */
typedef struct codec_outcome {
    int message_count; /* may pass CODEC_MAX_MESSAGES; only the first are kept */
    int types[CODEC_MAX_MESSAGES];
    uint8_t *data[CODEC_MAX_MESSAGES];
    size_t lengths[CODEC_MAX_MESSAGES];
    codec_buffer written;
    int close_code, close_calls;
    int log_item;
} codec_outcome;

static void codec_outcome_free(codec_outcome *o) {
    int i;
    for (i = 0; i < o->message_count && i < CODEC_MAX_MESSAGES; i++) free(o->data[i]);
    codec_buffer_free(&o->written);
}

/* A real server whose callbacks record into `outcome` while a run is under way. */
typedef struct codec_wire {
    vrs_server *server;
    codec_outcome *outcome;
    int late_closes; /* on_close calls after the recorded part of a run */
} codec_wire;

static void codec_on_message(vrs_server *server, vrs_conn conn, vrs_message_type type,
                             const void *data, size_t length, void *user_data) {
    codec_wire *w = (codec_wire *)user_data;
    codec_outcome *o = w->outcome;
    (void)server;
    (void)conn;
    if (!o) return;
    if (o->message_count < CODEC_MAX_MESSAGES) {
        o->types[o->message_count] = (int)type;
        o->data[o->message_count] = codec_exact_copy(data, length);
        o->lengths[o->message_count] = length;
    }
    o->message_count++;
}

static void codec_on_close(vrs_server *server, vrs_conn conn, int code, void *user_data) {
    codec_wire *w = (codec_wire *)user_data;
    (void)server;
    (void)conn;
    if (!w->outcome) {
        w->late_closes++;
        return;
    }
    w->outcome->close_code = code;
    w->outcome->close_calls++;
}

static void codec_logger(vrs_log_level level, vrs_log_item item, const char *message, void *user_data) {
    codec_wire *w = (codec_wire *)user_data;
    (void)level;
    (void)message;
    if (!w->outcome || w->outcome->log_item >= 0) return;
    if (item == VRS_LOG_LISTENING || item == VRS_LOG_CONNECTION_OPENED || item == VRS_LOG_CONNECTION_CLOSED) return;
    w->outcome->log_item = (int)item;
}

static int codec_wire_create(codec_wire *w, int max_message_size) {
    vrs_desc desc;
    memset(w, 0, sizeof *w);
    memset(&desc, 0, sizeof desc);
    desc.port = VRS_PORT_ANY;
    desc.max_connections = 4;
    desc.max_message_size = max_message_size;
    desc.max_request_size = 1024;
    desc.send_queue_size = 65536;
    desc.buffer_pool_size = 128 * VRS_BLOCK_SIZE;
    desc.on_message = codec_on_message;
    desc.on_close = codec_on_close;
    desc.user_data = w;
    desc.logger.func = codec_logger;
    desc.logger.user_data = w;
    return vrs_create(&desc, &w->server) == VRS_OK;
}

/* Sent behind what the server wrote, on the server's own socket, so that the reader knows
   when it has it all: on Windows the pair is a loopback TCP connection, whose bytes may still
   be on their way when the write returned. */
static const uint8_t codec_marker[16] = {0xF1, 0x7E, 0x00, 0xC0, 0xDE, 0x5A, 0xFE, 0x11,
                                         0x0B, 0xB0, 0xE5, 0x00, 0x3D, 0x9A, 0x77, 0xEF};

/* Reads what the server wrote up to the marker, or (marker NULL: the server's end is closed)
   up to the end of the stream. */
static void codec_drain(int fd, const uint8_t *marker, codec_buffer *out) {
    uint8_t chunk[4096];
    int64_t deadline = ts_now_ms() + TS_TIMEOUT_MS;
    for (;;) {
        ssize_t got = recv(fd, (void *)chunk, sizeof chunk, 0);
        struct pollfd p;
        if (got > 0) {
            codec_buffer_put(out, chunk, (size_t)got);
            if (marker && out->length >= sizeof codec_marker &&
                memcmp(out->bytes + out->length - sizeof codec_marker, marker, sizeof codec_marker) == 0) {
                out->length -= sizeof codec_marker;
                return;
            }
            continue;
        }
        if (got == 0 || !ts_would_block() || ts_now_ms() >= deadline) return;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        ts_poll(&p, 1, 10);
    }
}

/* One connection, open as vrs__open_websocket leaves it, fed `stream` cut at `cuts` (each piece
   copied to a scratch buffer of its exact size, since the reader unmasks in place). What the
   server wrote is read back from the socket pair's other end. The connection is released. */
static int codec_run(codec_wire *w, const uint8_t *stream, size_t n, const size_t *cuts, size_t cut_count,
                     codec_outcome *o) {
    int fds[2];
    struct sockaddr_storage address;
    vrs__conn *conn;
    size_t start = 0, i;
    memset(o, 0, sizeof *o);
    o->log_item = -1;
    if (ts_socket_pair(fds) != 0) return 0;
    memset(&address, 0, sizeof address);
    conn = vrs__adopt(w->server, fds[0], &address, 0);
    VRS_MEMSET(&conn->reader, 0, sizeof conn->reader);
    conn->state = VRS__OPEN;
    conn->announced = 1;
    w->server->websocket_count++;
    w->outcome = o;
    for (i = 0; i <= cut_count; i++) {
        size_t end = i < cut_count ? cuts[i] : n;
        uint8_t *scratch = codec_exact_copy(stream + start, end - start);
        vrs__read_frames(w->server, conn, scratch, end - start, 1);
        free(scratch);
        start = end;
    }
    vrs__attend(w->server);
    if (conn->state == VRS__FREE || conn->shutdown_sent) {
        codec_drain(fds[1], NULL, &o->written);
    } else {
        ssize_t sent = send(fds[0], (const void *)codec_marker, sizeof codec_marker, 0);
        codec_drain(fds[1], sent == (ssize_t)sizeof codec_marker ? codec_marker : NULL, &o->written);
    }
    w->outcome = NULL;
    if (conn->state != VRS__FREE) {
        vrs__kill(w->server, conn, VRS__CLOSE_ABNORMAL);
        vrs__attend(w->server);
    }
    ts_close_socket(fds[1]);
    return 1;
}

static int codec_outcome_matches(const codec_outcome *o, const codec_expect *e, char *why, size_t size) {
    int i;
    if (o->message_count != e->message_count) {
        snprintf(why, size, "%d messages delivered, expected %d", o->message_count, e->message_count);
        return 0;
    }
    for (i = 0; i < e->message_count; i++) {
        if (o->types[i] != e->types[i] || o->lengths[i] != e->lengths[i] ||
            (e->lengths[i] && memcmp(o->data[i], e->data[i], e->lengths[i]) != 0)) {
            snprintf(why, size, "message %d: type %d, %zu bytes; expected type %d, %zu bytes%s", i, o->types[i],
                     o->lengths[i], e->types[i], e->lengths[i],
                     o->lengths[i] == e->lengths[i] ? " (contents differ)" : "");
            return 0;
        }
    }
    if (o->written.length != e->written.length ||
        (e->written.length && memcmp(o->written.bytes, e->written.bytes, e->written.length) != 0)) {
        char got[64], want[64];
        codec_hex(o->written.bytes ? o->written.bytes : (const uint8_t *)"", o->written.length < 24 ? o->written.length : 24, got);
        codec_hex(e->written.bytes ? e->written.bytes : (const uint8_t *)"", e->written.length < 24 ? e->written.length : 24, want);
        snprintf(why, size, "the server wrote %zu bytes [%s], expected %zu [%s]", o->written.length, got,
                 e->written.length, want);
        return 0;
    }
    if (o->close_code != e->close_code || o->close_calls != (e->close_code ? 1 : 0)) {
        snprintf(why, size, "on_close called %d times with %d, expected code %d", o->close_calls, o->close_code,
                 e->close_code);
        return 0;
    }
    if (o->log_item != e->log_item) {
        snprintf(why, size, "first problem logged: %s, expected %s",
                 o->log_item < 0 ? "none" : vrs_log_item_name((vrs_log_item)o->log_item),
                 e->log_item < 0 ? "none" : vrs_log_item_name((vrs_log_item)e->log_item));
        return 0;
    }
    return 1;
}

/* One run and its verdict; every run must also leave the server as it found it. */
static int codec_try(codec_wire *w, const char *name, const codec_stream *s, const size_t *cuts, size_t cut_count,
                     const codec_expect *e, const char *plan) {
    codec_outcome o;
    char why[256];
    int ok;
    if (!codec_run(w, s->bytes.bytes, s->bytes.length, cuts, cut_count, &o)) {
        VRS_TEST_FAIL("%s: socketpair failed", name);
        return 0;
    }
    ok = codec_outcome_matches(&o, e, why, sizeof why);
    if (!ok) VRS_TEST_FAIL("%s, %s: %s", name, plan, why);
    codec_outcome_free(&o);
    if (w->server->pool.free_count != w->server->pool.block_count || w->server->pool.inbound_used != 0 ||
        w->server->websocket_count != 0 || w->server->active_count != 0) {
        VRS_TEST_FAIL("%s, %s: after release: %u of %u blocks free, %u inbound, %d websockets, %u active", name, plan,
                      (unsigned)w->server->pool.free_count, (unsigned)w->server->pool.block_count,
                      (unsigned)w->server->pool.inbound_used, w->server->websocket_count,
                      (unsigned)w->server->active_count);
        ok = 0;
    }
    return ok;
}

/* Feeds the stream whole, byte by byte, in two pieces at every boundary (or, for long streams,
   at every boundary in and near each frame header and a sample of payload boundaries), in three
   pieces at every pair of boundaries for short streams, and in uneven chunks. */
static void codec_check_splits(codec_wire *w, const char *name, const codec_stream *s, const codec_expect *e) {
    static const size_t chunk_sizes[] = {1, 3, 7, 2, 64, 5, 1000, 11, 4095, 4097, 13, 126};
    size_t n = s->bytes.length, i, j, k;
    size_t *cuts = (size_t *)malloc((n + 2) * sizeof *cuts);
    char plan[96];
    int failures = 0;
    if (!cuts) {
        VRS_TEST_FAIL("%s: out of memory", name);
        return;
    }
    if (!codec_try(w, name, s, NULL, 0, e, "in one piece")) failures++;
    for (i = 0; i + 1 < n; i++) cuts[i] = i + 1;
    if (n > 1 && !codec_try(w, name, s, cuts, n - 1, e, "byte by byte")) failures++;
    if (n <= CODEC_EVERY_SPLIT_LIMIT) {
        for (k = 0; k <= n && failures < CODEC_GIVE_UP; k++) {
            snprintf(plan, sizeof plan, "split at %zu of %zu", k, n);
            if (!codec_try(w, name, s, &k, 1, e, plan)) failures++;
        }
    } else {
        size_t points[512], count = 0;
        uint32_t seed = (uint32_t)n;
        int f;
        for (f = 0; f < s->frame_count; f++) {
            size_t start = s->frame_starts[f], payload = s->payload_starts[f], length = s->payload_lengths[f];
            for (k = start; k <= payload + 4 && k <= n && count < 400; k++) points[count++] = k;
            for (k = VRS_BLOCK_SIZE; k < length && count < 400; k += VRS_BLOCK_SIZE) {
                points[count++] = payload + k - 1;
                points[count++] = payload + k;
            }
            if (count < 400) points[count++] = payload + length / 2;
            if (count < 400 && length > 0) points[count++] = payload + length - 1;
        }
        while (count < sizeof points / sizeof points[0]) points[count++] = codec_random(&seed) % (n + 1);
        for (i = 0; i < count && failures < CODEC_GIVE_UP; i++) {
            if (points[i] > n) continue;
            snprintf(plan, sizeof plan, "split at %zu of %zu", points[i], n);
            if (!codec_try(w, name, s, &points[i], 1, e, plan)) failures++;
        }
    }
    if (n <= 40) {
        for (i = 0; i <= n && failures < CODEC_GIVE_UP; i++)
            for (j = i; j <= n && failures < CODEC_GIVE_UP; j++) {
                size_t pair[2];
                pair[0] = i;
                pair[1] = j;
                snprintf(plan, sizeof plan, "split at %zu and %zu of %zu", i, j, n);
                if (!codec_try(w, name, s, pair, 2, e, plan)) failures++;
            }
    }
    for (j = 0; j < 3 && failures < CODEC_GIVE_UP; j++) {
        size_t at = 0, count = 0;
        k = j;
        while (at < n) {
            at += chunk_sizes[k++ % (sizeof chunk_sizes / sizeof chunk_sizes[0])];
            if (at < n) cuts[count++] = at;
        }
        snprintf(plan, sizeof plan, "in uneven chunks (pattern %zu)", j);
        if (!codec_try(w, name, s, cuts, count, e, plan)) failures++;
    }
    free(cuts);
}

/* Valid UTF-8 of exactly n bytes mixing 1- to 4-byte characters. */
static void codec_fill_text(uint8_t *out, size_t n) {
    static const char *const pieces[] = {"a", "\xCE\xBA", "\xE2\x82\xAC", "\xF0\x90\x8D\x88", "Z", " "};
    size_t at = 0, k = 0;
    while (at < n) {
        const char *piece = pieces[k++ % 6];
        size_t length = strlen(piece);
        if (length > n - at) {
            piece = "z";
            length = 1;
        }
        memcpy(out + at, piece, length);
        at += length;
    }
}

static void codec_fill_binary(uint8_t *out, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (uint8_t)(i * 131 + (i >> 8) + 7);
}

static void codec_stream_free(codec_stream *s) { codec_buffer_free(&s->bytes); }

TEST(codec, frames_single_messages_every_split) {
    static const size_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536};
    codec_wire w;
    uint8_t *payload = (uint8_t *)malloc(65536);
    size_t i;
    int type;
    REQUIRE(payload != NULL);
    if (!codec_wire_create(&w, 65536)) {
        free(payload);
        REQUIRE(!"vrs_create failed");
    }
    for (i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        for (type = VRS_MESSAGE_TEXT; type <= VRS_MESSAGE_BINARY; type++) {
            codec_stream s;
            codec_expect e;
            char name[64];
            memset(&s, 0, sizeof s);
            codec_expect_init(&e);
            if (type == VRS_MESSAGE_TEXT) codec_fill_text(payload, lengths[i]);
            else codec_fill_binary(payload, lengths[i]);
            codec_frame(&s, 0x80 | type, payload, lengths[i]);
            codec_expect_message(&e, type, payload, lengths[i]);
            snprintf(name, sizeof name, "%s message of %zu bytes", type == VRS_MESSAGE_TEXT ? "text" : "binary", lengths[i]);
            codec_check_splits(&w, name, &s, &e);
            codec_stream_free(&s);
            codec_buffer_free(&e.written);
        }
    }
    vrs_destroy(w.server);
    free(payload);
}

TEST(codec, frames_many_messages_in_one_stream) {
    static const size_t lengths[] = {0, 1, 125, 126, 127};
    static uint8_t texts[5][127], binaries[5][127];
    codec_wire w;
    codec_stream s;
    codec_expect e;
    size_t i;
    REQUIRE(codec_wire_create(&w, 1000));
    memset(&s, 0, sizeof s);
    codec_expect_init(&e);
    for (i = 0; i < 5; i++) {
        codec_fill_text(texts[i], lengths[i]);
        codec_fill_binary(binaries[i], lengths[i]);
        binaries[i][0] = (uint8_t)(0xF0 + i);
        codec_frame(&s, 0x81, texts[i], lengths[i]);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, texts[i], lengths[i]);
        if (i == 2) {
            codec_frame(&s, 0x89, "ping!", 5);
            codec_expect_pong(&e, "ping!", 5);
            codec_frame(&s, 0x8A, "unsolicited", 11); /* ignored */
        }
        codec_frame(&s, 0x82, binaries[i], lengths[i]);
        codec_expect_message(&e, VRS_MESSAGE_BINARY, binaries[i], lengths[i]);
    }
    codec_frame(&s, 0x89, "", 0);
    codec_expect_pong(&e, "", 0);
    codec_check_splits(&w, "ten messages and pings", &s, &e);
    codec_stream_free(&s);
    codec_buffer_free(&e.written);
    vrs_destroy(w.server);
}

TEST(codec, frames_fragmented_with_interleaved_pings) {
    codec_wire w;
    REQUIRE(codec_wire_create(&w, 1000));
    {
        /* "Hello κόσμε": the 2-byte κ split across fragments, pings between fragments */
        static const char whole[] = "Hello \xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x01, "Hel", 3);
        codec_frame(&s, 0x89, "p1", 2);
        codec_frame(&s, 0x00, "lo \xCE", 4);
        codec_frame(&s, 0x89, "", 0);
        codec_frame(&s, 0x00, "", 0);
        codec_frame(&s, 0x8A, "pong", 4);
        codec_frame(&s, 0x80, "\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 10);
        codec_expect_pong(&e, "p1", 2);
        codec_expect_pong(&e, "", 0);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, whole, sizeof whole - 1);
        codec_frame(&s, 0x81, "next", 4);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, "next", 4);
        codec_check_splits(&w, "fragmented text", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    {
        static const uint8_t whole[] = {0x00, 0xFF, 0x80, 0x01, 0xC0, 0xC1, 0xF5, 0xED, 0xA0};
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x02, whole, 2);
        codec_frame(&s, 0x89, "abc", 3);
        codec_frame(&s, 0x00, whole + 2, 3);
        codec_frame(&s, 0x89, "0123456789", 10);
        codec_frame(&s, 0x80, whole + 5, 4);
        codec_expect_pong(&e, "abc", 3);
        codec_expect_pong(&e, "0123456789", 10);
        codec_expect_message(&e, VRS_MESSAGE_BINARY, whole, sizeof whole);
        codec_check_splits(&w, "fragmented binary", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    {
        /* an empty first fragment: the message is still text */
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x01, "", 0);
        codec_frame(&s, 0x80, "abc", 3);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, "abc", 3);
        codec_frame(&s, 0x02, "", 0);
        codec_frame(&s, 0x89, "x", 1);
        codec_frame(&s, 0x80, "\x00\x01", 2);
        codec_expect_pong(&e, "x", 1);
        codec_expect_message(&e, VRS_MESSAGE_BINARY, "\x00\x01", 2);
        codec_check_splits(&w, "empty first fragment", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    {
        /* a message of empty fragments only */
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x01, "", 0);
        codec_frame(&s, 0x00, "", 0);
        codec_frame(&s, 0x80, "", 0);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, "", 0);
        codec_frame(&s, 0x02, "", 0);
        codec_frame(&s, 0x80, "", 0);
        codec_expect_message(&e, VRS_MESSAGE_BINARY, "", 0);
        codec_check_splits(&w, "empty fragments", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    vrs_destroy(w.server);
}

TEST(codec, frames_large_fragmented_messages) {
    codec_wire w;
    uint8_t *payload = (uint8_t *)malloc(65536);
    REQUIRE(payload != NULL);
    if (!codec_wire_create(&w, 65536)) {
        free(payload);
        REQUIRE(!"vrs_create failed");
    }
    {
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_fill_binary(payload, 65536);
        codec_frame(&s, 0x02, payload, 30000);
        codec_frame(&s, 0x89, "mid", 3);
        codec_frame(&s, 0x00, payload + 30000, 30000);
        codec_frame(&s, 0x80, payload + 60000, 5536);
        codec_expect_pong(&e, "mid", 3);
        codec_expect_message(&e, VRS_MESSAGE_BINARY, payload, 65536);
        codec_check_splits(&w, "binary of 65536 bytes in three fragments", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    {
        /* text whose characters straddle the fragment boundary */
        codec_stream s;
        codec_expect e;
        size_t cut = 40001;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_fill_text(payload, 65535);
        while (cut < 65535 && (payload[cut] & 0xC0) != 0x80) cut++;
        codec_frame(&s, 0x01, payload, cut);
        codec_frame(&s, 0x80, payload + cut, 65535 - cut);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, payload, 65535);
        codec_check_splits(&w, "text of 65535 bytes in two fragments", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    vrs_destroy(w.server);
    free(payload);
}

TEST(codec, frames_close_handshake) {
    codec_wire w;
    REQUIRE(codec_wire_create(&w, 1000));
    {
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x81, "hi", 2);
        codec_expect_message(&e, VRS_MESSAGE_TEXT, "hi", 2);
        codec_close_frame(&s, 1000, "bye", 3);
        codec_frame(&s, 0x81, "after close", 11); /* ignored */
        codec_expect_close(&e, 1000, 1000);
        codec_check_splits(&w, "close 1000 with a reason", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    {
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x88, "", 0);
        codec_expect_close(&e, 0, VRS__CLOSE_NO_STATUS);
        codec_check_splits(&w, "empty close", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    {
        static const int codes[] = {1001, 1003, 1007, 1014, 3000, 4000, 4999};
        size_t i;
        for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
            codec_stream s;
            codec_expect e;
            char name[64];
            memset(&s, 0, sizeof s);
            codec_expect_init(&e);
            codec_close_frame(&s, codes[i], "\xCE\xBA", 2);
            codec_expect_close(&e, codes[i], codes[i]);
            snprintf(name, sizeof name, "close %d", codes[i]);
            codec_check_splits(&w, name, &s, &e);
            codec_stream_free(&s);
            codec_buffer_free(&e.written);
        }
    }
    {
        /* a close inside a fragmented message: the fragments are dropped */
        codec_stream s;
        codec_expect e;
        memset(&s, 0, sizeof s);
        codec_expect_init(&e);
        codec_frame(&s, 0x01, "part", 4);
        codec_close_frame(&s, 1000, "", 0);
        codec_frame(&s, 0x80, "rest", 4);
        codec_expect_close(&e, 1000, 1000);
        codec_check_splits(&w, "close inside a fragmented message", &s, &e);
        codec_stream_free(&s);
        codec_buffer_free(&e.written);
    }
    vrs_destroy(w.server);
}

/* One failing case: the bytes, the close code the server must write and report. */
typedef struct codec_bad_case {
    const char *name;
    codec_stream stream;
    codec_expect expect;
} codec_bad_case;

static void codec_bad_begin(codec_bad_case *c, const char *name) {
    memset(&c->stream, 0, sizeof c->stream);
    codec_expect_init(&c->expect);
    c->name = name;
}

static void codec_bad_finish(codec_wire *w, codec_bad_case *c, int code) {
    codec_expect_close(&c->expect, code, code);
    c->expect.log_item = code == VRS__CLOSE_PROTOCOL_ERROR ? VRS_LOG_PROTOCOL_ERROR
                         : code == VRS__CLOSE_INVALID_DATA ? VRS_LOG_INVALID_UTF8
                                                           : VRS_LOG_MESSAGE_TOO_LARGE;
    codec_check_splits(w, c->name, &c->stream, &c->expect);
    codec_stream_free(&c->stream);
    codec_buffer_free(&c->expect.written);
}

TEST(codec, frames_protocol_errors_every_split) {
    static const uint8_t hello[] = "hello";
    static const int bad_opcodes[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF};
    static const int bad_close_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    uint8_t big[126];
    codec_wire w;
    codec_bad_case c;
    size_t i;
    char name[96];
    memset(big, 'p', sizeof big);
    REQUIRE(codec_wire_create(&w, 100000));

    codec_bad_begin(&c, "unmasked text");
    codec_frame_ex(&c.stream, 0x81, 0, 0, 5, hello, 5);
    codec_bad_finish(&w, &c, 1002);

    codec_bad_begin(&c, "a message, then an unmasked one");
    codec_frame(&c.stream, 0x82, hello, 5);
    codec_expect_message(&c.expect, VRS_MESSAGE_BINARY, hello, 5);
    codec_frame_ex(&c.stream, 0x82, 0, 0, 5, hello, 5);
    codec_frame(&c.stream, 0x82, hello, 5); /* never read */
    codec_bad_finish(&w, &c, 1002);

    codec_bad_begin(&c, "unmasked close");
    codec_frame_ex(&c.stream, 0x88, 0, 0, 2, "\x03\xE8", 2);
    codec_bad_finish(&w, &c, 1002);

    for (i = 0; i < 3; i++) {
        static const char *const names[] = {"RSV1", "RSV2", "RSV3"};
        codec_bad_begin(&c, names[i]);
        codec_frame(&c.stream, 0x81 | (0x40 >> i), hello, 5);
        codec_bad_finish(&w, &c, 1002);
    }
    codec_bad_begin(&c, "RSV1 on a ping");
    codec_frame(&c.stream, 0xC9, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "RSV1 on a continuation");
    codec_frame(&c.stream, 0x01, hello, 5);
    codec_frame(&c.stream, 0xC0, hello, 5);
    codec_bad_finish(&w, &c, 1002);

    for (i = 0; i < sizeof bad_opcodes / sizeof bad_opcodes[0]; i++) {
        snprintf(name, sizeof name, "opcode %X", bad_opcodes[i]);
        codec_bad_begin(&c, name);
        codec_frame(&c.stream, 0x80 | bad_opcodes[i], hello, 5);
        codec_bad_finish(&w, &c, 1002);
    }

    codec_bad_begin(&c, "ping of 126 bytes");
    codec_frame(&c.stream, 0x89, big, 126);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "pong of 126 bytes");
    codec_frame(&c.stream, 0x8A, big, 126);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "close of 126 bytes");
    codec_frame(&c.stream, 0x88, big, 126);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "ping with a 64-bit length");
    codec_frame_ex(&c.stream, 0x89, 1, 127, 70000, NULL, 0);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "fragmented ping");
    codec_frame(&c.stream, 0x09, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "fragmented close");
    codec_frame(&c.stream, 0x08, "\x03\xE8", 2);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "fragmented pong inside a message");
    codec_frame(&c.stream, 0x01, hello, 5);
    codec_frame(&c.stream, 0x0A, hello, 5);
    codec_bad_finish(&w, &c, 1002);

    codec_bad_begin(&c, "continuation with no message");
    codec_frame(&c.stream, 0x80, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "unfinished continuation with no message");
    codec_frame(&c.stream, 0x00, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "continuation after a whole message");
    codec_frame(&c.stream, 0x81, hello, 5);
    codec_expect_message(&c.expect, VRS_MESSAGE_TEXT, hello, 5);
    codec_frame(&c.stream, 0x80, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "continuation after a fragmented message ended");
    codec_frame(&c.stream, 0x02, hello, 2);
    codec_frame(&c.stream, 0x80, hello + 2, 3);
    codec_expect_message(&c.expect, VRS_MESSAGE_BINARY, hello, 5);
    codec_frame(&c.stream, 0x80, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "text inside a fragmented message");
    codec_frame(&c.stream, 0x01, hello, 5);
    codec_frame(&c.stream, 0x81, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "binary inside a fragmented message");
    codec_frame(&c.stream, 0x02, hello, 5);
    codec_frame(&c.stream, 0x89, hello, 5);
    codec_expect_pong(&c.expect, hello, 5);
    codec_frame(&c.stream, 0x02, hello, 5);
    codec_bad_finish(&w, &c, 1002);

    codec_bad_begin(&c, "16-bit length of 0");
    codec_frame_ex(&c.stream, 0x82, 1, 126, 0, NULL, 0);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "16-bit length of 125");
    codec_frame_ex(&c.stream, 0x82, 1, 126, 125, big, 125);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "64-bit length of 0");
    codec_frame_ex(&c.stream, 0x82, 1, 127, 0, NULL, 0);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "64-bit length of 125");
    codec_frame_ex(&c.stream, 0x81, 1, 127, 125, big, 125);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "64-bit length of 65535");
    codec_frame_ex(&c.stream, 0x82, 1, 127, 65535, NULL, 0);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "64-bit length with the top bit set");
    codec_frame_ex(&c.stream, 0x82, 1, 127, 0x8000000000000005ull, hello, 5);
    codec_bad_finish(&w, &c, 1002);
    codec_bad_begin(&c, "64-bit length of all ones");
    codec_frame_ex(&c.stream, 0x82, 1, 127, 0xFFFFFFFFFFFFFFFFull, NULL, 0);
    codec_bad_finish(&w, &c, 1002);

    codec_bad_begin(&c, "close with a 1-byte payload");
    codec_frame(&c.stream, 0x88, "\x03", 1);
    codec_bad_finish(&w, &c, 1002);
    for (i = 0; i < sizeof bad_close_codes / sizeof bad_close_codes[0]; i++) {
        snprintf(name, sizeof name, "close with code %d", bad_close_codes[i]);
        codec_bad_begin(&c, name);
        codec_close_frame(&c.stream, bad_close_codes[i], "", 0);
        codec_bad_finish(&w, &c, 1002);
    }
    vrs_destroy(w.server);
}

TEST(codec, frames_too_big_every_split) {
    codec_wire w;
    codec_bad_case c;
    uint8_t *payload = (uint8_t *)malloc(65537);
    REQUIRE(payload != NULL);
    codec_fill_binary(payload, 65537);
    if (!codec_wire_create(&w, 1000)) {
        free(payload);
        REQUIRE(!"vrs_create failed");
    }
    /* the limit itself is fine */
    codec_bad_begin(&c, "a message of exactly max_message_size");
    codec_frame(&c.stream, 0x82, payload, 1000);
    codec_expect_message(&c.expect, VRS_MESSAGE_BINARY, payload, 1000);
    codec_check_splits(&w, c.name, &c.stream, &c.expect);
    codec_stream_free(&c.stream);
    codec_buffer_free(&c.expect.written);
    codec_bad_begin(&c, "fragments adding up to max_message_size");
    codec_frame(&c.stream, 0x02, payload, 600);
    codec_frame(&c.stream, 0x80, payload + 600, 400);
    codec_expect_message(&c.expect, VRS_MESSAGE_BINARY, payload, 1000);
    codec_check_splits(&w, c.name, &c.stream, &c.expect);
    codec_stream_free(&c.stream);
    codec_buffer_free(&c.expect.written);

    /* one byte more closes with 1009 as soon as the header shows it */
    codec_bad_begin(&c, "a frame one byte too big");
    codec_frame(&c.stream, 0x82, payload, 1001);
    codec_bad_finish(&w, &c, 1009);
    codec_bad_begin(&c, "a frame header alone, too big");
    codec_frame_ex(&c.stream, 0x81, 1, 0, 1001, NULL, 0);
    codec_bad_finish(&w, &c, 1009);
    codec_bad_begin(&c, "a 64-bit length of 2^40");
    codec_frame_ex(&c.stream, 0x82, 1, 127, 1ull << 40, NULL, 0);
    codec_bad_finish(&w, &c, 1009);
    codec_bad_begin(&c, "a 64-bit length of 2^63 - 1");
    codec_frame_ex(&c.stream, 0x82, 1, 127, 0x7FFFFFFFFFFFFFFFull, NULL, 0);
    codec_bad_finish(&w, &c, 1009);
    codec_bad_begin(&c, "fragments adding up to one byte too many");
    codec_frame(&c.stream, 0x02, payload, 600);
    codec_frame(&c.stream, 0x89, "p", 1);
    codec_expect_pong(&c.expect, "p", 1);
    codec_frame(&c.stream, 0x80, payload + 600, 401);
    codec_bad_finish(&w, &c, 1009);
    codec_bad_begin(&c, "a big message after a small one");
    codec_frame(&c.stream, 0x81, "ok", 2);
    codec_expect_message(&c.expect, VRS_MESSAGE_TEXT, "ok", 2);
    codec_frame_ex(&c.stream, 0x81, 1, 0, 5000, NULL, 0);
    codec_bad_finish(&w, &c, 1009);
    vrs_destroy(w.server);

    REQUIRE(codec_wire_create(&w, 65536));
    codec_bad_begin(&c, "65537 bytes with max_message_size 65536");
    codec_frame(&c.stream, 0x82, payload, 65537);
    codec_bad_finish(&w, &c, 1009);
    vrs_destroy(w.server);
    free(payload);
}

TEST(codec, frames_invalid_utf8_every_split) {
    static const char kosme[] = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";
    codec_wire w;
    codec_bad_case c;
    REQUIRE(codec_wire_create(&w, 1000));

    codec_bad_begin(&c, "overlong in a text frame");
    codec_frame(&c.stream, 0x81, "ab\xC0\x80" "cd", 6);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "surrogate in a text frame");
    codec_frame(&c.stream, 0x81, "\xED\xA0\x80", 3);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "past U+10FFFF in a text frame");
    codec_frame(&c.stream, 0x81, "\xF4\x90\x80\x80", 4);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "a text frame ending mid-character");
    codec_frame(&c.stream, 0x81, "abc\xE2\x82", 5);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "a fragmented text ending mid-character");
    codec_frame(&c.stream, 0x01, kosme, 5);
    codec_frame(&c.stream, 0x80, kosme + 5, 5);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "bad byte in the second fragment");
    codec_frame(&c.stream, 0x01, kosme, 11);
    codec_frame(&c.stream, 0x89, "p", 1);
    codec_expect_pong(&c.expect, "p", 1);
    codec_frame(&c.stream, 0x80, "ok\xFF", 3);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "a surrogate split across fragments");
    codec_frame(&c.stream, 0x01, "x\xED", 2);
    codec_frame(&c.stream, 0x80, "\xA0\x80", 2);
    codec_bad_finish(&w, &c, 1007);
    /* fail fast: the rest of the frame, or the message, never arrives */
    codec_bad_begin(&c, "a bad byte with the rest of the frame still due");
    codec_frame_ex(&c.stream, 0x81, 1, 0, 100, "fine\xC1", 5);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "a bad byte in an unfinished fragmented message");
    codec_frame(&c.stream, 0x01, "fine", 4);
    codec_frame(&c.stream, 0x00, "\x80", 1);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "a close reason that is not UTF-8");
    codec_close_frame(&c.stream, 1000, "\xCE", 1);
    codec_bad_finish(&w, &c, 1007);
    codec_bad_begin(&c, "a close reason with a surrogate");
    codec_close_frame(&c.stream, 4000, "ok\xED\xA0\x80", 5);
    codec_bad_finish(&w, &c, 1007);
    /* binary is not checked */
    codec_bad_begin(&c, "binary with invalid UTF-8 is fine");
    codec_frame(&c.stream, 0x82, "\xC0\x80\xFF", 3);
    codec_expect_message(&c.expect, VRS_MESSAGE_BINARY, "\xC0\x80\xFF", 3);
    codec_check_splits(&w, c.name, &c.stream, &c.expect);
    codec_stream_free(&c.stream);
    codec_buffer_free(&c.expect.written);
    vrs_destroy(w.server);
}

/* ---- Close codes, server frame headers ---- */

TEST(codec, close_code_rule) {
    int code, wrong = 0;
    for (code = 0; code <= 65535; code++) {
        int expected = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                       (code >= 3000 && code <= 4999);
        if (vrs__close_code_is_valid(code) != expected && wrong++ < 5)
            VRS_TEST_FAIL("close code %d: valid %d, expected %d", code, vrs__close_code_is_valid(code), expected);
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(!vrs__close_code_is_valid(-1));
    CHECK(!vrs__close_code_is_valid(65536 + 1000));
}

TEST(codec, frame_header_lengths) {
    uint8_t out[10];
    memset(out, 0xEE, sizeof out);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_TEXT, 0), 2);
    CHECK_EQ_MEM(out, "\x81\x00", 2);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_BINARY, 125), 2);
    CHECK_EQ_MEM(out, "\x82\x7D", 2);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_TEXT, 126), 4);
    CHECK_EQ_MEM(out, "\x81\x7E\x00\x7E", 4);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_BINARY, 65535), 4);
    CHECK_EQ_MEM(out, "\x82\x7E\xFF\xFF", 4);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_BINARY, 65536), 10);
    CHECK_EQ_MEM(out, "\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_TEXT, 0x0102030405ull), 10);
    CHECK_EQ_MEM(out, "\x81\x7F\x00\x00\x00\x01\x02\x03\x04\x05", 10);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_PONG, 3), 2);
    CHECK_EQ_MEM(out, "\x8A\x03", 2);
    CHECK_EQ_INT(vrs__frame_header(out, VRS__OP_CLOSE, 2), 2);
    CHECK_EQ_MEM(out, "\x88\x02", 2);
}

/* ---- The block pool ---- */

static int codec_pool_init(vrs__pool *pool, uint32_t blocks) {
    uint32_t i;
    memset(pool, 0, sizeof *pool);
    pool->data = (uint8_t *)malloc((size_t)blocks * VRS_BLOCK_SIZE);
    pool->next = (uint32_t *)malloc(blocks * sizeof(uint32_t));
    if (!pool->data || !pool->next) return 0;
    memset(pool->data, 0xA5, (size_t)blocks * VRS_BLOCK_SIZE);
    pool->block_count = pool->free_count = blocks;
    pool->free_head = 0;
    for (i = 0; i < blocks; i++) pool->next[i] = i + 1 < blocks ? i + 1 : VRS__NONE;
    return 1;
}

static void codec_pool_free(vrs__pool *pool) {
    free(pool->data);
    free(pool->next);
}

/* Checks a chain against the bytes it must hold: gather, iov, and the blocks it occupies. */
static int codec_chain_holds(const vrs__pool *pool, const vrs__chain *chain, const uint8_t *expected, size_t n) {
    uint8_t *gathered = (uint8_t *)malloc(n ? n : 1);
    vrs__iovec iov[64];
    int count, i, ok = 1;
    size_t at = 0;
    if (!gathered) return 0;
    if (chain->length != n) ok = 0;
    if (ok && n) {
        vrs__chain_gather(pool, chain, gathered);
        if (memcmp(gathered, expected, n) != 0) ok = 0;
    }
    count = vrs__chain_iov(pool, chain, iov, 64);
    for (i = 0; ok && i < count; i++) {
        if (TS_IOV_LENGTH(iov[i]) == 0 || TS_IOV_LENGTH(iov[i]) > VRS_BLOCK_SIZE || at + TS_IOV_LENGTH(iov[i]) > n ||
            memcmp(TS_IOV_BASE(iov[i]), expected + at, TS_IOV_LENGTH(iov[i])) != 0)
            ok = 0;
        else
            at += TS_IOV_LENGTH(iov[i]);
    }
    if (at != n) ok = 0;
    if (n == 0 && (chain->head != VRS__NONE || chain->tail != VRS__NONE || count != 0)) ok = 0;
    free(gathered);
    return ok;
}

static uint32_t codec_chain_block_count(const vrs__pool *pool, const vrs__chain *chain) {
    uint32_t count = 0, block = chain->head;
    while (block != VRS__NONE) {
        count++;
        if (block == chain->tail) break;
        block = pool->next[block];
    }
    return count;
}

TEST(codec, pool_chain_across_block_boundaries) {
    static const size_t appends[] = {1, VRS_BLOCK_SIZE - 2, 1, 1, VRS_BLOCK_SIZE, 5000, 3};
    vrs__pool pool;
    vrs__chain chain;
    uint8_t *reference = (uint8_t *)malloc(6 * VRS_BLOCK_SIZE);
    vrs__iovec iov[4];
    size_t total = 0, consumed = 0, i;
    uint32_t freed;
    REQUIRE(reference != NULL);
    codec_fill_binary(reference, 6 * VRS_BLOCK_SIZE);
    if (!codec_pool_init(&pool, 16)) {
        free(reference);
        REQUIRE(!"out of memory");
    }
    vrs__chain_init(&chain);
    CHECK(codec_chain_holds(&pool, &chain, reference, 0));
    CHECK_EQ_INT(vrs__chain_blocks_needed(&chain, 0), 0);
    CHECK_EQ_INT(vrs__chain_blocks_needed(&chain, 1), 1);
    CHECK_EQ_INT(vrs__chain_blocks_needed(&chain, VRS_BLOCK_SIZE), 1);
    CHECK_EQ_INT(vrs__chain_blocks_needed(&chain, VRS_BLOCK_SIZE + 1), 2);
    for (i = 0; i < sizeof appends / sizeof appends[0]; i++) {
        uint32_t free_before = pool.free_count;
        size_t needed = vrs__chain_blocks_needed(&chain, appends[i]);
        vrs__chain_append(&pool, &chain, reference + total, appends[i]);
        total += appends[i];
        CHECK_EQ_INT(free_before - pool.free_count, needed);
        CHECK_EQ_INT(codec_chain_block_count(&pool, &chain), (total + VRS_BLOCK_SIZE - 1) / VRS_BLOCK_SIZE);
        CHECK_EQ_INT(pool.block_count - pool.free_count, codec_chain_block_count(&pool, &chain));
        if (!codec_chain_holds(&pool, &chain, reference, total))
            VRS_TEST_FAIL("after appending %zu bytes (%zu in all) the chain differs", appends[i], total);
    }
    /* exactly two blocks full, then the rest: iov stops at its capacity */
    CHECK_EQ_INT(vrs__chain_iov(&pool, &chain, iov, 1), 1);
    CHECK_EQ_INT(TS_IOV_LENGTH(iov[0]), VRS_BLOCK_SIZE);
    CHECK_EQ_INT(vrs__chain_iov(&pool, &chain, iov, 4), 4);

    /* consume: within the head, up to the end of the head, across a boundary */
    freed = vrs__chain_consume(&pool, &chain, 1);
    consumed += 1;
    CHECK_EQ_INT(freed, 0);
    CHECK(codec_chain_holds(&pool, &chain, reference + consumed, total - consumed));
    CHECK_EQ_INT(vrs__chain_iov(&pool, &chain, iov, 1), 1);
    CHECK_EQ_INT(TS_IOV_LENGTH(iov[0]), VRS_BLOCK_SIZE - 1);
    freed = vrs__chain_consume(&pool, &chain, VRS_BLOCK_SIZE - 1);
    consumed += VRS_BLOCK_SIZE - 1;
    CHECK_EQ_INT(freed, 1);
    CHECK(codec_chain_holds(&pool, &chain, reference + consumed, total - consumed));
    freed = vrs__chain_consume(&pool, &chain, VRS_BLOCK_SIZE + 100);
    consumed += VRS_BLOCK_SIZE + 100;
    CHECK_EQ_INT(freed, 1);
    CHECK(codec_chain_holds(&pool, &chain, reference + consumed, total - consumed));
    CHECK_EQ_INT(pool.block_count - pool.free_count, codec_chain_block_count(&pool, &chain));
    /* the tail has room left: appending into it takes no block */
    CHECK_EQ_INT(vrs__chain_blocks_needed(&chain, 1), 0);
    /* consuming more than is held empties the chain and stops */
    freed = vrs__chain_consume(&pool, &chain, total * 2);
    CHECK_EQ_INT(freed, 2);
    CHECK(codec_chain_holds(&pool, &chain, reference, 0));
    CHECK_EQ_INT(pool.free_count, pool.block_count);
    CHECK_EQ_INT(chain.head, VRS__NONE);
    CHECK_EQ_INT(chain.tail, VRS__NONE);

    /* reuse after emptying; exact multiples of the block size; clear */
    vrs__chain_append(&pool, &chain, reference, 2 * VRS_BLOCK_SIZE);
    CHECK_EQ_INT(pool.block_count - pool.free_count, 2);
    CHECK_EQ_INT(vrs__chain_blocks_needed(&chain, 1), 1);
    vrs__chain_append(&pool, &chain, reference + 2 * VRS_BLOCK_SIZE, 1);
    CHECK_EQ_INT(pool.block_count - pool.free_count, 3);
    CHECK(codec_chain_holds(&pool, &chain, reference, 2 * VRS_BLOCK_SIZE + 1));
    freed = vrs__chain_consume(&pool, &chain, 2 * VRS_BLOCK_SIZE);
    CHECK_EQ_INT(freed, 2);
    CHECK(codec_chain_holds(&pool, &chain, reference + 2 * VRS_BLOCK_SIZE, 1));
    CHECK_EQ_INT(vrs__chain_clear(&pool, &chain), 1);
    CHECK_EQ_INT(pool.free_count, pool.block_count);
    CHECK(codec_chain_holds(&pool, &chain, reference, 0));
    CHECK_EQ_INT(vrs__chain_clear(&pool, &chain), 0);

    /* the whole pool, then nothing left */
    vrs__chain_append(&pool, &chain, reference, 6 * VRS_BLOCK_SIZE);
    {
        vrs__chain other;
        vrs__chain_init(&other);
        vrs__chain_append(&pool, &other, reference, 6 * VRS_BLOCK_SIZE);
        vrs__chain_append(&pool, &other, reference, 4 * VRS_BLOCK_SIZE);
        CHECK_EQ_INT(pool.free_count, 0);
        CHECK_EQ_INT(pool.free_head, VRS__NONE);
        CHECK(codec_chain_holds(&pool, &chain, reference, 6 * VRS_BLOCK_SIZE));
        vrs__chain_clear(&pool, &other);
    }
    vrs__chain_clear(&pool, &chain);
    CHECK_EQ_INT(pool.free_count, pool.block_count);
    codec_pool_free(&pool);
    free(reference);
}

/* Random appends and consumes on three chains sharing one pool, against a model of each. */
TEST(codec, pool_chains_random_against_model) {
    enum { CHAINS = 3, CAPACITY = 5 * VRS_BLOCK_SIZE };
    vrs__pool pool;
    vrs__chain chains[CHAINS];
    uint8_t *model[CHAINS];
    size_t model_start[CHAINS], model_end[CHAINS];
    uint8_t *source = (uint8_t *)malloc(CAPACITY);
    uint32_t seed = 2024;
    int step, c, failures = 0;
    REQUIRE(source != NULL);
    codec_fill_binary(source, CAPACITY);
    if (!codec_pool_init(&pool, 3 * CHAINS * 5 + 2)) {
        free(source);
        REQUIRE(!"out of memory");
    }
    for (c = 0; c < CHAINS; c++) {
        vrs__chain_init(&chains[c]);
        model[c] = (uint8_t *)malloc(1 << 20);
        model_start[c] = model_end[c] = 0;
        if (!model[c]) REQUIRE(!"out of memory");
    }
    for (step = 0; step < 4000 && failures < 3; step++) {
        uint32_t r = codec_random(&seed);
        size_t amount;
        c = (int)(r % CHAINS);
        r /= CHAINS;
        switch (r % 6) {
        case 0: amount = 1; break;
        case 1: amount = VRS_BLOCK_SIZE; break;
        case 2: amount = VRS_BLOCK_SIZE - 1; break;
        default: amount = (r >> 3) % (2 * VRS_BLOCK_SIZE + 3); break;
        }
        if ((r >> 20) & 1) {
            size_t held = model_end[c] - model_start[c];
            if (held + amount > CAPACITY || model_end[c] + amount > (1 << 20) ||
                vrs__chain_blocks_needed(&chains[c], amount) > pool.free_count)
                continue;
            vrs__chain_append(&pool, &chains[c], source + (step % 97), amount);
            memcpy(model[c] + model_end[c], source + (step % 97), amount);
            model_end[c] += amount;
        } else {
            size_t held = model_end[c] - model_start[c];
            if (amount > held) amount = held;
            vrs__chain_consume(&pool, &chains[c], amount);
            model_start[c] += amount;
        }
        if (!codec_chain_holds(&pool, &chains[c], model[c] + model_start[c], model_end[c] - model_start[c])) {
            VRS_TEST_FAIL("step %d: chain %d differs from its model", step, c);
            failures++;
        }
        {
            uint32_t used = 0;
            int d;
            for (d = 0; d < CHAINS; d++) used += codec_chain_block_count(&pool, &chains[d]);
            if (used != pool.block_count - pool.free_count) {
                VRS_TEST_FAIL("step %d: chains hold %u blocks, the pool lent %u", step, (unsigned)used,
                              (unsigned)(pool.block_count - pool.free_count));
                failures++;
            }
        }
    }
    for (c = 0; c < CHAINS; c++) {
        vrs__chain_clear(&pool, &chains[c]);
        free(model[c]);
    }
    CHECK_EQ_INT(pool.free_count, pool.block_count);
    codec_pool_free(&pool);
    free(source);
}
