/* Tests of the JSON reader and writer (vrs__json_*, vrs__jw_*). Included into the test
   translation unit after the library's implementation; the corpus tests read JSONTestSuite from
   ../shared/data/JSONTestSuite/test_parsing relative to the working directory (the project
   root) and skip, saying so, where it is absent. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>

#define JSON_TEST_CORPUS_DIR "../shared/data/JSONTestSuite/test_parsing"
#define JSON_TEST_CORPUS_MISSING "JSONTestSuite not found at ../shared/data/JSONTestSuite: corpus tests skipped"

static vrs__json_slice json_test_slice_n(const char *start, size_t length) {
    vrs__json_slice slice;
    slice.start = start;
    slice.length = length;
    return slice;
}

static vrs__json_slice json_test_slice(const char *text) {
    return json_test_slice_n(text, strlen(text));
}

static int json_test_valid(const char *text) {
    return vrs__json_validate(text, strlen(text), 64);
}

static int json_test_slice_is(vrs__json_slice slice, const char *text) {
    return slice.start && slice.length == strlen(text) && memcmp(slice.start, text, slice.length) == 0;
}

/* A copy in a buffer of exactly its size (no NUL after it), so ASan sees any read past the end. */
static char *json_test_exact_copy(const char *bytes, size_t length) {
    char *copy = (char *)malloc(length ? length : 1);
    if (copy && length) memcpy(copy, bytes, length);
    return copy;
}

/* ---- Walking a value with the cursor API, checking it on the way ---- */

typedef struct json_test_walk {
    const char *file;
    int strict;   /* 0 for garbage: exercise every call, expect nothing */
    int values;   /* values visited */
    int problems; /* each one printed */
} json_test_walk;

static void json_test_problem(json_test_walk *walk, const char *what) {
    if (!walk->strict) return;
    fprintf(stderr, "  %s: %s\n", walk->file, what);
    walk->problems++;
}

/* 1 if [from, to) is whitespace around exactly one separator (none when separator is 0). */
static int json_test_gap_is(const char *from, const char *to, char separator) {
    if (!from || !to || from > to) return 0;
    while (from < to && (*from == ' ' || *from == '\t' || *from == '\n' || *from == '\r')) from++;
    if (separator) {
        if (from >= to || *from != separator) return 0;
        from++;
        while (from < to && (*from == ' ' || *from == '\t' || *from == '\n' || *from == '\r')) from++;
    }
    return from == to;
}

/* Decodes a string token every way the API offers and checks the results agree. */
static void json_test_check_string(vrs__json_slice token, json_test_walk *walk) {
    char *decoded = (char *)malloc(token.length + 1);
    long length;
    if (!decoded) return;
    /* The decoding is never longer than the token, so token.length always fits. */
    length = vrs__json_string_decode(token, decoded, token.length);
    if (length < 0) {
        json_test_problem(walk, "a string token did not decode");
    } else {
        if ((size_t)length + 2 > token.length) json_test_problem(walk, "a decoding is longer than its token's content");
        if (!vrs__utf8_is_valid((const uint8_t *)decoded, (size_t)length))
            json_test_problem(walk, "a decoding is not valid UTF-8");
        if (!memchr(decoded, 0, (size_t)length) && !vrs__json_string_equals(token, decoded))
            json_test_problem(walk, "a string token does not equal its own decoding");
        if (vrs__json_string_decode(token, decoded, (size_t)length) != length)
            json_test_problem(walk, "a decoding that exactly fills the buffer was refused");
        if (length > 0 && vrs__json_string_decode(token, decoded, (size_t)length - 1) != -1)
            json_test_problem(walk, "a decoding into too small a buffer did not fail");
    }
    free(decoded);
}

/* The value vrs__json_object_get should find: the last member whose key decodes to key. */
static int json_test_last_member(vrs__json_slice object, const char *key, vrs__json_slice *value) {
    vrs__json_cursor cursor;
    vrs__json_slice member_key, member_value;
    int found = 0;
    if (!vrs__json_enter(object, &cursor)) return 0;
    while (vrs__json_next_member(&cursor, &member_key, &member_value)) {
        if (vrs__json_string_equals(member_key, key)) {
            *value = member_value;
            found = 1;
        }
    }
    return found;
}

static void json_test_check_object_get(vrs__json_slice object, vrs__json_slice key, json_test_walk *walk) {
    char *decoded = (char *)malloc(key.length + 1);
    long length;
    vrs__json_slice expected, got;
    if (!decoded) return;
    length = vrs__json_string_decode(key, decoded, key.length + 1);
    /* A key holding \u0000 cannot be asked for as a C string. */
    if (length >= 0 && !memchr(decoded, 0, (size_t)length)) {
        int found = vrs__json_object_get(object, decoded, &got);
        if (!json_test_last_member(object, decoded, &expected)) {
            json_test_problem(walk, "a key was not found among its own object's members");
        } else if (!found || got.start != expected.start || got.length != expected.length) {
            json_test_problem(walk, "object_get did not return the last member with that key");
        }
    }
    free(decoded);
}

static void json_test_walk_value(vrs__json_slice value, int depth, json_test_walk *walk) {
    vrs__json_cursor cursor;
    vrs__json_slice element, key;
    const char *previous;
    int first = 1;
    walk->values++;
    if (depth > 200) {
        json_test_problem(walk, "walked deeper than 200 levels");
        return;
    }
    if (!vrs__json_validate(value.start, value.length, 64))
        json_test_problem(walk, "a visited slice is not exactly one value");
    /* Only a whole file may have whitespace around it; the gap checks below start at its brackets. */
    while (value.length && (*value.start == ' ' || *value.start == '\t' || *value.start == '\n' || *value.start == '\r')) {
        if (depth > 0) json_test_problem(walk, "an element slice starts with whitespace");
        value.start++;
        value.length--;
    }
    while (value.length && (value.start[value.length - 1] == ' ' || value.start[value.length - 1] == '\t' ||
                            value.start[value.length - 1] == '\n' || value.start[value.length - 1] == '\r')) {
        if (depth > 0) json_test_problem(walk, "an element slice ends with whitespace");
        value.length--;
    }
    switch (vrs__json_kind_of(value)) {
    case VRS__JSON_NULL:
        if (!json_test_slice_is(value, "null")) json_test_problem(walk, "null slice is not \"null\"");
        break;
    case VRS__JSON_FALSE:
        if (!json_test_slice_is(value, "false")) json_test_problem(walk, "false slice is not \"false\"");
        break;
    case VRS__JSON_TRUE:
        if (!json_test_slice_is(value, "true")) json_test_problem(walk, "true slice is not \"true\"");
        break;
    case VRS__JSON_NUMBER:
        break;
    case VRS__JSON_STRING:
        json_test_check_string(value, walk);
        break;
    case VRS__JSON_ARRAY:
        if (!vrs__json_enter(value, &cursor)) {
            json_test_problem(walk, "could not enter an array");
            break;
        }
        previous = value.start + 1;
        while (vrs__json_next_element(&cursor, &element)) {
            /* Only whitespace and one comma may lie between elements: none was skipped. */
            if (!json_test_gap_is(previous, element.start, first ? 0 : ','))
                json_test_problem(walk, "array elements are not exactly what lies between the commas");
            json_test_walk_value(element, depth + 1, walk);
            previous = element.start + element.length;
            first = 0;
        }
        if (!json_test_gap_is(previous, value.start + value.length - 1, 0))
            json_test_problem(walk, "the element walk stopped before the closing bracket");
        break;
    case VRS__JSON_OBJECT:
        if (!vrs__json_enter(value, &cursor)) {
            json_test_problem(walk, "could not enter an object");
            break;
        }
        previous = value.start + 1;
        while (vrs__json_next_member(&cursor, &key, &element)) {
            if (!json_test_gap_is(previous, key.start, first ? 0 : ','))
                json_test_problem(walk, "object members are not exactly what lies between the commas");
            if (!key.start || !json_test_gap_is(key.start + key.length, element.start, ':'))
                json_test_problem(walk, "a member's key and value are not separated by one colon");
            if (vrs__json_kind_of(key) != VRS__JSON_STRING || !vrs__json_validate(key.start, key.length, 64))
                json_test_problem(walk, "a key is not one whole string token");
            json_test_check_string(key, walk);
            json_test_check_object_get(value, key, walk);
            json_test_walk_value(element, depth + 1, walk);
            previous = element.start + element.length;
            first = 0;
        }
        if (!json_test_gap_is(previous, value.start + value.length - 1, 0))
            json_test_problem(walk, "the member walk stopped before the closing brace");
        break;
    case VRS__JSON_INVALID:
        json_test_problem(walk, "a visited value has no kind");
        break;
    }
}

/* Every call of the reader on bytes that may be anything; passes when nothing crashes. */
static void json_test_poke_garbage(const char *bytes, size_t length) {
    char *copy = json_test_exact_copy(bytes, length);
    vrs__json_slice whole = json_test_slice_n(copy, length), found;
    vrs__json_cursor cursor;
    char decoded[64];
    json_test_walk walk;
    if (!copy) return;
    memset(&walk, 0, sizeof walk);
    (void)vrs__json_validate(copy, length, 64);
    json_test_walk_value(whole, 0, &walk);
    if (vrs__json_enter(whole, &cursor)) /* as an array even when it is an object */
        while (vrs__json_next_element(&cursor, &found)) {}
    (void)vrs__json_object_get(whole, "a", &found);
    (void)vrs__json_string_decode(whole, decoded, sizeof decoded);
    (void)vrs__json_string_equals(whole, "a");
    free(copy);
}

