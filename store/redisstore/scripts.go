package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts below run inside Redis: a script runs alone (no other
// command of any client runs between its first and its last step). Every
// script touches the keys of one hash slot (one conversation's, one
// user's, or the presence keys), so that it runs on a Redis Cluster; see
// the package doc for how Append is split into such steps. Each script checks the types of the
// keys it will write before its first write, so that a key of the wrong
// type (written by something else) fails the script before it changed
// anything: Redis does not roll a script back.
//
// Numbers: Lua 5.1 numbers are doubles, exact up to 2^53; seqs and pending
// scores stay far below that. Numbers are formatted with '%d' because
// tostring would switch to exponent notation above 1e14.
//
// unpack: Lua in Redis unpacks at most ~8000 values at once, so field lists
// are passed to HMGET in chunks of chunkSize.

// convAppendScript is step 1 of Append: the conversation's slot. See
// Store.Append and the package doc.
//
// KEYS[1]  the conversation hash
// KEYS[2]  the (sender, cid) record, when ARGV[1] == '1'
//
// ARGV[1]  '1' with a cid record, '0' without
// ARGV[2]  encoded message (without seq)
// ARGV[3]  epoch to use if the conversation has none
// ARGV[4]  history bound (0 = unbounded)
// ARGV[5]  cid record TTL, ms
// ARGV[6]  conversation TTL, ms (0 = none)
// ARGV[7]  most history fields deleted by one call
// ARGV[8]  the message's meta field (origin and pending list, see
// encodeMeta), or empty for none
// ARGV[9]  the room channel to announce on (a room message), or empty
// ARGV[10] announcement header (kind and origin, see encodeMessageHeader)
//
// The duplicate check comes first. A duplicate writes nothing but the cid
// record's TTL, set again to what is left of it: a write, so that a WAIT
// on the same connection covers everything written before (the first
// Append's step included).
//
// Returns {1, stored value, its meta field or false, epoch or false, 1
// when history still holds the stored value at its seq (else 0: trimmed,
// or a conversation lost and started again)} for a duplicate; {0, seq,
// epoch} otherwise.
const convAppendLua = `
local conv = KEYS[1]
local t = redis.call('TYPE', conv)['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. conv .. ' holds a ' .. t .. ', not a hash')
end
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev then
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
    local ps = string.match(prev, '^(%d+):')
    local meta, same = false, 0
    if ps then
      local hv = redis.call('HMGET', conv, ps, 'x' .. ps)
      if hv[1] == prev then same = 1 end
      meta = hv[2]
    end
    return {1, prev, meta, redis.call('HGET', conv, 'e'), same}
  end
end

local h = redis.call('HMGET', conv, 'n', 'f', 'e')
local seq = (tonumber(h[1]) or 0) + 1
local sf = string.format('%d', seq)
local v = sf .. ':' .. ARGV[2]
local epoch = h[3] or ARGV[3]

local first = tonumber(h[2]) or seq
local nf = first
local maxh = tonumber(ARGV[4])
if maxh > 0 then
  local stop = seq - maxh + 1
  local batch = tonumber(ARGV[7])
  if stop > first + batch then stop = first + batch end
  if nf < stop then
    local gone = {}
    while nf < stop do
      local g = string.format('%d', nf)
      gone[#gone + 1] = g
      gone[#gone + 1] = 'x' .. g
      nf = nf + 1
    end
    redis.call('HDEL', conv, unpack(gone))
  end
end
redis.call('HSET', conv, sf, v, 'n', sf, 'f', string.format('%d', nf), 'e', epoch)
if ARGV[8] ~= '' then
  redis.call('HSET', conv, 'x' .. sf, ARGV[8])
end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  redis.call('PEXPIRE', conv, ttl)
elseif seq == 1 then
  redis.call('PERSIST', conv)
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[2], v, 'PX', ARGV[5])
end
if ARGV[9] ~= '' then
  redis.call('SPUBLISH', ARGV[9], ARGV[10] .. v)
end
return {0, seq, epoch}
`

var convAppendScript = redis.NewScript(convAppendLua)

// userApplyScript is step 2 of Append: one user's slot. It applies a run
// of a conversation's messages to the user U's keys, in seq order, at most
// once each. See Store.Append and the package doc.
//
// KEYS[1] U's cursor hash (conversation -> "<seq>:<epoch>", the last seq
// applied for U)
// KEYS[2] U's pending zset, KEYS[3] U's pending hash, KEYS[4] U's pending
// counts hash
// KEYS[5] U's read markers hash
// KEYS[6] U's conversation index zset, KEYS[7] U's index heads hash
// KEYS[8] U's pending epoch hash
//
// ARGV[1] conversation id
// ARGV[2] floor: the seqs at or below it are gone from history (0: none)
// ARGV[3] mode: 'd' a missing cursor is 0 (every conversation but a
// room: U gets every message of it applied, most with no flag
// when U is in few of them); 'n' no cursor at all (a room: every
// message of the run is applied, which ZADD NX and the marker's
// max keep idempotent)
// ARGV[4] the conversation's epoch (empty: the cursor's)
// ARGV[5] U's channel
// ARGV[6] the epoch to give U's pending queue if it has none (empty when
// no message of the run is enqueued)
// ARGV[7..] groups of 6: seq, stored value, flags, announcement header,
// index score (-TS), sender
//
// Flags, any of: 'p' enqueue into U's pending queue; 's' move U's read
// marker to seq (U is the sender); 'i' put the conversation at the top
// of U's index with seq; 'u' announce the message on U's channel.
//
// An enqueued message's score in the pending zset is one more than the
// queue's last score ("n" of the epoch hash, or the zset's highest score
// if higher): scores only grow while the queue lives, even when its last
// messages are acknowledged, so that a PendingPage cursor (a score and
// the queue's epoch) never skips a message enqueued after it. A queue
// that was empty starts afresh, with a new epoch and no counts.
//
// Returns {0, cursor} when applied (or all already applied); {1, cursor}
// when the run starts after cursor + 1: the caller adds the missing seqs
// (from history) and calls again. A call that applies nothing still
// writes the cursor again, so that a WAIT on the same connection covers
// what earlier calls wrote.
const userApplyLua = `
local cursor, q, m, c, marks, z, heads, pe = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local function want(key, typ)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= typ then
    return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. key .. ' holds a ' .. t .. ', not a ' .. typ)
  end
end
local cv, floor, mode, epoch, chan, qepoch = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local G, B = 6, 7
local n = (#ARGV - B + 1) / G
if n < 1 then return {0, 0} end

-- Only the keys the run's flags write are checked (and written).
local all = ''
for g = 0, n - 1 do all = all .. ARGV[B + g * G + 2] end
local function has(f) return string.find(all, f, 1, true) ~= nil end
local err = (mode ~= 'n' and want(cursor, 'hash')) or
  (has('p') and (want(q, 'zset') or want(m, 'hash') or want(c, 'hash') or want(pe, 'hash'))) or
  (has('s') and want(marks, 'hash')) or
  (has('i') and (want(z, 'zset') or want(heads, 'hash')))
if err then return err end

local cur = 0
if mode ~= 'n' then
  local cval = redis.call('HGET', cursor, cv)
  local cs, ce
  if cval then
    local i = string.find(cval, ':', 1, true)
    cs = tonumber(string.sub(cval, 1, i - 1))
    ce = string.sub(cval, i + 1)
  end
  if cs and (epoch == '' or ce == epoch) then
    cur = cs
  end
  if epoch == '' then epoch = ce or '' end
  if floor > cur then cur = floor end
end

local queued = nil
for g = 0, n - 1 do
  local b = B + g * G
  local seq = tonumber(ARGV[b])
  if mode == 'n' or seq > cur then
    if mode ~= 'n' and seq ~= cur + 1 then
      return {1, cur}
    end
    local sf = ARGV[b]
    local v, flags, hdr, score, from = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
    if string.find(flags, 'p', 1, true) then
      -- the id: the first uvarint-prefixed field after the version byte
      local rest = string.sub(v, string.find(v, ':', 1, true) + 2)
      local len, mul, j = 0, 1, 1
      while true do
        local byte = string.byte(rest, j)
        if not byte then return redis.error_reply('wshub/redisstore: damaged message value') end
        j = j + 1
        if byte < 128 then len = len + byte * mul break end
        len = len + (byte - 128) * mul
        mul = mul * 128
      end
      local id = string.sub(rest, j, j + len - 1)
      if queued == nil then
        queued = redis.call('ZCARD', q)
        if queued == 0 then
          -- A new queue: what a partial loss of keys left of an old
          -- one (counts, epoch) is dropped.
          redis.call('DEL', c, pe)
        end
      end
      local h = redis.call('HMGET', pe, 'n', 'e')
      local sc = tonumber(h[1]) or 0
      local last = redis.call('ZREVRANGE', q, 0, 0, 'WITHSCORES')
      if last[2] and tonumber(last[2]) > sc then sc = tonumber(last[2]) end
      sc = string.format('%d', sc + 1)
      if redis.call('ZADD', q, 'NX', sc, id) == 1 then
        redis.call('HSET', m, id, v)
        redis.call('HSET', pe, 'n', sc, 'e', h[2] or qepoch)
        redis.call('HINCRBY', c, from, 1)
      end
    end
    if string.find(flags, 's', 1, true) then
      -- In seq order (the cursor) the marker is set; without a cursor
      -- (rooms) it only moves forward.
      local mk = tonumber(redis.call('HGET', marks, cv)) or 0
      if mode ~= 'n' or seq > mk then redis.call('HSET', marks, cv, sf) end
    end
    if string.find(flags, 'i', 1, true) then
      local old = tonumber(redis.call('HGET', heads, cv))
      if old then
        redis.call('ZREM', z, string.format('%016d', 4503599627370496 - old) .. cv)
      end
      redis.call('ZADD', z, score, string.format('%016d', 4503599627370496 - seq) .. cv)
      redis.call('HSET', heads, cv, sf)
    end
    if string.find(flags, 'u', 1, true) then
      redis.call('SPUBLISH', chan, hdr .. v)
    end
    if mode ~= 'n' then cur = seq end
  end
end
if mode ~= 'n' then
  redis.call('HSET', cursor, cv, string.format('%d', cur) .. ':' .. epoch)
end
return {0, cur}
`

var userApplyScript = redis.NewScript(userApplyLua)

// ackScript removes messages from a user's pending queue. See Store.Ack.
//
// KEYS[1] the pending zset, KEYS[2] the pending hash, KEYS[3] the pending
// counts hash, KEYS[4] the pending epoch hash
// ARGV    the message ids
//
// Each id removed from the queue is uncounted for its sender, which the
// script reads from the stored value ("<seq>:", the version byte, then
// uvarint-prefixed ID, Conv, From: see encode). An empty queue leaves no
// keys behind: the next message starts a new queue, with a new epoch.
//
// Returns the number of messages removed.
var ackScript = redis.NewScript(`
for i = 1, 4 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  local typ = 'hash'
  if i == 1 then typ = 'zset' end
  if t ~= 'none' and t ~= typ then
    return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. typ)
  end
end

local function uvarint(s, i)
  local x, mul = 0, 1
  for j = i, i + 9 do
    local b = string.byte(s, j)
    if not b then return nil end
    if b < 128 then return x + b * mul, j + 1 end
    x = x + (b - 128) * mul
    mul = mul * 128
  end
  return nil
end

local function sender(v)
  local i = string.find(v, ':', 1, true)
  if not i then return nil end
  i = i + 2
  for f = 1, 3 do
    local n
    n, i = uvarint(v, i)
    if not n then return nil end
    if f == 3 then return string.sub(v, i, i + n - 1) end
    i = i + n
  end
end

local q, m, c, pe = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local removed = 0
for x = 1, #ARGV do
  local id = ARGV[x]
  local v = redis.call('HGET', m, id)
  if v then
    redis.call('HDEL', m, id)
  end
  if redis.call('ZREM', q, id) == 1 then
    removed = removed + 1
    local from = v and sender(v)
    if from and redis.call('HINCRBY', c, from, -1) <= 0 then
      redis.call('HDEL', c, from)
    end
  end
end
if removed > 0 and redis.call('ZCARD', q) == 0 then
  redis.call('DEL', c, m, pe)
end
return removed
`)

// roomMembersScript is the room step of Join and Leave: the room's
// member set, in the room conversation's slot.
//
// KEYS[1] the room's member set
// ARGV[1] 'SADD' (join) or 'SREM' (leave), ARGV[2] user
//
// Returns the number of members added or removed (0 or 1).
var roomMembersScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'set' then
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a set')
end
return redis.call(ARGV[1], KEYS[1], ARGV[2])
`)

// userRoomsScript is the user step of Join and Leave: the user's room
// set, in the user's slot, and the announcement.
//
// KEYS[1] the user's room set
// ARGV[1] 'SADD' (join) or 'SREM' (leave), ARGV[2] room
// ARGV[3] the user's channel, ARGV[4] announcement (see encodeMembership)
// ARGV[5] '1' when the room step changed the member set
//
// The announcement is published only when a set changed, so that joining
// again (clients do on every reconnect) costs the feed nothing.
//
// Returns the number of rooms added or removed (0 or 1).
var userRoomsScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'set' then
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a set')
end
local n = redis.call(ARGV[1], KEYS[1], ARGV[2])
if n > 0 or ARGV[5] == '1' then
  redis.call('SPUBLISH', ARGV[3], ARGV[4])
end
return n
`)

