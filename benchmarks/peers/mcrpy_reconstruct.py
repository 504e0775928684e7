"""Reconstruct microstructures with MCRpy (``mcrpy`` 0.2.0 from PyPI, TensorFlow on the CPU).

Runs inside the peer's own environment (never deepmat's). ``--inputs`` is an ``.npz`` of
label images (phases 0 … k − 1) under their names; ``--settings`` a JSON object with the
descriptor types, ``limit_to`` (the descriptors' range in pixels), ``max_iter`` and, per
input, the ``shapes`` to reconstruct. Each input is characterised and reconstructed at
MCRpy's defaults otherwise (L-BFGS-B, multigrid descriptors); writes the reconstructions
to ``--out``.npz and, per input, the seconds or the error, to ``--out``.json.

    PEER_PYTHON mcrpy_reconstruct.py --inputs in.npz --settings s.json --out runs/mcrpy
"""

import argparse
import json
import tempfile
import time
import traceback

import mcrpy
import numpy as np


def run(labels: np.ndarray, shape: list[int], settings: dict, folder: str) -> np.ndarray:
    multiphase = int(labels.max()) > 1
    common = {
        "descriptor_types": settings["descriptor_types"],
        "limit_to": settings["limit_to"],
        "use_multiphase": multiphase,
        "target_folder": folder,
    }
    characterization = mcrpy.CharacterizationSettings(**common)
    descriptors = mcrpy.characterize(
        mcrpy.Microstructure(labels.astype(np.int32), use_multiphase=multiphase),
        characterization,
    )
    reconstruction = mcrpy.ReconstructionSettings(**common, max_iter=settings["max_iter"])
    _, last = mcrpy.reconstruct(descriptors, tuple(shape), settings=reconstruction)
    decoded = last.decode_phases() if hasattr(last, "decode_phases") else last
    return np.asarray(decoded).reshape(shape).round().astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", required=True)
    p.add_argument("--settings", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with open(args.settings) as handle:
        settings = json.load(handle)
    results, arrays = {"mcrpy_version": mcrpy.__version__}, {}
    with np.load(args.inputs) as inputs, tempfile.TemporaryDirectory() as folder:
        for name in inputs.files:
            start = time.perf_counter()
            try:
                arrays[name] = run(inputs[name], settings["shapes"][name], settings, folder)
                results[name] = {"seconds": time.perf_counter() - start}
            except Exception as exc:  # a peer's failure is a result, recorded with its trace
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                results[name]["trace"] = traceback.format_exc()[-3000:]
    np.savez_compressed(f"{args.out}.npz", **arrays)
    with open(f"{args.out}.json", "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
