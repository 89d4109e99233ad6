"""Shared fixtures: one small synthetic book and one trained work directory per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from riskcast.env import offline_environment

offline_environment()

SHARED = Path(__file__).resolve().parents[2] / "shared"
POLISH = SHARED / "benchmarks" / "polish-bankruptcy"


@pytest.fixture(scope="session")
def small_book():
    from riskcast.config import GeneratorConfig
    from riskcast.data.synthetic import generate_book

    return generate_book(GeneratorConfig(customers=1500, years=4, seed=11))


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory, small_book):
    """A work directory after the whole main job (`riskcast demo`) on a small book."""
    from riskcast.cli import main

    home = tmp_path_factory.mktemp("demo")
    old = os.environ.pop("MLFLOW_TRACKING_URI", None)
    code = main(["--quiet", "demo", "--customers", "1500", "--workdir", str(home)])
    assert code == 0
    if old is not None:
        os.environ["MLFLOW_TRACKING_URI"] = old
    return home


@pytest.fixture(scope="session")
def core(demo_workdir):
    from riskcast.serving.runtime import build_core

    return build_core(demo_workdir)
