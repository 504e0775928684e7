"""Stability from predicted formation energies: convex hulls on OQMD, Bartel et al.'s protocol.

A formation energy matters through the convex hull. For each composition model this scores
the decomposition energy ΔHd (distance to the hull of the competing compounds; stable when
ΔHd ≤ 0) computed from its predicted ΔHf against the same from the DFT ΔHf, in four settings:

- ``random``: the ``oqmd-dhf`` validation compounds against the hull of the training
  compounds' known energies (the protocol of the anchor below; with a fixed known hull, ΔHd
  MAE equals ΔHf MAE);
- ``ti_o``, ``na_fe_mn_o``, ``li_mn_tm_o`` (TM = Ti, V, Cr, Fe, Co, Ni, Cu): held-out chemical
  systems. One model per family is retrained without every compound (of the train and val
  files) that contains all the elements of any of these systems; the compounds made of
  exactly a system's elements are scored, each against its known lower-order subsystems plus
  the other held-out compounds (true ΔHd from their true energies, predicted ΔHd from their
  predicted energies), as Bartel et al. did.

Metrics: ΔHf and ΔHd MAE, stability precision, recall, F1 and false-positive rate, n and the
number stable, beside the "everything stable" classifier. The shipped ``elemnet-oqmd`` is
trained on the same train split with the ``benchmark`` preset: ``--use
elemnet.random=elemnet-oqmd`` scores it instead of training it again (``--use
MODEL.SETTING=PATH`` for any model trained elsewhere on the same data; a MODEL the
benchmark does not train, such as the best composition model, is scored beside them:
``--use composition_oqmd.random=composition-oqmd``).

    python benchmarks/stability.py --out runs/stability --use elemnet.random=elemnet-oqmd
    python benchmarks/stability.py --out /tmp/s --quick                 # seconds

A run of some settings or models (``--settings random``, ``--models`` and ``--use``) keeps
the earlier results of the others (``commands`` says which command produced each model's
numbers); its picture is then ``stability_<setting>.png`` beside the full run's.

Anchors. Bartel et al. (npj Comput. Mater. 6, 97, 2020; all of Materials Project, 85,014
compositions, 40 % stable): ΔHd MAE and F1 — Roost 0.06/0.72, ElemNet 0.10/0.60, Magpie
0.12/0.57, CGCNN 0.04/0.75, everything-stable F1 0.57; on 267 held-out Li–Mn–TM–O
quaternaries (9 stable) composition models F1 0–0.17, CGCNN 0.50. On the held-out part of
this very split (peers' published predictions, stable = ΔHd ≤ 0 against the train and val
hull; 51,254 compounds, 4,333 stable): F1 Roost 0.833, CrabNet 0.832, ElemNet 0.755, RF
0.602, everything-stable 0.156. Results: ``benchmarks/results/stability.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import deepmat
from _shared import command, machine, merge_earlier, merged_metrics, parser, subsample, write_json
from deepmat.data import dataset_path, load_dataset
from deepmat.data.splits import system_holdout
from deepmat.physics.hulls import (
    FormationHull,
    chemical_space,
    decomposition_energies,
    stability_scores,
)
from deepmat.train.metrics import save_figure
from deepmat.workflows.composition import make_regressor, train_composition
from deepmat.workflows.screening import screen

MODELS = {"elemnet": "elemnet", "rf_magpie": "rf-magpie"}
TRANSITION_METALS = ("Ti", "V", "Cr", "Fe", "Co", "Ni", "Cu")
SYSTEMS = {
    "ti_o": ("Ti-O",),
    "na_fe_mn_o": ("Na-Fe-Mn-O",),
    "li_mn_tm_o": tuple(f"Li-Mn-{tm}-O" for tm in TRANSITION_METALS),
}
BARTEL_MP = {
    "roost": {"dhd_mae": 0.06, "f1": 0.72},
    "elemnet": {"dhd_mae": 0.10, "f1": 0.60},
    "magpie": {"dhd_mae": 0.12, "f1": 0.57},
    "cgcnn": {"dhd_mae": 0.04, "f1": 0.75},
    "trivial": {"f1": 0.57},
    "li_mn_tm_o": {"composition_models_f1": [0.0, 0.17], "cgcnn_f1": 0.50, "n": 267, "stable": 9},
}
CRABNET_SPLIT_F1 = {
    "roost": 0.833,
    "crabnet": 0.832,
    "elemnet": 0.755,
    "rf": 0.602,
    "trivial": 0.156,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "stability")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument(
        "--settings", nargs="*", default=["random", "held_out"], choices=["random", "held_out"]
    )
    p.add_argument("--epochs", type=int, default=None, help="(default: the preset's)")
    p.add_argument("--trees", type=int, default=100, help="trees of the forest")
    p.add_argument("--train-size", type=int, default=None, help="(default: the whole split)")
    p.add_argument(
        "--use",
        nargs="*",
        default=[],
        help="MODEL.SETTING=PATH, trained elsewhere; a MODEL not in --models is scored too",
    )
    args = p.parse_args(argv)
    args.use = dict(item.split("=", 1) for item in args.use)  # {"MODEL.SETTING": PATH}
    return args


def trained(model: str, setting: str, train, val, args: argparse.Namespace):
    """``model`` for ``setting`` (``random`` or ``held_out``): given by ``--use`` or trained
    here on ``train`` (``val`` stops it), resumable; returns it and where it is saved."""
    if f"{model}.{setting}" in args.use:
        return deepmat.load(args.use[f"{model}.{setting}"]), args.use[f"{model}.{setting}"]
    where = args.out / f"{model}_{setting}"
    name = MODELS[model]
    if name.startswith("rf-"):
        trees = 10 if args.quick else args.trees
        estimator = make_regressor(name, "benchmark", "dhf", "eV/atom", trees=trees)
    else:
        overrides = {"progress": sys.stderr.isatty()}
        epochs = 2 if args.quick else args.epochs
        if epochs:
            overrides["epochs"] = epochs
        estimator = make_regressor(name, "benchmark", "dhf", "eV/atom", overrides)
    return train_composition(estimator, train, val, where), str(where)


def train_all(setting: str, train, val, args, paths: dict, training: dict, timings: dict) -> dict:
    """Every model of ``args.models`` for ``setting``, and every other model ``--use`` gives
    for it (e.g. the best composition model); where each is saved, on how many compounds
    and for how many epochs it trained, and how long it took go into ``paths``,
    ``training`` and ``timings``."""
    given = [key.rsplit(".", 1) for key in args.use]
    extra = [model for model, where in given if where == setting and model not in args.models]
    models = {}
    for model in [*args.models, *extra]:
        t0 = time.perf_counter()
        models[model], paths[f"{model}_{setting}"] = trained(model, setting, train, val, args)
        record = models[model].training
        training[f"{model}_{setting}"] = {
            "n_train": record.get("data", {}).get("n_train"),
            "epochs": record.get("epochs_run"),
        }
        timings[f"{model}_{setting}"] = time.perf_counter() - t0
    return models


def scored(true_dhd, predicted_dhd, true_dhf, predicted_dhf) -> dict:
    return {"dhf_mae": float(np.mean(np.abs(predicted_dhf - true_dhf)))} | stability_scores(
        true_dhd, predicted_dhd
    )


def everything_stable(true_dhd: np.ndarray) -> dict:
    """The classifier that calls every compound stable (it predicts no ΔHd: no MAE)."""
    scores = stability_scores(true_dhd, np.full(len(true_dhd), -np.inf))
    del scores["dhd_mae"]
    return scores


def random_setting(train, val, models: dict, timings: dict) -> tuple[dict, dict]:
    """ΔHd of the validation compounds against the training compounds' hull."""
    start = time.perf_counter()
    hull = FormationHull(train.compositions, train.targets)
    hull_energy = hull.hull_energies(val.compositions)
    timings["random_hull"] = time.perf_counter() - start
    true_dhd = val.targets - hull_energy
    metrics, parity = {}, {}
    for model, estimator in models.items():
        predicted = estimator.predict(val)
        metrics[model] = scored(true_dhd, predicted - hull_energy, val.targets, predicted)
        parity[model] = (true_dhd, predicted - hull_energy)
    metrics["trivial"] = everything_stable(true_dhd)
    return metrics, parity


