"""Exceptions raised at deepmat's boundaries.

Every message names the record (file and line, or input position) and the problem,
so a user can fix their data without reading a traceback.
"""


class DeepmatError(Exception):
    """Base class of deepmat's own errors."""


class DataError(DeepmatError, ValueError):
    """Input data that cannot be used as given (bad formula, NaN target, empty file...)."""


class DataNotFoundError(DeepmatError, FileNotFoundError):
    """A named dataset file is neither cached nor downloadable."""


class ModelFormatError(DeepmatError, ValueError):
    """A saved-model directory that is missing files or was written by an unknown family."""


class ConfigError(DeepmatError, ValueError):
    """A setting outside its allowed values (unknown schedule, precision, ...)."""


class StorageError(DeepmatError, ConnectionError):
    """A study storage (database URL or journal file) that cannot be opened or reached."""
