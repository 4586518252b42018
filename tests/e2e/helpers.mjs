// Shared helpers for the end-to-end tests: the demo server under the sanitizers, driven by the
// official Phoenix client (npm `phoenix`) over `ws`. Everything is on loopback, every wait is
// bounded, every socket is disconnected and the server stopped (and checked) at the end.
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { Socket } from "phoenix";
import WebSocket from "ws";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The demo server binary: $DEMO_SERVER, or the sanitized build. Relative to tests/e2e. */
export const DEMO_SERVER = path.resolve(here, process.env.DEMO_SERVER || "../../build/demo_server_sanitized");

/** How long the server may take to accept connections: $DEMO_SERVER_START_MS, or 10 s (a
 * Windows build started under Wine on a busy machine may need more). */
const START_MS = Number(process.env.DEMO_SERVER_START_MS || 10000);

/** How long any single wait may take, in milliseconds. */
export const WAIT_MS = 3000;

const SANITIZER_TEXT = /AddressSanitizer|LeakSanitizer|runtime error|UndefinedBehaviorSanitizer/;

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with `what` when `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `condition` every 10 ms until it holds; rejects with `what` after `ms`. */
export async function waitUntil(condition, ms, what) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await delay(10);
  }
}

/** A free loopback port: listen on port 0, read the port, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * Starts the demo server (or another host taking --host and --port: `binary`) on 127.0.0.1 with
 * extra CLI flags (e.g. ["--max-peers", "2"]) and waits until it accepts TCP connections. `port`
 * defaults to a free one.
 */
export async function startServer(args = [], port = undefined, binary = DEMO_SERVER) {
  port = port ?? (await freePort());
  const child = spawn(binary, ["--host", "127.0.0.1", "--port", String(port), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const server = {
    port,
    args,
    binary,
    child,
    stdout: "",
    stderr: "",
    exit: null, // {code, signal} once it exited
  };
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (text) => (server.stdout += text));
  child.stderr.on("data", (text) => (server.stderr += text));
  server.exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      server.exit = { code, signal };
      resolve(server.exit);
    });
    child.on("error", (error) => {
      server.exit = { code: null, signal: null, error };
      resolve(server.exit);
    });
  });
  const deadline = Date.now() + START_MS;
  for (;;) {
    if (server.exit) {
      throw new Error(
        `demo server exited before accepting connections: ${JSON.stringify(server.exit)}\n${server.stderr}`,
      );
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`demo server did not accept TCP on port ${port} within ${START_MS} ms\n${server.stderr}`);
    }
    await delay(20);
  }
  return server;
}

/**
 * Stops the server with SIGTERM and checks how it ended: exit code 0, and no sanitizer report on
 * stderr. Throws (so the test fails) otherwise.
 */
export async function stopServer(server) {
  if (!server.exit) server.child.kill("SIGTERM");
  let exit;
  try {
    exit = await withTimeout(server.exited, 5000, "demo server exit after SIGTERM");
  } catch (error) {
    server.child.kill("SIGKILL");
    await server.exited;
    throw new Error(`${error.message}\n--- server stderr ---\n${server.stderr}`);
  }
  const report = SANITIZER_TEXT.exec(server.stderr);
  if (report) {
    throw new Error(`sanitizer report from the demo server (${report[0]}):\n${server.stderr}`);
  }
  if (exit.code !== 0) {
    throw new Error(`demo server exited with ${JSON.stringify(exit)}, not 0\n--- server stderr ---\n${server.stderr}`);
  }
}

/* ----------------------------------------------------------------------------------------------
   Phoenix sockets
   -------------------------------------------------------------------------------------------- */

/** V1 serializer (vsn 1.0.0): one JSON object per message, no binary frames. */
export const V1 = {
  vsn: "1.0.0",
  encode(msg, callback) {
    return callback(
      JSON.stringify({
        topic: msg.topic,
        event: msg.event,
        payload: msg.payload,
        ref: msg.ref,
        join_ref: msg.join_ref,
      }),
    );
  },
  decode(raw, callback) {
    const msg = JSON.parse(raw);
    return callback({
      join_ref: msg.join_ref ?? null,
      ref: msg.ref ?? null,
      topic: msg.topic,
      event: msg.event,
      payload: msg.payload,
    });
  },
};

/** A Phoenix Socket on ws://127.0.0.1:PORT/socket (not connected yet). */
export function makeSocket(port, opts = {}) {
  return new Socket(`ws://127.0.0.1:${port}/socket`, {
    transport: WebSocket,
    params: { user: "e2e" },
    timeout: WAIT_MS,
    ...opts,
  });
}

