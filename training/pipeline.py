"""Training jobs: from raw tables (the book) or from a user's own feature table, to a registered bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from riskcast.config import RiskcastConfig
from riskcast.data.io import RawTables
from riskcast.errors import DataValidationError, InputError
from riskcast.features.coverage import COVERAGE_KEY, feature_coverage
from riskcast.features.registry import FeatureRegistry, default_registry

from . import tracking
from .bundle import ModelBundle
from .dataset import HINDSIGHT_PD, LABEL, TRUE_PD, Split, labelled_snapshots, outcome_overlap, split_out_of_time
from .evaluation import binary_metrics
from .fit import calibration_by_grade, evaluate_bundle, fit_bundle
from .masterscale import scale_fingerprint
from .report import model_card
from .tuning import tune as search_settings

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainOutcome:
    run: tracking.RegisteredRun
    metrics: dict[str, float]
    bundle: ModelBundle
    reference: pd.DataFrame  # test window with features, label and model PD: the monitoring baseline


def _params(cfg: RiskcastConfig, registry: FeatureRegistry) -> dict:
    t = cfg.training
    return {
        **{f"lgb_{k}": v for k, v in t.lightgbm.model_dump().items()},
        "horizon_months": t.horizon_months, "test_snapshots": t.test_snapshots,
        "valid_snapshots": t.valid_snapshots, "pd_floor": t.pd_floor, "seed": t.seed,
        "refit_with_validation": t.refit_with_validation, "refit_max_shift": t.refit_max_shift,
        "scorecard_pdo": t.scorecard.pdo, "scorecard_base_points": t.scorecard.base_points,
        "scorecard_base_odds": t.scorecard.base_odds, "n_features": len(registry),
    }


def _fitted_params(bundle: ModelBundle) -> dict:
    """What the fit chose: calibration, which rows the final trees learnt, rows per leaf."""
    meta = bundle.metadata
    return {"calibration": meta["calibration"], "final_fit": meta["final_fit"],
            "lgb_min_child_samples": meta["min_child_samples"]}


def report_figures(bundle: ModelBundle, test: pd.DataFrame, by_grade: pd.DataFrame, seed: int = 0,
                   shap_rows: int = 1000) -> dict:
    """The run's plots: ROC, KS, calibration, grades, importance and a TreeSHAP summary (on a
    sample of the test window: exact TreeSHAP costs milliseconds per row)."""
    from . import report

    y = test[LABEL].to_numpy()
    X = bundle.matrix(test)
    pds = {"model": bundle.model_pd(X), "scorecard": bundle.scorecard_pd(test)}
    if TRUE_PD in test.columns and test[TRUE_PD].notna().all():
        pds["true PD"] = test[TRUE_PD].to_numpy()
    rows = np.random.default_rng(seed).choice(len(test), size=min(shap_rows, len(test)), replace=False)
    names = bundle.registry.names
    return {
        "plots/roc.png": report.roc_figure(y, pds),
        "plots/ks.png": report.ks_figure(y, pds["model"]),
        "plots/calibration.png": report.calibration_figure(y, pds),
        "plots/grades.png": report.grade_figure(by_grade),
        "plots/feature_importance.png": report.importance_figure(names, bundle.booster.feature_importance("gain")),
        "plots/shap_summary.png": report.shap_summary_figure(names, bundle.contributions(X[rows]), X[rows], seed=seed),
    }


def book_limitations(metrics: dict[str, float]) -> list[str]:
    out = [
        "12-month PD of customers trading on the as-of date; not for customers in default or with no trade yet.",
        "Customers without filed statements are scored on payment behaviour and industry alone.",
        "Monotone in every feature with a declared direction; the scorecard fallback ranks less well "
        + (f"({metrics['scorecard_test_auc'] / metrics['test_auc']:.3f} of the model's AUC)." if "scorecard_test_auc" in metrics else "."),
        "Validated out of time on the newest snapshots, with no training or validation outcome known after the "
        "first test date (the embargo); `riskcast backtest` gives the walk-forward figures. Watch drift before "
        "trusting it on a changed book.",
    ]
    if "oracle_test_auc" in metrics:
        out.append("Synthetic book: the true PD knows a firm's distress from its first day, before any invoice "
                   "falls due unpaid; no model of observable data reaches it.")
    return out


def _reference(bundle: ModelBundle, test: pd.DataFrame) -> pd.DataFrame:
    scored = bundle.score_frame(test)
    return pd.concat([test.reset_index(drop=True), scored.reset_index(drop=True)], axis=1)


def record_coverage(bundle: ModelBundle, split: Split) -> None:
    """The share of fitting rows on which each feature is known, kept with the bundle: what
    ``serving.model_fit`` compares the data a rescore reads with."""
    fitted = pd.concat([split.train, split.valid], ignore_index=True)
    bundle.metadata[COVERAGE_KEY] = feature_coverage(fitted, bundle.registry.names)


def book_split(data: pd.DataFrame, cfg: RiskcastConfig) -> Split:
    """The labelled snapshots of a book split out of time, with the configured embargo: no
    training or validation outcome known after the first test date."""
    t = cfg.training
    return split_out_of_time(data, t.valid_snapshots, t.test_snapshots, horizon_months=t.horizon_months,
                             embargo_months=t.embargo_months, embargo_validation=t.embargo_validation)


def check_scale_against_champion(cfg: RiskcastConfig) -> None:
    """Refuse a master scale that takes the champion's scale version with other edges: grades of
    one version must mean one PD range, so changed edges need a new ``master_scale.version``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(cfg.serving.model_name, tracking.CHAMPION)
        tags = client.get_run(mv.run_id).data.tags
    except MlflowException:
        return  # no champion (or no registry entry yet): nothing to agree with
    theirs, mine = tags.get("master_scale_version"), scale_fingerprint(cfg.master_scale)
    if theirs == cfg.master_scale.version and tags.get("master_scale_fingerprint") not in (None, mine):
        raise InputError(f"master_scale.version: {theirs!r} is the scale of champion v{mv.version}, with other edges "
                         f"(fingerprint {tags['master_scale_fingerprint']}, these {mine}); a changed scale needs a new "
                         f"version", field="master_scale.version")


