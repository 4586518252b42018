// Three demo servers behind HAProxy with examples/cluster/haproxy.cfg as written (only the
// addresses, which it takes from the environment, are this test's loopback ports). Thirty
// official Phoenix clients (npm `phoenix` over `ws`) in ten rooms, each naming its room in the
// socket URL:
//   - each room's peers see each other, and the rooms are spread over at least two servers;
//   - kill -9 one server: within 10 s each of its clients is back in its room with the same
//     room-mates (relay join / peerAccepted), and no client of another server reconnected;
//   - SIGTERM another: /health says 503 while it drains, its clients are closed with 1012 and
//     move without any error reply, it exits 0 (no sanitizer report), the others never notice;
//   - a join for a room other than the socket's gets the error;
//   - the survivor's /metrics passes `promtool check metrics` and its figures match the test.
// Without HAProxy (or promtool, for the last check) the test says so and skips.
//
// Run: make cluster-test (uses tests/e2e's node_modules: phoenix, ws).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  WAIT_MS,
  delay,
  disconnect,
  freePort,
  makeSocket,
  startServer,
  stopServer,
  withTimeout,
} from "../e2e/helpers.mjs";
import { installed, startHaproxy, stopHaproxy } from "./haproxy.mjs";
import { serverOf, startRooms, waitRoomsWhole } from "./members.mjs";

const ROOM_COUNT = 10;
const PEERS_PER_ROOM = 3;
const FAILOVER_MS = 10000;
const DRAIN_SECONDS = 2;
const ROOM_ONLY = "this socket may join only the room named in its URL";

const haproxyMissing = !installed("haproxy");
const promtoolMissing = !installed("promtool");
if (haproxyMissing) console.log("SKIPPED: HAProxy is not installed (Debian: haproxy), so the cluster test did not run.");

async function metricsOf(server) {
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  return response.text();
}

/** The value of one sample in the Prometheus text format (`name` or `name{labels}`). */
function sample(text, series) {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  assert.ok(line, `/metrics has ${series}`);
  return Number(line.slice(series.length + 1));
}

