"""The one-page summary a credit manager reads first: verdicts, then the evidence.

Rendered from the JSON summary (so the page and the machines see the same figures), plain
HTML with inline styles: it opens from a mail attachment, without the internet.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable

_COLOURS = {"stable": "#1b7f3b", "green": "#1b7f3b", "watch": "#b7791f", "yellow": "#b7791f",
            "shift": "#c53030", "red": "#c53030", "n/a": "#718096"}
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;max-width:70rem;color:#1a202c}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;font-size:.9rem} td,th{padding:.25rem .6rem;border-bottom:1px solid #edf2f7;text-align:right}
td:first-child,th:first-child{text-align:left} .badge{color:#fff;border-radius:.3rem;padding:.05rem .45rem;font-size:.8rem}
.verdict{font-size:1.1rem;padding:.6rem 1rem;border-radius:.4rem;color:#fff;display:inline-block}
.note{color:#4a5568;font-size:.85rem}
"""


def _badge(label: str) -> str:
    return f'<span class="badge" style="background:{_COLOURS.get(label, "#4a5568")}">{escape(label)}</span>'


def _num(value: Any, fmt: str) -> str:
    return "" if value is None else escape(format(value, fmt))


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(payload: dict[str, Any]) -> tuple[str, str]:
    if payload.get("severe_reasons"):
        return "#c53030", "Severe alert: order entry should be decided by the scorecard"
    if payload.get("alert"):
        return "#b7791f", "Alert: an alert threshold was crossed (reasons below)"
    return "#1b7f3b", "Stable: no alert threshold crossed"


def _drift_section(p: dict[str, Any]) -> list[str]:
    out = ["<h2>Score and features</h2>",
           f"<p>Score <code>{escape(p['score_column'])}</code>: PSI {_num(p['score_psi'], '.3f')} "
           f"{_badge(p['score_band'])}; {len(p['drifted_columns'])} of {len(p['columns'])} features drifted "
           f"({_num(p['drift_share'], '.0%')}). PSI bands: below 0.10 stable, 0.10-0.25 watch, above 0.25 shift; "
           "a feature drifted when its PSI shifted, its values moved by more than the Wasserstein threshold (in "
           "reference standard deviations) or its missing share changed by more than 10 points.</p>"]
    if p.get("missing_columns"):
        out.append(f"<p><b>Missing from the current table:</b> {escape(', '.join(p['missing_columns']))}</p>")
    cols = sorted(p["columns"], key=lambda c: (not c["drifted"], -(c["psi"] or 0.0) - (c.get("wasserstein") or 0.0)))
    out.append(_table(["feature", "PSI", "band", "Wasserstein (sd)", "missing, reference", "missing, current",
                       "drifted"], (
        [escape(c["column"]), _num(c["psi"], ".3f"), _badge(c["band"]), _num(c.get("wasserstein"), ".3f"),
         _num(c["missing_share_reference"], ".1%"), _num(c["missing_share_current"], ".1%"),
         "yes" if c["drifted"] else ""] for c in cols)))
    dist = p.get("grade_distribution") or {}
    scales = p.get("grade_scale") or {}
    if dist:
        out.append("<h2>Grades</h2>")
        if scales.get("note"):
            out.append(f"<p><b>Different scales:</b> {escape(scales['note'])}. Each side's shares are on its own "
                       "scale; a grade of one is not the same PD range as the grade of that name on the other.</p>")

        def on(side: str) -> str:
            versions = [v for v in scales.get(side) or [] if v is not None]
            return f" (scale {', '.join(versions)})" if versions else ""  # headers are escaped by _table
        out.append(_table(["grade", f"share, reference{on('reference')}", f"share, current{on('current')}"], (
            [escape(g), _num(v["reference"], ".1%"), _num(v["current"], ".1%")] for g, v in dist.items())))
    mig = p.get("grade_migration") or {}
    if mig.get("compared") is False:
        out.append(f"<p>No migration: {escape(mig['reason'])}.</p>")
    if mig.get("customers"):
        grades = mig["grades"]
        out.append(f"<p>Migration of the {mig['customers']:,} customers in both tables (rows: grade then, "
                   f"columns: grade now): {mig['upgrades']:,} upgrades, {mig['downgrades']:,} downgrades, "
                   f"{mig['downgrades_2_or_more']:,} by two grades or more.</p>")
        out.append(_table(["from \\ to", *grades], (
            [escape(g), *(str(mig["counts"][g][h]) if mig["counts"][g][h] else "" for h in grades)] for g in grades)))
    return out


def _backtest_section(b: dict[str, Any]) -> list[str]:
    out = ["<h2>Backtest on matured outcomes</h2>",
           f"<p>Overall {_badge(b['light'])} (yellow: rejected at {b['yellow']:.1%}, red: at {b['red']:.1%}; "
           "one-sided, only underestimated risk counts)."
           + "".join(f" Left out: {n:,} row(s) {why}." for key, why in (("defaulted_before", "defaulted before "
                     "they were scored"), ("no_pd", "without a PD")) if (n := (b.get("left_out") or {}).get(key)))
           + "</p>",
           _table(["test", "now", "expected", "p-value", "light"], [
               ["AUC (Hanley-McNeil)", _num(b["auc"], ".3f"), _num(b["reference_auc"], ".3f"),
                _num(b["auc_p"], ".3g"), _badge(b["auc_light"])],
               ["defaults, portfolio (binomial)", f"{b['defaults']:,} of {b['rows']:,} ({b['observed_dr']:.2%})",
                _num(b["mean_pd"], ".2%"), _num(b["binomial_p"], ".3g"), _badge(b["portfolio_light"])],
           ]),
           "<p></p>",
           _table(["grade", "customers", "defaults", "observed", "mean PD", "Jeffreys p", "light"], (
               [escape(g["grade"]), f"{g['rows']:,}", f"{g['defaults']:,}", _num(g["observed_dr"], ".2%"),
                _num(g["mean_pd"], ".2%"), _num(g["jeffreys_p"], ".3g"), _badge(g["light"])] for g in b["grades"]))]
    return out


def summary_page(payload: dict[str, Any]) -> str:
    """The page for ``payload``, the monitoring JSON summary."""
    colour, verdict = _verdict(payload)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>riskcast monitoring summary</title>"
             f"<style>{_STYLE}</style></head><body>", "<h1>riskcast monitoring summary</h1>",
             f'<p class="verdict" style="background:{colour}">{escape(verdict)}</p>']
    if payload.get("reference"):  # what the book is compared with: the champion's own test window
        parts.append(f"<p><b>Reference:</b> {escape(str(payload['reference']))}</p>")
    reasons = [*payload.get("severe_reasons", []), *payload.get("alert_reasons", [])]
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in dict.fromkeys(reasons)) + "</ul>")
    if payload.get("fallback_switch"):
        parts.append(f"<p><b>Fallback switch:</b> {escape(payload['fallback_switch'])}</p>")
    if "columns" in payload:
        parts.append(f"<p class='note'>Reference {payload['n_reference']:,} rows, current {payload['n_current']:,} rows. "
                     "Our PSI uses every row"
                     + (f"; Evidently's report (drift_report.html) a sample of {payload['evidently_rows']['reference']:,}"
                        f" and {payload['evidently_rows']['current']:,} rows" if payload.get("sampled") else
                        "; so does Evidently's report (drift_report.html)") + ".</p>")
        parts += _drift_section(payload)
    if payload.get("backtest"):
        parts += _backtest_section(payload["backtest"])
    parts.append("</body></html>")
    return "\n".join(parts)