// historyScript reads a window of a conversation. See Store.History.
//
// KEYS[1] the conversation hash
//
// ARGV[1] epoch to create if the conversation has none
// ARGV[2] since, ARGV[3] before, ARGV[4] limit (> 0)
// ARGV[5] TTL in ms of a conversation key created by this read
// ARGV[6] chunk size for HMGET
//
// Returns {epoch, first, last, more (0 or 1), value...}.
var historyScript = redis.NewScript(`
local conv = KEYS[1]
local h = redis.call('HMGET', conv, 'n', 'f', 'e')
local e = h[3]
if not e then
  e = ARGV[1]
  redis.call('HSET', conv, 'e', e)
  if not h[1] then
    redis.call('PEXPIRE', conv, ARGV[5])
  end
end
local n = tonumber(h[1]) or 0
if n == 0 then
  return {e, 0, 0, 0}
end
local f = tonumber(h[2]) or 1

local since, before, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lo, hi, more
if since > 0 then
  local top = n
  if before > 0 and before - 1 < top then top = before - 1 end
  lo = since + 1
  if lo < f then lo = f end
  hi = lo + limit - 1
  if hi > top then hi = top end
  more = hi < top
else
  hi = n
  if before > 0 and before - 1 < hi then hi = before - 1 end
  lo = hi - limit + 1
  if lo < f then lo = f end
  more = lo > f
end

local out = {e, f, n, 0}
if lo > hi then
  return out
end
if more then out[4] = 1 end
local chunk = tonumber(ARGV[6])
local s = lo
while s <= hi do
  local fields = {}
  local stop = s + chunk - 1
  if stop > hi then stop = hi end
  for x = s, stop do
    fields[#fields + 1] = string.format('%d', x)
  end
  local vals = redis.call('HMGET', conv, unpack(fields))
  for x = 1, #vals do
    if vals[x] then out[#out + 1] = vals[x] end
  end
  s = stop + 1
end
return out
`)

