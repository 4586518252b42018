// The calls: a full mesh, one RTCPeerConnection per remote peer, negotiated with the
// "perfect negotiation" pattern (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example).
//
// Who starts: the newcomer. Its peerAccepted lists the peers already in the room, and it creates
// a connection to each at once (adding its tracks fires negotiationneeded: an offer). The peers
// already there learn of it from peerJoined and wait for that offer, creating their connection
// when it arrives, so on a normal join nobody offers at the same time. If the offer does not come
// within a few seconds they create the connection anyway and offer themselves.
//
// Two offers can still cross (both sides fall back, an ICE restart meets a track change...), and
// perfect negotiation makes that safe: of the two, the "polite" peer gives way on a collision
// (its own offer is rolled back and it answers), the "impolite" one ignores the other's offer.
// Who is polite is decided by comparing the relay's peer ids, which both ends know.
//
// Signals go through the relay as `custom` events addressed to one peer:
//   {kind: "description", description: {type, sdp}}   offers and answers
//   {kind: "candidate", candidate: {candidate, sdpMid, sdpMLineIndex, ...}}

const ANSWERER_FALLBACK_MS = 3000; // how long a peer already in the room waits for the offer
const WATCHDOG_MS = 10000; // not connected after this long: try an ICE restart

class PeerCall {
  constructor(mesh, peerId, polite) {
    this.mesh = mesh;
    this.peerId = peerId;
    this.polite = polite;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.remoteStream = new MediaStream();
    this.closed = false;
    // Signals from the peer are handled one at a time, in order: a candidate must not be added
    // while the description before it is still being applied (Chrome then rejects it with
    // "The remote description was null").
    this.queue = Promise.resolve();

    const pc = new RTCPeerConnection({ iceServers: mesh.iceServers });
    this.pc = pc;

    // Our tracks go on the connection as soon as it exists; when we are the offerer, adding them
    // is what fires negotiationneeded. A kind we do not send (no camera, receive-only) still gets
    // a recvonly transceiver, so our offer asks for the other side's audio and video.
    const stream = mesh.localStream;
    for (const kind of ['audio', 'video']) {
      const track = stream && stream.getTracks().find((t) => t.kind === kind);
      if (track) pc.addTrack(track, stream);
      else pc.addTransceiver(kind, { direction: 'recvonly' });
    }

    pc.onnegotiationneeded = async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription(); // creates the offer (or answer) that fits the state
        this.signal({ kind: 'description', description: pc.localDescription });
      } catch (err) {
        this.mesh.log(`offer to ${this.peerId} failed`, err);
      } finally {
        this.makingOffer = false;
      }
    };

    pc.onicecandidate = ({ candidate }) => {
      // null marks the end of gathering; the other side does not need to be told.
      if (candidate) this.signal({ kind: 'candidate', candidate });
    };

    pc.ontrack = ({ track }) => {
      // Our own stream object, so the tile gets one stream holding whatever tracks arrive.
      this.remoteStream.addTrack(track);
      this.mesh.onTrack(this.peerId, this.remoteStream);
    };

    pc.onconnectionstatechange = () => {
      if (this.closed) return;
      // A failed ICE connection (a network change, say) is retried with an ICE restart, which
      // fires negotiationneeded and goes through the same negotiation.
      if (pc.connectionState === 'failed') pc.restartIce();
      this.mesh.onStateChange(this.peerId, pc.connectionState);
    };

    // A connection that never gets going (candidates lost with an offer that was rolled back,
    // say) would otherwise wait for ICE's own failure, which takes half a minute or more.
    this.watchdog = setInterval(() => {
      const state = pc.connectionState;
      if (state === 'connected' || state === 'closed' || pc.signalingState !== 'stable') return;
      this.mesh.log(`no connection to ${this.peerId} yet (${state}): ICE restart`);
      pc.restartIce();
    }, WATCHDOG_MS);
  }

  signal(data) {
    if (!this.closed) this.mesh.signal(this.peerId, data);
  }

  receive(data) {
    this.queue = this.queue.then(() => this.handle(data));
  }

  async handle(data) {
    const pc = this.pc;
    if (this.closed) return;
    if (data.kind === 'description' && data.description) {
      const description = data.description;
      try {
        // An offer collides with ours when we are making one or are not stable (the answer to
        // an offer we sent being applied counts as stable: it will be in a moment).
        const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.settingRemoteAnswer);
        const offerCollision = description.type === 'offer' && !readyForOffer;
        this.ignoreOffer = !this.polite && offerCollision;
        if (this.ignoreOffer) return; // impolite: our offer wins, theirs is dropped
        this.settingRemoteAnswer = description.type === 'answer';
        // On a collision this first rolls our own offer back (implicit rollback), then applies
        // theirs: the polite peer gives way.
        await pc.setRemoteDescription(description);
        this.settingRemoteAnswer = false;
        if (description.type === 'offer') {
          await pc.setLocalDescription(); // the answer
          this.signal({ kind: 'description', description: pc.localDescription });
        }
      } catch (err) {
        this.settingRemoteAnswer = false;
        if (!this.closed) this.mesh.log(`description from ${this.peerId} failed`, err);
      }
    } else if (data.kind === 'candidate' && data.candidate) {
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (err) {
        // Candidates of an offer we ignored cannot apply, nor can late ones of an offer that was
        // rolled back: expected, and harmless.
        if (!this.ignoreOffer && !this.closed) console.debug(`mesh: candidate from ${this.peerId} not used`, err);
      }
    }
  }

  close() {
    this.closed = true;
    clearInterval(this.watchdog);
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.close();
  }
}

