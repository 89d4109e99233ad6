"""Drift between a reference (the training snapshot) and the current book (the latest rescore).

Our own verdicts (PSI per feature and for the score, missing shares, missing columns) decide
the alert; Evidently's report, with PSI and the same threshold per column, is the readable
detail beside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from riskcast.config import MonitoringConfig
from riskcast.data.io import atomic_path, write_text
from riskcast.errors import DataValidationError, InputError

from .psi import psi, psi_band

EVIDENTLY_MAX_ROWS = 200_000


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    psi: float
    band: str
    drifted: bool
    missing_share_reference: float
    missing_share_current: float


@dataclass(frozen=True)
class DriftSummary:
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
    sampled: bool = False

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drifted_columns"] = self.drifted_columns
        return d


def _check_inputs(reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str], score_column: str) -> None:
    if reference.empty:
        raise InputError("reference: the table has no rows", field="reference")
    if current.empty:
        raise InputError("current: the table has no rows", field="current")
    for col in feature_columns:
        if col not in reference.columns:
            raise DataValidationError("reference", col, "column is missing")
    for name, df in (("reference", reference), ("current", current)):
        if score_column not in df.columns:
            raise DataValidationError(name, score_column, "score column is missing")


def summarize_drift(reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str],
                    config: MonitoringConfig, score_column: str = "pd_12m", grade_column: str | None = "grade") -> DriftSummary:
    """PSI per feature and for the score, missing-share changes, and the alert verdict."""
    _check_inputs(reference, current, feature_columns, score_column)
    present = [c for c in feature_columns if c in current.columns]
    missing = tuple(c for c in feature_columns if c not in current.columns)
    cols = []
    for c in present:
        r, k = reference[c].to_numpy(dtype=float, na_value=np.nan), current[c].to_numpy(dtype=float, na_value=np.nan)
        value = psi(r, k, config.psi_bins)
        band = psi_band(value, config.psi_watch, config.psi_alert)
        mr, mc = float(np.isnan(r).mean()), float(np.isnan(k).mean())
        cols.append(ColumnDrift(c, round(value, 5), band, band == "shift" or abs(mc - mr) > 0.10, mr, mc))
    score_psi = psi(reference[score_column].to_numpy(dtype=float), current[score_column].to_numpy(dtype=float), config.psi_bins)
    score_band = psi_band(score_psi, config.psi_watch, config.psi_alert)
    n_checked = len(feature_columns)
    drifted = [c.column for c in cols if c.drifted] + list(missing)
    share = len(drifted) / n_checked if n_checked else 0.0
    reasons = []
    if score_psi > config.psi_alert:
        reasons.append(f"the score {score_column} shifted: PSI {score_psi:.3f} > {config.psi_alert}")
    if share > config.drift_share_alert:
        reasons.append(f"{share:.0%} of features drifted (> {config.drift_share_alert:.0%}): {', '.join(drifted)}")
    if missing:
        reasons.append(f"columns missing from the current data: {', '.join(missing)}")
    grades: dict[str, dict[str, float]] = {}
    if grade_column and grade_column in reference.columns and grade_column in current.columns:
        rs = reference[grade_column].astype(str).value_counts(normalize=True)
        cs = current[grade_column].astype(str).value_counts(normalize=True)
        for g in sorted(set(rs.index) | set(cs.index), key=lambda x: (len(x), x)):
            grades[g] = {"reference": float(rs.get(g, 0.0)), "current": float(cs.get(g, 0.0))}
    return DriftSummary(len(reference), len(current), tuple(cols), score_column, round(float(score_psi), 5), score_band,
                        round(share, 4), missing, bool(reasons), tuple(reasons), grades)


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], config: MonitoringConfig,
                     seed: int = 0) -> tuple[Any, bool]:
    """Evidently's drift preset with PSI and our alert threshold per column (current first)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    sampled = False
    if len(reference) > EVIDENTLY_MAX_ROWS:
        reference, sampled = reference.sample(EVIDENTLY_MAX_ROWS, random_state=seed), True
    if len(current) > EVIDENTLY_MAX_ROWS:
        current, sampled = current.sample(EVIDENTLY_MAX_ROWS, random_state=seed), True
    cols = list(columns)
    definition = DataDefinition(numerical_columns=cols)
    ref = Dataset.from_pandas(reference[cols].astype(float), data_definition=definition)
    cur = Dataset.from_pandas(current[cols].astype(float), data_definition=definition)
    report = Report([DataDriftPreset(columns=cols, method="psi", threshold=config.psi_alert,
                                     drift_share=config.drift_share_alert)], include_tests=True)
    return report.run(cur, ref), sampled


def evidently_verdicts(snapshot: Any) -> dict[str, bool]:
    """Column -> drifted, read from the snapshot's per-column tests."""
    out = {}
    for t in snapshot.dict().get("tests", []):
        params = t.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and "column" in params:
            out[params["column"]] = t.get("status") == "FAIL"
    return out


def write_drift_report(reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str], out_dir: str | Path,
                       config: MonitoringConfig, score_column: str = "pd_12m", grade_column: str | None = "grade") -> DriftSummary:
    """``drift_report.html`` (Evidently) and ``drift_summary.json`` (our verdicts + Evidently's), atomically."""
    summary = summarize_drift(reference, current, feature_columns, config, score_column, grade_column)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = [c for c in [*feature_columns, score_column] if c in current.columns]
    snapshot, sampled = evidently_report(reference, current, cols, config)
    if sampled:
        summary = DriftSummary(**{**summary.__dict__, "sampled": True})
    with atomic_path(out_dir / "drift_report.html") as tmp:
        snapshot.save_html(str(tmp))
    payload = {**summary.to_dict(), "evidently_drifted": evidently_verdicts(snapshot),
               "evidently": json.loads(snapshot.json())}
    write_text(json.dumps(payload, indent=2, default=str), out_dir / "drift_summary.json")
    return summary
