"""The promotion gate: every check stated with its figure, and on real runs the champion is
scored on the challenger's own test window."""

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from riskcast.config import RiskcastConfig
from riskcast.training import tracking
from riskcast.training.pipeline import train_on_book


def _by_name(gate: dict) -> dict:
    return {c["check"]: c for c in gate["checks"]}


def test_every_check_is_stated_with_its_figure_whichever_decided():
    # the floor decides, and the calibration and the comparison are still stated
    g = tracking.promotion_gate(0.55, ("3", 0.70), 0.005, min_auc=0.6, rejected=(1, 10), max_rejected_share=0.10)
    assert not g["passed"]
    assert g["reason"] == ("AUC 0.5500 is below the floor 0.60: fails; "
                           "calibration (Jeffreys): 1 of 10 grades rejected, at most 10%: ok; "
                           "AUC 0.5500 vs champion v3 0.7000, allowed drop 0.005: fails")
    checks = _by_name(g)
    assert [c["check"] for c in g["checks"]] == ["auc_floor", "calibration", "champion"]
    assert {k: checks["auc_floor"][k] for k in ("figure", "threshold", "passed")} == {
        "figure": 0.55, "threshold": 0.6, "passed": False}
    assert checks["calibration"]["figure"] == 0.1 and checks["calibration"]["passed"] is True
    assert checks["champion"]["threshold"] == pytest.approx(0.695) and checks["champion"]["passed"] is False
    assert g["champion_version"] == "3" and g["champion_test_auc"] == 0.70

    # the calibration decides: a good ranker whose PDs fail in 3 of 8 grades
    g = tracking.promotion_gate(0.90, ("3", 0.85), 0.005, rejected=(3, 8))
    assert not g["passed"] and [c["passed"] for c in g["checks"]] == [True, False, True]
    assert "AUC 0.9000 >= floor 0.60: ok" in g["reason"]
    assert "calibration rejected (Jeffreys): 3 of 8 grades rejected, above 10% and more than chance explains: fails" \
        in g["reason"]
    assert "AUC 0.9000 vs champion v3 0.8500, allowed drop 0.005: ok" in g["reason"]
    # one grade of eight failing is above the share but within chance: stated, and not decisive
    g = tracking.promotion_gate(0.90, None, 0.005, rejected=(1, 8))
    assert g["passed"] and "1 of 8 grades rejected, above 10% but no more than chance explains: ok" in g["reason"]
    assert g["reason"].endswith("no champion yet") and _by_name(g)["champion"]["passed"] is None
    # nothing to test, and a champion that cannot be scored
    g = tracking.promotion_gate(0.90, ("4", float("nan")), 0.005, min_auc=0.655)
    assert not g["passed"] and "champion_test_auc" not in g
    assert g["reason"] == ("AUC 0.9000 >= floor 0.655: ok; calibration (Jeffreys): no grade tested: not checked; "
                           "champion v4 cannot be scored on this test window: promote by hand")
    assert _by_name(g)["calibration"]["passed"] is None and _by_name(g)["champion"]["figure"] == 0.9
    json.dumps(g, allow_nan=False)  # the record is plain JSON: no NaN in it


def _comparison(run_id: str) -> dict:
    path = MlflowClient().download_artifacts(run_id, "champion_comparison.json")
    with open(path) as f:
        return json.load(f)


def test_a_second_run_replaces_the_champion_only_through_the_gate(small_book, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(tmp_path)
    cfg = RiskcastConfig()
    client = MlflowClient()

    first = train_on_book(small_book, cfg, tmp_path)
    assert first.run.promoted and first.run.version == "1"

    # the same data, config and seed: the same model, so the same AUC on the same window
    second = train_on_book(small_book, cfg, tmp_path)
    cmp2 = _comparison(second.run.run_id)
    assert cmp2["basis"] == "champion scored on this run's test window"
    assert cmp2["champion_version"] == "1"
    assert abs(cmp2["champion_test_auc"] - second.metrics["test_auc"]) < 1e-12
    assert second.run.promoted and str(client.get_model_version_by_alias("riskcast-pd", "champion").version) == "2"
    assert client.get_run(second.run.run_id).data.tags["gate.passed"] == "True"

    # a crippled model: worse on the same window by more than the allowed drop -> challenger only
    weak = cfg.model_copy(update={"training": cfg.training.model_copy(update={
        "lightgbm": cfg.training.lightgbm.model_copy(update={"n_estimators": 10, "num_leaves": 2,
                                                             "learning_rate": 0.01, "colsample_bytree": 0.1})})})
    third = train_on_book(small_book, weak, tmp_path)
    cmp3 = _comparison(third.run.run_id)
    assert not third.run.promoted and "fails" in cmp3["reason"]
    assert cmp3["champion_test_auc"] > third.metrics["test_auc"] + cfg.training.promotion_max_auc_drop
    # the whole case is stated, each check with its figure: the floor and the calibration
    # passed, the comparison decided
    m = third.metrics
    tested = int(m["test_grades_tested"])
    rejected = int(round(m["test_jeffreys_rejected_share"] * tested))
    assert f"AUC {m['test_auc']:.4f} >= floor {cfg.training.promotion_min_auc:.2f}: ok" in cmp3["reason"]
    assert f"{rejected} of {tested} grades rejected" in cmp3["reason"]
    assert (f"AUC {m['test_auc']:.4f} vs champion v2 {cmp3['champion_test_auc']:.4f}, allowed drop "
            f"{cfg.training.promotion_max_auc_drop}: fails") in cmp3["reason"]
    checks = _by_name(cmp3)
    assert checks["auc_floor"]["passed"] and checks["champion"]["passed"] is False
    assert checks["champion"]["figure"] == m["test_auc"]
    assert checks["champion"]["threshold"] == pytest.approx(cmp3["champion_test_auc"] - cfg.training.promotion_max_auc_drop)
    assert client.get_run(third.run.run_id).data.tags["gate.reason"] == cmp3["reason"]
    # runs are named after the version they made
    assert [client.get_run(r.run.run_id).info.run_name.rsplit(" ", 1)[1] for r in (first, second, third)] == \
        ["v1", "v2", "v3"]
    assert str(client.get_model_version_by_alias("riskcast-pd", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("riskcast-pd", "challenger").version) == "3"
    assert client.get_run(third.run.run_id).data.metrics["champion_test_auc"] == cmp3["champion_test_auc"]
    # the comparison is readable in the run: model card and plots
    card = open(client.download_artifacts(third.run.run_id, "model_card.md")).read()
    assert "challenger only" in card and f"champion v2 {cmp3['champion_test_auc']:.4f}" in card
    plots = {a.path for a in client.list_artifacts(third.run.run_id, "plots")}
    assert {"plots/roc.png", "plots/ks.png", "plots/calibration.png", "plots/grades.png",
            "plots/feature_importance.png", "plots/shap_summary.png"} <= plots


def test_a_champion_that_trained_on_the_test_months_is_not_scored_on_them(small_book, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(tmp_path)
    cfg = RiskcastConfig()
    first = train_on_book(small_book, cfg, tmp_path)
    assert first.run.promoted
    # a retrain on the book as it stood a year earlier: its test months are in the champion's training
    older = train_on_book(small_book.as_seen_on(pd.Timestamp("2024-12-31")), cfg, tmp_path)
    cmp_ = _comparison(older.run.run_id)
    assert cmp_["basis"].startswith("champion's logged test_auc")
    assert cmp_["champion_test_auc"] == first.metrics["test_auc"]
