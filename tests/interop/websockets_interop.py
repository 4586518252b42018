#!/usr/bin/env python3
"""Interop test: the echo server against an independent client, Python's `websockets`.

    /usr/bin/python3 tests/interop/websockets_interop.py build/echo_server

Starts the echo server on a free loopback port, runs each case on its own connection, prints
one line per case and a closing "N passed, N failed" line, and exits non-zero when a case
failed. Uses Debian's python3-websockets (10.x, the asyncio API); where it is not installed the
test says so and is skipped (exit 0). Every wait is bounded, and the server is stopped however
the run ends.
"""
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

try:
    import websockets
except ImportError:
    print("interop test skipped: python3-websockets is not installed "
          "(apt-get install python3-websockets)")
    sys.exit(0)

HOST = "127.0.0.1"
START_ATTEMPTS = 5
START_TIMEOUT = 10.0   # seconds for the server to accept connections
CASE_TIMEOUT = 30.0    # seconds for one case, connection and close included
STEP_TIMEOUT = 10.0    # seconds for one receive, pong or close inside a case


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_server(binary, log):
    """Starts the server on a free port; retries with another port if it does not come up."""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        process = subprocess.Popen([binary, "--port", str(port)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection((HOST, port), timeout=1.0):
                    return process, port
            except OSError:
                time.sleep(0.05)
        stop(process)  # exited (the port was taken, say) or never accepted: try another port
    return None, None


def connect(port):
    return websockets.connect(f"ws://{HOST}:{port}/", max_size=None, open_timeout=STEP_TIMEOUT,
                              close_timeout=STEP_TIMEOUT, ping_interval=None)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)


def expect_equal(got, want, what):
    if type(got) is not type(want):
        raise AssertionError(f"{what}: got {type(got).__name__}, expected {type(want).__name__}")
    if got != want:
        raise AssertionError(f"{what}: got {len(got)} {type(got).__name__} items that differ "
                             f"from the {len(want)} sent")


async def echo_once(port, message, what):
    async with connect(port) as ws:
        await ws.send(message)
        expect_equal(await recv(ws), message, what)


def utf8_text(size):
    """Text of exactly `size` UTF-8 bytes, mixing 1- to 4-byte characters."""
    pattern = "Hello κόσμε € 𐍈 0123456789 "
    text = pattern * (size // len(pattern.encode()))
    return text + "x" * (size - len(text.encode()))


async def case_text_echo(port):
    await echo_once(port, "hello, κόσμε", "text echo")


async def case_binary_echo(port):
    await echo_once(port, bytes(range(256)), "binary echo")


async def case_text_1mib(port):
    text = utf8_text(1 << 20)
    assert len(text.encode()) == 1 << 20
    await echo_once(port, text, "1 MiB text echo")


async def case_binary_1mib(port):
    await echo_once(port, os.urandom(1 << 20), "1 MiB binary echo")


async def fragments(parts):
    for part in parts:
        yield part
        await asyncio.sleep(0)


async def case_fragmented_text_async(port):
    parts = ["frag", "", "ment", "ed κό", "σμε " * 1000]
    async with connect(port) as ws:
        await ws.send(fragments(parts))
        expect_equal(await recv(ws), "".join(parts), "fragmented text (async iterator)")


async def case_fragmented_text_list(port):
    parts = ["one ", "two ", "€" * 5000, " three"]
    async with connect(port) as ws:
        await ws.send(parts)
        expect_equal(await recv(ws), "".join(parts), "fragmented text (list)")


async def case_fragmented_binary_async(port):
    parts = [b"\x00\x01", b"", b"\xff" * 70000, bytes(range(256))]
    async with connect(port) as ws:
        await ws.send(fragments(parts))
        expect_equal(await recv(ws), b"".join(parts), "fragmented binary (async iterator)")


async def case_fragmented_binary_list(port):
    parts = [b"\x00\x01", b"\x02", b"\xc0\x80" * 1000]
    async with connect(port) as ws:
        await ws.send(parts)
        expect_equal(await recv(ws), b"".join(parts), "fragmented binary (list)")


async def case_empty_fragments(port):
    # websockets ends a fragmented message with an empty final continuation frame, so these
    # are messages made of empty frames only (the server once delivered them as opcode 0)
    async with connect(port) as ws:
        await ws.send(["", "after an empty first fragment"])
        expect_equal(await recv(ws), "after an empty first fragment", "text")
        await ws.send([""])
        expect_equal(await recv(ws), "", "empty text")
        await ws.send(fragments([b"", b""]))
        expect_equal(await recv(ws), b"", "empty binary")


async def case_ping_pong(port):
    async with connect(port) as ws:
        pong = await ws.ping(b"interop ping \x00\xff")
        await asyncio.wait_for(pong, STEP_TIMEOUT)  # resolved by a pong with the same payload
        pong = await ws.ping(b"")
        await asyncio.wait_for(pong, STEP_TIMEOUT)
        await ws.send("still open")
        expect_equal(await recv(ws), "still open", "echo after the pings")


async def close_with(port, code, reason):
    async with connect(port) as ws:
        await ws.send("before close")
        expect_equal(await recv(ws), "before close", "echo before the close")
        await asyncio.wait_for(ws.close(code, reason), STEP_TIMEOUT)
        if ws.close_code != code:
            raise AssertionError(f"close_code {ws.close_code}, expected {code}")


async def case_close_1000(port):
    await close_with(port, 1000, "bye")


async def case_close_4000(port):
    await close_with(port, 4000, "custom reason κόσμε")


CASES = [
    ("text echo", case_text_echo),
    ("binary echo", case_binary_echo),
    ("1 MiB text echo", case_text_1mib),
    ("1 MiB binary echo", case_binary_1mib),
    ("fragmented text from an async iterator", case_fragmented_text_async),
    ("fragmented text from a list", case_fragmented_text_list),
    ("fragmented binary from an async iterator", case_fragmented_binary_async),
    ("fragmented binary from a list", case_fragmented_binary_list),
    ("fragmented messages of empty fragments", case_empty_fragments),
    ("ping with payload answered by pong", case_ping_pong),
    ("close 1000 with a reason", case_close_1000),
    ("close 4000 echoed", case_close_4000),
]


async def run_cases(port, process):
    passed = failed = 0
    for name, case in CASES:
        try:
            await asyncio.wait_for(case(port), CASE_TIMEOUT)
        except asyncio.TimeoutError:
            print(f"FAIL {name}: timed out")
            failed += 1
        except Exception as error:  # report every kind of failure as this case's
            print(f"FAIL {name}: {type(error).__name__}: {error}")
            failed += 1
        else:
            print(f"PASS {name}")
            passed += 1
        sys.stdout.flush()
    name = "the server is still running"
    if process.poll() is None:
        print(f"PASS {name}")
        passed += 1
    else:
        print(f"FAIL {name}: it exited with status {process.returncode}")
        failed += 1
    return passed, failed


def main():
    if len(sys.argv) != 2:
        print("usage: websockets_interop.py path/to/echo_server", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    if not os.access(binary, os.X_OK):
        print(f"interop test: {binary} is not an executable (build it with make {binary})")
        print("0 passed, 1 failed")
        return 1
    print(f"interop test: websockets {websockets.__version__} against {binary}")
    with tempfile.TemporaryFile(mode="w+") as log:
        process, port = start_server(binary, log)
        try:
            if process is None:
                print(f"FAIL start the server: it did not accept connections after {START_ATTEMPTS} attempts")
                passed, failed = 0, 1
            else:
                passed, failed = asyncio.run(run_cases(port, process))
        finally:
            if process is not None:
                stop(process)
        if failed:
            log.seek(0)
            output = log.read().strip()
            if output:
                print("server stderr:\n" + output[-4000:])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
