"""Train a composition network (Roost or the transformer) on an accelerator machine that
has PyTorch and Lightning but not deepmat's chemistry libraries, with deepmat's own trainer.

Three steps, the middle one on the accelerator machine:

    python tools/device_fit.py export roost --dataset oqmd-dhf --out .device/roost
    python tools/device_fit.py fit .device/roost --seed 1 --budget 480 --out OUT/s1
    python tools/device_fit.py assemble .device/roost OUT/s1 --out runs/roost-s1

``export`` builds the estimator of a preset (as ``deepmat train`` would), featurizes the
dataset's train and val splits here (pymatgen parses the formulas) and writes the arrays,
the network spec, the training configuration, the target scaling and the element
embedding. ``fit`` needs only torch, Lightning and deepmat's network and trainer modules:
it fits the network with :func:`~deepmat.train.trainer.fit_network` (``accelerator="auto"``
takes the GPU) and writes the best weights and the fit record. With ``--budget`` it first
times training steps of a copy of the network and sets the epochs (the one-cycle schedule
needs them up front) so that training ends within that many seconds. ``assemble`` puts the
weights back into the estimator, scores it on the val split and saves an ordinary deepmat
model (``deepmat.load``, ``deepmat evaluate``) whose card says where it trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from deepmat.models.element_sets import RoostSpec, TransformerSpec
from deepmat.train.config import TargetScaler, TrainConfig

SPECS = {spec.kind: spec for spec in (RoostSpec, TransformerSpec)}
ARRAYS = "arrays.npz"
SETUP = "setup.json"
FIT = "fit.json"
WEIGHTS = "weights.pt"
VAL_BATCH = 4096  # fit_network's validation batch


def estimator(setup: dict):
    """The unfitted estimator that ``setup`` describes (needs deepmat's chemistry stack)."""
    from deepmat.workflows.composition import make_regressor

    return make_regressor(
        setup["model"],
        setup["preset"],
        setup["target"],
        setup["unit"],
        setup["overrides"],
        seed=setup["seed"],
        embedding=setup["embedding"],
    )


def splits(setup: dict, model) -> tuple:
    """The dataset's train and val tables, restricted to the elements the model reads."""
    from deepmat.data import load_dataset
    from deepmat.workflows.search_data import drawn_indices

    supported = model.representation.supported_elements
    why = f" by the {model.representation.name} representation"
    tables = []
    for part in ("train", "val"):
        table = load_dataset(setup["dataset"], part).restrict_elements(supported, "raise", why)
        drawn = drawn_indices(len(table), setup["sizes"][part], seed=0)
        tables.append(table if drawn is None else table.subset(drawn))
    return tuple(tables)


def export(args: argparse.Namespace) -> None:
    overrides = {"loss": args.loss} if args.loss else {}
    setup = {
        "model": args.model,
        "preset": args.preset,
        "dataset": args.dataset,
        "target": args.target,
        "unit": args.unit,
        "overrides": overrides,
        "seed": 0,
        "embedding": args.embedding,
        "sizes": {"train": args.train_size, "val": args.val_size},
    }
    model = estimator(setup)
    train, val = splits(setup, model)
    model.prepare_network()
    setup |= {
        "spec": model.spec.to_dict(),
        "config": model.config.to_dict(),
        "scaler": model.starting_scaler(train.targets).to_dict(),
        "n_train": len(train),
        "n_val": len(val),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / ARRAYS,
        x_train=model.featurize(train).astype(np.float32),
        y_train=train.targets,
        x_val=model.featurize(val).astype(np.float32),
        y_val=val.targets,
        table=model.net.embed.table.numpy(),
    )
    (args.out / SETUP).write_text(json.dumps(setup, indent=1))
    print(f"exported {len(train)} train and {len(val)} val records to {args.out}")


def network(setup: dict, table: np.ndarray) -> torch.nn.Module:
    spec = setup["spec"]
    net = SPECS[spec["kind"]].from_dict(spec).build()
    net.embed.set_table(torch.from_numpy(table))
    return net


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_epoch(setup: dict, arrays: dict, config: TrainConfig, steps: int = 40) -> float:
    """Wall seconds of one epoch, training and validation, from ``steps`` timed training
    steps and one timed validation batch on a throwaway copy of the network (a tenth added
    for logging and checkpoints)."""
    from deepmat.train.trainer import RegressionTask

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = network(setup, arrays["table"]).to(device)
    loss_fn = RegressionTask(net, config, TargetScaler()).loss_fn
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    x = torch.as_tensor(arrays["x_train"][: config.batch_size * (steps + 5)], device=device)
    y = torch.randn(len(x), device=device)
    for i, start in enumerate(range(0, len(x), config.batch_size)):
        if i == 5:  # after the warm-up steps
            _synchronize(device)
            started = time.perf_counter()
        batch = slice(start, start + config.batch_size)
        loss = loss_fn(net(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    _synchronize(device)
    train = (
        (time.perf_counter() - started)
        / steps
        * math.ceil(len(arrays["y_train"]) / config.batch_size)
    )
    started = time.perf_counter()
    with torch.inference_mode():
        net(torch.as_tensor(arrays["x_val"][:VAL_BATCH], device=device))
    _synchronize(device)
    val = (time.perf_counter() - started) * math.ceil(len(arrays["y_val"]) / VAL_BATCH)
    return 1.1 * (train + val)


def fit(args: argparse.Namespace) -> None:
    from deepmat.train.trainer import fit_network

    setup = json.loads((args.data / SETUP).read_text())
    arrays = dict(np.load(args.data / ARRAYS))
    if args.limit:  # a smoke test of the machine: that many training records
        arrays |= {k: arrays[k][: args.limit] for k in ("x_train", "y_train")}
    changes = {"seed": args.seed, "progress": False, "accelerator": "auto"}
    changes |= {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v}
    config = dataclasses.replace(TrainConfig(**setup["config"]), **changes)
    torch.manual_seed(args.seed)
    net = network(setup, arrays["table"])
    started = time.perf_counter()
    epoch_seconds = None
    if args.budget:
        epoch_seconds = seconds_per_epoch(setup, arrays, config)
        epochs = max(1, int((args.budget - (time.perf_counter() - started)) / epoch_seconds))
        config = dataclasses.replace(config, epochs=epochs, patience=epochs)
    elif args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs, patience=args.epochs)
    print(f"seed {args.seed}: {config.epochs} epochs of batch {config.batch_size}", flush=True)
    scaler = TargetScaler.from_dict(setup["scaler"])
    result = fit_network(
        net,
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_val"],
        arrays["y_val"],
        config,
        args.out / "work",
        scaler,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.cpu().state_dict(), args.out / WEIGHTS)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    record = result.record(config) | {
        "seconds": round(time.perf_counter() - started, 2),
        "history": result.history,
        "device": device,
        "estimated_epoch_seconds": epoch_seconds,
        "torch": torch.__version__,
    }
    (args.out / FIT).write_text(json.dumps(record, indent=1))


def assemble(args: argparse.Namespace) -> None:
    from deepmat.workflows.common import save_with_parity_plot

    setup = json.loads((args.data / SETUP).read_text())
    record = json.loads((args.fitted / FIT).read_text())
    model = estimator(setup | {"seed": record["config"]["seed"]})
    model.config = TrainConfig(**record["config"])
    train, val = splits(setup, model)
    model.net.load_state_dict(torch.load(args.fitted / WEIGHTS, weights_only=True))
    model.scaler = TargetScaler.from_dict(setup["scaler"])
    extra = {k: record[k] for k in ("config", "epochs_run", "epochs_trained", "best_val_mae")}
    extra |= {"resumed_from": None, "device": record["device"], "torch": record["torch"]}
    extra["command"] = args.command
    model._record_training(train, val, record["seconds"], extra)
    save_with_parity_plot(model, val, args.out)
    print(f"{args.out}: val MAE {model.metrics['val']['mae']:.4f} {setup['unit']}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export", help="featurize a dataset for a network (here)")
    e.add_argument("model", choices=sorted(SPECS))
    e.add_argument("--dataset", default="oqmd-dhf")
    e.add_argument("--preset", default="benchmark")
    e.add_argument("--target", default="dhf")
    e.add_argument("--unit", default="eV/atom")
    e.add_argument("--embedding", default=None)
    e.add_argument("--loss", default="laplace-nll")
    e.add_argument("--train-size", type=int, default=None, help="(default: the whole split)")
    e.add_argument("--val-size", type=int, default=None, help="(default: the whole split)")
    e.add_argument("--out", type=Path, required=True)
    f = sub.add_parser("fit", help="train on the exported arrays (the accelerator machine)")
    f.add_argument("data", type=Path)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--budget", type=float, default=None, help="seconds; sets the epochs")
    f.add_argument("--batch-size", type=int, default=None)
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--limit", type=int, default=None, help="train on the first N records")
    f.add_argument("--out", type=Path, required=True)
    a = sub.add_parser("assemble", help="a deepmat model from the fitted weights (here)")
    a.add_argument("data", type=Path)
    a.add_argument("fitted", type=Path)
    a.add_argument("--command", default="", help="the fit command, for the card")
    a.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    {"export": export, "fit": fit, "assemble": assemble}[args.step](args)


if __name__ == "__main__":
    main()
