// A small Phoenix channels client (WebSocket transport, V2 serializer), written for this demo
// instead of vendoring npm `phoenix`, so the page has no build step and no third-party code.
// It follows what phoenix.js does on the wire (see PROTOCOL.md):
//   - frames are JSON arrays [join_ref, ref, topic, event, payload];
//   - refs come from one counter per socket, as strings;
//   - a heartbeat every 30 s; no reply within 30 s means the connection is dead: reconnect;
//   - after any close that we did not ask for, reconnect with backoff and rejoin every channel
//     that was joined (or joining) with a new join_ref;
//   - a message carrying a join_ref other than the channel's current one is stale: dropped.

const DEFAULT_RECONNECT_STEPS_MS = [100, 500, 1000, 2000, 5000];
// After the server ends a channel with phx_error, rejoin like phoenix.js does.
const DEFAULT_REJOIN_STEPS_MS = [1000, 2000, 5000, 10000];

// What a push resolves/rejects with. `reason` is the server's {"reason": ...} when it gave one.
export class PushError extends Error {
  constructor(status, response) {
    const reason = response && typeof response.reason === 'string' ? response.reason : status;
    super(reason);
    this.name = 'PushError';
    this.status = status; // "error", "timeout" or "disconnected"
    this.reason = reason;
    this.response = response;
  }
}

export class Socket {
  /**
   * @param {string} endpoint  e.g. "ws://127.0.0.1:4000/socket" (no "/websocket", no query)
   * @param {object} [options]
   *   params: extra query parameters for the connect hook
   *   heartbeatIntervalMs (30000), heartbeatTimeoutMs (30000), timeoutMs for joins/pushes (10000)
   *   reconnectStepsMs, rejoinStepsMs: backoff tables, the last step repeats
   *   logger(kind, message, data)
   */
  constructor(endpoint, options = {}) {
    this.endpoint = endpoint;
    this.params = options.params || {};
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 30000;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 30000;
    this.timeoutMs = options.timeoutMs ?? 10000;
    this.reconnectStepsMs = options.reconnectStepsMs || DEFAULT_RECONNECT_STEPS_MS;
    this.rejoinStepsMs = options.rejoinStepsMs || DEFAULT_REJOIN_STEPS_MS;
    this.logger = options.logger || null;

    this.ws = null;
    this.ref = 0;
    this.channels = new Set();
    this.wantConnected = false; // false after disconnect(): no reconnecting then
    this.reconnectTries = 0;
    this.reconnectTimer = null;
    this.heartbeatTimer = null;
    this.heartbeatTimeoutTimer = null;
    this.pendingHeartbeatRef = null;
    this.callbacks = { open: [], close: [], error: [] };
  }

  log(kind, message, data) {
    if (this.logger) this.logger(kind, message, data);
  }

  makeRef() {
    this.ref += 1;
    return String(this.ref);
  }

  url() {
    const query = new URLSearchParams({ ...this.params, vsn: '2.0.0' });
    return `${this.endpoint}/websocket?${query}`;
  }

  isConnected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  onOpen(callback) { this.callbacks.open.push(callback); }
  onClose(callback) { this.callbacks.close.push(callback); }
  onError(callback) { this.callbacks.error.push(callback); }

  emit(kind, ...args) {
    for (const callback of this.callbacks[kind]) {
      try { callback(...args); } catch (err) { console.error(err); }
    }
  }

  connect() {
    this.wantConnected = true;
    if (this.ws) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;

    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => this.handleOpen(ws);
    ws.onmessage = (event) => this.handleMessage(ws, event);
    ws.onerror = (event) => {
      if (ws === this.ws) this.emit('error', event);
    };
    ws.onclose = (event) => this.handleClose(ws, event.code, event.reason);
  }

  // Closes for good: no reconnecting, channels are told the socket is gone.
  disconnect(code = 1000, reason = 'client disconnect') {
    this.wantConnected = false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    if (ws) {
      this.abandon(ws);
      try { ws.close(code, reason); } catch (err) { /* already closing */ }
      this.afterClose(code, reason);
    }
  }

