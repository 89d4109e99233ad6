"""MLflow glue: where runs go, logging one bundle as a pyfunc model, the registry and its aliases.

The tracking URI is always absolute (MLflow's default depends on the working directory);
``MLFLOW_TRACKING_URI`` wins when set, so a team can point riskcast at its own server.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from riskcast.env import quiet
from riskcast.errors import ModelUnavailableError

from .bundle import ModelBundle
from .evaluation import calibration_rejected

CHAMPION = "champion"
CHALLENGER = "challenger"


class RiskcastPyfunc(mlflow.pyfunc.PythonModel):
    """The registered model: loads the bundle directory and scores DataFrames of features."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        kind = (params or {}).get("kind", "lightgbm")
        return self.bundle.score_frame(model_input, kind=kind)


_OWN_URI = "RISKCAST_EMBEDDED_TRACKING_URI"


def embedded_uri(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def tracking_uri(workdir: Path) -> str:
    """The user's ``MLFLOW_TRACKING_URI`` if they set one, else the work directory's database.

    ``mlflow.set_tracking_uri`` exports the variable itself, so the value riskcast set is
    remembered and not mistaken for the user's.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != os.environ.get(_OWN_URI):
        return env
    return embedded_uri(workdir)


def configure(workdir: Path) -> str:
    """Point MLflow at the work directory's database (or the user's server)."""
    workdir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(workdir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri == embedded_uri(workdir):
        os.environ[_OWN_URI] = uri
    return uri


def ensure_experiment(name: str, workdir: Path) -> str:
    """The experiment's id; created with its artifacts beside the embedded database."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    embedded = mlflow.get_tracking_uri() == embedded_uri(workdir)
    location = (workdir / "mlartifacts").resolve().as_uri() if embedded else None
    return client.create_experiment(name, artifact_location=location)


def fingerprint(df: pd.DataFrame) -> str:
    """A short content hash of a training table, so a run names the exact data it saw."""
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    h.update(",".join(map(str, df.columns)).encode())
    return h.hexdigest()[:16]


def _requirements() -> list[str]:
    pins = []
    for dist in ("lightgbm", "pandas", "numpy", "scikit-learn", "scipy", "optbinning", "mlflow", "pydantic", "joblib"):
        try:
            pins.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            continue
    return pins


@dataclass(frozen=True)
class RegisteredRun:
    run_id: str
    experiment_id: str
    model_name: str
    version: str
    promoted: bool
    gate: dict[str, Any]


def champion_metric(model_name: str, metric: str) -> tuple[str, float] | None:
    """The current champion's version and its logged ``metric``, or None without a champion."""
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    run = client.get_run(mv.run_id)
    value = run.data.metrics.get(metric)
    return (mv.version, float(value)) if value is not None else (mv.version, float("nan"))


def champion_on_window(model_name: str, test: pd.DataFrame, label: str,
                       champion: ModelBundle | None = None) -> tuple[str, float] | None:
    """The champion's version and its AUC on the candidate's own test rows, so that both are
    judged on the same customers and the same months. None without a champion; NaN when the
    champion cannot score these rows (it cannot be loaded, or needs features they lack)."""
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, CHAMPION).version
    except MlflowException:
        return None
    if champion is None:  # not loaded by the caller
        try:
            champion = load_registered(model_name, CHAMPION).bundle
        except ModelUnavailableError:
            return (str(version), float("nan"))
    if any(n not in test.columns for n in champion.registry.names) or test[label].nunique() < 2:
        return (str(version), float("nan"))
    return (str(version), float(roc_auc_score(test[label], champion.model_pd(champion.matrix(test)))))


def champion_saw(champion: ModelBundle | None, test: pd.DataFrame) -> bool:
    """Whether the champion trained or validated on months of ``test``: then its AUC there is
    in-sample and flatters it (a retrain on an older cut of the book)."""
    if champion is None or "as_of" not in test.columns or test.empty:
        return False
    meta = champion.metadata
    seen = str(meta.get("valid_window") or meta.get("train_window") or "")
    if ".." not in seen:
        return False
    return pd.Timestamp(seen.split("..")[1]) >= pd.Timestamp(test["as_of"].min())


