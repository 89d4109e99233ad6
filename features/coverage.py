"""How much of what a customer of its kind can have is missing: the rule that sends too thin a
row to the scorecard, the same in training (which learns the limit) and in serving.

A customer without history with us cannot have payment features, and one without statements
no ratios; counting them as missing referred every new customer, however full its statement.
So a row is measured only against the features of the sources it holds (a source is held when
any of its features is known, other than one whose missing value is no gap, ``nan_means``, or
one the registry fills, ``fill``: 0 invoices because there are none tells nothing of a payment
history) and of the sources every customer has (industry statistics, the relationship's
length). A row holding no source about the customer counts as all missing: an empty request
is too little to score. The rule reads the same whether the row is filled yet or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .registry import FeatureRegistry, Source


#: the bundle metadata key of the training coverage (``feature_coverage`` of the fitting rows)
COVERAGE_KEY = "feature_coverage"


def feature_coverage(X: "pd.DataFrame", names: Sequence[str]) -> dict[str, float]:
    """Per feature, the share of rows on which it is known (0 for a column the table lacks):
    what a model saw in training, and what a rescore's data holds (``serving.model_fit``)."""
    n = len(X)
    return {name: float(X[name].notna().sum() / n) if n and name in X.columns else 0.0 for name in names}


class SourceLayout:
    """A registry's features by source as arrays (``FeatureRegistry.layout`` builds it once).

    A row's coverage depends only on how many features of each source it misses, so every
    such combination (a few thousand for the built-in registry) is measured once here, and a
    row costs one matrix-vector product and a table lookup: order entry measures every order.
    """

    def __init__(self, registry: "FeatureRegistry") -> None:
        self.sources: tuple[Source, ...] = registry.sources
        at = {s.name: i for i, s in enumerate(self.sources)}
        #: per feature, the index of its source
        self.of_feature = np.array([at[f.source] for f in registry.features], dtype=np.intp)
        self.size = np.bincount(self.of_feature, minlength=len(self.sources)).astype(np.int64)
        #: sources whose presence tells about the customer (statements, payment history)
        self.customer = np.array([s.customer for s in self.sources], dtype=bool)
        #: (features, sources) one-hot of the features whose missing impact is their source's
        #: reason: a matrix product sums them into their sources (a value missing by meaning,
        #: "no invoice overdue", is not)
        member = np.array([not f.nan_means for f in registry.features], dtype=bool)
        self.members = np.zeros((len(registry), len(self.sources)))
        self.members[np.flatnonzero(member), self.of_feature[member]] = 1.0
        #: per feature, whether the registry fills it: never missing once filled, no evidence
        self.filled = np.array([f.fill is not None for f in registry.features], dtype=bool)
        # the features a value can be missing from, a gap: neither missing by meaning nor filled
        gap = member & ~self.filled
        gaps = np.bincount(self.of_feature[gap], minlength=len(self.sources)).astype(np.int64)
        # the gaps per source as one mixed-radix number: a missing feature adds its source's place
        place = np.cumprod(np.concatenate([[1], gaps[:-1] + 1])).astype(np.int64)
        self.feature_place = np.where(gap, place[self.of_feature], 0).astype(np.float64)
        states = np.arange(int(np.prod(gaps + 1)))
        gone = (states[:, None] // place[None, :]) % (gaps + 1)[None, :]
        self.held_, self.counted_, self.missing_, self.share_ = _rule(gone, gaps, self.size, self.customer)

    def unknown(self, values: np.ndarray) -> np.ndarray:
        """Per row and feature, whether the value is unknown for the reasons: missing, or
        filled while the row does not hold the feature's source (a new customer's 0 invoices
        are its missing payment history, one reason with its action, not "Only 0 invoices")."""
        nan = np.isnan(values)
        if not self.filled.any():
            return nan
        held = self.held_[(nan @ self.feature_place).astype(np.intp)]
        return nan | (self.filled & ~held[:, self.of_feature])


def _rule(gone: np.ndarray, gaps: np.ndarray, size: np.ndarray, customer: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rule, from the missing features per source ``gone`` (rows, sources; of the
    ``gaps`` features per source a value can be missing from, of ``size`` in all): which
    sources are held, how many features count, how many of them are missing, and the share."""
    held = gone < gaps                             # any feature of the source known
    counted = held | ~customer                     # what a customer of this kind can have
    missing = (gone * counted).sum(axis=1)
    total = counted.astype(np.int64) @ size
    about_customer = (held & customer).any(axis=1)
    share = np.where(about_customer, missing / np.maximum(total, 1), 1.0)
    return held, total, missing, share


@dataclass(frozen=True)
class Coverage:
    """Per row: ``share`` missing of what it could have (1.0 when it holds no source about the
    customer), as ``missing`` of ``counted`` features, and which sources it ``held``."""

    code: np.ndarray
    layout: SourceLayout

    @property
    def share(self) -> np.ndarray:
        return self.layout.share_[self.code]

    @property
    def missing(self) -> np.ndarray:
        return self.layout.missing_[self.code]

    @property
    def counted(self) -> np.ndarray:
        return self.layout.counted_[self.code]

    @property
    def held(self) -> np.ndarray:
        return self.layout.held_[self.code]

    def shortfall(self, i: int, limit: float) -> str:
        """Why row ``i`` is too thin for the model, in plain words."""
        lay, code = self.layout, self.code[i]
        mine = [s.label for s, h, c in zip(lay.sources, lay.held_[code], lay.customer) if h and c]
        if not mine:
            return " and ".join(f"no {s.label}" for s, c in zip(lay.sources, lay.customer) if c) \
                + ": too little to score"
        return (f"{lay.missing_[code]} of {lay.counted_[code]} figures missing for a customer with "
                f"{' and '.join(mine)} (limit {limit:.0%})")


def coverage(X: np.ndarray, registry: "FeatureRegistry") -> Coverage:
    """The coverage of each row of ``X`` (registry features in registry order)."""
    lay = registry.layout
    return Coverage((np.isnan(X) @ lay.feature_place).astype(np.intp), lay)
