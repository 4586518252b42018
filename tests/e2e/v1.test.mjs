// A V1 (vsn 1.0.0, JSON objects) client and a V2 client in one room.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withServer, V1, assertNothingElse, leaveChannel } from "./helpers.mjs";

test("a V1 client and a V2 client join one room and relay events both ways", () =>
  withServer([], async (env) => {
    const topic = "room:mixed";
    const frames = [];
    const v1Socket = await env.socket({ ...V1 });
    // what the V1 client reads really is V1: one JSON object per frame
    v1Socket.conn.addEventListener("message", (event) => frames.push(event.data));
    const old = await env.peer("v1", topic, v1Socket);
    const modern = await env.peer("v2", topic);

    const acceptedV1 = await old.relayJoin({ client: "v1" });
    assert.deepEqual(acceptedV1.peersInRoom, []);
    const acceptedV2 = await modern.relayJoin({ client: "v2" });
    assert.deepEqual(acceptedV2.peersInRoom, [{ id: old.id, metadata: { client: "v1" } }]);
    assert.deepEqual(await old.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: modern.id, metadata: { client: "v2" } } },
    });

    old.send({ type: "custom", to: modern.id, data: { sdp: "offer from v1", "ü": "ünïcode ✓" } });
    assert.deepEqual(await modern.next("custom"), {
      type: "custom",
      from: old.id,
      data: { sdp: "offer from v1", "ü": "ünïcode ✓" },
    });
    modern.send({ type: "custom", to: old.id, data: { sdp: "answer from v2" } });
    assert.deepEqual(await old.next("custom"), { type: "custom", from: modern.id, data: { sdp: "answer from v2" } });
    modern.send({ type: "custom", data: ["broadcast", 2] });
    assert.deepEqual(await old.next("custom"), { type: "custom", from: modern.id, data: ["broadcast", 2] });
    old.send({ type: "updatePeerMetadata", data: { metadata: { client: "v1", muted: true } } });
    assert.deepEqual(await modern.next("peerUpdated"), {
      type: "peerUpdated",
      data: { peerId: old.id, metadata: { client: "v1", muted: true } },
    });
    await assertNothingElse(old, modern);
    await assertNothingElse(modern, old);

    assert.ok(frames.length >= 4, "the V1 socket received frames");
    for (const frame of frames) {
      assert.equal(typeof frame, "string");
      const message = JSON.parse(frame);
      assert.ok(message && typeof message === "object" && !Array.isArray(message), `V1 object: ${frame}`);
      assert.deepEqual(Object.keys(message).sort(), ["event", "payload", "ref", "topic"], frame);
    }

    // the V1 peer leaves the channel; the V2 peer sees it go
    assert.equal(await leaveChannel(old.channel), "ok");
    assert.deepEqual(await modern.next("peerLeft"), { type: "peerLeft", data: { peerId: old.id } });
  }));
