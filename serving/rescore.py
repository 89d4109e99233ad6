"""Rescoring the whole book on one date: features, PD, grade, limit, terms and reasons per customer.

Every customer of the customers table is accounted for: scored, or rejected with its reason
(not trading yet, already in default, no data at all, or bad master data). Written to a file,
the work goes in chunks, each chunk's result saved atomically in a folder beside the output;
a run killed at any moment and started again with the same arguments picks up after the last
saved chunk, and the final file (written aside, then renamed) equals an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from math import isfinite
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from riskcast.data.io import (ParquetParts, RawTables, json_ready, read_any, release_memory, write_parquet,
                              write_text)
from riskcast.data.insurance import (claims, cover_on, insurable, insurance_lines, insurance_summary, insured,
                                     net_expected_loss)
from riskcast.data.ledger import BookNotes, open_invoices
from riskcast.data.receivables import (PaymentDays, book_receivables, first_default_days, loss_rates, provision,
                                       receivables_lines)
from riskcast.data.schema import UNKNOWN_INDUSTRY
from riskcast.errors import DataValidationError, InputError, ScoringError
from riskcast.features.build import empty_book_message, features_at
from riskcast.features.coverage import feature_coverage
from riskcast.features.payment import InvoiceLedger
from riskcast.training.masterscale import (SCALE_FINGERPRINT_COLUMN, SCALE_VERSION_COLUMN, concentration,
                                           describe_concentration, grade_migration)

from .collections import collections_lines, collections_of, customer_pds
from .core import ScoringCore
from .desk.orders import book_referrals, with_approved_limits
from .desk.store import Referral
from .model_fit import ModelFit, bundle_fit
from .policy import seller_ceilings
from .watchlist import watch_summary, watchlist, watchlist_lines

if TYPE_CHECKING:
    import pyarrow as pa

Progress = Callable[[str], None]
REJECTED_COLUMNS = ["customer_id", "kind", "reason"]
#: columns of a previous rescore that the comparison reads
PREVIOUS_COLUMNS = ["customer_id", "pd_12m", "grade", "exposure", "credit_limit"]
#: and the scale its grades are on, when it records it (older rescores do not: then no grade is compared)
PREVIOUS_SCALE_COLUMNS = [SCALE_VERSION_COLUMN, SCALE_FINGERPRINT_COLUMN]
#: how the two runs are named in the summary's reasons
RUN_NAMES = ("previous rescore", "this one")


_FLOAT = ("pd_12m", "score", "credit_limit", "exposure", "previous_pd_12m")
_TEXT = ("customer_id", "grade", "band", "decision", "decision_rule", "decision_reason", "conditions",
         "early_payment_discount", "fallback_reason", "model_version", "model_kind", "previous_grade", "industry",
         SCALE_VERSION_COLUMN, SCALE_FINGERPRINT_COLUMN)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed column types, whatever a chunk holds: a chunk where every reason or fallback
    reason is empty must still write text columns, so that the chunks make one table."""
    out = df.copy(deep=False)  # columns are replaced, never written into
    for c in out.columns:
        if c in _FLOAT and out[c].dtype != "float64":
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        elif (c in _TEXT or c.startswith("reason_")) and out[c].dtype != "string":
            out[c] = out[c].astype("string")
    return out


# ---------------------------------------------------------------------------- the book


