"""The promotion gate on real runs: the champion is scored on the challenger's own test window."""

import json

import pandas as pd
from mlflow.tracking import MlflowClient

from riskcast.config import RiskcastConfig
from riskcast.training import tracking
from riskcast.training.pipeline import train_on_book


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
