"""Drift between a reference (the training snapshot) and the current book (the latest rescore).

Our own checks decide the alert: PSI per feature and for the score, the normed Wasserstein
distance per feature, the change in each feature's missing share, and feature columns that
vanished. Both distances ignore the sample size, so a trivial shift in a large book is not
flagged as a p-value test would: PSI sees mass moving between the reference's deciles,
Wasserstein (in reference standard deviations) sees a tail stretching inside one decile, as the
late payers of a recession do while most customers still pay on time. Evidently adds the
readable report, run with the normed Wasserstein distance and our threshold per column so that
its verdicts point the same way (it drops missing values; ours count them through the missing
share); the score keeps its PSI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from riskcast.config import MonitoringConfig
from riskcast.data.io import json_ready, write_text
from riskcast.errors import DataValidationError, InputError
from riskcast.training.masterscale import grade_key, grade_migration, scale_difference, table_scales

from .psi import psi, psi_band

#: above this many rows a side is sampled for Evidently (our PSI always uses every row)
EVIDENTLY_MAX_ROWS = 200_000
#: a feature whose missing share moves by more than this (absolute) has drifted
MISSING_SHARE_JUMP = 0.10

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class ColumnDrift:
    """One feature's verdict; shares count NaN and +-inf as missing."""

    column: str
    psi: float
    band: str
    drifted: bool
    missing_share_reference: float
    missing_share_current: float
    #: Wasserstein distance over the reference's standard deviation (NaN: a side has no values)
    wasserstein: float = float("nan")


@dataclass(frozen=True)
class DriftSummary:
    """Everything `riskcast monitor` decides; ``to_dict`` is the JSON form."""

    n_reference: int
    n_current: int
    columns: tuple[ColumnDrift, ...]
    score_column: str
    score_psi: float
    score_band: str
    drift_share: float
    missing_columns: tuple[str, ...]
    alert: bool
    alert_reasons: tuple[str, ...]
    grade_distribution: dict[str, dict[str, float]] = field(default_factory=dict)
    grade_migration: dict[str, Any] = field(default_factory=dict)
    #: the scales the two sides' grades are on, and whether their grades may be compared
    grade_scale: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drifted_columns": self.drifted_columns}


# ---------------------------------------------------------------------------- checks


def _feature_list(feature_columns: Sequence[str], score_column: str) -> list[str]:
    """Unique feature names in order; the score is judged on its own, not as a feature."""
    if isinstance(feature_columns, str):
        raise TypeError("feature_columns must be a sequence of column names, not one string")
    return [c for c in dict.fromkeys(feature_columns) if c != score_column]


def _check_inputs(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                  score_column: str, config: MonitoringConfig) -> None:
    """Caller mistakes we refuse: empty tables, features the reference lacks, no score."""
    if not isinstance(config, MonitoringConfig):
        raise TypeError(f"config must be a MonitoringConfig, got {type(config).__name__}")
    for name, df in (("reference", reference), ("current", current)):
        if len(df) == 0:
            raise InputError(f"{name}: the table has no rows", field=name)
    for col in features:
        if col not in reference.columns:
            raise DataValidationError("reference", col, "column is missing")
    for name, df in (("reference", reference), ("current", current)):
        if score_column not in df.columns:
            raise DataValidationError(name, score_column, "score column is missing")


def _numeric(df: pd.DataFrame, table: str, col: str) -> np.ndarray:
    """One column as floats, NaN for missing and +-inf; a non-numeric column is bad data."""
    s = df[col]
    if isinstance(s, pd.DataFrame):
        raise DataValidationError(table, col, "column appears more than once")
    if not (is_numeric_dtype(s) or is_bool_dtype(s)):
        try:
            s = pd.to_numeric(s)
        except (ValueError, TypeError):
            raise DataValidationError(table, col, f"column is not numeric (dtype {s.dtype})") from None
    arr = s.to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(arr), arr, np.nan)


# ---------------------------------------------------------------------------- our verdicts


