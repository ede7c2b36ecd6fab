#!/usr/bin/env python3
"""Segments of a direct message's latency from `perf script` output of the
server's and the load tool's system calls (see syscall-latency.sh).

A frame the tool writes is 60-110 bytes (masked, cid and content); a
delivery the server writes is 140-170 bytes. Which server socket a tool
socket feeds, and which tool socket a server socket writes to, is learned
from the data (the most frequent pair within 400 us); messages of one socket
are then matched in order."""
import bisect
import collections
import re
import sys

path, server, tool = sys.argv[1:4]
reading = {}
ev = {"tool_write": [], "server_read": [], "server_write": [], "tool_read": []}
line_re = re.compile(r"\s*(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s+(.*)")
for line in open(path):
    m = line_re.match(line)
    if not m:
        continue
    pid, tid, t, event, args = m.groups()
    t = float(t)
    side = "server" if pid == server else "tool" if pid == tool else None
    if side is None or "epoll" in event:
        continue
    if "enter_read" in event:
        reading[tid] = int(re.search(r"fd: (0x[0-9a-f]+)", args).group(1), 0)
    elif "exit_read" in event:
        s = args.strip()
        n = int(s, 0) if s.startswith("0x") else -1
        if tid not in reading:
            continue
        if side == "server" and 60 <= n <= 110:
            ev["server_read"].append((t, reading[tid]))
        if side == "tool" and 140 <= n <= 170:
            ev["tool_read"].append((t, reading[tid]))
    elif "enter_write" in event:
        fd = int(re.search(r"fd: (0x[0-9a-f]+)", args).group(1), 0)
        n = int(re.search(r"count: (0x[0-9a-f]+)", args).group(1), 0)
        if side == "server" and 140 <= n <= 170:
            ev["server_write"].append((t, fd))
        if side == "tool" and 60 <= n <= 110:
            ev["tool_write"].append((t, fd))
for k in ev:
    ev[k].sort()


def segment(a, b, name):
    A, B = ev[a], ev[b]
    bt = [t for t, _ in B]
    pairs = collections.defaultdict(collections.Counter)
    for t, fd in A:
        i = bisect.bisect_left(bt, t)
        for j in range(i, min(i + 4, len(B))):
            if B[j][0] - t < 400e-6:
                pairs[fd][B[j][1]] += 1
    feeds = collections.defaultdict(list)
    for x, c in pairs.items():
        feeds[c.most_common(1)[0][0]].append(x)
    pending = collections.defaultdict(list)
    lat = []
    for t, kind, fd in sorted([(t, 0, fd) for t, fd in A] + [(t, 1, fd) for t, fd in B]):
        if kind == 0:
            pending[fd].append(t)
            continue
        for src in feeds.get(fd, []):
            q = pending[src]
            while q and t - q[0] > 0.05:
                q.pop(0)
            if q:
                lat.append(t - q.pop(0))
                break
    lat.sort()
    n = len(lat)
    if n == 0:
        print(f"  {name:28} no messages matched")
        return

    def q(p):
        return lat[min(n - 1, int(p * n))] * 1e6

    print(f"  {name:28} n={n:6} p50={q(.5):5.0f} us  p90={q(.9):5.0f}  p99={q(.99):5.0f}")


segment("tool_write", "server_read", "tool write -> server read")
segment("server_read", "server_write", "server read -> its write")
segment("server_write", "tool_read", "server write -> tool read")
