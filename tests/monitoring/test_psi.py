import numpy as np
import pytest

from riskcast.monitoring.psi import psi, psi_band


def test_same_distribution_is_stable():
    rng = np.random.default_rng(0)
    assert psi(rng.normal(size=20_000), rng.normal(size=20_000)) < 0.01


def test_a_one_sd_shift_is_a_shift():
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=20_000), rng.normal(1, 1, 20_000)) > 0.25


def test_missing_values_count_as_their_own_bin():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=10_000)
    cur = ref.copy()
    cur[:3000] = np.nan
    assert psi(ref, cur) > 0.25


@pytest.mark.parametrize("ref, cur", [
    (np.full(1000, 3.0), np.full(1000, 3.0)),
    (np.full(1000, np.nan), np.full(1000, np.nan)),
    (np.full(1000, 3.0), np.full(1000, 7.0)),
])
def test_degenerate_columns_give_finite_non_negative_values(ref, cur):
    v = psi(ref, cur)
    assert np.isfinite(v) and v >= 0


def test_bands():
    assert [psi_band(v) for v in (0.05, 0.10, 0.2, 0.25, 0.3)] == ["stable", "stable", "watch", "watch", "shift"]
