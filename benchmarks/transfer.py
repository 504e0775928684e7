"""Transfer learning from DFT to experiment: scratch, fine-tuning and the DFT value itself.

Two tasks, as in Jha et al. (Nat. Commun. 10, 5316, 2019) and Gupta et al. (Nat. Commun. 12,
6595, 2021):

- ``ssub_dhf``: experimental formation enthalpies (``ssub-dhf``), starting from the shipped
  ``elemnet-oqmd`` (ElemNet on OQMD); DFT value: the OQMD ΔHf of the same composition;
- ``expt_gap``: experimental band gaps (``expt-non-metals``), starting from an ElemNet trained
  here on the DFT gaps of ``mp-non-metals``; DFT value: the Materials Project gap (the mean
  over its polymorphs).

Methods: ``scratch`` (from random weights), ``finetune_all`` (``--init``, every layer
trained), ``finetune_last`` (``--init --freeze K``: the leading K layers kept; K chosen on
the inner validation part among the architecture's ``freeze`` choices) and ``dft`` (where
OQMD or MP has the composition); both fine-tunings at the learning rate of
``--finetune-lrs`` with which fine-tuning every layer does best on the inner validation
part; fine-tuning every layer runs with ``--seeds`` seeds at each rate (each seed s > 0 on
its own cut of training and inner validation, a cross-validation ensemble), and with more than
one such run ``<prefix>finetune_ensemble`` is the mean of them all (its ``members``: rates ×
seeds), and with several architectures
``finetune_ensemble_architectures`` the mean of those of every architecture. Each method
runs for each of ``--architectures``: ``elemnet`` (the papers' network; its methods keep
their plain names) and ``roost`` (methods ``roost_<method>``, starting on SSUB from the
Roost inside ``composition-oqmd`` and on gaps from a Roost trained here on
``mp-non-metals``; its scratch runs have Roost's architecture, embedding and loss too). Each task is
cross-validated over ``--folds`` folds grouped by reduced formula: in each fold the other
folds are cut (grouped, 15 %) into training and an inner validation part, which stops
training and chooses K and the rate; the fold itself is scored. Reported: the mean and
standard deviation of the fold MAEs. The training settings are fixed beforehand (below), not
tuned on the folds. A run of some ``--tasks`` or ``--architectures`` keeps the other
methods' earlier results.

    python benchmarks/transfer.py --out runs/transfer
    python benchmarks/transfer.py --out runs/transfer --tasks expt_gap --folds 3   # one task
    python benchmarks/transfer.py --out runs/transfer --tasks ssub_dhf --finetune-lrs 1e-4 3e-4 1e-3
    python benchmarks/transfer.py --out runs/transfer --architectures roost --finetune-lrs 3e-4 1e-3
    python benchmarks/transfer.py --out runs/transfer --tasks ssub_dhf --architectures roost \
        --seeds 3 --jobs 2                    # 9-member ensembles, 2 folds at a time
    python benchmarks/transfer.py --out /tmp/t --quick              # seconds

Targets: SSUB MAE ≤ 0.065 eV/atom, band gap ≤ 0.34 eV, both below scratch. References:
ElemNet-TL about 0.07 eV/atom on 1,643 enthalpies; Gupta et al. 0.0708 transfer vs 0.0964
scratch (enthalpies), 0.355 vs 0.446 eV (gaps). Results: ``benchmarks/results/transfer.{json,png}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

from _shared import command, machine, merge_earlier, merged_metrics, parser, subsample, write_json
from deepmat.data import dataset_path, load_dataset
from deepmat.data.splits import grouped_folds, grouped_split
from deepmat.parallel import map_chunks, torch_threads
from deepmat.represent import ElementFractions, ElementSequence
from deepmat.train.metrics import save_figure
from deepmat.workflows.composition import make_regressor, train_composition

TASKS = {
    "ssub_dhf": {
        "data": "ssub-dhf",
        "target": "dhf",
        "dft": ("oqmd-dhf", ("train", "val")),
        "unit": "eV/atom",
        "reference": {"elemnet_tl": 0.07, "gupta_transfer": 0.0708, "gupta_scratch": 0.0964},
        "target_mae": 0.065,
    },
    "expt_gap": {
        "data": "expt-non-metals",
        "target": "gap",
        "dft": ("mp-non-metals", (None,)),
        "unit": "eV",
        "reference": {"gupta_transfer": 0.355, "gupta_scratch": 0.446},
        "target_mae": 0.34,
    },
}
#: per architecture: make_regressor's model, options and training overrides, the prefix of
#: its methods, the numbers K of leading layers finetune_last may keep (ElemNet: 17 hidden
#: layers and its output; Roost: 60 layers, the last 6 its output network, 40 the end of
#: its message passing), its source model per task (None: trained on the task's DFT data) and
#: the options of that training beside the "benchmark" preset
ARCHITECTURES = {
    "elemnet": {
        "model": "elemnet",
        "options": {},
        "overrides": {},
        "prefix": "",
        "freeze": (8, 12, 15),
        "source": {"ssub_dhf": "elemnet-oqmd", "expt_gap": None},
        "source_training": {},
    },
    "roost": {
        "model": "roost",
        "options": {"embedding": "matscholar", "heteroscedastic": True},
        "overrides": {"loss": "laplace-nll"},
        "prefix": "roost_",
        "freeze": (40, 54),
        "source": {"ssub_dhf": "composition-oqmd", "expt_gap": None},
        "source_training": {"epochs": 20, "patience": 20},
    },
}
SCRATCH = {"batch_size": 32, "lr": 1e-3, "schedule": "cosine", "epochs": 150, "patience": 150}
FINETUNE = {"batch_size": 32, "lr": 1e-4, "schedule": "cosine", "epochs": 60, "patience": 60}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "transfer")
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--architectures", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES)
    )
    p.add_argument(
        "--finetune-lrs",
        type=float,
        nargs="+",
        default=[1e-4, 3e-4, 1e-3],
        help="learning rates of fine-tuning, the best on each fold's inner validation part "
        "kept (for every layer and for the last ones)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="fine-tunings of every layer per rate, with seeds 0, 1, …, each seed on its own "
        "cut of training and inner validation; finetune_ensemble averages them all",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="folds trained at a time, each in its own process"
    )
    p.add_argument(
        "--gap-source",
        nargs="*",
        default=[],
        metavar="ARCHITECTURE=PATH",
        help="a model of the architecture trained on mp-non-metals (default: train it)",
    )
    return p.parse_args(argv)


def settings(base: dict, args: argparse.Namespace, **extra) -> dict:
    out = base | {"progress": sys.stderr.isatty()} | extra
    return out | ({"epochs": 2} if args.quick else {})


def fit(train, val, where, overrides: dict, target: str, unit: str, architecture: str):
    arch = ARCHITECTURES[architecture]
    options = arch["overrides"] | overrides
    model = make_regressor(arch["model"], "benchmark", target, unit, options, **arch["options"])
    return train_composition(model, train, val, where)


def readable_table(name: str, dropped: dict):
    """Dataset ``name`` without the compositions some architecture cannot read: of elements
    ElemNet does not represent (SSUB holds fermium) or of more elements than Roost's sequence
    holds (mp-non-metals has a 9-element oxide), so that every architecture sees the same
    records; how many go is counted in ``dropped``."""
    table = load_dataset(name)
    kept = table.restrict_elements(ElementFractions().supported_elements, "drop")
    limit = ElementSequence().max_elements
    kept = kept.subset([i for i, c in enumerate(kept.compositions) if len(c) <= limit])
    dropped[name] = len(table) - len(kept)
    return kept


def source_model(task: str, architecture: str, args: argparse.Namespace, dropped: dict) -> str:
    """The model ``architecture``'s fine-tunings of ``task`` start from: shipped, given by
    ``--gap-source``, or trained here on the DFT gaps of mp-non-metals (grouped 10 %
    validation)."""
    shipped = ARCHITECTURES[architecture]["source"][task]
    given = dict(item.split("=", 1) for item in args.gap_source)
    if shipped or architecture in given:
        return shipped or given[architecture]
    table = readable_table("mp-non-metals", dropped)
    if args.quick:
        table = subsample(table, 2000)
    split = grouped_split(table.keys, val=0.1, seed=0)
    where = args.out / f"mp_gap_{architecture}"
    overrides = settings(ARCHITECTURES[architecture]["source_training"], args)
    train, val = table.subset(split.train), table.subset(split.val)
    fit(train, val, where, overrides, "gap", "eV", architecture)
    return str(where)


def dft_values(task: dict, table, quick: bool) -> np.ndarray:
    """The DFT value of each composition of ``table`` (NaN where the database lacks it);
    ``quick`` looks in the last split only."""
    name, splits = task["dft"]
    splits = splits[-1:] if quick else splits
    known: dict[str, float] = {}
    for split in splits:
        dft = load_dataset(name, split)
        known |= dict(zip(dft.keys, dft.targets, strict=True))
    return np.array([known.get(key, np.nan) for key in table.keys])


def task_data(name: str, args: argparse.Namespace, dropped: dict) -> dict:
    """What every architecture of task ``name`` shares: its readable table, its folds, the
    DFT value of each record, and the ``dft`` method's scores on the folds."""
    task = TASKS[name]
    table = readable_table(task["data"], dropped)
    if args.quick:
        table = subsample(table, 300)
    dft = dft_values(task, table, args.quick)
    folds = grouped_folds(table.keys, args.folds, seed=0)
    dft_mae = []
    for test_index in folds:
        matched = ~np.isnan(dft[test_index])
        errors = dft[test_index][matched] - table.targets[test_index][matched]
        dft_mae.append(float(np.mean(np.abs(errors))))
    scores = _summary(dft_mae) | {"n_matched": int(np.sum(~np.isnan(dft)))}
    return {"table": table, "folds": folds, "dft": scores}


