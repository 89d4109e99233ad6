"""Credit policy: grade and customer facts in, credit limit, terms and decision out.

The rules are written twice, and held to the same bits by a test on random books: column by
column over arrays for a whole book (rescoring), order by order in plain floats for order
entry, where numpy's cost per call was most of one order's policy (52 against 16 us). Every
threshold comes from ``PolicyConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isfinite, isnan

import numpy as np

from riskcast.config import PolicyConfig

APPROVE, CONDITIONS, REFER, DECLINE = "approve", "approve_with_conditions", "refer", "decline"


@dataclass(frozen=True)
class PolicyInputs:
    band: np.ndarray                 # A-E, object
    revenue: np.ndarray              # annual, NaN without a statement
    operating_cash_flow: np.ndarray  # annual, NaN without a statement
    amount_12m: np.ndarray           # invoiced to the customer over 12 months
    open_receivables: np.ndarray
    max_days_overdue_open: np.ndarray
    relationship_months: np.ndarray
    order_amount: np.ndarray
    requested_terms_days: np.ndarray  # NaN when not requested
    refer_reason: np.ndarray          # object: why a person must look (fallback, ...), or None


@dataclass(frozen=True)
class PolicyOutputs:
    credit_limit: np.ndarray
    terms_days: np.ndarray
    decision: np.ndarray
    conditions: list[list[str]]
    exposure: np.ndarray
    explanation: list[str]


def credit_limit(x: PolicyInputs, cfg: PolicyConfig) -> np.ndarray:
    share = np.array([cfg.limit_share_of_revenue[b] for b in x.band], dtype=float)
    by_revenue = share * x.revenue
    # without statements, lend against the trading history: two months of purchases, scaled by band
    by_history = share / 0.15 * 2.0 * x.amount_12m / 12.0
    limit = np.where(np.isnan(x.revenue), by_history, by_revenue)
    ocf_cap = cfg.limit_share_of_monthly_ocf * x.operating_cash_flow / 12.0
    # where the cash flow is known it bounds the limit; a firm burning cash gets no open credit
    limit = np.where(np.isnan(x.operating_cash_flow), limit, np.minimum(limit, np.maximum(ocf_cap, 0.0)))
    new = (x.amount_12m <= 0) & (x.open_receivables <= 0)
    limit = np.where(new, np.minimum(np.where(np.isnan(limit), 0.0, limit), cfg.new_customer_share_of_order * x.order_amount), limit)
    loyal = (x.relationship_months >= cfg.loyal_min_months) & (x.max_days_overdue_open <= 0) & ~new
    limit = np.where(loyal, limit * (1.0 + cfg.loyal_uplift), limit)
    return np.round(np.where(np.isnan(limit), 0.0, np.maximum(limit, 0.0)), 2)


def apply_policy(x: PolicyInputs, cfg: PolicyConfig, explain: bool = True) -> PolicyOutputs:
    """Limits, terms and decisions; with ``explain`` also each decision's reason and conditions,
    order by order in plain floats (order entry: numpy's cost per call was most of one order's
    policy). Without (a whole book), column by column: the same rules in the same order, to
    the same bits (a test compares the two on random books)."""
    if not explain:
        limit = credit_limit(x, cfg)
        max_terms = np.array([cfg.terms_days[b] for b in x.band], dtype=float)
        terms = np.where(np.isnan(x.requested_terms_days), max_terms, np.minimum(x.requested_terms_days, max_terms))
        exposure = x.open_receivables + x.order_amount
        return PolicyOutputs(limit, terms.astype(int), _decisions(x, cfg, limit, terms, exposure), [], exposure, [])
    n = len(x.band)
    limits, terms_days, exposures = np.empty(n), np.empty(n, dtype=int), np.empty(n)
    decision = np.empty(n, dtype=object)
    conditions: list[list[str]] = []
    why: list[str] = []
    rows = zip(x.band, x.revenue.tolist(), x.operating_cash_flow.tolist(), x.amount_12m.tolist(),
               x.open_receivables.tolist(), x.max_days_overdue_open.tolist(), x.relationship_months.tolist(),
               x.order_amount.tolist(), x.requested_terms_days.tolist(), x.refer_reason)
    for i, (band, revenue, ocf, amount_12m, open_, overdue, months, order, requested, refer) in enumerate(rows):
        limit = _limit_of(band, revenue, ocf, amount_12m, open_, overdue, months, order, cfg)
        max_terms = float(cfg.terms_days[band])
        terms = max_terms if isnan(requested) else _min(requested, max_terms)
        exposure = open_ + order
        cond: list[str] = []
        if band in cfg.decline_bands:
            d, w = DECLINE, f"band {band} is declined by policy"
        elif overdue > cfg.decline_overdue_days:
            d, w = DECLINE, f"invoices {overdue:.0f} days overdue (limit {cfg.decline_overdue_days})"
        elif refer:
            d, w = REFER, str(refer)
        elif exposure <= limit:
            if band in cfg.conditions_bands:
                deposit = round(cfg.deposit_share * order, 2)
                d, w = CONDITIONS, f"band {band}: within limit, with a deposit"
                cond = [f"deposit of {cfg.deposit_share:.0%} ({deposit:,.2f}) before delivery",
                        f"payment terms Net {int(terms)}"]
            else:
                d, w = APPROVE, "exposure within the credit limit"
        elif exposure <= limit * (1.0 + cfg.refer_margin):
            d, w = REFER, f"exposure {exposure:,.2f} exceeds the limit {limit:,.2f} by less than {cfg.refer_margin:.0%}"
        elif order <= 0:
            d, w = REFER, f"open receivables {exposure:,.2f} already exceed the limit {limit:,.2f}"
        else:
            prepay = min(round(exposure - limit, 2), order)
            d, w = CONDITIONS, f"exposure {exposure:,.2f} exceeds the limit {limit:,.2f}"
            cond = [f"prepayment of {prepay:,.2f} (the part of the order above the credit limit)"]
        if terms <= 0 and d in (APPROVE, CONDITIONS):
            d = CONDITIONS
            cond = cond + ["prepayment in full (no credit terms for this grade)"]
        limits[i], terms_days[i], exposures[i], decision[i] = limit, int(terms), exposure, d
        conditions.append(cond)
        why.append(w)
    return PolicyOutputs(limits, terms_days, decision, conditions, exposures, why)


def _min(a: float, b: float) -> float:
    """``np.minimum`` of two floats: NaN when either is."""
    return a if a != a or a <= b else b


def _limit_of(band: str, revenue: float, ocf: float, amount_12m: float, open_receivables: float,
              overdue: float, months: float, order: float, cfg: PolicyConfig) -> float:
    """``credit_limit`` of one customer in plain floats: its steps in its order, so its bits."""
    share = float(cfg.limit_share_of_revenue[band])
    limit = share / 0.15 * 2.0 * amount_12m / 12.0 if isnan(revenue) else share * revenue
    if not isnan(ocf):
        cap = cfg.limit_share_of_monthly_ocf * ocf / 12.0
        limit = _min(limit, cap if cap > 0.0 or isnan(cap) else 0.0)
    new = amount_12m <= 0 and open_receivables <= 0
    if new:
        limit = _min(0.0 if isnan(limit) else limit, cfg.new_customer_share_of_order * order)
    if months >= cfg.loyal_min_months and overdue <= 0 and not new:
        limit = limit * (1.0 + cfg.loyal_uplift)
    limit = 0.0 if isnan(limit) else (limit if limit > 0.0 else 0.0)
    scaled = limit * 100.0  # np.round(limit, 2): scale, round half to even, scale back
    return round(scaled) / 100.0 if isfinite(scaled) else limit


def _decisions(x: PolicyInputs, cfg: PolicyConfig, limit: np.ndarray, terms: np.ndarray,
               exposure: np.ndarray) -> np.ndarray:
    """``apply_policy``'s decisions as arrays: the first rule that holds, in the rules' order."""
    band = np.asarray(x.band, dtype=object)
    referred = np.array([bool(r) for r in x.refer_reason], dtype=bool)
    within = exposure <= limit
    decision = np.select(
        [np.isin(band, list(cfg.decline_bands)), x.max_days_overdue_open > cfg.decline_overdue_days, referred,
         within & np.isin(band, list(cfg.conditions_bands)), within, exposure <= limit * (1.0 + cfg.refer_margin),
         x.order_amount <= 0],
        [DECLINE, DECLINE, REFER, CONDITIONS, APPROVE, REFER, REFER], default=CONDITIONS).astype(object)
    decision[(terms <= 0) & np.isin(decision, [APPROVE, CONDITIONS])] = CONDITIONS
    return decision
