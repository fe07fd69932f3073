"""The asyncio API on the simulated market: the event loop is never blocked by the bridge, a
loop blocked by the program loses nothing, and the stream rides out a dead worker."""

import asyncio
import gc
import os
import signal
import time

import pytest

import ibbridge
from conftest import wait_gone

SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]
END = 1_790_000_000 - 1_790_000_000 % 86400


def run(coro):
    return asyncio.run(coro)


class Ticker:
    """Ticks every `period` seconds on the loop; the longest gap between ticks tells whether
    anything held the loop up.

    The heap the program had before is frozen out of the garbage collector's way meanwhile
    (`gc.freeze`, as long-running services do): a full collection walks every object the
    interpreter holds, pandas' included when another test module imported it, and takes
    40 ms of its own here with pandas loaded. What is measured is what the bridge holds the
    loop up for, and the collections of the objects it makes."""

    def __init__(self, period=0.005):
        self.period = period
        self.longest = 0.0
        self.ticks = 0
        self._task = None

    async def _run(self):
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.period)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    def __enter__(self):
        gc.collect()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc):
        self._task.cancel()
        gc.unfreeze()


def contiguous(times, step):
    return times == list(range(times[0], times[0] + step * len(times), step))


def test_the_async_example_runs():
    async def main():
        async with ibbridge.Session(backend="sim") as s:
            accounts = await s.connect_async()
            bars = await s.history_async("SPY", bar_seconds=60, duration_seconds=86400)
            got = []
            async for symbol, bar in s.stream(["SPY", "QQQ"]):
                got.append((symbol, bar))
                if len(got) == 6:
                    break
            return accounts, bars, got, s

    accounts, bars, got, s = run(main())
    assert accounts == ["DU0000001"]
    assert len(bars) == 1440
    assert {sym for sym, _ in got} == {"SPY", "QQQ"}
    assert all(isinstance(b, ibbridge.Bar) and b.close > 0 for _, b in got)
    assert s.closed


def test_the_loop_keeps_ticking_while_7_histories_come_and_bars_stream():
    async def main():
        async with ibbridge.Session() as s:
            with Ticker() as ticker:
                await s.connect_async()
                # 17,280 five-second bars each, all under way at once.
                histories = await asyncio.gather(
                    *[s.history_async(sym, 5, 86400, end=END) for sym in SYMBOLS]
                )
                live = {}
                started = time.monotonic()
                async for symbol, bar in s.stream(SYMBOLS):
                    live.setdefault(symbol, []).append(bar.time)
                    if time.monotonic() - started > 1.5:
                        break
            return histories, live, ticker

    histories, live, ticker = run(main())
    assert [len(h) for h in histories] == [17280] * 7
    assert set(live) == set(SYMBOLS)
    assert all(contiguous(t, 5) for t in live.values())
    assert ticker.ticks > 100
    # The lag beyond the ticker's own period: what held the loop up.
    extra = ticker.longest - ticker.period
    assert extra <= 0.050, f"the loop was held up for {extra * 1000:.1f} ms more than its tick"


def test_a_loop_blocked_for_2_s_loses_no_bar_and_no_reply():
    async def main():
        async with ibbridge.Session() as s:
            await s.connect_async()
            stream = s.stream(["SPY", "QQQ"])
            times = {"SPY": [], "QQQ": []}
            async for symbol, bar in stream:
                times[symbol].append(bar.time)
                if len(times["SPY"]) >= 3 and len(times["QQQ"]) >= 3:
                    break
            # A reply on its way while the loop is busy...
            pending = asyncio.ensure_future(s.history_async("AAPL", 60, 86400, end=END))
            await asyncio.sleep(0)
            # ...and the loop held by CPU work for 2 s (24 bars a symbol come meanwhile).
            until = time.monotonic() + 2.0
            while time.monotonic() < until:
                sum(range(1000))
            history = await pending
            after = time.monotonic()
            async for symbol, bar in stream:
                times[symbol].append(bar.time)
                if time.monotonic() - after > 0.5:
                    break
            return history, times, s.stats()

    history, times, stats = run(main())
    assert len(history) == 1440
    for symbol, t in times.items():
        assert len(t) >= 30, (symbol, len(t))
        assert contiguous(t, 5), (symbol, t)
    assert stats["bars_dropped"] == 0


