// The demo chat page. Everything that has to do with the connection
// (reconnects, heartbeats, the outbox, acks, room recovery) is in wshub.js;
// this file is only the user interface.
import { WSHubClient, State, Cmd, newCID } from '/wshub.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const num = (k) => (params.has(k) ? Number(params.get(k)) : undefined);
const namePattern = /^[A-Za-z0-9_.-]{1,32}$/;

let me = '';
let client = null;
const convs = new Map(); // key ('u:bob' | 'r:lobby') -> conversation
let active = null; // key of the open conversation
const online = new Map(); // user id -> true / false, from watch() and 'presence' events
let watched = ''; // the peers watched, joined with ',' (to watch again only when they change)
const typingFor = 4000; // ms a typing indicator stays after the last typing event
const typingEvery = 2500; // ms between two typing frames while the user types
let lastTypingSent = 0;
let lastTypingConv = '';

// ---- sign in ----

function signedInName() {
  const q = params.get('user');
  if (q && namePattern.test(q)) return q;
  const s = sessionStorage.getItem('wshub-demo-user');
  return s && namePattern.test(s) ? s : '';
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('signin-name').value.trim();
  if (!namePattern.test(name)) return;
  sessionStorage.setItem('wshub-demo-user', name);
  start(name);
});

$('signout').addEventListener('click', () => {
  if (client) client.close(1000, 'signed out');
  sessionStorage.removeItem('wshub-demo-user');
  document.cookie = 'wshub_token=; path=/; max-age=0; SameSite=Strict';
  location.href = location.pathname;
});

// ---- helpers ----

