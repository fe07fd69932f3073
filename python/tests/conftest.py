"""What every test of the package leaves behind: no worker process and no shared-memory
segment of this process."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, which has exited, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except ProcessLookupError:
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, seconds: float) -> bool:
    """Waits until `pid` no longer runs, at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def segments_of(pid: int):
    """This process's shared-memory segments (`/ibbridge-<pid>-...`)."""
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:  # not Linux
        return []
    return [n for n in names if n.startswith(f"ibbridge-{pid}-")]


def children(pid: int):
    """Live child processes of `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(entry))
    return out


def in_thread(call):
    """Starts `call()` on a thread; returns the thread and a dict that gets its `result` or
    the `error` (an `ibbridge.Error`) it raised."""
    import ibbridge

    out = {}

    def run():
        try:
            out["result"] = call()
        except ibbridge.Error as e:
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    me = os.getpid()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (children(me) or segments_of(me)):
        time.sleep(0.05)
    assert children(me) == [], "a worker outlived its session"
    assert segments_of(me) == [], "a segment was left in /dev/shm"


def start_program(source: str) -> subprocess.Popen:
    """A Python program (`source`, dedented) started with pipes for stdin, stdout and stderr,
    as text: a test drives it line by line and sends it signals."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
