// Browser test of the demo page (examples/web) against the demo server.
//
// Three headless Chromium instances (Debian's /usr/bin/chromium, driven by playwright-core;
// browsers are never downloaded) join one room with fake camera and microphone and call each
// other peer to peer. Checked, each step within 20 s: everyone sees the two others' video playing
// (a nonzero videoWidth, and inbound RTP video bytes that grow); mute and rename reach the others;
// one participant clicks Leave and the others see its tile go; the server is killed and started
// again on the same port, the pages reconnect, rejoin and call each other again, media flowing;
// the one who left joins again from the form. A screenshot of a page with three participants is
// saved to build/browser/three_participants.png.
//
// The cluster run: three demo servers behind HAProxy (examples/cluster/haproxy.cfg); two pages
// in a call through it; the server holding their room is killed; they are in a call again, on
// another server, within 15 s; that server is then restarted (SIGTERM: drain, close 1012) and
// they move again without the page showing a notice. Without HAProxy it is skipped, saying so.
//
// Run: cd tests/browser && npm ci && node --test
// Env: DEMO_SERVER = the demo server binary (default ../../build/demo_server); CHROMIUM = the
// browser (default /usr/bin/chromium). The server and the pages use loopback only (the calls'
// media goes between this machine's own addresses). Without the browser the test is skipped,
// saying so. The pages' consoles are saved in build/browser/console_*.log.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installed, startHaproxy, stopHaproxy } from '../cluster/haproxy.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'; // Debian's package
const DEMO_SERVER = process.env.DEMO_SERVER
  ? path.resolve(process.env.DEMO_SERVER)
  : path.join(REPO, 'build/demo_server');
const WEB_ROOT = path.join(REPO, 'examples/web');
const SCREENSHOT = path.join(REPO, 'build/browser/three_participants.png');
const LOG_DIR = path.join(REPO, 'build/browser');
const STEP_MS = 20000;
const ROOM = 'test';

const chromiumMissing = !fs.existsSync(CHROMIUM);
if (chromiumMissing) {
  console.log(`SKIPPED: Chromium is not installed (${CHROMIUM} does not exist), so the browser test did not run.`);
}

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

// ---------- the demo server ----------

class DemoServer {
  constructor(port) {
    this.port = port;
    this.child = null;
    this.output = [];
  }

  async start() {
    const deadline = Date.now() + STEP_MS;
    // Retried: right after a kill the port can take a moment to be free again.
    for (;;) {
      const child = spawn(DEMO_SERVER, ['--port', String(this.port), '--web-root', WEB_ROOT], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.child = child;
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      child.exitedPromise = exited;
      for (const stream of [child.stdout, child.stderr]) {
        stream.setEncoding('utf8');
        stream.on('data', (text) => this.output.push(...text.split('\n').filter(Boolean)));
      }
      child.on('error', (err) => this.output.push(`spawn error: ${err.message}`));
      const ready = await Promise.race([this.waitForHttp(deadline), exited.then(() => false)]);
      if (ready) return;
      if (child.exitCode === null) await this.stop();
      if (Date.now() > deadline) {
        throw new Error(`demo server did not start on port ${this.port}:\n${this.log()}`);
      }
      await sleep(200);
    }
  }

  async waitForHttp(deadline) {
    while (Date.now() < deadline && this.child && this.child.exitCode === null) {
      try {
        const response = await fetch(`http://127.0.0.1:${this.port}/`);
        if (response.ok) return true;
      } catch (err) {
        // not listening yet
      }
      await sleep(100);
    }
    return false;
  }

  // SIGKILL: the server goes away without closing its connections politely.
  async stop(signal = 'SIGKILL') {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await child.exitedPromise;
  }

  log() {
    return this.output.slice(-40).join('\n');
  }
}

// ---------- browsers ----------

async function openParticipant(name) {
  const { chromium } = await import('playwright-core');
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'videoroom-browser-'));
  // launchPersistentContext passes --user-data-dir itself: one fresh profile per participant.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--disable-quic',
      // The test runs in a network namespace with only the loopback interface (see the
      // Makefile's browser-test): WebRTC must be allowed to use it.
      '--allow-loopback-in-peer-connection',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  const participant = { name, context, page, userDataDir, log: [], errors: [] };
  const started = Date.now();
  page.on('console', (message) =>
    participant.log.push(`${((Date.now() - started) / 1000).toFixed(3)} ${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => {
    participant.errors.push(String(error));
    participant.log.push(`pageerror: ${error}`);
  });
  return participant;
}

async function closeParticipant(participant) {
  try {
    await participant.context.close();
  } finally {
    fs.rmSync(participant.userDataDir, { recursive: true, force: true });
  }
}

// Polls fn in the page until check(value) holds; fails after the step's time with the last value
// and the end of the page's console.
async function waitInPage(participant, what, fn, check, timeoutMs = STEP_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await participant.page.evaluate(fn);
    if (check(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`${participant.name}: timed out waiting for ${what}; last value: ` +
        `${JSON.stringify(last)}\n--- ${participant.name}'s console ---\n${participant.log.slice(-30).join('\n')}`);
    }
    await sleep(250);
  }
}

