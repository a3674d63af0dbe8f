"""Artifact folders: atomic writes and ``manifest.json``.

Every export folder holds a ``manifest.json``::

    {
      "rnnedge_version": "0.1.0",
      "created": "2026-11-23T10:00:00Z",
      "source": {"kind": "preset", "name": "forecast", ...},
      "preprocessing": {...} | null,
      "artifacts": {
        "model.onnx": {"format": "onnx", "sha256": "...", "size": 1234,
                        "inputs": [...], "outputs": [...], ...format-specific...,
                        "parity": {...}}
      }
    }

No TensorFlow here: this module is on the edge path (bundles, ``verify``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files: give the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_bytes_atomic(path, text.encode())


def _json_default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_manifest(folder: str | os.PathLike) -> dict:
    p = Path(folder) / MANIFEST
    if not p.exists():
        return {}
    with open(p) as f:
        return json.load(f)


def save_manifest(folder: str | os.PathLike, manifest: dict) -> Path:
    return write_json_atomic(Path(folder) / MANIFEST, manifest)


def new_manifest(source: dict | None = None, preprocessing: dict | None = None) -> dict:
    from rnnedge import __version__

    return {
        "rnnedge_version": __version__,
        "created": now_iso(),
        "source": source or {},
        "preprocessing": preprocessing,
        "artifacts": {},
    }


def update_manifest(folder: str | os.PathLike, *, artifacts: dict[str, dict] | None = None,
                    **top_level: Any) -> dict:
    """Merge ``artifacts`` entries (by file name) and top-level keys into the folder's manifest.

    An artifact entry gets ``sha256`` and ``size`` recomputed from the file on disk.
    """
    folder = Path(folder)
    man = load_manifest(folder) or new_manifest()
    for k, v in top_level.items():
        man[k] = v
    for name, entry in (artifacts or {}).items():
        f = folder / name
        entry = dict(entry)
        if f.is_file():
            entry["sha256"] = sha256_file(f)
            entry["size"] = f.stat().st_size
        elif f.is_dir():
            entry["files"] = {
                str(p.relative_to(folder)): sha256_file(p) for p in sorted(f.rglob("*")) if p.is_file()
            }
            entry["size"] = sum(p.stat().st_size for p in f.rglob("*") if p.is_file())
        old = man["artifacts"].get(name, {})
        old.update(entry)
        man["artifacts"][name] = old
    man["updated"] = now_iso()
    save_manifest(folder, man)
    return man


def artifact_warnings(artifacts: dict) -> list[tuple[str, str]]:
    """``(artifact, warning)`` for every warning recorded in the manifest entries ``artifacts``
    (an entry's ``warning``, e.g. a TFLite sequence length fixed at export, and its
    ``quantization.warning``, e.g. a file not smaller than its float source), each text once."""
    out: list[tuple[str, str]] = []
    for name, entry in (artifacts or {}).items():
        if not isinstance(entry, dict):
            continue
        q = entry.get("quantization") if isinstance(entry.get("quantization"), dict) else {}
        for text in (entry.get("warning"), q.get("warning")):
            if text and (name, text) not in out:
                out.append((name, text))
    return out


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out