export class Mesh {
  /**
   * @param {object} options
   *   iceServers: RTCIceServer[] (none needed on one machine or a LAN)
   *   localStream: MediaStream or null (receive-only)
   *   signal(peerId, data): deliver data to that peer (through the relay)
   *   onTrack(peerId, stream), onStateChange(peerId, connectionState)
   */
  constructor({ iceServers = [], localStream = null, signal, onTrack, onStateChange }) {
    this.iceServers = iceServers;
    this.localStream = localStream;
    this.signal = signal;
    this.onTrack = onTrack || (() => {});
    this.onStateChange = onStateChange || (() => {});
    this.selfId = null;
    this.calls = new Map(); // peerId -> PeerCall
    this.expected = new Map(); // peerId -> fallback timer, for peers whose offer we wait for
  }

  log(message, err) {
    console.warn(`mesh: ${message}`, err ?? '');
  }

  // Our relay peer id: it changes on every (re)join, so the calls made under the old one are
  // closed first (closeAll).
  setSelfId(id) {
    this.selfId = id;
  }

  // Calls the peer now: we are the newcomer, or waited long enough.
  call(peerId) {
    this.clearExpected(peerId);
    if (this.calls.has(peerId) || peerId === this.selfId) return this.calls.get(peerId);
    const polite = this.selfId !== null && this.selfId < peerId;
    const call = new PeerCall(this, peerId, polite);
    this.calls.set(peerId, call);
    return call;
  }

  // A peer joined after us: it will call; if it does not, we do.
  expect(peerId) {
    if (this.calls.has(peerId) || this.expected.has(peerId)) return;
    this.expected.set(peerId, setTimeout(() => {
      this.expected.delete(peerId);
      this.call(peerId);
    }, ANSWERER_FALLBACK_MS));
  }

  clearExpected(peerId) {
    clearTimeout(this.expected.get(peerId));
    this.expected.delete(peerId);
  }

  hangUp(peerId) {
    this.clearExpected(peerId);
    const call = this.calls.get(peerId);
    if (!call) return;
    this.calls.delete(peerId);
    call.close();
  }

  closeAll() {
    for (const peerId of [...this.expected.keys()]) this.clearExpected(peerId);
    for (const peerId of [...this.calls.keys()]) this.hangUp(peerId);
  }

  // A relay `custom` event from a peer. Only peers the relay announced get a connection (the
  // first signal of an expected peer creates ours); anything else is left over from an earlier
  // join and dropped.
  receive(from, data) {
    if (!data || typeof data !== 'object') return;
    const call = this.calls.get(from) || (this.expected.has(from) ? this.call(from) : null);
    if (call) call.receive(data);
  }

  connectionState(peerId) {
    const call = this.calls.get(peerId);
    return call ? call.pc.connectionState : 'new';
  }

  // Bytes of video received from each peer so far (inbound-rtp reports of kind video).
  async inboundVideoBytes() {
    const result = {};
    for (const [peerId, call] of this.calls) {
      let bytes = 0;
      try {
        const report = await call.pc.getStats();
        report.forEach((stat) => {
          if (stat.type === 'inbound-rtp' && (stat.kind || stat.mediaType) === 'video') bytes += stat.bytesReceived || 0;
        });
      } catch (err) {
        // closed meanwhile: 0
      }
      result[peerId] = bytes;
    }
    return result;
  }

  // Our video going up: one outbound stream per call.
  async outboundVideo() {
    return outboundVideoOf([...this.calls.values()].map((call) => call.pc));
  }
}

// How many outbound video streams some RTCPeerConnections send, their bytes so far, and the
// width of the frames each sends now (the browser lowers it when its CPU or uplink is short).
export async function outboundVideoOf(connections) {
  let streams = 0;
  let bytes = 0;
  const widths = [];
  for (const pc of connections) {
    try {
      (await pc.getStats()).forEach((stat) => {
        if (stat.type !== 'outbound-rtp' || (stat.kind || stat.mediaType) !== 'video') return;
        streams += 1;
        bytes += stat.bytesSent || 0;
        widths.push(stat.frameWidth || 0);
      });
    } catch (err) {
      // closed meanwhile
    }
  }
  return { streams, bytes, widths };
}
