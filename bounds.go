package wshub

import (
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// This file holds the bounds that keep one client from taking more than
// its share of a hub on the open internet (issue 10): the size of ids,
// the origin policy, the connections and upgrades per address, and the
// message quota per user. MaxRooms is enforced by Hub.join.

// MaxIDLen is the longest user or room id, in bytes (SPEC section 1). A
// user id from Options.Authenticate beyond it is answered with HTTP 400
// before any upgrade; a longer dstid with an error frame 400 (ErrBadID).
const MaxIDLen = 256

// checkID returns nil when id is a valid user or room id: not empty, at
// most MaxIDLen bytes, valid UTF-8. Otherwise it returns ErrBadID, saying
// which rule the id (named by what, e.g. "dstid") breaks.
func checkID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty %s", ErrBadID, what)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrBadID, what, MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadID, what)
	}
	return nil
}

// checkDst validates the target of a frame or a call: ErrMissingDst when
// there is none, else as checkID.
func checkDst(id string) error {
	if id == "" {
		return ErrMissingDst
	}
	return checkID("dstid", id)
}

// limited reports whether r is a finite, positive rate: a limit to
// enforce. Zero was turned into the default by New; a negative rate (or
// rate.Inf) means no limit.
func limited(r rate.Limit) bool { return r > 0 && !math.IsInf(float64(r), 1) }

// sweepEvery is how often a shard of an expiring table (ipTable,
// quotaTable) is scanned for entries that hold nothing any more. The scan
// runs on the goroutine that touches the shard next: no goroutine of its
// own.
const sweepEvery = time.Minute

// ---------------------------------------------------------------------
// Origin

// originPattern is one entry of Options.AllowedOrigins, parsed by New.
type originPattern struct {
	scheme string // "http" or "https"
	host   string // lower case; without the "*." of a wildcard
	wild   bool   // host is a suffix: "*.example.com" matches a.example.com
	port   string // explicit, or the scheme's default
}

// defaultPort is the port an origin or Host without one means.
func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// parseOrigin splits a serialized origin (RFC 6454: scheme "://" host
// [":" port], as browsers send it) into its scheme, lower-case host and
// port, the scheme's default port when none is given. It reports false
// for anything else, "null" included.
func parseOrigin(s string) (scheme, host, port string, ok bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", "", false
	}
	host, port = strings.ToLower(u.Hostname()), u.Port()
	if host == "" {
		return "", "", "", false
	}
	if port == "" {
		port = defaultPort(u.Scheme)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", "", false
	}
	return u.Scheme, host, port, true
}

// parseOriginPatterns parses Options.AllowedOrigins.
func parseOriginPatterns(list []string) ([]originPattern, error) {
	out := make([]originPattern, 0, len(list))
	for _, s := range list {
		wild := false
		p := s
		if i := strings.Index(p, "://*."); i >= 0 {
			wild = true
			p = p[:i+3] + "x" + p[i+4:] // a placeholder label, so that url.Parse checks the rest
		}
		scheme, host, port, ok := parseOrigin(p)
		if !ok || strings.Contains(host, "*") {
			return nil, fmt.Errorf("%w: AllowedOrigins: %q is not scheme://host[:port] or scheme://*.domain[:port] with scheme http or https", ErrBadOption, s)
		}
		if wild {
			host = strings.TrimPrefix(host, "x.")
		}
		out = append(out, originPattern{scheme: scheme, host: host, wild: wild, port: port})
	}
	return out, nil
}

// match reports whether the parsed origin fits p.
func (p originPattern) match(scheme, host, port string) bool {
	if scheme != p.scheme || port != p.port {
		return false
	}
	if !p.wild {
		return host == p.host
	}
	return len(host) > len(p.host)+1 && strings.HasSuffix(host, p.host) && host[len(host)-len(p.host)-1] == '.'
}