function colorFor(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 55% 50%)`;
}

function paintAvatar(el, name, room) {
  el.textContent = room ? '#' : name.slice(0, 1);
  el.classList.toggle('room', !!room);
  el.style.setProperty('background', colorFor((room ? '#' : '') + name));
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function timeOf(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// ---- conversations ----

function convsKey() {
  return `wshub-demo:${me}:convs`;
}

function saveConvs() {
  const list = [...convs.values()].map((c) => ({ kind: c.kind, id: c.id }));
  localStorage.setItem(convsKey(), JSON.stringify(list));
}

function getConv(kind, id, create = true) {
  const key = (kind === 'room' ? 'r:' : 'u:') + id;
  let c = convs.get(key);
  if (!c && create) {
    // seq: the conversation's latest seq; read: this user's read marker;
    // seen: the peer's (direct only); typing: user id -> time it stops.
    c = { key, kind, id, msgs: new Map(), seq: 0, read: 0, seen: 0, typing: new Map(), loaded: false, loading: false, more: false };
    convs.set(key, c);
    saveConvs();
    renderConvs();
  }
  return c;
}

// convOf returns the conversation a message frame belongs to.
function convOf(f) {
  if (f.cmd === Cmd.Room) return getConv('room', String(f.dstid));
  const other = String(f.userid) === me ? String(f.dstid) : String(f.userid);
  return getConv('user', other);
}

function msgFromFrame(f) {
  return {
    id: f.id || '',
    cid: f.cid || '',
    seq: f.seq || 0,
    ts: f.ts || Date.now(),
    from: String(f.userid ?? me),
    text: f.content ?? '',
    pending: false,
    failed: false,
  };
}

// addMessage merges one message into a conversation; returns true if new.
function addMessage(c, m) {
  const key = m.id || 'c:' + m.cid;
  if (c.msgs.has(key)) return false;
  c.msgs.set(key, m);
  noteSeq(c, m);
  return true;
}

// noteSeq takes in a stored message's seq: the conversation's latest seq
// and, for one this user sent, the read marker (sending moves it).
function noteSeq(c, m) {
  if (!m.seq) return;
  c.seq = Math.max(c.seq, m.seq);
  if (m.from === me) c.read = Math.max(c.read, m.seq);
}

function unreadOf(c) {
  return Math.max(0, c.seq - c.read);
}

// visible reports whether conversation c is open and the page is seen.
function visible(c) {
  return c.key === active && !document.hidden;
}

// markRead tells the hub this user has read the open conversation up to
// its latest seq.
function markRead(c) {
  if (!visible(c) || c.seq <= c.read) return;
  c.read = c.seq;
  client.markRead(c.id, c.seq, { room: c.kind === 'room' });
}

// ---- the conversation list from the hub ----

// loadConversations merges the hub's list (cmd 18: the same on every
// device) into the page's, joins the rooms (so that the client tracks their
// seq for recovery) and watches the peers of the direct conversations.
async function loadConversations() {
  let list;
  try {
    list = await client.conversations({ limit: 200 });
  } catch (err) {
    console.warn('conversations', err);
    return;
  }
  list.items.forEach((it, i) => {
    if (!namePattern.test(it.dstid)) return;
    const c = getConv(it.room ? 'room' : 'user', it.dstid);
    c.rank = i; // the hub's order breaks ties of time
    c.seq = Math.max(c.seq, it.seq);
    c.read = Math.max(c.read, it.read);
    c.seen = Math.max(c.seen, it.seen);
    if (it.ts) c.ts = Math.max(c.ts || 0, it.ts);
    if (c.kind === 'room' && !client.rooms().some((r) => r.room === c.id)) {
      client.join(c.id).catch((err) => console.warn('join', c.id, err));
    }
  });
  const open = convs.get(active);
  if (open) markRead(open);
  renderConvs();
  if (open) renderChat();
  watchPeers();
}

// watchPeers watches the presence of the peers of the direct conversations
// (again only when they changed; after a reconnect wshub.js does it).
function watchPeers() {
  const peers = [...convs.values()].filter((c) => c.kind === 'user' && c.id !== me).map((c) => c.id).sort();
  const key = peers.join(',');
  if (key === watched) return;
  watched = key;
  client
    .watch(peers)
    .then((items) => {
      for (const it of items) online.set(it.userid, it.online);
      renderConvs();
      renderChatHead();
    })
    .catch((err) => console.warn('watch', err));
}

// ---- typing ----

// typingNames returns who is typing in c now.
function typingNames(c) {
  const now = Date.now();
  return [...c.typing].filter(([, until]) => until > now).map(([who]) => who);
}

function onTyping({ userid, dstid, room }) {
  if (userid === me) return; // another device of mine
  const c = room ? getConv('room', dstid) : getConv('user', userid);
  c.typing.set(userid, Date.now() + typingFor);
  renderTyping();
  setTimeout(renderTyping, typingFor + 50);
}

// renderTyping shows "typing…" in the list and under the open
// conversation while someone types.
function renderTyping() {
  for (const c of convs.values()) {
    const li = document.querySelector(`#convs [data-conv="${c.key}"]`);
    const names = typingNames(c);
    if (names.length === 0) c.typing.clear();
    if (!li) continue;
    const last = li.querySelector('.c-last');
    const on = names.length > 0;
    if (last.classList.contains('typing') !== on) renderConvs();
  }
  const c = convs.get(active);
  const box = $('typing');
  const names = c ? typingNames(c) : [];
  box.hidden = names.length === 0;
  box.textContent = names.length === 0 ? '' : c.kind === 'room' ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : 'typing…';
}

// sendTyping tells the open conversation that this user types: at once,
// then at most every typingEvery ms (the hub drops more than 5 a second).
function sendTyping() {
  const c = convs.get(active);
  if (!c || !client || !$('composer-input').value.trim()) return;
  const now = Date.now();
  if (c.key === lastTypingConv && now - lastTypingSent < typingEvery) return;
  lastTypingConv = c.key;
  lastTypingSent = now;
  client.typing(c.id, { room: c.kind === 'room' });
}

function sortedMessages(c) {
  return [...c.msgs.values()].sort((a, b) => {
    if (a.seq && b.seq) return a.seq - b.seq;
    if (a.seq !== b.seq) return a.seq ? -1 : 1; // stored ones before pending ones
    return a.ts - b.ts;
  });
}

function openConv(key) {
  const c = convs.get(key);
  if (!c) return;
  active = key;
  $('composer-input').disabled = false;
  $('send-btn').disabled = false;
  $('notice').hidden = true;
  markRead(c);
  renderConvs();
  renderChat();
  $('composer-input').focus();
  if (!c.loaded) loadHistory(c);
}

