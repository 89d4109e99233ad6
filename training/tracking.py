"""MLflow glue: where runs go, logging one bundle as a pyfunc model, the registry and its aliases.

The tracking URI is always absolute (MLflow's default depends on the working directory);
``MLFLOW_TRACKING_URI`` wins when set, so a team can point riskcast at its own server.

MLflow keeps artifact locations as absolute URIs (a relative one is resolved against the
current directory when the experiment is created), so a work directory copied or moved
elsewhere would still read and write the old folder's ``mlartifacts``: ``configure`` repoints
the embedded database at its own work directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
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
from riskcast.errors import InputError, ModelUnavailableError

from .bundle import ModelBundle, write_manifest
from .evaluation import calibration_rejected

CHAMPION = "champion"
CHALLENGER = "challenger"
#: the monitoring baseline (the scored test window) inside the bundle folder of each version
REFERENCE_FILE = "reference.parquet"
#: registered-model tags ``champion.history.000001``...: one per change of champion, oldest
#: first (one tag each, not one growing list: a registry server's tag values are bounded)
HISTORY_PREFIX = "champion.history."
GATE_ACTOR = "promotion gate"


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
    """Point MLflow at the work directory's database (or the user's server). The embedded
    database is first repointed at this work directory's ``mlartifacts`` if it was copied or
    moved here from another folder (see ``relocate_artifacts``); a user's server never is."""
    workdir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(workdir)
    if uri == embedded_uri(workdir):
        relocate_artifacts(workdir / "mlflow.db", workdir / "mlartifacts")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri == embedded_uri(workdir):
        os.environ[_OWN_URI] = uri
    return uri


#: every (table, column) in which MLflow keeps an artifact location, with a row filter
_LOCATIONS: tuple[tuple[str, str, str], ...] = (
    ("experiments", "artifact_location", ""),
    ("runs", "artifact_uri", ""),
    ("logged_models", "artifact_location", ""),
    ("model_versions", "storage_location", ""),
    ("model_versions", "source", ""),  # a path under MLflow 2 (``models:/m-...`` under 3)
    ("trace_tags", "value", "key = 'mlflow.artifactLocation'"),
    ("workspaces", "trace_archival_location", ""),
)


def _foreign_stores(con: sqlite3.Connection, own: str) -> list[str]:
    """Experiment locations of the form ``file://<folder>/mlartifacts`` (what
    ``ensure_experiment`` creates) other than ``own``: the work directory this database was
    copied or moved from."""
    rows = con.execute("SELECT DISTINCT artifact_location FROM experiments").fetchall()
    return sorted({loc for (loc,) in rows
                   if isinstance(loc, str) and loc.startswith("file://") and loc.endswith("/mlartifacts")
                   and loc != own})


def relocate_artifacts(db: Path, artifacts: Path) -> dict[str, int]:
    """Rewrite the artifact locations of the SQLite database ``db`` that point into another
    folder's ``mlartifacts`` so that they point into ``artifacts`` instead; the rows changed
    per ``table.column`` (empty when nothing pointed elsewhere).

    Only locations under an experiment root ``file://<folder>/mlartifacts`` are touched, all
    in one transaction (a reader sees the old locations or the new ones, never a mix), and
    only when ``artifacts`` exists: a database copied without its artifacts keeps pointing
    at the folder that has them."""
    if not db.is_file() or not artifacts.is_dir():
        return {}
    own = artifacts.resolve().as_uri()
    try:
        con = sqlite3.connect(db, timeout=30, isolation_level=None)
    except sqlite3.Error as exc:
        raise ModelUnavailableError(f"the model registry {db} cannot be opened: {exc}") from None
    try:
        columns = {table: {row[1] for row in con.execute(f"PRAGMA table_info('{table}')")}
                   for table in {t for t, _, _ in _LOCATIONS}}
        if "artifact_location" not in columns["experiments"] or not _foreign_stores(con, own):
            return {}
        con.execute("BEGIN IMMEDIATE")  # one writer; re-read under the lock
        changed: dict[str, int] = {}
        for old in _foreign_stores(con, own):
            for table, column, where in _LOCATIONS:
                if column not in columns[table]:
                    continue  # not in this MLflow version's schema
                sql = (f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                       f'WHERE ("{column}" = ? OR substr("{column}", 1, ?) = ?)' + (f" AND {where}" if where else ""))
                n = con.execute(sql, (own, len(old) + 1, old, len(old) + 1, old + "/")).rowcount
                if n:
                    key = f"{table}.{column}"
                    changed[key] = changed.get(key, 0) + n
        con.execute("COMMIT")
        return changed
    except sqlite3.Error as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise ModelUnavailableError(f"the model registry {db} points into another folder's mlartifacts and "
                                    f"cannot be repointed at {artifacts}: {exc}") from None
    finally:
        con.close()


