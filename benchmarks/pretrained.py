"""The shipped pretrained models reproduce their cards: each is evaluated on the validation
data its card names, through ``deepmat evaluate`` as a user would run it, and the metric is
compared with the card's (relative tolerance 1e-3, the bound for half-precision weights).

    python benchmarks/pretrained.py --out runs/pretrained          # every shipped model
    python benchmarks/pretrained.py --out /tmp/q --quick           # the first model only
    python benchmarks/pretrained.py --out runs/pretrained --only cgcnn-mp-eform   # the rest kept

Models validated on generated data (EBSD patterns, microstructures) name the file inside the
--out folder of the benchmark run that made it: pass that folder with ``--runs NAME=DIR``;
without it, the model is listed as not checked, with the command that makes its data.

    python benchmarks/pretrained.py --out runs/pretrained --runs ebsd-cnn-ni=runs/ebsd \
        homogenization-c50=runs/homogenization localization-c10=runs/localization \
        localization-c50=runs/localization

Nothing is trained: the models are the package's. Results:
``benchmarks/results/pretrained.{json,png}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from _shared import command, machine, merge_earlier, parser, write_json
from deepmat.pretrained import pretrained_models

TOLERANCE = 1e-3


def reproduce(entry, out: Path, runs: dict[str, Path]) -> dict:
    """``deepmat evaluate`` of one shipped model on the validation data of its card."""
    check = entry.card["pretrained"]["validation"]
    metric, data = check["metric"], check["data"]
    if check.get("generated"):
        if entry.name not in runs:
            return {
                "metric": metric,
                "reproduces": None,
                "not_checked": f"its validation data, {data}, is made by "
                f"{entry.card['pretrained']['command']!r}: pass --runs {entry.name}=OUT",
            }
        data = str(runs[entry.name] / data)
    deepmat_cli = str(Path(sys.executable).parent / "deepmat")
    argv = [deepmat_cli, "evaluate", entry.name, data, "--json"]
    argv += ["--plot", str(out / f"{entry.name}.png")]
    if "part" in check:
        argv += ["--part", check["part"]]
    start = time.perf_counter()
    run = subprocess.run(argv, capture_output=True, text=True, check=True)
    scored = json.loads(run.stdout.strip().splitlines()[-1])
    expected = entry.card["metrics"]["val"][metric]
    change = abs(scored[metric] - expected) / abs(expected)
    return {
        "command": " ".join(["deepmat", *argv[1:]]),
        "metric": metric,
        "card": expected,
        "reproduced": scored[metric],
        "relative_change": change,
        "reproduces": change <= TOLERANCE,
        "n": scored["n"],
        "part": scored["part"],
        "seconds": time.perf_counter() - start,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, m in results["metrics"].items() if m["reproduces"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * max(1, len(names))), dpi=120)
    changes = [max(results["metrics"][n]["relative_change"], 1e-9) for n in names]
    ax.barh(names, changes)
    ax.axvline(TOLERANCE, color="k", ls="--", lw=0.8, label="tolerance")
    ax.set(xscale="log", xlabel="relative change of the validation metric vs the card")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__, "pretrained")
    p.add_argument(
        "--runs",
        nargs="*",
        default=[],
        metavar="NAME=DIR",
        help="the benchmark --out folder holding a model's generated validation data",
    )
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        metavar="NAME",
        help="check these models only; the others keep their earlier results",
    )
    args = p.parse_args(argv)
    runs = {name: Path(folder) for name, folder in (item.split("=", 1) for item in args.runs)}
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    shipped = pretrained_models()[:1] if args.quick else pretrained_models()
    if args.only is not None:
        shipped = [entry for entry in shipped if entry.name in args.only]
    if not shipped:
        raise SystemExit("no pretrained models are shipped: nothing to check")
    metrics = {entry.name: reproduce(entry, args.out, runs) for entry in shipped}
    results = {
        "benchmark": "pretrained",
        "quick": args.quick,
        "command": command(),
        "commands": dict.fromkeys(metrics, command()),
        "data": {e.name: e.card["pretrained"]["data"] for e in shipped},
        "split": {e.name: e.card["pretrained"]["split"] for e in shipped},
        "sizes": {name: {"n": m["n"]} for name, m in metrics.items() if "n" in m},
        "tolerance": TOLERANCE,
        "metrics": metrics,
        "models": {e.name: str(e.path) for e in shipped},
        "wall_seconds": {"total": time.perf_counter() - start},
        "machine": machine(),
    }
    stem = "pretrained_quick" if args.quick else "pretrained"
    if args.only is not None:
        per_model = ("metrics", "data", "split", "sizes", "models")
        results = merge_earlier(results, args.results / f"{stem}.json", per_model)
    checked = [m for m in results["metrics"].values() if m["reproduces"] is not None]
    results["checked"] = len(checked)
    results["not_checked"] = [n for n, m in results["metrics"].items() if m["reproduces"] is None]
    results["all_checked_reproduce"] = all(m["reproduces"] for m in checked)
    write_json(results, args.results, stem)
    plot(results, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
