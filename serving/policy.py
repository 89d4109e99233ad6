"""Credit policy: grade and customer facts in, credit limit, terms and decision out.

Written over arrays so that one order at entry and the whole book at rescoring go through
the same code. Every threshold comes from ``PolicyConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """Limits, terms and decisions; with ``explain`` also each decision's reason and conditions
    (order entry). Without (a whole book), the decisions alone, column by column: the same
    rules in the same order (a test compares the two on random books)."""
    limit = credit_limit(x, cfg)
    max_terms = np.array([cfg.terms_days[b] for b in x.band], dtype=float)
    terms = np.where(np.isnan(x.requested_terms_days), max_terms, np.minimum(x.requested_terms_days, max_terms))
    exposure = x.open_receivables + x.order_amount
    if not explain:
        return PolicyOutputs(limit, terms.astype(int), _decisions(x, cfg, limit, terms, exposure), [], exposure, [])
    n = len(limit)
    decision = np.empty(n, dtype=object)
    conditions: list[list[str]] = [[] for _ in range(n)]
    why: list[str] = [""] * n
    for i in range(n):
        band = x.band[i]
        if band in cfg.decline_bands:
            decision[i], why[i] = DECLINE, f"band {band} is declined by policy"
        elif x.max_days_overdue_open[i] > cfg.decline_overdue_days:
            decision[i], why[i] = DECLINE, f"invoices {x.max_days_overdue_open[i]:.0f} days overdue (limit {cfg.decline_overdue_days})"
        elif x.refer_reason[i]:
            decision[i], why[i] = REFER, str(x.refer_reason[i])
        elif exposure[i] <= limit[i]:
            if band in cfg.conditions_bands:
                deposit = round(cfg.deposit_share * x.order_amount[i], 2)
                decision[i], why[i] = CONDITIONS, f"band {band}: within limit, with a deposit"
                conditions[i] = [f"deposit of {cfg.deposit_share:.0%} ({deposit:,.2f}) before delivery",
                                 f"payment terms Net {int(terms[i])}"]
            else:
                decision[i], why[i] = APPROVE, "exposure within the credit limit"
        elif exposure[i] <= limit[i] * (1.0 + cfg.refer_margin):
            decision[i], why[i] = REFER, f"exposure {exposure[i]:,.2f} exceeds the limit {limit[i]:,.2f} by less than {cfg.refer_margin:.0%}"
        elif x.order_amount[i] <= 0:
            decision[i], why[i] = REFER, f"open receivables {exposure[i]:,.2f} already exceed the limit {limit[i]:,.2f}"
        else:
            prepay = min(round(exposure[i] - limit[i], 2), x.order_amount[i])
            decision[i], why[i] = CONDITIONS, f"exposure {exposure[i]:,.2f} exceeds the limit {limit[i]:,.2f}"
            conditions[i] = [f"prepayment of {prepay:,.2f} (the part of the order above the credit limit)"]
        if terms[i] <= 0 and decision[i] in (APPROVE, CONDITIONS):
            decision[i] = CONDITIONS
            conditions[i] = conditions[i] + ["prepayment in full (no credit terms for this grade)"]
    return PolicyOutputs(limit, terms.astype(int), decision, conditions, exposure, why)


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
