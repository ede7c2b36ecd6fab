// wshub.js: browser client for a wshub hub (see SPEC.md for the wire protocol).
//
// A dependency-free ES module; no build step. Typical use:
//
//   import { WSHubClient } from '/wshub.js';
//   const c = new WSHubClient('/ws', { token: 'alice' });
//   c.on('message', (f) => console.log(f.userid, f.content));
//   c.on('state', (s) => console.log('connection is', s));
//   await c.send({ cmd: 10, dstid: 'bob', content: 'hi' }); // resolves with the receipt
//   await c.join('lobby');
//
// What it does for the page:
//   - heartbeat: cmd 1 every heartbeatInterval, and at once when the window
//     comes back online; no frame at all within pongTimeout means the socket
//     is dead, even if the browser never fired onclose: it is dropped and a
//     new one opened.
//   - reconnect: exponential backoff with full jitter (delay drawn uniformly
//     from [0, min(max, base * factor^(attempt-1)))), so that thousands of
//     pages that lost the same server do not come back in the same
//     millisecond. The attempt counter resets once a connection stayed up for
//     backoff.resetAfter. Close codes 4000 (replaced) and 1008 (policy) stop
//     reconnecting unless shouldReconnect says otherwise or the page calls
//     reconnect(). While the window is offline no attempt is made; the
//     online event connects at once.
//   - outbox: every message given to send() stays in a bounded outbox
//     (optionally in localStorage / sessionStorage) until its receipt
//     (cmd 15) arrives; after a reconnect it is sent again with the same cid,
//     and the server's (sender, cid) dedup makes that safe.
//   - ack=1: received messages are acknowledged (cmd 14, batched); duplicates
//     (same id) are dropped and acknowledged again.
//   - rooms: joined rooms are remembered with the last contiguous seq and the
//     epoch seen, and rejoined with since/epoch after a reconnect, so the
//     server replays what was missed; the 'joined' event reports recovered.

/** Command codes of the wire protocol (SPEC.md section 3). */
export const Cmd = Object.freeze({
  Heart: 0,
  Ping: 1,
  Pong: 2,
  Single: 10,
  Room: 11,
  Join: 12,
  Leave: 13,
  Ack: 14,
  Receipt: 15,
  History: 16,
  RoomHistory: 17,
  Welcome: 20,
  Error: 40,
  App: 100,
});

/** Values of WSHubClient.readyState. */
export const State = Object.freeze({
  IDLE: 'idle', // constructed with connect: false, connect() not called yet
  CONNECTING: 'connecting', // a socket is being opened
  OPEN: 'open', // connected; frames flow
  RECONNECTING: 'reconnecting', // waiting nextRetryAt - Date.now() ms before the next attempt
  OFFLINE: 'offline', // the browser is offline; waiting for the online event
  CLOSED: 'closed', // stopped: close() was called, or the server said not to come back
});

/** Close codes after which the client does not reconnect by default. */
export const NoReconnectCodes = Object.freeze([4000, 1008]);

const defaultBackoff = Object.freeze({ base: 500, max: 30000, factor: 2, resetAfter: 10000 });

// withDefaults returns defaults overridden by the fields of opts that are not undefined.
function withDefaults(defaults, opts) {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(opts || {})) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * backoffCeiling returns the upper bound of the delay before reconnect
 * attempt number `attempt` (1 for the first retry): base * factor^(attempt-1),
 * capped at max.
 */
export function backoffCeiling(attempt, opts = {}) {
  const { base, max, factor } = withDefaults(defaultBackoff, opts);
  const n = Math.max(0, Math.floor(attempt) - 1);
  return Math.min(max, base * Math.pow(factor, n));
}

/**
 * backoffDelay returns the delay in ms before reconnect attempt number
 * `attempt` with full jitter: uniform in [0, backoffCeiling(attempt)).
 * `random` returns a number in [0, 1) (Math.random by default).
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  return Math.floor(random() * backoffCeiling(attempt, opts));
}

/** newCID returns a random client id for a frame (works outside secure contexts too). */
export function newCID() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** HubError is the rejection of a request that the server answered with cmd 40. */
export class HubError extends Error {
  constructor(frame) {
    super(`wshub: ${frame.reason || 'error'} (${frame.code || 0})`);
    this.name = 'HubError';
    this.code = frame.code || 0;
    this.reason = frame.reason || '';
    this.frame = frame;
  }
}