def run_task(
    name: str, architecture: str, data: dict, args: argparse.Namespace, source: str
) -> tuple[dict, str, list]:
    """Every method of ``architecture`` on every fold of ``name`` (``data``: its
    :func:`task_data`), ``--jobs`` folds at a time in their own processes: per-method fold
    MAEs (the methods named with the architecture's prefix), the chosen K and rate, where the
    first fold's chosen fine-tuning of every layer is saved, and per fold the test
    predictions of the fine-tunings of every layer."""
    arch = ARCHITECTURES[architecture]
    jobs = min(args.jobs, len(data["folds"]))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    fold = functools.partial(_run_fold_on, threads, name, architecture, data, args, source)
    # Dask's process workers are spawned, not forked: forking after OpenMP can hang.
    scheduler = "processes" if jobs > 1 else "synchronous"
    runs = list(map_chunks(fold, range(len(data["folds"])), scheduler=scheduler, workers=jobs))
    methods = runs[0]["maes"]
    metrics = {m: _summary([run["maes"][m] for run in runs]) for m in methods}
    metrics["finetune_last"]["freeze_chosen"] = [run["freeze"] for run in runs]
    for method in ("finetune_all", "finetune_last"):
        metrics[method] |= {"lr_chosen": [run["lr"] for run in runs], "source_model": source}
    if "finetune_ensemble" in metrics:
        metrics["finetune_ensemble"]["members"] = len(runs[0]["predictions"])
    named = {f"{arch['prefix']}{m}": v for m, v in metrics.items()}
    return named, runs[0]["saved"], [run["predictions"] for run in runs]


