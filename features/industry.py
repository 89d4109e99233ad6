"""Industry signals: the trailing default rate and growth of the customer's industry.

A month's signal is published after the month ends, so at ``as_of`` only months that ended
before it are known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def industry_features(signals: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per industry (index ``industry``): trailing 12-month default rate and growth."""
    month_start = as_of.to_period("M").to_timestamp()
    known = signals[signals["month"] < month_start]
    last12 = known[known["month"] >= month_start - pd.DateOffset(months=12)]
    rate = last12.groupby("industry")["default_rate"].mean()
    idx = known.pivot_table(index="month", columns="industry", values="growth_index", aggfunc="last").sort_index()
    if len(idx) >= 13:
        growth = idx.iloc[-1] / idx.iloc[-13].where(idx.iloc[-13] > 0) - 1.0
    else:
        growth = pd.Series(np.nan, index=idx.columns)
    out = pd.DataFrame({"industry_default_rate_12m": rate, "industry_growth_12m": growth})
    out.index.name = "industry"
    return out
