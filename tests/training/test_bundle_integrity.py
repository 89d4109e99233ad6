"""The model bundle is verified before it is trusted: every file is checked against the digests
written when the bundle was made, before any parser sees it. A damaged model file leaves the
scorecard answering, a damaged scorecard the model; damage to what both need refuses the bundle;
every text says the part and the problem, never the folder or a library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskcast.training.bundle import (MANIFEST_FILE, BundleDamagedError, ModelBundle, booster_text_problem,
                                      bundle_damage, write_manifest)

#: the parts both the model and the scorecard need, by file
SHARED_PARTS = {"metadata.json": "metadata", "registry.json": "registry", "calibrator.json": "calibrator",
                "master_scale.json": "master_scale", "scorecard_config.json": "scorecard_config"}


@pytest.fixture
def bundle_dir(demo_workdir, tmp_path) -> Path:
    """A private copy of the demo champion's bundle as serving keeps it (fetched from the registry)."""
    source = demo_workdir / "serving" / "models" / "riskcast-pd" / "1" / "bundle"
    return Path(shutil.copytree(source, tmp_path / "bundle"))


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:-101])
    elif how == "random":
        path.write_bytes(np.random.default_rng(7).bytes(path.stat().st_size))
    else:
        path.unlink()


def _clean(text: str | None, tmp_path: Path) -> None:
    """An error text fit for an answer: no path, no library name."""
    assert text
    assert str(tmp_path) not in text and "/" not in text
    assert "lightgbm" not in text.lower() and "joblib" not in text.lower()


def _rows(bundle_dir: Path, bundle: ModelBundle) -> pd.DataFrame:
    return pd.read_parquet(bundle_dir / "reference.parquet").head(200)[bundle.registry.names]


def _legacy(bundle_dir: Path) -> None:
    """The folder as a bundle saved before bundles had a manifest."""
    (bundle_dir / MANIFEST_FILE).unlink()
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    meta.pop("manifest")
    (bundle_dir / "metadata.json").write_text(json.dumps(meta))


# -- the manifest ------------------------------------------------------------------------------

