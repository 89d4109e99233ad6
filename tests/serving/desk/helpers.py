"""Helpers of the desk's tests: referrals built from a few numbers, a settable clock, and the
rows each desk table holds."""

from __future__ import annotations

import threading

from datetime import date
from typing import Any

import sqlalchemy as sa

from riskcast.serving.desk import schema
from riskcast.serving.desk.store import DeskStore, Referral

TODAY = date(2026, 1, 31)
REASON = "FIN"
TEXT = "accounts filed last month support the exposure"


class Clock:
    """Today's date for a store (``clock.today = ...`` moves it)."""

    def __init__(self, today: date = TODAY) -> None:
        self.today = today

    def __call__(self) -> date:
        return self.today


def referral(customer_id: str, request_id: str | None, order_amount: float, open_receivables: float = 0.0, *,
             pd_12m: float | None = 0.05, band: str | None = "D", recommended_limit: float | None = None,
             decision: str = "refer") -> Referral:
    """A referred order: the customer's open receivables before it and the order's amount (the
    facts hold the exposure with the order, as order entry refers it)."""
    facts: dict[str, Any] = {"pd_12m": pd_12m, "band": band, "decision": decision,
                             "exposure": open_receivables + order_amount, "order_amount": order_amount,
                             "recommended_limit": recommended_limit}
    return Referral(customer_id, request_id, facts)


def rows(desk: DeskStore, table: str) -> list[dict[str, Any]]:
    """Every row of a desk table, oldest first."""
    tbl = schema.metadata.tables[table]
    order = list(tbl.primary_key.columns)
    with desk.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(tbl).order_by(*order)).mappings()]


def counts(desk: DeskStore) -> dict[str, int]:
    """How many rows each desk table holds."""
    with desk.engine.connect() as conn:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(schema.metadata.tables[name])).scalar_one()
                for name in schema.APPEND_ONLY}


def run_at_once(work, n):
    """Run ``work(i)`` in ``n`` threads released together; returns each result or exception."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i):
        try:
            barrier.wait(timeout=30)
            out[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the test to judge
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    return out
