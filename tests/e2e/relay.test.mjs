// The relay room logic (RELAY.md) as users of the official Phoenix client see it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withServer, assertNothingElse, disconnect } from "./helpers.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("three peers run the whole relay flow in one room", () =>
  withServer([], async (env) => {
    const topic = "room:flow";
    const alice = await env.peer("alice", topic);
    const bob = await env.peer("bob", topic);
    const carol = await env.peer("carol", topic);
    const metaA = { name: "Alice", tags: ["x", 1, null, true] };
    const metaB = { name: "Bob" };
    const metaC = "carol as a string";

    // join: peerAccepted to the joiner with the earlier peers in join order; peerJoined to the others
    const acceptedA = await alice.relayJoin(metaA);
    assert.match(acceptedA.id, UUID);
    assert.deepEqual(acceptedA.peersInRoom, []);

    const acceptedB = await bob.relayJoin(metaB);
    assert.match(acceptedB.id, UUID);
    assert.deepEqual(acceptedB.peersInRoom, [{ id: alice.id, metadata: metaA }]);
    assert.deepEqual(await alice.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: bob.id, metadata: metaB } },
    });

    const acceptedC = await carol.relayJoin(metaC);
    assert.deepEqual(acceptedC.peersInRoom, [
      { id: alice.id, metadata: metaA },
      { id: bob.id, metadata: metaB },
    ]);
    const joinedC = { type: "peerJoined", data: { peer: { id: carol.id, metadata: metaC } } };
    assert.deepEqual(await alice.next("peerJoined"), joinedC);
    assert.deepEqual(await bob.next("peerJoined"), joinedC);
    assert.equal(new Set([alice.id, bob.id, carol.id]).size, 3, "peer ids are distinct");
    await assertNothingElse(carol, alice, bob);
    await assertNothingElse(alice, carol);

    // custom with "to": only the target gets it, with "from"
    const offer = { sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1", kind: "offer", n: 1.5 };
    alice.send({ type: "custom", to: bob.id, data: offer });
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: offer });
    await assertNothingElse(bob, alice, carol);

    // custom without "to": every other joined peer, not the sender
    bob.send({ type: "custom", data: ["hello", { all: true }] });
    const broadcast = { type: "custom", from: bob.id, data: ["hello", { all: true }] };
    assert.deepEqual(await alice.next("custom"), broadcast);
    assert.deepEqual(await carol.next("custom"), broadcast);
    await assertNothingElse(alice, bob, carol);

    // custom without data: X = null
    carol.send({ type: "custom", to: alice.id });
    assert.deepEqual(await alice.next("custom"), { type: "custom", from: carol.id, data: null });

    // updatePeerMetadata: peerUpdated to the others
    const metaB2 = { name: "Bob", muted: true };
    bob.send({ type: "updatePeerMetadata", data: { metadata: metaB2 } });
    const updated = { type: "peerUpdated", data: { peerId: bob.id, metadata: metaB2 } };
    assert.deepEqual(await alice.next("peerUpdated"), updated);
    assert.deepEqual(await carol.next("peerUpdated"), updated);
    await assertNothingElse(alice, bob, carol);

    // relay leave: peerLeft to the others; the channel stays and a new relay join keeps the id
    const carolId = carol.id;
    carol.send({ type: "leave" });
    const leftC = { type: "peerLeft", data: { peerId: carolId } };
    assert.deepEqual(await alice.next("peerLeft"), leftC);
    assert.deepEqual(await bob.next("peerLeft"), leftC);
    // a peer that left the relay no longer gets room events
    alice.send({ type: "custom", data: "not for carol" });
    assert.deepEqual(await bob.next("custom"), { type: "custom", from: alice.id, data: "not for carol" });
    assert.equal(carol.channel.state, "joined", "the channel stays after a relay leave");
    const again = await carol.relayJoin({ name: "Carol", back: true });
    assert.equal(again.id, carolId, "same peer id after a relay leave and a new join");
    assert.deepEqual(again.peersInRoom, [
      { id: alice.id, metadata: metaA },
      { id: bob.id, metadata: metaB2 },
    ]);
    const rejoined = { type: "peerJoined", data: { peer: { id: carolId, metadata: { name: "Carol", back: true } } } };
    assert.deepEqual(await alice.next("peerJoined"), rejoined);
    assert.deepEqual(await bob.next("peerJoined"), rejoined);
    assert.deepEqual(carol.drain(), [], "carol got nothing while out of the relay");
    await assertNothingElse(alice, bob, carol);

    // a socket disconnect: peerLeft to the others
    await disconnect(bob.socket);
    const leftB = { type: "peerLeft", data: { peerId: bob.id } };
    assert.deepEqual(await alice.next("peerLeft"), leftB);
    assert.deepEqual(await carol.next("peerLeft"), leftB);
    await assertNothingElse(alice, carol);
    await assertNothingElse(carol, alice);
  }));

