package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
)

// Presence (store.Presence) is kept in these keys, all with the hash tag
// {presence} (one slot of a Redis Cluster, as the scripts touch the keys
// of many users at once):
//
//	<prefix>{presence}pl          sorted set: incarnation -> lease
//	                              deadline, Unix ms of Redis's own clock
//	                              (TIME)
//	<prefix>{presence}pi          hash: proc -> its current incarnation
//	<prefix>{presence}pn          string: counter numbering incarnations
//	<prefix>{presence}po:<inc>    set: the users online on incarnation inc
//	<prefix>{presence}pu:<user>   set: the incarnations user is online on
//
// An incarnation is one lease of a proc: "<n>:<proc>", n from the
// counter. A proc's first SetPresence, and its first one after its lease
// ended, starts a new incarnation (and reports reset); the entries of the
// old one stay, dead, until they are reaped. So a proc that comes back
// late never revives entries that other processes already treat as
// offline (and may have announced offline): it starts empty and sends its
// whole state again.
//
// An incarnation is live while its deadline is after Redis's TIME at the
// start of the script looking at it: the clocks of the hub processes play
// no part, and an incarnation whose lease ended counts as offline at once,
// before it is reaped. A user is online when any incarnation in its set is
// live.
//
// Every change runs in one script (setPresenceScript, retirePresenceScript),
// which announces the transitions it makes with SPUBLISH on the presence
// channel (<prefix>{presence}, the keys' slot), in the order it makes them:
//
//   - on: a user added to the caller's incarnation is announced online when
//     no other live incarnation has it;
//   - off: a user removed from it is announced offline when no other live
//     incarnation has it;
//   - reap: the users of dead incarnations (at most reapUsers per call,
//     oldest deadlines first, at most reapLeases incarnations looked at)
//     leave their sets with SPOP, each announced offline when no live
//     incarnation has it; an incarnation left with no users loses its
//     lease entry.
//
// A presence announcement is 'p', '1' (online) or '0' (offline), the
// uvarint of Redis's TIME in ms (Event.TS), then the user.
//
// The scripts derive the po: and pu: keys from the presence prefix (same
// slot). They check the types of the keys
// they write before the first write; during a reap, a key of the wrong
// type is skipped instead of written.

const (
	// presenceChunk is the most users one presence script call takes:
	// SetPresence and Online split longer lists over several calls.
	presenceChunk = 1000
	// reapUsers is the most users of dead incarnations one SetPresence
	// or RetirePresence call removes.
	reapUsers = 1000
	// reapLeases is the most dead incarnations one SetPresence looks at.
	reapLeases = 100
)

var _ store.Presence = (*Store)(nil)

func (s *Store) presenceKeys() []string {
	pre := s.presencePrefix()
	return []string{pre + "pl", pre + "pi", pre + "pn"}
}

// presencePrefix starts every presence key: all of them share the hash
// tag {presence}, so that one script may touch those of many users.
func (s *Store) presencePrefix() string { return s.opts.Prefix + "{presence}" }

// presenceLib is the start of every presence script: the shared locals
// and functions.
//
// KEYS[1] the leases zset, KEYS[2] the proc -> incarnation hash, KEYS[3]
// the incarnation counter
// ARGV[1] the presence prefix (<prefix>{presence}), ARGV[2] the presence
// channel
const presenceLib = `
local pre, chan = ARGV[1], ARGV[2]
local leases, incs, counter = KEYS[1], KEYS[2], KEYS[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function istype(key, typ)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == typ
end
local function wrongtype(key, typ)
  return redis.error_reply('WRONGTYPE wshub/redisstore: key ' .. key .. ' is not a ' .. typ)
end
local function checkkeys()
  if not istype(leases, 'zset') then return wrongtype(leases, 'zset') end
  if not istype(incs, 'hash') then return wrongtype(incs, 'hash') end
  if not istype(counter, 'string') then return wrongtype(counter, 'string') end
end

local function uvarint(x)
  local b = {}
  while x >= 128 do
    b[#b + 1] = string.char(x % 128 + 128)
    x = math.floor(x / 128)
  end
  b[#b + 1] = string.char(x)
  return table.concat(b)
end
local stamp = uvarint(now)
local function announce(user, online)
  local st = '0'
  if online then st = '1' end
  redis.call('SPUBLISH', chan, 'p' .. st .. stamp .. user)
end

-- lives caches live(inc) for this script call: now does not move, and
-- the scripts update it where they change a lease.
local lives = {}
local function live(inc)
  local l = lives[inc]
  if l == nil then
    local d = redis.call('ZSCORE', leases, inc)
    l = d ~= false and tonumber(d) > now
    lives[inc] = l
  end
  return l
end
-- liveother tells whether user is online on a live incarnation other
-- than except.
local function liveother(user, except)
  local ms = redis.call('SMEMBERS', pre .. 'pu:' .. user)
  for i = 1, #ms do
    if ms[i] ~= except and live(ms[i]) then return true end
  end
  return false
end

-- reap removes up to budget (> 0) users of the dead incarnation d,
-- announcing offline those no live incarnation has; when d has no users
-- left it drops d's lease and its proc's pointer to it. Returns the
-- number of users removed and whether d is gone.
local function reap(d, budget)
  local set = pre .. 'po:' .. d
  local us = {}
  if istype(set, 'set') then
    us = redis.call('SPOP', set, budget)
    for i = 1, #us do
      local uk = pre .. 'pu:' .. us[i]
      if istype(uk, 'set') then
        redis.call('SREM', uk, d)
        if not liveother(us[i], d) then announce(us[i], false) end
      end
    end
    if redis.call('SCARD', set) > 0 then return #us, false end
  end
  redis.call('ZREM', leases, d)
  local c = string.find(d, ':', 1, true)
  if c then
    local proc = string.sub(d, c + 1)
    if redis.call('HGET', incs, proc) == d then redis.call('HDEL', incs, proc) end
  end
  return #us, true
end
`

