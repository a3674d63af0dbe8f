"""Exceptions of rnnedge.

The library never prints or exits: it raises one of these, and the CLI turns
it into a one-line message and an exit code (``exit_code``).
"""
from __future__ import annotations


class RnnedgeError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is used by the CLI."""

    exit_code = 1


class SpecError(RnnedgeError):
    """An invalid model spec. ``path`` names the field (e.g. ``layers[2].units``)."""

    exit_code = 2

    def __init__(self, path: str, reason: str, *, source: str | None = None):
        self.path = path
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {reason}" if path else f"{where}{reason}")


class UsageError(RnnedgeError):
    """Bad input to a command: a missing file, an unknown preset, a bad option value."""

    exit_code = 2


class MissingDependencyError(RnnedgeError):
    """A package (runtime, converter, execution provider) is not installed."""

    exit_code = 3

    def __init__(self, what: str, install: str):
        self.what = what
        self.install = install
        super().__init__(f"{what} is not available: install it with `{install}`")


class ConversionError(RnnedgeError):
    """A model (or one of its layers) cannot be converted to the requested format."""

    exit_code = 4

    def __init__(self, message: str, *, layer: str | None = None, fmt: str | None = None):
        self.layer = layer
        self.fmt = fmt
        super().__init__(message)


class ParityError(RnnedgeError):
    """An artifact does not reproduce the reference within tolerance."""

    exit_code = 1