/* ---- The JSONTestSuite corpus ---- */

static char *json_test_read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    char *bytes = NULL;
    long size;
    if (!file) return NULL;
    if (fseek(file, 0, SEEK_END) == 0 && (size = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0) {
        /* Exactly the file's size, so an over-read shows under ASan. */
        bytes = (char *)malloc(size ? (size_t)size : 1);
        if (bytes && fread(bytes, 1, (size_t)size, file) != (size_t)size) {
            free(bytes);
            bytes = NULL;
        }
        *length = (size_t)size;
    }
    fclose(file);
    return bytes;
}

typedef void (*json_test_file_fn)(const char *name, const char *text, size_t length, void *context);

/* Calls fn for each corpus file whose name starts with prefix; -1 when the corpus is absent. */
static int json_test_for_each_corpus_file(const char *prefix, json_test_file_fn fn, void *context) {
    DIR *directory = opendir(JSON_TEST_CORPUS_DIR);
    struct dirent *entry;
    int count = 0, read_error;
    if (!directory) return -1;
    /* readdir() ends with NULL both at the end and on an error: errno tells them apart, so a
       directory that cannot be read fails the test instead of looking empty. */
    while ((errno = 0, entry = readdir(directory)) != NULL) {
        const char *name = entry->d_name;
        size_t name_length = strlen(name), length = 0;
        char path[512];
        char *text;
        if (strncmp(name, prefix, strlen(prefix)) != 0 || name_length < 5 ||
            strcmp(name + name_length - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", JSON_TEST_CORPUS_DIR, name);
        text = json_test_read_file(path, &length);
        if (!text) {
            fprintf(stderr, "  cannot read %s\n", path);
            CHECK(text != NULL);
            continue;
        }
        fn(name, text, length, context);
        free(text);
        count++;
    }
    read_error = errno;
    if (read_error != 0) {
        fprintf(stderr, "  cannot read the directory %s: %s\n", JSON_TEST_CORPUS_DIR, strerror(read_error));
        CHECK(read_error == 0);
    }
    closedir(directory);
    return count;
}

typedef struct json_test_corpus_tally {
    int accepted;
    int rejected;
    int walk_problems;
    int values_walked;
} json_test_corpus_tally;

static void json_test_corpus_validate(const char *name, const char *text, size_t length, void *context) {
    json_test_corpus_tally *tally = (json_test_corpus_tally *)context;
    if (vrs__json_validate(text, length, 64)) {
        json_test_walk walk;
        tally->accepted++;
        memset(&walk, 0, sizeof walk);
        walk.file = name;
        walk.strict = 1;
        json_test_walk_value(json_test_slice_n(text, length), 0, &walk);
        tally->walk_problems += walk.problems;
        tally->values_walked += walk.values;
    } else {
        tally->rejected++;
        if (name[0] == 'y') fprintf(stderr, "  %s: rejected, should be accepted\n", name);
    }
}

TEST(json, corpus_y_files_accepted_and_walked) {
    json_test_corpus_tally tally;
    int files;
    memset(&tally, 0, sizeof tally);
    files = json_test_for_each_corpus_file("y_", json_test_corpus_validate, &tally);
    if (files < 0) SKIP(JSON_TEST_CORPUS_MISSING);
    printf("  y_: %d files, %d accepted, %d values walked\n", files, tally.accepted, tally.values_walked);
    CHECK(files > 0);
    CHECK_EQ_INT(tally.accepted, files);
    CHECK_EQ_INT(tally.walk_problems, 0);
}

static void json_test_corpus_reject(const char *name, const char *text, size_t length, void *context) {
    int *accepted = (int *)context;
    if (vrs__json_validate(text, length, 64)) {
        fprintf(stderr, "  %s: accepted, should be rejected\n", name);
        ++*accepted;
    }
}

TEST(json, corpus_n_files_rejected) {
    int accepted = 0, files = json_test_for_each_corpus_file("n_", json_test_corpus_reject, &accepted);
    if (files < 0) SKIP(JSON_TEST_CORPUS_MISSING);
    printf("  n_: %d files, %d rejected\n", files, files - accepted);
    CHECK(files > 0);
    CHECK_EQ_INT(accepted, 0);
}

TEST(json, corpus_i_files_do_not_crash) {
    json_test_corpus_tally tally;
    int files;
    memset(&tally, 0, sizeof tally);
    files = json_test_for_each_corpus_file("i_", json_test_corpus_validate, &tally);
    if (files < 0) SKIP(JSON_TEST_CORPUS_MISSING);
    printf("  i_: %d files, %d accepted, %d rejected\n", files, tally.accepted, tally.rejected);
    CHECK(files > 0);
    CHECK_EQ_INT(tally.walk_problems, 0);
}

static void json_test_corpus_poke(const char *name, const char *text, size_t length, void *context) {
    size_t prefix;
    (void)name;
    ++*(int *)context;
    json_test_poke_garbage(text, length);
    /* Every truncation of a valid file is garbage of the most likely kind. */
    if (name[0] == 'y')
        for (prefix = 0; prefix < length; prefix++) json_test_poke_garbage(text, prefix);
}

TEST(json, corpus_cursor_survives_invalid_and_truncated_files) {
    int files = 0;
    if (json_test_for_each_corpus_file("n_", json_test_corpus_poke, &files) < 0)
        SKIP(JSON_TEST_CORPUS_MISSING);
    json_test_for_each_corpus_file("y_", json_test_corpus_poke, &files);
    json_test_for_each_corpus_file("i_", json_test_corpus_poke, &files);
    printf("  cursor calls survived %d files and every prefix of the y_ files\n", files);
    CHECK(files > 0);
}

/* ---- Validation ---- */

TEST(json, validate_accepts_strict_json) {
    static const char *const valid[] = {
        "0", "-0", "-0.0e-0", "1.5E+3", "123456789012345678901234567890", "true", "false", "null",
        "\"\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uABCD\"", "\"\\ud800\"", "\"\\udc00\\ud800\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "[]", "{}", "[[],{}]", " \t\r\n[ 1 , 2 ]\n ",
        "{\"a\":{\"b\":[null,true,{\"\":\"\"}]}}", "{\"a\":1,\"a\":2}", "\"\x7f\"",
    };
    size_t i;
    for (i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        if (!json_test_valid(valid[i])) fprintf(stderr, "  rejected: %s\n", valid[i]);
        CHECK(json_test_valid(valid[i]));
    }
}

TEST(json, validate_rejects_everything_else) {
    static const char *const invalid[] = {
        "", " ", "01", "-01", "+1", "1.", ".5", "-", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity",
        "tru", "truex", "nul", "True", "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
        "{'a':1}", "{\"a\":}", "{,}", "{\"a\"}", "[1]]", "[[1]", "[] []", "1 2", "[1]//", "/*c*/1",
        "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"", "\"a\tb\"", "\"a\nb\"", "\"\\\"", "\"abc",
        "\f[]", "\v1", "\xef\xbb\xbf[]", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"", "\"\x80\"", "[\xc3\xa9]", "'a'", "[\"a\",]",
    };
    size_t i;
    for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        if (json_test_valid(invalid[i])) fprintf(stderr, "  accepted: %s\n", invalid[i]);
        CHECK(!json_test_valid(invalid[i]));
    }
    /* Length decides, not NUL: a NUL byte is a control character inside a string and
       garbage outside one, and bytes past length are not looked at. */
    CHECK(!vrs__json_validate("\"a\0b\"", 5, 64));
    CHECK(!vrs__json_validate("[1]\0", 4, 64));
    CHECK(vrs__json_validate("[1]xyz", 3, 64));
    CHECK(!vrs__json_validate("[1]", 2, 64));
    CHECK(!vrs__json_validate(NULL, 0, 64));
}

/* depth nested containers around 0; objects and arrays alternate when mixed. */
static char *json_test_nested(int depth, int mixed, size_t *length) {
    char *text = (char *)malloc((size_t)depth * 6 + 2);
    size_t at = 0;
    int level;
    if (!text) return NULL;
    for (level = 0; level < depth; level++) {
        if (mixed && level % 2 == 0) {
            memcpy(text + at, "{\"k\":", 5);
            at += 5;
        } else {
            text[at++] = '[';
        }
    }
    text[at++] = '0';
    for (level = depth - 1; level >= 0; level--) text[at++] = (mixed && level % 2 == 0) ? '}' : ']';
    *length = at;
    return text;
}

static int json_test_nested_valid(int depth, int mixed, int max_depth) {
    size_t length = 0;
    char *text = json_test_nested(depth, mixed, &length);
    int valid = text ? vrs__json_validate(text, length, max_depth) : -1;
    free(text);
    return valid;
}

TEST(json, nesting_limit_is_exact) {
    static const int limits[] = {1, 2, 3, 7, 8, 9, 63, 64, 65, 100, 1023, 1024};
    size_t i;
    int mixed;
    for (i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        for (mixed = 0; mixed <= 1; mixed++) {
            CHECK_EQ_INT(json_test_nested_valid(limits[i], mixed, limits[i]), 1);
            CHECK_EQ_INT(json_test_nested_valid(limits[i] + 1, mixed, limits[i]), 0);
        }
    }
    /* Empty containers count as a level too. */
    CHECK(vrs__json_validate("[[]]", 4, 2));
    CHECK(!vrs__json_validate("[[]]", 4, 1));
    CHECK(vrs__json_validate("[{},[],{}]", 10, 2));
    /* A larger request is clamped to VRS__JSON_MAX_DEPTH. */
    CHECK_EQ_INT(json_test_nested_valid(1024, 1, 100000), 1);
    CHECK_EQ_INT(json_test_nested_valid(1025, 0, 100000), 0);
    CHECK_EQ_INT(json_test_nested_valid(5000, 1, 100000), 0);
    /* Zero or less allows scalars only. */
    CHECK(vrs__json_validate("7", 1, 0));
    CHECK(!vrs__json_validate("[]", 2, 0));
    CHECK(!vrs__json_validate("{}", 2, -1));
}

TEST(json, cursor_reaches_the_bottom_of_deep_nesting) {
    size_t length = 0;
    char *text = json_test_nested(1024, 1, &length);
    vrs__json_slice value, key;
    vrs__json_cursor cursor;
    int level = 0;
    REQUIRE(text != NULL);
    value = json_test_slice_n(text, length);
    for (;;) {
        vrs__json_kind kind = vrs__json_kind_of(value);
        if (kind != VRS__JSON_ARRAY && kind != VRS__JSON_OBJECT) break;
        REQUIRE(vrs__json_enter(value, &cursor));
        if (kind == VRS__JSON_ARRAY) REQUIRE(vrs__json_next_element(&cursor, &value));
        else REQUIRE(vrs__json_next_member(&cursor, &key, &value));
        level++;
    }
    CHECK_EQ_INT(level, 1024);
    CHECK(json_test_slice_is(value, "0"));
    free(text);
}

/* ---- Kinds, cursors and lookup ---- */

TEST(json, kind_of_looks_at_the_first_byte) {
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("null")), VRS__JSON_NULL);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("false")), VRS__JSON_FALSE);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("true")), VRS__JSON_TRUE);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("-1")), VRS__JSON_NUMBER);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("0.5")), VRS__JSON_NUMBER);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("\"x\"")), VRS__JSON_STRING);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("[1]")), VRS__JSON_ARRAY);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice(" \n{}")), VRS__JSON_OBJECT);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("")), VRS__JSON_INVALID);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("  ")), VRS__JSON_INVALID);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice("x")), VRS__JSON_INVALID);
    CHECK_EQ_INT(vrs__json_kind_of(json_test_slice_n(NULL, 0)), VRS__JSON_INVALID);
}

