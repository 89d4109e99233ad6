"""Always an answer: every way the model can fail leaves the scorecard deciding, with the reason."""

import dataclasses
import shutil

import pandas as pd
import pytest

from riskcast.config import RiskcastConfig
from riskcast.serving.core import Order, ScoringCore
from riskcast.serving.runtime import build_core
from riskcast.serving.switch import FallbackSwitch


@pytest.fixture(scope="module")
def customer(demo_workdir):
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    return str(scored.sort_values("pd_12m")["customer_id"].iloc[len(scored) // 2])


def _is_scorecard(d, reason_part):
    assert d["fallback"] is True and d["model"]["kind"] == "scorecard", d
    assert reason_part in d["fallback_reason"], d["fallback_reason"]
    assert 0 < d["pd_12m"] < 1 and d["grade"] is not None
    assert d["reasons"], "the scorecard gives its reasons too"
    # a decision made by the fallback goes to a person unless policy declines it outright
    assert d["decision"] in {"refer", "decline"}


def test_with_the_registry_down_the_local_copy_of_the_champion_answers(core, demo_workdir, tmp_path, registry_down, customer):
    home = tmp_path / "work"
    shutil.copytree(demo_workdir, home)
    served = build_core(home)
    assert served.model is not None and served.model.version == core.model.version
    d = served.score_order(Order(customer, 1000.0))
    assert d["fallback"] is False and d["pd_12m"] == core.score_order(Order(customer, 1000.0))["pd_12m"]


def test_a_corrupt_model_file_leaves_the_scorecard_answering(core, demo_workdir, tmp_path, registry_down, customer):
    home = tmp_path / "work"
    shutil.copytree(demo_workdir, home)
    booster = home / "serving" / "models" / "riskcast-pd" / core.model.version / "bundle" / "booster.txt"
    booster.write_text("tree\nnot a model\n")
    served = build_core(home)
    assert served.model is not None and served.model.bundle.booster is None
    _is_scorecard(served.score_order(Order(customer, 1000.0)), "model file unreadable")


def test_a_model_over_its_time_budget_gives_way_to_the_scorecard(core, customer):
    cfg = RiskcastConfig()
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"model_budget_ms": 1e-6})})
    slow = ScoringCore(cfg, core.model, core.store)
    _is_scorecard(slow.score_order(Order(customer, 1000.0)), "over its budget")
    # batch rescoring has no budget: a million rows take seconds
    assert slow.decide(pd.DataFrame([core.lookup(Order(customer, 1.0))]), [0.0], [float("nan")])[0]["fallback"] is False


def test_fallback_mode_holds_until_a_person_clears_it(core, tmp_path, customer):
    switch = FallbackSwitch(tmp_path / "serving" / "fallback.json")
    served = ScoringCore(core.cfg, core.model, core.store, switch=switch)
    assert served.score_order(Order(customer, 1000.0))["fallback"] is False
    switch.set("PSI of the score 0.31 on 2026-11-01", by="monitor")
    _is_scorecard(served.score_order(Order(customer, 1000.0)), "set by monitor")
    switch.clear("portfolio reviewed, drift explained by the new product line", by="j.doe")
    assert served.score_order(Order(customer, 1000.0))["fallback"] is False
    history = (tmp_path / "serving" / "fallback_history.jsonl").read_text().splitlines()
    assert len(history) == 2 and "j.doe" in history[1]
    # an unreadable switch is taken as set: the model is not trusted on a broken flag
    switch.path.write_text("{not json")
    _is_scorecard(served.score_order(Order(customer, 1000.0)), "unreadable")


def test_a_switch_needs_a_reason(tmp_path):
    from riskcast.errors import InputError

    with pytest.raises(InputError, match="reason"):
        FallbackSwitch(tmp_path / "f.json").clear("  ", by="x")


def test_when_the_scorecard_fails_too_the_answer_is_refer(core, customer):
    bundle = core.model.bundle
    broken = type(bundle)(bundle.registry, None, bundle.calibrator, None, bundle.master_scale_config,
                          bundle.scorecard_config, bundle.metadata, booster_error="model file unreadable: test")
    served = core.with_model(dataclasses.replace(core.model, bundle=broken))
    d = served.score_order(Order(customer, 1000.0))
    assert d["decision"] == "refer" and d["pd_12m"] is None and d["fallback"] is True
    assert "scorecard error" in d["fallback_reason"]
