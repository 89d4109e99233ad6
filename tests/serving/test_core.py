"""The scoring core on a trained work directory: answers, reasons, fallbacks, bad input."""

import dataclasses

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskcast.errors import InputError, UnknownCustomerError
from riskcast.serving.core import Order, ScoringCore


def _book_customer(demo_workdir):
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    return scored.sort_values("pd_12m").iloc[len(scored) // 2]


def test_a_book_customer_gets_a_full_answer(core, demo_workdir):
    row = _book_customer(demo_workdir)
    d = core.score_order(Order(row["customer_id"], 10_000.0))
    assert 0 < d["pd_12m"] < 1
    assert d["grade"] in core.model.bundle.master_scale.grades
    assert d["decision"] in {"approve", "approve_with_conditions", "refer", "decline"}
    assert d["model"] == {"name": "riskcast-pd", "version": core.model.version, "kind": "lightgbm"}
    assert d["fallback"] is False and d["fallback_reason"] is None
    impacts = [r["impact"] for r in d["reasons"]]
    assert impacts == sorted(impacts, reverse=True) and all(i > 0 for i in impacts)
    sources = {s.name for s in core.registry.sources}
    assert all(r["feature"] in core.registry or r["feature"] in sources for r in d["reasons"])


def test_order_entry_and_rescore_agree(core, demo_workdir):
    """One code path: the online PD equals the batch PD on the same features."""
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet").head(25)
    for _, row in scored.iterrows():
        d = core.score_order(Order(row["customer_id"], 1.0))
        assert d["pd_12m"] == pytest.approx(row["pd_12m"], rel=1e-9)
        assert d["grade"] == row["grade"]


def test_pd_ignores_the_customer_id(core, demo_workdir):
    row = _book_customer(demo_workdir)
    feats = {n: float(row[n]) for n in core.registry.names if pd.notna(row[n])}
    a = core.score_order(Order("X-1", 1000.0, features=feats))
    b = core.score_order(Order("another-name", 1000.0, features=feats))
    assert a["pd_12m"] == b["pd_12m"]


def test_pd_rises_with_days_beyond_terms(core, demo_workdir):
    row = _book_customer(demo_workdir)
    feats = {n: float(row[n]) for n in core.registry.names if pd.notna(row[n])}
    pds = [core.score_order(Order("probe", 1000.0, features={**feats, "dbt_mean_3m": v, "dbt_mean_12m": v}))["pd_12m"]
           for v in (0, 5, 15, 30, 60, 120)]
    assert all(b >= a for a, b in zip(pds, pds[1:])) and pds[-1] > pds[0]


def test_unknown_customer_without_features_is_a_404(core):
    with pytest.raises(UnknownCustomerError) as e:
        core.score_order(Order("nobody", 100.0))
    assert e.value.http_status == 404 and e.value.field == "customer_id"


@pytest.mark.parametrize("order, field", [
    (Order("x", -5.0, features={"dbt_mean_3m": 3.0}), "order_amount"),
    (Order("x", float("nan"), features={"dbt_mean_3m": 3.0}), "order_amount"),
    (Order("x", 5.0, features={"dbt_mean_3m": -3.0}), "features.dbt_mean_3m"),
    (Order("x", 5.0, features={"no_such_feature": 1.0}), "features.no_such_feature"),
    (Order("x", 5.0, features={"roa": float("inf")}), "features.roa"),
    (Order("x", 5.0, requested_terms_days=-30, features={"roa": 0.1}), "requested_terms_days"),
])
def test_bad_input_names_the_field(core, order, field):
    with pytest.raises(InputError) as e:
        core.score_order(order)
    assert e.value.field == field and field in str(e.value)


def test_too_many_missing_features_falls_back_to_the_scorecard(core):
    """An empty request (a new customer is at 0 months) is too little to score."""
    d = core.score_order(Order("new-co", 20_000.0, features={"relationship_months": 0.0}))
    assert d["fallback"] is True and d["model"]["kind"] == "scorecard"
    assert d["fallback_reason"] == "no financial statements and no payment history: too little to score"
    assert d["decision"] in {"refer", "decline"}
    assert 0 < d["pd_12m"] < 1
    texts = [r["text"] for r in d["reasons"]]
    assert not any("not available" in t for t in texts)
    # its fills are its missing payment history: that reason with its action, never "Only 0 invoices"
    assert not {r["feature"] for r in d["reasons"]} & core.registry.filled
    history = [r for r in d["reasons"] if r["feature"] == "payment_history"]
    assert [r["text"] for r in history] == [next(s.absent for s in core.registry.sources if s.name == "payment_history")]


def _statement_of(core, demo_workdir):
    """A book customer's full statement, without its payment history or industry statistics."""
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    names = [f.name for f in core.registry.features if f.source == "financial_statements"]
    row = scored[scored[names].notna().all(axis=1)].iloc[0]
    return {n: float(row[n]) for n in names}


def test_a_new_customer_with_a_full_statement_is_decided_by_the_model(core, demo_workdir):
    """A customer without history can never have payment features: they do not count missing."""
    feats = {**_statement_of(core, demo_workdir), "relationship_months": 0.0}
    assert len(feats) < len(core.registry) / 2  # most of the registry is missing
    d = core.score_order(Order("new-with-accounts", 20_000.0, features=feats))
    assert d["model"]["kind"] == "lightgbm" and d["fallback"] is False and d["fallback_reason"] is None
    # the same through the batch path
    row = core.lookup(Order("new-with-accounts", 20_000.0, features=feats))
    (b,) = core.decide(pd.DataFrame([row]), np.array([20_000.0]), np.array([np.nan]))
    assert b["model"]["kind"] == "lightgbm" and b["pd_12m"] == d["pd_12m"]
    # what it lacks is one reason each, with what to do, never a feature "not available"
    texts = [r["text"] for r in d["reasons"]]
    assert not any("not available" in t for t in texts)
    names = [r["feature"] for r in d["reasons"]]
    assert len(names) == len(set(names))


def test_a_new_customer_is_filled_as_training_fills_and_told_it_has_no_history(core, demo_workdir):
    """Order entry gives a customer new to the book the fills training gives one: the row the
    model sees is one training could have held, and the rule still reads it as no history."""
    reg = core.registry
    feats = {**_statement_of(core, demo_workdir), "relationship_months": 2.5}
    x, facts = core.model_input(Order("new-filled", 20_000.0, features=feats))
    for f in reg.features:
        if f.name in feats:
            assert x[reg.names.index(f.name)] == feats[f.name], f.name
        elif f.fill is None:
            assert np.isnan(x[reg.names.index(f.name)]), f.name
    assert x[reg.names.index("invoices_12m")] == 0.0 and x[reg.names.index("overdue_amount_open")] == 0.0
    assert x[reg.names.index("months_since_late")] == 2.5  # never late: as long ago as the relationship
    assert facts["open_receivables"] == facts["amount_12m"] == facts["max_days_overdue_open"] == 0.0
    assert np.isnan(facts["max_days_late_24m"])
    d = core.score_order(Order("new-filled", 20_000.0, features=feats))
    assert d["model"]["kind"] == "lightgbm" and d["fallback_reason"] is None
    assert not {r["feature"] for r in d["reasons"]} & reg.filled
    # a value supplied is never replaced by a fill; one supplied as null is filled
    x, facts = core.model_input(Order("new-filled", 20_000.0, features={
        **feats, "invoices_12m": 7.0, "months_since_late": None, "open_receivables": None}))
    assert x[reg.names.index("invoices_12m")] == 7.0 and x[reg.names.index("months_since_late")] == 2.5
    assert facts["open_receivables"] == 0.0


def test_the_model_input_is_what_score_order_decides_on(core, demo_workdir):
    """The row ``model_input`` returns is the one scored: the batch path on it gives the same PD."""
    feats = {**_statement_of(core, demo_workdir), "relationship_months": 4.0, "dbt_mean_12m": 3.0}
    x, facts = core.model_input(Order("probe-row", 1_000.0, features=feats))
    d = core.score_order(Order("probe-row", 1_000.0, features=feats))
    frame = pd.DataFrame([{**dict(zip(core.registry.names, x)), **facts, "customer_id": "probe-row"}])
    (b,) = core.decide(frame, np.array([1_000.0]), np.array([np.nan]))
    assert b["pd_12m"] == d["pd_12m"] and b["model"] == d["model"] and b["reasons"] == d["reasons"]


def test_a_single_ratio_is_too_little_for_the_model(core):
    d = core.score_order(Order("one-ratio", 5_000.0, features={"current_ratio": 1.4, "relationship_months": 0.0}))
    assert d["model"]["kind"] == "scorecard" and d["fallback"] is True
    assert d["fallback_reason"].startswith("22 of 24 figures missing for a customer with financial statements (limit ")


def test_a_model_that_raises_falls_back_to_the_scorecard(core, demo_workdir):
    """A booster that expects other columns fails on predict: the scorecard must answer."""
    rng = np.random.default_rng(0)
    wrong = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(rng.normal(size=(200, 3)), rng.integers(0, 2, 200)), 3)
    bundle = core.model.bundle
    broken = type(bundle)(bundle.registry, wrong, bundle.calibrator, bundle.scorecard, bundle.master_scale_config,
                          bundle.scorecard_config, bundle.metadata)
    model = dataclasses.replace(core.model, bundle=broken)
    c = ScoringCore(core.cfg, model, core.store)
    d = c.score_order(Order(_book_customer(demo_workdir)["customer_id"], 100.0))
    assert d["fallback"] is True and d["model"]["kind"] == "scorecard"
    assert d["fallback_reason"].startswith("model error")
    assert d["decision"] == "refer" or d["decision"] == "decline"


