"""The feature registry: one declarative list that every other part is generated from.

Training columns and their order, LightGBM monotone constraints, the scorecard's monotonic
trends, the service's feature schema, the monitoring columns and the reason-code sentences
all come from here, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

Group = Literal["financial", "payment", "industry", "order", "table"]
Direction = Literal[-1, 0, 1]


@dataclass(frozen=True)
class Feature:
    """One model input.

    ``direction`` is the expected effect on risk: +1 when a higher value means a higher PD,
    -1 when it means a lower PD, 0 when no direction is imposed. Values outside
    ``[valid_min, valid_max]`` are clipped when computed and rejected when supplied by a caller.
    ``reason`` is the sentence shown when the feature raises the customer's risk; ``{value}``
    is replaced by the customer's value formatted with ``fmt``.
    """

    name: str
    group: Group
    description: str
    direction: Direction
    valid_min: float
    valid_max: float
    reason: str
    fmt: str = ".2f"
    dtype: Literal["float"] = "float"

    def reason_text(self, value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{self.description}: not available"
        return self.reason.format(value=format(value, self.fmt))


_F = Feature

_FEATURES: tuple[Feature, ...] = (
    # financial statements: the latest statement filed on or before as_of
    _F("current_ratio", "financial", "Current assets / current liabilities", -1, 0.0, 50.0,
       "Current ratio of {value}: little short-term cover for short-term debts"),
    _F("quick_ratio", "financial", "(Current assets - inventory) / current liabilities", -1, 0.0, 50.0,
       "Quick ratio of {value}: liquid assets cover few of the short-term debts"),
    _F("cash_ratio", "financial", "Cash / current liabilities", -1, 0.0, 50.0,
       "Cash covers only {value} of short-term debts"),
    _F("liabilities_to_assets", "financial", "Total liabilities / total assets", 1, 0.0, 10.0,
       "Liabilities are {value} of total assets", ".0%"),
    _F("roa", "financial", "Net income / total assets", -1, -5.0, 5.0,
       "Return on assets of {value}", ".1%"),
    _F("ebit_margin", "financial", "EBIT / revenue", -1, -5.0, 1.0,
       "Operating (EBIT) margin of {value}", ".1%"),
    _F("interest_coverage", "financial", "EBIT / interest expense", -1, -100.0, 100.0,
       "EBIT covers interest expense only {value} times", ".1f"),
    _F("ocf_to_liabilities", "financial", "Operating cash flow / total liabilities", -1, -10.0, 10.0,
       "Operating cash flow is {value} of total liabilities", ".0%"),
    _F("log_total_assets", "financial", "Natural log of total assets", -1, 0.0, 35.0,
       "Small balance sheet (log total assets {value})", ".1f"),
    _F("working_capital_to_assets", "financial", "(Current assets - current liabilities) / total assets", -1,
       -10.0, 1.0, "Working capital is {value} of total assets", ".0%"),
    _F("debt_to_equity", "financial", "Total liabilities / equity (ceiling when equity is not positive)", 1,
       0.0, 50.0, "Debt is {value} times equity", ".1f"),
    _F("net_margin", "financial", "Net income / revenue", -1, -5.0, 1.0, "Net margin of {value}", ".1%"),
    _F("asset_turnover", "financial", "Revenue / total assets", -1, 0.0, 50.0,
       "Assets turn over only {value} times a year", ".2f"),
    _F("dso_days", "financial", "Receivables / revenue x 365 (days sales outstanding)", 1, 0.0, 730.0,
       "Collects its own receivables in {value} days", ".0f"),
    _F("log_revenue", "financial", "Natural log of annual revenue", -1, 0.0, 35.0,
       "Small revenue (log revenue {value})", ".1f"),
    _F("revenue_growth", "financial", "Revenue against the previous statement", -1, -1.0, 10.0,
       "Revenue changed {value} against the previous year", "+.0%"),
    _F("altman_z2", "financial", "Altman Z'' score (private firms)", -1, -50.0, 50.0,
       "Altman Z'' score of {value} (below 1.1: distress zone)", ".2f"),
    _F("statement_age_days", "financial", "Days since the period end of the latest filed statement", 1,
       0.0, 3650.0, "Latest financial statement is {value} days old", ".0f"),
    # payment behaviour: invoices known at as_of
    _F("invoices_12m", "payment", "Invoices issued in the last 12 months", 0, 0.0, 100_000.0,
       "Only {value} invoices in the last 12 months", ".0f"),
    _F("dbt_mean_3m", "payment", "Mean days beyond terms, invoices due in the last 3 months", 1,
       0.0, 3650.0, "Invoices paid on average {value} days late over the last 3 months", ".0f"),
    _F("dbt_mean_12m", "payment", "Mean days beyond terms, invoices due in the last 12 months", 1,
       0.0, 3650.0, "Invoices paid on average {value} days late over the last 12 months", ".0f"),
    _F("dbt_max_3m", "payment", "Longest days beyond terms in the last 3 months", 1, 0.0, 3650.0,
       "An invoice was {value} days late in the last 3 months", ".0f"),
    _F("dbt_max_12m", "payment", "Longest days beyond terms in the last 12 months", 1, 0.0, 3650.0,
       "An invoice was {value} days late in the last 12 months", ".0f"),
    _F("dbt_weighted_3m", "payment", "Amount-weighted days beyond terms, last 3 months", 1, 0.0, 3650.0,
       "Weighted by amount, invoices were {value} days late over the last 3 months", ".0f"),
    _F("dbt_weighted_12m", "payment", "Amount-weighted days beyond terms, last 12 months", 1, 0.0, 3650.0,
       "Weighted by amount, invoices were {value} days late over the last 12 months", ".0f"),
    _F("share_late_30_12m", "payment", "Share of invoices due in the last 12 months more than 30 days late",
       1, 0.0, 1.0, "{value} of invoices in the last 12 months were more than 30 days late", ".0%"),
    _F("share_late_60_12m", "payment", "Share of invoices due in the last 12 months more than 60 days late",
       1, 0.0, 1.0, "{value} of invoices in the last 12 months were more than 60 days late", ".0%"),
    _F("share_late_90_12m", "payment", "Share of invoices due in the last 12 months more than 90 days late",
       1, 0.0, 1.0, "{value} of invoices in the last 12 months were more than 90 days late", ".0%"),
    _F("overdue_amount_open", "payment", "Open overdue amount", 1, 0.0, 1e12,
       "{value} of open invoices are past due", ",.0f"),
    _F("overdue_share_open", "payment", "Overdue share of open receivables", 1, 0.0, 1.0,
       "{value} of the open receivables are overdue", ".0%"),
    _F("dbt_trend", "payment", "Mean days beyond terms, last 3 months minus last 12 months", 1,
       -3650.0, 3650.0, "Payment delays lengthened by {value} days in the last 3 months", "+.0f"),
    _F("dispute_rate_12m", "payment", "Share of invoices disputed in the last 12 months", 1, 0.0, 1.0,
       "{value} of invoices disputed in the last 12 months", ".0%"),
    _F("months_since_late", "payment", "Months since the due date of the last invoice paid or still open late",
       -1, 0.0, 1200.0, "Last late payment only {value} months ago", ".0f"),
    _F("days_since_payment", "payment", "Days since the customer last paid an invoice", 1, 0.0, 3650.0,
       "No payment received for {value} days", ".0f"),
    _F("unpaid_share_due_60d", "payment", "Share of invoices fallen due in the last 60 days still unpaid", 1,
       0.0, 1.0, "{value} of invoices due in the last 60 days are unpaid", ".0%"),
    _F("overdue_invoices_open", "payment", "Number of open invoices past their due date", 1, 0.0, 1e6,
       "{value} invoices are open past their due date", ".0f"),
    _F("overdue_beyond_usual_days", "payment",
       "Days the oldest overdue invoice is past due, beyond the longest delay paid in the last 12 months",
       1, -3650.0, 3650.0, "An invoice is {value} days more overdue than any the customer paid in the last year",
       ".0f"),
    _F("overdue_invoices_undisputed", "payment", "Number of open invoices past their due date and not disputed",
       1, 0.0, 1e6, "{value} undisputed invoices are open past their due date", ".0f"),
    _F("overdue_days_undisputed_max", "payment", "Days past due of the oldest open undisputed invoice", 1,
       0.0, 3650.0, "An undisputed invoice is {value} days past due", ".0f"),
    _F("overdue_days_undisputed_sum", "payment", "Days past due summed over the open undisputed invoices", 1,
       0.0, 1e7, "Undisputed open invoices are {value} days past due in total", ",.0f"),
    _F("second_oldest_overdue_days", "payment",
       "Days past due of the second-oldest open overdue invoice (0 with fewer than two)", 1, 0.0, 3650.0,
       "A second open invoice is {value} days past due", ".0f"),
    _F("overdue_since_payment", "payment", "Open invoices that fell due after the customer's last payment", 1,
       0.0, 1e6, "{value} invoices fell due after the last payment and are still open", ".0f"),
    _F("relationship_months", "payment", "Months since the first trade with the customer", -1,
       0.0, 1200.0, "Trading relationship of only {value} months", ".0f"),
    # industry signals: published for months before as_of
    _F("industry_default_rate_12m", "industry", "Industry default rate, trailing 12 months", 1,
       0.0, 1.0, "Industry default rate of {value} over the last 12 months", ".1%"),
    _F("industry_growth_12m", "industry", "Change of the industry growth index over 12 months", -1,
       -1.0, 10.0, "Industry activity changed {value} over the last 12 months", "+.1%"),
    _F("current_ratio_vs_industry", "industry", "Current ratio minus the industry median", -1, -50.0, 50.0,
       "Current ratio {value} against the industry median", "+.2f"),
    _F("liabilities_to_assets_vs_industry", "industry", "Liabilities / assets minus the industry median", 1,
       -10.0, 10.0, "Liabilities / assets {value} above the industry median", "+.0%"),
    _F("roa_vs_industry", "industry", "Return on assets minus the industry median", -1, -10.0, 10.0,
       "Return on assets {value} against the industry median", "+.1%"),
)


@dataclass(frozen=True)
class PolicyFact:
    """A fact the credit policy needs beside the model features (not a model input).

    ``default`` is what a customer without statements or history is assumed to have.
    """

    name: str
    description: str
    default: float
    valid_min: float = 0.0
    valid_max: float = 1e13   # money: beyond any firm's turnover, and finite through the policy's arithmetic


POLICY_FACTS: tuple[PolicyFact, ...] = (
    PolicyFact("revenue", "Annual revenue (for the credit limit)", math.nan),
    PolicyFact("operating_cash_flow", "Annual operating cash flow (caps the credit limit)", math.nan, -1e13),
    PolicyFact("amount_12m", "Amount invoiced to the customer over the last 12 months", 0.0),
    PolicyFact("open_receivables", "Open receivables before this order", 0.0),
    PolicyFact("max_days_overdue_open", "Days the most overdue open invoice is past due", 0.0, 0.0, 3650.0),
)


@dataclass(frozen=True)
class FeatureRegistry:
    """An ordered, immutable set of features; the order is the model's column order."""

    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate feature names in registry: {sorted(dup)}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.features)

    def group(self, group: Group) -> list[Feature]:
        return [f for f in self.features if f.group == group]

    @property
    def monotone_constraints(self) -> list[int]:
        """LightGBM ``monotone_constraints`` in column order."""
        return [int(f.direction) for f in self.features]

    @property
    def scorecard_trends(self) -> dict[str, str]:
        """optbinning ``monotonic_trend`` per feature: the event (default) rate's trend."""
        trend = {1: "ascending", -1: "descending", 0: "auto"}
        return {f.name: trend[f.direction] for f in self.features}

    @property
    def valid_ranges(self) -> dict[str, tuple[float, float]]:
        return {f.name: (f.valid_min, f.valid_max) for f in self.features}

    def to_dict(self) -> dict[str, Any]:
        return {"features": [asdict(f) for f in self.features]}

    @property
    def version(self) -> str:
        """A short hash of the definitions: tables built under another registry are told apart."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureRegistry":
        return cls(tuple(Feature(**f) for f in data["features"]))

    @classmethod
    def for_table(cls, columns: Iterable[str], ranges: Mapping[str, tuple[float, float]] | None = None) -> "FeatureRegistry":
        """A registry for a user's own feature table: no imposed directions, generic reasons."""
        ranges = ranges or {}
        feats = []
        for c in columns:
            lo, hi = ranges.get(c, (-math.inf, math.inf))
            feats.append(Feature(c, "table", f"Column {c}", 0, float(lo), float(hi),
                                 f"{c} = {{value}}", ".4g"))
        return cls(tuple(feats))


def default_registry() -> FeatureRegistry:
    """The registry of the built-in features (financial, payment, industry)."""
    return FeatureRegistry(_FEATURES)


def select(registry: FeatureRegistry, names: Sequence[str]) -> FeatureRegistry:
    return FeatureRegistry(tuple(registry[n] for n in names))
