"""Path attribution tables: exact margins, contributions that add up, one row like many."""

import lightgbm as lgb
import numpy as np
import pytest

from riskcast.training.attribution import LeafAttribution


@pytest.fixture(scope="module")
def early_stopped():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6000, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    logit = -3 + 1.5 * np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1]) + 0.5 * np.nan_to_num(X[:, 2]) ** 2
    y = (rng.random(6000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 1}
    train, valid = lgb.Dataset(X[:4000], y[:4000]), lgb.Dataset(X[4000:], y[4000:])
    booster = lgb.train(params, train, 400, valid_sets=[valid], callbacks=[lgb.early_stopping(10, verbose=False)], keep_training_booster=True)
    assert 0 < booster.best_iteration < booster.current_iteration()  # the tables must follow the best iteration
    return booster, X


def test_margins_are_the_models_and_contributions_add_up(early_stopped, tmp_path):
    booster, X = early_stopped
    booster.save_model(str(tmp_path / "m.txt"))
    for b in (booster, lgb.Booster(model_file=str(tmp_path / "m.txt"))):
        att = LeafAttribution(b)
        margin, contrib = att.explain(X)
        np.testing.assert_allclose(margin, b.predict(X, raw_score=True), rtol=0, atol=1e-9)
        np.testing.assert_allclose(contrib.sum(axis=1) + att.expected_value_, margin, rtol=0, atol=1e-9)
        # features 3-5 carry no signal but some splits; a feature never split on gets exactly 0
        used = b.feature_importance("split") > 0
        assert (contrib[:, ~used] == 0).all()


def test_one_row_at_a_time_equals_the_batch(early_stopped):
    booster, X = early_stopped
    att = LeafAttribution(booster)
    margin, contrib = att.explain(X[:300])
    for i in range(300):
        m1, c1 = att.explain(X[i:i + 1])
        assert m1[0] == pytest.approx(margin[i], abs=1e-12)
        np.testing.assert_allclose(c1[0], contrib[i], atol=1e-12)
    # the single-row entry point reaches the same leaves as Booster.predict
    assert att._single is not None
    leaves = booster.predict(X[:300], pred_leaf=True)
    assert all((att._single.leaves(X[i]) == leaves[i]).all() for i in range(300))


def test_the_first_feature_drives_the_contribution_it_should(early_stopped):
    booster, X = early_stopped
    att = LeafAttribution(booster)
    row = np.zeros((1, 6))
    low, high = row.copy(), row.copy()
    low[0, 0], high[0, 0] = -2.0, 2.0
    assert att.explain(high)[1][0, 0] > att.explain(low)[1][0, 0] + 1.0
