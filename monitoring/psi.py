"""Population stability index: how far a distribution moved from its reference.

PSI = sum over bins of (c - r) * ln(c / r), with bins at the reference's quantiles and
missing values in a bin of their own, so a feature that starts going missing also shows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

_EPS = 1e-4


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.size == 0 or cur.size == 0:
        raise ValueError("psi needs non-empty samples")
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref_ok.size:
        edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))
    else:
        edges = np.array([])
    r = np.bincount(np.searchsorted(edges, ref_ok, side="right"), minlength=edges.size + 1).astype(float)
    c = np.bincount(np.searchsorted(edges, cur_ok, side="right"), minlength=edges.size + 1).astype(float)
    r = np.append(r, np.isnan(ref).sum()) / ref.size
    c = np.append(c, np.isnan(cur).sum()) / cur.size
    r, c = np.maximum(r, _EPS), np.maximum(c, _EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_band(value: float, watch: float = 0.10, alert: float = 0.25) -> Literal["stable", "watch", "shift"]:
    if value > alert:
        return "shift"
    if value > watch:
        return "watch"
    return "stable"