TEST(json, next_element_returns_exact_slices) {
    static const char *const expected[] = {
        "1", "\"two\"", "[3, {\"four\": [4]}]", "{}", "[]", "null", "true", "false", "-1.5e3", "\"]\\\",[\"",
    };
    const char *text = " [ 1 , \"two\" ,\n[3, {\"four\": [4]}] ,{},[],null,true,false\t,-1.5e3, \"]\\\",[\" ] ";
    vrs__json_cursor cursor;
    vrs__json_slice element;
    size_t count = 0;
    REQUIRE(json_test_valid(text));
    REQUIRE(vrs__json_enter(json_test_slice(text), &cursor));
    while (vrs__json_next_element(&cursor, &element)) {
        REQUIRE(count < sizeof expected / sizeof expected[0]);
        if (!json_test_slice_is(element, expected[count]))
            fprintf(stderr, "  element %d: expected %s, got %.*s\n", (int)count, expected[count],
                    (int)element.length, element.start);
        CHECK(json_test_slice_is(element, expected[count]));
        count++;
    }
    CHECK_EQ_INT(count, sizeof expected / sizeof expected[0]);
    /* Finished cursors stay finished. */
    CHECK(!vrs__json_next_element(&cursor, &element));
    CHECK(!vrs__json_next_element(&cursor, &element));
    CHECK(element.start == NULL && element.length == 0);
    /* An empty array has no elements; a scalar cannot be entered. */
    REQUIRE(vrs__json_enter(json_test_slice("[ \n ]"), &cursor));
    CHECK(!vrs__json_next_element(&cursor, &element));
    CHECK(!vrs__json_enter(json_test_slice("\"[]\""), &cursor));
    CHECK(!vrs__json_next_element(&cursor, &element));
    CHECK(!vrs__json_enter(json_test_slice("12"), &cursor));
    CHECK(!vrs__json_enter(json_test_slice(""), &cursor));
}

TEST(json, next_member_returns_exact_keys_and_values) {
    static const char *const expected[][2] = {
        {"\"a\"", "[1, 2]"}, {"\"b\\\"c\"", "{\"d\": \"e}\"}"}, {"\"\"", "\"\""}, {"\"n\"", "-0"},
    };
    const char *text = "{ \"a\" : [1, 2] ,\"b\\\"c\":{\"d\": \"e}\"}\n,\"\":\"\", \"n\" :-0 }";
    vrs__json_cursor cursor;
    vrs__json_slice key, value;
    size_t count = 0;
    REQUIRE(json_test_valid(text));
    REQUIRE(vrs__json_enter(json_test_slice(text), &cursor));
    while (vrs__json_next_member(&cursor, &key, &value)) {
        REQUIRE(count < sizeof expected / sizeof expected[0]);
        CHECK(json_test_slice_is(key, expected[count][0]));
        CHECK(json_test_slice_is(value, expected[count][1]));
        count++;
    }
    CHECK_EQ_INT(count, sizeof expected / sizeof expected[0]);
    CHECK(!vrs__json_next_member(&cursor, &key, &value));
    REQUIRE(vrs__json_enter(json_test_slice("{}"), &cursor));
    CHECK(!vrs__json_next_member(&cursor, &key, &value));
}

TEST(json, object_get_matches_decoded_keys) {
    const char *text = "{\"d\\u0061ta\":1, \"dat\":2, \"datax\":3, \"inner\":{\"x\":4}, \"a\\u0000\":5,"
                       " \"\\u00e9\":6, \"dup\":7, \"dup\":8, \"\\ud83d\\ude00\":9, \"\\/\":10}";
    vrs__json_slice object = json_test_slice(text), value;
    REQUIRE(json_test_valid(text));
    CHECK(vrs__json_object_get(object, "data", &value) && json_test_slice_is(value, "1"));
    CHECK(vrs__json_object_get(object, "dat", &value) && json_test_slice_is(value, "2"));
    CHECK(vrs__json_object_get(object, "datax", &value) && json_test_slice_is(value, "3"));
    CHECK(vrs__json_object_get(object, "inner", &value) && json_test_slice_is(value, "{\"x\":4}"));
    CHECK(vrs__json_object_get(object, "\xc3\xa9", &value) && json_test_slice_is(value, "6"));
    CHECK(vrs__json_object_get(object, "\xf0\x9f\x98\x80", &value) && json_test_slice_is(value, "9"));
    CHECK(vrs__json_object_get(object, "/", &value) && json_test_slice_is(value, "10"));
    /* The last of duplicate keys wins. */
    CHECK(vrs__json_object_get(object, "dup", &value) && json_test_slice_is(value, "8"));
    /* Missing keys, keys of nested objects, and a key with a NUL in it are not found. */
    value = json_test_slice("untouched");
    CHECK(!vrs__json_object_get(object, "missing", &value));
    CHECK(!vrs__json_object_get(object, "x", &value));
    CHECK(!vrs__json_object_get(object, "a", &value));
    CHECK(!vrs__json_object_get(object, "", &value));
    CHECK(json_test_slice_is(value, "untouched"));
    /* Only objects are searched. */
    CHECK(!vrs__json_object_get(json_test_slice("[\"data\",1]"), "data", &value));
    CHECK(!vrs__json_object_get(json_test_slice("\"data\""), "data", &value));
    CHECK(vrs__json_object_get(json_test_slice(" {\"\":0} "), "", &value) && json_test_slice_is(value, "0"));
}

/* ---- Strings ---- */

static long json_test_decode(const char *token, char *out, size_t capacity) {
    return vrs__json_string_decode(json_test_slice(token), out, capacity);
}

