import numpy as np
import pytest
from scipy.special import expit

from riskcast.config import MasterScaleConfig
from riskcast.training.calibration import PlattCalibrator
from riskcast.training.masterscale import MasterScale


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
