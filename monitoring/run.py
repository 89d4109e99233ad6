"""One monitoring run: drift of the current book against the champion's reference, the backtest
on matured outcomes when asked for, the severe alert and, with it, the fallback switch.

What ``riskcast monitor`` does, as a function (the command parses and prints): a scheduler or a
notebook calling ``monitor`` gets the same report, the same verdict and the same switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from riskcast.config import RiskcastConfig, WorkPaths
from riskcast.errors import InputError

from .alerts import severe_reasons
from .backtest import Backtest, backtest, hanley_mcneil_se, matured_outcomes
from .drift import DriftSummary, summarize_drift, write_drift_report

Progress = Callable[[str], None]

#: what monitoring reads of a table besides the registry's features
MONITORED_EXTRA = ("customer_id", "as_of", "pd_12m", "grade", "band", "default_12m", "scale_version",
                   "scale_fingerprint")


@dataclass(frozen=True)
class Labels:
    """The backtest's inputs: the defaults table, the scored book to judge (None: the current
    table), the date up to which the defaults are complete (None: today) and the AUC at
    validation (None: the reference's own)."""

    defaults: Path
    scored: Path | None = None
    as_of: pd.Timestamp | None = None
    validation_auc: float | None = None


@dataclass(frozen=True)
class MonitorOutcome:
    reference: str
    drift: DriftSummary
    backtest: Backtest | None
    left_out: dict[str, int] | None
    alerts: list[str]
    severe: tuple[str, ...]
    #: what happened to the fallback switch (None: nothing)
    switch_note: str | None
    out: Path

    @property
    def alert(self) -> bool:
        return bool(self.alerts)


def champion_reference(cfg: RiskcastConfig, paths: WorkPaths) -> tuple[Path, str]:
    """The reference of the model serving now (``<model_name>@<alias>``): the scored test window
    its training run logged with its bundle, so a challenger that failed the gate never changes
    what monitoring compares with. Returns the file and a label naming the version."""
    from riskcast.serving.runtime import cache_version, resolve_champion
    from riskcast.training import tracking

    tracking.configure(paths.root)
    # the version's local copy, as the service keeps it (the model itself is not loaded)
    version, error = resolve_champion(cfg, paths)
    if version is None:
        raise InputError(f"reference: no --reference given and {error}", field="reference")
    name = cfg.serving.model_name
    path = tracking.reference_path(cache_version(name, version, paths.model_cache / name) / "bundle")
    if not path.exists():
        raise InputError(f"reference: {name} v{version} was trained before references travelled "
                         f"with the model and carries none; give --reference (a scored test window)",
                         field="reference")
    return path, f"{name} v{version} ({cfg.serving.alias})"


def _validation_auc(labels: Labels, ref: pd.DataFrame) -> tuple[float, float]:
    if labels.validation_auc is not None:
        if not 0.0 < labels.validation_auc <= 1.0:
            raise InputError(f"validation_auc: {labels.validation_auc} is not an AUC in (0, 1]", field="validation_auc")
        return labels.validation_auc, 0.0
    if {"default_12m", "pd_12m"} <= set(ref.columns) and ref["default_12m"].nunique() == 2:
        from sklearn.metrics import roc_auc_score

        y = ref["default_12m"].to_numpy()
        auc = float(roc_auc_score(y, ref["pd_12m"].to_numpy(dtype=float)))
        return auc, hanley_mcneil_se(auc, int(y.sum()), int(len(y) - y.sum()))
    raise InputError("validation_auc: the reference holds no outcomes (default_12m) to take the AUC at "
                     "validation from; give --validation-auc", field="validation_auc")


def book_backtest(labels: Labels, ref: pd.DataFrame, cur: pd.DataFrame, cfg: RiskcastConfig,
                  progress: Progress | None = None) -> tuple[Backtest, dict[str, int]]:
    """The scored book of ``labels.scored`` (default: the current table) against the defaults
    table, discrimination judged against the reference's AUC at validation."""
    from riskcast.data.io import read_any
    from riskcast.training.masterscale import grade_key, table_scales

    say = progress or (lambda _m: None)
    scored = read_any(labels.scored, columns=MONITORED_EXTRA) if labels.scored else cur
    as_of = labels.as_of if labels.as_of is not None else pd.Timestamp.today().normalize()
    rows, left_out = matured_outcomes(scored, read_any(labels.defaults), as_of, cfg.training.horizon_months)
    if left_out["defaulted_before"]:
        say(f"backtest: {left_out['defaulted_before']:,} row(s) left out: the customer had defaulted by the "
            f"date it was scored")
    if left_out["no_pd"]:
        say(f"backtest: {left_out['no_pd']:,} row(s) left out: scored without a PD")
    scales = table_scales(rows)  # by version and by edges: one version may have had other edges
    if len(scales) > 1:
        listed = ", ".join("no recorded scale" if t is None else f"{t.version} ({t.fingerprint})" for t in scales)
        raise InputError(f"backtest: the scored rows are graded on several master scales ({listed}); grades of "
                         f"different scales are not the same PD ranges: backtest each scale's rows on their own",
                         field="backtest")
    ref_auc, ref_se = _validation_auc(labels, ref)
    grades = rows["grade"].astype(str)
    say(f"backtest: {len(rows):,} scored rows with matured outcomes")
    return backtest(rows["default_12m"].to_numpy(), rows["pd_12m"].to_numpy(dtype=float), grades.to_numpy(),
                    sorted(grades.unique(), key=grade_key), ref_auc, cfg.monitoring, ref_se), left_out


def monitor(current: Path, out: Path, cfg: RiskcastConfig, paths: WorkPaths, *, reference: Path | None = None,
            labels: Labels | None = None, who: str = "riskcast monitor",
            progress: Progress | None = None) -> MonitorOutcome:
    """Drift of ``current`` against ``reference`` (default: the champion's), the backtest with
    ``labels``, the report in ``out``; on a severe alert (stricter than an ordinary one) the
    fallback switch of ``paths`` is set, unless ``cfg.monitoring.switch`` is off."""
    from riskcast.data.io import read_any
    from riskcast.features.registry import default_registry
    from riskcast.serving.switch import FallbackSwitch

    say = progress or (lambda _m: None)
    if reference is None:
        reference, label = champion_reference(cfg, paths)
        say(f"reference: the champion's, {label}")
    else:
        label = str(reference)
    features = default_registry().names
    wanted = [*features, *MONITORED_EXTRA]  # not the reason texts: most of a scored book's size
    ref, cur = read_any(reference, columns=wanted), read_any(current, columns=wanted)
    say(f"drift: reference {len(ref):,} rows vs current {len(cur):,} rows")
    summary = summarize_drift(ref, cur, features, cfg.monitoring)
    bt, left_out = book_backtest(labels, ref, cur, cfg, say) if labels is not None else (None, None)
    severe = severe_reasons(summary, bt, cfg.monitoring)
    alerts = [*summary.alert_reasons, *(f"red backtest: {r}" for r in (bt.reasons() if bt else []))]
    switch_note = None
    if severe and cfg.monitoring.switch:
        switch = FallbackSwitch(paths.fallback_switch)
        before = switch.state()
        if before is not None and before.active:
            switch_note = f"already in fallback mode ({before.fallback_reason})"
        else:
            state = switch.set("severe monitoring alert: " + "; ".join(severe), by=who)
            switch_note = (f"set by {state.set_by} at {state.at}: order entry is decided by the scorecard until "
                           f"someone runs riskcast monitor --clear --reason ...")
    extra: dict[str, Any] = {"alert": bool(alerts), "alert_reasons": alerts, "reference": label,
                             "backtest": {**bt.to_dict(), "left_out": left_out} if bt else None,
                             "severe_reasons": list(severe), "fallback_switch": switch_note}
    say("drift: Evidently report and summary page")
    write_drift_report(ref, cur, features, out, cfg.monitoring, summary=summary, extra=extra)
    return MonitorOutcome(label, summary, bt, left_out, alerts, severe, switch_note, out)


def check_labels_options(labels: Path | None, backtest_scored: Path | None, labels_as_of: Any,
                         validation_auc: float | None) -> None:
    """The backtest's options need the defaults table."""
    if labels is None and (backtest_scored or labels_as_of or validation_auc is not None):
        raise InputError("labels: --backtest, --labels-as-of and --validation-auc need --labels", field="labels")

