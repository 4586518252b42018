// Many events between two peers: all delivered, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withServer, withTimeout, parseRelay } from "./helpers.mjs";

test("1,000 custom events arrive in order, none missing", () =>
  withServer([], async (env) => {
    const COUNT = 1000;
    const topic = "room:order";
    const sender = await env.peer("sender", topic);
    const receiver = await env.peer("receiver", topic);
    await sender.relayJoin(null);
    await receiver.relayJoin(null);
    await sender.next("peerJoined");

    const received = [];
    const all = new Promise((resolve) => {
      receiver.channel.on("mediaEvent", (payload) => {
        const event = parseRelay(payload);
        if (event.type !== "custom") return;
        received.push(event);
        if (received.length === COUNT) resolve();
      });
    });
    for (let n = 0; n < COUNT; n++) {
      sender.send({ type: "custom", to: receiver.id, data: { n, pad: "x".repeat(n % 50) } });
    }
    await withTimeout(all, 15000, `${COUNT} events (got ${received.length})`).catch((error) => {
      throw new Error(`${error.message}; received ${received.length}`);
    });
    assert.equal(received.length, COUNT);
    for (let n = 0; n < COUNT; n++) {
      assert.deepEqual(received[n], { type: "custom", from: sender.id, data: { n, pad: "x".repeat(n % 50) } }, `event ${n}`);
    }
    assert.deepEqual(sender.drain(), [], "the sender got nothing back");
  }));
