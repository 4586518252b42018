// A dropped socket: the official client reconnects and rejoins its channels by itself.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withServer, waitUntil, assertNothingElse } from "./helpers.mjs";

/** Resolves when `peer`'s channel has had `count` successful joins (rejoins included). */
function joinedTimes(peer, count, ms = 5000) {
  return waitUntil(() => peer.joinOks >= count, ms, `${peer.name} joined ${count} times (joined ${peer.joinOks})`);
}

test("after the server restarts, clients reconnect, rejoin and relay again", () =>
  withServer([], async (env) => {
    const topic = "room:phoenix-rises";
    const alice = await env.peer("alice", topic);
    const bob = await env.peer("bob", topic);
    await alice.relayJoin({ name: "Alice" });
    await bob.relayJoin({ name: "Bob" });
    await alice.next("peerJoined");
    const oldIds = [alice.id, bob.id];

    const closeCodes = [];
    alice.socket.onClose((event) => closeCodes.push(event.code));

    // the server goes away (SIGTERM: it drains, says 1012 "service restart" to everyone, exits 0,
    // no sanitizer report) and comes back on the same port
    await env.restartServer();
    await joinedTimes(alice, 2);
    await joinedTimes(bob, 2);
    assert.equal(closeCodes[0], 1012, "the server said it was restarting");
    assert.ok(alice.socket.isConnected() && bob.socket.isConnected());
    assert.equal(alice.channel.state, "joined");
    assert.equal(bob.channel.state, "joined");
    alice.drain();
    bob.drain();

    // a fresh server: new peers, new ids; the relay works again both ways
    const acceptedA = await alice.relayJoin({ name: "Alice", round: 2 });
    assert.deepEqual(acceptedA.peersInRoom, []);
    const acceptedB = await bob.relayJoin({ name: "Bob", round: 2 });
    assert.deepEqual(acceptedB.peersInRoom, [{ id: alice.id, metadata: { name: "Alice", round: 2 } }]);
    assert.deepEqual(await alice.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: bob.id, metadata: { name: "Bob", round: 2 } } },
    });
    assert.ok(!oldIds.includes(alice.id) && !oldIds.includes(bob.id), "new peer ids");
    alice.send({ type: "custom", to: bob.id, data: "hello again" });
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: "hello again" });
    bob.send({ type: "custom", data: "and back" });
    assert.deepEqual(await alice.next("custom"), { type: "custom", from: bob.id, data: "and back" });
    await assertNothingElse(alice, bob);
    await assertNothingElse(bob, alice);
  }));

test("an idle client is closed with 1001, reconnects by itself and rejoins", () =>
  withServer(["--idle-timeout", "1"], async (env) => {
    const topic = "room:idle";
    // bob heartbeats often enough to stay; alice keeps the client's default 30 s heartbeat
    const bob = await env.peer("bob", topic, await env.socket({ heartbeatIntervalMs: 200 }));
    const alice = await env.peer("alice", topic);
    await bob.relayJoin({ name: "Bob" });
    await alice.relayJoin({ name: "Alice" });
    await bob.next("peerJoined");
    const closeCodes = [];
    alice.socket.onClose((event) => closeCodes.push(event.code));

    // alice is silent: the server closes her socket; bob sees her leave
    assert.deepEqual(await bob.next("peerLeft", 4000), { type: "peerLeft", data: { peerId: alice.id } });
    await joinedTimes(alice, 2);
    assert.equal(closeCodes[0], 1001, "idle timeout closes with 1001");
    assert.equal(bob.joinOks, 1, "bob was never dropped");

    // rejoined as a new peer, alice can relay-join and talk to bob at once
    const oldId = alice.id;
    const accepted = await alice.relayJoin({ name: "Alice", back: true });
    assert.notEqual(accepted.id, oldId);
    assert.deepEqual(accepted.peersInRoom, [{ id: bob.id, metadata: { name: "Bob" } }]);
    assert.deepEqual(await bob.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: alice.id, metadata: { name: "Alice", back: true } } },
    });
    alice.send({ type: "custom", to: bob.id, data: "back" });
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: "back" });
  }));
