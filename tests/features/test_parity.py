"""One way from facts to a model row: a customer new to the book, sending the facts training
computed for it, is given to the model exactly the row training built for it."""

import numpy as np
import pandas as pd
import pytest

from riskcast.data.io import read_tables
from riskcast.features.build import build_features
from riskcast.features.payment import payment_features
from riskcast.features.registry import REQUEST_FACTS
from riskcast.serving.core import Order

AS_OF = pd.Timestamp("2024-01-01")  # ten customers without an invoice yet
SAMPLE = 300


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: the same float64 bits, or both NaN (a NaN's payload is no fact)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))


@pytest.fixture(scope="module")
def snapshot(demo_workdir, core):
    """The training rows of one snapshot date, and what of them was computed rather than
    filled: a payment value is known only where the ledger itself gives one (a customer with
    no invoice yet has none, one never late no date of a late payment)."""
    book = read_tables(demo_workdir / "book")
    rows = build_features(book, [AS_OF], core.registry).set_index("customer_id")
    pay = payment_features(book.invoices, AS_OF).reindex(rows.index)
    known = rows.notna()
    for c in pay.columns.intersection(rows.columns):
        known[c] = pay[c].notna()
    return rows, known


def _request(row: pd.Series, known: pd.Series, names: list[str]) -> dict[str, float]:
    """The customer's facts as a caller sends them: the known values only (JSON has no NaN)."""
    return {n: float(row[n]) for n in names if known[n]}


def _in_range(values: dict[str, float], ranges: dict[str, tuple[float, float]]) -> bool:
    return all(ranges[n][0] <= v <= ranges[n][1] for n, v in values.items())


def test_a_new_customer_sending_its_facts_gets_its_training_row_bit_for_bit(snapshot, core):
    rows, known = snapshot
    names = core.registry.names
    facts = [f.name for f in REQUEST_FACTS if f.name in rows.columns]
    assert {"amount_12m", "open_receivables", "max_days_overdue_open"} <= set(facts)
    fills = sorted(core.registry.filled)
    assert fills, "the registry declares no fills: nothing to hold order entry to"
    # the customers whose rows training filled come first: the cases parity is about
    filled = known[fills].eq(False).any(axis=1)
    rng = np.random.default_rng(5)
    others = rows.index[~filled].to_numpy()
    picked = list(rows.index[filled]) + list(rng.choice(others, SAMPLE - int(filled.sum()), replace=False))
    ranges = core.input_ranges_
    compared = 0
    for cid in picked:
        row, k = rows.loc[cid], known.loc[cid]
        request = _request(row, k, names + facts)
        if not _in_range(request, ranges):  # a request must be within range; training's facts need not
            continue
        order = Order(f"NEW-{cid}", 1000.0, features=request)
        assert core.store.get(order.customer_id) is None
        x, got_facts = core.model_input(order)
        want = row[names].to_numpy(dtype=np.float64)
        same = _same_bits(x, want)
        assert same.all(), (cid, {n: (x[j], want[j]) for j, n in enumerate(names) if not same[j]})
        for n in facts:
            assert _same_bits(got_facts[n], row[n]), (cid, n, got_facts[n], row[n])
        compared += 1
    assert compared >= SAMPLE * 0.9
    # the sample holds every case a fill decides: no invoice at all, invoices but never late,
    # no statement
    assert (~known.loc[picked, "invoices_12m"]).sum() >= 5
    assert (~known.loc[picked, "months_since_late"] & known.loc[picked, "invoices_12m"]).sum() >= 20
    assert rows.loc[picked, "revenue"].isna().sum() >= 20


def test_score_order_decides_on_that_row(snapshot, core):
    """``model_input`` is score_order's own row: the new customer's PD is the one its training
    row gets in the batch path, for customers training filled."""
    rows, known = snapshot
    names = core.registry.names
    facts = [f.name for f in REQUEST_FACTS if f.name in rows.columns]
    filled = rows.index[known[sorted(core.registry.filled)].eq(False).any(axis=1)][:40]
    batch = core.decide(rows.loc[filled].reset_index(), np.full(len(filled), 1000.0), np.full(len(filled), np.nan))
    for cid, b in zip(filled, batch):
        request = _request(rows.loc[cid], known.loc[cid], names + facts)
        d = core.score_order(Order(f"NEW-{cid}", 1000.0, features=request))
        assert d["model"]["kind"] == b["model"]["kind"] and d["pd_12m"] == b["pd_12m"], cid
        assert d["fallback_reason"] == b["fallback_reason"], cid
