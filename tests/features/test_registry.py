"""One registry drives training, scorecard, service schema, monitoring and reasons: they must agree."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from riskcast.features.registry import FeatureRegistry, default_registry
from riskcast.serving.schemas import ScoreRequest, features_model


def test_registry_has_features_from_all_three_sources():
    reg = default_registry()
    assert len(reg.group("financial")) >= 5
    assert len(reg.group("payment")) >= 5
    assert len(reg.group("industry")) >= 2


def test_generated_views_agree_with_the_registry():
    reg = default_registry()
    trend = {1: "ascending", -1: "descending", 0: "auto"}
    assert reg.monotone_constraints == [f.direction for f in reg.features]
    assert reg.scorecard_trends == {f.name: trend[f.direction] for f in reg.features}
    schema = features_model(reg).model_json_schema()["properties"]
    for f in reg.features:
        prop = schema[f.name]
        bounds = {k: v for opt in prop.get("anyOf", [prop]) for k, v in opt.items() if k in ("minimum", "maximum")}
        assert bounds.get("minimum") == f.valid_min and bounds.get("maximum") == f.valid_max, f.name
    feats = ScoreRequest.model_fields["features"]
    assert feats is not None


def test_reason_texts_render_values():
    reg = default_registry()
    assert reg["dbt_mean_3m"].reason_text(38.2) == "Invoices paid on average 38 days late over the last 3 months"
    assert reg["liabilities_to_assets"].reason_text(0.83) == "Liabilities are 83% of total assets"
    # a missing value is its source's reason, never a sentence of the feature's
    try:
        reg["current_ratio"].reason_text(math.nan)
    except ValueError:
        pass
    else:
        raise AssertionError("a missing value got a sentence of its own")
    for f in reg.features:
        assert "{value}" in f.reason, f.name
    # in the customer's terms: money, not the log the model reads; days, not fractions of months
    assert reg["log_total_assets"].reason_text(math.log1p(1_234_567)) == "Small balance sheet: total assets of 1,234,567"
    assert reg["log_revenue"].reason_text(math.log1p(250_000)) == "Small turnover: annual revenue of 250,000"
    assert reg["months_since_late"].reason_text(0.5) == "Last late payment only 15 days ago"
    for f in reg.features:
        assert "log" not in f.reason.lower() and "/" not in f.reason.split("(")[0], f.reason


def test_every_feature_belongs_to_exactly_one_source():
    from riskcast.features.registry import SOURCES

    reg = default_registry()
    members = {s: [f.name for f in reg.features if f.source == s] for s in SOURCES}
    assert sorted(n for names in members.values() for n in names) == sorted(reg.names)
    # the ratios against the industry are missing exactly when the statement is: its source
    assert members["financial_statements"] == [f.name for f in reg.group("financial")] + [
        "current_ratio_vs_industry", "liabilities_to_assets_vs_industry", "roa_vs_industry"]
    assert members["relationship"] == ["relationship_months"]  # every customer has it, a new one at 0
    assert set(members["payment_history"]) == {f.name for f in reg.group("payment")} - {"relationship_months"}
    assert members["industry"] == ["industry_default_rate_12m", "industry_growth_12m"]
    assert not set(SOURCES) & set(reg.names)  # a source's reason is told apart by its name
    for s in reg.sources:
        assert s.absent.count(":") == 1 and s.partial.count(":") == 1, s.name  # what is missing: what to do


def test_the_sources_are_in_the_book_as_declared(demo_workdir):
    """A customer without a statement on file misses every feature of that source, and every
    book customer has the relationship's length."""
    import pandas as pd

    reg = default_registry()
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    no_statement = scored["revenue"].isna()
    assert 0 < no_statement.sum() < len(scored)
    statements = [f.name for f in reg.features if f.source == "financial_statements"]
    assert scored.loc[no_statement, statements].isna().all().all()
    assert scored["relationship_months"].notna().all()


def test_a_registry_saved_before_sources_keeps_its_version_and_gets_them():
    """Old bundles: their registry file has no sources; they are taken from the built-in
    features, and the version the bundle's store was built under is unchanged."""
    import dataclasses
    import hashlib
    import json

    reg = default_registry()
    later = {"source", "shown", "nan_means", "fill", "reason_filled"}
    old = {"features": [{k: v for k, v in dataclasses.asdict(f).items() if k not in later} for f in reg.features]}
    loaded = FeatureRegistry.from_dict(old)
    old_version = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert loaded.version == old_version
    assert [f.source for f in loaded.features] == [f.source for f in reg.features]
    assert loaded["overdue_beyond_usual_days"].nan_means
    # such a bundle was trained on the fills training applied then: the built-in ones
    assert [f.fill for f in loaded.features] == [f.fill for f in reg.features]
    assert loaded["months_since_late"].reason_filled == reg["months_since_late"].reason_filled
    assert loaded.fill_steps == reg.fill_steps
    # one saved before fills only: the very registry, version and all (its stores still match)
    before_fills = {"features": [{k: v for k, v in dataclasses.asdict(f).items() if k not in ("fill", "reason_filled")}
                                 for f in reg.features]}
    assert FeatureRegistry.from_dict(before_fills) == reg
    assert FeatureRegistry.from_dict(before_fills).version == reg.version