// setPresenceScript is SetPresence (see the presence keys above).
//
// ARGV[3] proc, ARGV[4] ttl in ms, ARGV[5] most users reaped, ARGV[6]
// most dead incarnations looked at, ARGV[7] the number n of users on,
// ARGV[8..7+n] the users on, ARGV[8+n..] the users off
//
// Returns 1 when proc had no live incarnation (reset), else 0.
var setPresenceScript = redis.NewScript(presenceLib + `
local err = checkkeys()
if err then return err end
local proc = ARGV[3]
for i = 8, #ARGV do
  local uk = pre .. 'pu:' .. ARGV[i]
  if not istype(uk, 'set') then return wrongtype(uk, 'set') end
end
local inc = redis.call('HGET', incs, proc)
local reset = 0
if inc and live(inc) then
  if not istype(pre .. 'po:' .. inc, 'set') then return wrongtype(pre .. 'po:' .. inc, 'set') end
else
  -- A new incarnation, whose name nothing holds yet.
  reset = 1
  repeat
    inc = string.format('%d', redis.call('INCR', counter)) .. ':' .. proc
  until not redis.call('ZSCORE', leases, inc) and redis.call('EXISTS', pre .. 'po:' .. inc) == 0
  redis.call('HSET', incs, proc, inc)
end
redis.call('ZADD', leases, string.format('%d', now + tonumber(ARGV[4])), inc)
lives[inc] = true

local mine = pre .. 'po:' .. inc
local non = tonumber(ARGV[7])
for i = 8, 7 + non do
  local u = ARGV[i]
  if redis.call('SADD', mine, u) == 1 then
    redis.call('SADD', pre .. 'pu:' .. u, inc)
    if not liveother(u, inc) then announce(u, true) end
  end
end
for i = 8 + non, #ARGV do
  local u = ARGV[i]
  if redis.call('SREM', mine, u) == 1 then
    redis.call('SREM', pre .. 'pu:' .. u, inc)
    if not liveother(u, inc) then announce(u, false) end
  end
end

local budget = tonumber(ARGV[5])
local dead = redis.call('ZRANGEBYSCORE', leases, '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[6]))
for i = 1, #dead do
  if budget <= 0 then break end
  budget = budget - reap(dead[i], budget)
end
return reset
`)

// retirePresenceScript is RetirePresence, one batch at a time.
//
// ARGV[3] proc, ARGV[4] the incarnation being retired, or empty for the
// first call, ARGV[5] most users removed
//
// The first call ends proc's current incarnation (its deadline becomes 0,
// dead for everyone from this script on) and forgets it as proc's; every
// call reaps a batch of it. Returns {incarnation, 1 when it is gone}; {empty
// string, 1} when proc had none.
var retirePresenceScript = redis.NewScript(presenceLib + `
local err = checkkeys()
if err then return err end
local inc = ARGV[4]
if inc == '' then
  inc = redis.call('HGET', incs, ARGV[3])
  if not inc then return {'', 1} end
  redis.call('HDEL', incs, ARGV[3])
  if redis.call('ZSCORE', leases, inc) then redis.call('ZADD', leases, 0, inc) end
end
lives[inc] = false
local _, gone = reap(inc, tonumber(ARGV[5]))
if gone then return {inc, 1} end
return {inc, 0}
`)

// onlineScript is Online.
//
// ARGV[3..] the users
//
// Returns 1 or 0 per user.
var onlineScript = redis.NewScript(presenceLib + `
local out = {}
for i = 3, #ARGV do
  local on = 0
  local ms = redis.call('SMEMBERS', pre .. 'pu:' .. ARGV[i])
  for j = 1, #ms do
    if live(ms[j]) then
      on = 1
      break
    end
  end
  out[#out + 1] = on
end
return out
`)

