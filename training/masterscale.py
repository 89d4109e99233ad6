"""The master scale: PD bands mapped to grades and to the A-E bands credit teams use."""

from __future__ import annotations

import numpy as np

from riskcast.config import MasterScaleConfig


class MasterScale:
    """Grades in order from best to worst; grade k holds PDs in ``[pd_max[k-1], pd_max[k])``."""

    def __init__(self, config: MasterScaleConfig) -> None:
        self.config = config
        self.grades = [g.grade for g in config.grades]
        self.bands = [g.band for g in config.grades]
        self.edges = np.array([g.pd_max for g in config.grades])

    def index(self, pd_: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.edges, np.asarray(pd_, dtype=float), side="right")
        return np.minimum(idx, len(self.edges) - 1)

    def grade(self, pd_: np.ndarray) -> np.ndarray:
        return np.asarray(self.grades, dtype=object)[self.index(pd_)]

    def band(self, pd_: np.ndarray) -> np.ndarray:
        return np.asarray(self.bands, dtype=object)[self.index(pd_)]

    def table(self) -> list[dict]:
        lo = np.concatenate([[0.0], self.edges[:-1]])
        return [{"grade": g, "band": b, "pd_min": float(a), "pd_max": float(z)}
                for g, b, a, z in zip(self.grades, self.bands, lo, self.edges)]
