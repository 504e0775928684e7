"""Roost, the composition transformer and ElemNet on OQMD formation enthalpy, a deep
ensemble of the best of them (the shipped ``composition-oqmd``), and aviary's Roost side
by side.

Trains on the train split of ``oqmd-dhf`` (CrabNet's split) and reports the MAE on its
validation split; its test part is held back. Each network uses its ``benchmark`` preset
(``--epochs`` and ``--train-size`` shrink a run to what a machine allows, and say so in
the results). Their element embedding is chosen on validation first: Roost starts from
each ``elementembeddings`` table on ``--search-size`` compounds and the lowest validation
MAE wins (``--embedding`` skips the choice). The ensemble is ``--members`` networks of
``--ensemble-model``, member 0 being the single model trained above, the others trained
from seeds 1, 2, …; or, with ``--ensemble-of``, models trained already (the shipped
``composition-oqmd`` is ``--ensemble-of runs/roost-cycle4 runs/elemnet-oqmd
--ensemble-weights 0.7 0.3``, the Roost trained on for three more cycles and the ElemNet that
``elemnet-oqmd`` pairs with a companion, ``src/deepmat/pretrained/elemnet-oqmd/model``).

The side-by-side run trains deepmat's Roost, transformer and ElemNet and aviary's Roost
(``aviary-models`` from PyPI, in its own environment under ``benchmarks/.peers``) on the
same ``--side-size`` training compounds for the same wall-clock ``--budget`` each, and
reports validation MAE and training throughput (compositions per second). A learning curve
(``--curve-sizes``) shows how the validation MAE falls with training compounds. ``--use
elemnet=DIR`` scores a network trained elsewhere on the same split (its training time and
throughput from its card) instead of training it. CrabNet
(``crabnet==2.0.8``) is tried too; it needs Python < 3.11 and the pip error is recorded.

    python benchmarks/composition.py --out runs/composition                 # full
    python benchmarks/composition.py --out /tmp/c --quick                   # seconds

Every model is saved as ``OUT/<model>/`` (``deepmat evaluate OUT/ensemble oqmd-dhf:val
--json``); rerunning with the same ``--out`` resumes from the last checkpoints, and
``--only NAME ...`` (``embedding_search``, models, ``ensemble``, ``side_by_side``,
``learning_curve``) keeps the other entries of the results file (a learning-curve run adds
its points to the earlier ones, replacing those of the same model and size). Results:
``benchmarks/results/composition.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import deepmat
from _peers import PeerUnavailable, install_finding, peer_python
from _shared import command, machine, merge_earlier, parser, subsample, write_json
from deepmat.data import dataset_path, load_dataset
from deepmat.represent.element_sequence import EMBEDDINGS, element_table
from deepmat.train import Ensemble, save_model
from deepmat.train.metrics import regression_metrics, save_figure
from deepmat.workflows.composition import make_regressor, train_composition

NETWORKS = ("roost", "transformer", "elemnet")
# MAE (eV/atom) on the held-out part of this split, from the published predictions
# (Wang et al., npj Comput. Mater. 7, 77, 2021, and its HotCrab/Roost/ElemNet/RF runs)
REFERENCE = {"crabnet": 0.0311, "hotcrab": 0.0310, "roost": 0.0315, "elemnet": 0.0489, "rf": 0.0834}
AVIARY = "aviary-models==1.2.1"
CRABNET = "crabnet==2.0.8"
PER_MODEL = ("metrics", "histories", "models")
TARGET_MAE = 0.029  # eV/atom, the validation target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "composition")
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="embedding_search, models, ensemble, side_by_side, learning_curve",
    )
    p.add_argument("--epochs", type=int, default=None, help="(default: each preset's)")
    p.add_argument(
        "--loss", default=None, help="e.g. laplace-nll: a σ output (default: each preset's)"
    )
    p.add_argument("--train-size", type=int, default=None, help="(default: the whole split)")
    p.add_argument(
        "--use",
        nargs="*",
        default=[],
        help="NETWORK=DIR: score a network saved in DIR, trained elsewhere on the whole train "
        "split, instead of training it (e.g. elemnet=src/deepmat/pretrained/elemnet-oqmd/model)",
    )
    p.add_argument(
        "--embedding", default=None, help="Roost's and the transformer's (default: the search's)"
    )
    p.add_argument("--embeddings", nargs="*", default=list(EMBEDDINGS), help="to search")
    p.add_argument("--search-size", type=int, default=20_000, help="search train size")
    p.add_argument("--search-epochs", type=int, default=15)
    p.add_argument("--ensemble-model", default="roost", choices=NETWORKS)
    p.add_argument("--members", type=int, default=5)
    p.add_argument(
        "--ensemble-of",
        nargs="*",
        default=None,
        help="the ensemble of these trained models (saved directories or shipped names, e.g. "
        "runs/composition/roost elemnet-oqmd) instead of --members new networks",
    )
    p.add_argument("--ensemble-weights", type=float, nargs="*", default=None)
    p.add_argument("--side-size", type=int, default=50_000, help="side-by-side train size")
    p.add_argument("--side-val", type=int, default=2000, help="its early-stopping compounds")
    p.add_argument("--budget", type=float, default=900.0, help="side-by-side seconds each")
    p.add_argument("--curve-sizes", type=int, nargs="*", default=[5000, 20_000, 80_000])
    p.add_argument("--curve-models", nargs="*", default=["roost", "elemnet"], choices=NETWORKS)
    p.add_argument(
        "--curve-samples", type=int, default=800_000, help="training samples per curve point"
    )
    return p.parse_args(argv)


def network(name: str, args: argparse.Namespace, seed: int = 0, epochs: int | None = None):
    overrides = {"progress": sys.stderr.isatty()}
    if epochs or args.epochs:
        overrides["epochs"] = epochs or args.epochs
    if args.loss:
        overrides["loss"] = args.loss
    embedding = args.embedding if name != "elemnet" else None
    return make_regressor(
        name, "benchmark", "dhf", "eV/atom", overrides, seed=seed, embedding=embedding
    )


def summary(model, n_train: int) -> dict:
    """Validation metrics, training seconds and throughput (over every epoch's own time,
    validation included, whichever run of a resumed training it was in) of a network."""
    history = model.fit_result.history
    epoch_seconds = sum(row["epoch_seconds"] for row in history)
    return {
        "val_mae": model.metrics["val"]["mae"],
        "val_rmse": model.metrics["val"]["rmse"],
        "val_r2": model.metrics["val"]["r2"],
        "train_seconds": model.training["seconds"],
        "epochs_run": model.fit_result.epochs_run,
        "compositions_per_second": n_train * len(history) / epoch_seconds
        if epoch_seconds
        else math.nan,
        "parameters": sum(p.numel() for p in model.net.parameters()),
    }


def embedding_search(args, train, val) -> dict:
    """Roost from each of ``--embeddings`` on ``--search-size`` compounds for
    ``--search-epochs``; the lowest MAE on ``--side-val`` validation compounds is the choice.
    An embedding lacking an element of the data is excluded (and says which)."""
    elements = {e.symbol for c in [*train.compositions, *val.compositions] for e in c.elements}
    part, stop = subsample(train, args.search_size, seed=10), subsample(val, args.side_val, seed=8)
    rows: dict[str, dict] = {}
    for name in args.embeddings:
        missing = sorted(elements - set(element_table(name)[1]))
        if missing:
            rows[name] = {"excluded": f"lacks {', '.join(missing)}"}
            continue
        model = make_regressor(
            "roost",
            "benchmark",
            "dhf",
            "eV/atom",
            {"epochs": args.search_epochs, "progress": sys.stderr.isatty()},
            embedding=name,
        )
        model = train_composition(model, part, stop, args.out / "embedding_search" / name)
        rows[name] = {
            "val_mae": model.metrics["val"]["mae"],
            "train_seconds": model.training["seconds"],
        }
    scored = {name: row["val_mae"] for name, row in rows.items() if "val_mae" in row}
    return {
        "choice": min(scored, key=scored.get),
        "candidates": rows,
        "model": "roost",
        "train_size": len(part),
        "val_size": len(stop),
        "epochs": args.search_epochs,
    }


def train_networks(args, train, val, metrics: dict, histories: dict, models: dict) -> dict:
    trained = {}
    given = dict(item.split("=", 1) for item in args.use)
    for name in NETWORKS:
        if not wanted(args, name):
            continue
        if name in given:
            metrics[name] = given_summary(deepmat.load(given[name]), given[name], val)
            models[name] = given[name]
            continue
        model = train_composition(network(name, args), train, val, args.out / name)
        metrics[name] = summary(model, len(train)) | {"spec": model.spec.to_dict()}
        histories[name] = model.fit_result.history
        models[name] = str(args.out / name)
        trained[name] = model
    return trained


def given_summary(model, source: str, val) -> dict:
    """:func:`summary` of a network trained elsewhere (``--use``): validation metrics computed
    here; training seconds, epochs and throughput from its card (the throughput over the
    whole training's seconds, start-up and validation included)."""
    training = model.training
    if "seconds" not in training:
        raise SystemExit(
            f"--use {source}: its card records no training of its own (a pair or an ensemble?); "
            "give the directory of the network itself"
        )
    scores = model.evaluate(val)
    seconds = training["seconds"]
    return {
        "val_mae": scores["mae"],
        "val_rmse": scores["rmse"],
        "val_r2": scores["r2"],
        "train_seconds": seconds,
        "epochs_run": training["epochs_run"],
        "compositions_per_second": training["data"]["n_train"] * training["epochs_run"] / seconds,
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "trained_elsewhere": source,
        "training_config": training["config"],
    }


def given_ensemble(args, val) -> Ensemble:
    """The ensemble of the trained models ``--ensemble-of`` with ``--ensemble-weights``."""
    members = [deepmat.load(member) for member in args.ensemble_of]
    ensemble = Ensemble.from_members(members, val, "composition-oqmd", args.ensemble_weights)
    save_model(ensemble, args.out / "ensemble")
    return ensemble


def train_ensemble(args, train, val, first) -> Ensemble:
    """``--members`` networks of ``--ensemble-model``: ``first`` (seed 0) and seeds 1, …"""
    members = [first]
    for seed in range(1, args.members):
        where = args.out / "ensemble_members" / str(seed)
        members.append(
            train_composition(network(args.ensemble_model, args, seed), train, val, where)
        )
    ensemble = Ensemble.from_members(members, val, name="composition-oqmd")
    save_model(ensemble, args.out / "ensemble")
    return ensemble


def side_by_side(args, train, val, measured: dict) -> dict:
    """deepmat's networks and aviary's Roost on the same compounds for the same budget; a
    network's epochs come from its throughput ``measured`` in this run where it was."""
    part = subsample(train, args.side_size, seed=7)
    stop = subsample(val, args.side_val, seed=8)
    common = {"budget_seconds": args.budget, "train_size": len(part), "val_size": len(val)}
    block = {}
    for name in NETWORKS:
        speed = measured.get(name, {}).get("compositions_per_second")
        usable = speed is not None and math.isfinite(speed) and speed > 0
        epochs = max(1, int(args.budget * speed / len(part))) if usable else None
        epochs = epochs or epochs_within(name, args, part, stop)
        model = train_composition(
            network(name, args, epochs=epochs), part, stop, args.out / "side_by_side" / name
        )
        row = summary(model, len(part))
        block[f"deepmat_{name}"] = common | {
            "val_mae": model.evaluate(val)["mae"],
            "compositions_per_second": row["compositions_per_second"],
            "train_seconds": row["train_seconds"],
            "epochs": epochs,
        }
    block["aviary_roost"] = common | aviary_roost(args, part, val)
    block["crabnet"] = {"install": install_finding(CRABNET)}
    return block


def learning_curve(args, train, val) -> list[dict]:
    """Validation MAE (on the whole split) against training-set size: each of
    ``--curve-models`` on ``--curve-sizes`` compounds for ``--curve-samples`` samples (at
    most 300 epochs), early-stopped on ``--side-val`` validation compounds."""
    stop = subsample(val, args.side_val, seed=8)
    points = []
    for size in [n for n in args.curve_sizes if n <= len(train)]:
        part = subsample(train, size, seed=size)
        epochs = max(1, min(300, math.ceil(args.curve_samples / size)))
        for name in args.curve_models:
            where = args.out / "curve" / f"{name}_{size}"
            model = train_composition(network(name, args, epochs=epochs), part, stop, where)
            points.append(
                {
                    "model": name,
                    "n_train": size,
                    "epochs": epochs,
                    "val_mae": model.evaluate(val)["mae"],
                    "train_seconds": sum(r["epoch_seconds"] for r in model.fit_result.history),
                    "command": command(),
                }
            )
    return points


def with_earlier_points(points: list[dict], path: Path) -> list[dict]:
    """``points`` of this run's learning curve beside the earlier run's at ``path`` (each
    point expensive on its own): an earlier point of the same model and size is replaced,
    and each keeps the command that measured it."""
    if not path.exists():
        return points
    earlier = json.loads(path.read_text())
    measured_by = earlier.get("commands", {}).get("learning_curve", earlier["command"])
    new = {(p["model"], p["n_train"]) for p in points}
    kept = [
        {"command": measured_by} | p
        for p in earlier["metrics"].get("learning_curve", [])
        if (p["model"], p["n_train"]) not in new
    ]
    return sorted(kept + points, key=lambda p: (p["model"], p["n_train"]))


def power_law(metrics: dict, n_train: int, target: float = TARGET_MAE) -> dict:
    """Per model of the learning curve, MAE = a·n^(−b) fitted by least squares in log–log to
    its points and, where this run has it, the model trained on all ``n_train`` compounds;
    and the training-set size at which the fit reaches ``target`` (an extrapolation that
    assumes the curve keeps its slope, which learning curves flatten from)."""
    fits = {}
    curve = metrics.get("learning_curve", [])
    for name in dict.fromkeys(point["model"] for point in curve):
        points = [(p["n_train"], p["val_mae"]) for p in curve if p["model"] == name]
        if "val_mae" in metrics.get(name, {}):
            points.append((n_train, metrics[name]["val_mae"]))
        if len({n for n, _ in points}) < 2:
            continue
        n, mae = (np.log(np.array(column, dtype=float)) for column in zip(*points, strict=True))
        slope, intercept = np.polyfit(n, mae, 1)
        fits[name] = {
            "points": [{"n_train": int(k), "val_mae": float(v)} for k, v in points],
            "a": float(np.exp(intercept)),
            "b": float(-slope),
            "target_mae": target,
            "n_train_for_target": float(np.exp((np.log(target) - intercept) / slope))
            if slope < 0
            else math.inf,
        }
    return fits


def epochs_within(name: str, args, part, stop) -> int:
    """The epochs of ``name`` on ``part`` that fit the budget, from the second epoch of a
    timed two-epoch run on up to 5,000 of its compounds (the first carries start-up)."""
    probe = subsample(part, 5000, seed=9)
    with tempfile.TemporaryDirectory() as scratch:
        model = train_composition(network(name, args, epochs=2), probe, stop, scratch)
    per_compound = model.fit_result.history[-1]["epoch_seconds"] / len(probe)
    return max(1, int(args.budget / (per_compound * len(part))))


def aviary_roost(args, part, val) -> dict:
    """aviary's Roost trained by ``benchmarks/peers/aviary_roost.py`` in its environment."""
    try:
        python = peer_python("aviary", [AVIARY], install=not args.quick)
    except PeerUnavailable as error:
        return {"error": str(error), "install": install_finding(AVIARY)}
    root = args.out / "side_by_side" / "aviary_roost"
    root.mkdir(parents=True, exist_ok=True)
    for table, stem in ((part, "train"), (val, "val")):
        write_peer_csv(table, root / f"{stem}.csv")
    script = Path(__file__).parent / "peers" / "aviary_roost.py"
    cmd = [str(python), str(script), "--train", str(root / "train.csv")]
    cmd += [
        "--val",
        str(root / "val.csv"),
        "--budget",
        str(args.budget),
        "--out",
        str(root / "result.json"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip()[-2000:], "command": " ".join(cmd)}
    result = json.loads((root / "result.json").read_text())
    predictions = np.asarray(result.pop("predictions"))
    return {
        "val_mae": regression_metrics(val.targets, predictions)["mae"],
        "requirement": AVIARY,
    } | result


def write_peer_csv(table, path: Path) -> None:
    lines = ["material_id,composition,target"]
    lines += [
        f"{i},{f},{float(y)!r}"
        for i, (f, y) in enumerate(zip(table.formulas, table.targets, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")


def wanted(args, name: str) -> bool:
    return args.only is None or name in args.only


def plot(results: dict, histories: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3, ax4) = plt.subplots(1, 4, figsize=(20, 4.2), dpi=120)
    metrics = results["metrics"]
    names = [m for m in (*NETWORKS, "ensemble") if m in metrics]
    ax1.bar(names, [metrics[m]["val_mae"] for m in names], color="tab:blue", label="deepmat (val)")
    for i, (peer, mae) in enumerate(REFERENCE.items()):
        ax1.axhline(mae, ls=":", c=f"C{i + 1}", label=f"{peer} (published, test)")
    ax1.set(ylabel="MAE (eV/atom)", title="OQMD ΔHf, CrabNet split")
    ax1.legend(fontsize=7)
    for name, history in histories.items():
        ax2.plot([h["epoch"] for h in history], [h["val_mae"] for h in history], label=name)
    ax2.set(xlabel="epoch", ylabel="validation MAE (eV/atom)", yscale="log", title="Training")
    if histories:
        ax2.legend()
    side = {k: v for k, v in metrics.get("side_by_side", {}).items() if "val_mae" in v}
    for name, row in side.items():
        ax3.scatter(row["compositions_per_second"], row["val_mae"], s=40)
        ax3.annotate(name, (row["compositions_per_second"], row["val_mae"]), fontsize=8)
    budget = next(iter(side.values()), {}).get("budget_seconds", math.nan)
    ax3.set(
        xscale="log",
        xlabel="training compositions / s",
        ylabel="validation MAE (eV/atom)",
        title=f"Side by side, {budget:.0f} s each",
    )
    curve = metrics.get("learning_curve", [])
    fits = metrics.get("learning_curve_fit", {})
    for name in dict.fromkeys(point["model"] for point in curve):
        measured = fits.get(name, {}).get("points") or [p for p in curve if p["model"] == name]
        points = [(p["n_train"], p["val_mae"]) for p in measured]
        (line,) = ax4.plot(*zip(*points, strict=True), "o-", label=name)
        if name in fits:
            fit = fits[name]
            n = np.geomspace(points[0][0], min(fit["n_train_for_target"], 1e8), 50)
            ax4.plot(n, fit["a"] * n ** -fit["b"], ":", c=line.get_color(), label=f"{name} fit")
    if fits:
        ax4.axhline(TARGET_MAE, c="k", lw=0.8, ls="--", label="target")
    ax4.set(
        xscale="log",
        yscale="log",
        xlabel="training compounds",
        ylabel="validation MAE (eV/atom)",
        title="Learning curve",
    )
    if curve:
        ax4.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.epochs, args.train_size, args.members = 2, 300, 2
        args.embeddings, args.search_size, args.search_epochs = ["megnet16"], 200, 1
        args.side_size, args.side_val, args.budget = 300, 100, 3.0
        args.curve_sizes, args.curve_models, args.curve_samples = [150], ["elemnet"], 300
    t0 = time.perf_counter()
    train = subsample(load_dataset("oqmd-dhf", "train"), args.train_size)
    val = load_dataset("oqmd-dhf", "val")
    if args.quick:
        val = subsample(val, 200)
    load_seconds = time.perf_counter() - t0
    metrics: dict = {}
    histories: dict = {}
    models: dict = {}
    if wanted(args, "embedding_search"):
        metrics["embedding_search"] = embedding_search(args, train, val)
        args.embedding = args.embedding or metrics["embedding_search"]["choice"]
    trained = train_networks(args, train, val, metrics, histories, models)
    if wanted(args, "ensemble"):
        if args.ensemble_of:
            ensemble = given_ensemble(args, val)
        else:
            first = trained.get(args.ensemble_model) or network(args.ensemble_model, args)
            if args.ensemble_model not in trained:
                first = train_composition(first, train, val, args.out / args.ensemble_model)
            ensemble = train_ensemble(args, train, val, first)
        card = ensemble.card()["members"]
        metrics["ensemble"] = {
            "val_mae": ensemble.metrics["val"]["mae"],
            "val_rmse": ensemble.metrics["val"]["rmse"],
            "member_val_mae": ensemble.metrics["val"]["member_mae"],
            "members": card["k"],
            "member_model": args.ensemble_of or args.ensemble_model,
            "member_families": card["families"],
            "weights": card["weights"],
        }
        models["ensemble"] = str(args.out / "ensemble")
    if wanted(args, "side_by_side"):
        metrics["side_by_side"] = side_by_side(args, train, val, metrics)
    if wanted(args, "learning_curve"):
        metrics["learning_curve"] = learning_curve(args, train, val)

    results = {
        "benchmark": "composition",
        "quick": args.quick,
        "command": command(),
        "commands": dict.fromkeys(metrics, command()),
        "data": {
            "train": str(dataset_path("oqmd-dhf", "train")),
            "val": str(dataset_path("oqmd-dhf", "val")),
            "train_report": train.report.to_dict(),
            "val_report": val.report.to_dict(),
        },
        "split": "oqmd-dhf train/val as distributed (CrabNet split); metrics on val, test "
        "held back",
        "sizes": {"train": len(train), "val": len(val), "train_size_limit": args.train_size},
        "reference": {"test_mae_published_predictions": REFERENCE},
        "metrics": metrics,
        "histories": histories,
        "wall_seconds": {"load_data": load_seconds, "total": time.perf_counter() - t0},
        "machine": machine(),
        "models": models,
    }
    stem = "composition_quick" if args.quick else "composition"
    if args.only:
        earlier = args.results / f"{stem}.json"
        if "learning_curve" in metrics:
            metrics["learning_curve"] = with_earlier_points(metrics["learning_curve"], earlier)
        results = merge_earlier(results, earlier, PER_MODEL)
    results["metrics"]["learning_curve_fit"] = power_law(results["metrics"], len(train))
    write_json(results, args.results, stem)
    plot(results, results["histories"], args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
