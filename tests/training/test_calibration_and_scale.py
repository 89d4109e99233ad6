import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from riskcast.config import MasterScaleConfig
from riskcast.errors import InputError
from riskcast.training.calibration import PlattCalibrator
from riskcast.training.masterscale import MasterScale, concentration, grade_migration, scale_toml, suggest_scale


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


def test_herfindahl_by_hand():
    c = concentration(["1"] * 5 + ["2"] * 3 + ["3"] * 2 + [None], ["1", "2", "3"])
    assert c["herfindahl"] == pytest.approx(0.38)  # .5^2 + .3^2 + .2^2; the row without a grade left out
    assert c["herfindahl_normalised"] == pytest.approx((0.38 - 1 / 3) / (1 - 1 / 3))
    assert c["max_share"] == pytest.approx(0.5) and c["max_grade"] == "1" and c["rows"] == 10
    # over the scale's grades, empty ones included: all in one grade of ten is the maximum
    scale = MasterScale(MasterScaleConfig())
    one = concentration(["4"] * 7, scale)
    assert one["herfindahl"] == 1.0 and one["herfindahl_normalised"] == 1.0 and one["max_grade"] == "4"
    even = concentration([str(g) for g in range(1, 11)] * 3, scale)
    assert even["herfindahl"] == pytest.approx(0.1) and even["herfindahl_normalised"] == pytest.approx(0.0)


def test_a_label_from_another_scale_is_a_clear_error():
    with pytest.raises(InputError, match="grade: 4.1 is not a grade of the scale") as err:
        concentration(["1", "4.1"], MasterScale(MasterScaleConfig()))
    assert err.value.field == "grade"


def test_the_fingerprint_tells_apart_scales_that_share_a_version():
    base = MasterScaleConfig()
    moved = MasterScaleConfig(grades=tuple(g.model_copy(update={"pd_max": 0.004}) if g.grade == "1" else g
                                           for g in base.grades))
    renamed = base.model_copy(update={"version": "2"})
    assert moved.version == base.version == "1"
    assert MasterScale(moved).fingerprint != MasterScale(base).fingerprint
    assert MasterScale(renamed).fingerprint == MasterScale(base).fingerprint  # edges, not the name
    assert len(MasterScale(base).fingerprint) == 12


def _book(grades, versions=None, prints=None):
    df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(grades))], "grade": grades})
    if versions is not None:
        df["scale_version"] = versions
    if prints is not None:
        df["scale_fingerprint"] = prints
    return df


def test_migration_is_refused_across_scale_versions_and_counted_on_one():
    then, now = _book(["1", "2", "3"], ["1"] * 3), _book(["2", "2", "1"], ["2"] * 3)
    m = grade_migration(then, now, "grade")
    assert m["compared"] is False and "counts" not in m
    assert m["reason"] == "the reference graded on scale 1, the current table on 2: grades not compared"
    assert m["scales"] == {"reference": ["1"], "current": ["2"]}
    same = grade_migration(then, now.assign(scale_version="1"), "grade")
    assert same["compared"] is True and same["customers"] == 3 and same["downgrades"] == 1 and same["upgrades"] == 1
    # the versions given override the columns; a side without a version is not compared
    assert grade_migration(then, now, "grade", scales=("2", "2"))["compared"] is True
    gone = grade_migration(then, now, "grade", scales=(None, "2"), names=("previous rescore", "this one"))
    assert gone["compared"] is False and gone["reason"].startswith("previous rescore graded on no recorded scale")
    # tables from before scales had versions: nothing known, compared as before
    assert grade_migration(_book(["1"]), _book(["2"]), "grade")["downgrades"] == 1


