// The channel layer (PROTOCOL.md) as the official Phoenix client sees it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  withServer,
  joinChannel,
  pushReply,
  leaveChannel,
  assertNothingElse,
  delay,
  withTimeout,
  WAIT_MS,
} from "./helpers.mjs";

/** An error reply {status: "error", response: {reason: <non-empty string>}}. */
function assertErrorReply(reply, what) {
  assert.equal(reply.status, "error", `${what}: ${JSON.stringify(reply)}`);
  assert.deepEqual(Object.keys(reply.response), ["reason"], what);
  assert.equal(typeof reply.response.reason, "string", what);
  assert.ok(reply.response.reason.length > 0, what);
}

/** Joins `topic` on `socket` expecting a refusal; leaves the channel so the client stops rejoining. */
async function refusedJoin(socket, topic) {
  const channel = socket.channel(topic, {});
  const reply = await joinChannel(channel);
  await leaveChannel(channel);
  return reply;
}

test("channel protocol: join, unhandled events, missing data, unmatched topic, leave", () =>
  withServer([], async (env) => {
    const topic = "room:proto";
    const alice = await env.peer("alice", topic); // asserts the join reply is {status: ok, response: {}}
    const bob = await env.peer("bob", topic);
    await alice.relayJoin({ name: "Alice" });
    await bob.relayJoin({ name: "Bob" });
    await alice.next("peerJoined");

    // an event the channel does not handle: error reply, the channel stays
    const bogus = await pushReply(alice.channel, "bogus", {});
    assertErrorReply(bogus, "push bogus");
    assert.equal(alice.channel.state, "joined");

    // mediaEvent without data: error reply, the channel stays
    assertErrorReply(await pushReply(alice.channel, "mediaEvent", {}), "mediaEvent {}");
    assertErrorReply(await pushReply(alice.channel, "mediaEvent", { payload: "x" }), "mediaEvent without data");
    assert.equal(alice.channel.state, "joined");

    // a mediaEvent with data gets no reply, and the channel still relays
    const noReply = pushReply(
      alice.channel,
      "mediaEvent",
      { data: JSON.stringify({ type: "custom", to: bob.id, data: "after errors" }) },
      500,
    );
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: "after errors" });
    assert.deepEqual(await noReply, { status: "timeout" }, "no reply to a mediaEvent with data");
    await assertNothingElse(bob, alice);

    // a topic no route matches
    const lobby = await refusedJoin(alice.socket, "lobby:1");
    assert.deepEqual(lobby, { status: "error", response: { reason: "unmatched topic" } });
    assert.equal(alice.channel.state, "joined", "the room channel is untouched");

    // leave: ok, the channel closes, the room sees peerLeft
    const closed = new Promise((resolve) => bob.channel.onClose(resolve));
    assert.equal(await leaveChannel(bob.channel), "ok");
    await withTimeout(closed, WAIT_MS, "bob's channel closes");
    assert.equal(bob.channel.state, "closed");
    assert.deepEqual(await alice.next("peerLeft"), { type: "peerLeft", data: { peerId: bob.id } });

    // the same socket can join the room again, as a new peer
    const bob2 = await env.peer("bob2", topic, bob.socket);
    const accepted = await bob2.relayJoin(null);
    assert.notEqual(accepted.id, bob.id, "a new channel is a new peer");
    assert.deepEqual(accepted.peersInRoom, [{ id: alice.id, metadata: { name: "Alice" } }]);
    assert.deepEqual(await alice.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: bob2.id, metadata: null } },
    });
    await assertNothingElse(bob2, alice);
    await assertNothingElse(alice, bob2);
  }));

test("heartbeats from the client are answered and keep the socket connected", () =>
  withServer([], async (env) => {
    const socket = await env.socket({ heartbeatIntervalMs: 100 });
    const replies = [];
    let closes = 0;
    let errors = 0;
    socket.onMessage((msg) => {
      if (msg.topic === "phoenix") replies.push(msg);
    });
    socket.onClose(() => closes++);
    socket.onError(() => errors++);
    const peer = await env.peer("alice", "room:heartbeat", socket);
    await delay(1000);
    assert.ok(socket.isConnected(), "still connected after 1 s");
    assert.equal(closes, 0, "no close");
    assert.equal(errors, 0, "no error");
    assert.ok(replies.length >= 5, `heartbeat replies seen: ${replies.length}`);
    for (const reply of replies) {
      assert.equal(reply.event, "phx_reply");
      assert.equal(reply.join_ref, null);
      assert.equal(typeof reply.ref, "string");
      assert.deepEqual(reply.payload, { status: "ok", response: {} });
    }
    assert.equal(peer.channel.state, "joined");
    assert.equal(peer.joinOks, 1, "the channel never had to rejoin");
    // the client's ping uses the same heartbeat
    const rtt = await withTimeout(new Promise((resolve) => socket.ping(resolve)), WAIT_MS, "ping");
    assert.ok(rtt >= 0 && rtt < WAIT_MS);
  }));

test("a binary mediaEvent push gets an error reply and the channel keeps working", () =>
  withServer([], async (env) => {
    const topic = "room:binary";
    const alice = await env.peer("alice", topic);
    const bob = await env.peer("bob", topic);
    await alice.relayJoin({ name: "Alice" });
    await bob.relayJoin({ name: "Bob" });
    await alice.next("peerJoined");

    assertErrorReply(await pushReply(alice.channel, "mediaEvent", new ArrayBuffer(8)), "binary mediaEvent");
    // even bytes that look like a JSON payload are not one
    const lookalike = new TextEncoder().encode(JSON.stringify({ data: JSON.stringify({ type: "custom", data: 1 }) }));
    assertErrorReply(
      await pushReply(alice.channel, "mediaEvent", lookalike.buffer.slice(0)),
      "binary mediaEvent with JSON-looking bytes",
    );
    assert.ok(alice.socket.isConnected(), "the socket stays open");
    assert.equal(alice.channel.state, "joined");

    alice.send({ type: "custom", to: bob.id, data: { after: "binary" } });
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: { after: "binary" } });
    bob.send({ type: "custom", to: alice.id, data: "back" });
    assert.deepEqual(await alice.next("custom"), { type: "custom", from: bob.id, data: "back" });
    await assertNothingElse(bob, alice);
    await assertNothingElse(alice, bob);
  }));

test("invalid room ids are refused with 'invalid room id'", () =>
  withServer([], async (env) => {
    const socket = await env.socket();
    assert.deepEqual(await refusedJoin(socket, "room:"), {
      status: "error",
      response: { reason: "invalid room id" },
    });
    assert.deepEqual(await refusedJoin(socket, "room:" + "a".repeat(65)), {
      status: "error",
      response: { reason: "invalid room id" },
    });
    // 64 bytes is the default maximum: accepted, and the socket is fine after the refusals
    const peer = await env.peer("alice", "room:" + "a".repeat(64), socket);
    const accepted = await peer.relayJoin({ ok: true });
    assert.deepEqual(accepted.peersInRoom, []);
    assert.ok(socket.isConnected());
  }));

test.skip("a duplicate join of one topic on one socket (the official client never sends one; tested in C)", () => {});
