// Browser test of the demo page in SFU mode: examples/sfu's host driving a real Janus.
//
// Janus (Debian's, with the configuration in examples/sfu/janus) and the SFU host run here,
// inside the network namespace the Makefile's browser-sfu-test makes: loopback plus a veth pair
// with addresses of its own (Janus gathers no ICE candidates on loopback), so no media leaves
// the namespace. Six Chromium pages join one room with fake camera and microphone. Checked,
// each step within STEP_MS: every page plays the five others' video (a nonzero videoWidth, and
// inbound video bytes that grow) and sends exactly one outbound video stream (getStats); mute
// and rename reach the others; one page leaves and its feed goes from the five others, and its Janus session with it (admin API
// list_sessions); a seventh joins and every page plays its video; Janus is killed and started
// again, the pages are told, rejoin and play every video again; when the pages are gone, Janus
// holds no session but the host's own. Figures (upstream bytes per second of one page, CPU of the host and of Janus
// while six are in the room) are printed.
//
// Run: make browser-sfu-test. Env: SFU_SERVER (default ../../build/sfu_server), JANUS
// (/usr/bin/janus), CHROMIUM (/usr/bin/chromium). Skipped, saying so, when Janus or Chromium
// is missing or no interface but loopback is up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const JANUS = process.env.JANUS || '/usr/bin/janus';
const SFU_SERVER = process.env.SFU_SERVER ? path.resolve(process.env.SFU_SERVER) : path.join(REPO, 'build/sfu_server');
const JANUS_CONFIG = path.join(REPO, 'examples/sfu/janus');
const WEB_ROOT = path.join(REPO, 'examples/web');
const LOG_DIR = path.join(REPO, 'build/browser');
const STEP_MS = 30000;
const ROOM = 'sfu-test';
const ADMIN_SECRET = 'videoroom-admin'; // examples/sfu/janus/janus.jcfg

const hasOwnAddress = Object.values(os.networkInterfaces()).flat().some((a) => a && !a.internal && a.family === 'IPv4');
const skipReason = !fs.existsSync(CHROMIUM) ? `Chromium is not installed (${CHROMIUM})`
  : !fs.existsSync(JANUS) ? `Janus is not installed (${JANUS}; Debian: apt-get install janus)`
  : !hasOwnAddress ? 'no interface but loopback is up (run it through make browser-sfu-test, which makes one)'
  : false;
if (skipReason) console.log(`SKIPPED: ${skipReason}, so the SFU browser test did not run.`);

