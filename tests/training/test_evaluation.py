"""Calibration statistics: known answers by hand, and the direction of every test."""

import numpy as np
import pytest

from riskcast.training.evaluation import (binomial_pvalue, calibration_metrics, expected_calibration_error,
                                          grade_table, hosmer_lemeshow, jeffreys_pvalue)


def test_ece_is_zero_when_every_bin_is_right_and_the_gap_when_not():
    p = np.repeat([0.1, 0.5], 10)
    y = np.array([1] + [0] * 9 + [1] * 5 + [0] * 5)
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.0)
    assert expected_calibration_error(y, p * 0 + 0.4, bins=2) == pytest.approx((0.3 + 0.1) / 2)


def test_binomial_pvalue_by_hand():
    assert binomial_pvalue(0, 50, 0.02) == pytest.approx(1.0)
    assert binomial_pvalue(1, 1, 0.3) == pytest.approx(0.3)
    assert binomial_pvalue(2, 2, 0.5) == pytest.approx(0.25)
    assert binomial_pvalue(2, 3, 0.5) == pytest.approx(0.5)  # 3/8 + 1/8


def test_jeffreys_rejects_a_pd_that_is_too_low_and_only_that():
    assert jeffreys_pvalue(20, 1000, 0.02) == pytest.approx(0.5, abs=0.06)  # right on: a coin toss
    assert jeffreys_pvalue(40, 1000, 0.02) < 0.001                          # twice as many defaults
    assert jeffreys_pvalue(5, 1000, 0.02) > 0.99                            # too many PD is not this test's concern
    pvalues = [jeffreys_pvalue(d, 500, 0.02) for d in range(0, 30)]
    assert all(a > b for a, b in zip(pvalues, pvalues[1:]))


def test_hosmer_lemeshow_accepts_true_pds_and_rejects_halved_ones():
    rng = np.random.default_rng(0)
    p = rng.beta(0.6, 25, 40_000)
    y = (rng.random(p.size) < p).astype(int)
    assert hosmer_lemeshow(y, p)[1] > 0.01
    stat, pvalue = hosmer_lemeshow(y, p / 2)
    assert pvalue < 1e-6 and stat > 50


def test_grade_table_counts_every_row_and_flags_the_grade_that_is_off():
    rng = np.random.default_rng(1)
    grades = np.repeat(["1", "2", "3"], 4000)
    p = np.repeat([0.01, 0.03, 0.10], 4000)
    true = p.copy()
    true[grades == "3"] = 0.16  # grade 3 underestimates
    y = (rng.random(p.size) < true).astype(int)
    table = grade_table(y, p, grades, ["1", "2", "3", "4"])
    assert table["rows"].tolist() == [4000, 4000, 4000, 0]
    assert table["defaults"].sum() == y.sum()
    assert table["jeffreys_rejected"].tolist() == [False, False, True, False]
    m = calibration_metrics(y, p, table, "test")
    assert m["test_jeffreys_rejected_share"] == pytest.approx(1 / 3)
    assert m["test_max_grade_share"] == pytest.approx(1 / 3)
    assert m["test_ece"] > 0.015
