"""Population stability index: how far a distribution has moved from its reference.

    PSI = sum over bins of (c - r) * ln(c / r)

with ``r`` and ``c`` the reference and current shares of each bin. The bins are cut at the
reference's quantiles (so each holds about the same share of the reference, whatever the
feature's scale) and repeated edges are merged. A value holding at least one bin's share of the
reference (the zeros of "days overdue", a constant column) gets a bin of its own: merged with
the values above it, a move away from it would not show. Missing values get a bin of their own
too, so a feature that starts going missing shows as a shift.
Shares are floored at ``EPSILON`` so an empty bin gives a large, finite term instead of inf.
Every term is >= 0, so the PSI is too.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

#: floor of a bin's share: an empty bin then adds a large but finite term
EPSILON = 1e-4

Band = Literal["stable", "watch", "shift"]


def _as_float(values: npt.ArrayLike) -> np.ndarray:
    """A float vector with every missing or non-finite value as NaN (pandas NA included)."""
    if isinstance(values, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        arr = pd.Series(values).to_numpy(dtype=float, na_value=np.nan)
    else:
        arr = np.asarray(values, dtype=float).ravel()
    return np.where(np.isfinite(arr), arr, np.nan)


def _split_point_masses(edges: np.ndarray, sorted_ref: np.ndarray, bins: int) -> np.ndarray:
    """Add an edge just above every cut value that holds >= 1/bins of the reference on its own.

    Bins are ``[edge, next edge)``, so the extra edge leaves that value alone in its bin.
    """
    if edges.size == 0:
        return edges
    ties = np.searchsorted(sorted_ref, edges, side="right") - np.searchsorted(sorted_ref, edges, side="left")
    heavy = edges[ties >= sorted_ref.size / bins]
    return np.unique(np.r_[edges, np.nextafter(heavy, np.inf)])


def bin_shares(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Shares of each sample per bin: quantile bins of the reference, then one bin for missing."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    ref, cur = _as_float(reference), _as_float(current)
    if ref.size == 0 or cur.size == 0:
        raise ValueError("psi needs two non-empty samples")
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    # interior cut points only: the outer bins are open, so current values beyond the
    # reference's range still land in the first or last bin
    cuts = np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]) if ref_ok.size else np.empty(0)
    edges = _split_point_masses(np.unique(cuts), np.sort(ref_ok), bins)

    def shares(ok: np.ndarray, n: int) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=edges.size + 1)
        return np.append(counts, n - ok.size) / n

    return shares(ref_ok, ref.size), shares(cur_ok, cur.size)


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference``: sum((c - r) * ln(c / r)) over the bins.

    NaN, None, pandas NA and +-inf count as missing. Raises ValueError on an empty sample.
    """
    r, c = bin_shares(reference, current, bins)
    r, c = np.maximum(r, EPSILON), np.maximum(c, EPSILON)
    return float(max(0.0, np.sum((c - r) * np.log(c / r))))


def psi_band(value: float, watch: float, alert: float) -> Band:
    """``stable`` up to ``watch``, ``watch`` up to ``alert``, ``shift`` above it."""
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"a PSI is a finite number >= 0, got {value}")
    if watch > alert:
        raise ValueError(f"the watch threshold {watch} is above the alert threshold {alert}")
    if value > alert:
        return "shift"
    if value > watch:
        return "watch"
    return "stable"
