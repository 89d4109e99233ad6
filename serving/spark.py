"""Rescoring on Apache Spark: the champion's bundle and the credit policy as one MLflow pyfunc
model, applied to a Spark DataFrame of feature rows by ``mlflow.pyfunc.spark_udf``.

The model folder holds the champion's bundle files as registered (copied, not re-saved) and
the configuration, so every executor decides exactly as ``ScoringCore.decide_frame`` does on
one machine. Executors need riskcast installed (``pip install riskcast[spark]``); nothing else
is shipped. PySpark is imported only here and only when called.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
import pandas as pd

from riskcast.config import RiskcastConfig
from riskcast.env import quiet
from riskcast.errors import InputError
from riskcast.features.build import CONTEXT_COLUMNS
from riskcast.training.bundle import ModelBundle
from riskcast.training.tracking import LoadedModel

from .core import ScoringCore

#: the decision columns of ``ScoringCore.decide_frame`` with their Spark types, before the reasons
DECISION_FIELDS: tuple[tuple[str, str], ...] = (
    ("customer_id", "string"), ("pd_12m", "double"), ("score", "double"), ("grade", "string"),
    ("band", "string"), ("decision", "string"), ("credit_limit", "double"), ("limit_source", "string"),
    ("recommended_limit", "double"), ("recommended_terms_days", "long"), ("fallback", "boolean"), ("fallback_reason", "string"),
    ("exposure", "double"), ("decision_rule", "string"), ("decision_reason", "string"), ("conditions", "string"),
    ("early_payment_discount", "string"), ("model_version", "string"), ("model_kind", "string"),
)


def _fields(top_reasons: int) -> list[tuple[str, str]]:
    reasons = [(f"reason_{p}{part}", "string") for p in range(1, top_reasons + 1) for part in ("", "_feature")]
    return [*DECISION_FIELDS, *reasons]


def decision_schema(top_reasons: int) -> str:
    """The UDF's result type (Spark DDL): the decision columns, then each reason and its feature."""
    return ", ".join(f"{name} {kind}" for name, kind in _fields(top_reasons))


def decision_columns(top_reasons: int) -> list[str]:
    return [name for name, _ in _fields(top_reasons)]


class DecisionModel(mlflow.pyfunc.PythonModel):
    """Feature rows (customer id, registry features, policy facts) in, the rescore's decision
    columns out: the scoring core around the bundle, configured from the model's own config."""

    def load_context(self, context: Any) -> None:
        conf = context.model_config
        bundle = ModelBundle.load(context.artifacts["bundle"])
        bundle.compile_dir = Path(context.artifacts["bundle"]).parent / "compiled"  # per executor
        model = LoadedModel(bundle, conf["model_name"], conf["model_version"], conf["alias"])
        self.core = ScoringCore(RiskcastConfig.model_validate(conf["config"]), model, None)
        self.forced_fallback = conf.get("forced_fallback")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        out = self.core.decide_frame(model_input, self.forced_fallback)
        # spark_udf casts a text column with str(), None included: send "" and make it null again
        # on the Spark side (no decision text is ever empty)
        for c in _texts(out.columns):
            out[c] = out[c].where(out[c].notna(), "")
        return out


def _texts(columns: Any) -> list[str]:
    """The decision's text columns that may be empty (all but the id)."""
    kinds = dict(DECISION_FIELDS)
    return [c for c in columns if c != "customer_id" and (kinds.get(c) == "string" or c.startswith("reason_"))]


def save_decision_model(core: ScoringCore, path: str | Path, forced_fallback: str | None = None) -> Path:
    """The core's champion and configuration as a self-contained pyfunc model folder at ``path``
    (replaced if present), for ``spark_udf`` to ship to the executors. ``forced_fallback``:
    why the scorecard must decide every row (monitoring's fallback mode)."""
    if core.model is None or core.model.bundle.source is None:
        raise InputError(f"no champion model to score with: {core.model_error or 'bundle not loaded from disk'}",
                         field="model")
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    m = core.model
    with quiet("mlflow"):
        mlflow.pyfunc.save_model(
            str(path), python_model=DecisionModel(), artifacts={"bundle": str(m.bundle.source)},
            model_config={"model_name": m.name, "model_version": m.version, "alias": m.alias,
                          "config": core.cfg.model_dump(mode="json"), "forced_fallback": forced_fallback},
        )
    return path


def input_columns(columns: list[str], core: ScoringCore) -> list[str]:
    """What the model reads from a feature table: the id, every registry feature, the policy
    facts it has (a missing fact takes the policy's default, as online)."""
    missing = [c for c in ["customer_id", *core.registry.names] if c not in columns]
    if missing:
        raise InputError(f"features: column {missing[0]} is missing ({len(missing)} registry columns in all)",
                         field=missing[0])
    return ["customer_id", *core.registry.names, *[c for c in CONTEXT_COLUMNS if c in columns]]


def score_spark(features: Any, model_path: str | Path, core: ScoringCore) -> Any:
    """The PySpark entry point: a Spark DataFrame of feature rows (one per customer) in, the
    decision columns followed by the rest of the input's columns out. Lazy, like any Spark
    transformation: nothing runs until the result is written or collected."""
    from pyspark.sql import functions as F

    spark = features.sparkSession
    with quiet("mlflow"):  # env_manager="local" is the point: executors run riskcast as installed
        udf = mlflow.pyfunc.spark_udf(spark, str(model_path), result_type=decision_schema(core.cfg.serving.top_reasons),
                                      env_manager="local")
    cols = input_columns(list(features.columns), core)
    names = decision_columns(core.cfg.serving.top_reasons)
    texts = set(_texts(names))
    decided = [F.nullif(F.col(f"_decision.{n}"), F.lit("")).alias(n) if n in texts else F.col(f"_decision.{n}")
               for n in names]
    rest = [c for c in features.columns if c != "customer_id"]
    return features.withColumn("_decision", udf(F.struct(*cols))).select(*decided, *rest)


@contextmanager
def spark_session(master: str | None = None, app: str = "riskcast rescore") -> Iterator[Any]:
    """A Spark session on ``master``; without one, the session ``spark-submit`` set up when it
    started this process, else local mode on every core of this machine (bound to loopback,
    without the web UI). Dates in UTC. A session started here is stopped on the way out."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("engine: Spark is not installed; pip install 'riskcast[spark]' (and Java 17 or later)",
                         field="engine") from None
    builder = SparkSession.builder.appName(app).config("spark.sql.session.timeZone", "UTC")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # the JVM of spark-submit or the pyspark shell
    if master or not submitted:
        builder = builder.master(master or "local[*]")
    if (master or "local").startswith("local") and not submitted:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false"))
    existing = SparkSession.getActiveSession()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        if existing is None and not submitted:
            spark.stop()
