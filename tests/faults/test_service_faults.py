"""Fault injection against the running service (``riskcast serve``, two worker processes).

Each fault of the service's own files, stores and disk is injected under a live service and
undone again; for each the suite asserts an answer within the request time-out, the documented
status, who answered (model or scorecard), that every 200 is on record and nothing else is,
and that the service recovers without a restart. The last test scans every answer, audit row
and log line the suite produced for a file path or a traceback.

Marked ``faults``: ``pytest -m faults`` runs these alone.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest

pytestmark = pytest.mark.faults

MODEL = "riskcast-pd"
#: the service's request time-out (serving/service.py)
REQUEST_TIMEOUT_S = 10.0
#: a client waits this long at most: an answer later than the service's own time-out is a fault
CLIENT_WAIT_S = REQUEST_TIMEOUT_S + 2.0


@dataclass
class Answer:
    status: int
    body: Any
    text: str
    request_id: str | None = None


@dataclass
class Service:
    """One running service of a work directory, and everything it answered."""

    home: Path
    log: Path
    proc: subprocess.Popen | None = None
    port: int = 0
    #: request_id -> status of every order sent
    sent: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    def start(self, timeout: float = 240.0) -> "Service":
        from riskcast.serving.procs import start_serving

        self.proc, self.port = start_serving(self.home, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:  # the socket listens before the workers answer: a start-up is waited for
                if self.call("GET", "/livez", record=False).status == 200:
                    return self
            except (OSError, AssertionError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"the service did not answer /livez within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        from riskcast.serving.procs import stop_serving

        stop_serving(self.home, self.proc)

    def call(self, method: str, path: str, body: Any = None, record: bool = True) -> Answer:
        """One request on a connection of its own; its answer must come within the time-out."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_WAIT_S)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"content-type": "application/json"} if payload else {})
            response = conn.getresponse()
            raw = response.read().decode("utf-8", "replace")
        except socket.timeout:
            raise AssertionError(f"{method} {path}: no answer within {CLIENT_WAIT_S:.0f} s") from None
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if record:
            self.texts.append(raw)
        return Answer(response.status, parsed, raw)

    def order(self, customer: str, amount: float = 1000.0, features: dict | None = None, tag: str = "o") -> Answer:
        rid = f"{tag}-{uuid.uuid4().hex[:12]}"
        body = {"customer_id": customer, "order_amount": amount, "request_id": rid}
        if features is not None:
            body["features"] = features
        got = self.call("POST", "/score", body)
        got.request_id = rid
        self.sent[rid] = got.status
        return got

    def batch(self, customers: list[str], tag: str = "b") -> tuple[Answer, list[str]]:
        rids = [f"{tag}-{uuid.uuid4().hex[:12]}" for _ in customers]
        got = self.call("POST", "/score_batch", {"requests": [
            {"customer_id": c, "order_amount": 500.0, "request_id": r} for c, r in zip(customers, rids)]})
        for r in rids:
            self.sent[r] = got.status
        return got, rids

    def ready(self) -> Answer:
        return self.call("GET", "/readyz")

    def recorded(self, request_ids: list[str] | None = None) -> set[str]:
        """The request ids on record in the audit log (read on a connection of its own)."""
        con = sqlite3.connect(f"file:{self.home / 'audit.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            ids = {r[0] for r in con.execute("SELECT request_id FROM decisions")}
        finally:
            con.close()
        return ids if request_ids is None else ids & set(request_ids)

    def assert_record_matches_answers(self) -> None:
        """Every 200 on record, nothing else: the whole promise of order entry."""
        on_record = self.recorded(list(self.sent))
        answered = {r for r, s in self.sent.items() if s == 200}
        assert answered - on_record == set(), f"answered without a record: {sorted(answered - on_record)[:5]}"
        assert on_record - answered == set(), f"on record but not answered: {sorted(on_record - answered)[:5]}"


def _book_customers(home: Path, n: int = 20) -> list[str]:
    return [str(c) for c in pd.read_parquet(home / "scored_book.parquet")["customer_id"].iloc[:n]]


#: a new customer's facts, full enough for the model (a few statements and payment figures)
NEW_CUSTOMER = {"relationship_months": 30.0, "invoices_12m": 12.0, "revenue": 2_000_000.0,
                "operating_cash_flow": 150_000.0}


def _bundle(home: Path, version: str = "1") -> Path:
    return home / "serving" / "models" / MODEL / version / "bundle"


def _truncate(path: Path, by: int = 101) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-by])


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(max(path.stat().st_size, 4096)))


