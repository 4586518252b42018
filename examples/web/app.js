// The page: join form -> camera and microphone -> Phoenix channel "room:<name>" -> relay join ->
// one WebRTC call per other participant (call.js), or, when /config.json says "mode": "sfu", one
// connection up and one down through the server's SFU (sfu.js). ui.js draws; this module holds
// the state.
//
// Reconnection: phoenix_client.js reconnects the socket and rejoins the channel by itself. The
// server has forgotten us by then (a new channel means a new relay peer id), so on every
// successful (re)join the calls made under the old id are closed and the relay join is sent
// again; its peerAccepted lists who to call. Calls keep running while the server is away, since
// media does not go through it.

import { Socket } from './phoenix_client.js';
import { Relay } from './relay.js';
import { Mesh } from './call.js';
import { Sfu } from './sfu.js';
import * as ui from './ui.js';

const MAX_NAME_LENGTH = 40;

let session = null; // the current Session, null while the join form shows

// What to keep from another participant's metadata: it is whatever their page sent.
function readMetadata(metadata) {
  const m = metadata && typeof metadata === 'object' ? metadata : {};
  return {
    name: typeof m.name === 'string' ? m.name.slice(0, MAX_NAME_LENGTH) : 'Guest',
    muted: Boolean(m.muted),
    cameraOff: Boolean(m.cameraOff),
  };
}

