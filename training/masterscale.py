"""The master scale: PD bands mapped to grades and to the A-E bands credit teams use."""

from __future__ import annotations

import numpy as np

from riskcast.config import GradeBand, MasterScaleConfig


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


def fit_scale(config: MasterScaleConfig, pds: np.ndarray, max_share: float = 1 / 3) -> MasterScaleConfig:
    """The configured scale, with every grade that holds more than ``max_share`` of ``pds``
    split at the median PD of its rows (both halves keep the band) until none does.

    A scale on which most of the book shares one grade cannot tell customers apart; the
    configured edges stay wherever the book already spreads over them. Numbered grades are
    renumbered best to worst; named ones get ``.1``/``.2`` suffixes.
    """
    pds = np.asarray(pds, dtype=float)
    rows = [(g.grade, g.pd_max, g.band) for g in config.grades]
    if not pds.size:
        return config
    for _ in range(64):
        edges = np.array([r[1] for r in rows])
        idx = np.minimum(np.searchsorted(edges, pds, side="right"), len(edges) - 1)
        shares = np.bincount(idx, minlength=len(rows)) / pds.size
        split = None
        for k in np.argsort(-shares):
            if shares[k] <= max_share:
                break
            lo = edges[k - 1] if k else 0.0
            inside = pds[idx == k]
            cut = float(np.median(inside))
            if lo < cut < edges[k] and (inside < cut).any() and (inside >= cut).any():
                split = (k, cut)
                break
        if split is None:
            break
        k, cut = split
        name, pd_max, band = rows[k]
        rows[k:k + 1] = [(f"{name}.1", cut, band), (f"{name}.2", pd_max, band)]
    if len(rows) == len(config.grades):
        return config
    if all(g.grade.isdigit() for g in config.grades):
        rows = [(str(i), p, b) for i, (_, p, b) in enumerate(rows, 1)]
    return MasterScaleConfig(grades=tuple(GradeBand(grade=g, pd_max=p, band=b) for g, p, b in rows))
