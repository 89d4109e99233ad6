import json

import numpy as np
import pytest
from scipy.special import expit

from riskcast.config import MasterScaleConfig
from riskcast.training.calibration import PlattCalibrator
from riskcast.training.masterscale import MasterScale, fit_scale


def test_platt_recovers_a_known_map():
    rng = np.random.default_rng(0)
    m = rng.normal(-3, 1.5, 200_000)
    y = (rng.random(m.size) < expit(0.7 * m - 0.4)).astype(int)
    c = PlattCalibrator(pd_floor=1e-6).fit(m, y)
    assert c.slope_ == pytest.approx(0.7, abs=0.03)
    assert c.intercept_ == pytest.approx(-0.4, abs=0.1)


def test_pd_floor_holds():
    c = PlattCalibrator(pd_floor=0.0003)
    c.slope_, c.intercept_ = 1.0, 0.0
    assert c.transform(np.array([-50.0])).item() == pytest.approx(0.0003)
    assert PlattCalibrator.from_dict(c.to_dict()).to_dict() == c.to_dict()


def test_master_scale_boundaries():
    s = MasterScale(MasterScaleConfig())
    edges = s.edges
    assert s.grade(np.array([0.0]))[0] == "1"
    assert s.grade(np.array([edges[0] - 1e-9]))[0] == "1"
    assert s.grade(np.array([edges[0]]))[0] == "2"  # bands are [pd_min, pd_max)
    assert s.grade(np.array([1.0]))[0] == s.grades[-1]
    g = s.index(np.linspace(0, 1, 1000))
    assert np.all(np.diff(g) >= 0)
    assert [r["band"] for r in s.table()][0] == "A" and s.table()[-1]["pd_max"] == 1.0


def test_promotion_gate():
    from riskcast.training.tracking import promotion_gate

    assert promotion_gate(0.70, None, 0.005)["passed"]
    assert promotion_gate(0.696, ("3", 0.70), 0.005)["passed"]
    assert not promotion_gate(0.694, ("3", 0.70), 0.005)["passed"]
    floor = promotion_gate(0.55, None, 0.005, min_auc=0.6)
    assert not floor["passed"] and "below the floor" in floor["reason"]
    nan_gate = promotion_gate(0.9, ("3", float("nan")), 0.005)
    assert not nan_gate["passed"] and "by hand" in nan_gate["reason"]
    # calibration: a good ranker whose PDs are rejected in too many grades stays a challenger
    off = promotion_gate(0.9, None, 0.005, rejected=(2, 10), max_rejected_share=0.10)
    assert not off["passed"] and "calibration rejected" in off["reason"]
    assert promotion_gate(0.9, None, 0.005, rejected=(1, 10), max_rejected_share=0.10)["passed"]
    # one grade of eight failing at 99% happens by chance 8% of the time: no evidence
    assert promotion_gate(0.9, None, 0.005, rejected=(1, 8), max_rejected_share=0.10)["passed"]
    assert not promotion_gate(0.9, None, 0.005, rejected=(3, 8), max_rejected_share=0.10)["passed"]


def test_a_crowded_grade_is_split_until_none_holds_a_third():
    cfg = MasterScaleConfig()
    rng = np.random.default_rng(4)
    crowded = np.concatenate([rng.uniform(0.0101, 0.0149, 8000), rng.uniform(0.0001, 0.5, 2000)])
    fitted = fit_scale(cfg, crowded)
    scale = MasterScale(fitted)
    shares = np.bincount(scale.index(crowded), minlength=len(scale.grades)) / crowded.size
    assert shares.max() <= 1 / 3 and len(fitted.grades) > len(cfg.grades)
    assert [g.grade for g in fitted.grades] == [str(i) for i in range(1, len(fitted.grades) + 1)]
    # the split grades keep their band, the other edges are untouched
    old = {g.pd_max: g.band for g in cfg.grades}
    assert all(old[g.pd_max] == g.band for g in fitted.grades if g.pd_max in old)
    assert {g.band for g in fitted.grades if 0.010 < g.pd_max < 0.015} == {"B"}
    # a book that spreads over the scale keeps it as configured
    spread = rng.uniform(0.0001, 0.1, 10_000)
    assert fit_scale(cfg, spread) is cfg


def test_identical_pds_cannot_be_split_and_do_not_loop():
    cfg = MasterScaleConfig()
    assert fit_scale(cfg, np.full(1000, 0.0003)) is cfg


def test_the_validation_window_chooses_platt_for_a_logistic_map_and_isotonic_for_a_step():
    from riskcast.training.calibration import choose_calibrator

    rng = np.random.default_rng(3)
    m = rng.normal(-3, 1.5, 60_000)
    logistic = (rng.random(m.size) < expit(0.8 * m - 1.0)).astype(int)
    cal, losses = choose_calibrator(m, logistic, 0.0003, seed=0)
    assert cal.kind == "platt" and set(losses) == {"platt", "isotonic"}
    step = (rng.random(m.size) < np.where(m > -2.5, 0.25, 0.01)).astype(int)
    cal, losses = choose_calibrator(m, step, 0.0003, seed=0)
    assert cal.kind == "isotonic" and losses["isotonic"] < losses["platt"]
    p = cal.transform(np.array([-6.0, -3.0, -2.6, -2.4, -1.5, -1.0]))
    assert np.all(np.diff(p) >= 0) and p[0] >= 0.0003
    assert p[1] == pytest.approx(0.01, abs=0.005) and p[-1] == pytest.approx(0.25, abs=0.02)


def test_isotonic_calibrator_survives_the_bundle_file():
    from riskcast.training.calibration import IsotonicCalibrator, calibrator_from_dict

    rng = np.random.default_rng(5)
    m = rng.normal(-3, 1.5, 5000)
    y = (rng.random(m.size) < expit(m)).astype(int)
    cal = IsotonicCalibrator(0.001).fit(m, y)
    back = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    grid = np.linspace(-9, 4, 300)
    assert np.array_equal(back.transform(grid), cal.transform(grid)) and back.slope_ == cal.slope_
    assert cal.transform(grid).min() >= 0.001 and cal.slope_ > 0
    with pytest.raises(ValueError, match="kind"):
        calibrator_from_dict({"kind": "beta"})
