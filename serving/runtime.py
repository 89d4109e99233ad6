"""Assembling the scoring core from a work directory: configuration, champion bundle, store."""

from __future__ import annotations

from pathlib import Path

from riskcast.config import WorkPaths, load_config, workdir
from riskcast.env import offline_environment
from riskcast.errors import ModelUnavailableError
from riskcast.features.store import FeatureStore
from riskcast.training import tracking

from .core import ScoringCore


def build_core(home: str | Path | None, config_path: str | Path | None = None) -> ScoringCore:
    """Load the champion named in the configuration; without one the core still answers (refer)."""
    offline_environment()
    cfg = load_config(config_path)
    paths = WorkPaths(root=workdir(home))
    tracking.configure(paths.root)
    try:
        model = tracking.load_registered(cfg.serving.model_name, cfg.serving.alias)
        error = None
    except ModelUnavailableError as exc:
        model, error = None, str(exc)
    store = FeatureStore(paths.store) if paths.store.exists() else None
    return ScoringCore(cfg, model, store, model_error=error)
