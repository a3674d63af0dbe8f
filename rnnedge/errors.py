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
    """A package (runtime, converter, execution provider) is not installed. ``install`` is the one
    command that installs it (for a Python package: :func:`install_command`)."""

    exit_code = 3

    def __init__(self, what: str, install: str, message: str | None = None):
        self.what = what
        self.install = install
        super().__init__(message or f"{what} is not available: install it with `{install}`")


# import name -> the rnnedge extra (pyproject.toml [project.optional-dependencies]) that provides it
EXTRA_OF_MODULE = {
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "litert",
    "tflite_runtime": "tflite-runtime",
    "tensorflow": "build", "keras": "build", "tf2onnx": "build", "onnx": "build", "onnxconverter_common": "build",
    "matplotlib": "plot",
    "statsmodels": "examples",
    "psutil": "test",
}


def install_command(module_or_extra: str) -> str:
    """``pip install ...`` for what provides ``module_or_extra`` (an import name such as
    ``onnxruntime``/``ai_edge_litert``, or an extra such as ``build``): the requirements of its
    rnnedge extra, with the versions rnnedge's metadata (pyproject.toml) asks for -- right for a
    clone installed with ``pip install -e .`` and for a wheel alike. Without metadata (rnnedge run
    from a source folder) the bare distribution names."""
    import platform
    import re

    top = module_or_extra.split(".")[0]
    extra = EXTRA_OF_MODULE.get(top, module_or_extra)
    reqs: list[str] = []
    try:
        from importlib.metadata import PackageNotFoundError, requires

        lines = requires("rnnedge") or []
    except (ImportError, PackageNotFoundError):
        lines = []
    machine = platform.machine()
    for line in lines:
        req, _, marker = line.partition(";")
        if f'extra == "{extra}"' not in marker:
            continue
        m = re.search(r'platform_machine\s*(==|!=)\s*"([^"]+)"', marker)
        if m and (machine == m.group(2)) != (m.group(1) == "=="):
            continue
        reqs.append(req.strip())
    if not reqs:
        reqs = [top.replace("_", "-")]
    return "pip install " + " ".join(f"'{r}'" if re.search(r"[<>=!*\[; ]", r) else r for r in reqs)


def missing_module(err: ModuleNotFoundError) -> "MissingDependencyError | None":
    """A :class:`MissingDependencyError` for an import of an optional package that failed (None for
    any other module: a bug, not a missing install)."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRA_OF_MODULE:
        return None
    return MissingDependencyError(f"the Python package {top!r} (rnnedge[{EXTRA_OF_MODULE[top]}])",
                                  install_command(top))


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
