"""The dunning ladder on a date: every overdue invoice at its stage, the step due and its date,
ranked by expected loss; the customers at the stop stage form the stop list.

- A **stage** is reached once an invoice is *more than* the stage's days past due (the
  configured ladder, by default a reminder past 7 days, a call past 15, a formal demand and
  no new orders past 30, legal action past 45, a collection agency or an insurance claim
  past 90). It is reached on the day after due date + days.
- The **step due** is the stage's action while no step of that stage is on record for the
  invoice; once one is, the next stage's action on the day that stage is reached. A promise
  to pay recorded with a date moves the step due to the day after it.
- The **stop list**: the customers whose oldest open invoice is past the stop stage; the rule
  is ``policy.stops_orders``, the one order entry declines by, on the same days past due.
- **Ranking**: by expected loss, the customer's 12-month PD x LGD x what is left of the
  invoice: where a collector's call saves the most. Customers in default count with PD 1, and
  so does a customer with no PD on record (counted, and said in the summary), so that nothing
  falls to the bottom of the list for want of a score.

Pure functions of frames: the rescore, the command line and the desk's page call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskcast.config import CollectionsConfig, PolicyConfig, RiskcastConfig

from .policy import stops_orders

#: the columns of the worklist, in order
WORKLIST_COLUMNS = ("rank", "customer_id", "invoice_id", "issue_date", "due_date", "days_past_due", "open_amount",
                    "disputed", "stage", "stage_date", "step_stage", "step", "step_date", "step_due_now",
                    "stops_orders", "pd_12m", "pd_source", "expected_loss", "last_stage", "last_outcome", "last_by",
                    "last_at", "promised_date")
#: the recorded steps' columns the worklist reads
STEP_COLUMNS = ("customer_id", "invoice_id", "stage", "outcome", "promised_date", "note", "at", "user_id")
NO_STAGE = ""
NO_PD = "no PD on record: counted as lost"


@dataclass(frozen=True)
class Ladder:
    """The configured stages in order: names, days past due (more than), actions, the stop."""

    names: tuple[str, ...]
    days: np.ndarray
    actions: tuple[str, ...]
    stop: int

    @classmethod
    def of(cls, collections: CollectionsConfig, policy: PolicyConfig) -> "Ladder":
        stages = collections.ladder(policy)
        return cls(tuple(s.name for s in stages), np.array([s.days for s in stages], dtype=np.int64),
                   tuple(s.action for s in stages), next(i for i, s in enumerate(stages) if s.stops_orders))

    def stage_of(self, days_past_due: np.ndarray) -> np.ndarray:
        """The index of the stage each invoice has reached; -1 before the first."""
        return np.searchsorted(self.days, np.asarray(days_past_due), side="left") - 1


def customer_pds(scored: pd.DataFrame | None, rejected: pd.DataFrame | None) -> pd.DataFrame:
    """Each customer's PD and where it comes from: the rescore's ``pd_12m``; 1 for a customer
    set aside in default; 1 for one set aside for another reason (its kind said)."""
    parts = []
    if scored is not None and len(scored):
        parts.append(pd.DataFrame({"customer_id": scored["customer_id"].astype(str).to_numpy(),
                                   "pd_12m": scored["pd_12m"].to_numpy(dtype=float), "pd_source": "rescore"}))
    if rejected is not None and len(rejected):
        kind = rejected["kind"].astype(str).to_numpy()
        parts.append(pd.DataFrame({"customer_id": rejected["customer_id"].astype(str).to_numpy(), "pd_12m": 1.0,
                                   "pd_source": np.where(kind == "in default", "in default",
                                                         np.char.add("not scored: ", kind.astype(str)))}))
    if not parts:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object), "pd_12m": pd.Series([], dtype=float),
                             "pd_source": pd.Series([], dtype=object)})
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return out if out["customer_id"].is_unique else out.drop_duplicates("customer_id", keep="first")


def _days(n: np.ndarray) -> np.ndarray:
    return n.astype("timedelta64[D]").astype("timedelta64[ns]")


def worklist(open_inv: pd.DataFrame, pds: pd.DataFrame, collections: CollectionsConfig, policy: PolicyConfig,
             lgd: float, as_of: pd.Timestamp, steps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every overdue invoice of ``open_inv`` (``ledger.open_invoices`` on ``as_of``) with its
    stage, the step due and its date, the customer's stop, PD and the invoice's expected loss;
    the most expected loss first (ties: the oldest, then the ledger's order)."""
    as_of = pd.Timestamp(as_of).normalize()
    ladder = Ladder.of(collections, policy)
    dpd_all = open_inv["days_past_due"].to_numpy()
    over = np.flatnonzero(dpd_all > 0)
    inv = open_inv.iloc[over].reset_index(drop=True)
    dpd = dpd_all[over].astype(np.int64)
    codes, ids = pd.factorize(inv["customer_id"].astype(str))
    oldest = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(oldest, codes, dpd)
    pos = pd.Index(pds["customer_id"].astype(str)).get_indexer(ids)
    known = pos >= 0
    pd_c = np.ones(len(ids))
    pd_c[known] = pds["pd_12m"].to_numpy(dtype=float)[pos[known]]
    src_c = np.full(len(ids), NO_PD, dtype=object)
    src_c[known] = pds["pd_source"].to_numpy(dtype=object)[pos[known]]
    due = inv["due_date"].to_numpy(dtype="datetime64[ns]")
    stage = ladder.stage_of(dpd)
    reached = stage >= 0
    names = np.array((*ladder.names, NO_STAGE), dtype=object)  # index -1: no stage yet
    out = pd.DataFrame({
        "customer_id": inv["customer_id"].to_numpy(), "invoice_id": inv["invoice_id"].to_numpy(),
        "issue_date": inv["issue_date"].to_numpy(), "due_date": due, "days_past_due": dpd,
        "open_amount": inv["open_amount"].to_numpy(dtype=float),
        "disputed": inv["disputed"].to_numpy(dtype=bool) if "disputed" in inv.columns else False,
        "stage": names[stage],
        "stage_date": np.where(reached, due + _days(ladder.days[np.maximum(stage, 0)] + 1), np.datetime64("NaT")),
    })
    # the step due: the reached stage's, or the first stage's before any is reached
    step = np.maximum(stage, 0)
    last = _last_steps(out, steps, ladder)
    if last is not None:
        step = np.where(last["done"], stage + 1, step)
    beyond = step >= len(ladder.names)                    # the last stage's step is on record
    step_c = np.minimum(step, len(ladder.names) - 1)
    step_date = due + _days(ladder.days[step_c] + 1)
    out["step_stage"] = np.where(beyond, NO_STAGE, np.asarray(ladder.names, dtype=object)[step_c])
    out["step"] = np.where(beyond, "the ladder's last step is taken", np.asarray(ladder.actions, dtype=object)[step_c])
    if last is not None:
        promised = last["promised"]
        step_date = np.where(~np.isnat(promised) & (promised >= np.datetime64(as_of, "ns")),
                             np.maximum(step_date, promised + _days(np.ones(len(out), dtype=np.int64))), step_date)
    out["step_date"] = np.where(beyond, np.datetime64("NaT"), step_date).astype("datetime64[ns]")
    out["step_due_now"] = ~beyond & (out["step_date"].to_numpy() <= np.datetime64(as_of, "ns"))
    out["stops_orders"] = stops_orders(oldest, policy)[codes]
    out["pd_12m"] = pd_c[codes]
    out["pd_source"] = src_c[codes]
    out["expected_loss"] = np.round(out["pd_12m"].to_numpy() * lgd * out["open_amount"].to_numpy(), 2)
    for col in ("last_stage", "last_outcome", "last_by", "last_at", "promised_date"):
        out[col] = None if last is None else last[col]
    out["promised_date"] = pd.to_datetime(out["promised_date"])
    order = np.lexsort((np.arange(len(out)), -dpd, -out["expected_loss"].to_numpy()))
    out = out.iloc[order].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out[list(WORKLIST_COLUMNS)]


