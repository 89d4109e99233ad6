"""The final fit: early stopping and calibration out of sample, then the trees learn the
validation months too, unless that would leave the calibration behind."""

import numpy as np
import pytest
from sklearn.metrics import log_loss

from riskcast.config import RiskcastConfig
from riskcast.features.build import build_features
from riskcast.features.registry import default_registry
from riskcast.training.dataset import LABEL, attach_labels, snapshot_dates, split_out_of_time
from riskcast.training.fit import fit_bundle


@pytest.fixture(scope="module")
def split(small_book):
    cfg = RiskcastConfig()
    data = attach_labels(build_features(small_book, snapshot_dates(small_book, cfg.training), default_registry()),
                         small_book, 12)
    return split_out_of_time(data, cfg.training.valid_snapshots, cfg.training.test_snapshots)


def _training(**update):
    cfg = RiskcastConfig()
    return cfg.training.model_copy(update=update), cfg.master_scale


def test_the_final_trees_also_learn_the_validation_window(split):
    reg = default_registry()
    refit = fit_bundle(split, reg, *_training())
    stopped = fit_bundle(split, reg, *_training(refit_with_validation=False))
    n = refit.metadata["best_iteration"]
    assert n == stopped.metadata["best_iteration"]
    assert refit.metadata["final_fit"] == "training + validation windows"
    assert refit.booster.num_trees() == n                    # as many trees as early stopping chose
    # calibration and the master scale come from the early-stopped model's out-of-sample margins
    assert refit.calibrator.to_dict() == stopped.calibrator.to_dict()
    assert refit.master_scale.table() == stopped.master_scale.table()
    # the validation rows are now training rows: the refit fits them better in sample, where
    # trees grown on the training window alone would give the stopped model's PDs exactly
    y = split.valid[LABEL].to_numpy()
    fitted = log_loss(y, refit.model_pd(refit.matrix(split.valid)))
    held_out = log_loss(y, stopped.model_pd(stopped.matrix(split.valid)))
    assert fitted < held_out


def test_a_refit_the_calibration_does_not_fit_is_not_kept(split):
    # ten stumps on a tenth of the features: the refit draws other features, and a calibration
    # stretched over a narrow margin range would misprice it
    weak = RiskcastConfig().training.lightgbm.model_copy(update={
        "n_estimators": 10, "num_leaves": 2, "learning_rate": 0.01, "colsample_bytree": 0.1})
    reg = default_registry()
    bundle = fit_bundle(split, reg, *_training(lightgbm=weak))
    stopped = fit_bundle(split, reg, *_training(lightgbm=weak, refit_with_validation=False))
    assert "the refit was not kept: it moved the training rows'" in bundle.metadata["final_fit"]
    X = bundle.matrix(split.test)
    np.testing.assert_array_equal(bundle.model_pd(X), stopped.model_pd(X))
