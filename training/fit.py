"""Pure training steps: a split in, a fitted bundle and its test metrics out (no I/O)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.special import logit as _logit

from riskcast.config import MasterScaleConfig, TrainingConfig
from riskcast.features.coverage import coverage
from riskcast.features.registry import FeatureRegistry

from .bundle import ModelBundle
from .calibration import Calibrator, choose_calibrator
from .categories import CategoryCodes
from .masterscale import MasterScale, concentration, describe_concentration
from .dataset import HINDSIGHT_PD, LABEL, TRUE_PD, Split
from .evaluation import binary_metrics, calibration_metrics, grade_table
from .model import LightGBMPD
from .scorecard import CreditScorecard


def fit_bundle(split: Split, registry: FeatureRegistry, cfg: TrainingConfig,
               master_scale: MasterScaleConfig, progress: Callable[[str], None] | None = None) -> ModelBundle:
    """LightGBM (early-stopped on the validation window), calibration chosen and fitted on the
    same window (Platt or isotonic), and the scorecard on the training window. The master scale
    is the configured one, as given: every model grades on the same edges, and a crowded grade
    is reported (its concentration on the validation window), never split. With
    ``refit_with_validation`` the final trees are grown again, as many, on training +
    validation rows: the newest labelled months are the closest to the test and serving
    period, and the calibration stays the out-of-sample one.

    Categorical features take the categories of the training window (``CategoryCodes``,
    kept in the bundle): a category first seen in the validation window or later is missing,
    to the trees and to the scorecard alike."""
    say = progress or (lambda _m: None)
    names = registry.names
    codes = CategoryCodes(registry).fit(split.train)
    Xtr, ytr = codes.transform(split.train), split.train[LABEL].to_numpy()
    Xva, yva = codes.transform(split.valid), split.valid[LABEL].to_numpy()
    say(f"LightGBM on {len(Xtr):,} rows x {len(names)} features (validation {len(Xva):,} rows)")
    model = LightGBMPD(cfg.lightgbm, registry.monotone_constraints, seed=cfg.seed,
                       categorical_feature=registry.categorical_columns).fit(Xtr, ytr, Xva, yva, feature_names=names)
    say(f"LightGBM stopped at {model.best_iteration_} trees; calibrating on the validation window")
    margin_va = model.predict_margin(Xva)
    calibrator, losses = choose_calibrator(margin_va, yva, cfg.pd_floor, seed=cfg.seed)
    say(f"calibration: {calibrator.kind} (out-of-fold log loss "
        + ", ".join(f"{k} {v:.5f}" for k, v in losses.items()) + ")")
    booster, final_fit = model.booster_, "training window (early-stopped trees)"
    if cfg.refit_with_validation:
        say(f"LightGBM again: {model.best_iteration_} trees on training + validation rows ({len(Xtr) + len(Xva):,})")
        fixed = cfg.lightgbm.model_copy(update={"n_estimators": model.best_iteration_})
        refit = LightGBMPD(fixed, registry.monotone_constraints, seed=cfg.seed,
                           categorical_feature=registry.categorical_columns).fit(
            np.vstack([Xtr, Xva]), np.concatenate([ytr, yva]), feature_names=names)
        moved = calibration_moved(calibrator, model, refit, Xtr, cfg.refit_max_shift)
        if moved is None:
            booster, final_fit = refit.booster_, "training + validation windows"
        else:
            final_fit += f"; the refit was not kept: {moved}"
        say(f"final trees: {final_fit}")
    scale = MasterScale(master_scale)
    crowding = concentration(scale.grade(calibrator.transform(margin_va)), scale)
    say(f"master scale {scale.version} ({scale.fingerprint}) as configured, nothing split; validation window: "
        + describe_concentration(crowding))
    say("scorecard: WoE binning and logistic regression")
    scorecard = CreditScorecard(registry.scorecard_trends, cfg.scorecard, random_state=cfg.seed,
                                categorical=registry.categorical).fit(split.train, ytr)
    # what serving measures: the share missing of what a customer of its kind can have
    missing = coverage(Xtr, registry).share
    meta = {
        **split.windows(),
        # of the rows holding something about the customer: a book with many rows holding
        # nothing (no statement, no invoice: share 1) must not learn to score empty requests
        "max_missing_share": float(np.quantile(missing[missing < 1.0], 0.99)) if (missing < 1.0).any() else 0.5,
        "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test),
        "best_iteration": model.best_iteration_,
        "final_fit": final_fit,
        "min_child_samples": model.min_child_samples_,
        "features": names,
        "master_scale_version": scale.version,
        "master_scale_fingerprint": scale.fingerprint,
        "valid_grade_concentration": crowding,
        "calibration": calibrator.kind,
        "calibration_oof_logloss": losses,
    }
    return ModelBundle(registry, booster, calibrator, scorecard, master_scale, cfg.scorecard, meta, codes=codes)


def calibration_moved(calibrator: Calibrator, stopped: LightGBMPD, refit: LightGBMPD, X: np.ndarray,
                      max_shift: float, max_rows: int = 200_000) -> str | None:
    """Why the calibrator fitted on the early-stopped trees' margins does not carry over to the
    refit trees, or None when it does: on training rows (both trained on them) the refit may
    move neither the mean PD nor the spread of the calibrated log-odds by more than
    ``max_shift``. A model of a few weak trees on a stretched calibration fails this (its
    refit drew other features); a full model moves both by well under 1%."""
    rows = X[:: max(1, len(X) // max_rows)]
    before, after = calibrator.transform(stopped.predict_margin(rows)), calibrator.transform(refit.predict_margin(rows))
    level = after.mean() / before.mean() - 1
    spread = _logit(after).std() / max(_logit(before).std(), 1e-12) - 1
    for what, change in (("mean PD", level), ("spread of the log-odds", spread)):
        if abs(change) > max_shift:
            return f"it moved the training rows' {what} by {change:+.1%} (at most {max_shift:.0%})"
    return None


def calibration_by_grade(bundle: ModelBundle, y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Observed against predicted default rate per grade of the bundle's master scale."""
    scale = bundle.master_scale
    table = grade_table(y, p, scale.grade(p), scale.grades)
    bands = dict(zip(scale.grades, scale.bands))
    table.insert(1, "band", table["grade"].map(bands))
    return table


