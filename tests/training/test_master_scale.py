"""The master scale stays put: models trained on different books grade on the same configured
edges, whatever their validation windows look like, and a bundle remembers its scale."""

import json

import numpy as np
import pytest

from riskcast.config import GeneratorConfig, GradeBand, MasterScaleConfig, RiskcastConfig
from riskcast.features.build import build_features
from riskcast.features.registry import default_registry
from riskcast.training.bundle import ModelBundle, write_manifest
from riskcast.training.dataset import attach_labels, snapshot_dates, split_out_of_time
from riskcast.training.fit import evaluate_bundle, fit_bundle
from riskcast.training.masterscale import MasterScale, concentration, scale_fingerprint


def _training():
    cfg = RiskcastConfig()
    cheap = cfg.training.lightgbm.model_copy(update={"n_estimators": 60})
    return cfg.training.model_copy(update={"lightgbm": cheap})


def _split(seed: int, customers: int = 700):
    from riskcast.data.synthetic import generate_book

    book = generate_book(GeneratorConfig(customers=customers, years=6, seed=seed))
    cfg = RiskcastConfig()
    data = attach_labels(build_features(book, snapshot_dates(book, cfg.training), default_registry()), book, 12)
    return split_out_of_time(data, cfg.training.valid_snapshots, cfg.training.test_snapshots)


@pytest.fixture(scope="module")
def splits():
    return _split(101), _split(202)


@pytest.fixture(scope="module")
def bundles(splits):
    return [fit_bundle(s, default_registry(), _training(), MasterScaleConfig()) for s in splits]


def test_models_trained_on_different_books_share_the_grade_edges_and_the_scale_version(splits, bundles):
    a, b = bundles
    # different books, different models ...
    pa, pb = (x.model_pd(x.matrix(s.valid)) for x, s in zip(bundles, splits))
    assert not np.allclose(np.quantile(pa, [0.25, 0.5, 0.75]), np.quantile(pb, [0.25, 0.5, 0.75]))
    # ... one scale
    configured = MasterScale(MasterScaleConfig())
    for bundle in bundles:
        assert bundle.master_scale_config == MasterScaleConfig()
        np.testing.assert_array_equal(bundle.master_scale.edges, configured.edges)
        assert bundle.master_scale.grades == configured.grades and bundle.master_scale.bands == configured.bands
        assert bundle.metadata["master_scale_version"] == "1"
        assert bundle.metadata["master_scale_fingerprint"] == configured.fingerprint
        assert "master_scale_refined" not in bundle.metadata
    assert a.master_scale.fingerprint == b.master_scale.fingerprint
    # the same PD gets the same grade from either model
    grid = np.geomspace(1e-4, 0.9, 400)
    assert (a.master_scale.grade(grid) == b.master_scale.grade(grid)).all()


def test_the_validation_window_s_crowding_is_recorded_not_split(bundles, splits):
    for bundle, split in zip(bundles, splits):
        crowd = bundle.metadata["valid_grade_concentration"]
        assert crowd["rows"] == len(split.valid) and crowd["grades"] == len(bundle.master_scale.grades)
        assert crowd["max_share"] ** 2 <= crowd["herfindahl"] <= crowd["max_share"]
        assert crowd["max_grade"] in bundle.master_scale.grades
        json.dumps(crowd)  # travels in metadata.json


def test_a_book_crowding_one_grade_keeps_the_configured_edges(splits):
    # one wide grade holding nearly the whole book: the old refit split it at its median
    crowding = MasterScaleConfig(version="crowd", grades=(
        GradeBand(grade="1", pd_max=0.0002, band="A"), GradeBand(grade="2", pd_max=0.5, band="C"),
        GradeBand(grade="3", pd_max=1.0, band="E")))
    bundle = fit_bundle(splits[0], default_registry(), _training(), crowding)
    assert bundle.master_scale_config == crowding and bundle.master_scale.grades == ["1", "2", "3"]
    scale = bundle.master_scale
    c = concentration(scale.grade(bundle.model_pd(bundle.matrix(splits[0].valid))), scale)
    assert c["max_grade"] == "2" and c["max_share"] > 0.9  # crowded, reported as such
    assert bundle.metadata["valid_grade_concentration"]["max_share"] > 0.9
    metrics = evaluate_bundle(bundle, splits[0].test)
    assert metrics["test_grade_herfindahl"] > 0.8 and metrics["test_grade_herfindahl_normalised"] > 0.7
    assert metrics["test_max_grade_share"] > 0.9


def test_the_test_metrics_report_the_herfindahl_of_the_grades(bundles, splits):
    bundle, split = bundles[0], splits[0]
    m = evaluate_bundle(bundle, split.test)
    grades = bundle.master_scale.grade(bundle.model_pd(bundle.matrix(split.test)))
    shares = np.array([(grades == g).mean() for g in bundle.master_scale.grades])
    assert m["test_grade_herfindahl"] == pytest.approx(float((shares ** 2).sum()))
    assert m["test_max_grade_share"] == pytest.approx(shares.max())
    assert 0.1 <= m["test_grade_herfindahl"] <= 1


def test_a_saved_bundle_keeps_its_scale_version(bundles, tmp_path):
    renamed = MasterScaleConfig(version="2025.1")
    bundle = bundles[0]
    bundle = ModelBundle(bundle.registry, bundle.booster, bundle.calibrator, bundle.scorecard, renamed,
                         bundle.scorecard_config, bundle.metadata)
    back = ModelBundle.load(bundle.save(tmp_path / "b"))
    assert back.master_scale.version == "2025.1" and back.master_scale_config == renamed
    assert back.master_scale.fingerprint == scale_fingerprint(MasterScaleConfig())


def test_an_old_bundle_without_a_scale_version_loads_as_a_scale_of_its_own(bundles, splits, tmp_path):
    path = bundles[0].save(tmp_path / "old")
    raw = json.loads((path / "master_scale.json").read_text())
    assert raw["version"] == "1"
    # before versions: no "version", and (say) grade 3 split by the old per-model refit
    grades = [g for g in raw["grades"] if g["grade"] != "3"]
    grades[2:2] = [{"grade": "3", "pd_max": 0.008, "band": "B"}, {"grade": "3.2", "pd_max": 0.010, "band": "B"}]
    (path / "master_scale.json").write_text(json.dumps({"grades": grades}))
    write_manifest(path)
    old = ModelBundle.load(path)
    scale = old.master_scale
    assert scale.version == f"unversioned-{scale.fingerprint}" and scale.version != "1"
    assert scale.fingerprint != MasterScale(MasterScaleConfig()).fingerprint
    assert scale.grades[2:4] == ["3", "3.2"]
    # its scored rows say so, and so are never compared with grades of scale 1
    scored = old.score_frame(splits[0].test.head(20))
    assert (scored["scale_version"] == scale.version).all()
    assert (scored["scale_fingerprint"] == scale.fingerprint).all()
    # the same edges without a version are the same fingerprint: still not version "1"
    (path / "master_scale.json").write_text(json.dumps({"grades": raw["grades"]}))
    write_manifest(path)
    plain = ModelBundle.load(path).master_scale
    assert plain.fingerprint == MasterScale(MasterScaleConfig()).fingerprint
    assert plain.version == f"unversioned-{plain.fingerprint}"
