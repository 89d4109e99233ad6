"""Collection steps on the desk: what a collector did on an overdue invoice at a stage of the
dunning ladder is recorded once (a retried request is one step, however many workers retry it
at once), read back oldest first, checked field by field against the configured ladder, kept
append-only by the database, and written with its trail row in one transaction; a desk of the
previous revision gains the table with its records kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from riskcast.config import CollectionsConfig, CollectionStage
from riskcast.errors import InputError
from riskcast.serving.desk import schema
from riskcast.serving.desk import store as desk_store
from riskcast.serving.desk.store import DeskStore

from .helpers import counts, rows, run_at_once

MIGRATIONS = Path(desk_store.__file__).parent / "migrations"
STEPS = "desk_collection_steps"
WORKERS = 8


def _step(desk, by, **kw):
    args = {"customer_id": "C1", "invoice_id": "INV-1", "stage": "reminder", "outcome": "done"}
    args.update(kw)
    return desk.record_step(args.pop("customer_id"), args.pop("invoice_id"), args.pop("stage"),
                            args.pop("outcome"), by, **args)


def _alembic() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg



# -- a step reads back ---------------------------------------------------------------------------

def test_a_recorded_step_reads_back_with_who_when_the_outcome_and_the_promised_date(desk, people):
    ann = people["ann"].user_id
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    step = _step(desk, ann, stage="call", outcome="promise to pay", promised_date="2026-02-15",
                 note="the director promised payment by mid February", request_id="call-1")
    after = datetime.now(timezone.utc) + timedelta(seconds=1)

    assert step["customer_id"] == "C1" and step["invoice_id"] == "INV-1"
    assert (step["stage"], step["outcome"], step["promised_date"]) == ("call", "promise to pay", "2026-02-15")
    assert step["user_id"] == "ann" and step["request_id"] == "call-1"
    assert step["note"] == "the director promised payment by mid February"
    assert before <= datetime.fromisoformat(step["at"]) <= after
    assert isinstance(step["id"], int)
    assert desk.steps() == [step]
    assert desk.steps(customer_id="C1") == [step] and desk.steps(invoice_id="INV-1") == [step]
    assert desk.steps(customer_id="C1", invoice_id="INV-1") == [step]
    assert rows(desk, STEPS) == [step]


def test_steps_are_listed_oldest_first_and_filtered_by_customer_and_invoice(desk, people):
    ann, abe = people["ann"].user_id, people["abe"].user_id
    first = _step(desk, ann, customer_id="C1", invoice_id="INV-1", stage="reminder", outcome="no answer")
    second = _step(desk, abe, customer_id="C2", invoice_id="INV-7", stage="call", outcome="disputed",
                   note="the goods arrived damaged")
    third = _step(desk, abe, customer_id="C1", invoice_id="INV-1", stage="call", outcome="paid")
    fourth = _step(desk, ann, customer_id="C1", invoice_id="INV-2", stage="demand", outcome="escalated")

    assert [s["id"] for s in desk.steps()] == [first["id"], second["id"], third["id"], fourth["id"]]
    assert [s["at"] for s in desk.steps()] == sorted(s["at"] for s in desk.steps())
    assert desk.steps(customer_id="C1") == [first, third, fourth]
    assert desk.steps(invoice_id="INV-1") == [first, third]
    assert desk.steps(customer_id="C1", invoice_id="INV-2") == [fourth]
    assert desk.steps(customer_id="C2") == [second]
    assert desk.steps(customer_id="C2", invoice_id="INV-1") == []
    assert desk.steps(customer_id="nobody") == []
    # a step without note or promise stores neither
    assert first["note"] is None and first["promised_date"] is None and first["request_id"] is None
    assert second["user_id"] == "abe" and second["note"] == "the goods arrived damaged"


def test_every_default_stage_and_outcome_is_accepted(desk, people):
    stages = ("reminder", "call", "demand", "legal", "agency")
    outcomes = ("done", "no answer", "promise to pay", "disputed", "paid", "escalated")
    for i, stage in enumerate(stages):
        for outcome in outcomes:
            _step(desk, people["ann"].user_id, invoice_id=f"INV-{i}", stage=stage, outcome=outcome)
    recorded = desk.steps()
    assert [(s["stage"], s["outcome"]) for s in recorded] == [(s, o) for s in stages for o in outcomes]


def test_the_edges_of_what_a_step_may_hold_are_accepted(desk, people):
    long_id = "C" * 255
    step = _step(desk, people["ann"].user_id, customer_id=long_id, invoice_id="I" * 255, note="n" * 2000,
                 request_id="r" * 255, outcome="promise to pay", promised_date="2026-02-28")
    assert desk.steps(customer_id=long_id) == [step]
    assert len(step["invoice_id"]) == 255 and len(step["note"]) == 2000 and len(step["request_id"]) == 255
    one = _step(desk, people["ann"].user_id, customer_id="C", invoice_id="I", request_id="r")
    assert desk.steps(customer_id="C") == [one]
    # a promise to pay may come without a date
    undated = _step(desk, people["ann"].user_id, outcome="promise to pay")
    assert undated["promised_date"] is None


# -- what is refused --------------------------------------------------------------------------------

BAD = [
    ({"customer_id": ""}, "customer_id"),
    ({"customer_id": "C" * 256}, "customer_id"),
    ({"invoice_id": ""}, "invoice_id"),
    ({"invoice_id": "I" * 256}, "invoice_id"),
    ({"stage": "dunning"}, "stage"),
    ({"stage": "Reminder"}, "stage"),
    ({"stage": ""}, "stage"),
    ({"outcome": "maybe"}, "outcome"),
    ({"outcome": "Done"}, "outcome"),
    ({"outcome": ""}, "outcome"),
    ({"note": "n" * 2001}, "note"),
    ({"outcome": "promise to pay", "promised_date": "2026-02-30"}, "promised_date"),
    ({"outcome": "promise to pay", "promised_date": "next friday"}, "promised_date"),
    ({"outcome": "promise to pay", "promised_date": ""}, "promised_date"),
    ({"outcome": "promise to pay", "promised_date": "20260215"}, "promised_date"),
    ({"outcome": "promise to pay", "promised_date": "2026-W07-1"}, "promised_date"),
    ({"outcome": "done", "promised_date": "2026-02-15"}, "promised_date"),
    ({"outcome": "paid", "promised_date": "2026-02-15"}, "promised_date"),
    ({"request_id": ""}, "request_id"),
    ({"request_id": "r" * 256}, "request_id"),
]


@pytest.mark.parametrize("bad,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_an_invalid_field_is_refused_by_name_and_nothing_is_written(desk, people, bad, field):
    _step(desk, people["ann"].user_id, invoice_id="INV-0")   # a step on record already
    before = counts(desk)
    steps_before = desk.steps()
    with pytest.raises(InputError) as e:
        _step(desk, people["ann"].user_id, **bad)
    assert e.value.field == field, (bad, e.value.field, str(e.value))
    assert str(e.value).startswith(f"{field}:"), str(e.value)
    assert counts(desk) == before
    assert desk.steps() == steps_before
    assert desk.trail("invoice", "INV-1") == []


def test_a_refused_stage_or_outcome_names_what_the_ladder_accepts(desk, people):
    with pytest.raises(InputError) as e:
        _step(desk, people["ann"].user_id, stage="dunning")
    assert all(name in str(e.value) for name in ("reminder", "call", "demand", "legal", "agency"))
    with pytest.raises(InputError) as e:
        _step(desk, people["ann"].user_id, outcome="maybe")
    assert "promise to pay" in str(e.value) and "escalated" in str(e.value)


# -- a retried request is one step ----------------------------------------------------------------------

def test_a_retried_request_id_returns_the_step_on_record_and_writes_nothing(desk, people):
    ann = people["ann"].user_id
    first = _step(desk, ann, stage="call", outcome="promise to pay", promised_date="2026-02-15", request_id="form-7")
    before = counts(desk)
    again = _step(desk, ann, stage="call", outcome="promise to pay", promised_date="2026-02-15", request_id="form-7")
    assert again == first
    # a retry that differs (another reader, another outcome) still returns what is on record
    other = _step(desk, people["abe"].user_id, stage="demand", outcome="paid", request_id="form-7")
    assert other == first
    assert counts(desk) == before
    assert desk.steps() == [first]
    assert [r["action"] for r in desk.trail("invoice", "INV-1")] == ["collection_step"]
    # another request id is another step
    nxt = _step(desk, ann, stage="call", outcome="promise to pay", promised_date="2026-02-15", request_id="form-8")
    assert nxt["id"] != first["id"] and desk.steps() == [first, nxt]


def test_steps_without_a_request_id_are_each_recorded(desk, people):
    ann = people["ann"].user_id
    one = _step(desk, ann)
    two = _step(desk, ann)
    assert one["id"] != two["id"] and desk.steps() == [one, two]
    assert [r["action"] for r in desk.trail("invoice", "INV-1")] == ["collection_step", "collection_step"]


def test_one_request_retried_from_several_workers_at_once_is_one_step(desk, people, workers):
    stores = workers(WORKERS)
    for round_ in range(3):
        rid = f"retried-{round_}"
        invoice = f"INV-{round_}"
        results = run_at_once(lambda i: stores[i].record_step(
            "C1", invoice, "call", "promise to pay", f"collector{i}", promised_date="2026-02-20",
            request_id=rid), WORKERS)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        assert all(r == results[0] for r in results), results
        recorded = desk.steps(invoice_id=invoice)
        assert recorded == [results[0]]
        assert recorded[0]["request_id"] == rid
        trail = desk.trail("invoice", invoice)
        assert [r["action"] for r in trail] == ["collection_step"]
        assert trail[0]["user_id"] == recorded[0]["user_id"]
    assert len(desk.steps()) == 3


def test_different_requests_from_several_workers_at_once_are_each_recorded(desk, people, workers):
    stores = workers(WORKERS)
    results = run_at_once(lambda i: stores[i].record_step(
        "C1", "INV-1", "reminder", "done", f"collector{i}", request_id=f"req-{i}"), WORKERS)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    recorded = desk.steps(invoice_id="INV-1")
    assert len(recorded) == WORKERS
    assert sorted(s["request_id"] for s in recorded) == sorted(f"req-{i}" for i in range(WORKERS))
    assert sorted(s["id"] for s in recorded) == sorted(r["id"] for r in results)
    assert len(desk.trail("invoice", "INV-1")) == WORKERS


# -- append-only -----------------------------------------------------------------------------------------

def test_the_database_refuses_an_update_or_delete_of_a_step(desk, people):
    _step(desk, people["ann"].user_id, outcome="promise to pay", promised_date="2026-02-15", request_id="r1")
    _step(desk, people["abe"].user_id, invoice_id="INV-2", stage="call", outcome="disputed")
    filled = counts(desk)
    before = rows(desk, STEPS)
    assert STEPS in schema.APPEND_ONLY
    for sql in (f"UPDATE {STEPS} SET outcome = 'paid'", f"UPDATE {STEPS} SET promised_date = NULL",
                f"UPDATE {STEPS} SET stage = stage", f"DELETE FROM {STEPS}",
                f"DELETE FROM {STEPS} WHERE request_id = 'r1'"):
        with pytest.raises(sa.exc.DBAPIError) as e, desk.engine.begin() as conn:
            conn.exec_driver_sql(sql)
        assert "append-only" in str(e.value), sql
    assert rows(desk, STEPS) == before
    assert counts(desk) == filled


# -- the trail -------------------------------------------------------------------------------------------

def test_a_step_appends_its_trail_row_naming_who_and_what(desk, people):
    step = _step(desk, people["ann"].user_id, customer_id="C9", invoice_id="INV-9", stage="legal",
                 outcome="promise to pay", promised_date="2026-03-01", note="lawyer's letter answered")
    trail = desk.trail("invoice", "INV-9")
    assert len(trail) == 1
    row = trail[0]
    assert (row["user_id"], row["action"], row["object"], row["object_id"]) == (
        "ann", "collection_step", "invoice", "INV-9")
    assert row["old"] is None
    assert row["new"] == {"customer_id": "C9", "stage": "legal", "outcome": "promise to pay",
                          "promised_date": "2026-03-01", "note": "lawyer's letter answered"}
    assert row["at"] and datetime.fromisoformat(row["at"]) - datetime.fromisoformat(step["at"]) < timedelta(seconds=5)
    assert desk.trail()[-1]["id"] == row["id"]


def test_the_step_and_its_trail_row_are_written_in_one_transaction(desk, people, monkeypatch):
    original = desk._trail
    seen: list[tuple[int, int, int]] = []

    def watching(conn, *args, **kwargs):
        # within the step's transaction: the step is there, but not yet for anyone else
        inside = conn.execute(sa.select(sa.func.count()).select_from(schema.steps)).scalar_one()
        seen.append((inside, len(desk.steps()), len(desk.trail("invoice", "INV-1"))))
        return original(conn, *args, **kwargs)

    monkeypatch.setattr(desk, "_trail", watching)
    step = _step(desk, people["ann"].user_id)
    assert seen == [(1, 0, 0)]
    assert desk.steps() == [step] and len(desk.trail("invoice", "INV-1")) == 1


def test_a_trail_row_that_cannot_be_written_leaves_no_step(desk, people, monkeypatch):
    before = counts(desk)
    original = desk._trail

    def failing(conn, *args, **kwargs):
        original(conn, *args, **kwargs)
        raise RuntimeError("the trail's disk is full")

    monkeypatch.setattr(desk, "_trail", failing)
    with pytest.raises(RuntimeError):
        _step(desk, people["ann"].user_id, request_id="lost-1")
    monkeypatch.undo()
    assert counts(desk) == before
    assert desk.steps() == [] and desk.trail("invoice", "INV-1") == []
    # the request was not taken: its retry records it
    step = _step(desk, people["ann"].user_id, request_id="lost-1")
    assert desk.steps() == [step] and len(desk.trail("invoice", "INV-1")) == 1


# -- a ladder of one's own ---------------------------------------------------------------------------------

CUSTOM = CollectionsConfig(
    stages=(CollectionStage(name="nudge", days=3, action="an e-mail"),
            CollectionStage(name="hold", action="orders stop", stops_orders=True),
            CollectionStage(name="court", days=60, action="a claim in court")),
    outcomes=("reached", "unreachable", "promise to pay"))


def test_a_configured_ladder_decides_the_stages_and_outcomes_accepted(desk_url, clock, people):
    custom = DeskStore(desk_url, clock=clock, collections=CUSTOM)
    try:
        by = people["ann"].user_id
        for stage in ("nudge", "hold", "court"):
            _step(custom, by, invoice_id=f"INV-{stage}", stage=stage, outcome="reached")
        promised = _step(custom, by, stage="hold", outcome="promise to pay", promised_date="2026-04-01")
        assert promised["promised_date"] == "2026-04-01"
        assert _step(custom, by, stage="court", outcome="unreachable")["outcome"] == "unreachable"
        before = counts(custom)
        for stage in ("reminder", "call", "demand", "legal", "agency"):
            with pytest.raises(InputError) as e:
                _step(custom, by, stage=stage, outcome="reached")
            assert e.value.field == "stage" and "nudge" in str(e.value) and "court" in str(e.value)
        for outcome in ("done", "no answer", "disputed", "paid", "escalated"):
            with pytest.raises(InputError) as e:
                _step(custom, by, stage="nudge", outcome=outcome)
            assert e.value.field == "outcome" and "unreachable" in str(e.value)
        assert counts(custom) == before
        assert [s["stage"] for s in custom.steps()] == ["nudge", "hold", "court", "hold", "court"]
    finally:
        custom.close()


def test_the_default_ladder_refuses_a_configured_ladders_names(desk, people):
    before = counts(desk)
    with pytest.raises(InputError) as e:
        _step(desk, people["ann"].user_id, stage="nudge")
    assert e.value.field == "stage"
    with pytest.raises(InputError) as e:
        _step(desk, people["ann"].user_id, outcome="reached")
    assert e.value.field == "outcome"
    assert counts(desk) == before


# -- a desk of the previous revision ------------------------------------------------------------------------

def _read_all(url: str, tables) -> dict[str, list[dict]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {tbl.name: [dict(r) for r in conn.execute(sa.select(tbl).order_by(*tbl.primary_key.columns))
                               .mappings()] for tbl in tables}
    finally:
        engine.dispose()


def test_a_desk_at_revision_0002_is_upgraded_keeping_its_rows_and_gains_the_steps(desk_url):
    from alembic import command

    engine = sa.create_engine(desk_url)
    with engine.connect() as conn:
        cfg = _alembic()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.commit()
    at = "2025-12-01T09:00:00.000+00:00"
    with engine.begin() as conn:
        conn.execute(schema.users.insert(), [
            {"user_id": "ann", "version": 1, "name": "Ann", "role": "analyst", "active": True, "at": at, "by": "ada"},
            {"user_id": "ann", "version": 2, "name": "Ann", "role": "manager", "active": True, "at": at, "by": "ada"}])
        conn.execute(schema.keys.insert().values(key_hash="a" * 64, user_id="ann", label="first key", at=at, by="ada"))
        conn.execute(schema.keys.insert().values(key_hash="b" * 64, user_id="ann", label="spare", at=at, by="ada"))
        conn.execute(schema.revocations.insert().values(key_hash="b" * 64, at=at, by="ada"))
        conn.execute(schema.cases.insert().values(customer_id="C1", customer_seq=1, kind="referral", opened_at=at,
                                                  opened_by="rescore"))
        conn.execute(schema.events.insert().values(case_id=1, seq=1, at=at, kind="referred", user_id=None,
                                                   request_id="o1", body='{"exposure": 1000.0}'))
        conn.execute(schema.limits.insert().values(customer_id="C1", credit_limit=5000.0, terms_days=30, band="B",
                                                   approved_at=at, review_date="2026-12-01", case_id=1,
                                                   approved_by="ann"))
        conn.execute(schema.trail.insert().values(at=at, user_id="ada", action="add_user", object="user",
                                                  object_id="ann", old=None, new='{"role": "analyst"}'))
        version = conn.exec_driver_sql(f"SELECT version_num FROM {schema.VERSION_TABLE}").all()
    tables_before = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert [tuple(v) for v in version] == [("0002",)]
    assert STEPS not in tables_before
    old_tables = [tbl for tbl in schema.metadata.sorted_tables if tbl.name != STEPS]
    before = _read_all(desk_url, old_tables)
    assert all(before[tbl.name] for tbl in old_tables), before

    desk = DeskStore(desk_url)
    try:
        head = ScriptDirectory.from_config(_alembic()).get_current_head()
        with desk.engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT version_num FROM {schema.VERSION_TABLE}").all() == [(head,)]
        assert STEPS in sa.inspect(desk.engine).get_table_names()
        assert _read_all(desk_url, old_tables) == before
        assert desk.steps() == []
        # the desk works on it: a step is recorded, and the new table is append-only as well
        step = desk.record_step("C1", "INV-1", "reminder", "done", "ann", request_id="r1")
        assert desk.steps() == [step]
        assert [r["action"] for r in desk.trail("invoice", "INV-1")] == ["collection_step"]
        for sql in (f"UPDATE {STEPS} SET outcome = 'paid'", f"DELETE FROM {STEPS}"):
            with pytest.raises(sa.exc.DBAPIError) as e, desk.engine.begin() as conn:
                conn.exec_driver_sql(sql)
            assert "append-only" in str(e.value), sql
        assert desk.limits("C1")[0]["credit_limit"] == 5000.0 and desk.case(1).customer_id == "C1"
    finally:
        desk.close()
    # opened again: at the head already, nothing changes
    again = DeskStore(desk_url)
    try:
        assert again.steps() == [step]
        assert _read_all(desk_url, old_tables)["desk_users"] == before["desk_users"]
    finally:
        again.close()