def wasserstein_1(ref: np.ndarray, cur: np.ndarray) -> float:
    """The Wasserstein-1 distance of two samples: the area between their distribution functions.

    Each side is sorted once and the two sorted runs merged (a stable sort of two runs is a
    linear merge): 0.12 s against 0.82 s for ``scipy.stats.wasserstein_distance`` on a million
    rows a side.
    """
    rs, cs = np.sort(ref), np.sort(cur)
    both = np.concatenate([rs, cs])
    order = np.argsort(both, kind="stable")
    values = both[order]
    from_ref = order < rs.size
    gap = np.cumsum(from_ref)[:-1] / rs.size - np.cumsum(~from_ref)[:-1] / cs.size
    return float(np.sum(np.abs(gap) * np.diff(values)))


def wasserstein_normed(ref: np.ndarray, cur: np.ndarray) -> float:
    """Wasserstein-1 distance between the present values, over the reference's standard
    deviation (at least 0.001, as Evidently does); NaN when a side has no values."""
    r, c = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if not (r.size and c.size):
        return float("nan")
    return wasserstein_1(r, c) / max(float(np.std(r)), 0.001)


def _column_drift(col: str, ref: np.ndarray, cur: np.ndarray, config: MonitoringConfig) -> ColumnDrift:
    value = psi(ref, cur, config.psi_bins)
    band = psi_band(value, config.psi_watch, config.psi_alert)
    mr, mc = float(np.isnan(ref).mean()), float(np.isnan(cur).mean())
    wd = wasserstein_normed(ref, cur)
    drifted = band == "shift" or wd > config.wasserstein_alert or abs(mc - mr) > MISSING_SHARE_JUMP
    return ColumnDrift(col, value, band, bool(drifted), mr, mc, wd)


def _describe(c: ColumnDrift) -> str:
    """``name (PSI 0.41, Wasserstein 0.23 sd)``, or the missing shares when those moved more."""
    if abs(c.missing_share_current - c.missing_share_reference) > MISSING_SHARE_JUMP:
        return f"{c.column} (missing {c.missing_share_reference:.0%} -> {c.missing_share_current:.0%})"
    return f"{c.column} (PSI {c.psi:.2f}, Wasserstein {c.wasserstein:.2f} sd)"


def _alert_reasons(cols: Sequence[ColumnDrift], score_column: str, score_psi: float, drift_share: float,
                   missing: Sequence[str], config: MonitoringConfig) -> tuple[str, ...]:
    """One sentence per alert condition, naming the columns behind it."""
    drifted = [c for c in cols if c.drifted]
    names = ", ".join(_describe(c) for c in drifted)
    reasons = []
    if score_psi > config.psi_alert:
        tail = f"; drifted features: {names}" if drifted else "; no single feature drifted"
        reasons.append(f"the score {score_column} shifted: PSI {score_psi:.3f} > {config.psi_alert:g}{tail}")
    if drift_share > config.drift_share_alert:
        reasons.append(f"{len(drifted)} of {len(cols)} features drifted ({drift_share:.0%} > "
                       f"{config.drift_share_alert:.0%}): {names}")
    if missing:
        reasons.append(f"{len(missing)} feature column(s) missing from the current table: {', '.join(missing)}")
    return tuple(reasons)


def _grade_distribution(reference: pd.DataFrame, current: pd.DataFrame, grade_column: str | None) -> dict[str, dict[str, float]]:
    """Share of each grade on both sides (``missing`` for rows without one); {} without grades."""
    if not grade_column or grade_column not in reference.columns or grade_column not in current.columns:
        return {}

    def shares(s: pd.Series) -> dict[str, float]:
        labels = s.astype(object).where(s.notna(), "missing").astype(str)
        return labels.value_counts(normalize=True).to_dict()

    r, c = shares(reference[grade_column]), shares(current[grade_column])
    return {g: {"reference": float(r.get(g, 0.0)), "current": float(c.get(g, 0.0))}
            for g in sorted(set(r) | set(c), key=grade_key)}