def evaluate_bundle(bundle: ModelBundle, test: pd.DataFrame) -> dict[str, float]:
    """Test-window metrics of the model, the scorecard and, on synthetic data, the true PD:
    discrimination, calibration overall (ECE, Hosmer-Lemeshow) and per grade (Jeffreys), and how
    crowded the model's grades are (Herfindahl of the grade shares; the largest share is
    ``test_max_grade_share``)."""
    y = test[LABEL].to_numpy()
    metrics: dict[str, Any] = {}
    sources = {"test": bundle.model_pd(bundle.matrix(test)), "scorecard_test": bundle.scorecard_pd(test)}
    if TRUE_PD in test.columns and test[TRUE_PD].notna().all():
        sources["oracle_test"] = test[TRUE_PD].to_numpy()
    for prefix, p in sources.items():
        metrics.update(binary_metrics(y, p, prefix))
        metrics.update(calibration_metrics(y, p, calibration_by_grade(bundle, y, p), prefix))
    if HINDSIGHT_PD in test.columns and test[HINDSIGHT_PD].notna().all():
        metrics.update(binary_metrics(y, test[HINDSIGHT_PD].to_numpy(), "hindsight_test"))
    crowding = concentration(bundle.master_scale.grade(sources["test"]), bundle.master_scale)
    metrics["test_grade_herfindahl"] = crowding["herfindahl"]
    metrics["test_grade_herfindahl_normalised"] = crowding["herfindahl_normalised"]
    metrics["test_default_rate"] = float(np.mean(y))
    metrics["test_rows"] = float(len(y))
    return metrics
