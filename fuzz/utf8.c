/* Fuzz target: the incremental UTF-8 validator, vrs__utf8_feed.

   Input: byte 0 = number of cut points (mod 8), then 2 bytes per cut point (little-endian,
   taken modulo the text's length + 1); the rest is the text. The text is fed in the pieces
   the cuts make, each piece in a buffer of its exact size, and the verdict is compared with a
   reference validator that decodes code points (fuzz_common.h):
   - the whole text: accepted (state ACCEPT at the end) exactly when the reference accepts it;
   - REJECT is sticky, and comes at the first impossible byte: the prefix before it is a prefix
     of some valid text, the prefix through it is not;
   - a state that is neither ACCEPT nor REJECT at the end means a valid but unfinished text;
   - vrs__utf8_is_valid agrees. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"
#include "fuzz_common.h"

static int compare_sizes(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t cuts[8], cut_count, i, n, start = 0, reject_at = (size_t)-1;
    const uint8_t *text;
    uint32_t state = VRS__UTF8_ACCEPT;
    int reference;
    if (size < 1) return 0;
    cut_count = data[0] % 8;
    if (size < 1 + 2 * cut_count) return 0;
    text = data + 1 + 2 * cut_count;
    n = size - 1 - 2 * cut_count;
    for (i = 0; i < cut_count; i++) cuts[i] = (size_t)(data[1 + 2 * i] | data[2 + 2 * i] << 8) % (n + 1);
    qsort(cuts, cut_count, sizeof cuts[0], compare_sizes);

    /* in pieces */
    for (i = 0; i <= cut_count; i++) {
        size_t end = i < cut_count ? cuts[i] : n;
        uint8_t *piece = fz_exact_copy(text + start, end - start);
        uint32_t before = state;
        state = vrs__utf8_feed(state, piece, end - start);
        if (before == VRS__UTF8_REJECT) FZ_CHECK(state == VRS__UTF8_REJECT);
        free(piece);
        start = end;
    }

    /* byte by byte, to find where it rejects */
    {
        uint32_t s = VRS__UTF8_ACCEPT;
        for (i = 0; i < n; i++) {
            s = vrs__utf8_feed(s, text + i, 1);
            if (s == VRS__UTF8_REJECT) {
                reject_at = i;
                break;
            }
        }
        if (reject_at == (size_t)-1) FZ_CHECK_MSG(s == state, "byte by byte %08x, in pieces %08x", s, state);
        else FZ_CHECK(state == VRS__UTF8_REJECT);
    }

    reference = fz_utf8_valid(text, n);
    FZ_CHECK_MSG((state == VRS__UTF8_ACCEPT) == reference, "vrs__utf8_feed says %s, the reference %s",
                 state == VRS__UTF8_ACCEPT ? "valid" : "invalid", reference ? "valid" : "invalid");
    FZ_CHECK(vrs__utf8_is_valid(text, n) == reference);
    if (reject_at != (size_t)-1) {
        FZ_CHECK_MSG(fz_utf8_valid_prefix(text, reject_at), "rejected at %zu, but the prefix before it is invalid",
                     reject_at);
        FZ_CHECK_MSG(!fz_utf8_valid_prefix(text, reject_at + 1), "rejected at byte %zu, which is possible", reject_at);
    } else {
        FZ_CHECK_MSG(fz_utf8_valid_prefix(text, n), "not rejected, but no valid text starts so");
    }
    return 0;
}
