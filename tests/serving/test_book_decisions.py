"""The demo's own book, decided with the default configuration and the seller the demo sets:
a mix a credit manager would sign, and both sides of every limit held."""

import json

import numpy as np
import pandas as pd
import pytest

from riskcast.config import load_config


@pytest.fixture(scope="module")
def book(demo_workdir):
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    summary = json.loads((demo_workdir / "scored_book.summary.json").read_text())
    return scored, summary, load_config(demo_workdir / "riskcast.toml")


def test_the_demo_sets_the_sellers_figures_from_its_book(book):
    _, summary, cfg = book
    assert cfg.seller.annual_revenue and cfg.seller.monthly_operating_cash_flow
    assert summary["seller"]["cap"] == pytest.approx(0.15 * cfg.seller.annual_revenue)


def test_few_customers_are_referred_and_hardly_any_good_ones(book):
    scored, _, _ = book
    referred = scored["decision"] == "refer"
    assert referred.mean() <= 0.15
    assert referred[scored["band"].isin(["A", "B"])].mean() <= 0.05
    assert (scored["decision"] == "approve").mean() >= 0.5
    # every referral says why, and the why is one of the policy's rules
    assert scored.loc[referred, "decision_reason"].str.len().min() > 10
    assert set(scored.loc[referred, "decision_rule"]) <= {"referred_fallback", "referred_over_limit",
                                                           "referred_seller_cap"}


def test_no_limit_passes_either_side_of_the_caps(book):
    scored, summary, cfg = book
    with_revenue = scored["revenue"].notna()
    assert (scored.loc[with_revenue, "credit_limit"] <= 0.15 * scored.loc[with_revenue, "revenue"] + 0.01).all()
    assert scored["credit_limit"].max() <= 0.30 * cfg.seller.monthly_operating_cash_flow + 0.01
    assert scored["credit_limit"].sum() <= 0.15 * cfg.seller.annual_revenue
    assert summary["credit_limits"] == pytest.approx(scored["credit_limit"].sum())


def test_customers_cut_by_the_sellers_total_keep_at_least_their_exposure(book):
    scored, summary, _ = book
    cut = scored["limit_ceiling"].notna()
    assert cut.sum() == summary["seller"]["customers_cut"]
    if cut.any():
        assert (scored.loc[cut, "credit_limit"] >= scored.loc[cut, "exposure"] - 0.01).all()
        np.testing.assert_allclose(scored.loc[cut, "credit_limit"], scored.loc[cut, "limit_ceiling"])


def test_the_rescored_file_says_why_and_on_what_terms_as_the_service_does(book):
    scored, _, _ = book
    assert scored["decision_reason"].notna().all()
    conditional = scored["decision"] == "approve_with_conditions"
    assert (scored.loc[conditional, "conditions"].str.len() > 0).all()
    assert (scored.loc[scored["decision"] == "approve", "conditions"].fillna("") == "").all()


def test_order_entry_refers_a_new_customer_once_the_book_is_at_the_sellers_cap(core, book):
    from riskcast.serving.core import Order, ScoringCore

    scored, _, cfg = book
    total = float(core.store.meta_["book_limits_total"])
    assert total == pytest.approx(scored["credit_limit"].sum(), rel=1e-9)
    # a firm new to us with a full statement: a healthy customer's accounts
    healthy = scored.loc[scored["band"].isin(["A", "B"]) & (scored["operating_cash_flow"] > 0)
                         & (scored["statement_age_days"] < 400)].iloc[0]
    statement = [f.name for f in core.registry.features if f.group == "financial" or f.name.endswith("_vs_industry")]
    facts = {**{n: float(healthy[n]) for n in statement if pd.notna(healthy[n])}, "relationship_months": 0.0,
             "revenue": float(healthy["revenue"]), "operating_cash_flow": float(healthy["operating_cash_flow"])}
    new = Order("NEW-1", 20_000.0, features=facts)
    in_book = scored.loc[(scored["decision"] == "approve") & (scored["credit_limit"] > scored["exposure"] + 2000)]
    old = Order(str(in_book["customer_id"].iloc[0]), 1000.0)

    def at(revenue: float) -> ScoringCore:
        seller = cfg.seller.model_copy(update={"annual_revenue": revenue})
        return ScoringCore(cfg.model_copy(update={"seller": seller}), core.model, core.store)

    full = at(total / 0.15)  # the book's limits are the whole cap
    refused = full.score_order(new)
    assert refused["decision"] == "refer" and "seller's cap" in refused["decision_reason"]
    assert full.score_order(old)["decision"] == "approve"  # its limit is counted already
    roomy = at(2 * total / 0.15)
    assert roomy.score_order(new)["decision"] != "refer"
