#!/bin/sh
# Compiles the header as C99 and as C++11 with gcc and clang, warning-free (-Werror): the
# implementation through videoroom_signal.c, the declarations alone, and every example of the
# documentation (the one at the top of the header and every C block of the README, extracted
# as they are written there by tests/extract_examples.sh).
set -eu
cd "$(dirname "$0")/.."
mkdir -p build/compile_check
out=build/compile_check

sh tests/extract_examples.sh $out/examples
grep -q 'vrs_step' $out/examples/doc_example.c || { echo "compile_check: example not found in the header"; exit 1; }
grep -q 'vrs_peer_close' $out/examples/readme_room-logic-example.c ||
    { echo "compile_check: room-logic example not found in README.md"; exit 1; }

printf '#include "../../videoroom_signal.h"\nint vrs_declarations_only(void) { return (int)sizeof(vrs_desc); }\n' > $out/declarations.c

failed=0
for compiler in gcc clang g++ clang++; do
    command -v $compiler >/dev/null 2>&1 || { echo "compile_check: $compiler not found"; failed=1; continue; }
    case $compiler in
        *++) lang="-x c++ -std=c++11" ;;
        *)   lang="-std=c99" ;;
    esac
    for source in videoroom_signal.c $out/declarations.c $out/examples/*.c; do
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

# Windows (Winsock 2), through MinGW-w64's cross compilers where they are installed: the
# implementation and the declarations alone, as C99 and as C++, with SSE2 and without.
for compiler in x86_64-w64-mingw32-gcc x86_64-w64-mingw32-g++; do
    if ! command -v $compiler >/dev/null 2>&1; then
        echo "compile_check: $compiler not found: the Windows build is not checked"
        continue
    fi
    case $compiler in
        *++) lang="-x c++ -std=c++11" ;;
        *)   lang="-std=c99" ;;
    esac
    for variant in "videoroom_signal.c" "-DVRS_NO_SIMD videoroom_signal.c" "$out/declarations.c"; do
        if $compiler $lang -Wall -Wextra -Wpedantic -Werror -c $variant -o $out/check.o; then
            echo "compile_check: $compiler $lang $variant: ok"
        else
            echo "compile_check: $compiler $lang $variant: FAILED"; failed=1
        fi
    done
done
exit $failed
