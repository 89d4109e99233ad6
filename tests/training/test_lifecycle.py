"""The registry lifecycle on a real MLflow in a temporary work directory: named runs, the
version list a validator reads, promotion by hand (gate overrides on record), rollback along
the champion history, and the monitoring reference that travels with each version."""

import os
import shutil
from datetime import datetime, timezone

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from riskcast.config import RiskcastConfig
from riskcast.errors import InputError, ModelUnavailableError
from riskcast.training import lifecycle, tracking
from riskcast.training.fit import fit_bundle
from riskcast.training.pipeline import _time_split, prepare_table, table_registry
from riskcast.training.tracking import ChampionEvent

from conftest import dated_table

MODEL = "riskcast-test"


@pytest.fixture(scope="module")
def cheap():
    """A small real bundle (three features, twenty trees) and its scored test window."""
    df = dated_table(5)
    cfg = RiskcastConfig()
    training = cfg.training.model_copy(update={
        "lightgbm": cfg.training.lightgbm.model_copy(update={"n_estimators": 20, "learning_rate": 0.3}), "refit_with_validation": False})
    data = prepare_table(df, "y", None, "when")
    split = _time_split(data)
    bundle = fit_bundle(split, table_registry(data, "default_12m", ["default_12m", "as_of"]), training, cfg.master_scale)
    reference = pd.concat([split.test.reset_index(drop=True), bundle.score_frame(split.test).reset_index(drop=True)],
                          axis=1)
    return bundle, split.test, reference


@pytest.fixture(scope="module")
def blank_db(tmp_path_factory):
    """An empty MLflow database, made once: creating its schema costs seconds each time."""
    home = tmp_path_factory.mktemp("blank")
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    tracking.configure(home)
    MlflowClient().search_experiments()
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved
    return home / "mlflow.db"


@pytest.fixture
def registry(tmp_path, monkeypatch, blank_db):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(blank_db, tmp_path / "mlflow.db")
    tracking.configure(tmp_path)
    return tmp_path


def register(cheap, workdir, auc, *, reference=True, run_name="train 2025-12-31"):
    """One version whose logged test AUC is ``auc`` (the gate compares logged AUCs here)."""
    bundle, test, ref = cheap
    return tracking.log_and_register(
        bundle, experiment_id=tracking.ensure_experiment("riskcast-test", workdir), model_name=MODEL, params={},
        metrics={"test_auc": auc}, tags={}, sample=test, max_auc_drop=0.005, min_auc=0.6,
        run_name=run_name, reference=ref if reference else None)


def champion():
    return str(MlflowClient().get_model_version_by_alias(MODEL, "champion").version)


def test_versions_are_listed_with_run_names_gate_verdicts_and_history(cheap, registry):
    assert register(cheap, registry, 0.80).promoted
    assert not register(cheap, registry, 0.55).promoted          # below the floor: challenger only
    assert register(cheap, registry, 0.81, run_name=None).promoted

    v1, v2, v3 = lifecycle.list_versions(MODEL)
    assert [v.version for v in (v1, v2, v3)] == ["1", "2", "3"]
    # runs are named after the version they made (the default name is the model's)
    assert (v1.run_name, v2.run_name, v3.run_name) == ("train 2025-12-31 v1", "train 2025-12-31 v2", f"{MODEL} v3")
    assert MlflowClient().get_run(v1.run_id).info.run_name == "train 2025-12-31 v1"
    assert v3.aliases == ("challenger", "champion") and v1.aliases == () and v2.aliases == ()
    assert (v1.test_auc, v2.test_auc) == (0.80, 0.55)
    assert v1.gate_passed is True and v2.gate_passed is False
    assert "AUC 0.5500 is below the floor 0.60: fails" in v2.gate_reason
    assert "AUC 0.5500 vs champion v1 0.8000" in v2.gate_reason
    assert v1.reference_rows == len(cheap[2])
    assert v1.created.tzinfo is not None and v1.created <= v2.created <= v3.created
    # the gate's promotions are on record: v1 replaced nobody, v3 replaced v1
    assert [(e.action, e.version, e.previous, e.by) for e in v1.history] == [
        ("gate", "1", None, "promotion gate"), ("gate", "3", "1", "promotion gate")]
    assert v2.history == ()
    text = lifecycle.format_versions([v1, v2, v3])
    assert text.index("v3 [challenger, champion]") < text.index("v2  ") < text.index("v1  ")
    assert "gate failed" in text and "AUC 0.5500 is below the floor 0.60: fails" in text
    assert "v3 champion (was v1): by the promotion gate" in text
    assert lifecycle.format_versions([]) == "no versions registered"
    assert MlflowClient().get_model_version(MODEL, "3").tags["champion.action"] == "gate"


def test_promotion_by_hand_is_refused_for_a_failed_gate_unless_overridden_and_recorded(cheap, registry):
    register(cheap, registry, 0.80)
    register(cheap, registry, 0.55)
    with pytest.raises(InputError) as err:
        lifecycle.promote(MODEL, "2", reason="the new data is better", by="a.analyst")
    assert err.value.field == "override_gate" and "below the floor" in str(err.value)
    assert champion() == "1"

    at = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    event = lifecycle.promote(MODEL, 2, reason="  validated by hand on Q4  ", by="a.validator",
                              override_gate=True, at=at)
    assert champion() == "2"
    assert (event.action, event.version, event.previous, event.override_gate) == ("promote", "2", "1", True)
    tags = MlflowClient().get_model_version(MODEL, "2").tags
    assert tags["champion.by"] == "a.validator" and tags["champion.reason"] == "validated by hand on Q4"
    assert tags["champion.at"] == "2026-01-05T09:30:00+00:00" and tags["champion.gate_overridden"] == "True"
    assert tracking.champion_history(MODEL)[-1] == event
    assert str(event) == ("v2 champion (was v1): promoted by a.validator at 2026-01-05T09:30:00+00:00, "
                          "gate overridden: validated by hand on Q4")
    with pytest.raises(InputError) as err:
        lifecycle.promote(MODEL, "2", reason="again", by="a.validator", override_gate=True)
    assert err.value.field == "version" and "already the champion" in str(err.value)


