"""The model bundle: booster, calibrator, scorecard, master scale and registry, versioned together.

Serving loads exactly one bundle (from the MLflow registry by alias) and never pieces of it,
so the features, the model and the scale it was validated with cannot be mixed up. Every file
is listed with its sha256 and size in the bundle's manifest and checked against it before it
is parsed: a damaged file is refused, never handed to a parser.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from riskcast.config import MasterScaleConfig, ScorecardConfig
from riskcast.data.io import atomic_path
from riskcast.errors import ModelUnavailableError
from riskcast.features.registry import FeatureRegistry

from .attribution import LeafAttribution
from .calibration import Calibrator, calibrator_from_dict
from .categories import CategoryCodes
from .masterscale import SCALE_FINGERPRINT_COLUMN, SCALE_VERSION_COLUMN, MasterScale, scale_fingerprint
from .scorecard import CreditScorecard, logit_to_points, quiet_solvers

BUNDLE_FORMAT = 1
#: the bundle's manifest: sha256 and size of every other file in the folder, written last
MANIFEST_FILE = "digests.json"
#: each part of a bundle and its file
PART_FILES: dict[str, str] = {
    "metadata": "metadata.json", "registry": "registry.json", "calibrator": "calibrator.json",
    "master_scale": "master_scale.json", "scorecard_config": "scorecard_config.json",
    "scorecard": "scorecard.joblib", "booster": "booster.txt",
}
#: the last line LightGBM writes of a model file (the Python package adds one more after it)
_BOOSTER_TRAILER = b"\nend of parameters\n"


class BundleDamagedError(ModelUnavailableError):
    """A part of a bundle is missing, damaged or unreadable: the bundle is not used as it is
    (said without the folder's path, which is the operator's, not the caller's)."""

    def __init__(self, part: str, problem: str) -> None:
        super().__init__(f"model bundle part {part}: {problem}", field=part)
        self.part = part
        self.problem = problem


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(path: str | Path) -> Path:
    """(Re)write the manifest of the bundle folder ``path``: the sha256 and size of every file
    in it. Whatever adds a file to a saved bundle calls this after it (the manifest is the last
    file written), so the bundle is verified as it was logged."""
    path = Path(path)
    files = {}
    for entry in sorted(path.iterdir()):
        if entry.name == MANIFEST_FILE or entry.name.startswith(".") or not entry.is_file():
            continue
        data = entry.read_bytes()
        files[entry.name] = {"sha256": _digest(data), "size": len(data)}
    with atomic_path(path / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=2))
    return path / MANIFEST_FILE


def read_manifest(path: str | Path) -> dict[str, dict[str, Any]] | None:
    """The manifest's entries by file name; None for a bundle saved before bundles had one.
    BundleDamagedError when it is there but cannot be read: nothing in the folder can then be
    told from a damaged copy."""
    try:
        raw = (Path(path) / MANIFEST_FILE).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleDamagedError("manifest", f"cannot be read ({type(exc).__name__})") from None
    try:
        files = json.loads(raw)["files"]
        if not isinstance(files, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
                and "/" not in n and not n.startswith(".") for n, e in files.items()):
            raise ValueError("entries")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BundleDamagedError("manifest", "damaged (not a manifest of digests)") from None
    return files


def _verified(path: Path, name: str, manifest: dict[str, dict[str, Any]] | None) -> bytes:
    """The bytes of file ``name`` of the bundle, read once and checked against the manifest
    (the bytes checked are the bytes parsed: a file replaced meanwhile is not read twice).
    ValueError saying what is wrong with it (never its path)."""
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise ValueError("file missing") from None
    except OSError as exc:
        raise ValueError(f"file cannot be read ({type(exc).__name__})") from None
    if manifest is None:
        return data
    entry = manifest.get(name)
    if entry is None:
        raise ValueError("file not listed in the bundle's manifest")
    if len(data) != entry["size"]:
        raise ValueError(f"file damaged (size {len(data)} bytes, {entry['size']} saved)")
    if _digest(data) != entry["sha256"]:
        raise ValueError("file damaged (digest mismatch)")
    return data


