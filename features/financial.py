"""Financial-statement ratios from the latest statement filed on or before ``as_of``.

A statement counts from its filing date, not its period end: that is when a credit team
could first have read it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def safe_div(num: pd.Series, den: pd.Series) -> pd.Series:
    """``num / den`` with NaN where the denominator is zero or missing."""
    den = den.where(den != 0)
    return num / den


def latest_statements(statements: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The statement with the latest period end among those filed by ``as_of``, per customer."""
    known = statements[statements["filed_date"] <= as_of]
    latest = known.sort_values(["customer_id", "period_end"]).drop_duplicates("customer_id", keep="last")
    return latest.set_index("customer_id")


def financial_features(statements: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Ratios per customer (index ``customer_id``); customers without a statement are absent."""
    s = latest_statements(statements, as_of)
    ebit, interest = s["ebit"], s["interest_expense"]
    coverage = safe_div(ebit, interest)
    # no interest to pay: full cover when profitable, none when not
    no_interest = (interest == 0) & ebit.notna()
    coverage = coverage.mask(no_interest, np.where(ebit > 0, np.inf, -np.inf))
    out = pd.DataFrame(
        {
            "current_ratio": safe_div(s["current_assets"], s["current_liabilities"]),
            "quick_ratio": safe_div(s["current_assets"] - s["inventory"], s["current_liabilities"]),
            "cash_ratio": safe_div(s["cash"], s["current_liabilities"]),
            "liabilities_to_assets": safe_div(s["total_liabilities"], s["total_assets"]),
            "roa": safe_div(s["net_income"], s["total_assets"]),
            "ebit_margin": safe_div(ebit, s["revenue"]),
            "interest_coverage": coverage,
            "ocf_to_liabilities": safe_div(s["operating_cash_flow"], s["total_liabilities"]),
            "log_total_assets": np.log1p(s["total_assets"].clip(lower=0)),
            "statement_age_days": (as_of - s["period_end"]).dt.days.astype("float64"),
            # context for the credit policy, not model inputs
            "revenue": s["revenue"],
            "operating_cash_flow": s["operating_cash_flow"],
        },
        index=s.index,
    )
    return out
