"""CGCNN (gated and shared convolutions, linear pooling) and the perovskite site network.

Trains on ``mp-eform`` (Materials Project formation energies, the CGCNN set) the gated
and the shared-weight CGCNN, and on ``perovskites`` (Castelli's cubic ABX3 set) the gated
CGCNN, its interpretable linear-pooling variant and the site network on electronegativity
and ionic radius; the site network and the gated CGCNN also on ``perovskites-abo3``, the
809 pure oxides of that set (Ye et al.'s ground), beside a forest on the same site
descriptors and the perovskite models' error on the ABO3 records of their validation part.
Every split keeps one crystal on one side (StructureMatcher keys),
early stopping uses the validation part, and the test part is scored once at the end.
Also measured: crystal-graph building time and training throughput end to end, and a
side-by-side run (``--reference``, on by default; ``--no-reference`` skips it) of the
reference CGCNN code (txie-93/cgcnn in ``../shared/reference/cgcnn``, run as it is in a
subprocess) and deepmat's gated CGCNN with the same settings on the same mp-eform records:
setup (CIF parsing and graphs), steady training throughput, end-to-end time, validation MAE.

    python benchmarks/crystal.py --out runs/crystal          # full
    python benchmarks/crystal.py --out /tmp/c --quick        # seconds

Each model is saved as ``OUT/<model>/`` with its ``split.json``
(``deepmat evaluate OUT/cgcnn_gated mp-eform --part test --json`` scores it on its test
records).
Rerunning with the same ``--out`` resumes training from the last checkpoints.
``--only NAME ...`` trains only those models (``reference``: the side-by-side run) and
keeps the others' entries in the results file; ``commands`` there names the command behind
each model's numbers.
Results: ``benchmarks/results/crystal.{json,png}``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import _reference_cgcnn as reference
from _shared import command, machine, merge_earlier, parser, write_json
from deepmat.data import dataset_path
from deepmat.data.readers import read_structures
from deepmat.represent.crystal_graph import build_graphs
from deepmat.train import CrystalGraphRegressor, SiteNetworkRegressor
from deepmat.workflows.crystal import (
    make_structure_model,
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
    "perovskite_mlp_abo3": 0.034,  # Ye et al.'s own ABO3 data, fixed charge types
}
# (benchmark name, model, dataset, paper key)
RUNS = (
    ("perovskite_mlp", "perovskite-mlp", "perovskites"),
    ("cgcnn_linear_pool", "cgcnn-linear", "perovskites"),
    ("cgcnn_gated_perovskites", "cgcnn", "perovskites"),
    ("cgcnn_gated", "cgcnn", "mp-eform"),
    ("cgcnn_shared", "cgcnn-shared", "mp-eform"),
    ("perovskite_mlp_abo3", "perovskite-mlp", "perovskites-abo3"),
    ("cgcnn_gated_abo3", "cgcnn", "perovskites-abo3"),
)
# the suffix of each dataset's metrics (val_mae_<suffix>)
SUFFIX = {"mp-eform": "mp_eform", "perovskites": "perovskites", "perovskites-abo3": "abo3"}
# the keys for the ABO3 runs: metrics.<entry>.val_mae_abo3 from metrics.<run>
ABO3_LINKS = {"perovskite_mlp": "perovskite_mlp_abo3", "cgcnn_gated": "cgcnn_gated_abo3"}
OXIDE_ONLY = ("N", "S", "F")

# results keys with one entry per model or dataset, merged with the earlier results by --only
PER_MODEL = ("data", "split", "sizes", "graph_building", "metrics", "histories", "models")
# deepmat's gated CGCNN trained like the reference code, beside metrics.reference_cgcnn
SAME = "cgcnn_gated_same_settings_as_reference"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "crystal")
    p.add_argument(
        "--mp-epochs", type=int, default=None, help="CGCNN epochs on mp-eform (preset: 200)"
    )
    p.add_argument("--perov-epochs", type=int, default=150, help="CGCNN epochs on perovskites")
    p.add_argument("--mlp-epochs", type=int, default=None, help="site network epochs (preset)")
    p.add_argument("--batch-size", type=int, default=None, help="CGCNN batch size (preset: 32)")
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument("--limit", type=int, default=None, help="first records of each dataset")
    p.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the reference CGCNN code and deepmat's gated CGCNN side by side with the "
        "same settings on the same mp-eform records (with --only: name 'reference')",
    )
    p.add_argument("--reference-n", type=int, default=2000, help="records of that comparison")
    p.add_argument("--reference-epochs", type=int, default=6, help="epochs of that comparison")
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

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.4), dpi=120)
    names = [n for n in results["metrics"] if n in {r[0] for r in RUNS}]
    ours = [own_val_mae(n, results["metrics"][n]) for n in names]
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
    plot_comparison(ax3, results["metrics"])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def own_val_mae(name: str, entry: dict) -> float:
    """The validation MAE of a run on the dataset it trained on."""
    dataset = next(d for n, _, d in RUNS if n == name)
    return entry.get(f"val_mae_{SUFFIX[dataset]}", math.nan)


def oxide_records_mae(model, val) -> dict:
    """MAE of a model trained on all perovskites on the pure oxides ABO3 of its validation
    part (the records it would see in the ABO3 subset)."""
    oxide = [
        i
        for i, s in enumerate(val.structures)
        if not set(OXIDE_ONLY) & {e.symbol for e in s.composition.elements}
    ]
    if not oxide:
        return {}
    scored = model.evaluate(val.subset(oxide))
    return {"val_mae_abo3_records": scored["mae"], "n_val_abo3_records": scored["n"]}


def forest_on_sites(model, train, val) -> dict:
    """A random forest on the site network's own descriptors: how far the descriptors
    themselves can get (validation MAE)."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(300, min_samples_leaf=2, random_state=0, n_jobs=1)
    forest.fit(model.featurize(train), train.targets)
    error = np.abs(forest.predict(model.featurize(val)) - val.targets).mean()
    return {"rf_on_site_descriptors_val_mae": float(error)}


