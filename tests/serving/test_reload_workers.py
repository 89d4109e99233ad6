"""One model version for every worker of the service: a reload reaches one worker, the others
follow ``served.json``; two workers fetching the same version never break each other's copy.

The last test starts the real service (``riskcast serve``, two worker processes) and tells its
workers apart by the process holding the server side of each connection."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from riskcast.serving.core import Order


@pytest.fixture
def two_versions(workdir_copy):
    """A work directory whose local cache also holds a version "2" (version 1's bundle under
    another number: the registry need not know it, followers read the local copy)."""
    home = workdir_copy / "serving" / "models" / "riskcast-pd"
    shutil.copytree(home / "1" / "bundle", home / "2" / "bundle")
    return workdir_copy


def _worker(home: Path, swaps: list | None = None):
    """What one worker of the service holds (``serve_core``), without BentoML."""
    from riskcast.serving.runtime import serve_core

    return serve_core(home, on_swap=(swaps.append if swaps is not None else None))


def _customer(home: Path) -> str:
    return str(pd.read_parquet(home / "scored_book.parquet")["customer_id"].iloc[0])


# -- followers -------------------------------------------------------------------------------

def test_a_version_published_by_one_worker_is_what_the_other_decides_with_on_its_next_call(two_versions):
    swaps: list = []
    a, b = _worker(two_versions), _worker(two_versions, swaps)
    customer = _customer(two_versions)
    assert a.current().model.version == b.current().model.version == "1"
    assert json.loads(a.pointer.path.read_text())["version"] == "1"  # announced at start, once
    before = b.current()

    with a.pointer.locked():
        a.pointer.write("riskcast-pd", "2", by="reload")  # what a reload in worker a writes
    assert b.core is before  # nothing happens between calls
    decided = b.current().score_order(Order(customer, 1000.0))
    assert decided["model"]["version"] == "2"
    assert len(swaps) == 1 and swaps[0] is b.core and b.core is not before
    assert before.model.version == "1"  # a call that took the old core finishes on it
    assert b.status() == {"version": "2", "in_sync": True, "error": None}
    assert b.current() is b.core  # no change: no second load
    assert len(swaps) == 1


def test_a_version_a_worker_cannot_load_leaves_it_on_what_it_had_and_readyz_says_so(two_versions):
    b = _worker(two_versions)
    b.retry_s = 0.2
    customer = _customer(two_versions)
    with b.pointer.locked():
        b.pointer.write("riskcast-pd", "7", by="reload")  # neither cached nor in the registry
    assert b.current().score_order(Order(customer, 1000.0))["model"]["version"] == "1"
    status = b.status()
    assert status["version"] == "7" and status["in_sync"] is False
    assert "version 7" in status["error"] and "still deciding with version 1" in status["error"]
    # once the version can be had, the next call after the retry delay takes it
    home = two_versions / "serving" / "models" / "riskcast-pd"
    shutil.copytree(home / "1" / "bundle", home / "7" / "bundle")
    assert b.current().model.version == "1"  # not before the delay
    time.sleep(0.25)
    assert b.current().model.version == "7" and b.status()["in_sync"] is True


def test_a_worker_starting_after_a_publish_it_did_not_see_follows_it_rather_than_undo_it(two_versions):
    from riskcast.serving.runtime import ServedCore, ServedPointer, build_core, served_path

    from riskcast.config import WorkPaths, load_config

    paths = WorkPaths(root=two_versions)
    cfg = load_config(paths.config)
    pointer = ServedPointer(served_path(cfg, paths))
    baseline = pointer.key()  # taken before this worker resolved the champion (version 1)
    core = build_core(two_versions)
    with pointer.locked():
        pointer.write("riskcast-pd", "2", by="reload")  # another worker's reload meanwhile
    late = ServedCore(core, paths, pointer, seen=baseline)
    late.announce(baseline)
    assert pointer.version() == "2"  # not overwritten with the 1 it resolved
    assert late.current().model.version == "2"


def test_reloading_the_version_already_served_loads_nothing_and_publishes_it_again(two_versions):
    a = _worker(two_versions)
    held = a.current()
    key = a.pointer.key()
    model, previous = a.reload()
    assert (model.version, previous) == ("1", "1") and a.core is held
    assert a.pointer.key() != key  # republished: a worker stuck on a failure tries again


# -- the local copies --------------------------------------------------------------------------

def test_two_workers_fetching_one_version_at_once_keep_one_complete_copy(workdir_copy, tmp_path):
    from riskcast.serving.runtime import cache_version, is_complete

    source = workdir_copy / "serving" / "models" / "riskcast-pd" / "1" / "bundle"
    home = tmp_path / "models"
    (home / "5" / "bundle").mkdir(parents=True)  # a leftover of a crash: a bundle without metadata
    (home / "5" / "bundle" / "booster.txt").write_text("half")
    barrier = threading.Barrier(4)

    def fetch(name, version, into):
        into.mkdir(parents=True)
        shutil.copytree(source, into / "bundle")
        barrier.wait(10)  # all four put their copies in place at the same moment
        return into / "bundle"

    got, errors = [], []

    def worker():
        try:
            got.append(cache_version("riskcast-pd", "5", home, fetch=fetch))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and got == [home / "5"] * 4
    assert is_complete(home / "5")
    assert sorted(p.name for p in (home / "5" / "bundle").iterdir()) == sorted(p.name for p in source.iterdir())
    leftovers = [p.name for p in home.iterdir() if p.name != "5"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".5.incomplete-")  # moved aside, kept
    assert (home / leftovers[0] / "bundle" / "booster.txt").read_text() == "half"

    # a complete copy someone may be reading is never replaced
    inode = os.stat(home / "5" / "bundle" / "metadata.json").st_ino
    assert cache_version("riskcast-pd", "5", home, fetch=lambda *a: pytest.fail("fetched again")) == home / "5"
    assert os.stat(home / "5" / "bundle" / "metadata.json").st_ino == inode


def test_a_version_the_registry_cannot_give_is_refused_with_the_reason_and_leaves_nothing(tmp_path):
    from riskcast.serving.runtime import cache_version

    def fetch(name, version, into):
        raise OSError("artifact store unreachable")

    with pytest.raises(OSError, match="unreachable"):
        cache_version("riskcast-pd", "9", tmp_path / "models", fetch=fetch)
    assert list((tmp_path / "models").iterdir()) == []  # no staging folder left behind


def test_two_processes_compiling_one_models_trees_at_once_both_load_them(workdir_copy, tmp_path):
    """The compiled-trees cache beside a version: each compiler writes into a folder of its own
    and renames the library into place, so neither loads half a file."""
    script = (
        "import sys\n"
        "from riskcast.training.bundle import ModelBundle\n"
        "b = ModelBundle.load(sys.argv[1])\n"
        "from pathlib import Path\n"
        "b.compile_dir = Path(sys.argv[2])\n"
        "c = b.attribution.compiled()\n"
        "assert c is not None, b.attribution.compiled_error\n"
        "print(c.library.name)\n")
    bundle = workdir_copy / "serving" / "models" / "riskcast-pd" / "1" / "bundle"
    target = tmp_path / "compiled"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(bundle), str(target)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    if any("no C compiler" in err for _, err in outs):
        pytest.skip("no C compiler on this machine")
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outs]
    assert outs[0][0] == outs[1][0] and [p.name for p in target.glob("*.so")] == [outs[0][0].strip()]
    assert [p for p in target.iterdir() if p.is_dir()] == []  # both compilers' folders are gone


# -- the real service, two workers -----------------------------------------------------------

def _serving_pid(conn: http.client.HTTPConnection, port: int, pids: list[int]) -> int | None:
    """The process holding the server side of ``conn`` (a worker accepts and keeps it)."""
    client = conn.sock.getsockname()[1]
    local, remote = f"0100007F:{port:04X}", f"0100007F:{client:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            inode = fields[9]
            break
    if inode is None:
        return None
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _call(port: int, pids: list[int], method: str, path: str, body: dict | None = None) -> tuple[int, dict, int | None]:
    """One request on a connection of its own: (status, JSON body, pid of the worker that answered)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"content-type": "application/json"} if payload else {})
        response = conn.getresponse()
        data = json.loads(response.read() or b"null")
        return response.status, data, _serving_pid(conn, port, pids)
    finally:
        conn.close()