async function loadHistory(c, older = false) {
  if (c.loading || !client || client.readyState !== State.OPEN) return;
  c.loading = true;
  const q = { limit: 50 };
  if (older) {
    const first = sortedMessages(c).find((m) => m.seq);
    if (first) q.before = first.seq;
  }
  if (c.kind === 'room') q.room = c.id;
  else q.user = c.id;
  try {
    const reply = await client.history(q);
    for (const f of reply.items || []) addMessage(c, msgFromFrame(f));
    if (!older || !reply.more) c.more = !!reply.more;
    c.loaded = true;
    markRead(c);
  } catch (err) {
    console.warn('history', c.key, err);
  } finally {
    c.loading = false;
  }
  renderConvs();
  if (active === c.key) renderChat();
}

// ---- rendering ----

function renderConvs() {
  const ul = $('convs');
  ul.replaceChildren();
  const list = [...convs.values()].sort((a, b) => lastTS(b) - lastTS(a) || (a.rank ?? Infinity) - (b.rank ?? Infinity));
  for (const c of list) {
    const li = el('li');
    li.dataset.conv = c.key;
    if (c.key === active) li.classList.add('active');
    const av = el('div', 'avatar');
    paintAvatar(av, c.id, c.kind === 'room');
    const face = el('div', 'face');
    face.append(av);
    if (c.kind === 'user') {
      const on = online.get(c.id) === true;
      li.dataset.online = String(on);
      const dot = el('span', 'presence' + (on ? ' online' : ''));
      dot.title = on ? 'online' : 'offline';
      face.append(dot);
    }
    const main = el('div', 'c-main');
    main.append(el('div', 'c-name', c.kind === 'room' ? '#' + c.id : c.id));
    const last = sortedMessages(c).at(-1);
    const typers = typingNames(c);
    if (typers.length > 0) {
      main.append(el('div', 'c-last typing', c.kind === 'room' ? `${typers.join(', ')} typing…` : 'typing…'));
    } else {
      main.append(el('div', 'c-last', last ? (last.from === me ? 'You: ' : c.kind === 'room' ? last.from + ': ' : '') + last.text : c.kind === 'room' ? 'Room' : 'Direct messages'));
    }
    li.append(face, main);
    const unread = unreadOf(c);
    if (unread > 0) li.append(el('span', 'badge', String(unread)));
    li.addEventListener('click', () => openConv(c.key));
    ul.append(li);
  }
  $('convs-empty').hidden = convs.size > 0;
  const unread = list.reduce((n, c) => n + unreadOf(c), 0);
  document.title = (unread ? `(${unread}) ` : '') + `wshub chat: ${me}`;
}

function lastTS(c) {
  let t = c.ts || 0;
  for (const m of c.msgs.values()) t = Math.max(t, m.ts);
  return t;
}

function renderChat() {
  const box = $('messages');
  const c = convs.get(active);
  if (!c) return;
  renderChatHead();

  const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren();
  if (c.more) {
    const b = el('button', 'ghost older', 'Load older messages');
    b.type = 'button';
    b.addEventListener('click', () => loadHistory(c, true));
    box.append(b);
  }
  const msgs = sortedMessages(c);
  if (msgs.length === 0) {
    box.append(el('div', 'placeholder', c.loading ? 'Loading…' : 'No messages yet. Say hello!'));
  }
  // The seen tick goes on this user's last stored message of a direct
  // conversation once the peer's read marker reached it.
  const mine = msgs.filter((m) => m.from === me && m.seq);
  const lastMine = c.kind === 'user' && c.id !== me ? mine.at(-1) : null;
  let day = '';
  for (const m of msgs) {
    const d = new Date(m.ts).toDateString();
    if (d !== day) {
      day = d;
      box.append(el('div', 'day', d === new Date().toDateString() ? 'Today' : new Date(m.ts).toLocaleDateString()));
    }
    box.append(renderMessage(c, m, m === lastMine && c.seen >= m.seq));
  }
  if (stick || msgs.length < 30) box.scrollTop = box.scrollHeight;
  renderTyping();
}

function renderChatHead() {
  const c = convs.get(active);
  if (!c) return;
  $('chat-title').textContent = c.kind === 'room' ? '#' + c.id : c.id;
  const sub = $('chat-sub');
  sub.textContent = c.kind === 'room' ? 'Room' : online.get(c.id) ? 'Online' : 'Offline';
  sub.classList.toggle('online', c.kind === 'user' && online.get(c.id) === true);
  const av = $('chat-avatar');
  av.hidden = false;
  paintAvatar(av, c.id, c.kind === 'room');
}

