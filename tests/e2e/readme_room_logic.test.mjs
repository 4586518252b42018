// The README's room-logic example, built as it is written there, driven by the official Phoenix
// client: welcome, chat with text that needs every kind of escape, a kick by the room's first
// peer (phx_close, no rejoin) and the 5-second tick.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { withServer, joinChannel, delay, withTimeout, WAIT_MS } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const README_HOST = path.resolve(here, process.env.README_HOST || "../../build/readme_room_logic_sanitized");

/** A channel on `topic` with an inbox of the mediaEvent data it receives. */
async function player(env, topic, socket = undefined) {
  socket = socket ?? (await env.socket());
  const channel = socket.channel(topic, {});
  const inbox = [];
  const waiters = [];
  channel.on("mediaEvent", ({ data }) => {
    inbox.push(data);
    for (const waiter of [...waiters]) waiter();
  });
  const reply = await joinChannel(channel);
  assert.deepEqual(reply, { status: "ok", response: {} });
  /** The first event of `type` (taken from the inbox), waiting at most `ms`. */
  const next = (type, ms = WAIT_MS) =>
    withTimeout(
      new Promise((resolve) => {
        const look = () => {
          const index = inbox.findIndex((event) => event?.type === type);
          if (index < 0) return;
          waiters.splice(waiters.indexOf(look), 1);
          resolve(inbox.splice(index, 1)[0]);
        };
        waiters.push(look);
        look();
      }),
      ms,
      `a ${type} event on ${topic}`,
    );
  const send = (data) => channel.push("mediaEvent", { data }).timeoutTimer?.unref?.();
  return { socket, channel, inbox, next, send };
}

test("README room-logic example: welcome, escaped chat, a kick by the first peer, the tick", () =>
  withServer(
    [],
    async (env) => {
      const ann = await player(env, "room:table-1");
      const annWelcome = await ann.next("welcome");
      assert.equal(annWelcome.peers, 1);
      const bob = await player(env, "room:table-1");
      const bobWelcome = await bob.next("welcome");
      assert.equal(bobWelcome.peers, 2);
      assert.match(bobWelcome.id, /^[0-9a-f-]{36}$/);
      assert.notEqual(bobWelcome.id, annWelcome.id);

      // text with quotes, backslashes, control characters, a NUL, U+2028 and astral characters
      const text = 'he said "hi" \\o/\n\t\u0000\u0001 \u2028 é 😀 </script>';
      ann.send({ type: "chat", text });
      for (const p of [ann, bob]) assert.deepEqual(await p.next("chat"), { type: "chat", from: annWelcome.id, text });

      // only the room's first peer may kick
      bob.send({ type: "kick", id: annWelcome.id });
      bob.send({ type: "chat", text: "after my kick" });
      assert.equal((await ann.next("chat")).text, "after my kick");
      assert.equal(ann.channel.state, "joined");

      const bobClosed = withTimeout(new Promise((resolve) => bob.channel.onClose(resolve)), WAIT_MS, "phx_close");
      ann.send({ type: "kick", id: bobWelcome.id });
      assert.deepEqual(await bobClosed, { reason: "kicked" });
      await delay(1200); // past phoenix.js's first rejoin after a channel error
      assert.equal(bob.channel.state, "closed");
      assert.ok(bob.socket.isConnected());
      assert.equal(bob.socket.channels.length, 0, "the client rejoins nothing");

      // the tick reaches every room, with its count
      const carol = await player(env, "room:table-2");
      await carol.next("welcome");
      assert.deepEqual(await ann.next("tick", 6500), { type: "tick", peers: 1 });
      assert.deepEqual(await carol.next("tick", 6500), { type: "tick", peers: 1 });
    },
    README_HOST,
  ));
