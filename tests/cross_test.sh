#!/bin/sh
# The project on another architecture under qemu-user: tests/cross_test.sh NAME COMPILER QEMU
# (armhf: arm-linux-gnueabihf-gcc qemu-arm, 32-bit ARM; s390x: s390x-linux-gnu-gcc qemu-s390x,
# 64-bit big-endian). Everything is built for the target under UndefinedBehaviorSanitizer:
#   - the C test suite, twice (waiting with poll() and with epoll), every test, the
#     JSONTestSuite corpus included, and the SFU example's logic tests (make sfu-test);
#   - the echo server against Python's websockets (tests/interop), and the demo server and the
#     hosts of tests/e2e against the official phoenix client (tests/e2e), the demo server against
#     path traversal (tests/static_files_test.sh), tests/demo_hardening_test.py and, three of
#     them behind HAProxy, tests/cluster; the clients running natively.
# AddressSanitizer cannot run under qemu-user: on armhf qemu puts the stack at the top of the
# 4 GiB address space, outside what ASan's 32-bit layout shadows (ASan's own CHECK fails, then
# it hangs), and s390x's shadow needs more address space than an x86-64 host can give. The
# native build (make unit-test) is the one under ASan.
# Skips, saying so, when the cross compiler or qemu is missing.
set -eu
cd "$(dirname "$0")/.."
name=$1 compiler=$2 qemu=$3
PYTHON=${PYTHON:-/usr/bin/python3}

if ! command -v "$compiler" >/dev/null 2>&1; then
    echo "cross-test $name: SKIPPED: $compiler not found (Debian: gcc-$(echo "$compiler" | sed 's/-gcc$//'))"
    exit 0
fi
if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "cross-test $name: SKIPPED: $qemu not found (Debian: qemu-user)"
    exit 0
fi
# Debian's cross toolchains keep the target's libraries under /usr/<triplet>: qemu -L finds
# the dynamic loader and libc there.
sysroot=/usr/$("$compiler" -dumpmachine)
out=build/cross/$name
began=$(date +%s)
echo "cross-test $name: under $qemu, built with UBSan: the C test suite (poll and epoll) and the SFU logic's, the echo server against Python's websockets, the demo server and the e2e hosts against the phoenix client, the demo server against path traversal, the hardening test and behind HAProxy"
servers="echo_server demo_server peer_close_host readme_room_logic ticker"
# shellcheck disable=SC2086 # the names are words
${MAKE:-make} --no-print-directory "$out/test_videoroom_signal" "$out/test_videoroom_signal_epoll" "$out/test_sfu_logic" \
    $(for server in $servers; do echo "$out/$server"; done)

# The servers are started by the clients' test scripts: each through a script that runs it
# under qemu (exec, so that the script's process is the server's and signals reach it).
mkdir -p "$out/qemu"
for server in $servers; do
    printf '#!/bin/sh\nexec %s -L %s %s "$@"\n' "$qemu" "$sysroot" "$(pwd)/$out/$server" > "$out/qemu/$server"
    chmod +x "$out/qemu/$server"
done

failed=0
step() { # label, log file, command...: runs it, says how it went and how long it took
    label=$1 log=$2
    shift 2
    started=$(date +%s)
    if "$@" > "$log" 2>&1; then result=passed; else result=FAILED; failed=1; fi
    # the closing line of the C tests and of the interop test; node's pass, fail, skipped counts
    summary=$(grep -E '^# (pass|fail|skipped) ' "$log" | tr '\n' ' ')
    echo "cross-test $name: $label: $result: ${summary:-$(tail -n 1 "$log") }($(( $(date +%s) - started )) s)"
    if [ $result = FAILED ]; then grep -E 'FAIL|not ok|runtime error|:[0-9]+: |Error' "$log" | head -n 40; fi
}
for binary in test_videoroom_signal test_videoroom_signal_epoll test_sfu_logic; do
    step "$binary" "$out/$binary.log" "$qemu" -L "$sysroot" "$out/$binary"
done
step "interop (echo server, Python websockets)" "$out/interop.log" \
    "$PYTHON" tests/interop/websockets_interop.py "$out/qemu/echo_server"
step "static files (demo server, curl)" "$out/static_files.log" \
    env PYTHON="$PYTHON" sh tests/static_files_test.sh "$out/qemu/demo_server"
step "demo server hardening (options, FIFO, topic cache)" "$out/demo_hardening.log" \
    "$PYTHON" tests/demo_hardening_test.py "$out/qemu/demo_server"
if command -v node >/dev/null 2>&1; then
    if [ ! -d tests/e2e/node_modules ]; then (cd tests/e2e && npm ci --no-audit --no-fund); fi
    step "e2e (demo server and hosts, phoenix client)" "$out/e2e.log" \
        sh -c "cd tests/e2e && DEMO_SERVER=../../$out/qemu/demo_server PEER_CLOSE_HOST=../../$out/qemu/peer_close_host \
               README_HOST=../../$out/qemu/readme_room_logic TICKER=../../$out/qemu/ticker node --test --test-concurrency=1"
    if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
        step "cluster (demo servers behind HAProxy, phoenix client)" "$out/cluster.log" \
            sh -c "cd tests/cluster && PATH=\"\$PATH:/usr/sbin\" DEMO_SERVER=../../$out/qemu/demo_server node --test --test-concurrency=1"
    else
        echo "cross-test $name: cluster SKIPPED: HAProxy is not installed (Debian: haproxy)"
    fi
else
    echo "cross-test $name: e2e and cluster SKIPPED: node not found"
fi
echo "cross-test $name: $(( $(date +%s) - began )) s in all"
exit $failed