function renderMessage(c, m, seen) {
  const mine = m.from === me;
  const row = el('div', 'msg ' + (mine ? 'mine' : 'theirs'));
  if (m.pending) row.classList.add('pending');
  if (m.failed) row.classList.add('failed');
  if (m.id) row.dataset.id = m.id;
  if (m.cid) row.dataset.cid = m.cid;
  if (!mine) {
    const av = el('div', 'avatar sm');
    paintAvatar(av, m.from, false);
    row.append(av);
  }
  const bubble = el('div', 'bubble');
  if (!mine && c.kind === 'room') bubble.append(el('div', 'from', m.from));
  bubble.append(el('div', 'msg-text', m.text));
  let status = timeOf(m.ts);
  if (mine) status += m.failed ? ' · not sent: ' + m.failed : m.pending ? ' · waiting to send' : seen ? ' · ✓✓ Seen' : ' · ✓';
  if (seen) row.classList.add('seen');
  bubble.append(el('div', 'meta', status));
  row.append(bubble);
  return row;
}

function renderConn() {
  const conn = $('conn');
  const text = $('conn-text');
  const action = $('conn-action');
  const s = client.readyState;
  conn.dataset.state = s;
  action.hidden = true;
  switch (s) {
    case State.OPEN:
      text.textContent = 'Connected';
      break;
    case State.CONNECTING:
      text.textContent = client.attempt > 0 ? 'Reconnecting…' : 'Connecting…';
      break;
    case State.RECONNECTING: {
      const secs = Math.max(1, Math.ceil((client.nextRetryAt - Date.now()) / 1000));
      text.textContent = `Reconnecting in ${secs} s`;
      action.textContent = 'Retry now';
      action.hidden = false;
      break;
    }
    case State.OFFLINE:
      text.textContent = 'Offline: waiting for the network';
      break;
    case State.CLOSED: {
      const code = client.lastClose ? client.lastClose.code : 0;
      text.textContent =
        code === 4000 ? 'Disconnected: signed in elsewhere' : code === 1008 ? 'Disconnected by the server' : 'Disconnected';
      action.textContent = 'Reconnect';
      action.hidden = false;
      break;
    }
    default:
      text.textContent = s;
  }
}

function renderOutbox() {
  const n = client.outboxSize;
  const box = $('outbox');
  box.dataset.count = String(n);
  box.hidden = n === 0;
  box.textContent = n === 1 ? '1 message waiting to be sent' : `${n} messages waiting to be sent`;
}

function showNotice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
}

// ---- the app ----

