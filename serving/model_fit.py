"""Whether the data holds what the model learned from.

A model trained where statements and industry signals were known, run on a ledger alone,
still gives a PD for every customer, but one made of the features it could read and none of
those it relied on most: every reason reads "not available" and the grades mean little. So a
rescore (and /readyz, from the store the rescore wrote) compares the data's feature coverage
with the model's training coverage:

- a feature is **lost** when it was known for at least ``missing_below`` of the training rows
  and is known for less than ``missing_below`` of the customers now, and for less than half
  its training share (a feature the model never saw is not lost: it gave no splits);
- the model **does not fit the data** when the lost features carry at least
  ``max_lost_importance`` of the model's total gain (LightGBM's split gain, the share of the
  fit each feature made).

What follows is configuration (``ModelFitConfig.action``): the decisions carry a note saying
so ("reason"), or the scorecard decides every customer ("scorecard").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from riskcast.features.coverage import COVERAGE_KEY, feature_coverage

__all__ = ["COVERAGE_KEY", "ModelFit", "bundle_fit", "compare", "feature_coverage"]

if TYPE_CHECKING:
    from riskcast.config import ModelFitConfig
    from riskcast.training.bundle import ModelBundle

#: how many lost features a note names
NAMED = 5


@dataclass(frozen=True)
class ModelFit:
    """The comparison: every lost feature (name, gain share, training and data coverage)."""

    fits: bool
    lost: tuple[dict[str, Any], ...]
    lost_importance: float
    features: int
    max_lost_importance: float

    def note(self) -> str:
        """One line: what the decisions and /readyz carry."""
        if self.fits:
            return (f"the data holds what the model relied on ({len(self.lost)} of {self.features} features lost, "
                    f"{self.lost_importance:.0%} of its gain)")
        named = ", ".join(f"{f['feature']} ({f['trained']:.0%} in training, {f['data']:.0%} here)"
                          for f in self.lost[:NAMED])
        more = f" and {len(self.lost) - NAMED} more" if len(self.lost) > NAMED else ""
        return (f"the model does not fit this data: {len(self.lost)} of its {self.features} features, carrying "
                f"{self.lost_importance:.0%} of what it learned (at most {self.max_lost_importance:.0%} allowed), "
                f"are missing for most customers: {named}{more}")

    def to_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "lost": list(self.lost), "lost_importance": self.lost_importance,
                "features": self.features, "max_lost_importance": self.max_lost_importance, "note": self.note()}


def compare(importance: Mapping[str, float], trained: Mapping[str, float], data: Mapping[str, float],
            missing_below: float = 0.5, max_lost_importance: float = 0.25) -> ModelFit:
    """The rule of the module docstring on the three per-feature figures (pure)."""
    total = float(sum(max(v, 0.0) for v in importance.values()))
    lost = []
    for name, gain in importance.items():
        t, d = float(trained.get(name, 0.0)), float(data.get(name, 0.0))
        if t >= missing_below and d < missing_below and d < t / 2:
            lost.append({"feature": name, "importance": max(gain, 0.0) / total if total > 0 else 0.0,
                         "trained": t, "data": d})
    lost.sort(key=lambda f: -f["importance"])
    share = float(sum(f["importance"] for f in lost))
    return ModelFit(fits=share < max_lost_importance, lost=tuple(lost), lost_importance=share,
                    features=len(importance), max_lost_importance=max_lost_importance)


def bundle_fit(bundle: "ModelBundle", data: Mapping[str, float], cfg: "ModelFitConfig") -> ModelFit | None:
    """The model's fit to data of coverage ``data``; None when it cannot be told: no trees
    loaded, or a bundle trained before training coverage was recorded."""
    trained = bundle.metadata.get(COVERAGE_KEY)
    if bundle.booster is None or not isinstance(trained, dict):
        return None
    names = list(bundle.registry.names)
    gain = np.asarray(bundle.booster.feature_importance("gain"), dtype=float)
    if len(gain) != len(names):
        return None
    return compare(dict(zip(names, gain)), trained, data, cfg.missing_below, cfg.max_lost_importance)