BAD_REQUESTS = [
    (lambda: lifecycle.promote(MODEL, "9", reason="x", by="me"), "version"),
    (lambda: lifecycle.promote(MODEL, "one", reason="x", by="me"), "version"),
    (lambda: lifecycle.promote(MODEL, "1", reason="   ", by="me"), "reason"),
    (lambda: lifecycle.promote(MODEL, "1", reason=None, by="me"), "reason"),
    (lambda: lifecycle.promote(MODEL, "1", reason="x" * 1001, by="me"), "reason"),
    (lambda: lifecycle.promote(MODEL, "1", reason="x", by=""), "by"),
    (lambda: lifecycle.rollback(MODEL, reason="", by="me"), "reason"),
    (lambda: lifecycle.rollback(MODEL, reason="x", by="me", to="7"), "to"),
    (lambda: lifecycle.rollback(MODEL, reason="x", by="me"), "to"),  # no champion before v1
    (lambda: lifecycle.promote(MODEL, "1", reason="x", by="me", at=datetime(2026, 1, 1)), "at"),
    (lambda: lifecycle.promote("no-such-model", "1", reason="x", by="me"), "model_name"),
    (lambda: lifecycle.list_versions("no-such-model"), "model_name"),
]


def test_bad_requests_name_the_field_and_move_nothing(cheap, registry):
    register(cheap, registry, 0.80)
    register(cheap, registry, 0.81, reference=False)
    lifecycle.rollback(MODEL, reason="back to v1", by="me")
    before = tracking.champion_history(MODEL)
    for call, field in BAD_REQUESTS:
        with pytest.raises(InputError) as err:
            call()
        assert err.value.field == field, (field, str(err.value))
    assert champion() == "1" and tracking.champion_history(MODEL) == before


def test_rollback_walks_the_champion_history_back_and_stops_at_the_first(cheap, registry):
    for auc in (0.80, 0.81, 0.82):  # three gate promotions: 1, then 2, then 3
        assert register(cheap, registry, auc).promoted
    first = lifecycle.rollback(MODEL, reason="v3 misprices the new sector", by="ops")
    assert champion() == "2" and (first.action, first.version, first.previous) == ("rollback", "2", "3")
    lifecycle.rollback(MODEL, reason="v2 as well", by="ops")
    assert champion() == "1"
    with pytest.raises(InputError) as err:
        lifecycle.rollback(MODEL, reason="once more", by="ops")
    assert err.value.field == "to" and "no previous champion" in str(err.value)
    assert champion() == "1"
    # to a named former champion; a version that never was champion needs a promotion
    lifecycle.rollback(MODEL, reason="v3 after all", by="ops", to="3")
    assert champion() == "3"
    register(cheap, registry, 0.50)  # v4, gate failed, never champion
    with pytest.raises(InputError) as err:
        lifecycle.rollback(MODEL, reason="x", by="ops", to="4")
    assert err.value.field == "to" and "never champion" in str(err.value)
    actions = [(e.action, e.version) for e in tracking.champion_history(MODEL)]
    assert actions == [("gate", "1"), ("gate", "2"), ("gate", "3"), ("rollback", "2"), ("rollback", "1"),
                       ("rollback", "3")]


def _e(seq, action, version, previous=None):
    return ChampionEvent(seq, action, version, previous, "me", "2026-01-01T00:00:00+00:00", "why")


def test_the_lineage_drops_rolled_back_champions():
    history = [_e(1, "gate", "1"), _e(2, "gate", "2", "1"), _e(3, "promote", "5", "2"), _e(4, "rollback", "2", "5"),
               _e(5, "gate", "6", "2")]
    assert lifecycle.lineage(history) == ["1", "2", "6"]
    assert lifecycle.rollback_target(history, "6", {"1", "2", "5", "6"}) == "2"
    assert lifecycle.rollback_target(history, "6", {"1", "5", "6"}) == "1"  # v2 was deleted
    assert lifecycle.rollback_target(history[:1], "1", {"1"}) is None
    # the alias moved outside riskcast: the last champion on record is the way back
    assert lifecycle.rollback_target(history, "9", {"1", "2", "6", "9"}) == "6"


def test_each_version_carries_its_own_monitoring_reference(cheap, registry):
    ref = cheap[2]
    register(cheap, registry, 0.80)
    # a loaded bundle finds it beside itself (serving copies the bundle folder with it)
    loaded = tracking.load_registered(MODEL, "champion")
    pd.testing.assert_frame_equal(pd.read_parquet(tracking.reference_path(loaded.bundle)), ref)
    register(cheap, registry, 0.81, reference=False)  # as registered before references travelled
    pd.testing.assert_frame_equal(tracking.load_reference(MODEL, "1"), ref)
    assert list(tracking.load_reference(MODEL, "1", columns=["pd_12m", "a", "nope"]).columns) == ["a", "pd_12m"]
    with pytest.raises(ModelUnavailableError, match="version 2 carries no monitoring reference"):
        tracking.load_reference(MODEL, "champion")
    with pytest.raises(ModelUnavailableError, match="no version or alias"):
        tracking.load_reference(MODEL, "12")
    assert not tracking.reference_path(tracking.load_registered(MODEL, "champion").bundle).exists()
