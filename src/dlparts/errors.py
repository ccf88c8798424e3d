"""Error types of dlparts.

Every error that a user can cause derives from :class:`DlpartsError`, and also from the builtin that fits
(``ValueError`` for bad values, ``FileNotFoundError`` for missing files), so callers can catch either.  The command
line prints these as one line and exits with code 2; anything else is a bug and keeps its traceback.
"""


class DlpartsError(Exception):
    """Base class of every error that dlparts raises for a user's mistake."""


class ConfigError(DlpartsError, ValueError):
    """A bad argument, option, layer spec or config value; the message names the value at fault."""


class ShapeError(DlpartsError, ValueError):
    """A tensor or layer shape that cannot work (kernel larger than its padded input, wrong rank, ...)."""


class DataError(DlpartsError, ValueError):
    """A file or dataset that exists but cannot be read as what it claims to be; the message names the file."""


class NonFiniteError(DataError):
    """Coordinates that are NaN or infinite (or beyond float32); ``count`` is how many rows of the file have one."""

    def __init__(self, message: str, count: int):
        super().__init__(message)
        self.count = count


class DataNotFoundError(DlpartsError, FileNotFoundError):
    """A file, folder or dataset root that does not exist or is laid out wrongly; the message names the path."""


class ModelNotFoundError(DlpartsError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class RegistryError(DlpartsError, ValueError):
    """A model registered twice under one name, or registered with bad metadata."""
