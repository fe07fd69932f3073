"""The blocking API on the simulated market: connect, history, errors, live bars, closing."""

import asyncio
import datetime
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import ibbridge
from conftest import alive, segments_of, wait_gone

# A fixed end of history: the simulated market is a function of its seed and the time.
END = 1_790_000_000 - 1_790_000_000 % 86400


def test_connect_answers_with_the_accounts_after_the_handshake():
    with ibbridge.Session(backend="sim") as s:
        assert s.accounts == []
        assert s.worker_pid is None
        accounts = s.connect()
        assert accounts == ["DU0000001"]
        assert s.accounts == accounts
        pid = s.worker_pid
        assert pid is not None and pid != os.getpid() and alive(pid)
        # Connecting again is nothing new: the same worker.
        assert s.connect() == accounts
        assert s.worker_pid == pid
    assert s.closed
    assert wait_gone(pid, 5)


def test_history_is_whole_ordered_and_priced():
    with ibbridge.Session(backend="sim") as s:
        s.connect()
        bars = s.history("SPY", bar_seconds=60, duration_seconds=86400, end=END)
    assert len(bars) == 1440
    assert [b.time for b in bars] == list(range(END - 86400, END, 60))
    for b in bars:
        assert isinstance(b, ibbridge.Bar)
        assert 0 < b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume >= 0


def test_the_same_seed_gives_the_same_bars_and_bars_compare_and_pickle():
    end = datetime.datetime.fromtimestamp(END, tz=datetime.timezone.utc)
    with ibbridge.Session(seed=7) as a, ibbridge.Session(seed=7) as b, ibbridge.Session(seed=8) as c:
        for s in (a, b, c):
            s.connect()
        ha = a.history("QQQ", bar_seconds=300, duration_seconds=3600, end=END)
        hb = b.history("QQQ", bar_seconds=300, duration_seconds=3600, end=end)
        hc = c.history("QQQ", bar_seconds=300, duration_seconds=3600, end=END)
    assert len(ha) == 12
    assert ha == hb
    assert ha != hc
    assert pickle.loads(pickle.dumps(ha)) == ha
    assert repr(ha[0]).startswith(f"Bar(time={END - 3600}, open=")


def test_the_broker_refusing_is_a_broker_error_with_its_kind():
    with ibbridge.Session() as s:
        s.connect()
        with pytest.raises(ibbridge.BrokerError) as e:
            s.history("NO_SUCH_SYMBOL", bar_seconds=60, duration_seconds=3600)
    assert e.value.kind == "unknown_symbol"
    assert e.value.code is None
    assert "NO_SUCH_SYMBOL" in str(e.value)
    assert isinstance(e.value, ibbridge.Error)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"backend": "nope"}, "nope"),
        ({"config": "/nonexistent/ibbridge.toml"}, "not found"),
        ({"speed": -1.0}, "speed"),
        ({"buffer": 0}, "buffer"),
    ],
)
def test_a_setting_that_cannot_be_used_is_a_config_error(kwargs, words):
    with pytest.raises(ibbridge.ConfigError) as e:
        ibbridge.Session(**kwargs)
    assert words in str(e.value)
    assert isinstance(e.value, ValueError)


def test_a_config_file_is_read(tmp_path):
    path = tmp_path / "session.toml"
    path.write_text('backend = "sim"\n[sim]\nseed = 99\nspeed = 120.0\n')
    s = ibbridge.Session(config=path)
    toml = s.config_toml()
    assert "seed = 99" in toml and "speed = 120.0" in toml
    s.close()
    path.write_text("[sim]\nseed = \"x\"\n")
    with pytest.raises(ibbridge.ConfigError, match="line 2"):
        ibbridge.Session(config=path)


