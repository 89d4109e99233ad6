"""What order entry and the rescore ask of the desk: the limit that stands for a customer,
and a case for every referral (and for an approved limit whose review fell due)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from riskcast.errors import DeskUnavailableError

from .store import DeskStore, Referral, stands

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("riskcast.desk")


def standing_limit(desk: DeskStore, customer_id: str) -> tuple[float, float, dict[str, Any] | None]:
    """The customer's approved limit and terms while its review date has not come (NaN: none
    stands; terms NaN: the band's), and the limit row whose review fell due (None: none did)."""
    try:
        row = desk.approved_limit(customer_id)
    except Exception as exc:  # noqa: BLE001 - said in one line, without the database's address
        raise DeskUnavailableError(f"credit desk: the approved limits cannot be read ({type(exc).__name__}); "
                                   "retry") from None
    if row is None or row["credit_limit"] is None:
        return math.nan, math.nan, None
    if not stands(row, desk.clock()):
        return math.nan, math.nan, row
    terms = row["terms_days"]
    return float(row["credit_limit"]), math.nan if terms is None else float(terms), None


def referral(decision: Mapping[str, Any], order_amount: float, requested_terms: int | None,
             request_id: str | None) -> Referral:
    """What the desk keeps of a referred decision: the facts an analyst decides on."""
    facts = {k: decision.get(k) for k in (
        "pd_12m", "score", "grade", "band", "decision", "decision_reason", "credit_limit", "limit_source",
        "recommended_limit", "recommended_terms_days", "fallback_reason", "store_as_of")}
    facts.update(exposure=decision.get("exposure_after_order", decision.get("exposure")),
                 order_amount=float(order_amount), requested_terms_days=requested_terms,
                 reasons=[r["text"] if isinstance(r, Mapping) else str(r) for r in decision.get("reasons") or []],
                 model_version=(decision.get("model") or {}).get("version"))
    return Referral(str(decision["customer_id"]), request_id, facts)


def review_referral(row: Mapping[str, Any], decision: Mapping[str, Any] | None = None) -> Referral:
    """A review case's opening facts: the expired limit and, when an order found it, the
    system's view of the customer now."""
    facts: dict[str, Any] = {"decision": "review", "approved_limit": row["credit_limit"],
                             "review_date": row["review_date"], "band": row.get("band"),
                             "decision_reason": f"the approved limit's review fell due on {row['review_date']}",
                             "recommended_limit": row["credit_limit"], "exposure": 0.0}
    if decision is not None:
        facts.update({k: decision.get(k) for k in ("pd_12m", "grade", "band", "recommended_limit")
                      if decision.get(k) is not None})
        facts["exposure"] = decision.get("exposure_after_order", 0.0)
    return Referral(str(row["customer_id"]), None, facts)


def open_cases(desk: DeskStore, pending: Sequence[tuple[int, Referral]], decisions: list[dict[str, Any]],
               by: str = "order entry") -> None:
    """Open or join the cases of ``pending`` (decision index, referral) and write each case's
    id into its decision. A desk that cannot be written leaves the decision as recorded (its
    answer stands) and says so in the log: the order is on record, its case is not."""
    if not pending:
        return
    try:
        ids = desk.refer([r for _, r in pending], by=by)
    except Exception as exc:  # noqa: BLE001 - one line, no values
        logger.error("credit desk: %d referral(s) on record could not be opened as cases (%s); "
                     "`riskcast desk sync` opens them", len(pending), type(exc).__name__)
        return
    for i, r in pending:
        if r.request_id is not None:
            decisions[i]["case_id"] = ids.get(r.request_id)


def with_approved_limits(feats: "pd.DataFrame", desk: DeskStore | None) -> tuple["pd.DataFrame", dict[str, int]]:
    """The book's rows with the desk's standing limits (``approved_limit``; NaN where none
    stands), so that the rescore decides as order entry does, and how many stand or fell due."""
    import numpy as np

    out = feats.copy(deep=False)
    counts = {"approved_limits": 0, "reviews_due": 0}
    if desk is None:
        out["approved_limit"] = out["approved_terms_days"] = np.nan
        return out, counts
    today = desk.clock()
    standing: dict[str, float] = {}
    terms: dict[str, float] = {}
    for cid, row in desk.current_limits().items():
        if row["credit_limit"] is None:
            continue
        if stands(row, today):
            standing[cid] = float(row["credit_limit"])
            terms[cid] = np.nan if row["terms_days"] is None else float(row["terms_days"])
        else:
            counts["reviews_due"] += 1
    ids = out["customer_id"].astype(str)
    out["approved_limit"] = ids.map(standing).astype("float64")
    out["approved_terms_days"] = ids.map(terms).astype("float64")
    counts["approved_limits"] = int(out["approved_limit"].notna().sum())
    return out, counts


def book_referrals(scored: "pd.DataFrame", as_of: str, top_reasons: int) -> list[Referral]:
    """A referral per customer the rescore referred (its key names the rescore's date: the same
    rescore run again opens nothing new)."""
    out = []
    refer = scored[scored["decision"] == "refer"]
    for rec in refer.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
        reasons = [rec.get(f"reason_{p + 1}") for p in range(top_reasons)]
        d = {**rec, "reasons": [r for r in reasons if r], "exposure_after_order": rec.get("exposure"),
             "model": {"version": rec.get("model_version")}}
        out.append(referral(d, 0.0, None, f"rescore:{as_of}:{rec['customer_id']}"))
    return out


def sync_referrals(desk: DeskStore, audit: Any) -> dict[str, int]:
    """Open the cases of referrals on record that have none (the desk could not be written
    when they were decided): the audit log's answer is what the system decided."""
    import json

    import sqlalchemy as sa

    t = audit.table
    with audit.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.request_id, t.c.order_amount, t.c.requested_terms_days, t.c.answer)
                            .where(t.c.decision == "refer").order_by(t.c.id)).all()
    missing = [r for r in rows if r.answer and desk.case_of_order(r.request_id) is None]
    referrals = [referral(json.loads(r.answer), r.order_amount, r.requested_terms_days, r.request_id) for r in missing]
    ids = desk.refer(referrals, by="order entry (sync)") if referrals else {}
    return {"referrals_on_record": len(rows), "opened_now": len(ids)}
