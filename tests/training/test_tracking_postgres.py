"""MLflow on a PostgreSQL server, as a team that sets ``MLFLOW_TRACKING_URI`` to its own
database runs riskcast: the runs, the registered versions and their aliases are kept there
(nothing in the work directory's embedded ``mlflow.db``), the promotion gate reads the
champion back from it, and serving loads the champion it names.

The artifacts stay on local disk, in the work directory's ``mlartifacts`` whatever folder the
job runs in (MLflow alone would put them under ``./mlruns`` of that folder)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from riskcast.config import RiskcastConfig
from riskcast.training import tracking
from riskcast.training.pipeline import train_on_book

from conftest import PG_SERVER

MODEL = "riskcast-pd"
EXPERIMENT = "riskcast-book"


@pytest.fixture
def mlflow_pg(monkeypatch):
    """The URL of a database of its own on the PostgreSQL server for MLflow's tables (its
    migrations create ``experiments``, ``alembic_version``... which must meet no other test's),
    set as the user's ``MLFLOW_TRACKING_URI``; dropped afterwards, and MLflow's settings in this
    process as they were before. Skipped where no server answers."""
    import mlflow
    import sqlalchemy as sa

    pytest.importorskip("psycopg", reason="the PostgreSQL driver (psycopg) is not installed")
    name = f"riskcast_mlflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server answers at {PG_SERVER}: {str(exc).splitlines()[0]}")
    url = sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)

    uris = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("RISKCAST_EMBEDDED_TRACKING_URI", raising=False)  # ``configure`` may set it
    try:
        yield url
    finally:
        try:  # MLflow's pooled connections to the database, before it goes
            from mlflow.tracking import MlflowClient

            mlflow.set_tracking_uri(url)
            mlflow.set_registry_uri(url)
            client = MlflowClient()
            client._tracking_client.store.engine.dispose()
            client._get_registry_client().store.engine.dispose()
        except Exception:  # noqa: BLE001 - best effort; the drop below forces them closed
            pass
        mlflow.set_tracking_uri(uris[0])  # the process's MLflow, as the tests after this one expect it
        mlflow.set_registry_uri(uris[1])
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _weak(cfg: RiskcastConfig) -> RiskcastConfig:
    """A crippled model: worse on the same test window by more than the allowed drop."""
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={
        "lightgbm": cfg.training.lightgbm.model_copy(update={"n_estimators": 10, "num_leaves": 2,
                                                             "learning_rate": 0.01, "colsample_bytree": 0.1})})})


def _registry_rows(url: str) -> dict:
    """What the PostgreSQL database itself holds of the registry and the runs."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = lambda sql, **params: conn.execute(sa.text(sql), params).fetchall()  # noqa: E731
            return {
                "alembic": q("SELECT version_num FROM alembic_version"),
                "experiments": {n: loc for n, loc in q("SELECT name, artifact_location FROM experiments")},
                "runs": {r: (e, s, a) for r, e, s, a in q(
                    "SELECT r.run_uuid, e.name, r.status, r.artifact_uri FROM runs r "
                    "JOIN experiments e ON e.experiment_id = r.experiment_id")},
                "test_auc": dict(q("SELECT run_uuid, value FROM latest_metrics WHERE key = 'test_auc'")),
                "models": [n for (n,) in q("SELECT name FROM registered_models ORDER BY name")],
                "versions": q("SELECT name, version, run_id, storage_location FROM model_versions "
                              "ORDER BY name, version"),
                "aliases": {(n, a): v for n, a, v in q("SELECT name, alias, version FROM registered_model_aliases")},
                "history": {k: json.loads(v) for k, v in q(
                    "SELECT key, value FROM registered_model_tags WHERE name = :name AND key LIKE :prefix "
                    "ORDER BY key", name=MODEL, prefix=tracking.HISTORY_PREFIX + "%")},
            }
    finally:
        engine.dispose()


def _inside(location: str, folder: Path) -> bool:
    path = Path(location.removeprefix("file://"))
    return path.is_absolute() and path.resolve().is_relative_to(folder.resolve())