  // Forget a WebSocket: its late events must not touch the state of a newer one.
  abandon(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    if (this.ws === ws) this.ws = null;
    this.stopHeartbeat();
  }

  handleOpen(ws) {
    if (ws !== this.ws) return;
    this.log('socket', 'open', this.url());
    this.reconnectTries = 0; // backoff starts over after every successful open
    this.startHeartbeat();
    this.emit('open');
    for (const channel of this.channels) channel.socketOpened();
  }

  handleClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.abandon(ws);
    this.afterClose(code, reason);
  }

  afterClose(code, reason) {
    this.log('socket', 'close', { code, reason });
    for (const channel of this.channels) channel.socketClosed();
    this.emit('close', { code, reason });
    if (this.wantConnected) this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const steps = this.reconnectStepsMs;
    const delay = steps[Math.min(this.reconnectTries, steps.length - 1)];
    this.reconnectTries += 1;
    this.log('socket', `reconnecting in ${delay} ms`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.wantConnected) this.connect();
    }, delay);
  }

  // The server sends no heartbeats of its own and closes idle clients (60 s by default), so
  // the heartbeat also keeps a quiet connection open.
  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), this.heartbeatIntervalMs);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.heartbeatTimeoutTimer);
    this.heartbeatTimer = this.heartbeatTimeoutTimer = null;
    this.pendingHeartbeatRef = null;
  }

  sendHeartbeat() {
    if (!this.isConnected() || this.pendingHeartbeatRef !== null) return;
    this.pendingHeartbeatRef = this.makeRef();
    this.send([null, this.pendingHeartbeatRef, 'phoenix', 'heartbeat', {}]);
    this.heartbeatTimeoutTimer = setTimeout(() => {
      // A half-open TCP connection can stay "OPEN" forever; a lost heartbeat is how we notice.
      // We do not wait for the close handshake (it would not complete either).
      this.log('socket', 'heartbeat timeout');
      const ws = this.ws;
      if (!ws) return;
      this.abandon(ws);
      try { ws.close(1000, 'heartbeat timeout'); } catch (err) { /* ignore */ }
      this.afterClose(1006, 'heartbeat timeout');
    }, this.heartbeatTimeoutMs);
  }

  send(message) {
    if (!this.isConnected()) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  handleMessage(ws, event) {
    if (ws !== this.ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      this.log('socket', 'undecodable frame', event.data);
      return;
    }
    if (!Array.isArray(message) || message.length < 5) {
      this.log('socket', 'unexpected frame', message);
      return;
    }
    const [joinRef, ref, topic, eventName, payload] = message;
    if (topic === 'phoenix' && eventName === 'phx_reply' && ref === this.pendingHeartbeatRef) {
      clearTimeout(this.heartbeatTimeoutTimer);
      this.heartbeatTimeoutTimer = null;
      this.pendingHeartbeatRef = null;
      return;
    }
    for (const channel of this.channels) {
      if (channel.topic === topic) channel.handleMessage(joinRef, ref, eventName, payload);
    }
  }

  channel(topic, params = {}) {
    const channel = new Channel(topic, params, this);
    this.channels.add(channel);
    return channel;
  }

  remove(channel) {
    this.channels.delete(channel);
  }
}

// Channel states, as phoenix.js names them.
const CLOSED = 'closed';
const JOINING = 'joining';
const JOINED = 'joined';
const ERRORED = 'errored'; // wants to be joined; will rejoin when it can
const LEAVING = 'leaving';

export class Channel {
  constructor(topic, params, socket) {
    this.topic = topic;
    this.params = params;
    this.socket = socket;
    this.state = CLOSED;
    this.joinRef = null;
    this.joinTimer = null;
    this.rejoinTimer = null;
    this.rejoinTries = 0;
    this.firstJoin = null; // {resolve, reject} of the promise join() returned
    this.pending = new Map(); // ref -> {resolve, reject, timer} of pushes awaiting a reply
    this.bindings = new Map(); // event -> [callback]
    this.hooks = { join: [], joinError: [], error: [], close: [] };
  }