TEST(json, string_decode_handles_escapes_and_surrogates) {
    char out[64];
    CHECK_EQ_INT(json_test_decode("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", out, sizeof out), 8);
    CHECK_EQ_STR(out, "\"\\/\b\f\n\r\t");
    CHECK_EQ_INT(json_test_decode("\"\\u0041\\u00e9\\u20AC\"", out, sizeof out), 6);
    CHECK_EQ_STR(out, "A\xc3\xa9\xe2\x82\xac");
    /* A surrogate pair is one code point, U+1F600. */
    CHECK_EQ_INT(json_test_decode("\"\\ud83d\\ude00\"", out, sizeof out), 4);
    CHECK_EQ_STR(out, "\xf0\x9f\x98\x80");
    CHECK_EQ_INT(json_test_decode("\"\\uDBFF\\uDFFF\"", out, sizeof out), 4);
    CHECK_EQ_STR(out, "\xf4\x8f\xbf\xbf");
    /* Lone surrogates become U+FFFD. */
    CHECK_EQ_INT(json_test_decode("\"\\ud800\"", out, sizeof out), 3);
    CHECK_EQ_STR(out, "\xef\xbf\xbd");
    CHECK_EQ_INT(json_test_decode("\"\\udc00x\"", out, sizeof out), 4);
    CHECK_EQ_STR(out, "\xef\xbf\xbdx");
    CHECK_EQ_INT(json_test_decode("\"\\ud800\\u0041\"", out, sizeof out), 4);
    CHECK_EQ_STR(out, "\xef\xbf\xbd" "A");
    CHECK_EQ_INT(json_test_decode("\"\\ud800\\ud800\\udc00\"", out, sizeof out), 7);
    CHECK_EQ_STR(out, "\xef\xbf\xbd\xf0\x90\x80\x80");
    CHECK_EQ_INT(json_test_decode("\"\\ude00\\ud83d\"", out, sizeof out), 6);
    CHECK_EQ_STR(out, "\xef\xbf\xbd\xef\xbf\xbd");
    /* Raw UTF-8 passes through; \u0000 is a real byte, counted in the length. */
    CHECK_EQ_INT(json_test_decode("\"\xc3\xa9t\xc3\xa9\"", out, sizeof out), 5);
    CHECK_EQ_STR(out, "\xc3\xa9t\xc3\xa9");
    CHECK_EQ_INT(json_test_decode("\"a\\u0000b\"", out, sizeof out), 3);
    CHECK_EQ_MEM(out, "a\0b", 4);
    CHECK_EQ_INT(json_test_decode("\"\"", out, sizeof out), 0);
    CHECK_EQ_STR(out, "");
    /* Surrounding whitespace on the token is ignored. */
    CHECK_EQ_INT(json_test_decode(" \"ok\"\n", out, sizeof out), 2);
    CHECK_EQ_STR(out, "ok");
}

TEST(json, string_decode_respects_capacity) {
    char out[8];
    memset(out, '#', sizeof out);
    /* Exactly full: the length comes back and no NUL is written. */
    CHECK_EQ_INT(json_test_decode("\"abc\"", out, 3), 3);
    CHECK_EQ_MEM(out, "abc#", 4);
    CHECK_EQ_INT(json_test_decode("\"abc\"", out, 4), 3);
    CHECK_EQ_MEM(out, "abc\0", 4);
    memset(out, '#', sizeof out);
    CHECK_EQ_INT(json_test_decode("\"abc\"", out, 2), -1);
    CHECK_EQ_MEM(out + 2, "######", 6);
    CHECK_EQ_INT(json_test_decode("\"\\ud83d\\ude00\"", out, 3), -1);
    CHECK_EQ_MEM(out + 3, "#####", 5);
    CHECK_EQ_INT(json_test_decode("\"\\ud83d\\ude00\"", out, 4), 4);
    CHECK_EQ_INT(json_test_decode("\"\"", NULL, 0), 0);
    CHECK_EQ_INT(json_test_decode("\"a\"", NULL, 0), -1);
    /* Not string tokens. */
    CHECK_EQ_INT(json_test_decode("abc", out, sizeof out), -1);
    CHECK_EQ_INT(json_test_decode("\"", out, sizeof out), -1);
    CHECK_EQ_INT(json_test_decode("", out, sizeof out), -1);
    CHECK_EQ_INT(json_test_decode("[\"a\"]", out, sizeof out), -1);
    CHECK_EQ_INT(json_test_decode("\"\\\"", out, sizeof out), -1);
    CHECK_EQ_INT(json_test_decode("\"\\u12\"", out, sizeof out), -1);
    CHECK_EQ_INT(vrs__json_string_decode(json_test_slice_n(NULL, 0), out, sizeof out), -1);
}

TEST(json, string_equals_compares_decoded_text) {
    CHECK(vrs__json_string_equals(json_test_slice("\"phx_join\""), "phx_join"));
    CHECK(vrs__json_string_equals(json_test_slice("\"ph\\u0078_join\""), "phx_join"));
    CHECK(vrs__json_string_equals(json_test_slice("\"\""), ""));
    CHECK(vrs__json_string_equals(json_test_slice("\"\\ud83d\\ude00\""), "\xf0\x9f\x98\x80"));
    CHECK(vrs__json_string_equals(json_test_slice("\"\\ud800\""), "\xef\xbf\xbd"));
    CHECK(vrs__json_string_equals(json_test_slice("\"a\\\"b\""), "a\"b"));
    CHECK(!vrs__json_string_equals(json_test_slice("\"phx_join\""), "phx_joi"));
    CHECK(!vrs__json_string_equals(json_test_slice("\"phx_join\""), "phx_joins"));
    CHECK(!vrs__json_string_equals(json_test_slice("\"phx_join\""), "phx_leave"));
    CHECK(!vrs__json_string_equals(json_test_slice("\"\""), "a"));
    CHECK(!vrs__json_string_equals(json_test_slice("\"a\""), ""));
    CHECK(!vrs__json_string_equals(json_test_slice("\"a\\u0000\""), "a"));
    CHECK(!vrs__json_string_equals(json_test_slice("phx_join"), "phx_join"));
    CHECK(!vrs__json_string_equals(json_test_slice("\"a\""), NULL));
}

/* ---- Writer ---- */

/* The writer's output NUL-terminated, or "(overflowed)". */
static const char *json_test_written(vrs__json_writer *w, char *buffer, size_t capacity) {
    if (w->overflowed || w->length >= capacity) return "(overflowed)";
    buffer[w->length] = '\0';
    return buffer;
}