def train_on_book(tables: RawTables, cfg: RiskcastConfig, workdir: Path, *, experiment: str = "riskcast-book",
                  progress: Progress | None = None, tune: int = 0) -> TrainOutcome:
    """Quarterly snapshots -> labels -> embargoed out-of-time split -> bundle -> MLflow run and
    registry (the work directory's, unless ``MLFLOW_TRACKING_URI`` names a server). ``tune`` > 0
    first searches that many LightGBM settings on the validation window (each a nested run).
    The scored test window travels with the bundle: the reference monitoring compares with."""
    say = progress or (lambda _m: None)
    uri = tracking.configure(workdir)
    say(f"MLflow tracking at {uri}")
    check_scale_against_champion(cfg)
    registry = default_registry()
    data = labelled_snapshots(tables, cfg.training, registry, progress=say)
    split = book_split(data, cfg)
    say(f"out of time: train {split.windows()['train_window']}, validation {split.windows()['valid_window']}, "
        f"test {split.windows()['test_window']} (embargo {split.embargo_months} months)")
    trials = []
    if tune > 0:
        best, trials = search_settings(split, registry, cfg.training.lightgbm, tune, seed=cfg.training.seed, progress=say)
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"lightgbm": best})})
    bundle = fit_bundle(split, registry, cfg.training, cfg.master_scale, progress=say)
    record_coverage(bundle, split)
    metrics = evaluate_bundle(bundle, split.test)
    y_test = split.test[LABEL].to_numpy()
    by_grade = calibration_by_grade(bundle, y_test, bundle.model_pd(bundle.matrix(split.test)))
    say("plots and the model card")
    figures = report_figures(bundle, split.test, by_grade, seed=cfg.training.seed)
    params = {**_params(cfg, registry), **_fitted_params(bundle), "tune_trials": tune}
    say("logging the run and registering the bundle in MLflow")
    exp_id = tracking.ensure_experiment(experiment, workdir)
    notes = tables.notes
    tags = {"data_source": "book", "label_source": notes.label_source, "label": notes.label,
            "training_fingerprint": tracking.fingerprint(data.drop(columns=[TRUE_PD, HINDSIGHT_PD], errors="ignore")),
            **{k: v for k, v in split.windows().items()}}
    # what a validator checks first: no outcome the fit knew reaches into the test window
    overlap = outcome_overlap(split, cfg.training.horizon_months)
    tags.update({"master_scale_version": cfg.master_scale.version,
                 "master_scale_fingerprint": scale_fingerprint(cfg.master_scale),
                 "outcome_overlap": str(overlap["overlap"]).lower(),
                 "train_outcome_end": overlap["train_outcome_end"], "valid_outcome_end": overlap["valid_outcome_end"]})
    bundle.metadata.update({"metrics": metrics, "training_fingerprint": tags["training_fingerprint"],
                            "label_source": notes.label_source, "label": notes.label,
                            "outcome_overlap": overlap})

    def card(gate: dict, run_id: str, version: str) -> str:
        return model_card(
            name=cfg.serving.model_name, version=version, run_id=run_id,
            windows={"default label": notes.label, **{f"data note {i}": line for i, line in enumerate(notes.lines(label=False), 1)},
                     **split.windows(), "outcomes known to the fit": f"training to {overlap['train_outcome_end']}, "
                     f"validation to {overlap['valid_outcome_end']}; first test date {overlap['first_test']}"},
            fingerprint=tags["training_fingerprint"],
            n_rows={"train": len(split.train), "validation": len(split.valid), "test": len(split.test)},
            features=registry.names, params=params, metrics=metrics, by_grade=by_grade, gate=gate,
            limitations=book_limitations(metrics))

    reference = _reference(bundle, split.test)
    run = tracking.log_and_register(
        bundle, experiment_id=exp_id, model_name=cfg.serving.model_name, params=params,
        metrics=metrics, tags=tags, sample=split.test, max_auc_drop=cfg.training.promotion_max_auc_drop,
        min_auc=cfg.training.promotion_min_auc, max_rejected_share=cfg.training.promotion_max_rejected_share,
        artifacts={"calibration_by_grade.csv": by_grade.to_csv(index=False, float_format="%.6g")}, test=split.test,
        figures=figures, card=card, trials=trials, run_name=f"train {tables.data_end.date()}",
        reference=reference)
    return TrainOutcome(run, metrics, bundle, reference)


