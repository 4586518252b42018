// vrs_peer_close and vrs_rooms as the official Phoenix client sees them, through a host
// (hosts/peer_close_host.c) that runs the relay logic and closes a peer's channel when the test
// asks it over HTTP.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { withServer, delay, withTimeout, WAIT_MS } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const PEER_CLOSE_HOST = path.resolve(here, process.env.PEER_CLOSE_HOST || "../../build/peer_close_host_sanitized");

async function get(env, target) {
  const response = await fetch(`http://127.0.0.1:${env.port}${target}`);
  return { status: response.status, body: await response.text() };
}

/** Resolves with the payload of the channel's first phx_close (bounded). */
function closed(channel) {
  return withTimeout(new Promise((resolve) => channel.onClose((payload) => resolve(payload))), WAIT_MS, "phx_close");
}

test("vrs_peer_close: phx_close without a rejoin, the socket's other channel stays, the others get peerLeft", () =>
  withServer(
    [],
    async (env) => {
      const socket = await env.socket();
      const sent = []; // every message the client sends on the shared socket
      const push = socket.push.bind(socket);
      socket.push = (message) => {
        sent.push(message);
        push(message);
      };
      const alice = await env.peer("alice", "room:kick", socket);
      const aliceElsewhere = await env.peer("alice elsewhere", "room:other", socket);
      const bob = await env.peer("bob", "room:kick");
      const carol = await env.peer("carol", "room:other");
      await alice.relayJoin({ name: "Alice" });
      await bob.relayJoin({ name: "Bob" });
      await alice.next("peerJoined");
      await aliceElsewhere.relayJoin({ name: "Alice" });
      await carol.relayJoin({ name: "Carol" });
      await aliceElsewhere.next("peerJoined");

      assert.deepEqual(JSON.parse((await get(env, "/rooms")).body).rooms.sort((a, b) => a.id.localeCompare(b.id)), [
        { id: "kick", peers: 2 },
        { id: "other", peers: 2 },
      ]);

      const aliceClosed = closed(alice.channel);
      const kick = await get(env, `/close?peer=${alice.id}&reason=${encodeURIComponent('kicked "hard"')}`);
      assert.equal(kick.status, 200, kick.body);
      assert.deepEqual(await aliceClosed, { reason: 'kicked "hard"' });
      assert.equal(alice.channel.state, "closed");
      assert.deepEqual(await bob.next("peerLeft"), { type: "peerLeft", data: { peerId: alice.id } });

      // longer than phoenix.js's first rejoin delay after a channel error (1 s): nothing rejoins
      const sentAtKick = sent.length;
      await delay(1500);
      const rejoins = sent.slice(sentAtKick).filter((m) => m.topic === "room:kick" && m.event === "phx_join");
      assert.deepEqual(rejoins, [], "the closed channel is not rejoined");
      assert.ok(socket.isConnected(), "the socket stays open");
      assert.equal(socket.channels.includes(alice.channel), false, "the client dropped the channel");

      // the socket's other channel still works both ways
      aliceElsewhere.send({ type: "custom", to: carol.id, data: "still here" });
      assert.deepEqual(await carol.next("custom"), { type: "custom", from: aliceElsewhere.id, data: "still here" });
      carol.send({ type: "custom", to: aliceElsewhere.id, data: "hello" });
      assert.deepEqual(await aliceElsewhere.next("custom"), { type: "custom", from: carol.id, data: "hello" });
      assert.equal(aliceElsewhere.channel.state, "joined");

      // the handle is stale now
      const again = await get(env, `/close?peer=${alice.id}`);
      assert.equal(again.status, 404);
      assert.match(again.body, /stale/);

      // no reason: the payload is {}; the room left empty is gone from vrs_rooms
      const bobClosed = closed(bob.channel);
      assert.equal((await get(env, `/close?peer=${bob.id}`)).status, 200);
      assert.deepEqual(await bobClosed, {});
      assert.deepEqual(JSON.parse((await get(env, "/rooms")).body), { rooms: [{ id: "other", peers: 2 }] });
    },
    PEER_CLOSE_HOST,
  ));