TEST(json, writer_escapes_exactly) {
    char buffer[128];
    vrs__json_writer w;
    vrs__jw_init(&w, buffer, sizeof buffer);
    vrs__jw_string(&w, "a\"b\\c/\n\r\t\b\f\x01\x1f\x7f", 14);
    CHECK_EQ_STR(json_test_written(&w, buffer, sizeof buffer),
                 "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
    vrs__jw_init(&w, buffer, sizeof buffer);
    vrs__jw_string(&w, "a\0b", 3);
    CHECK_EQ_STR(json_test_written(&w, buffer, sizeof buffer), "\"a\\u0000b\"");
    /* U+2028 and U+2029 are escaped; other characters starting 0xE2, and a cut-off one, are not. */
    vrs__jw_init(&w, buffer, sizeof buffer);
    vrs__jw_cstring(&w, "<\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x82\xac|\xe2\x80\xaa|\xe2\x80");
    CHECK_EQ_STR(json_test_written(&w, buffer, sizeof buffer),
                 "\"<\\u2028|\\u2029|\xe2\x82\xac|\xe2\x80\xaa|\xe2\x80\"");
    /* A cut-off U+2028 at the very end of the input is not read past (ASan: exact-size copy). */
    {
        char *cut = json_test_exact_copy("x\xe2\x80", 3);
        REQUIRE(cut != NULL);
        vrs__jw_init(&w, buffer, sizeof buffer);
        vrs__jw_string(&w, cut, 3);
        CHECK_EQ_STR(json_test_written(&w, buffer, sizeof buffer), "\"x\xe2\x80\"");
        free(cut);
    }
    vrs__jw_init(&w, buffer, sizeof buffer);
    vrs__jw_cstring(&w, "");
    CHECK_EQ_STR(json_test_written(&w, buffer, sizeof buffer), "\"\"");
}

TEST(json, writer_string_round_trips) {
    char input[160], output[512], decoded[160];
    size_t length = 0;
    int c;
    long decoded_length;
    vrs__json_writer w;
    for (c = 0x01; c <= 0x7f; c++) input[length++] = (char)c;
    memcpy(input + length, "\xc3\xa9\xe2\x82\xac\xe2\x80\xa8\xe2\x80\xa9\xf0\x9f\x98\x80\xef\xbf\xbd", 18);
    length += 18;
    vrs__jw_init(&w, output, sizeof output);
    vrs__jw_string(&w, input, length);
    REQUIRE(!w.overflowed);
    CHECK(vrs__json_validate(output, w.length, 64));
    CHECK(vrs__json_kind_of(json_test_slice_n(output, w.length)) == VRS__JSON_STRING);
    for (c = 0; (size_t)c < w.length; c++) CHECK((unsigned char)output[c] >= 0x20);
    CHECK(json_test_written(&w, output, sizeof output) == output);
    CHECK(strstr(output, "\\u2028") && strstr(output, "\\u2029") && !strstr(output, "\xe2\x80\xa8"));
    decoded_length = vrs__json_string_decode(json_test_slice_n(output, w.length), decoded, sizeof decoded);
    REQUIRE_EQ_INT(decoded_length, length);
    CHECK_EQ_MEM(decoded, input, length);
}

/* One of everything the writer does, so a cut at any capacity lands somewhere different. */
static void json_test_write_sample(vrs__json_writer *w) {
    vrs__jw_raw(w, "[", 1);
    vrs__jw_cstring(w, "he said \"hi\"\n\xe2\x80\xa8");
    vrs__jw_raw(w, ",", 1);
    vrs__jw_null(w);
    vrs__jw_raw(w, ",{\"k\":", 6);
    vrs__jw_string(w, "\x01", 1);
    vrs__jw_raw(w, "}]", 2);
}

TEST(json, writer_never_writes_past_capacity) {
    char expected[256], storage[256];
    size_t expected_length, capacity, i;
    vrs__json_writer w;
    vrs__jw_init(&w, expected, sizeof expected);
    json_test_write_sample(&w);
    REQUIRE(!w.overflowed);
    expected_length = w.length;
    CHECK(vrs__json_validate(expected, expected_length, 64));
    for (capacity = 0; capacity <= expected_length + 2; capacity++) {
        int guard_intact = 1;
        memset(storage, 'G', sizeof storage);
        vrs__jw_init(&w, storage, capacity);
        json_test_write_sample(&w);
        CHECK(w.length <= capacity);
        CHECK_EQ_INT(w.overflowed, capacity < expected_length);
        CHECK_EQ_MEM(storage, expected, w.length);
        for (i = capacity; i < sizeof storage; i++) guard_intact &= storage[i] == 'G';
        CHECK(guard_intact);
    }
    /* Once overflowed, even a write that would fit does nothing. */
    vrs__jw_init(&w, storage, 4);
    vrs__jw_raw(&w, "12345", 5);
    CHECK(w.overflowed);
    CHECK_EQ_INT(w.length, 0);
    vrs__jw_raw(&w, "ab", 2);
    CHECK_EQ_INT(w.length, 0);
    /* No buffer at all: everything overflows, nothing is touched. */
    vrs__jw_init(&w, NULL, 100);
    vrs__jw_null(&w);
    CHECK(w.overflowed);
    CHECK_EQ_INT(w.length, 0);
}

TEST(json, writer_forwards_raw_json) {
    char buffer[64];
    vrs__json_writer w;
    const char *payload = "{\"sdp\":\"v=0\\r\\n\"}";
    vrs__jw_init(&w, buffer, sizeof buffer);
    vrs__jw_raw(&w, "[null,", 6);
    vrs__jw_cstring(&w, "1");
    vrs__jw_raw(&w, ",", 1);
    vrs__jw_raw(&w, payload, strlen(payload));
    vrs__jw_raw(&w, "", 0);
    vrs__jw_raw(&w, "]", 1);
    CHECK_EQ_STR(json_test_written(&w, buffer, sizeof buffer), "[null,\"1\",{\"sdp\":\"v=0\\r\\n\"}]");
    CHECK(vrs__json_validate(buffer, w.length, 64));
}

/* ---- Phoenix-shaped messages ---- */

TEST(json, phoenix_v2_message_splits_into_five_elements) {
    static const char *const expected[] = {"\"1\"", "\"2\"", "\"room:x\"", "\"phx_join\"", "{}"};
    static const char *const texts[] = {
        "[\"1\",\"2\",\"room:x\",\"phx_join\",{}]",
        " \r\n[ \"1\" ,\t\"2\"\n,\r\n\"room:x\" , \"phx_join\",\n{ }\n]\r\n",
    };
    size_t t, count;
    for (t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        vrs__json_cursor cursor;
        vrs__json_slice element;
        REQUIRE(json_test_valid(texts[t]));
        REQUIRE(vrs__json_kind_of(json_test_slice(texts[t])) == VRS__JSON_ARRAY);
        REQUIRE(vrs__json_enter(json_test_slice(texts[t]), &cursor));
        for (count = 0; vrs__json_next_element(&cursor, &element); count++) {
            REQUIRE(count < 5);
            if (count == 4) {
                CHECK_EQ_INT(vrs__json_kind_of(element), VRS__JSON_OBJECT);
                CHECK(element.length == 2 || json_test_slice_is(element, "{ }"));
            } else {
                CHECK(json_test_slice_is(element, expected[count]));
            }
        }
        CHECK_EQ_INT(count, 5);
    }
    /* A heartbeat's null join_ref. */
    {
        vrs__json_cursor cursor;
        vrs__json_slice element;
        const char *heartbeat = "[null,\"5\",\"phoenix\",\"heartbeat\",{}]";
        REQUIRE(vrs__json_enter(json_test_slice(heartbeat), &cursor));
        REQUIRE(vrs__json_next_element(&cursor, &element));
        CHECK_EQ_INT(vrs__json_kind_of(element), VRS__JSON_NULL);
        REQUIRE(vrs__json_next_element(&cursor, &element));
        REQUIRE(vrs__json_next_element(&cursor, &element));
        CHECK(vrs__json_string_equals(element, "phoenix"));
        REQUIRE(vrs__json_next_element(&cursor, &element));
        CHECK(vrs__json_string_equals(element, "heartbeat"));
    }
}

TEST(json, phoenix_v1_message_members) {
    const char *text = "{\"topic\":\"room:x\",\"event\":\"phx_join\",\"payload\":{\"a\":[1]},\"ref\":\"1\"}";
    vrs__json_slice message = json_test_slice(text), value;
    REQUIRE(json_test_valid(text));
    CHECK(vrs__json_object_get(message, "topic", &value) && vrs__json_string_equals(value, "room:x"));
    CHECK(vrs__json_object_get(message, "event", &value) && vrs__json_string_equals(value, "phx_join"));
    CHECK(vrs__json_object_get(message, "payload", &value) && json_test_slice_is(value, "{\"a\":[1]}"));
    CHECK(vrs__json_object_get(message, "ref", &value) && vrs__json_string_equals(value, "1"));
    CHECK(!vrs__json_object_get(message, "join_ref", &value));
}

TEST(json, phoenix_media_event_data_decodes_to_json) {
    const char *payload = "{ \"data\" : \"{\\\"type\\\":\\\"join\\\",\\\"data\\\":{\\\"n\\\":\\\"\\u00e9\\\"}}\" }";
    vrs__json_slice data, type, inner;
    char decoded[128];
    long length;
    REQUIRE(json_test_valid(payload));
    REQUIRE(vrs__json_object_get(json_test_slice(payload), "data", &data));
    CHECK_EQ_INT(vrs__json_kind_of(data), VRS__JSON_STRING);
    length = vrs__json_string_decode(data, decoded, sizeof decoded);
    REQUIRE(length > 0);
    CHECK_EQ_STR(decoded, "{\"type\":\"join\",\"data\":{\"n\":\"\xc3\xa9\"}}");
    REQUIRE(vrs__json_validate(decoded, (size_t)length, 64));
    CHECK(vrs__json_object_get(json_test_slice_n(decoded, (size_t)length), "type", &type) &&
          vrs__json_string_equals(type, "join"));
    CHECK(vrs__json_object_get(json_test_slice_n(decoded, (size_t)length), "data", &inner) &&
          vrs__json_object_get(inner, "n", &type) && vrs__json_string_equals(type, "\xc3\xa9"));
    /* "data": null is a value like any other. */
    CHECK(vrs__json_object_get(json_test_slice("{\"data\":null}"), "data", &data) &&
          vrs__json_kind_of(data) == VRS__JSON_NULL);
}

/* ---- Escaped mode: E read where it stands inside a string D ---- */

/* A decoded copy of a slice of D's content (E's text as it stands in D). */
static long json_test_unescape(vrs__json_slice escaped, char *out, size_t capacity) {
    char *quoted = (char *)malloc(escaped.length + 2);
    long length;
    if (!quoted) return -1;
    quoted[0] = '"';
    if (escaped.length) memcpy(quoted + 1, escaped.start, escaped.length);
    quoted[escaped.length + 1] = '"';
    length = vrs__json_string_decode(json_test_slice_n(quoted, escaped.length + 2), out, capacity);
    free(quoted);
    return length;
}

static int json_test_has_line_separator(const char *text, size_t length) {
    size_t i;
    for (i = 0; i + 2 < length; i++)
        if ((unsigned char)text[i] == 0xE2 && (unsigned char)text[i + 1] == 0x80 &&
            ((unsigned char)text[i + 2] == 0xA8 || (unsigned char)text[i + 2] == 0xA9))
            return 1;
    return 0;
}

/* E escaped as the library's writer (and JSON.stringify) would into D, then read both ways:
   escaped mode accepts exactly when plain validation does (it may only decline E holding
   U+2028/U+2029, which the writer escapes as \u), and records the same members. Returns the
   number of disagreements. */
static int json_test_escaped_agrees(const char *name, const char *e, size_t length) {
    vrs__json_member plain_members[8], escaped_members[8];
    vrs__json_record plain, escaped;
    vrs__json_writer w;
    size_t capacity = length * 6 + 16;
    char *d = (char *)malloc(capacity), *decoded = (char *)malloc(length + 1);
    int plain_valid, escaped_valid, i, problems = 0;
    if (!d || !decoded) {
        free(d);
        free(decoded);
        return 1;
    }
    vrs__jw_init(&w, d, capacity);
    vrs__jw_string_content(&w, e, length);
    memset(&plain, 0, sizeof plain);
    memset(&escaped, 0, sizeof escaped);
    plain.members = plain_members;
    escaped.members = escaped_members;
    plain.capacity = escaped.capacity = 8;
    plain.nested_parent = escaped.nested_parent = -1;
    plain_valid = vrs__json_validate_recording(e, length, 64, 0, &plain);
    escaped_valid = vrs__json_validate_recording(d, w.length, 64, 1, &escaped);
    if (escaped_valid != plain_valid && !(plain_valid && json_test_has_line_separator(e, length))) {
        fprintf(stderr, "  %s: escaped mode says %d, plain %d\n", name, escaped_valid, plain_valid);
        problems++;
    } else if (escaped_valid) {
        if (escaped.count != plain.count) problems++;
        for (i = 0; i < plain.count && i < 8 && i < escaped.count; i++) {
            vrs__json_slice sides[2][2];
            int side;
            sides[0][0] = plain_members[i].key;
            sides[0][1] = plain_members[i].value;
            sides[1][0] = escaped_members[i].key;
            sides[1][1] = escaped_members[i].value;
            for (side = 0; side < 2; side++) {
                long n = json_test_unescape(sides[1][side], decoded, length + 1);
                if (n < 0 || (size_t)n != sides[0][side].length ||
                    (n > 0 && memcmp(decoded, sides[0][side].start, (size_t)n) != 0)) {
                    fprintf(stderr, "  %s: member %d's %s differs read in place\n", name, i, side ? "value" : "key");
                    problems++;
                }
            }
        }
    }
    free(d);
    free(decoded);
    return problems;
}

static void json_test_corpus_escaped(const char *name, const char *text, size_t length, void *context) {
    /* D must be valid UTF-8 to be a string at all; the corpus' invalid files cannot be in one */
    if (vrs__utf8_is_valid((const uint8_t *)text, length))
        *(int *)context += json_test_escaped_agrees(name, text, length);
}

TEST(json, escaped_mode_agrees_with_decoding_on_the_corpus) {
    int problems = 0, files = 0, n;
    static const char *const prefixes[] = {"y_", "n_", "i_"};
    size_t p;
    for (p = 0; p < 3; p++) {
        n = json_test_for_each_corpus_file(prefixes[p], json_test_corpus_escaped, &problems);
        if (n < 0) SKIP(JSON_TEST_CORPUS_MISSING);
        files += n;
    }
    printf("  %d files read escaped and decoded\n", files);
    CHECK(files > 0);
    CHECK_EQ_INT(problems, 0);
}

TEST(json, escaped_mode_reads_what_stringify_writes) {
    static const char *const texts[] = {
        "{\"type\":\"custom\",\"data\":{\"s\":1,\"p\":\"xx\"}}",
        "{ \"a\" :\n[1, -2.5e+3, true, false, null, {}, []]\t,\r\n\"b\":\"\" }",
        "{\"q\":\"say \\\"hi\\\"\",\"b\":\"back\\\\slash\",\"c\":\"\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
        "{\"sdp\":\"v=0\\r\\no=- 1 2 IN IP4 127.0.0.1\\r\\n\",\"nested\":\"{\\\"deep\\\":\\\"\\\\\\\\\\\"}\"}",
        "{\"raw\":\"caf\xc3\xa9 \xf0\x9f\x98\x80 https://x/y?z=1\"}",
        "[\"\",[[\"a\"]],{\"\":{\"\":\"\"}}]",
        "\"just a string\"", "42", "null",
        /* and what it must refuse */
        "{\"a\":1,}", "{\"a\" 1}", "[1 2]", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":tru}", "[01]", "",
        "{\"a\":1}}", "{\"a\":\"unterminated}", "[\"tab\tinside\"]", "{\"new\nline\":1}",
    };
    size_t i;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) CHECK_EQ_INT(json_test_escaped_agrees(texts[i], texts[i], strlen(texts[i])), 0);
}

