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
import hashlib
import json
from pathlib import Path

import numpy as np

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


def generated_files(run: Path, relpaths: list[str], command: str, how: str) -> dict:
    """The data a benchmark generated into its --out folder ``run``, with checksums."""

    def sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    return {
        "name": f"generated: {command}",
        "files": {rel: sha256(run / rel) for rel in relpaths},
        "source": how,
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


def structure_model(source: Path, dataset: str, command: str) -> dict:
    """A CGCNN on a named structure dataset, validated on the val part of the split saved
    with it."""
    from deepmat.data.readers import read_structures

    table = read_structures(dataset)
    held_out = set(json.loads((source / "split.json").read_text())["val"])
    val = table.subset([i for i, name in enumerate(table.ids) if name in held_out])
    return {
        "validate": lambda model: model.evaluate(val)["mae"],
        "examples": perovskite_cifs(),
        "pretrained": {
            "data": dataset_files(dataset),
            "split": "80/10/10 grouped by structure (reduced formula + StructureMatcher), "
            "seed 0: split.json",
            "command": command,
            "validation": {"data": dataset, "part": "val", "metric": "mae"},
        },
    }


def cgcnn_linear_perovskites(source: Path) -> dict:
    """The interpretable CGCNN on Castelli's perovskites."""
    command = (
        "deepmat train crystal --data perovskites --model cgcnn-linear --preset benchmark "
        "--epochs 150 --batch-size 128 --patience 150 --test-fraction 0.1 "
        "--out runs/cgcnn-linear-perovskites"
    )
    return structure_model(source, "perovskites", command)


def cgcnn_mp_eform(source: Path) -> dict:
    """The gated CGCNN on the Materials Project formation energies."""
    command = (
        "deepmat train crystal --data mp-eform --model cgcnn --preset benchmark "
        "--test-fraction 0.1 --out runs/cgcnn-mp-eform"
    )
    return structure_model(source, "mp-eform", command)


EBSD_COMMAND = "python benchmarks/ebsd.py --out runs/ebsd"


def ebsd_cnn_ni(source: Path) -> dict:
    """The orientation CNN of the EBSD benchmark (nickel, 60×60 detector, cubic embedding),
    validated on the benchmark's validation patterns and tested on all its noise levels."""
    from deepmat.workflows.ebsd import evaluate_pattern_file, read_scan

    run = source.parent
    val = run / "data" / "val.h5"
    test_files = sorted(str(p.relative_to(run)) for p in run.glob("data/test_*.h5"))
    tests = [read_scan(run / relpath) for relpath in test_files]

    def test(model) -> dict:
        patterns = np.concatenate([scan.patterns for scan in tests])
        reference = np.concatenate([scan.reference.data for scan in tests])
        return model.evaluate(patterns, reference)

    files = ["data/dictionary.h5", "data/val.h5", *test_files]
    return {
        "validate": lambda model: evaluate_pattern_file(model, val)["mean_disorientation_deg"],
        "test": test,
        "examples": read_scan(val).patterns[:4],
        "pretrained": {
            "data": generated_files(
                run,
                files,
                EBSD_COMMAND,
                "patterns projected from kikuchipy's dynamical nickel master pattern (EMsoft, "
                "20 kV) on the detector of kikuchipy's nickel scan; training: the 3° "
                "dictionary plus 250,000 random orientations (in memory, seed 1)",
            ),
            "split": "train: 3° dictionary + 250,000 random orientations (seed 1); val: 1,000 "
            "random (seed 2); test: 1,000 random (seed 3) at each of 4 noise levels; "
            "noise levels cycle over train and val",
            "command": EBSD_COMMAND,
            "validation": {
                "data": "data/val.h5",
                "generated": True,
                "metric": "mean_disorientation_deg",
            },
        },
    }


def voxel_model(source: Path, command: str, folder: str, metric: str, n_examples: int):
    """A homogenization or localization network of a benchmark run: validated on the run's
    validation file, tested on its test file."""
    from deepmat.data.voxels import read_voxel_dataset
    from deepmat.workflows.microstructure import evaluate_labelled, read_labelled

    run = source.parent
    val, test = f"{folder}/val.h5", f"{folder}/test.h5"

    def score(model, relpath: str) -> dict:
        return evaluate_labelled(model, read_labelled(run / relpath, model.target)[0])

    examples = read_voxel_dataset(run / val, with_strain=False).microstructures[:n_examples]
    return {
        "validate": lambda model: score(model, val)[metric],
        "test": lambda model: score(model, test),
        "examples": examples,
        "pretrained": {
            "split": f"random over microstructures (each drawn from its own seed): {val} and "
            f"{test} are the validation and test parts",
            "command": command,
            "validation": {"data": val, "generated": True, "metric": metric},
        },
    }


def homogenization_c50(source: Path) -> dict:
    """The 3-D CNN of the homogenization benchmark: C11 of contrast-50 composites, 51³."""
    command = "python benchmarks/homogenization.py --out runs/homogenization --curve"
    spec = voxel_model(source, command, "data", "mape", 3)
    files = ["data/train.h5", "data/val.h5", "data/test.h5"]
    how = "random periodic two-phase microstructures (5 Gaussian-random-field families and "
    how += "spheres) labelled by deepmat's FFT elasticity solver, contrast 50"
    spec["pretrained"]["data"] = generated_files(source.parent, files, command, how)
    return spec


def localization(contrast: int):
    """The spectral FCN of the localization benchmark at ``contrast``: the ε11 field, 21³."""

    def entry(source: Path) -> dict:
        command = "python benchmarks/localization.py --out runs/localization --curve"
        folder = f"data/c{contrast}"
        spec = voxel_model(source, command, folder, "mase", 2)
        run = source.parent
        files = sorted(str(p.relative_to(run)) for p in (run / folder).glob("*.h5"))
        how = "random periodic two-phase microstructures (Gaussian random fields), ε11 under "
        how += f"uniaxial ε̄11 = 1e-3 from deepmat's FFT elasticity solver, contrast {contrast}"
        spec["pretrained"]["data"] = generated_files(run, files, command, how)
        return spec

    return entry


MODELS = {
    "elemnet-oqmd": elemnet_oqmd,
    "cgcnn-linear-perovskites": cgcnn_linear_perovskites,
    "cgcnn-mp-eform": cgcnn_mp_eform,
    "ebsd-cnn-ni": ebsd_cnn_ni,
    "homogenization-c50": homogenization_c50,
    "localization-c10": localization(10),
    "localization-c50": localization(50),
}


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
        test=spec.get("test"),
    )
    print(json.dumps(card["pretrained"], indent=1, default=float))


if __name__ == "__main__":
    main()
