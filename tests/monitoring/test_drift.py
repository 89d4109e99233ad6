"""Drift summary (our verdicts) and the written report (Evidently beside them)."""

import json

import numpy as np
import pandas as pd
import pytest

from riskcast.config import MonitoringConfig
from riskcast.errors import DataValidationError, InputError
from riskcast.monitoring.drift import evidently_verdicts, summarize_drift, write_drift_report

CFG = MonitoringConfig()
COLS = ["a", "b", "c", "d"]


def _frame(seed, n=3000, shift=None, score_scale=1.0):
    """Four standard-normal features, a beta PD and two grades; ``shift``: column -> mean shift."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.normal(size=n) for c in COLS})
    for col, by in (shift or {}).items():
        df[col] += by
    df["pd_12m"] = np.clip(rng.beta(1, 40, n) * score_scale, 0, 1)
    df["grade"] = np.where(df["pd_12m"] > 0.05, "9", "3")
    return df


def test_same_population_raises_no_alert():
    s = summarize_drift(_frame(0), _frame(1), COLS, CFG)
    assert not s.alert and s.alert_reasons == ()
    assert s.drift_share == 0 and s.drifted_columns == [] and s.missing_columns == ()
    assert s.score_band == "stable" and {c.band for c in s.columns} == {"stable"}
    assert (s.n_reference, s.n_current) == (3000, 3000)


def test_a_shifted_feature_and_score_raise_an_alert_naming_both():
    s = summarize_drift(_frame(0), _frame(1, shift={"a": 2.0}, score_scale=3.0), COLS, CFG)
    assert s.alert and s.score_band == "shift" and s.score_psi > CFG.psi_alert
    assert s.drifted_columns == ["a"] and s.drift_share == 0.25  # 1 of 4: below the share alert
    (reason,) = s.alert_reasons
    assert "pd_12m" in reason and "a (PSI" in reason
    assert s.grade_distribution["9"]["current"] > s.grade_distribution["9"]["reference"]
    assert list(s.grade_distribution) == ["3", "9"]


def test_many_drifted_features_alert_without_a_score_shift():
    s = summarize_drift(_frame(0), _frame(1, shift={"b": 1.5, "d": -1.5}), COLS, CFG)
    assert s.alert and s.score_band == "stable" and s.drift_share == 0.5
    (reason,) = s.alert_reasons
    assert "2 of 4 features drifted" in reason and "b (PSI" in reason and "d (PSI" in reason


def test_a_column_missing_from_current_is_an_alert_naming_it():
    s = summarize_drift(_frame(0), _frame(1).drop(columns=["d"]), COLS, CFG)
    assert s.alert and s.missing_columns == ("d",)
    assert [c.column for c in s.columns] == ["a", "b", "c"] and s.drift_share == 0
    assert any(r.endswith("missing from the current table: d") for r in s.alert_reasons)


def test_a_column_missing_from_reference_is_a_validation_error():
    with pytest.raises(DataValidationError, match=r"reference\.b: column is missing") as err:
        summarize_drift(_frame(0).drop(columns=["b"]), _frame(1), COLS, CFG)
    assert err.value.table == "reference" and err.value.column == "b"


@pytest.mark.parametrize("side", ["reference", "current"])
def test_a_missing_score_column_is_a_validation_error(side):
    frames = {"reference": _frame(0), "current": _frame(1)}
    frames[side] = frames[side].drop(columns=["pd_12m"])
    with pytest.raises(DataValidationError, match=rf"{side}\.pd_12m"):
        summarize_drift(frames["reference"], frames["current"], COLS, CFG)


def test_empty_tables_are_input_errors():
    with pytest.raises(InputError, match="current: the table has no rows"):
        summarize_drift(_frame(0), _frame(1).iloc[:0], COLS, CFG)


def test_a_text_column_is_a_validation_error():
    cur = _frame(1)
    cur["c"] = "n/a"
    with pytest.raises(DataValidationError, match=r"current\.c: column is not numeric"):
        summarize_drift(_frame(0), cur, COLS, CFG)


def test_a_jump_in_the_missing_share_is_drift_even_when_the_psi_is_small():
    ref, cur = _frame(0), _frame(1)
    ref.loc[: 0.20 * len(ref) - 1, "c"] = np.nan   # 20% missing
    cur.loc[: 0.32 * len(cur) - 1, "c"] = np.nan   # 32% missing: +12 points
    ref.loc[: 0.20 * len(ref) - 1, "b"] = np.nan
    cur.loc[: 0.25 * len(cur) - 1, "b"] = np.nan   # +5 points: not drift
    s = summarize_drift(ref, cur, COLS, CFG)
    c = {col.column: col for col in s.columns}
    assert c["c"].band != "shift" and c["c"].drifted
    assert (c["c"].missing_share_reference, c["c"].missing_share_current) == (0.20, 0.32)
    assert not c["b"].drifted and s.drifted_columns == ["c"]


def test_the_summary_is_plain_json():
    s = summarize_drift(_frame(0), _frame(1, shift={"a": 2.0}), COLS, CFG)
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert d["drifted_columns"] == ["a"] and d["columns"][0]["column"] == "a"


def test_arguments_in_the_wrong_place_fail_loudly():
    with pytest.raises(TypeError, match="MonitoringConfig"):
        summarize_drift(_frame(0), _frame(1), COLS, "pd_12m")
    with pytest.raises(TypeError, match="one string"):
        summarize_drift(_frame(0), _frame(1), "a", CFG)


# ---------------------------------------------------------------------------- written report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift")
    summary = write_drift_report(_frame(0), _frame(1, shift={"a": 2.0}), COLS, out, CFG)
    return out, summary, json.loads((out / "drift_summary.json").read_text(encoding="utf-8"))


def test_the_report_writes_its_three_files_and_nothing_else(report):
    out, summary, payload = report
    assert sorted(p.name for p in out.iterdir()) == ["drift_report.html", "drift_summary.json", "summary.html"]
    page = (out / "summary.html").read_text(encoding="utf-8")
    # one feature of four drifted: below the 30% alert share, so the page says stable but names it first
    assert summary.alert is False and "Stable" in page
    assert page.index("<td>a</td>") < min(page.index(f"<td>{c}</td>") for c in "bcd")
    assert "http" not in page.lower()  # opens without the internet
    html = (out / "drift_report.html").read_text(encoding="utf-8")
    assert len(html) > 50_000 and "<html" in html.lower() and "Value Drift for column a" in html
    assert payload["drifted_columns"] == summary.drifted_columns == ["a"]
    assert payload["sampled"] is False and payload["evidently_rows"] == {"reference": 3000, "current": 3000}


def test_evidently_flags_the_shifted_column_and_only_it(report):
    _, _, payload = report
    # straight from Evidently's snapshot: each ValueDrift metric has one test, FAIL = drift detected
    tests = {t["metric_config"]["params"]["column"]: t for t in payload["evidently"]["tests"]
             if t["metric_config"]["params"]["type"] == "evidently:metric_v2:ValueDrift"}
    assert set(tests) == {*COLS, "pd_12m"}
    assert {c: t["status"] for c, t in tests.items()} == {"a": "FAIL", "b": "SUCCESS", "c": "SUCCESS",
                                                          "d": "SUCCESS", "pd_12m": "SUCCESS"}
    params = tests["a"]["metric_config"]["params"]
    assert params["method"] == "wasserstein" and params["threshold"] == CFG.wasserstein_alert
    assert tests["pd_12m"]["metric_config"]["params"]["method"] == "psi"
    verdicts = payload["evidently_verdicts"]
    assert verdicts == evidently_verdicts(payload["evidently"])
    # Evidently's distance is ours: the same normed Wasserstein for every feature
    ours = {c["column"]: c["wasserstein"] for c in payload["columns"]}
    for col in COLS:
        assert verdicts[col]["value"] == pytest.approx(ours[col], rel=1e-6)
    assert verdicts["a"]["drifted"] and verdicts["a"]["value"] > CFG.wasserstein_alert
    assert not any(v["drifted"] for c, v in verdicts.items() if c != "a")


def test_a_large_table_is_sampled_for_evidently_only(tmp_path):
    ref = _frame(0)
    cur = _frame(1).drop(columns=["d"])
    cur["c"] = np.nan  # no values at all: Evidently would raise on it, so it is left out there
    s = write_drift_report(ref, cur, COLS, tmp_path, CFG, max_rows=1000)
    payload = json.loads((tmp_path / "drift_summary.json").read_text(encoding="utf-8"))
    assert payload["sampled"] is True and payload["evidently_rows"] == {"reference": 1000, "current": 1000}
    assert payload["n_reference"] == s.n_reference == 3000  # our PSI used every row
    assert s.alert and s.missing_columns == ("d",) and "c" in s.drifted_columns
    assert set(payload["evidently_verdicts"]) == {"a", "b", "pd_12m"}


def _late_payers(seed, n, stretch=1.0):
    """Days beyond terms: most customers pay on time (0), the rest late by a lognormal tail."""
    rng = np.random.default_rng(seed)
    late = rng.random(n) < 0.3
    return np.where(late, rng.lognormal(2.0, 0.8, n) * stretch, 0.0)


def test_a_stretching_tail_is_drift_even_when_the_psi_misses_it():
    ref = pd.DataFrame({"dbt": _late_payers(0, 20_000), "pd_12m": 0.02})
    cur = pd.DataFrame({"dbt": _late_payers(1, 20_000, stretch=1.6), "pd_12m": 0.02})
    s = summarize_drift(ref, cur, ["dbt"], CFG)
    col = s.columns[0]
    assert col.psi < CFG.psi_alert and col.wasserstein > CFG.wasserstein_alert
    assert s.drifted_columns == ["dbt"]


def test_a_trivial_shift_in_a_large_sample_is_not_drift():
    rng = np.random.default_rng(0)
    n = 300_000
    ref = pd.DataFrame({"x": rng.normal(0, 1, n), "pd_12m": rng.beta(1, 40, n)})
    cur = pd.DataFrame({"x": rng.normal(0.03, 1, n), "pd_12m": rng.beta(1, 40, n)})
    s = summarize_drift(ref, cur, ["x"], CFG)
    assert s.drifted_columns == [] and not s.alert  # a KS test rejects it at p < 1e-10
    from scipy.stats import ks_2samp
    assert ks_2samp(ref["x"], cur["x"]).pvalue < 1e-10


@pytest.mark.parametrize("seed", range(6))
def test_our_wasserstein_equals_scipy_s_with_ties_and_unequal_sizes(seed):
    from scipy.stats import wasserstein_distance

    from riskcast.monitoring.drift import wasserstein_1

    rng = np.random.default_rng(seed)
    ref = np.round(rng.lognormal(1, 1, 3000) * (rng.random(3000) < 0.4), 1)  # mass at 0, ties
    cur = np.round(rng.normal(3, 2, 1777), 0)
    assert wasserstein_1(ref, cur) == pytest.approx(wasserstein_distance(ref, cur), rel=1e-10)
    assert wasserstein_1(ref, ref) == 0.0
    assert wasserstein_1(np.array([0.0]), np.array([2.5])) == pytest.approx(2.5)


def test_customers_without_a_grade_are_not_a_grade_of_the_migration():
    from riskcast.training.masterscale import grade_migration

    then = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "grade": pd.array(["1", "2", pd.NA, "2"], dtype="string")})
    now = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "grade": ["2", None, "3", "2"]})
    m = grade_migration(then, now, "grade")
    assert m["grades"] == ["1", "2"] and m["customers"] == 2
    assert m["counts"] == {"1": {"1": 0, "2": 1}, "2": {"1": 0, "2": 1}} and m["downgrades"] == 1


def test_grades_on_different_scale_versions_are_flagged_and_not_migrated():
    ref, cur = _frame(0), _frame(1)
    for df in (ref, cur):
        df["customer_id"] = [f"c{i}" for i in range(len(df))]
    same = summarize_drift(ref.assign(scale_version="1"), cur.assign(scale_version="1"), COLS, CFG)
    assert same.grade_scale == {"reference": ["1"], "current": ["1"], "comparable": True, "note": None}
    assert same.grade_migration["compared"] is True and same.grade_migration["customers"] == len(ref)
    moved = summarize_drift(ref.assign(scale_version="1"), cur.assign(scale_version="2"), COLS, CFG)
    note = "the reference graded on scale 1, the current table on 2: grades not compared"
    assert moved.grade_scale["note"] == note and moved.grade_scale["comparable"] is False
    assert moved.grade_migration == {"compared": False, "reason": note,
                                     "scales": {"reference": ["1"], "current": ["2"]}}
    assert not moved.alert  # a new scale is not drift
    assert set(moved.grade_distribution) == {"3", "9"}  # each side's shares, under the note
    # a reference from before scales had versions against a versioned book
    old = summarize_drift(ref, cur.assign(scale_version="1"), COLS, CFG)
    assert old.grade_migration["compared"] is False and "no recorded scale" in old.grade_scale["note"]
    json.dumps(moved.to_dict())
    from riskcast.monitoring.page import summary_page

    page = summary_page(json.loads(json.dumps(moved.to_dict(), default=str)))
    assert "Different scales:" in page and "No migration: the reference graded on scale 1" in page
    assert "share, reference (scale 1)" in page and "share, current (scale 2)" in page