def test_without_any_model_the_answer_is_refer(core, demo_workdir):
    c = ScoringCore(core.cfg, None, core.store, model_error="registry unreachable")
    d = c.score_order(Order(_book_customer(demo_workdir)["customer_id"], 100.0))
    assert d["decision"] == "refer" and d["pd_12m"] is None and d["fallback"] is True
    assert "registry unreachable" in d["fallback_reason"]


def test_a_customer_without_statements_is_scored_by_the_model(core, demo_workdir):
    """Missing statements are normal in the book: the learned limit must not send them to the fallback."""
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    no_statement = scored[scored["current_ratio"].isna()]
    assert len(no_statement) > 0
    d = core.score_order(Order(no_statement["customer_id"].iloc[0], 1000.0))
    assert d["model"]["kind"] == "lightgbm" and d["fallback"] is False
    assert 0.0 < core.max_missing_share < 1.0


def test_the_batch_table_is_the_online_answer_column_by_column(core, demo_workdir):
    """One code path: `decide_frame` (rescoring) and `decide` (order entry, a dict per order)
    give the same PD, grade, limit, terms, decision, fallback and reasons for every customer,
    scorecard fallbacks included."""
    import numpy as np
    import pandas as pd

    from riskcast.features.build import CONTEXT_COLUMNS, ID_COLUMNS

    cols = ID_COLUMNS + core.registry.names + CONTEXT_COLUMNS
    rows = pd.read_parquet(demo_workdir / "scored_book.parquet", columns=cols).head(600).copy()
    rows.loc[rows.index[:40], core.registry.names[:30]] = np.nan  # too much missing: the scorecard answers
    frame = core.decide_frame(rows)
    dicts = core.decide(rows, np.zeros(len(rows)), np.full(len(rows), np.nan))
    assert frame["fallback"].sum() >= 40 and (~frame["fallback"]).sum() > 500
    k = core.cfg.serving.top_reasons
    for i, d in enumerate(dicts):
        f = frame.iloc[i]
        assert f["customer_id"] == d["customer_id"] and f["grade"] == d["grade"] and f["band"] == d["band"]
        assert f["pd_12m"] == d["pd_12m"] and f["score"] == d["score"]
        assert f["decision"] == d["decision"] and f["credit_limit"] == d["credit_limit"]
        assert f["recommended_terms_days"] == d["recommended_terms_days"] and f["exposure"] == d["exposure_after_order"]
        assert f["fallback"] == d["fallback"] and f["fallback_reason"] == d["fallback_reason"]
        assert f["model_kind"] == d["model"]["kind"]
        texts = [r["text"] for r in d["reasons"]] + [None] * (k - len(d["reasons"]))
        names = [r["feature"] for r in d["reasons"]] + [None] * (k - len(d["reasons"]))
        assert [f[f"reason_{p + 1}"] for p in range(k)] == texts
        assert [f[f"reason_{p + 1}_feature"] for p in range(k)] == names


