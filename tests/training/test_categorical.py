"""Text columns of a user's table: categorical features declared by the registry, split on
natively by LightGBM with the categories learned at fit, binned as categories by the
scorecard; an unseen category scores as a missing value on every path (the model, the
compiled trees, the scorecard, a saved and loaded bundle, the scoring core's reasons)."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from riskcast.config import GeneratorConfig, RiskcastConfig
from riskcast.errors import DataValidationError, InputError
from riskcast.features.registry import Feature, FeatureRegistry
from riskcast.training.attribution import COMPILE_FROM_ROWS, LeafAttribution
from riskcast.training.bundle import ModelBundle
from riskcast.training.categories import CategoryCodes
from riskcast.training.dataset import LABEL, Split
from riskcast.training.fit import fit_bundle
from riskcast.training.pipeline import prepare_table, table_registry, train_on_table
from riskcast.training.scorecard import MISSING_WOE

RISKY = ("red", "amber")
KINDS = ("red", "green", "blue", "amber", "violet")


def _table(seed: int = 0, n: int = 4000) -> pd.DataFrame:
    """A numeric feature, a text one whose categories carry most of the signal (some missing),
    a pandas category column and a bool column without signal; target ``y``."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n)})
    df["kind"] = rng.choice(KINDS, size=n).astype(object)
    df.loc[rng.random(n) < 0.05, "kind"] = None
    df["size"] = pd.Categorical(rng.choice(["small", "large"], size=n))
    df["flag"] = rng.random(n) < 0.3
    logit = -2.5 + 0.7 * df["a"] + np.where(df["kind"].isin(RISKY), 1.8, 0.0)
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


@pytest.fixture(scope="module")
def fitted():
    """A bundle of the table (training, validation and test rows) and its test rows."""
    cfg = RiskcastConfig()
    data = prepare_table(_table(), "y", None, None)
    registry = table_registry(data, LABEL, [LABEL])
    rest, test = train_test_split(data, test_size=0.25, stratify=data[LABEL], random_state=0)
    train, valid = train_test_split(rest, test_size=0.2, stratify=rest[LABEL], random_state=0)
    return fit_bundle(Split(train, valid, test), registry, cfg.training, cfg.master_scale), test


def _with(rows: pd.DataFrame, **values) -> pd.DataFrame:
    out = rows.copy()
    for k, v in values.items():
        out[k] = pd.Series([v] * len(out), index=out.index, dtype=object)
    return out


def test_text_category_and_bool_columns_become_categorical_features_and_numbers_stay_numbers():
    df = _table(n=200)
    df["count"] = np.arange(200)
    reg = table_registry(df, "y", [])
    assert reg.categorical == ("kind", "size", "flag")
    assert reg.categorical_columns == (1, 2, 3)
    assert [reg[n].dtype for n in reg.names] == ["float", "category", "category", "category", "float"]
    # a numeric column is declared exactly as a numeric-only table declares it
    assert reg["a"] == FeatureRegistry.for_table(["a"])["a"] and reg["count"] == FeatureRegistry.for_table(["count"])["count"]
    assert reg.monotone_constraints == [0] * 5
    back = FeatureRegistry.from_dict(reg.to_dict())
    assert back == reg and back.version == reg.version


def test_a_categorical_feature_declares_no_direction_range_or_fill():
    with pytest.raises(ValueError, match="kind: a categorical feature has no direction"):
        Feature("kind", "table", "Kind", 1, -math.inf, math.inf, "kind is {value}", "", dtype="category")
    with pytest.raises(ValueError, match="kind: a categorical feature"):
        Feature("kind", "table", "Kind", 0, 0.0, 1.0, "kind is {value}", "", dtype="category")
    with pytest.raises(ValueError, match="unknown dtype 'text'"):
        Feature("kind", "table", "Kind", 0, -math.inf, math.inf, "kind is {value}", "", dtype="text")


def test_a_date_column_and_a_text_column_unique_in_every_row_are_refused_by_name():
    df = _table(n=50)
    dated = df.assign(when=pd.Timestamp("2024-01-01"))
    with pytest.raises(DataValidationError, match=r"when.*neither numbers nor text.*--time-col"):
        table_registry(dated, "y", [])
    ids = df.assign(ref=[f"c{i}" for i in range(50)])
    with pytest.raises(DataValidationError, match=r"ref.*different value in every row.*--id-col"):
        table_registry(ids, "y", [])
    assert "ref" not in table_registry(ids, "y", ["ref"])  # named as the id: left out


