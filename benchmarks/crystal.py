"""CGCNN (gated and shared convolutions, linear pooling) and the perovskite site network.

Trains on ``mp-eform`` (Materials Project formation energies, the CGCNN set) the gated
and the shared-weight CGCNN, and on ``perovskites`` (Castelli's cubic ABX3 set) the gated
CGCNN, its interpretable linear-pooling variant and the site network on electronegativity
and ionic radius. Every split keeps one crystal on one side (StructureMatcher keys),
early stopping uses the validation part, and the test part is scored once at the end.
Also measured: crystal-graph building time and training throughput end to end.

    python benchmarks/crystal.py --out runs/crystal          # full
    python benchmarks/crystal.py --out /tmp/c --quick        # seconds

Each model is saved as ``OUT/<model>/`` with its ``split.json``
(``deepmat evaluate OUT/cgcnn_gated mp-eform --part test --json`` scores it on its test
records).
Rerunning with the same ``--out`` resumes training from the last checkpoints.
``--only NAME ...`` trains only those models and keeps the others' entries in the results
file; ``commands`` there names the command behind each model's numbers.
Results: ``benchmarks/results/crystal.{json,png}``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from _shared import command, machine, merge_earlier, parser, write_json
from deepmat.data import dataset_path
from deepmat.represent.crystal_graph import GraphSettings, build_graphs
from deepmat.train import TrainConfig
from deepmat.workflows.crystal import (
    make_structure_model,
    read_structures,
    split_structures,
    train_structure_model,
)

# Xie and Grossman (Phys. Rev. Lett. 120, 145301, 2018) and Ye et al. (Nat. Commun. 9,
# 3800, 2018), as quoted by the review; eV/atom.
PAPER = {
    "cgcnn_gated": 0.039,
    "cgcnn_shared": 0.108,
    "cgcnn_perovskites": 0.099,
    "cgcnn_linear_pool": 0.130,
    "perovskite_mlp": 0.034,
}
REFERENCE_THROUGHPUT = 40.0  # structures/s, the reference CGCNN code on 2 cores (issue #5)
# (benchmark name, model, dataset, paper key)
RUNS = (
    ("perovskite_mlp", "perovskite-mlp", "perovskites"),
    ("cgcnn_linear_pool", "cgcnn-linear", "perovskites"),
    ("cgcnn_gated_perovskites", "cgcnn", "perovskites"),
    ("cgcnn_gated", "cgcnn", "mp-eform"),
    ("cgcnn_shared", "cgcnn-shared", "mp-eform"),
)

# results keys with one entry per model or dataset, merged with the earlier results by --only
PER_MODEL = ("data", "split", "sizes", "graph_building", "metrics", "histories", "models")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "crystal")
    p.add_argument("--mp-epochs", type=int, default=200, help="CGCNN epochs on mp-eform")
    p.add_argument("--perov-epochs", type=int, default=150, help="CGCNN epochs on perovskites")
    p.add_argument("--mlp-epochs", type=int, default=500, help="site network epochs")
    p.add_argument("--batch-size", type=int, default=32, help="CGCNN batch size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument("--limit", type=int, default=None, help="first records of each dataset")
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="benchmark models to run; the others keep their entries in the results file",
    )
    return p.parse_args(argv)


def graph_timing(structures: list, n: int = 2000) -> dict:
    """Seconds to build the crystal graphs of ``n`` structures from scratch (no cache)."""
    sample = structures[:n]
    start = time.perf_counter()
    graphs = build_graphs(sample)
    seconds = time.perf_counter() - start
    return {
        "structures": len(sample),
        "seconds": seconds,
        "structures_per_second": len(sample) / seconds,
        "mean_atoms": float(graphs.n_atoms.mean()),
        "mean_edges_per_atom": float(len(graphs.distances) / graphs.n_atoms.sum()),
    }


def rebuild_timing(structures: list, n: int = 300, settings=None) -> dict:
    """Structures per second of the per-epoch data path of the reference CGCNN code, which
    every epoch parses each CIF and asks pymatgen for its neighbours atom by atom
    (``get_all_neighbors``, a Python sort per atom): an upper bound on its training
    throughput, before any network cost."""
    settings = settings or GraphSettings()
    texts = [s.to(fmt="cif") for s in structures[:n]]
    k = settings.max_neighbors
    start = time.perf_counter()
    for text in texts:
        structure = Structure.from_str(text, fmt="cif")
        _ = [
            [(site.index, site.nn_distance) for site in sorted(atom, key=_distance)[:k]]
            for atom in structure.get_all_neighbors(settings.cutoff)
        ]
    seconds = time.perf_counter() - start
    return {
        "structures": len(texts),
        "seconds": seconds,
        "structures_per_second": len(texts) / seconds,
    }


def _distance(neighbour) -> float:
    return neighbour.nn_distance


def throughput(model, n_train: int) -> dict:
    """Training structures per second: over the epochs this run trained (graphs, validation
    and checkpoints included; none when it only restored a finished run) and over the
    median epoch."""
    trained = model.fit_result.epochs_trained
    epoch_seconds = [h["epoch_seconds"] for h in model.fit_result.history if "epoch_seconds" in h]
    out = {}
    if trained:
        out["structures_per_second"] = n_train * trained / model.training["seconds"]
    if epoch_seconds:
        out["epoch_structures_per_second"] = n_train / float(np.median(epoch_seconds))
    return out


def plot(results: dict, histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=120)
    names = list(results["metrics"])
    ours = [
        results["metrics"][n].get(
            "val_mae_mp_eform", results["metrics"][n].get("val_mae_perovskites")
        )
        for n in names
    ]
    paper = [PAPER.get(n if n != "cgcnn_gated_perovskites" else "cgcnn_perovskites") for n in names]
    x = np.arange(len(names))
    ax1.bar(x - 0.2, ours, 0.4, label="deepmat (validation)")
    ax1.bar(x + 0.2, [p or 0 for p in paper], 0.4, label="paper", color="gray")
    ax1.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    ax1.set(ylabel="MAE (eV/atom)", title="Formation energy, held-out structures")
    ax1.legend()
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        ax2.plot(epochs, [h.get("val_mae", math.nan) for h in history], label=name)
    ax2.set(xlabel="epoch", ylabel="validation MAE (eV/atom)", yscale="log", title="Training")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.mp_epochs, args.perov_epochs, args.mlp_epochs = 2, 2, 5
        args.limit = args.limit or 400
    t0 = time.perf_counter()
    runs = [r for r in RUNS if args.only is None or r[0] in args.only]
    tables, splits, wall = {}, {}, {}
    for dataset in sorted({r[2] for r in runs}):
        start = time.perf_counter()
        tables[dataset] = read_structures(dataset, limit=args.limit)
        wall[f"load_{dataset}"] = time.perf_counter() - start
        start = time.perf_counter()
        splits[dataset] = split_structures(tables[dataset], args.val, args.test, seed=0)
        wall[f"split_{dataset}"] = time.perf_counter() - start
    progress = sys.stderr.isatty()
    metrics: dict[str, dict] = {}
    histories: dict[str, list[dict]] = {}
    graphs = {
        d: graph_timing(t.structures) | {"reference_style": rebuild_timing(t.structures)}
        for d, t in tables.items()
    }
    for name, model_name, dataset in runs:
        train, val, test, split = splits[dataset]
        epochs = {"perovskite-mlp": args.mlp_epochs}.get(
            model_name, args.mp_epochs if dataset == "mp-eform" else args.perov_epochs
        )
        config = TrainConfig(
            epochs=epochs,
            batch_size=64 if model_name == "perovskite-mlp" else args.batch_size,
            lr=3e-3 if model_name == "perovskite-mlp" else args.lr,
            schedule="cosine",
            patience=epochs,
            progress=progress,
        )
        model = make_structure_model(model_name, "formation_energy", "eV/atom", config)
        train_structure_model(model, train, val, args.out / name, test=test, split=split)
        key = dataset.replace("-", "_")
        metrics[name] = {
            f"val_mae_{key}": model.metrics["val"]["mae"],
            f"test_mae_{key}": model.metrics["test"]["mae"],
            "val_r2": model.metrics["val"]["r2"],
            "train_seconds": model.training["seconds"],
            "epochs_run": model.training["epochs_run"],
        }
        if model_name != "perovskite-mlp":
            metrics[name] |= throughput(model, len(train))
            histories[name] = model.fit_result.history
    gated = metrics.get("cgcnn_gated", {})
    if "structures_per_second" in gated:
        gated["speedup_over_reference"] = gated["structures_per_second"] / REFERENCE_THROUGHPUT
    results = {
        "benchmark": "crystal",
        "quick": args.quick,
        "command": command(),
        "commands": dict.fromkeys(metrics, command()),
        "data": {d: str(dataset_path(d)) for d in tables}
        | {f"{d}_report": t.report.to_dict() for d, t in tables.items()},
        "split": {
            d: {
                "method": "grouped by structure (reduced formula + StructureMatcher)",
                **s[3].params,
                "file": f"OUT/<model>/split.json ({d})",
            }
            for d, s in splits.items()
        },
        "sizes": {d: s[3].sizes() for d, s in splits.items()},
        "paper": PAPER,
        "reference_throughput": {
            "structures_per_second": REFERENCE_THROUGHPUT,
            "source": "issue #5: the reference CGCNN code rebuilds every graph with pymatgen in "
            "every epoch; about 40 structures/s on 2 CPU cores (not measured here)",
        },
        "graph_building": graphs,
        "metrics": metrics,
        "histories": histories,
        "wall_seconds": wall | {"total": time.perf_counter() - t0},
        "machine": machine(),
        "models": {name: str(args.out / name) for name in metrics},
    }
    stem = "crystal_quick" if args.quick else "crystal"
    if args.only is not None:
        results = merge_earlier(results, args.results / f"{stem}.json", PER_MODEL)
    write_json(results, args.results, stem)
    plot(results, results["histories"], args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
