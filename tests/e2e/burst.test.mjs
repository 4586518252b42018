// Bursts through flow control: every peer of a room pushes two bursts of 64 events of 8 kB,
// back to back. Each client is owed far more than the server's send queue and the kernel's
// socket buffers hold (7 x 128 x 8 kB, about 7 MB, against 256 KiB): the server slows the
// senders down instead of closing readers. Every client gets every event, in order, and none
// is closed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withServer, withTimeout, parseRelay } from "./helpers.mjs";

test("8 peers each push bursts of 64 events of 8 kB: every client gets every event, none is closed", () =>
  withServer([], async (env) => {
    const PEERS = 8;
    const BURST = 64;
    const BURSTS = 2;
    const pad = "x".repeat(8000);
    const topic = "room:burst";
    const peers = [];
    let closes = 0;
    let closed; // rejects the wait at the first close: no need to wait for the timeout
    const anyClose = new Promise((_, reject) => (closed = reject));
    anyClose.catch(() => {});
    for (let i = 0; i < PEERS; i++) {
      const socket = await env.socket();
      socket.onClose((event) => {
        closes++;
        closed(new Error(`a socket was closed (code ${event?.code})`));
      });
      const peer = await env.peer(`peer${i}`, topic, socket);
      await peer.relayJoin({ index: i });
      peers.push(peer);
    }
    for (let i = 0; i < PEERS; i++) for (let j = i + 1; j < PEERS; j++) await peers[i].next("peerJoined");

    // every peer counts, per sender, the events it has received in order
    const byId = new Map(peers.map((peer, index) => [peer.id, index]));
    const expected = PEERS * (PEERS - 1) * BURST * BURSTS;
    let received = 0;
    const problems = [];
    const all = new Promise((resolve) => {
      peers.forEach((peer) => {
        const next = new Array(PEERS).fill(0);
        peer.channel.on("mediaEvent", (payload) => {
          const event = parseRelay(payload);
          if (event.type !== "custom") return;
          const from = byId.get(event.from);
          if (from === undefined || event.data.n !== next[from] || event.data.pad !== pad) {
            problems.push(`${peer.name}: from ${event.from} n ${event.data?.n}, expected ${next[from]}`);
          } else {
            next[from]++;
          }
          if (++received === expected) resolve();
        });
      });
    });
    for (const peer of peers) {
      for (let n = 0; n < BURST * BURSTS; n++) peer.send({ type: "custom", data: { n, pad } });
    }
    await withTimeout(Promise.race([all, anyClose]), 60000, `${expected} deliveries`).catch((error) => {
      throw new Error(`${error.message}; received ${received}; ${problems.slice(0, 3).join("; ")}`);
    });
    assert.deepEqual(problems, [], "every event in order from each sender");
    assert.equal(closes, 0, "no socket was closed");
    for (const peer of peers) assert.equal(peer.joinOks, 1, `${peer.name} never rejoined`);
  }));
