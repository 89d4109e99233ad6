"""Nothing decided off the record: the book's values are not replaced unless configured, every
row holds what its decision used and replays to the same answer, a retried request_id is
answered from the log once and for all, an old log is upgraded in place, and a batch decides
each order on its own."""

import json
import math
import os
import subprocess
import sys
import threading
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from riskcast.config import RiskcastConfig
from riskcast.errors import ConfigError, OverrideRefusedError, RequestConflictError
from riskcast.serving.audit import SCHEMA_VERSION, AuditLog, sqlite_url
from riskcast.serving.core import CONTEXT_DEFAULTS, Order, ScoringCore


@pytest.fixture(scope="module")
def book(demo_workdir):
    return pd.read_parquet(demo_workdir / "scored_book.parquet")


def _cfg(core, **serving):
    return core.cfg.model_copy(update={"serving": core.cfg.serving.model_copy(update=serving)})


def _overdue_customer(core, book):
    """A customer the book declines for an invoice overdue beyond the policy's limit."""
    limit = core.cfg.policy.decline_overdue_days
    for cid in book["customer_id"].astype(str):
        row = core.store.get(cid)
        if row and row.get("max_days_overdue_open", 0) > limit:
            return cid, row
    pytest.skip("the demo book has no customer overdue beyond the decline limit")


# -- overrides ------------------------------------------------------------------------------

def test_a_request_cannot_replace_the_books_overdue_days_or_receivables(core, book, tmp_path):
    cid, row = _overdue_customer(core, book)
    log = AuditLog(sqlite_url(tmp_path / "audit.sqlite"))
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    assert served.score_order(Order(cid, 1000.0))["decision"] == "decline"
    for name, value in (("max_days_overdue_open", 0.0), ("open_receivables", 0.0)):
        if row[name] == value:
            continue
        with pytest.raises(OverrideRefusedError) as e:
            served.score_order(Order(cid, 1000.0, features={name: value}, request_id=f"try-{name}"))
        assert e.value.http_status == 422 and e.value.field == f"features.{name}"
        assert repr(row[name]) in str(e.value) and "serving.allow_overrides" in str(e.value)
    # the value the book holds is no replacement; nothing refused is on record
    same = served.score_order(Order(cid, 1000.0, features={"max_days_overdue_open": row["max_days_overdue_open"]}))
    assert same["decision"] == "decline"
    rows = log.read()
    assert not rows["request_id"].str.startswith("try-").any() and len(rows) == 2
    assert json.loads(rows["supplied"].iloc[1]) == ["max_days_overdue_open"] and rows["overridden"].iloc[1] is None
    log.close()


def test_a_configured_override_is_decided_and_recorded_as_one(core, book, tmp_path):
    cid, row = _overdue_customer(core, book)
    log = AuditLog(sqlite_url(tmp_path / "audit.sqlite"))
    served = ScoringCore(_cfg(core, allow_overrides=("max_days_overdue_open",)), core.model, core.store, audit=log)
    d = served.score_order(Order(cid, 1000.0, features={"max_days_overdue_open": 0.0}, request_id="ovr-1"))
    assert "overdue" not in d["decision_reason"]
    rec = log.records(["ovr-1"])[0]
    assert json.loads(rec["overridden"]) == {"max_days_overdue_open": row["max_days_overdue_open"]}
    assert json.loads(rec["inputs"])["max_days_overdue_open"] == 0.0 and rec["in_book"]
    # a value not listed stays the book's
    with pytest.raises(OverrideRefusedError):
        served.score_order(Order(cid, 1000.0, features={"open_receivables": row["open_receivables"] + 1}))
    log.close()


def test_a_book_customer_may_supply_what_the_book_lacks(core, book):
    lacking = book[book["current_ratio"].isna()]
    if lacking.empty:
        pytest.skip("every customer of the demo book has statements")
    cid = str(lacking["customer_id"].iloc[0])
    d = core.score_order(Order(cid, 1000.0, features={"current_ratio": 1.4}))
    assert d["customer_id"] == cid


def test_allow_overrides_names_are_checked_against_the_registry(core):
    with pytest.raises(ConfigError) as e:
        ScoringCore(_cfg(core, allow_overrides=("max_days_overdue", "roa")), core.model, core.store)
    assert e.value.field == "serving.allow_overrides" and "max_days_overdue" in str(e.value)
    with pytest.raises(ValueError):
        RiskcastConfig.model_validate({"serving": {"allow_overrides": ["roa", "roa"]}})


# -- idempotent retries ---------------------------------------------------------------------

