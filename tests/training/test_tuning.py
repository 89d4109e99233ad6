"""The settings search: judged on the validation window only, reproducible, logged as nested runs."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from riskcast.config import RiskcastConfig
from riskcast.features.build import build_features
from riskcast.features.registry import default_registry
from riskcast.training import tracking
from riskcast.training.dataset import Split, attach_labels, snapshot_dates, split_out_of_time
from riskcast.training.pipeline import train_on_book
from riskcast.training.tuning import tune


@pytest.fixture(scope="module")
def split(small_book):
    cfg = RiskcastConfig()
    data = attach_labels(build_features(small_book, snapshot_dates(small_book, cfg.training)), small_book, 12)
    return split_out_of_time(data, cfg.training.valid_snapshots, cfg.training.test_snapshots)


def test_the_best_of_the_trials_on_validation_wins_and_the_test_window_is_never_read(split):
    base = RiskcastConfig().training.lightgbm
    blind = Split(split.train, split.valid, pd.DataFrame())  # no test rows at all: tuning must not need them
    best, trials = tune(blind, default_registry(), base, trials=3, seed=3)
    assert [t.number for t in trials] == [1, 2, 3]
    assert trials[0].params["num_leaves"] == base.num_leaves  # the configured settings are trial 1
    winner = max(trials, key=lambda t: t.valid_auc)
    assert best.num_leaves == winner.params["num_leaves"] and best.learning_rate == winner.params["learning_rate"]
    again, trials2 = tune(blind, default_registry(), base, trials=3, seed=3)
    assert again == best and [t.valid_auc for t in trials2] == [t.valid_auc for t in trials]
    assert len({(t.params["num_leaves"], t.params["learning_rate"]) for t in trials}) == 3


def test_a_tuned_run_logs_each_trial_as_a_nested_run(small_book, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(tmp_path)
    out = train_on_book(small_book, RiskcastConfig(), tmp_path, tune=3)
    client = MlflowClient()
    run = client.get_run(out.run.run_id)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == 3 and all("valid_auc" in c.data.metrics for c in children)
    best = max(children, key=lambda c: c.data.metrics["valid_auc"])
    assert run.data.params["lgb_num_leaves"] == best.data.params["num_leaves"]
    assert run.data.params["tune_trials"] == "3"
