"""Walk-forward backtest: each origin's model knows only the outcomes closed by its date and
is judged on the snapshots from that date on."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from riskcast.config import RiskcastConfig
from riskcast.errors import InputError
from riskcast.features.build import build_features
from riskcast.features.registry import default_registry
from riskcast.training.dataset import LABEL, TRUE_PD, attach_labels, snapshot_dates
from riskcast.training.walkforward import possible_origins, walk_forward, walk_forward_on_book

H = pd.DateOffset(months=12)


def _cfg(**training) -> RiskcastConfig:
    cfg = RiskcastConfig()
    cheap = cfg.training.lightgbm.model_copy(update={"n_estimators": 60, "num_threads": 1})
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"lightgbm": cheap, **training})})


@pytest.fixture(scope="module")
def data(small_book):
    cfg = RiskcastConfig()
    return attach_labels(build_features(small_book, snapshot_dates(small_book, cfg.training), default_registry()),
                         small_book, cfg.training.horizon_months)


@pytest.fixture(scope="module")
def result(small_book):
    """The book's backtest: the same snapshots, features and labels as ``data``."""
    return walk_forward_on_book(small_book, _cfg(walk_forward_origins=2, walk_forward_snapshots=2))


def test_each_origin_learns_only_the_outcomes_known_on_its_date(result, data):
    dates = sorted(data["as_of"].unique())
    origins = [r.origin for r in result.origins]
    assert len(origins) == 2 and origins == sorted(origins)
    assert dates.index(origins[1]) - dates.index(origins[0]) == 1          # a snapshot apart
    assert result.origins[-1].scored_dates[-1] == dates[-1]                # the newest scores the newest
    for r in result.origins:
        assert max(r.train_dates + r.valid_dates) + H <= r.origin
        assert r.train_outcome_end <= r.origin and r.valid_outcome_end <= r.origin
        assert r.valid_outcome_end == max(r.valid_dates) + H == r.origin   # the newest known validation
        assert max(r.train_dates) + H <= min(r.valid_dates)                # embargo inside the origin too
        assert r.scored_dates[0] == r.origin and len(r.scored_dates) == 2
        assert all(d >= r.origin for d in r.scored_dates)
        assert r.train_rows == int(data["as_of"].isin(r.train_dates).sum())
        assert r.valid_rows == int(data["as_of"].isin(r.valid_dates).sum())
        scored = result.scores[result.scores["origin"] == r.origin]
        assert set(scored["as_of"]) == set(r.scored_dates)
        assert len(scored) == int(data["as_of"].isin(r.scored_dates).sum()) == r.figures["rows"]


def test_the_figures_are_finite_pooled_and_set_against_the_true_pd(result):
    frame = result.to_frame()
    assert len(frame) == 2
    numbers = frame.select_dtypes("number")
    assert {"auc", "brier", "ks", "ece", "mean_pd", "default_rate", "true_pd_auc", "auc_vs_true_pd"} <= set(numbers)
    assert np.isfinite(numbers.to_numpy(float)).all()
    assert ((frame["auc"] > 0.6) & (frame["auc"] < 1)).all()
    np.testing.assert_allclose(frame["auc_vs_true_pd"], frame["auc"] / frame["true_pd_auc"])
    np.testing.assert_allclose(frame["brier_vs_true_pd"], frame["brier"] / frame["true_pd_brier"])
    pooled = result.pooled
    assert pooled["rows"] == frame["rows"].sum() and pooled["defaults"] == frame["defaults"].sum()
    assert pooled["default_rate"] == pytest.approx(result.scores[LABEL].mean())
    assert pooled["origin_auc_min"] <= pooled["auc"] + 0.05 and pooled["origin_auc_min"] == frame["auc"].min()
    assert all(math.isfinite(v) for v in pooled.values())
    assert TRUE_PD in result.scores.columns
    out = json.loads(json.dumps(result.to_dict()))
    assert out["origins"][0]["origin"] == str(result.origins[0].origin.date())
    assert out["settings"]["embargo_months"] == 12 and out["pooled"]["rows"] == pooled["rows"]


def test_more_origins_than_the_data_gives_are_refused(data):
    cfg = _cfg(walk_forward_origins=9)
    possible = possible_origins(data["as_of"].unique(), cfg.training)
    # the first origin: one training snapshot, its outcome closed by the validation snapshot,
    # whose outcome closed by the origin
    assert len(possible) == 8 and possible[0] == pd.Timestamp("2023-01-01")
    with pytest.raises(InputError) as err:
        walk_forward(data, default_registry(), cfg)
    assert err.value.field == "walk_forward_origins"
    assert "9 asked, the data gives 8" in str(err.value)
    with pytest.raises(InputError) as err:
        walk_forward(data.drop(columns=[LABEL]), default_registry(), _cfg())
    assert err.value.field == LABEL

