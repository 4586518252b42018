// HAProxy with examples/cluster/haproxy.cfg as written, for the tests: only the addresses,
// which the configuration takes from the environment, are the test's loopback ports. No npm
// package is needed here, so the cluster test and the browser test both use it.
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const HAPROXY_CONFIG = path.resolve(here, "../../examples/cluster/haproxy.cfg");
export const HAPROXY = process.env.HAPROXY || "haproxy";

/** 1 when `command` is on PATH (or in /usr/sbin, where Debian puts haproxy). */
export function installed(command) {
  return spawnSync("sh", ["-c", `command -v ${command} || test -x /usr/sbin/${command}`]).status === 0;
}

/**
 * HAProxy in the foreground on 127.0.0.1:`port` in front of the servers on `serverPorts`;
 * resolves once it answers /health (through to a server), within 10 s.
 */
export async function startHaproxy(port, serverPorts) {
  const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin`, VRS_LISTEN: `127.0.0.1:${port}` };
  serverPorts.forEach((serverPort, i) => (env[`VRS_${i + 1}`] = `127.0.0.1:${serverPort}`));
  const child = spawn(HAPROXY, ["-db", "-f", HAPROXY_CONFIG], { env, stdio: ["ignore", "pipe", "pipe"] });
  const proxy = { port, child, output: "", exit: null };
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding("utf8");
    stream.on("data", (text) => (proxy.output += text));
  }
  proxy.exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => resolve((proxy.exit = { code, signal })));
    child.on("error", (error) => resolve((proxy.exit = { error: error.message })));
  });
  const deadline = Date.now() + 10000;
  for (;;) {
    if (proxy.exit) throw new Error(`haproxy exited: ${JSON.stringify(proxy.exit)}\n${proxy.output}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) return proxy;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stopHaproxy(proxy);
      throw new Error(`haproxy did not answer within 10 s\n${proxy.output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Stops HAProxy (SIGTERM, then SIGKILL after 5 s). */
export async function stopHaproxy(proxy) {
  if (!proxy || proxy.exit) return;
  proxy.child.kill("SIGTERM");
  const timer = setTimeout(() => proxy.child.kill("SIGKILL"), 5000);
  await proxy.exited;
  clearTimeout(timer);
}

/**
 * Resolves once HAProxy's log, after its first `since` characters, says that server `name`
 * (vrs1, vrs2...) is UP: its health checks passed again. Rejects after `ms`.
 */
export async function waitServerUp(proxy, name, since, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!proxy.output.slice(since).includes(`/${name} is UP`)) {
    if (Date.now() > deadline) throw new Error(`HAProxy did not see ${name} UP within ${ms} ms\n${proxy.output}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