def bundle_damage(path: str | Path) -> dict[str, str]:
    """The files of the bundle folder ``path`` that are missing or differ from its manifest,
    with what is wrong (empty: intact), without parsing any. A bundle without a manifest has
    only its model file checked for being whole."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
    except BundleDamagedError as exc:
        return {MANIFEST_FILE: exc.problem}
    out: dict[str, str] = {}
    if manifest is None:
        try:
            data = _verified(path, PART_FILES["booster"], None)
        except ValueError as exc:
            return {PART_FILES["booster"]: str(exc)}
        problem = booster_text_problem(data)
        return {PART_FILES["booster"]: problem} if problem else {}
    for name in sorted(set(manifest) | set(PART_FILES.values())):
        try:
            _verified(path, name, manifest)
        except ValueError as exc:
            out[name] = str(exc)
    return out


def booster_text_problem(data: bytes) -> str | None:
    """Why a model file cannot be handed to LightGBM's parser, which does not check what it
    reads and takes the process down on a file cut short; None when it is whole as written.
    For bundles without a manifest: the file must end with the trailer LightGBM writes last,
    and the trees must fill exactly the bytes its header's ``tree_sizes`` gives them (the
    parser seeks each tree by those sizes). A scan of the bytes, where parsing in a child
    process would cost a second interpreter and a second parse per load."""
    at = data.rfind(_BOOSTER_TRAILER)
    rest = data[at + len(_BOOSTER_TRAILER):].strip() if at >= 0 else b""
    if at < 0 or (rest and not _categorical_line(rest)):
        return "file damaged (cut short: no closing trailer)"
    head_end = data.find(b"\nTree=0\n")
    sizes_at = data.find(b"\ntree_sizes=", 0, head_end if head_end >= 0 else 0)
    if head_end < 0 or sizes_at < 0:
        return "file damaged (no trees where they belong)"
    line_end = data.find(b"\n", sizes_at + 1)
    try:
        sizes = [int(v) for v in data[sizes_at + len(b"\ntree_sizes="):line_end].split()]
    except ValueError:
        return "file damaged (unreadable tree sizes)"
    trees_end = head_end + 1 + sum(sizes)
    if not sizes or min(sizes) <= 0 or not data.startswith(b"end of trees", trees_end):
        return "file damaged (trees do not match their sizes)"
    return None


def _categorical_line(rest: bytes) -> bool:
    """The line the Python package writes after the parameters, whole (its JSON parses)."""
    key = b"pandas_categorical:"
    if not rest.startswith(key):
        return False
    try:
        json.loads(rest[len(key):])
    except ValueError:
        return False
    return True


def _error_kind(exc: BaseException) -> str:
    """An exception said by its kind: a built-in's class name, else no more than that a parser
    refused the file (a library's exception names the library, its message the file)."""
    return type(exc).__name__ if type(exc).__module__ == "builtins" else "parser error"


class ModelBundle:
    """Scores rows of registry features with the LightGBM model or the fallback scorecard."""

    def __init__(self, registry: FeatureRegistry, booster: lgb.Booster | None, calibrator: Calibrator,
                 scorecard: CreditScorecard | None, master_scale: MasterScaleConfig,
                 scorecard_config: ScorecardConfig, metadata: dict[str, Any] | None = None,
                 booster_error: str | None = None, source: Path | None = None,
                 scorecard_error: str | None = None, damaged: dict[str, str] | None = None,
                 codes: CategoryCodes | None = None) -> None:
        self.registry = registry
        #: the categories learned at fit, by categorical feature (none without one): how a row's
        #: categories become the codes the model was trained on
        self.codes = codes if codes is not None else CategoryCodes.fitted(registry, {})
        #: the folder it was loaded from: shipped as is (not re-saved) where it must score alike
        self.source = source
        #: where serving keeps this model's compiled trees; None (training, evaluation): the
        #: trees are not compiled and ``Booster.predict`` scores
        self.compile_dir: Path | None = None
        #: None when the model file could not be read; the scorecard still answers
        self.booster = booster
        self.booster_error = booster_error
        self._attribution: LeafAttribution | None = None
        self.calibrator = calibrator
        #: None when the scorecard file could not be read; the model still answers
        self.scorecard = scorecard
        self.scorecard_error = scorecard_error
        #: the files of the folder found damaged, with what is wrong (empty: all intact)
        self.damaged = dict(damaged or {})
        self.master_scale_config = master_scale
        self.master_scale = MasterScale(master_scale)
        self.scorecard_config = scorecard_config
        self.metadata = dict(metadata or {})

    # -- inputs ---------------------------------------------------------------------------
    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Registry columns in registry order as a float matrix (LightGBM ignores names), each
        category as its code at fit; an unseen one is missing (``CategoryCodes``)."""
        return self.codes.transform(df)

    def card_frame(self, X: np.ndarray) -> pd.DataFrame:
        """Rows of ``matrix`` as the scorecard reads them: categories back as their text."""
        return self.codes.frame(X)

    # -- LightGBM path ----------------------------------------------------------------------
    def model_logit(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        return self.calibrator.logit(self.attribution.margin(X, num_threads))

    def model_pd(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        return expit(self.model_logit(X, num_threads))

    @property
    def attribution(self) -> LeafAttribution:
        """The model's leaf tables, built on first use (a few ms per hundred trees); its compiled
        trees in ``compile_dir``."""
        if self._attribution is None:
            self._attribution = LeafAttribution(self.booster, cache_dir=self.compile_dir)
        return self._attribution

    def explain(self, X: np.ndarray, num_threads: int | None = None, may_compile: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated log-odds and each feature's contribution to them (path attribution: one
        pass of the compiled trees, or of ``pred_leaf``): what order entry and rescoring use.
        ``may_compile=False``: never wait for the trees to compile (order entry)."""
        margin, contrib = self.attribution.explain(X, num_threads, may_compile)
        return self.calibrator.logit(margin), contrib * self.calibrator.slope_

    def contributions(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Per-feature contributions to the calibrated log-odds (TreeSHAP, bias dropped)."""
        kw = {"num_threads": num_threads} if num_threads else {}
        contrib = self.booster.predict(X, pred_contrib=True, **kw)[:, :-1]
        return contrib * self.calibrator.slope_

    # -- scorecard path ---------------------------------------------------------------------
    def scorecard_pd(self, df: pd.DataFrame) -> np.ndarray:
        return np.maximum(self.scorecard.predict_pd(df), self.calibrator.pd_floor)

    def points(self, logit: np.ndarray) -> np.ndarray:
        return logit_to_points(logit, self.scorecard_config)

    # -- whole-frame scoring (pyfunc, batch) -------------------------------------------------
    def score_frame(self, df: pd.DataFrame, kind: str = "lightgbm") -> pd.DataFrame:
        if kind == "lightgbm":
            logit = self.model_logit(self.matrix(df))
            pd_ = expit(logit)
        elif kind == "scorecard":
            pd_ = self.scorecard_pd(df)
            logit = np.log(pd_ / (1 - pd_))
        else:
            raise ValueError(f"kind must be 'lightgbm' or 'scorecard', not {kind!r}")
        grade, band = self.master_scale.grade_and_band(pd_)
        # the scale travels with the grades: only grades on the same scale are compared
        return pd.DataFrame({"pd_12m": pd_, "score": self.points(logit), "grade": grade, "band": band,
                             SCALE_VERSION_COLUMN: self.master_scale.version,
                             SCALE_FINGERPRINT_COLUMN: self.master_scale.fingerprint}, index=df.index)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Every part, then the manifest of their digests (last: a file added to the folder
        later is covered by calling ``write_manifest`` again)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "booster.txt"))
        (path / "calibrator.json").write_text(json.dumps(self.calibrator.to_dict(), indent=2))
        joblib.dump(self.scorecard, path / "scorecard.joblib")
        (path / "master_scale.json").write_text(self.master_scale_config.model_dump_json(indent=2))
        (path / "scorecard_config.json").write_text(self.scorecard_config.model_dump_json(indent=2))
        (path / "registry.json").write_text(json.dumps(self.registry.to_dict(), indent=2))
        meta = {**self.metadata, "bundle_format": BUNDLE_FORMAT, "manifest": MANIFEST_FILE,
                "categories": self.codes.to_dict()}
        (path / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
        write_manifest(path)
        return path

    @classmethod
    def load(cls, path: str | Path, strict: bool = True) -> "ModelBundle":
        """The bundle saved at ``path``, each file checked against the manifest before it is
        parsed (a damaged file is never handed to a parser: LightGBM's crashes the process on
        one cut short). With ``strict`` any damage raises BundleDamagedError. Without, a
        damaged model file leaves ``booster`` None (``booster_error`` says why: the scorecard
        answers) and a damaged scorecard leaves ``scorecard`` None (``scorecard_error``: the
        model answers); damage to a part both need, or to both, raises. A bundle saved before
        bundles had a manifest is read as it is, its model file checked for being whole."""
        path = Path(path)
        manifest = read_manifest(path)
        damaged: dict[str, str] = {}

        def part(name: str, parse: Callable[[bytes], Any]) -> Any:
            try:
                data = _verified(path, PART_FILES[name], manifest)
            except ValueError as exc:
                raise BundleDamagedError(name, str(exc)) from None
            try:
                return parse(data)
            except _Refused as exc:  # an unverifiable file that is not whole: never parsed
                raise BundleDamagedError(name, str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - a file that passed its digest but not its parser
                raise BundleDamagedError(name, f"file unreadable ({_error_kind(exc)})") from None

        meta = part("metadata", json.loads)
        if not isinstance(meta, dict):
            raise BundleDamagedError("metadata", "file unreadable (not a mapping)")
        if manifest is None and meta.get("manifest"):
            raise BundleDamagedError("manifest", "file missing")
        if meta.get("bundle_format") != BUNDLE_FORMAT:
            raise BundleDamagedError("metadata", f"bundle format {meta.get('bundle_format')!r}, "
                                                 f"expected {BUNDLE_FORMAT}")
        registry = part("registry", lambda b: FeatureRegistry.from_dict(json.loads(b)))
        try:  # (a bundle saved before categorical features has none)
            codes = CategoryCodes.fitted(registry, meta.get("categories") or {})
        except (ValueError, TypeError, AttributeError):
            raise BundleDamagedError("metadata", "its categories do not match the registry's categorical "
                                                 "features") from None
        calibrator = part("calibrator", lambda b: calibrator_from_dict(json.loads(b)))
        master_scale = part("master_scale", lambda b: master_scale_from_json(json.loads(b)))
        scorecard_config = part("scorecard_config", ScorecardConfig.model_validate_json)

        def optional(name: str, parse: Callable[[bytes], Any]) -> tuple[Any, str | None]:
            try:
                return part(name, parse), None
            except BundleDamagedError as exc:
                if strict:
                    raise
                damaged[PART_FILES[name]] = exc.problem
                return None, exc.problem

        def card(data: bytes) -> CreditScorecard:
            with quiet_solvers():
                loaded = joblib.load(io.BytesIO(data))
            if not isinstance(loaded, CreditScorecard):
                raise TypeError("not a scorecard")
            return loaded

        def model(data: bytes) -> lgb.Booster:
            if manifest is None and (problem := booster_text_problem(data)) is not None:
                raise _Refused(problem)
            return lgb.Booster(model_str=data.decode())

        scorecard, scorecard_error = optional("scorecard", card)
        booster, booster_error = optional("booster", model)
        if booster is None and scorecard is None:
            raise BundleDamagedError("booster and scorecard", f"{_said('model', booster_error)}; "
                                                              f"{_said('scorecard', scorecard_error)}")
        # the other files the manifest covers (the monitoring reference): said, not fatal
        for name in sorted(set(manifest or ()) - set(PART_FILES.values())):
            try:
                _verified(path, name, manifest)
            except ValueError as exc:
                if strict:
                    raise BundleDamagedError(name, str(exc)) from None
                damaged[name] = str(exc)
        return cls(
            registry=registry, booster=booster, booster_error=_said("model", booster_error),
            calibrator=calibrator, scorecard=scorecard, master_scale=master_scale,
            scorecard_config=scorecard_config, metadata=meta, source=path,
            scorecard_error=_said("scorecard", scorecard_error), damaged=damaged, codes=codes,
        )


class _Refused(Exception):
    """A model file refused before parsing."""


def _said(what: str, problem: str | None) -> str | None:
    """A part's problem as the answers say it: ``model file unreadable: damaged (digest
    mismatch)``."""
    if problem is None:
        return None
    for prefix in (f"{what} file ", "file "):
        if problem.startswith(prefix):
            problem = problem[len(prefix):]
            break
    return f"{what} file {problem}" if problem.startswith("unreadable") else f"{what} file unreadable: {problem}"


def master_scale_from_json(raw: Any) -> MasterScaleConfig:
    """The scale of a bundle's ``master_scale.json`` content (see ``read_master_scale``)."""
    if isinstance(raw, dict) and "version" not in raw:
        plain = MasterScaleConfig.model_validate(raw)
        raw = {**raw, "version": f"unversioned-{scale_fingerprint(plain)}"}
    return MasterScaleConfig.model_validate(raw)


def read_master_scale(path: Path) -> MasterScaleConfig:
    """The bundle's scale. One saved before scales had versions (no ``version`` in the file) is
    a scale of its own, ``unversioned-<fingerprint>``, not version "1": its edges may have been
    refitted to that model's validation window."""
    return master_scale_from_json(json.loads(path.read_text()))