def _orders_from_both_workers(port: int, pids: list[int], order: dict, at_least: int, tag: str,
                              timeout: float = 120.0) -> dict[int | None, list[str]]:
    """At least ``at_least`` orders, four at a time on connections of their own, and on until
    both workers have answered (the kernel hands a new connection to whichever worker is free:
    one busy compiling may take none for a while). Every order must be decided (200).
    Returns the versions that decided, by worker."""
    answers: dict[int | None, list[str]] = {}  # None: a connection no worker could be found for
    lock = threading.Lock()
    failures: list = []
    sent = 0

    def one(i: int) -> None:
        status, body, pid = _call(port, pids, "POST", "/score", {**order, "request_id": f"{tag}-{i}"})
        with lock:
            if status != 200:
                failures.append((status, body, pid))
            else:
                answers.setdefault(pid, []).append(body["model"]["version"])

    deadline = time.monotonic() + timeout
    while sent < at_least or len(set(answers) - {None}) < 2:
        assert time.monotonic() < deadline, f"only {sorted(answers)} answered of {pids} in {timeout:.0f} s"
        threads = [threading.Thread(target=one, args=(sent + k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        sent += len(threads)
        assert not failures, failures
        if sent >= at_least:
            time.sleep(0.2)
    return answers


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float = 240.0) -> None:
    from riskcast.serving.procs import wait_ready

    if not wait_ready(proc, port, timeout):
        why = f"exit {proc.returncode}" if proc.poll() is not None else f"not ready within {timeout:.0f} s"
        pytest.skip(f"the service could not start ({why}): {log.read_text()[-1500:]}")


def _train_second_version(home: Path) -> str:
    from mlflow.tracking import MlflowClient

    from riskcast.config import load_config
    from riskcast.data.io import read_tables
    from riskcast.training import tracking
    from riskcast.training.pipeline import train_on_book

    cfg = load_config(home / "riskcast.toml")
    lgb = cfg.training.lightgbm.model_copy(update={"n_estimators": 50})
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"lightgbm": lgb})})
    tracking.configure(home)
    version = str(train_on_book(read_tables(home / "book"), cfg, home).run.version)
    assert version != "1"
    MlflowClient().set_registered_model_alias(cfg.serving.model_name, "champion", "1")  # served first
    return version