def ensure_experiment(name: str, workdir: Path) -> str:
    """The experiment's id; created with its artifacts in the work directory's ``mlartifacts``
    when MLflow is given a database (embedded or the user's): MLflow would otherwise put them
    under ``./mlruns`` of whatever folder the job runs in. A tracking server keeps its own."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    server = mlflow.get_tracking_uri().split(":", 1)[0] in ("http", "https", "databricks")
    location = None if server else (workdir / "mlartifacts").resolve().as_uri()
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
class ChampionEvent:
    """One change of champion: which version became champion, which it replaced, how
    (``gate``: by the promotion gate at registration; ``promote``, ``rollback``: by hand),
    who, when (ISO 8601, UTC) and why."""

    seq: int
    action: str
    version: str
    previous: str | None
    by: str
    at: str
    reason: str
    override_gate: bool = False

    def __str__(self) -> str:
        how = {"gate": "by the promotion gate", "promote": f"promoted by {self.by}",
               "rollback": f"rolled back by {self.by}"}.get(self.action, f"{self.action} by {self.by}")
        was = f" (was v{self.previous})" if self.previous else ""
        override = ", gate overridden" if self.override_gate else ""
        return f"v{self.version} champion{was}: {how} at {self.at}{override}: {self.reason}"

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "seq"}, sort_keys=True)

    @classmethod
    def from_tag(cls, key: str, value: str) -> "ChampionEvent":
        data = json.loads(value)
        return cls(seq=int(key[len(HISTORY_PREFIX):]), action=str(data["action"]), version=str(data["version"]),
                   previous=None if data.get("previous") is None else str(data["previous"]),
                   by=str(data["by"]), at=str(data["at"]), reason=str(data["reason"]),
                   override_gate=bool(data.get("override_gate", False)))


def history_from_tags(tags: dict[str, str]) -> list[ChampionEvent]:
    """The champion history held in a registered model's tags, oldest first (tags that are
    not well-formed events are skipped: they are nobody's record)."""
    events = []
    for key, value in tags.items():
        if not key.startswith(HISTORY_PREFIX) or not key[len(HISTORY_PREFIX):].isdigit():
            continue
        try:
            events.append(ChampionEvent.from_tag(key, value))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(events, key=lambda e: e.seq)


def champion_history(model_name: str) -> list[ChampionEvent]:
    """Every change of ``model_name``'s champion on record, oldest first."""
    try:
        tags = MlflowClient().get_registered_model(model_name).tags
    except MlflowException:
        raise InputError(f"model_name: no registered model named {model_name!r}", field="model_name") from None
    return history_from_tags(dict(tags))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_champion_change(model_name: str, *, action: str, version: str, previous: str | None, by: str,
                           reason: str, override_gate: bool = False, at: str | None = None) -> ChampionEvent:
    """Append one event to the registered model's champion history and mark the version with
    who made it champion, when and why. The caller moves the alias."""
    client = MlflowClient()
    history = champion_history(model_name)
    event = ChampionEvent(seq=(history[-1].seq + 1) if history else 1, action=action, version=str(version),
                          previous=None if previous is None else str(previous), by=by, at=at or _now(),
                          reason=reason, override_gate=override_gate)
    client.set_registered_model_tag(model_name, f"{HISTORY_PREFIX}{event.seq:06d}", event.to_json())
    for key, value in {"champion.action": action, "champion.by": by, "champion.at": event.at,
                       "champion.reason": reason, "champion.gate_overridden": str(override_gate)}.items():
        client.set_model_version_tag(model_name, event.version, key, value)
    return event


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


