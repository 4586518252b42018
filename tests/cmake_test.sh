#!/bin/sh
# The ways into the project a C or C++ build takes, each tried on a fresh copy of the repository
# (the files git tracks, or would: build/cmake/videoroom_signal):
#   - CMakeLists.txt as the top project: builds the examples and the tests, ctest runs the tests;
#   - tests/cmake_consumer (a program that starts a server on an ephemeral port and checks that
#     it answers 404 and 101) built through add_subdirectory (from a C project and from a
#     C++-only one), FetchContent (from a local archive: no network), and find_package after
#     `cmake --install` to a temporary prefix;
#   - the same program built with pkg-config after `make install PREFIX=...`, and
#     `make install DESTDIR=...` staging the files under DESTDIR with the .pc naming PREFIX.
set -eu
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
    echo "cmake-test: SKIPPED: cmake not found (Debian: cmake)"
    exit 0
fi
mkdir -p build
rm -rf build/cmake
mkdir build/cmake
work=$(cd build/cmake && pwd)
copy=$work/videoroom_signal
CC=${CC:-cc}
say() { echo "cmake-test: $*"; }
fail() { echo "cmake-test: FAILED: $*"; exit 1; }
quietly() { # command...: its output only when it fails
    "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log"; fail "$*"; }
}
run_consumer() { # binary, way in
    output=$(timeout 30 "$1") || fail "$2: the consumer did not get its answers: $output"
    say "$2: $output"
}

mkdir "$copy"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard | while IFS= read -r file; do
        if [ -f "$file" ]; then echo "$file"; fi
    done > "$work/files"
    tar -cf - -T "$work/files" | tar -xf - -C "$copy"
else
    tar -cf - --exclude=./build --exclude=node_modules . | tar -xf - -C "$copy"
fi
say "a fresh copy of the repository: $(find "$copy" -type f | wc -l) files"
# The corpus tests look for ../shared/data/JSONTestSuite beside the copy, as beside the checkout.
if [ -d ../shared ]; then ln -s "$(cd ../shared && pwd)" "$work/shared"; fi
tar -czf "$work/videoroom_signal.tar.gz" -C "$work" videoroom_signal

# The top project: examples, tests, ctest; then an install for find_package.
quietly cmake -S "$copy" -B "$work/top"
quietly cmake --build "$work/top"
for built in echo_server demo_server sfu_server ticker test_videoroom_signal test_videoroom_signal_epoll test_sfu_logic; do
    [ -x "$work/top/$built" ] || fail "top project: $built was not built"
done
(cd "$work/top" && ctest --output-on-failure > "$work/ctest.log" 2>&1) || { cat "$work/ctest.log"; fail "ctest"; }
say "top project: examples and tests built; ctest: $(grep 'tests passed' "$work/ctest.log")"
quietly cmake --install "$work/top" --prefix "$work/cmake-prefix"
for installed in include/videoroom_signal.h share/cmake/videoroom_signal/videoroom_signalConfig.cmake \
                 share/cmake/videoroom_signal/videoroom_signalConfigVersion.cmake share/pkgconfig/videoroom_signal.pc; do
    [ -f "$work/cmake-prefix/$installed" ] || fail "cmake --install: no $installed"
done
grep -qx "prefix=$work/cmake-prefix" "$work/cmake-prefix/share/pkgconfig/videoroom_signal.pc" ||
    fail "cmake --install --prefix: videoroom_signal.pc does not name the prefix"
say "cmake --install --prefix: the header, the package files and videoroom_signal.pc naming the prefix"

consumer() { # name of the build, way in, cmake options...
    name=$1 way=$2
    shift 2
    quietly cmake -S "$copy/tests/cmake_consumer" -B "$work/$name" -DVRS_WAY_IN="$way" "$@"
    quietly cmake --build "$work/$name"
    run_consumer "$work/$name/consumer" "$name"
}
consumer add_subdirectory add_subdirectory -DVRS_SOURCE_DIR="$copy"
[ ! -e "$work/add_subdirectory/videoroom_signal/demo_server" ] || fail "add_subdirectory built the examples"
# A C++-only project (no C compiler enabled), as most games are: the header compiled as C++.
consumer add_subdirectory-c++ add_subdirectory -DVRS_SOURCE_DIR="$copy" -DVRS_LANGUAGE=CXX
consumer FetchContent FetchContent -DVRS_ARCHIVE="$work/videoroom_signal.tar.gz"
consumer find_package find_package -DCMAKE_PREFIX_PATH="$work/cmake-prefix"

# make install, and pkg-config
quietly make -C "$copy" install PREFIX="$work/make-prefix"
[ -f "$work/make-prefix/include/videoroom_signal.h" ] || fail "make install: no include/videoroom_signal.h"
pkg_config=${PKG_CONFIG:-pkg-config}
if command -v "$pkg_config" >/dev/null 2>&1; then
    export PKG_CONFIG_PATH="$work/make-prefix/share/pkgconfig"
    version=$("$pkg_config" --modversion videoroom_signal)
    cmake_version=$(sed -n 's/^project(videoroom_signal VERSION \([0-9.]*\).*/\1/p' "$copy/CMakeLists.txt")
    [ "$version" = "$cmake_version" ] || fail "pkg-config gives version $version, CMakeLists.txt $cmake_version"
    mkdir "$work/pkg-config"
    # shellcheck disable=SC2046 # the flags are words
    quietly "$CC" -std=c99 -Wall -Wextra -Wpedantic -Werror "$copy/tests/cmake_consumer/main.c" \
        $("$pkg_config" --cflags --libs videoroom_signal) -o "$work/pkg-config/consumer"
    run_consumer "$work/pkg-config/consumer" "make install PREFIX=..., pkg-config $version"
else
    say "SKIPPED the pkg-config build: $pkg_config not found (Debian: pkgconf)"
fi
quietly make -C "$copy" install DESTDIR="$work/stage" PREFIX=/opt/videoroom
[ -f "$work/stage/opt/videoroom/include/videoroom_signal.h" ] || fail "make install DESTDIR: no header under DESTDIR"
grep -qx "prefix=/opt/videoroom" "$work/stage/opt/videoroom/share/pkgconfig/videoroom_signal.pc" ||
    fail "make install DESTDIR: videoroom_signal.pc does not name PREFIX"
quietly make -C "$copy" uninstall DESTDIR="$work/stage" PREFIX=/opt/videoroom
[ -z "$(find "$work/stage" -type f)" ] || fail "make uninstall left files"
say "make install DESTDIR=... PREFIX=/opt/videoroom: staged, the .pc naming the prefix; make uninstall removes both"
