// The calls in SFU mode (/config.json says {"mode": "sfu"}): the server's room logic drives a
// Janus SFU (examples/sfu), so the page has two RTCPeerConnections whatever the room's size:
// - publish: our camera and microphone go up once; we offer, Janus answers;
// - subscribe: every other participant's tracks come down together; Janus offers (again each
//   time feeds come and go), we answer.
// Signals are `custom` media events without a target (examples/sfu/README.md):
//   {type: "sdpOffer" | "sdpAnswer", data: {connection: "publish" | "subscribe", sdp, midToTrackId}}
//   {type: "candidate", data: {connection, candidate}}
// Janus's offers name the track each mid carries ("<peer id>:<mid>"), which is how remote
// tracks find their participant's tile. Same interface as Mesh (call.js), so app.js uses either.

import { outboundVideoOf } from './call.js';

export class Sfu {
  constructor({ iceServers = [], localStream = null, signal, onTrack, onStateChange }) {
    this.iceServers = iceServers;
    this.localStream = localStream;
    this.signal = (data) => signal(undefined, data); // no target: it goes to the room logic
    this.onTrack = onTrack || (() => {});
    this.onStateChange = onStateChange || (() => {});
    this.selfId = null;
    this.publisher = null;
    this.subscriber = null;
    this.midToPeer = new Map(); // subscriber mid -> peer id, from Janus's latest offer
    this.streams = new Map(); // peer id -> MediaStream shown in its tile
    this.queue = Promise.resolve(); // signals are applied one at a time, in order
  }

  log(message, err) {
    console.warn(`sfu: ${message}`, err ?? '');
  }

  // Accepted into the call (a new id after every rejoin): publish from here.
  setSelfId(id) {
    this.selfId = id;
    if (id) this.publish();
  }

  // Peers come with the subscriber's offers, not with calls of our own.
  call() {}
  expect() {}

  hangUp(peerId) {
    this.streams.delete(peerId);
  }

  closeAll() {
    for (const pc of [this.publisher, this.subscriber]) {
      if (!pc) continue;
      pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
      pc.close();
    }
    this.publisher = this.subscriber = null;
    this.midToPeer.clear();
    this.streams.clear();
    this.queue = Promise.resolve();
  }

  connection(kind) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    pc.onicecandidate = ({ candidate }) =>
      this.signal({ type: 'candidate', data: { connection: kind, candidate: candidate ? candidate.toJSON() : null } });
    return pc;
  }

  async publish() {
    if (!this.localStream || this.publisher) return; // receive-only pages publish nothing
    const pc = this.connection('publish');
    this.publisher = pc;
    for (const track of this.localStream.getTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [this.localStream] });
    }
    try {
      await pc.setLocalDescription();
      this.signal({ type: 'sdpOffer', data: { connection: 'publish', sdp: pc.localDescription.sdp } });
    } catch (err) {
      this.log('cannot make the publish offer', err);
    }
  }

  receive(from, event) {
    if (!event || typeof event !== 'object' || !event.data) return;
    this.queue = this.queue.then(() => this.handle(event.type, event.data)).catch((err) => this.log(`${event.type} failed`, err));
  }

  async handle(type, data) {
    if (type === 'sdpAnswer' && data.connection === 'publish' && this.publisher) {
      await this.publisher.setRemoteDescription({ type: 'answer', sdp: data.sdp });
    } else if (type === 'sdpOffer' && data.connection === 'subscribe') {
      await this.answerSubscriberOffer(data);
    } else if (type === 'candidate' && data.candidate) {
      const pc = data.connection === 'publish' ? this.publisher : this.subscriber;
      if (pc) await pc.addIceCandidate(data.candidate);
    }
  }

  async answerSubscriberOffer({ sdp, midToTrackId }) {
    if (!this.subscriber) {
      const pc = this.connection('subscribe');
      this.subscriber = pc;
      pc.ontrack = () => this.assignTracks();
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed') this.log('subscriber connection failed');
        for (const peerId of this.streams.keys()) this.onStateChange(peerId, pc.connectionState);
      };
    }
    const pc = this.subscriber;
    this.midToPeer = new Map(Object.entries(midToTrackId || {}).map(([mid, trackId]) => [mid, String(trackId).split(':')[0]]));
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription();
    this.signal({ type: 'sdpAnswer', data: { connection: 'subscribe', sdp: pc.localDescription.sdp } });
    this.assignTracks();
  }

  // Puts every receiving track into its participant's stream, and takes out the tracks whose
  // mid now carries nothing (a feed that left) or someone else (Janus reuses m-lines).
  assignTracks() {
    const pc = this.subscriber;
    if (!pc) return;
    const wanted = new Map(); // peer id -> tracks
    for (const transceiver of pc.getTransceivers()) {
      const peerId = transceiver.mid !== null ? this.midToPeer.get(transceiver.mid) : undefined;
      if (!peerId || transceiver.currentDirection === 'inactive') continue;
      if (!wanted.has(peerId)) wanted.set(peerId, []);
      wanted.get(peerId).push(transceiver.receiver.track);
    }
    for (const [peerId, stream] of this.streams) {
      const tracks = wanted.get(peerId) || [];
      for (const track of stream.getTracks()) if (!tracks.includes(track)) stream.removeTrack(track);
    }
    for (const [peerId, tracks] of wanted) {
      if (!this.streams.has(peerId)) this.streams.set(peerId, new MediaStream());
      const stream = this.streams.get(peerId);
      for (const track of tracks) if (!stream.getTracks().includes(track)) stream.addTrack(track);
      this.onTrack(peerId, stream);
      this.onStateChange(peerId, pc.connectionState);
    }
  }

  connectionState(peerId) {
    return this.subscriber && this.streams.has(peerId) ? this.subscriber.connectionState : 'new';
  }

  // Bytes of video received from each peer so far, through the one subscriber connection.
  async inboundVideoBytes() {
    const result = {};
    if (!this.subscriber) return result;
    const peerOfTrack = new Map();
    for (const transceiver of this.subscriber.getTransceivers()) {
      const peerId = transceiver.mid !== null ? this.midToPeer.get(transceiver.mid) : undefined;
      if (peerId) peerOfTrack.set(transceiver.receiver.track.id, peerId);
    }
    const report = await this.subscriber.getStats();
    report.forEach((stat) => {
      if (stat.type !== 'inbound-rtp' || (stat.kind || stat.mediaType) !== 'video') return;
      const peerId = this.midToPeer.get(stat.mid) || peerOfTrack.get(stat.trackIdentifier);
      if (peerId) result[peerId] = (result[peerId] || 0) + (stat.bytesReceived || 0);
    });
    return result;
  }

  // Our video going up: how many outbound video streams, and their bytes so far.
  async outboundVideo() {
    return outboundVideoOf(this.publisher ? [this.publisher] : []);
  }
}
