"""What every benchmark shares: its standard options, random splits of generated data,
and what it records beside its metrics (the machine and the exact command)."""

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


def random_split(n: int, val: float, test: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted train/val/test indices of ``n`` independent samples (at least one each in
    val and test)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = max(1, round(test * n)), max(1, round(val * n))
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


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


def write_json(results: dict, directory: Path, stem: str) -> Path:
    """``directory/stem.json`` (created as needed), NumPy scalars written as floats."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    return path