const peersOf = () => window.videoroom.peers();
const statsOf = () => window.videoroom.stats();

// Waits until the participant is in a call with exactly `names`, under peer ids none of which is
// in `oldIds`, every video playing, and the video bytes from each peer growing.
async function expectCallWith(participant, names, oldIds = new Set()) {
  const wanted = [...names].sort();
  const first = await waitInPage(participant, `video from ${wanted.join(', ')}`, statsOf, (stats) => {
    const entries = Object.entries(stats);
    return entries.length === wanted.length &&
      JSON.stringify(entries.map(([, s]) => s.name).sort()) === JSON.stringify(wanted) &&
      entries.every(([id, s]) => !oldIds.has(id) && s.videoWidth > 0 && s.inboundBytes > 0);
  });
  await waitInPage(participant, 'inbound video bytes to grow', statsOf, (stats) =>
    Object.keys(first).every((id) => stats[id] && stats[id].inboundBytes > first[id].inboundBytes));
  return new Set(Object.keys(first));
}

async function remoteTileCount(participant) {
  return participant.page.locator('.tile.remote').count();
}

test('three browsers call each other through the demo server', {
  skip: chromiumMissing ? `Chromium is not installed (${CHROMIUM}); browser test skipped` : false,
  timeout: 12 * STEP_MS,
}, async () => {
  assert.ok(fs.existsSync(DEMO_SERVER), `demo server binary not found: ${DEMO_SERVER} (make build/demo_server, or set DEMO_SERVER)`);
  const port = await freePort();
  const server = new DemoServer(port);
  const participants = [];
  const url = (name) => `http://127.0.0.1:${port}/?room=${ROOM}&name=${name}`;
  try {
    await server.start();
    // One browser (and profile) each, opened one after the other so a failed launch leaves
    // nothing unclosed.
    for (const name of ['Alice', 'Bob', 'Carol']) participants.push(await openParticipant(name));
    const [alice, bob, carol] = participants;

    // 1. Three join by link; each sees the two others' video.
    for (const p of participants) await p.page.goto(url(p.name));
    const ids = new Map();
    await Promise.all(participants.map(async (p) => {
      const others = participants.filter((o) => o !== p).map((o) => o.name);
      ids.set(p.name, await expectCallWith(p, others));
    }));
    for (const p of participants) assert.equal(await remoteTileCount(p), 2, `${p.name} shows two remote tiles`);

    // 2. Mute and rename reach the others (relay updatePeerMetadata -> peerUpdated).
    await bob.page.click('#toggle-mic');
    for (const p of [alice, carol]) {
      await waitInPage(p, "Bob's mute indicator", () =>
        window.videoroom.peers().find((peer) => peer.name === 'Bob')?.muted === true &&
        document.querySelectorAll('.tile.remote.muted').length === 1, Boolean);
    }
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await alice.page.screenshot({ path: SCREENSHOT });

    await bob.page.click('#rename');
    await bob.page.fill('#rename-input', 'Robert');
    await bob.page.click('#rename-form button[type="submit"]');
    for (const p of [alice, carol]) {
      await waitInPage(p, 'the new name Robert', () =>
        [...document.querySelectorAll('.tile.remote .name')].some((e) => e.textContent === 'Robert'), Boolean);
    }

    // 3. Carol leaves: her tile goes from the other two pages.
    await carol.page.click('#leave');
    for (const p of [alice, bob]) {
      await waitInPage(p, "Carol's tile to go", () => ({
        peers: window.videoroom.peers().map((peer) => peer.name),
        tiles: document.querySelectorAll('.tile.remote').length,
      }), ({ peers, tiles }) => peers.length === 1 && !peers.includes('Carol') && tiles === 1);
    }
    assert.equal(await carol.page.locator('#join-view').isVisible(), true, 'Carol is back at the join form');

    // 4. The server dies and comes back on the same port: Alice and Bob reconnect, rejoin (new
    //    peer ids) and call each other again.
    const oldIds = new Set([...ids.values()].flatMap((set) => [...set]));
    await server.stop('SIGKILL');
    await waitInPage(alice, 'the reconnecting banner', () => {
      const banner = document.getElementById('connection-banner');
      return banner.hidden ? '' : banner.textContent;
    }, (text) => /reconnecting/i.test(text));
    await server.start();
    await Promise.all([
      expectCallWith(alice, ['Robert'], oldIds),
      expectCallWith(bob, ['Alice'], oldIds),
    ]);
    await waitInPage(alice, 'the banner to go', () => document.getElementById('connection-banner').hidden, Boolean);

    // 5. Carol joins again from the form (prefilled with the room and her name).
    assert.equal(await carol.page.inputValue('#room-input'), ROOM);
    await carol.page.click('#join-button');
    await Promise.all([
      expectCallWith(alice, ['Robert', 'Carol'], oldIds),
      expectCallWith(bob, ['Alice', 'Carol'], oldIds),
      expectCallWith(carol, ['Alice', 'Robert'], oldIds),
    ]);

    for (const p of participants) assert.deepEqual(p.errors, [], `${p.name}: no uncaught errors in the page`);
  } catch (err) {
    err.message += `\n--- demo server ---\n${server.log()}\n(page consoles saved in ${LOG_DIR})`;
    throw err;
  } finally {
    // The whole console of every page, for a post-mortem.
    fs.mkdirSync(LOG_DIR, { recursive: true });
    for (const p of participants) fs.writeFileSync(path.join(LOG_DIR, `console_${p.name}.log`), p.log.join('\n') + '\n');
    await Promise.allSettled(participants.map(closeParticipant));
    await server.stop('SIGTERM');
  }
});