test("relay errors go to the sender only as {type: error, data: {message}}", () =>
  withServer([], async (env) => {
    const topic = "room:errors";
    const alice = await env.peer("alice", topic);
    const bob = await env.peer("bob", topic);
    const carol = await env.peer("carol", topic); // not relay-joined yet
    await alice.relayJoin({ name: "Alice" });
    await bob.relayJoin({ name: "Bob" });
    await alice.next("peerJoined");

    const expectError = async (peer, what) => {
      const event = await peer.next(() => true);
      assert.equal(event.type, "error", `${what}: ${JSON.stringify(event)}`);
      assert.deepEqual(Object.keys(event).sort(), ["data", "type"], what);
      assert.deepEqual(Object.keys(event.data), ["message"], what);
      assert.equal(typeof event.data.message, "string", what);
      assert.ok(event.data.message.length > 0, what);
      return event.data.message;
    };

    // events other than join before join
    carol.send({ type: "custom", to: alice.id, data: 1 });
    await expectError(carol, "custom before join");
    carol.send({ type: "updatePeerMetadata", data: { metadata: 1 } });
    await expectError(carol, "updatePeerMetadata before join");
    carol.send({ type: "leave" });
    await expectError(carol, "leave before join");
    await assertNothingElse(alice, bob);

    // unknown type
    alice.send({ type: "bogus", data: {} });
    await expectError(alice, "unknown type");
    await assertNothingElse(bob, alice);
    await assertNothingElse(alice, bob);

    // D not serialized JSON, E not an object, E without a type
    alice.sendData("{not json");
    await expectError(alice, "D not JSON");
    alice.send([1, 2, 3]);
    await expectError(alice, "E not an object");
    alice.send({ data: { metadata: 1 } });
    await expectError(alice, "E without type");
    await assertNothingElse(bob, alice);
    await assertNothingElse(alice, bob);

    // unknown target: an id nobody has, a peer not relay-joined, and the sender itself
    alice.send({ type: "custom", to: "00000000-0000-4000-8000-000000000000", data: 1 });
    await expectError(alice, "unknown target");
    alice.send({ type: "custom", to: alice.id, data: 1 });
    await expectError(alice, "custom to self");
    await assertNothingElse(bob, alice);
    await assertNothingElse(alice, bob);

    // second join: error, nothing else changes
    alice.send({ type: "join", data: { metadata: { name: "Alice again" } } });
    await expectError(alice, "second join");
    await assertNothingElse(bob, alice);
    await assertNothingElse(alice, bob);

    // metadata too large (> 1024 bytes of JSON text): on join and on update
    const exactly1024 = "m".repeat(1022); // "mmm…" is 1024 bytes of JSON text
    const tooLarge = "m".repeat(1023); // 1025 bytes
    carol.send({ type: "join", data: { metadata: tooLarge } });
    assert.match(await expectError(carol, "join with large metadata"), /metadata too large/);
    await assertNothingElse(alice, bob); // no peerJoined
    carol.send({ type: "custom", to: alice.id, data: 1 });
    await expectError(carol, "still not joined after the refused join");

    bob.send({ type: "updatePeerMetadata", data: { metadata: { blob: "b".repeat(2000) } } });
    assert.match(await expectError(bob, "update with large metadata"), /metadata too large/);
    await assertNothingElse(alice, bob); // no peerUpdated

    // the limit is inclusive, and the refused update left Bob's metadata as it was
    const accepted = await carol.relayJoin(exactly1024);
    assert.deepEqual(accepted.peersInRoom, [
      { id: alice.id, metadata: { name: "Alice" } },
      { id: bob.id, metadata: { name: "Bob" } },
    ]);
    assert.deepEqual(await alice.next("peerJoined"), {
      type: "peerJoined",
      data: { peer: { id: carol.id, metadata: exactly1024 } },
    });
    assert.deepEqual((await bob.next("peerJoined")).data.peer.id, carol.id);
    await assertNothingElse(alice, bob, carol);
  }));
