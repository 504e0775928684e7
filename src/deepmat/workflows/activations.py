"""``deepmat explain activations``: per-layer linear probes and projections of a composition
network's activations, written as JSON and pictures (see :mod:`deepmat.explain.activations`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from deepmat.errors import DataError
from deepmat.explain.activations import (
    activations,
    binary_set,
    element_set,
    probe_accuracy,
    project,
)

# (probe set, property): the ElemNet paper's two observations and the period beside them
PROBES = (("elements", "group"), ("elements", "period"), ("binaries", "charge_balanced"))


def explain_activations(
    model,
    out: str | Path,
    shown: Sequence[int] = (),
    projection: str = "pca",
    binaries: int = 3000,
    probed: Sequence[int] = (),
) -> dict[str, Path]:
    """Probe accuracy of the ``probed`` layers (1-based; default every layer) for each of
    :data:`PROBES` (``probes.json`` and ``probes.png``), and for the ``shown`` layers
    (default the first and the last hidden layer) a projection of the elements coloured by
    group and of the binary compounds (``binaries`` of them) coloured by charge balance."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    supported = model.representation.supported_elements
    sets = {"elements": element_set(supported), "binaries": binary_set(supported, limit=binaries)}
    acts = {name: activations(model, table) for name, (table, _) in sets.items()}
    depth = len(acts["elements"])
    shown = list(shown) or [1, depth - 1]
    probed = list(probed) or list(range(1, depth + 1))
    bad = [k for k in [*shown, *probed] if not 1 <= k <= depth]
    if bad:
        raise DataError(f"layer {bad[0]} does not exist: the network has layers 1 to {depth}")
    probes = {
        f"{prop}": [
            {"layer": k} | probe_accuracy(acts[name][k - 1], sets[name][1][prop]) for k in probed
        ]
        for name, prop in PROBES
    }
    report = {
        "model": model.name,
        "layers": depth,
        "widths": [a.shape[1] for a in acts["elements"]],
        "probe_sets": {name: len(table) for name, (table, _) in sets.items()},
        "probes": probes,
    }
    paths = {"probes": out / "probes.json"}
    paths["probes"].write_text(json.dumps(report, indent=1))
    paths["probe plot"] = _probe_plot(probes, out / "probes.png")
    for k in shown:
        paths[f"layer {k}"] = _projection_plot(acts, sets, k, projection, out)
    return paths


def _probe_plot(probes: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for prop, per_layer in probes.items():
        layer = [p["layer"] for p in per_layer]
        line = ax.plot(layer, [p["balanced_accuracy"] for p in per_layer], marker="o", label=prop)[
            0
        ]
        ax.plot(layer, [p["chance"] for p in per_layer], ls=":", color=line.get_color())
    ax.set(xlabel="layer", ylabel="linear-probe balanced accuracy (dotted: chance)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _projection_plot(acts: dict, sets: dict, k: int, method: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    elements_xy = project(acts["elements"][k - 1], method)
    table, labels = sets["elements"]
    points = axes[0].scatter(*elements_xy.T, c=labels["group"], cmap="tab20", s=30)
    for (x, y), formula in zip(elements_xy, table.formulas, strict=True):
        axes[0].annotate(formula, (x, y), fontsize=6)
    fig.colorbar(points, ax=axes[0], label="group")
    binaries_xy = project(acts["binaries"][k - 1], method)
    balanced = sets["binaries"][1]["charge_balanced"]
    for mask, label in ((~balanced, "not charge-balanced"), (balanced, "charge-balanced")):
        axes[1].scatter(*binaries_xy[mask].T, s=4, alpha=0.5, label=label)
    axes[1].legend(markerscale=4)
    axes[0].set_title(f"layer {k}: elements ({method})")
    axes[1].set_title(f"layer {k}: binary compounds ({method})")
    fig.tight_layout()
    path = out / f"layer{k}_{method}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
