"""Monitoring the whole book: `riskcast monitor` on 1,000,000 rows by every registry feature,
against Evidently's drift preset run on the same rows with its defaults, in the same script.

Two books are generated (default 100,000 customers each: a baseline, and a recession book one
quarter later) and rescored by the champion of a trained work directory (``--workdir``, or one
trained once on 50,000 customers); each scored book is repeated to ``--rows`` rows (the drift
statistics cost the same on repeated rows as on distinct ones). Then, each in a fresh process,
reading the two Parquet files included:

- ``riskcast``: ``riskcast monitor`` (our PSI and Wasserstein on every row, Evidently's report
  on a sample of 200,000 rows a side, the summary page, the JSON), median of ``--runs``;
- ``evidently``: Evidently's ``DataDriftPreset()`` with its default methods on every row, its
  HTML and JSON (the baseline; once, it is slow).

    python benchmarks/monitoring.py                 # 1,000,000 rows a side
    python benchmarks/monitoring.py --rows 200000 --customers 20000 --runs 1
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

TARGET_SECONDS = 120.0


def step(name: str, reference: Path, current: Path, out: Path) -> dict:
    start = time.perf_counter()
    if name == "riskcast":
        from riskcast.cli import main

        code = main(["--quiet", "monitor", "--reference", str(reference), "--current", str(current),
                     "--out", str(out), "--workdir", str(out / "home")])
        summary = json.loads((out / "drift_summary.json").read_text())
        result = {"exit_code": code, "drift_share": summary["drift_share"], "score_psi": summary["score_psi"],
                  "sampled": summary["sampled"], "evidently_rows": summary["evidently_rows"]["current"]}
    elif name == "evidently":
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        from riskcast.features.registry import default_registry

        cols = [*default_registry().names, "pd_12m"]
        ref, cur = pd.read_parquet(reference, columns=cols), pd.read_parquet(current, columns=cols)
        ref, cur = ref.loc[:, ref.notna().any() & cur.notna().any()], cur.loc[:, ref.notna().any() & cur.notna().any()]
        definition = DataDefinition(numerical_columns=list(ref.columns))
        snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                                   Dataset.from_pandas(ref, data_definition=definition))
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text(snapshot.get_html_str(as_iframe=False))
        (out / "report.json").write_text(snapshot.json())
        result = {"columns": len(ref.columns)}
    else:
        raise SystemExit(f"unknown step {name!r}")
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_gb(), **result}


def _run(name: str, reference: Path, current: Path, out: Path) -> dict:
    return run_step(__file__, name, "--reference", str(reference), "--current", str(current), "--out", str(out))


def _prepare(args: argparse.Namespace, say) -> tuple[Path, Path]:
    from riskcast.features.registry import default_registry

    # scored by a champion of today's registry: files scored under another one are not reused
    root = Path(args.data) / f"monitor-{args.customers}-{args.rows}-{default_registry().version}"
    ref_path, cur_path = root / "reference.parquet", root / "current.parquet"
    if ref_path.exists() and cur_path.exists():
        return ref_path, cur_path
    import pandas as pd

    from _work import trained_workdir
    from riskcast.config import GeneratorConfig
    from riskcast.data.io import write_parquet
    from riskcast.data.synthetic import generate_book
    from riskcast.serving.rescore import rescore_book
    from riskcast.serving.runtime import build_core

    core = build_core(trained_workdir(50_000, args.workdir))
    for path, gen in ((ref_path, GeneratorConfig(customers=args.customers, seed=7)),
                      (cur_path, GeneratorConfig(customers=args.customers, seed=8, start="2020-04-01",
                                                 scenario="recession"))):
        say(f"generating and rescoring a {gen.scenario} book of {gen.customers:,} customers ...")
        tables = generate_book(gen)
        scored, _ = rescore_book(tables, core, tables.data_end)
        copies = -(-args.rows // len(scored))
        big = pd.concat([scored.assign(customer_id=scored["customer_id"].astype(str) + f"-{k}")
                         for k in range(copies)], ignore_index=True).iloc[:args.rows]
        write_parquet(big, path)
    return ref_path, cur_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows a side (default 1,000,000)")
    p.add_argument("--customers", type=int, default=100_000, help="customers per generated book")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workdir", help="a trained work directory (default: train one on 50,000 customers)")
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "riskcast-bench"))
    p.add_argument("--skip-baseline", action="store_true", help="do not run Evidently on every row")
    step_arguments(p, "--reference", "--current", "--out")
    args = p.parse_args(argv)
    if args.step:
        print(json.dumps(step(args.step, Path(args.reference), Path(args.current), Path(args.out))))
        return 0

    def say(msg: str) -> None:
        print(msg, flush=True)

    ref, cur = _prepare(args, say)
    with tempfile.TemporaryDirectory() as tmp:
        ours = []
        for i in range(args.runs):
            ours.append(_run("riskcast", ref, cur, Path(tmp) / f"ours-{i}"))
            say(f"  riskcast monitor run {i + 1}/{args.runs}: {ours[-1]['seconds']:.1f} s, "
                f"peak {ours[-1]['peak_gb']:.2f} GB, exit {ours[-1]['exit_code']}")
        base = None
        if not args.skip_baseline:
            base = _run("evidently", ref, cur, Path(tmp) / "evidently")
            say(f"  Evidently DataDriftPreset on every row: {base['seconds']:.1f} s, peak {base['peak_gb']:.2f} GB")
    o_s = statistics.median(r["seconds"] for r in ours)
    r0 = ours[0]
    say("")
    say(f"{args.rows:,} rows a side, {r0['evidently_rows']:,} of them in Evidently's report (sampled: {r0['sampled']}); "
        f"recession book against baseline: exit {r0['exit_code']}, drift share {r0['drift_share']:.0%}, "
        f"score PSI {r0['score_psi']:.3f}")
    say(f"{'step (fresh process, reading the Parquet files included)':58s} {'seconds':>8s} {'peak GB':>8s} {'vs baseline':>12s}")
    if base:
        say(f"{'Evidently DataDriftPreset(), default methods, every row':58s} {base['seconds']:8.1f} "
            f"{base['peak_gb']:8.2f} {1.0:11.2f}x")
    ratio = f"{o_s / base['seconds']:11.2f}x" if base else f"{'':12s}"
    say(f"{'riskcast monitor, median of ' + str(args.runs):58s} {o_s:8.1f} "
        f"{statistics.median(r['peak_gb'] for r in ours):8.2f} {ratio}  target <= {TARGET_SECONDS:.0f} s "
        f"{'met' if o_s <= TARGET_SECONDS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