function start(name) {
  me = name;
  document.cookie = `wshub_token=${encodeURIComponent(me)}; path=/; SameSite=Strict`;
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = me;
  paintAvatar($('me-avatar'), me, false);

  client = new WSHubClient(params.get('ws') || '/ws', {
    token: me,
    heartbeatInterval: num('heartbeat'),
    pongTimeout: num('pongTimeout'),
    backoff: { base: num('backoffBase'), max: num('backoffMax') },
    // Per tab: survives a reload, and two tabs do not send each other's messages.
    outbox: { storageKey: `wshub-demo:${me}:outbox`, storage: sessionStorage },
  });
  window.wshubDemo = { client, convs };

  // Messages restored from the outbox of an earlier page load.
  for (const f of client.outbox()) {
    const c = convOf({ ...f, userid: me });
    addMessage(c, { ...msgFromFrame({ ...f, userid: me }), pending: true });
  }

  client.on('state', renderConn);
  client.on('outbox', renderOutbox);
  client.on('message', (f) => {
    if (f.cmd !== Cmd.Single && f.cmd !== Cmd.Room) return;
    const c = convOf(f);
    c.typing.delete(String(f.userid)); // a message ends the typing
    if (!addMessage(c, msgFromFrame(f))) return;
    markRead(c);
    if (c.kind === 'user') watchPeers(); // a new peer
    renderConvs();
    if (c.key === active) renderChat();
  });
  client.on('read', ({ userid, dstid, room, seq }) => {
    if (userid === me) {
      // Read on another device of mine: the conversation is dstid.
      const c = getConv(room ? 'room' : 'user', dstid);
      c.read = Math.max(c.read, seq);
      c.seq = Math.max(c.seq, seq);
    } else if (!room) {
      // The peer read our direct conversation.
      const c = getConv('user', userid);
      c.seen = Math.max(c.seen, seq);
    } else return;
    renderConvs();
    if (active) renderChat();
  });
  client.on('typing', onTyping);
  client.on('presence', ({ userid, online: on }) => {
    online.set(userid, on);
    renderConvs();
    renderChatHead();
  });
  client.on('receipt', ({ receipt, frame, error }) => {
    if (!frame) return;
    const c = convOf({ ...frame, userid: me });
    const pendingKey = 'c:' + frame.cid;
    const m = c.msgs.get(pendingKey);
    if (!m) return;
    if (error) {
      m.pending = false;
      m.failed = error.reason || 'refused';
    } else {
      c.msgs.delete(pendingKey);
      Object.assign(m, { id: receipt.id, seq: receipt.seq || 0, ts: receipt.ts || m.ts, pending: false });
      if (!c.msgs.has(receipt.id)) c.msgs.set(receipt.id, m);
      noteSeq(c, m);
    }
    renderConvs();
    if (c.key === active) renderChat();
  });
  client.on('joined', (info) => {
    const c = getConv('room', info.room);
    if (!info.recovered && c.loaded) {
      // History no longer reaches back, or the server's store was
      // recreated: reload the room instead of showing a hole.
      for (const [k, m] of c.msgs) if (!m.pending) c.msgs.delete(k); // own unsent ones stay
      c.loaded = false;
      loadHistory(c);
      if (active === c.key) showNotice('Some messages could not be replayed; the room history was reloaded.');
    }
  });
  client.on('open', () => {
    // Direct messages missed while away arrive from the server's pending
    // queue and rooms are replayed by rejoining; refreshing the open
    // conversation also picks up what this user sent from other devices.
    for (const c of convs.values()) if (c.key !== active) c.loaded = false;
    const c = convs.get(active);
    if (c) loadHistory(c);
    // The list, unread counts and markers from the hub: the same on every
    // device, and what changed while this page was away.
    loadConversations();
  });
  document.addEventListener('visibilitychange', () => {
    const c = convs.get(active);
    if (c) markRead(c);
    renderConvs();
  });
  client.on('error', (err) => console.warn('wshub:', err));

  $('conn-action').addEventListener('click', () => client.reconnect());
  setInterval(() => {
    if (client.readyState === State.RECONNECTING) renderConn();
  }, 250);

  // Conversations of earlier visits; rooms are joined again so that the
  // client tracks their seq for recovery.
  let saved = [];
  try {
    saved = JSON.parse(localStorage.getItem(convsKey()) || '[]');
  } catch {
    saved = [];
  }
  for (const s of saved) {
    if (!s || !namePattern.test(String(s.id))) continue;
    const c = getConv(s.kind === 'room' ? 'room' : 'user', String(s.id));
    if (c.kind === 'room') client.join(c.id).catch((err) => console.warn('join', c.id, err));
  }
  renderConn();
  renderOutbox();
  renderConvs();
}

$('new-chat').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('new-chat-input').value.trim();
  if (!namePattern.test(id)) return;
  $('new-chat-input').value = '';
  openConv(getConv('user', id).key);
  if (client.readyState === State.OPEN) watchPeers();
});

$('join-room').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('join-room-input').value.trim();
  if (!namePattern.test(id)) return;
  $('join-room-input').value = '';
  const c = getConv('room', id);
  openConv(c.key);
  client
    .join(id)
    .then(() => loadHistory(c))
    .catch((err) => {
      showNotice(`Could not join #${id}: ${err.reason || err.message}`);
    });
});

$('composer-input').addEventListener('input', sendTyping);

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const c = convs.get(active);
  const input = $('composer-input');
  const text = input.value.trim();
  if (!c || !text) return;
  input.value = '';
  lastTypingSent = 0; // the next keystroke is a new burst of typing
  const frame = { cmd: c.kind === 'room' ? Cmd.Room : Cmd.Single, dstid: c.id, content: text, cid: newCID() };
  addMessage(c, { ...msgFromFrame({ ...frame, userid: me }), pending: true });
  renderConvs();
  renderChat();
  client.send(frame).catch((err) => console.warn('send', err)); // the receipt event updates the view
});

const who = signedInName();
if (who) start(who);
else $('signin').hidden = false;
