"""Sessions attached to a hub (`runner hub`): history and live bars through the hub's one
worker, orders in each client's namespace, a hub killed and started again, no hub at all.

The hub is the `runner` binary: `IBBRIDGE_RUNNER` names it (`.ci/run` sets it to the debug
build); without it these tests are skipped, saying how to run them."""

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest

import ibbridge

RUNNER = os.environ.get("IBBRIDGE_RUNNER")
pytestmark = pytest.mark.skipif(
    not RUNNER,
    reason="needs the runner binary: IBBRIDGE_RUNNER=target/debug/runner python -m pytest "
    "python/tests/test_hub.py",
)

FAST = 600.0


class Hub:
    """`runner hub --name NAME` in a directory of its own, with a journal of its own."""

    def __init__(self, tmp_path, name: str, extra: str = "", sim: str = f"speed = {FAST}\n"):
        self.name = name
        self.dir = tmp_path / "hubs"
        self.journal = tmp_path / f"{name}.journal"
        self.config = tmp_path / f"{name}.toml"
        self.config.write_text(
            f'[sim]\norders_file = "{self.journal}"\n{sim}'
            f"[hub]\nwait_seconds = 20\n{extra}"
        )
        self.env = dict(os.environ, IBBRIDGE_HUB_DIR=str(self.dir))
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [RUNNER, "hub", "--name", self.name, "--config", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_for(lambda s: True)

    def status(self):
        try:
            with open(self.dir / f"{self.name}.status.json") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_for(self, ok, seconds: float = 20.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            s = self.status()
            if s is not None and s["pid"] == self.proc.pid and ok(s):
                return s
            time.sleep(0.05)
        raise AssertionError(f"hub status: {self.status()}")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)

    def session(self, **kwargs):
        # The hub's directory is read from the environment of this process.
        os.environ["IBBRIDGE_HUB_DIR"] = str(self.dir)
        return ibbridge.Session(config=self.config, hub=self.name, **kwargs)


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path, "py")
    yield h
    h.stop()
    os.environ.pop("IBBRIDGE_HUB_DIR", None)


def test_sessions_share_the_hubs_worker_and_its_subscriptions(hub):
    with hub.session() as a, hub.session(client="other") as b:
        a.connect()
        b.connect()
        assert a.worker_pid == b.worker_pid == hub.proc.pid
        for _ in range(3):
            bars = a.history("SPY", 60, 3600)
            assert len(bars) >= 59
            assert all(x.time + 60 == y.time for x, y in zip(bars, bars[1:]))
        mine = a.bars(["SPY"], bar_seconds=5)
        other = b.bars(["SPY", "QQQ"], bar_seconds=5)
        times = []
        for _ in range(4):
            symbol, bar = next(mine)
            assert symbol == "SPY"
            times.append(bar.time)
            next(other)
        assert times == list(range(times[0], times[0] + 5 * len(times), 5))
        status = hub.wait_for(lambda s: len(s["clients"]) == 2 and len(s["feeds"]) == 2)
        feeds = {f["symbol"]: sorted(f["clients"]) for f in status["feeds"]}
        assert feeds == {"SPY": ["other", "python"], "QQQ": ["other"]}
        # One history request sent upstream per distinct request under way: three in a row.
        assert status["history_upstream"] == 3
        mine.close()
        other.close()
    hub.wait_for(lambda s: not s["clients"] and not s["feeds"])


def test_orders_of_two_sessions_with_one_reference_are_two_orders(hub):
    with hub.session(trade=True) as a, hub.session(trade=True, client="desk2") as b:
        a.connect()
        b.connect()
        first = a.place_order("SPY", "buy", 5, limit=10_000.0, ref="r-1")
        again = a.place_order("SPY", "buy", 5, limit=10_000.0, ref="r-1")
        second = b.place_order("SPY", "buy", 5, limit=10_000.0, ref="r-1")
        assert first.ref == again.ref == second.ref == "r-1"
        assert first.broker_id == again.broker_id != second.broker_id
        assert [o.ref for o in a.orders()] == ["r-1"]
        assert [o.ref for o in b.orders()] == ["r-1"]
    placed = [
        line.split("\t")[3]
        for line in hub.journal.read_text().splitlines()
        if line.startswith("P\t")
    ]
    assert placed == ["python.r-1", "desk2.r-1"]


