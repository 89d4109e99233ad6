"""Assembling the scoring core from a work directory: configuration, champion bundle, store,
fallback switch and audit log; and keeping every worker of the service on one model version.

The champion is resolved in the MLflow registry and its bundle copied into the work directory
(``serving/models/<name>/<version>/bundle``, staged beside it and renamed into place, so two
workers fetching the same version never see or delete half a copy); when the registry cannot be
reached the last copy answers, so the service still starts. A copy is checked against its
bundle's digests before it is parsed: a damaged one is fetched again (and moved aside), and when
the registry cannot give it, its intact part answers (the scorecard or the model).

A reload reaches one worker of the service. It writes the version it loaded to
``serving/models/<name>/served.json``; every worker stats that file on each call (about a
microsecond) and, when it changed, loads that version from the local copy before answering.
Neither swaps in a version that lacks a part the served one has or cannot score a probe row:
a reload never makes things worse.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from riskcast.config import RiskcastConfig, WorkPaths, config_path_for, load_config, workdir
from riskcast.data.io import atomic_path
from riskcast.env import offline_environment
from riskcast.errors import ModelUnavailableError
from riskcast.features.store import FeatureStore
from riskcast.training import tracking
from riskcast.training.bundle import ModelBundle, bundle_damage
from riskcast.training.tracking import LoadedModel

from .audit import AuditLog, sqlite_url
from .core import ScoringCore
from .desk.store import DeskStore
from .switch import FallbackSwitch

#: staging folders and incomplete copies moved aside are removed once older than this (seconds):
#: by then no process that made or read them is still at it
LEFTOVER_AGE_S = 86_400.0
#: a worker that could not load the served version tries again after this many seconds
FOLLOW_RETRY_S = 30.0


# -- the local copies ------------------------------------------------------------------------

def is_complete(version_dir: Path) -> bool:
    """A version's local copy is complete once its bundle's metadata is there: the copy is
    renamed into place whole, so the marker never precedes the files."""
    return (version_dir / "bundle" / "metadata.json").is_file()


def is_intact(version_dir: Path) -> bool:
    """A complete copy whose files all match the bundle's manifest (read, not parsed)."""
    return is_complete(version_dir) and not bundle_damage(version_dir / "bundle")


def cache_version(name: str, version: str, home: Path,
                  fetch: Callable[[str, str, Path], Path] | None = None, *, refresh: bool = False) -> Path:
    """The folder holding model ``name`` version ``version`` under ``home``, copied from the
    registry unless a complete copy is there. ``fetch(name, version, into)`` returns the folder
    of the downloaded bundle (default: the MLflow registry's artifacts). ``refresh``: the copy
    there is damaged; fetch it again (refused when the registry's copy is damaged too) and
    put it in place of the damaged one, unless an intact copy got there meanwhile.

    The copy is staged in a folder of its own beside the others and renamed into place: a worker
    that finds a complete copy there first keeps it (another may be reading it) and drops its
    own; an incomplete (or, on refresh, damaged) folder in the way is moved aside, not deleted
    under a reader."""
    target = home / version
    keep = is_intact if refresh else is_complete
    if keep(target):
        return target
    home.mkdir(parents=True, exist_ok=True)
    _purge_leftovers(home)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".staging", dir=home))
    try:
        bundle = (fetch or _from_registry)(name, version, staging / "download")
        staged = staging / "version"
        shutil.copytree(bundle, staged / "bundle")
        if not is_complete(staged):
            raise FileNotFoundError(f"model {name} version {version}: the registry's copy has no bundle/metadata.json")
        if refresh and (damage := bundle_damage(staged / "bundle")):
            raise OSError(f"model {name} version {version}: the registry's copy is damaged too "
                          f"({_damage_text(damage)})")
        _place(staged, target, keep)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # ours alone: nobody else reads a staging folder
    return target


def _from_registry(name: str, version: str, into: Path) -> Path:
    import mlflow

    into.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(into)))
    return local / "artifacts" / "bundle"


