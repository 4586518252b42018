// Failover time behind HAProxy: three demo servers and examples/cluster/haproxy.cfg, 30 Phoenix
// clients (npm phoenix + ws, from tests/e2e) in 10 rooms of 3. KILLS times over, the server
// holding the most rooms is killed (SIGKILL); measured from the kill to each of its clients
// being back in its room with all its room-mates (its relay peerAccepted and peerJoined events
// show them, all on one server), and to the last of them. The killed server is started again
// and HAProxy given time to take it back before the next kill.
//
//   node bench/failover.mjs      (env: DEMO_SERVER, relative to tests/e2e; KILLS, default 10)
// Prints one line per kill and a RESULT line: per-client p50/p99/max and per-kill p50/max, ms.
import { performance } from "node:perf_hooks";
import { delay, disconnect, freePort, startServer, stopServer, waitUntil } from "../tests/e2e/helpers.mjs";
import { startHaproxy, stopHaproxy } from "../tests/cluster/haproxy.mjs";
import { Member, roomIsWhole, serverOf } from "../tests/cluster/members.mjs";

const KILLS = Number(process.env.KILLS || 10);
const ROOMS = 10;
const PEERS = 3;
const REJOIN_WAIT_MS = 3500; // HAProxy takes a returned server back after 2 checks 1 s apart

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const servers = [];
const members = [];
let proxy = null;
try {
  for (let i = 0; i < 3; i++) servers.push(await startServer([]));
  proxy = await startHaproxy(await freePort(), servers.map((server) => server.port));
  const rooms = new Map();
  for (let r = 0; r < ROOMS; r++) {
    const list = [];
    for (let p = 0; p < PEERS; p++) list.push(new Member(`room-${r}/${p}`, `room-${r}`, proxy.port));
    rooms.set(`room-${r}`, list);
    members.push(...list);
  }
  members.forEach((member) => member.start());
  const allWhole = () => [...rooms.values()].every((list) => roomIsWhole(servers, list));
  await waitUntil(allWhole, 10000, "every room formed");

  const perClient = [];
  const perKill = [];
  for (let kill = 0; kill < KILLS; kill++) {
    const count = (i) => [...rooms.values()].filter((list) => serverOf(servers, list[0].id) === i).length;
    const victim = [0, 1, 2].sort((a, b) => count(b) - count(a))[0];
    const moving = members.filter((member) => serverOf(servers, member.id) === victim);
    const accepts = new Map(moving.map((member) => [member, member.accepts]));
    const back = new Map();
    const killedAt = performance.now();
    servers[victim].child.kill("SIGKILL");
    // each client is back once it has been accepted again and its room is whole
    await waitUntil(
      () => {
        for (const member of moving) {
          if (back.has(member) || member.accepts <= accepts.get(member)) continue;
          if (roomIsWhole(servers, rooms.get(member.room))) back.set(member, performance.now() - killedAt);
        }
        return back.size === moving.length;
      },
      15000,
      `the clients of server ${victim} back in their rooms`,
    );
    const times = [...back.values()];
    perClient.push(...times);
    perKill.push(Math.max(...times));
    console.log(`kill ${kill + 1}: server ${victim + 1}, ${moving.length} clients, last back after ${Math.max(...times).toFixed(0)} ms`);
    await servers[victim].exited;
    servers[victim] = await startServer([], servers[victim].port);
    await delay(REJOIN_WAIT_MS);
  }
  perClient.sort((a, b) => a - b);
  perKill.sort((a, b) => a - b);
  const ms = (value) => value.toFixed(0);
  console.log(
    `RESULT kills=${KILLS} client_samples=${perClient.length} client_p50_ms=${ms(percentile(perClient, 50))} ` +
      `client_p99_ms=${ms(percentile(perClient, 99))} client_max_ms=${ms(perClient[perClient.length - 1])} ` +
      `kill_p50_ms=${ms(percentile(perKill, 50))} kill_max_ms=${ms(perKill[perKill.length - 1])}`,
  );
} finally {
  await Promise.all(members.map((member) => disconnect(member.socket)));
  await stopHaproxy(proxy);
  for (const server of servers) await stopServer(server).catch(() => server.child.kill("SIGKILL"));
}