DAMAGE = {"truncated": _truncate, "random": _random, "missing": lambda p: p.unlink()}

#: every record the suite's services produced, for the last test's scan
_SCANNED: list[Service] = []


@pytest.fixture(scope="module")
def home(demo_workdir, tmp_path_factory) -> Path:
    """The demo's work directory, copied: the faults below damage it."""
    return Path(shutil.copytree(demo_workdir, tmp_path_factory.mktemp("faults") / "work"))


@pytest.fixture(scope="module")
def service(home, tmp_path_factory):
    svc = Service(home, tmp_path_factory.mktemp("faults-log") / "serve.log").start()
    _SCANNED.append(svc)
    try:
        _wait_ready(svc)
        yield svc
    finally:
        svc.stop()


def _wait_ready(svc: Service, timeout: float = 120.0) -> Answer:
    deadline = time.monotonic() + timeout
    while True:
        got = svc.ready()
        if got.status == 200 or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def _until(check, timeout: float = 30.0, every: float = 0.3):
    """``check()`` until it returns something true, within ``timeout``; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


# -- the order-entry store -------------------------------------------------------------------

def test_a_store_gone_while_serving_is_a_503_for_everyone_and_is_picked_up_again_when_back(service, home):
    customer = _book_customers(home)[0]
    assert service.order(customer).status == 200
    aside = home / "features.sqlite.aside"
    os.rename(home / "features.sqlite", aside)
    try:
        for _ in range(4):  # both workers
            got = service.order(customer, tag="store-gone")
            assert got.status == 503 and "store" in got.body["error"], got.text
            new = service.order("NEW-STORE-GONE", features=NEW_CUSTOMER, tag="store-gone-new")
            assert new.status == 503, new.text  # whether it is in the book cannot be told
        ready = service.ready()
        assert ready.status == 503 and ready.body["store"]["available"] is False, ready.text
    finally:
        os.rename(aside, home / "features.sqlite")
    assert _until(lambda: all(service.order(customer, tag="store-back").status == 200 for _ in range(4)))
    assert service.ready().status == 200
    service.assert_record_matches_answers()


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_a_store_damaged_while_serving_is_a_503_and_decided_again_once_restored(service, home, damage):
    customer = _book_customers(home)[1]
    store = home / "features.sqlite"
    good = store.read_bytes()
    broken = home / "features.sqlite.broken"
    broken.write_bytes(good)
    DAMAGE[damage](broken)
    os.replace(broken, store)  # as a rescore replaces the store: a rename
    try:
        for _ in range(4):
            got = service.order(customer, tag=f"store-{damage}")
            assert got.status == 503 and "store" in got.body["error"], got.text
        assert service.ready().status == 503
    finally:
        fixed = home / "features.sqlite.fixed"
        fixed.write_bytes(good)
        os.replace(fixed, store)
    assert _until(lambda: all(service.order(customer, tag="store-fixed").status == 200 for _ in range(4)))
    service.assert_record_matches_answers()


# -- the audit log ---------------------------------------------------------------------------

def test_a_locked_audit_log_refuses_orders_within_its_budget_and_health_keeps_answering(service, home, hold_writer):
    customers = _book_customers(home)
    lock = hold_writer(home / "audit.sqlite")
    try:
        refused, probes = [], []

        def orders() -> None:
            for c in customers[:6]:
                refused.append(service.order(c, tag="audit-locked"))

        t = threading.Thread(target=orders)
        t.start()
        while t.is_alive():  # health on the same workers while they wait for the lock
            probes.append(service.call("GET", "/livez", record=False).status)
            time.sleep(0.05)
        t.join()
        batch, rids = service.batch(customers[6:9], tag="audit-locked-batch")
        ready = service.ready()
    finally:
        lock.release()
    assert [a.status for a in refused] == [503] * 6, [a.text for a in refused]
    assert all("record" in a.body["error"] for a in refused), refused[0].text
    assert probes and set(probes) == {200}
    assert batch.status == 503, batch.text
    assert ready.status == 503 and ready.body["audit"]["available"] is False, ready.text
    assert service.recorded([a.request_id for a in refused] + rids) == set()
    assert all(service.order(c, tag="audit-released").status == 200 for c in customers[:4])
    service.assert_record_matches_answers()


def _immutable(paths: list[Path], on: bool) -> None:
    """The filesystem refuses writes to these files, even through open descriptors (root too)."""
    for p in paths:
        if p.exists():
            subprocess.run(["chattr", "+i" if on else "-i", str(p)], check=True, capture_output=True)


def test_an_audit_log_read_only_for_a_while_recovers_in_every_worker(service, home):
    if shutil.which("chattr") is None:
        pytest.skip("chattr is needed to make a file read-only for root")
    customers = _book_customers(home)
    files = [home / "audit.sqlite", home / "audit.sqlite-wal", home / "audit.sqlite-shm"]
    probe = home / "chattr-probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        probe.unlink()
        pytest.skip("this filesystem does not take the immutable attribute")
    _immutable([probe], False)
    probe.unlink()
    _immutable(files, True)
    try:
        refused = [service.order(customers[i % len(customers)], tag="audit-ro") for i in range(10)]
    finally:
        _immutable(files, False)
    assert {a.status for a in refused} == {503}, [a.text for a in refused]
    # every worker and every thread of it writes again: none keeps a broken connection
    after = [service.order(customers[i % len(customers)], tag="audit-rw") for i in range(40)]
    assert [a.status for a in after] == [200] * 40, [a.text for a in after if a.status != 200][:3]
    service.assert_record_matches_answers()


# -- the model bundle under reload -----------------------------------------------------------

def _register_damaged_version(home: Path, part: str, damage: str, into: Path) -> str:
    """A new version of the model in the registry whose ``part`` is damaged there (and so in
    every copy made of it): what a reload would pick up after a bad promotion."""
    import mlflow

    with _registry(home) as client:
        src = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL}/1", dst_path=str(into)))
        DAMAGE[damage](src / "artifacts" / "bundle" / part)
        v1 = client.get_model_version(MODEL, "1")
        version = client.create_model_version(MODEL, source=str(src), run_id=v1.run_id).version
        client.set_registered_model_alias(MODEL, "champion", str(version))
    return str(version)


@contextmanager
def _registry(home: Path) -> Iterator[Any]:
    """A client of the work directory's registry; MLflow's settings in this process as they were after."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from riskcast.training import tracking

    keys = ("MLFLOW_TRACKING_URI", "RISKCAST_EMBEDDED_TRACKING_URI")
    saved = {k: os.environ.get(k) for k in keys}
    uris = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    tracking.configure(home)
    try:
        yield MlflowClient()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        mlflow.set_tracking_uri(uris[0])
        mlflow.set_registry_uri(uris[1])


