#!/usr/bin/env bash
# check-nginx.sh: run deploy/nginx/nginx.conf and deploy/nginx/wshub.conf on
# loopback ports in front of examples/stdlib and check what docs/deploy.md
# says about them. Run from anywhere in the repository:
#
#     deploy/check-nginx.sh            # about 2 minutes, most of it the idle checks
#     IDLE=0 deploy/check-nginx.sh     # without the idle checks
#     HOLD=5000 deploy/check-nginx.sh  # also measure nginx's and the hub's memory
#                                      # per idle WebSocket (plain, TLS at nginx,
#                                      # TLS at the hub), 5000 connections each
#     KEEP=1 deploy/check-nginx.sh     # keep the temporary directory (configs, logs)
#
# Needs nginx, openssl, curl and Go; skips (exit 0) without nginx. Starts
# nginx as a foreground process with its own prefix (-p), no system service,
# and stops it and the hubs at the end. Exits 1 at the first failed check.
#
# Behind nginx stand the example (stdlib -store mem), and "wsprobe serve
# -trusted-proxies 127.0.0.1", a hub configured as your own program behind
# nginx should be (Options.TrustedProxies), which the example's flags cannot
# do. Clients connect from 127.0.0.2 and 127.0.0.3 where their address
# matters, so that the hub can tell them from nginx (127.0.0.1).
set -euo pipefail

cd "$(dirname "$0")/.."
for tool in nginx openssl curl go; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed (Debian: apt-get install nginx openssl curl)"
		exit 0
	fi
done

IDLE=${IDLE:-70}
HOLD=${HOLD:-0}
tmp=$(mktemp -d /tmp/wshub-nginx.XXXXXX)
chmod 755 "$tmp" # nginx's workers (www-data) create their temp files under it
pids=()          # hubs and nginx, stopped at exit
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if [ "${KEEP:-}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
die() {
	printf 'FAIL: %s\n' "$*"
	echo "--- nginx error log"; tail -n 20 "$tmp/logs/error.log" 2>/dev/null || true
	echo "--- example's log"; tail -n 20 "$tmp/a.log" 2>/dev/null || true
	exit 1
}
# start NAME COMMAND...: start a hub, wait for its "listening on" line, and
# set addr to what follows the scheme.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	pids+=($!)
	pid=$!
	for _ in $(seq 100); do
		grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null && break
		sleep 0.1
	done
	addr=$(sed -n 's#^listening on https\?://##p' "$tmp/$name.out")
	[ -n "$addr" ] || die "$name did not print its address"
	echo "$name: $(cat "$tmp/$name.out")"
}

step "build the example and the probe"
nginx -v 2>&1
go version
git log -1 --format='commit %h %s' 2>/dev/null || true
go build -o "$tmp/stdlib" ./examples/stdlib
go build -o "$tmp/wsprobe" deploy/wsprobe.go
probe="$tmp/wsprobe"
read -r P_HTTP P_TLS P_PLAIN P_HOSTDEF P_HOSTNOPORT P_T10 P_DEFTO P_TLSB P_LIMIT P_PLAINH P_TLSH P_RED P_DEAD \
	<<<"$("$probe" ports 13 | tr "\n" " ")"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
ca=(-cacert "$tmp/cert.pem")

step "start the hubs"
start a "$tmp/stdlib" -addr 127.0.0.1:0 -store mem
hub_a=$addr a_pid=$pid
start b "$probe" serve -addr 127.0.0.1:0 -trusted-proxies 127.0.0.1
hub_b=$addr
start h "$probe" serve -addr 127.0.0.1:0 -trusted-proxies 127.0.0.1 -no-address-bounds
hub_h=$addr h_pid=$pid

