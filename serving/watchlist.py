"""The early-warning watchlist: the scored customers whose figures moved the way trouble starts,
each hit naming the trigger and its figures (``[watchlist]`` holds the thresholds).

- ``pd_rise``: the PD up by ``pd_rise`` of the previous rescore's (1.0: doubled) and by at
  least ``pd_min_rise`` (so that 0.03% to 0.06% is no alarm);
- ``grade_drop``: ``grade_notches`` grades or more below the grade at the last review: the
  desk's, where an analyst approved the customer's standing limit, else the previous
  rescore's, on the same master scale;
- ``paying_later``: the mean days beyond terms of the last 3 months above the last 12
  months' by ``dbt_trend_days`` (the ``dbt_trend`` feature);
- ``orders_jump`` / ``orders_drop``: the monthly orders of the last ``orders_recent_months``
  at least ``orders_high`` times, or at most ``orders_low`` times, the monthly mean of the 12
  months before, for a customer that bought in ``orders_min_months`` of them;
- ``statements_overdue``: the latest statement's period ended more than
  ``statements_overdue_months`` ago (customers that file; one that never did is not late).

A pure function of frames; the rescore writes its hits beside the scored book and, where the
desk exists, opens a review case for each customer on the list.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from riskcast.config import WatchlistConfig

TRIGGERS = ("pd_rise", "grade_drop", "paying_later", "orders_jump", "orders_drop", "statements_overdue")
HIT_COLUMNS = ("customer_id", "trigger", "value", "reference", "threshold", "text", "pd_12m", "grade", "exposure")
_MONTH_DAYS = 30.4375


def watchlist(now: pd.DataFrame, cfg: WatchlistConfig, grades: Sequence[str],
              reviewed: pd.DataFrame | None = None, previous: str = "the previous rescore") -> pd.DataFrame:
    """The hits of ``now`` (one row per scored customer: ``customer_id``, ``pd_12m``, ``grade``,
    ``exposure``, ``dbt_trend``, ``statement_age_days``; with a previous rescore
    ``previous_pd_12m`` and ``grade_change``; with the order pattern ``orders_recent``,
    ``orders_usual``, ``months_with_orders``). ``reviewed``: the desk's reviews
    (``customer_id``, ``grade``, ``reviewed_on``), whose grade the grade drop counts from."""
    parts: list[pd.DataFrame] = []

    def hit(trigger: str, mask: np.ndarray, value: np.ndarray, reference: np.ndarray, threshold: float,
            text: Any) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        rows = now.loc[mask, ["customer_id", "pd_12m", "grade", "exposure"]].reset_index(drop=True)
        v, r = np.asarray(value, dtype=float)[mask], np.asarray(reference, dtype=float)[mask]
        extra = [np.asarray(x)[mask] for x in text[1:]]
        rows.insert(1, "trigger", trigger)
        rows.insert(2, "value", v)
        rows.insert(3, "reference", r)
        rows.insert(4, "threshold", threshold)
        rows.insert(5, "text", [text[0](*args) for args in zip(v, r, *extra)])
        parts.append(rows)

    n = len(now)
    pd_now = now["pd_12m"].to_numpy(dtype=float)
    if "previous_pd_12m" in now.columns:
        before = now["previous_pd_12m"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            up = (pd_now >= before * (1.0 + cfg.pd_rise)) & (pd_now - before >= cfg.pd_min_rise)
        hit("pd_rise", up & ~np.isnan(before), pd_now, before, cfg.pd_rise,
            (lambda v, r: f"PD {v:.2%}, up from {r:.2%} at {previous} (x{v / r:.2f}; the trigger: "
                          f"x{1 + cfg.pd_rise:.2f})",))

    rank = {str(g): i for i, g in enumerate(grades)}
    grade_now = now["grade"].astype(str).map(rank).to_numpy(dtype=float)
    ref = np.full(n, np.nan)
    since = np.full(n, previous, dtype=object)
    if "grade_change" in now.columns:
        change = pd.to_numeric(now["grade_change"], errors="coerce").to_numpy(dtype=float)
        ref = grade_now - change
    if reviewed is not None and len(reviewed):
        at = pd.Index(reviewed["customer_id"].astype(str)).get_indexer(now["customer_id"].astype(str))
        desk = at >= 0
        r_grade = reviewed["grade"].astype(str).map(rank).to_numpy(dtype=float)
        ref = np.where(desk, r_grade[np.maximum(at, 0)], ref)
        since = np.where(desk, "the desk's review of " + reviewed["reviewed_on"].astype(str).to_numpy(dtype=object)
                         [np.maximum(at, 0)], since)
    names = np.array([str(g) for g in grades] + [""], dtype=object)
    with np.errstate(invalid="ignore"):
        down = grade_now - ref >= cfg.grade_notches
    hit("grade_drop", down & ~np.isnan(ref), grade_now, ref, cfg.grade_notches,
        (lambda v, r, s: f"grade {names[int(v)]}, {int(v - r)} notches below grade {names[int(r)]} at {s} (the "
                         f"trigger: {cfg.grade_notches})", since))

    trend = now["dbt_trend"].to_numpy(dtype=float) if "dbt_trend" in now.columns else np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        later = trend >= cfg.dbt_trend_days
    hit("paying_later", later, trend, np.zeros(n), cfg.dbt_trend_days,
        (lambda v, r: f"paying {v:.1f} days later than its usual: mean days beyond terms of the last 3 months "
                      f"over the last 12 months' (the trigger: {cfg.dbt_trend_days:g} days)",))

    if "orders_recent" in now.columns:
        recent = now["orders_recent"].to_numpy(dtype=float)
        usual = now["orders_usual"].to_numpy(dtype=float)
        regular = now["months_with_orders"].fillna(0).to_numpy() >= cfg.orders_min_months
        months = cfg.orders_recent_months
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = recent / usual
        span = f"the last {months} months" if months > 1 else "the last month"
        hit("orders_jump", regular & (ratio >= cfg.orders_high), recent, usual, cfg.orders_high,
            (lambda v, r: f"orders of {v:,.0f} a month over {span}, {v / r:.1f} times its usual {r:,.0f} (the "
                          f"trigger: {cfg.orders_high:g} times)",))
        hit("orders_drop", regular & (ratio <= cfg.orders_low), recent, usual, cfg.orders_low,
            (lambda v, r: f"orders of {v:,.0f} a month over {span}, {v / r:.0%} of its usual {r:,.0f} (the trigger: "
                          f"{cfg.orders_low:.0%})",))

    age = now["statement_age_days"].to_numpy(dtype=float) if "statement_age_days" in now.columns \
        else np.full(n, np.nan)
    limit = cfg.statements_overdue_months * _MONTH_DAYS
    with np.errstate(invalid="ignore"):
        late = age > limit
    hit("statements_overdue", late, age, np.full(n, limit), cfg.statements_overdue_months,
        (lambda v, r: f"the latest statement's period ended {v:.0f} days ago (the trigger: "
                      f"{cfg.statements_overdue_months:g} months)",))

    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=float if c in ("value", "reference", "threshold", "pd_12m",
                                                                     "exposure") else object) for c in HIT_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    order = {t: i for i, t in enumerate(TRIGGERS)}
    out["_t"] = out["trigger"].map(order)
    return out.sort_values(["exposure", "customer_id", "_t"], ascending=[False, True, True], kind="stable") \
        .drop(columns="_t").reset_index(drop=True)[list(HIT_COLUMNS)]


def watch_summary(hits: pd.DataFrame) -> dict[str, Any]:
    return {"customers": int(hits["customer_id"].nunique()), "hits": len(hits),
            "by_trigger": {t: int((hits["trigger"] == t).sum()) for t in TRIGGERS}}


def watchlist_lines(s: dict[str, Any]) -> list[str]:
    """The watchlist's summary as the rescore prints it."""
    by = "  ".join(f"{t.replace('_', ' ')}:{n:,}" for t, n in s["by_trigger"].items())
    line = f"watchlist: {s['customers']:,} customers, {s['hits']:,} trigger hits ({by})"
    if s.get("reviews_opened") is not None:
        line += f"; {s['reviews_opened']:,} review cases opened on the desk"
    return [line]