@pytest.mark.parametrize("part,damage", [("booster.txt", "truncated"), ("booster.txt", "random"),
                                         ("booster.txt", "missing"), ("scorecard.joblib", "random"),
                                         ("scorecard.joblib", "truncated")])
def test_a_reload_to_a_damaged_version_is_refused_and_the_served_model_keeps_answering(
        service, home, tmp_path, part, damage):
    customer = _book_customers(home)[2]
    _register_damaged_version(home, part, damage, tmp_path)
    try:
        got = service.call("POST", "/admin/reload")
        assert got.status == 503 and "version 1" in got.body["error"], got.text
        for _ in range(6):  # both workers: still the old version, the model answering
            order = service.order(customer, tag=f"reload-{part}-{damage}")
            assert order.status == 200, order.text
            assert order.body["model"] == {"name": MODEL, "version": "1", "kind": "lightgbm"}, order.body
        assert service.ready().body["served"]["version"] == "1"
    finally:
        with _registry(home) as client:
            client.set_registered_model_alias(MODEL, "champion", "1")
    assert service.call("POST", "/admin/reload").status == 200
    service.assert_record_matches_answers()


# -- the model bundle at start-up -------------------------------------------------------------

@pytest.fixture
def cold(demo_workdir, tmp_path):
    """A work directory of its own, served once the test has put its faults in place."""
    work = Path(shutil.copytree(demo_workdir, tmp_path / "work"))
    svc = Service(work, tmp_path / "serve.log")
    _SCANNED.append(svc)
    yield svc
    svc.stop()


def _without_registry(home: Path) -> None:
    """The registry forgets the model: only the service's local copy is left."""
    os.rename(home / "mlflow.db", home / "mlflow.db.aside")