// ---------- several servers behind HAProxy ----------

const haproxyMissing = !installed('haproxy');
if (haproxyMissing) console.log('SKIPPED: HAProxy is not installed, so the browser test\'s cluster run did not run.');

test('two browsers in a call through HAProxy move to another server when theirs is killed', {
  skip: chromiumMissing ? `Chromium is not installed (${CHROMIUM}); browser test skipped`
    : haproxyMissing ? 'HAProxy is not installed; cluster run skipped' : false,
  timeout: 6 * STEP_MS,
}, async () => {
  const servers = [];
  const participants = [];
  let proxy = null;
  const room = 'cluster';
  try {
    for (let i = 0; i < 3; i++) {
      const server = new DemoServer(await freePort());
      servers.push(server);
      await server.start();
    }
    const port = await freePort();
    proxy = await startHaproxy(port, servers.map((server) => server.port));
    for (const name of ['Alice', 'Bob']) participants.push(await openParticipant(`cluster-${name}`));
    const [alice, bob] = participants;
    await alice.page.goto(`http://127.0.0.1:${port}/?room=${room}&name=Alice`);
    await bob.page.goto(`http://127.0.0.1:${port}/?room=${room}&name=Bob`);
    const ids = await Promise.all([expectCallWith(alice, ['Bob']), expectCallWith(bob, ['Alice'])]);
    const holding = () => servers.filter((server) => server.output.some((line) => line.includes(`room:${room},`)));
    assert.equal(holding().length, 1, 'one server holds the room');
    const [holder] = holding();

    // the server holding the room dies: both pages are in a call again, on another server
    const oldIds = new Set(ids.flatMap((set) => [...set]));
    const killedAt = Date.now();
    await holder.stop('SIGKILL');
    await Promise.all([expectCallWith(alice, ['Bob'], oldIds), expectCallWith(bob, ['Alice'], oldIds)]);
    const elapsed = Date.now() - killedAt;
    console.log(`# in a call again ${elapsed} ms after the kill`);
    assert.ok(elapsed <= 15000, `in a call again within 15 s (took ${elapsed} ms)`);
    const holders = holding().filter((server) => server !== holder);
    assert.equal(holders.length, 1, 'another server holds the room now');

    // that server is restarted (SIGTERM: it drains, then closes with 1012): the pages move
    // again, and show no notice while they do
    for (const p of participants) {
      await p.page.evaluate(() => {
        const banner = document.getElementById('connection-banner');
        window.bannerShown = [];
        new MutationObserver(() => { if (!banner.hidden) window.bannerShown.push(banner.textContent); })
          .observe(banner, { attributes: true, childList: true, characterData: true, subtree: true });
      });
    }
    const movedIds = new Set(ids.flatMap((set) => [...set]));
    const current = await Promise.all([expectCallWith(alice, ['Bob'], oldIds), expectCallWith(bob, ['Alice'], oldIds)]);
    for (const set of current) for (const id of set) movedIds.add(id);
    const drainedAt = Date.now();
    const draining = holders[0].stop('SIGTERM');
    await Promise.all([expectCallWith(alice, ['Bob'], movedIds), expectCallWith(bob, ['Alice'], movedIds)]);
    console.log(`# in a call again ${Date.now() - drainedAt} ms after SIGTERM (3 s of drain)`);
    await draining;
    for (const p of participants) {
      assert.deepEqual(await p.page.evaluate(() => window.bannerShown), [], `${p.name} showed no notice on 1012`);
      assert.deepEqual(p.errors, [], `${p.name}: no uncaught errors in the page`);
    }
  } catch (err) {
    err.message += `\n--- servers ---\n${servers.map((s) => s.log()).join('\n---\n')}` +
      `\n--- haproxy ---\n${proxy ? proxy.output : ''}`;
    throw err;
  } finally {
    fs.mkdirSync(LOG_DIR, { recursive: true });
    for (const p of participants) fs.writeFileSync(path.join(LOG_DIR, `console_${p.name}.log`), p.log.join('\n') + '\n');
    await Promise.allSettled(participants.map(closeParticipant));
    await stopHaproxy(proxy);
    for (const server of servers) await server.stop('SIGTERM');
  }
});