def test_the_served_champion_decides_a_large_batch_through_its_compiled_trees(workdir_copy):
    from riskcast.serving.runtime import build_core
    from riskcast.training.attribution import COMPILE_FROM_ROWS, LeafAttribution
    from riskcast.training.bundle import ModelBundle

    core = build_core(workdir_copy)
    bundle = core.model.bundle
    scored = pd.read_parquet(workdir_copy / "scored_book.parquet")
    rows = pd.concat([scored] * (COMPILE_FROM_ROWS // len(scored) + 1), ignore_index=True)
    decided = core.decide_frame(rows)
    assert bundle.attribution.compiled_error is None
    assert list((workdir_copy / "serving" / "models").rglob("compiled/trees-*.so"))
    assert len(decided) == len(rows) and decided["reason_1"].notna().mean() > 0.9
    # what the compiled trees give is what LightGBM's own leaves give
    X = bundle.matrix(rows)
    logit, impact = bundle.explain(X)
    margin, contrib = LeafAttribution(bundle.booster).explain(X)
    np.testing.assert_array_equal(logit, bundle.calibrator.logit(margin))
    np.testing.assert_allclose(impact, contrib * bundle.calibrator.slope_, rtol=0, atol=1e-12)
    # a bundle loaded outside serving (training, the gate) never compiles
    assert ModelBundle.load(bundle.source).compile_dir is None


def test_orders_are_answered_alike_before_and_after_the_trees_compile_in_the_background(workdir_copy):
    from riskcast.serving.runtime import build_core

    core = build_core(workdir_copy)
    att = core.model.bundle.attribution
    ids = pd.read_parquet(workdir_copy / "scored_book.parquet")["customer_id"].astype(str).tolist()[:60]
    orders = [Order(c, 5_000.0 * (1 + i % 7), request_id=f"r{i}") for i, c in enumerate(ids)]
    before = [core.score_order(o) for o in orders]
    assert not att._compile_tried  # one order never compiles
    thread = core.compile_in_background()
    thread.join(120)
    assert att.compiled() is not None, att.compiled_error
    after = [core.score_order(o) for o in orders]
    assert after == before
    assert sum(len(d["reasons"]) for d in after) > len(after)


def test_on_the_book_reasons_explain_themselves_and_both_paths_give_them_alike(core, demo_workdir):
    """No reason reads "not available", a missing source is one reason, and an order gets the
    reasons its customer has in the book table."""
    from riskcast.features.build import CONTEXT_COLUMNS, ID_COLUMNS

    cols = ID_COLUMNS + core.registry.names + CONTEXT_COLUMNS
    rows = pd.read_parquet(demo_workdir / "scored_book.parquet", columns=cols)
    frame = core.decide_frame(rows)
    k = core.cfg.serving.top_reasons
    texts = pd.concat([frame[f"reason_{p + 1}"] for p in range(k)]).dropna()
    assert len(texts) > 2 * len(frame) and not texts.str.contains("not available").any()
    names = frame[[f"reason_{p + 1}_feature" for p in range(k)]]
    for _, row in names.iterrows():
        got = [n for n in row if n is not None]
        assert len(got) == len(set(got))
    # a customer without statements is told so once, with what to do; one with a statement
    # that lacks some figures, that it is incomplete
    reasons = frame[[f"reason_{p + 1}" for p in range(k)]].to_numpy()
    said = reasons[(names == "financial_statements").to_numpy()]
    no_statement = rows["revenue"].isna().to_numpy()
    which = np.broadcast_to(no_statement[:, None], names.shape)[(names == "financial_statements").to_numpy()]
    absent, partial = (core.registry.sources[0].absent, core.registry.sources[0].partial)
    assert core.registry.sources[0].name == "financial_statements"
    assert (said[which] == absent).all() and (said[~which] == partial).all() and which.sum() >= 5
    # order entry gives the same sentences, in the same order
    ids = frame["customer_id"].tolist()
    picked = [i for i in range(len(ids)) if no_statement[i]][:40] + list(range(40))
    for i, d in zip(picked, core.score_orders([Order(ids[i], 1.0) for i in picked])):
        assert d["model"]["kind"] == frame["model_kind"].iloc[i]
        want = [t for t in frame.iloc[i][[f"reason_{p + 1}" for p in range(k)]] if t is not None]
        assert [r["text"] for r in d["reasons"]] == want