# -- a user's own feature table -----------------------------------------------------------------

def is_categorical_column(values: pd.Series) -> bool:
    """Whether a table's column holds categories: text, pandas categories or booleans."""
    t = pd.api.types
    return (t.is_bool_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype)
            or t.is_object_dtype(values) or t.is_string_dtype(values))


def table_registry(df: pd.DataFrame, target: str, exclude: list[str]) -> FeatureRegistry:
    """Every column but the target, id and time columns becomes a feature: a numeric one a
    number, a text, category or boolean one a categorical feature (``Feature.dtype``
    "category"). A column of dates, or of text with a different value in every row (an id),
    is refused by name."""
    cols = [c for c in df.columns if c not in {target, *exclude}]
    categorical = [c for c in cols if is_categorical_column(df[c])]
    for c in cols:
        if c in categorical:
            if len(df) > 1 and df[c].nunique(dropna=False) == len(df):
                raise DataValidationError("table", c, "has a different value in every row, so no category to learn "
                                          "from (an id? pass it as --id-col or drop it)")
        elif not pd.api.types.is_numeric_dtype(df[c]):
            raise DataValidationError("table", c, f"is neither numbers nor text (dtype {df[c].dtype}; feature "
                                      "columns must be one or the other: pass it as --id-col or --time-col, or drop it)")
    if not cols:
        raise DataValidationError("table", None, "has no feature columns besides the target")
    return FeatureRegistry.for_table(cols, categorical=categorical)


