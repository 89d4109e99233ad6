"""The master scale: PD bands mapped to grades and to the A-E bands credit teams use."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskcast.config import GradeBand, MasterScaleConfig


class MasterScale:
    """Grades in order from best to worst; grade k holds PDs in ``[pd_max[k-1], pd_max[k])``."""

    def __init__(self, config: MasterScaleConfig) -> None:
        self.config = config
        self.grades = [g.grade for g in config.grades]
        self.bands = [g.band for g in config.grades]
        self.edges = np.array([g.pd_max for g in config.grades])
        self._grades, self._bands = np.array(self.grades, dtype=object), np.array(self.bands, dtype=object)

    def index(self, pd_: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.edges, np.asarray(pd_, dtype=float), side="right")
        return np.minimum(idx, len(self.edges) - 1)

    def grade(self, pd_: np.ndarray) -> np.ndarray:
        return self._grades[self.index(pd_)]

    def band(self, pd_: np.ndarray) -> np.ndarray:
        return self._bands[self.index(pd_)]

    def grade_and_band(self, pd_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both labels from one search of the edges."""
        at = self.index(pd_)
        return self._grades[at], self._bands[at]

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


def grade_key(label: str) -> tuple[int, float, str]:
    """Numeric grades in numeric order ("2" before "10"), others alphabetically, after them."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def grade_migration(reference: pd.DataFrame, current: pd.DataFrame, grade_column: str | None,
                    id_column: str = "customer_id") -> dict[str, Any]:
    """Customers in both tables: counts from their reference grade (rows) to their current
    grade (columns), with upgrades and downgrades (a higher grade is a riskier one); the
    reference's latest row per customer when it holds several dates. {} without ids or grades."""
    cols = [grade_column, id_column]
    if not grade_column or any(c not in df.columns for c in cols for df in (reference, current)):
        return {}
    ref = reference
    if "as_of" in ref.columns:
        ref = ref.sort_values("as_of", kind="stable")
    ref = ref.drop_duplicates(id_column, keep="last")
    cur = current.drop_duplicates(id_column, keep="last")
    ref, cur = ref[ref[grade_column].notna()], cur[cur[grade_column].notna()]  # no grade: nothing to migrate
    both = ref[cols].astype(str).merge(cur[cols].astype(str), on=id_column, suffixes=("_from", "_to"))
    order = sorted(set(both[f"{grade_column}_from"]) | set(both[f"{grade_column}_to"]), key=grade_key)
    rank = {g: i for i, g in enumerate(order)}
    step = both[f"{grade_column}_to"].map(rank) - both[f"{grade_column}_from"].map(rank)
    table = pd.crosstab(both[f"{grade_column}_from"], both[f"{grade_column}_to"]).reindex(
        index=order, columns=order, fill_value=0)
    return {"customers": int(len(both)), "grades": order,
            "counts": {g: {h: int(table.at[g, h]) for h in order} for g in order},
            "upgrades": int((step < 0).sum()), "downgrades": int((step > 0).sum()),
            "downgrades_2_or_more": int((step >= 2).sum())}