// sameOrigin is the default origin policy (docs/protocol.md): a request
// without an Origin header is allowed (it does not come from a browser
// page); one with an Origin must name the request's own scheme (https
// when it came over TLS, else http), host and port, default ports
// normalized (80 for http, 443 for https).
//
// Behind a trusted proxy (Options.TrustedProxies) the request's own scheme
// and host are those the proxy forwarded.
func (hub *Hub) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme, host, port, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	own, ownHost := "http", r.Host
	if r.TLS != nil {
		own = "https"
	}
	if hub.fromProxy(r) {
		if p := forwarded(r, "proto", "X-Forwarded-Proto"); p == "http" || p == "https" {
			own = p
		}
		if fh := forwarded(r, "host", "X-Forwarded-Host"); fh != "" {
			ownHost = fh
		}
	}
	h := url.URL{Host: ownHost}
	ownPort := h.Port()
	if ownPort == "" {
		ownPort = defaultPort(own)
	}
	return scheme == own && port == ownPort && host == strings.ToLower(h.Hostname())
}

// allowedOrigin is the origin policy of Options.AllowedOrigins: a request
// without an Origin header is allowed; one with an Origin must match a
// pattern (its scheme, host and port), whatever the request's Host.
func (h *Hub) allowedOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme, host, port, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	for _, p := range h.origins {
		if p.match(scheme, host, port) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------
// Connections and upgrades per address

// clientKey is the address an upgrade request is counted against for
// MaxConnsPerIP and UpgradeRate: the host of r.RemoteAddr; for IPv6 its
// /64 prefix, which one host or one network usually holds whole (one
// address per connection would be free to get). Requests through a proxy
// all count as the proxy's address until trusted-proxy handling exists:
// this is the one place to teach it.
func (hub *Hub) clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(hub.clientAddr(r))
	if err != nil {
		host = hub.clientAddr(r)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

const ipShards = 16

// ipTable counts, per client address (clientKey), the open connections
// and upgrades under way, and keeps the address's upgrade token bucket.
// An entry goes once the address holds no connection and its bucket is
// full again (UpgradeBurst/UpgradeRate after its last upgrade, 25.6 s by
// default), so the table holds the addresses that connected lately, not
// every address ever seen.
type ipTable struct {
	maxConns int        // <= 0: no cap
	rate     rate.Limit // not limited(): no upgrade rate
	burst    int
	seed     maphash.Seed
	shards   [ipShards]ipShard
}

type ipShard struct {
	mu    sync.Mutex
	m     map[string]*ipEntry // guarded by mu
	swept time.Time           // guarded by mu: the last sweep
}

// ipEntry is one address; guarded by its shard's mu.
type ipEntry struct {
	conns int           // open connections and upgrades under way
	lim   *rate.Limiter // nil without an upgrade rate
}

// connCapRetry is the Retry-After of an upgrade refused because its
// address holds MaxConnsPerIP connections: when one of them goes cannot
// be known.
const connCapRetry = 30 * time.Second

func newIPTable(o *Options) *ipTable {
	t := &ipTable{maxConns: o.MaxConnsPerIP, rate: o.UpgradeRate, burst: o.UpgradeBurst, seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*ipEntry)
	}
	return t
}

func (t *ipTable) shard(key string) *ipShard {
	return &t.shards[maphash.String(t.seed, key)%ipShards]
}

// idle reports whether e holds nothing: no connection, a full bucket.
func (t *ipTable) idle(e *ipEntry, now time.Time) bool {
	return e.conns == 0 && (e.lim == nil || e.lim.TokensAt(now) >= float64(t.burst))
}

// admit counts one more upgrade from key. It refuses, saying when to try
// again, when the address holds maxConns connections or upgrades faster
// than the rate allows; a refused upgrade costs no token. Every admit
// that succeeded is matched by one release.
func (t *ipTable) admit(key string, now time.Time) (retry time.Duration, ok bool) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	t.sweepLocked(s, now)
	e := s.m[key]
	if e == nil {
		e = &ipEntry{}
		if limited(t.rate) {
			e.lim = rate.NewLimiter(t.rate, t.burst)
		}
		s.m[key] = e
	}
	if t.maxConns > 0 && e.conns >= t.maxConns {
		return connCapRetry, false
	}
	if e.lim != nil && !e.lim.AllowN(now, 1) {
		wait := (1 - e.lim.TokensAt(now)) / float64(t.rate)
		return time.Duration(wait * float64(time.Second)), false
	}
	e.conns++
	return 0, true
}

// release counts out a connection (or a failed upgrade) admitted for key.
func (t *ipTable) release(key string, now time.Time) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[key]; e != nil {
		e.conns--
		if t.idle(e, now) {
			delete(s.m, key)
		}
	}
}

