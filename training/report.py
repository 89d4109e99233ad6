"""What a validator reads about a run: plots and the model card. Pure: arrays in, matplotlib
figures and markdown out; logging them is the caller's business.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, no global state, no
display needed).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

_COLOURS = {"model": "#1f5f8b", "scorecard": "#c4661f", "true PD": "#5a8f29"}


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def roc_figure(y: np.ndarray, pds: Mapping[str, np.ndarray]):
    """ROC curves of every PD source on the same rows, with their AUC."""
    from sklearn.metrics import roc_auc_score

    fig, ax = _figure()
    for name, p in pds.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})", color=_COLOURS.get(name))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="share of survivors flagged", ylabel="share of defaults flagged", title="ROC, test window")
    ax.legend(loc="lower right")
    return fig


def ks_figure(y: np.ndarray, p: np.ndarray):
    """Cumulative share of defaults and of survivors by PD, riskiest first; KS is the widest gap."""
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    yy = np.asarray(y)[order]
    bad = np.cumsum(yy) / max(yy.sum(), 1)
    good = np.cumsum(1 - yy) / max((1 - yy).sum(), 1)
    share = np.arange(1, yy.size + 1) / yy.size
    k = int(np.argmax(bad - good))
    fig, ax = _figure()
    ax.plot(share, bad, label="defaults", color="#b22222")
    ax.plot(share, good, label="survivors", color="#1f5f8b")
    ax.vlines(share[k], good[k], bad[k], color="black", linestyle="--", label=f"KS {bad[k] - good[k]:.3f}")
    ax.set(xlabel="share of the book, riskiest first", ylabel="cumulative share", title="KS, test window")
    ax.legend(loc="lower right")
    return fig


def calibration_figure(y: np.ndarray, pds: Mapping[str, np.ndarray], bins: int = 10):
    """Observed default rate against mean PD over equal-count PD bins, on log axes."""
    fig, ax = _figure()
    y = np.asarray(y, dtype=float)
    lo, hi = 1.0, 0.0
    for name, p in pds.items():
        p = np.asarray(p, dtype=float)
        order = np.argsort(p, kind="stable")
        parts = [idx for idx in np.array_split(order, bins) if idx.size]
        mean_pd = np.array([p[idx].mean() for idx in parts])
        observed = np.array([y[idx].mean() for idx in parts])
        ax.plot(mean_pd, np.maximum(observed, 1e-4), marker="o", label=name, color=_COLOURS.get(name))
        lo, hi = min(lo, mean_pd.min()), max(hi, mean_pd.max(), observed.max())
    lo = max(lo / 2, 1e-4)
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="mean PD in the bin", ylabel="observed default rate",
           title=f"Calibration, test window ({bins} equal-count bins)")
    ax.legend(loc="upper left")
    return fig


def grade_figure(table: pd.DataFrame):
    """Rows per grade (bars) and observed against predicted default rate (lines)."""
    fig, ax = _figure(7.0, 4.5)
    x = np.arange(len(table))
    ax.bar(x, table["share"], color="#9db9d3", label="share of the book")
    ax.set_xticks(x, [f"{g}\n{b}" for g, b in zip(table["grade"], table["band"])])
    ax.set(xlabel="grade / band", ylabel="share of the book", title="Score distribution and default rate by grade")
    rate = ax.twinx()
    rate.plot(x, table["mean_pd"], marker="o", color="#1f5f8b", label="mean PD")
    rate.plot(x, table["observed_dr"], marker="s", linestyle="--", color="#b22222", label="observed")
    rejected = table["jeffreys_rejected"].to_numpy(bool)
    if rejected.any():
        rate.scatter(x[rejected], table.loc[rejected, "observed_dr"], s=120, facecolors="none",
                     edgecolors="black", label="Jeffreys rejects (99%)")
    rate.set(yscale="log", ylabel="default rate")
    rate.legend(loc="upper left")
    return fig


def importance_figure(names: Sequence[str], gain: np.ndarray, top: int = 20):
    """Total gain per feature, largest first."""
    s = pd.Series(np.asarray(gain, dtype=float), index=list(names)).sort_values(ascending=True).tail(top)
    fig, ax = _figure(7.0, max(3.0, 0.28 * len(s) + 1))
    ax.barh(s.index, s.to_numpy(), color="#1f5f8b")
    ax.set(xlabel="total gain", title="Feature importance (LightGBM gain)")
    return fig


def shap_summary_figure(names: Sequence[str], contrib: np.ndarray, X: np.ndarray, top: int = 15,
                        seed: int = 0):
    """TreeSHAP contributions per feature, one dot per row, coloured by the feature's rank in
    its column (blue low, red high): which features move the PD, and which way."""
    contrib = np.asarray(contrib, dtype=float)
    order = np.argsort(np.abs(contrib).mean(axis=0))[::-1][:top][::-1]
    fig, ax = _figure(7.0, max(3.0, 0.32 * len(order) + 1))
    rng = np.random.default_rng(seed)
    for row, j in enumerate(order):
        v = X[:, j]
        rank = pd.Series(v).rank(pct=True).to_numpy()
        colour = np.where(np.isnan(v), 0.5, rank)
        ax.scatter(contrib[:, j], row + rng.uniform(-0.3, 0.3, contrib.shape[0]), c=colour, cmap="coolwarm",
                   s=4, alpha=0.6, linewidths=0)
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(np.arange(len(order)), [names[j] for j in order])
    ax.set(xlabel="contribution to the log-odds of default", title="SHAP summary (TreeSHAP), test window")
    return fig


# -- the model card -----------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def model_card(*, name: str, version: str | None, run_id: str | None, windows: Mapping[str, str],
               fingerprint: str, n_rows: Mapping[str, int], features: Sequence[str], params: Mapping[str, Any],
               metrics: Mapping[str, float], by_grade: pd.DataFrame, gate: Mapping[str, Any] | None,
               limitations: Sequence[str]) -> str:
    """Markdown model card: data, features, parameters, metrics against the ceiling and the
    champion, calibration per grade, and what the model should not be used for."""
    lines = [f"# Model card: {name}" + (f" v{version}" if version else ""), ""]
    if run_id:
        lines += [f"MLflow run `{run_id}`.", ""]
    lines += ["## Data", ""]
    for k, v in windows.items():
        lines.append(f"- {k.replace('_', ' ')}: {v}")
    lines += ["- rows: " + ", ".join(f"{k} {v:,}" for k, v in n_rows.items()),
              f"- fingerprint of the training table: `{fingerprint}`", ""]
    lines += ["## Metrics (test window)", "", "| | AUC | Gini | KS | Brier | log loss | ECE | grades rejected |",
              "|---|---|---|---|---|---|---|---|"]
    for label, p in (("model", "test"), ("scorecard (fallback)", "scorecard_test"), ("true PD (ceiling)", "oracle_test")):
        if f"{p}_auc" not in metrics:
            continue
        m = {k: metrics.get(f"{p}_{k}", float("nan")) for k in ("auc", "gini", "ks", "brier", "logloss", "ece")}
        rej = metrics.get(f"{p}_jeffreys_rejected_share", float("nan"))
        lines.append(f"| {label} | {m['auc']:.4f} | {m['gini']:.4f} | {m['ks']:.3f} | {m['brier']:.5f} | "
                     f"{m['logloss']:.4f} | {m['ece']:.4f} | {rej:.0%} |")
    if "oracle_test_auc" in metrics:
        lines += ["", f"Against the ceiling: AUC {metrics['test_auc'] / metrics['oracle_test_auc']:.3f} of the true PD's, "
                      f"Brier {metrics['test_brier'] / metrics['oracle_test_brier']:.3f} times the true PD's."]
        if "hindsight_test_auc" in metrics:
            lines += [f"With hindsight of the distress not yet visible in the ledger the true PD would reach AUC "
                      f"{metrics['hindsight_test_auc']:.4f}, Brier {metrics['hindsight_test_brier']:.5f}: "
                      "no model can know that."]
    if "scorecard_test_auc" in metrics:
        lines += [f"The scorecard reaches {metrics['scorecard_test_auc'] / metrics['test_auc']:.3f} of the model's AUC."]
    if "test_hl_pvalue" in metrics:
        lines += [f"Hosmer-Lemeshow p-value {metrics['test_hl_pvalue']:.3g}."]
    lines += ["", "## Against the champion", ""]
    if gate:
        lines += [f"- verdict: {'promoted to champion' if gate.get('passed') else 'challenger only'}",
                  f"- {gate.get('reason', '')}"]
        if gate.get("basis"):
            lines.append(f"- basis: {gate['basis']}")
    else:
        lines.append("- no comparison made")
    lines += ["", "## Calibration by grade (test window)", "",
              "| grade | band | rows | share | defaults | observed | mean PD | Jeffreys p | binomial p |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in by_grade.itertuples():
        lines.append(f"| {r.grade} | {r.band} | {r.rows:,} | {r.share:.1%} | {r.defaults} | "
                     f"{r.observed_dr:.2%} | {r.mean_pd:.2%} | {r.jeffreys_p:.3g} | {r.binomial_p:.3g} |"
                     if r.rows else f"| {r.grade} | {r.band} | 0 | 0.0% | 0 | | | | |")
    lines += ["", f"## Features ({len(features)})", "", ", ".join(f"`{f}`" for f in features), "",
              "## Parameters", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in params.items()]
    lines += ["", "## Limitations", ""] + [f"- {x}" for x in limitations]
    return "\n".join(lines) + "\n"
