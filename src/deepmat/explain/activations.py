"""What the layers of a composition network encode, as numbers.

The ElemNet paper projected the activations of its layers for chosen inputs and saw that
elements of one group line up in the early layers and that charge-balanced binary compounds
separate from the others in the later ones. Here those observations become measurements: a
*linear probe* (a standardised logistic regression, cross-validated) predicts a property from a
layer's activations, and its balanced accuracy per layer, beside chance, says how linearly the
layer encodes that property. Projections (PCA, t-SNE, UMAP) draw the same
activations in two dimensions.

Probe sets: every element the model represents on its own (labels: group, period), and the
binary compounds :math:`A_xB_y` (:math:`x, y \\le 4`, reduced; 3,000 of them drawn at random) of
a list of common elements (label: whether common oxidation states balance the charge; colour:
the electronegativity difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import torch
from pymatgen.core import Element

from deepmat.data.composition import CompositionTable, composition_table
from deepmat.errors import DataError
from deepmat.train.weights import layers

PROBE_ELEMENTS = (
    "H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K",
    "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se",
    "Br", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Cs",
    "Ba", "La", "Hf", "Ta", "W", "Pt", "Au", "Pb", "Bi",
)  # fmt: skip
PROJECTIONS = ("pca", "tsne", "umap")


def activations(model, table: CompositionTable, batch_size: int = 4096) -> list[np.ndarray]:
    """The output of each layer of ``model``'s network (before its nonlinearity) for every
    record of ``table``: one (n, width) array per layer, in order."""
    net = getattr(model, "net", None)
    if net is None:
        raise DataError(f"{model.name}: activations are read from a network; this has none")
    features = model.featurize(table)
    if not isinstance(features, np.ndarray):
        raise DataError(
            f"{model.name}: activations are read from networks on feature vectors (ElemNet); "
            f"this {model.family} reads other inputs"
        )
    stack = layers(net)
    outputs: list[list[np.ndarray]] = [[] for _ in stack]
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, k=k: outputs[k].append(out.numpy()))
        for k, layer in enumerate(stack)
    ]
    net.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                net(torch.from_numpy(features[start : start + batch_size].astype(np.float32)))
    finally:
        for hook in hooks:
            hook.remove()
    return [np.concatenate(parts) for parts in outputs]


def element_set(supported: Sequence[str]) -> tuple[CompositionTable, dict[str, np.ndarray]]:
    """Every supported element on its own (main groups and transition metals, group 1-18),
    with its group and period."""
    symbols = [s for s in supported if Element(s).group <= 18 and not Element(s).is_rare_earth]
    table = composition_table(symbols, source="elements")
    return table, {
        "group": np.array([Element(s).group for s in symbols]),
        "period": np.array([Element(s).row for s in symbols]),
    }


def binary_set(
    supported: Sequence[str],
    elements: Sequence[str] = PROBE_ELEMENTS,
    max_amount: int = 4,
    limit: int = 3000,
    seed: int = 0,
) -> tuple[CompositionTable, dict[str, np.ndarray]]:
    """The reduced binary compounds A_xB_y of ``elements`` (x, y ≤ ``max_amount``; at most
    ``limit`` of them, drawn at random with ``seed``), with whether common oxidation states
    balance them and their electronegativity difference."""
    from deepmat.workflows.screening import charge_balanced

    chosen = [e for e in elements if e in set(supported)]
    formulas, balanced, difference = [], [], []
    for a, b in combinations(chosen, 2):
        amounts = np.array(
            [
                (x, y)
                for x in range(1, max_amount + 1)
                for y in range(1, max_amount + 1)
                if np.gcd(x, y) == 1
            ]
        )
        formulas += [f"{a}{x}{b}{y}" for x, y in amounts]
        balanced.append(charge_balanced((a, b), amounts))
        difference += [abs(Element(a).X - Element(b).X)] * len(amounts)
    labels = {
        "charge_balanced": np.concatenate(balanced),
        "electronegativity_difference": np.array(difference),
    }
    chosen_rows = np.arange(len(formulas))
    if len(formulas) > limit:
        chosen_rows = np.sort(np.random.default_rng(seed).choice(len(formulas), limit, False))
    table = composition_table([formulas[i] for i in chosen_rows], source="binary compounds")
    return table, {name: values[chosen_rows] for name, values in labels.items()}


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated balanced accuracy (the mean recall over classes, so that a rare class
    counts) of a linear probe — a standardised, class-weighted logistic regression — that
    predicts ``labels`` from ``features``, beside chance (one over the number of classes);
    classes with fewer records than folds are left out (counted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, values[counts >= folds])
    x, y = features[keep], labels[keep]
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
    )
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(probe, x, y, cv=cv, scoring="balanced_accuracy")
    return {
        "balanced_accuracy": float(scores.mean()),
        "balanced_accuracy_std": float(scores.std()),
        "chance": 1.0 / len(np.unique(y)),
        "n": len(y),
        "left_out": int((~keep).sum()),
    }


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Two-dimensional coordinates of the standardised ``features``."""
    if method not in PROJECTIONS:
        raise DataError(f"projection {method!r} is not one of {', '.join(PROJECTIONS)}")
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    if x.shape[1] < 2:  # a one-unit layer (the output): drawn along one axis
        return np.column_stack([x, np.zeros((len(x), 2 - x.shape[1]))])
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, perplexity=min(30, len(x) - 1), random_state=seed).fit_transform(x)
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
