#!/usr/bin/env python3
"""The demo server against what one client, one file or one option must not be able to do.

    /usr/bin/python3 tests/demo_hardening_test.py build/demo_server_sanitized

- Out-of-range numeric options (--idle-timeout 2147484 would overflow int when turned into
  milliseconds) are refused with a message and exit status 2, before anything multiplies them.
- A FIFO under the web root is answered 404 at once; the server keeps serving.
- The relay's topic cache: a client caches room "secret"'s topic (a relay push), leaves, and
  creates and destroys 4,095 more rooms in the same room slot; a new room in that slot must
  push under its own topic, to its own peers (Python's `websockets`, Debian's 10.x).

Prints one line per case and "N passed, N failed"; exits non-zero on a failure. Every wait is
bounded and the server is stopped however the run ends.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

try:
    import websockets
except ImportError:
    print("demo-hardening-test skipped: python3-websockets is not installed "
          "(apt-get install python3-websockets)")
    sys.exit(0)

HOST = "127.0.0.1"
WAIT = 10.0          # seconds for any one answer
CYCLES = 4095        # rooms created and destroyed after "secret": 4,096 in its slot in all

results = []


def report(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok or not detail else ": " + detail))


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_status(port, path, timeout):
    """The status of GET path, or None when no answer came within timeout seconds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, HOST, port)).encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            parts = data.split(b" ", 2)
            return int(parts[1]) if len(parts) > 1 else None
    except (OSError, ValueError):
        return None


def check_options(server):
    cases = [
        ["--idle-timeout", "2147484"],
        ["--handshake-timeout", "2147484"],
        ["--idle-timeout", "86401"],
        ["--idle-timeout", "0"],
        ["--port", "70000"],
        ["--max-connections", "1048576"],
        ["--send-queue", "255"],
        ["--max-message", "99999999999999999999"],
    ]
    for args in cases:
        name = "option %s refused" % " ".join(args)
        try:
            run = subprocess.run([server] + args, capture_output=True, text=True, timeout=WAIT)
        except subprocess.TimeoutExpired:
            report(name, False, "the server started (or hung) instead of refusing")
            continue
        ok = run.returncode == 2 and args[0] in run.stderr and "runtime error" not in run.stderr
        report(name, ok, "exit %d, stderr: %s" % (run.returncode, run.stderr.strip()[:300]))


