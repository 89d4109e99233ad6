"""The master scale: PD bands mapped to grades and to the A-E bands credit teams use.

The scale is configuration, never fitted to a model: grade 4 of one model version is grade 4
of the next, so grade changes and migrations mean something. Every table of grades records the
scale it was graded on (``scale_version``, ``scale_fingerprint``), and grades are compared
only between tables on the same scale. A book crowded into one grade is reported
(``concentration``), and a better scale can be suggested (``suggest_scale``), never applied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import ValidationError

from riskcast.config import GradeBand, MasterScaleConfig
from riskcast.errors import DataValidationError, InputError

#: columns of a scored table naming the scale its grades are on
SCALE_VERSION_COLUMN = "scale_version"
SCALE_FINGERPRINT_COLUMN = "scale_fingerprint"
BAND_LETTERS = ("A", "B", "C", "D", "E")


def scale_fingerprint(config: MasterScaleConfig) -> str:
    """A short hash of the grades, edges and bands (not the version): two scales that share a
    version but not their edges are told apart by it."""
    rows = [[g.grade, float(g.pd_max), g.band] for g in config.grades]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ScaleTag:
    """Which scale a table's grades are on; ``fingerprint`` None when it was not recorded."""

    version: str
    fingerprint: str | None = None

    def same_as(self, other: "ScaleTag") -> bool:
        """Same version, and the same edges wherever both sides recorded them."""
        if self.version != other.version:
            return False
        return self.fingerprint is None or other.fingerprint is None or self.fingerprint == other.fingerprint

    def __str__(self) -> str:
        return self.version


class MasterScale:
    """Grades in order from best to worst; grade k holds PDs in ``[pd_max[k-1], pd_max[k])``."""

    def __init__(self, config: MasterScaleConfig) -> None:
        self.config = config
        self.version = config.version
        self.fingerprint = scale_fingerprint(config)
        self.grades = [g.grade for g in config.grades]
        self.bands = [g.band for g in config.grades]
        self.edges = np.array([g.pd_max for g in config.grades])
        self._grades, self._bands = np.array(self.grades, dtype=object), np.array(self.bands, dtype=object)

    @property
    def tag(self) -> ScaleTag:
        return ScaleTag(self.version, self.fingerprint)

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


