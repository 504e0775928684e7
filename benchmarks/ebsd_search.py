"""Architecture search of the orientation CNN against deepmat's default EBSD network.

Simulates nickel EBSD patterns (60×60 detector, Poisson noise of ``--noise-counts``
electrons) at random orientations: a training set, a validation set (the search selects on
it) and a held-out test set that neither the search nor the trainings see, each drawn with
its own seed. Runs ``deepmat search ebsd`` (NSGA-II on the orientation CNN's declared space:
blocks, channels (the first block's at most 16), convolutions per block, kernel size,
read-out, head layers and widths, dropout, learning rate, batch size; objectives validation
mean disorientation, measured predict latency and weights) with ``--workers`` processes
sharing one SQLite study for ``--trials`` finished trials, the first of them the default
network (the estimator's ``search_start``). Then it trains the best
architecture found and the default network (:data:`~deepmat.models.ebsd.ORIENTATION_CNN_SMALL`
with the default preset's training) the same way (same patterns, epochs and seed), and
compares them on the test patterns: mean and median disorientation, the share within 2°,
patterns per second of ``predict`` (best of three, one process) and weights.

    python benchmarks/ebsd_search.py --out runs/ebsd_search          # 8 trials, 2 workers
    python benchmarks/ebsd_search.py --out /tmp/e --quick            # seconds

Models: ``OUT/best/`` and ``OUT/default/`` (and every trial in ``OUT/search/trials/``).
Results: ``benchmarks/results/ebsd_search.{json,png}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _shared import command, machine, parser, search_metrics, write_json
from deepmat.data import DetectorSpec
from deepmat.data.ebsd import read_pattern_dataset
from deepmat.data.ebsd_simulation import NoiseSpec
from deepmat.train.metrics import save_figure
from deepmat.workflows.ebsd import simulate_pattern_file
from deepmat.workflows.search import (
    SearchJob,
    measure,
    predict_seconds,
    run_search,
    scatter_trials,
)
from deepmat.workflows.search_data import PatternData
from deepmat.workflows.search_study import SamplerSpec

#: the seeds of the training, validation and test orientations (and their noise)
SEEDS = {"train": 0, "val": 1, "test": 2}
#: the declared space with the first block's channels at most 16 (the widest networks, 32
#: channels doubling over 5 blocks with 5×5 kernels, took 6 to 12 minutes an epoch on two
#: shared cores)
BENCHMARK_SPACE = {"channels": [4, 16]}
#: a corner of the space that trains in seconds on 20×20 patterns (--quick)
QUICK_SPACE = {"blocks": [3, 3], "channels": [4, 8], "head_width": [16, 32]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "ebsd_search")
    p.add_argument("--trials", type=int, default=8, help="finished trials over all workers")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-n", type=int, default=20_000, help="training patterns")
    p.add_argument("--val-n", type=int, default=1_000, help="validation patterns")
    p.add_argument("--test-n", type=int, default=1_000, help="test patterns")
    p.add_argument("--shape", type=int, nargs=2, default=[60, 60], help="detector rows, columns")
    p.add_argument("--noise-counts", type=float, default=300.0, help="Poisson noise, electrons")
    p.add_argument("--epochs", type=int, default=3, help="epochs of every trial and final fit")
    p.add_argument("--population", type=int, default=6, help="NSGA-II generation size")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def simulate(args: argparse.Namespace) -> dict[str, Path]:
    """The three pattern files, kept in OUT/data under names that hold their settings and
    reused by a run with the same settings."""
    folder = args.out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": args.train_n, "val": args.val_n, "test": args.test_n}
    settings = f"{args.shape[0]}x{args.shape[1]}-counts{args.noise_counts:g}"
    paths = {}
    for name, n in sizes.items():
        paths[name] = folder / f"{name}-{n}-{settings}-seed{SEEDS[name]}.h5"
        if not paths[name].exists():
            simulate_pattern_file(
                paths[name],
                n=n,
                detector=DetectorSpec(shape=tuple(args.shape)),
                noise=NoiseSpec(counts=args.noise_counts),
                seed=SEEDS[name],
                workers=2,
                progress=False,
            )
    return paths


def row(model, data: PatternData, val, test, train_seconds: float) -> dict:
    """The comparison's numbers for one trained network."""
    measured = measure(model, data, val, data.head(val, 256))
    scores = model.evaluate(test.patterns, test.rotations)
    return {
        "val_mean_disorientation_deg": measured["val_error"],
        "test_mean_disorientation_deg": scores["mean_disorientation_deg"],
        "test_median_disorientation_deg": scores["median_disorientation_deg"],
        "test_within_2deg": scores["within_2deg"],
        "patterns_per_second": len(test) / predict_seconds(model, test.patterns),
        "params": measured["params"],
        "flops": measured["flops"],
        "architecture": model.spec.to_dict(),
        "lr": model.config.lr,
        "batch_size": model.config.batch_size,
        "epochs_run": model.training["epochs_run"],
        "train_seconds": train_seconds,
    }


