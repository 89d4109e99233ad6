"""Reason codes: the factors that raise a customer's risk most, as sentences from the registry.

For the LightGBM model a factor's impact is its contribution to the log-odds of default; for
the scorecard it is the points the feature loses against its best bin. Only factors that
raise the risk are shown, most important first.
"""

from __future__ import annotations

import numpy as np

from riskcast.features.registry import Feature, FeatureRegistry


def reason_order(impact: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the indices of the ``k`` largest impacts, largest first, and which of them raise
    the risk (impact > 0): ``(n, k)`` each."""
    k = min(k, impact.shape[1])
    if impact.shape[0] == 0 or k == 0:
        return np.zeros((impact.shape[0], k), dtype=np.intp), np.zeros((impact.shape[0], k), dtype=bool)
    part = np.argpartition(-impact, k - 1, axis=1)[:, :k] if k < impact.shape[1] else \
        np.tile(np.arange(impact.shape[1]), (impact.shape[0], 1))
    # largest first; ties by feature order, as a stable sort of the whole row would give
    vals = np.take_along_axis(impact, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    shown = np.take_along_axis(impact, idx, axis=1) > 1e-9
    shown = np.logical_and.accumulate(shown, axis=1)  # a reason after one that does not count is dropped
    return idx, shown


def top_reasons(impact: np.ndarray, values: np.ndarray, registry: FeatureRegistry, k: int) -> list[list[dict]]:
    """Per row, up to ``k`` reasons ``{feature, text, impact, value}`` with positive impact."""
    # one stable sort per row: for the few rows of order entry cheaper than ``reason_order``'s
    # partition, and the same order (largest first, ties by feature order)
    idx = np.argsort(-impact, axis=1, kind="stable")[:, :k]
    feats = registry.features
    out: list[list[dict]] = []
    for r in range(impact.shape[0]):
        row = []
        for j in idx[r]:
            if impact[r, j] <= 1e-9:
                break
            v = values[r, j]
            value = None if np.isnan(v) else float(v)
            row.append({"feature": feats[j].name, "text": feats[j].reason_text(value),
                        "impact": round(float(impact[r, j]), 4), "value": value})
        out.append(row)
    return out


def reason_columns(impact: np.ndarray, values: np.ndarray, registry: FeatureRegistry, k: int
                   ) -> dict[str, np.ndarray]:
    """The same reasons as columns for a whole book: ``reason_<p>`` (the sentence) and
    ``reason_<p>_feature`` for p = 1..k, None where fewer reasons count. Sentences are
    formatted feature by feature, not row by row."""
    n = impact.shape[0]
    idx, shown = reason_order(impact, k)
    feats = registry.features
    out: dict[str, np.ndarray] = {}
    for p in range(k):
        text = np.full(n, None, dtype=object)
        name = np.full(n, None, dtype=object)
        if p < idx.shape[1]:
            col, ok = idx[:, p], shown[:, p]
            for j in np.unique(col[ok]):
                rows = np.flatnonzero(ok & (col == j))
                text[rows] = _sentences(feats[j], values[rows, j])
                name[rows] = feats[j].name
        out[f"reason_{p + 1}"], out[f"reason_{p + 1}_feature"] = text, name
    return out


def _sentences(feature: Feature, values: np.ndarray) -> list[str]:
    """``feature.reason_text`` of each value: each distinct value formatted once, the lookups
    hoisted out of the loop (a book formats millions of sentences)."""
    missing = np.isnan(values)
    if missing.all():
        return [feature.reason_text(None)] * len(values)
    sentence, fmt = feature.reason.format, feature.fmt
    distinct, at = np.unique(values, return_inverse=True)  # a book repeats its day counts and shares
    if len(distinct) * 2 < len(values):
        texts = np.array([sentence(value=format(x, fmt)) for x in distinct.tolist()], dtype=object)
        out = texts[at.ravel()].tolist()
    else:
        out = [sentence(value=format(x, fmt)) for x in values.tolist()]
    if missing.any():
        gone = feature.reason_text(None)
        for i in np.flatnonzero(missing):
            out[i] = gone
    return out
