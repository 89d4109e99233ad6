"""Rescoring the whole book on one date: features, PD, grade, limit, terms and reasons per customer."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from riskcast.data.io import RawTables
from riskcast.errors import InputError
from riskcast.features.build import empty_book_message, features_at

from .core import ScoringCore

Progress = Callable[[str], None]


def flatten(decisions: list[dict], k: int) -> pd.DataFrame:
    """One row per customer with the top ``k`` reasons as columns."""
    rows = []
    for d in decisions:
        row = {key: d[key] for key in ("customer_id", "pd_12m", "score", "grade", "band", "decision",
                                       "credit_limit", "recommended_terms_days", "fallback", "fallback_reason")}
        row["exposure"] = d["exposure_after_order"]
        row["model_version"] = d["model"]["version"]
        row["model_kind"] = d["model"]["kind"]
        for j in range(k):
            r = d["reasons"][j] if j < len(d["reasons"]) else None
            row[f"reason_{j + 1}"] = r["text"] if r else None
            row[f"reason_{j + 1}_feature"] = r["feature"] if r else None
        rows.append(row)
    return pd.DataFrame(rows)


def rescore_book(tables: RawTables, core: ScoringCore, as_of: pd.Timestamp, *, chunk_size: int = 20_000,
                 progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every active customer on ``as_of`` (no new order: the decision is on current exposure).

    Returns the scored book (decisions plus the features they were made on) and the feature
    rows, for the online store.
    """
    say = progress or (lambda _m: None)
    feats = features_at(tables, pd.Timestamp(as_of), core.registry)
    if feats.empty:
        raise InputError(empty_book_message(tables, [as_of]), field="as_of")
    k = core.cfg.serving.top_reasons
    parts = []
    for start in range(0, len(feats), chunk_size):
        chunk = feats.iloc[start:start + chunk_size]
        decisions = core.decide(chunk, np.zeros(len(chunk)), np.full(len(chunk), np.nan),
                                request_ids=[f"rescore-{pd.Timestamp(as_of).date()}-{c}" for c in chunk["customer_id"]])
        parts.append(flatten(decisions, k))
        say(f"rescored {min(start + chunk_size, len(feats)):,}/{len(feats):,} customers")
    scored = pd.concat(parts, ignore_index=True) if parts else flatten([], k)
    meta = feats.drop(columns=["customer_id"]).reset_index(drop=True)
    scored = pd.concat([scored, meta], axis=1)
    return scored, feats