def _run_fold_on(threads: int, *fold: object) -> dict:
    """:func:`run_fold` on ``threads`` torch threads (the cores shared by the folds at once)."""
    with torch_threads(threads):
        return run_fold(*fold)


def run_fold(
    name: str, architecture: str, data: dict, args: argparse.Namespace, source: str, f: int
) -> dict:
    """Fold ``f`` of :func:`run_task`: train every method on the other folds (cut into
    training and inner validation), choose the rate and K on the inner validation part, and
    score fold ``f``. Fine-tunings of every layer run at each rate with ``--seeds`` seeds;
    the chosen rate's first seed is ``finetune_all``, the mean of them all
    ``finetune_ensemble``."""
    arch, table, test_index = ARCHITECTURES[architecture], data["table"], data["folds"][f]
    rest = np.setdiff1d(np.arange(len(table)), test_index)
    home = args.out / name / f"fold{f}"
    parts = [inner_parts(table, rest, f, seed) for seed in range(args.seeds)]
    runs = [_runner(*part, home, name, architecture, args) for part in parts]
    run, val = runs[0], parts[0][1]
    test = table.subset(test_index)
    maes = {"scratch": run("scratch", SCRATCH).evaluate(test)["mae"]}
    tuned = {
        (lr, seed): runs[seed](f"all{_suffix(lr, seed)}", FINETUNE, init=source, lr=lr, seed=seed)
        for lr in args.finetune_lrs
        for seed in range(args.seeds)
    }
    lr = min(args.finetune_lrs, key=lambda r: tuned[r, 0].evaluate(val)["mae"])
    predicted = {key: model.predict(test) for key, model in tuned.items()}
    maes["finetune_all"] = _mae(predicted[lr, 0], test)
    if len(tuned) > 1:
        maes["finetune_ensemble"] = _mae(np.mean(list(predicted.values()), axis=0), test)
    last = {
        k: run(f"freeze{k}{_suffix(lr)}", FINETUNE, init=source, freeze=k, lr=lr)
        for k in (arch["freeze"][-1:] if args.quick else arch["freeze"])
    }
    best = min(last, key=lambda k: last[k].evaluate(val)["mae"])
    maes["finetune_last"] = last[best].evaluate(test)["mae"]
    return {
        "maes": maes,
        "lr": lr,
        "freeze": best,
        "saved": str(home / f"{arch['prefix']}all{_suffix(lr)}"),
        "predictions": list(predicted.values()),
    }