def test_after_a_reload_every_worker_of_the_running_service_answers_with_the_new_version(workdir_copy, tmp_path):
    from mlflow.tracking import MlflowClient

    from riskcast.serving.procs import processes_serving, start_serving, stop_serving

    if not Path("/proc/net/tcp").exists():
        pytest.skip("telling the workers apart needs /proc (Linux)")
    home = workdir_copy
    new = _train_second_version(home)
    customer = _customer(home)
    log = tmp_path / "serve.log"
    proc, port = start_serving(home, log)
    try:
        _wait_ready(proc, port, log)
        pids = [p for p in processes_serving(home) if p != proc.pid]
        order = {"customer_id": customer, "order_amount": 1000.0}

        before = _orders_from_both_workers(port, pids, order, at_least=4, tag="before")
        assert {v for vs in before.values() for v in vs} == {"1"}, before

        MlflowClient().set_registered_model_alias("riskcast-pd", "champion", new)
        status, body, _ = _call(port, pids, "POST", "/admin/reload")
        assert status == 200, body
        assert body["version"] == new and body["previous_version"] == "1"

        after = _orders_from_both_workers(port, pids, order, at_least=50, tag="after")
        assert {v for vs in after.values() for v in vs} == {new}, f"answers by worker: {after}"
        for _ in range(6):  # whichever worker answers, /readyz names the new version
            status, body, _ = _call(port, pids, "GET", "/readyz")
            assert status == 200 and body["model"]["version"] == new and body["served"]["in_sync"] is True, body
    finally:
        stop_serving(home, proc)
