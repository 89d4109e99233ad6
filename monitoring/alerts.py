"""The severe alert: when monitoring stops trusting the model and order entry should be
decided by the scorecard until a person has looked (a pure decision; the switch is moved by
the application)."""

from __future__ import annotations

from riskcast.config import MonitoringConfig

from .backtest import Backtest
from .drift import DriftSummary


def severe_reasons(drift: DriftSummary | None, backtest: Backtest | None, config: MonitoringConfig) -> tuple[str, ...]:
    """One sentence per severe condition: the score shifted (PSI above
    ``severe_score_psi``), too many features drifted (above ``severe_drift_share``), or the
    backtest is red (when ``severe_on_red_backtest``). Empty: no reason to leave the model."""
    out = []
    if drift is not None:
        if drift.score_psi > config.severe_score_psi:
            out.append(f"score PSI {drift.score_psi:.3f} > {config.severe_score_psi:g}")
        if drift.drift_share > config.severe_drift_share:
            out.append(f"{drift.drift_share:.0%} of features drifted (> {config.severe_drift_share:.0%}): "
                       + ", ".join(drift.drifted_columns))
    if backtest is not None and config.severe_on_red_backtest and backtest.light == "red":
        out.append("red backtest: " + "; ".join(backtest.reasons()))
    return tuple(out)