// pendingScript reads a user's pending queue in enqueue order: all of it
// (Store.Pending) or a page (Store.PendingPage).
//
// KEYS[1] the pending zset, KEYS[2] the pending hash, KEYS[3] the pending
// epoch hash
// ARGV[1] chunk size for HMGET
// ARGV[2] the most values to return (0: no limit)
// ARGV[3] the cursor's score (empty: start at the beginning), ARGV[4] the
// cursor's epoch
// ARGV[5] the epoch to give a queue that has none when a cursor is
// returned
//
// The page starts after the cursor's score when the cursor's epoch is the
// queue's, else at the beginning: the queue the cursor was made in is gone,
// and every message of this one was enqueued after the cursor's page. An
// id of the zset without a value (which only a partial eviction can cause)
// is skipped; more ids are read until the page is full or the queue ends.
//
// A queue that has no epoch (written before queues had one, or whose
// epoch hash alone was lost) is given ARGV[5] when a cursor must name
// it, its last score the zset's highest, which the next enqueue counts on
// from.
//
// Returns {more (1 when ids follow the page, else 0), score of the page's
// last id, the queue's epoch, value...}; the score and epoch are set only
// when more is 1.
var pendingScript = redis.NewScript(`
local q, m, pe = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TYPE', pe)['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. pe .. ' holds a ' .. t .. ', not a hash')
end
local chunk, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local epoch = redis.call('HGET', pe, 'e')
local lo = '-inf'
if ARGV[3] ~= '' and epoch == ARGV[4] then lo = '(' .. ARGV[3] end
local out = {0, 0, ''}
local got, last = 0, nil
while limit == 0 or got < limit do
  local want = -1
  if limit > 0 then want = limit - got end
  local ids = redis.call('ZRANGE', q, lo, '+inf', 'BYSCORE', 'LIMIT', 0, want)
  for i = 1, #ids, chunk do
    local j = i + chunk - 1
    if j > #ids then j = #ids end
    local vals = redis.call('HMGET', m, unpack(ids, i, j))
    for x = 1, #vals do
      if vals[x] then
        out[#out + 1] = vals[x]
        got = got + 1
      end
    end
  end
  if limit == 0 or #ids < want then return out end
  last = redis.call('ZSCORE', q, ids[#ids])
  lo = '(' .. last
end
if #redis.call('ZRANGE', q, lo, '+inf', 'BYSCORE', 'LIMIT', 0, 1) == 0 then return out end
if not epoch then
  local top = redis.call('ZREVRANGE', q, 0, 0, 'WITHSCORES')
  local n = tonumber(redis.call('HGET', pe, 'n')) or 0
  if tonumber(top[2]) > n then n = tonumber(top[2]) end
  epoch = ARGV[5]
  redis.call('HSET', pe, 'n', string.format('%d', n), 'e', epoch)
end
out[1], out[2], out[3] = 1, string.format('%d', tonumber(last)), epoch
return out
`)