def _retry_from_threads(core, book, url: str) -> None:
    log = AuditLog(url)
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    cid = str(book["customer_id"].iloc[3])
    rid = f"retry-{uuid.uuid4().hex[:12]}"
    order = Order(cid, 4321.5, 45, {"dbt_mean_3m": float(core.store.get(cid)["dbt_mean_3m"])}, rid)
    answers, errors = [], []
    start = threading.Barrier(8)

    def send() -> None:
        try:
            start.wait()
            answers.append(served.score_order(order))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(answers) == 8 and all(a == answers[0] for a in answers)
    assert served.score_order(order) == answers[0]  # and later, one more retry
    with log.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(log.table).where(log.table.c.request_id == rid)).scalar()
    assert n == 1
    # the same id for another order is refused, naming request_id; the key order of features is no difference
    for other in (Order(cid, 4321.0, 45, order.features, rid), Order(str(book["customer_id"].iloc[4]), 4321.5, 45,
                                                                      None, rid),
                  Order(cid, 4321.5, 30, order.features, rid), Order(cid, 4321.5, 45, None, rid)):
        with pytest.raises(RequestConflictError) as e:
            served.score_order(other)
        assert e.value.http_status == 409 and e.value.field == "request_id" and rid in str(e.value)
    log.close()


def test_one_request_id_retried_from_8_threads_is_one_row_and_one_answer_sqlite(core, book, tmp_path):
    _retry_from_threads(core, book, sqlite_url(tmp_path / "audit.sqlite"))


def test_one_request_id_retried_from_8_threads_is_one_row_and_one_answer_postgresql(core, book, pg_url):
    _retry_from_threads(core, book, pg_url)


def test_a_batch_on_postgresql_records_each_order_once(core, book, pg_url):
    log = AuditLog(pg_url)
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    ids = book["customer_id"].astype(str).tolist()[:5]
    first = served.score_orders([Order(c, 100.0, request_id=f"pg-{i}") for i, c in enumerate(ids)])
    again = served.score_orders([Order(c, 100.0, request_id=f"pg-{i}") for i, c in enumerate(ids)]
                                + [Order(ids[0], 7.0, request_id="pg-new")])
    assert again[:5] == first and len(log.read()) == 6
    log.close()


# -- the record and its replay --------------------------------------------------------------

def test_a_row_holds_every_feature_and_fact_exactly_and_the_configuration_once(core, book, tmp_path):
    log = AuditLog(sqlite_url(tmp_path / "audit.sqlite"))
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    cid = str(book["customer_id"].iloc[7])
    served.score_order(Order(cid, 2500.0, request_id="exact-1"))
    served.score_order(Order("NEW-9", 2500.0, features={"relationship_months": 0.0, "revenue": 1.1e6},
                             request_id="exact-2"))
    rec, new = log.records(["exact-1", "exact-2"])
    inputs = json.loads(rec["inputs"])
    assert list(inputs) == [*core.registry.names, *CONTEXT_DEFAULTS]
    held = core.store.get(cid)
    for name, value in inputs.items():
        book_value = held.get(name, CONTEXT_DEFAULTS.get(name))
        if book_value is None or (isinstance(book_value, float) and math.isnan(book_value)):
            assert value is None, name
        else:
            assert value == book_value, name  # bit for bit: the shortest text that reads back the same
    assert rec["store_as_of"] == held.get("as_of") and rec["in_book"] and rec["model_version"] == core.model.version
    assert json.loads(rec["answer"])["request_id"] == "exact-1"
    assert not new["in_book"] and json.loads(new["supplied"]) == ["relationship_months", "revenue"]
    assert RiskcastConfig.model_validate_json(log.configuration(rec["config_fingerprint"])) == core.cfg
    with log.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(log.configs)).scalar() == 1
    log.close()


