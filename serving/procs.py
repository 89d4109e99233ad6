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


#: what a service started for a work directory must not inherit from its caller: another
#: registry, API key, work directory, configuration or audit log
FOREIGN_ENV = ("MLFLOW_TRACKING_URI", "RISKCAST_EMBEDDED_TRACKING_URI", "RISKCAST_API_KEY", "RISKCAST_HOME",
               "RISKCAST_CONFIG", "RISKCAST_AUDIT_URL", "RISKCAST_DESK_URL")


def start_serving(home: str | Path, log: str | Path) -> tuple[subprocess.Popen, int]:
    """``riskcast serve`` of ``home`` on a free loopback port, in a session of its own, its
    output appended to ``log``, with this process's environment less ``FOREIGN_ENV``.
    Returns the process and the port; ``stop_serving(home, process)`` ends it."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    riskcast = Path(sys.executable).with_name("riskcast")
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(riskcast), "serve", "--workdir", str(home), "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 240.0) -> bool:
    """Whether the service started as ``proc`` answers ``GET /readyz`` with 200 on ``port``
    within ``timeout`` seconds; False as soon as it has exited."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.5)
    return False
