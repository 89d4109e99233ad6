"""The rescore of a work directory: the champion scores the book on one date, the scored files
are written, and the order-entry store is replaced when the date allows it.

What ``riskcast rescore`` does, as a function: a notebook or an orchestrator calling it gets
the same files and the same store as the command.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from riskcast.config import WorkPaths
from riskcast.data.io import RawTables, atomic_path, days_past_data
from riskcast.errors import InputError, RiskcastError
from riskcast.features.coverage import COVERAGE_KEY
from riskcast.features.store import store_as_of, write_store

from .rescore import RescoreResult, collections_paths, open_invoices_path, read_previous, rescore_to_file

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RescoreJob:
    """What a rescore of a work directory did."""

    result: RescoreResult
    model: str
    version: str
    #: whether the order-entry store was replaced by this rescore
    store_replaced: bool
    #: why the store was (or was not) replaced when that is worth saying; None when plain
    store_note: str | None
    store: Path


def input_key(path: str | Path | None) -> list | None:
    """What identifies an input for resuming: its files' names, sizes and modification times
    (a folder's own files, not hidden ones: an output written beside the tables, or its
    unfinished work, must not change the key)."""
    if not path:
        return None
    p = Path(path)
    files = sorted(f for f in p.iterdir() if not f.name.startswith(".")) if p.is_dir() else [p]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


def store_rule(path: Path, as_of: pd.Timestamp, forced: bool) -> tuple[bool, str | None]:
    """Whether a rescore as of ``as_of`` may replace the live order-entry store, and what to say:
    a back-dated rescore (a what-if, a rerun of an old day) must not put older features in front
    of order entry unless the caller says so (``forced``)."""
    if not path.exists():
        return True, None
    new = as_of.strftime("%Y-%m-%d")
    try:
        live = store_as_of(path)
    except InputError:
        return True, f"the live order-entry store cannot be read; replaced by this rescore as of {new}"
    if live is None:
        return True, f"the live order-entry store does not record its date; replaced by this rescore as of {new}"
    if live <= new:
        return True, None
    if forced:
        return True, f"order-entry store as of {live} replaced by this rescore as of {new} (--replace-store)"
    return False, (f"order-entry store left as it is: it is as of {live}, this rescore as of {new} "
                   f"(older); rerun with --replace-store to replace it")


def _within_data(tables: RawTables | Callable[[], RawTables], as_of: pd.Timestamp,
                 allow: bool) -> RawTables | Callable[[], RawTables]:
    """``tables``, checked against ``as_of`` when they are read (``days_past_data``): at once
    when given, else when the function reading them is called."""
    if not callable(tables):
        days_past_data(tables, [as_of], allow=allow)
        return tables

    def read() -> RawTables:
        t = tables()
        days_past_data(t, [as_of], allow=allow)
        return t

    return read


def book_meta(features: pd.DataFrame, coverage: Mapping[str, float] | None = None) -> dict[str, str]:
    """What the store keeps of the whole book: the sum of its limits (for the seller's cap) and
    its feature coverage (``RescoreResult.coverage``, for /readyz's ``model_fit``)."""
    from .core import BOOK_LIMITS_TOTAL

    out = {}
    if coverage and not features.empty:
        out[COVERAGE_KEY] = json.dumps(dict(coverage))
    if BOOK_LIMITS_TOTAL in features.columns and not features.empty:
        out[BOOK_LIMITS_TOTAL] = repr(float(features[BOOK_LIMITS_TOTAL].iloc[0]))
    return out


def rescore_workdir(tables: RawTables | Callable[[], RawTables], workdir: Path, as_of: pd.Timestamp, out: Path, *,
                    config_path: str | Path | None = None, previous: Path | None = None,
                    run_key: dict | None = None, engine: str = "local", spark_master: str | None = None,
                    replace_store: bool = False, allow_future_as_of: bool = False,
                    progress: Progress | None = None) -> RescoreJob:
    """Score the book as of ``as_of`` with the work directory's champion into ``out`` (and its
    rejected rows and summary beside it), then refresh the order-entry store unless the store is
    newer than ``as_of`` and ``replace_store`` is not set. ``tables`` may be a function, called
    only when the features must be built (not when resuming after they were).

    An ``as_of`` more than a day past the data's last date is refused: every invoice still open
    would look that much later and the book be declined. ``allow_future_as_of`` scores it as a
    what-if, and then the order-entry store is never written (order entry must not decide on a
    day that has not come), whatever ``replace_store`` says."""
    from .runtime import build_core

    if allow_future_as_of and replace_store:
        raise InputError("--replace-store: a rescore with --allow-future-as-of never writes the order-entry store; "
                         "give one of the two", field="replace_store")
    say = progress or (lambda _m: None)
    as_of = pd.Timestamp(as_of)
    tables = _within_data(tables, as_of, allow_future_as_of)
    paths = WorkPaths(root=Path(workdir))
    # a what-if opens no case on the desk
    core = build_core(paths.root, config_path, desk=not allow_future_as_of)
    if core.model is None:
        raise RiskcastError(f"no champion model to rescore with: {core.model_error}")
    say(f"rescoring the book as of {as_of.date()} with {core.model.name} v{core.model.version}")
    prev = read_previous(previous) if previous else None
    key = {**(run_key or {}), "previous": input_key(previous)}
    if allow_future_as_of:  # a run that skipped the check is resumed only by another that does
        key["allow_future_as_of"] = True
    result = rescore_to_file(tables, core, as_of, out, previous=prev, progress=say, run_key=key,
                             engine=engine, spark_master=spark_master)
    if allow_future_as_of:
        replace, note = False, (f"order-entry store left as it is: this rescore as of {as_of.date()} is a what-if "
                                "(--allow-future-as-of), never put in front of order entry")
    else:
        replace, note = store_rule(paths.store, as_of, replace_store)
    if replace:
        say(f"writing the order-entry feature store {paths.store}")
        write_store(result.features, paths.store, core.registry.version, meta=book_meta(result.features, result.coverage))
        for made, kept in ((open_invoices_path(result.out), paths.open_invoices),
                           (collections_paths(result.out)[0], paths.collections)):
            if made.exists():
                with atomic_path(kept) as tmp:
                    shutil.copyfile(made, tmp)
    say("done")
    return RescoreJob(result, core.model.name, core.model.version, replace, note, paths.store)
