"""What the benchmarks share: a trained work directory, made once and kept in the temp folder, and
the way a step runs in a fresh process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def trained_workdir(customers: int, workdir: str | None = None) -> Path:
    """``workdir`` if given, else a work directory after ``riskcast demo`` on ``customers``
    customers, trained on first use and reused by later runs under the same feature registry."""
    if workdir:
        return Path(workdir).resolve()
    from riskcast.features.registry import default_registry

    home = Path(tempfile.gettempdir()) / f"riskcast-serving-bench-{customers}-{default_registry().version}"
    if not (home / "scored_book.parquet").exists():
        print(f"training a work directory on {customers:,} customers into {home} ...", flush=True)
        subprocess.run([sys.executable, "-m", "riskcast.cli", "--quiet", "demo", "--customers", str(customers),
                        "--workdir", str(home)], check=True, stdout=subprocess.DEVNULL)
    return home


def peak_gb() -> float:
    """Peak resident memory of this process, in GB. ``VmHWM`` belongs to this program alone,
    where ``ru_maxrss`` also carries the memory of the parent that started it."""
    import resource

    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def step_arguments(parser: argparse.ArgumentParser, *names: str) -> None:
    """The hidden options ``run_step`` starts a script's step with: ``--step`` and ``names``."""
    for name in ("--step", *names):
        parser.add_argument(name, help=argparse.SUPPRESS)


def run_step(script: str, name: str, *args: str) -> dict:
    """``script --step name args...`` in a fresh Python process (a step's figures are its own:
    nothing imported or allocated before it counts), its result the JSON of its last line."""
    done = subprocess.run([sys.executable, script, "--step", name, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
