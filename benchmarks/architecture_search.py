"""Architecture search of the composition network against ElemNet's published architecture.

Runs ``deepmat search composition`` (NSGA-II on the composition MLP's declared space;
objectives validation MAE, measured predict latency and weights) on a random subset of the
OQMD ΔHf training split with ``--workers`` processes sharing one SQLite study, for a budget
of ``--trials`` finished trials. Then it trains the best architecture found (lowest
validation MAE) and ElemNet's 17-layer architecture the same way (same records, epochs,
schedule and seed; each with its own learning rate and batch size: the searched ones, and
the preset's for ElemNet), and compares them: MAE on the validation records (which the
search selected on) and on held-out training-split compounds that neither the search nor
the two trainings saw, seconds to predict 25,000 of those compositions (best of three, one
process), and weights.

    python benchmarks/architecture_search.py --out runs/architecture_search   # 60 trials, 2 workers
    python benchmarks/architecture_search.py --out /tmp/a --quick             # seconds

Models: ``OUT/best/`` and ``OUT/elemnet/`` (and every trial in ``OUT/search/trials/``).
Results: ``benchmarks/results/architecture_search.{json,png}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from _shared import command, machine, parser, search_metrics, write_json
from deepmat.train.metrics import save_figure
from deepmat.workflows.composition import DataSpec
from deepmat.workflows.search import (
    SearchJob,
    measure,
    predict_seconds,
    run_search,
    scatter_trials,
)
from deepmat.workflows.search_data import CompositionData
from deepmat.workflows.search_study import SamplerSpec

PREDICT_RECORDS = 25_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "architecture_search")
    p.add_argument("--trials", type=int, default=60, help="finished trials over all workers")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--subset", type=int, default=50_000, help="training compounds")
    p.add_argument("--val-subset", type=int, default=10_000, help="validation compounds per epoch")
    p.add_argument("--holdout", type=int, default=25_000, help="unseen training-split compounds")
    p.add_argument("--epochs", type=int, default=20, help="epochs of every trial and final fit")
    p.add_argument("--population", type=int, default=12, help="NSGA-II generation size")
    p.add_argument("--sampler", default="nsga2", help="nsga2 or tpe")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def train_the_same_way(model, train, val, out: Path):
    """Fit ``model`` on ``train`` with early stopping on ``val`` and save it to ``out``."""
    model.fit(train, val=val, workdir=out)
    model.save(out)
    return model


def row(model, data, val, holdout, sample, train_seconds: float) -> dict:
    """The comparison's numbers for one trained model."""
    measured = measure(model, data, val, sample)
    compositions = holdout.compositions[:PREDICT_RECORDS]
    return {
        "val_mae": measured["val_error"],
        "holdout_mae": float(model.evaluate(holdout)["mae"]),
        "predict_seconds": predict_seconds(model, compositions),
        "predict_records": len(compositions),
        "params": measured["params"],
        "flops": measured["flops"],
        "latency_seconds": measured["latency_seconds"],
        "architecture": model.spec.to_dict(),
        "lr": model.config.lr,
        "batch_size": model.config.batch_size,
        "epochs_run": model.training["epochs_run"],
        "train_seconds": train_seconds,
    }


def plot(summary: dict, metrics: dict, path: Path) -> None:
    """Every complete trial's validation MAE against its measured latency, the Pareto front,
    and the two retrained networks measured the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    scatter_trials(ax, summary, "latency_seconds")
    for name, marker in (("best", "*"), ("elemnet", "D")):
        m = metrics[name]
        ax.scatter(m["latency_seconds"] * 1e6, m["val_mae"], marker=marker, s=90, label=name)
    done = sum(t["state"] == "complete" for t in summary["trials"])
    ax.set(
        xscale="log",
        xlabel="predict µs per composition",
        ylabel="validation MAE (eV/atom)",
        title=f"Architecture search: {done} complete trials",
    )
    ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.trials, args.workers, args.epochs, args.population = 3, 1, 1, 2
        args.subset, args.val_subset, args.holdout = 600, 300, 300
    t0 = time.perf_counter()
    job = SearchJob(
        "elemnet",
        CompositionData(DataSpec("oqmd-dhf")),
        args.out / "search",
        trials=args.trials,
        study="architecture_search",
        workers=args.workers,
        sampler=SamplerSpec(args.sampler, args.population, seed=args.seed),
        epochs=args.epochs,
        subset=args.subset,
        val_subset=args.val_subset,
        seed=args.seed,
        space={"width": [16, 64], "blocks": [1, 3]} if args.quick else {},
    )
    summary = run_search(job)
    search_seconds = time.perf_counter() - t0

    full_train, full_val, _, _ = job.data.spec.train_val(seed=args.seed)
    base, train, val = job.data.load(job, (full_train, full_val))  # as every trial's
    seen = set(train.formulas)
    unseen = np.flatnonzero([f not in seen for f in full_train.formulas])
    rng = np.random.default_rng(args.seed + 1)
    holdout = full_train.subset(np.sort(rng.choice(unseen, args.holdout, replace=False)))
    sample = val.subset(np.arange(min(job.latency_records, len(val))))
    config = {"progress": sys.stderr.isatty()}
    metrics = {}
    for name, model in (
        ("best", base.searched(summary["best"]["point"])),
        ("elemnet", base),
    ):
        model.config.progress = config["progress"]
        start = time.perf_counter()
        train_the_same_way(model, train, val, args.out / name)
        metrics[name] = row(model, job.data, val, holdout, sample, time.perf_counter() - start)
    metrics["best"] |= {"trial": summary["best"]["number"], "point": summary["best"]["point"]}
    metrics["search"] = search_metrics(summary, args.workers, "best_trial_val_mae")
    results = {
        "benchmark": "architecture_search",
        "quick": args.quick,
        "command": command(),
        "data": {
            "dataset": "oqmd-dhf (CrabNet split)",
            "train": f"{len(train)} compounds of the train split, drawn with seed {args.seed}",
            "val": f"{len(val)} compounds of the val split (the search selects on it)",
            "holdout": f"{len(holdout)} other train-split compounds, seen by no fit",
        },
        "split": "oqmd-dhf train / val as distributed; holdout drawn from the train split",
        "sizes": {
            "train": len(train),
            "val": len(val),
            "holdout": len(holdout),
            "trials": args.trials,
            "workers": args.workers,
            "epochs": args.epochs,
        },
        "metrics": metrics,
        "models": {name: str(args.out / name) for name in ("best", "elemnet")},
        "wall_seconds": {"search": search_seconds, "total": time.perf_counter() - t0},
        "machine": machine(),
    }
    stem = "architecture_search_quick" if args.quick else "architecture_search"
    write_json(results, args.results, stem)
    plot(summary, metrics, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
