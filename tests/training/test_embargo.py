"""The out-of-time split keeps a horizon between windows: no outcome a fit learnt from (training)
or was calibrated on (validation) ends after the first date it is tested on."""

import pandas as pd
import pytest

from riskcast.config import GeneratorConfig, RiskcastConfig
from riskcast.data.synthetic import generate_book
from riskcast.errors import InputError
from riskcast.features.build import build_features
from riskcast.features.registry import default_registry
from riskcast.training.dataset import (LABEL, Split, attach_labels, outcome_overlap, snapshot_dates,
                                       split_out_of_time)

H = pd.DateOffset(months=12)


@pytest.fixture(scope="module")
def data(small_book):
    cfg = RiskcastConfig()
    return attach_labels(build_features(small_book, snapshot_dates(small_book, cfg.training), default_registry()),
                         small_book, cfg.training.horizon_months)


def _split(data, **kw):
    t = RiskcastConfig().training
    return split_out_of_time(data, t.valid_snapshots, t.test_snapshots, horizon_months=t.horizon_months, **kw)


def test_no_training_or_validation_outcome_passes_the_window_after_it(data):
    split = _split(data)
    first_valid, first_test = split.valid["as_of"].min(), split.test["as_of"].min()
    assert (split.train["as_of"] + H).max() <= first_test
    assert (split.valid["as_of"] + H).max() <= first_test
    assert (split.train["as_of"] + H).max() <= first_valid
    dates = sorted(data["as_of"].unique())
    # the test is still the newest snapshots, and each earlier window the newest one allowed
    assert sorted(split.test["as_of"].unique()) == dates[-2:]
    assert split.valid["as_of"].max() + H == first_test
    assert split.train["as_of"].max() + H == first_valid
    assert split.train["as_of"].min() == dates[0]
    # the snapshots inside the two 12-month gaps are used by no window
    used = {*split.train["as_of"], *split.valid["as_of"], *split.test["as_of"]}
    assert len(dates) - len(used) == 2 * 3
    overlap = outcome_overlap(split, 12)
    assert not overlap["overlap"]
    assert overlap["train_past_test_days"] == overlap["valid_past_test_days"] == overlap["train_past_valid_days"] == 0
    assert overlap["first_test"] == str(first_test.date())
    windows = split.windows()
    assert windows["embargo_months"] == "12" and windows["embargo_validation"] == "true"
    assert {"train_window", "valid_window", "test_window"} <= set(windows)


def test_without_the_embargo_the_old_overlap_is_back(data):
    split = _split(data, embargo_months=0)
    first_test = split.test["as_of"].min()
    assert (split.train["as_of"] + H).max() > first_test
    assert (split.valid["as_of"] + H).max() > first_test
    overlap = outcome_overlap(split, 12)
    assert overlap["overlap"] and overlap["train_past_test_days"] > 180
    # the split of old: every snapshot used, validation right before the test
    dates = sorted(data["as_of"].unique())
    assert split.valid["as_of"].max() == dates[-3]
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)
    assert split.windows()["embargo_months"] == "0"


def test_embargoing_the_test_only_lets_training_outcomes_reach_into_validation(data):
    split = _split(data, embargo_validation=False)
    overlap = outcome_overlap(split, 12)
    assert overlap["train_past_valid_days"] > 0
    assert overlap["train_past_test_days"] == overlap["valid_past_test_days"] == 0
    assert split.train["as_of"].max() < split.valid["as_of"].min()


def test_a_book_too_short_for_the_embargo_is_refused_naming_as_of(data):
    dates = sorted(data["as_of"].unique())
    short = data[data["as_of"].isin(dates[:9])]
    with pytest.raises(InputError) as err:
        _split(short)
    assert err.value.field == "as_of"
    message = str(err.value)
    assert "9 snapshot(s)" in message and "at least 10 snapshots" in message and "27 months" in message
    # ten are enough, and without the embargo nine are: the refusal is the embargo's
    assert _split(data[data["as_of"].isin(dates[:10])]).train["as_of"].nunique() == 1
    assert _split(short, embargo_months=0).train["as_of"].nunique() == 6
    with pytest.raises(InputError) as err:
        _split(data.iloc[:0])
    assert err.value.field == "as_of"


def test_bad_embargo_one_class_windows_and_undated_splits_are_refused(data):
    with pytest.raises(InputError) as err:
        _split(data, embargo_months=-1)
    assert err.value.field == "embargo_months"
    no_defaults = data.copy()
    no_defaults.loc[no_defaults["as_of"] >= sorted(data["as_of"].unique())[-2], LABEL] = 0
    with pytest.raises(InputError) as err:
        _split(no_defaults)
    assert err.value.field == LABEL and "test window" in str(err.value)
    undated = data.drop(columns=["as_of"])
    with pytest.raises(InputError) as err:
        outcome_overlap(Split(undated, undated, undated), 12)
    assert err.value.field == "as_of"


def test_snapshot_dates_refuses_a_book_too_short_before_any_feature_is_built():
    book = generate_book(GeneratorConfig(customers=80, years=4, seed=3))
    cfg = RiskcastConfig().training
    with pytest.raises(InputError) as err:
        snapshot_dates(book, cfg)
    message = str(err.value)
    assert "9 snapshot(s)" in message and "at least 10" in message and "4.25 years" in message
    # the same book is long enough for the split without the embargo
    assert len(snapshot_dates(book, cfg.model_copy(update={"embargo_months": 0}))) == 9
