"""Compile, in this one process, the Numba functions that deepmat's dependencies build when
deepmat's modules are imported: orix's quaternion gufuncs, and umap's and pynndescent's
kernels behind elementembeddings.

Numba compiles them lazily and writes each into a cache beside the library. Two processes
compiling the same gufunc at once (Dask workers, parallel tests, two training runs) can leave
a kernel and its wrapper from different processes in that cache, and every later process that
loads them crashes with a segmentation fault (numba/numba#10128). `make install` runs this
once, so later processes only read the caches.
"""

from __future__ import annotations

import importlib
import pkgutil

import deepmat

LIBRARY_MODULES = ("elementembeddings.core",)


def main() -> None:
    """Import every deepmat module, then the library modules deepmat imports on demand."""
    names = [module.name for module in pkgutil.walk_packages(deepmat.__path__, "deepmat.")]
    for name in (*names, *LIBRARY_MODULES):
        importlib.import_module(name)


if __name__ == "__main__":
    main()