/** Resolves once the socket is open (bounded). */
export function waitOpen(socket, ms = WAIT_MS) {
  if (socket.isConnected()) return Promise.resolve();
  return withTimeout(
    new Promise((resolve) => {
      const ref = socket.onOpen(() => {
        socket.off([ref]);
        resolve();
      });
    }),
    ms,
    "socket open",
  );
}

/** Disconnects the socket and resolves when the client is done with it (bounded). */
export function disconnect(socket, ms = WAIT_MS) {
  return withTimeout(new Promise((resolve) => socket.disconnect(() => resolve())), ms, "socket disconnect").catch(
    () => {},
  );
}

/**
 * Joins the channel: resolves {status: "ok"|"error"|"timeout", response} for the first join.
 * `onEveryOk` is called on each ok reply, the client's automatic rejoins included.
 */
export function joinChannel(channel, ms = WAIT_MS, onEveryOk = () => {}) {
  return new Promise((resolve) => {
    channel
      .join(ms)
      .receive("ok", onEveryOk)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

/** Pushes and waits for the reply: resolves {status: "ok"|"error"|"timeout", response}. */
export function pushReply(channel, event, payload, ms = WAIT_MS) {
  return new Promise((resolve) => {
    channel
      .push(event, payload, ms)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

/** Leaves the channel, and waits until the server has left it too: resolves "ok" or "timeout". */
export async function leaveChannel(channel, ms = WAIT_MS) {
  const status = await new Promise((resolve) => {
    channel
      .leave(ms)
      .receive("ok", () => resolve("ok"))
      .receive("timeout", () => resolve("timeout"));
  });
  // phoenix.js calls a leave "ok" as soon as it is sent (leave() marks the channel leaving
  // before asking whether it may wait for a reply). A heartbeat answered on the same socket
  // after it means the server has done the leave too, before anything else the test sends.
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const answered = () => {
      clearTimeout(timer);
      resolve();
    };
    if (!channel.socket.ping(answered)) answered();
  });
  return status;
}

/** Sends relay event E: D is a JSON string holding E. */
export function sendRelay(channel, event) {
  return sendData(channel, JSON.stringify(event));
}

/** Pushes mediaEvent {"data": D} with D as given (no reply is expected). */
export function sendData(channel, d) {
  const push = channel.push("mediaEvent", { data: d });
  // A mediaEvent with data gets no reply (PROTOCOL.md §5), so its push would time out; that timer
  // must not keep the test process alive.
  push.timeoutTimer?.unref?.();
  return push;
}

/** The relay event E inside a mediaEvent push payload {"data": D}. */
export function parseRelay(payload) {
  assert.equal(typeof payload?.data, "string", `mediaEvent data is a JSON string: ${JSON.stringify(payload)}`);
  return JSON.parse(payload.data);
}

/* ----------------------------------------------------------------------------------------------
   Peers: a channel on a room topic with an inbox of relay events
   -------------------------------------------------------------------------------------------- */

export class Peer {
  constructor(name, socket, channel) {
    this.name = name;
    this.socket = socket;
    this.channel = channel;
    this.id = null;
    this.inbox = []; // relay events received and not yet taken
    this.waiters = [];
    this.joinOks = 0; // join ok replies, counting automatic rejoins
    channel.on("mediaEvent", (payload) => {
      this.inbox.push(parseRelay(payload));
      this.wake();
    });
  }

  wake() {
    for (const waiter of [...this.waiters]) {
      const index = this.inbox.findIndex(waiter.match);
      if (index >= 0) {
        const [event] = this.inbox.splice(index, 1);
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        clearTimeout(waiter.timer);
        waiter.resolve(event);
      }
    }
  }

  /** Sends relay event E. */
  send(event) {
    sendRelay(this.channel, event);
  }

  /** Pushes mediaEvent {"data": D} with D as given. */
  sendData(d) {
    sendData(this.channel, d);
  }

  /**
   * Takes the first relay event matching `what` (a type name or a predicate), waiting for it
   * if needed (bounded). Other events stay in the inbox.
   */
  next(what, ms = WAIT_MS) {
    const match = typeof what === "function" ? what : (event) => event?.type === what;
    const index = this.inbox.findIndex(match);
    if (index >= 0) return Promise.resolve(this.inbox.splice(index, 1)[0]);
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve };
      waiter.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(
          new Error(
            `${this.name}: no relay event ${typeof what === "string" ? what : "matching"} within ${ms} ms; ` +
              `inbox: ${JSON.stringify(this.inbox)}`,
          ),
        );
      }, ms);
      this.waiters.push(waiter);
    });
  }

  /** Relay join with metadata M: resolves the peerAccepted data and records the id. */
  async relayJoin(metadata) {
    this.send({ type: "join", data: { metadata } });
    const accepted = await this.next("peerAccepted");
    this.id = accepted.data.id;
    return accepted.data;
  }

  /** Takes and returns every event left in the inbox. */
  drain() {
    return this.inbox.splice(0, this.inbox.length);
  }
}

