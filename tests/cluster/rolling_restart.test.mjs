// A rolling restart keeps every room reachable. Three demo servers behind HAProxy with
// examples/cluster/haproxy.cfg as written; ten rooms of three official Phoenix clients each.
// Each server in turn gets SIGTERM, drains and exits, is started again on its port, and the next
// one follows once HAProxy's health checks see it UP. A newcomer joins each room of a server
// as it starts to drain, and every room once the server is back; each must reach its
// room-mates. In the end:
//   - every client is in its room with the same room-mates, all of a room on one server (the
//     relay's peerAccepted/peerJoined/peerLeft events);
//   - no client got an error reply;
//   - every client moved once for each drain of the server it was on, and every move began
//     with close 1012 (service restart), never another code;
//   - every server exited 0 after its drain, and at the end, with no sanitizer report.
// Without HAProxy the test says so and skips.
//
// Run: make cluster-test (uses tests/e2e's node_modules: phoenix, ws).
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort, startServer, stopServer } from "../e2e/helpers.mjs";
import { installed, startHaproxy, waitServerUp } from "./haproxy.mjs";
import { Member, serverOf, startRooms, stopCluster, waitRoomsWhole } from "./members.mjs";

const ROOM_COUNT = 10;
const PEERS_PER_ROOM = 3;
const DRAIN_SECONDS = 2;
const MOVE_MS = DRAIN_SECONDS * 1000 + 10000;
const SERVER_ARGS = ["--drain-seconds", String(DRAIN_SECONDS)];

const haproxyMissing = !installed("haproxy");
if (haproxyMissing) console.log("SKIPPED: HAProxy is not installed (Debian: haproxy), so the rolling restart test did not run.");

test("a rolling restart of every server keeps every room reachable", { skip: haproxyMissing, timeout: 90000 }, async () => {
  const servers = [];
  let rooms = new Map();
  let proxy = null;
  try {
    for (let i = 0; i < 3; i++) servers.push(await startServer(SERVER_ARGS));
    proxy = await startHaproxy(await freePort(), servers.map((server) => server.port));
    rooms = startRooms(ROOM_COUNT, PEERS_PER_ROOM, proxy.port);
    await waitRoomsWhole(servers, rooms, 10000, "every room formed", proxy);
    const firstMembers = [...rooms.values()].flat();
    const movesOf = new Map(firstMembers.map((member) => [member, 0]));
    const join = (roomList, when) => {
      for (const [room, members] of roomList) {
        const newcomer = new Member(`${room}/${when}`, room, proxy.port);
        members.push(newcomer);
        newcomer.start();
      }
    };

    for (let i = 0; i < servers.length; i++) {
      const leaving = [...rooms.values()].flat().filter((member) => serverOf(servers, member.id) === i);
      const acceptsBefore = new Map(leaving.map((member) => [member, member.accepts]));
      for (const member of leaving) if (movesOf.has(member)) movesOf.set(member, movesOf.get(member) + 1);
      const port = servers[i].port;
      const stopping = stopServer(servers[i]); // SIGTERM: drain, close with 1012, exit 0
      const drainingRooms = [...rooms].filter(([, members]) => members.some((member) => leaving.includes(member)));
      join(drainingRooms, `draining-${i + 1}`);
      await waitRoomsWhole(servers, rooms, MOVE_MS, `server ${i + 1} drained: its rooms re-formed elsewhere`, proxy, () =>
        leaving.every((member) => member.accepts > acceptsBefore.get(member)),
      );
      await stopping;
      const logSeen = proxy.output.length;
      servers[i] = await startServer(SERVER_ARGS, port);
      await waitServerUp(proxy, `vrs${i + 1}`, logSeen);
      join([...rooms], `restarted-${i + 1}`);
      await waitRoomsWhole(servers, rooms, 10000, `server ${i + 1} back: a newcomer in every room with its room-mates`, proxy);
      console.log(`# server ${i + 1} restarted: ${leaving.length} clients moved`);
    }

    await waitRoomsWhole(servers, rooms, 3000, "every room whole after the rolling restart", proxy);
    for (const members of rooms.values()) for (const member of members) assert.deepEqual(member.errorReplies, [], `${member.name} got no error reply`);
    for (const member of firstMembers) {
      assert.equal(member.closeCodes.length, movesOf.get(member), `${member.name} moved once per drain of its server`);
      for (const code of member.closeCodes) assert.equal(code, 1012, `${member.name} was moved with 1012`);
    }
    await stopCluster(servers, rooms, proxy, true);
  } finally {
    await stopCluster(servers, rooms, proxy);
  }
});
