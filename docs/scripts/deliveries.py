#!/usr/bin/env python3
"""Read the files of `wshub-bench direct -deliveries FILE` and tell how the
slow deliveries came: the latency quantiles, how many deliveries took longer
than a few thresholds, and how many of those over the p99 arrived in bursts
(10 ms windows, by send time, holding at least 5 of them) -- a pause of the
whole machine shows as such a burst, a server falling behind on its own as
slow deliveries spread over the run; and the gaps between the sends (a
tool sending in bursts shows gaps near zero).

    python3 docs/scripts/deliveries.py d.storemem d.floor
"""
import bisect
import collections
import sys


def main(paths):
    for path in paths:
        rows = []
        with open(path) as f:
            for line in f:
                at, lat, conn = map(int, line.split())
                rows.append((at - lat, lat, conn))  # by send time
        if not rows:
            print(f"{path}: no deliveries")
            continue
        rows.sort()
        lats = sorted(r[1] for r in rows)
        n = len(lats)
        q = lambda p: lats[min(n - 1, int(n * p))] / 1e3
        over = lambda us: n - bisect.bisect_right(lats, us * 1000)
        p99 = lats[min(n - 1, int(n * 0.99))]
        t0 = rows[0][0]
        bins = collections.Counter((r[0] - t0) // 10_000_000 for r in rows if r[1] >= p99)
        slow = sum(bins.values())
        bursty = sum(c for c in bins.values() if c >= 5)
        print(f"{path}: {n} deliveries; p50 {q(0.5):.0f} µs, p90 {q(0.9):.0f}, p99 {q(0.99):.0f}, p999 {q(0.999):.0f}")
        gaps = sorted((b[0] - a[0]) / 1e3 for a, b in zip(rows, rows[1:]))
        if gaps:
            g = lambda p: gaps[min(len(gaps) - 1, int(len(gaps) * p))]
            print(f"  gaps between sends: p10 {g(0.1):.0f} µs, p50 {g(0.5):.0f}, p90 {g(0.9):.0f}, p99 {g(0.99):.0f}")
        print("  over 200/500/1000/2000/4000 µs: " + ", ".join(str(over(us)) for us in (200, 500, 1000, 2000, 4000)))
        print(f"  of the {slow} at or over the p99: {bursty} in {sum(1 for c in bins.values() if c >= 5)} bursts "
              f"(10 ms windows with 5 or more), {slow - bursty} spread")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