def _place(staged: Path, target: Path, keep: Callable[[Path], bool] = is_complete) -> None:
    """Rename ``staged`` to ``target`` unless a copy ``keep`` accepts got there first."""
    for _ in range(3):
        try:
            os.rename(staged, target)  # atomic; refused when target is a folder with files
            return
        except OSError:
            if keep(target):
                return  # another worker's copy: keep it
            try:  # an incomplete or damaged leftover: out of the way, not deleted under a reader
                os.rename(target, target.with_name(f".{target.name}.incomplete-{uuid.uuid4().hex[:8]}"))
            except FileNotFoundError:
                pass
    if not keep(target):
        raise OSError(f"version {target.name}: the local copy could not be put in place")


def _purge_leftovers(home: Path) -> None:
    """Staging folders of processes long gone and incomplete copies moved aside long ago."""
    cutoff = time.time() - LEFTOVER_AGE_S
    for entry in home.iterdir():
        if not entry.name.startswith(".") or not (entry.name.endswith(".staging") or ".incomplete-" in entry.name):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def load_version(cfg: RiskcastConfig, paths: WorkPaths, version: str, alias: str | None = None,
                 ) -> tuple[LoadedModel | None, str | None]:
    """Version ``version`` of ``serving.model_name`` (see ``load_model_version``)."""
    return load_model_version(paths, cfg.serving.model_name, version, alias or cfg.serving.alias)


def load_model_version(paths: WorkPaths, name: str, version: str, alias: str) -> tuple[LoadedModel | None, str | None]:
    """Model ``name`` version ``version``: the work directory's local copy, fetched from the
    registry (MLflow configured by the caller) when there is none, and again when the copy is
    damaged (the damaged one moved aside). When the registry cannot give it again, the parts
    of the copy that are intact answer (a damaged model file: the scorecard; a damaged
    scorecard: the model). Returns (model, why not); with a model, what is damaged, if any."""
    home = paths.model_cache / name
    try:
        target = cache_version(name, version, home)
    except Exception as exc:  # registry down, version gone, disk full
        return None, f"model {name} version {version}: no local copy and the registry cannot give it ({_problem(exc)})"
    bundle, error = _read_bundle(target)
    damage = bundle.damaged if bundle is not None else {}
    if bundle is None or damage:
        try:
            target = cache_version(name, version, home, refresh=True)
        except Exception as exc:  # registry down, or its copy damaged as well
            why = f"the local copy is damaged ({error or _damage_text(damage)}) and the registry cannot give it " \
                  f"again ({_problem(exc)})"
            if bundle is None:
                return None, f"model {name} version {version} cannot be loaded: {why}"
            bundle.compile_dir = target / "compiled"
            return LoadedModel(bundle, name, version, alias), f"model {name} version {version}: {why}"
        bundle, error = _read_bundle(target)
        if bundle is None:
            return None, f"model {name} version {version} cannot be loaded: {error}"
    bundle.compile_dir = target / "compiled"  # beside the local copy: compiled once per version
    note = f"model {name} version {version}: {_damage_text(bundle.damaged)}" if bundle.damaged else None
    return LoadedModel(bundle, name, version, alias), note


def _read_bundle(target: Path) -> tuple[ModelBundle | None, str | None]:
    """The bundle of a local copy, its parts checked before they are parsed (see
    ``ModelBundle.load``), or None and what is wrong (said without a path)."""
    try:
        return ModelBundle.load(target / "bundle", strict=False), None
    except ModelUnavailableError as exc:  # damage, said as the part and the problem
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - the folder unreadable as a whole
        return None, f"the bundle cannot be read ({_problem(exc)})"


def _damage_text(damage: dict[str, str]) -> str:
    return "; ".join(f"{name}: {problem}" for name, problem in sorted(damage.items()))


def resolve_champion(cfg: RiskcastConfig, paths: WorkPaths) -> tuple[str | None, str | None]:
    """The version ``<model_name>@<alias>`` names in the registry, with its bundle copied
    locally. When the registry cannot answer: the version the service last served, else the
    last one resolved here. Returns (version, why none)."""
    name, alias = cfg.serving.model_name, cfg.serving.alias
    home = paths.model_cache / name
    pointer = home / f"{alias}.json"
    try:
        from mlflow.tracking import MlflowClient

        version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
        cache_version(name, version, home)
        with atomic_path(pointer) as tmp_file:
            tmp_file.write_text(json.dumps({"version": version, "resolved_at": _now()}))
        return version, None
    except Exception as exc:  # registry down, alias missing, artifact store unreachable
        why = _problem(exc)
    for known in (ServedPointer(served_path(cfg, paths)).version(), _version_in(pointer)):
        if known is not None and is_complete(home / known):
            return known, None
    return None, f"model {name}@{alias} cannot be loaded and no local copy exists: {why}"


