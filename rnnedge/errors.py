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
    rnnedge extra (:func:`project_requirements`), as :func:`pip_command` writes them. Without
    pyproject.toml or metadata, the bare distribution name."""
    top = module_or_extra.split(".")[0]
    reqs = project_requirements(EXTRA_OF_MODULE.get(top, module_or_extra))
    return pip_command(reqs or [top.replace("_", "-")])


def pip_command(requirements) -> str:
    """``pip install 'a>=1' b``: the one way every message and bundle writes an install command
    (a requirement with a version or marker quoted for the shell)."""
    import re

    return "pip install " + " ".join(f"'{r}'" if re.search(r"[<>=!*\[; ]", r) else r for r in requirements)


def project_requirements(extra: str = "", machine: str | None = None) -> list[str]:
    """The requirement lines of rnnedge's extra ``extra`` (``""``: the base dependencies) as
    pyproject.toml ``[project.optional-dependencies]`` gives them -- the one source of versions for
    install messages and bundles' requirements.txt. Read from the pyproject.toml beside the package
    when rnnedge runs from a clone (current even when the install's metadata is older), else from
    the installed metadata. Lines whose ``platform_machine`` marker excludes ``machine`` (default:
    this machine's) are left out; other markers are dropped. ``[]`` when neither source is found."""
    import platform
    import re

    machine = machine or platform.machine()
    out = []
    for req, marker in _requirement_lines(extra):
        m = re.search(r"platform_machine\s*(==|!=)\s*[\"']([^\"']+)[\"']", marker)
        if m and (machine == m.group(2)) != (m.group(1) == "=="):
            continue
        out.append(req)
    return out


def _requirement_lines(extra: str) -> list[tuple[str, str]]:
    """(requirement, marker) pairs of ``extra`` from pyproject.toml beside the package, else from
    the installed metadata."""
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        import tomllib

        data = tomllib.loads(pyproject.read_text())
        if data.get("project", {}).get("name") == "rnnedge":
            proj = data["project"]
            lines = proj.get("dependencies", []) if not extra else proj.get("optional-dependencies", {}).get(extra, [])
            return [(r.partition(";")[0].strip(), r.partition(";")[2]) for r in lines]
    except (ImportError, OSError, ValueError, KeyError):  # Python 3.10 (no tomllib), a wheel install
        pass
    try:
        from importlib.metadata import PackageNotFoundError, requires

        lines = requires("rnnedge") or []
    except (ImportError, PackageNotFoundError):
        return []
    out = []
    for line in lines:
        req, _, marker = line.partition(";")
        is_extra = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        if (is_extra.group(1) if is_extra else "") == extra:
            out.append((req.strip(), marker))
    return out


def missing_module(err: ModuleNotFoundError) -> "MissingDependencyError | None":
    """A :class:`MissingDependencyError` for an import of an optional package that failed (None for
    any other module: a bug, not a missing install)."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRA_OF_MODULE:
        return None
    return MissingDependencyError(f"the Python package {top!r} (rnnedge[{EXTRA_OF_MODULE[top]}])",
                                  install_command(top))


def raise_if_missing(err: BaseException) -> None:
    """Re-raise ``err`` when it is a missing package -- a :class:`MissingDependencyError`, or a
    ``ModuleNotFoundError`` of an optional package (as a MissingDependencyError with its pip
    command) -- so that a catch-all handler never wraps it into another error (a missing package
    is always exit 3 with its install command). Anything else: returns, for the caller to handle."""
    if isinstance(err, MissingDependencyError):
        raise err
    if isinstance(err, ModuleNotFoundError):
        missing = missing_module(err)
        if missing is not None:
            raise missing from err


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