def test_the_manifest_covers_every_file_of_the_bundle_as_logged(bundle_dir, tmp_path):
    import hashlib

    files = json.loads((bundle_dir / MANIFEST_FILE).read_text())["files"]
    on_disk = sorted(p.name for p in bundle_dir.iterdir() if p.name != MANIFEST_FILE)
    # the reference was added after the bundle was saved: the manifest was written again
    assert sorted(files) == on_disk and "reference.parquet" in files and "metadata.json" in files
    for name, entry in files.items():
        data = (bundle_dir / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert bundle_damage(bundle_dir) == {}

    # saving writes it; a file added later is covered once the manifest is written again
    bundle = ModelBundle.load(bundle_dir)
    saved = bundle.save(tmp_path / "again")
    listed = set(json.loads((saved / MANIFEST_FILE).read_text())["files"])
    assert listed == {p.name for p in saved.iterdir()} - {MANIFEST_FILE}
    (saved / "notes.txt").write_text("added")
    assert "notes.txt" not in json.loads((saved / MANIFEST_FILE).read_text())["files"]
    write_manifest(saved)
    assert "notes.txt" in json.loads((saved / MANIFEST_FILE).read_text())["files"]
    (saved / "notes.txt").write_text("moved")  # same size, other bytes
    assert ModelBundle.load(saved, strict=False).damaged == {"notes.txt": "file damaged (digest mismatch)"}


# -- each part, each damage ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["truncated", "random", "deleted"])
def test_a_damaged_model_file_leaves_the_scorecard_answering(bundle_dir, tmp_path, how):
    _damage(bundle_dir / "booster.txt", how)
    bundle = ModelBundle.load(bundle_dir, strict=False)
    assert bundle.booster is None and bundle.scorecard is not None
    assert bundle.booster_error.startswith("model file unreadable: ")
    assert ("missing" if how == "deleted" else "damaged") in bundle.booster_error
    _clean(bundle.booster_error, tmp_path)
    assert list(bundle.damaged) == ["booster.txt"]
    pd_ = bundle.scorecard_pd(_rows(bundle_dir, bundle))
    assert np.isfinite(pd_).all() and ((pd_ > 0) & (pd_ < 1)).all()
    with pytest.raises(BundleDamagedError) as err:  # training and evaluation never use it
        ModelBundle.load(bundle_dir, strict=True)
    assert err.value.part == "booster"
    _clean(str(err.value), tmp_path)


@pytest.mark.parametrize("how", ["truncated", "random", "deleted"])
def test_a_damaged_scorecard_leaves_the_model_answering(bundle_dir, tmp_path, how):
    intact = ModelBundle.load(bundle_dir)
    rows = _rows(bundle_dir, intact)
    _damage(bundle_dir / "scorecard.joblib", how)
    bundle = ModelBundle.load(bundle_dir, strict=False)
    assert bundle.scorecard is None and bundle.booster is not None
    assert bundle.scorecard_error.startswith("scorecard file unreadable: ")
    assert ("missing" if how == "deleted" else "damaged") in bundle.scorecard_error
    _clean(bundle.scorecard_error, tmp_path)
    X = bundle.matrix(rows)
    np.testing.assert_allclose(bundle.model_pd(X), intact.model_pd(X), rtol=1e-12)
    with pytest.raises(BundleDamagedError) as err:
        ModelBundle.load(bundle_dir, strict=True)
    assert err.value.part == "scorecard"


@pytest.mark.parametrize("name", sorted(SHARED_PARTS))
@pytest.mark.parametrize("how", ["truncated", "random", "deleted"])
def test_damage_to_a_part_both_need_refuses_the_bundle_naming_the_part(bundle_dir, tmp_path, name, how):
    _damage(bundle_dir / name, how)
    with pytest.raises(BundleDamagedError) as err:
        ModelBundle.load(bundle_dir, strict=False)
    assert err.value.part == SHARED_PARTS[name]
    assert str(err.value).startswith(f"model bundle part {SHARED_PARTS[name]}: file ")
    _clean(str(err.value), tmp_path)
    assert err.value.http_status == 503
    assert set(bundle_damage(bundle_dir)) == {name}


@pytest.mark.parametrize("how", ["truncated", "random", "deleted"])
def test_a_damaged_manifest_refuses_the_bundle_rather_than_reading_it_unchecked(bundle_dir, tmp_path, how):
    _damage(bundle_dir / MANIFEST_FILE, how)
    with pytest.raises(BundleDamagedError) as err:
        ModelBundle.load(bundle_dir, strict=False)
    assert err.value.part == "manifest"
    _clean(str(err.value), tmp_path)


def test_both_scoring_parts_damaged_refuses_the_bundle(bundle_dir, tmp_path):
    _damage(bundle_dir / "booster.txt", "truncated")
    _damage(bundle_dir / "scorecard.joblib", "deleted")
    with pytest.raises(BundleDamagedError) as err:
        ModelBundle.load(bundle_dir, strict=False)
    assert "model file unreadable: damaged" in str(err.value) and "scorecard file unreadable: missing" in str(err.value)
    _clean(str(err.value), tmp_path)


def test_a_damaged_reference_is_said_and_the_model_still_loads(bundle_dir):
    _damage(bundle_dir / "reference.parquet", "truncated")
    bundle = ModelBundle.load(bundle_dir, strict=False)
    assert bundle.booster is not None and bundle.scorecard is not None
    assert set(bundle.damaged) == {"reference.parquet"}
    with pytest.raises(BundleDamagedError):
        ModelBundle.load(bundle_dir, strict=True)


# -- never handed to the parser ------------------------------------------------------------------

def test_a_model_file_cut_short_is_refused_without_being_parsed(bundle_dir, monkeypatch):
    parsed: list = []
    real = lgb.Booster

    def spy(*args, **kwargs):
        parsed.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(lgb, "Booster", spy)
    assert ModelBundle.load(bundle_dir, strict=False).booster is not None and len(parsed) == 1
    _damage(bundle_dir / "booster.txt", "truncated")
    assert ModelBundle.load(bundle_dir, strict=False).booster is None
    assert len(parsed) == 1  # the damaged file never reached the parser
    _legacy(bundle_dir)  # without a manifest: refused for not being whole
    bundle = ModelBundle.load(bundle_dir, strict=False)
    assert bundle.booster is None and "cut short" in bundle.booster_error
    assert len(parsed) == 1


_LOAD = (
    "import sys\n"
    "from riskcast.training.bundle import ModelBundle\n"
    "b = ModelBundle.load(sys.argv[1], strict=False)\n"
    "print('booster', b.booster is not None, 'scorecard', b.scorecard is not None, b.booster_error)\n")


@pytest.mark.parametrize("manifest", [True, False])
def test_the_process_loading_a_model_file_cut_short_survives(bundle_dir, manifest):
    _damage(bundle_dir / "booster.txt", "truncated")
    if not manifest:
        _legacy(bundle_dir)
    done = subprocess.run([sys.executable, "-c", _LOAD, str(bundle_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.startswith("booster False scorecard True model file unreadable: damaged")


def test_a_bundle_saved_before_manifests_loads_as_before_its_model_file_checked(bundle_dir, tmp_path):
    intact = ModelBundle.load(bundle_dir)
    rows = _rows(bundle_dir, intact)
    _legacy(bundle_dir)
    old = ModelBundle.load(bundle_dir, strict=True)
    X = old.matrix(rows)
    np.testing.assert_allclose(old.model_pd(X), intact.model_pd(X), rtol=1e-12)
    assert bundle_damage(bundle_dir) == {}

    text = (bundle_dir / "booster.txt").read_bytes()
    assert booster_text_problem(text) is None
    cut = text.index(b"\nTree=1\n")
    assert "trees do not match" in booster_text_problem(text[:cut] + text[cut + 40:])  # a tree shortened
    assert "cut short" in booster_text_problem(text[:-101])
    assert booster_text_problem(os.urandom(len(text))) is not None
    (bundle_dir / "booster.txt").write_bytes(text[:cut] + text[cut + 40:])
    bundle = ModelBundle.load(bundle_dir, strict=False)
    assert bundle.booster is None and bundle.scorecard is not None
    _clean(bundle.booster_error, tmp_path)
    with pytest.raises(BundleDamagedError):
        ModelBundle.load(bundle_dir, strict=True)


def test_a_manifest_removed_from_a_bundle_that_had_one_is_damage_not_an_old_bundle(bundle_dir):
    (bundle_dir / MANIFEST_FILE).unlink()
    with pytest.raises(BundleDamagedError) as err:
        ModelBundle.load(bundle_dir, strict=False)
    assert err.value.part == "manifest" and "missing" in str(err.value)