def promotion_gate(candidate_auc: float, champion: tuple[str, float] | None, max_drop: float,
                   min_auc: float = 0.6, rejected: tuple[int, int] | None = None,
                   max_rejected_share: float = 0.10) -> dict[str, Any]:
    """Promote when the AUC clears ``min_auc``, calibration is not rejected (``rejected`` =
    grades failing the Jeffreys test, grades tested; see ``calibration_rejected``) and the
    AUC is not worse than the champion's (if any) by more than ``max_drop``."""
    if not candidate_auc >= min_auc:
        return {"passed": False, "reason": f"test_auc {candidate_auc:.4f} is below the floor {min_auc}"}
    if rejected is not None and calibration_rejected(rejected[0], rejected[1], max_rejected_share):
        return {"passed": False, "reason": f"calibration rejected: the Jeffreys test rejects the PD of "
                                          f"{rejected[0]} of {rejected[1]} grades (at most {max_rejected_share:.0%}, "
                                          f"and more than chance explains)"}
    if champion is None:
        return {"passed": True, "reason": "no champion yet"}
    version, auc = champion
    if auc != auc:  # NaN: the champion cannot be compared
        return {"passed": False, "champion_version": version,
                "reason": f"champion v{version} cannot be scored on this test window; promote by hand"}
    passed = bool(candidate_auc >= auc - max_drop)
    verdict = "passes" if passed else "fails"
    return {"passed": passed, "champion_version": version, "champion_test_auc": auc,
            "reason": f"test_auc {candidate_auc:.4f} vs champion v{version} {auc:.4f} (allowed drop {max_drop}): {verdict}"}


def _rejected_grades(metrics: dict[str, float]) -> tuple[int, int] | None:
    if "test_grades_tested" not in metrics:
        return None
    tested = int(metrics["test_grades_tested"])
    return int(round(metrics["test_jeffreys_rejected_share"] * tested)), tested


def log_and_register(bundle: ModelBundle, *, experiment_id: str, model_name: str, params: dict[str, Any],
                     metrics: dict[str, float], tags: dict[str, str], sample: pd.DataFrame,
                     max_auc_drop: float, min_auc: float, max_rejected_share: float = 0.10,
                     artifacts: dict[str, str] | None = None, test: pd.DataFrame | None = None,
                     label: str = "default_12m", figures: dict[str, Any] | None = None,
                     card: Callable[[dict[str, Any], str, str], str] | None = None,
                     trials: Sequence[Any] = ()) -> RegisteredRun:
    """One run: params, metrics, the bundle as a registered pyfunc, alias ``challenger``, and
    ``champion`` if the gate passes. With ``test`` (an out-of-time window) the champion is
    scored on those very rows; without, its logged ``test_auc`` stands in. The gate's verdict
    and the comparison are written to the run."""
    client = MlflowClient()
    loaded = None
    if test is not None:  # loaded once: to see what it trained on, then to score it
        try:
            loaded = load_registered(model_name, CHAMPION).bundle
        except ModelUnavailableError:
            pass
    if test is not None and not champion_saw(loaded, test):
        champion = champion_on_window(model_name, test, label, loaded)
        basis = "champion scored on this run's test window"
    elif test is not None:
        champion = champion_metric(model_name, "test_auc")
        basis = "champion's logged test_auc (it trained on months of this run's test window)"
    else:
        champion = champion_metric(model_name, "test_auc")
        basis = "champion's logged test_auc"
    gate = promotion_gate(metrics["test_auc"], champion, max_drop=max_auc_drop, min_auc=min_auc,
                          rejected=_rejected_grades(metrics),
                          max_rejected_share=max_rejected_share)
    gate["basis"] = basis
    if "champion_test_auc" in gate:
        metrics = {**metrics, "champion_test_auc": gate["champion_test_auc"]}
    with quiet("mlflow"), mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags({**tags, "gate.passed": str(gate["passed"]), "gate.reason": gate["reason"]})
        for name, text in (artifacts or {}).items():
            mlflow.log_text(text, name)
        mlflow.log_dict({"candidate_test_auc": metrics["test_auc"], **gate}, "champion_comparison.json")
        for name, fig in (figures or {}).items():
            mlflow.log_figure(fig, name)
        for t in trials:  # the search, one nested run per setting tried
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial {t.number}", nested=True):
                mlflow.log_params(t.params)
                mlflow.log_metrics({"valid_auc": t.valid_auc, "best_iteration": t.best_iteration})
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir = bundle.save(Path(tmp) / "bundle")
            X = sample[bundle.registry.names].astype("float64").head(50)
            signature = infer_signature(X, bundle.score_frame(X), params={"kind": "lightgbm"})
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RiskcastPyfunc(),
                artifacts={"bundle": str(bundle_dir)},
                signature=signature,
                input_example=X.head(3),
                pip_requirements=_requirements(),
                registered_model_name=model_name,
            )
        version = str(info.registered_model_version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if gate["passed"]:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    if card is not None:
        client.log_text(run.info.run_id, card(gate, run.info.run_id, version), "model_card.md")
    return RegisteredRun(run.info.run_id, experiment_id, model_name, version, bool(gate["passed"]), gate)


@dataclass(frozen=True)
class LoadedModel:
    bundle: ModelBundle
    name: str
    version: str
    alias: str


def load_registered(model_name: str, alias: str = CHAMPION) -> LoadedModel:
    """The bundle behind ``models:/<name>@<alias>``; ModelUnavailableError if there is none."""
    uri = f"models:/{model_name}@{alias}"
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, alias).version
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise ModelUnavailableError(f"model {uri} cannot be loaded: {exc}") from None
    return LoadedModel(model.unwrap_python_model().bundle, model_name, str(version), alias)