step "write the configs to $tmp"
mkdir -p "$tmp/conf.d" "$tmp/logs"
drop_user=()
[ "$(id -u)" = 0 ] || drop_user=(-e "/^user /d") # "user" needs root
# nginx.conf: only the paths change (pid, logs, conf.d; no sites-enabled, and no
# dynamic modules: their paths are relative to the prefix), and the error log
# is at level info, where nginx reports the connections it times out.
sed -e "s#^pid .*#pid $tmp/nginx.pid;#" \
	-e "s#^error_log .*#error_log $tmp/logs/error.log info;#" \
	-e "s#/var/log/nginx/#$tmp/logs/#g" \
	-e "s#include /etc/nginx/conf.d/\*.conf;#include $tmp/conf.d/*.conf;#" \
	-e "/sites-enabled/d" -e "/modules-enabled/d" "${drop_user[@]}" \
	deploy/nginx/nginx.conf >"$tmp/nginx.conf"
# wshub.conf: loopback ports, the example's address, the test certificate, log paths.
sed -e "s#listen 80;#listen 127.0.0.1:$P_HTTP;#" \
	-e "s#listen 443 ssl;#listen 127.0.0.1:$P_TLS ssl;#" \
	-e '/listen \[::\]/d' \
	-e "s#server 127.0.0.1:8080;#server $hub_a;#" \
	-e "s#/etc/letsencrypt/live/chat.example.com/fullchain.pem#$tmp/cert.pem#" \
	-e "s#/etc/letsencrypt/live/chat.example.com/privkey.pem#$tmp/key.pem#" \
	-e "s#/var/log/nginx/#$tmp/logs/#g" \
	deploy/nginx/wshub.conf >"$tmp/conf.d/wshub.conf"
diff deploy/nginx/wshub.conf "$tmp/conf.d/wshub.conf" || true
# Variants of the WebSocket location, each on a port of its own, to show
# what a setting does: the location block of wshub.conf with one thing
# changed. (zz-: included after wshub.conf, which defines the map, the log
# format and the limit zones.)
location=$(awk '/^    location ~ \^\/\(ws\|chat\)\$ \{/ {p=1} p {print} p && /^    }$/ {exit}' \
	"$tmp/conf.d/wshub.conf")
[ -n "$location" ] || die "no WebSocket location in wshub.conf"
nolimits='/^ *limit_\(conn\|req\) /d'
variant() { # port, tls|plain, hub address, sed expression, comment
	local tls=
	[ "$2" = tls ] && tls=" ssl;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem"
	printf '# %s\nserver {\n    listen 127.0.0.1:%s%s;\n%s\n}\n\n' "$5" "$1" "$tls" \
		"$(sed -e "s#proxy_pass http://wshub;#proxy_pass http://$3;#" -e "$4" <<<"$location")"
}
{
	variant "$P_PLAIN" plain "$hub_a" "$nolimits" "as shipped, plain HTTP, no nginx limits: the example's own"
	variant "$P_HOSTDEF" plain "$hub_a" '/proxy_set_header Host /d' "nginx's default Host (\$proxy_host)"
	variant "$P_HOSTNOPORT" plain "$hub_a" 's/proxy_set_header Host \$http_host;/proxy_set_header Host $host;/' 'Host $host: the port is lost'
	variant "$P_T10" plain "$hub_a" 's/proxy_read_timeout 120s;/proxy_read_timeout 10s;/' 'proxy_read_timeout 10s, below the ping interval'
	variant "$P_DEFTO" plain "$hub_a" '/proxy_read_timeout /d' "nginx's default proxy_read_timeout (60 s)"
	variant "$P_TLSB" tls "$hub_b" "$nolimits" 'as shipped, TLS, no nginx limits, in front of a hub with TrustedProxies'
	variant "$P_LIMIT" plain "$hub_b" 's/limit_conn wshub_conns 256;/limit_conn wshub_conns 3;/' "nginx's per-client limit, at 3"
	variant "$P_PLAINH" plain "$hub_h" "$nolimits" 'for HOLD: plain, no limits anywhere'
	variant "$P_TLSH" tls "$hub_h" "$nolimits" 'for HOLD: TLS at nginx, no limits anywhere'
} >"$tmp/conf.d/zz-variants.conf"

step "nginx -t, then nginx in the foreground"
nginx -t -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" 2>&1
nginx -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" -g 'daemon off;' &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$P_HTTP/" && break
	sleep 0.1
done
wss="wss://127.0.0.1:$P_TLS"