def grade_key(label: str) -> tuple[int, float, str]:
    """Numeric grades in numeric order ("2" before "10"), others alphabetically, after them."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


# ---------------------------------------------------------------------------- concentration


def concentration(grades: Iterable[Any], scale: MasterScale | Sequence[str]) -> dict[str, Any]:
    """How crowded the grades are: the Herfindahl index of the grade shares (sum of squared
    shares: 1/N when the rows spread evenly over the N grades of the scale, 1 when one grade
    holds them all), its normalised form ``(H - 1/N) / (1 - 1/N)`` (0 even, 1 all in one), and
    the largest grade and its share. Rows without a grade are left out; a label that is not a
    grade of the scale is an error (the rows were graded on another scale)."""
    order = list(scale.grades) if isinstance(scale, MasterScale) else [str(g) for g in scale]
    if not order:
        raise InputError("grades: the scale has no grades", field="grades")
    labels = pd.Series(list(grades) if not isinstance(grades, (pd.Series, np.ndarray)) else grades, dtype=object)
    labels = labels[labels.notna()].astype(str)
    unknown = sorted(set(labels) - set(order), key=grade_key)
    if unknown:
        raise InputError(f"grade: {', '.join(unknown[:5])} {'is' if len(unknown) == 1 else 'are'} not a grade of "
                         f"the scale ({', '.join(order)})", field="grade")
    counts = labels.value_counts().reindex(order, fill_value=0)
    n, k = int(counts.sum()), len(order)
    if not n:
        return {"rows": 0, "grades": k, "herfindahl": float("nan"), "herfindahl_normalised": float("nan"),
                "max_share": float("nan"), "max_grade": None}
    shares = counts.to_numpy(dtype=float) / n
    h = float(np.sum(shares ** 2))
    top = int(np.argmax(shares))  # the best of tied grades
    return {"rows": n, "grades": k, "herfindahl": h,
            "herfindahl_normalised": float((h - 1 / k) / (1 - 1 / k)) if k > 1 else 1.0,
            "max_share": float(shares[top]), "max_grade": order[top]}


def describe_concentration(c: dict[str, Any]) -> str:
    """One line for a report: ``Herfindahl 0.21 (normalised 0.12); largest grade 4 with 38%``."""
    if not c.get("rows"):
        return "no graded rows"
    return (f"Herfindahl {c['herfindahl']:.3f} (normalised {c['herfindahl_normalised']:.3f}, even spread "
            f"{1 / c['grades']:.3f}); largest grade {c['max_grade']} with {c['max_share']:.1%} of {c['rows']:,} rows")


# ---------------------------------------------------------------------------- same scale or not

#: a scale as callers name it: a tag, the scale itself, a version, or None (no version recorded)
ScaleLike = ScaleTag | MasterScale | str | None


def table_scales(df: pd.DataFrame, version_column: str = SCALE_VERSION_COLUMN,
                 fingerprint_column: str = SCALE_FINGERPRINT_COLUMN) -> list[ScaleTag | None]:
    """The distinct scales a table's rows name, in order of first appearance; None stands for
    rows without a version among rows with one. [] when no row names a scale."""
    if version_column not in df.columns or not df[version_column].notna().any():
        return []
    pairs = pd.DataFrame({"v": df[version_column].astype(object),
                          "f": df[fingerprint_column].astype(object) if fingerprint_column in df.columns else None})
    seen: dict[ScaleTag | None, None] = {}
    for v, f in pairs.drop_duplicates().itertuples(index=False):
        seen[ScaleTag(str(v), None if pd.isna(f) else str(f)) if not pd.isna(v) else None] = None
    return list(seen)


def _as_tags(scale: ScaleLike) -> list[ScaleTag | None]:
    if scale is None:
        return []
    if isinstance(scale, MasterScale):
        return [scale.tag]
    return [scale if isinstance(scale, ScaleTag) else ScaleTag(str(scale))]


def scale_difference(reference: Sequence[ScaleTag | None], current: Sequence[ScaleTag | None],
                     names: tuple[str, str] = ("the reference", "the current table")) -> str | None:
    """Why grades of two tables must not be compared, or None when they may: each side on one
    scale, the same version, and the same fingerprint wherever both recorded one. When neither
    side records a scale nothing is known and None is returned (tables from before versions)."""
    a, b = names
    if not reference and not current:
        return None
    for name, tags in ((a, reference), (b, current)):
        if len(tags) > 1:
            listed = ", ".join("no recorded scale" if t is None else
                               f"{t.version} ({t.fingerprint})" if t.fingerprint else t.version for t in tags)
            return f"{name} holds grades of several scales ({listed}): grades not compared"
    ref, cur = (reference[0] if reference else None), (current[0] if current else None)
    if ref is None or cur is None:
        def on(t: ScaleTag | None) -> str:
            if t is None:
                return "on no recorded scale (written before scales had versions)"
            return f"on scale {t.version}"
        return f"{a} graded {on(ref)}, {b} {on(cur)}: grades not compared"
    if ref.version != cur.version:
        return f"{a} graded on scale {ref.version}, {b} on {cur.version}: grades not compared"
    if not ref.same_as(cur):
        return (f"{a} and {b} both name scale {ref.version} but its edges differ (fingerprints {ref.fingerprint} "
                f"and {cur.fingerprint}): grades not compared; give a changed scale a new version")
    return None


def grade_migration(reference: pd.DataFrame, current: pd.DataFrame, grade_column: str | None,
                    id_column: str = "customer_id", *,
                    scales: tuple[ScaleLike, ScaleLike] | None = None,
                    names: tuple[str, str] = ("the reference", "the current table")) -> dict[str, Any]:
    """Customers in both tables: counts from their reference grade (rows) to their current
    grade (columns), with upgrades and downgrades (a higher grade is a riskier one); the
    reference's latest row per customer when it holds several dates. {} without ids or grades.

    Only grades on the same scale are compared: ``scales`` (reference, current; None: that
    side has no version), else the ``scale_version``/``scale_fingerprint`` columns of the
    rows compared. On different scales the answer is ``{"compared": False, "reason": ...}``
    and no counts: grade 4 of one scale is not grade 4 of another."""
    cols = [grade_column, id_column]
    if not grade_column or any(c not in df.columns for c in cols for df in (reference, current)):
        return {}
    ref = reference
    if "as_of" in ref.columns:
        ref = ref.sort_values("as_of", kind="stable")
    ref = ref.drop_duplicates(id_column, keep="last")
    cur = current.drop_duplicates(id_column, keep="last")
    ref, cur = ref[ref[grade_column].notna()], cur[cur[grade_column].notna()]  # no grade: nothing to migrate
    if scales is not None:
        ref_tags, cur_tags = _as_tags(scales[0]), _as_tags(scales[1])
    else:
        ref_tags, cur_tags = table_scales(ref), table_scales(cur)
    reason = scale_difference(ref_tags, cur_tags, names)
    listed = {"reference": [None if t is None else t.version for t in ref_tags],
              "current": [None if t is None else t.version for t in cur_tags]}
    if reason is not None:
        return {"compared": False, "reason": reason, "scales": listed}
    both = ref[cols].astype(str).merge(cur[cols].astype(str), on=id_column, suffixes=("_from", "_to"))
    order = sorted(set(both[f"{grade_column}_from"]) | set(both[f"{grade_column}_to"]), key=grade_key)
    rank = {g: i for i, g in enumerate(order)}
    step = both[f"{grade_column}_to"].map(rank) - both[f"{grade_column}_from"].map(rank)
    table = pd.crosstab(both[f"{grade_column}_from"], both[f"{grade_column}_to"]).reindex(
        index=order, columns=order, fill_value=0)
    return {"compared": True, "scale_version": cur_tags[0].version if cur_tags and cur_tags[0] else None,
            "customers": int(len(both)), "grades": order,
            "counts": {g: {h: int(table.at[g, h]) for h in order} for g in order},
            "upgrades": int((step < 0).sum()), "downgrades": int((step > 0).sum()),
            "downgrades_2_or_more": int((step >= 2).sum())}


# ---------------------------------------------------------------------------- a suggested scale


def band_edges(config: MasterScaleConfig) -> dict[str, float]:
    """Each band's upper PD on a scale (its worst grade's ``pd_max``), best band first."""
    out: dict[str, float] = {}
    for g in config.grades:
        out[g.band] = max(out.get(g.band, 0.0), g.pd_max)
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _readable(x: float) -> float:
    """Two significant figures: 0.0073, 0.012, 0.15."""
    return float(f"{x:.2g}")


def _checked_pds(pds: Any) -> np.ndarray:
    try:
        arr = np.asarray(pds, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError("pd_12m: the PDs must be numbers", field="pd_12m") from None
    if not arr.size:
        raise InputError("pd_12m: no PDs to suggest a scale from", field="pd_12m")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        raise InputError(f"pd_12m: {int(bad.sum()):,} value(s) are not PDs in [0, 1] (e.g. {float(arr[bad][0])!r})",
                         field="pd_12m")
    return arr


def _edges_between(pds: np.ndarray, lo: float, hi: float, n: int) -> list[float]:
    """Up to ``n - 1`` readable edges strictly inside ``(lo, hi)`` at quantiles of the PDs in
    ``[lo, hi)``, none leaving a grade empty; then ``hi``."""
    inside = np.sort(pds[(pds >= lo) & ((pds < hi) | (hi >= 1.0))])
    kept: list[float] = []
    if n > 1 and inside.size:
        for q in np.quantile(inside, np.arange(1, n) / n):
            e = _readable(float(q))
            last = kept[-1] if kept else lo
            if not (last < e < hi):
                continue
            below = np.searchsorted(inside, e, side="left") - np.searchsorted(inside, last, side="left")
            above = inside.size - np.searchsorted(inside, e, side="left")
            if below > 0 and above > 0:  # a grade on each side of the edge holds rows
                kept.append(e)
    return [*kept, hi]


def _allocate(shares: np.ndarray, total: int) -> np.ndarray:
    """Grades per band: one each, the rest one at a time to the band whose grades hold the
    most rows each (so the largest grade share is as small as the bands allow)."""
    alloc = np.ones(len(shares), dtype=int)
    for _ in range(total - len(shares)):
        alloc[int(np.argmax(shares / alloc))] += 1
    return alloc


def suggest_scale(pds: Any, grades: int = 10, bands: Mapping[str, float] | Literal["even"] | None = None,
                  version: str | None = None) -> MasterScaleConfig:
    """A master scale whose grades each hold about as many of ``pds`` as the bands allow:
    edges at quantiles of the PDs, rounded to two significant figures, strictly increasing,
    the last at 1.0; at most ``grades`` grades (ties and rounding can merge some).

    ``bands`` None keeps the default scale's band ranges (A below 0.6%, ... E from 12%) as
    edges, so no grade straddles two bands and a PD keeps its band: each band gets one grade
    and the rest go where the rows are. A mapping band -> upper PD gives other ranges;
    ``"even"`` puts the edges anywhere and deals the bands A..E out evenly over the grades
    (this moves PDs between bands, and so changes decisions). ``version`` names the new scale
    (default ``suggested-<fingerprint>``). Pure: nothing is applied; the caller shows it.
    """
    arr = _checked_pds(pds)
    if isinstance(grades, bool) or not isinstance(grades, (int, np.integer)) or not 2 <= grades <= 40:
        raise InputError(f"grades: a scale needs 2 to 40 grades, not {grades!r}", field="grades")
    if isinstance(bands, str) and bands != "even":
        raise InputError(f"bands: 'even', a mapping band -> upper PD, or None; not {bands!r}", field="bands")
    rows: list[tuple[float, str]] = []
    if bands == "even":
        edges = _edges_between(arr, 0.0, 1.0, int(grades))
        n = len(edges)
        rows = [(e, BAND_LETTERS[int(round(i * (len(BAND_LETTERS) - 1) / max(n - 1, 1)))]) for i, e in enumerate(edges)]
    else:
        ranges = band_edges(MasterScaleConfig()) if bands is None else dict(bands)
        his = list(ranges.values())
        if (not ranges or set(ranges) - set(BAND_LETTERS) or list(ranges) != sorted(ranges)
                or any(b <= a for a, b in zip(his, his[1:]))
                or his[-1] != 1.0 or his[0] <= 0):
            raise InputError("bands: give bands A-E with upper PDs that increase strictly and end at 1.0",
                             field="bands")
        if grades < len(ranges):
            raise InputError(f"grades: {grades} grades cannot hold {len(ranges)} bands", field="grades")
        los = [0.0, *his[:-1]]
        counts = np.array([((arr >= lo) & ((arr < hi) | (hi >= 1.0))).sum() for lo, hi in zip(los, his)], float)
        for (band, hi), lo, m in zip(ranges.items(), los, _allocate(counts / arr.size, int(grades))):
            rows += [(e, band) for e in _edges_between(arr, lo, hi, int(m))]
    config = MasterScaleConfig(grades=tuple(GradeBand(grade=str(i), pd_max=e, band=b)
                                            for i, (e, b) in enumerate(rows, 1)))
    name = version if version is not None else f"suggested-{scale_fingerprint(config)}"
    try:
        return MasterScaleConfig(version=name, grades=config.grades)
    except ValidationError:
        raise InputError(f"version: {name!r} is not a scale version (letters, digits, '.', '_', '-'; "
                         "at most 40)", field="version") from None


def pds_of(table: pd.DataFrame, column: str = "pd_12m", table_name: str = "scored") -> np.ndarray:
    """The PDs of a scored book or reference, rows without one left out."""
    if column not in table.columns:
        raise DataValidationError(table_name, column, "column is missing (expected a scored book or reference)")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    return values[~np.isnan(values)]


def _shares(pds: np.ndarray, scale: MasterScale) -> np.ndarray:
    return np.bincount(scale.index(pds), minlength=len(scale.grades)) / max(pds.size, 1)


def scale_toml(suggested: MasterScaleConfig, pds: Any, current: MasterScaleConfig | None = None) -> str:
    """The ``[master_scale]`` block to paste into the configuration, each grade with its share
    of ``pds``, and the Herfindahl of the PDs on the current scale and on the suggested one."""
    arr = _checked_pds(pds)
    new = MasterScale(suggested)
    new_c = concentration(new.grade(arr), new)
    lines = [f"# master scale suggested from {arr.size:,} PDs: review it, then put it in the configuration in place",
             "# of the [master_scale] section. Nothing changes until then; models trained afterwards grade on it,",
             "# and grades are compared only between tables graded on the same scale version.",
             f"# suggested scale {new.version}: {describe_concentration(new_c)}"]
    if current is not None:
        old = MasterScale(current)
        old_c = concentration(old.grade(arr), old)
        lines.append(f"# current scale {old.version}: {describe_concentration(old_c)}")
        lines.append(f"# current scale {old.version}, share per grade: " + "  ".join(
            f"{g} {s:.1%}" for g, s in zip(old.grades, _shares(arr, old))))
    lines += ["[master_scale]", f"version = {json.dumps(new.version)}"]
    for row, share in zip(new.table(), _shares(arr, new)):
        lines += ["", f"# grade {row['grade']} (band {row['band']}): PD {row['pd_min']:.2%} to {row['pd_max']:.2%}, "
                  f"{share:.1%} of the PDs",
                  "[[master_scale.grades]]", f"grade = {json.dumps(row['grade'])}",
                  f"pd_max = {row['pd_max']!r}", f"band = {json.dumps(row['band'])}"]
    return "\n".join(lines) + "\n"