// One browser, a fresh profile (a temporary --user-data-dir of playwright's) and a context per page.
const BROWSER_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--disable-quic'];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// A child process whose output is kept, stopped by stop().
function start(name, command, args, options) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const output = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (text) => output.push(...text.split('\n').filter(Boolean)));
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.on('error', (err) => output.push(`spawn error: ${err.message}`));
  return {
    name, child, output,
    log: () => `--- ${name} ---\n${output.slice(-40).join('\n')}`,
    save: (file) => fs.writeFileSync(file, output.join('\n') + '\n'),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// Janus, in workDir (the configuration's socket paths are relative). Janus 1.1.2's Unix-socket
// transport can end its thread before it counts as started (a start-up race); Janus then exits
// at once with "No Janus API transport is available", and is started again.
async function startJanus(workDir, processes) {
  for (let attempt = 1; ; attempt += 1) {
    for (const name of ['janus.sock', 'janus-admin.sock']) fs.rmSync(path.join(workDir, name), { force: true });
    const janus = start('janus', JANUS, ['--configs-folder', JANUS_CONFIG, '--disable-colors'], { cwd: workDir });
    processes.push(janus);
    await waitFor('Janus\'s sockets, or Janus to exit', () => janus.child.exitCode !== null ||
      (fs.existsSync(path.join(workDir, 'janus.sock')) && fs.existsSync(path.join(workDir, 'janus-admin.sock'))));
    if (janus.child.exitCode === null) return janus;
    if (attempt === 5) throw new Error('Janus exited at start five times');
  }
}

async function waitFor(what, check, timeoutMs = STEP_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// Janus's admin API over its SOCK_SEQPACKET socket (Node has no such sockets: Python has).
function janusSessions(socketPath) {
  const script = 'import json,socket,sys\n' +
    's=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET);s.settimeout(5);s.connect(sys.argv[1])\n' +
    's.send(json.dumps({"janus":"list_sessions","transaction":"t","admin_secret":sys.argv[2]}).encode())\n' +
    'print(json.dumps(json.loads(s.recv(65536)).get("sessions")))\n';
  return JSON.parse(execFileSync('python3', ['-c', script, socketPath, ADMIN_SECRET], { encoding: 'utf8' }));
}

// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function openParticipant(browser, name) {
  const context = await browser.newContext({ viewport: { width: 640, height: 480 } });
  const page = await context.newPage();
  const participant = { name, context, page, log: [], errors: [] };
  const started = Date.now();
  page.on('console', (message) =>
    participant.log.push(`${((Date.now() - started) / 1000).toFixed(3)} ${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => {
    participant.errors.push(String(error));
    participant.log.push(`pageerror: ${error}`);
  });
  // The media events each way, shortened, for the post-mortem.
  page.on('websocket', (socket) => {
    const note = (direction) => ({ payload }) => {
      const text = String(payload);
      if (!text.includes('mediaEvent')) return;
      participant.log.push(`${((Date.now() - started) / 1000).toFixed(3)} ${direction} ${text.slice(0, 160)}`);
    };
    socket.on('framesent', note('sent'));
    socket.on('framereceived', note('received'));
  });
  return participant;
}

async function waitInPage(participant, what, fn, check, timeoutMs = STEP_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await participant.page.evaluate(fn);
    if (check(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`${participant.name}: timed out waiting for ${what}; last value: ${JSON.stringify(last)}\n` +
        `--- ${participant.name}'s console ---\n${participant.log.slice(-30).join('\n')}`);
    }
    await sleep(250);
  }
}

const statsOf = () => window.videoroom.stats();

// The participant plays video from exactly `names` (frames decoded, bytes growing).
async function expectVideoFrom(participant, names, timeoutMs = STEP_MS) {
  const wanted = [...names].sort();
  const first = await waitInPage(participant, `video from ${wanted.join(', ')}`, statsOf, (stats) => {
    const entries = Object.values(stats);
    return entries.length === wanted.length &&
      JSON.stringify(entries.map((s) => s.name).sort()) === JSON.stringify(wanted) &&
      entries.every((s) => s.videoWidth > 0 && s.inboundBytes > 0);
  }, timeoutMs);
  await waitInPage(participant, 'inbound video bytes to grow', statsOf, (stats) =>
    Object.keys(first).every((id) => stats[id] && stats[id].inboundBytes > first[id].inboundBytes));
}

// Figures: one page's upstream video bytes per second and the CPU of the given processes
// (/proc/PID/stat utime + stime), over the same ten seconds.
async function printFigures(mode, participant, pids) {
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const sample = async () => ({
    time: Date.now(),
    up: await participant.page.evaluate(() => window.videoroom.outbound()),
    cpu: Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuTicks(pid)])),
  });
  const before = await sample();
  await sleep(10000);
  const after = await sample();
  const seconds = (after.time - before.time) / 1000;
  const cpu = Object.keys(pids).map((name) =>
    `${name} CPU ${(100 * (after.cpu[name] - before.cpu[name]) / ticks / seconds).toFixed(1)}%`).join(', ');
  console.log(`${mode} figures, six in the room, over ${seconds.toFixed(1)} s: one page's upstream video ` +
    `${Math.round((after.up.bytes - before.up.bytes) / seconds)} B/s in ${after.up.streams} stream(s) ` +
    `${after.up.widths.join(', ')} pixels wide; ${cpu}`);
}