let fenceCounter = 0;

/**
 * Proves that nothing else reached `peers`: `from` (relay-joined) sends each of them an
 * addressed custom event; the server keeps order per channel, so anything sent to them before
 * would arrive first. Asserts their inboxes are empty besides the fence.
 */
export async function assertNothingElse(from, ...peers) {
  for (const peer of peers) {
    const token = `fence-${++fenceCounter}`;
    from.send({ type: "custom", to: peer.id, data: { fence: token } });
    const got = await peer.next((event) => event?.type === "custom" && event.data?.fence === token);
    assert.equal(got.from, from.id);
    assert.deepEqual(peer.drain(), [], `${peer.name} received nothing else`);
  }
}

/* ----------------------------------------------------------------------------------------------
   One test's world: a server, its sockets, and a cleanup that checks the server
   -------------------------------------------------------------------------------------------- */

export class Env {
  constructor(server) {
    this.server = server;
    this.sockets = [];
  }

  get port() {
    return this.server.port;
  }

  /** A connected Phoenix socket (V2 unless opts say otherwise), disconnected at cleanup. */
  async socket(opts = {}) {
    const socket = makeSocket(this.port, opts);
    this.sockets.push(socket);
    socket.connect();
    await waitOpen(socket);
    return socket;
  }

  /** A channel on `topic` joined on `socket` (a new V2 socket when omitted), as a Peer. */
  async peer(name, topic, socket = undefined) {
    socket = socket ?? (await this.socket());
    const channel = socket.channel(topic, {});
    const peer = new Peer(name, socket, channel);
    const reply = await joinChannel(channel, WAIT_MS, () => peer.joinOks++);
    assert.deepEqual(reply, { status: "ok", response: {} }, `${name} joins ${topic}`);
    return peer;
  }

  /** Stops the server and starts it again with the same flags on the same port. */
  async restartServer() {
    await stopServer(this.server);
    this.server = await startServer(this.server.args, this.server.port, this.server.binary);
  }

  async cleanup() {
    await Promise.all(this.sockets.map((socket) => disconnect(socket)));
    await stopServer(this.server);
  }
}

/**
 * Runs `body(env)` against a fresh demo server (or `binary`) started with `args`; afterwards
 * disconnects every socket and stops the server, failing on a bad exit or a sanitizer report.
 */
export async function withServer(args, body, binary = DEMO_SERVER) {
  const env = new Env(await startServer(args, undefined, binary));
  let failure = null;
  try {
    await body(env);
  } catch (error) {
    failure = error;
  }
  try {
    await env.cleanup();
  } catch (error) {
    if (!failure) throw error;
    throw new AggregateError([failure, error], `${failure.message}\nand at cleanup: ${error.message}`);
  }
  if (failure) throw failure;
}
