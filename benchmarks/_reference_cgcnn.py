"""The reference CGCNN (txie-93/cgcnn, MIT licence), run as it is in a subprocess beside
deepmat's CGCNN on the same records: its folder layout, its exact train/val/test records,
and its speed and accuracy read from what it prints and writes.

The code lives in ``../shared/reference/cgcnn`` (``$DEEPMAT_REFERENCE_CGCNN`` elsewhere);
it is for benchmarks only and nothing of it is copied here. What this file relies on:

- ``CIFData`` shuffles the lines of ``id_prop.csv`` (``random.seed(123)``, then
  ``random.shuffle``) and ``get_train_val_test_loader`` with ``--train-size``,
  ``--val-size`` and ``--test-size`` takes the first ``train-size`` shuffled records for
  training, the ``val-size`` before the last ``test-size`` for validation and the last
  ``test-size`` for testing (``test-size`` must be at least 1: with 0 the slices go empty).
  :func:`file_order` undoes the shuffle, so its three parts are exactly ours; the test
  records of ``test_results.csv`` check it.
- Graphs are built inside ``CIFData.__getitem__`` behind ``functools.lru_cache``: with
  ``--workers 0`` (its default) the first epoch parses every CIF and builds its graph and
  later epochs read them from memory. Before training it also builds the graphs of 500
  random records of the whole folder (all of them below 500) for its target normaliser.
- Each validation ends with a line `` * MAE x.xxx`` (three decimals; the exact best value
  is in ``model_best.pth.tar``); the final test with `` ** MAE``.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = Path(
    os.environ.get(
        "DEEPMAT_REFERENCE_CGCNN", Path(__file__).resolve().parents[2] / "shared/reference/cgcnn"
    )
)
SHUFFLE_SEED = 123  # CIFData's default random_seed
IMPORTS = "import numpy, torch, sklearn.metrics, pymatgen.core.structure"  # what main.py loads


def file_order(n: int, seed: int = SHUFFLE_SEED) -> list[int]:
    """Line ``j`` of ``id_prop.csv`` must hold record ``file_order(n)[j]`` for CIFData's
    shuffle to put record ``i`` at position ``i`` (shuffled[i] = lines[perm[i]])."""
    perm = list(range(n))
    random.Random(seed).shuffle(perm)  # what random.seed(seed); random.shuffle(...) does
    order = [0] * n
    for position, line in enumerate(perm):
        order[line] = position
    return order


def write_folder(folder: Path, parts: list) -> list[str]:
    """``<id>.cif``, ``id_prop.csv`` and ``atom_init.json`` of the records of ``parts``
    (train, val, test tables) in the reference's layout; returns the ids in part order."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        (rid, s, float(y))
        for part in parts
        for rid, s, y in zip(part.ids, part.structures, part.targets, strict=True)
    ]
    for rid, structure, _ in records:
        structure.to(filename=str(folder / f"{rid}.cif"))
    with open(folder / "id_prop.csv", "w", newline="") as f:
        writer = csv.writer(f)
        for i in file_order(len(records)):
            writer.writerow((records[i][0], repr(records[i][2])))
    embedding = REFERENCE / "data/sample-regression/atom_init.json"
    if embedding.exists():  # without the reference code run_reference reports its absence
        shutil.copy(embedding, folder)
    return [r[0] for r in records]


def reference_command(folder: Path, sizes: tuple[int, int, int], settings: dict) -> list[str]:
    """``main.py`` on ``folder`` with deepmat's settings: Adam, its learning rate and batch
    size, and a learning-rate milestone after the last epoch (a constant rate)."""
    n_train, n_val, n_test = sizes
    epochs = settings["epochs"]
    return [
        sys.executable, "-u", str(REFERENCE / "main.py"), str(folder),
        "--optim", "Adam", "--lr", str(settings["lr"]),
        "--batch-size", str(settings["batch_size"]), "--epochs", str(epochs),
        "--lr-milestones", str(epochs + 1), "--workers", "0",
        "--train-size", str(n_train), "--val-size", str(n_val), "--test-size", str(n_test),
    ]  # fmt: skip


def import_seconds() -> float:
    """Wall seconds of a fresh Python importing what the reference imports."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True)
    return time.perf_counter() - start


def run_reference(cmd: list[str], workdir: Path, n_train: int, test_ids: list[str]) -> dict:
    """Run ``cmd`` in ``workdir``, streaming its output, and time its epochs by the wall
    clock at each `` * MAE`` line (the end of an epoch's validation)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = {"command": " ".join(cmd), "workdir": str(workdir)}
    if not (REFERENCE / "main.py").is_file():
        return out | {"error": f"reference CGCNN not found at {REFERENCE}"}
    imports = import_seconds()
    env = os.environ | {"PYTHONWARNINGS": "ignore"}  # pymatgen warns on many CIFs
    lines, ends, val_maes = [], [], []
    start = time.perf_counter()
    with subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            lines.append(line)
            print(f"reference | {line}", end="", file=sys.stderr, flush=True)
            if line.startswith(" * MAE"):
                ends.append(time.perf_counter() - start)
                val_maes.append(float(line.split()[-1]))
    end_to_end = time.perf_counter() - start
    (workdir / "output.log").write_text("".join(lines))
    if process.returncode or not ends:
        tail = "".join(lines[-25:])
        return out | {"error": f"exit status {process.returncode}:\n{tail}"}
    epoch_seconds = [ends[0], *(b - a for a, b in itertools.pairwise(ends))]
    steady = statistics.median(epoch_seconds[1:]) if len(ends) > 1 else None
    tested = list(csv.reader((workdir / "test_results.csv").read_text().splitlines()))
    import torch

    best = torch.load(workdir / "model_best.pth.tar", map_location="cpu", weights_only=True)
    out |= {
        "setup_seconds": ends[0] - imports - steady if steady else None,
        "structures_per_second": n_train / steady if steady else None,
        "end_to_end_seconds": end_to_end,
        "val_mae": float(best["best_mae_error"]),
        "test_mae": statistics.fmean(abs(float(t) - float(p)) for _, t, p in tested),
        "import_seconds": imports,
        "first_epoch_seconds": ends[0],
        "history": [
            {"epoch": e + 1, "val_mae": m, "epoch_seconds": s}
            for e, (m, s) in enumerate(zip(val_maes, epoch_seconds, strict=True))
        ],
        "test_records_as_given": sorted(r[0] for r in tested) == sorted(test_ids),
    }
    return out