  // Lifecycle callbacks. onJoin runs after every successful join, rejoins included: the right
  // place to (re)start whatever the channel carries.
  onJoin(callback) { this.hooks.join.push(callback); }
  onJoinError(callback) { this.hooks.joinError.push(callback); }
  onError(callback) { this.hooks.error.push(callback); }
  onClose(callback) { this.hooks.close.push(callback); }

  on(event, callback) {
    if (!this.bindings.has(event)) this.bindings.set(event, []);
    this.bindings.get(event).push(callback);
  }

  emitHook(kind, ...args) {
    for (const callback of this.hooks[kind]) {
      try { callback(...args); } catch (err) { console.error(err); }
    }
  }

  isJoined() { return this.state === JOINED; }

  /**
   * Joins, now or as soon as the socket is open. Resolves with the join's response on the first
   * "ok"; rejects with a PushError on an "error" reply (then the channel stays closed, as the
   * server left the topic unjoined). A join with no reply within the timeout is abandoned (its
   * join_ref becomes stale) and retried with backoff.
   */
  join() {
    if (this.state !== CLOSED) throw new Error(`channel ${this.topic} already joined`);
    const promise = new Promise((resolve, reject) => { this.firstJoin = { resolve, reject }; });
    this.state = ERRORED; // "wants to be joined"
    this.rejoinTries = 0;
    if (this.socket.isConnected()) this.sendJoin();
    return promise;
  }

  sendJoin() {
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = null;
    this.state = JOINING;
    // Every join gets a fresh join_ref (== its ref), so replies and pushes that belong to an
    // earlier join of this topic are recognised as stale and dropped.
    this.joinRef = this.socket.makeRef();
    const joinRef = this.joinRef;
    this.socket.send([joinRef, joinRef, this.topic, 'phx_join', this.params]);
    clearTimeout(this.joinTimer);
    this.joinTimer = setTimeout(() => {
      if (this.state !== JOINING || this.joinRef !== joinRef) return;
      this.socket.log('channel', `join ${this.topic} timed out`);
      this.joinRef = null; // a late reply is now stale
      this.becomeErrored('timeout');
    }, this.socket.timeoutMs);
  }

  // Fire and forget: for events the server does not answer (mediaEvent with data).
  // Returns false when the channel is not joined (the message is dropped, not buffered: our
  // signaling starts over after every rejoin anyway).
  cast(event, payload) {
    if (this.state !== JOINED) return false;
    return this.socket.send([this.joinRef, this.socket.makeRef(), this.topic, event, payload]);
  }