test("rooms sharded over three servers survive a crash and a drain", { skip: haproxyMissing, timeout: 90000 }, async () => {
  const servers = [];
  const members = [];
  let proxy = null;
  try {
    for (let i = 0; i < 3; i++) servers.push(await startServer(["--drain-seconds", String(DRAIN_SECONDS)]));
    proxy = await startHaproxy(await freePort(), servers.map((server) => server.port));

    // 30 clients in 10 rooms: every room's peers see each other
    const rooms = startRooms(ROOM_COUNT, PEERS_PER_ROOM, proxy.port);
    members.push(...[...rooms.values()].flat());
    await waitRoomsWhole(servers, rooms, 10000, "every room formed", proxy);
    const roomServer = (room) => serverOf(servers, rooms.get(room)[0].id);
    const used = new Set([...rooms.keys()].map(roomServer));
    assert.ok(used.size >= 2, `rooms spread over ${used.size} server(s)`);

    // kill -9 the server holding the most rooms
    const count = (i) => [...rooms.keys()].filter((room) => roomServer(room) === i).length;
    const victim = [0, 1, 2].sort((a, b) => count(b) - count(a))[0];
    const moved = members.filter((member) => serverOf(servers, member.id) === victim);
    const stayed = members.filter((member) => !moved.includes(member));
    assert.ok(moved.length > 0);
    const killedAt = Date.now();
    servers[victim].child.kill("SIGKILL");
    await servers[victim].exited;
    await waitRoomsWhole(servers, rooms, FAILOVER_MS, `the ${moved.length} clients of the killed server back in their rooms`, proxy, () =>
      moved.every((member) => member.accepts >= 2),
    );
    console.log(`# failover after kill -9: ${Date.now() - killedAt} ms for ${moved.length} clients`);
    for (const member of moved) assert.notEqual(serverOf(servers, member.id), victim);
    for (const member of stayed) assert.ok(!member.reconnected, `${member.name} (another server) never reconnected`);

    // SIGTERM the live server holding the most rooms now: it drains, then closes with 1012
    const live = [0, 1, 2].filter((i) => i !== victim);
    const drained = live.sort((a, b) => count(b) - count(a))[0];
    const survivor = live.find((i) => i !== drained);
    const leaving = members.filter((member) => serverOf(servers, member.id) === drained);
    const staying = members.filter((member) => serverOf(servers, member.id) === survivor);
    const opensBefore = new Map(staying.map((member) => [member, [member.opens, member.closeCodes.length, member.joinOks]]));
    assert.ok(leaving.length > 0);
    const acceptsBefore = new Map(leaving.map((member) => [member, member.accepts]));
    const closesBefore = new Map(leaving.map((member) => [member, member.closeCodes.length]));
    const drainedAt = Date.now();
    const stopping = stopServer(servers[drained]);
    let health = 0;
    const healthDeadline = Date.now() + 1000;
    while (health !== 503 && Date.now() < healthDeadline) {
      health = (await fetch(`http://127.0.0.1:${servers[drained].port}/health`)).status;
      if (health !== 503) await delay(20);
    }
    assert.equal(health, 503, "a draining server's /health says 503");
    assert.equal(sample(await metricsOf(servers[drained]), "vrs_draining"), 1);
    await waitRoomsWhole(
      servers,
      rooms,
      DRAIN_SECONDS * 1000 + FAILOVER_MS,
      `the ${leaving.length} clients of the drained server back in their rooms`,
      proxy,
      () => leaving.every((member) => member.accepts > acceptsBefore.get(member)),
    );
    console.log(`# drain: ${leaving.length} clients moved ${Date.now() - drainedAt} ms after SIGTERM (grace ${DRAIN_SECONDS} s)`);
    await stopping; // exit 0, no sanitizer report
    for (const member of leaving) {
      assert.equal(member.closeCodes[closesBefore.get(member)], 1012, `${member.name} was closed with 1012`);
      assert.equal(serverOf(servers, member.id), survivor);
    }
    for (const member of staying) {
      const now = [member.opens, member.closeCodes.length, member.joinOks];
      assert.deepEqual(now, opensBefore.get(member), `${member.name} (on the survivor) did not reconnect`);
    }
    for (const member of members) assert.deepEqual(member.errorReplies, [], `${member.name} got no error reply`);

    // a socket naming one room may not join another
    const stray = makeSocket(proxy.port, { params: { room: "room-0" } });
    stray.connect();
    const refused = await withTimeout(
      new Promise((resolve) => stray.channel("room:room-1", {}).join(WAIT_MS).receive("error", resolve)),
      WAIT_MS,
      "the join for another room refused",
    );
    assert.deepEqual(refused, { reason: ROOM_ONLY });

    // the survivor's metrics: valid for Prometheus, and what this test did
    const metrics = await metricsOf(servers[survivor]);
    if (promtoolMissing) {
      console.log("SKIPPED: promtool is not installed (Debian: prometheus): /metrics was not linted.");
    } else {
      const lint = spawnSync("promtool", ["check", "metrics"], { input: metrics, encoding: "utf8" });
      assert.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
    }
    assert.equal(sample(metrics, "vrs_rooms"), ROOM_COUNT);
    assert.equal(sample(metrics, "vrs_channels"), members.length);
    assert.equal(sample(metrics, "vrs_relay_peers"), members.length);
    assert.equal(sample(metrics, "vrs_phoenix_sockets"), members.length + 1);
    assert.equal(sample(metrics, "vrs_draining"), 0);
    assert.equal(sample(metrics, `vrs_join_failures_total{reason="${ROOM_ONLY}"}`), 1);
    assert.equal(sample(metrics, `vrs_join_failures_total{reason="room is full"}`), 0);
    assert.equal(sample(metrics, "vrs_connections_refused_total"), 0);
    for (const code of [1000, 1001, 1002, 1006, 1007, 1009, 1012, 1013])
      assert.equal(sample(metrics, `vrs_websocket_closes_total{code="${code}"}`), 0, `no socket of the survivor closed (${code})`);
    assert.ok(sample(metrics, "vrs_messages_received_total") >= members.length * 2, "joins and relay joins received");
    assert.ok(sample(metrics, "vrs_received_bytes_total") > 0 && sample(metrics, "vrs_sent_bytes_total") > 0);
    await Promise.all([stray, ...members.map((member) => member.socket)].map((socket) => disconnect(socket)));
    await stopServer(servers[survivor]);
  } finally {
    await Promise.all(members.map((member) => disconnect(member.socket)));
    await stopHaproxy(proxy);
    for (const server of servers) {
      if (!server.exit) server.child.kill("SIGKILL");
      await server.exited;
    }
  }
});