def held_out_parts(everything) -> tuple[dict, tuple]:
    """The indices of the compounds made of exactly each held-out system's elements, and the
    known compounds of their lower-order subsystems (compositions and energies)."""
    systems = [s for group in SYSTEMS.values() for s in group]
    _, exact = system_holdout(everything.compositions, systems)
    held = set(np.concatenate(list(exact.values())).tolist())
    spaces = [frozenset(s.split("-")) for s in systems]
    known = [
        i
        for i, comp in enumerate(everything.compositions)
        if i not in held and any(set(chemical_space(comp)) <= s for s in spaces)
    ]
    return exact, ([everything.compositions[i] for i in known], everything.targets[known])


def held_out_settings(
    everything, exact: dict, known_part: tuple, models: dict, timings: dict
) -> tuple[dict, dict]:
    """ΔHd of each held-out system's compounds against its known subsystems and each other."""
    metrics: dict = {}
    hulls = {}
    start = time.perf_counter()
    for setting, systems in SYSTEMS.items():
        index = np.concatenate([exact[s] for s in systems])
        if not len(index):
            absent = {
                "n": 0,
                "n_stable": 0,
                "note": f"no compound of {', '.join(systems)} in oqmd-dhf (train and val files)",
            }
            metrics[setting] = dict.fromkeys([*models, "trivial"], absent)
            continue
        part = everything.subset(index)
        true_dhd = decomposition_energies(part.compositions, part.targets, known_part)
        metrics[setting] = {"trivial": everything_stable(true_dhd)}
        for model, estimator in models.items():
            predicted = estimator.predict(part)
            predicted_dhd = decomposition_energies(part.compositions, predicted, known_part)
            metrics[setting][model] = scored(true_dhd, predicted_dhd, part.targets, predicted)
            hulls[(setting, model)] = (part, predicted)
    timings["held_out_hulls"] = time.perf_counter() - start
    return metrics, hulls