// SetPresence implements store.Presence: it renews proc's lease for ttl
// (measured by Redis's clock), adds the users of on and removes those of
// off from proc's entries, announcing each user that went online or
// offline across all live processes, and reaps up to 1,000 users of
// processes whose lease ended (see the presence keys in the source). Each
// script call takes at most 1,000 users of on and off; longer lists take
// several calls, on before off, each renewing the lease. A user in both
// lists ends up offline on proc.
//
// reset is true when proc had no live lease: its first call, or its
// lease ended (even if its entries were not reaped yet: they are then
// left to be reaped, announced offline unless the caller, resending its
// state, reports them on again in time). A user already online on another
// process whose lease ended may then be announced online again without
// having been announced offline in between.
//
// An empty proc or user, or a ttl below 1 ms, is rejected with an error
// wrapping store.ErrInvalid.
func (s *Store) SetPresence(ctx context.Context, proc string, ttl time.Duration, on, off []string) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if proc == "" {
		return false, fmt.Errorf("%w: empty proc", store.ErrInvalid)
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("%w: presence ttl %v below 1ms", store.ErrInvalid, ttl)
	}
	for _, list := range [][]string{on, off} {
		for _, u := range list {
			if u == "" {
				return false, fmt.Errorf("%w: empty user", store.ErrInvalid)
			}
		}
	}
	keys := s.presenceKeys()
	ttlArg := strconv.FormatInt(ttl.Milliseconds(), 10)
	reset := false
	for first := true; first || len(on)+len(off) > 0; first = false {
		if !first {
			if err := s.check(ctx); err != nil {
				return reset, err
			}
		}
		n := min(len(on), presenceChunk)
		m := min(len(off), presenceChunk-n)
		args := make([]any, 0, 7+n+m)
		args = append(args, s.presencePrefix(), s.presenceChannel(), proc, ttlArg, reapUsers, reapLeases, n)
		for _, u := range on[:n] {
			args = append(args, u)
		}
		for _, u := range off[:m] {
			args = append(args, u)
		}
		on, off = on[n:], off[m:]
		r, err := setPresenceScript.Run(ctx, s.client, keys, args...).Int64()
		if err != nil {
			return reset, s.wrap("set presence", err)
		}
		reset = reset || r == 1
	}
	return reset, nil
}

// RetirePresence implements store.Presence: proc's lease ends at once and
// its users are removed, 1,000 per script call, each announced offline
// unless it is online on another live process. A proc without a lease is
// no error. Should RetirePresence fail part way, the rest of proc's
// entries, already dead, are reaped by the next SetPresence of any
// process.
func (s *Store) RetirePresence(ctx context.Context, proc string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if proc == "" {
		return fmt.Errorf("%w: empty proc", store.ErrInvalid)
	}
	keys := s.presenceKeys()
	inc := ""
	for {
		res, err := retirePresenceScript.Run(ctx, s.client, keys,
			s.presencePrefix(), s.presenceChannel(), proc, inc, reapUsers).Slice()
		if err != nil {
			return s.wrap("retire presence", err)
		}
		if len(res) != 2 {
			return fmt.Errorf("wshub/redisstore: retire presence: unexpected reply %v", res)
		}
		inc, _ = res[0].(string)
		if gone, _ := res[1].(int64); gone == 1 {
			return nil
		}
		if err := s.check(ctx); err != nil {
			return err
		}
	}
}

// Online implements store.Presence: a read script per 1,000 users, each
// user online when any of its processes holds a live lease by Redis's
// clock (a lease that ended counts as offline even before it is reaped).
// An empty user is rejected with an error wrapping store.ErrInvalid.
func (s *Store) Online(ctx context.Context, users []string) ([]bool, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	for _, u := range users {
		if u == "" {
			return nil, fmt.Errorf("%w: empty user", store.ErrInvalid)
		}
	}
	keys := s.presenceKeys()
	out := make([]bool, 0, len(users))
	for len(users) > 0 {
		n := min(len(users), presenceChunk)
		args := make([]any, 0, 2+n)
		args = append(args, s.presencePrefix(), s.presenceChannel())
		for _, u := range users[:n] {
			args = append(args, u)
		}
		res, err := onlineScript.Run(ctx, s.client, keys, args...).Int64Slice()
		if err != nil {
			return nil, s.wrap("online", err)
		}
		if len(res) != n {
			return nil, fmt.Errorf("wshub/redisstore: online: %d answers for %d users", len(res), n)
		}
		for _, r := range res {
			out = append(out, r == 1)
		}
		users = users[n:]
	}
	return out, nil
}
