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
    assert "not available" in reg["current_ratio"].reason_text(math.nan)
    for f in reg.features:
        assert "{value}" in f.reason, f.name


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
    from riskcast.features.registry import POLICY_FACTS
    from riskcast.serving.core import CONTEXT_DEFAULTS

    names = [p.name for p in POLICY_FACTS]
    assert CONTEXT_COLUMNS == names and list(CONTEXT_DEFAULTS) == names
    props = features_model(default_registry()).model_json_schema()["properties"]
    assert set(names) <= set(props)
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
