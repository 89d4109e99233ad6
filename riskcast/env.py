"""The process environment every entry point sets first: no telemetry, no network."""

from __future__ import annotations

import os

OFFLINE = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # the string "true"; "1" is ignored
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}


def offline_environment() -> None:
    """Switch telemetry off for this process and its children (explicit settings win)."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