// markReadScript moves a read marker forward. See Store.MarkRead.
//
// KEYS[1] the user's read markers hash
// ARGV[1] conversation id, ARGV[2] seq, already capped at the
// conversation's latest seq (read before, in the conversation's slot)
//
// Returns {marker, moved (0 or 1)}.
var markReadScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a hash')
end
local seq = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if seq > cur then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', seq))
  return {seq, 1}
end
return {cur, 0}
`)

// conversationsScript reads the user's slot of a user's inbox. See
// Store.Conversations.
//
// KEYS[1] the user's conversation index zset, KEYS[2] the user's read
// markers hash, KEYS[3] the user's room set
// ARGV[1] number of index entries to read (limit + 1)
//
// The peers' markers and the rooms' newest messages live in other slots:
// the caller reads them after, with pipelined reads.
//
// Returns {d, d times (conv, seq, ts, read), then per room (room, read)}.
var conversationsScript = redis.NewScript(`
local es = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {0}
local d = 0
for i = 1, #es, 2 do
  local member = es[i]
  local cv = string.sub(member, 17)
  out[#out + 1] = cv
  out[#out + 1] = 4503599627370496 - tonumber(string.sub(member, 1, 16))
  out[#out + 1] = -tonumber(es[i + 1])
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], cv)) or 0
  d = d + 1