def _last_steps(out: pd.DataFrame, steps: pd.DataFrame | None, ladder: Ladder) -> dict[str, np.ndarray] | None:
    """For each worklist row: whether a step of its reached stage is on record, and the last
    step recorded (stage, outcome, who, when, a promised date)."""
    if steps is None or not len(steps):
        return None
    s = steps.sort_values("at", kind="stable")
    key = s["customer_id"].astype(str) + "\x00" + s["invoice_id"].astype(str)
    rows = out["customer_id"].astype(str) + "\x00" + out["invoice_id"].astype(str)
    latest = s.assign(key=key.to_numpy()).drop_duplicates("key", keep="last").set_index("key")
    hit = latest.index.get_indexer(rows)
    n = len(out)
    res: dict[str, np.ndarray] = {}
    for col, src in (("last_stage", "stage"), ("last_outcome", "outcome"), ("last_by", "user_id"), ("last_at", "at"),
                     ("promised_date", "promised_date")):
        vals = latest[src].to_numpy(dtype=object)
        res[col] = np.where(hit >= 0, vals[np.maximum(hit, 0)] if len(vals) else None, None)
    res["promised"] = pd.to_datetime(pd.Series(res["promised_date"]), errors="coerce").to_numpy(dtype="datetime64[ns]")
    done_keys = set(zip(key.to_numpy(), s["stage"].astype(str).to_numpy()))
    stage = out["stage"].to_numpy()
    res["done"] = np.fromiter(((k, st) in done_keys for k, st in zip(rows.to_numpy(), stage)), dtype=bool, count=n) \
        if (hit >= 0).any() else np.zeros(n, dtype=bool)
    return res


