"""Compiled trees: the leaves LightGBM reaches, its margin to the last bit and the same path
attribution, for each way a split treats missing values; a model that cannot be compiled, or a
machine without a compiler, falls back to ``pred_leaf`` with the reason kept."""

import lightgbm as lgb
import numpy as np
import pytest

from riskcast.training import compiled
from riskcast.training.attribution import COMPILE_FROM_ROWS, LeafAttribution


def _data(seed=3, n=5000):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 3] = rng.integers(-3, 4, size=n)          # whole numbers: rows sit on the thresholds
    X[:, 4] = np.where(rng.random(n) < 0.4, 0.0, rng.exponential(size=n))  # many exact zeros
    X[rng.random(X.shape) < 0.12] = np.nan
    z = np.nan_to_num(X)
    logit = -2 + 1.2 * z[:, 0] - z[:, 1] + 0.4 * z[:, 3] + 0.8 * (z[:, 4] > 0.5) + 1.0 * np.isnan(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _probe_rows(X, booster):
    """Rows on every threshold, just either side of it, at tiny values, and missing."""
    rows = [X[:COMPILE_FROM_ROWS]]
    for tree in booster.dump_model()["tree_info"][:20]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "leaf_index" in node:
                continue
            stack += [node["left_child"], node["right_child"]]
            f, t = node["split_feature"], node["threshold"]
            for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), 1e-36, -1e-36, 0.0, np.nan):
                r = X[:3].copy()
                r[:, f] = v
                rows.append(r)
    return np.vstack(rows)


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
def test_compiled_trees_reach_lightgbms_leaves_margin_and_attribution(missing, tmp_path):
    X, y = _data()
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 2,
              "min_data_in_leaf": 20}
    if missing == "zero":
        params["zero_as_missing"] = True
    if missing == "none":
        params["use_missing"] = False
    booster = lgb.train(params, lgb.Dataset(X, y), 60)
    kinds = {n.get("missing_type") for t in booster.dump_model()["tree_info"]
             for n in _internal(t["tree_structure"])}
    assert {"nan": "NaN", "zero": "Zero", "none": "None"}[missing] in kinds
    probe = _probe_rows(X, booster)
    att, fast, margin, contrib = _compiled_agrees(booster, probe, tmp_path)
    np.testing.assert_array_equal(fast.margin(probe), margin)
    ref_margin, _ = LeafAttribution(booster).explain(probe)  # no folder: never compiled
    np.testing.assert_array_equal(ref_margin, margin)
    # what a batch gets: the compiled answer, from two threads as from one
    m2, c2 = att.explain(probe, num_threads=2)
    np.testing.assert_array_equal(m2, margin)
    np.testing.assert_array_equal(c2, contrib)
    assert list(tmp_path.glob("trees-*.so")), "the library is kept for the next process"


def _compiled_agrees(booster, probe, cache_dir):
    """The compiled trees of ``booster``, checked on ``probe``: LightGBM's leaves, its margin to
    the last bit, and the path attribution of ``pred_leaf`` and the leaf tables."""
    att = LeafAttribution(booster, cache_dir=cache_dir)
    fast = att.compiled()
    assert fast is not None, att.compiled_error
    margin, contrib, leaves = fast.explain(probe, with_leaves=True)
    np.testing.assert_array_equal(leaves, booster.predict(probe, pred_leaf=True))
    np.testing.assert_array_equal(margin, booster.predict(probe, raw_score=True))
    _, ref_contrib = LeafAttribution(booster).explain(probe)  # no folder: never compiled
    np.testing.assert_allclose(contrib, ref_contrib, rtol=0, atol=1e-12)
    return att, fast, margin, contrib


def _internal(node):
    if "leaf_index" in node:
        return []
    return [node, *_internal(node["left_child"]), *_internal(node["right_child"])]


def test_without_a_compiler_a_batch_still_scores_through_pred_leaf(tmp_path, monkeypatch):
    X, y = _data(seed=5, n=3000)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 20)
    monkeypatch.setattr(compiled, "_compiler", lambda: None)
    att = LeafAttribution(booster, cache_dir=tmp_path)
    margin, _ = att.explain(X)
    assert att.compiled() is None and "no C compiler" in att.compiled_error
    np.testing.assert_allclose(margin, booster.predict(X, raw_score=True), rtol=0, atol=1e-12)


