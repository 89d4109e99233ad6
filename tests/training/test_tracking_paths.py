"""A work directory copied or moved elsewhere keeps working there with the original gone:
MLflow stores absolute artifact locations, and ``configure`` repoints the embedded database
at its own ``mlartifacts`` (atomically, and never a user's own tracking server)."""

import json
import os
import shutil
import sqlite3

import pytest
from mlflow.tracking import MlflowClient

from riskcast.config import RiskcastConfig
from riskcast.errors import ModelUnavailableError
from riskcast.training import tracking
from riskcast.training.pipeline import train_on_table

from conftest import dated_table

MODEL = "riskcast-table-paths"


@pytest.fixture(scope="module")
def table():
    df = dated_table(3)
    return df


@pytest.fixture(scope="module")
def cfg():
    c = RiskcastConfig()
    return c.model_copy(update={"training": c.training.model_copy(update={
        "lightgbm": c.training.lightgbm.model_copy(update={"n_estimators": 20, "learning_rate": 0.3}), "refit_with_validation": False})})


def _train(home, table, cfg):
    """Train one version into ``home`` and add an experiment of the user's own whose
    artifacts live outside any ``mlartifacts`` folder."""
    tracking.configure(home)
    out = train_on_table(table, "y", cfg, home, name="paths", time_col="when")
    MlflowClient().create_experiment("own", artifact_location=(home / "own-artifacts").as_uri())
    return out


@pytest.fixture(scope="module")
def original(tmp_path_factory, table, cfg):
    """A trained work directory the tests below copy (and never change)."""
    home = tmp_path_factory.mktemp("original") / "work"
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        _train(home, table, cfg)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return home


def _texts(db):
    """Every text value of every table of an SQLite database."""
    con = sqlite3.connect(db)
    try:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for col in [r[1] for r in con.execute(f"PRAGMA table_info('{table}')")]:
                for (value,) in con.execute(f'SELECT "{col}" FROM "{table}" WHERE typeof("{col}") = \'text\''):
                    yield table, col, value
    finally:
        con.close()


def _locations(db):
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT name, artifact_location FROM experiments"))
    finally:
        con.close()


def test_a_copied_work_directory_works_with_the_original_deleted(tmp_path, table, cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = tmp_path / "first"
    first_run = _train(first, table, cfg).run
    assert first_run.promoted, first_run.gate["reason"]
    copy = shutil.copytree(first, tmp_path / "elsewhere" / "copy")
    shutil.rmtree(first)
    old_root = str(first)
    assert any(old_root in v for _, _, v in _texts(copy / "mlflow.db"))

    tracking.configure(copy)
    # every location under the old mlartifacts now points into the copy's; the user's own stays
    leftover = {(t, c) for t, c, v in _texts(copy / "mlflow.db") if old_root in v and "own-artifacts" not in v}
    assert leftover == set()
    locations = _locations(copy / "mlflow.db")
    assert locations["riskcast-table-paths"] == (copy / "mlartifacts").resolve().as_uri()
    assert locations["own"] == (first / "own-artifacts").as_uri()

    loaded = tracking.load_registered(MODEL, "champion")
    assert loaded.version == "1" and str(copy.resolve()) in str(loaded.bundle.source)
    client = MlflowClient()
    run_id = client.get_model_version(MODEL, "1").run_id
    with open(client.download_artifacts(run_id, "champion_comparison.json")) as f:
        assert [c["check"] for c in json.load(f)["checks"]] == ["auc_floor", "calibration", "champion"]

    again = train_on_table(table, "y", cfg, copy, name="paths", time_col="when")
    assert again.run.version == "2"
    assert client.get_run(again.run.run_id).info.artifact_uri.startswith((copy / "mlartifacts").resolve().as_uri())
    assert tracking.load_registered(MODEL, "challenger").version == "2"
    assert not first.exists()  # nothing recreated the old folder
    # a second configure finds nothing to repoint
    assert tracking.relocate_artifacts(copy / "mlflow.db", copy / "mlartifacts") == {}


def test_the_rewrite_is_all_or_nothing(original, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = shutil.copytree(original, tmp_path / "copy")
    db = copy / "mlflow.db"
    before = _locations(db)
    con = sqlite3.connect(db)
    con.execute("CREATE TRIGGER no_runs BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'runs are read-only'); END")
    con.commit()
    con.close()
    with pytest.raises(ModelUnavailableError, match="cannot be repointed.*runs are read-only"):
        tracking.configure(copy)
    assert _locations(db) == before  # the experiments were not repointed without their runs
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER no_runs")
    con.commit()
    con.close()
    changed = tracking.relocate_artifacts(db, copy / "mlartifacts")
    assert changed["experiments.artifact_location"] == 1
    assert changed["runs.artifact_uri"] >= 1 and changed["model_versions.storage_location"] >= 1
    assert changed["logged_models.artifact_location"] >= 1


def test_a_database_copied_without_its_artifacts_and_a_users_server_are_left_alone(original, tmp_path, monkeypatch):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(original / "mlflow.db", alone / "mlflow.db")
    before = list(_texts(alone / "mlflow.db"))
    assert tracking.relocate_artifacts(alone / "mlflow.db", alone / "mlartifacts") == {}
    # the user's own server (here a database beside a work directory's artifacts): never rewritten
    users = shutil.copytree(original, tmp_path / "users-server")
    user_db = users / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{user_db}")
    before_user = list(_texts(user_db))
    uri = tracking.configure(tmp_path / "work")
    assert uri == f"sqlite:///{user_db}"
    assert list(_texts(user_db)) == before_user and list(_texts(alone / "mlflow.db")) == before
