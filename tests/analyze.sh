#!/bin/sh
# Static analysis of the header: gcc's -fanalyzer, clang-tidy's analyzer, CERT and bugprone
# checks, and cppcheck, each with poll() and with epoll. It fails on any finding of gcc's
# analyzer or cppcheck. clang-tidy's remaining findings are listed and explained in the
# README (Static analysis); the run fails if a kind of finding appears that is not one of them.
set -eu
cd "$(dirname "$0")/.."
failed=0
for events in "" "-DVRS_USE_EPOLL -D__linux__"; do
    label=${events:-poll}
    if gcc -std=c99 -fanalyzer -O1 -Wall -Wextra -Werror $events -c videoroom_signal.c -o /dev/null; then
        echo "analyze: gcc -fanalyzer ($label): clean"
    else
        echo "analyze: gcc -fanalyzer ($label): FINDINGS"; failed=1
    fi
    if command -v cppcheck >/dev/null 2>&1; then
        out=$(cppcheck --enable=warning,style,performance,portability --std=c99 --inline-suppr -q \
            -DVRS_IMPLEMENTATION $events videoroom_signal.c 2>&1)
        if [ -z "$out" ]; then echo "analyze: cppcheck ($label): clean"
        else echo "$out"; echo "analyze: cppcheck ($label): FINDINGS"; failed=1; fi
    else
        echo "analyze: cppcheck: SKIPPED (not installed)"
    fi
    if command -v clang-tidy >/dev/null 2>&1; then
        # The kinds explained in the README: return values of snprintf for log lines and
        # addresses (truncation is intended), memcpy of escape sequences that are not strings,
        # char arithmetic in base64 and base64url, switch tables that map to the same value,
        # and an index product that cannot overflow (i < 16).
        explained='cert-err33-c|bugprone-not-null-terminated-result|bugprone-narrowing-conversions|bugprone-branch-clone|bugprone-implicit-widening-of-multiplication-result'
        out=$(clang-tidy videoroom_signal.c -header-filter='.*' -quiet \
            -checks='-*,clang-analyzer-*,cert-*,bugprone-*,-bugprone-easily-swappable-parameters,-bugprone-reserved-identifier,-cert-dcl37-c,-cert-dcl51-cpp' \
            -- -std=c99 $events 2>/dev/null | grep 'warning:' || true)
        unexplained=$(echo "$out" | grep -v -E "$explained" | grep 'warning:' || true)
        echo "analyze: clang-tidy ($label): $(echo "$out" | grep -c 'warning:' || true) explained findings"
        if [ -n "$unexplained" ]; then echo "$unexplained"; echo "analyze: clang-tidy ($label): NEW FINDINGS"; failed=1; fi
    else
        echo "analyze: clang-tidy: SKIPPED (not installed)"
    fi
done
exit $failed
