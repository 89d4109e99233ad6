"""Override rates and the outcomes of overridden against followed decisions, by hand."""

from __future__ import annotations

from datetime import date

import pandas as pd

from riskcast.serving.desk.overrides import override_report, report_lines
from riskcast.serving.desk.store import Case


def _case(i: int, who: str, band: str, code: str, override: str, on: str) -> Case:
    c = Case(i, f"C{i}", "referral", f"{on}T09:00:00", "order entry", facts={"band": band})
    c.decision = {"user_id": who, "at": f"{on}T10:00:00", "reason_code": code, "action": "approve",
                  "override": override, "credit_limit": 100.0, "recommended_limit": 80.0}
    c.state = "decided"
    return c


def test_rates_by_analyst_band_and_reason_and_the_outcomes_of_matured_decisions():
    cases = [_case(1, "ann", "B", "PAY", "up", "2024-01-15"), _case(2, "ann", "B", "PAY", "none", "2024-02-01"),
             _case(3, "bob", "C", "SEC", "up", "2024-03-01"), _case(4, "bob", "D", "RISK", "down", "2024-03-01"),
             _case(5, "bob", "C", "PAY", "none", "2025-06-01"),  # not matured by the data's last date
             Case(6, "C6", "referral", "2024-01-01T00:00:00", "rescore")]  # open: not a decision
    defaults = pd.DataFrame({"customer_id": ["C1", "C2", "C4", "C3"],
                             "default_date": ["2024-06-30", "2023-12-01", "2025-05-01", "2025-04-01"]})
    r = override_report(cases, defaults, horizon_months=12, data_last_date=date(2025, 3, 31))
    assert (r["decisions"], r["overrides"], r["up"], r["down"], r["override_rate"]) == (5, 3, 2, 1, 0.6)
    assert {x["decided_by"]: (x["decisions"], x["overrides"]) for x in r["by_analyst"]} == {"ann": (2, 1),
                                                                                            "bob": (3, 2)}
    assert {x["band"]: x["override_rate"] for x in r["by_band"]} == {"B": 0.5, "C": 0.5, "D": 1.0}
    assert {x["reason_code"]: x["up"] for x in r["by_reason_code"]} == {"PAY": 1, "RISK": 0, "SEC": 1}
    out = r["outcomes"]
    # matured (12 months after the decision by 2025-03-31): cases 1-4. C1 defaulted within its
    # year, C2 defaulted before its decision (not an outcome of it), C3 after its year ended
    # (2025-03-01), C4 (down) after its year
    assert out["matured"] == 4
    assert out["overridden_up"] == {"decisions": 2, "defaults": 1, "default_rate": 0.5}
    assert out["overridden_down"] == {"decisions": 1, "defaults": 0, "default_rate": 0.0}
    assert out["followed"] == {"decisions": 1, "defaults": 0, "default_rate": 0.0}
    lines = report_lines(r)
    assert lines[0] == "desk decisions: 5, overrides 3 (60.0%): up 2, down 1"
    assert any(line.strip().startswith("overridden up") and "(50.0%)" in line for line in lines)


def test_no_decision_and_no_outcomes_yet_are_said_so():
    assert report_lines(override_report([]))[0] == "no case has been decided on the desk yet"
    r = override_report([_case(1, "ann", "A", "PAY", "up", "2025-01-01")], pd.DataFrame(
        {"customer_id": [], "default_date": []}), data_last_date=date(2025, 3, 31))
    assert r["outcomes"]["matured"] == 0 and "no decision is 12 months old" in r["outcomes"]["note"]