def prepare_table(df: pd.DataFrame, target: str, id_col: str | None, time_col: str | None) -> pd.DataFrame:
    for col, what in ((target, "--target"), (id_col, "--id-col"), (time_col, "--time-col")):
        if col is not None and col not in df.columns:
            raise DataValidationError("table", col, f"column named by {what} is missing (columns: {list(df.columns)[:10]}...)")
    y = pd.to_numeric(df[target], errors="coerce")
    if y.isna().any():
        raise DataValidationError("table", target, f"{int(y.isna().sum())} target value(s) are missing or not numbers")
    values = np.unique(y)
    if not set(values) <= {0, 1}:
        raise DataValidationError("table", target, "target must be 0/1, found "
                                  + ", ".join(f"{float(v):g}" for v in values[:5]) + ("..." if len(values) > 5 else ""))
    if len(values) < 2:
        raise DataValidationError("table", target, f"the target (--target) has only one class ({float(values[0]):g}): "
                                                   "a model needs rows of both 0 and 1")
    out = df.copy()
    out[LABEL] = y.astype("int8")
    if target != LABEL:
        out = out.drop(columns=[target])
    if time_col is not None:
        out["as_of"] = pd.to_datetime(out[time_col], errors="coerce")
        if out["as_of"].isna().any():
            raise DataValidationError("table", time_col, "has values that are not dates")
        if time_col != "as_of":
            out = out.drop(columns=[time_col])
    num = out.select_dtypes(include="number").columns
    out[num] = out[num].replace([np.inf, -np.inf], np.nan)
    return out


def _time_split(df: pd.DataFrame) -> Split:
    """A user's table by its dates: no embargo, since riskcast does not know over which window
    the table's own label was observed (the model card says so)."""
    dates = sorted(df["as_of"].unique())
    if len(dates) >= 3:
        n = len(dates)
        n_test = max(1, round(n * 0.2))
        n_valid = max(1, round(n * 0.15))
        return split_out_of_time(df, n_valid, n_test, embargo_months=0)
    raise InputError("time column: at least 3 distinct dates are needed for an out-of-time split", field="time_col")