def _categorical_data(seed=6, n=6000):
    """Two categorical columns of codes (one beyond a 32-bit word of categories), missing
    ones, and category 0 among the risky ones (where a missing value treated as 0 would show)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[:, 2] = rng.integers(0, 5, size=n)
    X[:, 3] = rng.integers(0, 70, size=n)
    X[rng.random((n, 4)) < 0.1] = np.nan
    risky = np.isin(X[:, 3], [0, 1, 4, 5, 33, 64, 65]) | np.isnan(X[:, 3])
    p = np.where(risky, 0.5, 0.05) * np.where(X[:, 2] == 0, 1.5, 0.7) * np.where(np.nan_to_num(X[:, 0]) > 0, 1.3, 0.8)
    return X, (rng.random(n) < p).astype(int)


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
def test_categorical_splits_compile_to_lightgbms_leaves_margin_and_attribution(missing, tmp_path):
    X, y = _categorical_data()
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "min_data_per_group": 5, "cat_smooth": 1,
              "max_cat_to_onehot": 1, "seed": 1}
    if missing == "zero":
        params["zero_as_missing"] = True
    if missing == "none":
        params["use_missing"] = False
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[2, 3]), 40)
    splits = [n for t in booster.dump_model()["tree_info"] for n in _internal(t["tree_structure"])]
    assert {n["split_feature"] for n in splits if n["decision_type"] == "=="} == {2, 3}
    assert any(int(c) >= 32 for n in splits if n["decision_type"] == "==" for c in n["threshold"].split("||"))
    # every code, fractions of one, negatives, beyond int32, infinities and missing, in both columns
    values = [np.nan, -1.0, -0.99, -0.5, -0.0, 0.0, 1e-36, 0.5, 1.0, 1.9, 4.0, 31.0, 32.0, 33.0, 33.99, 63.0,
              64.0, 65.0, 69.0, 70.0, 200.0, 2.0 ** 31 - 1, 2.0 ** 31, 1e10, -2.0 ** 31, np.inf, -np.inf]
    probe = [X[:COMPILE_FROM_ROWS]]
    for v in values:
        for f in (2, 3):
            r = X[:20].copy()
            r[:, f] = v
            probe.append(r)
    probe = np.vstack(probe)
    _, fast, margin, _ = _compiled_agrees(booster, probe, tmp_path)
    for i in range(0, len(probe), 97):  # order entry's one-row path through the same trees
        m1, _ = fast.explain_row(probe[i])
        assert m1[0] == margin[i]


def test_linear_trees_are_not_compiled_and_say_so(tmp_path):
    X, y = _data(seed=6, n=3000)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7, "linear_tree": True},
                        lgb.Dataset(np.nan_to_num(X), y), 10)
    att = LeafAttribution(booster, cache_dir=tmp_path)
    assert att.compiled() is None and "linear trees" in att.compiled_error
    np.testing.assert_allclose(att.margin(np.nan_to_num(X)), booster.predict(np.nan_to_num(X), raw_score=True),
                               rtol=0, atol=1e-12)


def test_a_call_that_may_not_compile_takes_the_trees_only_when_ready(tmp_path):
    X, y = _data(seed=7, n=3000)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 20)
    att = LeafAttribution(booster, cache_dir=tmp_path)
    margin, contrib = att.explain(X, may_compile=False)  # order entry: no compile inside its budget
    assert not list(tmp_path.glob("trees-*.so")) and att.compiled_error is None
    assert att.compiled() is not None  # rescoring compiles; later calls of either kind use it
    m2, c2 = att.explain(X, may_compile=False)
    np.testing.assert_array_equal(m2, margin)
    np.testing.assert_allclose(c2, contrib, rtol=0, atol=1e-12)


def test_once_compiled_one_row_and_small_batches_get_lightgbms_answer_from_the_trees(tmp_path, monkeypatch):
    X, y = _data(seed=8, n=3000)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15}, lgb.Dataset(X, y), 40)
    probe = _probe_rows(X, booster)[:400]
    reference = LeafAttribution(booster)  # no folder: pred_leaf and the leaf tables
    att = LeafAttribution(booster, cache_dir=tmp_path)
    fast = att.compiled()
    assert fast is not None, att.compiled_error
    rows_through_trees = []
    explain_row = fast.explain_row
    monkeypatch.setattr(fast, "explain_row", lambda x: rows_through_trees.append(1) or explain_row(x))
    for i in range(len(probe)):  # order entry: one row, under a time budget
        margin, contrib = att.explain(probe[i:i + 1], num_threads=1, may_compile=False)
        _, ref_contrib = reference.explain(probe[i:i + 1])
        assert margin.shape == (1,) and contrib.shape == (1, X.shape[1])
        np.testing.assert_array_equal(margin, booster.predict(probe[i:i + 1], raw_score=True))
        np.testing.assert_allclose(contrib, ref_contrib, rtol=0, atol=1e-12)
    assert len(rows_through_trees) == len(probe)
    margin, contrib = att.explain(probe[:50], may_compile=False)  # a small batch of orders
    ref_margin, ref_contrib = reference.explain(probe[:50])
    np.testing.assert_array_equal(margin, ref_margin)
    np.testing.assert_allclose(contrib, ref_contrib, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="expects rows of 6 features"):
        explain_row(np.zeros(5))

