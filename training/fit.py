"""Pure training steps: a split in, a fitted bundle and its test metrics out (no I/O)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from riskcast.config import MasterScaleConfig, TrainingConfig
from riskcast.features.registry import FeatureRegistry

from .bundle import ModelBundle
from .calibration import PlattCalibrator
from .dataset import LABEL, TRUE_PD, Split
from .evaluation import binary_metrics
from .model import LightGBMPD
from .scorecard import CreditScorecard


def fit_bundle(split: Split, registry: FeatureRegistry, cfg: TrainingConfig,
               master_scale: MasterScaleConfig, progress: Callable[[str], None] | None = None) -> ModelBundle:
    """LightGBM (early-stopped on the validation window), Platt calibration on the same
    window, and the scorecard on the training window."""
    say = progress or (lambda _m: None)
    names = registry.names
    Xtr, ytr = split.train[names].to_numpy(float), split.train[LABEL].to_numpy()
    Xva, yva = split.valid[names].to_numpy(float), split.valid[LABEL].to_numpy()
    say(f"LightGBM on {len(Xtr):,} rows x {len(names)} features (validation {len(Xva):,} rows)")
    model = LightGBMPD(cfg.lightgbm, registry.monotone_constraints, seed=cfg.seed).fit(
        Xtr, ytr, Xva, yva, feature_names=names)
    say(f"LightGBM stopped at {model.best_iteration_} trees; calibrating on the validation window")
    calibrator = PlattCalibrator(cfg.pd_floor).fit(model.predict_margin(Xva), yva)
    say("scorecard: WoE binning and logistic regression")
    scorecard = CreditScorecard(registry.scorecard_trends, cfg.scorecard, random_state=cfg.seed).fit(split.train, ytr)
    missing = split.train[names].isna().mean(axis=1)
    meta = {
        **split.windows(),
        "max_missing_share": float(np.quantile(missing, 0.99)),
        "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test),
        "best_iteration": model.best_iteration_,
        "features": names,
    }
    return ModelBundle(registry, model.booster_, calibrator, scorecard, master_scale, cfg.scorecard, meta)


def evaluate_bundle(bundle: ModelBundle, test: pd.DataFrame) -> dict[str, float]:
    """Test-window metrics of the model, the scorecard and, on synthetic data, the true PD."""
    y = test[LABEL].to_numpy()
    metrics: dict[str, Any] = {}
    metrics.update(binary_metrics(y, bundle.model_pd(bundle.matrix(test)), "test"))
    metrics.update(binary_metrics(y, bundle.scorecard_pd(test), "scorecard_test"))
    if TRUE_PD in test.columns and test[TRUE_PD].notna().all():
        metrics.update(binary_metrics(y, test[TRUE_PD].to_numpy(), "oracle_test"))
    metrics["test_default_rate"] = float(np.mean(y))
    metrics["test_rows"] = float(len(y))
    return metrics