// Error codes after which resending the same frame later can succeed.
const transientCodes = new Set([429, 500, 503]);

const seenLimit = 10000; // ids remembered for duplicate detection

/**
 * WSHubClient is one logical connection to a hub that survives any number of
 * WebSocket connections.
 *
 * Events (subscribe with on(type, fn), which returns an unsubscribe function):
 *   'state'        readyState changed: (state)
 *   'open'         a socket is open: ()
 *   'welcome'      the server's cmd 20: (frame); userId is set
 *   'close'        a socket closed: ({code, reason, wasClean, willReconnect})
 *   'reconnecting' next attempt scheduled: ({attempt, delay})
 *   'message'      a new message (cmd 10, 11, 100+), duplicates removed: (frame)
 *   'receipt'      a sent message was stored: ({receipt, frame})
 *   'joined'       a room join answered: ({room, seq, epoch, recovered})
 *   'outbox'       the outbox size changed: (size)
 *   'error'        an error frame without a waiting request, or a client error: (HubError | Error)
 *   'frame'        every frame received, before any processing: (frame)
 */
export class WSHubClient {
  /**
   * @param {string} url  ws:// or wss:// URL, or a path such as '/ws' resolved against the page
   * @param {object} [options]
   * @param {string} [options.token]            sent as ?token= (see tokenParam)
   * @param {string} [options.tokenParam]       query parameter for the token: 'token' (default) or 'authToken'
   * @param {boolean} [options.ack]             use ack=1 (default true)
   * @param {boolean} [options.batch]           use batch=1 (default false)
   * @param {number} [options.heartbeatInterval] ms between pings (default 25000)
   * @param {number} [options.pongTimeout]      ms to wait for any frame after a ping (default 10000)
   * @param {object} [options.backoff]          {base: 500, max: 30000, factor: 2, resetAfter: 10000} in ms
   * @param {number} [options.maxAttempts]      reconnect attempts before giving up (default Infinity)
   * @param {function} [options.shouldReconnect] (closeEvent) => bool; default: not after 4000 or 1008
   * @param {object} [options.outbox]           {max: 1000, storageKey: '', storage: localStorage}
   * @param {number} [options.requestTimeout]   ms before join/history promises reject (default 15000)
   * @param {boolean} [options.connect]         connect at once (default true)
   * @param {function} [options.WebSocket]      WebSocket constructor (default globalThis.WebSocket)
   * @param {function} [options.random]         random source in [0, 1) for jitter (default Math.random)
   */
  constructor(url, options = {}) {
    const o = { ...options };
    this.options = {
      token: o.token ?? '',
      tokenParam: o.tokenParam ?? 'token',
      ack: o.ack ?? true,
      batch: o.batch ?? false,
      heartbeatInterval: o.heartbeatInterval ?? 25000,
      pongTimeout: o.pongTimeout ?? 10000,
      backoff: withDefaults(defaultBackoff, o.backoff),
      maxAttempts: o.maxAttempts ?? Infinity,
      shouldReconnect: o.shouldReconnect ?? ((ev) => !NoReconnectCodes.includes(ev.code)),
      requestTimeout: o.requestTimeout ?? 15000,
      WebSocket: o.WebSocket ?? globalThis.WebSocket,
      random: o.random ?? Math.random,
    };
    const ob = o.outbox || {};
    this._outboxMax = ob.max ?? 1000;
    this._storageKey = ob.storageKey || '';
    this._storage = this._storageKey ? ob.storage ?? globalThis.localStorage ?? null : null;

    this.url = url;
    /** Current state, one of State. */
    this.readyState = State.IDLE;
    /** The user id from the server's welcome frame. */
    this.userId = '';
    /** Reconnect attempts since the last stable connection. */
    this.attempt = 0;
    /** When readyState is 'reconnecting': Date.now() value of the next attempt. */
    this.nextRetryAt = 0;
    /** The last close: {code, reason, wasClean, willReconnect}, or null. */
    this.lastClose = null;

    this._handlers = new Map(); // event type -> Set of functions
    this._ws = null; // the current socket; handlers of older sockets ignore their events
    this._stopped = false; // close() was called or the server said not to reconnect
    this._offline = globalThis.navigator ? globalThis.navigator.onLine === false : false;
    this._timers = { retry: 0, ping: 0, pong: 0, stable: 0, ack: 0, flush: 0 };
    this._outbox = []; // [{cid, frame, ts, sent}] in send order
    this._waiters = new Map(); // cid -> {resolve, reject} of send()
    this._requests = new Map(); // cid -> {cmd, dstid, resolve, reject, timer} of join/history
    this._rooms = new Map(); // room -> {seq, epoch, ahead: Set<number>}
    this._leaving = new Set(); // rooms left while disconnected; cmd 13 goes out on reconnect
    this._seen = new Map(); // message id -> true, insertion ordered, bounded by seenLimit
    this._acks = []; // ids waiting for the next batched cmd 14

    this._onOnline = () => this._online();
    this._onOffline = () => this._goOffline();
    this._loadOutbox();
    if (o.connect ?? true) this.connect();
  }

