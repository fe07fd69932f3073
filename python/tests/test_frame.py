"""Bars as pandas frames: ibbridge.to_frame and history(..., frame=True), and the clear error
without pandas."""

import asyncio
import subprocess
import sys

import pandas as pd
import pytest

import ibbridge

# A fixed end of history: the simulated market is a function of its seed and the time.
END = 1_790_000_000 - 1_790_000_000 % 86400
COLUMNS = ["open", "high", "low", "close", "volume"]


def check_frame(frame, bars):
    assert list(frame.columns) == COLUMNS
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert len(frame) == len(bars)
    assert all(frame[c].dtype == "float64" for c in COLUMNS)
    for (at, row), bar in zip(frame.iterrows(), bars):
        assert at == pd.Timestamp(bar.time, unit="s", tz="UTC")
        assert [row[c] for c in COLUMNS] == [getattr(bar, c) for c in COLUMNS]


def test_history_as_a_frame_is_the_bars_indexed_by_utc_time():
    with ibbridge.Session(backend="sim") as s:
        s.connect()
        bars = s.history("SPY", 60, 3600, end=END)
        frame = s.history("SPY", 60, 3600, end=END, frame=True)
    assert len(bars) == 60
    check_frame(frame, bars)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert frame.index[-1] == pd.Timestamp(END - 60, unit="s", tz="UTC")
    assert (frame["high"] >= frame[["open", "close", "low"]].max(axis=1)).all()


def test_history_async_as_a_frame():
    async def main():
        async with ibbridge.Session(backend="sim") as s:
            await s.connect_async()
            return await asyncio.gather(
                s.history_async("QQQ", 300, 86400, end=END),
                s.history_async("QQQ", 300, 86400, end=END, frame=True),
            )

    bars, frame = asyncio.run(main())
    assert len(bars) == 288
    check_frame(frame, bars)


def test_to_frame_of_live_bars_and_of_none():
    with ibbridge.Session(backend="sim") as s:
        s.connect()
        live = []
        for _, bar in s.bars(["SPY"], bar_seconds=5):
            live.append(bar)
            if len(live) == 3:
                break
    check_frame(ibbridge.to_frame(live), live)
    empty = ibbridge.to_frame([])
    assert list(empty.columns) == COLUMNS and len(empty) == 0
    assert str(empty.index.tz) == "UTC"
    with pytest.raises(TypeError, match="to_frame takes Bars, not tuple"):
        ibbridge.to_frame([("SPY", live[0])])


def test_without_pandas_a_frame_is_an_import_error_naming_the_extra():
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import ibbridge\n"
        "for call in (lambda: ibbridge.to_frame([]),\n"
        "             lambda: ibbridge.Session().history('SPY', frame=True)):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as e:\n"
        "        print(e)\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout
    for line in lines[:2]:
        assert 'pip install "ibbridge[pandas]"' in line, line
    assert lines[2] == "done"
