"""Overrides, measured: how often the desk departs from the system's recommendation, by whom,
in which band and for which reason, and, once outcomes have matured, whether the customers it
gave more credit than recommended defaulted more often than those it followed the system on.

A decision is an override when it gives more credit than the system recommended (``up``:
a limit above the recommended one, an order approved beyond it) or less (``down``: a limit
below it, an order declined that the recommended limit covered); see ``authority.override``.
An outcome has matured when the horizon has passed since the decision by the data's last date.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Sequence

import pandas as pd

from .store import Case, add_months


def decided_frame(cases: Sequence[Case]) -> pd.DataFrame:
    """One row per decided case: who decided, band, reason code, override and the decision date."""
    rows = []
    for c in cases:
        d = c.decision
        if d is None:
            continue
        rows.append({"case_id": c.case_id, "customer_id": c.customer_id, "kind": c.kind,
                     "decided_by": d["user_id"], "band": c.facts.get("band") or "unscored",
                     "reason_code": d.get("reason_code"), "action": d.get("action"),
                     "override": d.get("override", "none"), "decided_on": d["at"][:10],
                     "credit_limit": d.get("credit_limit"), "recommended_limit": d.get("recommended_limit")})
    return pd.DataFrame(rows, columns=["case_id", "customer_id", "kind", "decided_by", "band", "reason_code", "action",
                                       "override", "decided_on", "credit_limit", "recommended_limit"])


def _rates(frame: pd.DataFrame, by: str) -> list[dict[str, Any]]:
    out = []
    for key, g in frame.groupby(by, sort=True):
        n = len(g)
        up, down = int((g["override"] == "up").sum()), int((g["override"] == "down").sum())
        out.append({by: key, "decisions": n, "overrides": up + down, "up": up, "down": down,
                    "override_rate": round((up + down) / n, 4)})
    return out


def override_report(cases: Sequence[Case], defaults: pd.DataFrame | None = None, *, horizon_months: int = 12,
                    data_last_date: date | None = None) -> dict[str, Any]:
    """Override rates overall and by analyst, band and reason code; with ``defaults``
    (customer_id, default_date), the default rate within ``horizon_months`` of the decision for
    overridden-up against followed decisions, on decisions whose horizon ended by ``data_last_date``."""
    frame = decided_frame(cases)
    n = len(frame)
    overrides = int((frame["override"] != "none").sum()) if n else 0
    report: dict[str, Any] = {
        "decisions": n, "overrides": overrides, "override_rate": round(overrides / n, 4) if n else None,
        "up": int((frame["override"] == "up").sum()) if n else 0,
        "down": int((frame["override"] == "down").sum()) if n else 0,
        "by_analyst": _rates(frame, "decided_by") if n else [], "by_band": _rates(frame, "band") if n else [],
        "by_reason_code": _rates(frame, "reason_code") if n else [], "outcomes": None,
    }
    if defaults is None or not n or data_last_date is None:
        return report
    first_default = (pd.to_datetime(defaults["default_date"]).groupby(defaults["customer_id"].astype(str)).min())
    ends = [add_months(date.fromisoformat(d), horizon_months) for d in frame["decided_on"]]
    matured = frame[[e <= data_last_date for e in ends]].copy()
    if matured.empty:
        report["outcomes"] = {"matured": 0, "note": f"no decision is {horizon_months} months old by "
                                                    f"{data_last_date.isoformat()}"}
        return report
    start = pd.to_datetime(matured["decided_on"])
    end = pd.to_datetime([add_months(date.fromisoformat(d), horizon_months) for d in matured["decided_on"]])
    at = pd.to_datetime(matured["customer_id"].astype(str).map(first_default))
    matured["defaulted"] = (at > start) & (at <= end)
    groups = {"overridden_up": matured["override"] == "up", "overridden_down": matured["override"] == "down",
              "followed": matured["override"] == "none"}
    report["outcomes"] = {"matured": len(matured), "horizon_months": horizon_months,
                          "data_last_date": data_last_date.isoformat(),
                          **{k: {"decisions": int(m.sum()), "defaults": int(matured.loc[m, "defaulted"].sum()),
                                 "default_rate": round(float(matured.loc[m, "defaulted"].mean()), 4) if m.any()
                                 else None} for k, m in groups.items()}}
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as the CLI prints it."""
    if not report["decisions"]:
        return ["no case has been decided on the desk yet"]
    lines = [f"desk decisions: {report['decisions']:,}, overrides {report['overrides']:,} "
             f"({report['override_rate']:.1%}): up {report['up']:,}, down {report['down']:,}"]
    for by, title in (("decided_by", "by analyst"), ("band", "by band"), ("reason_code", "by reason code")):
        key = {"decided_by": "by_analyst", "band": "by_band", "reason_code": "by_reason_code"}[by]
        lines.append(f"{title}:")
        for r in report[key]:
            lines.append(f"  {str(r[by]):<20} {r['decisions']:>6,} decisions  {r['overrides']:>5,} overrides "
                         f"({r['override_rate']:.1%}; up {r['up']}, down {r['down']})")
    out = report["outcomes"]
    if out is None:
        lines.append("outcomes: no defaults table given (--data) to measure them")
    elif not out["matured"]:
        lines.append(f"outcomes: {out['note']}")
    else:
        lines.append(f"outcomes of the {out['matured']:,} decisions whose {out['horizon_months']} months ended by "
                     f"{out['data_last_date']}:")
        for k in ("overridden_up", "overridden_down", "followed"):
            g = out[k]
            rate = "-" if g["default_rate"] is None else f"{g['default_rate']:.1%}"
            lines.append(f"  {k.replace('_', ' '):<16} {g['decisions']:>6,} decisions  {g['defaults']:>5,} defaulted "
                         f"({rate})")
    return lines