function socketEndpoint() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/socket`;
}

function shareUrl(room) {
  return `${location.origin}/?${new URLSearchParams({ room })}`;
}

// Camera and microphone; falls back to one of them, then to receive-only. Never throws:
// returns {stream, error}.
async function getLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, error: 'this page is not in a secure context (use https or localhost)' };
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  let firstError = null;
  for (const constraints of [{ audio: true, video }, { video }, { audio: true }]) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: firstError };
    } catch (err) {
      firstError = firstError || err;
      // Refused by the person or by policy: asking again for less will not help.
      if (err.name === 'NotAllowedError' || err.name === 'SecurityError') break;
    }
  }
  return { stream: null, error: firstError };
}

function describeMediaError(error) {
  if (typeof error === 'string') return error;
  switch (error && error.name) {
    case 'NotAllowedError': return 'access was refused';
    case 'NotFoundError': return 'no camera or microphone was found';
    case 'NotReadableError': return 'the device is in use by another application';
    default: return (error && error.message) || String(error);
  }
}

// The server's settings for the page: ICE servers, and "mode": "sfu" when its rooms are an SFU's
// (examples/sfu) rather than a mesh.
async function fetchConfig() {
  try {
    const response = await fetch('/config.json', { cache: 'no-store' });
    if (!response.ok) return { iceServers: [], mode: 'mesh' };
    const config = await response.json();
    return {
      iceServers: Array.isArray(config.iceServers) ? config.iceServers : [],
      mode: config.mode === 'sfu' ? 'sfu' : 'mesh',
    };
  } catch (err) {
    return { iceServers: [], mode: 'mesh' }; // no ICE servers are needed on one machine or a LAN
  }
}

class Session {
  constructor(room, name) {
    this.room = room;
    this.name = name;
    this.muted = false;
    this.cameraOff = false;
    this.localStream = null;
    this.selfId = null;
    this.peers = new Map(); // peer id -> {id, name, muted, cameraOff}
    this.ended = false;
    this.everJoined = false;
  }

  audioTrack() { return this.localStream ? this.localStream.getAudioTracks()[0] || null : null; }
  videoTrack() { return this.localStream ? this.localStream.getVideoTracks()[0] || null : null; }

  metadata() {
    // A missing device counts as muted / camera off, so the others' tiles say so.
    return {
      name: this.name,
      muted: this.muted || !this.audioTrack(),
      cameraOff: this.cameraOff || !this.videoTrack(),
    };
  }

  async start() {
    ui.showJoining();
    const [{ stream, error }, { iceServers, mode }] = await Promise.all([getLocalMedia(), fetchConfig()]);
    if (this.ended) { // left while the permission prompt was open
      if (stream) stream.getTracks().forEach((track) => track.stop());
      return;
    }
    this.localStream = stream;

    ui.showCall({ room: this.room, shareUrl: shareUrl(this.room) });
    if (!stream) {
      ui.notice(`Camera and microphone unavailable: ${describeMediaError(error)}. ` +
        'You joined receive-only: you can see and hear the others, they cannot see or hear you.');
    } else if (error) {
      const missing = this.videoTrack() ? 'Microphone' : 'Camera';
      ui.notice(`${missing} unavailable: ${describeMediaError(error)}.`);
    }
    this.refreshSelf();
    ui.setTileStream('self', stream);
    ui.setConnection('Connecting…');

    // One upstream connection through the SFU, or one call per participant.
    const Calls = mode === 'sfu' ? Sfu : Mesh;
    this.mesh = new Calls({
      iceServers,
      localStream: stream,
      signal: (peerId, data) => this.relay.sendTo(peerId, data),
      onTrack: (peerId, remoteStream) => ui.setTileStream(peerId, remoteStream),
      onStateChange: (peerId, state) => ui.setTileStatus(peerId, state),
    });

    // The room in the socket's URL lets a balancer send every peer of the room to one server.
    this.socket = new Socket(socketEndpoint(), {
      params: { room: this.room },
      logger: (kind, message, data) => console.debug(`[${kind}] ${message}`, data ?? ''),
    });
    this.socket.onClose(({ code }) => {
      // 1012: the server is restarting; the reconnect lands on another one, nothing to report.
      if (this.ended || code === 1012) return;
      ui.setConnection(this.everJoined
        ? 'Connection to the server lost — reconnecting…'
        : 'Cannot reach the server — reconnecting…');
    });

    this.channel = this.socket.channel(`room:${this.room}`);
    this.relay = new Relay(this.channel);
    this.channel.onJoin(() => this.joined());
    this.channel.onJoinError((err) => this.joinRefused(err));
    this.channel.onError((reason) => {
      // The socket is still up (the room went away, or the join timed out): the channel rejoins.
      if (!this.ended && this.socket.isConnected()) ui.setConnection(`Lost the room (${reason}) — rejoining…`);
    });
    this.channel.onClose(() => {
      if (!this.ended) endSession({ error: 'The server closed your place in the room.' });
    });

    this.relay.on('peerAccepted', ({ data }) => this.accepted(data));
    this.relay.on('peerJoined', ({ data }) => this.addPeer(data.peer, { newcomer: true }));
    this.relay.on('peerLeft', ({ data }) => this.removePeer(data.peerId));
    this.relay.on('peerUpdated', ({ data }) => this.updatePeer(data.peerId, data.metadata));
    this.relay.on('custom', ({ from, data }) => this.mesh.receive(from, data));
    // SFU mode: each participant's tracks come with the subscriber's offers, which say whose
    // track each one is; the tiles follow peerJoined and peerLeft.
    this.relay.on('tracksAdded', () => {});
    this.relay.on('tracksRemoved', () => {});
    this.relay.on('error', ({ data }) => {
      const message = (data && data.message) || 'error';
      console.warn('relay error:', message);
      // A signal to a peer that has just left is refused ("unknown target peer"): an expected
      // race, not something to show. Anything else is.
      if (!/target/i.test(message)) ui.notice(`The server said: ${message}`);
    });

    this.socket.connect();
    this.channel.join().catch(() => {}); // outcomes are handled by the hooks above
  }

  // Every successful (re)join: start over under the new channel.
  joined() {
    this.everJoined = true;
    ui.setConnection(null);
    this.resetCalls();
    this.relay.join(this.metadata());
  }

  resetCalls() {
    this.mesh.closeAll();
    this.peers.clear();
    this.selfId = null;
    this.mesh.setSelfId(null);
    ui.removeRemoteTiles();
  }

  accepted({ id, peersInRoom }) {
    this.selfId = id;
    this.mesh.setSelfId(id);
    for (const peer of peersInRoom || []) this.addPeer(peer, { newcomer: false });
  }

  // A newcomer calls us (we wait for its offer); the peers already here, we call.
  addPeer(peer, { newcomer }) {
    if (!peer || typeof peer.id !== 'string' || peer.id === this.selfId || this.peers.has(peer.id)) return;
    const info = { id: peer.id, ...readMetadata(peer.metadata) };
    this.peers.set(peer.id, info);
    ui.upsertTile(peer.id, info);
    ui.setTileStatus(peer.id, 'new');
    if (newcomer) this.mesh.expect(peer.id);
    else this.mesh.call(peer.id);
  }

  removePeer(peerId) {
    if (!this.peers.has(peerId)) return;
    this.peers.delete(peerId);
    this.mesh.hangUp(peerId);
    ui.removeTile(peerId);
  }

  updatePeer(peerId, metadata) {
    const info = this.peers.get(peerId);
    if (!info) return;
    Object.assign(info, readMetadata(metadata));
    ui.upsertTile(peerId, info);
  }

  joinRefused(err) {
    if (this.ended) return;
    const reason = err.reason || 'unknown error';
    const error = reason === 'room is full'
      ? `The room “${this.room}” is full. Try again later or pick another room.`
      : reason === 'invalid room id'
        ? 'That room name is not valid (1 to 64 bytes).'
        : `Could not join the room: ${reason}.`;
    endSession({ error });
  }

  refreshSelf() {
    const meta = this.metadata();
    ui.upsertTile('self', { ...meta, self: true });
    ui.setControls({
      muted: meta.muted,
      cameraOff: meta.cameraOff,
      hasAudio: Boolean(this.audioTrack()),
      hasVideo: Boolean(this.videoTrack()),
    });
  }

  // Local changes reach the others as relay metadata (peerUpdated on their side).
  publish() {
    this.refreshSelf();
    if (this.selfId) this.relay.updateMetadata(this.metadata());
  }

  toggleMic() {
    const track = this.audioTrack();
    if (!track) return;
    this.muted = !this.muted;
    track.enabled = !this.muted; // a disabled track sends silence; no renegotiation needed
    this.publish();
  }

  toggleCamera() {
    const track = this.videoTrack();
    if (!track) return;
    this.cameraOff = !this.cameraOff;
    track.enabled = !this.cameraOff; // sends black frames; the tile shows the avatar instead
    this.publish();
  }

  rename(name) {
    this.name = name.slice(0, MAX_NAME_LENGTH);
    this.publish();
    history.replaceState(null, '', `/?${new URLSearchParams({ room: this.room, name: this.name })}`);
  }

  end() {
    this.ended = true;
    if (this.mesh) this.mesh.closeAll();
    if (this.channel) {
      const socket = this.socket;
      // phx_leave first, so the others see peerLeft at once; then close the socket for good.
      this.channel.leave(2000).finally(() => socket.disconnect());
    } else if (this.socket) {
      this.socket.disconnect();
    }
    if (this.localStream) this.localStream.getTracks().forEach((track) => track.stop());
    ui.setConnection(null);
    ui.removeAllTiles();
  }
}

function startSession(room, name) {
  if (session) session.end();
  name = name.slice(0, MAX_NAME_LENGTH);
  // The address now rejoins on reload; the share link (without a name) is shown in the page.
  history.replaceState(null, '', `/?${new URLSearchParams({ room, name })}`);
  session = new Session(room, name);
  session.start().catch((err) => {
    console.error(err);
    endSession({ error: `Something went wrong: ${err.message}` });
  });
}

function endSession({ error = '' } = {}) {
  if (!session) return;
  const { room, name } = session;
  session.end();
  session = null;
  history.replaceState(null, '', `/?${new URLSearchParams({ room })}`);
  ui.showJoin({ room, name, error });
}

ui.bind({
  join: ({ room, name }) => startSession(room, name),
  toggleMic: () => session && session.toggleMic(),
  toggleCamera: () => session && session.toggleCamera(),
  currentName: () => (session ? session.name : ''),
  rename: (name) => session && session.rename(name),
  leave: () => endSession(),
});

// Testing hook (used by tests/browser): who is here, and whether their media arrives.
window.videoroom = {
  self() {
    return session ? { id: session.selfId, room: session.room, ...session.metadata() } : null;
  },
  peers() {
    if (!session) return [];
    return [...session.peers.values()].map((peer) => ({
      ...peer,
      connectionState: session.mesh.connectionState(peer.id),
    }));
  },
  // Per remote peer: the video element's width (nonzero once frames are decoded) and the video
  // bytes received so far on its RTCPeerConnection.
  async stats() {
    if (!session || !session.mesh) return {};
    const bytes = await session.mesh.inboundVideoBytes();
    const result = {};
    for (const peer of session.peers.values()) {
      const video = ui.tileVideo(peer.id);
      result[peer.id] = {
        name: peer.name,
        videoWidth: video ? video.videoWidth : 0,
        inboundBytes: bytes[peer.id] || 0,
      };
    }
    return result;
  },
  // Our own video going up: {streams: outbound video streams, bytes: sent so far, widths}.
  async outbound() {
    return session && session.mesh ? session.mesh.outboundVideo() : { streams: 0, bytes: 0, widths: [] };
  },
};

// /?room=ROOM&name=NAME joins at once; /?room=ROOM prefills the form.
const params = new URLSearchParams(location.search);
const initialRoom = (params.get('room') || '').trim();
const initialName = (params.get('name') || '').trim();
if (initialRoom && initialName) startSession(initialRoom, initialName);
else ui.showJoin({ room: initialRoom, name: initialName });
