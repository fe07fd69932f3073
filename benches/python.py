"""What Python code sees of the bridge: round trips, history fetches, the live bar stream and
an order's placement, on the simulated market, next to the pipe-based design this package replaces (JSON over a pipe
to a Python worker, on the same kind of machine: 88-107 us per round trip, 164-185 k msg/s).

    python benches/python.py            # 3 runs, medians
    python benches/python.py --quick    # 1 short run (CI)
    python benches/python.py --json     # one JSON object on stdout

Each figure is the median over the runs; a run's figure is itself a median (round trips) or a
rate over the whole measurement (history, stream). As the Rust harness does, the benchmark
pins itself to CPU 0 and each worker to CPU 1 (on Linux with 2 CPUs or more; `--no-pin`
leaves placement to the scheduler): on 2 vCPUs an unlucky placement changes a round trip
tenfold.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

import ibbridge

SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]
PIN = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def pin_worker(session):
    """Every thread of the session's worker on CPU 1."""
    if not PIN:
        return
    pid = session.worker_pid
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {1})
        except OSError:
            pass
OLD_RTT_US = (88, 107)
OLD_MSG_PER_S = (164_000, 185_000)


def median_us(samples):
    return statistics.median(samples) * 1e6


def p99_us(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))] * 1e6


def round_trips(n):
    """Blocking pings, each timed in Python (GIL released and taken again included)."""
    with ibbridge.Session() as s:
        s.connect()
        pin_worker(s)
        for _ in range(200):
            s.ping()
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            s.ping()
            samples.append(time.perf_counter() - t)
    return {"rtt_us": median_us(samples), "rtt_p99_us": p99_us(samples)}


def async_round_trips(n):
    """Awaited pings, one after the other, timed in the event loop."""

    async def main():
        async with ibbridge.Session() as s:
            await s.connect_async()
            pin_worker(s)
            for _ in range(100):
                await s.ping_async()
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                await s.ping_async()
                samples.append(time.perf_counter() - t)
            return samples

    samples = asyncio.run(main())
    return {"rtt_async_us": median_us(samples), "rtt_async_p99_us": p99_us(samples)}


def histories(days):
    """Five-second bars of 7 symbols over `days` days: one after the other (blocking), then
    all at once (asyncio.gather)."""
    duration = 86400 * days
    with ibbridge.Session() as s:
        s.connect()
        pin_worker(s)
        s.history("SPY", 5, 3600)
        t = time.perf_counter()
        n = sum(len(s.history(sym, 5, duration)) for sym in SYMBOLS)
        blocking = time.perf_counter() - t

    async def main():
        async with ibbridge.Session() as s:
            await s.connect_async()
            pin_worker(s)
            t = time.perf_counter()
            got = await asyncio.gather(*[s.history_async(sym, 5, duration) for sym in SYMBOLS])
            return sum(map(len, got)), time.perf_counter() - t

    n_async, gathered = asyncio.run(main())
    assert n == n_async, (n, n_async)
    return {
        "history_bars": n,
        "history_ms": blocking * 1e3,
        "history_bars_per_s": n / blocking,
        "history_async_ms": gathered * 1e3,
        "history_async_bars_per_s": n / gathered,
    }


def stream(seconds, speed):
    """Live bars of 7 symbols from a market running `speed` times real time (more bars than
    Python can take), read by `async for` for `seconds`."""

    async def main():
        async with ibbridge.Session(speed=speed, buffer=1 << 22) as s:
            await s.connect_async()
            pin_worker(s)
            it = s.stream(SYMBOLS)
            await it.__anext__()
            n = 0
            t = time.perf_counter()
            end = t + seconds
            async for _symbol, _bar in it:
                n += 1
                if n & 1023 == 0 and time.perf_counter() >= end:
                    break
            elapsed = time.perf_counter() - t
            stats = s.stats()
            return n / elapsed, stats["bars_received"] / elapsed, stats["bars_dropped"]

    taken, offered, dropped = asyncio.run(main())
    return {
        "stream_bars_per_s": taken,
        "stream_offered_per_s": offered,
        "stream_dropped": dropped,
    }


