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
//   const quote = await c.call({ cmd: 100, content: 'ACME' }); // the answer with the same cid
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
//     backoff.resetAfter. Close codes 4000 (replaced) and 1008 (policy), and
//     a handshake refused with HTTP 401 or 403, stop reconnecting unless
//     shouldReconnect says otherwise or the page calls reconnect(). Browsers
//     hide the HTTP status of a refused handshake, so after one the client
//     asks for it with a plain GET of the same URL (the status probe); a
//     Retry-After there is the shortest next delay (up to backoff.max).
//     While the window is offline no attempt is made; the online event
//     connects at once.
//   - outbox: every message given to send() stays in a bounded outbox
//     (optionally in localStorage / sessionStorage) until its receipt
//     (cmd 15) arrives; after a reconnect it is sent again with the same cid,
//     and the server's (sender, cid) dedup makes that safe.
//   - ack=1: received messages are acknowledged (cmd 14, batched); duplicates
//     (same id) are dropped and acknowledged again.
//   - rooms: joined rooms are remembered with the last contiguous seq and the
//     epoch seen, and rejoined with since/epoch after a reconnect, so the
//     server replays what was missed; the 'joined' event reports recovered.
//     A join refused for now (429, 500, 503) keeps the room: the socket is
//     dropped and the join sent again after the reconnect.
//   - requests: call() sends an application command with a fresh cid and
//     resolves with the answer carrying that cid. It is written once: the
//     hub does not deduplicate application commands, so when the socket
//     closes before the answer the promise rejects with ConnectionLostError.
//   - presence: watch() asks the hub to report when the given users come
//     online or go offline ('presence' events). The hub keeps a watch per
//     connection, so after a reconnect the client sends the list again by
//     itself and reports the fresh states as 'presence' events.

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
  Conversations: 18,
  Read: 19,
  Welcome: 20,
  Presence: 21,
  Typing: 22,
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

/**
 * HTTP statuses of a refused handshake after which the client does not
 * reconnect by default: 401 (the token was refused) and 403 (the origin, or
 * the application, refused the page). Every other status is retried.
 */
export const NoReconnectStatuses = Object.freeze([401, 403]);

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

/**
 * ConnectionLostError is the rejection of a request whose socket closed
 * before the answer came: call() (the command may or may not have run on
 * the hub), and history().
 */