def test_a_categorical_with_signal_is_split_on_natively_and_moves_the_pd(fitted):
    bundle, test = fitted
    at = bundle.registry.names.index("kind")
    gain = dict(zip(bundle.registry.names, bundle.booster.feature_importance("gain")))
    assert gain["kind"] > gain["size"] and gain["kind"] > gain["flag"] and gain["kind"] > 0
    splits = [n for t in bundle.booster.dump_model()["tree_info"] for n in _internal(t["tree_structure"])]
    assert any(n["decision_type"] == "==" and n["split_feature"] == at for n in splits)
    risky = bundle.model_pd(bundle.matrix(_with(test, kind="red")))
    safe = bundle.model_pd(bundle.matrix(_with(test, kind="green")))
    assert (risky > safe).mean() > 0.95 and risky.mean() > 2 * safe.mean()
    assert bundle.metadata["features"] == ["a", "kind", "size", "flag"]


def test_the_categories_are_learned_from_the_training_rows_in_code_order(fitted):
    bundle, test = fitted
    assert bundle.codes.categories_ == {"kind": tuple(sorted(KINDS)), "size": ("large", "small"),
                                        "flag": ("False", "True")}
    X = bundle.matrix(test.head(4).assign(kind=["amber", None, "violet", "ultraviolet"], flag=[True, False, True, 1]))
    assert X[0, 1] == 0.0 and X[2, 1] == 4.0
    assert math.isnan(X[1, 1]) and math.isnan(X[3, 1])  # missing, and unseen: no code of its own
    assert X[:, 3].tolist()[:3] == [1.0, 0.0, 1.0] and math.isnan(X[3, 3])  # 1 is no "True"
    with pytest.raises(InputError, match="a: values must be numbers"):
        bundle.matrix(test.head(3).assign(a=["x", 1.0, 2.0]))


def _internal(node):
    if "leaf_index" in node:
        return []
    return [node, *_internal(node["left_child"]), *_internal(node["right_child"])]


def test_an_unseen_category_scores_as_a_missing_value_and_a_known_one_does_not(fitted, tmp_path):
    bundle, test = fitted
    rows = test.head(300)
    unseen, missing = _with(rows, kind="ultraviolet"), _with(rows, kind=None)
    known = _with(rows, kind="red")
    for score in (lambda b, df: b.model_pd(b.matrix(df)), lambda b, df: b.scorecard_pd(df)):
        np.testing.assert_array_equal(score(bundle, unseen), score(bundle, missing))
        assert not np.allclose(score(bundle, known), score(bundle, missing))
    # a category seen only as another type (a number, not text) is unseen too, never an error
    np.testing.assert_array_equal(bundle.model_pd(bundle.matrix(_with(rows, kind=7))),
                                  bundle.model_pd(bundle.matrix(missing)))
    # the categories travel with the saved bundle: a loaded one codes and scores alike
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    assert loaded.codes.categories_ == bundle.codes.categories_
    mixed = pd.concat([unseen, known, missing])
    np.testing.assert_array_equal(loaded.model_pd(loaded.matrix(mixed)), bundle.model_pd(bundle.matrix(mixed)))
    np.testing.assert_array_equal(loaded.scorecard_pd(mixed), bundle.scorecard_pd(mixed))


def test_a_bundle_whose_categories_do_not_match_its_registry_is_refused(fitted, tmp_path):
    import json

    from riskcast.training.bundle import BundleDamagedError, write_manifest

    bundle, _ = fitted
    path = bundle.save(tmp_path / "bundle")
    meta = json.loads((path / "metadata.json").read_text())
    del meta["categories"]["kind"]
    (path / "metadata.json").write_text(json.dumps(meta))
    write_manifest(path)
    with pytest.raises(BundleDamagedError, match="categories do not match"):
        ModelBundle.load(path)
    with pytest.raises(ValueError, match="categorical features are"):
        CategoryCodes.fitted(bundle.registry, {"kind": ["a"]})