def _figure(x: float | None) -> float | None:
    """A figure fit for JSON: NaN and infinities (nothing measured) become None."""
    return float(x) if x is not None and math.isfinite(x) else None


def _bar(x: float) -> str:
    """A threshold as configured, with at least two decimals (0.6 -> 0.60, 0.005 -> 0.005)."""
    text = f"{x:.6f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.split(".")[1]))


def _check(check: str, figure: float | None, threshold: float | None, passed: bool | None,
           statement: str) -> dict[str, Any]:
    return {"check": check, "figure": _figure(figure), "threshold": _figure(threshold),
            "passed": passed, "statement": statement}


def _floor_check(auc: float, min_auc: float) -> dict[str, Any]:
    if auc >= min_auc:
        return _check("auc_floor", auc, min_auc, True, f"AUC {auc:.4f} >= floor {_bar(min_auc)}: ok")
    return _check("auc_floor", auc, min_auc, False, f"AUC {auc:.4f} is below the floor {_bar(min_auc)}: fails")


def _calibration_check(rejected: tuple[int, int] | None, max_share: float) -> dict[str, Any]:
    if rejected is None or rejected[1] <= 0:
        return _check("calibration", None, max_share, None, "calibration (Jeffreys): no grade tested: not checked")
    bad, tested = rejected
    share = bad / tested
    counted = f"{bad} of {tested} grades rejected"
    if share <= max_share:
        return _check("calibration", share, max_share, True,
                      f"calibration (Jeffreys): {counted}, at most {max_share:.0%}: ok")
    if not calibration_rejected(bad, tested, max_share):
        return _check("calibration", share, max_share, True,
                      f"calibration (Jeffreys): {counted}, above {max_share:.0%} but no more than chance "
                      f"explains: ok")
    return _check("calibration", share, max_share, False,
                  f"calibration rejected (Jeffreys): {counted}, above {max_share:.0%} and more than chance "
                  f"explains: fails")


def _champion_check(auc: float, champion: tuple[str, float] | None, max_drop: float) -> dict[str, Any]:
    if champion is None:
        return _check("champion", auc, None, None, "no champion yet")
    version, theirs = champion
    if not math.isfinite(theirs):
        return _check("champion", auc, None, False,
                      f"champion v{version} cannot be scored on this test window: promote by hand")
    passed = bool(auc >= theirs - max_drop)
    return _check("champion", auc, theirs - max_drop, passed,
                  f"AUC {auc:.4f} vs champion v{version} {theirs:.4f}, allowed drop {_bar(max_drop)}: "
                  f"{'ok' if passed else 'fails'}")


