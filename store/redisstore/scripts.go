package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts below run inside Redis: a script runs alone (no other
// command of any client runs between its first and its last step), which is
// what makes Append one atomic step. Each script checks the types of the
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

// appendScript stores one message. See Store.Append.
//
// KEYS[1]   the conversation hash
// KEYS[2]   the (sender, cid) record, when ARGV[1] == '1'
// KEYS[k]   the sender's read markers hash (k = 2 or 3)
// KEYS[k+1..k+ARGV[14]*2] pairs of (conversation index zset, index heads
//
//	hash) of the users whose index the message enters: From and To of a
//	direct message (one pair when From == To), none otherwise
//
// KEYS[j..] triples of (pending zset, pending hash, pending counts hash),
//
//	one triple per recipient, no recipient twice
//
// ARGV[1] '1' with a cid record, '0' without
// ARGV[2] message id
// ARGV[3] encoded message (without seq)
// ARGV[4] epoch to use if the conversation has none
// ARGV[5] history bound (0 = unbounded)
// ARGV[6] pending bound per recipient (0 = unbounded)
// ARGV[7] cid record TTL, ms
// ARGV[8] conversation TTL, ms (0 = none)
// ARGV[9] most history fields deleted by one call
// ARGV[10] feed channel
// ARGV[11] announcement header (kind and origin, see encodeMessageHeader)
// ARGV[12] sender
// ARGV[13] pending bound per (recipient, sender) (0 = unbounded)
// ARGV[14] number of index pairs in KEYS (0, 1 or 2)
// ARGV[15] conversation id (the field of the markers and index heads)
// ARGV[16] index score of the message: -TS (see inboxScore)
//
// The inbox (see inbox.go) is written in the same step, after the bounds:
// the sender's marker on the conversation becomes the new seq, and each
// index pair replaces the conversation's entry (found through the heads
// hash) with one for the new seq. A duplicate or a refusal returns before
// it, so changes neither.
//
// The duplicate check comes first; then the pending bounds, before any
// write, so that a refused message stores nothing. A recipient's counts
// hash holds, per sender, the number of its messages in the queue; it is
// written with the queue, here and in ackScript, and deleted with it when
// the queue is empty (which also drops counts a partial loss of keys left
// behind).
//
// A stored message (not a duplicate) is announced last: PUBLISH of the
// header followed by the stored value, inside the script, so that the feed
// announces a conversation's messages in seq order.
//
// Returns {1, stored value} for a duplicate; {2, bound ('total' or
// 'sender'), messages queued, recipient's index from 0} for a refusal;
// {0, seq} otherwise.
var appendScript = redis.NewScript(`
local conv = KEYS[1]
local k = 2
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev then
    return {1, prev}
  end
  k = 3
end
local marks = KEYS[k]
local nix = tonumber(ARGV[14])
local ix = k + 1
k = ix + 2 * nix

local function want(key, typ)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= typ then
    return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. key .. ' holds a ' .. t .. ', not a ' .. typ)
  end
end
local err = want(conv, 'hash') or want(marks, 'hash')
if err then return err end
for i = ix, k - 1, 2 do
  err = want(KEYS[i], 'zset') or want(KEYS[i + 1], 'hash')
  if err then return err end
end
for i = k, #KEYS, 3 do
  err = want(KEYS[i + 1], 'hash')
  if err then return err end
end

-- The bounds. ZCARD and HGET also fail on a key of the wrong type, before
-- the first write; a counts hash is only read, and so checked, when its
-- queue is not empty, and deleted before it is written when it is.
local from = ARGV[12]
local maxp, maxs = tonumber(ARGV[6]), tonumber(ARGV[13])
local queued = {}
for i = k, #KEYS, 3 do
  local n = redis.call('ZCARD', KEYS[i])
  queued[i] = n
  if maxp > 0 and n >= maxp then
    return {2, 'total', n, (i - k) / 3}
  end
  if n > 0 then
    local c = tonumber(redis.call('HGET', KEYS[i + 2], from)) or 0
    if maxs > 0 and c >= maxs then
      return {2, 'sender', c, (i - k) / 3}
    end
  end
end

local h = redis.call('HMGET', conv, 'n', 'f', 'e')
local seq = (tonumber(h[1]) or 0) + 1
local sf = string.format('%d', seq)
local v = sf .. ':' .. ARGV[3]

local first = tonumber(h[2]) or seq
local nf = first
local maxh = tonumber(ARGV[5])
if maxh > 0 then
  local stop = seq - maxh + 1
  local batch = tonumber(ARGV[9])
  if stop > first + batch then stop = first + batch end
  if nf < stop then
    local gone = {}
    while nf < stop do
      gone[#gone + 1] = string.format('%d', nf)
      nf = nf + 1
    end
    redis.call('HDEL', conv, unpack(gone))
  end
end
redis.call('HSET', conv, sf, v, 'n', sf, 'f', string.format('%d', nf), 'e', h[3] or ARGV[4])
local ttl = tonumber(ARGV[8])
if ttl > 0 then
  redis.call('PEXPIRE', conv, ttl)
elseif seq == 1 then
  redis.call('PERSIST', conv)
end

local id = ARGV[2]
for i = k, #KEYS, 3 do
  local q, m, c = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local last = redis.call('ZREVRANGE', q, 0, 0, 'WITHSCORES')
  local score = 1
  if last[2] then score = tonumber(last[2]) + 1 end
  if redis.call('ZADD', q, 'NX', string.format('%d', score), id) == 1 then
    redis.call('HSET', m, id, v)
    if queued[i] == 0 then redis.call('DEL', c) end
    redis.call('HINCRBY', c, from, 1)
  end
end

local cv = ARGV[15]
redis.call('HSET', marks, cv, sf)
for i = ix, k - 1, 2 do
  local z, heads = KEYS[i], KEYS[i + 1]
  local old = tonumber(redis.call('HGET', heads, cv))
  if old then
    redis.call('ZREM', z, string.format('%016d', 4503599627370496 - old) .. cv)
  end
  redis.call('ZADD', z, ARGV[16], string.format('%016d', 4503599627370496 - seq) .. cv)
  redis.call('HSET', heads, cv, sf)
end

if ARGV[1] == '1' then
  redis.call('SET', KEYS[2], v, 'PX', ARGV[7])
end
redis.call('SPUBLISH', ARGV[10], ARGV[11] .. v)
if ARGV[17] ~= '' then
  redis.call('SPUBLISH', ARGV[17], ARGV[11] .. v)
end
return {0, seq}
`)

// ackScript removes messages from a user's pending queue. See Store.Ack.
//
// KEYS[1] the pending zset, KEYS[2] the pending hash, KEYS[3] the pending
// counts hash
// ARGV    the message ids
//
// Each id removed from the queue is uncounted for its sender, which the
// script reads from the stored value ("<seq>:", the version byte, then
// uvarint-prefixed ID, Conv, From: see encode). An empty queue leaves no
// keys behind.
//
// Returns the number of messages removed.
var ackScript = redis.NewScript(`
for i = 1, 3 do
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

local q, m, c = KEYS[1], KEYS[2], KEYS[3]
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
  redis.call('DEL', c, m)
end
return removed
`)

// membershipScript adds a user to a room or removes it, and announces the
// change. See Store.Join and Store.Leave.
//
// KEYS[1] the room's member set, KEYS[2] the user's room set
//
// ARGV[1] 'SADD' (join) or 'SREM' (leave)
// ARGV[2] user, ARGV[3] room
// ARGV[4] feed channel
// ARGV[5] announcement (see encodeMembership)
//
// The announcement is published only when a set changed, so that joining
// again (clients do on every reconnect) costs the feed nothing.
//
// Returns the number of set members added or removed (0, 1 or 2).
var membershipScript = redis.NewScript(`
for i = 1, 2 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= 'set' then
    return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. KEYS[i] .. ' holds a ' .. t .. ', not a set')
  end
end
local n = redis.call(ARGV[1], KEYS[1], ARGV[2]) + redis.call(ARGV[1], KEYS[2], ARGV[3])
if n > 0 then
  redis.call('SPUBLISH', ARGV[4], ARGV[5])
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

// pendingScript reads a user's pending queue in enqueue order.
//
// KEYS[1] the pending zset, KEYS[2] the pending hash
// ARGV[1] chunk size for HMGET
//
// Returns the stored values. An id of the zset without a value (which only
// a partial eviction can cause) is skipped.
var pendingScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
local chunk = tonumber(ARGV[1])
for i = 1, #ids, chunk do
  local j = i + chunk - 1
  if j > #ids then j = #ids end
  local vals = redis.call('HMGET', KEYS[2], unpack(ids, i, j))
  for x = 1, #vals do
    if vals[x] then out[#out + 1] = vals[x] end
  end
end
return out
`)

// markReadScript moves a read marker forward. See Store.MarkRead.
//
// KEYS[1] the user's read markers hash, KEYS[2] the conversation hash
// ARGV[1] conversation id, ARGV[2] seq (at most maxLuaSeq)
//
// The marker moves to min(seq, the conversation's latest seq) when that is
// above it; a conversation without messages has latest seq 0.
//
// Returns {marker, moved (0 or 1)}.
var markReadScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a hash')
end
local n = tonumber(redis.call('HGET', KEYS[2], 'n')) or 0
local seq = tonumber(ARGV[2])
if seq > n then seq = n end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if seq > cur then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', seq))
  return {seq, 1}
end
return {cur, 0}
`)

// conversationsScript reads a user's inbox. See Store.Conversations.
//
// KEYS[1] the user's conversation index zset, KEYS[2] the user's read
// markers hash, KEYS[3] the user's room set
// ARGV[1] number of index entries to read (limit + 1)
// ARGV[2] the key prefix, ARGV[3] the user
//
// The peer's markers hash and the rooms' conversation hashes are derived
// from the prefix (a Store runs on one Redis server, see the package doc).
//
// Returns {d, d times (conv, seq, ts, read, seen), then per room (room,
// seq, head value or false, read)}: the head value is the room's newest
// stored message, whose TS the caller decodes.
var conversationsScript = redis.NewScript(`
local pre, user = ARGV[2], ARGV[3]
local es = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {0}
local d = 0
for i = 1, #es, 2 do
  local member = es[i]
  local cv = string.sub(member, 17)
  local seq = 4503599627370496 - tonumber(string.sub(member, 1, 16))
  local ts = -tonumber(es[i + 1])
  local read = tonumber(redis.call('HGET', KEYS[2], cv)) or 0
  -- cv is "d:<len(a)>:<a>:<b>"; the peer is the one of a, b that is not user.
  local seen = 0
  local c = string.find(cv, ':', 3, true)
  local la = c and tonumber(string.sub(cv, 3, c - 1))
  if la then
    local a = string.sub(cv, c + 1, c + la)
    local b = string.sub(cv, c + la + 2)
    local peer = a
    if a == user then peer = b end
    seen = tonumber(redis.call('HGET', pre .. 'rm:' .. peer, cv)) or 0
  end
  out[#out + 1] = cv
  out[#out + 1] = seq
  out[#out + 1] = ts
  out[#out + 1] = read
  out[#out + 1] = seen
  d = d + 1
end
out[1] = d
local rooms = redis.call('SMEMBERS', KEYS[3])
for i = 1, #rooms do
  local cv = 'r:' .. rooms[i]
  local ck = pre .. 'c:' .. cv
  local n = tonumber(redis.call('HGET', ck, 'n')) or 0
  local head = false
  if n > 0 then head = redis.call('HGET', ck, string.format('%d', n)) end
  out[#out + 1] = rooms[i]
  out[#out + 1] = n
  out[#out + 1] = head
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], cv)) or 0
end
return out
`)
