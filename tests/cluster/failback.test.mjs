// A killed server comes back without splitting the rooms that moved away from it. Three demo
// servers behind HAProxy with examples/cluster/haproxy.cfg as written; twelve rooms of two
// official Phoenix clients each:
//   - kill -9 the server holding the most rooms: its clients re-form their rooms on the others;
//   - start it again on its port and wait until HAProxy's health checks see it UP;
//   - a newcomer joins every room: each lands with its room-mates (they see each other in the
//     relay, all on one server), also in the rooms the returned server held before it died,
//     which the room's hash names again.
// Without HAProxy the test says so and skips.
//
// Run: make cluster-test (uses tests/e2e's node_modules: phoenix, ws).
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort, startServer } from "../e2e/helpers.mjs";
import { installed, startHaproxy, waitServerUp } from "./haproxy.mjs";
import { Member, serverOf, startRooms, stopCluster, waitRoomsWhole } from "./members.mjs";

const ROOM_COUNT = 12;
const PEERS_PER_ROOM = 2;
const FAILOVER_MS = 10000;

const haproxyMissing = !installed("haproxy");
if (haproxyMissing) console.log("SKIPPED: HAProxy is not installed (Debian: haproxy), so the failback test did not run.");

test("a killed server that comes back does not split the rooms that moved away", { skip: haproxyMissing, timeout: 60000 }, async () => {
  const servers = [];
  let rooms = new Map();
  let proxy = null;
  try {
    for (let i = 0; i < 3; i++) servers.push(await startServer());
    proxy = await startHaproxy(await freePort(), servers.map((server) => server.port));
    rooms = startRooms(ROOM_COUNT, PEERS_PER_ROOM, proxy.port);
    await waitRoomsWhole(servers, rooms, 10000, "every room formed", proxy);

    const roomServer = (room) => serverOf(servers, rooms.get(room)[0].id);
    const count = (i) => [...rooms.keys()].filter((room) => roomServer(room) === i).length;
    const victim = [0, 1, 2].sort((a, b) => count(b) - count(a))[0];
    const movedRooms = [...rooms.keys()].filter((room) => roomServer(room) === victim);
    assert.ok(movedRooms.length > 0);
    const port = servers[victim].port;
    servers[victim].child.kill("SIGKILL");
    await servers[victim].exited;
    const moved = movedRooms.flatMap((room) => rooms.get(room));
    await waitRoomsWhole(servers, rooms, FAILOVER_MS, "the killed server's rooms re-formed elsewhere", proxy, () =>
      moved.every((member) => member.accepts >= 2),
    );

    // the same server back on its port, healthy in HAProxy's eyes
    const logSeen = proxy.output.length;
    servers[victim] = await startServer([], port);
    await waitServerUp(proxy, `vrs${victim + 1}`, logSeen);

    const newcomers = [];
    for (const [room, members] of rooms) {
      const newcomer = new Member(`${room}/newcomer`, room, proxy.port);
      members.push(newcomer);
      newcomers.push(newcomer);
      newcomer.start();
    }
    await waitRoomsWhole(servers, rooms, 10000, "every newcomer with its room-mates", proxy);
    for (const room of movedRooms) assert.notEqual(roomServer(room), victim, `${room} stayed where it moved`);
    for (const members of rooms.values()) for (const member of members) assert.deepEqual(member.errorReplies, []);
    await stopCluster(servers, rooms, proxy, true);
  } finally {
    await stopCluster(servers, rooms, proxy);
  }
});
