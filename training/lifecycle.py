"""The registry's lifecycle by hand: list the versions, promote one to champion, roll back.

Every change of champion names who made it, when and why: on the model version (its
``champion.*`` tags) and in the registered model's champion history (``tracking.
HISTORY_PREFIX``), which the promotion gate also writes to. A rollback walks that history
back; the decisions here are pure functions of it, the MLflow client calls are at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from riskcast.errors import InputError

from . import tracking
from .tracking import CHAMPION, ChampionEvent

#: a reason is a sentence or a paragraph, not a document: it lives in registry tags
MAX_REASON = 1000


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as a validator reads it."""

    version: str
    run_id: str | None
    run_name: str | None
    created: datetime
    aliases: tuple[str, ...]
    test_auc: float | None
    gate_passed: bool | None  # None: registered without a gate verdict on record
    gate_reason: str | None
    reference_rows: int | None  # rows of the monitoring reference kept with it, None: none
    history: tuple[ChampionEvent, ...]  # the champion changes that made or unmade it


def _text(value: object, field: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InputError(f"{field}: required (a non-empty text saying {'why' if field == 'reason' else 'who'})",
                         field=field)
    if len(text) > MAX_REASON:
        raise InputError(f"{field}: at most {MAX_REASON} characters, got {len(text)}", field=field)
    return text


def _versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        raise InputError(f"model_name: no registered model named {model_name!r}", field="model_name") from None
    found = client.search_model_versions(f"name = '{model_name}'")
    return sorted(found, key=lambda mv: int(mv.version))


def _version(versions: Sequence[ModelVersion], version: object, field: str = "version") -> ModelVersion:
    key = str(version).strip()
    for mv in versions:
        if str(mv.version) == key:
            return mv
    known = ", ".join(str(mv.version) for mv in versions) or "none"
    raise InputError(f"{field}: the model has no version {key!r} (versions: {known})", field=field)


def _gate(client: MlflowClient, mv: ModelVersion) -> tuple[bool | None, str | None, str | None, float | None]:
    """Gate verdict, its reason, the run's name and its test AUC, from the version's run."""
    try:
        run = client.get_run(mv.run_id)
    except MlflowException:  # the run was deleted: the version stands without its record
        return None, None, None, None
    tags = run.data.tags
    passed = {"True": True, "False": False}.get(tags.get("gate.passed", ""))
    auc = run.data.metrics.get("test_auc")
    return passed, tags.get("gate.reason"), run.info.run_name, None if auc is None else float(auc)


def lineage(history: Sequence[ChampionEvent]) -> list[str]:
    """The champions in the order they took over, with the ones rolled back removed: the
    last is the current champion (if nobody moved the alias outside riskcast), the one
    before it is where a rollback goes."""
    stack: list[str] = []
    for e in history:
        if e.action == "rollback":
            while stack and stack[-1] != e.version:
                stack.pop()
            if not stack:
                stack.append(e.version)
        elif not stack or stack[-1] != e.version:
            stack.append(e.version)
    return stack


def rollback_target(history: Sequence[ChampionEvent], current: str | None, existing: set[str]) -> str | None:
    """The previous champion in ``history`` that still exists, or None when there is none."""
    stack = [v for v in lineage(history) if v in existing]
    while stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None


def list_versions(model_name: str) -> list[VersionInfo]:
    """Every version of ``model_name``, oldest first."""
    client = MlflowClient()
    versions = _versions(client, model_name)
    model = client.get_registered_model(model_name)
    history = tracking.history_from_tags(dict(model.tags))
    aliases: dict[str, list[str]] = {}
    for alias, v in (model.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    out = []
    for mv in versions:
        passed, reason, run_name, auc = _gate(client, mv)
        rows = (mv.tags or {}).get("reference_rows")
        v = str(mv.version)
        out.append(VersionInfo(
            version=v, run_id=mv.run_id, run_name=run_name,
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc),
            aliases=tuple(sorted(aliases.get(v, ()))), test_auc=auc, gate_passed=passed, gate_reason=reason,
            reference_rows=int(rows) if rows and rows.isdigit() else None,
            history=tuple(e for e in history if v in (e.version, e.previous))))
    return out


def promote(model_name: str, version: str | int, reason: str, by: str, override_gate: bool = False,
            *, at: datetime | None = None) -> ChampionEvent:
    """Move ``champion`` to ``version``. A version whose promotion gate failed (or that has
    no verdict on record) is promoted only with ``override_gate``, and the override is
    recorded with the reason."""
    reason, by, stamp = _text(reason, "reason"), _text(by, "by"), _iso(at)
    client = MlflowClient()
    mv = _version(_versions(client, model_name), version)
    target = str(mv.version)
    current = tracking.alias_version(client, model_name, CHAMPION)
    if current == target:
        raise InputError(f"version: {target} is already the champion of {model_name}", field="version")
    passed, gate_reason, _, _ = _gate(client, mv)
    if passed is not True and not override_gate:
        why = f"its promotion gate failed ({gate_reason})" if passed is False else "it has no gate verdict on record"
        raise InputError(f"override_gate: version {target} cannot be promoted: {why}; promote it with "
                         "override_gate (and say why in the reason) to do so anyway", field="override_gate")
    client.set_registered_model_alias(model_name, CHAMPION, target)
    return tracking.record_champion_change(
        model_name, action="promote", version=target, previous=current, by=by, reason=reason,
        override_gate=passed is not True, at=stamp)


def rollback(model_name: str, reason: str, by: str, to: str | int | None = None,
             *, at: datetime | None = None) -> ChampionEvent:
    """Move ``champion`` back: to the champion before the current one in the history, or to
    ``to``, which must have been champion before (any other version is a promotion)."""
    reason, by, stamp = _text(reason, "reason"), _text(by, "by"), _iso(at)
    client = MlflowClient()
    versions = _versions(client, model_name)
    history = tracking.champion_history(model_name)
    current = tracking.alias_version(client, model_name, CHAMPION)
    if current is None:
        raise InputError(f"model_name: {model_name} has no champion to roll back", field="model_name")
    if to is None:
        target = rollback_target(history, current, {str(mv.version) for mv in versions})
        if target is None:
            raise InputError(f"to: {model_name} has no previous champion on record to roll back to "
                             f"(champion: version {current}); name a version with --to or promote one", field="to")
    else:
        target = str(_version(versions, to, field="to").version)
        if target == current:
            raise InputError(f"to: version {target} is already the champion of {model_name}", field="to")
        if target not in {e.version for e in history}:
            raise InputError(f"to: version {target} was never champion of {model_name}; a rollback returns to a "
                             "former champion (promote it instead)", field="to")
    client.set_registered_model_alias(model_name, CHAMPION, target)
    return tracking.record_champion_change(model_name, action="rollback", version=target, previous=current,
                                           by=by, reason=reason, at=stamp)


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise InputError("at: a time zone is required (UTC)", field="at")
    return at.astimezone(timezone.utc).isoformat(timespec="seconds")


def format_versions(versions: Sequence[VersionInfo]) -> str:
    """The version list as a reviewer reads it, newest first: one line per version, then its
    gate's reasons and the champion changes that made or unmade it."""
    if not versions:
        return "no versions registered"
    lines = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        aliases = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        auc = f"test AUC {v.test_auc:.4f}" if v.test_auc is not None else "test AUC -"
        gate = {True: "gate passed", False: "gate failed", None: "no gate verdict"}[v.gate_passed]
        ref = f"reference {v.reference_rows:,} rows" if v.reference_rows is not None else "no reference"
        lines.append(f"v{v.version}{aliases}  {v.created:%Y-%m-%d %H:%M} UTC  {auc}  {gate}  {ref}  "
                     f"run {v.run_name or '-'}")
        if v.gate_reason:
            lines.append(f"    gate: {v.gate_reason}")
        lines += [f"    {e}" for e in v.history]
    return "\n".join(lines)