#: how the two sides are named when their grades are on different scales
SIDE_NAMES = ("the reference", "the current table")


def _grade_scale(reference: pd.DataFrame, current: pd.DataFrame, grade_column: str | None) -> dict[str, Any]:
    """The scale versions of both sides' grades (``scale_version`` columns) and, when they
    differ, why the grade distributions and the migration are not comparable; {} without grades."""
    if not grade_column or grade_column not in reference.columns or grade_column not in current.columns:
        return {}
    ref, cur = table_scales(reference), table_scales(current)
    note = scale_difference(ref, cur, SIDE_NAMES)
    return {"reference": [None if t is None else t.version for t in ref],
            "current": [None if t is None else t.version for t in cur],
            "comparable": note is None, "note": note}


def summarize_drift(reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str],
                    config: MonitoringConfig, score_column: str = "pd_12m",
                    grade_column: str | None = "grade") -> DriftSummary:
    """Our drift verdict (pure: no I/O, no Evidently).

    A feature drifted when its PSI is in the ``shift`` band, its normed Wasserstein distance is
    above ``config.wasserstein_alert`` or its missing share moved by more than 0.10;
    ``drift_share`` is over the features present in both tables. Alert when the
    score shifted, the drift share is above ``config.drift_share_alert``, or a feature column
    is missing from the current table (a broken pipeline, not a changed population).

    Grades are compared only on the same scale: when the sides' ``scale_version`` columns
    differ (or one side records none), ``grade_scale`` says so, the distributions are shown
    side by side under that note, and the migration is refused with the reason. No alert:
    a new scale is not drift.
    """
    features = _feature_list(feature_columns, score_column)
    _check_inputs(reference, current, features, score_column, config)
    present = [c for c in features if c in current.columns]
    missing = tuple(c for c in features if c not in current.columns)
    cols = tuple(_column_drift(c, _numeric(reference, "reference", c), _numeric(current, "current", c), config)
                 for c in present)
    score_psi = psi(_numeric(reference, "reference", score_column), _numeric(current, "current", score_column),
                    config.psi_bins)
    share = sum(c.drifted for c in cols) / len(cols) if cols else 0.0
    reasons = _alert_reasons(cols, score_column, score_psi, share, missing, config)
    return DriftSummary(
        n_reference=len(reference), n_current=len(current), columns=cols, score_column=score_column,
        score_psi=score_psi, score_band=psi_band(score_psi, config.psi_watch, config.psi_alert),
        drift_share=share, missing_columns=missing, alert=bool(reasons), alert_reasons=reasons,
        grade_distribution=_grade_distribution(reference, current, grade_column),
        grade_migration=grade_migration(reference, current, grade_column, names=SIDE_NAMES),
        grade_scale=_grade_scale(reference, current, grade_column),
    )


# ---------------------------------------------------------------------------- Evidently


