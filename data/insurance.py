"""Trade credit insurance on a date: which buyers are covered and for how much, the exposure
insured and uninsured, the expected loss net of the cover, and the invoices past the claim
threshold with the day their claim is due.

- **In force** on a date: a policy whose ``valid_from`` (empty: always) is on or before it and
  whose ``valid_to`` (empty: open-ended) is on or after it; two in force for one buyer at once
  are refused, naming the buyer (which limit counts would be a guess).
- **Insured exposure**: what is open of the invoices issued while the policy runs (it covers
  the sales made under it), up to the insured limit, the insurer's decision; the rest is
  uninsured. **Covered**: the insured exposure x the cover share (the insurer pays,
  e.g., 90% of an insured loss).
- **Expected loss net of cover**: PD x LGD x (exposure - covered). The insured part's loss is
  the insurer's, less the share the seller keeps.
- **Claims**: an open invoice of an insured buyer, issued under the policy, more than its ``waiting_days`` past
  due (protracted default) may be claimed from the day after; the claim is due
  ``claim_filing_days`` later. What it claims: its part of the insured limit (the limit taken
  by the buyer's invoices oldest first) x the cover share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskcast.errors import DataValidationError

COVER_COLUMNS = ("insurer", "insured_limit", "cover_share", "waiting_days", "valid_from")


def cover_on(insurance: pd.DataFrame | None, as_of: pd.Timestamp) -> pd.DataFrame:
    """The policies in force on ``as_of``, one per buyer (index ``customer_id``)."""
    if insurance is None or not len(insurance):
        return pd.DataFrame({c: pd.Series([], dtype=object if c == "insurer" else "datetime64[ns]" if c == "valid_from"
                                          else float) for c in COVER_COLUMNS},
                            index=pd.Index([], name="customer_id", dtype=object))
    at = pd.Timestamp(as_of).normalize()
    start = insurance["valid_from"] if "valid_from" in insurance.columns else pd.Series(pd.NaT, index=insurance.index)
    end = insurance["valid_to"] if "valid_to" in insurance.columns else pd.Series(pd.NaT, index=insurance.index)
    live = insurance[(start.isna() | (start <= at)) & (end.isna() | (end >= at))]
    twice = live["customer_id"].duplicated(keep=False)
    if twice.any():
        cid = live.loc[twice, "customer_id"].iloc[0]
        rows = ", ".join(str(i) for i in live.index[live["customer_id"] == cid][:5])
        raise DataValidationError("credit_insurance", "customer_id",
                                  f"{int(twice.sum())} policies are in force on {at.date()} for the same buyers, "
                                  f"e.g. {cid!r} (rows {rows}): one policy per buyer at a time")
    out = live.assign(valid_from=start[live.index]).set_index(live["customer_id"].astype(str))[list(COVER_COLUMNS)]
    out.index.name = "customer_id"
    return out


def insurable(open_inv: pd.DataFrame, cover: pd.DataFrame) -> pd.Series:
    """Per insured buyer, what is open of its invoices issued while its policy runs (a policy
    covers the sales made under it, not what was owed when it began)."""
    inv = open_inv[open_inv["customer_id"].astype(str).isin(cover.index)]
    start = cover["valid_from"].reindex(inv["customer_id"].astype(str)).to_numpy(dtype="datetime64[ns]")
    under = np.isnat(start) | (inv["issue_date"].to_numpy(dtype="datetime64[ns]") >= start)
    return inv.loc[under].groupby(inv.loc[under, "customer_id"].astype(str))["open_amount"].sum()


def insured(exposure: pd.DataFrame, cover: pd.DataFrame, under_cover: pd.Series | None = None) -> pd.DataFrame:
    """Per customer of ``exposure`` (``customer_id``, ``exposure``, ``pd_12m``): its cover, the
    exposure insured (what is open under the policy, ``under_cover``, by default all of it, up
    to the insured limit) and uninsured, and what the cover pays of it."""
    ids = exposure["customer_id"].astype(str)
    c = cover.reindex(ids)
    limit = c["insured_limit"].to_numpy(dtype=float)
    share = c["cover_share"].to_numpy(dtype=float)
    e = exposure["exposure"].to_numpy(dtype=float)
    has = ~np.isnan(limit)
    base = e if under_cover is None else np.minimum(e, under_cover.reindex(ids).fillna(0.0).to_numpy(dtype=float))
    ins = np.where(has, np.minimum(base, np.nan_to_num(limit)), 0.0)
    out = pd.DataFrame({"customer_id": exposure["customer_id"].to_numpy(), "insurer": c["insurer"].to_numpy(),
                        "insured_limit": limit, "cover_share": share, "exposure": e, "insured": np.round(ins, 2),
                        "uninsured": np.round(e - ins, 2), "covered": np.round(ins * np.nan_to_num(share), 2)})
    if "pd_12m" in exposure.columns:
        out["pd_12m"] = exposure["pd_12m"].to_numpy(dtype=float)
    return out


def net_expected_loss(pd_12m: np.ndarray, lgd: float, exposure: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """PD x LGD x (exposure - what the cover pays)."""
    return pd_12m * lgd * (exposure - covered)


def claims(open_inv: pd.DataFrame, cover: pd.DataFrame, as_of: pd.Timestamp, filing_days: int) -> pd.DataFrame:
    """The open invoices of insured buyers past their policy's waiting period: from when a
    claim may be made, its deadline, the days left and what it claims."""
    cols = ["customer_id", "invoice_id", "due_date", "days_past_due", "open_amount", "insurer", "claim_from",
            "deadline", "days_left", "insured_part", "claimable"]
    if not len(cover) or not len(open_inv):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    inv = open_inv[open_inv["customer_id"].astype(str).isin(cover.index)].copy()
    c = cover.reindex(inv["customer_id"].astype(str))
    start = c["valid_from"].to_numpy(dtype="datetime64[ns]")
    under = np.isnat(start) | (inv["issue_date"].to_numpy(dtype="datetime64[ns]") >= start)
    inv, c = inv[under], c[under]   # only the sales made under the policy are its to pay
    inv["insurer"] = c["insurer"].to_numpy()
    # the insured limit taken by each buyer's open invoices, the oldest first
    inv = inv.sort_values(["customer_id", "due_date", "invoice_id"], kind="stable")
    c = cover.reindex(inv["customer_id"].astype(str))
    before = inv.groupby("customer_id", sort=False)["open_amount"].cumsum() - inv["open_amount"]
    limit = c["insured_limit"].to_numpy(dtype=float)
    inv["insured_part"] = np.round(np.clip(limit - before.to_numpy(), 0.0, inv["open_amount"].to_numpy()), 2)
    waiting = c["waiting_days"].to_numpy(dtype=float)
    past = inv["days_past_due"].to_numpy() > waiting
    inv, waiting, share = inv[past], waiting[past], c["cover_share"].to_numpy(dtype=float)[past]
    due = inv["due_date"].to_numpy(dtype="datetime64[ns]")
    inv["claim_from"] = due + (waiting.astype(np.int64) + 1).astype("timedelta64[D]")
    inv["deadline"] = inv["claim_from"] + pd.Timedelta(days=filing_days)
    inv["days_left"] = (inv["deadline"] - pd.Timestamp(as_of).normalize()).dt.days
    inv["claimable"] = np.round(inv["insured_part"].to_numpy() * share, 2)
    return inv.sort_values(["deadline", "claimable"], ascending=[True, False], kind="stable")[cols] \
        .reset_index(drop=True)


def insurance_summary(view: pd.DataFrame, lgd: float, claimed: pd.DataFrame) -> dict:
    """The book's insured and uninsured exposure, the expected loss gross and net of the cover,
    and the claims past their threshold (how many, for how much, how many past their deadline)."""
    pd_ = view["pd_12m"].to_numpy(dtype=float)
    e, covered = view["exposure"].to_numpy(dtype=float), view["covered"].to_numpy(dtype=float)
    gross = float((pd_ * lgd * e).sum())
    net = float(net_expected_loss(pd_, lgd, e, covered).sum())
    late = claimed["days_left"].to_numpy() < 0 if len(claimed) else np.zeros(0, dtype=bool)
    return {"insured_customers": int(view["insured_limit"].notna().sum()),
            "exposure": round(float(e.sum()), 2), "insured": round(float(view["insured"].sum()), 2),
            "uninsured": round(float(view["uninsured"].sum()), 2), "covered": round(float(covered.sum()), 2),
            "insured_customers_over_limit": int((view["uninsured"][view["insured_limit"].notna()] > 0.005).sum()),
            "expected_loss": round(gross, 2), "expected_loss_net": round(net, 2),
            "claims": {"invoices": len(claimed), "claimable": round(float(claimed["claimable"].sum()), 2)
                       if len(claimed) else 0.0, "past_deadline": int(late.sum())}}


def insurance_lines(s: dict) -> list[str]:
    """The book's insurance figures as the rescore prints them."""
    c = s["claims"]
    return [f"credit insurance: {s['insured_customers']:,} customers insured; of the exposure {s['exposure']:,.0f}, "
            f"{s['insured']:,.0f} insured ({s['covered']:,.0f} covered) and {s['uninsured']:,.0f} uninsured "
            f"({s['insured_customers_over_limit']:,} insured customers above their insured limit); expected loss "
            f"{s['expected_loss']:,.0f}, net of cover {s['expected_loss_net']:,.0f}; claims past the waiting period: "
            f"{c['invoices']:,} invoices, {c['claimable']:,.0f} claimable, {c['past_deadline']:,} past their deadline"]
