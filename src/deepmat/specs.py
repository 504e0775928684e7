"""Settings records that round-trip through JSON (model cards, file attributes).

A spec is a frozen dataclass that subclasses :class:`JsonSpec` and names itself in
``what``: ``to_dict`` writes its fields with tuples as lists, and ``from_dict`` reads them
back, refusing anything but a mapping, any key the spec does not have and any of its
``required`` keys that is missing, by name, with its ``spec_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, ClassVar, Self

from deepmat.errors import ConfigError


class JsonSpec:
    """Base of frozen dataclass specs: :meth:`to_dict` and :meth:`from_dict`."""

    what: ClassVar[str] = "spec"
    required: ClassVar[tuple[str, ...]] = ()
    spec_error: ClassVar[type[Exception]] = ConfigError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_dict` reads back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The spec written by :meth:`to_dict`; a bad mapping is a ``spec_error``."""
        if not isinstance(data, Mapping):
            raise cls.spec_error(f"a {cls.what} must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise cls.spec_error(
                f"unknown {cls.what} keys {unknown}; known: {', '.join(sorted(known))}"
            )
        missing = [key for key in cls.required if key not in data]
        if missing:
            raise cls.spec_error(f"{cls.what} lacks {', '.join(missing)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
