"""Reason codes: the factors that raise a customer's risk most, as sentences from the registry.

For the LightGBM model a factor's impact is its contribution to the log-odds of default; for
the scorecard it is the points the feature loses against its best bin. Only factors that
raise the risk are shown, most important first.

A known feature is a factor of its own, with the customer's value. Missing features are not:
the impacts of a source's missing features are summed into one factor for the source (no
statements on file is one reason with what to do about it, not eighteen ratios "not
available"), named by the source, without a value.

A categorical feature's value is a code (``training.categories``); its reason shows the
category, through ``labels`` (``CategoryCodes.labels``: the categories of a feature's codes).
"""

from __future__ import annotations

import numpy as np

from typing import Callable

from riskcast.features.registry import SHOWN, Feature, FeatureRegistry

#: the categories of codes of a categorical feature, by the feature's name
Labels = Callable[[str, np.ndarray], np.ndarray]


def candidates(impact: np.ndarray, values: np.ndarray, registry: FeatureRegistry
               ) -> tuple[np.ndarray, np.ndarray]:
    """The impacts reasons are chosen from, ``(n, features + sources)``: each known feature's
    own (0 when missing) and each source's missing features' summed (0 when none is missing);
    and which values are missing."""
    missing = registry.layout.unknown(values)
    out = np.concatenate([np.where(missing, 0.0, impact), np.where(missing, impact, 0.0) @ registry.layout.members],
                         axis=1)
    return out, missing


def _absent(missing: np.ndarray, registry: FeatureRegistry) -> np.ndarray:
    """Per row and source whether none of the source's features is known (the coverage rule's
    own notion of holding a source)."""
    lay = registry.layout
    return ~lay.held_[(missing @ lay.feature_place).astype(np.intp)]


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


def _need_labels(registry: FeatureRegistry, labels: Labels | None) -> None:
    if registry.categorical and labels is None:
        raise ValueError(f"categorical features {list(registry.categorical)} need the labels of their codes")


def top_reasons(impact: np.ndarray, values: np.ndarray, registry: FeatureRegistry, k: int,
                labels: Labels | None = None) -> list[list[dict]]:
    """Per row, up to ``k`` reasons ``{feature, text, impact, value}`` with positive impact
    (``feature`` is the source's name and ``value`` None for a source's missing features; a
    categorical feature's ``value`` is its category)."""
    _need_labels(registry, labels)
    impact, missing = candidates(impact, values, registry)
    absent = None  # taken only when a source is among the reasons
    # one stable sort per row: for the few rows of order entry cheaper than ``reason_order``'s
    # partition, and the same order (largest first, ties by feature order, then sources)
    idx = np.argsort(-impact, axis=1, kind="stable")[:, :k]
    feats, sources, took = registry.features, registry.sources, registry.filled_from
    nf = len(feats)
    out: list[list[dict]] = []
    for r in range(impact.shape[0]):
        row = []
        for j in idx[r].tolist():
            if impact[r, j] <= 1e-9:
                break
            if j < nf and feats[j].categorical:
                label = str(labels(feats[j].name, values[r:r + 1, j])[0])
                row.append({"feature": feats[j].name, "text": feats[j].reason_text(label),
                            "impact": round(float(impact[r, j]), 4), "value": label})
            elif j < nf:
                value = float(values[r, j])
                filled = j in took and value == values[r, took[j]]
                row.append({"feature": feats[j].name, "text": feats[j].reason_text(value, filled),
                            "impact": round(float(impact[r, j]), 4), "value": value})
            else:
                if absent is None:
                    absent = _absent(missing, registry)
                src = sources[j - nf]
                row.append({"feature": src.name, "text": src.absent if absent[r, j - nf] else src.partial,
                            "impact": round(float(impact[r, j]), 4), "value": None})
        out.append(row)
    return out


def reason_columns(impact: np.ndarray, values: np.ndarray, registry: FeatureRegistry, k: int,
                   labels: Labels | None = None) -> dict[str, np.ndarray]:
    """The same reasons as columns for a whole book: ``reason_<p>`` (the sentence) and
    ``reason_<p>_feature`` for p = 1..k, None where fewer reasons count. Sentences are
    formatted feature by feature, not row by row."""
    _need_labels(registry, labels)
    n = impact.shape[0]
    impact, missing = candidates(impact, values, registry)
    absent = _absent(missing, registry)
    idx, shown = reason_order(impact, k)
    feats, sources, took = registry.features, registry.sources, registry.filled_from
    nf = len(feats)
    out: dict[str, np.ndarray] = {}
    for p in range(k):
        text = np.full(n, None, dtype=object)
        name = np.full(n, None, dtype=object)
        if p < idx.shape[1]:
            col, ok = idx[:, p], shown[:, p]
            for j in np.unique(col[ok]).tolist():
                rows = np.flatnonzero(ok & (col == j))
                if j < nf and feats[j].categorical:
                    text[rows] = [feats[j].reason_text(str(c)) for c in labels(feats[j].name, values[rows, j])]
                    name[rows] = feats[j].name
                elif j < nf:
                    text[rows] = _sentences(feats[j], values[rows, j])
                    if j in took:  # the fill's value: its own sentence
                        same = rows[values[rows, j] == values[rows, took[j]]]
                        text[same] = _sentences(feats[j], values[same, j], filled=True)
                    name[rows] = feats[j].name
                else:
                    src = sources[j - nf]
                    text[rows] = np.where(absent[rows, j - nf], src.absent, src.partial)
                    name[rows] = src.name
        out[f"reason_{p + 1}"], out[f"reason_{p + 1}_feature"] = text, name
    return out


def _sentences(feature: Feature, values: np.ndarray, filled: bool = False) -> list[str]:
    """``feature.reason_text`` of each (known) value: each distinct value formatted once, the
    lookups hoisted out of the loop (a book formats millions of sentences)."""
    sentence = (feature.reason_filled if filled and feature.reason_filled else feature.reason).format
    fmt, show = feature.fmt, SHOWN.get(feature.shown)
    distinct, at = np.unique(values, return_inverse=True)  # a book repeats its day counts and shares
    few = len(distinct) * 2 < len(values)
    xs = (distinct if few else values).tolist()
    if show is not None:
        xs = [show(x) for x in xs]
    texts = [sentence(value=format(x, fmt)) for x in xs]
    return np.array(texts, dtype=object)[at.ravel()].tolist() if few else texts
