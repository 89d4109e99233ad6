"""Training at book scale: the whole training step on about 1,000,000 snapshot rows, against
plain LightGBM on the same rows in the same script.

A generated book (default 135,000 customers over 6 years: the eleven quarterly snapshots of
the embargoed split's training, validation and test windows hold about a million
customer-quarters) is turned into labelled snapshots once; then, each in a fresh
process and as the median of the runs:

- ``lightgbm``: ``lightgbm.train`` on the training window with the same settings and number of
  trees, nothing else (the baseline);
- ``riskcast``: ``fit_bundle`` + ``evaluate_bundle``: LightGBM with monotone constraints and
  early stopping, the calibration choice, the master scale, the WoE scorecard, and every test
  metric of the model, the scorecard and the true PD.

    python benchmarks/training.py                      # ~1M rows, 3 runs
    python benchmarks/training.py --customers 20000 --runs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _work import peak_gb, run_step, step_arguments

from riskcast.env import offline_environment

offline_environment()  # before anything imports MLflow, BentoML or Evidently; children inherit it

TARGET_SECONDS = 180.0


def _split(snapshots: Path):
    import pandas as pd

    from riskcast.config import RiskcastConfig
    from riskcast.training.pipeline import book_split

    cfg = RiskcastConfig()
    data = pd.read_parquet(snapshots)
    return cfg, book_split(data, cfg)


def step(name: str, snapshots: Path, trees: int) -> dict:
    start = time.perf_counter()
    cfg, split = _split(snapshots)
    from riskcast.features.registry import default_registry
    from riskcast.training.dataset import LABEL

    registry = default_registry()
    loaded = time.perf_counter()
    if name == "lightgbm":
        import lightgbm as lgb

        from riskcast.training.model import LightGBMPD

        X, y = split.train[registry.names].to_numpy(float), split.train[LABEL].to_numpy()
        params = LightGBMPD(cfg.training.lightgbm).lgb_params(len(y))  # same settings, no constraints
        lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=trees)
        out = {"trees": trees}
    elif name == "riskcast":
        from riskcast.training.fit import evaluate_bundle, fit_bundle

        bundle = fit_bundle(split, registry, cfg.training, cfg.master_scale)
        metrics = evaluate_bundle(bundle, split.test)
        out = {"trees": bundle.metadata["best_iteration"], "test_auc": metrics["test_auc"],
               "oracle_test_auc": metrics.get("oracle_test_auc"), "scorecard_test_auc": metrics["scorecard_test_auc"],
               "test_brier": metrics["test_brier"], "oracle_test_brier": metrics.get("oracle_test_brier")}
    else:
        raise SystemExit(f"unknown step {name!r}")
    return {"seconds": time.perf_counter() - loaded, "load_seconds": loaded - start, "peak_gb": peak_gb(),
            "train_rows": len(split.train), "rows": len(split.train) + len(split.valid) + len(split.test), **out}


def _run(name: str, snapshots: Path, trees: int) -> dict:
    return run_step(__file__, name, "--snapshots", str(snapshots), "--trees", str(trees))


def _prepare(args, say) -> Path:
    root = Path(args.workdir) / f"train-{args.customers}-y{args.years}-s{args.seed}"
    from riskcast.features.registry import default_registry

    snapshots = root / f"snapshots-{default_registry().version}.parquet"  # remade when a feature changes
    if snapshots.exists():
        return snapshots
    from riskcast.config import GeneratorConfig, RiskcastConfig
    from riskcast.data.io import read_tables, write_parquet
    from riskcast.data.synthetic import write_book
    from riskcast.training.dataset import labelled_snapshots

    say(f"generating {args.customers:,} customers over {args.years} years ...")
    write_book(GeneratorConfig(customers=args.customers, years=args.years, seed=args.seed), root / "book")
    tables = read_tables(root / "book")
    cfg = RiskcastConfig()
    data = labelled_snapshots(tables, cfg.training, progress=say)
    write_parquet(data, snapshots)
    return snapshots


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=135_000)
    p.add_argument("--years", type=int, default=6)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "riskcast-bench"))
    step_arguments(p, "--snapshots")
    p.add_argument("--trees", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.step:
        print(json.dumps(step(args.step, Path(args.snapshots), args.trees)))
        return 0

    def say(msg: str) -> None:
        print(msg, flush=True)

    snapshots = _prepare(args, say)
    ours = []
    for i in range(args.runs):
        ours.append(_run("riskcast", snapshots, 0))
        say(f"  riskcast run {i + 1}/{args.runs}: {ours[-1]['seconds']:.1f} s, peak {ours[-1]['peak_gb']:.2f} GB, "
            f"{ours[-1]['trees']} trees")
    trees = ours[0]["trees"]  # the baseline grows as many trees as early stopping kept
    base = []
    for i in range(args.runs):
        base.append(_run("lightgbm", snapshots, trees))
        say(f"  lightgbm run {i + 1}/{args.runs}: {base[-1]['seconds']:.1f} s, peak {base[-1]['peak_gb']:.2f} GB")
    o_s = statistics.median(r["seconds"] for r in ours)
    b_s = statistics.median(r["seconds"] for r in base)
    r0 = ours[0]
    say("")
    say(f"{r0['rows']:,} snapshot rows ({r0['train_rows']:,} in the training window), median of {args.runs} run(s), "
        f"each in a fresh process (reading the snapshots not counted: {r0['load_seconds']:.1f} s)")
    say(f"{'step':58s} {'seconds':>8s} {'peak GB':>8s} {'vs lightgbm':>12s}")
    say(f"{'lightgbm.train, ' + str(trees) + ' trees, same settings (baseline)':58s} {b_s:8.1f} "
        f"{statistics.median(r['peak_gb'] for r in base):8.2f} {1.0:11.2f}x")
    say(f"{'riskcast training step, evaluation included':58s} {o_s:8.1f} "
        f"{statistics.median(r['peak_gb'] for r in ours):8.2f} {o_s / b_s:11.2f}x  "
        f"target <= {TARGET_SECONDS:.0f} s {'met' if o_s <= TARGET_SECONDS else 'MISSED'}")
    if r0.get("oracle_test_auc"):
        say(f"test AUC {r0['test_auc']:.4f} ({r0['test_auc'] / r0['oracle_test_auc']:.3f} of the true PD's "
            f"{r0['oracle_test_auc']:.4f}); Brier {r0['test_brier'] / r0['oracle_test_brier']:.3f} times the true PD's; "
            f"scorecard {r0['scorecard_test_auc'] / r0['test_auc']:.3f} of the model's AUC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