def check_folds(y: np.ndarray, folds: int, target: str) -> None:
    """Refuse a fold count the table cannot fill: each stratified fold must test at least one row
    of each class and keep two of each to fit on (its validation part is drawn from them)."""
    if folds < 2:
        raise InputError("--folds: must be at least 2", field="folds")
    if folds > len(y):
        raise InputError(f"--folds: {folds:,} is more than the {len(y):,} rows of the table", field="folds")
    counts = np.bincount(np.asarray(y, dtype="int64"), minlength=2)
    rare = int(np.argmin(counts))
    n = int(counts[rare])
    if n < 3:
        raise DataValidationError("table", target, f"only {n} row(s) of class {rare}: cross-validation needs at "
                                                   "least 3 (one to test and two to fit on in each fold)")
    if folds > n:
        raise InputError(f"--folds: {folds:,} is more than the {n:,} rows of class {rare} (the rarer class): each "
                         "fold needs at least one", field="folds")
    if n - -(-n // folds) < 2:
        raise InputError(f"--folds: {folds:,} folds of the {n:,} rows of class {rare} leave a fold fewer than 2 of "
                         "them to fit on; take more folds", field="folds")


def cross_validate(df: pd.DataFrame, registry: FeatureRegistry, cfg: RiskcastConfig, folds: int,
                   progress: Progress | None = None) -> dict[str, float]:
    """Stratified K-fold: out-of-fold PDs of the model and the scorecard, pooled."""
    say = progress or (lambda _m: None)
    y = df[LABEL].to_numpy()
    oof_model = np.zeros(len(df))
    oof_card = np.zeros(len(df))
    fold_aucs = []
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.training.seed)
    for k, (tr, te) in enumerate(skf.split(df, y), 1):
        train, valid = train_test_split(df.iloc[tr], test_size=0.15, stratify=y[tr], random_state=cfg.training.seed)
        split = Split(train, valid, df.iloc[te])
        bundle = fit_bundle(split, registry, cfg.training, cfg.master_scale)
        oof_model[te] = bundle.model_pd(bundle.matrix(split.test))
        oof_card[te] = bundle.scorecard_pd(split.test)
        fold_aucs.append(binary_metrics(y[te], oof_model[te], "f")["f_auc"])
        say(f"fold {k}/{folds}: AUC {fold_aucs[-1]:.4f}")
    metrics = {**binary_metrics(y, oof_model, "test"), **binary_metrics(y, oof_card, "scorecard_test")}
    metrics["cv_auc"] = float(np.mean(fold_aucs))
    metrics["cv_auc_std"] = float(np.std(fold_aucs))
    return metrics


def train_on_table(df: pd.DataFrame, target: str, cfg: RiskcastConfig, workdir: Path, *, name: str,
                   id_col: str | None = None, time_col: str | None = None, folds: int = 10,
                   progress: Progress | None = None) -> TrainOutcome:
    """With a time column: out-of-time split. Without: stratified K-fold CV, then a final fit."""
    say = progress or (lambda _m: None)
    tracking.configure(workdir)
    data = prepare_table(df, target, id_col, time_col)
    exclude = [c for c in (LABEL, id_col, "as_of") if c]
    registry = table_registry(data, LABEL, exclude)
    say(f"table: {len(data):,} rows, {len(registry)} feature columns, default rate {data[LABEL].mean():.2%}")
    if time_col is not None:
        split = _time_split(data)
        bundle = fit_bundle(split, registry, cfg.training, cfg.master_scale, progress=say)
        record_coverage(bundle, split)
        metrics = evaluate_bundle(bundle, split.test)
        protocol = "out-of-time (no embargo: the label's outcome window is the table's own)"
    else:
        check_folds(data[LABEL].to_numpy(), folds, target)
        metrics = cross_validate(data, registry, cfg, folds, progress=say)
        train, valid = train_test_split(data, test_size=0.15, stratify=data[LABEL], random_state=cfg.training.seed)
        split = Split(train, valid, data)
        say("final fit on the whole table")
        bundle = fit_bundle(split, registry, cfg.training, cfg.master_scale, progress=say)
        record_coverage(bundle, split)
        protocol = f"stratified {folds}-fold cross-validation"
    reference = _reference(bundle, split.test)
    exp_id = tracking.ensure_experiment(f"riskcast-table-{name}", workdir)
    tags = {"data_source": f"table:{name}", "protocol": protocol,
            "training_fingerprint": tracking.fingerprint(data)}
    bundle.metadata.update({"metrics": metrics, "protocol": protocol})
    run = tracking.log_and_register(
        bundle, experiment_id=exp_id, model_name=f"riskcast-table-{name}",
        params={**_params(cfg, registry), **_fitted_params(bundle), "protocol": protocol, "folds": folds if time_col is None else 0},
        metrics=metrics, tags=tags, sample=data, max_auc_drop=cfg.training.promotion_max_auc_drop,
        min_auc=cfg.training.promotion_min_auc, max_rejected_share=cfg.training.promotion_max_rejected_share,
        test=split.test if time_col is not None else None, run_name=f"train-table {name}", reference=reference)
    return TrainOutcome(run, metrics, bundle, reference)