def test_bars_beyond_the_buffer_are_dropped_oldest_first_and_counted():
    async def main():
        async with ibbridge.Session(buffer=4) as s:
            await s.connect_async()
            stream = s.stream(["SPY"])
            first = []
            async for _, bar in stream:
                first.append(bar.time)
                break
            # Bars taken with it and not yet yielded come first.
            first.extend(b.time for _, b in s._ready)
            time.sleep(1.0)  # the loop (and the GIL) given up, nothing taken: ~12 bars come
            after = []
            async for _, bar in stream:
                after.append(bar.time)
                if len(after) == 6:
                    break
            return first, after, s.stats()

    first, after, stats = run(main())
    assert stats["bars_dropped"] >= 5
    # What was kept is the newest: the first bar after the wait skips the dropped ones.
    rest = first[1:]
    assert after[: len(rest)] == rest
    kept = after[len(rest) :]
    assert kept[0] - first[-1] == 5 * (stats["bars_dropped"] + 1)
    assert contiguous(kept, 5)


def test_the_stream_rides_out_a_killed_worker():
    async def main():
        async with ibbridge.Session() as s:
            await s.connect_async()
            times = {"SPY": [], "QQQ": []}
            killed = None
            after_kill = 0
            async for symbol, bar in s.stream(["SPY", "QQQ"]):
                times[symbol].append(bar.time)
                if killed is None and len(times["SPY"]) >= 5:
                    killed = s.worker_pid
                    os.kill(killed, signal.SIGKILL)
                elif killed is not None:
                    after_kill += 1
                    if after_kill >= 12:
                        break
            return times, killed, s.worker_pid, s.stats()

    times, killed, now, stats = run(main())
    assert wait_gone(killed, 5)
    assert now != killed
    assert stats["restarts"] == 1
    for symbol, t in times.items():
        # In time order, each bar once; the bars of the restart's moment may be missed.
        assert t == sorted(set(t)), (symbol, t)
    assert stats["bars_dropped"] == 0


def test_closing_the_session_ends_a_waiting_stream():
    async def main():
        s = ibbridge.Session(speed=1.0)  # no bar for 5 s: the stream waits
        await s.connect_async()
        got = []

        async def consume():
            async for item in s.stream(["SPY"]):
                got.append(item)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.3)
        assert not task.done()
        await s.close_async()
        await asyncio.wait_for(task, 5)
        return got, s

    got, s = run(main())
    assert got == []
    assert s.closed


def test_an_abandoned_await_leaves_the_session_working():
    async def main():
        async with ibbridge.Session() as s:
            a, b = await asyncio.gather(s.connect_async(), s.connect_async())
            assert a == b == ["DU0000001"]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(s.history_async("SPY", 5, 86400 * 5), 0.001)
            with pytest.raises(ibbridge.BrokerError) as e:
                await s.history_async("NO_SUCH_SYMBOL", 60, 3600)
            assert e.value.kind == "unknown_symbol"
            return await s.history_async("SPY", 60, 3600, end=END)

    assert len(run(main())) == 60


def test_one_stream_at_a_time():
    async def main():
        async with ibbridge.Session() as s:
            await s.connect_async()
            first = s.stream(["SPY"])
            with pytest.raises(ibbridge.Error, match="one at a time"):
                s.stream(["QQQ"])
            await first.aclose()
            second = s.stream(["QQQ"])
            async for symbol, _ in second:
                return symbol

    assert run(main()) == "QQQ"
