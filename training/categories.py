"""Categorical features as the model reads them: each category a code, learned at fit.

LightGBM splits on categories natively but takes them as non-negative whole numbers, and
does not match columns or categories by name. ``CategoryCodes`` learns each categorical
feature's categories on the training rows and turns a frame of registry features into the
float matrix every model path takes (LightGBM, the compiled trees, the leaf tables, the
reasons), the categories as their code at fit.

The unseen-category policy, one rule for every path: a value not seen at fit is missing. It
gets no code of its own (NaN), never an error: LightGBM sends a missing category down the
side of every categorical split that holds no listed category, so a row with an unseen value
scores exactly as the same row with the value missing. The scorecard follows the same rule
(``scorecard.MISSING_WOE``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from riskcast.errors import InputError
from riskcast.features.registry import FeatureRegistry


def category_text(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Values as categories are learned and looked up by: the text of each (``True`` is
    "True", a pandas category its label), a missing one None. The one normalisation the
    codes and the scorecard share, so both see a bool or a category column alike."""
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    known = s.notna().to_numpy()
    out = np.full(len(s), None, dtype=object)
    out[known] = s[known].astype(str).to_numpy(dtype=object)
    return out


def _numbers(df: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as float; InputError naming it when it holds something else."""
    try:
        return df[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        bad = next((v for v in df[name] if not pd.isna(v) and not _is_number(v)), None)
        raise InputError(f"{name}: values must be numbers (a numeric feature), got {bad!r}", field=name) from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class CategoryCodes:
    """The registry's features as a float matrix in registry order; each categorical
    feature's values as the code of their category at fit (its index in ``categories_``,
    which are sorted), a value not seen at fit and a missing one as NaN.

    ``categories_``: per categorical feature, the categories of the training rows. Without
    categorical features the matrix is the frame's columns as float, as before any existed."""

    def __init__(self, registry: FeatureRegistry) -> None:
        self.registry = registry

    def fit(self, df: pd.DataFrame) -> "CategoryCodes":
        """Learn the categories of ``df`` (the training rows); a refit forgets the old ones."""
        self._check_columns(df)
        self.categories_ = {name: tuple(sorted({v for v in category_text(df[name]) if v is not None}))
                            for name in self.registry.categorical}
        return self

    @classmethod
    def fitted(cls, registry: FeatureRegistry, categories: Mapping[str, Sequence[str]]) -> "CategoryCodes":
        """The codes of a past fit (a saved bundle's): ``categories`` must name exactly the
        registry's categorical features, each with its categories in code order."""
        expected, given = set(registry.categorical), set(categories)
        if expected != given:
            raise ValueError(f"categories given for {sorted(given)}, the registry's categorical features are "
                             f"{sorted(expected)}")
        out = cls(registry)
        out.categories_ = {name: tuple(str(c) for c in categories[name]) for name in registry.categorical}
        for name, cats in out.categories_.items():
            if list(cats) != sorted(set(cats)):
                raise ValueError(f"categories of {name} are not sorted and distinct")
        return out

    def _check_columns(self, df: pd.DataFrame) -> None:
        absent = [n for n in self.registry.names if n not in df.columns]
        if absent:
            raise InputError(f"feature table lacks registry columns {absent}", field=absent[0])

    def codes(self, name: str, values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
        """The codes of one categorical feature's values: NaN for a missing or unseen one."""
        cats = self.categories_[name]
        at = pd.Categorical(category_text(values), categories=cats).codes
        return np.where(at < 0, np.nan, at.astype(np.float64))

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Registry columns in registry order as a float matrix (LightGBM ignores names)."""
        names = self.registry.names
        if not self.registry.categorical:
            try:
                return df[names].to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                for name in names:
                    _numbers(df, name)
                raise
        self._check_columns(df)
        X = np.empty((len(df), len(names)))
        for j, f in enumerate(self.registry.features):
            X[:, j] = self.codes(f.name, df[f.name]) if f.categorical else _numbers(df, f.name)
        return X

    def labels(self, name: str, codes: np.ndarray) -> np.ndarray:
        """The categories of codes of feature ``name`` (None for NaN): what a reason shows."""
        cats = np.array(self.categories_[name] + (None,), dtype=object)
        codes = np.asarray(codes, dtype=np.float64)
        return cats[np.where(np.isnan(codes), len(cats) - 1, np.nan_to_num(codes)).astype(np.intp)]

    def frame(self, X: np.ndarray) -> pd.DataFrame:
        """The rows of a matrix back as a frame of registry features, categories as their text
        (an unseen one missing, as the model read it): what the scorecard reads."""
        out = pd.DataFrame(X, columns=self.registry.names)
        for name in self.registry.categorical:
            out[name] = self.labels(name, out[name].to_numpy())
        return out

    def signature_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df``'s registry features as a caller sends them: numbers as float, categories as
        text (missing None), the frame a model signature is drawn from."""
        out = df[self.registry.names].copy()
        for f in self.registry.features:
            out[f.name] = category_text(out[f.name]) if f.categorical else out[f.name].astype("float64")
        return out

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(cats) for name, cats in self.categories_.items()}
