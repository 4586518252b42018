// `make cluster` as a user runs it: three demo servers and HAProxy started by
// examples/cluster/run.sh, here on free loopback ports (CLUSTER_PORT, CLUSTER_SERVER_PORTS):
//   - it finds HAProxy where Debian puts it (/usr/sbin) without the sbin directories on PATH;
//   - /health answers 200 through HAProxy, and two official Phoenix clients of one room join
//     through it and see each other in the relay;
//   - Ctrl-C (SIGINT to the terminal's process group) stops every process it started, and
//     HAProxy's port is closed;
//   - the same when only the script gets SIGINT or SIGTERM (as from `kill` or a supervisor): it
//     stops the servers and HAProxy itself.
// Without HAProxy the test says so and skips.
//
// Run: make cluster-test (uses tests/e2e's node_modules: phoenix, ws; needs build/demo_server).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { disconnect, freePort, waitUntil } from "../e2e/helpers.mjs";
import { installed } from "./haproxy.mjs";
import { Member } from "./members.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SERVER_COUNT = 3;
const START_MS = 15000;
const STOP_MS = 10000;

const haproxyMissing = !installed("haproxy");
if (haproxyMissing) console.log("SKIPPED: HAProxy is not installed (Debian: haproxy), so make cluster was not tested.");

/** `count` different free loopback ports: HAProxy's, then the servers'. */
async function freePorts(count) {
  const ports = new Set();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** The processes of process group `group` that have not exited (a zombie has exited). */
function processesOf(group) {
  const alive = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // ended meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // state, ppid, pgrp, ...
    if (Number(fields[2]) === group && fields[0] !== "Z") alive.push(`${entry} ${stat.slice(stat.indexOf("("), stat.lastIndexOf(")") + 1)}`);
  }
  return alive;
}

/** Starts `command` in a process group of its own, as a shell starts a job; resolves once it says it is ready. */
async function startCluster(command, port, serverPorts) {
  // As a user runs it: the script's own choice of server (build/demo_server), not the tests',
  // and a PATH without the sbin directories, as a Debian user's, where Debian puts haproxy.
  const userPath = process.env.PATH.split(":").filter((dir) => !/\/sbin\/?$/.test(dir)).join(":");
  const env = { ...process.env, PATH: userPath, CLUSTER_PORT: String(port), CLUSTER_SERVER_PORTS: serverPorts.join(" ") };
  for (const name of ["DEMO_SERVER", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"]) delete env[name];
  const child = spawn(command[0], command.slice(1), { cwd: repo, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const cluster = { child, group: child.pid, output: "", exit: null };
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding("utf8");
    stream.on("data", (text) => (cluster.output += text));
  }
  cluster.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve((cluster.exit = { code, signal }))));
  await waitUntil(() => cluster.output.includes("Ctrl-C stops everything.") || cluster.exit, START_MS, "the cluster started");
  assert.equal(cluster.exit, null, `the cluster stopped at once:\n${cluster.output}`);
  return cluster;
}

/** /health through HAProxy, then two Phoenix clients of one room through it see each other. */
async function checkThrough(port, cluster) {
  let health = 0;
  for (const deadline = Date.now() + START_MS; health !== 200 && Date.now() < deadline; ) {
    health = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status, () => 0);
    if (health !== 200) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(health, 200, `/health through HAProxy\n${cluster.output}`);
  const members = [new Member("first", "lobby", port), new Member("second", "lobby", port)];
  try {
    members.forEach((member) => member.start());
    const [first, second] = members;
    await waitUntil(() => first.mates.has(second.id) && second.mates.has(first.id), 5000, "the two clients see each other");
    assert.deepEqual([...first.errorReplies, ...second.errorReplies], []);
  } finally {
    await Promise.all(members.map((member) => disconnect(member.socket)));
  }
}

/** Sends `signal` to `target` (a pid, or minus a process group); everything in the group ends. */
async function stopAndCheck(cluster, port, target, signal) {
  const started = processesOf(cluster.group);
  assert.ok(started.length >= SERVER_COUNT + 2, `the servers, HAProxy and the script run:\n${started.join("\n")}`);
  process.kill(target, signal);
  await waitUntil(() => processesOf(cluster.group).length === 0, STOP_MS, "every process it started ended").catch((error) => {
    throw new Error(`${error.message}: still running:\n${processesOf(cluster.group).join("\n")}\n${cluster.output}`);
  });
  await cluster.exited;
  const refused = await fetch(`http://127.0.0.1:${port}/health`).then(() => false, () => true);
  assert.ok(refused, "HAProxy's port is closed");
}

async function killLeftovers(cluster) {
  if (cluster && processesOf(cluster.group).length > 0) process.kill(-cluster.group, "SIGKILL");
}

test("make cluster: health and a room through HAProxy; Ctrl-C stops all it started", { skip: haproxyMissing, timeout: 60000 }, async () => {
  let cluster = null;
  try {
    const [port, ...serverPorts] = await freePorts(SERVER_COUNT + 1);
    cluster = await startCluster(["make", "--no-print-directory", "cluster"], port, serverPorts);
    await checkThrough(port, cluster);
    await stopAndCheck(cluster, port, -cluster.group, "SIGINT");
  } finally {
    await killLeftovers(cluster);
  }
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  test(`examples/cluster/run.sh stops all it started on ${signal} to the script alone`, { skip: haproxyMissing, timeout: 60000 }, async () => {
    let cluster = null;
    try {
      const [port, ...serverPorts] = await freePorts(SERVER_COUNT + 1);
      cluster = await startCluster(["bash", "examples/cluster/run.sh", String(SERVER_COUNT)], port, serverPorts);
      await checkThrough(port, cluster);
      await stopAndCheck(cluster, port, cluster.child.pid, signal);
    } finally {
      await killLeftovers(cluster);
    }
  });
}