def book_on(tables: RawTables, core: ScoringCore, as_of: pd.Timestamp, ledger: InvoiceLedger | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature rows to score on ``as_of`` (by customer id) and every other customer of the
    customers table with the reason it is not scored. ``ledger``: the invoices already
    reduced (then ``tables.invoices`` is not read)."""
    as_of = pd.Timestamp(as_of)
    ledger = ledger if ledger is not None else InvoiceLedger.from_invoices(tables.invoices)
    feats = features_at(tables, as_of, core.registry, ledger)
    if feats.empty:
        raise InputError(empty_book_message(tables, [as_of]), field="as_of")
    c = tables.customers
    first_default = tables.defaults.groupby("customer_id")["default_date"].min()
    reasons = pd.Series(pd.NA, index=c.index, dtype="string")
    kinds = pd.Series(pd.NA, index=c.index, dtype="string")
    not_yet = c["first_trade_date"] > as_of
    kinds[not_yet] = "not trading yet"
    reasons[not_yet] = "not trading yet on the date (first trade " + \
        c.loc[not_yet, "first_trade_date"].dt.strftime("%Y-%m-%d") + ")"
    defaulted = c["customer_id"].map(first_default)
    gone = defaulted.notna() & (defaulted <= as_of) & reasons.isna()
    kinds[gone] = "in default"
    reasons[gone] = "in default since " + defaulted[gone].dt.strftime("%Y-%m-%d")
    statements = tables.financial_statements
    filed = pd.unique(statements.loc[statements["filed_date"] <= as_of, "customer_id"].astype(object))
    blank = ~c["customer_id"].isin(filed) & ~c["customer_id"].isin(ledger.invoiced_by(as_of)) & reasons.isna()
    kinds[blank] = "no data at all"
    reasons[blank] = "no data at all: no financial statement filed and no invoice issued by the date"
    out = reasons.notna()
    rejected = pd.DataFrame({"customer_id": c.loc[out, "customer_id"].astype(str), "kind": kinds[out].astype(str),
                             "reason": reasons[out].astype(str)})
    if tables.rejected_customers is not None:
        rejected = pd.concat([tables.rejected_customers[REJECTED_COLUMNS], rejected], ignore_index=True)
    drop = feats["customer_id"].isin(rejected["customer_id"]).to_numpy()
    if drop.any():
        feats = feats[~drop]
    if not feats["customer_id"].is_monotonic_increasing:
        feats = feats.sort_values("customer_id", kind="stable")
    feats.index = pd.RangeIndex(len(feats))  # not reset_index: that copies the book
    return feats, rejected.sort_values("customer_id", kind="stable").reset_index(drop=True)


def score_chunk(chunk: pd.DataFrame, core: ScoringCore, previous: pd.DataFrame | None = None,
                forced_fallback: str | None = None) -> pd.DataFrame:
    """Decisions on current exposure (no new order) for feature rows, with the features they
    were made on and, given a previous rescore (indexed by customer id), the change against it."""
    return with_features(core.decide_frame(chunk, forced_fallback), chunk, core, previous)


def with_features(decided: pd.DataFrame, chunk: pd.DataFrame, core: ScoringCore,
                  previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """A chunk's decisions beside the feature rows they were made on (same customers, same
    order), compared with the previous rescore when one is given."""
    if len(decided) != len(chunk) or (decided["customer_id"].to_numpy() != chunk["customer_id"].to_numpy()).any():
        raise ScoringError("rescore: the decisions and the feature rows are not the same customers in the same order")
    # side by side without copying either (reset_index would copy the whole chunk)
    decided, meta = decided.copy(deep=False), chunk.copy(deep=False)
    decided.index = meta.index = pd.RangeIndex(len(chunk))
    scored = pd.concat([decided, meta.drop(columns=["customer_id"])], axis=1, copy=False)
    if core.model is not None:  # the scale the grades are on, beside them
        scale = core.model.bundle.master_scale
        at = scored.columns.get_loc("band") + 1 if "band" in scored.columns else len(scored.columns)
        scored.insert(at, SCALE_VERSION_COLUMN, scale.version)
        scored.insert(at + 1, SCALE_FINGERPRINT_COLUMN, scale.fingerprint)
    if previous is not None:
        scored = compare(scored, previous, core)
    return _typed(scored)


def compare(scored: pd.DataFrame, previous: pd.DataFrame, core: ScoringCore) -> pd.DataFrame:
    """``previous_grade``, ``previous_pd_12m``, ``grade_change`` (grades moved; positive is
    worse) and ``newly_over_limit`` (over the limit now, not before or not in the previous run).

    ``grade_change`` only where the previous row was graded on this run's scale (same version
    and edges): against another scale, or a previous rescore that records none, it is NA."""
    out = scored.copy(deep=False)  # new columns only
    prev = previous.reindex(out["customer_id"])
    out["previous_grade"] = prev["grade"].to_numpy(dtype=object)
    out["previous_pd_12m"] = prev["pd_12m"].to_numpy(dtype=float)
    scale = core.model.bundle.master_scale if core.model is not None else None
    rank = {str(g): i for i, g in enumerate(scale.grades if scale is not None else [])}
    now = out["grade"].astype(str).map(rank)
    before = pd.Series(out["previous_grade"]).astype(str).map(rank)
    change = (now - before).astype("Int64")
    if scale is not None:
        change = change.where(_on_scale(prev, scale.version, scale.fingerprint), pd.NA)
    out["grade_change"] = change
    over_now = out["exposure"] > out["credit_limit"]
    over_before = (prev["exposure"] > prev["credit_limit"]).to_numpy()
    out["newly_over_limit"] = (over_now & ~over_before).to_numpy()
    return out


def rescore_book(tables: RawTables, core: ScoringCore, as_of: pd.Timestamp, *, chunk_size: int = 20_000,
                 progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every active customer with data on ``as_of``, in memory (for small books and
    tests; ``rescore_to_file`` is the resumable one). Returns the scored book (decisions plus
    the features they were made on) and the feature rows, for the online store."""
    say = progress or (lambda _m: None)
    feats, _ = book_on(tables, core, as_of)
    feats, _ = with_seller_limits(feats, core, None, say)
    parts = []
    for start in range(0, len(feats), chunk_size):
        parts.append(score_chunk(feats.iloc[start:start + chunk_size], core))
        say(f"rescored {min(start + chunk_size, len(feats)):,}/{len(feats):,} customers")
    return pd.concat(parts, ignore_index=True), feats


# ---------------------------------------------------------------------------- to a file


@dataclass
class RescoreResult:
    out: Path
    rejected_path: Path
    summary_path: Path
    summary: dict[str, Any]
    features: pd.DataFrame = field(repr=False)
    #: per feature of the registry, the share of the book's customers it is known for
    coverage: dict[str, float] = field(default_factory=dict, repr=False)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _beside(out: Path, part: str) -> Path:
    """``out``'s name with ``part`` in place of its suffix: a file the rescore writes beside it."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.{part}")


def side_paths(out: Path) -> tuple[Path, Path, Path]:
    """Where the rejected rows, the summary and the unfinished work of ``out`` go."""
    return _beside(out, "rejected.parquet"), _beside(out, "summary.json"), out.with_name(f".{out.name}.parts")


def open_invoices_path(out: Path) -> Path:
    """Where the invoices open on the rescore's date go, beside ``out`` (the desk shows them)."""
    return _beside(out, "open_invoices.parquet")


def collections_paths(out: Path) -> tuple[Path, Path]:
    """Where the collections worklist and the stop list of ``out`` go, beside it."""
    return _beside(out, "collections.parquet"), _beside(out, "stop_list.parquet")


