"""What every benchmark shares: its standard options and what it records beside its
metrics (the machine and the exact command)."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes: --out, --results, --quick."""
    p = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))
    p.add_argument("--out", type=Path, default=Path("runs") / name, help="trained models")
    p.add_argument("--results", type=Path, default=RESULTS, help="where NAME.json/png go")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds: a smoke run")
    return p


def machine() -> dict:
    """Platform, CPU threads, Python, torch and GPU (None on a CPU-only machine)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command() -> str:
    """The command line that ran this benchmark."""
    return shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv])


def merge_earlier(results: dict, path: Path, per_model: tuple[str, ...]) -> dict:
    """``results`` of a run of some models (``--only``) merged into the earlier results at
    ``path``: the models not rerun keep their entries, and ``commands`` names the command
    that produced each model's numbers. ``per_model`` are the keys holding one entry per
    model or dataset; the earlier run's ``wall_seconds`` move to ``earlier_wall_seconds``."""
    if not path.exists():
        return results
    earlier = json.loads(path.read_text())
    merged = dict(results)
    for key in per_model:
        merged[key] = earlier.get(key, {}) | results.get(key, {})
    produced_by = earlier.get("commands", dict.fromkeys(earlier["metrics"], earlier["command"]))
    merged["commands"] = produced_by | results["commands"]
    merged["earlier_wall_seconds"] = [
        *earlier.get("earlier_wall_seconds", []),
        {"command": earlier["command"], **earlier["wall_seconds"]},
    ]
    return merged


def merged_metrics(path: Path, metrics: dict) -> dict:
    """``metrics`` (per task or model, then per method) of a run over the earlier ones at
    ``path``, method by method: what was not rerun keeps its earlier entry."""
    earlier = json.loads(path.read_text())["metrics"] if path.exists() else {}
    return {key: earlier.get(key, {}) | metrics.get(key, {}) for key in {**earlier, **metrics}}


def write_json(results: dict, directory: Path, stem: str) -> Path:
    """``directory/stem.json`` (created as needed), NumPy scalars written as floats."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    return path


def subsample(table, n: int | None, seed: int = 0):
    """``n`` records of ``table`` drawn at random (seeded), in their order; all of them when
    ``n`` is None or not smaller."""
    if n is None or n >= len(table):
        return table
    return table.subset(np.sort(np.random.default_rng(seed).choice(len(table), n, False)))


def search_metrics(summary: dict, workers: int, best_key: str) -> dict:
    """What a search benchmark records of its search (``run_search``'s summary): finished
    trials, workers, seconds, the Pareto front's size, trial states, the best trial's
    validation error (as ``best_key``), objectives, sampler and space."""
    return {
        "trials": sum(summary["states"].get(s, 0) for s in ("complete", "pruned")),
        "workers": workers,
        "seconds": summary["seconds"],
        "pareto_size": len(summary["pareto"]),
        "states": summary["states"],
        best_key: summary["best"]["val_error"],
        "objectives": summary["objectives"],
        "sampler": summary["sampler"],
        "space": summary["space"],
    }