def plot(random_parity: dict, hulls: dict, known_part, path: Path) -> None:
    """ΔHd parity (random setting) per model and the Ti–O hull, true beside predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(random_parity)
    ti_o = [(model, hulls[("ti_o", model)]) for model in models if ("ti_o", model) in hulls]
    columns = max(len(models), len(ti_o), 1)
    fig, axes = plt.subplots(2, columns, figsize=(4.5 * columns, 8.5), dpi=110, squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        true, predicted = random_parity[model]
        ax.hexbin(true, predicted, gridsize=80, bins="log", mincnt=1, extent=(-1, 1, -1, 1))
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(0, color="k", lw=0.6)
        ax.set(xlabel="DFT ΔHd (eV/atom)", ylabel="predicted ΔHd", title=f"{model}: random")
    for ax, (model, (part, predicted)) in zip(axes[1], ti_o, strict=False):
        x = np.array([c.get_atomic_fraction("O") for c in part.compositions])
        for energies, label, marker in ((part.targets, "DFT", "o"), (predicted, model, "x")):
            hull = FormationHull(
                [*part.compositions, *known_part[0]], np.concatenate([energies, known_part[1]])
            )
            grid = np.linspace(0, 1, 201)
            ax.plot(grid, _binary_hull(hull, grid), label=f"{label} hull")
            ax.scatter(x, energies, marker=marker, s=18, label=label)
        ax.set(xlabel="O fraction in Ti–O", ylabel="ΔHf (eV/atom)", title=f"{model}: Ti–O")
        ax.legend(fontsize=7)
    for ax in [*axes[0, len(models) :], *axes[1, len(ti_o) :]]:
        ax.set_axis_off()  # a model scored only at random has no Ti–O panel
    save_figure(fig, path)


def _binary_hull(hull: FormationHull, oxygen: np.ndarray) -> np.ndarray:
    from pymatgen.core import Composition

    return hull.hull_energies([Composition({"Ti": 1 - x, "O": x}) for x in oxygen])


def screening_speed(max_atoms: int) -> dict:
    """End-to-end throughput of ``deepmat screen`` (enumeration, features, the shipped ElemNet,
    ΔHd) on the Na-Fe-Mn-O system, after one warm-up call."""
    model = deepmat.load("elemnet-oqmd")
    screen(model, "Na-Fe-Mn-O", 6)
    start = time.perf_counter()
    result = screen(model, "Na-Fe-Mn-O", max_atoms)
    seconds = time.perf_counter() - start
    flops = sum(
        2 * m.in_features * m.out_features for m in model.net.modules() if hasattr(m, "in_features")
    )
    peak = matmul_flops_per_second()
    return {
        "model": "elemnet-oqmd",
        "system": "Na-Fe-Mn-O",
        "max_atoms": max_atoms,
        "compositions": result.enumerated,
        "seconds": seconds,
        "compositions_per_second": result.enumerated / seconds,
        "network_flops_per_composition": flops,
        "matmul_flops_per_second": peak,
        "network_bound_compositions_per_second": peak / flops,
        "target_compositions_per_second": 1e6,
    }


def matmul_flops_per_second(size: int = 1024, rows: int = 4096, repeats: int = 20) -> float:
    """This machine's float32 matrix-product rate with torch's threads (ElemNet's widest
    layer on a batch): the network alone can go no faster than this over its FLOPs."""
    import torch

    a, b = torch.randn(rows, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * size * size * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.quick:  # the val file alone, cut in two at random: seconds instead of minutes
        everything = load_dataset("oqmd-dhf", "val")
        order = np.random.default_rng(0).permutation(len(everything))
        train_part = everything.subset(np.sort(order[:3000]))
        val_part = everything.subset(np.sort(order[3000:3600]))
    else:
        train, val_part = load_dataset("oqmd-dhf", "train"), load_dataset("oqmd-dhf", "val")
        everything = train.concat(val_part)
        train_part = subsample(train, args.train_size)
    timings = {"load_data": time.perf_counter() - start}
    metrics: dict = {}
    paths: dict = {}
    training: dict = {}
    parity, hulls = {}, {}
    systems = [s for group in SYSTEMS.values() for s in group]
    sizes = {"train": len(train_part), "val": len(val_part)}
    exact, known_part = held_out_parts(everything)
    if "random" in args.settings:
        models = train_all("random", train_part, val_part, args, paths, training, timings)
        metrics["random"], parity = random_setting(train_part, val_part, models, timings)
    held_split = {}
    if "held_out" in args.settings:
        keep_train, _ = system_holdout(train_part.compositions, systems)
        keep_val, _ = system_holdout(val_part.compositions, systems)
        train_held = train_part.subset(np.flatnonzero(keep_train))
        val_held = val_part.subset(np.flatnonzero(keep_val))
        sizes |= {"held_out_train": len(train_held), "held_out_val": len(val_held)}
        held_split = {
            "systems": SYSTEMS,
            "removed_from_train": int(len(train_part) - len(train_held)),
            "removed_from_val": int(len(val_part) - len(val_held)),
        }
        models = train_all("held_out", train_held, val_held, args, paths, training, timings)
        held_metrics, hulls = held_out_settings(everything, exact, known_part, models, timings)
        metrics |= held_metrics
        held_split["scored"] = {s: [everything.formulas[i] for i in exact[s]] for s in systems}
    by_model = _by_model(metrics)
    by_model["screening"] = screening_speed(12 if args.quick else 40)
    args.results.mkdir(parents=True, exist_ok=True)
    # a run of one setting keeps the picture of both and draws its own beside it
    partial = "" if {"random", "held_out"} <= set(args.settings) else "_" + args.settings[0]
    plot(parity, hulls, known_part, args.results / f"stability{partial}.png")
    timings["total"] = time.perf_counter() - start
    results = {
        "benchmark": "stability",
        "quick": args.quick,
        "metrics": by_model,
        "references": {"bartel_mp": BARTEL_MP, "crabnet_split_f1": CRABNET_SPLIT_F1},
        "data": {"oqmd-dhf": [str(dataset_path("oqmd-dhf", p)) for p in ("train", "val")]},
        "split": {
            "random": "oqmd-dhf val scored against the hull of train"
            if not args.quick
            else "oqmd-dhf val file cut at random (seed 0): 3,000 train, 600 val",
        }
        | ({"held_out": held_split} if "held_out" in args.settings else {}),
        "sizes": sizes,
        "models": paths,
        "training": training,
        "wall_seconds": timings,
        "machine": machine(),
        "command": command(),
    }
    # per model and setting: a run of one setting leaves the others' commands as they were
    results["commands"] = {
        f"{model}.{setting}" if isinstance(entry, dict) else model: results["command"]
        for model, entries in by_model.items()
        for setting, entry in entries.items()
    }
    earlier = args.results / "stability.json"
    results = merge_earlier(results, earlier, ("models", "training", "sizes", "split"))
    results["metrics"] = merged_metrics(earlier, by_model)
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "held_out_split.json").write_text(json.dumps(held_split, indent=1))
    print(write_json(results, args.results, "stability"))
    print(json.dumps(by_model, indent=1, default=float))


def _by_model(metrics: dict) -> dict:
    """``metrics.<setting>.<model>`` regrouped as ``metrics.<model>.<setting>``."""
    out: dict = {}
    for setting, per_model in metrics.items():
        for model, values in per_model.items():
            out.setdefault(model, {})[setting] = values
    return out


if __name__ == "__main__":
    main()
