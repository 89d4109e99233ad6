"""The feature registry: one declarative list that every other part is generated from.

Training columns and their order, LightGBM monotone constraints, the scorecard's monotonic
trends, the service's feature schema, the monitoring columns and the reason-code sentences
all come from here, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from riskcast.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from .coverage import SourceLayout

Group = Literal["financial", "payment", "industry", "order", "table"]
Direction = Literal[-1, 0, 1]
#: how a value is shown in its reason: as it is, back in money from ``log1p`` of it, or months in days
Shown = Literal["value", "expm1", "days"]
#: what a feature's values are: numbers, or categories (text, learned at fit; ``categorical``)
Dtype = Literal["float", "category"]
#: the transforms of ``Shown`` (none for "value"): the one place both reason paths take them from
SHOWN: dict[str, Callable[[float], float]] = {"expm1": math.expm1, "days": lambda months: months * 30.4375}


@dataclass(frozen=True)
class Source:
    """Where feature values come from: a customer has all of a source's features or, mostly,
    none (no statement on file: no ratio can be computed).

    A missing feature is explained by its source, never on its own: ``absent`` is the reason
    when none of the source's features is known, with what to do about it; ``partial`` when only
    some are. ``label`` names the source in plain words ("a customer with {label}").
    ``customer``: whether holding the source tells about the customer. The industry's
    statistics and the relationship's length every customer can have, so they always count
    as what it could have, but alone they never make a customer scorable.
    """

    name: str
    label: str
    absent: str
    partial: str
    customer: bool = True


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("financial_statements", "financial statements",
           "No financial statements on file: ask for the last annual accounts",
           "Financial statements incomplete (figures missing or no previous year to compare): "
           "ask for the full annual accounts of the last two years"),
    Source("payment_history", "payment history",
           "No payment history with us yet: ask for trade references or start with a small limit",
           "Little payment history with us (no invoice fell due recently): review after the first invoices are paid"),
    Source("industry", "industry statistics",
           "No statistics for the customer's industry: check its industry code",
           "Statistics for the customer's industry incomplete (less than a year published): check its industry code",
           customer=False),
    Source("relationship", "a known first trade",
           "Start of the trading relationship unknown: record the date of the first trade",
           "Start of the trading relationship unknown: record the date of the first trade", customer=False),
    Source("table", "values in the table",
           "No values for this row in the feature table: supply its columns",
           "Some columns of the feature table are empty for this row: supply the missing values"),
)}

#: the source of a feature that does not name its own
_GROUP_SOURCE: dict[str, str] = {"financial": "financial_statements", "payment": "payment_history",
                                 "industry": "industry", "table": "table"}


@dataclass(frozen=True)
class Feature:
    """One model input.

    ``direction`` is the expected effect on risk: +1 when a higher value means a higher PD,
    -1 when it means a lower PD, 0 when no direction is imposed. Values outside
    ``[valid_min, valid_max]`` are clipped when computed and rejected when supplied by a caller.
    ``reason`` is the sentence shown when the feature raises the customer's risk; ``{value}``
    is replaced by the customer's value, first shown as ``shown`` says (a log back in money),
    then formatted with ``fmt``. ``source`` is where the value comes from (``SOURCES``; by
    default the group's): a missing value is its source's reason, not the feature's.
    ``nan_means``, when set, says what a missing value states about a customer who does have
    the source (no invoice overdue): such a value is no gap, neither counted missing nor a
    reason.
    ``fill`` is what a missing value becomes before the model sees it, the same in training
    and at order entry (``FeatureRegistry.fill``): None leaves it missing; a number (no
    invoice in 12 months: 0); or the name of the feature whose value it takes (never late:
    as long ago as the relationship). A filled value is no evidence that the customer holds
    the source, so the coverage rule counts it like a ``nan_means`` one. ``reason_filled`` is
    the sentence when the value is the one it took from the feature its ``fill`` names (never
    late: "last late payment N days ago" would be false), formatted as ``reason`` is.
    ``dtype`` "category": the values are categories (text), not numbers; the model splits on
    them natively and the scorecard bins them as categories, each with the categories learned
    at fit. Such a feature imposes no direction, has no range and no fill, and its reason
    shows the category as it is.
    """

    name: str
    group: Group
    description: str
    direction: Direction
    valid_min: float
    valid_max: float
    reason: str
    fmt: str = ".2f"
    dtype: Dtype = "float"
    source: str = ""
    shown: Shown = "value"
    nan_means: str = ""
    fill: float | str | None = None
    reason_filled: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in ("float", "category"):
            raise ValueError(f"feature {self.name}: unknown dtype {self.dtype!r} (known: float, category)")
        if self.categorical and (self.direction != 0 or self.fill is not None or self.shown != "value"
                                 or self.valid_min != -math.inf or self.valid_max != math.inf):
            raise ValueError(f"feature {self.name}: a categorical feature has no direction, fill, display or range")
        if not self.source:
            if self.group not in _GROUP_SOURCE:
                raise ValueError(f"feature {self.name}: group {self.group!r} has no default source; name one")
            object.__setattr__(self, "source", _GROUP_SOURCE[self.group])
        if self.source not in SOURCES:
            raise ValueError(f"feature {self.name}: unknown source {self.source!r} (known: {', '.join(SOURCES)})")
        if self.shown != "value" and self.shown not in SHOWN:
            raise ValueError(f"feature {self.name}: unknown display {self.shown!r} (known: value, {', '.join(SHOWN)})")
        fill = self.fill
        if isinstance(fill, bool) or not (fill is None or isinstance(fill, (numbers.Real, str))):
            raise ValueError(f"feature {self.name}: fill must be None, a number or a feature's name, got {fill!r}")
        if isinstance(fill, numbers.Real):
            if not self.valid_min <= fill <= self.valid_max:  # NaN fails this too
                raise ValueError(f"feature {self.name}: fill {fill!r} is outside its valid range "
                                 f"[{self.valid_min}, {self.valid_max}]")
            object.__setattr__(self, "fill", float(fill))
        elif isinstance(fill, str) and fill in ("", self.name):
            raise ValueError(f"feature {self.name}: fill must name another feature, got {fill!r}")
        if self.reason_filled and not isinstance(fill, str):
            raise ValueError(f"feature {self.name}: reason_filled needs a fill that names a feature")

    @property
    def categorical(self) -> bool:
        """Whether the values are categories (``dtype`` "category"): what training, the matrix
        the model is given and the reasons all ask."""
        return self.dtype == "category"

    def reason_text(self, value: float | str, filled: bool = False) -> str:
        """The sentence for a known value, a category's text for a categorical feature (a
        missing one is its source's reason); ``filled``: the value is the one its fill took
        (``reason_filled``, when declared)."""
        if value is None or (not isinstance(value, str) and math.isnan(value)):
            raise ValueError(f"{self.name}: a missing value has no sentence of its own; its source gives the reason")
        if self.categorical:
            return self.reason.format(value=value)
        show = SHOWN.get(self.shown)
        if show is not None:
            value = show(value)
        sentence = self.reason_filled if filled and self.reason_filled else self.reason
        return sentence.format(value=format(value, self.fmt))


_F = Feature

_FEATURES: tuple[Feature, ...] = (
    # financial statements: the latest statement filed on or before as_of
    _F("current_ratio", "financial", "Current assets / current liabilities", -1, 0.0, 50.0,
       "Current assets cover short-term debts only {value} times"),
    _F("quick_ratio", "financial", "(Current assets - inventory) / current liabilities", -1, 0.0, 50.0,
       "Without inventory, current assets cover short-term debts only {value} times"),
    _F("cash_ratio", "financial", "Cash / current liabilities", -1, 0.0, 50.0,
       "Cash covers only {value} of short-term debts", ".0%"),
    _F("liabilities_to_assets", "financial", "Total liabilities / total assets", 1, 0.0, 10.0,
       "Liabilities are {value} of total assets", ".0%"),
    _F("roa", "financial", "Net income / total assets", -1, -5.0, 5.0,
       "Net income is {value} of total assets", ".1%"),
    _F("ebit_margin", "financial", "EBIT / revenue", -1, -5.0, 1.0,
       "Operating profit (EBIT) is {value} of revenue", ".1%"),
    _F("interest_coverage", "financial", "EBIT / interest expense", -1, -100.0, 100.0,
       "Operating profit (EBIT) covers interest expense only {value} times", ".1f"),
    _F("ocf_to_liabilities", "financial", "Operating cash flow / total liabilities", -1, -10.0, 10.0,
       "Operating cash flow is {value} of total liabilities", ".0%"),
    _F("log_total_assets", "financial", "Natural log of total assets", -1, 0.0, 35.0,
       "Small balance sheet: total assets of {value}", ",.0f", shown="expm1"),
    _F("working_capital_to_assets", "financial", "(Current assets - current liabilities) / total assets", -1,
       -10.0, 1.0, "Working capital is {value} of total assets", ".0%"),
    _F("debt_to_equity", "financial", "Total liabilities / equity (ceiling when equity is not positive)", 1,
       0.0, 50.0, "Liabilities are {value} times equity (50 when equity is nil or negative)", ".1f"),
    _F("net_margin", "financial", "Net income / revenue", -1, -5.0, 1.0, "Net income is {value} of revenue", ".1%"),
    _F("asset_turnover", "financial", "Revenue / total assets", -1, 0.0, 50.0,
       "Assets turn over only {value} times a year", ".2f"),
    _F("dso_days", "financial", "Receivables / revenue x 365 (days sales outstanding)", 1, 0.0, 730.0,
       "Collects its own receivables in {value} days", ".0f"),
    _F("log_revenue", "financial", "Natural log of annual revenue", -1, 0.0, 35.0,
       "Small turnover: annual revenue of {value}", ",.0f", shown="expm1"),
    _F("revenue_growth", "financial", "Revenue against the previous statement", -1, -1.0, 10.0,
       "Revenue changed {value} against the previous year", "+.0%"),
    _F("altman_z2", "financial", "Altman Z'' score (private firms)", -1, -50.0, 50.0,
       "Altman Z'' score of {value} (below 1.1: distress zone)", ".2f"),
    _F("statement_age_days", "financial", "Days since the period end of the latest filed statement", 1,
       0.0, 3650.0, "Latest financial statement is {value} days old", ".0f"),
    # payment behaviour: invoices known at as_of
    _F("invoices_12m", "payment", "Invoices issued in the last 12 months", 0, 0.0, 100_000.0,
       "Only {value} invoices in the last 12 months", ".0f", fill=0.0),
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
       "Open invoices of {value} in total are past due", ",.0f", fill=0.0),
    _F("overdue_share_open", "payment", "Overdue share of open receivables", 1, 0.0, 1.0,
       "{value} of the open receivables are overdue", ".0%"),
    _F("dbt_trend", "payment", "Mean days beyond terms, last 3 months minus last 12 months", 1,
       -3650.0, 3650.0, "Payment delays lengthened by {value} days in the last 3 months", ".0f"),
    _F("dispute_rate_12m", "payment", "Share of invoices disputed in the last 12 months", 1, 0.0, 1.0,
       "{value} of invoices disputed in the last 12 months", ".0%"),
    _F("months_since_late", "payment", "Months since the due date of the last invoice paid or still open late",
       -1, 0.0, 1200.0, "Last late payment only {value} days ago", ".0f", shown="days",
       fill="relationship_months",  # never late while trading with us: as long ago as the relationship
       reason_filled="Never late, but trading with us for only {value} days"),
    _F("days_since_payment", "payment", "Days since the customer last paid an invoice", 1, 0.0, 3650.0,
       "No payment received for {value} days", ".0f"),
    _F("unpaid_share_due_60d", "payment", "Share of invoices fallen due in the last 60 days still unpaid", 1,
       0.0, 1.0, "{value} of invoices due in the last 60 days are unpaid", ".0%"),
    _F("overdue_invoices_open", "payment", "Number of open invoices past their due date", 1, 0.0, 1e6,
       "{value} invoices are open past their due date", ".0f"),
    _F("overdue_beyond_usual_days", "payment",
       "Days the oldest overdue invoice is past due, beyond the longest delay paid in the last 12 months",
       1, -3650.0, 3650.0, "An invoice is {value} days more overdue than any the customer paid in the last year",
       ".0f", nan_means="no invoice is overdue"),
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
       0.0, 1200.0, "Trading relationship of only {value} months", ".0f", source="relationship"),
    # industry signals: published for months before as_of; the firm's own ratios against its
    # industry come from its statements, so they are missing exactly when the statement is
    _F("industry_default_rate_12m", "industry", "Industry default rate, trailing 12 months", 1,
       0.0, 1.0, "Industry default rate of {value} over the last 12 months", ".1%"),
    _F("industry_growth_12m", "industry", "Change of the industry growth index over 12 months", -1,
       -1.0, 10.0, "Industry activity changed {value} over the last 12 months", "+.1%"),
    _F("current_ratio_vs_industry", "industry", "Current ratio minus the industry median", -1, -50.0, 50.0,
       "Current ratio (current assets / short-term debts) {value} against the industry median", "+.2f",
       source="financial_statements"),
    _F("liabilities_to_assets_vs_industry", "industry", "Liabilities / assets minus the industry median", 1,
       -10.0, 10.0, "Liabilities are {value} of total assets more than at the industry median", ".0%",
       source="financial_statements"),
    _F("roa_vs_industry", "industry", "Return on assets minus the industry median", -1, -10.0, 10.0,
       "Net income on total assets {value} against the industry median", "+.1%",
       source="financial_statements"),
)


@dataclass(frozen=True)
class PolicyFact:
    """A fact the credit policy needs beside the model features (not a model input).

    ``default`` is what a customer without statements or history is assumed to have: a
    missing value's fill, in training and at order entry alike (NaN: stays missing).
    ``from_request``: whether an order may bring it; the book's own figures (its limits after
    the seller's caps) come only from the last rescore.
    """

    name: str
    description: str
    default: float
    valid_min: float = 0.0
    valid_max: float = 1e13   # money: beyond any firm's turnover, and finite through the policy's arithmetic
    from_request: bool = True

    def __post_init__(self) -> None:
        if not (math.isnan(self.default) or self.valid_min <= self.default <= self.valid_max):
            raise ValueError(f"policy fact {self.name}: default {self.default!r} is outside its valid range "
                             f"[{self.valid_min}, {self.valid_max}]")


POLICY_FACTS: tuple[PolicyFact, ...] = (
    PolicyFact("revenue", "Annual revenue (for the credit limit)", math.nan),
    PolicyFact("operating_cash_flow", "Annual operating cash flow (a firm burning cash gets no open credit)",
               math.nan, -1e13),
    PolicyFact("amount_12m", "Amount invoiced to the customer over the last 12 months", 0.0),
    PolicyFact("open_receivables", "Open receivables before this order", 0.0),
    PolicyFact("max_days_overdue_open", "Days the most overdue open invoice is past due", 0.0, 0.0, 3650.0),
    PolicyFact("max_days_late_24m", "Longest delay beyond terms of an invoice due in the last 24 months "
               "(paid late or still open)", math.nan, 0.0, 3650.0),
    PolicyFact("booked_limit", "The customer's limit in the last rescore of the book", math.nan,
               from_request=False),
    PolicyFact("limit_ceiling", "The most the seller's total cap leaves this customer (the last rescore)",
               math.nan, from_request=False),
    PolicyFact("book_limits_total", "Sum of all customers' limits in the last rescore", math.nan,
               valid_max=1e16, from_request=False),
    PolicyFact("approved_limit", "The limit approved on the credit desk, while its review date stands", math.nan,
               from_request=False),
    PolicyFact("approved_terms_days", "The payment terms approved with it (none: the band's)", math.nan, 0.0, 365.0,
               from_request=False),
)

#: what ``FeatureRegistry.fill_row`` reads for an entry its row lacks (NaN is not this)
_ABSENT = object()

#: the facts an order may supply (the others are the book's own)
REQUEST_FACTS: tuple[PolicyFact, ...] = tuple(f for f in POLICY_FACTS if f.from_request)


@dataclass(frozen=True)
class FillStep:
    """One declared fill, in the order fills apply: a missing ``name`` takes ``value``, or the
    value of feature ``source`` (already filled itself when it has a fill of its own)."""

    name: str
    value: float | None = None
    source: str | None = None


def _fill_steps(features: Sequence[Feature]) -> tuple[FillStep, ...]:
    """The features' fills as steps, a named source before what takes from it; the policy
    facts' defaults after them. Raises ``ValueError`` for a source that is no feature of the
    registry, whose valid range does not lie within the taker's (its value would need a clip
    the frame and the row would have to agree on) or that takes, in the end, from itself."""
    by_name = {f.name: f for f in features}
    steps: list[FillStep] = []
    done: set[str] = set()

    def place(f: Feature, chain: tuple[str, ...]) -> None:
        if f.name in done or f.fill is None:
            return
        if f.name in chain:
            raise ValueError(f"feature {f.name}: its fill takes from itself ({' -> '.join((*chain, f.name))})")
        if isinstance(f.fill, str):
            src = by_name.get(f.fill)
            if src is None:
                raise ValueError(f"feature {f.name}: fill names {f.fill!r}, which is no feature of the registry")
            if src.categorical:
                raise ValueError(f"feature {f.name}: fill takes {src.name}, whose values are categories, not numbers")
            if not f.valid_min <= src.valid_min <= src.valid_max <= f.valid_max:
                raise ValueError(f"feature {f.name}: fill takes {src.name}, whose valid range "
                                 f"[{src.valid_min}, {src.valid_max}] is not within [{f.valid_min}, {f.valid_max}]")
            place(src, (*chain, f.name))  # the source is filled before it is taken
            steps.append(FillStep(f.name, source=src.name))
        else:
            steps.append(FillStep(f.name, value=f.fill))
        done.add(f.name)

    for f in features:
        place(f, ())
    # a user's table may hold a column named like a fact: it is a feature, filled as one
    steps += [FillStep(p.name, value=p.default) for p in POLICY_FACTS
              if not math.isnan(p.default) and p.name not in by_name]
    return tuple(steps)


@dataclass(frozen=True)
class FeatureRegistry:
    """An ordered, immutable set of features; the order is the model's column order."""

    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate feature names in registry: {sorted(dup)}")
        self.fill_steps  # noqa: B018 - a fill that cannot apply is refused here, not on the first row

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

    @cached_property
    def fill_steps(self) -> tuple[FillStep, ...]:
        """The declared fills in the order they apply (``fill`` and ``fill_row`` both follow it)."""
        return _fill_steps(self.features)

    @cached_property
    def filled_from(self) -> dict[int, int]:
        """Column of each feature with a ``reason_filled`` -> column of the feature its fill takes
        from: where both hold the same value, the value is the fill's (the reasons say so)."""
        at = {n: i for i, n in enumerate(self.names)}
        return {at[f.name]: at[f.fill] for f in self.features
                if f.reason_filled and isinstance(f.fill, str) and f.fill in at}

    @cached_property
    def filled(self) -> frozenset[str]:
        """The features with a fill: never missing once filled, so no evidence of their source."""
        return frozenset(f.name for f in self.features if f.fill is not None)

    def fill(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its missing values filled as declared: every registry feature (all
        must be columns) and the policy facts among its columns. Fills apply to the values as
        the model takes them (clipped to their ranges): a taken value is within range already.
        The frame form of ``fill_row``, for training and rescoring; bit for bit the same."""
        absent = [n for n in self.names if n not in frame.columns]
        if absent:
            raise InputError(f"feature table lacks registry columns {absent}", field=absent[0])
        out = frame.copy(deep=False)  # columns are replaced, never written into
        for step in self.fill_steps:
            if step.name not in out.columns:  # a policy fact the frame does not carry
                continue
            v = out[step.name].to_numpy(dtype=np.float64, na_value=np.nan)
            gap = np.isnan(v)
            if gap.any():
                by = step.value if step.source is None else out[step.source].to_numpy(dtype=np.float64,
                                                                                          na_value=np.nan)
                out[step.name] = np.where(gap, by, v)
        return out

    def fill_row(self, row: Mapping[str, Any]) -> dict[str, float]:
        """The values one row's missing entries (NaN or None) take, those only; an entry the row
        lacks is left out, as ``fill`` leaves a fact the frame lacks. The row form of ``fill``,
        for order entry, where a DataFrame per order would cost more than the whole decision
        (a few microseconds, against ~0.2 ms an order). The caller lays them over its row."""
        out: dict[str, float] = {}
        get = row.get
        for name, value, source in self._row_steps:
            v = get(name, _ABSENT)
            if v is None or v != v:  # (the marker for an absent entry equals itself)
                if source is None:
                    out[name] = value
                else:
                    by = out[source] if source in out else get(source)
                    out[name] = math.nan if by is None else float(by)
        return out

    @cached_property
    def _row_steps(self) -> tuple[tuple[str, float | None, str | None], ...]:
        """``fill_steps`` as plain tuples: the per-order loop reads no attribute."""
        return tuple((s.name, s.value, s.source) for s in self.fill_steps)

    @cached_property
    def sources(self) -> tuple[Source, ...]:
        """The sources this registry's features come from, in ``SOURCES`` order."""
        used = {f.source for f in self.features}
        return tuple(s for name, s in SOURCES.items() if name in used)

    @cached_property
    def layout(self) -> "SourceLayout":
        """Features by source as arrays, built once per registry for the per-row rules."""
        from .coverage import SourceLayout

        return SourceLayout(self)

    @cached_property
    def categorical(self) -> tuple[str, ...]:
        """The categorical features' names, in column order."""
        return tuple(f.name for f in self.features if f.categorical)

    @cached_property
    def categorical_columns(self) -> tuple[int, ...]:
        """The categorical features' columns (LightGBM's ``categorical_feature``)."""
        return tuple(i for i, f in enumerate(self.features) if f.categorical)

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
        """A short hash of the definitions: tables built under another registry are told apart.

        How rules treat a feature (its source, what a missing value means, its fill) is left
        out, and so is a plain display: a registry saved before features had them keeps its
        version (the store it was built with still matches it). A categorical feature's dtype
        counts: a column that becomes categories is another feature."""
        feats = [{k: v for k, v in asdict(f).items()
                  if k not in ("source", "nan_means", "fill", "reason_filled") and not (k == "shown" and v == "value")}
                 for f in self.features]
        text = json.dumps({"features": feats}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureRegistry":
        """The registry a bundle was trained with; one saved before features named their source
        or declared their fill takes a built-in feature's by its name (else its group's source,
        and no fill): such a bundle was trained on the fills training applied then, these."""
        builtin = {f.name: f for f in _FEATURES}

        def later(f: Mapping[str, Any]) -> dict[str, Any]:
            known = builtin.get(f["name"]) if f["group"] != "table" else None
            return {"source": known.source, "nan_means": known.nan_means, "fill": known.fill,
                    "reason_filled": known.reason_filled} if known is not None else {}
        return cls(tuple(Feature(**{**later(f), **f}) for f in data["features"]))

    @classmethod
    def for_table(cls, columns: Iterable[str], ranges: Mapping[str, tuple[float, float]] | None = None,
                  categorical: Iterable[str] = ()) -> "FeatureRegistry":
        """A registry for a user's own feature table: no imposed directions, generic reasons;
        the ``categorical`` columns are categories (text), the others numbers."""
        ranges = ranges or {}
        cats = set(categorical)
        feats = []
        for c in columns:
            if c in cats:
                feats.append(Feature(c, "table", f"Column {c} (categories)", 0, -math.inf, math.inf,
                                     f"{c} is {{value}}", "", dtype="category"))
                continue
            lo, hi = ranges.get(c, (-math.inf, math.inf))
            feats.append(Feature(c, "table", f"Column {c}", 0, float(lo), float(hi),
                                 f"{c} is {{value}}", ".4g"))
        unknown = cats - {f.name for f in feats}
        if unknown:
            raise ValueError(f"categorical columns {sorted(unknown)} are not among the columns")
        return cls(tuple(feats))


def default_registry() -> FeatureRegistry:
    """The registry of the built-in features (financial, payment, industry)."""
    return FeatureRegistry(_FEATURES)


def select(registry: FeatureRegistry, names: Sequence[str]) -> FeatureRegistry:
    return FeatureRegistry(tuple(registry[n] for n in names))