def test_riskcast_replay_reproduces_1000_recorded_decisions_after_a_restart(workdir_copy):
    from riskcast.serving.runtime import build_core
    from riskcast.serving.switch import FallbackSwitch

    home = workdir_copy
    for old in home.glob("audit.sqlite*"):  # the copy's log holds what other tests decided
        old.unlink()
    core = build_core(home, audit=True)
    ids = pd.read_parquet(home / "scored_book.parquet", columns=["customer_id"])["customer_id"].astype(str).tolist()
    n = 0
    for i in range(700):  # one at a time, as order entry sends them
        core.score_order(Order(ids[(i * 13) % len(ids)], 250.0 * (1 + i % 40) + i / 7, [None, 30, 60, 90][i % 4],
                               request_id=f"one-{i}"))
        n += 1
    for k in range(10):  # batches, new customers among them (some thin: the scorecard)
        orders = [Order(ids[(k * 31 + j) % len(ids)], 1000.0 + j, request_id=f"batch-{k}-{j}") for j in range(15)]
        orders += [Order(f"NEW-{k}-{j}", 5000.0, 30, {"relationship_months": 0.0, "revenue": 2e6 + j,
                                                     "current_ratio": 1.2 + j / 10}, f"new-{k}-{j}") for j in range(5)]
        n += len(core.score_orders(orders))
    # fallback mode and a time budget no model meets: what the environment imposed is replayed
    switch = FallbackSwitch(home / "serving" / "fallback.json")
    switch.set("severe monitoring alert: test", by="test")
    for i in range(50):
        core.score_order(Order(ids[i], 800.0, request_id=f"mode-{i}"))
        n += 1
    switch.clear("test over", by="test")
    hurried = ScoringCore(_cfg(core, model_budget_ms=1e-6), core.model, core.store, audit=core.audit)
    for i in range(50):
        d = hurried.score_order(Order(ids[i + 50], 900.0, request_id=f"budget-{i}"))
        n += 1
    assert d["fallback"] and "budget" in d["fallback_reason"]
    core.audit.close()
    assert n == 1000
    # a restart: a new process builds its core and log from the work directory
    env = {k: v for k, v in os.environ.items() if k not in ("RISKCAST_AUDIT_URL", "MLFLOW_TRACKING_URI")}
    run = subprocess.run([sys.executable, "-m", "riskcast.cli", "--quiet", "replay", "--all", "--workdir", str(home)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1,000 decision(s) replayed: 1,000 identical, 0 different, 0 not replayable" in run.stdout
    # a record that does not hold what was answered is found, field by field
    log = AuditLog(sqlite_url(home / "audit.sqlite"))
    rec = log.records(["one-5"])[0]
    answer = json.loads(rec["answer"])
    answer["credit_limit"] += 1.0
    older = json.loads(log.records(["one-6"])[0]["answer"])  # as recorded before the desk's fields
    for added in ("limit_source", "recommended_limit", "case_id"):
        del older[added]
    with log.engine.begin() as conn:
        conn.execute(log.table.update().where(log.table.c.request_id == "one-5").values(answer=json.dumps(answer)))
        conn.execute(log.table.update().where(log.table.c.request_id == "one-6").values(answer=json.dumps(older)))
    log.close()
    from riskcast.cli import main
    from riskcast.serving.replay import replay

    [r] = replay(home, ["one-5"])
    assert r.status == "different" and [d[0] for d in r.differences] == ["credit_limit"]
    assert replay(home, ["one-6"])[0].status == "identical"
    assert main(["--quiet", "replay", "one-5", "--workdir", str(home)]) == 1
    assert main(["--quiet", "replay", "no-such-request", "--workdir", str(home)]) == 2
    assert main(["--quiet", "replay", "--last", "20", "--workdir", str(home)]) == 0


# -- migration ------------------------------------------------------------------------------

def _first_schema(url: str) -> sa.Table:
    """The log as the first version wrote it: no unique key, no inputs."""
    meta = sa.MetaData()
    table = sa.Table(
        "decisions", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("decided_at", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("order_amount", sa.Float, nullable=False),
        sa.Column("requested_terms_days", sa.Integer),
        sa.Column("model_name", sa.String(128)), sa.Column("model_version", sa.String(32)),
        sa.Column("model_kind", sa.String(16)), sa.Column("pd_12m", sa.Float), sa.Column("score", sa.Float),
        sa.Column("grade", sa.String(16)), sa.Column("band", sa.String(1)),
        sa.Column("decision", sa.String(32), nullable=False), sa.Column("decision_reason", sa.Text),
        sa.Column("conditions", sa.Text), sa.Column("credit_limit", sa.Float),
        sa.Column("recommended_terms_days", sa.Integer), sa.Column("reasons", sa.Text),
        sa.Column("fallback", sa.Boolean, nullable=False), sa.Column("fallback_reason", sa.Text),
    )
    engine = sa.create_engine(url)
    meta.create_all(engine)
    row = {"decided_at": "2025-01-01T00:00:00.000+00:00", "order_amount": 100.0, "model_name": "riskcast-pd",
           "model_version": "1", "model_kind": "lightgbm", "pd_12m": 0.01, "score": 620.0, "grade": "3", "band": "B",
           "decision": "approve", "decision_reason": "exposure within the credit limit", "conditions": "[]",
           "credit_limit": 1000.0, "recommended_terms_days": 60, "reasons": "[]", "fallback": False}
    with engine.begin() as conn:
        conn.execute(table.insert(), [{**row, "request_id": rid, "customer_id": cid}
                                      for rid, cid in [("a", "C1"), ("b", "C2"), ("a", "C1"), ("c", "C3"), ("a", "C9")]])
    engine.dispose()
    return table


@pytest.mark.parametrize("server", ["sqlite", "postgresql"])
def test_an_old_log_is_upgraded_in_place_keeping_its_rows(core, book, tmp_path, server, request):
    url = sqlite_url(tmp_path / "old.sqlite") if server == "sqlite" else request.getfixturevalue("pg_url")
    _first_schema(url)
    log = AuditLog(url)  # the upgrade
    rows = log.read()
    assert list(rows["request_id"]) == ["a", "b", "c"] and list(rows["id"]) == [1, 2, 4]
    assert rows["answer"].isna().all()
    with log.engine.connect() as conn:
        moved = conn.exec_driver_sql("SELECT id, request_id, customer_id FROM decisions_duplicates ORDER BY id").all()
        assert [tuple(r) for r in moved] == [(3, "a", "C1"), (5, "a", "C9")]
        assert conn.exec_driver_sql("SELECT version FROM audit_schema").scalar() == SCHEMA_VERSION
    # the key now holds, new decisions are recorded whole, an old id cannot be answered again
    served = ScoringCore(core.cfg, core.model, core.store, audit=log)
    served.score_order(Order(str(book["customer_id"].iloc[0]), 100.0, request_id="d"))
    with pytest.raises(RequestConflictError) as e:
        served.score_order(Order("C2", 100.0, features={"roa": 0.1}, request_id="b"))
    assert "recorded before" in str(e.value)
    with pytest.raises(sa.exc.IntegrityError), log.engine.begin() as conn:
        conn.execute(log.table.insert().values(request_id="a", decided_at="x", customer_id="C1", order_amount=1.0,
                                               decision="approve", fallback=False))
    log.close()
    again = AuditLog(url)  # opening an upgraded log changes nothing
    assert list(again.read()["request_id"]) == ["a", "b", "c", "d"]
    again.close()


# -- batches --------------------------------------------------------------------------------

def test_a_batch_with_an_unknown_customer_answers_the_others(core, book):
    ids = book["customer_id"].astype(str).tolist()[:3]
    out = core.score_orders([Order(ids[0], 100.0), Order("nobody-here", 100.0, request_id="nb-1"),
                             Order(ids[1], 100.0), Order(ids[2], -1.0)], each=True)
    assert [o.get("decision") is not None for o in out] == [True, False, True, False]
    assert out[1] == {"customer_id": "nobody-here", "request_id": "nb-1", "status": 404, "field": "customer_id",
                      "error": out[1]["error"]} and "not in the book" in out[1]["error"]
    assert out[3]["status"] == 400 and out[3]["field"] == "order_amount"
    assert out[0] == {**core.score_order(Order(ids[0], 100.0)), "request_id": out[0]["request_id"]}


def test_score_batch_over_http_answers_each_order_and_documents_the_error_entry(service_client, book):
    ids = book["customer_id"].astype(str).tolist()[:2]
    r = service_client.post("/score_batch", json={"requests": [
        {"customer_id": ids[0], "order_amount": 100}, {"customer_id": "nobody-here", "order_amount": 100},
        {"customer_id": ids[1], "order_amount": 100}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert "decision" in out[0] and "decision" in out[2]
    assert out[1]["status"] == 404 and out[1]["field"] == "customer_id" and "decision" not in out[1]
    # a body that is not a batch stays a 400 for the whole body
    bad = service_client.post("/score_batch", json={"requests": [{"customer_id": ids[0], "order_amount": "x"}]})
    assert bad.status_code == 400 and "order_amount" in bad.json()["error"]
    doc = service_client.get("/docs.json").json()
    assert "OrderError" in doc["components"]["schemas"]
    assert "OrderError" in json.dumps(doc["paths"]["/score_batch"]["post"]["responses"]["200"])


def test_a_retry_over_http_gets_the_recorded_answer(service_client, book):
    body = {"customer_id": str(book["customer_id"].iloc[9]), "order_amount": 1500, "request_id": f"http-{uuid.uuid4().hex}"}
    first = service_client.post("/score", json=body)
    again = service_client.post("/score", json=body)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    other = service_client.post("/score", json={**body, "order_amount": 1600})
    assert other.status_code == 409 and other.json()["error"].startswith("request_id:")
