import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from riskcast.config import MasterScaleConfig, MonitoringConfig
from riskcast.errors import InputError
from riskcast.monitoring.backtest import (auc_decline_pvalue, backtest, hanley_mcneil_se, matured_outcomes,
                                          traffic_light, worst)
from riskcast.training.dataset import attach_labels
from riskcast.training.masterscale import MasterScale

CFG = MonitoringConfig()


def test_lights_follow_the_confidence_levels():
    assert traffic_light(0.2) == "green"
    assert traffic_light(0.049) == "yellow"
    assert traffic_light(0.0009) == "red"
    assert traffic_light(0.011, yellow=0.95, red=0.99) == "yellow"
    assert traffic_light(0.009, yellow=0.95, red=0.99) == "red"
    assert traffic_light(float("nan")) == "n/a"
    assert worst(["green", "n/a", "yellow"]) == "yellow" and worst(["red", "green"]) == "red"


def test_hanley_mcneil_matches_the_spread_of_simulated_aucs():
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(2000):  # exponential scores (the formula's own model): AUC = 4 / (4 + 1) = 0.80
        pos, neg = rng.exponential(1.0, 60), rng.exponential(0.25, 240)
        aucs.append(roc_auc_score(np.r_[np.ones(60), np.zeros(240)], np.r_[pos, neg]))
    assert float(np.mean(aucs)) == pytest.approx(0.80, abs=0.005)
    se = hanley_mcneil_se(0.80, 60, 240)
    assert se == pytest.approx(float(np.std(aucs)), rel=0.07)
    # the formula by hand for one case: AUC 0.8, 50 + 50 -> 0.0445
    assert hanley_mcneil_se(0.8, 50, 50) == pytest.approx(0.04450, abs=2e-4)
    assert math.isnan(hanley_mcneil_se(0.8, 0, 50))


def test_the_auc_test_is_one_sided():
    assert auc_decline_pvalue(0.70, 0.02, 0.80) < 1e-3     # five standard errors below
    assert auc_decline_pvalue(0.90, 0.02, 0.80) > 0.99     # better than at validation: no alarm
    assert auc_decline_pvalue(0.78, 0.02, 0.80, 0.02) == pytest.approx(0.2398, abs=1e-3)


def _portfolio(seed: int, n: int = 40_000):
    rng = np.random.default_rng(seed)
    pd_ = np.clip(np.exp(rng.normal(np.log(0.015), 1.0, n)), 0.0003, 0.6)
    y = (rng.random(n) < pd_).astype(int)
    scale = MasterScale(MasterScaleConfig())
    return y, pd_, scale.grade(pd_), [str(g) for g in scale.grades]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_true_pds_pass_and_halved_pds_are_red(seed):
    y, p, g, order = _portfolio(seed)
    auc = roc_auc_score(y, p)
    good = backtest(y, p, g, order, auc, CFG)
    assert good.portfolio_light == "green" and good.auc_light == "green"
    assert "red" not in {c.light for c in good.grades} and good.light in ("green", "yellow")
    halved = backtest(y, p / 2, g, order, auc, CFG)
    assert halved.portfolio_light == "red" and halved.light == "red"
    assert halved.auc_light == "green"  # halving keeps the order: discrimination is intact
    assert any("defaults among" in r for r in halved.reasons())


def test_a_model_that_lost_its_discrimination_is_red_on_auc():
    y, p, g, order = _portfolio(4)
    rng = np.random.default_rng(9)
    noisy = np.clip(p * np.exp(rng.normal(0, 2.0, len(p))), 0, 1)
    noisy *= p.mean() / noisy.mean()  # same level: only the ranking is worse
    bt = backtest(y, noisy, g, order, roc_auc_score(y, p), CFG)
    assert bt.auc < bt.reference_auc - 0.05 and bt.auc_light == "red" and bt.light == "red"