end
out[1] = d
local rooms = redis.call('SMEMBERS', KEYS[3])
for i = 1, #rooms do
  out[#out + 1] = rooms[i]
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], 'r:' .. rooms[i])) or 0
end
return out
`)

// appendOneScript is the whole of Append in one script, for a Store on
// one Redis server (not a Redis Cluster), where every slot is on that
// server: the cid check, the bounds, convAppendScript's step and
// userApplyScript's for every user, in one atomic call and one round trip
// instead of three. It runs the same Lua as the steps (as functions), so
// the keys and what is written are the same. See Store.appendOne.
//
// KEYS    convAppendScript's keys (ARGV[1] of them), then the 8 keys of
// userApplyScript for each user (ARGV[3] users)
// ARGV[1] the number of convAppendScript's keys (1, or 2 with a cid)
// ARGV[2] MaxPending (0: none), ARGV[3] the number of users,
// ARGV[4] MaxPendingPerSender (0: none), ARGV[5] the sender,
// ARGV[6] mode, ARGV[7] announcement header, ARGV[8] index score,
// ARGV[9] the conversation id
// ARGV[10..19] convAppendScript's ARGV (10)
// ARGV[20..] per user: flags, channel
//
// The fresh epoch offered to the conversation (convAppendScript's ARGV[3])
// is offered to the users' pending queues as well: an epoch only has to
// differ from the ones a queue (or a conversation) had before.
//
// Returns {'dup', convAppendScript's duplicate reply...}; {'full',
// 'total' or 'sender', messages queued, the user's index from 0}; or
// {'ok', seq, epoch, the indexes from 0 of the users whose cursor showed
// a gap, for Go to fill (applyUser)...}.
var appendOneScript = redis.NewScript(`
local function conv_step(KEYS, ARGV)
` + convAppendLua + `
end
local function user_step(KEYS, ARGV)
` + userApplyLua + `
end
local nck, maxp, nu, maxs, from = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local mode, hdr, score, cv = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ck, ca = {}, {}
for i = 1, nck do ck[i] = KEYS[i] end
for i = 1, 10 do ca[i] = ARGV[9 + i] end
if ca[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  local r = conv_step(ck, ca)
  if r.err then return r end
  table.insert(r, 1, 'dup')
  return r
end
for u = 0, nu - 1 do
  local fl = ARGV[20 + 2 * u]
  if string.find(fl, 'p', 1, true) then
    local q, c = KEYS[nck + 8 * u + 2], KEYS[nck + 8 * u + 4]
    local n = redis.call('ZCARD', q)
    if maxp > 0 and n >= maxp then return {'full', 'total', n, u} end
    if n > 0 and maxs > 0 then
      local k = tonumber(redis.call('HGET', c, from)) or 0
      if k >= maxs then return {'full', 'sender', k, u} end
    end
  end
end
local r = conv_step(ck, ca)
if r.err then return r end
local seq, epoch = r[2], r[3]
local sf = string.format('%d', seq)
local v = sf .. ':' .. ca[2]
local out = {'ok', seq, epoch}
for u = 0, nu - 1 do
  local uk = {}
  for i = 1, 8 do uk[i] = KEYS[nck + 8 * u + i] end
  local ur = user_step(uk, {cv, '0', mode, epoch, ARGV[21 + 2 * u], ca[3], sf, v, ARGV[20 + 2 * u], hdr, score, from})
  if ur.err then return ur end
  if ur[1] == 1 then out[#out + 1] = u end
end
return out
`)
