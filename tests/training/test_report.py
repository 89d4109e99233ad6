"""The run's plots and model card: built from arrays, and saying what the numbers say."""

import io

import numpy as np
import pandas as pd

from riskcast.training import report
from riskcast.training.evaluation import grade_table


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_every_plot_renders_from_plain_arrays():
    rng = np.random.default_rng(0)
    p = rng.beta(0.7, 30, 3000)
    y = (rng.random(p.size) < p).astype(int)
    grades = np.where(p < 0.01, "1", np.where(p < 0.03, "2", "3"))
    table = grade_table(y, p, grades, ["1", "2", "3"]).assign(band=["A", "B", "C"])
    X = rng.normal(size=(300, 4))
    X[::7, 2] = np.nan
    figs = [report.roc_figure(y, {"model": p, "true PD": np.clip(p * 1.1, 0, 1)}), report.ks_figure(y, p),
            report.calibration_figure(y, {"model": p}), report.grade_figure(table),
            report.importance_figure(["a", "b", "c", "d"], np.array([3.0, 1.0, 0.0, 2.0])),
            report.shap_summary_figure(["a", "b", "c", "d"], rng.normal(size=(300, 4)), X)]
    for fig in figs:
        assert _png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_model_card_reports_the_ceiling_the_champion_and_every_grade():
    table = pd.DataFrame({"grade": ["1", "2"], "band": ["A", "E"], "rows": [900, 100], "share": [0.9, 0.1],
                          "defaults": [9, 20], "observed_dr": [0.01, 0.2], "mean_pd": [0.01, 0.1],
                          "jeffreys_p": [0.5, 0.0004], "binomial_p": [0.5, 0.0006], "jeffreys_rejected": [False, True]})
    metrics = {f"{p}_{k}": v for p, auc, brier in (("test", 0.76, 0.02), ("oracle_test", 0.80, 0.016),
                                                   ("scorecard_test", 0.74, 0.021))
               for k, v in (("auc", auc), ("gini", 2 * auc - 1), ("ks", 0.4), ("brier", brier),
                            ("logloss", 0.09), ("ece", 0.003), ("jeffreys_rejected_share", 0.5))}
    card = report.model_card(name="riskcast-pd", version="3", run_id="abc", windows={"test_window": "2024-10-01..2025-01-01"},
                             fingerprint="f00", n_rows={"train": 10, "validation": 5, "test": 5}, features=["a", "b"],
                             params={"seed": 42}, metrics=metrics, by_grade=table,
                             gate={"passed": False, "reason": "test_auc 0.7600 vs champion v2 0.7700: fails"},
                             limitations=["not for defaulted customers"])
    assert card.startswith("# Model card: riskcast-pd v3")
    assert "AUC 0.950 of the true PD's, Brier 1.250 times" in card
    assert "challenger only" in card and "vs champion v2" in card
    assert "| 2 | E | 100 | 10.0% | 20 | 20.00% | 10.00% | 0.0004 | 0.0006 |" in card
    assert "`f00`" in card and "- not for defaulted customers" in card