// sweepLocked drops the shard's idle entries, at most once per
// sweepEvery. The caller holds s.mu.
func (t *ipTable) sweepLocked(s *ipShard, now time.Time) {
	if now.Sub(s.swept) < sweepEvery {
		return
	}
	s.swept = now
	for k, e := range s.m {
		if t.idle(e, now) {
			delete(s.m, k)
		}
	}
}

// retryAfter is the value of a Retry-After header for d: whole seconds,
// rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// ---------------------------------------------------------------------
// Message quota per user

const quotaShards = 64

// quotaTable keeps, per sending user, what Options.MessageRate and
// MaxRecipients allow: a token bucket of messages and the recipients of
// direct messages in the current window. It is the hub's memory of a
// user's sending, kept apart from its connections, so that reconnecting
// does not refill it. An entry goes once it holds nothing: its bucket is
// full again (MessageBurst/MessageRate after the last message, 500 s by
// default) and its recipients window is over (RecipientWindow after it
// began).
type quotaTable struct {
	rate      float64 // messages per second; 0: no message rate
	burst     float64
	maxRecips int // 0: no recipients bound
	window    time.Duration
	seed      maphash.Seed
	shards    [quotaShards]quotaShard
}

type quotaShard struct {
	mu    sync.Mutex
	m     map[string]*quota // guarded by mu
	swept time.Time         // guarded by mu: the last sweep
}

// quota is one user's; guarded by its shard's mu.
type quota struct {
	tokens float64   // messages the user may send now, as of last
	last   time.Time // when tokens was brought up to date
	since  time.Time // when the recipients window began
	// recips holds the hashes of the recipients of the window's direct
	// messages: 8 bytes each, whatever an id's length (a collision lets
	// one recipient through free, which is harmless).
	recips map[uint64]struct{}
}

func newQuotaTable(o *Options) *quotaTable {
	t := &quotaTable{seed: maphash.MakeSeed(), window: o.RecipientWindow}
	if limited(o.MessageRate) {
		t.rate, t.burst = float64(o.MessageRate), float64(o.MessageBurst)
	}
	if o.MaxRecipients > 0 {
		t.maxRecips = o.MaxRecipients
	}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*quota)
	}
	return t
}

func (t *quotaTable) shard(user string) *quotaShard {
	return &t.shards[maphash.String(t.seed, user)%quotaShards]
}

// refill brings q.tokens up to now.
func (t *quotaTable) refill(q *quota, now time.Time) {
	if d := now.Sub(q.last); d > 0 {
		q.tokens = min(t.burst, q.tokens+d.Seconds()*t.rate)
	}
	q.last = now
}

// idle reports whether q holds nothing: a full bucket, no window open.
func (t *quotaTable) idle(q *quota, now time.Time) bool {
	full := t.rate == 0 || q.tokens+now.Sub(q.last).Seconds()*t.rate >= t.burst
	return full && (len(q.recips) == 0 || now.Sub(q.since) >= t.window)
}

// spend charges one message from user against its quota: to is the
// recipient of a direct message, "" for a room message. Over the quota
// it returns ErrQuota and charges nothing.
func (t *quotaTable) spend(user, to string, now time.Time) error {
	s := t.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	t.sweepLocked(s, now)
	q := s.m[user]
	if q == nil {
		q = &quota{tokens: t.burst, last: now}
		s.m[user] = q
	}
	var hk uint64
	newRecip := false
	if t.maxRecips > 0 && to != "" {
		if now.Sub(q.since) >= t.window {
			clear(q.recips)
			q.since = now
		}
		hk = maphash.String(t.seed, to)
		if _, ok := q.recips[hk]; !ok {
			if len(q.recips) >= t.maxRecips {
				return fmt.Errorf("%w: direct messages to more than %d users within %v", ErrQuota, t.maxRecips, t.window)
			}
			newRecip = true
		}
	}
	if t.rate > 0 {
		t.refill(q, now)
		if q.tokens < 1 {
			return fmt.Errorf("%w: too many messages (%g at once, then %s per second)",
				ErrQuota, t.burst, strconv.FormatFloat(t.rate, 'g', 3, 64))
		}
		q.tokens--
	}
	if newRecip {
		if q.recips == nil {
			q.recips = make(map[uint64]struct{})
		}
		q.recips[hk] = struct{}{}
	}
	return nil
}

