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
var convAppendScript = redis.NewScript(`
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
`)

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
// ARGV[6..] groups of 6: seq, stored value, flags, announcement header,
// index score (-TS), sender
//
// Flags, any of: 'p' enqueue into U's pending queue; 's' move U's read
// marker to seq (U is the sender); 'i' put the conversation at the top
// of U's index with seq; 'u' announce the message on U's channel.
//
// Returns {0, cursor} when applied (or all already applied); {1, cursor}
// when the run starts after cursor + 1: the caller adds the missing seqs
// (from history) and calls again. A call that applies nothing still
// writes the cursor again, so that a WAIT on the same connection covers
// what earlier calls wrote.
var userApplyScript = redis.NewScript(`
local cursor, q, m, c, marks, z, heads = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local function want(key, typ)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= typ then
    return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. key .. ' holds a ' .. t .. ', not a ' .. typ)
  end
end
local err = want(cursor, 'hash') or want(q, 'zset') or want(m, 'hash') or want(c, 'hash') or
  want(marks, 'hash') or want(z, 'zset') or want(heads, 'hash')
if err then return err end

local cv, floor, mode, epoch, chan = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local G = 6
local n = (#ARGV - 5) / G
if n < 1 then return {0, 0} end

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
  local b = 6 + g * G
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
      if queued == nil then queued = redis.call('ZCARD', q) end
      local last = redis.call('ZREVRANGE', q, 0, 0, 'WITHSCORES')
      local sc = 1
      if last[2] then sc = tonumber(last[2]) + 1 end
      if redis.call('ZADD', q, 'NX', string.format('%d', sc), id) == 1 then
        redis.call('HSET', m, id, v)
        if queued == 0 then
          redis.call('DEL', c)
          queued = 1
        end
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
