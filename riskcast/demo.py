"""The whole main job on a synthetic book, in a work directory: generate, train and register,
rescore, monitor. What ``riskcast demo`` runs; each step is the package function its own
command calls, so the demo and the commands cannot disagree.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import GeneratorConfig, RiskcastConfig, WorkPaths, load_config

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoOutcome:
    book: Path
    config_file: Path
    train: Any      # riskcast.training.pipeline.TrainOutcome
    rescore: Any    # riskcast.serving.rescore_job.RescoreJob
    monitor: Any    # riskcast.monitoring.run.MonitorOutcome
    #: a customer of the middle of the book, for the example order
    example_customer: str
    #: why the first model was made champion by hand (None: the gate promoted it, or a
    #: champion was there already)
    gate_override: str | None = None
    #: the defaults table against the label the ledger alone would give (``compare_labels``, and
    #: the label's ``days_past_due``)
    labels: dict[str, Any] | None = None


def demo_config_text(base_text: str, seller: dict[str, float]) -> str:
    """The work directory's ``riskcast.toml``: ``base_text`` (the user's ``--config``, if any)
    with the book's seller figures, unless it names its own seller."""
    if "seller" in tomllib.loads(base_text):
        return base_text
    return (base_text.rstrip() + "\n\n" if base_text.strip() else "") + (
        "# the demo's seller: its credit sales are the book (half its turnover), 10% of revenue as cash flow\n"
        "[seller]\n" + "".join(f"{k} = {v!r}\n" for k, v in seller.items()))


def run_demo(gen: GeneratorConfig, paths: WorkPaths, config_file: str | Path | None = None,
             progress: Progress | None = None) -> DemoOutcome:
    """Generate a book with ``gen`` into ``paths.book``, write the work directory's configuration
    (``config_file``'s settings and the book's seller), train and register, rescore the book on
    its last day and monitor it against the champion's reference."""
    import pandas as pd

    from riskcast.data.io import write_tables, write_text
    from riskcast.data.ledger import compare_labels, ledger_defaults
    from riskcast.data.schema import RAW_TABLES, validate_table
    from riskcast.data.synthetic import book_insurance, book_seller, generate_book
    from riskcast.monitoring.run import monitor
    from riskcast.serving.rescore_job import rescore_workdir
    from riskcast.training.pipeline import train_on_book

    say = progress or (lambda _m: None)
    base = Path(config_file).read_text(encoding="utf-8") if config_file else ""
    if config_file:
        load_config(config_file)  # a bad file is refused before anything is generated
    say(f"work directory {paths.root}")
    say(f"1/5 generating a synthetic book: {gen.customers:,} customers over {gen.years} years")
    tables = generate_book(gen, progress=say)
    # the seller insures its receivables: the credit view of its insurer comes with the book
    tables = dataclasses.replace(tables, credit_insurance=validate_table(
        RAW_TABLES["credit_insurance"], book_insurance(tables.invoices, tables.data_end)))
    write_tables(tables, paths.book)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_text(demo_config_text(base, book_seller(tables.invoices, tables.data_end)), paths.config)
    cfg: RiskcastConfig = load_config(paths.config)
    say("2/5 features, LightGBM, calibration, scorecard, MLflow")
    trained = train_on_book(tables, cfg, paths.root, progress=say)
    override = _first_champion(trained, cfg)
    say("3/5 rescoring the book")
    job = rescore_workdir(tables, paths.root, tables.data_end, paths.scored, config_path=paths.config, progress=say)
    scored = pd.read_parquet(paths.scored, columns=["customer_id", "pd_12m"])
    example = str(scored.sort_values("pd_12m")["customer_id"].iloc[len(scored) // 2])
    say("4/5 drift report: the champion's reference against the latest rescore")
    watched = monitor(paths.scored, paths.drift, cfg, paths, progress=say)
    say("5/5 done")
    labels = {**compare_labels(tables.defaults, ledger_defaults(tables.invoices, cfg.label.days_past_due,
                                                                cfg.label.min_amount)),
              "days_past_due": cfg.label.days_past_due}
    return DemoOutcome(paths.book, paths.config, trained, job, watched, example, override, labels)


def _first_champion(trained: Any, cfg: RiskcastConfig) -> str | None:
    """A demo without a champion cannot show the rest of the job: when the gate refused the
    first model of a new work directory, it is promoted by hand, on record (`riskcast models
    list` shows who and why), and the demo says so. A work directory with a champion keeps it."""
    from riskcast.training import lifecycle, tracking

    run = trained.run
    if run.promoted:
        return None
    from mlflow.tracking import MlflowClient

    if tracking.alias_version(MlflowClient(), run.model_name, tracking.CHAMPION) is not None:
        return None
    reason = (f"riskcast demo: the first model of a synthetic book, promoted although its gate refused it "
              f"({run.gate['reason']}), so that the demo can rescore and serve; not a validated model")
    lifecycle.promote(run.model_name, run.version, reason, by="riskcast demo", override_gate=True)
    return reason