// refund gives back the message spend charged for one that was not
// stored: a resend of a cid already stored, or a store failure.
func (t *quotaTable) refund(user string, now time.Time) {
	if t.rate == 0 {
		return
	}
	s := t.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.m[user]; q != nil {
		t.refill(q, now)
		q.tokens = min(t.burst, q.tokens+1)
	}
}

// sweepLocked drops the shard's idle entries, at most once per
// sweepEvery. The caller holds s.mu.
func (t *quotaTable) sweepLocked(s *quotaShard, now time.Time) {
	if now.Sub(s.swept) < sweepEvery {
		return
	}
	s.swept = now
	for k, q := range s.m {
		if t.idle(q, now) {
			delete(s.m, k)
		}
	}
}

// parsePrefixes parses Options.TrustedProxies: IP addresses (taken as
// single-address prefixes) or CIDR prefixes.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: TrustedProxies: %q is neither an IP address nor a CIDR prefix", ErrBadOption, s)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// trusted reports whether addr (an IP address, maybe with a port, maybe
// in brackets) is a trusted proxy.
func (hub *Hub) trusted(addr string) bool {
	if len(hub.proxies) == 0 {
		return false
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		addr = h
	}
	ip, err := netip.ParseAddr(strings.Trim(addr, "[]"))
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range hub.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// fromProxy reports whether r's TCP peer is a trusted proxy.
func (hub *Hub) fromProxy(r *http.Request) bool { return hub.trusted(r.RemoteAddr) }

// clientAddr is the address of the client that sent r: its TCP peer's
// host:port, or, when that peer is a trusted proxy, the rightmost
// address of the proxies' chain (Forwarded for=, else X-Forwarded-For,
// else X-Real-IP) that is not itself a trusted proxy.
func (hub *Hub) clientAddr(r *http.Request) string {
	if !hub.fromProxy(r) {
		return r.RemoteAddr
	}
	chain := forwardedFor(r)
	for i := len(chain) - 1; i >= 0; i-- {
		a := chain[i]
		if _, err := netip.ParseAddr(strings.Trim(a, "[]")); err != nil {
			if h, _, err := net.SplitHostPort(a); err == nil {
				a = h
			} else {
				break // "unknown", an obfuscated name: nothing to go on
			}
		}
		if !hub.trusted(a) {
			return strings.Trim(a, "[]")
		}
	}
	return r.RemoteAddr
}

// forwardedFor lists the client addresses the proxies recorded, the
// client first: Forwarded's for= values, else X-Forwarded-For's, else
// X-Real-IP.
func forwardedFor(r *http.Request) []string {
	var chain []string
	for _, v := range r.Header.Values("Forwarded") {
		for _, elem := range strings.Split(v, ",") {
			if f := forwardedParam(elem, "for"); f != "" {
				chain = append(chain, f)
			}
		}
	}
	if len(chain) > 0 {
		return chain
	}
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				chain = append(chain, a)
			}
		}
	}
	if len(chain) > 0 {
		return chain
	}
	if a := strings.TrimSpace(r.Header.Get("X-Real-IP")); a != "" {
		return []string{a}
	}
	return nil
}

// forwarded returns the parameter name of the last Forwarded element that
// has it (the one the nearest proxy added), else the last value of the
// header xHeader.
func forwarded(r *http.Request, name, xHeader string) string {
	vals := r.Header.Values("Forwarded")
	for i := len(vals) - 1; i >= 0; i-- {
		elems := strings.Split(vals[i], ",")
		for j := len(elems) - 1; j >= 0; j-- {
			if v := forwardedParam(elems[j], name); v != "" {
				return strings.ToLower(v)
			}
		}
	}
	xs := strings.Split(r.Header.Get(xHeader), ",")
	return strings.ToLower(strings.TrimSpace(xs[len(xs)-1]))
}

// forwardedParam returns the value of parameter name in one element of a
// Forwarded header (RFC 7239 section 4: pairs separated by ";", values
// maybe quoted).
func forwardedParam(elem, name string) string {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(k, name) {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
