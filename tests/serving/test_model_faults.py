"""A damaged model bundle in the service: the local copy is fetched again when the registry can
give it; when it cannot, the intact part answers (the scorecard for a damaged model file, the
model for a damaged scorecard) and says so without a path; a reload or a follower never swaps a
working model for a damaged one."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from riskcast.errors import ModelUnavailableError
from riskcast.serving.core import Order
from riskcast.training.bundle import bundle_damage

NAME = "riskcast-pd"


def _home(work: Path) -> Path:
    return work / "serving" / "models" / NAME


def _cut(path: Path, n: int = 101) -> None:
    path.write_bytes(path.read_bytes()[:-n])


def _customer(work: Path) -> str:
    scored = pd.read_parquet(work / "scored_book.parquet")
    return str(scored.sort_values("pd_12m")["customer_id"].iloc[len(scored) // 2])


def _worker(work: Path):
    from riskcast.serving.runtime import serve_core

    return serve_core(work)


def _no_path(text: str | None, work: Path) -> None:
    assert text
    assert str(work) not in text and "/tmp" not in text
    assert "lightgbm" not in text.lower() and "joblib" not in text.lower()


def _thin_order(core) -> Order:
    """A customer new to the book supplying one feature: too thin for the model, the card's."""
    name, (lo, hi) = next(iter(core.registry.valid_ranges.items()))
    value = lo if math.isfinite(lo) else min(0.0, hi)
    return Order("NEW-THIN-1", 1000.0, features={name: float(value)})


def test_a_damaged_model_file_in_the_local_copy_is_fetched_again_and_the_model_answers(workdir_copy):
    home = _home(workdir_copy)
    _cut(home / "1" / "bundle" / "booster.txt")
    served = _worker(workdir_copy)
    core = served.current()
    assert core.model is not None and core.model.bundle.booster is not None and core.model.bundle.damaged == {}
    d = core.score_order(Order(_customer(workdir_copy), 1000.0))
    assert d["model"] == {"name": NAME, "version": "1", "kind": "lightgbm"} and d["fallback"] is False
    assert bundle_damage(home / "1" / "bundle") == {}  # the copy in place is whole again
    aside = [p for p in home.iterdir() if p.name.startswith(".1.incomplete-")]
    assert len(aside) == 1  # the damaged copy moved aside (a reader may hold it), not deleted
    assert set(bundle_damage(aside[0] / "bundle")) == {"booster.txt"}


def test_a_damaged_model_file_with_the_registry_down_leaves_the_scorecard_answering(workdir_copy, registry_down):
    _cut(_home(workdir_copy) / "1" / "bundle" / "booster.txt")
    served = _worker(workdir_copy)
    core = served.current()
    assert core.model is not None and core.model.bundle.booster is None and core.model.bundle.scorecard is not None
    d = core.score_order(Order(_customer(workdir_copy), 1000.0, request_id="damaged-booster-1"))
    assert d["model"]["kind"] == "scorecard" and d["fallback"] is True and 0 < d["pd_12m"] < 1
    assert d["fallback_reason"].startswith("model file unreadable: damaged (size ")
    _no_path(d["fallback_reason"], workdir_copy)
    _no_path(d["decision_reason"], workdir_copy)
    recorded = core.audit.records(request_ids=["damaged-booster-1"])
    assert len(recorded) == 1
    _no_path(json.dumps(recorded[0], default=str), workdir_copy)
    assert "model file unreadable: damaged" in json.dumps(recorded[0], default=str)


def test_a_damaged_scorecard_leaves_the_model_answering_and_refers_what_needs_the_card(workdir_copy, registry_down):
    card = _home(workdir_copy) / "1" / "bundle" / "scorecard.joblib"
    card.write_bytes(os.urandom(card.stat().st_size))  # what once answered "KeyError: 47"
    core = _worker(workdir_copy).current()
    assert core.model.bundle.scorecard is None and core.model.bundle.booster is not None
    d = core.score_order(Order(_customer(workdir_copy), 1000.0))
    assert d["model"]["kind"] == "lightgbm" and d["fallback"] is False and d["pd_12m"] is not None

    thin = core.score_order(_thin_order(core))
    assert thin["decision"] == "refer" and thin["pd_12m"] is None and thin["fallback"] is True
    assert "the scorecard is unavailable (scorecard file unreadable: damaged (digest mismatch))" in thin["fallback_reason"]
    assert "KeyError" not in thin["fallback_reason"]  # never what a parser made of the bytes
    _no_path(thin["fallback_reason"], workdir_copy)

    forced = core.score_order(Order(_customer(workdir_copy), 1000.0), forced_fallback="set by monitor")
    assert forced["decision"] == "refer" and forced["pd_12m"] is None
    assert forced["fallback_reason"].startswith("set by monitor; scorecard error: the scorecard is unavailable")