def plot(summary: dict, metrics: dict, path: Path) -> None:
    """Every complete trial's validation disorientation against its measured latency, the
    Pareto front, and the two retrained networks measured the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=110)
    scatter_trials(ax, summary, "latency_seconds")
    for name, marker in (("best", "*"), ("default", "D")):
        m = metrics[name]
        latency = 1e6 / m["patterns_per_second"]
        ax.scatter(latency, m["val_mean_disorientation_deg"], marker=marker, s=90, label=name)
    done = sum(t["state"] == "complete" for t in summary["trials"])
    ax.set(
        xscale="log",
        xlabel="predict µs per pattern",
        ylabel="validation mean disorientation (°)",
        title=f"Orientation CNN search: {done} complete trials",
    )
    ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.trials, args.workers, args.epochs, args.population = 2, 1, 1, 2
        args.train_n, args.val_n, args.test_n, args.shape = 200, 60, 60, [20, 20]
    t0 = time.perf_counter()
    paths = simulate(args)
    data = PatternData((str(paths["train"]),), str(paths["val"]))
    job = SearchJob(
        "orientation-cnn",
        data,
        args.out / "search",
        trials=args.trials,
        study="ebsd_search",
        workers=args.workers,
        sampler=SamplerSpec("nsga2", args.population, seed=args.seed),
        epochs=args.epochs,
        seed=args.seed,
        space=QUICK_SPACE if args.quick else BENCHMARK_SPACE,
    )
    search_start = time.perf_counter()
    summary = run_search(job)
    search_seconds = time.perf_counter() - search_start

    base, train, val = data.load(job)  # as every trial's
    test = read_pattern_dataset(paths["test"])
    metrics = {}
    for name, model in (("best", base.searched(summary["best"]["point"])), ("default", base)):
        start = time.perf_counter()
        data.fit(model, train, val, args.out / name)
        model.save(args.out / name)
        metrics[name] = row(model, data, val, test, time.perf_counter() - start)
    metrics["best"] |= {"trial": summary["best"]["number"], "point": summary["best"]["point"]}
    best_key = "best_trial_val_mean_disorientation_deg"
    metrics["search"] = search_metrics(summary, args.workers, best_key)
    detector = f"{args.shape[0]}×{args.shape[1]} nickel patterns, Poisson noise"
    results = {
        "benchmark": "ebsd_search",
        "quick": args.quick,
        "command": command(),
        "data": {
            name: f"{path} ({len(read_pattern_dataset(path))} {detector}, seed {SEEDS[name]})"
            for name, path in paths.items()
        },
        "split": "three independent simulations at random orientations (seeds 0, 1, 2); the "
        "search selects on val, test is seen by no fit or selection",
        "sizes": {
            "train": len(train),
            "val": len(val),
            "test": len(test),
            "trials": args.trials,
            "workers": args.workers,
            "epochs": args.epochs,
            "noise_counts": args.noise_counts,
        },
        "metrics": metrics,
        "models": {name: str(args.out / name) for name in ("best", "default")},
        "wall_seconds": {"search": search_seconds, "total": time.perf_counter() - t0},
        "machine": machine(),
    }
    stem = "ebsd_search_quick" if args.quick else "ebsd_search"
    write_json(results, args.results, stem)
    plot(summary, metrics, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
