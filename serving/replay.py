"""Replay: decide a recorded decision again from its audit row and say whether it is the same.

Each row holds the features and facts the decision used, the order, the model version, the
fingerprint of the configuration (its text is in the log's ``configurations``) and the
fallback the environment imposed. Replay loads that model version (the service's local copy,
else the MLflow registry by version) and that configuration, decides through the scoring
core's order-entry path from the recorded inputs only, and compares the answer with the one
sent, field by field. Nothing is written to the decisions; opening an older log upgrades its
schema, as the service would.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

from pydantic import ValidationError

from riskcast.config import RiskcastConfig, WorkPaths, config_path_for, load_config, workdir
from riskcast.errors import InputError, RiskcastError
from riskcast.training.tracking import LoadedModel

from .audit import AuditLog, sqlite_url

Status = Literal["identical", "different", "not_replayable"]


@dataclass(frozen=True)
class Replayed:
    """One recorded decision decided again: identical, different (with the fields that
    differ: path, recorded, replayed) or not replayable (with why)."""

    request_id: str
    status: Status
    differences: tuple[tuple[str, Any, Any], ...] = ()
    note: str | None = None


@dataclass
class _Cache:
    models: dict[tuple[str, str], LoadedModel | str] = field(default_factory=dict)
    configs: dict[str, RiskcastConfig | str] = field(default_factory=dict)
    cores: dict[tuple, Any] = field(default_factory=dict)


def open_log(home: str | Path | None = None, config_path: str | Path | None = None,
             audit_url: str | None = None) -> AuditLog:
    """The audit log of a work directory, as the service finds it (``audit_url``, else
    ``RISKCAST_AUDIT_URL``, else ``serving.audit_url``, else ``audit.sqlite``); a SQLite log
    that does not exist is an error, not a new empty log."""
    paths = WorkPaths(root=workdir(home))
    url = (audit_url or os.environ.get("RISKCAST_AUDIT_URL")
           or load_config(config_path_for(paths.root, config_path)).serving.audit_url)
    if not url:
        if not paths.audit.exists():
            raise InputError(f"workdir: no audit log at {paths.audit}; nothing was decided with this work directory",
                             field="workdir")
        url = sqlite_url(paths.audit)
    return AuditLog(url)


def replay(home: str | Path | None = None, request_ids: Sequence[str] | None = None, *, last: int | None = None,
           config_path: str | Path | None = None, audit_url: str | None = None) -> list[Replayed]:
    """Replay the decisions of ``request_ids`` (a missing one is reported as not replayable),
    else the ``last`` N, else every decision on record, oldest first."""
    paths = WorkPaths(root=workdir(home))
    log = open_log(home, config_path, audit_url)
    try:
        rows = log.records(request_ids=list(request_ids) if request_ids else None,
                           last=None if request_ids else last)
        cache = _Cache()
        out = [_replay_row(row, log, paths, cache) for row in rows]
    finally:
        log.close()
    if request_ids:
        found = {r.request_id for r in out}
        out += [Replayed(rid, "not_replayable", note="no decision with this request_id is on record")
                for rid in dict.fromkeys(request_ids) if rid not in found]
    return out


def _replay_row(row: dict[str, Any], log: AuditLog, paths: WorkPaths, cache: _Cache) -> Replayed:
    rid = row["request_id"]
    if row.get("inputs") is None or row.get("answer") is None:
        return Replayed(rid, "not_replayable", note="recorded before the log kept inputs and answers (audit schema 1)")
    core = _core_for(row, log, paths, cache)
    if isinstance(core, str):
        return Replayed(rid, "not_replayable", note=core)
    try:
        again = json.loads(json.dumps(core.decide_recorded(row)))
    except RiskcastError as exc:
        return Replayed(rid, "not_replayable", note=str(exc))
    diffs = tuple(_differences(json.loads(row["answer"]), again))
    return Replayed(rid, "different" if diffs else "identical", diffs)


def _core_for(row: dict[str, Any], log: AuditLog, paths: WorkPaths, cache: _Cache) -> Any:
    """The scoring core of a row's model version and configuration (one per pair), or why
    there can be none."""
    from .core import ScoringCore

    fp = row["config_fingerprint"]
    env = json.loads(row["environment"]) if row.get("environment") else {}
    name, version = row["model_name"], row["model_version"]
    key = (fp, name, version, env.get("model_error"))
    if key in cache.cores:
        return cache.cores[key]
    cfg = cache.configs.get(fp)
    if cfg is None:
        text = log.configuration(fp) if fp else None
        if text is None:
            cfg = f"configuration {fp} is not in the log's configurations"
        else:
            try:
                cfg = RiskcastConfig.model_validate_json(text)
            except ValidationError as exc:
                err = exc.errors()[0]
                cfg = (f"configuration {fp} cannot be read by this version: "
                       f"{'.'.join(map(str, err['loc']))}: {err['msg']}")
        cache.configs[fp] = cfg
    if isinstance(cfg, str):
        core: Any = cfg
    elif version is None:  # no model could be loaded when it was decided: the same again
        core = ScoringCore(cfg, None, None, model_error=env.get("model_error"))
    else:
        model = cache.models.get((name, version))
        if model is None:
            model = cache.models[(name, version)] = _load_version(paths, name, version)
        core = model if isinstance(model, str) else ScoringCore(cfg, model, None)
    cache.cores[key] = core
    return core


def _load_version(paths: WorkPaths, name: str, version: str) -> LoadedModel | str:
    """Model ``name`` version ``version``: the service's local copy, else the registry's
    (copied beside the others, as the service copies it). Returns why not, as text, when
    neither can be read."""
    from riskcast.training import tracking

    from .runtime import load_model_version

    tracking.configure(paths.root)
    model, error = load_model_version(paths, name, version, "replay")
    return model if model is not None else str(error)


#: answer fields a later version added: an answer recorded before them lacks them, and that
#: is no difference (what decided is compared; the credit desk's fields say where it stands)
ADDED_FIELDS = frozenset({"limit_source", "recommended_limit", "case_id"})


def _differences(recorded: Any, replayed: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every leaf where the two answers differ, named by its path (``reasons[0].impact``)."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for k in dict.fromkeys([*recorded, *replayed]):
            where = f"{path}.{k}" if path else str(k)
            if not path and k in ADDED_FIELDS and k not in recorded:
                continue
            if k not in recorded or k not in replayed:
                yield where, recorded.get(k, "<absent>"), replayed.get(k, "<absent>")
            else:
                yield from _differences(recorded[k], replayed[k], where)
    elif isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        for i, (a, b) in enumerate(zip(recorded, replayed)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif recorded != replayed or type(recorded) is not type(replayed):
        yield path, recorded, replayed