def inner_parts(table, rest: np.ndarray, f: int, seed: int) -> tuple:
    """The training and inner validation parts of ``rest`` (fold ``f``'s other folds) for
    the runs of ``seed``, cut 85/15 grouped by formula. Seed 0 cuts with seed ``f``: its
    inner validation part chooses the rate and K, and scratch and the last-layer runs train
    on it. Every other seed's fine-tunings get a cut of their own (seed ``f + 1000 seed``),
    so that together an ensemble's members learn from all of ``rest``: a cross-validation
    ensemble, more diverse than seeds alone."""
    inner = grouped_split([table.keys[i] for i in rest], val=0.15, seed=f + 1000 * seed)
    return table.subset(rest[inner.train]), table.subset(rest[inner.val])


def _mae(predicted: np.ndarray, test) -> float:
    return float(np.mean(np.abs(predicted - test.targets)))


def every_architecture(data: dict, tested: dict[str, list]) -> dict:
    """``finetune_ensemble_architectures``: per fold of ``data`` (:func:`task_data`), the
    mean of every architecture's fine-tunings of every layer at every rate (``tested``: per
    architecture, per fold, those fine-tunings' predictions of the fold)."""
    folds = zip(data["folds"], *tested.values(), strict=True)
    tables = (data["table"].subset(f) for f in data["folds"])
    maes = [
        _mae(np.mean([p for per in fold[1:] for p in per], axis=0), test)
        for fold, test in zip(folds, tables, strict=True)
    ]
    return _summary(maes) | {"architectures": list(tested)}


def _runner(train, val, home, task: str, architecture: str, args: argparse.Namespace):
    """run(where, base, **extra): trains ``architecture`` on ``train`` (stopping on ``val``)
    into ``home/<prefix><where>`` with the options ``base`` and ``extra``."""
    names = (TASKS[task]["target"], TASKS[task]["unit"])
    prefix = ARCHITECTURES[architecture]["prefix"]

    def run(where: str, base: dict, **extra):
        options = settings(base, args, **extra)
        return fit(train, val, home / f"{prefix}{where}", options, *names, architecture)

    return run


