// The relay room logic's events (RELAY.md), over a joined Phoenix channel.
//
// Every event goes as a "mediaEvent" push whose payload is {data: D}, D being the JSON text of the
// event object E — how Membrane's client sends them, which the relay reads unchanged. The server
// answers nothing to a mediaEvent, so they are sent fire-and-forget.

export class Relay {
  constructor(channel) {
    this.channel = channel;
    this.handlers = new Map(); // event type -> [callback]
    channel.on('mediaEvent', (payload) => this.receive(payload));
  }

  // type: peerAccepted, peerJoined, peerLeft, peerUpdated, custom, error
  on(type, callback) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(callback);
  }

  send(event) {
    return this.channel.cast('mediaEvent', { data: JSON.stringify(event) });
  }

  join(metadata) {
    return this.send({ type: 'join', data: { metadata } });
  }

  updateMetadata(metadata) {
    return this.send({ type: 'updatePeerMetadata', data: { metadata } });
  }

  // `to` is another joined peer's id; data is passed on unchanged as the event's "data".
  sendTo(to, data) {
    return this.send({ type: 'custom', to, data });
  }

  leave() {
    return this.send({ type: 'leave' });
  }

  receive(payload) {
    let event = payload ? payload.data : undefined;
    // The relay sends D as a string holding JSON; accept an object as well.
    if (typeof event === 'string') {
      try {
        event = JSON.parse(event);
      } catch (err) {
        console.warn('relay: undecodable event', payload);
        return;
      }
    }
    if (!event || typeof event !== 'object' || typeof event.type !== 'string') {
      console.warn('relay: unexpected event', payload);
      return;
    }
    const callbacks = this.handlers.get(event.type);
    if (!callbacks) {
      console.warn('relay: unhandled event', event);
      return;
    }
    for (const callback of callbacks) {
      try { callback(event); } catch (err) { console.error(err); }
    }
  }
}
