"""Assembling the scoring core from a work directory: configuration, champion bundle, store,
fallback switch and audit log.

The champion is resolved in the MLflow registry and its bundle copied into the work directory;
when the registry cannot be reached the last copy answers, so the service still starts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from riskcast.config import RiskcastConfig, WorkPaths, config_path_for, load_config, workdir
from riskcast.data.io import atomic_path
from riskcast.env import offline_environment
from riskcast.features.store import FeatureStore
from riskcast.training import tracking
from riskcast.training.bundle import ModelBundle
from riskcast.training.tracking import LoadedModel

from .audit import AuditLog, sqlite_url
from .core import ScoringCore
from .switch import FallbackSwitch


def load_champion(cfg: RiskcastConfig, paths: WorkPaths) -> tuple[LoadedModel | None, str | None]:
    """The bundle behind ``<model_name>@<alias>``, from the registry (copied locally) or, when
    the registry cannot answer, from the last local copy. Returns (model, why not)."""
    name, alias = cfg.serving.model_name, cfg.serving.alias
    home = paths.model_cache / name
    pointer = home / f"{alias}.json"
    try:
        import mlflow
        from mlflow.tracking import MlflowClient

        version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
        target = home / version
        if not (target / "bundle" / "metadata.json").exists():
            with tempfile.TemporaryDirectory(dir=_made(home)) as tmp:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
                staged = Path(tmp) / "staged"
                shutil.copytree(local / "artifacts" / "bundle", staged / "bundle")
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staged, target)
        with atomic_path(pointer) as tmp_file:
            tmp_file.write_text(json.dumps({"version": version, "resolved_at": _now()}))
    except Exception as exc:  # registry down, alias missing, artifact store unreachable
        if not pointer.exists():
            return None, f"model {name}@{alias} cannot be loaded and no local copy exists: {_first_line(exc)}"
        version = str(json.loads(pointer.read_text())["version"])
        target = home / version
    try:
        bundle = ModelBundle.load(target / "bundle", strict=False)
    except Exception as exc:
        return None, f"model {name} version {version} cannot be read: {_first_line(exc)}"
    bundle.compile_dir = target / "compiled"  # beside the local copy: compiled once per version
    return LoadedModel(bundle, name, version, alias), None


def build_core(home: str | Path | None, config_path: str | Path | None = None, *, audit: bool = False) -> ScoringCore:
    """The core for a work directory; without a model it still answers (``refer``). With
    ``audit`` every order-entry decision is recorded (the service)."""
    offline_environment()
    paths = WorkPaths(root=workdir(home))
    cfg = load_config(config_path_for(paths.root, config_path))
    tracking.configure(paths.root)
    model, error = load_champion(cfg, paths)
    store = FeatureStore(paths.store) if paths.store.exists() else None
    log = None
    if audit:
        log = AuditLog(os.environ.get("RISKCAST_AUDIT_URL") or cfg.serving.audit_url or sqlite_url(paths.audit))
    return ScoringCore(cfg, model, store, model_error=error, switch=FallbackSwitch(paths.fallback_switch), audit=log)


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