  // ---- events ----

  /** on subscribes fn to events of type; it returns a function that unsubscribes. */
  on(type, fn) {
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /** off unsubscribes fn from events of type. */
  off(type, fn) {
    const set = this._handlers.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, detail) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (err) {
        console.error('wshub: event handler for', type, 'threw', err);
      }
    }
  }

  _setState(s) {
    if (this.readyState === s) return;
    this.readyState = s;
    this._emit('state', s);
  }

  // ---- connection life ----

  /** connect starts connecting (again after close()). */
  connect() {
    this._stopped = false;
    if (globalThis.addEventListener) {
      globalThis.addEventListener('online', this._onOnline);
      globalThis.addEventListener('offline', this._onOffline);
    }
    if (this._ws) return;
    clearTimeout(this._timers.retry);
    if (this._offline) {
      this._setState(State.OFFLINE);
      return;
    }
    this._open();
  }

  /**
   * reconnect drops the current socket, if any, and connects at once with a
   * reset attempt counter: for example after the server closed with 4000 or 1008.
   */
  reconnect() {
    this.attempt = 0;
    if (this._ws) this._drop(1000, 'reconnect requested', true);
    this.connect();
  }

  /**
   * close closes the connection and stops reconnecting. The outbox is kept
   * (and stays in storage); connect() resumes.
   */
  close(code = 1000, reason = '') {
    this._stopped = true;
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener('online', this._onOnline);
      globalThis.removeEventListener('offline', this._onOffline);
    }
    clearTimeout(this._timers.retry);
    if (this._ws) this._drop(code, reason, true);
    this._setState(State.CLOSED);
  }

  _socketURL() {
    const base = globalThis.location ? globalThis.location.href : undefined;
    const u = new URL(this.url, base);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    if (u.protocol === 'https:') u.protocol = 'wss:';
    if (this.options.token) u.searchParams.set(this.options.tokenParam, this.options.token);
    if (this.options.ack) u.searchParams.set('ack', '1');
    if (this.options.batch) u.searchParams.set('batch', '1');
    return u.toString();
  }

  _open() {
    clearTimeout(this._timers.retry);
    this.nextRetryAt = 0;
    this._setState(State.CONNECTING);
    let ws;
    try {
      ws = new this.options.WebSocket(this._socketURL());
    } catch (err) {
      this._emit('error', err);
      this._closed({ code: 1006, reason: String(err && err.message), wasClean: false });
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws === ws) this._opened();
    };
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._data(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) {
        this._ws = null;
        this._closed({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
      }
    };
    ws.onerror = () => {}; // onclose follows and carries what there is to know
  }

  _opened() {
    this._setState(State.OPEN);
    clearTimeout(this._timers.stable);
    this._timers.stable = setTimeout(() => {
      this.attempt = 0;
    }, this.options.backoff.resetAfter);
    // Rooms first, so that the server has the membership before resent
    // room messages; then the outbox in send order.
    for (const room of this._leaving) this._write({ cmd: Cmd.Leave, dstid: room });
    this._leaving.clear();
    for (const [room, st] of this._rooms) {
      // Reuse the cid of a join still waiting for its answer; otherwise a
      // request of our own, so that a refusal removes the room.
      let cid = '';
      for (const [k, r] of this._requests) {
        if (r.cmd === Cmd.Join && r.dstid === room) {
          cid = k;
          break;
        }
      }
      if (!cid) {
        cid = newCID();
        this._request({ cmd: Cmd.Join, dstid: room, cid }).catch((err) => this._emit('error', err));
      }
      if (this._sendJoin(room, st, cid)) this._arm(cid);
    }
    this._flushOutbox();
    this._schedulePing();
    this._emit('open');
  }

  // _drop abandons the current socket without waiting for the browser's
  // onclose, which may come minutes later (or never) on a dead network.
  _drop(code, reason, stopped) {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, reason.slice(0, 120));
      } catch {
        // already closing
      }
    }
    this._closed({ code: stopped ? code : 1006, reason, wasClean: stopped }, stopped);
  }

  _closed(ev, stopped = false) {
    for (const k of ['ping', 'pong', 'stable', 'ack', 'flush']) clearTimeout(this._timers[k]);
    this._acks = [];
    for (const e of this._outbox) e.sent = false;
    for (const [cid, r] of this._requests) {
      if (r.cmd === Cmd.Join) {
        // Sent again, and answered, after the reconnect.
        clearTimeout(r.timer);
        r.timer = 0;
        continue;
      }
      clearTimeout(r.timer);
      this._requests.delete(cid);
      r.reject(new Error('wshub: connection lost'));
    }
    let willReconnect = !stopped && !this._stopped;
    if (willReconnect && !this.options.shouldReconnect(ev)) {
      willReconnect = false;
      this._stopped = true;
    }
    if (willReconnect && this.attempt >= this.options.maxAttempts) {
      willReconnect = false;
      this._stopped = true;
      this._emit('error', new Error(`wshub: gave up after ${this.attempt} reconnect attempts`));
    }
    this.lastClose = { code: ev.code, reason: ev.reason || '', wasClean: !!ev.wasClean, willReconnect };
    this._emit('close', this.lastClose);
    if (!willReconnect) {
      this._setState(State.CLOSED);
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    clearTimeout(this._timers.retry);
    if (this._offline) {
      this.nextRetryAt = 0;
      this._setState(State.OFFLINE);
      return;
    }
    this.attempt++;
    const delay = backoffDelay(this.attempt, this.options.backoff, this.options.random);
    this.nextRetryAt = Date.now() + delay;
    this._setState(State.RECONNECTING);
    this._emit('reconnecting', { attempt: this.attempt, delay });
    this._timers.retry = setTimeout(() => this._open(), delay);
  }

  _online() {
    this._offline = false;
    if (this._stopped) return;
    if (this._ws && this._ws.readyState === 1) {
      // The socket may have died while the network was away: check now
      // instead of at the next heartbeat.
      this.ping();
      return;
    }
    if (!this._ws) this._open(); // resume at once, no waiting out the backoff
  }

  _goOffline() {
    this._offline = true;
    if (this._stopped) return;
    if (this._ws) {
      if (this._ws.readyState === 1) this.ping();
      return;
    }
    clearTimeout(this._timers.retry);
    this.nextRetryAt = 0;
    this._setState(State.OFFLINE);
  }

  // ---- heartbeat ----

  _schedulePing() {
    clearTimeout(this._timers.ping);
    this._timers.ping = setTimeout(() => this.ping(), this.options.heartbeatInterval);
  }

  /**
   * ping sends cmd 1 now. If no frame arrives within pongTimeout the socket
   * is treated as dead: dropped and replaced.
   */
  ping() {
    if (!this._write({ cmd: Cmd.Ping })) return;
    this._schedulePing();
    if (!this._timers.pong) {
      this._timers.pong = setTimeout(() => {
        this._timers.pong = 0;
        this._drop(1006, `no answer to ping within ${this.options.pongTimeout} ms`, false);
      }, this.options.pongTimeout);
    }
  }

  // ---- receiving ----

  _data(data) {
    if (typeof data !== 'string') return; // the protocol is text only
    // Any frame proves the connection is alive.
    clearTimeout(this._timers.pong);
    this._timers.pong = 0;
    // With batch=1 one text frame may hold several objects separated by \n.
    for (const line of data.split('\n')) {
      if (!line.trim()) continue;
      let f;
      try {
        f = JSON.parse(line);
      } catch {
        this._emit('error', new Error('wshub: unparsable frame from server'));
        continue;
      }
      if (f && typeof f === 'object') this._frame(f);
    }
  }

  _frame(f) {
    this._emit('frame', f);
    switch (f.cmd) {
      case Cmd.Pong:
      case Cmd.Heart:
        return;
      case Cmd.Welcome:
        this.userId = f.userid || '';
        this._emit('welcome', f);
        return;
      case Cmd.Receipt:
        this._receipt(f);
        return;
      case Cmd.Error:
        this._error(f);
        return;
      case Cmd.Join:
        this._joined(f);
        return;
      case Cmd.History:
      case Cmd.RoomHistory:
        this._reply(f);
        return;
      default:
        this._message(f);
    }
  }

  _message(f) {
    // Room messages are not queued per member, so they need no ack.
    const ack = this.options.ack && f.id && f.cmd !== Cmd.Room;
    if (f.id && this._seen.has(f.id)) {
      // A duplicate: drop it, but acknowledge it again, since it means the
      // first ack was lost and the server resends until it sees one.
      if (ack) this._queueAck(f.id);
      return;
    }
    if (f.id) this._remember(f.id);
    if (f.cmd === Cmd.Room && f.dstid != null && f.seq) this._observeSeq(String(f.dstid), f.seq);
    this._emit('message', f);
    if (ack) this._queueAck(f.id); // after the page's handlers ran
  }

  _remember(id) {
    this._seen.set(id, true);
    if (this._seen.size > seenLimit) this._seen.delete(this._seen.keys().next().value);
  }

  _queueAck(id) {
    this._acks.push(id);
    if (this._timers.ack) return;
    // Batch: a reconnect delivers the whole pending queue in a burst.
    this._timers.ack = setTimeout(() => {
      this._timers.ack = 0;
      const ids = this._acks;
      this._acks = [];
      if (ids.length === 1) this._write({ cmd: Cmd.Ack, id: ids[0] });
      else if (ids.length > 1) this._write({ cmd: Cmd.Ack, ids });
    }, 20);
  }

  _receipt(f) {
    const i = this._outbox.findIndex((e) => e.cid === f.cid);
    const entry = i >= 0 ? this._outbox[i] : null;
    if (entry) {
      this._outbox.splice(i, 1);
      this._saveOutbox();
      this._emit('outbox', this._outbox.length);
    }
    if (f.id) this._remember(f.id); // a rejoin replay of our own message is a duplicate
    const frame = entry ? entry.frame : null;
    if (frame && frame.cmd === Cmd.Room && f.seq) this._observeSeq(String(frame.dstid), f.seq);
    const w = this._waiters.get(f.cid);
    if (w) {
      this._waiters.delete(f.cid);
      w.resolve(f);
    }
    this._emit('receipt', { receipt: f, frame });
  }

  _error(f) {
    const err = new HubError(f);
    const r = f.cid ? this._requests.get(f.cid) : null;
    if (r) {
      this._requests.delete(f.cid);
      clearTimeout(r.timer);
      if (r.cmd === Cmd.Join) this._rooms.delete(r.dstid);
      r.reject(err);
      return;
    }
    const i = f.cid ? this._outbox.findIndex((e) => e.cid === f.cid) : -1;
    if (i < 0) {
      this._emit('error', err);
      return;
    }
    if (transientCodes.has(f.code)) {
      // Keep it; try again a little later (or on the next connection).
      this._outbox[i].sent = false;
      clearTimeout(this._timers.flush);
      this._timers.flush = setTimeout(() => this._flushOutbox(), 1000);
      return;
    }
    const [entry] = this._outbox.splice(i, 1);
    this._saveOutbox();
    this._emit('outbox', this._outbox.length);
    const w = this._waiters.get(f.cid);
    if (w) {
      this._waiters.delete(f.cid);
      w.reject(err);
    } else {
      this._emit('error', err);
    }
    this._emit('receipt', { receipt: null, frame: entry.frame, error: err });
  }

  // _takeRequest finds the request a reply answers: by cid when the server
  // echoes it, otherwise the oldest request with the same cmd and dstid.
  _takeRequest(f) {
    let cid = f.cid && this._requests.has(f.cid) ? f.cid : '';
    if (!cid) {
      for (const [k, r] of this._requests) {
        if (r.cmd === f.cmd && r.dstid === String(f.dstid ?? '')) {
          cid = k;
          break;
        }
      }
    }
    if (!cid) return null;
    const r = this._requests.get(cid);
    this._requests.delete(cid);
    clearTimeout(r.timer);
    return r;
  }

  _reply(f) {
    const r = this._takeRequest(f);
    if (r) r.resolve(f);
  }

  _joined(f) {
    const room = String(f.dstid ?? '');
    const st = this._rooms.get(room);
    if (st) {
      if (st.epoch && f.epoch && st.epoch !== f.epoch) {
        st.ahead.clear();
        st.seq = 0;
      }
      st.epoch = f.epoch || st.epoch;
      if ((f.seq || 0) > st.seq) {
        st.seq = f.seq;
        for (const s of st.ahead) if (s <= st.seq) st.ahead.delete(s);
        this._drainAhead(st);
      }
    }
    const info = { room, seq: f.seq || 0, epoch: f.epoch || '', recovered: f.recovered === true };
    // Resolve every join waiting for this room (several joins, or one
    // that was resent after a reconnect).
    for (let r = this._takeRequest(f); r; r = this._takeRequest(f)) r.resolve(info);
    this._emit('joined', info);
  }

  // _observeSeq advances a room's seq only over contiguous seqs, so that a
  // rejoin's since never skips a message this client has not seen.
  _observeSeq(room, seq) {
    const st = this._rooms.get(room);
    if (!st || seq <= st.seq) return;
    st.ahead.add(seq);
    this._drainAhead(st);
  }

  _drainAhead(st) {
    while (st.ahead.has(st.seq + 1)) {
      st.seq++;
      st.ahead.delete(st.seq);
    }
  }

  // ---- sending ----

  _write(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * send queues a message frame (cmd 10, 11 or an application cmd) in the
   * outbox and sends it when connected. It gets a cid unless it has one.
   * The promise resolves with the receipt (cmd 15) once the server stored
   * it, and rejects with a HubError if the server refused it for good, or
   * with an Error if the outbox is full.
   */
  send(frame) {
    const f = { ...frame };
    if (!f.cid) f.cid = newCID();
    if (this._outbox.length >= this._outboxMax) {
      return Promise.reject(new Error(`wshub: outbox full (${this._outboxMax} messages)`));
    }
    const entry = { cid: f.cid, frame: f, ts: Date.now(), sent: false };
    this._outbox.push(entry);
    this._saveOutbox();
    const p = new Promise((resolve, reject) => this._waiters.set(f.cid, { resolve, reject }));
    this._emit('outbox', this._outbox.length);
    entry.sent = this._write(f);
    return p;
  }

  /**
   * sendRaw writes a frame now, without outbox or receipt tracking (cmd 0,
   * 1, 14, application commands that need no receipt). It returns whether
   * the frame was written.
   */
  sendRaw(frame) {
    return this._write(frame);
  }

  _flushOutbox() {
    for (const e of this._outbox) {
      if (e.sent) continue;
      if (!this._write(e.frame)) return;
      e.sent = true;
    }
  }

  /** outbox returns a copy of the frames not yet receipted, oldest first. */
  outbox() {
    return this._outbox.map((e) => ({ ...e.frame }));
  }

  /** outboxSize is the number of messages not yet receipted. */
  get outboxSize() {
    return this._outbox.length;
  }

  _loadOutbox() {
    if (!this._storage) return;
    try {
      const raw = this._storage.getItem(this._storageKey);
      const list = raw ? JSON.parse(raw) : [];
      if (!Array.isArray(list)) return;
      for (const e of list.slice(-this._outboxMax)) {
        if (e && e.frame && e.cid) this._outbox.push({ cid: e.cid, frame: e.frame, ts: e.ts || 0, sent: false });
      }
    } catch (err) {
      this._emit('error', err);
    }
  }

  _saveOutbox() {
    if (!this._storage) return;
    try {
      if (this._outbox.length === 0) this._storage.removeItem(this._storageKey);
      else this._storage.setItem(this._storageKey, JSON.stringify(this._outbox.map(({ cid, frame, ts }) => ({ cid, frame, ts }))));
    } catch (err) {
      this._emit('error', err); // quota exceeded: the outbox still works in memory
    }
  }

  // ---- rooms and requests ----

  // _request registers a request waiting for its answer. Its timeout runs
  // only while the request is out on a connection (see _arm).
  _request(frame) {
    return new Promise((resolve, reject) => {
      this._requests.set(frame.cid, { cmd: frame.cmd, dstid: String(frame.dstid), resolve, reject, timer: 0 });
    });
  }

  // _arm starts the answer timeout of a request just written.
  _arm(cid) {
    const r = this._requests.get(cid);
    if (!r || r.timer) return;
    r.timer = setTimeout(() => {
      if (this._requests.delete(cid)) r.reject(new Error(`wshub: no answer to cmd ${r.cmd} within ${this.options.requestTimeout} ms`));
    }, this.options.requestTimeout);
  }

  _sendJoin(room, st, cid) {
    // Once the room's epoch is known, a join asks for the replay of what
    // came after the last contiguous seq (since 0: the room was empty).
    const f = { cmd: Cmd.Join, dstid: room, cid };
    if (st.seq > 0) f.since = st.seq;
    if (st.epoch) f.epoch = st.epoch;
    return this._write(f);
  }

  /**
   * join joins a room and remembers it: after every reconnect it is joined
   * again with since = the last seq seen, so missed messages are replayed.
   * opts.since / opts.epoch start from a known position (e.g. kept by the
   * page). Resolves with {room, seq, epoch, recovered}.
   */
  join(room, opts = {}) {
    room = String(room);
    this._leaving.delete(room);
    let st = this._rooms.get(room);
    if (!st) {
      st = { seq: opts.since || 0, epoch: opts.epoch || '', ahead: new Set() };
      this._rooms.set(room, st);
    }
    const cid = newCID();
    const p = this._request({ cmd: Cmd.Join, dstid: room, cid });
    // When not connected, the rejoin on open sends it.
    if (this._sendJoin(room, st, cid)) this._arm(cid);
    return p;
  }

  /** leave leaves a room and forgets it (sent on reconnect if not connected now). */
  leave(room) {
    room = String(room);
    this._rooms.delete(room);
    if (!this._write({ cmd: Cmd.Leave, dstid: room })) this._leaving.add(room);
  }

  /** rooms returns the joined rooms with their last contiguous seq and epoch. */
  rooms() {
    return [...this._rooms].map(([room, st]) => ({ room, seq: st.seq, epoch: st.epoch }));
  }

  /**
   * history asks for a conversation's stored messages: {user} (cmd 16) or
   * {room} (cmd 17), with optional since / before / limit. Resolves with the
   * reply frame ({items, more, epoch}); rejects if not connected.
   */
  history({ user, room, since, before, limit } = {}) {
    const f = room != null ? { cmd: Cmd.RoomHistory, dstid: String(room) } : { cmd: Cmd.History, dstid: String(user) };
    if (since) f.since = since;
    if (before) f.before = before;
    if (limit) f.limit = limit;
    f.cid = newCID();
    if (this.readyState !== State.OPEN) return Promise.reject(new Error('wshub: not connected'));
    const p = this._request(f);
    if (this._write(f)) this._arm(f.cid);
    return p;
  }
}