static int json_test_escaped_valid(const char *content, int max_depth) {
    return vrs__json_validate_recording(content, strlen(content), max_depth, 1, NULL);
}

TEST(json, escaped_mode_declines_other_escapes_of_the_string) {
    /* Valid E written with escapes JSON.stringify does not use: the caller decodes instead. */
    static const char *const contents[] = {
        "\\u007b}", "{\\\"a\\\":\\\"x\\/y\\\"}", "{\\\"a\\\":\\\"\\u00e9\\\"}", "[\\\"\\b\\\"]",
        "\\u005b1]", "{\\\"a\\u0022:1}",
    };
    size_t i;
    for (i = 0; i < sizeof contents / sizeof contents[0]; i++) {
        char decoded[64];
        long n = json_test_unescape(json_test_slice(contents[i]), decoded, sizeof decoded);
        CHECK(n > 0);
        CHECK(!json_test_escaped_valid(contents[i], 64));
    }
    /* E's own whitespace may be D's \n, \r, \t */
    CHECK(json_test_escaped_valid("\\n{\\t\\\"a\\\"\\r: 1 }\\n", 64));
    /* the nesting limit holds as it does decoded */
    CHECK(json_test_escaped_valid("[[\\\"a\\\"]]", 2));
    CHECK(!json_test_escaped_valid("[[\\\"a\\\"]]", 1));
}

/* ---- Members recorded while validating ---- */

TEST(json, validation_records_the_members_of_one_child) {
    const char *text = "[\"1\",null,\"room:x\",\"mediaEvent\",{\"data\":\"x\", \"b\" : [1,{\"c\":2}],\"data\":{\"d\":[3]}},7]";
    vrs__json_member top[5], nested[2];
    vrs__json_record record;
    memset(&record, 0, sizeof record);
    record.members = top;
    record.capacity = 5;
    record.nested_parent = 4;
    record.nested = nested;
    record.nested_capacity = 2;
    REQUIRE(vrs__json_validate_recording(text, strlen(text), 64, 0, &record));
    CHECK_EQ_INT(record.count, 6);
    CHECK(json_test_slice_is(top[3].value, "\"mediaEvent\""));
    CHECK_EQ_INT(record.nested_count, 3); /* counted in all; the first two recorded */
    CHECK(json_test_slice_is(nested[0].key, "\"data\"") && json_test_slice_is(nested[0].value, "\"x\""));
    CHECK(json_test_slice_is(nested[1].key, "\"b\"") && json_test_slice_is(nested[1].value, "[1,{\"c\":2}]"));
    /* an array child's elements: no keys */
    record.nested_parent = 0;
    REQUIRE(vrs__json_validate_recording("[[true,[2]],{\"k\":1}]", 20, 64, 0, &record));
    CHECK_EQ_INT(record.count, 2);
    CHECK_EQ_INT(record.nested_count, 2);
    CHECK(nested[0].key.length == 0 && json_test_slice_is(nested[0].value, "true"));
    CHECK(json_test_slice_is(nested[1].value, "[2]"));
    /* a scalar child has none, and invalid text records no verdict */
    record.nested_parent = 1;
    REQUIRE(vrs__json_validate_recording("[{},5]", 6, 64, 0, &record));
    CHECK_EQ_INT(record.nested_count, 0);
    CHECK(!vrs__json_validate_recording("[{},{\"a\":}]", 11, 64, 0, &record));
}

/* ---- Garbage into the cursor API ---- */

TEST(json, cursor_survives_garbage) {
    static const char *const garbage[] = {
        "[", "]", "{", "}", "[\"abc", "[\"abc\\", "{\"a\"", "{\"a\":", "{\"a\" 1}", "{\"a\":1,", "[1,",
        "\"", "\"\\", "\"\\u", "\"\\ud800\\u", "[}", "{]", "{\"a\":[1}", "[{]", "{1:2}", "[,,]", "{:}",
        "{\"a\":\"b\\\"}", "[\"]", "{\"\\\":1}", "[[[[[[", "]]]]", "[\"\\\"]", ",", ":", "{\"a\":1 \"b\":2}",
    };
    vrs__json_cursor cursor;
    vrs__json_slice element, key;
    size_t i;
    for (i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        CHECK(!json_test_valid(garbage[i]));
        json_test_poke_garbage(garbage[i], strlen(garbage[i]));
    }
    /* A zeroed cursor is simply finished. */
    memset(&cursor, 0, sizeof cursor);
    CHECK(!vrs__json_next_element(&cursor, &element));
    CHECK(!vrs__json_next_member(&cursor, &key, &element));
    CHECK(!vrs__json_enter(json_test_slice_n(NULL, 5), &cursor));
    /* Truncations of a message with every kind of value in it. */
    {
        const char *text = "{\"a\":[1,-2.5e3,\"x\\\"]\\u00e9\",{\"b\":null}],\"c\":{\"d\":[true,false,{}]},\"e\":\"\\ud83d\\ude00\"}";
        size_t cut;
        REQUIRE(json_test_valid(text));
        for (cut = 0; cut <= strlen(text); cut++) json_test_poke_garbage(text, cut);
        for (cut = 0; cut < strlen(text); cut++) json_test_poke_garbage(text + cut, strlen(text) - cut);
    }
}

/* ---- The public helpers for hosts (vrs_json_*) ---- */

/* The writer's text after vrs_json_finish, or "(result name)" when it refused. */
static const char *json_test_finished(vrs_json_writer *w) {
    static char text[64];
    size_t length = 0;
    vrs_result result = vrs_json_finish(w, &length);
    if (result != VRS_OK) {
        snprintf(text, sizeof text, "(%s)", vrs_result_string(result));
        return text;
    }
    return length < w->capacity ? w->buffer : "(not terminated)";
}

