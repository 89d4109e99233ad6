"""The dunning ladder: each overdue invoice at the configured stage (reached once it is more
than the stage's days past due), the step due and its date moved on by what is on record, the
ranking by expected loss, and the stop list that order entry declines by, one rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskcast.config import CollectionsConfig, CollectionStage, PolicyConfig, RiskcastConfig, load_config
from riskcast.data.io import read_tables
from riskcast.data.ledger import open_invoices
from riskcast.errors import ConfigError
from riskcast.features.store import FeatureStore, write_store
from riskcast.serving.collections import collections_of, customer_pds
from riskcast.serving.core import Order, ScoringCore
from riskcast.serving.rescore import collections_paths, rescore_to_file

AS_OF = pd.Timestamp("2025-06-30")
#: the acceptance book: one invoice of each customer at these days past due
LADDER_BOOK = {"early": (6, 8), "calling": (16,), "stopped": (31,), "legal": (46,), "agency": (91,)}
STAGES = {6: "", 8: "reminder", 16: "call", 31: "demand", 46: "legal", 91: "agency"}


def _ledger(overdue: dict[str, tuple[int, ...]], history_months: int = 12) -> pd.DataFrame:
    """Each customer's last ``history_months`` of invoices paid on their due date, and an open
    invoice at each of its days past due."""
    rows = []
    for cid, days in overdue.items():
        for m in range(history_months, 0, -1):
            issue = AS_OF - pd.DateOffset(months=m) - pd.Timedelta(days=30)
            rows.append((f"{cid}-P{m}", cid, issue, issue + pd.Timedelta(days=30), 1_000.0, issue + pd.Timedelta(days=30)))
        for d in days:
            due = AS_OF - pd.Timedelta(days=d)
            rows.append((f"{cid}-O{d}", cid, due - pd.Timedelta(days=30), due, 500.0 + d, pd.NaT))
    out = pd.DataFrame(rows, columns=["invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date"])
    out["paid_amount"] = np.nan  # paid in full when paid
    return out


def _pds(**pd_of: float) -> pd.DataFrame:
    return customer_pds(pd.DataFrame({"customer_id": list(pd_of), "pd_12m": list(pd_of.values())}), None)


def _work(invoices: pd.DataFrame, pds: pd.DataFrame, cfg: RiskcastConfig | None = None, steps=None):
    return collections_of(open_invoices(invoices, AS_OF), pds, cfg or RiskcastConfig(), AS_OF, steps)


def test_the_books_invoices_get_the_configured_ladders_stages():
    work, stops, summary = _work(_ledger(LADDER_BOOK), _pds(early=0.01, calling=0.02, stopped=0.05, legal=0.1, agency=0.2))
    got = dict(zip(work["days_past_due"], work["stage"]))
    assert got == STAGES
    assert len(work) == 6  # the paid history is not overdue
    # a stage is reached on the day after due date + its days
    row = work.set_index("days_past_due").loc[31]
    assert row["stage_date"] == row["due_date"] + pd.Timedelta(days=31) == AS_OF
    six = work.set_index("days_past_due").loc[6]
    assert six["step_stage"] == "reminder" and six["step_date"] == AS_OF + pd.Timedelta(days=2)
    assert not six["step_due_now"]
    assert set(stops["customer_id"]) == {"stopped", "legal", "agency"}
    assert summary["stop_list"] == {"customers": 3, "overdue_amount": 531.0 + 546.0 + 591.0, "stop_days": 30}
    assert [s["invoices"] for s in summary["stages"]] == [1, 1, 1, 1, 1, 1]


def test_the_stop_stage_moves_with_the_policys_decline_days_and_a_ladder_is_configuration():
    cfg = RiskcastConfig(policy=PolicyConfig(decline_overdue_days=40))
    work, stops, _ = _work(_ledger(LADDER_BOOK), _pds(), cfg)
    assert dict(zip(work["days_past_due"], work["stage"]))[31] == "call"   # not yet past 40
    assert set(stops["customer_id"]) == {"legal", "agency"}
    short = RiskcastConfig(collections=CollectionsConfig(stages=(
        CollectionStage(name="nudge", days=0, action="a nudge"),
        CollectionStage(name="stop", action="no new orders", stops_orders=True))))
    work, _, _ = _work(_ledger(LADDER_BOOK), _pds(), short)
    assert set(work["stage"]) == {"nudge", "stop"} and (work["stage"] == "stop").sum() == 3


@pytest.mark.parametrize("toml, says", [
    ("[policy]\ndecline_overdue_days = 45\n", "the days must increase along the ladder"),
    ('[[collections.stages]]\nname = "demand"\naction = "x"\nstops_orders = true\ndays = 20\n', "one rule"),
    ('[[collections.stages]]\nname = "a"\naction = "x"\n[[collections.stages]]\nname = "b"\naction = "y"\n'
     'stops_orders = true\n', "stage 'a' needs its days"),
    ('[[collections.stages]]\nname = "a"\naction = "x"\ndays = 3\n', "exactly one stage stops new orders"),
])
def test_a_ladder_that_contradicts_the_policy_is_refused_naming_the_key(tmp_path, toml, says):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert says in str(e.value) and "collections" in str(e.value)


def test_a_step_on_record_moves_the_step_due_to_the_next_stage_and_a_promise_moves_its_date():
    inv = _ledger({"calling": (16,), "agency": (91,), "early": (8,)})
    steps = pd.DataFrame([
        {"customer_id": "calling", "invoice_id": "calling-O16", "stage": "reminder", "outcome": "done",
         "promised_date": None, "note": None, "at": "2025-06-20T09:00:00.000+00:00", "user_id": "ann"},
        {"customer_id": "calling", "invoice_id": "calling-O16", "stage": "call", "outcome": "promise to pay",
         "promised_date": "2025-07-20", "note": "pays on the 20th", "at": "2025-06-29T09:00:00.000+00:00",
         "user_id": "abe"},
        {"customer_id": "agency", "invoice_id": "agency-O91", "stage": "agency", "outcome": "escalated",
         "promised_date": None, "note": None, "at": "2025-06-30T08:00:00.000+00:00", "user_id": "ann"},
        # a step of an earlier stage than the invoice's does not count for its stage
        {"customer_id": "early", "invoice_id": "early-O8", "stage": "call", "outcome": "done",
         "promised_date": None, "note": None, "at": "2025-06-30T08:00:00.000+00:00", "user_id": "ann"},
    ])
    work, _, summary = _work(inv, _pds(), steps=steps)
    w = work.set_index("invoice_id")
    c = w.loc["calling-O16"]
    assert (c["stage"], c["step_stage"], c["last_stage"], c["last_outcome"], c["last_by"]) == \
        ("call", "demand", "call", "promise to pay", "abe")
    # the demand falls due past 30 days (2025-07-15), after the promise only from 2025-07-21
    assert c["promised_date"] == pd.Timestamp("2025-07-20") and c["step_date"] == pd.Timestamp("2025-07-21")
    a = w.loc["agency-O91"]
    assert a["step_stage"] == "" and a["step"] == "the ladder's last step is taken" and pd.isna(a["step_date"])
    assert not a["step_due_now"]
    e = w.loc["early-O8"]
    assert e["step_stage"] == "reminder" and e["step_due_now"] and e["last_stage"] == "call"
    assert summary["with_a_step_on_record"] == 3 and summary["steps_due_now"] == 1


def test_the_worklist_is_ranked_by_expected_loss_and_no_customer_falls_off_for_want_of_a_pd():
    inv = _ledger({"big_safe": (20,), "small_risky": (20,), "defaulted": (200,), "unscored": (10,)})
    inv.loc[inv["invoice_id"] == "big_safe-O20", "amount"] = 100_000.0
    pds = customer_pds(pd.DataFrame({"customer_id": ["big_safe", "small_risky"], "pd_12m": [0.01, 0.5]}),
                       pd.DataFrame({"customer_id": ["defaulted"], "kind": ["in default"], "reason": ["since"]}))
    work, _, summary = _work(inv, pds)
    # 0.01 x LGD x 100,000 = 450 before 1 x LGD x 700 (in default) and 1 x LGD x 510 (no PD)
    assert list(work["customer_id"]) == ["big_safe", "defaulted", "unscored", "small_risky"]
    assert list(work["rank"]) == [1, 2, 3, 4]
    lgd = RiskcastConfig().rescore.lgd
    by = work.set_index("customer_id")
    assert by.loc["big_safe", "expected_loss"] == pytest.approx(0.01 * lgd * 100_000.0)
    assert by.loc["small_risky", "expected_loss"] == pytest.approx(0.5 * lgd * 520.0)
    assert by.loc["defaulted", "pd_source"] == "in default" and by.loc["defaulted", "pd_12m"] == 1.0
    assert by.loc["unscored", "pd_12m"] == 1.0 and summary["customers_without_pd"] == 1


def test_a_disputed_invoice_is_on_the_worklist_flagged_from_the_day_the_dispute_was_raised():
    inv = _ledger({"quarrel": (40, 20)})
    inv["disputed"] = inv["invoice_id"].isin(["quarrel-O40", "quarrel-O20"])
    inv["dispute_date"] = pd.NaT
    inv.loc[inv["invoice_id"] == "quarrel-O40", "dispute_date"] = AS_OF - pd.Timedelta(days=5)
    inv.loc[inv["invoice_id"] == "quarrel-O20", "dispute_date"] = AS_OF + pd.Timedelta(days=5)
    work, stops, summary = _work(inv, _pds())
    assert dict(zip(work["invoice_id"], work["disputed"])) == {"quarrel-O40": True, "quarrel-O20": False}
    # a disputed invoice stops orders as order entry counts it: every open invoice's days
    assert list(stops["customer_id"]) == ["quarrel"] and summary["disputed_invoices"] == 1


# -- one rule with order entry ---------------------------------------------------------------

def test_the_stop_list_is_who_order_entry_declines_for_overdue_invoices_on_the_whole_demo_book(core, demo_workdir):
    work = pd.read_parquet(collections_paths(demo_workdir / "scored_book.parquet")[0])
    stops = set(pd.read_parquet(collections_paths(demo_workdir / "scored_book.parquet")[1])["customer_id"])
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet", columns=["customer_id", "band"])
    cfg = core.cfg.model_copy(update={"policy": core.cfg.policy.model_copy(update={"decline_bands": ()})})
    served = ScoringCore(cfg, core.model, core.store, registry=core.registry)
    ids = scored["customer_id"].astype(str).tolist()
    answers = served.score_orders([Order(cid, 1_000.0) for cid in ids])
    stopped = {a["customer_id"] for a in answers if "new orders stop past 30 days" in a["decision_reason"]}
    assert stopped and stopped == stops & set(ids)
    assert all(a["decision"] == "decline" for a in answers if a["customer_id"] in stopped)
    # the worklist's days past due are order entry's: the oldest invoice of every customer
    oldest = work.groupby("customer_id")["days_past_due"].max()
    facts = {cid: core.store.get(cid)["max_days_overdue_open"] for cid in oldest.index if core.store.get(cid)}
    assert facts and all(oldest[cid] == days for cid, days in facts.items())


def test_the_acceptance_book_rescored_gets_its_stages_and_order_entry_declines_the_stop_stage(core, tmp_path):
    data = tmp_path / "ledger"
    data.mkdir()
    inv = _ledger(LADDER_BOOK)
    for col in ("issue_date", "due_date", "paid_date"):
        inv[col] = inv[col].dt.strftime("%Y-%m-%d")
    inv.drop(columns="paid_amount").to_csv(data / "invoices.csv", index=False)
    tables = read_tables(data, with_truth=False, reject_bad_customers=True)
    cfg = core.cfg.model_copy(update={"policy": core.cfg.policy.model_copy(update={"decline_bands": ()})})
    rescoring = ScoringCore(cfg, core.model, None, registry=core.registry)
    result = rescore_to_file(tables, rescoring, AS_OF, tmp_path / "book.parquet")
    work = pd.read_parquet(collections_paths(result.out)[0])
    assert dict(zip(work["days_past_due"], work["stage"])) == STAGES
    assert result.summary["collections"]["stop_list"]["customers"] == 3
    assert np.isfinite(work["pd_12m"]).all() and (work["pd_source"] == "rescore").all()

    store = FeatureStore(write_store(result.features, tmp_path / "store.sqlite", core.registry.version))
    served = ScoringCore(cfg, core.model, store, registry=core.registry)
    for cid in LADDER_BOOK:
        a = served.score_order(Order(cid, 100.0))
        oldest = max(LADDER_BOOK[cid])
        if oldest > 30:
            assert a["decision"] == "decline", cid
            assert a["decision_reason"] == f"an invoice is {oldest} days overdue (new orders stop past 30 days)"
        else:
            assert "overdue" not in a["decision_reason"], (cid, a["decision_reason"])
