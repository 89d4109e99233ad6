"""Trade credit insurance against figures worked out by hand: the policy in force, the exposure
insured (only the sales made under the policy, up to the insured limit) and uninsured, the
expected loss net of cover, and the claims past the waiting period with their deadline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskcast.data.insurance import claims, cover_on, insurable, insurance_summary, insured, net_expected_loss
from riskcast.data.io import read_tables
from riskcast.errors import DataValidationError

AS_OF = pd.Timestamp("2025-12-31")
LGD = 0.45

POLICIES = pd.DataFrame({
    "customer_id": ["C1", "C2", "C4"],
    "insurer": ["Atlas", "Atlas", "Borea"],
    "insured_limit": [60_000.0, 50_000.0, 10_000.0],
    "cover_share": [0.9, 0.8, 0.9],
    "waiting_days": [180.0, 180.0, 180.0],
    "valid_from": pd.to_datetime(["2025-01-01", "2024-06-01", "2024-01-01"]),
    "valid_to": pd.to_datetime([None, None, "2025-06-30"]),   # C4's cover ran out
})

OPEN = pd.DataFrame({
    "customer_id": ["C1", "C1", "C2", "C3"],
    "invoice_id": ["A-old", "A-new", "B1", "D1"],
    "issue_date": pd.to_datetime(["2024-12-01", "2025-03-01", "2025-09-01", "2025-11-01"]),
    "due_date": pd.to_datetime(["2024-12-31", "2025-03-31", "2025-10-01", "2025-12-01"]),
    "open_amount": [50_000.0, 50_000.0, 30_000.0, 20_000.0],
})
OPEN["days_past_due"] = (AS_OF - OPEN["due_date"]).dt.days
EXPOSURE = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "exposure": [100_000.0, 30_000.0, 20_000.0],
                         "pd_12m": [0.05, 0.02, 0.10]})


def test_the_policy_in_force_and_two_at_once_refused():
    cover = cover_on(POLICIES, AS_OF)
    assert list(cover.index) == ["C1", "C2"]             # C4's ended on 2025-06-30
    assert list(cover_on(POLICIES, pd.Timestamp("2024-07-01")).index) == ["C2", "C4"]
    twice = pd.concat([POLICIES, POLICIES.iloc[[0]].assign(insurer="Other")], ignore_index=True)
    with pytest.raises(DataValidationError) as e:
        cover_on(twice, AS_OF)
    assert e.value.field == "customer_id" and "'C1'" in str(e.value) and "one policy per buyer" in str(e.value)


def test_the_exposure_insured_and_the_expected_loss_net_of_cover_by_hand():
    cover = cover_on(POLICIES, AS_OF)
    under = insurable(OPEN, cover)
    # C1's December 2024 invoice was sold before its policy began: not the insurer's
    assert under.to_dict() == {"C1": 50_000.0, "C2": 30_000.0}
    view = insured(EXPOSURE, cover, under).set_index("customer_id")
    assert view.loc["C1", ["insured", "uninsured", "covered"]].tolist() == [50_000.0, 50_000.0, 45_000.0]
    assert view.loc["C2", ["insured", "uninsured", "covered"]].tolist() == [30_000.0, 0.0, 24_000.0]
    assert view.loc["C3", ["insured", "uninsured", "covered"]].tolist() == [0.0, 20_000.0, 0.0]
    net = net_expected_loss(view["pd_12m"].to_numpy(), LGD, view["exposure"].to_numpy(), view["covered"].to_numpy())
    # 0.45 x (0.05 x 55,000 + 0.02 x 6,000 + 0.10 x 20,000) = 0.45 x 4,870
    assert net.sum() == pytest.approx(2_191.5)
    s = insurance_summary(view.reset_index(), LGD, claims(OPEN, cover, AS_OF, 60))
    assert s["expected_loss"] == pytest.approx(0.45 * (5_000 + 600 + 2_000))     # 3,420
    assert s["expected_loss_net"] == pytest.approx(2_191.5)
    assert (s["insured"], s["uninsured"], s["covered"]) == (80_000.0, 70_000.0, 69_000.0)
    assert s["insured_customers"] == 2 and s["insured_customers_over_limit"] == 1
    # without the invoices, all of the exposure counts up to the limit
    whole = insured(EXPOSURE, cover).set_index("customer_id")
    assert whole.loc["C1", "insured"] == 60_000.0 and whole.loc["C1", "covered"] == 54_000.0


def test_the_claims_past_the_waiting_period_with_their_deadline():
    cover = cover_on(POLICIES, AS_OF)
    c = claims(OPEN[OPEN["days_past_due"] > 0], cover, AS_OF, filing_days=60)
    # A-new: due 2025-03-31, 275 days past due; B1 is 91 days (not yet); A-old was sold before the cover
    assert c["invoice_id"].tolist() == ["A-new"]
    row = c.iloc[0]
    assert row["claim_from"] == pd.Timestamp("2025-09-28")            # the day after 180 days past due
    assert row["deadline"] == pd.Timestamp("2025-11-27") and row["days_left"] == -34
    assert row["insured_part"] == 50_000.0 and row["claimable"] == 45_000.0
    assert insurance_summary(insured(EXPOSURE, cover, insurable(OPEN, cover)), LGD, c)["claims"] == {
        "invoices": 1, "claimable": 45_000.0, "past_deadline": 1}


def test_the_table_is_read_from_the_data_folder_and_its_unknown_buyers_counted(tmp_path):
    inv = pd.DataFrame({"invoice_id": ["I1"], "customer_id": ["C1"], "issue_date": ["2025-03-01"],
                        "due_date": ["2025-03-31"], "amount": [100.0], "paid_date": [None]})
    inv.to_csv(tmp_path / "invoices.csv", index=False)
    pol = POLICIES.drop(columns="waiting_days").assign(valid_from=["2025-01-01", "2024-06-01", "2024-01-01"],
                                                        valid_to=["", "", "2025-06-30"])
    pol.to_csv(tmp_path / "credit_insurance.csv", index=False)
    tables = read_tables(tmp_path, with_truth=False)
    t = tables.credit_insurance
    assert len(t) == 3 and (t["waiting_days"] == 180.0).all()             # the contract's default
    assert t["valid_from"].dtype.kind == "M" and t["valid_to"].isna().sum() == 2
    assert tables.notes.left_out["credit_insurance"]["rows"] == 2        # C2 and C4 trade nowhere in the ledger
    (tmp_path / "credit_insurance.csv").write_text("customer_id,insurer,insured_limit,cover_share\nC1,Atlas,-5,0.9\n")
    with pytest.raises(DataValidationError) as e:
        read_tables(tmp_path, with_truth=False)
    assert e.value.table == "credit_insurance" and e.value.field == "insured_limit"
    (tmp_path / "credit_insurance.csv").unlink()
    assert read_tables(tmp_path, with_truth=False).credit_insurance is None
    assert np.isnan(insured(EXPOSURE, cover_on(None, AS_OF))["insured_limit"]).all()