def promotion_gate(candidate_auc: float, champion: tuple[str, float] | None, max_drop: float,
                   min_auc: float = 0.6, rejected: tuple[int, int] | None = None,
                   max_rejected_share: float = 0.10) -> dict[str, Any]:
    """Promote when the AUC clears ``min_auc``, calibration is not rejected (``rejected`` =
    grades failing the Jeffreys test, grades tested; see ``calibration_rejected``) and the
    AUC is not worse than the champion's (if any) by more than ``max_drop``.

    Every check is judged and stated with its figure, whichever decided, so that a reviewer
    sees the whole case: ``reason`` joins the statements, ``checks`` holds them as records
    (``passed`` None: nothing to judge, as with no champion yet)."""
    checks = [_floor_check(candidate_auc, min_auc), _calibration_check(rejected, max_rejected_share),
              _champion_check(candidate_auc, champion, max_drop)]
    out: dict[str, Any] = {"passed": all(c["passed"] is not False for c in checks),
                           "reason": "; ".join(c["statement"] for c in checks), "checks": checks}
    if champion is not None:
        out["champion_version"] = champion[0]
        if math.isfinite(champion[1]):
            out["champion_test_auc"] = champion[1]
    return out


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
                     trials: Sequence[Any] = (), run_name: str | None = None,
                     reference: pd.DataFrame | None = None) -> RegisteredRun:
    """One run: params, metrics, the bundle as a registered pyfunc, alias ``challenger``, and
    ``champion`` if the gate passes (recorded in the champion history). With ``test`` (an
    out-of-time window) the champion is scored on those very rows; without, its logged
    ``test_auc`` stands in. The gate's verdict and the comparison are written to the run.

    The run is named ``"<run_name> v<version>"`` (``run_name`` defaults to the model's name),
    so that the tracking UI lists runs by the version they made. ``reference`` (the scored
    test window) is saved in the bundle folder, so that each version carries the baseline
    it is to be monitored against (see ``load_reference``)."""
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
    base_name = run_name or model_name
    with quiet("mlflow"), mlflow.start_run(experiment_id=experiment_id, run_name=base_name) as run:
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
            if reference is not None:
                reference.to_parquet(bundle_dir / REFERENCE_FILE, index=False)
                write_manifest(bundle_dir)  # the manifest covers the bundle as logged
            X = bundle.codes.signature_frame(sample.head(50))
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
    client.set_tag(run.info.run_id, "mlflow.runName", f"{base_name} v{version}")
    if reference is not None:
        client.set_model_version_tag(model_name, version, "reference_rows", str(len(reference)))
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if gate["passed"]:
        previous = alias_version(client, model_name, CHAMPION)
        client.set_registered_model_alias(model_name, CHAMPION, version)
        record_champion_change(model_name, action="gate", version=version, previous=previous, by=GATE_ACTOR,
                               reason=gate["reason"])
    if card is not None:
        client.log_text(run.info.run_id, card(gate, run.info.run_id, version), "model_card.md")
    return RegisteredRun(run.info.run_id, experiment_id, model_name, version, bool(gate["passed"]), gate)


@dataclass(frozen=True)
class LoadedModel:
    bundle: ModelBundle
    name: str
    version: str
    alias: str


def alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when it points nowhere."""
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def resolve_version(model_name: str, alias_or_version: str) -> str:
    """The version number behind an alias (``champion``) or a version given as digits;
    ModelUnavailableError when there is none."""
    client = MlflowClient()
    key = str(alias_or_version).strip()
    try:
        if key.isdigit():
            return str(client.get_model_version(model_name, key).version)
        return str(client.get_model_version_by_alias(model_name, key).version)
    except MlflowException:
        raise ModelUnavailableError(f"model {model_name} has no version or alias {key!r}") from None


def reference_path(bundle: ModelBundle | str | Path) -> Path:
    """Where a bundle folder (or a loaded bundle's folder) keeps its monitoring reference. The
    file is absent in versions registered before references were kept with the bundle: the
    caller checks, and ``load_reference`` says so."""
    folder = bundle.source if isinstance(bundle, ModelBundle) else bundle
    if folder is None:
        raise ModelUnavailableError("the bundle was not loaded from a folder, so it has no monitoring reference")
    return Path(folder) / REFERENCE_FILE


def load_reference(model_name: str, alias_or_version: str = CHAMPION,
                   columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The monitoring reference registered with one version (by alias or number): the test
    window it was validated on, scored by it. Only that file is downloaded, not the model.
    ``columns``: only those of them the reference has."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    version = resolve_version(model_name, alias_or_version)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with quiet("mlflow"):
                local = ModelsArtifactRepository(f"models:/{model_name}/{version}").download_artifacts(
                    f"artifacts/bundle/{REFERENCE_FILE}", dst_path=tmp)
        except (MlflowException, OSError) as exc:
            raise ModelUnavailableError(
                f"model {model_name} version {version} carries no monitoring reference (registered before "
                f"references were kept with the bundle, or its artifacts are unreachable: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); give the reference "
                "table explicitly") from None
        if columns is None:
            return pd.read_parquet(local)
        import pyarrow.parquet as pq

        wanted = set(columns)
        return pd.read_parquet(local, columns=[c for c in pq.read_schema(local).names if c in wanted])


def load_registered(model_name: str, alias: str = CHAMPION) -> LoadedModel:
    """The bundle behind ``models:/<name>@<alias>``; ModelUnavailableError if there is none."""
    uri = f"models:/{model_name}@{alias}"
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, alias).version
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise ModelUnavailableError(f"model {uri} cannot be loaded: {exc}") from None
    return LoadedModel(model.unwrap_python_model().bundle, model_name, str(version), alias)