def test_migration_is_refused_when_one_version_names_two_sets_of_edges():
    then, now = _book(["1", "2"], ["1", "1"], ["aaa", "aaa"]), _book(["1", "2"], ["1", "1"], ["bbb", "bbb"])
    m = grade_migration(then, now, "grade")
    assert m["compared"] is False and "both name scale 1 but its edges differ" in m["reason"]
    mixed = grade_migration(_book(["1", "2"], ["1", "2"]), _book(["1", "2"], ["2", "2"]), "grade")
    assert mixed["compared"] is False and "several scales" in mixed["reason"]
    assert grade_migration(then, now.assign(scale_fingerprint="aaa"), "grade")["compared"] is True


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_suggested_scale_increases_strictly_ends_at_one_and_spreads_the_book(seed):
    rng = np.random.default_rng(seed)
    pds = np.clip(rng.beta(0.6, 30, 30_000), 0.0003, 1)
    for bands in (None, "even"):
        cfg = suggest_scale(pds, grades=10, bands=bands, version="2")
        edges = [g.pd_max for g in cfg.grades]
        assert all(b > a for a, b in zip(edges, edges[1:])) and edges[-1] == 1.0
        assert cfg.version == "2" and [g.grade for g in cfg.grades] == [str(i) for i in range(1, len(edges) + 1)]
        assert 8 <= len(edges) <= 10
        assert all(float(f"{e:.2g}") == e for e in edges)  # readable: two significant figures
        bands_seen = [g.band for g in cfg.grades]
        assert bands_seen == sorted(bands_seen) and bands_seen[-1] == "E" and bands_seen[0] == "A"
        scale = MasterScale(cfg)
        new, old = concentration(scale.grade(pds), scale), concentration(
            MasterScale(MasterScaleConfig()).grade(pds), MasterScale(MasterScaleConfig()))
        assert new["herfindahl"] < old["herfindahl"]
    # with the default band ranges a PD keeps its band
    kept = MasterScale(suggest_scale(pds))
    assert (kept.band(pds) == MasterScale(MasterScaleConfig()).band(pds)).all()


def test_a_crowded_book_gets_its_crowded_grade_cut_in_the_suggestion():
    rng = np.random.default_rng(4)
    crowded = np.concatenate([rng.uniform(0.0101, 0.0149, 8000), rng.uniform(0.0001, 0.5, 2000)])
    default = MasterScale(MasterScaleConfig())
    assert concentration(default.grade(crowded), default)["max_share"] > 0.8
    cfg = suggest_scale(crowded)
    scale = MasterScale(cfg)
    c = concentration(scale.grade(crowded), scale)
    assert c["max_share"] < 0.3 and cfg.version.startswith("suggested-")
    assert sum(0.010 < g.pd_max <= 0.015 for g in cfg.grades) >= 4  # the grades went where the rows are


def test_identical_pds_suggest_one_grade_per_band_and_do_not_loop():
    cfg = suggest_scale(np.full(1000, 0.0003))
    assert [g.pd_max for g in cfg.grades] == [0.006, 0.015, 0.032, 0.12, 1.0]


@pytest.mark.parametrize("pds, kw, field", [
    ([], {}, "pd_12m"), ([0.1, float("nan")], {}, "pd_12m"), ([0.1, 1.5], {}, "pd_12m"),
    ([0.1, 0.2], {"grades": 1}, "grades"), ([0.1, 0.2], {"grades": 4}, "grades"),
    ([0.1, 0.2], {"bands": "odd"}, "bands"), ([0.1, 0.2], {"bands": {"A": 0.1, "B": 0.5}}, "bands"),
    ([0.1, 0.2], {"version": "new scale!"}, "version"),
])
def test_bad_input_to_a_suggestion_names_the_field(pds, kw, field):
    with pytest.raises(InputError) as err:
        suggest_scale(pds, **kw)
    assert err.value.field == field and str(err.value).startswith(f"{field}:")


def test_the_toml_block_reads_back_as_the_suggested_scale():
    import tomllib

    rng = np.random.default_rng(9)
    pds = np.clip(rng.beta(0.6, 30, 5000), 0.0003, 1)
    cfg = suggest_scale(pds, version="2025.1")
    text = scale_toml(cfg, pds, MasterScaleConfig())
    assert MasterScaleConfig.model_validate(tomllib.loads(text)["master_scale"]) == cfg
    assert "# current scale 1: Herfindahl" in text and "# suggested scale 2025.1: Herfindahl" in text
    shares = np.bincount(MasterScale(cfg).index(pds), minlength=len(cfg.grades)) / pds.size
    assert f"{shares[0]:.1%} of the PDs" in text.split("[[master_scale.grades]]")[0]
    from riskcast.config import RiskcastConfig

    assert RiskcastConfig.model_validate(tomllib.loads(text)).master_scale == cfg  # pasted as is


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
