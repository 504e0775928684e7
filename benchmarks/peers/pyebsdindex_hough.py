"""Index EBSD pattern sets by Hough/Radon band detection and triplet voting with PyEBSDIndex
(``pyebsdindex`` from PyPI).

Runs inside the peer's own environment (never deepmat's). ``--patterns`` is an ``.npz`` of
pattern sets, each (n, height, width) under its own name, and ``--pcs`` a JSON file of each
set's projection centre (PCx, PCy, PCz in kikuchipy's Bruker convention); every set is
indexed with a :class:`pyebsdindex.ebsd_index.EBSDIndexer` of the FCC phase on its detector
(``vendor="KIKUCHIPY"``, as kikuchipy's ``EBSDDetector.get_indexer`` sets it up) at
PyEBSDIndex's default band-detection settings.
The indexer is warmed up on one pattern first (Numba compiles on first use), so the times
are of indexing alone. Writes, per set, the best solution's quaternions (scalar first, as
kikuchipy reads them into a crystal map), whether each pattern was indexed, and the
seconds, to ``--out`` as JSON.

    PEER_PYTHON pyebsdindex_hough.py --patterns sets.npz --pcs pcs.json --out r.json
"""

import argparse
import json
import time

import numpy as np
import pyebsdindex
from pyebsdindex.ebsd_index import EBSDIndexer


def indexer(pc: list[float], shape: tuple[int, int], args: argparse.Namespace) -> EBSDIndexer:
    """An FCC indexer on the detector of projection centre ``pc`` and pattern ``shape``."""
    return EBSDIndexer(
        phaselist=["FCC"],
        vendor="KIKUCHIPY",
        PC=np.asarray(pc, dtype=float),
        sampleTilt=args.sample_tilt,
        camElev=args.tilt,
        patDim=shape,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patterns", required=True, help=".npz of (n, height, width) pattern sets")
    p.add_argument("--pcs", required=True, help='JSON {"set": [PCx, PCy, PCz] (Bruker)}')
    p.add_argument("--sample-tilt", type=float, default=70.0)
    p.add_argument("--tilt", type=float, default=0.0, help="detector tilt (°)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with np.load(args.patterns) as stored:
        sets = {name: stored[name].astype(np.float32) for name in stored.files}
    with open(args.pcs) as file:
        pcs = json.load(file)
    first = next(iter(sets))
    start = time.perf_counter()
    indexer(pcs[first], sets[first].shape[1:], args).index_pats(patsin=sets[first][:1])
    results = {"pyebsdindex": pyebsdindex.__version__, "sets": {}}
    results["warm_up_seconds"] = time.perf_counter() - start
    for name, patterns in sets.items():
        hough = indexer(pcs[name], patterns.shape[1:], args)
        start = time.perf_counter()
        data, *_ = hough.index_pats(patsin=patterns)
        seconds = time.perf_counter() - start
        best = data[-1]
        results["sets"][name] = {
            "quaternions": np.asarray(best["quat"], dtype=float).tolist(),
            "indexed": (np.asarray(best["phase"]) != -1).tolist(),
            "seconds": seconds,
        }
    with open(args.out, "w") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main()