def _evidently_frames(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Float copies of the columns that both sides hold with at least one value.

    Evidently silently ignores what is missing but raises on a column with no values at all;
    such columns are already judged by our own summary.
    """
    ref, cur = {}, {}
    for c in columns:
        if c in reference.columns and c in current.columns:
            r, k = _numeric(reference, "reference", c), _numeric(current, "current", c)
            if not (np.isnan(r).all() or np.isnan(k).all()):
                ref[c], cur[c] = r, k
    return pd.DataFrame(ref, index=reference.index), pd.DataFrame(cur, index=current.index)


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str],
                     score_column: str, config: MonitoringConfig) -> Any:
    """Evidently's snapshot: the drift preset over the features and a value drift for the score.

    Every feature uses the normed Wasserstein distance with ``config.wasserstein_alert`` as its
    threshold and the preset's drift share is ``config.drift_share_alert``, so Evidently's
    verdicts follow ours; the score has its own metric (PSI, ``config.psi_alert``) so that it
    does not count in the features' drift share.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = _feature_list(feature_columns, score_column)
    _check_inputs(reference, current, [c for c in features if c in reference.columns], score_column, config)
    ref, cur = _evidently_frames(reference, current, [*features, score_column])
    if ref.columns.empty:
        raise InputError("no column holds values in both tables; nothing for Evidently to compare",
                         field="columns")
    definition = DataDefinition(numerical_columns=list(ref.columns))
    checked = [c for c in features if c in ref.columns]
    metrics: list[Any] = []
    if checked:
        metrics.append(DataDriftPreset(columns=checked, per_column_method={c: "wasserstein" for c in checked},
                                       per_column_threshold={c: config.wasserstein_alert for c in checked},
                                       drift_share=config.drift_share_alert))
    if score_column in ref.columns:
        metrics.append(ValueDrift(column=score_column, method="psi", threshold=config.psi_alert))
    report = Report(metrics, include_tests=True)
    # Evidently takes the current data first
    return report.run(Dataset.from_pandas(cur, data_definition=definition),
                      Dataset.from_pandas(ref, data_definition=definition))


def evidently_verdicts(snapshot_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Column -> Evidently's drift value (``value``: the distance its method measured) and verdict,
    read from a snapshot's ``dict()``.

    Each ``ValueDrift`` metric has one test; its status is ``FAIL`` when drift was detected.
    """
    scores = {m.get("id"): m.get("value") for m in snapshot_dict.get("metrics", [])}
    out: dict[str, dict[str, Any]] = {}
    for test in snapshot_dict.get("tests", []):
        cfg = test.get("metric_config", {})
        params = cfg.get("params", {})
        if params.get("type") == _VALUE_DRIFT and "column" in params:
            out[params["column"]] = {"value": scores.get(cfg.get("metric_id")), "method": params.get("method"),
                                     "threshold": params.get("threshold"), "drifted": test.get("status") == "FAIL"}
    return out


def _sample(df: pd.DataFrame, max_rows: int, seed: int) -> tuple[pd.DataFrame, bool]:
    """At most ``max_rows`` rows, drawn reproducibly; the table itself when it is small enough."""
    return (df.sample(n=max_rows, random_state=seed), True) if len(df) > max_rows else (df, False)


def write_drift_report(reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str],
                       out_dir: str | Path, config: MonitoringConfig, score_column: str = "pd_12m",
                       grade_column: str | None = "grade", *, max_rows: int = EVIDENTLY_MAX_ROWS,
                       seed: int = 0, summary: DriftSummary | None = None,
                       extra: dict[str, Any] | None = None) -> DriftSummary:
    """Write ``drift_report.html`` (Evidently), ``summary.html`` (one page of verdicts) and
    ``drift_summary.json``; return our summary.

    The JSON holds our summary (``summary`` when the caller computed it already), ``sampled``
    (whether Evidently saw a sample of a side larger than ``max_rows``), Evidently's per-column
    verdicts, its snapshot under ``evidently``, and ``extra`` (the backtest, the severe alert).
    Everything is rendered before anything is written, and each file is replaced atomically.
    """
    from .page import summary_page

    if summary is None:
        summary = summarize_drift(reference, current, feature_columns, config, score_column, grade_column)
    ref, ref_sampled = _sample(reference, max_rows, seed)
    cur, cur_sampled = _sample(current, max_rows, seed)
    snapshot = evidently_report(ref, cur, feature_columns, score_column, config)
    html = snapshot.get_html_str(as_iframe=False)
    evidently = json.loads(snapshot.json())
    payload = json_ready({
        **summary.to_dict(),
        **(extra or {}),
        "sampled": ref_sampled or cur_sampled,
        "evidently_rows": {"reference": len(ref), "current": len(cur)},
        "evidently_verdicts": evidently_verdicts(evidently),
        "evidently": evidently,
    })
    text = json.dumps(payload, indent=2, allow_nan=False)
    page = summary_page(payload)
    out_dir = Path(out_dir)
    write_text(html, out_dir / "drift_report.html")
    write_text(page, out_dir / "summary.html")
    write_text(text, out_dir / "drift_summary.json")
    return summary
