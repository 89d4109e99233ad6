"""The registered bundle predicts exactly what the trained one did, by every way of loading it."""

import mlflow
import numpy as np
import pandas as pd

from riskcast.training import tracking


def test_registry_round_trip_reproduces_training_predictions(demo_workdir, demo_reference):
    reference = pd.read_parquet(demo_reference)  # scored in memory at training
    tracking.configure(demo_workdir)
    loaded = tracking.load_registered("riskcast-pd", "champion")
    again = loaded.bundle.score_frame(reference)
    np.testing.assert_allclose(again["pd_12m"], reference["pd_12m"], rtol=1e-12)
    assert (again["grade"].to_numpy() == reference["grade"].to_numpy()).all()

    generic = mlflow.pyfunc.load_model("models:/riskcast-pd@champion")
    out = generic.predict(reference[loaded.bundle.registry.names])
    np.testing.assert_allclose(out["pd_12m"], reference["pd_12m"], rtol=1e-12)
    card = generic.predict(reference[loaded.bundle.registry.names], params={"kind": "scorecard"})
    assert not np.allclose(card["pd_12m"], out["pd_12m"])  # the fallback is a different model
    assert card["pd_12m"].between(0, 1).all()


def test_scores_and_points_follow_the_logit(demo_workdir, demo_reference):
    tracking.configure(demo_workdir)
    bundle = tracking.load_registered("riskcast-pd").bundle
    reference = pd.read_parquet(demo_reference)
    p = reference["pd_12m"].to_numpy()
    cfg = bundle.scorecard_config
    factor = cfg.pdo / np.log(2)
    expected = cfg.base_points - factor * np.log(cfg.base_odds) - factor * np.log(p / (1 - p))
    np.testing.assert_allclose(reference["score"], expected, rtol=1e-9)
    # the scorecard's points add up too, on the registered bundle
    card = bundle.scorecard
    np.testing.assert_allclose(card.points_by_feature(reference).sum(axis=1),
                               card.offset_ - card.factor_ * card.logit(reference), atol=1e-8)


def test_the_reference_records_the_scale_of_the_registered_bundle(demo_workdir, demo_reference):
    from riskcast.config import load_config

    tracking.configure(demo_workdir)
    bundle = tracking.load_registered("riskcast-pd", "champion").bundle
    reference = pd.read_parquet(demo_reference)
    scale = bundle.master_scale
    assert (reference["scale_version"] == scale.version).all()
    assert (reference["scale_fingerprint"] == scale.fingerprint).all()
    # the configured scale, as given: the work directory's configuration names the same one
    assert bundle.master_scale_config == load_config(demo_workdir / "riskcast.toml").master_scale
    assert bundle.metadata["master_scale_version"] == scale.version
