#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: python3 fuzz/make_corpus.py OUT_DIR
makes OUT_DIR/<target>/seed-<hash> for each target (existing files are left alone, so the
corpus the fuzzers grew stays). Every seed is written by hand here: valid requests, frames,
Phoenix messages, relay events and server scripts, and some broken ones beside them. The
input formats are described at the top of each fuzz/<target>.c."""
import hashlib
import json
import os
import struct
import sys

SEEDS = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    SEEDS.setdefault(target, []).append(bytes(data))


# ---- utf8: byte 0 = cut count (mod 8), 2 bytes a cut, then the text ----

UTF8_TEXTS = [
    b"", b"plain ascii text that is longer than eight bytes",
    "h\u00e9llo w\u00f6rld".encode(), "\u65e5\u672c\u8a9e".encode(), "\U0001F600 \U0010FFFF".encode(),
    "\u0080\u07ff\u0800\uffff\U00010000".encode(), "\ud7ff\ue000".encode("utf-8", "surrogatepass"),
    b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
    b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe",
    b"\x80", b"abc\xe2\x82", b"abc\xf0\x9f\x98", b"12345678\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
]
for text in UTF8_TEXTS:
    seed("utf8", b"\x00" + text)
    if len(text) > 2:
        seed("utf8", b"\x02" + struct.pack("<HH", 1, len(text) - 1) + text)
        seed("utf8", b"\x03" + struct.pack("<HHH", 1, 2, 3) + text)

# ---- json: the text itself ----

JSON_TEXTS = [
    '{}', '[]', '0', '-0.5e+10', '"str"', 'true', 'false', 'null', ' \t\r\n[1, 2 ,3]\n',
    '{"a":1,"b":[true,false,null],"c":{"d":"e"},"a":2}',
    '["\\u00e9\\ud83d\\ude00\\ud800\\udc00x\\udc00\\ud800", "\\"\\\\\\/\\b\\f\\n\\r\\t"]',
    '{"k\\u0000ey":"v\\u0000al","":""}', '["\u65e5\u672c", "\u2028\u2029"]',
    '[1.0,2e5,-3E-2,0,123456789012345678901234567890]', '[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]',
    '[' * 70 + ']' * 70, '{"a":' * 65 + '1' + '}' * 65,
    '[1,]', '{"a"}', '{"a":}', '01', '1.', '.5', '"\\x"', '"\\u12"', '"a\x01"', '[1 2]', 'nul', 'tru',
    '{"a":1}}', '[]]', '[', '"', '-', '1e', '{"a" 1}', '{,}', '[,1]',
    '{"type":"join","data":{"metadata":{"name":"alice","tags":["x","y"]}}}',
]
for text in JSON_TEXTS:
    seed("json", text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
for text in [b'"\xed\xa0\x80"', b'["\xc3("]', b'{"\xf4\x90\x80\x80":1}', b'"\xe2\x80\xa8 ok"']:
    seed("json", text)
# what JSON.stringify writes, as relay events carry it in escaped mode: escapes, '/', pretty
# printing (whitespace that D writes as \n and \t), nesting
STRINGIFIED = {"type": "custom", "to": "0" * 36, "data": {"url": "https://a.b/c?d=e", "s": "q\"b\\s\n\t\u0001\u00e9",
                                                        "n": [1, -2.5e3, True, False, None, {}, []], "": {"x": [[]]}}}
seed("json", json.dumps(STRINGIFIED, separators=(",", ":")))
seed("json", json.dumps(STRINGIFIED, indent="\t"))
seed("json", json.dumps(STRINGIFIED, indent=2, ensure_ascii=False))
seed("json", '{"a":"\u2028","b":"\\u2029","c":"\\/"}')

# ---- http_request: request heads ----

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(target="/socket/websocket?vsn=2.0.0", method="GET", version="HTTP/1.1", headers=None, eol="\r\n"):
    if headers is None:
        headers = [("Host", "localhost:4000"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]
    lines = ["%s %s %s" % (method, target, version)] + ["%s: %s" % h for h in headers]
    return (eol.join(lines) + eol + eol).encode()


seed("http_request", request())
seed("http_request", request("/socket/websocket?token=abc%20def&vsn=1.0.0"))
seed("http_request", request("/chat", headers=[("Host", "x"), ("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade"),
                                              ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13"),
                                              ("Sec-WebSocket-Protocol", "phoenix, base64url.bearer.phx.dG9rZW4"),
                                              ("Origin", "http://localhost:4000")]))
seed("http_request", request(eol="\n"))
seed("http_request", request("/", headers=[("Host", "x")]))
seed("http_request", request("/", method="HEAD", version="HTTP/1.0", headers=[]))
seed("http_request", request("/socket/websocket?vsn=2.0.0", headers=[("Host", "x"), ("Upgrade", "websocket"),
                                                                     ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "short"),
                                                                     ("Sec-WebSocket-Version", "8")]))
seed("http_request", request("/a?x=1&y=%41%42&z=+&vsn=2.0.0&&=&vsn", headers=[("X-" + str(i), "v") for i in range(70)]))
seed("http_request", b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n")
seed("http_request", b"GET  / HTTP/1.1\r\n\r\n")
seed("http_request", b"G\x00T / HTTP/1.1\r\n\r\n")
seed("http_request", b"GET / HTTP/2.0\r\nHost:\t x \t\r\n\r\n")
seed("http_request", b"GET /%zz?vsn=%2 HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n")

# ---- phoenix_messages: one client message ----


def v2(join_ref, ref, topic, event, payload):
    return json.dumps([join_ref, ref, topic, event, payload], separators=(",", ":"))


def v1(topic, event, payload, ref, join_ref=None):
    m = {"topic": topic, "event": event, "payload": payload, "ref": ref}
    if join_ref is not None:
        m["join_ref"] = join_ref
    return json.dumps(m)


def binary_push(join_ref, ref, topic, event, payload):
    jr, rf, tp, ev = (s.encode() for s in (join_ref, ref, topic, event))
    return bytes([0, len(jr), len(rf), len(tp), len(ev)]) + jr + rf + tp + ev + payload


for m in [v2("3", "3", "room:lobby", "phx_join", {}), v2(None, "5", "phoenix", "heartbeat", {}),
          v2("3", "7", "room:lobby", "mediaEvent", {"data": "{\"type\":\"join\",\"data\":{\"metadata\":{}}}"}),
          v2(1, 2, "room:\u00e9\u2028", "phx_leave", {}), v2("3", "8", "room:x", "x" * 70, [1, 2]),
          v2("3", "9", "room:" + "y" * 300, "phx_join", {}) , '["1","2","room:a","ev",{},"extra",1]',
          '[null,null,"t","e",null]', '[{},"1","t","e",{}]', '["1","2",3,"e",{}]', '["1","2","t"]',
          v1("room:lobby", "phx_join", {}, "1"), v1("room:lobby", "mediaEvent", {"data": {"type": "leave"}}, "2", "1"),
          v1("phoenix", "heartbeat", {}, None), '{"topic":"t","event":"e","payload":{},"ref":"1","topic":"u"}',
          '{"topic":"t","event":"e","ref":"1"}', '["1","2","room:a","ev\\u0000il",{}]']:
    seed("phoenix_messages", m)
seed("phoenix_messages", binary_push("3", "4", "room:lobby", "mediaEvent", b"\x00\x01binary"))
seed("phoenix_messages", binary_push("", "", "", "", b""))
seed("phoenix_messages", binary_push("\u00e9", "r", "room:\u65e5", "e" * 64, b"{}"))
seed("phoenix_messages", b"\x00\x05\x01\x01\x01ab")
seed("phoenix_messages", b"\x01\x00\x00\x00\x00")

# ---- frames: config byte, cut points, then the client's byte stream ----


def frame(opcode, payload=b"", fin=True, mask=b"\x12\x34\x56\x78", rsv=0, length_form=None):
    if isinstance(payload, str):
        payload = payload.encode()
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if length_form == 16 or (length_form is None and 126 <= n <= 0xFFFF):
        header = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    elif length_form == 64 or (length_form is None and n > 0xFFFF):
        header = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    else:
        header = bytes([first, 0x80 | n])
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def frames_seed(config, stream, cuts=()):
    config = (config & ~0x0E) | (len(cuts) << 1)
    return bytes([config]) + b"".join(struct.pack("<H", c) for c in cuts) + stream


STREAMS = [
    frame(1, "hello"), frame(2, b"\x00\xff\x10"), frame(1, "") + frame(2, b""),
    frame(1, "frag", fin=False) + frame(0, "ment", fin=False) + frame(0, "ed", fin=True),
    frame(1, "\u00e9".encode()[:1], fin=False) + frame(9, "ping!") + frame(0, "\u00e9".encode()[1:]),
    frame(9, "hi") + frame(10, "unsolicited") + frame(8, struct.pack(">H", 1000) + b"bye"),
    frame(8, b""), frame(8, b"\x03"), frame(8, struct.pack(">H", 1005)), frame(8, struct.pack(">H", 4999) + b"\xff"),
    frame(1, "x" * 200), frame(1, "y" * 300, length_form=16), frame(2, b"z" * 5000),
    frame(1, "short", length_form=16), frame(1, "tiny", length_form=64), frame(2, b"w" * 70000)[:300],
    frame(1, b"\xed\xa0\x80"), frame(1, "ok", rsv=0x40), frame(3, "bad"), frame(9, "x" * 126, length_form=16),
    frame(9, "frag", fin=False), frame(0, "orphan"), frame(1, "a", fin=False) + frame(1, "b"),
    frame(1, "masked with zero", mask=b"\x00\x00\x00\x00"), b"\x81\x05hello",
    frame(1, "p" * 150, fin=False) + frame(0, "q" * 160),
    frame(2, b"r" * 4000, fin=False) + frame(0, b"s" * 4000, fin=False) + frame(0, b"t" * 4000),
]
for i, stream in enumerate(STREAMS):
    for config in (0x00, 0x01, 0x10, 0x31, 0x50, 0xF1):
        cuts = () if config & 0x20 == 0 else (1, len(stream) // 2, len(stream) - 1)
        seed("frames", frames_seed(config, stream, cuts))
seed("frames", frames_seed(0x30, frame(1, "one") + frame(1, "two") + frame(1, "three") + frame(8, b"\x03\xe8")))
seed("frames", frames_seed(0x70, frame(1, "one") + frame(1, "two") + frame(8, b"\x0f\xa0"), (3, 9, 14)))

# ---- relay: config byte, then 0xFF-separated records ----


def peer_id(k):
    return "a0000000-0000-4000-8000-%012x" % k


def event(e):
    return json.dumps(e, separators=(",", ":"))


def as_string(e):
    return json.dumps(event(e))


def relay_seed(config, records):
    return bytes([config]) + b"\xff".join(r.encode() if isinstance(r, str) else r for r in records)


JOIN = {"type": "join", "data": {"metadata": {"name": "alice"}}}
seed("relay", relay_seed(0x00, ["0" + as_string(JOIN), "1" + as_string({"type": "join", "data": {"metadata": None}})]))
seed("relay", relay_seed(0x04, [
    "0" + event({"type": "custom", "to": peer_id(1), "data": {"sdp": "v=0\r\n", "kind": "offer"}}),
    "1" + event({"type": "custom", "to": peer_id(0), "data": {"sdp": "answer"}}),
    "0" + event({"type": "custom", "data": {"candidate": "c"}}),
    "1" + as_string({"type": "updatePeerMetadata", "data": {"metadata": {"name": "bob", "muted": True}}}),
    "0" + as_string({"type": "leave"}), "0" + as_string(JOIN), "0" + event({"type": "join"}),
]))
seed("relay", relay_seed(0x0C, [
    "0" + event({"type": "custom", "to": peer_id(3), "data": 1}),   # a peer of room b, from room a
    "0" + event({"type": "custom", "to": peer_id(2), "data": 2}),
    "b" + event({"type": "custom", "to": peer_id(2), "data": 3}),
    "b" + event({"type": "custom", "data": "to b"}),
    "2" + event({"type": "custom", "data": "from b"}),
]))
seed("relay", relay_seed(0x06, [
    "0" + event({"type": "join", "data": {"metadata": {"blob": "m" * 200}}}),
    "1" + event({"type": "join", "data": {"metadata": {"blob": "n" * 300}}}),
    "2" + event({"type": "join", "data": {"metadata": [1, [2, [3, {"deep": "\u2028\u00e9\\\""}]]]}}),
    "3" + event({"type": "custom", "data": [1, 2, 3]}),
]))
seed("relay", relay_seed(0x04, ["0not json at all", "0\"not an event\"", "0[1,2]", "0{\"no\":\"type\"}",
                                 "0" + event({"type": 7}), "0" + event({"type": "unknown"}), "0\"{\\\"type\\\":\"",
                                 "0{\"type\":\"custom\",\"data\":[1,\n\t2]}", b"0\xc3(", "0null"]))
seed("relay", relay_seed(0x00, ["0" + event({"type": "leave"}), "0" + event({"type": "custom", "data": 1}),
                                 "0" + event({"type": "updatePeerMetadata", "data": {"metadata": 1}})]))
seed("relay", relay_seed(0x14, ["l1", "j1", "1" + as_string(JOIN), "h0", "s0", "u1", "v0payload", "v1x", "x1", "0" + as_string(JOIN)]))
seed("relay", relay_seed(0x2C, ["j0", "r1", "0" + event({"type": "custom", "data": "after"}), "w", "w", "0{}", "w", "w"]))
seed("relay", relay_seed(0x02, [
    "0" + event({"type": "join", "data": {"metadata": {"blob": "m" * 200}}}),
    "1" + event({"type": "join", "data": {"metadata": {"blob": "n" * 300}}}),
    "1" + event({"type": "join", "data": {"metadata": {"blob": "n" * 100}}}),
    "3" + event({"type": "join", "data": {"metadata": {"n": 3}}}),
    "1" + event({"type": "updatePeerMetadata", "data": {"metadata": {"blob": "o" * 240}}}),
    "2" + event({"type": "join", "data": {"metadata": {"n": 2}}}), "l0", "2" + event({"type": "leave"}),
]))
seed("relay", relay_seed(0x06, ["p1", "p2", "p3"] + ["0" + event({"type": "custom", "data": "z" * 7000})] * 12 +
                         ["p1", "0" + event({"type": "custom", "data": 1})]))
seed("relay", relay_seed(0x3F, ["l2", "j2", "2" + as_string(JOIN), "l0", "j0", "b" + as_string(JOIN), "3" + as_string(JOIN)]))
# flow control: client 2 stops reading while 0 and 1 burst; they are paused, then it takes
# nothing for the slow-consumer timeout and goes; then another stalls and reads again
seed("relay", relay_seed(0x06, ["p2"] + [k + event({"type": "custom", "data": "f" * 3000}) for k in "01" * 20] +
                         ["h0", "w"] + ["0" + event({"type": "custom", "data": n}) for n in range(8)] +
                         ["p3"] + ["1" + event({"type": "custom", "data": "g" * 3000})] * 16 + ["p3", "h1"]))

# ---- server: 2 config bytes, then operations (client k = byte & 3, op = byte >> 2) ----

(CONNECT, RAW, UPGRADE, FRAME, PHX, CLOSE, RESET, SHUT, STEP, WARP, PUMP, READ, CLOSE_FRAME, PING) = range(14)


def op(code, k, *args):
    return bytes([(code << 2) | k]) + bytes(args)


def phx(k, selector, argument=0):
    return op(PHX, k, selector, argument)


def raw(k, data):
    out = b""
    while data:
        out += op(RAW, k, min(255, len(data))) + data[:255]
        data = data[255:]
    return out


def script(config, *ops, more=0):
    return bytes([config, more]) + b"".join(ops)


(JOIN_A, JOIN_B, JOIN_C, JOIN_BAD, LEAVE, HEARTBEAT, RELAY_JOIN, CUSTOM, RELAY_LEAVE, UPDATE, UNKNOWN, NUMBER,
 LONG_REF, UNMATCHED, BINARY) = range(15)
seed("server", script(0x00, op(CONNECT, 0), op(UPGRADE, 0, 0), phx(0, JOIN_A), phx(0, RELAY_JOIN, 5),
                      op(CONNECT, 1), op(UPGRADE, 1, 1), phx(1, JOIN_A), phx(1, RELAY_JOIN, 9), phx(0, CUSTOM, 1),
                      phx(1, UPDATE, 3), phx(0, RELAY_LEAVE), phx(0, LEAVE), op(CLOSE, 1), op(STEP, 0)))
seed("server", script(0x10, op(CONNECT, 0), op(CONNECT, 1), op(CONNECT, 2), op(CONNECT, 3),
                      op(UPGRADE, 0, 0), op(UPGRADE, 1, 0), op(UPGRADE, 2, 0), op(UPGRADE, 3, 0),
                      phx(0, JOIN_A), phx(1, JOIN_A), phx(2, JOIN_A), phx(0, JOIN_B), phx(1, JOIN_B), phx(0, JOIN_C),
                      phx(2, JOIN_BAD), op(RESET, 0), op(STEP, 0), phx(2, JOIN_A)))
seed("server", script(0x03, op(CONNECT, 0), op(UPGRADE, 0, 3), op(FRAME, 0, 0x81, 5) + b"hello",
                      op(FRAME, 0, 0x01, 2) + b"ab", op(PING, 0), op(FRAME, 0, 0x80, 2) + b"cd",
                      op(CLOSE_FRAME, 0, 0x03, 0xE8), op(STEP, 0), op(CONNECT, 1), op(UPGRADE, 1, 6),
                      op(CONNECT, 2), op(UPGRADE, 2, 7), op(STEP, 0)))
seed("server", script(0x0C, op(CONNECT, 0), op(UPGRADE, 0, 0x08), op(CONNECT, 1), op(UPGRADE, 1, 0x10),
                      op(CONNECT, 2), op(UPGRADE, 2, 4), op(CONNECT, 3), op(UPGRADE, 3, 5), op(STEP, 0)))
seed("server", script(0x40, op(CONNECT, 0), op(UPGRADE, 0, 0x20), op(WARP, 0, 1), op(STEP, 0),
                      op(CONNECT, 1), op(UPGRADE, 1, 0), phx(1, JOIN_A), op(WARP, 0, 2), op(WARP, 0, 2),
                      op(STEP, 0), op(WARP, 0, 0), op(STEP, 0)))
seed("server", script(0x20, op(CONNECT, 0), op(UPGRADE, 0, 0), op(READ, 0), op(PUMP, 0, 63), op(PUMP, 0, 63),
                      op(PUMP, 0, 63), op(STEP, 0), op(STEP, 0), op(READ, 0), op(STEP, 0)))
seed("server", script(0x01, op(CONNECT, 0), op(UPGRADE, 0, 3), op(READ, 0),
                      op(FRAME, 0, 0x82, 255) + bytes(255), op(FRAME, 0, 0x82, 255) + bytes(255), op(STEP, 0),
                      op(SHUT, 0), op(STEP, 0)))
seed("server", script(0x00, op(CONNECT, 0),
                      raw(0, b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() +
                          b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + frame(1, v2("1", "1", "room:a", "phx_join", {}))),
                      phx(0, BINARY, 7), phx(0, UNKNOWN), op(RAW, 0, 4) + b"\x81\x05ab", op(STEP, 0)))
seed("server", script(0x00, op(CONNECT, 0), raw(0, b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 600 + b"\r\n\r\n"),
                      op(CONNECT, 1), raw(1, b"BAD\r\n\r\n"), op(CONNECT, 2), raw(2, b"GET / HTTP/1.1\r\n\r\n")))
# the host's room logic: every action of logic_media_event (a number n: n % 9)
seed("server", script(0x10, op(CONNECT, 0), op(UPGRADE, 0, 0), op(CONNECT, 1), op(UPGRADE, 1, 1),
                      phx(0, JOIN_A), phx(1, JOIN_A), *[phx(k % 2, NUMBER, n) for k, n in enumerate(range(9))],
                      phx(0, JOIN_A), phx(1, JOIN_B), phx(1, NUMBER, 5), phx(0, NUMBER, 8), phx(0, NUMBER, 17),
                      phx(0, NUMBER, 6), more=0x10))
seed("server", script(0x20, op(CONNECT, 0), op(UPGRADE, 0, 0), op(CONNECT, 1), op(UPGRADE, 1, 0),
                      phx(0, JOIN_A), phx(1, JOIN_A), op(READ, 1), *[phx(0, NUMBER, 8) for _ in range(12)],
                      op(STEP, 0), op(READ, 1), op(STEP, 0), more=0x18))
# small buffers, a reader that stops: want_write, slow consumer
seed("server", script(0x01, op(CONNECT, 0), op(UPGRADE, 0, 3), op(READ, 0),
                      *[op(FRAME, 0, 0x82, 255) + bytes(255) for _ in range(40)], op(STEP, 0), op(READ, 0),
                      op(STEP, 0), more=0x08))
seed("server", script(0x00, op(CONNECT, 0), op(UPGRADE, 0, 0), op(READ, 0), op(PUMP, 0, 63), op(PUMP, 0, 63),
                      op(STEP, 0), op(STEP, 0), more=0x08))
# flow control: a relay peer stops reading while the other sends to it (paused, then resumed when
# it reads again), then stops again for longer than the slow-consumer timeout
seed("server", script(0x20, op(CONNECT, 0), op(UPGRADE, 0, 0), phx(0, JOIN_A), phx(0, RELAY_JOIN, 1),
                      op(CONNECT, 1), op(UPGRADE, 1, 0), phx(1, JOIN_A), phx(1, RELAY_JOIN, 2), op(READ, 1),
                      *[phx(0, CUSTOM, n) for n in range(60)], op(PUMP, 0, 63), op(STEP, 0), op(READ, 1),
                      op(STEP, 0), op(READ, 1), *[phx(0, CUSTOM, n) for n in range(60)], op(WARP, 0, 1),
                      op(STEP, 0), phx(0, HEARTBEAT), op(STEP, 0), more=0x08))
# IPv6 and IPv4 clients on "::"; on_upgrade; the host shutting down with clients connected
seed("server", script(0x01, op(CONNECT, 0), op(CONNECT, 1), op(UPGRADE, 0, 3), op(UPGRADE, 1, 0x83),
                      op(FRAME, 0, 0x81, 2) + b"hi", op(CLOSE, 1), op(CONNECT, 1), op(UPGRADE, 1, 0x43), op(CLOSE, 1),
                      op(CONNECT, 1), op(UPGRADE, 1, 0x0B), more=0x03))
seed("server", script(0x00, op(CONNECT, 0), op(UPGRADE, 0, 0), phx(0, JOIN_A), phx(0, RELAY_JOIN, 3),
                      op(CONNECT, 1), op(UPGRADE, 1, 3), more=0x04))
seed("server", script(0x00, op(CONNECT, 0), op(UPGRADE, 0, 0), phx(0, LONG_REF, 0), phx(0, LONG_REF, 2),
                      phx(0, UNMATCHED), op(CONNECT, 1), op(UPGRADE, 1, 1), phx(1, LONG_REF, 1), phx(1, LONG_REF, 3)))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    total = 0
    for target, seeds in SEEDS.items():
        directory = os.path.join(sys.argv[1], target)
        os.makedirs(directory, exist_ok=True)
        for data in seeds:
            path = os.path.join(directory, "seed-" + hashlib.sha1(data).hexdigest()[:16])
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
            total += 1
    print("make_corpus: %d seeds for %d targets in %s" % (total, len(SEEDS), sys.argv[1]))


if __name__ == "__main__":
    main()
