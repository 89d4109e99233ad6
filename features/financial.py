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


def previous_revenue(statements: pd.DataFrame, latest: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Revenue of the statement filed by ``as_of`` for the period before each latest one."""
    known = statements[statements["filed_date"] <= as_of][["customer_id", "period_end", "revenue"]]
    prev = known.merge(latest["period_end"].rename("latest_end").reset_index(), on="customer_id")
    prev = prev[prev["period_end"] < prev["latest_end"]]
    prev = prev.sort_values(["customer_id", "period_end"]).drop_duplicates("customer_id", keep="last")
    return prev.set_index("customer_id")["revenue"].reindex(latest.index)


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
            "working_capital_to_assets": safe_div(s["current_assets"] - s["current_liabilities"], s["total_assets"]),
            # negative equity: the debt is not covered at all, so the ratio takes its ceiling
            "debt_to_equity": safe_div(s["total_liabilities"], s["equity"]).mask(s["equity"] <= 0, np.inf),
            "net_margin": safe_div(s["net_income"], s["revenue"]),
            "asset_turnover": safe_div(s["revenue"], s["total_assets"]),
            "dso_days": 365.0 * safe_div(s["receivables"], s["revenue"]),
            "log_revenue": np.log1p(s["revenue"].clip(lower=0)),
            "revenue_growth": safe_div(s["revenue"], previous_revenue(statements, s, as_of)) - 1.0,
            "altman_z2": altman_z2(s),
            "statement_age_days": (as_of - s["period_end"]).dt.days.astype("float64"),
            # context for the credit policy, not model inputs
            "revenue": s["revenue"],
            "operating_cash_flow": s["operating_cash_flow"],
        },
        index=s.index,
    )
    return out


def altman_z2(s: pd.DataFrame) -> pd.Series:
    """Altman's Z'' score for private, non-manufacturing firms (higher is safer)."""
    ta = s["total_assets"]
    return (6.56 * safe_div(s["current_assets"] - s["current_liabilities"], ta)
            + 3.26 * safe_div(s["retained_earnings"], ta)
            + 6.72 * safe_div(s["ebit"], ta)
            + 1.05 * safe_div(s["equity"], s["total_liabilities"]))
