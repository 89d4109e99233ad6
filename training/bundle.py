"""The model bundle: booster, calibrator, scorecard, master scale and registry, versioned together.

Serving loads exactly one bundle (from the MLflow registry by alias) and never pieces of it,
so the features, the model and the scale it was validated with cannot be mixed up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from riskcast.config import MasterScaleConfig, ScorecardConfig
from riskcast.features.registry import FeatureRegistry

from .attribution import LeafAttribution
from .calibration import Calibrator, calibrator_from_dict
from .masterscale import SCALE_FINGERPRINT_COLUMN, SCALE_VERSION_COLUMN, MasterScale, scale_fingerprint
from .scorecard import CreditScorecard, logit_to_points, quiet_solvers

BUNDLE_FORMAT = 1


class ModelBundle:
    """Scores rows of registry features with the LightGBM model or the fallback scorecard."""

    def __init__(self, registry: FeatureRegistry, booster: lgb.Booster | None, calibrator: Calibrator,
                 scorecard: CreditScorecard, master_scale: MasterScaleConfig,
                 scorecard_config: ScorecardConfig, metadata: dict[str, Any] | None = None,
                 booster_error: str | None = None, source: Path | None = None) -> None:
        self.registry = registry
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
        self.scorecard = scorecard
        self.master_scale_config = master_scale
        self.master_scale = MasterScale(master_scale)
        self.scorecard_config = scorecard_config
        self.metadata = dict(metadata or {})

    # -- inputs ---------------------------------------------------------------------------
    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Registry columns in registry order as a float matrix (LightGBM ignores names)."""
        return df[self.registry.names].to_numpy(dtype=np.float64, na_value=np.nan)

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
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "booster.txt"))
        (path / "calibrator.json").write_text(json.dumps(self.calibrator.to_dict(), indent=2))
        joblib.dump(self.scorecard, path / "scorecard.joblib")
        (path / "master_scale.json").write_text(self.master_scale_config.model_dump_json(indent=2))
        (path / "scorecard_config.json").write_text(self.scorecard_config.model_dump_json(indent=2))
        (path / "registry.json").write_text(json.dumps(self.registry.to_dict(), indent=2))
        meta = {**self.metadata, "bundle_format": BUNDLE_FORMAT}
        (path / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, strict: bool = True) -> "ModelBundle":
        """The bundle saved at ``path``. With ``strict=False`` an unreadable model file leaves
        ``booster`` None and says why in ``booster_error``, so the scorecard can still answer."""
        path = Path(path)
        meta = json.loads((path / "metadata.json").read_text())
        if meta.get("bundle_format") != BUNDLE_FORMAT:
            raise ValueError(f"bundle at {path} has format {meta.get('bundle_format')}, expected {BUNDLE_FORMAT}")
        with quiet_solvers():
            scorecard = joblib.load(path / "scorecard.joblib")
        booster, error = None, None
        try:
            booster = lgb.Booster(model_file=str(path / "booster.txt"))
        except (lgb.basic.LightGBMError, OSError, ValueError) as exc:
            if strict:
                raise
            error = f"model file unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return cls(
            registry=FeatureRegistry.from_dict(json.loads((path / "registry.json").read_text())),
            booster=booster,
            booster_error=error,
            calibrator=calibrator_from_dict(json.loads((path / "calibrator.json").read_text())),
            scorecard=scorecard,
            master_scale=read_master_scale(path / "master_scale.json"),
            scorecard_config=ScorecardConfig.model_validate_json((path / "scorecard_config.json").read_text()),
            metadata=meta,
            source=path,
        )


def read_master_scale(path: Path) -> MasterScaleConfig:
    """The bundle's scale. One saved before scales had versions (no ``version`` in the file) is
    a scale of its own, ``unversioned-<fingerprint>``, not version "1": its edges may have been
    refitted to that model's validation window."""
    raw = json.loads(path.read_text())
    if isinstance(raw, dict) and "version" not in raw:
        plain = MasterScaleConfig.model_validate(raw)
        raw = {**raw, "version": f"unversioned-{scale_fingerprint(plain)}"}
    return MasterScaleConfig.model_validate(raw)
