"""Reconstruct microstructures with MCRpy (``mcrpy`` 0.2.0 from PyPI, TensorFlow on the CPU).

Runs inside the peer's own environment (never deepmat's). ``--inputs`` is an ``.npz`` of
label images (phases 0 … k − 1) under their names; ``--settings`` a JSON object with the
descriptor types, ``max_iter`` (MCRpy passes it to scipy's L-BFGS-B as both ``maxiter``
and ``maxfun``: evaluations of the loss) and, per input, ``limit_to`` (the descriptors'
range in pixels) and the ``shapes`` to reconstruct. Each input is characterised and
reconstructed at MCRpy's defaults otherwise (L-BFGS-B, multigrid descriptors, periodic,
one level); writes the reconstructions to ``--out``.npz and, per input, the seconds or the
error, to ``--out``.json.

Phases come back as they went in. Two phases are encoded single-phase: MCRpy's variable
is the indicator of phase 1 (``Microstructure`` keeps a 0/1 array as is), the descriptors
are those of that indicator, and ``decode_phases`` rounds it, so 1 is phase 1 again. More
phases are one indicator per phase (``use_multiphase``), decoded by arg max. (A 5-evaluation
run that left phase 1 at 0.63 of the pixels instead of 0.40 had barely moved from MCRpy's
start, N(0.5, 0.1) clipped to [0, 1]; with 100 evaluations it is 0.44.)

    PEER_PYTHON mcrpy_reconstruct.py --inputs in.npz --settings s.json --out runs/mcrpy
"""

import argparse
import json
import tempfile
import time
import traceback

import mcrpy
import numpy as np


def run(
    labels: np.ndarray, shape: list[int], limit_to: int, settings: dict, folder: str
) -> np.ndarray:
    multiphase = int(labels.max()) > 1
    common = {
        "descriptor_types": settings["descriptor_types"],
        "limit_to": limit_to,
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
                shape, limit_to = settings["shapes"][name], settings["limit_to"][name]
                arrays[name] = run(inputs[name], shape, limit_to, settings, folder)
                results[name] = {"seconds": time.perf_counter() - start}
            except Exception as exc:  # a peer's failure is a result, recorded with its trace
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                results[name]["trace"] = traceback.format_exc()[-3000:]
    np.savez_compressed(f"{args.out}.npz", **arrays)
    with open(f"{args.out}.json", "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