def link_abo3(metrics: dict) -> None:
    """Copy the ABO3 runs' validation and test MAE under the entries the issue names."""
    for entry, run in ABO3_LINKS.items():
        if entry in metrics and "val_mae_abo3" in metrics.get(run, {}):
            metrics[entry] |= {
                "val_mae_abo3": metrics[run]["val_mae_abo3"],
                "test_mae_abo3": metrics[run]["test_mae_abo3"],
                "abo3_run": run,
            }


def plot_comparison(ax, metrics: dict) -> None:
    """End-to-end seconds of the side-by-side run, setup (CIFs and graphs) and the rest."""
    sides = {"reference\nCGCNN": metrics.get("reference_cgcnn", {}), "deepmat": metrics.get(SAME)}
    if not all(s and s.get("end_to_end_seconds") for s in sides.values()):
        error = metrics.get("reference_cgcnn", {}).get("error", "not run")
        ax.text(0.5, 0.5, f"reference CGCNN: {error[:60]}", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = list(sides)
    setup = np.array([s["setup_seconds"] or 0 for s in sides.values()])
    start = np.array([s.get("import_seconds", 0) for s in sides.values()])  # reference only
    rest = np.array([s["end_to_end_seconds"] for s in sides.values()]) - setup - start
    ax.barh(labels, start, label="Python start and imports", color="tab:gray")
    ax.barh(labels, setup, left=start, label="CIF parsing and graphs", color="tab:orange")
    ax.barh(labels, rest, left=start + setup, label="training, validation, test")
    for i, side in enumerate(sides.values()):
        ax.text(
            side["end_to_end_seconds"],
            i,
            f" {side['end_to_end_seconds']:.0f} s, val MAE {side['val_mae']:.3f}",
            va="center",
            fontsize=8,
        )
    ours = sides["deepmat"]
    ax.set_xlim(0, 1.45 * max(s["end_to_end_seconds"] for s in sides.values()))
    ax.set(
        xlabel="seconds end to end",
        title=f"Side by side on mp-eform: {ours['sizes']['train']} training structures,\n"
        f"{ours['settings']['epochs']} epochs, same settings",
    )
    ax.legend(fontsize=8, loc="lower right")


def overrides(args: argparse.Namespace, model_name: str, dataset: str) -> dict:
    """Training options replacing the ``benchmark`` preset's: the command line's, and for
    the CGCNNs on perovskites the committed run's batch 128 (the preset is the mp-eform
    run's); every run trains its full epochs (patience = epochs)."""
    if model_name == "perovskite-mlp":
        given = {"epochs": args.mlp_epochs}
    elif dataset == "mp-eform":
        given = {"epochs": args.mp_epochs, "batch_size": args.batch_size}
    elif dataset == "perovskites-abo3":  # 647 training cells: the preset's batch 32
        given = {"epochs": args.perov_epochs, "batch_size": args.batch_size}
    else:
        given = {"epochs": args.perov_epochs, "batch_size": args.batch_size or 128}
    given = {k: v for k, v in given.items() if v is not None}
    cls = SiteNetworkRegressor if model_name == "perovskite-mlp" else CrystalGraphRegressor
    epochs = given.get("epochs", cls.presets["benchmark"]["config"]["epochs"])
    return given | {"patience": epochs, "progress": sys.stderr.isatty()}


@contextmanager
def fresh_cache(path: Path):
    """deepmat's cache (graphs, parsed structures) in the empty folder ``path`` meanwhile."""
    before = os.environ.get("DEEPMAT_CACHE_DIR")
    os.environ["DEEPMAT_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["DEEPMAT_CACHE_DIR"]
        else:
            os.environ["DEEPMAT_CACHE_DIR"] = before


def compare_with_reference(args: argparse.Namespace, table, split) -> dict[str, dict]:
    """The reference CGCNN code and deepmat's gated CGCNN on the same ``--reference-n``
    records of ``table`` (drawn at random, each on its side of deepmat's grouped ``split``),
    both from the same folder of CIFs, with the same settings: Adam, deepmat's learning rate
    and batch size, a constant rate (the reference has no cosine schedule), the same epochs.
    Each side: ``setup_seconds`` (CIF parsing and graphs), ``structures_per_second``
    (training structures over the median epoch after the first, validation included),
    ``end_to_end_seconds``, ``val_mae`` (best epoch) and ``test_mae``; ``load_average``:
    the machine's 1-minute load when the side started and ended (the cores are shared)."""
    n = min(args.reference_n, len(table))
    chosen = set(np.random.default_rng(0).choice(len(table), n, replace=False).tolist())
    parts = [
        table.subset([i for i in side if i in chosen])
        for side in (split.train, split.val, split.test)
    ]
    root = args.out / "reference"
    shutil.rmtree(root, ignore_errors=True)  # graphs and checkpoints from scratch
    reference.write_folder(root / "data", parts)
    preset = CrystalGraphRegressor.presets["benchmark"]["config"]
    settings = {
        "epochs": args.reference_epochs,
        "batch_size": args.batch_size or preset["batch_size"],
        "lr": preset["lr"],
        "schedule": "constant",
    }
    sizes = tuple(len(p) for p in parts)
    cmd = reference.reference_command(root / "data", sizes, settings)
    common = {
        "records": str(root / "data"),
        "sizes": dict(zip(("train", "val", "test"), sizes, strict=True)),
        "settings": settings,
    }
    print(f"reference CGCNN on {sizes} records: {' '.join(cmd)}", file=sys.stderr)
    load = os.getloadavg()[0]  # the cores are shared: the load each side ran under
    ref = reference.run_reference(cmd, root / "run", sizes[0], parts[2].ids)
    ref["load_average"] = [load, os.getloadavg()[0]]
    if "error" in ref:
        print(f"reference CGCNN failed: {ref['error']}", file=sys.stderr)
    print(f"deepmat gated CGCNN on the same records, {settings}", file=sys.stderr)
    load = os.getloadavg()[0]
    ours = train_like_reference(root, parts, settings)
    ours["load_average"] = [load, os.getloadavg()[0]]
    return {"reference_cgcnn": common | ref, SAME: common | ours}


def train_like_reference(root: Path, parts: list, settings: dict) -> dict:
    """deepmat's gated CGCNN on the records of ``parts`` read from the reference's folder
    ``root/data``, its graphs built afresh (an empty cache): timed like the reference."""
    with fresh_cache(root / "cache"):
        start = time.perf_counter()
        table = read_structures(root / "data", table=root / "data" / "id_prop.csv")
        read_seconds = time.perf_counter() - start
        index = {rid: i for i, rid in enumerate(table.ids)}
        train, val, test = (table.subset([index[r] for r in p.ids]) for p in parts)
        config = settings | {"patience": settings["epochs"], "progress": False}
        model = make_structure_model("cgcnn", "formation_energy", "eV/atom", "benchmark", config)
        train_structure_model(model, train, val, root / "deepmat", test=test, resume=False)
        end_to_end = time.perf_counter() - start
    history = model.fit_result.history
    steady = float(np.median([h["epoch_seconds"] for h in history[1:]])) if history[1:] else None
    return {
        "setup_seconds": read_seconds + model.training["graph_seconds"],
        "structures_per_second": len(train) / steady if steady else None,
        "end_to_end_seconds": end_to_end,
        "val_mae": model.metrics["val"]["mae"],
        "test_mae": model.metrics["test"]["mae"],
        "read_seconds": read_seconds,
        "graph_seconds": model.training["graph_seconds"],
        "first_epoch_seconds": history[0]["epoch_seconds"] if history else None,
        "history": [
            {k: h[k] for k in ("epoch", "val_mae", "epoch_seconds") if k in h} for h in history
        ],
        "model": str(root / "deepmat"),
    }


def link_speedup(metrics: dict) -> None:
    """``cgcnn_gated.speedup_over_reference``: the reference's end-to-end seconds over
    deepmat's in the side-by-side run (same records, same settings), and the same ratio of
    steady training throughput; dropped where that run is missing or failed."""
    gated, ref, ours = (metrics.get(k, {}) for k in ("cgcnn_gated", "reference_cgcnn", SAME))
    for key in ("speedup_over_reference", "epoch_speedup_over_reference", "speedup_source"):
        gated.pop(key, None)
    if not (gated and ref.get("end_to_end_seconds") and ours.get("end_to_end_seconds")):
        return
    gated["speedup_over_reference"] = ref["end_to_end_seconds"] / ours["end_to_end_seconds"]
    if ref.get("structures_per_second") and ours.get("structures_per_second"):
        gated["epoch_speedup_over_reference"] = (
            ours["structures_per_second"] / ref["structures_per_second"]
        )
    gated["speedup_source"] = f"metrics.reference_cgcnn and metrics.{SAME}"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.mp_epochs, args.perov_epochs, args.mlp_epochs = 2, 2, 5
        args.reference_n, args.reference_epochs = 60, 2
        args.limit = args.limit or 400
    t0 = time.perf_counter()
    runs = [r for r in RUNS if args.only is None or r[0] in args.only]
    compare = args.reference and (args.only is None or "reference" in args.only)
    tables, splits, wall = {}, {}, {}
    for dataset in sorted({r[2] for r in runs} | ({"mp-eform"} if compare else set())):
        start = time.perf_counter()
        tables[dataset] = read_structures(dataset, limit=args.limit)
        wall[f"load_{dataset}"] = time.perf_counter() - start
        start = time.perf_counter()
        splits[dataset] = split_structures(tables[dataset], args.val, args.test, seed=0)
        wall[f"split_{dataset}"] = time.perf_counter() - start
    metrics: dict[str, dict] = {}
    histories: dict[str, list[dict]] = {}
    graphs = {d: graph_timing(t.structures) for d, t in tables.items()}
    for name, model_name, dataset in runs:
        train, val, test, split = splits[dataset]
        model = make_structure_model(
            model_name,
            "formation_energy",
            "eV/atom",
            "benchmark",
            overrides(args, model_name, dataset),
        )
        train_structure_model(model, train, val, args.out / name, test=test, split=split)
        key = SUFFIX[dataset]
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
        else:
            metrics[name] |= forest_on_sites(model, train, val)
        if dataset == "perovskites":
            metrics[name] |= oxide_records_mae(model, val)
    if compare:
        start = time.perf_counter()
        metrics |= compare_with_reference(args, tables["mp-eform"], splits["mp-eform"][3])
        wall["reference_comparison"] = time.perf_counter() - start
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
        "graph_building": graphs,
        "metrics": metrics,
        "histories": histories,
        "wall_seconds": wall | {"total": time.perf_counter() - t0},
        "machine": machine(),
        "models": {name: str(args.out / name) for name, *_ in runs}
        | ({SAME: metrics[SAME]["model"]} if "model" in metrics.get(SAME, {}) else {}),
    }
    stem = "crystal_quick" if args.quick else "crystal"
    if args.only is not None:
        results = merge_earlier(results, args.results / f"{stem}.json", PER_MODEL)
    link_speedup(results["metrics"])
    link_abo3(results["metrics"])
    write_json(results, args.results, stem)
    plot(results, results["histories"], args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