step "plain HTTP is redirected to https"
out=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$P_HTTP/?x=1")
echo "$out"
[[ $out == "301 https://127.0.0.1/?x=1" ]] || die "no redirect"
ok "301 to https"

step "the example through nginx (TLS): the page, /healthz, /readyz, /metrics"
for path in / /wshub.js /healthz /readyz /metrics; do
	code=$(curl -s --cacert "$tmp/cert.pem" -o "$tmp/body" -w '%{http_code}' "https://127.0.0.1:$P_TLS$path")
	echo "GET $path: $code"
	[ "$code" = 200 ] || die "GET $path: $code"
done
curl -s --cacert "$tmp/cert.pem" "https://127.0.0.1:$P_TLS/metrics" | grep -E '^wshub_(connections|messages_stored_total) ' ||
	die "no wshub metrics"

step "WebSockets to the example through nginx (TLS)"
echo "a Go program (no Origin):"
"$probe" dial "${ca[@]}" -want 101 "$wss/ws" || die "/ws"
"$probe" dial "${ca[@]}" -want 101 "$wss/chat" || die "/chat"
"$probe" direct "${ca[@]}" "$wss/ws" || die "direct message"
echo "a browser on https://127.0.0.1:$P_TLS (the example has no TrustedProxies: it sees http, the page says https):"
"$probe" dial "${ca[@]}" -origin "https://127.0.0.1:$P_TLS" -want any "$wss/ws"
ok "upgrade, delivery and receipt through nginx"

step "the Host header (plain HTTP, where the example's same-origin check can pass)"
"$probe" dial -origin "http://127.0.0.1:$P_HOSTDEF" -want 403 "ws://127.0.0.1:$P_HOSTDEF/ws" || die "default Host"
"$probe" dial -origin "http://127.0.0.1:$P_HOSTNOPORT" -want 403 "ws://127.0.0.1:$P_HOSTNOPORT/ws" || die "\$host"
"$probe" dial -origin "http://127.0.0.1:$P_PLAIN" -want 101 "ws://127.0.0.1:$P_PLAIN/ws" || die "\$http_host"
ok "403 with nginx's default Host and with \$host; 101 with \$http_host (wshub.conf)"

# bounds URL [dial options]: one client (127.0.0.2) opens 300 connections;
# while it holds them, another (127.0.0.3) tries one. (After a pause, so
# that the upgrades of the checks before are back in the hub's token bucket
# of 127.0.0.1, where the example counts everyone.)
bounds() {
	local url=$1
	shift
	sleep 1.5
	"$probe" hold "$@" -src 127.0.0.2 -n 300 -for 4s "$url" >"$tmp/hold-bounds" &
	local hp=$!
	for _ in $(seq 100); do
		grep -qs holding "$tmp/hold-bounds" && break
		sleep 0.1
	done
	"$probe" dial "$@" -src 127.0.0.3 -want any "$url" >"$tmp/dial-bounds"
	wait $hp
	echo "127.0.0.2:"
	cat "$tmp/hold-bounds"
	echo "meanwhile 127.0.0.3:"
	cat "$tmp/dial-bounds"
}

step "the example behind nginx counts every client at nginx's address (no TrustedProxies flag)"
bounds "ws://127.0.0.1:$P_PLAIN/ws"
grep -q 'connected, then HTTP 429' "$tmp/hold-bounds" || die "no 429 from the hub"
grep -q 'HTTP 429' "$tmp/dial-bounds" || die "the second client was let in"
ok "past the per-address cap (256) every client is refused, the second one too"