def stop_list(work: pd.DataFrame, policy: PolicyConfig) -> pd.DataFrame:
    """The customers at the stop stage: their oldest days past due, since when orders stop, what
    is overdue and its expected loss, the most at stake first."""
    at = work[work["stops_orders"].to_numpy()]
    if not len(at):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in (
            "customer_id", "oldest_days_past_due", "stopped_since", "overdue_invoices", "overdue_amount",
            "pd_12m", "pd_source", "expected_loss")})
    g = at.groupby("customer_id", sort=False)
    out = pd.DataFrame({"oldest_days_past_due": g["days_past_due"].max(), "oldest_due_date": g["due_date"].min(),
                        "overdue_invoices": g.size(), "overdue_amount": g["open_amount"].sum().round(2),
                        "pd_12m": g["pd_12m"].first(), "pd_source": g["pd_source"].first(),
                        "expected_loss": g["expected_loss"].sum().round(2)})
    out["stopped_since"] = out.pop("oldest_due_date") + pd.Timedelta(days=policy.decline_overdue_days + 1)
    out = out.sort_values(["expected_loss", "oldest_days_past_due"], ascending=False, kind="stable")
    return out.reset_index()[["customer_id", "oldest_days_past_due", "stopped_since", "overdue_invoices",
                              "overdue_amount", "pd_12m", "pd_source", "expected_loss"]]