def test_grades_come_in_scale_order_with_strangers_last():
    y, p, g, order = _portfolio(5, 5000)
    g = g.astype(object)
    g[:10] = "unrated"
    bt = backtest(y, p, g, order, 0.8, CFG)
    names = [c.grade for c in bt.grades]
    assert names[-1] == "unrated" and names[:-1] == [x for x in order if x in set(names)]
    assert sum(c.rows for c in bt.grades) == len(y)


def test_bad_inputs_name_the_field():
    with pytest.raises(InputError, match="pd_12m"):
        backtest(np.array([0, 1]), np.array([0.1, 1.5]), np.array(["1", "2"]), ["1", "2"], 0.8, CFG)
    with pytest.raises(InputError, match="0 or 1"):
        backtest(np.array([0, 2]), np.array([0.1, 0.2]), np.array(["1", "2"]), ["1", "2"], 0.8, CFG)
    with pytest.raises(InputError, match="length"):
        backtest(np.array([0]), np.array([0.1, 0.2]), np.array(["1", "2"]), ["1", "2"], 0.8, CFG)


def test_outcomes_use_the_training_label_and_refuse_unmatured_books(small_book):
    truth = small_book.truth
    as_of = sorted(truth["as_of"].unique())[-6]
    scored = truth[truth["as_of"] == as_of][["customer_id", "as_of", "pd_12m"]].assign(grade="1")
    end = small_book.data_end
    rows, left_out = matured_outcomes(scored, small_book.defaults, end)
    assert left_out == {"defaulted_before": 0, "no_pd": 0} and len(rows) == len(scored)
    expected = attach_labels(scored.drop(columns="grade"), small_book, 12)["default_12m"].to_numpy()
    assert (rows["default_12m"].to_numpy() == expected).all() and expected.sum() > 0
    with pytest.raises(InputError, match="matures on"):
        matured_outcomes(scored, small_book.defaults, pd.Timestamp(as_of) + pd.DateOffset(months=11))
    # a customer scored after it defaulted says nothing about the PD: left out, counted
    d = small_book.defaults.iloc[0]
    late = pd.DataFrame({"customer_id": [d["customer_id"]], "as_of": [d["default_date"]], "pd_12m": [0.5],
                         "grade": ["9"]})
    rows2, left2 = matured_outcomes(pd.concat([scored, late]), small_book.defaults, end)
    assert left2 == {"defaulted_before": 1, "no_pd": 0} and len(rows2) == len(scored)
    # a row scored without a PD (the scorecard failed too: refer) is left out, not a crash
    blank = scored.iloc[:3].assign(pd_12m=np.nan)
    rows3, left3 = matured_outcomes(pd.concat([scored, blank]), small_book.defaults, end)
    assert left3 == {"defaulted_before": 0, "no_pd": 3} and len(rows3) == len(scored)


def test_the_true_pd_of_a_synthetic_book_backtests_green_and_halved_red(small_book):
    """Acceptance: a book with known true PDs, its matured outcomes read from its defaults table."""
    truth = small_book.truth
    dates = [d for d in sorted(truth["as_of"].unique())
             if pd.Timestamp(d) + pd.DateOffset(months=12) <= small_book.data_end]
    scored = truth[truth["as_of"].isin(dates)][["customer_id", "as_of", "pd_12m"]].copy()
    scale = MasterScale(MasterScaleConfig())
    scored["grade"] = scale.grade(scored["pd_12m"].to_numpy())
    rows, _ = matured_outcomes(scored, small_book.defaults, small_book.data_end)
    y, p, g = rows["default_12m"].to_numpy(), rows["pd_12m"].to_numpy(), rows["grade"].to_numpy()
    order = [str(x) for x in scale.grades]
    good = backtest(y, p, g, order, roc_auc_score(y, p), CFG)
    assert y.sum() >= 100 and good.light == "green"  # every grade, the portfolio and the AUC
    assert {c.light for c in good.grades} == {"green"}
    bad = backtest(y, p / 2, g, order, roc_auc_score(y, p), CFG)
    assert bad.portfolio_light == "red" and bad.light == "red"