step "a hub with TrustedProxies 127.0.0.1 behind TLS at nginx (your program)"
"$probe" dial "${ca[@]}" -origin "https://127.0.0.1:$P_TLSB" -want 101 "wss://127.0.0.1:$P_TLSB/ws" || die "same origin"
"$probe" dial "${ca[@]}" -origin "https://evil.example" -want 403 "wss://127.0.0.1:$P_TLSB/ws" || die "foreign origin"
"$probe" dial "${ca[@]}" -origin "http://127.0.0.1:$P_TLSB" -want 403 "wss://127.0.0.1:$P_TLSB/ws" || die "http origin"
"$probe" direct "${ca[@]}" -origin "https://127.0.0.1:$P_TLSB" "wss://127.0.0.1:$P_TLSB/ws" || die "direct message"
bounds "wss://127.0.0.1:$P_TLSB/ws" "${ca[@]}" -origin "https://127.0.0.1:$P_TLSB"
grep -q '^hold: 256 connected, then HTTP 429' "$tmp/hold-bounds" || die "the first client's cap"
grep -q 'HTTP 101' "$tmp/dial-bounds" || die "the second client was refused"
echo "the hub saw the clients at: $(grep -o 'from 127\.0\.0\.[0-9]*' "$tmp/b.out" | sort | uniq -c | tr -s ' \n' ' ')"
grep -q 'from 127.0.0.2' "$tmp/b.out" && grep -q 'from 127.0.0.3' "$tmp/b.out" || die "the hub did not see the clients' addresses"
ok "same origin with the forwarded scheme and host; per-address bounds per client (X-Forwarded-For)"

step "nginx's per-client limit (limit_conn, here at 3)"
"$probe" hold -n 5 -for 1s "ws://127.0.0.1:$P_LIMIT/ws" | tee "$tmp/hold-limit"
grep -q '^hold: 3 connected, then HTTP 429' "$tmp/hold-limit" || die "limit_conn"
ok "the fourth connection of one client address gets 429 from nginx"

if [ "$IDLE" -gt 0 ]; then
	step "idle connections: $IDLE s without a frame from the client (the hub pings every 25 s)"
	"$probe" idle "${ca[@]}" -origin "https://127.0.0.1:$P_TLSB" -for "${IDLE}s" -want open "wss://127.0.0.1:$P_TLSB/ws" >"$tmp/idle-main" 2>&1 &
	i1=$!
	"$probe" idle -origin "http://127.0.0.1:$P_DEFTO" -for "${IDLE}s" -want open "ws://127.0.0.1:$P_DEFTO/ws" >"$tmp/idle-default" 2>&1 &
	i2=$!
	"$probe" idle -origin "http://127.0.0.1:$P_T10" -for 40s -want closed "ws://127.0.0.1:$P_T10/ws" >"$tmp/idle-10s" 2>&1 &
	i3=$!
	r=0
	wait $i1 || r=1
	echo "wshub.conf's location (proxy_read_timeout 120s), TLS:"; cat "$tmp/idle-main"
	wait $i2 || r=1
	echo "nginx's default proxy_read_timeout (60 s):"; cat "$tmp/idle-default"
	wait $i3 || r=1
	echo "proxy_read_timeout 10s:"; cat "$tmp/idle-10s"
	grep 'upgraded connection' "$tmp/logs/error.log" | sed 's/^[0-9\/]* [0-9:]* //' || true
	[ $r = 0 ] || die "idle connections"
	ok "the hub's pings keep idle connections open past 60 s; a proxy_read_timeout under the ping interval cuts them"
fi

step "/healthz and /readyz while the store feed is down: stdlib -store redis -redis 127.0.0.1:$P_DEAD (nothing listens there)"
"$tmp/stdlib" -addr "127.0.0.1:$P_RED" -store redis -redis "127.0.0.1:$P_DEAD" >"$tmp/red.out" 2>"$tmp/red.log" &
red_pid=$!
pids+=("$red_pid")
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$P_RED/healthz" && break
	sleep 0.1