  /**
   * Sends and waits for the reply: resolves with the response on {"status":"ok"}, rejects with a
   * PushError on "error", on no reply within timeoutMs ("timeout"), or when the channel goes
   * away first ("disconnected").
   */
  push(event, payload, timeoutMs = this.socket.timeoutMs) {
    if (this.state !== JOINED) return Promise.reject(new PushError('disconnected', { reason: 'not joined' }));
    const ref = this.socket.makeRef();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new PushError('timeout', { reason: 'timeout' }));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      this.socket.send([this.joinRef, ref, this.topic, event, payload]);
    });
  }

  // Leaves for good. Resolves when the server confirmed, or after the timeout.
  leave(timeoutMs = this.socket.timeoutMs) {
    const wasJoined = this.state === JOINED;
    const joinRef = this.joinRef;
    this.stopTimers();
    this.state = LEAVING;
    this.failPending('disconnected');
    if (this.firstJoin) {
      this.firstJoin.reject(new PushError('disconnected', { reason: 'left' }));
      this.firstJoin = null;
    }
    const finish = () => {
      if (this.state === LEAVING) this.becomeClosed();
      this.socket.remove(this);
    };
    if (!wasJoined || !this.socket.isConnected()) {
      finish();
      return Promise.resolve();
    }
    const ref = this.socket.makeRef();
    return new Promise((resolve) => {
      const done = () => { finish(); resolve(); };
      const timer = setTimeout(done, timeoutMs);
      this.pending.set(ref, { resolve: () => { clearTimeout(timer); done(); }, reject: () => { clearTimeout(timer); done(); }, timer });
      this.socket.send([joinRef, ref, this.topic, 'phx_leave', {}]);
    });
  }

  stopTimers() {
    clearTimeout(this.joinTimer);
    clearTimeout(this.rejoinTimer);
    this.joinTimer = this.rejoinTimer = null;
  }

  failPending(status) {
    for (const [ref, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      this.pending.delete(ref);
      waiter.reject(new PushError(status, { reason: status }));
    }
  }

  // The socket (re)opened: rejoin at once if this channel wants to be joined.
  socketOpened() {
    if (this.state === ERRORED) {
      this.rejoinTries = 0;
      this.sendJoin();
    }
  }

  // The socket closed: the server has already left the topic for us; rejoin after reconnecting.
  socketClosed() {
    if (this.state === JOINED || this.state === JOINING) {
      this.stopTimers();
      this.joinRef = null;
      this.state = ERRORED;
      this.failPending('disconnected');
      this.emitHook('error', 'socket closed');
    } else if (this.state === LEAVING) {
      this.failPending('disconnected');
    }
  }

  // Errored with the socket still up (phx_error, join timeout): retry with backoff.
  becomeErrored(reason) {
    this.stopTimers();
    this.state = ERRORED;
    this.failPending('disconnected');
    this.emitHook('error', reason);
    const steps = this.socket.rejoinStepsMs;
    const delay = steps[Math.min(this.rejoinTries, steps.length - 1)];
    this.rejoinTries += 1;
    this.rejoinTimer = setTimeout(() => {
      this.rejoinTimer = null;
      if (this.state === ERRORED && this.socket.isConnected()) this.sendJoin();
    }, delay);
  }

  becomeClosed() {
    this.stopTimers();
    this.state = CLOSED;
    this.joinRef = null;
    this.failPending('disconnected');
    this.emitHook('close');
  }

  handleMessage(joinRef, ref, event, payload) {
    // Stale: sent for an earlier join of this topic (e.g. the phx_close of a displaced channel,
    // or a reply to a join we gave up on). A null join_ref is never stale.
    if (joinRef !== null && joinRef !== this.joinRef) {
      this.socket.log('channel', `dropped stale ${event}`, { joinRef, current: this.joinRef });
      return;
    }
    switch (event) {
      case 'phx_reply': this.handleReply(ref, payload || {}); break;
      case 'phx_close':
        if (this.state === JOINED) {
          this.socket.log('channel', `${this.topic} closed by the server`);
          this.becomeClosed();
          this.socket.remove(this);
        }
        break;
      case 'phx_error':
        if (this.state === JOINED || this.state === JOINING) {
          this.socket.log('channel', `${this.topic} errored`, payload);
          this.joinRef = null;
          this.becomeErrored((payload && payload.reason) || 'phx_error');
        }
        break;
      default:
        for (const callback of this.bindings.get(event) || []) {
          try { callback(payload); } catch (err) { console.error(err); }
        }
    }
  }

  handleReply(ref, { status, response }) {
    if (this.state === JOINING && ref === this.joinRef) {
      clearTimeout(this.joinTimer);
      this.joinTimer = null;
      if (status === 'ok') {
        this.state = JOINED;
        this.rejoinTries = 0;
        if (this.firstJoin) { this.firstJoin.resolve(response); this.firstJoin = null; }
        this.emitHook('join', response);
      } else {
        // The server refused (room full, say) and left the topic unjoined: retrying would get
        // the same answer, so the channel closes and the caller decides.
        const error = new PushError(status, response);
        this.state = CLOSED;
        this.joinRef = null;
        this.socket.remove(this);
        if (this.firstJoin) { this.firstJoin.reject(error); this.firstJoin = null; }
        this.emitHook('joinError', error);
      }
      return;
    }
    const waiter = this.pending.get(ref);
    if (!waiter) {
      if (status !== 'ok') this.socket.log('channel', `error reply to ${ref}`, response);
      return;
    }
    this.pending.delete(ref);
    clearTimeout(waiter.timer);
    if (status === 'ok') waiter.resolve(response);
    else waiter.reject(new PushError(status, response));
  }
}
