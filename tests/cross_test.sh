#!/bin/sh
# The C test suite on another architecture under qemu-user: tests/cross_test.sh NAME COMPILER QEMU
# (armhf: arm-linux-gnueabihf-gcc qemu-arm, 32-bit ARM; s390x: s390x-linux-gnu-gcc qemu-s390x,
# 64-bit big-endian). It builds the test binary twice, waiting with poll() and with epoll, under
# UndefinedBehaviorSanitizer, and runs every test of both, the JSONTestSuite corpus included.
# AddressSanitizer cannot run under qemu-user: on armhf qemu puts the stack at the top of the
# 4 GiB address space, outside what ASan's 32-bit layout shadows (ASan's own CHECK fails, then
# it hangs), and s390x's shadow needs more address space than an x86-64 host can give. The
# native build (make unit-test) is the one under ASan.
# Skips, saying so, when the cross compiler or qemu is missing.
set -eu
cd "$(dirname "$0")/.."
name=$1 compiler=$2 qemu=$3

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
echo "cross-test $name: the whole C test suite under UBSan, built for poll() and for epoll, run by $qemu"
${MAKE:-make} --no-print-directory "$out/test_videoroom_signal" "$out/test_videoroom_signal_epoll"

failed=0
for binary in test_videoroom_signal test_videoroom_signal_epoll; do
    started=$(date +%s)
    if "$qemu" -L "$sysroot" "$out/$binary" > "$out/$binary.log" 2>&1; then result=passed; else result=FAILED; failed=1; fi
    # the suite's closing line: N passed, N failed, N skipped
    echo "cross-test $name: $binary: $result: $(tail -n 1 "$out/$binary.log") ($(( $(date +%s) - started )) s)"
    if [ $result = FAILED ]; then grep -E 'FAILED|runtime error|:[0-9]+: ' "$out/$binary.log" | head -n 40; fi
done
exit $failed