def test_the_built_in_fills_are_what_training_always_filled():
    reg = default_registry()
    fills = {f.name: f.fill for f in reg.features if f.fill is not None}
    assert fills == {"invoices_12m": 0.0, "overdue_amount_open": 0.0, "months_since_late": "relationship_months"}
    assert reg.filled == frozenset(fills)
    # the policy facts' fills are their declared defaults, after the features'
    from riskcast.features.registry import POLICY_FACTS

    facts = {s.name: s.value for s in reg.fill_steps if s.name not in reg}
    assert facts == {p.name: p.default for p in POLICY_FACTS if not math.isnan(p.default)}
    assert facts == {"amount_12m": 0.0, "open_receivables": 0.0, "max_days_overdue_open": 0.0}


def test_a_fill_is_left_out_of_the_version_and_kept_when_saved():
    import dataclasses

    reg = default_registry()
    j = reg.names.index("invoices_12m")
    unfilled = FeatureRegistry(tuple(dataclasses.replace(f, fill=None) if i == j else f
                                     for i, f in enumerate(reg.features)))
    assert unfilled.version == reg.version and "invoices_12m" not in unfilled.filled
    # a registry saved with no fill for a built-in feature keeps none (the saved word wins)
    back = FeatureRegistry.from_dict(json.loads(json.dumps(unfilled.to_dict())))
    assert back["invoices_12m"].fill is None and back == unfilled


def _one(name="a", **kw):
    from riskcast.features.registry import Feature

    return Feature(name, "table", f"Column {name}", 0, kw.pop("lo", 0.0), kw.pop("hi", 10.0), "{value}", **kw)


@pytest.mark.parametrize("kw, words", [
    ({"fill": 11.0}, "fill 11.0 is outside its valid range"),
    ({"fill": math.nan}, "fill nan is outside its valid range"),
    ({"fill": True}, "fill must be None, a number or a feature's name"),
    ({"fill": [0.0]}, "fill must be None, a number or a feature's name"),
    ({"fill": "a"}, "fill must name another feature"),
    ({"fill": ""}, "fill must name another feature"),
])
def test_a_bad_fill_is_refused_naming_the_feature(kw, words):
    with pytest.raises(ValueError, match="feature a: " + re.escape(words)):
        _one(**kw)


@pytest.mark.parametrize("features, words", [
    (lambda: (_one("a", fill="nope"),), "feature a: fill names 'nope', which is no feature of the registry"),
    (lambda: (_one("a", fill="b"), _one("b", fill="a")), "feature a: its fill takes from itself (a -> b -> a)"),
    (lambda: (_one("a", fill="b"), _one("b", hi=20.0)),
     "feature a: fill takes b, whose valid range [0.0, 20.0] is not within [0.0, 10.0]"),
])
def test_a_fill_that_cannot_apply_is_refused_with_the_registry(features, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        FeatureRegistry(features())


def test_fills_apply_in_order_a_source_filled_before_it_is_taken():
    reg = FeatureRegistry((_one("a", fill="b"), _one("b", fill="c"), _one("c", fill=4.0), _one("d")))
    assert [s.name for s in reg.fill_steps][:3] == ["c", "b", "a"]
    assert reg.fill_row({"a": None, "b": math.nan, "c": None, "d": 1.0}) == {"c": 4.0, "b": 4.0, "a": 4.0}
    assert reg.fill_row({"a": 2.0, "b": 3.0, "c": 1.0, "d": math.nan}) == {}
    # a fact the row does not carry is not added; one it carries missing takes its default
    assert "amount_12m" not in reg.fill_row({"a": 1.0})
    assert reg.fill_row({"a": 1.0, "amount_12m": None}) == {"amount_12m": 0.0}
    frame = pd.DataFrame({"a": [np.nan, 1.0], "b": [np.nan, np.nan], "c": [np.nan, 2.0], "d": [np.nan, 3.0]})
    out = reg.fill(frame)
    assert out.to_numpy().tolist()[0][:3] == [4.0, 4.0, 4.0] and np.isnan(out["d"].iloc[0])
    assert out.to_numpy().tolist()[1][:3] == [1.0, 2.0, 2.0]
    assert frame["a"].isna().iloc[0]  # the caller's frame is left as it was


def test_the_frame_and_the_row_fill_give_the_same_bits():
    """One declaration, two forms: training's frame and order entry's row are filled alike,
    on every pattern of missing values a book or a request has."""
    from riskcast.features.registry import REQUEST_FACTS

    reg = default_registry()
    rng = np.random.default_rng(9)
    n = 2000
    cols = reg.names + [f.name for f in REQUEST_FACTS]
    X = rng.uniform(0.0, 50.0, size=(n, len(cols)))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:50] = np.nan
    X[50:100, cols.index("relationship_months")] = np.nan  # nothing to take: stays missing
    X[100:110] = -0.0  # a sign is a bit too
    frame = pd.DataFrame(X, columns=cols)
    filled = reg.fill(frame)[cols].to_numpy()
    rows = []
    for r in frame.to_dict("records"):
        rows.append([{**r, **reg.fill_row(r)}[c] for c in cols])
    got = np.array(rows, dtype=np.float64)
    same = (got.view(np.uint64) == filled.view(np.uint64)) | (np.isnan(got) & np.isnan(filled))
    assert same.all()
    # and the fills did fill: every declared one, wherever it was missing and could be
    for name in ("invoices_12m", "overdue_amount_open", "amount_12m", "open_receivables", "max_days_overdue_open"):
        assert not np.isnan(filled[:, cols.index(name)]).any(), name
    msl, rel = cols.index("months_since_late"), cols.index("relationship_months")
    took = np.isnan(X[:, msl])
    assert (filled[took, msl][~np.isnan(X[took, rel])] == X[took, rel][~np.isnan(X[took, rel])]).all()
    assert np.isnan(filled[50:100, msl][np.isnan(X[50:100, msl])]).all()
    assert np.isnan(filled[:, cols.index("revenue")]).sum() == np.isnan(X[:, cols.index("revenue")]).sum()