def collections_summary(work: pd.DataFrame, stops: pd.DataFrame, collections: CollectionsConfig,
                        policy: PolicyConfig, as_of: pd.Timestamp) -> dict[str, Any]:
    """What the worklist holds: invoices and amounts by stage, steps due now, the stop list."""
    ladder = Ladder.of(collections, policy)
    stage = work["stage"].to_numpy()
    amount = work["open_amount"].to_numpy()
    stages = [{"stage": "not yet at a stage", "days": None, "action": None, "invoices": int((stage == NO_STAGE).sum()),
               "amount": round(float(amount[stage == NO_STAGE].sum()), 2)}]
    for name, days, action in zip(ladder.names, ladder.days.tolist(), ladder.actions):
        m = stage == name
        stages.append({"stage": name, "days": days, "action": action, "invoices": int(m.sum()),
                       "amount": round(float(amount[m].sum()), 2)})
    no_pd = work["pd_source"].to_numpy() == NO_PD
    return {"as_of": str(pd.Timestamp(as_of).date()), "overdue_invoices": len(work),
            "overdue_amount": round(float(amount.sum()), 2),
            "customers": int(work["customer_id"].nunique()),
            "disputed_invoices": int(work["disputed"].sum()),
            "stages": stages, "steps_due_now": int(work["step_due_now"].sum()),
            "with_a_step_on_record": int(work["last_outcome"].notna().sum()),
            "expected_loss": round(float(work["expected_loss"].sum()), 2),
            "customers_without_pd": int(work.loc[no_pd, "customer_id"].nunique()),
            "stop_list": {"customers": len(stops), "overdue_amount": round(float(stops["overdue_amount"].sum()), 2)
                          if len(stops) else 0.0, "stop_days": policy.decline_overdue_days}}


def collections_lines(s: dict[str, Any]) -> list[str]:
    """The worklist's summary as the command line and the rescore print it."""
    def stage(x: dict[str, Any]) -> str:
        past = "" if x["days"] is None else f" (past {x['days']} days)"
        return f"{x['stage']}{past} {x['invoices']:,} for {x['amount']:,.0f}"
    staged = "; ".join(stage(x) for x in s["stages"])
    lines = [f"collections as of {s['as_of']}: {s['overdue_invoices']:,} overdue invoices of {s['customers']:,} "
             f"customers, {s['overdue_amount']:,.0f} ({s['disputed_invoices']:,} disputed); expected loss "
             f"{s['expected_loss']:,.0f}",
             f"by stage: {staged}",
             f"steps due now: {s['steps_due_now']:,}; with a step on record: {s['with_a_step_on_record']:,}",
             f"stop list (new orders stop past {s['stop_list']['stop_days']} days): {s['stop_list']['customers']:,} "
             f"customers, {s['stop_list']['overdue_amount']:,.0f} overdue"]
    if s["customers_without_pd"]:
        lines.append(f"{s['customers_without_pd']:,} customers with overdue invoices have no PD on record: counted "
                     "as lost (PD 1) in the ranking")
    return lines


def collections_of(open_inv: pd.DataFrame, pds: pd.DataFrame, cfg: RiskcastConfig, as_of: pd.Timestamp,
                   steps: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The worklist, the stop list and their summary on ``as_of``: what the rescore writes
    beside the scored book and ``riskcast collections`` prints."""
    work = worklist(open_inv, pds, cfg.collections, cfg.policy, cfg.rescore.lgd, as_of, steps)
    stops = stop_list(work, cfg.policy)
    return work, stops, collections_summary(work, stops, cfg.collections, cfg.policy, as_of)


def with_steps(work: pd.DataFrame, steps: pd.DataFrame | None, cfg: RiskcastConfig, as_of: pd.Timestamp
               ) -> pd.DataFrame:
    """A worklist written earlier (all of it, or some of its rows) with the steps on record
    now: the desk's page after a step was recorded. Rows keep their rank in the book."""
    pds = work[["customer_id", "pd_12m", "pd_source"]].drop_duplicates("customer_id")
    again = worklist(work, pds, cfg.collections, cfg.policy, cfg.rescore.lgd, as_of, steps)
    same = (again["invoice_id"].to_numpy() == work["invoice_id"].to_numpy()).all() and \
        (again["customer_id"].to_numpy() == work["customer_id"].to_numpy()).all()
    if same:  # the written order is the ranking's, kept by the stable sort
        again["rank"] = work["rank"].to_numpy()
    else:     # another LGD since: the rows' ranks as written, by invoice
        key = work["customer_id"].astype(str) + "\x00" + work["invoice_id"].astype(str)
        again["rank"] = (again["customer_id"].astype(str) + "\x00" + again["invoice_id"].astype(str)).map(
            pd.Series(work["rank"].to_numpy(), index=key.to_numpy())).to_numpy()
    return again