TEST(json_api, writer_places_commas_and_colons) {
    char buffer[256];
    vrs_json_writer w;
    vrs_json_writer_init(&w, buffer, sizeof buffer);
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "type");
    vrs_json_cstring(&w, "chat");
    vrs_json_key(&w, "list");
    vrs_json_begin_array(&w);
    vrs_json_int(&w, 1);
    vrs_json_begin_object(&w);
    vrs_json_end_object(&w);
    vrs_json_begin_array(&w);
    vrs_json_end_array(&w);
    vrs_json_bool(&w, 1);
    vrs_json_bool(&w, 0);
    vrs_json_null(&w);
    vrs_json_raw(&w, " {\"a\": [1]} ", 12);
    vrs_json_end_array(&w);
    vrs_json_key(&w, "n");
    vrs_json_int(&w, -42);
    vrs_json_end_object(&w);
    CHECK_EQ_STR(json_test_finished(&w), "{\"type\":\"chat\",\"list\":[1,{},[],true,false,null, {\"a\": [1]} ],\"n\":-42}");
    /* a lone scalar is a document too */
    vrs_json_writer_init(&w, buffer, sizeof buffer);
    vrs_json_cstring(&w, "x");
    CHECK_EQ_STR(json_test_finished(&w), "\"x\"");
}

TEST(json_api, writer_writes_every_escape_and_int64_range) {
    char buffer[256];
    vrs_json_writer w;
    vrs_json_writer_init(&w, buffer, sizeof buffer);
    vrs_json_begin_array(&w);
    vrs_json_string(&w, "\"\\/\b\f\n\r\t\x01\x1f\0\x7f\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\xf0\x9f\x98\x80", 24);
    vrs_json_int(&w, INT64_MIN);
    vrs_json_int(&w, INT64_MAX);
    vrs_json_int(&w, 0);
    vrs_json_end_array(&w);
    CHECK_EQ_STR(json_test_finished(&w),
                 "[\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\\u0000\x7f\xc3\xa9\\u2028\\u2029\xf0\x9f\x98\x80\","
                 "-9223372036854775808,9223372036854775807,0]");
}

TEST(json_api, writer_refuses_writes_out_of_place) {
    char buffer[256];
    vrs_json_writer w;
#define JSON_TEST_MISUSE(calls)                                                                 \
    do {                                                                                         \
        vrs_json_writer_init(&w, buffer, sizeof buffer);                                         \
        calls;                                                                                   \
        CHECK_EQ_INT(vrs_json_finish(&w, NULL), VRS_ERROR_INVALID_ARGUMENT);                      \
    } while (0)
    JSON_TEST_MISUSE((void)0);                                                  /* nothing */
    JSON_TEST_MISUSE(vrs_json_begin_object(&w); vrs_json_int(&w, 1); vrs_json_end_object(&w)); /* no key */
    JSON_TEST_MISUSE(vrs_json_begin_array(&w); vrs_json_key(&w, "k"); vrs_json_end_array(&w));
    JSON_TEST_MISUSE(vrs_json_begin_object(&w); vrs_json_key(&w, "k"); vrs_json_end_object(&w));
    JSON_TEST_MISUSE(vrs_json_begin_object(&w); vrs_json_key(&w, "k"); vrs_json_key(&w, "l"));
    JSON_TEST_MISUSE(vrs_json_begin_object(&w); vrs_json_end_array(&w));
    JSON_TEST_MISUSE(vrs_json_begin_array(&w));                                 /* left open */
    JSON_TEST_MISUSE(vrs_json_end_array(&w));
    JSON_TEST_MISUSE(vrs_json_int(&w, 1); vrs_json_int(&w, 2));                 /* two documents */
    JSON_TEST_MISUSE(vrs_json_string(&w, "\xc3", 1));                           /* not UTF-8 */
    JSON_TEST_MISUSE(vrs_json_string(&w, "\xed\xa0\x80", 3));                   /* a surrogate */
    JSON_TEST_MISUSE(vrs_json_begin_object(&w); vrs_json_key(&w, "\xff"); vrs_json_int(&w, 1); vrs_json_end_object(&w));
    JSON_TEST_MISUSE(vrs_json_raw(&w, "{\"a\":1,}", 8));                        /* bad raw JSON */
    JSON_TEST_MISUSE(vrs_json_raw(&w, "1 2", 3));
    JSON_TEST_MISUSE(vrs_json_cstring(&w, NULL));
    {
        int i;
        JSON_TEST_MISUSE(for (i = 0; i < 65; i++) vrs_json_begin_array(&w); for (i = 0; i < 65; i++) vrs_json_end_array(&w));
        vrs_json_writer_init(&w, buffer, sizeof buffer);
        for (i = 0; i < 64; i++) vrs_json_begin_array(&w);
        for (i = 0; i < 64; i++) vrs_json_end_array(&w);
        CHECK_EQ_INT(vrs_json_finish(&w, NULL), VRS_OK);
    }
#undef JSON_TEST_MISUSE
}

static void json_test_write_document(vrs_json_writer *w) {
    vrs_json_begin_object(w);
    vrs_json_key(w, "from");
    vrs_json_string(w, "a\0\"\xe2\x80\xa8", 6);
    vrs_json_key(w, "n");
    vrs_json_int(w, -1234567);
    vrs_json_key(w, "x");
    vrs_json_begin_array(w);
    vrs_json_bool(w, 1);
    vrs_json_raw(w, "{}", 2);
    vrs_json_end_array(w);
    vrs_json_end_object(w);
}

TEST(json_api, writer_reports_overflow_and_never_writes_past_capacity) {
    char expected[128], storage[160];
    size_t expected_length, capacity, length, i;
    vrs_json_writer w;
    vrs_json_writer_init(&w, expected, sizeof expected);
    json_test_write_document(&w);
    REQUIRE_EQ_INT(vrs_json_finish(&w, &expected_length), VRS_OK);
    CHECK_EQ_STR(expected, "{\"from\":\"a\\u0000\\\"\\u2028\",\"n\":-1234567,\"x\":[true,{}]}");
    for (capacity = 0; capacity <= expected_length + 1; capacity++) {
        int guard_intact = 1;
        vrs_result result;
        memset(storage, 'G', sizeof storage);
        vrs_json_writer_init(&w, storage, capacity);
        json_test_write_document(&w);
        result = vrs_json_finish(&w, &length);
        CHECK_EQ_INT(result, capacity < expected_length ? VRS_ERROR_BUFFER_TOO_SMALL : VRS_OK);
        CHECK(length <= capacity);
        CHECK_EQ_MEM(storage, expected, length);
        /* NUL-terminated only when a byte is left for it */
        if (result == VRS_OK) CHECK(capacity == expected_length ? storage[length] == 'G' : storage[length] == '\0');
        for (i = capacity + (capacity > expected_length); i < sizeof storage; i++) guard_intact &= storage[i] == 'G';
        CHECK(guard_intact);
    }
}

TEST(json_api, reader_decodes_every_escape_and_surrogate_pairs) {
    static const char text[] =
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001F\\u00e9\\u20AC\\ud83d\\ude00\\uD800x\\uDC00\\u2028\xc3\xa9\"}";
    static const char want[] = "\"\\/\b\f\n\r\t\0\x1f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbdx\xef\xbf\xbd\xe2\x80\xa8\xc3\xa9";
    char *exact = json_test_exact_copy(text, sizeof text - 1), out[64];
    size_t length = 0;
    REQUIRE(exact != NULL);
    CHECK_EQ_INT(vrs_json_get_string(exact, sizeof text - 1, "s", out, sizeof out, &length), VRS_OK);
    CHECK_EQ_INT(length, sizeof want - 1);
    CHECK_EQ_MEM(out, want, sizeof want - 1);
    CHECK_EQ_INT(out[length], '\0');
    /* exactly enough room (the NUL included), and one byte short */
    CHECK_EQ_INT(vrs_json_get_string(exact, sizeof text - 1, "s", out, sizeof want, &length), VRS_OK);
    CHECK_EQ_INT(vrs_json_get_string(exact, sizeof text - 1, "s", out, sizeof want - 1, &length),
                 VRS_ERROR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(vrs_json_get_string(exact, sizeof text - 1, "s", out, 0, &length), VRS_ERROR_BUFFER_TOO_SMALL);
    free(exact);
}

TEST(json_api, strings_round_trip_with_nul_inside) {
    char input[300], text[2048], out[300];
    size_t input_length = 0, length, out_length;
    int c;
    vrs_json_writer w;
    for (c = 0; c < 0x80; c++) input[input_length++] = (char)c;
    memcpy(input + input_length, "\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\xf0\x9f\x98\x80\0", 14);
    input_length += 14;
    vrs_json_writer_init(&w, text, sizeof text);
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "text");
    vrs_json_string(&w, input, input_length);
    vrs_json_end_object(&w);
    REQUIRE_EQ_INT(vrs_json_finish(&w, &length), VRS_OK);
    CHECK_EQ_INT(vrs_json_type_of(text, length), VRS_JSON_OBJECT);
    REQUIRE_EQ_INT(vrs_json_get_string(text, length, "text", out, sizeof out, &out_length), VRS_OK);
    CHECK_EQ_INT(out_length, input_length);
    CHECK_EQ_MEM(out, input, input_length);
}