test('six browsers in one SFU room: one stream up each, five down', {
  skip: skipReason,
  timeout: 8 * STEP_MS,
}, async () => {
  assert.ok(fs.existsSync(SFU_SERVER), `SFU host not found: ${SFU_SERVER} (make build/sfu_server, or set SFU_SERVER)`);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'videoroom-sfu-'));
  const janusSocket = path.join(workDir, 'janus.sock');
  const port = await freePort();
  const processes = [];
  const participants = [];
  let browser = null;
  try {
    // Janus writes its sockets into its working directory (the configuration's paths are
    // relative), here a temporary one.
    let janus = await startJanus(workDir, processes);
    const host = start('sfu_server', SFU_SERVER, ['--port', String(port), '--janus', janusSocket, '--web-root', WEB_ROOT, '--verbose', '1']);
    processes.push(host);
    await waitFor('the host to reach Janus', () => janusSessions(path.join(workDir, 'janus-admin.sock')).length === 1);

    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS });
    const names = ['Ann', 'Ben', 'Cem', 'Dia', 'Eve', 'Fox'];
    for (const name of names) participants.push(await openParticipant(browser, name));
    const url = (name) => `http://127.0.0.1:${port}/?room=${ROOM}&name=${name}`;

    // 1. Six join: each plays the five others and sends one video stream.
    for (const p of participants) await p.page.goto(url(p.name));
    await Promise.all(participants.map((p) => expectVideoFrom(p, names.filter((n) => n !== p.name))));
    for (const p of participants) {
      const outbound = await p.page.evaluate(() => window.videoroom.outbound());
      assert.equal(outbound.streams, 1, `${p.name} sends exactly one outbound video stream`);
      assert.equal(await p.page.locator('.tile.remote').count(), 5, `${p.name} shows five remote tiles`);
    }

    await printFigures('SFU', participants[0], { host: host.child.pid, Janus: janus.child.pid });

    // Mute and rename reach the others as in the mesh (updatePeerMetadata -> peerUpdated).
    const [, ben] = participants;
    await ben.page.click('#toggle-mic');
    await ben.page.click('#rename');
    await ben.page.fill('#rename-input', 'Benedict');
    await ben.page.click('#rename-form button[type="submit"]');
    await Promise.all(participants.filter((p) => p !== ben).map((p) => waitInPage(p, 'Benedict, muted', () =>
      window.videoroom.peers().some((peer) => peer.name === 'Benedict' && peer.muted) &&
      [...document.querySelectorAll('.tile.remote.muted .name')].some((e) => e.textContent === 'Benedict'), Boolean)));
    names[1] = ben.name = 'Benedict';

    // 2. Fox leaves: his feed goes from the five others.
    const fox = participants[5];
    await fox.page.click('#leave');
    const stayed = participants.slice(0, 5);
    await Promise.all(stayed.map((p) => waitInPage(p, "Fox's feed to go", () => ({
      peers: window.videoroom.peers().map((peer) => peer.name),
      tiles: document.querySelectorAll('.tile.remote').length,
    }), ({ peers, tiles }) => peers.length === 4 && !peers.includes('Fox') && tiles === 4)));
    await Promise.all(stayed.map((p) => expectVideoFrom(p, names.slice(0, 5).filter((n) => n !== p.name))));
    // Fox's Janus session went with him: the host's own and the five others' remain.
    await waitFor('Janus to hold six sessions', () => janusSessions(path.join(workDir, 'janus-admin.sock')).length === 6);

    // 3. A seventh joins: every page plays Gil's video, and Gil the five others'.
    const gil = await openParticipant(browser, 'Gil');
    participants.push(gil);
    await gil.page.goto(url('Gil'));
    const inRoom = [...names.slice(0, 5), 'Gil'];
    await Promise.all([...stayed, gil].map((p) => expectVideoFrom(p, inRoom.filter((n) => n !== p.name))));
    assert.equal((await gil.page.evaluate(() => window.videoroom.outbound())).streams, 1, 'Gil sends one stream');

    // 4. Janus dies and comes back: the host closes the room (the pages get phx_error and
    //    rejoin), lets the joins in once Janus is back, and everyone plays everyone again.
    await janus.stop('SIGKILL');
    await waitInPage(gil, 'the page to be told', () => document.getElementById('notice-text').textContent,
      (text) => /media server is unavailable/.test(text));
    janus = await startJanus(workDir, processes);
    await Promise.all([...stayed, gil].map((p) => expectVideoFrom(p, inRoom.filter((n) => n !== p.name))));
    await waitFor('Janus to hold the host\'s session and six others',
      () => janusSessions(path.join(workDir, 'janus-admin.sock')).length === 7);

    for (const p of participants) assert.deepEqual(p.errors, [], `${p.name}: no uncaught errors in the page`);

    // 5. Everyone goes: Janus keeps no session of theirs.
    await Promise.all(participants.map((p) => p.context.close()));
    participants.length = 0;
    await waitFor('Janus to hold the host\'s session alone',
      () => janusSessions(path.join(workDir, 'janus-admin.sock')).length === 1);
  } catch (err) {
    err.message += `\n${processes.map((p) => p.log()).join('\n')}\n(page consoles saved in ${LOG_DIR})`;
    throw err;
  } finally {
    fs.mkdirSync(LOG_DIR, { recursive: true });
    for (const p of participants) fs.writeFileSync(path.join(LOG_DIR, `sfu_console_${p.name}.log`), p.log.join('\n') + '\n');
    for (const p of processes) p.save(path.join(LOG_DIR, `sfu_${p.name}.log`));
    await Promise.allSettled(participants.map((p) => p.context.close()));
    if (browser) await browser.close();
    for (const p of processes.reverse()) await p.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  }
});

// The same six pages in a mesh (the demo server and its relay logic), for the figures to compare
// with: run with MESH_FIGURES=1 (make browser-sfu-test MESH_FIGURES=1).
const DEMO_SERVER = process.env.DEMO_SERVER ? path.resolve(process.env.DEMO_SERVER) : path.join(REPO, 'build/demo_server');
test('figures: six browsers in a mesh room', {
  skip: skipReason || (process.env.MESH_FIGURES !== '1' && 'set MESH_FIGURES=1 to measure the mesh'),
  timeout: 6 * STEP_MS,
}, async () => {
  const port = await freePort();
  const server = start('demo_server', DEMO_SERVER, ['--port', String(port), '--web-root', WEB_ROOT]);
  const participants = [];
  let browser = null;
  try {
    await waitFor('the demo server', async () => (await fetch(`http://127.0.0.1:${port}/`).catch(() => null))?.ok);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS });
    const names = ['Ann', 'Ben', 'Cem', 'Dia', 'Eve', 'Fox'];
    for (const name of names) participants.push(await openParticipant(browser, name));
    for (const p of participants) await p.page.goto(`http://127.0.0.1:${port}/?room=mesh&name=${p.name}`);
    // Thirty calls take a while to settle on a busy machine.
    await Promise.all(participants.map((p) => expectVideoFrom(p, names.filter((n) => n !== p.name), 3 * STEP_MS)));
    await printFigures('Mesh', participants[0], { server: server.child.pid });
  } finally {
    await Promise.allSettled(participants.map((p) => p.context.close()));
    if (browser) await browser.close();
    await server.stop();
  }
});
