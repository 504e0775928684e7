"""Package trained models as deepmat's shipped pretrained models (maintainers' tool).

Each entry of :data:`MODELS` names the saved model a ``--preset benchmark`` run wrote, the
data it was trained and validated on, and the command that trained it; packaging checks the
validation metric in half precision, writes the card's ``pretrained`` section and
``examples.json`` (see :func:`deepmat.workflows.pretrained.package_model`).

    DEEPMAT_DATA_DIR=../shared/data python tools/package_pretrained.py elemnet-oqmd \
        --source runs/elemnet-oqmd
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepmat.data.registry import get_dataset, load_dataset
from deepmat.pretrained import ROOT, predict_examples
from deepmat.workflows.pretrained import package_model

FORMULAS = ["Fe2O3", "NaCl", "Al2O3", "MgO", "TiO2", "LiFePO4", "Li7La3Zr2O12", "GaAs"]


def dataset_files(name: str) -> dict:
    """The files of a named dataset with their checksums (what a card names as its data)."""
    dataset = get_dataset(name)
    return {
        "name": name,
        "files": {f.relpath: f.sha256 for f in dataset.all_files},
        "source": dataset.source,
    }


def elemnet_oqmd(source: Path) -> dict:
    """ElemNet on OQMD ΔHf, trained on the train split and validated on the val split."""
    val = load_dataset("oqmd-dhf", "val")
    card_path = source / "card.json"
    card = json.loads(card_path.read_text())
    card["training"]["data"].setdefault("val_fingerprint", val.fingerprint())
    card_path.write_text(json.dumps(card, indent=2, default=float))
    return {
        "validate": lambda model: model.evaluate(val)["mae"],
        "examples": FORMULAS,
        "pretrained": {
            "data": dataset_files("oqmd-dhf"),
            "split": "oqmd-dhf train (239,190) / val (51,255) as distributed (the CrabNet "
            "split); its test part is held back by the project",
            "command": "deepmat train composition --model elemnet --data oqmd-dhf "
            "--preset benchmark --out runs/elemnet-oqmd",
            "validation": {"data": "oqmd-dhf:val", "metric": "mae"},
        },
    }


def perovskite_cifs() -> list[str]:
    """Cubic SrTiO3 and BaZrO3 as CIF text (pymatgen), the structure models' examples."""
    from pymatgen.core import Lattice, Structure

    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    cells = [("Sr", "Ti", 3.905), ("Ba", "Zr", 4.193)]
    return [
        Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), [x, y, "O"], coords).to(fmt="cif")
        for x, y, a in cells
    ]


def cgcnn_linear_perovskites(source: Path) -> dict:
    """The interpretable CGCNN on Castelli's perovskites, on the split saved with it."""
    from deepmat.data.readers import read_structures

    table = read_structures("perovskites")
    held_out = set(json.loads((source / "split.json").read_text())["val"])
    val = table.subset([i for i, name in enumerate(table.ids) if name in held_out])
    return {
        "validate": lambda model: model.evaluate(val)["mae"],
        "examples": perovskite_cifs(),
        "pretrained": {
            "data": dataset_files("perovskites"),
            "split": "80/10/10 grouped by structure (reduced formula + StructureMatcher), "
            "seed 0: split.json",
            "command": "deepmat train crystal --data perovskites --model cgcnn-linear "
            "--preset benchmark --epochs 150 --batch-size 128 --patience 150 "
            "--test-fraction 0.1 --out runs/cgcnn-linear-perovskites",
            "validation": {"data": "perovskites", "part": "val", "metric": "mae"},
        },
    }


MODELS = {"elemnet-oqmd": elemnet_oqmd, "cgcnn-linear-perovskites": cgcnn_linear_perovskites}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(MODELS))
    p.add_argument("--source", type=Path, required=True, help="the trained model's directory")
    p.add_argument("--trained-by", default=None, help="the command that actually ran, if other")
    args = p.parse_args()
    spec = MODELS[args.name](args.source)
    if args.trained_by:
        spec["pretrained"]["trained_by"] = args.trained_by
    card = package_model(
        args.source,
        args.name,
        ROOT,
        validate=spec["validate"],
        examples=spec["examples"],
        predict_examples=lambda model: predict_examples(model, spec["examples"]),
        pretrained=spec["pretrained"],
    )
    print(json.dumps(card["pretrained"], indent=1, default=float))


if __name__ == "__main__":
    main()
