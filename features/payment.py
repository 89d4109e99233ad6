"""Payment behaviour from invoices, as the ledger stood on ``as_of``.

An invoice is known from its issue date; it counts as paid only if it was paid by ``as_of``;
an invoice still open past its due date is late by ``as_of - due_date`` days so far.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_DAY = np.timedelta64(1, "D")
COLUMNS = ["invoices_12m", "dbt_mean_3m", "dbt_mean_12m", "dbt_max_12m", "share_late_30_12m", "dispute_rate_12m",
           "amount_12m", "open_receivables", "overdue_amount", "max_days_overdue_open", "overdue_share_open", "dbt_trend"]


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
    frame = pd.DataFrame(
        {
            "customer_id": inv["customer_id"].to_numpy(),
            "issued_12": issued_12.to_numpy(),
            "amount_issued_12": inv["amount"].where(issued_12, 0.0).to_numpy(),
            "due_12": due_12.to_numpy(),
            "dbt_12": dbt.where(due_12).to_numpy(),
            "dbt_3": dbt.where(due_3).to_numpy(),
            "late30_12": (dbt > 30).where(due_12).astype("float64").to_numpy(),
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
            "dbt_max_12m": g["dbt_12"].max(),
            "share_late_30_12m": g["late30_12"].mean(),
            "dispute_rate_12m": g["disputed_12"].mean(),
            "amount_12m": g["amount_issued_12"].sum(),
            "open_receivables": g["open_amount"].sum(),
            "overdue_amount": g["overdue_amount"].sum(),
            "max_days_overdue_open": g["open_days_overdue"].max(),
        }
    )
    out["overdue_share_open"] = (out["overdue_amount"] / out["open_receivables"].where(out["open_receivables"] > 0)).fillna(0.0)
    out["dbt_trend"] = out["dbt_mean_3m"] - out["dbt_mean_12m"]
    return out