def test_a_damaged_scorecard_is_fetched_again_when_the_registry_can_give_it(workdir_copy):
    (_home(workdir_copy) / "1" / "bundle" / "scorecard.joblib").write_bytes(b"not a scorecard")
    core = _worker(workdir_copy).current()
    assert core.model.bundle.scorecard is not None and core.model.bundle.damaged == {}
    thin = core.score_order(_thin_order(core))
    assert thin["model"]["kind"] == "scorecard" and thin["pd_12m"] is not None


# -- a reload, a follower ----------------------------------------------------------------------

def _register_second_version(work: Path) -> str:
    """Version 2 in the registry: version 1's logged model registered again (no training)."""
    from mlflow.tracking import MlflowClient

    from riskcast.training import tracking

    tracking.configure(work)
    client = MlflowClient()
    first = client.get_model_version(NAME, "1")
    second = client.create_model_version(NAME, source=first.source, run_id=first.run_id)
    return str(second.version)


def _damaged_copy_of_version_1(work: Path, version: str) -> None:
    import shutil

    home = _home(work)
    shutil.copytree(home / "1" / "bundle", home / version / "bundle")
    _cut(home / version / "bundle" / "booster.txt")


def test_a_reload_to_a_version_whose_model_file_is_damaged_is_refused_and_the_old_one_keeps_serving(workdir_copy):
    from mlflow.tracking import MlflowClient

    served = _worker(workdir_copy)
    before = served.current()
    customer = _customer(workdir_copy)
    answer = before.score_order(Order(customer, 1000.0))
    version = _register_second_version(workdir_copy)
    _damaged_copy_of_version_1(workdir_copy, version)
    # the registry's copy is damaged too: it cannot repair the local one
    for booster in (workdir_copy / "mlartifacts").rglob("artifacts/bundle/booster.txt"):
        _cut(booster)
    MlflowClient().set_registered_model_alias(NAME, "champion", version)

    with pytest.raises(ModelUnavailableError) as err:
        served.reload()
    text = str(err.value)
    assert err.value.http_status == 503
    assert f"version {version} has no usable model (model file unreadable: damaged" in text
    assert "still serving version 1" in text
    _no_path(text, workdir_copy)
    assert served.core is before and served.current() is before
    assert served.pointer.version() == "1"  # not announced to the other workers
    again = served.current().score_order(Order(customer, 1000.0))
    assert again["model"]["kind"] == "lightgbm" and again["pd_12m"] == answer["pd_12m"]


def test_a_reload_to_a_version_damaged_only_in_the_local_copy_fetches_it_again_and_swaps(workdir_copy):
    from mlflow.tracking import MlflowClient

    served = _worker(workdir_copy)
    version = _register_second_version(workdir_copy)
    _damaged_copy_of_version_1(workdir_copy, version)
    MlflowClient().set_registered_model_alias(NAME, "champion", version)
    model, previous = served.reload()
    assert (model.version, previous) == (version, "1") and model.bundle.booster is not None
    d = served.current().score_order(Order(_customer(workdir_copy), 1000.0))
    assert d["model"]["version"] == version and d["model"]["kind"] == "lightgbm"
    assert bundle_damage(_home(workdir_copy) / version / "bundle") == {}


def test_a_follower_finding_the_published_version_damaged_keeps_what_it_has(workdir_copy):
    served = _worker(workdir_copy)
    served.retry_s = 0.2
    before = served.current()
    customer = _customer(workdir_copy)
    _damaged_copy_of_version_1(workdir_copy, "2")  # the registry has no version 2 to repair it
    with served.pointer.locked():
        served.pointer.write(NAME, "2", by="reload")  # another worker's reload
    core = served.current()
    assert core is before and core.model.version == "1"
    d = core.score_order(Order(customer, 1000.0))
    assert d["model"]["version"] == "1" and d["model"]["kind"] == "lightgbm"
    status = served.status()
    assert status["version"] == "2" and status["in_sync"] is False
    assert "version 2 has no usable model" in status["error"] and "still deciding with version 1" in status["error"]
    _no_path(status["error"], workdir_copy)

    # once version 2 is whole, the next call after the retry delay takes it
    import shutil
    import time

    home = _home(workdir_copy)
    shutil.copyfile(home / "1" / "bundle" / "booster.txt", home / "2" / "bundle" / "booster.txt")
    time.sleep(0.25)
    assert served.current().model.version == "2" and served.status()["in_sync"] is True


def test_a_candidate_that_cannot_score_a_probe_row_is_refused(workdir_copy):
    import dataclasses

    import numpy as np

    from riskcast.serving.runtime import worse_than

    served = _worker(workdir_copy)
    held = served.current().model
    assert worse_than(held, held) is None  # the served model scores its probe rows
    candidate = served.current().model.bundle.__class__.load(held.bundle.source, strict=False)
    candidate.compile_dir = held.bundle.compile_dir
    calibrator = candidate.calibrator  # a model whose scores are not numbers
    for attr in ("intercept_", "y_"):
        if hasattr(calibrator, attr):
            setattr(calibrator, attr, np.full_like(np.asarray(getattr(calibrator, attr), dtype=float), np.nan))
    why = worse_than(dataclasses.replace(held, bundle=candidate, version="3"), held)
    assert why == "cannot score a probe row with its model (ValueError)"