done
h=$(curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$P_RED/healthz")
echo "GET /healthz: $h $(cat "$tmp/body")"
r=$(curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$P_RED/readyz")
echo "GET /readyz: $r $(cat "$tmp/body")"
"$probe" dial -want 503 "ws://127.0.0.1:$P_RED/ws" || die "upgrade while not ready"
kill -TERM "$red_pid"
red_rc=0
wait "$red_pid" || red_rc=$?
echo "exit status after SIGTERM: $red_rc"
[ "$h" = 200 ] && [ "$r" = 503 ] && [ "$red_rc" = 0 ] || die "/healthz, /readyz"
ok "alive but not ready: a load balancer takes it out, and upgrades get 503"

help=$("$tmp/stdlib" -h 2>&1 || true)
if grep -q -- -tls-cert <<<"$help"; then
	step "TLS in the example itself: stdlib -tls-cert -tls-key (no nginx)"
	start c "$tmp/stdlib" -addr 127.0.0.1:0 -store mem -tls-cert "$tmp/cert.pem" -tls-key "$tmp/key.pem"
	"$probe" dial "${ca[@]}" -origin "https://$addr" -want 101 "wss://$addr/ws" || die "wss to the hub"
	"$probe" direct "${ca[@]}" -origin "https://$addr" "wss://$addr/ws" || die "direct over wss"
	"$probe" dial "${ca[@]}" -origin "http://$addr" -want 403 "wss://$addr/ws" || die "http origin on the TLS port"
	ok "wss:// straight to the hub; an http:// page's origin is another origin"
else
	echo "SKIP: this build of the example has no -tls-cert"
fi

if [ "$HOLD" -gt 0 ]; then
	step "memory per idle WebSocket: $HOLD connections held (hub: wsprobe serve -no-address-bounds)"
	start d "$probe" serve -addr 127.0.0.1:0 -no-address-bounds -tls-cert "$tmp/cert.pem" -tls-key "$tmp/key.pem"
	hub_d=$addr d_pid=$pid
	rss() { ps -o rss= -p "$1" | awk '{s += $1} END {print s}'; }
	workers() { pgrep -P "$nginx_pid" | paste -sd, -; }
	for mode in plain tls-at-nginx tls-at-the-hub; do
		case $mode in
		plain) args=(-origin "http://127.0.0.1:$P_PLAINH" "ws://127.0.0.1:$P_PLAINH/ws") hub=$h_pid ;;
		tls-at-nginx) args=("${ca[@]}" -origin "https://127.0.0.1:$P_TLSH" "wss://127.0.0.1:$P_TLSH/ws") hub=$h_pid ;;
		*) args=("${ca[@]}" "wss://$hub_d/ws") hub=$d_pid ;;
		esac
		n0=$(rss "$(workers)") h0=$(rss "$hub")
		"$probe" hold -n "$HOLD" -for 20s "${args[@]}" >"$tmp/hold-$mode" 2>&1 &
		hp=$!
		for _ in $(seq 120); do
			grep -qs holding "$tmp/hold-$mode" && break
			sleep 1
		done
		sleep 5
		n1=$(rss "$(workers)") h1=$(rss "$hub")
		wait $hp || die "hold $mode"
		cat "$tmp/hold-$mode"
		grep -q "^hold: $HOLD of $HOLD still open" "$tmp/hold-$mode" || die "hold $mode"
		awk -v m=$mode -v n=$HOLD -v n0="$n0" -v n1="$n1" -v h0="$h0" -v h1="$h1" 'BEGIN {
			printf "%s: nginx workers RSS %d -> %d KiB (%.1f KiB per connection); hub RSS %d -> %d KiB (%.1f KiB per connection)\n",
				m, n0, n1, (n1 - n0) / n, h0, h1, (h1 - h0) / n }'
		sleep 2
	done
	echo "(tls-at-nginx: the hub reuses the memory the plain run left, so its figure means nothing;"
	echo " tls-at-the-hub: no nginx, so nginx's figure means nothing)"
fi

step "the access log of the WebSocket location has no tokens"
head -n 8 "$tmp/logs/wshub.access.log"
echo "($(wc -l <"$tmp/logs/wshub.access.log") lines)"
! grep -q 'token' "$tmp/logs/wshub.access.log" || die "a token in the access log"
ok "no query strings logged"

step "SIGTERM to the example: a client behind nginx gets 1001"
"$probe" idle "${ca[@]}" -for 20s -want closed "$wss/ws" >"$tmp/idle-term" 2>&1 &
i4=$!
sleep 1
kill -TERM "$a_pid"
a_rc=0
wait "$a_pid" || a_rc=$?
r=0
wait $i4 || r=1
cat "$tmp/idle-term"
echo "the example's exit status: $a_rc"
[ $r = 0 ] && [ $a_rc = 0 ] && grep -q 'close 1001' "$tmp/idle-term" || die "graceful shutdown"
ok "1001 through nginx, exit 0"

printf '\nall nginx checks passed\n'
