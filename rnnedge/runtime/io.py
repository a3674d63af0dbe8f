"""Reading feeds from files and writing outputs (``rnnedge run``). numpy only.

Inputs:
  ``.npy``  one array -> the model's single input;
  ``.npz``  arrays by input name (one unnamed ``arr_0``, ``numpy.savez(f, x)``, is accepted for a
            single-input model; any other name must be the input's);
  ``.json`` ``{name: nested list}``, or a bare nested list for a single-input model.
Outputs, by the file's extension: ``.npz`` (by name), ``.npy`` (single output), ``.json``;
:func:`check_output_path` refuses another extension, or ``.npy`` for several outputs, before
anything runs.
A numpy file is read by what it holds (:func:`load_numpy`), and a file that is no numpy file is
said to be what it is (text, a pickle, empty, truncated). Problems (a missing/extra name, a bad
dtype, an unknown extension) raise UsageError (exit 2); a NaN or infinity in an input is a warning
(:func:`nonfinite_note`: runtimes differ on them).

The bundle's standalone ``predict.py`` cannot import rnnedge and keeps its own copy of
:func:`load_numpy`'s messages (a test checks both say the same).
"""
from __future__ import annotations

import json
import warnings
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
    if ext in (".npy", ".npz"):
        data = load_numpy(p)
        if isinstance(data, np.ndarray):  # what the file holds decides, not its name
            if len(names) != 1:
                raise UsageError(
                    f"{p.name}: a .npy file holds one array but the model takes {len(names)} inputs "
                    f"{names}; use an .npz or .json file keyed by input name"
                )
            raw = {names[0]: data}
        else:
            raw = _match_names(p.name, data, names)
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
    feeds = {n: _cast(p.name, n, raw[n], dt) for n, dt in infos}
    for n, a in feeds.items():
        note = nonfinite_note(n, a)
        if note:
            warnings.warn(f"{p.name}: {note}", stacklevel=2)
    return feeds


def load_numpy(path) -> "np.ndarray | dict[str, np.ndarray]":
    """An array (a ``.npy`` file) or ``{name: array}`` (a ``.npz`` archive), by what the file
    holds, never unpickling. UsageError (exit 2) saying what the file is when it is not numpy data:
    empty, text, a Python pickle, a pickled object array, truncated or damaged."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise UsageError(f"{p}: {e.strerror or e}") from None
    what = numpy_file_problem(head)
    if what:
        raise UsageError(f"{p.name}: {what}")
    try:
        if head.startswith(b"PK"):
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return np.load(p, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise UsageError(f"{p.name}: {OBJECT_ARRAYS}") from None
        raise UsageError(f"{p.name}: a truncated or damaged numpy file ({e})") from None
    except Exception as e:  # noqa: BLE001 - EOFError, zipfile.BadZipFile, OSError...
        raise UsageError(f"{p.name}: a truncated or damaged numpy file ({type(e).__name__}: {e})") from None


#: A .npy/.npz holding Python objects (np.save of a list of lists of different lengths, of dicts).
OBJECT_ARRAYS = ("holds Python objects (a pickled object array), not numbers: save a numeric array "
                 "(numpy.save(path, numpy.asarray(x, dtype=numpy.float32)))")


def numpy_file_problem(head: bytes) -> str | None:
    """What a file that starts with ``head`` is, when it is not a numpy .npy/.npz file (None when
    it starts like one)."""
    if head.startswith((b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")):
        return None
    if not head:
        return "an empty file, not a numpy .npy/.npz file"
    if head[:1] == b"\x80":
        return "a Python pickle, not a numpy .npy/.npz file (save arrays with numpy.save / numpy.savez)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of the 64 bytes read is still text
        text = head[:e.start].decode("utf-8") if e.start >= len(head) - 3 else None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text.rstrip("\x00")):
        start = text.strip().splitlines()[0][:40] if text.strip() else ""
        return (f"a text file (it starts {start!r}), not a numpy .npy/.npz file; save arrays with "
                "numpy.save / numpy.savez")
    return (f"not a numpy .npy/.npz file (it starts with bytes {head[:8].hex(' ')}); save arrays with "
            "numpy.save / numpy.savez")


def nonfinite_note(name: str, arr) -> str | None:
    """``input 'x' holds 3 NaN/infinite value(s) of 40: ...`` (None when every value is finite)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fc" or a.size == 0:
        return None
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if not bad:
        return None
    return (f"input {name!r} holds {bad} NaN/infinite value(s) of {a.size}: runtimes give different "
            "predictions for them (a model has no defined result)")


def check_output_path(path, n_outputs: int | None = None, names=None) -> Path:
    """Refuse (UsageError, exit 2) an output file the outputs cannot be written to, before anything
    runs: an extension other than .npy/.npz/.json, or .npy for a model of several outputs."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in OUTPUT_EXTS:
        raise UsageError(f"--output {p.name}: unknown output file type {ext or '(none)'!r}; use .npy (one output), "
                         ".npz or .json")
    if ext == ".npy" and n_outputs is not None and n_outputs != 1:
        raise UsageError(f"--output {p.name}: the model has {n_outputs} outputs"
                         f"{' ' + str(list(names)) if names else ''}; a .npy file holds one: use .npz or .json")
    return p


def _match_names(fname: str, raw: dict, names: list[str]) -> dict:
    if set(raw) == set(names):
        return raw
    if len(raw) == 1 and len(names) == 1 and next(iter(raw)) == "arr_0":  # numpy.savez(f, x): unnamed
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
            bad = ~np.isfinite(arr) | (arr != np.round(arr))
            if bad.any():
                pos = [int(i) for i in np.argwhere(bad)[0]]
                raise UsageError(f"{fname}: input {name!r} takes {want.name} token ids, got {float(arr[tuple(pos)]):g} "
                                 f"at {pos}: not a whole number")
        elif arr.dtype.kind not in "iub":
            raise UsageError(f"{fname}: input {name!r} takes {want.name}; got {arr.dtype}")
    elif arr.dtype.kind not in "iufb":
        raise UsageError(f"{fname}: input {name!r} takes {want.name}; got {arr.dtype}")
    return arr.astype(want)


def write_outputs(path, outputs: dict[str, np.ndarray]) -> Path:
    """Write ``outputs`` by the extension of ``path`` (atomically; :func:`check_output_path`)."""
    p = check_output_path(path, len(outputs), list(outputs))
    ext = p.suffix.lower()
    if ext == ".npz":
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in outputs.items()})
    elif ext == ".npy":
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(next(iter(outputs.values()))))
    else:
        write_json_atomic(p, outputs_to_json(outputs))
    return p


def outputs_to_json(outputs: dict[str, np.ndarray]) -> dict:
    return {k: np.asarray(v).tolist() for k, v in outputs.items()}
