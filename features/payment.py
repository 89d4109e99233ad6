"""Payment behaviour from invoices, as the ledger stood on ``as_of``.

An invoice is known from its issue date; it counts as paid only if it was paid by ``as_of``;
an invoice still open past its due date is late by ``as_of - due_date`` days so far.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_DAY = np.timedelta64(1, "D")
COLUMNS = ["invoices_12m", "dbt_mean_3m", "dbt_mean_12m", "dbt_max_3m", "dbt_max_12m", "dbt_weighted_3m",
           "dbt_weighted_12m", "share_late_30_12m", "share_late_60_12m", "share_late_90_12m", "dispute_rate_12m",
           "amount_12m", "open_receivables", "overdue_amount_open", "max_days_overdue_open", "overdue_share_open",
           "dbt_trend", "months_since_late"]


def payment_features(invoices: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Payment features per customer (index ``customer_id``) for customers with any invoice."""
    inv = invoices[invoices["issue_date"] <= as_of]
    if inv.empty:
        return pd.DataFrame(columns=COLUMNS, index=pd.Index([], name="customer_id"), dtype="float64")
    paid = inv["paid_date"].notna() & (inv["paid_date"] <= as_of)
    end = inv["paid_date"].where(paid, as_of)
    dbt = ((end - inv["due_date"]) / _DAY).clip(lower=0)
    due = inv["due_date"] <= as_of
    due_12 = due & (inv["due_date"] > as_of - pd.DateOffset(months=12))
    due_3 = due & (inv["due_date"] > as_of - pd.DateOffset(months=3))
    issued_12 = inv["issue_date"] > as_of - pd.DateOffset(months=12)
    open_amount = inv["amount"].where(~paid, 0.0)
    overdue = ~paid & due
    late_seen = (dbt > 0) & due  # late as seen on as_of: paid late, or open past due
    frame = pd.DataFrame(
        {
            "customer_id": inv["customer_id"].to_numpy(),
            "issued_12": issued_12.to_numpy(),
            "amount_issued_12": inv["amount"].where(issued_12, 0.0).to_numpy(),
            "due_12": due_12.to_numpy(),
            "dbt_12": dbt.where(due_12).to_numpy(),
            "dbt_3": dbt.where(due_3).to_numpy(),
            "dbt_amount_12": (dbt * inv["amount"]).where(due_12).to_numpy(),
            "dbt_amount_3": (dbt * inv["amount"]).where(due_3).to_numpy(),
            "amount_due_12": inv["amount"].where(due_12).to_numpy(),
            "amount_due_3": inv["amount"].where(due_3).to_numpy(),
            "late30_12": (dbt > 30).where(due_12).astype("float64").to_numpy(),
            "late60_12": (dbt > 60).where(due_12).astype("float64").to_numpy(),
            "late90_12": (dbt > 90).where(due_12).astype("float64").to_numpy(),
            "last_late_due": inv["due_date"].where(late_seen).to_numpy(),
            "disputed_12": inv["disputed"].where(due_12).astype("float64").to_numpy(),
            "open_amount": open_amount.to_numpy(),
            "overdue_amount": open_amount.where(overdue, 0.0).to_numpy(),
            "open_days_overdue": dbt.where(overdue, 0.0).to_numpy(),
        }
    )
    g = frame.groupby("customer_id", sort=True)
    out = pd.DataFrame(
        {
            "invoices_12m": g["issued_12"].sum().astype("float64"),
            "dbt_mean_3m": g["dbt_3"].mean(),
            "dbt_mean_12m": g["dbt_12"].mean(),
            "dbt_max_3m": g["dbt_3"].max(),
            "dbt_max_12m": g["dbt_12"].max(),
            "dbt_weighted_3m": g["dbt_amount_3"].sum(min_count=1) / g["amount_due_3"].sum(min_count=1),
            "dbt_weighted_12m": g["dbt_amount_12"].sum(min_count=1) / g["amount_due_12"].sum(min_count=1),
            "share_late_30_12m": g["late30_12"].mean(),
            "share_late_60_12m": g["late60_12"].mean(),
            "share_late_90_12m": g["late90_12"].mean(),
            "dispute_rate_12m": g["disputed_12"].mean(),
            "amount_12m": g["amount_issued_12"].sum(),
            "open_receivables": g["open_amount"].sum(),
            "overdue_amount_open": g["overdue_amount"].sum(),
            "max_days_overdue_open": g["open_days_overdue"].max(),
            "last_late_due": g["last_late_due"].max(),
        }
    )
    out["overdue_share_open"] = (out["overdue_amount_open"] / out["open_receivables"].where(out["open_receivables"] > 0)).fillna(0.0)
    # months since the due date of the last invoice seen late; NaN (never late) is filled by the caller
    out["months_since_late"] = (as_of - out.pop("last_late_due")).dt.days / 30.4375
    out["dbt_trend"] = out["dbt_mean_3m"] - out["dbt_mean_12m"]
    return out