def test_the_compiled_trees_of_a_categorical_bundle_agree_with_lightgbm(fitted, tmp_path):
    bundle, test = fitted
    rows = pd.concat([test, _with(test.head(100), kind="ultraviolet"), _with(test.head(100), kind=None)])
    rows = pd.concat([rows] * (COMPILE_FROM_ROWS // len(rows) + 1))  # a batch that takes the compiled trees
    X = bundle.matrix(rows)
    att = LeafAttribution(bundle.booster, cache_dir=tmp_path)
    fast = att.compiled()
    assert fast is not None, att.compiled_error
    np.testing.assert_array_equal(fast.margin(X), bundle.booster.predict(X, raw_score=True))
    # what serving takes once the trees are compiled: the same PDs as LightGBM's own
    np.testing.assert_array_equal(bundle.calibrator.logit(att.margin(X)), bundle.model_logit(X))


def test_the_scorecard_bins_the_categorical_as_categories(fitted):
    bundle, test = fitted
    card = bundle.scorecard
    assert card.categorical == ("kind", "size", "flag")
    bins = card.table_[(card.table_["Variable"] == "kind") & (card.table_["Count"] > 0)
                       & ~card.table_["Bin"].isin(["Special", "Missing"])]
    binned = [c for b in bins["Bin"] for c in b]
    assert sorted(binned) == sorted(KINDS)
    woe = {c: w for b, w in zip(bins["Bin"], bins["WoE"]) for c in b}
    assert max(woe[c] for c in RISKY) < min(woe[c] for c in KINDS if c not in RISKY)  # riskier: lower WoE
    # an unseen category takes the WoE of a missing value
    woe_of = card._woe(_with(test.head(5), kind="ultraviolet"))[:, card.feature_names_in_.index("kind")]
    assert (woe_of == MISSING_WOE).all()
    # the points still add up on rows of text
    rows = test.head(200)
    np.testing.assert_allclose(card.points_by_feature(rows).sum(axis=1),
                               card.offset_ - card.factor_ * card.logit(rows), rtol=0, atol=1e-9)


def test_the_scoring_core_decides_text_rows_with_the_category_as_reason(fitted):
    from riskcast.serving.core import ScoringCore
    from riskcast.training.tracking import LoadedModel

    bundle, test = fitted
    core = ScoringCore(RiskcastConfig(), LoadedModel(bundle, "table", "1", "champion"), None)
    rows = pd.concat([_with(test.head(40), kind="red"), _with(test.head(40), kind="ultraviolet")])
    rows = rows.assign(customer_id=[f"c{i}" for i in range(len(rows))])
    book = core.decide_frame(rows)
    np.testing.assert_allclose(book["pd_12m"], np.round(bundle.model_pd(bundle.matrix(rows)), 6))
    kind_reasons = book.loc[book["reason_1_feature"] == "kind", "reason_1"]
    assert len(kind_reasons) > 20 and set(kind_reasons) == {"kind is red"}
    one = core.decide(rows.head(1), np.array([1000.0]), np.array([30.0]))[0]
    assert {"feature": "kind", "value": "red"}.items() <= one["reasons"][0].items()
    # the scorecard decides on the same rows, categories back as their text
    card = core.decide_frame(rows, forced_fallback="monitoring says so")
    assert (card["model_kind"] == "scorecard").all()
    np.testing.assert_allclose(card["pd_12m"], np.round(bundle.scorecard_pd(rows), 6))


def test_the_features_command_output_trains_as_a_table(tmp_path, monkeypatch):
    """`riskcast features` output (text columns customer_id and industry, the as_of date) with
    a 0/1 target trains with train_on_table; the registered model scores the table's own rows."""
    import mlflow

    from riskcast.data.synthetic import generate_book
    from riskcast.features.build import build_features

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    book = generate_book(GeneratorConfig(customers=1500, years=3, seed=5))
    as_of = [pd.Timestamp("2021-07-01"), pd.Timestamp("2022-01-01")]
    df = build_features(book, as_of)
    assert df["industry"].dtype == object
    when = df["customer_id"].map(book.defaults.set_index("customer_id")["default_date"])
    df["y"] = ((when > df["as_of"]) & (when <= df["as_of"] + pd.DateOffset(months=12))).astype(int)
    out = train_on_table(df, "y", RiskcastConfig(), tmp_path, name="features", id_col="customer_id", folds=3)
    assert out.bundle.registry.categorical == ("industry",)
    assert "customer_id" not in out.bundle.registry and "as_of" not in out.bundle.registry
    assert 0.0 < out.metrics["cv_auc"] <= 1.0 and len(out.reference) == len(df)
    model = mlflow.pyfunc.load_model(f"models:/{out.run.model_name}@challenger")
    scored = model.predict(df.head(20))
    np.testing.assert_allclose(scored["pd_12m"], out.bundle.score_frame(df.head(20))["pd_12m"])
