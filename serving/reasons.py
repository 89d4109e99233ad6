"""Reason codes: the factors that raise a customer's risk most, as sentences from the registry.

For the LightGBM model a factor's impact is its contribution to the log-odds of default; for
the scorecard it is the points the feature loses against its best bin. Only factors that
raise the risk are shown, most important first.
"""

from __future__ import annotations

import numpy as np

from riskcast.features.registry import FeatureRegistry


def top_reasons(impact: np.ndarray, values: np.ndarray, registry: FeatureRegistry, k: int) -> list[list[dict]]:
    """Per row, up to ``k`` reasons ``{feature, text, impact, value}`` with positive impact."""
    out: list[list[dict]] = []
    order = np.argsort(-impact, axis=1)[:, :k]
    feats = registry.features
    for r in range(impact.shape[0]):
        row = []
        for j in order[r]:
            if impact[r, j] <= 1e-9:
                break
            v = values[r, j]
            value = None if np.isnan(v) else float(v)
            row.append({"feature": feats[j].name, "text": feats[j].reason_text(value),
                        "impact": round(float(impact[r, j]), 4), "value": value})
        out.append(row)
    return out