def _bar(done: int, total: int, rate: float, width: int = 24) -> str:
    share = done / total if total else 1.0
    filled = int(round(share * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {done:,}/{total:,} customers, {rate:,.0f} rows/s"


def _on_scale(prev: pd.DataFrame, version: str, fingerprint: str) -> np.ndarray:
    """Which previous rows were graded on this scale: the same version and, where recorded,
    the same fingerprint. A previous table without the columns is on none."""
    if SCALE_VERSION_COLUMN not in prev.columns:
        return np.zeros(len(prev), dtype=bool)
    same = (prev[SCALE_VERSION_COLUMN].astype("string") == version).fillna(False).to_numpy(dtype=bool)
    if SCALE_FINGERPRINT_COLUMN in prev.columns:
        fp = prev[SCALE_FINGERPRINT_COLUMN].astype("string")
        same &= (fp.isna() | (fp == fingerprint)).fillna(False).to_numpy(dtype=bool)
    return same


def read_previous(path: str | Path) -> pd.DataFrame:
    """A previous rescore's comparison columns, indexed by customer id (last row per id); its
    scale columns NA when it records none (written before scales had versions)."""
    prev = read_any(path)
    for col in PREVIOUS_COLUMNS:
        if col not in prev.columns:
            raise DataValidationError("previous", col, "column is missing (expected a file written by riskcast rescore)")
    prev = prev[PREVIOUS_COLUMNS + [c for c in PREVIOUS_SCALE_COLUMNS if c in prev.columns]].copy()
    for col in PREVIOUS_SCALE_COLUMNS:
        prev[col] = prev[col].astype("string") if col in prev.columns else pd.Series(pd.NA, index=prev.index,
                                                                                    dtype="string")
    prev["customer_id"] = prev["customer_id"].astype(str)
    return prev.drop_duplicates("customer_id", keep="last").set_index("customer_id")


ENGINES = ("local", "spark")


def rescore_to_file(tables: RawTables | Callable[[], RawTables], core: ScoringCore, as_of: pd.Timestamp,
                    out: str | Path, *,
                    previous: pd.DataFrame | None = None, run_key: dict[str, Any] | None = None,
                    progress: Progress | None = None, engine: str = "local",
                    spark_master: str | None = None) -> RescoreResult:
    """Rescore the book into ``out`` (Parquet), resumably; rejected rows and the summary beside it.

    ``tables`` may be a function that reads them: then a resumed run whose features were
    built does not read the raw tables at all, and the invoices are let go as soon as they
    are reduced to the ledger (half the memory of a large book).

    ``run_key`` names what the result depends on beyond the model and the configuration (the
    data files, the previous run): a saved partial run is resumed only when it matches, and
    otherwise discarded. ``engine="spark"`` scores the feature rows on Spark (``spark_master``,
    else local mode) instead of in this process; the files written are the same.
    """
    if engine not in ENGINES:
        raise InputError(f"engine: must be one of {', '.join(ENGINES)}, not {engine!r}", field="engine")
    say = progress or (lambda _m: None)
    if core.model is None:
        raise InputError(f"no champion model to rescore with: {core.model_error}", field="model")
    # monitoring's fallback mode holds for the whole run, as read when it starts
    forced = core.switch.active_reason() if core.switch is not None else None  # as order entry reads it
    if forced:
        say(f"{forced}: the scorecard decides every customer")
    if engine == "local" and not forced:
        core.compile_in_background()  # a new model's trees compile while the tables are read
    out = Path(out)
    as_of = pd.Timestamp(as_of)
    rejected_path, summary_path, work = side_paths(out)
    chunk_size = core.cfg.rescore.chunk_size
    manifest = {"as_of": str(as_of.date()), "model": [core.model.name, core.model.version],
                "registry": core.registry.version, "config": _digest(core.cfg.model_dump(mode="json")),
                "chunk_size": chunk_size, "engine": engine, "fallback": forced, "run": run_key or {}}
    manifest_path = work / "manifest.json"
    if work.exists():
        try:
            saved = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            saved = None
        if saved != manifest:
            say(f"an unfinished run with other arguments is in {work}: starting over")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        write_text(json.dumps(manifest, indent=2), manifest_path)

    feats_path, rej_path, book_path = work / "features.parquet", work / "rejected.parquet", work / "book.json"
    if feats_path.exists() and rej_path.exists() and book_path.exists():
        feats, rejected = pd.read_parquet(feats_path), pd.read_parquet(rej_path)
        saved_book = json.loads(book_path.read_text())
        n_customers, seller = int(saved_book["customers_in"]), saved_book["seller"]
        notes, receivables = saved_book.get("book_notes"), saved_book.get("receivables")
        say(f"resuming: the book's {len(feats):,} feature rows were already built")
        coverage = feature_coverage(feats, core.registry.names)
        fit, forced = fit_to_data(coverage, core, forced, say)
    else:
        try:
            feats, rejected, n_customers, notes, receivables = _build_book(tables, core, as_of, say,
                                                                           work / "open_invoices.parquet")
            coverage = feature_coverage(feats, core.registry.names)
            fit, forced = fit_to_data(coverage, core, forced, say)
            feats, desk_limits = with_approved_limits(feats, core.desk)
            if core.desk is not None:
                say(f"the credit desk: {desk_limits['approved_limits']:,} approved limits stand, "
                    f"{desk_limits['reviews_due']:,} fell due for review")
            feats, seller = with_seller_limits(feats, core, forced, say)
            for fact in ("approved_limit", "approved_terms_days"):  # last, in the order of the policy facts
                feats[fact] = feats.pop(fact)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)  # nothing saved yet: leave nothing behind
            raise
        write_text(json.dumps(json_ready({"customers_in": n_customers, "seller": seller, "book_notes": notes,
                                          "receivables": receivables})), book_path)
        write_parquet(rejected, rej_path)
        write_parquet(feats, feats_path)  # last: its presence says all three are complete
    del tables

    if engine == "spark":
        part_paths, done_before = _spark_parts(feats, core, work, previous, spark_master, forced, say)
    else:
        part_paths, done_before = _local_parts(feats, core, work, previous, forced, say)

    say(f"writing {out}")
    import pyarrow.parquet as pq

    note = fit.note() if fit is not None and not fit.fits and core.cfg.model_fit.action == "reason" else None
    with ParquetParts(out) as writer:
        for path in part_paths:
            writer.append(_with_fit_note(pq.read_table(path), note))
    write_parquet(rejected, rejected_path)
    if (work / "open_invoices.parquet").exists():  # a run resumed from an older version's work has none
        os.replace(work / "open_invoices.parquet", open_invoices_path(out))
    collections = collect(core, out, rejected, as_of, say)
    insurance = insure(core, out, work / "cover.parquet", as_of, say)
    referred = refer_to_desk(core, out, str(as_of.date()), say)
    watch = watch_book(core, out, work / "orders.parquet", previous is not None, as_of, say) \
        if core.cfg.rescore.receivables else None
    say("summarising the book")
    scored = pd.read_parquet(out, columns=_summary_columns(previous is not None))
    summary = book_summary(scored, rejected, n_customers, core.cfg.rescore.lgd,
                           [str(g) for g in core.model.bundle.master_scale.grades], previous)
    if receivables and receivables.get("history"):
        book_pd = exposure_pd(scored)
        matrix = provision(receivables["aging"], receivables["history"], book_pd)
        scored_aging = _aging_of(open_invoices_path(out), scored["customer_id"], core.cfg.receivables.buckets)
        if scored_aging is not None:  # the same receivables the PD x LGD x exposure figure covers
            part = provision(scored_aging, receivables["history"], book_pd)
            matrix["scored_customers"] = {"open": round(sum(scored_aging.values()), 2),
                                          "provision": part["provision"]}
        receivables = {**receivables, "provision": {**matrix, "pd_lgd_expected_loss": summary["expected_loss"]}}
    summary.update({"as_of": str(as_of.date()), "model": {"name": core.model.name, "version": core.model.version},
                    "fallback_mode": forced, "seller": seller, "book_notes": notes, "receivables": receivables,
                    "collections": collections, "watchlist": watch, "insurance": insurance,
                    "model_fit": fit.to_dict() if fit is not None else None,
                    "output": str(out), "rejected_file": str(rejected_path),
                    "chunks": len(part_paths), "chunks_resumed": done_before,
                    "desk": referred})
    write_text(json.dumps(json_ready(summary), indent=2, allow_nan=False), summary_path)
    shutil.rmtree(work, ignore_errors=True)
    return RescoreResult(out, rejected_path, summary_path, summary, feats, coverage)


def collect(core: ScoringCore, out: Path, rejected: pd.DataFrame, as_of: pd.Timestamp, say: Progress
            ) -> dict[str, Any] | None:
    """The collections worklist and the stop list beside ``out``, from the invoices open on the
    date, the PDs just scored and the steps on record on the desk; returns their summary."""
    opened = open_invoices_path(out)
    if not opened.exists():
        return None
    say("collections: the dunning ladder's worklist and the stop list")
    overdue = pd.read_parquet(opened, filters=[("days_past_due", ">", 0)])
    pds = customer_pds(pd.read_parquet(out, columns=["customer_id", "pd_12m"]), rejected)
    steps = pd.DataFrame(core.desk.steps()) if core.desk is not None else None
    work, stops, summary = collections_of(overdue, pds, core.cfg, as_of, steps)
    work_path, stop_path = collections_paths(out)
    write_parquet(work, work_path)
    write_parquet(stops, stop_path)
    return {**summary, "worklist_file": str(work_path), "stop_list_file": str(stop_path)}


def _aging_of(opened: Path, customers: pd.Series, buckets: tuple[int, ...]) -> dict[str, float] | None:
    """The aging of the open invoices of ``customers`` (the scored ones, not those set aside)."""
    if not opened.exists():
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from riskcast.data.receivables import bucket_labels, bucket_of

    inv = pq.read_table(opened, columns=["customer_id", "open_amount", "days_past_due"])
    keep = pc.is_in(inv.column("customer_id"), value_set=pa.array(customers.astype(str).to_numpy(), pa.string()))
    inv = inv.filter(keep)
    sums = np.bincount(bucket_of(inv.column("days_past_due").to_numpy(), buckets),
                       weights=inv.column("open_amount").to_numpy(), minlength=len(buckets) + 2)
    return {k: float(v) for k, v in zip(bucket_labels(buckets), sums)}


def insurance_paths(out: Path) -> tuple[Path, Path]:
    """Where the insured customers' view and the claims list of ``out`` go, beside it."""
    return _beside(out, "insurance.parquet"), _beside(out, "claims.parquet")


def insure(core: ScoringCore, out: Path, cover_path: Path, as_of: pd.Timestamp, say: Progress
           ) -> dict[str, Any] | None:
    """With a credit insurance table: each insured customer's exposure insured and uninsured
    and its expected loss net of the cover, and the claims past their threshold, beside
    ``out``; returns the book's figures."""
    if not cover_path.exists():
        return None
    say("credit insurance: insured exposure, expected loss net of cover, claims")
    cover = pd.read_parquet(cover_path).set_index("customer_id")
    opened = open_invoices_path(out)
    open_inv = pd.read_parquet(opened, columns=["customer_id", "invoice_id", "issue_date", "due_date", "open_amount",
                                                "days_past_due"]) if opened.exists() else None
    under = insurable(open_inv, cover) if open_inv is not None else None
    view = insured(pd.read_parquet(out, columns=["customer_id", "exposure", "pd_12m"]), cover, under)
    lgd = core.cfg.rescore.lgd
    view["expected_loss"] = np.round(view["pd_12m"] * lgd * view["exposure"], 2)
    view["expected_loss_net"] = np.round(net_expected_loss(view["pd_12m"].to_numpy(), lgd,
                                                           view["exposure"].to_numpy(), view["covered"].to_numpy()), 2)
    overdue = open_inv[open_inv["days_past_due"].to_numpy() > 0] if open_inv is not None else pd.DataFrame()
    claimed = claims(overdue, cover, as_of, core.cfg.insurance.claim_filing_days)
    view_path, claims_path = insurance_paths(out)
    write_parquet(view[view["insured_limit"].notna()].reset_index(drop=True), view_path)
    write_parquet(claimed, claims_path)
    return {**insurance_summary(view, lgd, claimed), "file": str(view_path), "claims_file": str(claims_path)}


def exposure_pd(scored: pd.DataFrame) -> float | None:
    """The scored book's PD weighted by exposure: the provision matrix's forward adjustment."""
    w = scored["exposure"].to_numpy(dtype=float)
    total = float(w.sum())
    return float((scored["pd_12m"].to_numpy(dtype=float) * w).sum() / total) if total > 0 else None


def watchlist_path(out: Path) -> Path:
    """Where the watchlist's hits of ``out`` go, beside it."""
    return _beside(out, "watchlist.parquet")


def watch_book(core: ScoringCore, out: Path, orders_path: Path, with_previous: bool, as_of: pd.Timestamp,
               say: Progress) -> dict[str, Any]:
    """The watchlist's hits beside ``out`` and, where the desk exists, a review case for each
    customer on it (once per rescore date: a run again refers nothing twice)."""
    say("watchlist: the early-warning triggers")
    cfg = core.cfg.watchlist
    cols = ["customer_id", "pd_12m", "grade", "band", "exposure", "credit_limit", "recommended_terms_days",
            "dbt_trend", "statement_age_days"]
    now = pd.read_parquet(out, columns=cols + (["previous_pd_12m", "grade_change"] if with_previous else []))
    if orders_path.exists():  # a run resumed from an older version's work has none
        now = now.merge(pd.read_parquet(orders_path), on="customer_id", how="left")
    desk = core.desk
    reviewed = pd.DataFrame(desk.review_grades(as_of.date())) if desk is not None else None
    grades = [str(g) for g in core.model.bundle.master_scale.grades]
    hits = watchlist(now, cfg, grades, reviewed)
    path = watchlist_path(out)
    write_parquet(hits, path)
    summary = {**watch_summary(hits), "file": str(path)}
    if desk is not None and cfg.open_reviews and len(hits):
        summary["reviews_opened"] = watch_to_desk(desk, now, hits, str(as_of.date()))
    return summary


def watch_to_desk(desk: Any, now: pd.DataFrame, hits: pd.DataFrame, as_of: str) -> int:
    """A review case for each customer on the watchlist, or its open case joined; returns how
    many cases were opened."""
    keys = ("trigger", "value", "reference", "threshold", "text")
    ids = hits["customer_id"].astype(str)
    known = desk.known_orders([watch_request_id(c, as_of) for c in pd.unique(ids)])  # a rescore run again
    fresh = ~np.array([watch_request_id(c, as_of) in known for c in ids], dtype=bool) if known else \
        np.ones(len(hits), dtype=bool)
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for row in zip(ids[fresh], *(hits.loc[fresh, k].tolist() for k in keys)):  # plain lists: thousands
        by_customer.setdefault(row[0], []).append(dict(zip(keys, row[1:])))
    if not by_customer:
        return 0
    wanted = now[now["customer_id"].astype(str).isin(by_customer)].drop_duplicates("customer_id")
    referrals = []
    for cid, pd_, grade, band, exposure, limit, terms in zip(
            wanted["customer_id"].astype(str), wanted["pd_12m"].tolist(), wanted["grade"].astype(str),
            wanted["band"].astype(str), wanted["exposure"].tolist(), wanted["credit_limit"].tolist(),
            wanted["recommended_terms_days"].tolist()):
        rows = by_customer[cid]
        referrals.append(Referral(cid, watch_request_id(cid, as_of), {
            "decision": "review", "decision_reason": "watchlist: " + "; ".join(r["text"] for r in rows),
            "pd_12m": float(pd_), "grade": grade, "band": band, "exposure": float(exposure),
            "recommended_limit": float(limit), "recommended_terms_days": int(terms), "as_of": as_of,
            "watchlist": rows}, review=True))
    before = desk.open_case_ids()
    cases = desk.refer(referrals, by="watchlist")
    return len(set(cases.values()) - before)


def watch_request_id(customer_id: str, as_of: str) -> str:
    """The watchlist referral's id: one per customer and rescore date."""
    return f"watchlist:{as_of}:{hashlib.sha256(customer_id.encode()).hexdigest()[:32]}"


def refer_to_desk(core: ScoringCore, out: Path, as_of: str, say: Progress) -> dict[str, int] | None:
    """The rescore's referrals as cases on the desk (opened, or joined to the customer's open
    case), and a review case for every approved limit whose review fell due."""
    if core.desk is None:
        return None
    k = core.cfg.serving.top_reasons
    cols = ["customer_id", "decision", "pd_12m", "score", "grade", "band", "decision_reason", "credit_limit",
            "limit_source", "recommended_limit", "recommended_terms_days", "fallback_reason", "exposure",
            "model_version", *[f"reason_{p + 1}" for p in range(k)]]
    scored = pd.read_parquet(out, columns=cols, filters=[("decision", "==", "refer")])
    desk = core.desk
    referrals = book_referrals(scored, as_of, k)
    # a rescore run again refers what its first run did: those are on the desk already
    known = desk.known_orders([r.request_id for r in referrals])
    new = [r for r in referrals if r.request_id not in known]
    before = desk.open_case_ids()
    cases = desk.refer(new, by="rescore") if new else {}
    opened = set(cases.values()) - before
    reviews = desk.open_reviews()
    report = {"referred": len(referrals), "on_the_desk_already": len(referrals) - len(new),
              "cases_opened": len(opened), "cases_joined": sum(cases[r.request_id] not in opened for r in new),
              "reviews_opened": len(set(reviews.values()) - before - opened)}
    say(f"the credit desk: {report['referred']:,} referrals ({report['on_the_desk_already']:,} on the desk already), "
        f"{report['cases_opened']:,} cases opened, {report['cases_joined']:,} joined an open case, "
        f"{report['reviews_opened']:,} review cases")
    return report


def fit_to_data(coverage: dict[str, float], core: ScoringCore, forced: str | None, say: Progress
                ) -> tuple[ModelFit | None, str | None]:
    """Whether a book of feature ``coverage`` holds what the model relied on (``model_fit``),
    said on stderr when it does not (not a progress line: ``--quiet`` keeps it), and the
    fallback mode that follows: the scorecard decides every customer when so configured."""
    fit = bundle_fit(core.model.bundle, coverage, core.cfg.model_fit)
    if fit is None or fit.fits:
        return fit, forced
    print(f"riskcast: {fit.note()}", file=sys.stderr, flush=True)
    if core.cfg.model_fit.action == "scorecard" and not forced:
        forced = "the data lacks what the model relied on"
        say(f"{forced}: the scorecard decides every customer")
    return fit, forced


def _with_fit_note(table: "pa.Table", note: str | None) -> "pa.Table":
    """A scored part with the ``model_fit`` column: the note on the rows the model decided."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if note is None:
        return table.append_column("model_fit", pa.nulls(len(table), pa.string()))
    by_model = pc.invert(pc.fill_null(table.column("fallback"), False))
    return table.append_column("model_fit", pc.if_else(by_model, pa.scalar(note), pa.scalar(None, pa.string())))


def with_seller_limits(feats: pd.DataFrame, core: ScoringCore, forced: str | None, say: Progress
                       ) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The feature rows with the book's limits after the seller's total cap, and what was cut.

    Every customer's limit is worked out first on current exposure; when all of them pass the
    seller's cap, ``seller_ceilings`` brings them within it, and each row carries what is left
    (``limit_ceiling``), its limit (``booked_limit``) and the book's total (``book_limits_total``),
    so that deciding the chunks, and order entry from the store, apply the same limits."""
    seller = core.cfg.seller
    if not isfinite(seller.total_cap):
        return feats, None
    say("the seller's cap: every customer's limit, then the book's total against it")
    band, limit, exposure = core.book_limits(feats, forced)
    cut = seller_ceilings(band, limit, exposure, seller)
    booked = np.where(np.isnan(cut.ceiling), limit, cut.ceiling)
    out = feats.copy(deep=False)  # new columns only
    # in the order of the policy facts, as a feature table lists them
    out["booked_limit"], out["limit_ceiling"] = booked, cut.ceiling
    out["book_limits_total"] = float(booked.sum())
    report = cut.to_dict()
    customer_cap = seller.customer_cap
    report["customer_cap"] = customer_cap if isfinite(customer_cap) else None
    report["customers_at_customer_cap"] = int((limit >= customer_cap - 0.005).sum())
    say(f"limits total {report['total_before']:,.0f} against the seller's cap of {report['cap']:,.0f}"
        + (f": {report['customers_cut']:,} customers' unused limits cut, total now {report['total_after']:,.0f}"
           if report["customers_cut"] else ": within it"))
    return out, report


def _build_book(tables: RawTables | Callable[[], RawTables], core: ScoringCore, as_of: pd.Timestamp,
                say: Progress, open_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, int, dict, dict | None]:
    """Feature rows, rejected rows, the number of customers read (bad records included), the
    notes on what was derived from the ledger or left out (``BookNotes``) and the book's
    receivables (``data.receivables``); the invoices open on ``as_of`` go to ``open_path``."""
    read = tables if callable(tables) else (lambda: tables)
    say("reading and validating the raw tables")
    book = read()
    n_customers = len(book.customers) + (len(book.rejected_customers) if book.rejected_customers is not None else 0)
    say(f"building the features of the book as of {as_of.date()}: {len(book.invoices):,} invoices, "
        f"{len(book.financial_statements):,} statements, {n_customers:,} customers")
    notes = book.notes
    for line in notes.lines(label=False):
        say(line)
    ledger = InvoiceLedger.from_invoices(book.invoices)
    receivables = None
    if core.cfg.rescore.receivables:
        write_parquet(open_invoices(book.invoices, as_of), open_path)
        write_parquet(ledger.order_pattern(as_of, core.cfg.watchlist.orders_recent_months).reset_index(),
                      open_path.with_name("orders.parquet"))
        r = core.cfg.receivables
        say("receivables: aging, DSO, collection effectiveness")
        receivables = book_receivables(book.invoices, as_of, r.buckets, r.dso_days, r.cei_days)
        if book.credit_insurance is not None:
            write_parquet(cover_on(book.credit_insurance, as_of).reset_index(), open_path.with_name("cover.parquet"))
        say("receivables: the provision matrix's loss rates from the ledger's history")
        days = PaymentDays(ledger.issue, ledger.due, ledger.paid, ledger.amount, ledger.part, ledger.part_day,
                           ledger.code, first_default_days(ledger.customers, book.defaults)
                           if len(book.defaults) else None)  # the ledger's day numbers: no second conversion
        receivables["history"] = loss_rates(days, None, as_of, r.buckets, core.cfg.training.horizon_months,
                                            r.provision_snapshots, r.provision_step_months)
    # the ledger holds what the features need of the invoices: let the table go
    book = dataclasses.replace(book, invoices=_empty_like(book.invoices))
    release_memory()
    say("payment, financial and industry features of the active customers")
    feats, rejected = book_on(book, core, as_of, ledger)
    del book, ledger
    release_memory()
    say(f"{len(feats):,} customers to score, {len(rejected):,} set aside with the reason")
    return feats, rejected, n_customers, notes.to_dict(), receivables


def _empty_like(df: pd.DataFrame) -> pd.DataFrame:
    """No rows, the same columns and types, and no tie to ``df``'s memory (an empty slice of an
    Arrow column still holds the whole column)."""
    return pd.DataFrame({c: pd.Series([], dtype=df[c].dtype) for c in df.columns})


def _part_paths(rows: int, chunk_size: int, work: Path) -> tuple[list[Path], int]:
    """The part file of each chunk, in order, and how many of them an earlier run saved."""
    paths = [work / f"part-{i:06d}.parquet" for i in range(-(-rows // chunk_size))]
    return paths, sum(p.exists() for p in paths)


def _local_parts(feats: pd.DataFrame, core: ScoringCore, work: Path, previous: pd.DataFrame | None,
                 forced: str | None, say: Progress) -> tuple[list[Path], int]:
    """Score the feature rows chunk by chunk in this process, each chunk saved as it is done;
    returns the part files in order and how many were already there."""
    chunk_size = core.cfg.rescore.chunk_size
    chunks = range(0, len(feats), chunk_size)
    part_paths, done_before = _part_paths(len(feats), chunk_size, work)
    if done_before:
        say(f"resuming: {done_before} of {len(part_paths)} chunks already scored")
    started = last_said = time.monotonic()
    scored_now = 0
    for i, start in enumerate(chunks):
        if part_paths[i].exists():
            continue
        chunk = feats.iloc[start:start + chunk_size]
        write_parquet(score_chunk(chunk, core, previous, forced), part_paths[i])
        scored_now += len(chunk)
        now = time.monotonic()
        if now - last_said >= 1.0 or i == len(part_paths) - 1:  # about once a second
            last_said = now
            # rows/s of this run's own work: a resumed run does not claim the chunks it found
            say(_bar(min(start + chunk_size, len(feats)), len(feats), scored_now / max(now - started, 1e-9)))
    return part_paths, done_before


def _spark_parts(feats: pd.DataFrame, core: ScoringCore, work: Path, previous: pd.DataFrame | None,
                 spark_master: str | None, forced: str | None, say: Progress) -> tuple[list[Path], int]:
    """Score the feature rows on Spark (one job, written in customer order), then cut its output
    into the same part files as the local engine, each beside its feature rows."""
    from .spark import decision_columns, input_columns, save_decision_model, score_spark, spark_session

    chunk_size = core.cfg.rescore.chunk_size
    part_paths, done_before = _part_paths(len(feats), chunk_size, work)
    if done_before == len(part_paths):
        return part_paths, done_before
    scored_dir = work / "spark-scored"
    if not (scored_dir / "_SUCCESS").exists():
        inputs = work / "spark-input.parquet"
        write_parquet(feats[input_columns(list(feats.columns), core)], inputs)
        model_dir = save_decision_model(core, work / "decision-model", forced_fallback=forced)
        with spark_session(spark_master) as spark:
            say(f"scoring {len(feats):,} customers on Spark ({spark.sparkContext.master})")
            started = time.monotonic()
            decided = score_spark(spark.read.parquet(str(inputs)), model_dir, core)
            (decided.select(*decision_columns(core.cfg.serving.top_reasons)).orderBy("customer_id")
             .write.mode("overwrite").parquet(str(scored_dir)))
            took = time.monotonic() - started
        say(f"Spark scored {len(feats):,} customers in {took:.1f} s ({len(feats) / max(took, 1e-9):,.0f} rows/s)")
    decided_rows = _reader(sorted(scored_dir.glob("part-*.parquet")), chunk_size)
    for i, start in enumerate(range(0, len(feats), chunk_size)):
        decided = next(decided_rows, None)
        chunk = feats.iloc[start:start + chunk_size]
        if decided is None or len(decided) != len(chunk):
            raise ScoringError(f"rescore: Spark returned fewer rows than the {len(feats):,} it was given")
        if not part_paths[i].exists():
            write_parquet(with_features(decided, chunk, core, previous), part_paths[i])
    if next(decided_rows, None) is not None:
        raise ScoringError(f"rescore: Spark returned more rows than the {len(feats):,} it was given")
    return part_paths, done_before


def _reader(files: list[Path], size: int):
    """The rows of Parquet files read in order, regrouped ``size`` at a time."""
    import pyarrow.parquet as pq

    held: list[pd.DataFrame] = []
    n = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=size):
            held.append(batch.to_pandas())
            n += batch.num_rows
            while n >= size:
                block = pd.concat(held, ignore_index=True)
                yield block.iloc[:size].reset_index(drop=True)
                held, n = [block.iloc[size:]], len(block) - size
    if n:
        yield pd.concat(held, ignore_index=True)


def _summary_columns(with_previous: bool) -> list[str]:
    cols = ["customer_id", "pd_12m", "grade", "band", SCALE_VERSION_COLUMN, SCALE_FINGERPRINT_COLUMN, "exposure",
            "credit_limit", "industry", "fallback", "decision", "decision_rule"]
    return cols + (["previous_grade", "grade_change", "newly_over_limit"] if with_previous else [])


# ---------------------------------------------------------------------------- summary


def book_summary(scored: pd.DataFrame, rejected: pd.DataFrame, customers_in: int, lgd: float,
                 grades: list[str], previous: pd.DataFrame | None = None) -> dict[str, Any]:
    """What the risk team reads after a rescore (pure).

    Expected loss is PD x LGD x EAD with EAD the open receivables; concentration is the
    largest industry's share of the exposure; ``grade_concentration`` is how crowded the grades
    are (Herfindahl of the grade shares, the largest grade): the scale is configuration, so a
    crowded grade is reported, not split. Against a previous rescore on another scale (or
    none recorded) ``migration`` says why no grades are compared.
    """
    n = len(scored)
    pd_ = scored["pd_12m"].astype(float)
    ead = scored["exposure"].astype(float).clip(lower=0)
    el = (pd_.fillna(0) * lgd * ead)
    counts = scored["grade"].astype(str).value_counts()
    order = [g for g in grades if g in counts.index] + sorted(set(counts.index) - set(grades))
    # the unknown industry is no industry: no concentration in it, its share said apart
    by_industry = ead.groupby(scored["industry"].astype(str)).sum().sort_values(ascending=False)
    unknown_ead = float(by_industry.get(UNKNOWN_INDUSTRY, 0.0))
    by_industry = by_industry.drop(UNKNOWN_INDUSTRY, errors="ignore")
    top = scored.assign(ead=ead, el=el).nlargest(10, "ead")
    out: dict[str, Any] = {
        "customers_in": int(customers_in), "scored": int(n), "rejected": int(len(rejected)),
        "rejected_by_reason": _reason_counts(rejected),
        "fallback": int(scored["fallback"].sum()),
        "decisions": {str(k): int(v) for k, v in scored["decision"].value_counts().items()},
        "decisions_by_rule": {str(k): int(v) for k, v in scored["decision_rule"].value_counts().items()},
        "decisions_by_band": {str(b): {str(k): int(v) for k, v in g.value_counts().items()}
                              for b, g in scored["decision"].groupby(scored["band"].astype(str))},
        "credit_limits": float(scored["credit_limit"].sum()),
        "scale": _scale_of(scored),
        "grade_distribution": {g: {"customers": int(counts[g]), "share": float(counts[g] / n)} for g in order},
        "grade_concentration": concentration(scored["grade"], _scale_order(scored["grade"], grades)),
        "exposure": float(ead.sum()), "lgd": lgd, "expected_loss": float(el.sum()),
        "expected_loss_share_of_exposure": float(el.sum() / ead.sum()) if ead.sum() > 0 else 0.0,
        "mean_pd": float(pd_.mean()),
        "over_limit": int((scored["exposure"] > scored["credit_limit"]).sum()),
        "top_exposures": [{"customer_id": str(r.customer_id), "exposure": float(r.ead), "pd_12m": float(r.pd_12m),
                           "grade": str(r.grade), "expected_loss": float(r.el)} for r in top.itertuples()],
        "largest_industry": ({"industry": str(by_industry.index[0]), "exposure": float(by_industry.iloc[0]),
                              "share": float(by_industry.iloc[0] / ead.sum()) if ead.sum() > 0 else 0.0}
                             if len(by_industry) else None),
        "industry_unknown_share": unknown_ead / ead.sum() if ead.sum() > 0 else 0.0,
    }
    if previous is not None:
        keep = ["customer_id", "grade", *PREVIOUS_SCALE_COLUMNS]
        prev = previous.reset_index()
        out["migration"] = grade_migration(prev[[c for c in keep if c in prev.columns]],
                                           scored[[c for c in keep if c in scored.columns]], "grade", names=RUN_NAMES)
        out["newly_over_limit"] = int(scored["newly_over_limit"].sum())
        out["new_customers"] = int(scored["previous_grade"].isna().sum())
    return out


def _scale_order(labels: pd.Series, grades: list[str]) -> list[str]:
    """The scale's grades, then any other label the book holds (rows without a grade left out)."""
    found = set(labels.dropna().astype(str))
    return list(grades) + sorted(found - set(grades)) or ["-"]


def _scale_of(scored: pd.DataFrame) -> dict[str, Any] | None:
    """The scale the book was graded on, from its columns (None when it records none)."""
    if SCALE_VERSION_COLUMN not in scored.columns or not scored[SCALE_VERSION_COLUMN].notna().any():
        return None
    versions = sorted(scored[SCALE_VERSION_COLUMN].dropna().astype(str).unique())
    prints = (sorted(scored[SCALE_FINGERPRINT_COLUMN].dropna().astype(str).unique())
              if SCALE_FINGERPRINT_COLUMN in scored.columns else [])
    return {"version": ", ".join(versions), "fingerprint": ", ".join(prints) or None}


def _reason_counts(rejected: pd.DataFrame) -> dict[str, int]:
    """Rejections by kind."""
    return {str(k): int(v) for k, v in rejected["kind"].value_counts().items()}


def print_summary(summary: dict[str, Any], say: Callable[[str], None] = print) -> None:
    """The short table printed after a rescore."""
    s = summary
    say(f"customers in {s['customers_in']:,} = scored {s['scored']:,} + rejected {s['rejected']:,}"
        + (f"  ({', '.join(f'{k}: {v:,}' for k, v in s['rejected_by_reason'].items())})" if s["rejected"] else ""))
    if s.get("book_notes"):
        for line in BookNotes.from_dict(s["book_notes"]).lines(label=False):
            say(line)
    fit = s.get("model_fit")
    if fit and not fit["fits"]:
        say(f"WARNING: {fit['note']}")
    scale = s.get("scale")
    say(("grades" + (f" (scale {scale['version']})" if scale else "") + ": ")
        + "  ".join(f"{g}:{v['customers']:,}" for g, v in s["grade_distribution"].items()))
    if s.get("grade_concentration"):
        say("grade concentration: " + describe_concentration(s["grade_concentration"])
            + " (the scale is configuration: crowded grades are reported, never split)")
    say("decisions: " + "  ".join(f"{k}:{v:,}" for k, v in s["decisions"].items())
        + f"; scorecard fallback for {s['fallback']:,}")
    say("why: " + "  ".join(f"{k}:{v:,}" for k, v in s["decisions_by_rule"].items()))
    sel = s.get("seller")
    if sel:
        say(f"credit limits {s['credit_limits']:,.0f} against the seller's cap of {sel['cap']:,.0f}"
            + (f" ({sel['customers_cut']:,} customers' unused limits cut from a total of {sel['total_before']:,.0f}, "
               "the weakest bands' most: column limit_ceiling)" if sel["customers_cut"] else ""))
    say(f"exposure {s['exposure']:,.0f}; expected loss (PD x LGD {s['lgd']:.0%} x exposure) "
        f"{s['expected_loss']:,.0f} ({s['expected_loss_share_of_exposure']:.2%} of exposure); "
        f"over limit {s['over_limit']:,}")
    if s.get("largest_industry"):
        li = s["largest_industry"]
        say(f"largest industry: {li['industry']} with {li['share']:.1%} of the exposure"
            + (f"; industry unknown for {s['industry_unknown_share']:.1%}" if s.get("industry_unknown_share") else ""))
    elif s.get("industry_unknown_share"):
        say(f"industry: unknown for {s['industry_unknown_share']:.1%} of the exposure (the data gives none)")
    say("top exposures: " + "  ".join(f"{t['customer_id']} {t['exposure']:,.0f} (grade {t['grade']})"
                                      for t in s["top_exposures"][:5]))
    if s.get("receivables"):
        for line in receivables_lines(s["receivables"]):
            say(line)
    if s.get("collections"):
        for line in collections_lines(s["collections"]):
            say(line)
    if s.get("watchlist"):
        for line in watchlist_lines(s["watchlist"]):
            say(line)
    if s.get("insurance"):
        for line in insurance_lines(s["insurance"]):
            say(line)
    desk = s.get("desk")
    if desk:
        say(f"credit desk: {desk['referred']:,} referred -> {desk['cases_opened']:,} cases opened, "
            f"{desk['cases_joined']:,} joined the customer's open case, {desk['on_the_desk_already']:,} on the desk "
            f"already; {desk['reviews_opened']:,} review cases for limits past their review date")
    mig = s.get("migration")
    if mig and mig.get("compared") is False:
        say(f"migration against the previous run: {mig['reason']}; newly over limit {s['newly_over_limit']:,}; "
            f"new customers {s['new_customers']:,}")
    if mig and mig.get("customers"):
        grades = mig["grades"]
        say(f"migration against the previous run ({mig['customers']:,} customers in both; rows: then, columns: now): "
            f"{mig['upgrades']:,} upgrades, {mig['downgrades']:,} downgrades; newly over limit {s['newly_over_limit']:,}; "
            f"new customers {s['new_customers']:,}")
        say("      " + "".join(f"{g:>7s}" for g in grades))
        for g in grades:
            say(f"{g:>6s}" + "".join(f"{mig['counts'][g][h]:7d}" for h in grades))
