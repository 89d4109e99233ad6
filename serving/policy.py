"""Credit policy: grade and customer facts in, credit limit, terms and decision out.

Limits come from two sides, as the credit practice sets them. The customer's: its capacity (a
share of its annual revenue by band, from fresh statements) and its need (months of its
purchases from us by band), the lower of the two where both are known; a firm burning cash
gets no open credit, a customer without history starts at half its first order, a loyal one
gets more, never above the caps. The seller's (``SellerConfig``): no customer above a share of
the seller's monthly cash flow, and all limits together within a share of its revenue (the
rescore brings the book within it, ``seller_ceilings``; order entry refers an order that would
take the book past it).

The rules are written twice, and held to the same bits by a test on random books: column by
column over arrays for a whole book (rescoring), order by order in plain floats for order
entry, where numpy's cost per call was most of one order's policy (52 against 16 us). The
sentences and conditions of a decision are written once (``_texts``) for both. Every
threshold comes from ``PolicyConfig`` and ``SellerConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import inf, isfinite, isnan
from typing import Any

import numpy as np

from riskcast.config import PolicyConfig, SellerConfig

APPROVE, CONDITIONS, REFER, DECLINE = "approve", "approve_with_conditions", "refer", "decline"
_MONTH_DAYS = 30.4375
BANDS_WEAKEST_FIRST = ("E", "D", "C", "B", "A")

#: every rule a decision can come from, in the order they are tried, with its decision
RULES: dict[str, str] = {
    "declined_band": DECLINE,
    "declined_overdue": DECLINE,
    "referred_fallback": REFER,
    "referred_seller_cap": REFER,
    "no_open_credit": CONDITIONS,
    "within_limit_deposit": CONDITIONS,
    "within_limit": APPROVE,
    "referred_over_limit": REFER,
    "over_limit_no_order": CONDITIONS,
    "over_limit_prepayment": CONDITIONS,
}


@dataclass(frozen=True)
class PolicyInputs:
    band: np.ndarray                 # A-E, object
    revenue: np.ndarray              # annual, NaN without a statement
    operating_cash_flow: np.ndarray  # annual, NaN without a statement
    statement_age_days: np.ndarray   # days since the latest statement's period end, NaN without
    amount_12m: np.ndarray           # invoiced to the customer over 12 months
    open_receivables: np.ndarray
    max_days_overdue_open: np.ndarray
    max_days_late_24m: np.ndarray    # longest delay of an invoice due in 24 months, NaN: none due
    relationship_months: np.ndarray
    limit_ceiling: np.ndarray        # what the seller's total cap leaves the customer, NaN: no cut
    booked_limit: np.ndarray         # the customer's limit in the last rescore, NaN: not in it
    book_limits_total: np.ndarray    # all limits of the last rescore, NaN: unknown
    order_amount: np.ndarray
    requested_terms_days: np.ndarray  # NaN when not requested
    refer_reason: np.ndarray          # object: why a person must look (fallback, ...), or None
    #: the limit approved on the credit desk while its review date stands (NaN: none): it is
    #: the customer's limit in place of the recommendation, and the rules decide against it
    approved_limit: np.ndarray | None = None
    #: the terms approved with it (NaN: the band's); they stand and fall with the limit
    approved_terms_days: np.ndarray | None = None


@dataclass(frozen=True)
class PolicyOutputs:
    credit_limit: np.ndarray
    terms_days: np.ndarray
    decision: np.ndarray
    rule: np.ndarray                  # the key of ``RULES`` that decided
    conditions: list[list[str]]
    exposure: np.ndarray
    explanation: list[str]
    discount: list[str | None]        # the early-payment discount offered, e.g. "2/10 net 60"
    recommended_limit: np.ndarray     # the policy's own limit, whichever decided
    approved: np.ndarray              # bool: the desk's approved limit decided

    @property
    def limit_source(self) -> np.ndarray:
        """Per customer, which limit decided: ``approved`` (the desk's) or ``recommended``."""
        return np.where(self.approved, "approved", "recommended").astype(object)


# ----------------------------------------------------------------------------- columns


def credit_limit(x: PolicyInputs, cfg: PolicyConfig, seller: SellerConfig | None = None) -> np.ndarray:
    """Every customer's limit, column by column (see the module's docstring for the rules)."""
    seller = seller or SellerConfig()
    share = np.array([cfg.limit_share_of_revenue[b] for b in x.band], dtype=float)
    months = np.array([cfg.limit_months_of_purchases[b] for b in x.band], dtype=float)
    fresh = ~np.isnan(x.revenue) & (x.statement_age_days <= cfg.statement_max_age_months * _MONTH_DAYS)
    capacity = np.where(fresh, share * x.revenue, np.nan)
    need = np.where(x.amount_12m > 0, months * x.amount_12m / 12.0, np.nan)
    limit = np.where(np.isnan(capacity), need, np.where(np.isnan(need), capacity, np.minimum(capacity, need)))
    limit = np.where(fresh & (x.operating_cash_flow < 0), limit * cfg.burning_cash_share, limit)
    new = (x.amount_12m <= 0) & (x.open_receivables <= 0)
    loyal = ((x.relationship_months >= cfg.loyal_min_months) & (x.max_days_late_24m <= cfg.loyal_max_days_late)
             & (x.max_days_overdue_open <= 0) & ~new)
    limit = np.where(loyal, limit * (1.0 + cfg.loyal_uplift), limit)
    limit = np.minimum(limit, np.where(np.isnan(x.revenue), inf, cfg.max_share_of_revenue * x.revenue))
    limit = np.minimum(limit, seller.customer_cap)
    limit = np.where(np.isnan(x.limit_ceiling), limit, np.minimum(limit, x.limit_ceiling))
    limit = np.where(np.isnan(limit), 0.0, limit)
    limit = np.where(new, np.minimum(limit, cfg.new_customer_share_of_order * x.order_amount), limit)
    return np.round(np.maximum(limit, 0.0), 2)


def _terms(x: PolicyInputs, cfg: PolicyConfig) -> np.ndarray:
    max_terms = np.array([cfg.terms_days[b] for b in x.band], dtype=float)
    if x.approved_terms_days is not None:
        desk = _approved(x) & ~np.isnan(x.approved_terms_days)
        max_terms = np.where(desk, x.approved_terms_days, max_terms)
    return np.where(np.isnan(x.requested_terms_days), max_terms, np.minimum(x.requested_terms_days, max_terms))


def _rules(x: PolicyInputs, cfg: PolicyConfig, seller: SellerConfig, limit: np.ndarray,
           exposure: np.ndarray) -> np.ndarray:
    """The first rule that holds for each customer, in the rules' order."""
    band = np.asarray(x.band, dtype=object)
    referred = np.array([bool(r) for r in x.refer_reason], dtype=bool)
    within = exposure <= limit
    rules = np.select(
        [np.isin(band, list(cfg.decline_bands)), stops_orders(x.max_days_overdue_open, cfg), referred,
         _past_seller_cap(x, seller, limit), limit <= 0, within & np.isin(band, list(cfg.conditions_bands)),
         within, exposure <= limit * (1.0 + cfg.refer_margin), x.order_amount <= 0],
        list(RULES)[:9], default="over_limit_prepayment")
    return rules.astype(object)


def stops_orders(days_overdue: Any, cfg: PolicyConfig) -> Any:
    """Whether new orders stop: an invoice more than ``decline_overdue_days`` past due (the
    dunning ladder's stop stage). Order entry, the rescore and the collections' stop list ask
    this, of one number or an array of them."""
    return days_overdue > cfg.decline_overdue_days


def _past_seller_cap(x: PolicyInputs, seller: SellerConfig, limit: np.ndarray) -> np.ndarray:
    """Orders whose limit, in place of the customer's booked one, takes the book's total past
    the seller's cap (only a limit above the booked one adds to the total). A limit approved on
    the desk was decided by someone with the authority for it: it is not referred again (the
    next rescore counts it in the book's total)."""
    if not isfinite(seller.total_cap):
        return np.zeros(len(limit), dtype=bool)
    booked = _booked(x)
    return (~np.isnan(x.book_limits_total) & (limit > booked) & (_seller_totals(x, limit) > seller.total_cap)
            & ~_approved(x))


def apply_policy(x: PolicyInputs, cfg: PolicyConfig, seller: SellerConfig | None = None,
                 explain: bool = True, texts: bool = True) -> PolicyOutputs:
    """Limits, terms, decisions, each decision's reason and conditions, and the discount offered.

    ``explain=True`` (order entry): order by order in plain floats. ``explain=False`` (a whole
    book): column by column, the same rules in the same order to the same bits, the sentences
    formatted once for every distinct set of the values they show (none with ``texts=False``)."""
    seller = seller or SellerConfig()
    if explain:
        return _orders(x, cfg, seller)
    recommended = credit_limit(x, cfg, seller)
    approved = _approved(x)
    limit = np.where(approved, x.approved_limit, recommended) if approved.any() else recommended
    terms = _terms(x, cfg)
    exposure = x.open_receivables + x.order_amount
    rules = _rules(x, cfg, seller, limit, exposure)
    decision = np.array([RULES[r] for r in rules], dtype=object)
    no_terms = (terms <= 0) & np.isin(decision, [APPROVE, CONDITIONS])
    decision[no_terms] = CONDITIONS
    why, conditions, discount = (_book_texts(x, cfg, seller, rules, limit, terms, exposure, approved) if texts
                                 else ([], [], []))
    return PolicyOutputs(limit, terms.astype(int), decision, rules, conditions, exposure, why, discount, recommended,
                         approved)


def _approved(x: PolicyInputs) -> np.ndarray:
    """Whether each customer has a desk-approved limit standing."""
    if x.approved_limit is None:
        return np.zeros(len(x.band), dtype=bool)
    return ~np.isnan(x.approved_limit)


def _book_texts(x: PolicyInputs, cfg: PolicyConfig, seller: SellerConfig, rules: np.ndarray, limit: np.ndarray,
                terms: np.ndarray, exposure: np.ndarray, approved: np.ndarray
                ) -> tuple[list[str], list[list[str]], list[str | None]]:
    """``_texts`` for every customer of a book; a rule's sentence is made once for each
    distinct set of the values it shows (a book of a million repeats most of them)."""
    seen: dict[tuple, tuple[str, list[str], str | None]] = {}
    why, conditions, discount = [], [], []
    cols = zip(rules, x.band, x.max_days_overdue_open.tolist(), x.refer_reason, limit.tolist(), exposure.tolist(),
               x.order_amount.tolist(), terms.tolist(), _seller_totals(x, limit).tolist(), approved.tolist())
    for rule, band, overdue, refer, lim, exp_, order, term, total, desk in cols:
        key = (_shown(rule, band, overdue, refer, lim, exp_, order, term, total), desk)
        out = seen.get(key)
        if out is None:
            out = seen[key] = _texts(rule, band, overdue, refer, lim, exp_, order, term, total, cfg, seller, desk)
        why.append(out[0])
        conditions.append(out[1])
        discount.append(out[2])
    return why, conditions, discount


def _booked(x: PolicyInputs) -> np.ndarray:
    """Each customer's limit in the last rescore; 0 for one not in it."""
    return np.where(np.isnan(x.booked_limit), 0.0, x.booked_limit)


def _seller_totals(x: PolicyInputs, limit: np.ndarray) -> np.ndarray:
    """The book's total of limits with each customer's limit in place of its booked one."""
    return x.book_limits_total - _booked(x) + limit


def _shown(rule: str, band: str, overdue: float, refer: object, limit: float, exposure: float, order: float,
           terms: float, total: float) -> tuple:
    """What ``_texts`` reads for this rule (the rest is left out of the key)."""
    money = rule in ("referred_over_limit", "over_limit_no_order", "over_limit_prepayment")
    return (rule, band, overdue if rule == "declined_overdue" else 0.0, refer if rule == "referred_fallback" else None,
            limit if money else 0.0, exposure if money else 0.0,
            order if rule in ("within_limit_deposit", "over_limit_prepayment") else 0.0, terms,
            total if rule == "referred_seller_cap" else 0.0)


# ----------------------------------------------------------------------------- one order


def _orders(x: PolicyInputs, cfg: PolicyConfig, seller: SellerConfig) -> PolicyOutputs:
    n = len(x.band)
    limits, terms_days, exposures, recommended = np.empty(n), np.empty(n, dtype=int), np.empty(n), np.empty(n)
    approved_limits = x.approved_limit.tolist() if x.approved_limit is not None else [float("nan")] * n
    approved_terms = x.approved_terms_days.tolist() if x.approved_terms_days is not None else [float("nan")] * n
    approved = np.zeros(n, dtype=bool)
    decision, rules = np.empty(n, dtype=object), np.empty(n, dtype=object)
    conditions: list[list[str]] = []
    why: list[str] = []
    discount: list[str | None] = []
    rows = zip(x.band, x.revenue.tolist(), x.operating_cash_flow.tolist(), x.statement_age_days.tolist(),
               x.amount_12m.tolist(), x.open_receivables.tolist(), x.max_days_overdue_open.tolist(),
               x.max_days_late_24m.tolist(), x.relationship_months.tolist(), x.limit_ceiling.tolist(),
               x.booked_limit.tolist(), x.book_limits_total.tolist(), x.order_amount.tolist(),
               x.requested_terms_days.tolist(), x.refer_reason)
    for i, (band, revenue, ocf, age, amount_12m, open_, overdue, late24, months, ceiling, booked, book_total,
            order, requested, refer) in enumerate(rows):
        own = _limit_of(band, revenue, ocf, age, amount_12m, open_, overdue, late24, months, ceiling, order,
                        cfg, seller)
        desk = not isnan(approved_limits[i])
        limit = approved_limits[i] if desk else own
        max_terms = approved_terms[i] if desk and not isnan(approved_terms[i]) else float(cfg.terms_days[band])
        terms = max_terms if isnan(requested) else _min(requested, max_terms)
        exposure = open_ + order
        booked = 0.0 if isnan(booked) else booked
        total = book_total - booked + limit
        if band in cfg.decline_bands:
            rule = "declined_band"
        elif stops_orders(overdue, cfg):
            rule = "declined_overdue"
        elif refer:
            rule = "referred_fallback"
        elif not desk and isfinite(seller.total_cap) and not isnan(book_total) and limit > booked \
                and total > seller.total_cap:
            rule = "referred_seller_cap"
        elif limit <= 0:
            rule = "no_open_credit"
        elif exposure <= limit:
            rule = "within_limit_deposit" if band in cfg.conditions_bands else "within_limit"
        elif exposure <= limit * (1.0 + cfg.refer_margin):
            rule = "referred_over_limit"
        elif order <= 0:
            rule = "over_limit_no_order"
        else:
            rule = "over_limit_prepayment"
        d = RULES[rule]
        if terms <= 0 and d in (APPROVE, CONDITIONS):
            d = CONDITIONS
        w, cond, offer = _texts(rule, band, overdue, refer, limit, exposure, order, terms, total, cfg, seller, desk)
        limits[i], terms_days[i], exposures[i], decision[i], rules[i] = limit, int(terms), exposure, d, rule
        recommended[i], approved[i] = own, desk
        conditions.append(cond)
        why.append(w)
        discount.append(offer)
    return PolicyOutputs(limits, terms_days, decision, rules, conditions, exposures, why, discount, recommended,
                         approved)


def _min(a: float, b: float) -> float:
    """``np.minimum`` of two floats: NaN when either is."""
    return a if a != a or a <= b else b


def _limit_of(band: str, revenue: float, ocf: float, age: float, amount_12m: float, open_receivables: float,
              overdue: float, late24: float, months: float, ceiling: float, order: float, cfg: PolicyConfig,
              seller: SellerConfig) -> float:
    """``credit_limit`` of one customer in plain floats: its steps in its order, so its bits."""
    fresh = not isnan(revenue) and age <= cfg.statement_max_age_months * _MONTH_DAYS
    capacity = float(cfg.limit_share_of_revenue[band]) * revenue if fresh else float("nan")
    need = float(cfg.limit_months_of_purchases[band]) * amount_12m / 12.0 if amount_12m > 0 else float("nan")
    limit = need if isnan(capacity) else (capacity if isnan(need) else _min(capacity, need))
    if fresh and ocf < 0:
        limit = limit * cfg.burning_cash_share
    new = amount_12m <= 0 and open_receivables <= 0
    if months >= cfg.loyal_min_months and late24 <= cfg.loyal_max_days_late and overdue <= 0 and not new:
        limit = limit * (1.0 + cfg.loyal_uplift)
    limit = _min(limit, inf if isnan(revenue) else cfg.max_share_of_revenue * revenue)
    limit = _min(limit, seller.customer_cap)
    if not isnan(ceiling):
        limit = _min(limit, ceiling)
    if isnan(limit):
        limit = 0.0
    if new:
        limit = _min(limit, cfg.new_customer_share_of_order * order)
    limit = limit if limit > 0.0 else 0.0
    scaled = limit * 100.0  # np.round(limit, 2): scale, round half to even, scale back
    return round(scaled) / 100.0 if isfinite(scaled) else limit


# ----------------------------------------------------------------------------- sentences


def _texts(rule: str, band: str, overdue: float, refer: object, limit: float, exposure: float, order: float,
           terms: float, total: float, cfg: PolicyConfig, seller: SellerConfig, approved: bool = False
           ) -> tuple[str, list[str], str | None]:
    """A decision's reason, its conditions and the discount offered, from the rule that decided;
    ``approved``: the limit is the one approved on the credit desk, and the sentence says so."""
    cond: list[str] = []
    the_limit = "the approved limit" if approved else "the limit"
    if rule == "declined_band":
        why = f"band {band} is declined by policy"
    elif rule == "declined_overdue":
        why = f"an invoice is {overdue:.0f} days overdue (new orders stop past {cfg.decline_overdue_days} days)"
    elif rule == "referred_fallback":
        why = str(refer)
    elif rule == "referred_seller_cap":
        why = (f"the book's limits would reach {total:,.2f} with this customer's, past the seller's cap of "
               f"{seller.total_cap:,.2f} ({seller.max_total_share_of_revenue:.0%} of its annual revenue)")
    elif rule == "no_open_credit":
        why = "no open credit for this customer"
        cond = ["prepayment in full (no open credit)"]
    elif rule == "within_limit_deposit":
        why = f"band {band}: within the limit, with a deposit"
        cond = [f"deposit of {cfg.deposit_share:.0%} ({round(cfg.deposit_share * order, 2):,.2f}) before delivery"
                if order > 0 else f"deposit of {cfg.deposit_share:.0%} of each order before delivery",
                f"payment terms Net {int(terms)}"]
    elif rule == "within_limit":
        why = "exposure within the approved limit" if approved else "exposure within the credit limit"
    elif rule == "referred_over_limit":
        why = f"exposure {exposure:,.2f} exceeds {the_limit} {limit:,.2f} by less than {cfg.refer_margin:.0%}"
    elif rule == "over_limit_no_order":
        why = f"open receivables {exposure:,.2f} exceed {the_limit} {limit:,.2f}"
        cond = ["new orders against prepayment until the open receivables are back within the limit"]
    else:
        why = f"exposure {exposure:,.2f} exceeds {the_limit} {limit:,.2f}"
        cond = [f"prepayment of {min(round(exposure - limit, 2), order):,.2f} "
                "(the part of the order above the credit limit)"]
    if terms <= 0 and RULES[rule] in (APPROVE, CONDITIONS) and rule != "no_open_credit":
        cond = cond + ["prepayment in full (no credit terms for this grade)"]
    offer = None
    if rule in ("within_limit", "within_limit_deposit") and band in cfg.discount_bands and terms > cfg.discount_days:
        offer = f"{cfg.discount_share * 100:g}/{cfg.discount_days} net {int(terms)}"
    return why, cond, offer


# ----------------------------------------------------------------------------- the seller's total


@dataclass(frozen=True)
class SellerCut:
    """How the rescore brought the book's limits within the seller's total cap."""

    ceiling: np.ndarray   # per customer the limit left, NaN where not cut
    total_before: float
    total_after: float
    cap: float
    cut_by_band: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        return {"total_before": self.total_before, "total_after": self.total_after, "cap": self.cap,
                "customers_cut": int((~np.isnan(self.ceiling)).sum()), "by_band": self.cut_by_band}


def seller_ceilings(band: np.ndarray, limit: np.ndarray, exposure: np.ndarray, seller: SellerConfig) -> SellerCut:
    """The limits that bring the book within the seller's total cap, by this rule: only unused
    limit is cut (no customer is put over its limit while another has room), every band's
    unused limit by a share in proportion to the band's weight (``seller.cut_weights``: the
    weakest lose the largest share), a band's share at most all of it, the rest then falling
    on the others; within a band every customer's unused limit shrinks by the same share. Only
    when no unused limit is left do all limits shrink by one share (then customers are over
    their limits, and the rescore says so)."""
    n = len(limit)
    ceiling = np.full(n, np.nan)
    total = float(limit.sum())
    cap = seller.total_cap
    by_band: dict[str, dict[str, float]] = {}
    if not isfinite(cap) or total <= cap:
        return SellerCut(ceiling, total, total, cap, by_band)
    room = np.maximum(limit - np.maximum(exposure, 0.0), 0.0)
    unused = {b: float(room[band == b].sum()) for b in BANDS_WEAKEST_FIRST}
    shares = _cut_shares(unused, seller.cut_weights, total - cap)
    new = limit.copy()
    for b, share in shares.items():
        rows = (band == b) & (room > 0)
        if share > 0 and rows.any():
            new[rows] = limit[rows] - room[rows] * share
            by_band[b] = {"customers": int(rows.sum()), "cut": unused[b] * share, "share_of_unused_limit": share}
    left = total - cap - sum(unused[b] * share for b, share in shares.items())
    if left > 1e-6:  # the exposures alone pass the cap
        new = new * (cap / float(new.sum()))
        by_band["all"] = {"customers": n, "cut": left, "share_of_unused_limit": 1.0}
    cut = new < limit
    # down to the cent, within the cap; the float noise of ``limit - room * 1`` first rounded away,
    # else a customer cut to its exposure lands a cent below it and is referred as over its limit
    new = np.where(cut, np.floor(np.round(new * 100.0, 4)) / 100.0, limit)
    ceiling[cut] = new[cut]
    return SellerCut(ceiling, total, float(new.sum()), cap, by_band)


def _cut_shares(unused: dict[str, float], weights: dict[str, float], excess: float) -> dict[str, float]:
    """Per band the share of its unused limit to cut: ``k * weight``, at most 1, with ``k`` such
    that the cuts add up to ``excess`` (or every band's whole unused limit when that is less)."""
    shares = {b: 0.0 for b in unused}
    open_ = {b for b, u in unused.items() if u > 0 and weights[b] > 0}
    while open_ and excess > 1e-9:
        k = excess / sum(weights[b] * unused[b] for b in open_)
        full = {b for b in open_ if k * weights[b] >= 1.0}
        if not full:
            for b in open_:
                shares[b] = k * weights[b]
            break
        for b in full:
            shares[b] = 1.0
            excess -= unused[b]
        open_ -= full
    return shares
