"""The rescore of a book with a credit insurance table (the demo's): the insured customers' view
and the claims beside the scored book, and the book's expected loss net of cover, against the
same figures worked out again from the scored book and the policies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from riskcast.data.insurance import cover_on
from riskcast.serving.rescore import insurance_paths


def test_the_demo_books_insurance_figures_add_up(demo_workdir):
    summary = json.loads((demo_workdir / "scored_book.summary.json").read_text())
    s = summary["insurance"]
    out = demo_workdir / "scored_book.parquet"
    view_path, claims_path = insurance_paths(out)
    view, claimed = pd.read_parquet(view_path), pd.read_parquet(claims_path)
    scored = pd.read_parquet(out, columns=["customer_id", "pd_12m", "exposure"])
    policies = pd.read_parquet(demo_workdir / "book" / "credit_insurance.parquet")
    cover = cover_on(policies, pd.Timestamp(summary["as_of"]))
    # every scored customer with a policy in force is in the view, with the policy's terms
    assert set(view["customer_id"]) == set(scored["customer_id"]) & set(cover.index)
    v = view.set_index("customer_id")
    assert (v["insured_limit"] == cover.loc[v.index, "insured_limit"]).all()
    assert (v["insured"] <= np.minimum(v["exposure"], v["insured_limit"]) + 0.01).all()
    np.testing.assert_allclose(v["insured"] + v["uninsured"], v["exposure"], atol=0.011)
    np.testing.assert_allclose(v["covered"], v["insured"] * v["cover_share"], atol=0.011)
    # the book's expected loss net of cover: PD x LGD x (exposure - covered) over every scored customer
    lgd = summary["lgd"]
    covered = scored["customer_id"].map(v["covered"]).fillna(0.0)
    assert s["expected_loss_net"] == pytest.approx(float((scored["pd_12m"] * lgd * (scored["exposure"] - covered)).sum()),
                                                   abs=0.05)
    assert s["expected_loss"] == pytest.approx(summary["expected_loss"], abs=0.05)
    assert 0 < s["expected_loss_net"] < s["expected_loss"]
    # a claim: an insured buyer's invoice sold under the policy, past its waiting period, due within the filing days
    assert len(claimed) == s["claims"]["invoices"] > 0
    c = claimed.join(cover, on="customer_id", rsuffix="_policy")
    assert (c["days_past_due"] > c["waiting_days"]).all()
    assert ((c["claim_from"] - c["due_date"]).dt.days == c["waiting_days"] + 1).all()
    assert ((c["deadline"] - c["claim_from"]).dt.days == 60).all()
    assert (c["claimable"] <= c["open_amount"] * c["cover_share"] + 0.01).all()
    opened = pd.read_parquet(demo_workdir / "scored_book.open_invoices.parquet").set_index("invoice_id")
    assert (opened.loc[c["invoice_id"], "issue_date"].to_numpy() >= c["valid_from"].to_numpy()).all()
