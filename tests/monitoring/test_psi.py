"""PSI: zero for the same sample, large for a real shift, always finite and >= 0."""

import math

import numpy as np
import pandas as pd
import pytest

from riskcast.monitoring.psi import bin_shares, psi, psi_band


def test_identical_samples_give_zero():
    x = np.random.default_rng(0).normal(size=5000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)


def test_two_samples_of_one_distribution_are_stable():
    rng = np.random.default_rng(0)
    assert psi(rng.normal(size=5000), rng.normal(size=5000)) < 0.02


def test_a_one_sd_shift_is_above_the_alert_threshold():
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=5000), rng.normal(1, 1, 5000)) > 0.25


def test_matches_the_documented_formula_on_a_hand_computed_case():
    # two bins cut at the reference median (2.5): reference 1/2 + 1/2, current 3/4 + 1/4; no missing
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(expected, rel=1e-9)


def test_bins_come_from_reference_quantiles_and_missing_has_its_own_bin():
    ref = np.arange(100.0)
    cur = np.r_[np.arange(50.0), [np.nan] * 50]
    r, c = bin_shares(ref, cur, bins=4)
    assert r.tolist() == [0.25, 0.25, 0.25, 0.25, 0.0]
    assert c.tolist() == [0.25, 0.25, 0.0, 0.0, 0.5]


def test_a_value_holding_a_bin_s_share_gets_its_own_bin():
    # 60% zeros: without their own bin, zeros and small positive values would share one
    ref = np.r_[np.zeros(600), np.linspace(1, 100, 400)]
    r, _ = bin_shares(ref, ref, bins=10)
    assert 0.6 in r.tolist()
    assert psi(ref, np.r_[np.zeros(300), np.linspace(0.1, 100, 700)]) > 0.25


def test_values_outside_the_reference_range_land_in_the_outer_bins():
    r, c = bin_shares(np.arange(10.0), [-100.0, 100.0], bins=5)
    assert c[0] == 0.5 and c[-2] == 0.5


def test_missing_values_count_as_a_shift():
    ref = np.random.default_rng(2).normal(size=5000)
    cur = ref.copy()
    cur[:1500] = np.nan
    assert psi(ref, cur) > 0.25


@pytest.mark.parametrize("seed", range(5))
def test_is_never_negative(seed):
    rng = np.random.default_rng(seed)
    ref = rng.standard_t(3, size=rng.integers(10, 3000))
    cur = rng.standard_t(3, size=rng.integers(10, 3000)) * rng.uniform(0.5, 2) + rng.uniform(-1, 1)
    assert psi(ref, cur, bins=int(rng.integers(2, 20))) >= 0


@pytest.mark.parametrize("ref, cur, shifted", [
    (np.full(1000, 3.0), np.full(1000, 3.0), False),                       # constant, unchanged
    (np.full(1000, 3.0), np.full(1000, 7.0), True),                        # constant, moved
    (np.full(1000, np.nan), np.full(1000, np.nan), False),                 # all missing on both sides
    (np.full(1000, np.nan), np.random.default_rng(3).normal(size=1000), True),
    (np.r_[np.full(950, np.nan), np.arange(50.0)], np.r_[np.full(500, np.nan), np.arange(500.0)], True),
    (np.r_[np.zeros(900), np.arange(100.0)], np.r_[np.zeros(880), np.arange(120.0)], False),  # heavy ties
    (np.r_[np.zeros(900), np.arange(100.0)], np.r_[np.zeros(500), np.arange(500.0)], True),   # mass moved off 0
])
def test_degenerate_columns_give_a_finite_value(ref, cur, shifted):
    v = psi(ref, cur)
    assert np.isfinite(v) and v >= 0
    assert (v > 0.25) == shifted


def test_infinities_and_pandas_missing_values_count_as_missing():
    ref = pd.Series([1.0, 2.0, 3.0, 4.0] * 250, dtype="Float64")
    cur = ref.copy()
    cur[:200] = pd.NA
    as_inf = ref.to_numpy(dtype=float).copy()
    as_inf[:200] = np.inf
    assert psi(ref, cur) == pytest.approx(psi(ref, as_inf)) and psi(ref, cur) > 0.25


def test_rejects_empty_samples_and_bad_bins():
    with pytest.raises(ValueError, match="non-empty"):
        psi([], [1.0])
    with pytest.raises(ValueError, match="bins"):
        psi([1.0], [1.0], bins=0)


def test_bands():
    assert [psi_band(v, 0.10, 0.25) for v in (0.0, 0.05, 0.10, 0.2, 0.25, 0.2501, 3.0)] == \
        ["stable", "stable", "stable", "watch", "watch", "shift", "shift"]


@pytest.mark.parametrize("value, watch, alert", [(float("nan"), 0.1, 0.25), (-0.1, 0.1, 0.25), (0.1, 0.3, 0.25)])
def test_bands_reject_nonsense(value, watch, alert):
    with pytest.raises(ValueError):
        psi_band(value, watch, alert)
