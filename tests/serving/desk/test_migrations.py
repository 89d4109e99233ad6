"""The desk's schema is made and upgraded by its Alembic migrations: a database of the previous
release (the audit log alone) gains the desk's tables with its rows untouched, two workers
opening it at once migrate it once, the migrated tables are the ones the code declares, and
the desk's version table is its own (MLflow's ``alembic_version`` is left alone)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from riskcast.errors import ConfigError
from riskcast.serving.audit import AuditLog
from riskcast.serving.desk import schema
from riskcast.serving.desk import store as desk_store
from riskcast.serving.desk.store import DeskStore, migrate

from .helpers import referral, run_at_once

MIGRATIONS = Path(desk_store.__file__).parent / "migrations"
DESK_TABLES = set(schema.APPEND_ONLY)


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _scalar_rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def test_the_revisions_are_one_line_from_0001_to_the_head():
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    assert len(scripts.get_heads()) == 1 and scripts.get_bases() == ["0001"]
    chain = [s.revision for s in scripts.walk_revisions()][::-1]
    assert chain[0] == "0001" and chain[-1] == _head()
    assert schema.VERSION_TABLE == "riskcast_desk_version"


# -- (a) a database of the previous release -----------------------------------------------------

def _previous_release(url: str) -> list[dict]:
    """The audit log as the previous release made it, with two decisions on record."""
    log = AuditLog(url)
    row = {"decided_at": "2025-06-01T10:00:00.000+00:00", "order_amount": 1200.0, "model_name": "riskcast-pd",
           "model_version": "3", "model_kind": "lightgbm", "pd_12m": 0.02, "score": 640.0, "grade": "4",
           "band": "B", "decision": "approve", "decision_reason": "exposure within the credit limit",
           "conditions": "[]", "credit_limit": 5000.0, "recommended_terms_days": 60, "reasons": "[]",
           "fallback": False, "answer": '{"decision": "approve"}'}
    with log.engine.begin() as conn:
        conn.execute(log.table.insert(), [{**row, "request_id": "r1", "customer_id": "C1"},
                                          {**row, "request_id": "r2", "customer_id": "C2", "decision": "refer"}])
    before = log.records()
    log.close()
    assert len(before) == 2
    return before


def test_a_database_of_the_previous_release_is_upgraded_keeping_the_audit_log(desk_url):
    before = _previous_release(desk_url)
    tables = _tables(desk_url)
    assert "decisions" in tables and not tables & DESK_TABLES
    audit_version = _scalar_rows(desk_url, "SELECT version FROM audit_schema")

    desk = DeskStore(desk_url)
    try:
        assert DESK_TABLES <= _tables(desk_url)
        assert _scalar_rows(desk_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(_head(),)]
        # the desk works on it
        key = desk.add_user("ann", "Ann", "analyst", by="ada")
        cid = desk.refer([referral("C1", "r9", 1_000.0)])["r9"]
        assert desk.case(cid).customer_id == "C1" and desk.authenticate(key).user_id == "ann"
    finally:
        desk.close()

    log = AuditLog(desk_url)
    try:
        assert log.records() == before
        # the desk's migrations index the audit log it shares the database with (revision 0002)
        assert "ix_decisions_customer" in {ix["name"] for ix in sa.inspect(log.engine).get_indexes("decisions")}
    finally:
        log.close()
    assert _scalar_rows(desk_url, "SELECT version FROM audit_schema") == audit_version


def test_a_desk_at_its_first_revision_is_upgraded_to_the_head(desk_url):
    from alembic import command

    engine = sa.create_engine(desk_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.commit()
    engine.dispose()
    assert _scalar_rows(desk_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [("0001",)]
    before = _previous_release(desk_url)
    desk = DeskStore(desk_url)
    try:
        desk.add_user("ann", "Ann", "analyst", by="ada")
    finally:
        desk.close()
    assert _scalar_rows(desk_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(_head(),)]
    log = AuditLog(desk_url)
    try:
        assert log.records() == before
    finally:
        log.close()


def test_the_audit_log_opens_a_database_the_desk_made(desk_url):
    DeskStore(desk_url).close()
    log = AuditLog(desk_url)
    try:
        assert log.records() == []
    finally:
        log.close()
    assert DESK_TABLES | {"decisions"} <= _tables(desk_url)


# -- (b) once, however many open it -----------------------------------------------------------------

def test_opening_twice_migrates_once_and_keeps_the_records(desk_url):
    first = DeskStore(desk_url)
    key = first.add_user("ann", "Ann", "analyst", by="ada")
    first.close()
    second = DeskStore(desk_url)
    try:
        assert migrate(second.engine) == _head()
        assert second.authenticate(key).user_id == "ann"
        assert len(second.users()) == 1
    finally:
        second.close()
    assert _scalar_rows(desk_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(_head(),)]


@pytest.mark.parametrize("previous", [False, True], ids=["empty", "previous-release"])
def test_workers_opening_a_database_at_once_migrate_it_once(desk_url, previous):
    if previous:
        _previous_release(desk_url)
    opened = run_at_once(lambda _i: DeskStore(desk_url), 6)
    try:
        errors = [o for o in opened if not isinstance(o, DeskStore)]
        assert not errors, errors
        assert _scalar_rows(desk_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(_head(),)]
        # each worker's store writes and reads the one database
        for i, store in enumerate(opened):
            store.add_user(f"user{i}", f"User {i}", "analyst", by="ada")
        assert len(opened[0].users()) == len(opened)
    finally:
        for o in opened:
            if isinstance(o, DeskStore):
                o.close()


def test_a_database_at_a_revision_this_version_does_not_know_is_refused(desk_url):
    DeskStore(desk_url).close()
    engine = sa.create_engine(desk_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(ConfigError) as e:
        DeskStore(desk_url)
    assert e.value.field == "desk.url" and "9999" in str(e.value)


# -- (c) the migrated schema is the declared one ------------------------------------------------------

def _desk_only(name, type_, parent_names):
    return type_ != "table" or name.startswith("desk_")


def _differences(url: str, metadata: sa.MetaData) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_schemas": False, "include_name": _desk_only, "compare_type": True,
                "version_table": schema.VERSION_TABLE})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_the_migrated_schema_matches_the_metadata(desk_url):
    _previous_release(desk_url)        # other tables in the database are not the desk's concern
    DeskStore(desk_url).close()
    assert _differences(desk_url, schema.metadata) == []


def test_the_comparison_would_see_a_difference(desk_url):
    """The check above is not empty: a column, an index or a table the migrations lack shows."""
    DeskStore(desk_url).close()
    changed = sa.MetaData()
    for table in schema.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["desk_trail"].append_column(sa.Column("extra", sa.Text))
    sa.Index("ix_desk_cases_kind", changed.tables["desk_cases"].c.kind)
    sa.Table("desk_more", changed, sa.Column("id", sa.Integer, primary_key=True))
    found = _differences(desk_url, changed)
    kinds = {(d[0], getattr(d[-1], "name", None) if d[0] != "add_column" else d[-1].name) for d in found}
    assert ("add_column", "extra") in kinds
    assert ("add_index", "ix_desk_cases_kind") in kinds
    assert ("add_table", "desk_more") in kinds


# -- (d) the desk's version table is its own -----------------------------------------------------------

def test_the_desk_does_not_use_mlflows_alembic_version(desk_url):
    engine = sa.create_engine(desk_url)
    with engine.begin() as conn:   # a database MLflow's tracking server made
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('1b5f0d9ad7c1')")
    engine.dispose()
    desk = DeskStore(desk_url)
    try:
        desk.add_user("ann", "Ann", "analyst", by="ada")
    finally:
        desk.close()
    DeskStore(desk_url).close()
    assert DESK_TABLES <= _tables(desk_url)
    assert _scalar_rows(desk_url, "SELECT version_num FROM alembic_version") == [("1b5f0d9ad7c1",)]
    assert _scalar_rows(desk_url, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(_head(),)]


def test_a_fresh_desk_makes_no_alembic_version_table(desk_url):
    DeskStore(desk_url).close()
    tables = _tables(desk_url)
    assert "alembic_version" not in tables
    assert tables == DESK_TABLES | {schema.VERSION_TABLE}
