"""Cold start: seconds from a fresh process to a prediction, for a shipped composition model.

Runs ``deepmat predict MODEL Fe2O3`` (the command line) and ``deepmat.load(MODEL).predict``
(Python) in fresh processes, several times each, and records the best and median wall time,
the modules that took longest to import (``python -X importtime``) and whether Lightning or
the image families' libraries were imported. Target (issue 13): ≤ 3 s on 2 cores.

    python benchmarks/cold_start.py --out runs/cold_start       # the shipped elemnet-oqmd
    python benchmarks/cold_start.py --out /tmp/q --quick        # a tiny untrained ElemNet

Results: ``benchmarks/results/cold_start.{json,png}``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _shared import command, machine, parser, write_json

TARGET_SECONDS = 3.0
HEAVY = ("lightning", "kikuchipy", "orix", "matminer", "dask", "numba", "pandas")


def parse_args(argv: list[str] | None = None):
    p = parser(__doc__, "cold_start")
    p.add_argument("--model", default="elemnet-oqmd", help="shipped model or saved directory")
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args(argv)


def timed(argv: list[str], repeats: int) -> dict:
    """Best and median wall seconds of ``argv`` run ``repeats`` times in fresh processes."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return {"best": min(seconds), "median": statistics.median(seconds), "all": seconds}


def import_profile(model: str) -> dict:
    """The ten slowest cumulative imports of a Python prediction and the heavy libraries
    it imported."""
    script = (
        "import sys, json, deepmat\n"
        f"deepmat.load({model!r}).predict(['Fe2O3'])\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative) / 1e6, name.strip()))
    top = sorted(((s, n) for s, n in rows if not n.startswith(" ")), reverse=True)[:10]
    return {
        "slowest_top_level_imports_seconds": {n: s for s, n in top},
        "heavy_libraries_imported": json.loads(run.stdout.strip().splitlines()[-1]),
    }


def model_directory(model: str) -> Path:
    """The saved-model directory of a shipped name or a path."""
    from deepmat.pretrained import pretrained_path

    return Path(model) if Path(model).is_dir() else pretrained_path(model)


def tiny_model(out: Path) -> str:
    """A small untrained ElemNet saved under ``out`` (the quick run's stand-in)."""
    from deepmat.train import NetworkRegressor

    path = out / "elemnet-tiny"
    if path.exists():
        shutil.rmtree(path)
    NetworkRegressor().save(path)
    return str(path)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    names = list(results["metrics"])
    best = [results["metrics"][n]["best"] for n in names]
    median = [results["metrics"][n]["median"] for n in names]
    ax.barh(names, median, color="tab:blue", alpha=0.5, label="median")
    ax.barh(names, best, color="tab:blue", label="best")
    ax.axvline(TARGET_SECONDS, color="k", ls="--", lw=0.8, label="target")
    ax.set(xlabel="seconds, fresh process to prediction", title=f"cold start: {results['model']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model = tiny_model(args.out) if args.quick else args.model
    repeats = 2 if args.quick else args.repeats
    deepmat_cli = str(Path(sys.executable).parent / "deepmat")
    python = f"import deepmat; deepmat.load({model!r}).predict(['Fe2O3'])"
    metrics = {
        "cli_predict": timed([deepmat_cli, "predict", model, "Fe2O3"], repeats),
        "python_load_predict": timed([sys.executable, "-c", python], repeats),
        "python_bare_interpreter": timed([sys.executable, "-c", "pass"], repeats),
    }
    results = {
        "benchmark": "cold_start",
        "quick": args.quick,
        "command": command(),
        "model": model,
        "data": "one formula (Fe2O3)",
        "split": "none: no data is scored",
        "sizes": {"formulas": 1, "repeats": repeats},
        "target_seconds": TARGET_SECONDS,
        "meets_target": metrics["cli_predict"]["median"] <= TARGET_SECONDS,
        "metrics": metrics,
        "imports": import_profile(model),
        "models": {Path(model).name: str(model_directory(model))},
        "wall_seconds": {"total": time.perf_counter() - start},
        "machine": machine(),
    }
    stem = "cold_start_quick" if args.quick else "cold_start"
    write_json(results, args.results, stem)
    plot(results, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