def test_bad_arguments_are_config_errors_before_anything_is_sent():
    with ibbridge.Session() as s:
        s.connect()
        for args in [("SPY", 0, 3600), ("SPY", 60, 0), ("", 60, 3600), ("  ", 60, 3600)]:
            with pytest.raises(ibbridge.ConfigError):
                s.history(*args)
        with pytest.raises(ibbridge.ConfigError):
            s.history("SPY", 60, 3600, timeout=0)
        with pytest.raises(ibbridge.ConfigError):
            s.history("SPY", 60, 3600, end=datetime.datetime(2026, 1, 1))
        with pytest.raises(ibbridge.ConfigError):
            s.history("SPY", 60, 3600, end="yesterday")
        with pytest.raises(ibbridge.ConfigError):
            s.history("SPY", 60, 3600, end=-(2**63))
        with pytest.raises(OverflowError):
            s.history("SPY", -60, 3600)
        with pytest.raises(ibbridge.ConfigError, match="at most 128"):
            s.history("X" * 1_000_000, 60, 3600)
        with pytest.raises(ibbridge.ConfigError):
            next(s.bars([]))
        # Nothing broke: the session still answers.
        assert len(s.history("SPY", 60, 3600, end=END)) == 60


def test_a_session_not_connected_or_closed_says_so():
    s = ibbridge.Session()
    with pytest.raises(ibbridge.SessionClosed, match="connect"):
        s.history("SPY", 60, 3600)
    s.connect()
    s.close()
    with pytest.raises(ibbridge.SessionClosed):
        s.history("SPY", 60, 3600)
    with pytest.raises(ibbridge.SessionClosed):
        s.connect()
    s.close()  # twice is nothing


def test_a_hung_worker_is_a_timeout_and_then_replaced():
    with ibbridge.Session() as s:
        s.connect()
        pid = s.worker_pid
        os.kill(pid, signal.SIGSTOP)
        try:
            t = time.monotonic()
            with pytest.raises(ibbridge.Timeout):
                s.history("SPY", 60, 3600, timeout=0.3)
            assert time.monotonic() - t < 5
            assert isinstance(ibbridge.Timeout("x"), TimeoutError)
            # The supervisor declares it hung and replaces it; the next request is answered.
            assert len(s.history("SPY", 60, 3600, end=END, timeout=30)) == 60
            assert s.worker_pid != pid
            assert s.stats()["restarts"] >= 1
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # killed as hung: what should happen
                pass
    assert wait_gone(pid, 5)


def test_history_survives_the_worker_being_killed():
    with ibbridge.Session() as s:
        s.connect()
        first = s.worker_pid
        os.kill(first, signal.SIGKILL)
        bars = s.history("AAPL", 60, 86400, end=END)
        assert len(bars) == 1440
        assert s.worker_pid not in (None, first)
        assert s.stats()["restarts"] == 1


def test_blocking_live_bars_come_in_time_order():
    with ibbridge.Session() as s:
        s.connect()
        seen = {}
        for symbol, bar in s.bars(["SPY", "MSFT"], bar_seconds=5):
            seen.setdefault(symbol, []).append(bar.time)
            if sum(map(len, seen.values())) >= 12:
                break
    assert set(seen) <= {"SPY", "MSFT"}
    for times in seen.values():
        assert times == list(range(times[0], times[0] + 5 * len(times), 5))


