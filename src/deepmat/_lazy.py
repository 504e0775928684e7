"""Lazy package exports (PEP 562): a name is imported from its module on first access.

deepmat's families depend on heavy libraries (Lightning, orix, kikuchipy, matminer, Dask);
a package ``__init__`` that imported every module would make predicting one formula import
all of them. Packages instead declare what they export and where it lives.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(
    package: str, namespace: dict, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose names in ``exports`` (name →
    module) are imported when first used and then kept in ``namespace``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
