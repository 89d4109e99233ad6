"""On record: every decision in the audit log, committed before the answer; none lost on a kill."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from riskcast.errors import AuditUnavailableError
from riskcast.serving.audit import AuditLog, sqlite_url
from riskcast.serving.core import Order, ScoringCore
from riskcast.serving.procs import kill_serving, processes_serving


@pytest.fixture(scope="module")
def customers(demo_workdir):
    return [str(c) for c in pd.read_parquet(demo_workdir / "scored_book.parquet")["customer_id"].head(40)]


def test_every_decision_is_recorded_with_its_reasons(core, customers, tmp_path):
    log = AuditLog(sqlite_url(tmp_path / "audit.sqlite"))
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    orders = [Order(c, 1000.0 + i, request_id=f"req-{i}") for i, c in enumerate(customers[:5])]
    answers = served.score_orders(orders[:2]) + [served.score_order(o) for o in orders[2:]]
    rows = log.read()
    assert list(rows["request_id"]) == [f"req-{i}" for i in range(5)]
    for (_, row), d, o in zip(rows.iterrows(), answers, orders):
        assert row["customer_id"] == o.customer_id and row["order_amount"] == o.order_amount
        assert row["decision"] == d["decision"] and row["pd_12m"] == d["pd_12m"] and row["grade"] == d["grade"]
        assert row["model_version"] == core.model.version and bool(row["fallback"]) is False
        assert json.loads(row["reasons"]) == [{"feature": r["feature"], "text": r["text"]} for r in d["reasons"]]
    # the accounts the decision used are in its inputs, not spread over columns of their own
    assert not {"revenue", "operating_cash_flow", "open_receivables"} & set(rows.columns)
    assert {"revenue", "operating_cash_flow", "open_receivables"} <= set(json.loads(rows["inputs"].iloc[0]))
    with sa.create_engine(sqlite_url(tmp_path / "audit.sqlite")).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_decision_that_cannot_be_recorded_is_not_given(core, customers, tmp_path):
    log = AuditLog(sqlite_url(tmp_path / "audit.sqlite"))
    with log.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE decisions")
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    with pytest.raises(AuditUnavailableError) as e:
        served.score_order(Order(customers[0], 1000.0))
    assert e.value.http_status == 503 and "retry" in str(e.value)


def test_threads_deciding_at_once_each_record_every_decision(core, customers, tmp_path):
    """Each thread keeps its own connection open: twenty threads deciding at once are all on
    record, and after a failed write (its connection closed) the next decision is too."""
    log = AuditLog(sqlite_url(tmp_path / "audit.sqlite"))
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    errors = []

    def decide(k: int) -> None:
        try:
            for i in range(25):
                served.score_order(Order(customers[(k + i) % len(customers)], 500.0, request_id=f"t{k}-{i}"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(k,)) for k in range(20)]  # more than a default pool
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert sorted(log.read()["request_id"]) == sorted(f"t{k}-{i}" for k in range(20) for i in range(25))
    with log.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE decisions RENAME TO decisions_away")
    with pytest.raises(AuditUnavailableError):
        served.score_order(Order(customers[0], 500.0, request_id="lost"))
    with log.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE decisions_away RENAME TO decisions")
    served.score_order(Order(customers[0], 500.0, request_id="after"))
    assert log.read()["request_id"].iloc[-1] == "after" and "lost" not in set(log.read()["request_id"])
    log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict, timeout: float = 5.0) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/score", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def test_the_write_ahead_log_is_moved_into_the_database_by_the_logs_thread_not_by_a_decision(
        core, customers, tmp_path):
    import sqlite3

    from riskcast.serving import audit

    path = tmp_path / "audit.sqlite"
    log = AuditLog(sqlite_url(path))
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    for i, c in enumerate(customers[:30]):
        served.score_order(Order(c, 500.0 + i, request_id=f"wal-{i}"))
    # a deciding connection leaves the checkpoint to the thread until the log is this long
    with log.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == audit.WAL_LIMIT_PAGES

    def in_database_file() -> int:  # immutable: the database file alone, without the log
        with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]

    deadline = time.monotonic() + 20 * audit.CHECKPOINT_EVERY_S
    while in_database_file() < 30 and time.monotonic() < deadline:
        time.sleep(audit.CHECKPOINT_EVERY_S / 5)
    assert in_database_file() == 30
    assert len(log.read()) == 30
    log.close()


def test_killing_the_server_loses_no_answered_decision(demo_workdir, customers, tmp_path):
    home = tmp_path / "work"
    shutil.copytree(demo_workdir, home, ignore=shutil.ignore_patterns("audit.sqlite*"))
    port = _free_port()
    env = dict(os.environ, RISKCAST_HOME=str(home))
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen([sys.executable, "-m", "riskcast.cli", "--quiet", "serve", "--workdir", str(home),
                               "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                _post(port, {"customer_id": customers[0], "order_amount": 1.0, "request_id": f"warm-up-{uuid.uuid4().hex[:8]}"}, timeout=2)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the service did not start"
                time.sleep(0.3)
        answered: list[str] = []
        stop = threading.Event()

        def client(k: int) -> None:
            i = 0
            while not stop.is_set():
                rid = f"c{k}-{i}-{uuid.uuid4().hex[:6]}"
                try:
                    d = _post(port, {"customer_id": customers[(k * 7 + i) % len(customers)], "order_amount": 500.0 + i,
                                     "request_id": rid})
                    answered.append(d["request_id"])
                except (OSError, http.client.HTTPException, ValueError):
                    pass  # the server died mid-request (refused, reset, cut short): not answered
                i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        kill_serving(home)   # the server and its workers (in sessions of their own), no chance to flush
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        kill_serving(home)
        server.wait(timeout=30)
    assert not processes_serving(home) or (time.sleep(1) or not processes_serving(home))
    assert len(answered) > 50
    rows = AuditLog(sqlite_url(home / "audit.sqlite")).read()
    counts = rows["request_id"].value_counts()
    missing = [rid for rid in answered if rid not in counts.index]
    assert not missing, f"{len(missing)} answered decisions not on record, e.g. {missing[:3]}"
    assert (counts[answered] == 1).all()
