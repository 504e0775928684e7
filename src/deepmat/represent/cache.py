"""A disk cache of computed features, keyed by the compositions and the representation.

Featurizing OQMD (290k compositions) takes seconds, not minutes, but every benchmark
and training run repeats it; the cache makes the repeat a file read. Entries live in
``<cache dir>/features/`` (``$DEEPMAT_CACHE_DIR``, else the user's cache directory),
never in the dataset folder, which may be a shared read-only copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from deepmat.data.composition import composition_key
from deepmat.data.registry import cache_dir, through_cache

MIN_ROWS = 5000


def cached_transform(representation, compositions: Sequence, labels: Sequence[str] | None = None):
    """``representation.transform`` through the cache (tables under MIN_ROWS skip it)."""
    if len(compositions) < MIN_ROWS:
        return representation.transform(compositions, labels)
    digest = hashlib.sha256(json.dumps(representation.to_dict(), sort_keys=True).encode())
    digest.update("\n".join(composition_key(c) for c in compositions).encode())
    return through_cache(
        cache_dir() / "features" / f"{representation.name}-{digest.hexdigest()[:32]}.npy",
        lambda: representation.transform(compositions, labels),
        lambda features, path: np.save(path, features),
        np.load,
    )
