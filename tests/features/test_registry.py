"""One registry drives training, scorecard, service schema, monitoring and reasons: they must agree."""

import math

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
    later = {"source", "shown", "nan_means"}
    old = {"features": [{k: v for k, v in dataclasses.asdict(f).items() if k not in later} for f in reg.features]}
    loaded = FeatureRegistry.from_dict(old)
    old_version = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert loaded.version == old_version
    assert [f.source for f in loaded.features] == [f.source for f in reg.features]
    assert loaded["overdue_beyond_usual_days"].nan_means


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