export class ConnectionLostError extends Error {
  constructor(message = 'wshub: connection lost before the answer') {
    super(message);
    this.name = 'ConnectionLostError';
  }
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

// Error codes of an error frame (cmd 40) after which resending the same
// outbox frame later can succeed. (Handshake statuses: every one but
// NoReconnectStatuses is retried.)
const transientCodes = new Set([429, 500, 503]);

const seenLimit = 10000; // ids remembered for duplicate detection
const abandonedLimit = 256; // cids of timed-out calls whose late answers are dropped
// Seqs of a room remembered above its last contiguous seq; past it the
// oldest gap is given up (a hub delivers a room in seq order, so a gap
// that old will not fill on this connection).
const aheadLimit = 4096;

// closedError is the rejection of a call made on, or still waiting when, a
// client that stopped.
function closedError() {
  const err = new Error('wshub: client closed');
  err.name = 'ClosedError';
  return err;
}

/**
 * parseRetryAfter returns a Retry-After header value (seconds or an HTTP
 * date) in ms, or 0 when it is missing, malformed or in the past.
 */
export function parseRetryAfter(value, now = Date.now()) {
  const v = String(value ?? '').trim();
  if (!v) return 0;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isFinite(t) && t > now ? t - now : 0;
}

/**
 * WSHubClient is one logical connection to a hub that survives any number of
 * WebSocket connections.
 *
 * Events (subscribe with on(type, fn), which returns an unsubscribe function):
 *   'state'        readyState changed: (state)
 *   'open'         a socket is open: ()
 *   'welcome'      the server's cmd 20: (frame); userId is set
 *   'close'        a socket closed: ({code, reason, wasClean, willReconnect, status, retryAfter});
 *                  after a refused handshake, status is what the status probe got (0 when
 *                  unknown; 400 means the hub would have taken the socket) and retryAfter
 *                  its Retry-After in ms
 *   'reconnecting' next attempt scheduled: ({attempt, delay})
 *   'message'      a new message (cmd 10, 11, 100+ except answers to call()), duplicates removed: (frame)
 *   'receipt'      a sent message was stored: ({receipt, frame})
 *   'joined'       a room join answered: ({room, seq, epoch, recovered})
 *   'typing'       someone is typing (cmd 22): ({userid, dstid, room}); dstid is this user, or
 *                  with room true a room this user is in
 *   'read'         a read marker moved (cmd 19): ({userid, dstid, room, seq}); from another
 *                  device of this user (userid === userId: the conversation is dstid), or from
 *                  the peer of a direct conversation (the conversation is userid); keep the
 *                  highest seq
 *   'presence'     a watched user (see watch()) came online or went offline (cmd 21):
 *                  ({userid, online, ts}), ts the server time of the change; also each state
 *                  the hub lists when the client watches again after a reconnect (ts 0)
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
   * @param {function} [options.shouldReconnect] (closeEvent) => bool; default: not after close code 4000
   *                                            or 1008, nor after HTTP 401 or 403 (closeEvent.status)
   * @param {object} [options.outbox]           {max: 1000, storageKey: '', storage: localStorage}
   * @param {number} [options.requestTimeout]   ms before join/history/call promises reject (default 15000)
   * @param {boolean} [options.statusProbe]     after a refused handshake, GET the URL to learn the HTTP
   *                                            status the browser hides (default true; needs same origin
   *                                            or CORS on the hub)
   * @param {function} [options.fetch]          fetch for the status probe (default globalThis.fetch)
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
      shouldReconnect:
        o.shouldReconnect ?? ((ev) => !NoReconnectCodes.includes(ev.code) && !NoReconnectStatuses.includes(ev.status)),
      requestTimeout: o.requestTimeout ?? 15000,
      statusProbe: o.statusProbe ?? true,
      fetch: o.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null),
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
    /** The last close: {code, reason, wasClean, willReconnect, status, retryAfter}, or null. */
    this.lastClose = null;