def orders(n):
    """place_order -> the broker's acknowledgement, blocking: a limit order far from the
    market (it rests), checked against the risk limits, placed through the session's trader
    and taken by the simulated broker, which writes it to its journal and syncs the file to
    disk before it answers (as a broker records an order before it acknowledges it: most of
    the time here is that sync); each is cancelled after, untimed."""
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "bench.toml")
        with open(config, "w") as f:
            f.write("[trading]\nmax_orders_per_minute = 1000000\nmax_position = 1000000000\n"
                    "max_order_value = 1000000000\n")
        with ibbridge.Session(config=config, trade=True) as s:
            s.connect()
            pin_worker(s)
            for _ in range(20):
                s.cancel_order(s.place_order("SPY", "buy", 1, limit=1.0).ref)
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                o = s.place_order("SPY", "buy", 1, limit=1.0)
                samples.append(time.perf_counter() - t)
                s.cancel_order(o.ref)
    return {"order_us": median_us(samples), "order_p99_us": p99_us(samples)}


def run_once(quick):
    out = {}
    out.update(round_trips(2_000 if quick else 20_000))
    out.update(async_round_trips(500 if quick else 5_000))
    out.update(histories(1 if quick else 5))
    out.update(stream(1.0 if quick else 3.0, 2_000_000.0))
    out.update(orders(200 if quick else 2_000))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-pin", action="store_true", help="leave CPU placement to the scheduler")
    args = ap.parse_args()
    global PIN
    if args.no_pin:
        PIN = False
    if PIN:
        # This thread, and every thread and worker started from it, on CPU 0 (workers are
        # moved to CPU 1 once started).
        os.sched_setaffinity(0, {0})
    runs = [run_once(args.quick) for _ in range(1 if args.quick else max(1, args.runs))]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    med["runs"] = len(runs)
    med["pinned"] = PIN
    med["python"] = sys.version.split()[0]
    if args.json:
        print(json.dumps(med))
        return
    lo, hi = OLD_RTT_US
    mlo, mhi = OLD_MSG_PER_S
    pinned = "pinned to CPUs 0 and 1" if PIN else "not pinned"
    print(f"ibbridge from Python {med['python']}, medians of {len(runs)} run(s), {pinned}")
    print(f"  round trip, blocking     {med['rtt_us']:8.1f} us  (p99 {med['rtt_p99_us']:.1f} us)"
          f"   old design: {lo}-{hi} us -> {lo / med['rtt_us']:.1f}-{hi / med['rtt_us']:.1f}x faster")
    print(f"  round trip, awaited      {med['rtt_async_us']:8.1f} us  (p99 {med['rtt_async_p99_us']:.1f} us)")
    print(f"  history, one at a time   {med['history_bars_per_s'] / 1e3:8.0f} k bars/s"
          f"  ({med['history_bars']:.0f} bars in {med['history_ms']:.0f} ms)")
    print(f"  history, 7 at once       {med['history_async_bars_per_s'] / 1e3:8.0f} k bars/s"
          f"  ({med['history_async_ms']:.0f} ms)")
    print(f"  live bars, async for     {med['stream_bars_per_s'] / 1e3:8.0f} k bars/s"
          f"   old design: {mlo // 1000}-{mhi // 1000} k msg/s -> "
          f"{med['stream_bars_per_s'] / mhi:.1f}-{med['stream_bars_per_s'] / mlo:.1f}x")
    print(f"    offered by the worker  {med['stream_offered_per_s'] / 1e3:8.0f} k bars/s,"
          f" dropped (buffer full) {med['stream_dropped']:.0f}")
    print(f"  place_order -> acked     {med['order_us']:8.1f} us  (p99 {med['order_p99_us']:.1f} us)")


if __name__ == "__main__":
    main()
