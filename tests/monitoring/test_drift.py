import json

import numpy as np
import pandas as pd
import pytest

from riskcast.config import MonitoringConfig
from riskcast.errors import DataValidationError
from riskcast.monitoring.drift import summarize_drift, write_drift_report

CFG = MonitoringConfig()
COLS = ["a", "b", "c", "d"]


def _frame(seed, n=4000, shift=0.0, score_scale=1.0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.normal(size=n) for c in COLS})
    df["a"] += shift
    df["pd_12m"] = np.clip(rng.beta(1, 40, n) * score_scale, 0, 1)
    df["grade"] = np.where(df["pd_12m"] > 0.05, "9", "3")
    return df


def test_same_population_raises_no_alert():
    s = summarize_drift(_frame(0), _frame(1), COLS, CFG)
    assert not s.alert and s.drift_share == 0 and s.score_band == "stable"


def test_shifted_feature_and_score_raise_an_alert_naming_them():
    s = summarize_drift(_frame(0), _frame(1, shift=2.0, score_scale=3.0), COLS, CFG)
    assert s.alert
    assert s.drifted_columns == ["a"]
    assert any("pd_12m" in r for r in s.alert_reasons)
    assert s.grade_distribution["9"]["current"] > s.grade_distribution["9"]["reference"]


def test_a_column_missing_from_current_is_an_alert():
    s = summarize_drift(_frame(0), _frame(1).drop(columns=["d"]), COLS, CFG)
    assert s.alert and s.missing_columns == ("d",)
    assert any("d" in r for r in s.alert_reasons)


def test_a_column_missing_from_reference_is_an_input_error():
    with pytest.raises(DataValidationError, match="reference.b"):
        summarize_drift(_frame(0).drop(columns=["b"]), _frame(1), COLS, CFG)


def test_a_jump_in_missing_values_is_drift():
    cur = _frame(1)
    cur.loc[: len(cur) // 4, "c"] = np.nan
    s = summarize_drift(_frame(0), cur, COLS, CFG)
    assert "c" in s.drifted_columns


def test_report_files_and_evidently_agree_on_the_shifted_column(tmp_path):
    s = write_drift_report(_frame(0), _frame(1, shift=2.0), COLS, tmp_path, CFG)
    payload = json.loads((tmp_path / "drift_summary.json").read_text())
    assert payload["drifted_columns"] == s.drifted_columns == ["a"]
    assert payload["evidently_drifted"]["a"] is True and payload["evidently_drifted"]["b"] is False
    assert (tmp_path / "drift_report.html").stat().st_size > 10_000
