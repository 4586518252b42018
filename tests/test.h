/* A small test harness in the manner of utest.h: TEST(suite, name) registers a test, CHECK*
   macros record failures without stopping the test, REQUIRE* stop it. The runner takes a
   filter (a substring of "suite.name"), --list-tests, and prints one closing line
   "N passed, N failed, N skipped". */
#ifndef VRS_TEST_H
#define VRS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*vrs_test_fn)(void);
typedef struct vrs_test_case {
    const char *suite;
    const char *name;
    vrs_test_fn fn;
} vrs_test_case;

#define VRS_TEST_MAX 1024
static vrs_test_case vrs_test_cases[VRS_TEST_MAX];
static int vrs_test_count;
static int vrs_test_failed_checks;
static int vrs_test_skipped;

static void vrs_test_register(const char *suite, const char *name, vrs_test_fn fn) {
    if (vrs_test_count < VRS_TEST_MAX) {
        vrs_test_cases[vrs_test_count].suite = suite;
        vrs_test_cases[vrs_test_count].name = name;
        vrs_test_cases[vrs_test_count].fn = fn;
        vrs_test_count++;
    }
}

#define TEST(suite, name)                                                                   \
    static void vrs_test_##suite##_##name(void);                                            \
    __attribute__((constructor)) static void vrs_test_register_##suite##_##name(void) {      \
        vrs_test_register(#suite, #name, vrs_test_##suite##_##name);                         \
    }                                                                                       \
    static void vrs_test_##suite##_##name(void)

#define VRS_TEST_FAIL(...)                                                                  \
    do {                                                                                    \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                   \
        fprintf(stderr, __VA_ARGS__);                                                       \
        fprintf(stderr, "\n");                                                              \
        vrs_test_failed_checks++;                                                           \
    } while (0)

#define CHECK(cond)                                                                         \
    do { if (!(cond)) VRS_TEST_FAIL("CHECK(%s) failed", #cond); } while (0)
#define REQUIRE(cond)                                                                       \
    do { if (!(cond)) { VRS_TEST_FAIL("REQUIRE(%s) failed", #cond); return; } } while (0)
#define CHECK_EQ_INT(a, b)                                                                  \
    do {                                                                                    \
        long long vrs_a_ = (long long)(a), vrs_b_ = (long long)(b);                         \
        if (vrs_a_ != vrs_b_) VRS_TEST_FAIL("%s == %s: %lld != %lld", #a, #b, vrs_a_, vrs_b_); \
    } while (0)
#define REQUIRE_EQ_INT(a, b)                                                                \
    do {                                                                                    \
        long long vrs_a_ = (long long)(a), vrs_b_ = (long long)(b);                         \
        if (vrs_a_ != vrs_b_) {                                                             \
            VRS_TEST_FAIL("%s == %s: %lld != %lld", #a, #b, vrs_a_, vrs_b_);                \
            return;                                                                         \
        }                                                                                   \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                                  \
    do {                                                                                    \
        const char *vrs_a_ = (a), *vrs_b_ = (b);                                            \
        if (!vrs_a_ || !vrs_b_ || strcmp(vrs_a_, vrs_b_) != 0)                              \
            VRS_TEST_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, vrs_a_ ? vrs_a_ : "(null)", \
                          vrs_b_ ? vrs_b_ : "(null)");                                      \
    } while (0)
#define CHECK_EQ_MEM(a, b, n)                                                               \
    do { if (memcmp((a), (b), (n)) != 0) VRS_TEST_FAIL("%s and %s differ", #a, #b); } while (0)
/* Marks the running test as skipped, with the reason printed; the test returns. */
#define SKIP(...)                                                                           \
    do {                                                                                    \
        fprintf(stderr, "  skipped: ");                                                     \
        fprintf(stderr, __VA_ARGS__);                                                       \
        fprintf(stderr, "\n");                                                              \
        vrs_test_skipped = 1;                                                               \
        return;                                                                             \
    } while (0)

static int vrs_test_main(int argc, char **argv) {
    const char *filter = NULL;
    int passed = 0, failed = 0, skipped = 0, i;
    char full[256];
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list-tests") == 0) {
            int t;
            for (t = 0; t < vrs_test_count; t++)
                printf("%s.%s\n", vrs_test_cases[t].suite, vrs_test_cases[t].name);
            return 0;
        } else if (strncmp(argv[i], "--filter=", 9) == 0) {
            filter = argv[i] + 9;
        } else {
            filter = argv[i];
        }
    }
    for (i = 0; i < vrs_test_count; i++) {
        snprintf(full, sizeof full, "%s.%s", vrs_test_cases[i].suite, vrs_test_cases[i].name);
        if (filter && !strstr(full, filter)) continue;
        printf("[ RUN      ] %s\n", full);
        fflush(stdout);
        vrs_test_failed_checks = 0;
        vrs_test_skipped = 0;
        vrs_test_cases[i].fn();
        if (vrs_test_failed_checks) {
            printf("[  FAILED  ] %s\n", full);
            failed++;
        } else if (vrs_test_skipped) {
            printf("[  SKIPPED ] %s\n", full);
            skipped++;
        } else {
            printf("[       OK ] %s\n", full);
            passed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

#endif