TEST(json_api, members_found_at_depth) {
    static const char text[] =
        " {\"type\":\"join\",\"data\":{\"metadata\":{\"name\":\"Ann\",\"seat\":7,\"on\":true}},"
        "\"peers\":[{\"id\":\"a\"},{\"id\":\"b\"}],\"a.b\":1,\"a\":{\"b\":2},\"dup\":1,\"dup\":2,"
        "\"\\u0041\":\"escaped key\",\"nul\\u0000key\":3} ";
    size_t n = sizeof text - 1, length;
    char *json = json_test_exact_copy(text, n), out[32];
    vrs_span value;
    int64_t number = 0;
    int flag = 0;
    REQUIRE(json != NULL);
    CHECK_EQ_INT(vrs_json_get_string(json, n, "data.metadata.name", out, sizeof out, &length), VRS_OK);
    CHECK_EQ_STR(out, "Ann");
    CHECK_EQ_INT(vrs_json_get_int(json, n, "data.metadata.seat", &number), VRS_OK);
    CHECK_EQ_INT(number, 7);
    CHECK_EQ_INT(vrs_json_get_bool(json, n, "data.metadata.on", &flag), VRS_OK);
    CHECK_EQ_INT(flag, 1);
    CHECK_EQ_INT(vrs_json_get_string(json, n, "peers.1.id", out, sizeof out, NULL), VRS_OK);
    CHECK_EQ_STR(out, "b");
    REQUIRE_EQ_INT(vrs_json_find(json, n, "data.metadata", &value), VRS_OK);
    CHECK(value.length == 33 && memcmp(value.ptr, "{\"name\":\"Ann\",\"seat\":7,\"on\":true}", 33) == 0);
    /* a found value is read inside by passing it back in */
    CHECK_EQ_INT(vrs_json_get_int(value.ptr, value.length, "seat", &number), VRS_OK);
    REQUIRE_EQ_INT(vrs_json_find(json, n, "", &value), VRS_OK); /* the whole, trimmed */
    CHECK(value.ptr == json + 1 && value.length == n - 2);
    /* a dotted path reads nested objects; a key holding a dot is reached whole */
    CHECK_EQ_INT(vrs_json_get_int(json, n, "a.b", &number), VRS_OK);
    CHECK_EQ_INT(number, 2);
    CHECK_EQ_INT(vrs_json_member(json, n, "a.b", &value), VRS_OK);
    CHECK(value.length == 1 && value.ptr[0] == '1');
    CHECK_EQ_INT(vrs_json_get_int(json, n, "dup", &number), VRS_OK); /* the last one counts */
    CHECK_EQ_INT(number, 2);
    CHECK_EQ_INT(vrs_json_get_string(json, n, "A", out, sizeof out, NULL), VRS_OK); /* keys compare decoded */
    CHECK_EQ_INT(vrs_json_member(json, n, "nul", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_get_string("{\"\":{\"\":\"e\"}}", 13, ".", out, sizeof out, NULL), VRS_OK);
    /* paths that lead nowhere */
    CHECK_EQ_INT(vrs_json_find(json, n, "data.nothing", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_find(json, n, "peers.2", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_find(json, n, "peers.x", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_find(json, n, "peers.-1", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_find(json, n, "type.x", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_find(json, n, "data.", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_find(json, n, ".data", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_member(json, n, "missing", &value), VRS_ERROR_NOT_FOUND);
    CHECK_EQ_INT(vrs_json_member("[1]", 3, "0", &value), VRS_ERROR_WRONG_TYPE);
    /* values of another type */
    CHECK_EQ_INT(vrs_json_get_int(json, n, "type", &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_string(json, n, "data.metadata.seat", out, sizeof out, NULL), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_bool(json, n, "data.metadata.name", &flag), VRS_ERROR_WRONG_TYPE);
    free(json);
}

TEST(json_api, integers_and_booleans_are_strict) {
    int64_t number = 5;
    int flag = 5;
    CHECK_EQ_INT(vrs_json_get_int("9223372036854775807", 19, NULL, &number), VRS_OK);
    CHECK(number == INT64_MAX);
    CHECK_EQ_INT(vrs_json_get_int("-9223372036854775808", 20, NULL, &number), VRS_OK);
    CHECK(number == INT64_MIN);
    CHECK_EQ_INT(vrs_json_get_int("-0", 2, NULL, &number), VRS_OK);
    CHECK_EQ_INT(number, 0);
    CHECK_EQ_INT(vrs_json_get_int("9223372036854775808", 19, NULL, &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_int("-9223372036854775809", 20, NULL, &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_int("99999999999999999999", 20, NULL, &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_int("1.0", 3, NULL, &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_int("1e3", 3, NULL, &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_int("\"1\"", 3, NULL, &number), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_int("01", 2, NULL, &number), VRS_ERROR_INVALID_JSON);
    CHECK_EQ_INT(number, 0); /* untouched by refusals */
    CHECK_EQ_INT(vrs_json_get_bool(" false ", 7, "", &flag), VRS_OK);
    CHECK_EQ_INT(flag, 0);
    CHECK_EQ_INT(vrs_json_get_bool("null", 4, "", &flag), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_get_bool("1", 1, "", &flag), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_type_of("null", 4), VRS_JSON_NULL);
    CHECK_EQ_INT(vrs_json_type_of("[1,]", 4), VRS_JSON_INVALID);
}

TEST(json_api, bad_input_refused) {
    static const char *const bad[] = {
        "", " ", "{", "{\"a\":1,}", "{\"a\" 1}", "[1 2]", "{\"a\":1}x", "\"\\x\"", "\"\\ud83\"", "\"\x01\"",
        "\"\xc3\"", "\"\xed\xa0\x80\"", "{'a':1}", "[01]", "nul", "{\"a\":1}{}", "\"abc", "[1,",
    };
    size_t i;
    char out[16];
    int64_t number;
    int flag;
    vrs_span value;
    vrs_json_iterator it;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        char *exact = json_test_exact_copy(bad[i], n);
        REQUIRE(exact != NULL);
        CHECK_EQ_INT(vrs_json_find(exact, n, "a", &value), VRS_ERROR_INVALID_JSON);
        CHECK_EQ_INT(vrs_json_find(exact, n, NULL, &value), VRS_ERROR_INVALID_JSON);
        CHECK_EQ_INT(vrs_json_member(exact, n, "a", &value), VRS_ERROR_INVALID_JSON);
        CHECK_EQ_INT(vrs_json_get_string(exact, n, "", out, sizeof out, NULL), VRS_ERROR_INVALID_JSON);
        CHECK_EQ_INT(vrs_json_get_int(exact, n, "", &number), VRS_ERROR_INVALID_JSON);
        CHECK_EQ_INT(vrs_json_get_bool(exact, n, "", &flag), VRS_ERROR_INVALID_JSON);
        CHECK_EQ_INT(vrs_json_iterate(exact, n, "", &it), VRS_ERROR_INVALID_JSON);
        CHECK(!vrs_json_next(&it, NULL, &value));
        CHECK_EQ_INT(vrs_json_type_of(exact, n), VRS_JSON_INVALID);
        free(exact);
    }
    CHECK_EQ_INT(vrs_json_find(NULL, 0, "", &value), VRS_ERROR_INVALID_JSON);
    /* too deep for the reader */
    {
        static char deep[2 * 1025];
        memset(deep, '[', 1025);
        memset(deep + 1025, ']', 1025);
        CHECK_EQ_INT(vrs_json_type_of(deep, sizeof deep), VRS_JSON_INVALID);
        CHECK_EQ_INT(vrs_json_type_of(deep + 1, sizeof deep - 2), VRS_JSON_ARRAY);
    }
}

TEST(json_api, iterates_arrays_and_objects) {
    static const char text[] = "{\"list\":[1, \"two\" ,{\"3\":[]}],\"obj\":{\"k\\u00e9\":true, \"b\":null},\"e\":[],\"n\":1}";
    size_t n = sizeof text - 1;
    vrs_json_iterator it;
    vrs_span key, value;
    char name[8];
    int count = 0;
    REQUIRE_EQ_INT(vrs_json_iterate(text, n, "list", &it), VRS_OK);
    while (vrs_json_next(&it, &key, &value)) {
        static const char *const want[] = {"1", "\"two\"", "{\"3\":[]}"};
        REQUIRE(count < 3);
        CHECK(key.length == 0);
        CHECK(value.length == strlen(want[count]) && memcmp(value.ptr, want[count], value.length) == 0);
        count++;
    }
    CHECK_EQ_INT(count, 3);
    REQUIRE_EQ_INT(vrs_json_iterate(text, n, "obj", &it), VRS_OK);
    REQUIRE(vrs_json_next(&it, &key, &value));
    CHECK_EQ_INT(vrs_json_get_string(key.ptr, key.length, "", name, sizeof name, NULL), VRS_OK);
    CHECK_EQ_STR(name, "k\xc3\xa9");
    CHECK(value.length == 4 && memcmp(value.ptr, "true", 4) == 0);
    REQUIRE(vrs_json_next(&it, NULL, &value));
    CHECK(value.length == 4 && memcmp(value.ptr, "null", 4) == 0);
    CHECK(!vrs_json_next(&it, &key, &value));
    CHECK(!vrs_json_next(&it, &key, &value));
    REQUIRE_EQ_INT(vrs_json_iterate(text, n, "e", &it), VRS_OK);
    CHECK(!vrs_json_next(&it, &key, &value));
    CHECK_EQ_INT(vrs_json_iterate(text, n, "n", &it), VRS_ERROR_WRONG_TYPE);
    CHECK_EQ_INT(vrs_json_iterate(text, n, "none", &it), VRS_ERROR_NOT_FOUND);
}