def load_champion(cfg: RiskcastConfig, paths: WorkPaths) -> tuple[LoadedModel | None, str | None]:
    """The bundle behind ``<model_name>@<alias>``, from the registry (copied locally) or, when
    the registry cannot answer, from the last local copy. Returns (model, why not)."""
    version, error = resolve_champion(cfg, paths)
    if version is None:
        return None, error
    return load_version(cfg, paths, version)


def build_core(home: str | Path | None, config_path: str | Path | None = None, *, audit: bool = False,
               desk: bool | None = None) -> ScoringCore:
    """The core for a work directory; without a model it still answers (``refer``). With
    ``audit`` every order-entry decision is recorded (the service); with ``desk`` (by default
    when ``audit``) approved limits decide and referrals open cases on the credit desk."""
    offline_environment()
    paths = WorkPaths(root=workdir(home))
    cfg = load_config(config_path_for(paths.root, config_path))
    tracking.configure(paths.root)
    model, error = load_champion(cfg, paths)
    store = FeatureStore(paths.store, must_exist=False)  # missing or unreadable: orders wait for it (503)
    log = AuditLog(audit_url(cfg, paths)) if audit else None
    credit_desk = open_desk(cfg, paths) if (audit if desk is None else desk) else None
    return ScoringCore(cfg, model, store, model_error=error, switch=FallbackSwitch(paths.fallback_switch), audit=log,
                       desk=credit_desk)


def audit_url(cfg: RiskcastConfig, paths: WorkPaths) -> str:
    """``RISKCAST_AUDIT_URL``, else ``serving.audit_url``, else the work directory's file."""
    return os.environ.get("RISKCAST_AUDIT_URL") or cfg.serving.audit_url or sqlite_url(paths.audit)


def open_desk(cfg: RiskcastConfig, paths: WorkPaths) -> DeskStore:
    """The credit desk of a work directory: ``RISKCAST_DESK_URL``, else ``desk.url``, else the
    audit log's database (brought to the desk's newest schema on opening)."""
    return DeskStore(os.environ.get("RISKCAST_DESK_URL") or cfg.desk.url or audit_url(cfg, paths), cfg.desk,
                     collections=cfg.collections)


# -- one version for every worker ------------------------------------------------------------

def served_path(cfg: RiskcastConfig, paths: WorkPaths) -> Path:
    """Where the service says which version all its workers decide with."""
    return paths.model_cache / cfg.serving.model_name / "served.json"


Key = tuple[int, int, int] | None