def test_the_log_of_the_worker_reaches_python_logging(tmp_path):
    # A process of its own: the log level is taken when its first session is made.
    script = textwrap.dedent(
        """
        import logging, ibbridge
        records = []
        class Keep(logging.Handler):
            def emit(self, r):
                records.append((r.name, r.levelno, r.getMessage()))
        logging.getLogger("ibbridge").addHandler(Keep())
        logging.getLogger("ibbridge").setLevel(logging.INFO)
        with ibbridge.Session() as s:
            s.connect()
            s.history("SPY", 60, 3600)
        import time; time.sleep(0.3)
        names = {n for n, _, _ in records}
        assert "ibbridge.worker" in names, records
        assert any("worker attached" in m for n, _, m in records if n == "ibbridge.worker"), records
        print("ok", len(records))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_program_that_ends_without_closing_leaves_no_worker():
    p = _child(
        """
        import ibbridge
        s = ibbridge.Session()
        s.connect()
        print(s.worker_pid, flush=True)
        """
    )
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    worker = int(out.split()[0])
    assert wait_gone(worker, 5)
    assert segments_of(p.pid) == []


def test_a_killed_program_leaves_no_worker_and_no_segment():
    p = _child(
        """
        import ibbridge, time
        s = ibbridge.Session()
        s.connect()
        print(s.worker_pid, flush=True)
        time.sleep(60)
        """
    )
    line = p.stdout.readline()
    worker = int(line.split()[0])
    assert alive(worker)
    p.kill()
    p.wait(timeout=10)
    # The worker notices its runner is gone (heartbeats) and exits.
    assert wait_gone(worker, 10)
    assert segments_of(p.pid) == []
    p.stdout.close()
    p.stderr.close()


def test_programs_that_end_right_after_async_calls_exit_cleanly():
    # Threads of the library answer the loop with the GIL; one that took it while the
    # interpreter finished would bring the process down (abort, exit code -6).
    code = """
        import asyncio, ibbridge
        async def main():
            async with ibbridge.Session() as s:
                await s.connect_async()
                for _ in range(200):
                    await s.ping_async()
                await s.history_async("SPY", 60, 3600)
        asyncio.run(main())
        print("ok")
        """
    for _ in range(6):
        p = _child(code)
        out, err = p.communicate(timeout=60)
        assert (p.returncode, out.strip()) == (0, "ok"), err


def test_a_stream_left_stops_its_bars_and_a_new_stream_starts_them_again():
    async def main():
        async with ibbridge.Session(backend="sim", speed=600.0) as s:
            await s.connect_async()
            async for symbol, bar in s.stream(["SPY"]):
                break
            # Unsubscribed on a thread of the session's: give it a moment, then no bar comes.
            await asyncio.sleep(0.5)
            before = s.stats()["bars_received"]
            await asyncio.sleep(1.0)
            assert s.stats()["bars_received"] == before
            stream = s.stream(["SPY"])
            async for symbol, bar in stream:
                assert symbol == "SPY"
                break
            await stream.aclose()
            assert s.stats()["bars_received"] > before

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_replaced_worker_is_told_in_the_stream_and_the_symbol_streams_again():
    async def main():
        async with ibbridge.Session(backend="sim", speed=600.0) as s:
            await s.connect_async()
            told = []
            killed = None
            async for symbol, item in s.stream(["SPY"], events=True):
                told.append(item)
                if killed is None:
                    assert s.symbol_state("SPY") == "streaming"
                    killed = s.worker_pid
                    os.kill(killed, signal.SIGKILL)
                elif isinstance(item, ibbridge.SymbolEvent):
                    assert (item.symbol, item.what) == ("SPY", "worker_replaced")
                elif any(isinstance(i, ibbridge.SymbolEvent) for i in told):
                    # (Read before leaving: the stream let go, the symbol is unsubscribed.)
                    assert s.symbol_state("SPY") == "streaming"
                    break
            return told

    told = asyncio.run(asyncio.wait_for(main(), 60))
    events = [i for i in told if isinstance(i, ibbridge.SymbolEvent)]
    assert [e.what for e in events] == ["worker_replaced"]
    assert isinstance(told[-1], ibbridge.Bar)
    times = [b.time for b in told if isinstance(b, ibbridge.Bar)]
    assert times == sorted(set(times))


def test_a_stream_whose_first_read_was_cancelled_still_lets_its_symbols_go():
    async def main():
        async with ibbridge.Session(backend="sim", speed=600.0) as s:
            await s.connect_async()
            stream = s.stream(["SPY"])
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(stream.__anext__(), 0.000001)
            symbol, bar = await stream.__anext__()
            assert symbol == "SPY" and s.symbol_state("SPY") == "streaming"
            await stream.aclose()
            # Wanted once, let go once: another bar size is taken, not refused.
            async for symbol, bar in s.stream(["SPY"], bar_seconds=10):
                assert bar.time % 10 == 0
                break

    asyncio.run(asyncio.wait_for(main(), 60))