@pytest.mark.parametrize("damage", ["truncated", "random", "missing"])
def test_a_damaged_local_model_file_is_fetched_again_from_the_registry_at_start(cold, damage):
    DAMAGE[damage](_bundle(cold.home) / "booster.txt")
    cold.start()
    assert _wait_ready(cold).status == 200
    customer = _book_customers(cold.home)[0]
    for _ in range(4):
        got = cold.order(customer, tag=f"start-{damage}")
        assert got.status == 200 and got.body["model"]["kind"] == "lightgbm", got.text
    cold.assert_record_matches_answers()


def test_a_damaged_model_file_without_the_registry_leaves_the_scorecard_answering(cold):
    _truncate(_bundle(cold.home) / "booster.txt")
    _without_registry(cold.home)
    cold.start()
    ready = _wait_ready(cold)
    assert ready.status == 200, ready.text  # the scorecard can decide and the log can record
    customer = _book_customers(cold.home)[0]
    for _ in range(4):
        got = cold.order(customer, tag="start-card")
        assert got.status == 200, got.text
        assert got.body["model"]["kind"] == "scorecard" and got.body["fallback"] is True
        assert "damaged" in got.body["fallback_reason"], got.body["fallback_reason"]
    cold.assert_record_matches_answers()


def test_a_damaged_scorecard_without_the_registry_leaves_the_model_answering(cold):
    _random(_bundle(cold.home) / "scorecard.joblib")
    _without_registry(cold.home)
    cold.start()
    assert _wait_ready(cold).status == 200
    customer = _book_customers(cold.home)[0]
    for _ in range(4):
        got = cold.order(customer, tag="start-nocard")
        assert got.status == 200 and got.body["model"]["kind"] == "lightgbm", got.text
    thin = cold.order("NEW-THIN", features={"relationship_months": 1.0}, tag="start-nocard-thin")
    assert thin.status == 200 and thin.body["decision"] == "refer", thin.text  # the card would have decided
    assert "scorecard" in thin.body["fallback_reason"], thin.body
    cold.assert_record_matches_answers()


def test_a_service_started_without_its_store_answers_503_and_decides_once_the_store_is_back(cold):
    store = cold.home / "features.sqlite"
    aside = cold.home / "features.sqlite.kept"
    os.rename(store, aside)
    cold.start()
    customer = _book_customers(cold.home)[0]
    ready = cold.ready()
    assert ready.status == 503 and ready.body["store"]["available"] is False, ready.text
    for _ in range(4):
        assert cold.order(customer, tag="nostore").status == 503
    os.rename(aside, store)
    assert _until(lambda: all(cold.order(customer, tag="store-found").status == 200 for _ in range(4)))
    assert _wait_ready(cold, timeout=30).status == 200
    cold.assert_record_matches_answers()


def test_a_service_started_with_a_corrupt_store_answers_503_and_does_not_restart_in_a_loop(cold):
    store = cold.home / "features.sqlite"
    good = store.read_bytes()
    _random(store)
    cold.start()
    customer = _book_customers(cold.home)[0]
    for _ in range(4):
        got = cold.order(customer, tag="corrupt-start")
        assert got.status == 503, got.text
    fixed = cold.home / "features.sqlite.fixed"
    fixed.write_bytes(good)
    os.replace(fixed, store)
    assert _until(lambda: all(cold.order(customer, tag="corrupt-fixed").status == 200 for _ in range(4)))
    assert cold.log.read_text().count("Traceback") == 0
    cold.assert_record_matches_answers()


# -- what left the service -------------------------------------------------------------------

def test_no_answer_audit_row_or_log_line_of_the_suite_holds_a_path_or_a_traceback(service):
    assert _SCANNED, "the scan needs the suite's services"
    problems = []
    for svc in _SCANNED:
        needles = (str(svc.home), str(svc.home.parent), "Traceback", "site-packages", "/tmp/")
        texts = {"answer": svc.texts, "log": svc.log.read_text(errors="replace").splitlines()}
        db = svc.home / "audit.sqlite"
        if db.exists():
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                texts["audit"] = [" ".join(str(v) for v in row) for row in con.execute(
                    "SELECT decision_reason, fallback_reason, answer, environment FROM decisions")]
            finally:
                con.close()
        for kind, lines in texts.items():
            for line in lines:
                hit = next((n for n in needles if n and n in line), None)
                if hit is not None:
                    problems.append(f"{kind}: {line[:300]}")
    assert not problems, "\n".join(problems[:10])