def test_training_registers_in_postgresql_and_serving_loads_the_champion_from_it(
        small_book, mlflow_pg, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from riskcast.serving.runtime import build_core

    work = tmp_path / "work"
    here = tmp_path / "job"  # where the user runs `riskcast train` from: nothing lands there
    here.mkdir()
    monkeypatch.chdir(here)
    cfg = RiskcastConfig()

    first = train_on_book(small_book, cfg, work)
    assert first.run.version == "1" and first.run.promoted, first.run.gate["reason"]
    assert mlflow.get_tracking_uri() == mlflow_pg and mlflow.get_registry_uri() == mlflow_pg
    assert tracking.tracking_uri(work) == mlflow_pg

    db = _registry_rows(mlflow_pg)
    assert len(db["alembic"]) == 1  # MLflow migrated this database's schema
    assert set(db["experiments"]) == {"Default", EXPERIMENT}
    assert db["runs"] == {first.run.run_id: (EXPERIMENT, "FINISHED", db["runs"][first.run.run_id][2])}
    assert db["test_auc"][first.run.run_id] == pytest.approx(first.metrics["test_auc"], rel=1e-12)
    assert db["models"] == [MODEL]
    assert [(n, v, r) for n, v, r, _ in db["versions"]] == [(MODEL, 1, first.run.run_id)]
    assert db["aliases"] == {(MODEL, "champion"): 1, (MODEL, "challenger"): 1}
    assert [(e["action"], e["version"], e["previous"]) for e in db["history"].values()] == [("gate", "1", None)]
    # nothing went into the work directory's own registry, nothing into the folder the job ran in
    assert not (work / "mlflow.db").exists() and list(here.iterdir()) == []
    # the artifacts are on local disk, in the work directory's artifacts folder, where the database says
    artifacts = work / "mlartifacts"
    assert _inside(db["experiments"][EXPERIMENT], artifacts)
    assert _inside(db["runs"][first.run.run_id][2], artifacts)
    storage = Path(db["versions"][0][3].removeprefix("file://"))
    assert _inside(str(storage), artifacts) and (storage / "MLmodel").is_file()
    assert (storage / "artifacts" / "bundle" / tracking.REFERENCE_FILE).is_file()

    # a crippled retrain: the gate scores the champion read back from PostgreSQL on the
    # challenger's own test window, and keeps it
    second = train_on_book(small_book, _weak(cfg), work)
    assert second.run.version == "2" and not second.run.promoted
    client = MlflowClient()
    with open(client.download_artifacts(second.run.run_id, "champion_comparison.json")) as f:
        comparison = json.load(f)
    assert comparison["basis"] == "champion scored on this run's test window"
    assert comparison["champion_version"] == "1" and "fails" in comparison["reason"]
    assert comparison["champion_test_auc"] == pytest.approx(first.metrics["test_auc"], rel=1e-9)
    assert comparison["champion_test_auc"] > second.metrics["test_auc"] + cfg.training.promotion_max_auc_drop
    db = _registry_rows(mlflow_pg)
    assert [(n, v, r) for n, v, r, _ in db["versions"]] == [(MODEL, 1, first.run.run_id),
                                                            (MODEL, 2, second.run.run_id)]
    assert db["aliases"] == {(MODEL, "champion"): 1, (MODEL, "challenger"): 2}
    assert len(db["history"]) == 1  # no change of champion
    assert set(db["runs"]) == {first.run.run_id, second.run.run_id}
    assert client.get_run(second.run.run_id).data.tags["gate.passed"] == "False"

    # serving, pointed at the same tracking store, loads the champion it names: version 1
    core = build_core(work)
    assert core.model is not None, core.model_error
    assert (core.model.name, core.model.version) == (MODEL, "1")
    assert tracking.resolve_version(MODEL, "champion") == "1"
    rows = first.reference.head(40)
    decided = core.decide(rows, np.full(len(rows), 1_000.0), np.full(len(rows), np.nan))
    by_model = [(d, r) for d, (_, r) in zip(decided, rows.iterrows()) if not d["fallback"]]
    assert len(by_model) >= len(rows) // 2
    for d, row in by_model:  # the PDs the champion gave its own test window at training (6 decimals)
        assert d["model"] == {"name": MODEL, "version": "1", "kind": "lightgbm"}
        assert d["pd_12m"] == round(float(row["pd_12m"]), 6) and d["grade"] == row["grade"]
    assert not (work / "mlflow.db").exists()
