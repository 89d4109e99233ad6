"""Finding a service's processes: BentoML starts its workers in sessions of their own, so a
signal to the server's process group does not reach them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def processes_serving(home: str | Path) -> list[int]:
    """Pids of the processes whose environment says ``RISKCAST_HOME=<home>``."""
    needle = f"RISKCAST_HOME={Path(home)}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found.append(int(entry.name))
    return found


def kill_serving(home: str | Path, sig: int = signal.SIGKILL) -> int:
    """Signal every process serving ``home``; returns how many were signalled."""
    count = 0
    for pid in processes_serving(home):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
            count += 1
        except OSError:
            pass
    return count


def stop_serving(home: str | Path, server: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Stop the service of ``home`` and wait until none of its processes is left: a polite
    signal first, then ``SIGKILL`` for whatever outlives ``timeout``. ``server``: the process
    that started it (``riskcast serve``), reaped here."""
    kill_serving(home, signal.SIGTERM)
    if server is not None:
        try:
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_serving(home, signal.SIGKILL)
            server.wait(timeout=10)
    deadline = time.monotonic() + 20
    while processes_serving(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_serving(home, signal.SIGKILL)
