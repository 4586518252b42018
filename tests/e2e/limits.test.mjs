// Full rooms and a full room table are answers (RELAY.md, Limits).
import { test } from "node:test";
import assert from "node:assert/strict";
import { withServer, waitUntil, joinChannel, leaveChannel, assertNothingElse } from "./helpers.mjs";

test("--max-peers 2: the third join gets 'room is full'; after one leaves a new join succeeds", () =>
  withServer(["--max-peers", "2"], async (env) => {
    const topic = "room:small";
    const alice = await env.peer("alice", topic);
    const bob = await env.peer("bob", topic);
    await alice.relayJoin({ name: "Alice" });
    await bob.relayJoin({ name: "Bob" });
    await alice.next("peerJoined");

    const carolSocket = await env.socket();
    const refused = carolSocket.channel(topic, {});
    assert.deepEqual(await joinChannel(refused), { status: "error", response: { reason: "room is full" } });
    await leaveChannel(refused); // stops the client's automatic rejoin
    await assertNothingElse(alice, bob);
    await assertNothingElse(bob, alice);

    // other rooms are not affected
    const elsewhere = await env.peer("dave", "room:other", carolSocket);
    assert.deepEqual((await elsewhere.relayJoin(null)).peersInRoom, []);

    assert.equal(await leaveChannel(bob.channel), "ok");
    assert.deepEqual(await alice.next("peerLeft"), { type: "peerLeft", data: { peerId: bob.id } });
    const carol = await env.peer("carol", topic, carolSocket);
    const accepted = await carol.relayJoin({ name: "Carol" });
    assert.deepEqual(accepted.peersInRoom, [{ id: alice.id, metadata: { name: "Alice" } }]);
    assert.deepEqual(await alice.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: carol.id, metadata: { name: "Carol" } } },
    });
  }));

test("--max-rooms 1: a join to a second room gets 'failed to start room'", () =>
  withServer(["--max-rooms", "1"], async (env) => {
    const alice = await env.peer("alice", "room:first");
    await alice.relayJoin(null);
    const socket = await env.socket();
    const second = socket.channel("room:second", {});
    assert.deepEqual(await joinChannel(second), { status: "error", response: { reason: "failed to start room" } });
    await leaveChannel(second);

    // the existing room still takes peers
    const bob = await env.peer("bob", "room:first", socket);
    assert.deepEqual((await bob.relayJoin(null)).peersInRoom, [{ id: alice.id, metadata: null }]);

    // once the only room is gone (its last peer left), another room can start
    await leaveChannel(alice.channel);
    await leaveChannel(bob.channel);
    const carol = await env.peer("carol", "room:second", socket);
    assert.deepEqual((await carol.relayJoin(null)).peersInRoom, []);
  }));

test("--max-message: a larger media event closes that socket with 1009; the client comes back", () =>
  withServer(["--max-message", "4096"], async (env) => {
    const topic = "room:big";
    const alice = await env.peer("alice", topic);
    const bob = await env.peer("bob", topic);
    await alice.relayJoin(null);
    await bob.relayJoin(null);
    await alice.next("peerJoined");
    const closeCodes = [];
    alice.socket.onClose((event) => closeCodes.push(event.code));

    alice.send({ type: "custom", to: bob.id, data: "x".repeat(5000) });
    assert.deepEqual(await bob.next("peerLeft"), { type: "peerLeft", data: { peerId: alice.id } });
    assert.deepEqual(bob.drain(), [], "the large event never reached the room");
    await waitUntil(() => alice.joinOks >= 2, 5000, "alice reconnects and rejoins");
    assert.equal(closeCodes[0], 1009);

    // below the limit everything still flows
    const accepted = await alice.relayJoin(null);
    assert.deepEqual(accepted.peersInRoom, [{ id: bob.id, metadata: null }]);
    await bob.next("peerJoined");
    alice.send({ type: "custom", to: bob.id, data: "x".repeat(3000) });
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: "x".repeat(3000) });
  }));
