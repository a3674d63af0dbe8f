"""Reading feeds from files and writing outputs (``rnnedge run``). numpy only.

Inputs:
  ``.npy``  one array -> the model's single input;
  ``.npz``  arrays by input name (one unnamed ``arr_0`` is accepted for a single-input model);
  ``.json`` ``{name: nested list}``, or a bare nested list for a single-input model.
Outputs, by the file's extension: ``.npz`` (by name), ``.npy`` (single output), ``.json``.
Problems (a missing/extra name, a bad dtype, an unknown extension) raise UsageError (exit 2).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rnnedge.errors import UsageError
from rnnedge.manifest import atomic_path, write_json_atomic

INPUT_EXTS = (".npy", ".npz", ".json")
OUTPUT_EXTS = (".npy", ".npz", ".json")


def read_inputs(path, inputs) -> dict[str, np.ndarray]:
    """Read ``path`` into ``{input_name: array}`` for a model whose inputs are ``inputs``
    (a list of TensorInfo or of names). Arrays are cast to the input's dtype when given."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such input file")
    infos = [(i, None) if isinstance(i, str) else (i.name, getattr(i, "dtype", None)) for i in inputs]
    names = [n for n, _ in infos]
    ext = p.suffix.lower()
    if ext == ".npy":
        arr = np.load(p, allow_pickle=False)
        if len(names) != 1:
            raise UsageError(
                f"{p.name}: a .npy file holds one array but the model takes {len(names)} inputs "
                f"{names}; use an .npz or .json file keyed by input name"
            )
        raw = {names[0]: arr}
    elif ext == ".npz":
        with np.load(p, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
        raw = _match_names(p.name, raw, names)
    elif ext == ".json":
        try:
            obj = json.loads(p.read_text())
        except ValueError as e:
            raise UsageError(f"{p.name}: not valid JSON ({e})") from None
        if isinstance(obj, list):
            if len(names) != 1:
                raise UsageError(f"{p.name}: a bare list fits a single-input model; this one takes {names}")
            obj = {names[0]: obj}
        if not isinstance(obj, dict):
            raise UsageError(f"{p.name}: expected an object {{input_name: nested list}}")
        raw = {}
        for k, v in obj.items():
            try:
                raw[k] = np.asarray(v)
            except ValueError as e:
                raise UsageError(f"{p.name}: input {k!r} is not a rectangular nested list ({e})") from None
            if raw[k].dtype == object:
                raise UsageError(f"{p.name}: input {k!r} is not a rectangular nested list of numbers")
        raw = _match_names(p.name, raw, names)
    else:
        raise UsageError(f"{p.name}: unknown input file type {ext!r}; use one of {', '.join(INPUT_EXTS)}")
    return {n: _cast(p.name, n, raw[n], dt) for n, dt in infos}


def _match_names(fname: str, raw: dict, names: list[str]) -> dict:
    if set(raw) == set(names):
        return raw
    if len(raw) == 1 and len(names) == 1 and next(iter(raw)) in ("arr_0", "input", "x"):
        return {names[0]: next(iter(raw.values()))}
    missing = [n for n in names if n not in raw]
    extra = [k for k in raw if k not in names]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unknown {extra}")
    raise UsageError(f"{fname}: input names do not match the model: {'; '.join(parts)} "
                     f"(the model takes {names})")


def _cast(fname: str, name: str, arr: np.ndarray, dtype) -> np.ndarray:
    if not dtype or dtype == "str":
        return arr
    want = np.dtype(dtype)
    if arr.dtype == want:
        return arr
    if np.issubdtype(want, np.integer):
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise UsageError(f"{fname}: input {name!r} takes {want.name} token ids; got non-integer values")
        elif arr.dtype.kind not in "iub":
            raise UsageError(f"{fname}: input {name!r} takes {want.name}; got {arr.dtype}")
    elif arr.dtype.kind not in "iufb":
        raise UsageError(f"{fname}: input {name!r} takes {want.name}; got {arr.dtype}")
    return arr.astype(want)


def write_outputs(path, outputs: dict[str, np.ndarray]) -> Path:
    """Write ``outputs`` by the extension of ``path`` (atomically)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".npz":
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in outputs.items()})
    elif ext == ".npy":
        if len(outputs) != 1:
            raise UsageError(f"{p.name}: the model has {len(outputs)} outputs {list(outputs)}; "
                             "a .npy file holds one: use .npz or .json")
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(next(iter(outputs.values()))))
    elif ext == ".json":
        write_json_atomic(p, outputs_to_json(outputs))
    else:
        raise UsageError(f"{p.name}: unknown output file type {ext!r}; use one of {', '.join(OUTPUT_EXTS)}")
    return p


def outputs_to_json(outputs: dict[str, np.ndarray]) -> dict:
    return {k: np.asarray(v).tolist() for k, v in outputs.items()}
