"""What the shipped ElemNet learned, as numbers: the ElemNet paper's two observations about
its layers measured by linear probes (``deepmat explain activations``).

Jha et al. projected ElemNet's activations and saw (1) the elements of a group line up in
the early layers and (2) charge-balanced binary compounds separate from the others in the
later ones. Here a standardised, class-weighted logistic regression (5-fold cross-validated
balanced accuracy, beside chance) predicts an element's group and period from each layer's
activations for the elements on their own, and a binary compound's charge balance (common
oxidation states, 3,000 reduced A_xB_y of 55 common elements) for the binaries. Each
observation is scored by its probe accuracy in the first and the last quarter of the layers
(``early`` and ``late``): the paper's claim holds where the named quarter leads.

    python benchmarks/activations.py --out runs/activations
    python benchmarks/activations.py --out /tmp/a --quick   # 200 binaries, layers 1, 2, 16, 17
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np

import deepmat
from _shared import command, machine, parser, write_json
from deepmat.pretrained import pretrained_path
from deepmat.workflows.activations import explain_activations

MODELS = ("elemnet-oqmd",)
#: (probe, the quarter of the layers where the paper says it is readable)
OBSERVATIONS = {"group": "early", "charge_balanced": "late"}


def quarters(per_layer: list[dict]) -> dict:
    """The mean probe accuracy over the first and the last quarter of the layers."""
    accuracy = np.array([p["balanced_accuracy"] for p in per_layer])
    n = max(len(accuracy) // 4, 1)
    return {"early": float(accuracy[:n].mean()), "late": float(accuracy[-n:].mean())}


def main(argv=None) -> dict:
    args = parser(__doc__, "activations").parse_args(argv)
    binaries = 200 if args.quick else 3000
    t0 = time.perf_counter()
    metrics = {}
    for name in MODELS:
        start = time.perf_counter()
        out = args.out / name
        probed = (1, 2, 16, 17) if args.quick else ()
        paths = explain_activations(deepmat.load(name), out, binaries=binaries, probed=probed)
        report = json.loads(paths["probes"].read_text())
        row = {"layers": report["layers"], "probe_sets": report["probe_sets"]}
        for prop, per_layer in report["probes"].items():
            row[prop] = {"per_layer": per_layer, **quarters(per_layer)}
        row["observations"] = {
            prop: {
                "paper": f"readable in the {where} layers",
                "holds": row[prop][where] > row[prop]["late" if where == "early" else "early"],
            }
            for prop, where in OBSERVATIONS.items()
        }
        row["seconds"] = time.perf_counter() - start
        metrics[name.replace("-", "_")] = row
    results = {
        "benchmark": "activations",
        "quick": args.quick,
        "command": command(),
        "data": {
            "elements": "every element the model represents (groups 1-18, no rare earths)",
            "binaries": f"{binaries} reduced binaries of 55 common elements",
        },
        "split": "5-fold stratified cross-validation of each probe (seed 0)",
        "sizes": {"binaries": binaries},
        "metrics": metrics,
        "models": {name.replace("-", "_"): str(pretrained_path(name)) for name in MODELS},
        "wall_seconds": {"total": time.perf_counter() - t0},
        "machine": machine(),
    }
    stem = "activations_quick" if args.quick else "activations"
    write_json(results, args.results, stem)
    shutil.copy(args.out / MODELS[0] / "probes.png", args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