def _suffix(lr: float, seed: int = 0) -> str:
    """Where a fine-tuning at ``lr`` with ``seed`` is saved: the fixed rate's and the first
    seed's runs keep their plain names."""
    return ("" if lr == FINETUNE["lr"] else f"_lr{lr:g}") + (f"_seed{seed}" if seed else "")


def _summary(values: list[float]) -> dict:
    return {"mae": float(np.mean(values)), "mae_std": float(np.std(values)), "folds": values}


def plot(metrics: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), dpi=110, squeeze=False)
    for ax, (task, per_method) in zip(axes[0], metrics.items(), strict=True):
        methods = list(per_method)
        means = [per_method[m]["mae"] for m in methods]
        spread = [per_method[m]["mae_std"] for m in methods]
        ax.bar(methods, means, yerr=spread, capsize=4, color="#4c72b0")
        ax.tick_params(axis="x", labelrotation=45)
        ax.axhline(TASKS[task]["target_mae"], color="r", ls="--", label="target")
        ax.set(title=task, ylabel=f"MAE ({TASKS[task]['unit']})")
        ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.folds = 2
    start = time.perf_counter()
    metrics, sizes, timings, models, dropped, commands = {}, {}, {}, {}, {}, {}
    for name in args.tasks:
        data, tested = task_data(name, args, dropped), {}
        metrics[name] = {"dft": data["dft"]}
        sizes[name] = {"records": len(data["table"]), "folds": [len(f) for f in data["folds"]]}
        for architecture in args.architectures:
            t0 = time.perf_counter()
            source = source_model(name, architecture, args, dropped)
            scores, first, tested[architecture] = run_task(name, architecture, data, args, source)
            metrics[name] |= scores
            prefix = ARCHITECTURES[architecture]["prefix"]
            models[f"{name}_fold0_{prefix}finetune_all"] = first
            timings[f"{name}.{architecture}"] = time.perf_counter() - t0
            commands[f"{name}.{architecture}"] = command()
        if len(tested) > 1:
            metrics[name]["finetune_ensemble_architectures"] = every_architecture(data, tested)
            commands[f"{name}.every_architecture"] = command()
    timings["total"] = time.perf_counter() - start
    results = {
        "benchmark": "transfer",
        "quick": args.quick,
        "metrics": metrics,
        "references": {
            t: TASKS[t]["reference"] | {"target": TASKS[t]["target_mae"]} for t in TASKS
        },
        "settings": {
            "scratch": SCRATCH,
            "finetune": FINETUNE,
            "architectures": {a: ARCHITECTURES[a] for a in args.architectures},
            "finetune_lrs": args.finetune_lrs,
            "seeds": args.seeds,
        },
        "data": {
            t: [str(dataset_path(TASKS[t]["data"], None))]
            + [str(dataset_path(TASKS[t]["dft"][0], s)) for s in TASKS[t]["dft"][1]]
            for t in args.tasks
        },
        "split": "folds grouped by reduced formula (seed 0; their sizes: sizes.<task>.folds); "
        "in each, the rest cut 85/15 (grouped, seed = fold) into training and inner validation; "
        "fine-tunings of seed s > 0 on a cut of their own (seed = fold + 1000 s)",
        "sizes": sizes,
        "dropped_unsupported_elements": dropped,
        "models": models,
        "wall_seconds": timings,
        "machine": machine(),
        "command": command(),
    }
    results["commands"] = commands
    per_task = ("sizes", "data", "models", "dropped_unsupported_elements")
    results = merge_earlier(results, args.results / "transfer.json", per_task)
    results["metrics"] = merged_metrics(args.results / "transfer.json", metrics)
    scored = {
        task: {m: v for m, v in per.items() if isinstance(v, dict)}
        for task, per in results["metrics"].items()
    }
    print(write_json(results, args.results, "transfer"))
    plot(scored, args.results / "transfer.png")
    print(json.dumps(scored, indent=1))


if __name__ == "__main__":
    main()