class ServedPointer:
    """The small JSON file naming the version the service serves, written whole (a rename) and
    only under a lock shared by the workers; read by its stat, which a rename always changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def key(self) -> Key:
        """What identifies the file's current content (None: there is none); ~1 us."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def read(self) -> tuple[Key, dict[str, Any] | None]:
        """The key and the record of the same content (None: no file, or one without a version)."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except OSError:
            return None, None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        try:
            record = json.loads(raw)
        except ValueError:
            return key, None
        if not isinstance(record, dict) or not isinstance(record.get("version"), str):
            return key, None
        return key, record

    def version(self) -> str | None:
        return (self.read()[1] or {}).get("version")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Held while a worker decides whether to publish and does (one worker at a time)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write(self, model: str, version: str, by: str) -> Key:
        """Publish ``version``; call under ``locked``. Returns the new key."""
        record = {"model": model, "version": version, "by": by, "pid": os.getpid(), "at": _now()}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(record))
        return self.key()


def worse_than(candidate: LoadedModel, served: LoadedModel | None) -> str | None:
    """Why ``candidate`` must not replace ``served`` (None: it may): it lacks a part the served
    one has (its model file or its scorecard damaged), or it cannot score a probe row, a row of
    its own monitoring reference and a row with every feature missing, with each part it has.
    The candidate's files were verified before they were parsed, so probing cannot take the
    process down."""
    bundle = candidate.bundle
    if served is not None:
        if bundle.booster is None and served.bundle.booster is not None:
            return f"has no usable model ({bundle.booster_error or 'model file unreadable'})"
        if bundle.scorecard is None and served.bundle.scorecard is not None:
            return f"has no usable scorecard ({bundle.scorecard_error or 'scorecard file unreadable'})"
    names = bundle.registry.names
    X = np.full((1, len(names)), np.nan)
    reference = None if bundle.source is None else bundle.source / tracking.REFERENCE_FILE
    if reference is not None and reference.is_file() and reference.name not in bundle.damaged:
        try:
            import pyarrow.parquet as pq

            with pq.ParquetFile(reference) as pf:
                first = pf.read_row_group(0, columns=[n for n in names if n in pf.schema_arrow.names])
            row = first.slice(0, 1).to_pandas()
            if len(row):
                X = np.vstack([row.reindex(columns=names).to_numpy(dtype=np.float64, na_value=np.nan), X])
        except Exception as exc:  # noqa: BLE001 - a reference that cannot be read is said as such
            return f"cannot read its monitoring reference for a probe row ({_problem(exc)})"
    if bundle.booster is not None:
        try:
            logit, _ = bundle.explain(X, num_threads=1, may_compile=False)
            if not np.isfinite(logit).all():
                raise ValueError("a score that is not a number")
        except Exception as exc:  # noqa: BLE001 - any failure refuses the candidate
            return f"cannot score a probe row with its model ({type(exc).__name__})"
    if bundle.scorecard is not None:
        try:
            pd_ = bundle.scorecard_pd(pd.DataFrame(X, columns=names))
            if not (np.isfinite(pd_) & (pd_ > 0) & (pd_ < 1)).all():
                raise ValueError("a PD outside (0, 1)")
        except Exception as exc:  # noqa: BLE001
            return f"cannot score a probe row with its scorecard ({type(exc).__name__})"
    return None


class ServedCore:
    """The scoring core one worker of the service answers with, kept on the version the service
    serves. ``current()`` is what every call takes: when ``served.json`` changed since it last
    looked, it loads the version named there from the local copy and swaps a whole new core in
    (a call in flight finishes on the core it took). A version that cannot be loaded leaves the
    worker on what it had, says why in ``status()`` and is tried again after ``retry_s``.

    ``on_swap(core)`` runs after each swap (the service frees the replaced model and compiles
    the new one's trees)."""

    def __init__(self, core: ScoringCore, paths: WorkPaths, pointer: ServedPointer, *,
                 seen: Key = None, on_swap: Callable[[ScoringCore], None] | None = None,
                 retry_s: float = FOLLOW_RETRY_S) -> None:
        self.paths = paths
        self.pointer = pointer
        self.retry_s = retry_s
        self._core = core
        self._seen = seen
        self._on_swap = on_swap
        self._lock = threading.Lock()
        self._published: str | None = None
        self._failure: str | None = None
        self._retry_at = math.inf

    @property
    def core(self) -> ScoringCore:
        """The core as it is now, without looking at ``served.json``."""
        return self._core

    def current(self) -> ScoringCore:
        """The core to answer a call with: the served version's."""
        if self.pointer.key() != self._seen or self._retry_at <= time.monotonic():
            self._follow()
        return self._core

    def _follow(self) -> None:
        try:
            self._follow_locked()
        except Exception as exc:  # noqa: BLE001 - a follower keeps answering with what it has
            held = self._core.model.version if self._core.model else None
            self._failure = f"the served version could not be followed ({_problem(exc)}); still deciding with " \
                            f"version {held}"
            self._retry_at = time.monotonic() + self.retry_s

    def _follow_locked(self) -> None:
        with self._lock:
            if self.pointer.key() == self._seen and self._retry_at > time.monotonic():
                return  # another thread of this worker followed meanwhile
            key, record = self.pointer.read()
            self._seen, self._retry_at = key, math.inf
            if record is None:
                self._failure = None if key is None else f"{self.pointer.path.name} names no version; unchanged"
                return
            version = record["version"]
            self._published = version
            if self._core.model is not None and self._core.model.version == version:
                self._failure = None
                return
            model, error = load_version(self._core.cfg, self.paths, version)
            # a candidate that lacks a part the held one has, or cannot score, is not taken
            worse = None if model is None else worse_than(model, self._core.model)
            if model is None or worse is not None:
                why = error if model is None else f"model {model.name} version {version} {worse}"
                held = self._core.model.version if self._core.model else None
                self._failure = f"{why}; still deciding with version {held}"
                self._retry_at = time.monotonic() + self.retry_s
                return
            self._swap(model)
            self._failure = None

    def _swap(self, model: LoadedModel) -> None:
        self._core = self._core.with_model(model)
        if self._on_swap is not None:
            self._on_swap(self._core)

    def reload(self) -> tuple[LoadedModel, str | None]:
        """Resolve the champion, load it here unless it is the version already served, and
        publish it for the other workers. Returns (the model, the version before);
        ModelUnavailableError when nothing could be loaded or published (nothing changes)."""
        with self._lock:
            core = self._core
            previous = core.model.version if core.model else None
            # the registry of this work directory (or the one the environment names now), not
            # whatever else in the process pointed MLflow at since the worker started
            tracking.configure(self.paths.root)
            version, error = resolve_champion(core.cfg, self.paths)
            if version is None:
                raise ModelUnavailableError(f"reload: {error}; still serving version {previous}")
            model = core.model if core.model is not None and previous == version else None
            if model is None:
                model, error = load_version(core.cfg, self.paths, version)
                if model is None:
                    raise ModelUnavailableError(f"reload: {error}; still serving version {previous}")
                worse = worse_than(model, core.model)
                if worse is not None:  # checked before the swap: the served model keeps answering
                    raise ModelUnavailableError(f"reload: version {version} {worse}; still serving version {previous}")
            try:
                with self.pointer.locked():
                    key = self.pointer.write(model.name, version, by="reload")
            except OSError as exc:
                raise ModelUnavailableError(f"reload: version {version} could not be announced to the other workers "
                                            f"({_problem(exc)}); still serving version {previous}") from None
            if model is not core.model:
                self._swap(model)
            self._seen, self._published, self._failure, self._retry_at = key, version, None, math.inf
            return model, previous

    def announce(self, baseline: Key) -> None:
        """At a worker's start: publish the version it loaded, unless the file changed since
        ``baseline`` (taken before the champion was resolved: another worker published since,
        and this one follows that on its first call) or already names it."""
        model = self._core.model
        if model is None:
            return
        with self._lock, self.pointer.locked():
            key, record = self.pointer.read()
            if key != baseline:
                return
            if record is not None and record["version"] == model.version:
                self._seen, self._published = key, model.version
                return
            self._seen, self._published = self.pointer.write(model.name, model.version, by="start"), model.version

    def status(self) -> dict[str, Any]:
        """What /readyz says of the version: the one the service serves, whether this worker
        decides with it and, when not, why."""
        mine = self._core.model.version if self._core.model else None
        return {"version": self._published, "in_sync": self._published is None or self._published == mine,
                "error": self._failure}


def serve_core(home: str | Path | None, config_path: str | Path | None = None, *,
               on_swap: Callable[[ScoringCore], None] | None = None) -> ServedCore:
    """A service worker's core (audit on), kept on the version the service serves."""
    paths = WorkPaths(root=workdir(home))
    cfg = load_config(config_path_for(paths.root, config_path))
    pointer = ServedPointer(served_path(cfg, paths))
    baseline = pointer.key()  # before the champion is resolved: a publish after it is followed
    served = ServedCore(build_core(paths.root, config_path, audit=True), paths, pointer, seen=baseline, on_swap=on_swap)
    try:
        served.announce(baseline)
    except OSError:  # a read-only work directory: this worker serves what it loaded, alone
        pass
    return served


def _version_in(pointer: Path) -> str | None:
    try:
        version = json.loads(pointer.read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(version) if version is not None else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


#: what looks like a file path or file URI in an error text
_PATHLIKE = re.compile(r"(?:file:)?(?<![\w.-])(?:~|\.{1,2})?/[^\s'\",;)\]]*")


def _problem(exc: BaseException) -> str:
    """What went wrong, said without a path: the kind of an OS error (its text names the
    file), else the exception's first line with anything path-like left out."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__}: {os.strerror(exc.errno)}"
    return _PATHLIKE.sub("<path>", _first_line(exc))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
