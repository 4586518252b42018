#!/bin/sh
# Compiles the header as C99 and as C++ with gcc and clang, warning-free (-Werror): the
# implementation through videoroom_signal.c, the declarations alone, and (as C) the example at
# the top of the header's documentation and the README's room-logic example, extracted as
# they are written there.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build/compile_check
out=build/compile_check

# The example follows the line naming it: the lines indented by seven spaces up to the first
# line of prose.
awk '/\(This exact code is compiled by the project.s tests.\)/ { found = 1; next }
     found && /^       / { print substr($0, 8); next }
     found && /^ *$/ { print ""; next }
     found { exit }' videoroom_signal.h |
    sed 's|#include "videoroom_signal.h"|#include "../../videoroom_signal.h"|' > $out/doc_example.c
grep -q 'vrs_step' $out/doc_example.c || { echo "compile_check: example not found in the header"; exit 1; }

# The README's room-logic example: the C block after its marker.
awk '/<!-- room-logic-example -->/ { found = 1; next }
     found && /^```c/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' README.md |
    sed 's|#include "videoroom_signal.h"|#include "../../videoroom_signal.h"|' > $out/readme_room_logic.c
grep -q 'vrs_room_broadcast_except' $out/readme_room_logic.c || { echo "compile_check: room-logic example not found in README.md"; exit 1; }

printf '#include "../../videoroom_signal.h"\nint vrs_declarations_only(void) { return (int)sizeof(vrs_desc); }\n' > $out/declarations.c

failed=0
for compiler in gcc clang g++ clang++; do
    command -v $compiler >/dev/null 2>&1 || { echo "compile_check: $compiler not found"; failed=1; continue; }
    case $compiler in
        *++) lang="-x c++ -std=c++11" ;;
        *)   lang="-std=c99" ;;
    esac
    sources="videoroom_signal.c $out/declarations.c"
    # The example is C: `vrs_desc desc = {0};` is C's idiom (C++ writes `= {}`).
    case $compiler in *++) ;; *) sources="$sources $out/doc_example.c $out/readme_room_logic.c" ;; esac
    for source in $sources; do
        if $compiler $lang -Wall -Wextra -Wpedantic -Werror -c "$source" -o $out/check.o; then
            echo "compile_check: $compiler $lang $source: ok"
        else
            echo "compile_check: $compiler $lang $source: FAILED"
            failed=1
        fi
    done
    # VRS_USE_EPOLL on Linux
    if [ "$(uname -s)" = Linux ]; then
        if $compiler $lang -Wall -Wextra -Wpedantic -Werror -DVRS_USE_EPOLL -c videoroom_signal.c -o $out/check.o; then
            echo "compile_check: $compiler $lang VRS_USE_EPOLL: ok"
        else
            echo "compile_check: $compiler $lang VRS_USE_EPOLL: FAILED"; failed=1
        fi
    fi
    # VRS_NO_SIMD: the portable byte scanning
    if $compiler $lang -Wall -Wextra -Wpedantic -Werror -DVRS_NO_SIMD -c videoroom_signal.c -o $out/check.o; then
        echo "compile_check: $compiler $lang VRS_NO_SIMD: ok"
    else
        echo "compile_check: $compiler $lang VRS_NO_SIMD: FAILED"; failed=1
    fi
    # VRS_STATIC: the whole API becomes static to one file
    if $compiler $lang -Wall -Wextra -Wpedantic -Werror -Wno-unused-function -DVRS_STATIC -c videoroom_signal.c -o $out/check.o; then
        echo "compile_check: $compiler $lang VRS_STATIC: ok"
    else
        echo "compile_check: $compiler $lang VRS_STATIC: FAILED"; failed=1
    fi
done
exit $failed