async def recv_frame(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def join(ws, topic, jr):
    await ws.send(json.dumps([jr, jr, topic, "phx_join", {}]))
    reply = await recv_frame(ws)
    if reply != [jr, jr, topic, "phx_reply", {"status": "ok", "response": {}}]:
        raise AssertionError("join %s: %r" % (topic, reply))


async def relay_push(ws, jr, topic, event):
    await ws.send(json.dumps([jr, "m" + jr, topic, "mediaEvent", {"data": json.dumps(event)}]))


async def expect_push(ws, topic, event_type):
    """The next frame is a relay push of event_type; returns (its topic, the event)."""
    frame = await recv_frame(ws)
    if len(frame) != 5 or frame[1] is not None or frame[3] != "mediaEvent":
        raise AssertionError("not a relay push: %r" % (frame,))
    event = json.loads(frame[4]["data"])
    if event.get("type") != event_type:
        raise AssertionError("expected %s, got %r" % (event_type, event))
    return frame[2], event


async def topic_cache(port):
    url = "ws://%s:%d/socket/websocket?vsn=2.0.0" % (HOST, port)
    async with websockets.connect(url, open_timeout=WAIT, max_size=2 ** 20) as a, \
            websockets.connect(url, open_timeout=WAIT, max_size=2 ** 20) as b:
        await join(a, "room:secret", "s")
        await relay_push(a, "s", "room:secret", {"type": "join", "data": {"metadata": {}}})
        topic, _ = await expect_push(a, "room:secret", "peerAccepted")
        if topic != "room:secret":
            raise AssertionError("secret's own push came on %s" % topic)
        await a.send(json.dumps(["s", "ls", "room:secret", "phx_leave", {}]))
        for _ in range(2):  # the reply and phx_close
            await recv_frame(a)
        # 4,095 rooms through the same slot, pipelined 256 cycles at a time
        cycle = 1
        while cycle <= CYCLES:
            batch = range(cycle, min(cycle + 256, CYCLES + 1))
            for n in batch:
                jr = str(n)
                await a.send(json.dumps([jr, jr, "room:cycle", "phx_join", {}]))
                await a.send(json.dumps([jr, "l" + jr, "room:cycle", "phx_leave", {}]))
            for n in batch:
                frames = [await recv_frame(a) for _ in range(3)]
                events = [f[3] for f in frames]
                if events != ["phx_reply", "phx_reply", "phx_close"] or frames[0][4]["status"] != "ok":
                    raise AssertionError("cycle %d: %r" % (n, frames))
            cycle += len(batch)
        await join(a, "room:fresh", "f")
        await join(b, "room:fresh", "g")
        await relay_push(a, "f", "room:fresh", {"type": "join", "data": {"metadata": {"n": "a"}}})
        topic_a, _ = await expect_push(a, "room:fresh", "peerAccepted")
        await relay_push(b, "g", "room:fresh", {"type": "join", "data": {"metadata": {"n": "b"}}})
        topic_b, accepted = await expect_push(b, "room:fresh", "peerAccepted")
        topic_joined, _ = await expect_push(a, "room:fresh", "peerJoined")
        topics = {topic_a, topic_b, topic_joined}
        if topics != {"room:fresh"}:
            raise AssertionError("the new room's pushes came on %s" % sorted(topics))
        if [p["metadata"] for p in accepted["data"]["peersInRoom"]] != [{"n": "a"}]:
            raise AssertionError("peerAccepted lists %r" % accepted["data"]["peersInRoom"])


def main():
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: demo_hardening_test.py path/to/demo_server")
        return 1
    server = sys.argv[1]
    check_options(server)
    with tempfile.TemporaryDirectory(prefix="vrs-hardening.") as tmp:
        web = os.path.join(tmp, "web")
        os.mkdir(web)
        with open(os.path.join(web, "index.html"), "w") as f:
            f.write("<!doctype html><title>index</title>INDEX-PAGE\n")
        os.mkfifo(os.path.join(web, "pipe.txt"))
        port = free_port()
        log = open(os.path.join(tmp, "server.log"), "w+")
        proc = subprocess.Popen([server, "--host", HOST, "--port", str(port), "--web-root", web],
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + WAIT
            while http_status(port, "/", 1.0) != 200:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log.seek(0)
                    print("demo-hardening-test: the demo server did not start\n" + log.read())
                    return 1
                time.sleep(0.1)
            # the cache first: a server blocked by the FIFO would hide its result
            try:
                asyncio.run(asyncio.wait_for(topic_cache(port), 120))
                report("a new room in a slot cycled %d times pushes under its own topic" % (CYCLES + 1), True)
            except Exception as error:  # noqa: BLE001 - any failure is the case's failure
                report("a new room in a slot cycled %d times pushes under its own topic" % (CYCLES + 1), False,
                       "%s: %s" % (type(error).__name__, error))
            started = time.monotonic()
            status = http_status(port, "/pipe.txt", 3.0)
            report("GET /pipe.txt (a FIFO) answered 404 at once", status == 404 and time.monotonic() - started < 3.0,
                   "status %s" % status)
            report("the page is still served after the FIFO", http_status(port, "/", 3.0) == 200)
            report("the demo server is still running", proc.poll() is None)
        finally:
            proc.terminate()
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            errors = [line for line in log.read().splitlines() if "runtime error" in line or "Sanitizer" in line]
            report("no sanitizer report from the server", not errors, "; ".join(errors[:3]))
            log.close()
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
