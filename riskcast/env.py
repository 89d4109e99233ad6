"""The process environment every entry point sets first: no telemetry, no network."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Iterator

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


@contextlib.contextmanager
def quiet(*loggers: str, stderr: bool = False) -> Iterator[None]:
    """Silence chatty third-party loggers and warnings (and optionally stderr) for a block.

    For noise users cannot act on: cvxpy's HIGHS import error under optbinning, MLflow's
    warnings about pickled models on every log.
    """
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