def test_the_frame_fill_names_a_missing_column():
    from riskcast.errors import InputError

    reg = default_registry()
    with pytest.raises(InputError) as e:
        reg.fill(pd.DataFrame({"invoices_12m": [np.nan]}))
    assert e.value.field == reg.names[0] and reg.names[0] in str(e.value)


def test_a_policy_fact_default_outside_its_range_is_refused():
    from riskcast.features.registry import PolicyFact

    with pytest.raises(ValueError, match=re.escape("policy fact x: default -1.0 is outside its valid range")):
        PolicyFact("x", "a fact", -1.0)
    assert math.isnan(PolicyFact("x", "a fact", math.nan).default)  # NaN: stays missing


def test_round_trip_through_a_bundle_file():
    reg = default_registry()
    assert FeatureRegistry.from_dict(reg.to_dict()) == reg


def test_duplicate_names_are_refused():
    f = default_registry().features[0]
    try:
        FeatureRegistry((f, f))
    except ValueError as e:
        assert f.name in str(e)
    else:
        raise AssertionError("duplicate feature names were accepted")


def test_policy_facts_are_one_list_for_features_core_and_schema():
    from riskcast.features.build import CONTEXT_COLUMNS
    from riskcast.features.registry import POLICY_FACTS, REQUEST_FACTS
    from riskcast.serving.core import CONTEXT_DEFAULTS

    names = [p.name for p in POLICY_FACTS]
    assert CONTEXT_COLUMNS == names and list(CONTEXT_DEFAULTS) == names
    props = features_model(default_registry()).model_json_schema()["properties"]
    assert {p.name for p in REQUEST_FACTS} <= set(props)
    # the book's own limits come from the last rescore, never from a request
    assert {"booked_limit", "limit_ceiling", "book_limits_total"} <= set(names) - set(props)
    assert not set(names) & set(default_registry().names)  # policy facts are never model inputs


def test_registry_feature_table_and_store_agree(demo_workdir):
    """The registry, a built feature table and the order-entry store hold the same features."""
    import sqlite3

    import pandas as pd

    from riskcast.features.build import CONTEXT_COLUMNS, ID_COLUMNS
    from riskcast.features.store import TABLE, FeatureStore

    reg = default_registry()
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    assert [c for c in scored.columns if c in reg] == reg.names
    store = FeatureStore(demo_workdir / "features.sqlite")
    assert store.registry_version_ == reg.version
    expected = ID_COLUMNS + reg.names + CONTEXT_COLUMNS + ["registry_version"]
    assert store.columns_ == expected
    with sqlite3.connect(demo_workdir / "features.sqlite") as con:
        n, dates = con.execute(f"SELECT COUNT(*), COUNT(DISTINCT as_of) FROM {TABLE}").fetchone()
    assert n == len(scored) and dates == 1


def test_registry_version_changes_with_any_definition():
    import dataclasses

    reg = default_registry()
    first = reg.features[0]
    changed = FeatureRegistry((dataclasses.replace(first, valid_max=first.valid_max + 1), *reg.features[1:]))
    assert changed.version != reg.version and default_registry().version == reg.version
