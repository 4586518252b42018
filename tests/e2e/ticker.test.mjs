// examples/ticker.c as the official Phoenix client sees it: a producer thread ticking at 60 Hz
// hands each tick to the server's thread through a queue and vrs_wake, and every peer of
// room:ticker gets it as a mediaEvent at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, stopServer, makeSocket, waitOpen, joinChannel, disconnect, delay } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const TICKER = path.resolve(here, process.env.TICKER || "../../build/ticker");

/** The client's CLOCK_MONOTONIC in milliseconds: libuv's hrtime reads the same clock as the ticker. */
const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;

test("ticker: every peer of room:ticker gets each 60 Hz tick, in order, as it happens", async () => {
  const server = await startServer([], undefined, TICKER);
  const sockets = [];
  try {
    const peers = [];
    for (const name of ["alice", "bob"]) {
      const socket = makeSocket(server.port);
      sockets.push(socket);
      socket.connect();
      await waitOpen(socket);
      const channel = socket.channel("room:ticker", {});
      const ticks = [];
      channel.on("mediaEvent", ({ data }) => ticks.push({ ...data, delay_ms: monotonicMs() - data.time_ms }));
      assert.equal((await joinChannel(channel)).status, "ok", `${name} joins room:ticker`);
      peers.push({ name, ticks });
    }
    const starts = peers.map((p) => p.ticks.length);
    await delay(1000);
    for (const [index, { name, ticks }] of peers.entries()) {
      const second = ticks.slice(starts[index]);
      assert.ok(second.length >= 40 && second.length <= 80, `${name}: ${second.length} ticks in a second, not about 60`);
      for (let i = 1; i < ticks.length; i++)
        assert.equal(ticks[i].tick, ticks[i - 1].tick + 1, `${name}: tick ${ticks[i].tick} after ${ticks[i - 1].tick}`);
      const delays = second.map((t) => t.delay_ms).sort((a, b) => a - b);
      const median = delays[Math.floor(delays.length / 2)];
      console.log(`    ${name}: ${second.length} ticks in 1 s, from the tick to the client: median ${median.toFixed(2)} ms, max ${delays.at(-1).toFixed(2)} ms`);
      // a tick waits for no poll timeout (the server's step waits up to 1 s): it arrives at once
      assert.ok(median < 100, `${name}: ticks arrive ${median} ms after they happen`);
    }
    // both peers saw the same ticks
    const [a, b] = peers.map((p) => new Set(p.ticks.map((t) => t.tick)));
    const common = [...a].filter((tick) => b.has(tick));
    assert.ok(common.length >= 40, `the two peers share ${common.length} ticks`);
  } finally {
    for (const socket of sockets) await disconnect(socket);
    await stopServer(server); // SIGTERM: the handler wakes the server, which stops cleanly (exit 0)
  }
});