def test_a_session_waits_for_its_hub_to_come_back(hub):
    with hub.session() as s:
        s.connect()
        stream = s.bars(["SPY"], bar_seconds=5)
        before = [bar.time for _, bar in (next(stream) for _ in range(2))]
        hub.kill()
        time.sleep(1.0)
        hub.start()
        after = [bar.time for _, bar in (next(stream) for _ in range(3))]
        times = before + after
        assert times == sorted(set(times)), times
        assert s.stats()["restarts"] >= 1
        stream.close()


def test_no_hub_of_that_name_is_a_clear_error(tmp_path):
    os.environ["IBBRIDGE_HUB_DIR"] = str(tmp_path / "none")
    try:
        with ibbridge.Session(hub="nowhere") as s:
            with pytest.raises(ibbridge.Error, match=r"no hub named nowhere to attach to"):
                s.connect()
    finally:
        os.environ.pop("IBBRIDGE_HUB_DIR", None)


# Friday 2026-12-04 16:00 UTC on the market's calendar, 14,400 times real time: Monday's
# close (21:00 UTC) comes 19.25 s later, after two nightly restarts and the weekly re-login.
WEEKEND = "speed = 14400.0\nstart = 1796400000\ncalendar = true\n"
MONDAY = 1796601600
OPEN, CLOSE = 14 * 3600 + 1800, 21 * 3600


@pytest.mark.parametrize("via", ["alone", "hub"])
def test_a_session_rides_through_a_long_weekend_of_restarts(tmp_path, via):
    """Streaming from Friday to Monday's close, alone or through a hub: each restart and the
    re-login told in the stream (interrupted, restored), then every bar of Monday's session
    for every symbol, none repeated, none outside a session, none missing within one."""
    symbols = ["SPY", "QQQ"]
    hub = Hub(tmp_path, "weekend", sim=WEEKEND) if via == "hub" else None
    try:
        if hub is not None:
            session = hub.session()
        else:
            config = tmp_path / "weekend.toml"
            config.write_text(f'[sim]\norders_file = "{tmp_path / "journal"}"\n{WEEKEND}')
            session = ibbridge.Session(config=config)

        async def main():
            bars = {s: [] for s in symbols}
            events = {s: [] for s in symbols}
            async with session as s:
                await s.connect_async()
                async for symbol, item in s.stream(symbols, 60, events=True):
                    if isinstance(item, ibbridge.SymbolEvent):
                        events[symbol].append(item.what)
                        continue
                    bars[symbol].append(item.time)
                    if all(b and b[-1] >= MONDAY + CLOSE - 60 for b in bars.values()):
                        break
            return bars, events

        bars, events = asyncio.run(asyncio.wait_for(main(), 90))
    finally:
        if hub is not None:
            hub.stop()
            os.environ.pop("IBBRIDGE_HUB_DIR", None)
    for symbol in symbols:
        times = bars[symbol]
        for t in times:
            weekday = (t // 86400 + 3) % 7
            assert weekday < 5 and OPEN <= t % 86400 < CLOSE, (symbol, t)
        for a, b in zip(times, times[1:]):
            next_session = a % 86400 == CLOSE - 60 and b % 86400 == OPEN and b > a
            assert b - a == 60 or next_session, (symbol, a, b)
        assert sum(MONDAY <= t < MONDAY + 86400 for t in times) == 390, symbol
        assert events[symbol].count("interrupted") == 3, (symbol, events[symbol])
        assert events[symbol].count("restored") == 3, (symbol, events[symbol])