    this._handlers = new Map(); // event type -> Set of functions
    this._ws = null; // the current socket; handlers of older sockets ignore their events
    this._stopped = false; // close() was called or the server said not to reconnect
    this._offline = globalThis.navigator ? globalThis.navigator.onLine === false : false;
    this._timers = { retry: 0, ping: 0, pong: 0, stable: 0, ack: 0, flush: 0 };
    this._outbox = []; // [{cid, frame, ts, sent}] in send order
    this._waiters = new Map(); // cid -> {resolve, reject} of send()
    this._requests = new Map(); // cid -> {cmd, dstid, resolve, reject, timer, watch} of join/history/conversations/presence
    this._watching = []; // user ids of the latest watch(), watched again on every connection
    this._calls = new Map(); // cid -> {frame, resolve, reject, timer, sent} of call()
    this._abandoned = new Set(); // cids of calls that timed out, insertion ordered, bounded by abandonedLimit
    this._probing = null; // the refused socket whose status probe is under way
    this._rooms = new Map(); // room -> {seq, epoch, ahead: Set<number>}
    this._leaving = new Set(); // rooms left while disconnected; cmd 13 goes out on reconnect
    this._reads = new Map(); // 'd:'/'r:' + dstid -> highest seq marked while disconnected; cmd 19 goes out on reconnect
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
    this._probing = null;
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener('online', this._onOnline);
      globalThis.removeEventListener('offline', this._onOffline);
    }
    clearTimeout(this._timers.retry);
    if (this._ws) this._drop(code, reason, true);
    this._failCalls(false, closedError);
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
    this._probing = null;
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
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (this._ws === ws) this._opened();
    };
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._data(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      const info = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
      if (opened || this._stopped || !this.options.statusProbe || !this.options.fetch) {
        this._closed(info);
        return;
      }
      // The handshake failed, and the browser does not say with which
      // HTTP status: ask for it before deciding whether to come back.
      this._probing = ws;
      this._probeStatus().then(({ status, retryAfter }) => {
        if (this._probing !== ws) return; // close(), connect() or the online event came first
        this._probing = null;
        if (status) Object.assign(info, { status, retryAfter, reason: info.reason || `HTTP ${status}` });
        this._closed(info);
      });
    };
    ws.onerror = () => {}; // onclose follows and carries what there is to know
  }

  // _probeStatus GETs the socket's URL over http(s) without the upgrade,
  // which the hub answers like the handshake up to the upgrade itself: 401
  // or 403 when it refuses the page, 503 (or 429) with Retry-After when it
  // is busy, 400 when it would have let the socket in. It resolves with
  // {status, retryAfter} (ms), status 0 when it cannot tell (a network error,
  // a cross-origin hub without CORS).
  async _probeStatus() {
    const u = new URL(this._socketURL());
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = ctl ? setTimeout(() => ctl.abort(), this.options.pongTimeout) : 0;
    try {
      const res = await this.options.fetch(u.toString(), {
        cache: 'no-store',
        credentials: 'same-origin',
        redirect: 'manual',
        signal: ctl ? ctl.signal : undefined,
      });
      try {
        if (res.body) res.body.cancel().catch(() => {});
      } catch {
        // nothing to free
      }
      return { status: res.status || 0, retryAfter: parseRetryAfter(res.headers.get('Retry-After')) };
    } catch {
      return { status: 0, retryAfter: 0 };
    } finally {
      clearTimeout(timer);
    }
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
    for (const [k, seq] of this._reads) {
      const f = { cmd: Cmd.Read, dstid: k.slice(2), seq };
      if (k[0] === 'r') f.room = true;
      this._write(f);
    }
    this._reads.clear();
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
    this._rewatch();
    this._flushOutbox();
    this._flushCalls();
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
    const lastWatch = this._lastWatch();
    for (const [cid, r] of this._requests) {
      if (r.cmd === Cmd.Join || cid === lastWatch) {
        // Sent again, and answered, after the reconnect.
        clearTimeout(r.timer);
        r.timer = 0;
        continue;
      }
      clearTimeout(r.timer);
      this._requests.delete(cid);
      r.reject(new ConnectionLostError('wshub: connection lost'));
    }
    // Calls written on this socket are not written again: the hub does not
    // deduplicate application commands, so that could run one twice.
    this._failCalls(true, () => new ConnectionLostError());
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
    this.lastClose = {
      code: ev.code,
      reason: ev.reason || '',
      wasClean: !!ev.wasClean,
      willReconnect,
      status: ev.status || 0,
      retryAfter: ev.retryAfter || 0,
    };
    this._emit('close', this.lastClose);
    if (!willReconnect) {
      this._failCalls(false, closedError);
      this._setState(State.CLOSED);
      return;
    }
    this._scheduleReconnect(ev.retryAfter || 0);
  }

  // _scheduleReconnect waits the backoff delay, raised to floor ms (a
  // Retry-After) but never above backoff.max, before the next attempt.
  _scheduleReconnect(floor = 0) {
    clearTimeout(this._timers.retry);
    if (this._offline) {
      this.nextRetryAt = 0;
      this._setState(State.OFFLINE);
      return;
    }
    this.attempt++;
    let delay = backoffDelay(this.attempt, this.options.backoff, this.options.random);
    if (floor > 0) delay = Math.max(delay, Math.min(floor, this.options.backoff.max));
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
        if (!this._answer(f)) this._receipt(f);
        return;
      case Cmd.Error:
        this._error(f);
        return;
      case Cmd.Join:
        this._joined(f);
        return;
      case Cmd.History:
      case Cmd.RoomHistory:
      case Cmd.Conversations:
        this._reply(f);
        return;
      case Cmd.Read:
        this._emit('read', { userid: String(f.userid ?? ''), dstid: String(f.dstid ?? ''), room: f.room === true, seq: f.seq || 0 });
        return;
      case Cmd.Presence:
        this._presence(f);
        return;
      case Cmd.Typing:
        this._emit('typing', { userid: String(f.userid ?? ''), dstid: String(f.dstid ?? ''), room: f.room === true });
        return;
      default:
        if (f.cmd >= Cmd.App && f.cid && (this._answer(f) || this._abandoned.has(f.cid))) return;
        this._message(f);
    }
  }

  // _answer settles the call waiting for f.cid with f (a HubError for cmd
  // 40) and reports whether there was one.
  _answer(f) {
    const c = f.cid ? this._calls.get(f.cid) : null;
    if (!c) return false;
    this._calls.delete(f.cid);
    clearTimeout(c.timer);
    if (f.cmd === Cmd.Error) c.reject(new HubError(f));
    else c.resolve(f);
    return true;
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
    if (this._answer(f)) return;
    const err = new HubError(f);
    const r = f.cid ? this._requests.get(f.cid) : null;
    if (r && r.cmd === Cmd.Join && transientCodes.has(f.code) && this._rooms.has(r.dstid)) {
      // The hub could not (re)join the room now (its store unavailable,
      // say), so it replayed nothing: keep the request, reconnect after
      // the backoff and send it again, so what was missed is replayed.
      clearTimeout(r.timer);
      r.timer = 0;
      this._emit('error', err);
      this._drop(1000, `join of ${r.dstid} refused (${f.code}), reconnecting`, false);
      return;
    }
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

  // _presence handles cmd 21: a transition of a watched user, or the reply
  // to watch(), roomPresence() or the re-watch after a reconnect.
  _presence(f) {
    if (!Array.isArray(f.items) && f.userid != null && f.userid !== '') {
      this._emit('presence', { userid: String(f.userid), online: f.online === true, ts: f.ts || 0 });
      return;
    }
    const r = this._takeRequest(f);
    if (!r) return; // the answer to a request that timed out
    const items = (f.items || [])
      .filter((it) => it && typeof it === 'object')
      .map((it) => ({ userid: String(it.userid ?? ''), online: it.online === true }));
    r.resolve(items);
  }

  // _lastWatch returns the cid of the newest watch request still waiting
  // for its answer, or ''.
  _lastWatch() {
    let cid = '';
    for (const [k, r] of this._requests) if (r.watch) cid = k;
    return cid;
  }

  // _rewatch sends the watch list on a new connection: the hub keeps a
  // watch per connection. A watch() still waiting for its answer is sent
  // again with its cid (and its promise gets the states); otherwise the
  // states of the answer are reported as 'presence' events.
  _rewatch() {
    let cid = this._lastWatch();
    if (!cid) {
      if (this._watching.length === 0) return;
      cid = newCID();
      this._watchRequest(cid).then(
        (items) => {
          for (const it of items) this._emit('presence', { userid: it.userid, online: it.online, ts: 0 });
        },
        (err) => this._emit('error', err),
      );
    }
    if (this._write({ cmd: Cmd.Presence, ids: this._watching, cid })) this._arm(cid);
  }

  _watchRequest(cid) {
    const p = this._request({ cmd: Cmd.Presence, cid });
    this._requests.get(cid).watch = true;
    return p;
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
    if (st.ahead.size > aheadLimit) st.seq = Math.min(...st.ahead) - 1;
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

  /**
   * call sends an application command (cmd 100 and up) as a request with a
   * fresh cid (frame.cid is ignored) and resolves with the hub's answer: the
   * first frame carrying that cid, which is not emitted as a 'message'. By
   * convention the handler answers with
   * n.Send(&wshub.Frame{Cmd: f.Cmd, CID: f.CID, ...}). It rejects with a
   * HubError (code, reason) when the answer is an error frame (cmd 40); with
   * a ConnectionLostError when the socket the request went out on closes
   * before the answer (the request is not sent again: the hub does not
   * deduplicate application commands, so it may or may not have run); with
   * an Error named 'TimeoutError' after opts.timeout ms (default
   * requestTimeout), counted from the call, after which a late answer is
   * dropped; and with an Error named 'ClosedError' when the client is or
   * becomes closed. Made while not connected, the request waits for the
   * next connection.
   */
  call(frame, { timeout } = {}) {
    const f = { ...frame, cid: newCID() };
    if (!(f.cmd >= Cmd.App)) {
      return Promise.reject(new Error(`wshub: call is for application commands (${Cmd.App} and up), not cmd ${f.cmd}`));
    }
    if (this.readyState === State.CLOSED) return Promise.reject(closedError());
    const ms = timeout ?? this.options.requestTimeout;
    return new Promise((resolve, reject) => {
      const c = { frame: f, resolve, reject, sent: false, timer: 0 };
      c.timer = setTimeout(() => {
        if (this._calls.get(f.cid) !== c) return;
        this._calls.delete(f.cid);
        this._abandoned.add(f.cid);
        if (this._abandoned.size > abandonedLimit) this._abandoned.delete(this._abandoned.values().next().value);
        const err = new Error(`wshub: no answer to cmd ${f.cmd} within ${ms} ms`);
        err.name = 'TimeoutError';
        reject(err);
      }, ms);
      this._calls.set(f.cid, c);
      c.sent = this._write(f);
    });
  }

  // _flushCalls writes the calls made while there was no connection.
  _flushCalls() {
    for (const c of this._calls.values()) {
      if (c.sent) continue;
      if (!this._write(c.frame)) return;
      c.sent = true;
    }
  }

  // _failCalls rejects the calls already written (sentOnly) or all of them
  // with makeErr().
  _failCalls(sentOnly, makeErr) {
    for (const [cid, c] of this._calls) {
      if (sentOnly && !c.sent) continue;
      this._calls.delete(cid);
      clearTimeout(c.timer);
      c.reject(makeErr());
    }
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
      this._requests.set(frame.cid, { cmd: frame.cmd, dstid: String(frame.dstid ?? ''), resolve, reject, timer: 0 });
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

  /**
   * typing tells dstid that this user is typing (cmd 22): a user, or with
   * {room: true} a room this user is a member of (otherwise an 'error'
   * event with a HubError 403 follows). Fire and forget: no receipt, no
   * answer. Typing is ephemeral, so it never enters the outbox: when not
   * connected it is dropped. It returns whether the frame was written. The
   * hub drops more than 5 a second per connection; call it when the user
   * starts typing and every few seconds while they go on.
   */
  typing(dstid, { room = false } = {}) {
    if (dstid == null || dstid === '') throw new Error('wshub: typing needs a dstid');
    if (this.readyState !== State.OPEN) return false;
    const f = { cmd: Cmd.Typing, dstid: String(dstid) };
    if (room) f.room = true;
    return this._write(f);
  }

  /**
   * markRead tells the hub that this user has read the direct conversation
   * with user dstid, or with {room: true} room dstid, up to seq (cmd 19).
   * The hub keeps the marker per user and conversation, only forward and
   * never past the latest seq, and when it moved sends a 'read' event to
   * this user's other connections and, for a direct conversation, to the
   * peer's (not to this client). No answer; a room this user is not in
   * gives an 'error' event with a HubError 403. When not connected, the
   * highest seq per conversation is sent on the next connection. It
   * returns whether the frame was written now.
   */
  markRead(dstid, seq, { room = false } = {}) {
    if (dstid == null || dstid === '') throw new Error('wshub: markRead needs a dstid');
    const f = { cmd: Cmd.Read, dstid: String(dstid), seq: Number(seq) || 0 };
    if (room) f.room = true;
    if (this.readyState === State.OPEN && this._write(f)) return true;
    const k = (room ? 'r:' : 'd:') + f.dstid;
    this._reads.set(k, Math.max(this._reads.get(k) || 0, f.seq));
    return false;
  }

  /**
   * watch asks the hub to report the presence of the users ids (cmd 21),
   * replacing the list watched before (watch([]) watches nobody; at most
   * 1,000 ids). Resolves with their current states, [{userid, online}];
   * from then on each change comes as a 'presence' event ({userid, online,
   * ts}). The hub keeps the watch per connection: the client remembers the
   * list and sends it again after every reconnect, reporting the states
   * the hub lists then as 'presence' events (ts 0), since changes may have
   * been missed meanwhile. When not connected the request goes out on the
   * next connection. Rejects on an error frame (HubError) or when no
   * answer comes within requestTimeout of the request being written.
   */
  watch(ids) {
    if (!Array.isArray(ids)) throw new Error('wshub: watch needs an array of user ids');
    if (ids.length > 1000) throw new Error('wshub: watch takes at most 1000 ids');
    this._watching = ids.map(String);
    // An older watch still waiting is superseded: this one's answer tells.
    for (const r of this._requests.values()) r.watch = false;
    const cid = newCID();
    const p = this._watchRequest(cid);
    if (this._write({ cmd: Cmd.Presence, ids: this._watching, cid })) this._arm(cid);
    return p;
  }

  /** watching returns the user ids of the latest watch(), sent again after a reconnect. */
  watching() {
    return [...this._watching];
  }

  /**
   * roomPresence lists the members of room and whether each is online
   * (cmd 21 with room); it watches nothing. Resolves with [{userid,
   * online}]. Members only: otherwise it rejects with a HubError 403. Rejects
   * if not connected, or when the connection is lost before the answer
   * (ConnectionLostError).
   */
  roomPresence(room) {
    if (room == null || room === '') throw new Error('wshub: roomPresence needs a room');
    const f = { cmd: Cmd.Presence, dstid: String(room), room: true, cid: newCID() };
    if (this.readyState !== State.OPEN) return Promise.reject(new Error('wshub: not connected'));
    const p = this._request(f);
    if (this._write(f)) this._arm(f.cid);
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

  /**
   * conversations asks for this user's conversations (cmd 18), most recent
   * message first: every direct conversation with a message and every room
   * the user is in. limit defaults to the hub's 100 (at most 1,000).
   * Resolves with {items, more}: each item {dstid, room, seq, ts, read,
   * seen, unread} (dstid: the peer, or the room with room true; seq and ts
   * 0 for a room without messages; seen is the peer's marker, direct
   * only). Rejects if not connected, on an error frame (HubError; 404 when
   * the hub's store keeps no conversation list), or when the connection is
   * lost before the answer (ConnectionLostError).
   */
  conversations({ limit } = {}) {
    const f = { cmd: Cmd.Conversations, cid: newCID() };
    if (limit) f.limit = limit;
    if (this.readyState !== State.OPEN) return Promise.reject(new Error('wshub: not connected'));
    const p = this._request(f);
    if (this._write(f)) this._arm(f.cid);
    return p.then((r) => ({
      items: (r.items || []).filter((it) => it && typeof it === 'object').map((it) => ({
        dstid: String(it.dstid ?? ''),
        room: it.cmd === Cmd.Room,
        seq: it.seq || 0,
        ts: it.ts || 0,
        read: it.read || 0,
        seen: it.seen || 0,
        unread: it.unread || 0,
      })),
      more: r.more === true,
    }));
  }
}
