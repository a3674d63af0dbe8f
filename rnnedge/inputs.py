"""Realistic sample inputs for a model: validation, calibration and benchmarks.

Random N(0,1) floats and uniform token ids miss what breaks exports (padding and masks,
Zipf-like token frequencies, smooth series, several sequence lengths), so inputs are made
per input *kind*:

* ``tokens`` (an integer input with a time axis): ids in ``[1, vocab)`` drawn with
  Zipf-like frequencies, each row a random length in ``[max(1, T//4), T]`` (one row always
  full length), zeros after (``padding: post``, the default) or before (``pre``).
  The vocabulary comes from the model's Embedding (``input_dim``), the manifest's
  ``preprocessing.vocab_size``, an ONNX Gather table, else 16.
* ``series`` (a float input ``(batch, T, F)``): smooth signals (1-3 sinusoids with random
  periods and phases, a trend and AR(1) noise), each row standardised, i.e. what a model
  sees after ``preprocessing.scaler`` ``{"mean", "std"}``; in ``[0, 1]`` for a min/max
  scaler (``{"min", "max"}``); in raw units (``mean + std * x``) when the scaler says
  ``"in_model": true`` (the model normalises itself).
* ``float`` (no time axis): N(0, 1).

A calibration file replaces the generated values: ``.npy`` (single-input models) or
``.npz`` keyed by input name (or ``arr_0``, ``arr_1``... in input order), holding
model-ready arrays ``(N, T[, F])``. Shorter lengths are crops (the first steps for
post-padded tokens, the last steps for series).

No TensorFlow here unless :func:`specs_from_model` is given a Keras model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rnnedge.errors import UsageError

DEFAULT_VOCAB = 16
DEFAULT_SEQ_LEN = 8


@dataclass
class InputSpec:
    """What one model input takes. ``shape`` includes the batch axis (None = free)."""

    name: str
    shape: list
    dtype: str = "float32"
    kind: str = "float"            # tokens | series | float
    vocab_size: int | None = None
    padding: str = "post"
    scaler: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def time_axis(self) -> int | None:
        if self.kind == "tokens" and len(self.shape) >= 2:
            return 1
        if self.kind == "series" and len(self.shape) >= 3:
            return 1
        return None

    @property
    def seq_len(self) -> int | None:
        """The static time length, or None when the time axis is free (or absent)."""
        t = self.time_axis
        if t is None:
            return None
        d = self.shape[t]
        return d if isinstance(d, int) and d > 0 else None

    @property
    def batch_size(self) -> int | None:
        d = self.shape[0] if self.shape else None
        return d if isinstance(d, int) and d > 0 else None


# ---------------------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------------------
def _pre_for(preprocessing: dict | None, name: str) -> dict:
    pre = dict(preprocessing or {})
    per = pre.pop("inputs", None)
    if isinstance(per, dict) and isinstance(per.get(name), dict):
        pre.update(per[name])
    return pre


def _dim(d):
    if isinstance(d, (int, np.integer)) and int(d) > 0:
        return int(d)
    return None


def _kind(dtype: str, rank: int) -> str:
    if np.issubdtype(np.dtype(dtype), np.integer):
        return "tokens" if rank >= 2 else "float"
    return "series" if rank >= 3 else "float"


def specs_from_tensors(infos: Iterable[Any], preprocessing: dict | None = None,
                       vocab: dict[str, int] | int | None = None) -> list[InputSpec]:
    """Specs from tensor descriptions (dicts with name/shape/dtype, or TensorInfo objects)."""
    specs = []
    for info in infos:
        if not isinstance(info, dict):
            info = {"name": info.name, "shape": list(info.shape), "dtype": info.dtype}
        name = info["name"]
        shape = [_dim(d) for d in (info.get("shape") or [])]
        dtype = np.dtype(info.get("dtype") or "float32").name
        pre = _pre_for(preprocessing, name)
        kind = _kind(dtype, len(shape))
        v = vocab.get(name) if isinstance(vocab, dict) else vocab
        spec = InputSpec(name=name, shape=shape, dtype=dtype, kind=kind,
                         padding=str(pre.get("padding", "post")), scaler=pre.get("scaler"))
        if kind == "tokens":
            spec.vocab_size = int(v or pre.get("vocab_size") or DEFAULT_VOCAB)
        specs.append(spec)
    return specs


def specs_from_model(model, preprocessing: dict | None = None) -> list[InputSpec]:
    """Specs from a Keras model (vocabularies read from the Embedding layers it feeds)."""
    infos = []
    for t in model.inputs:
        dtype = getattr(t, "dtype", "float32")
        dtype = getattr(dtype, "name", dtype) or "float32"
        infos.append({"name": _keras_input_name(t), "shape": list(t.shape), "dtype": str(dtype)})
    return specs_from_tensors(infos, preprocessing, vocab=keras_vocab_sizes(model))


def _keras_input_name(t) -> str:
    name = getattr(t, "name", None) or "input"
    return name.split(":")[0]


def keras_vocab_sizes(model) -> dict[str, int]:
    """``{input_name: vocab}`` for inputs that feed an Embedding (through any layers)."""
    ids = {id(t): _keras_input_name(t) for t in model.inputs}
    out: dict[str, int] = {}
    layers = list(getattr(model, "layers", []))
    while layers:
        layer = layers.pop()
        if hasattr(layer, "layers") and layer is not model:  # nested models
            layers.extend(layer.layers)
        if type(layer).__name__ != "Embedding":
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            for t in getattr(node, "input_tensors", []):
                src = _trace_to_input(t, ids)
                if src is not None:
                    out[src] = min(out.get(src, 1 << 62), int(layer.input_dim))
    return out


def _trace_to_input(t, ids: dict, depth: int = 0):
    if id(t) in ids:
        return ids[id(t)]
    if depth > 20:
        return None
    hist = getattr(t, "_keras_history", None)
    if hist is None:
        return None
    op = hist[0]
    nodes = getattr(op, "_inbound_nodes", [])
    idx = hist[1] if len(hist) > 1 else 0
    if idx >= len(nodes):
        return None
    for it in getattr(nodes[idx], "input_tensors", []):
        r = _trace_to_input(it, ids, depth + 1)
        if r is not None:
            return r
    return None


def onnx_vocab_hint(model) -> int | None:
    """The smallest 2-D Gather table ``(V, D)`` in an ONNX graph (an embedding): V, or None."""
    inits = {t.name: t for t in model.graph.initializer}
    best = None
    for n in model.graph.node:
        if n.op_type == "Gather" and n.input and n.input[0] in inits:
            dims = list(inits[n.input[0]].dims)
            if len(dims) == 2 and dims[0] > 1:
                best = dims[0] if best is None else min(best, dims[0])
    return best


# ---------------------------------------------------------------------------------------
# calibration files
# ---------------------------------------------------------------------------------------
def load_calibration(path: str | os.PathLike) -> dict:
    """``{input_name | index: array}`` from a .npy/.npz file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: calibration file not found")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as e:
        raise UsageError(f"{p}: not a readable .npy/.npz file ({e})") from None
    if isinstance(data, np.ndarray):
        return {0: data}
    out = {}
    for i, k in enumerate(data.files):
        key = int(k[4:]) if k.startswith("arr_") and k[4:].isdigit() else k
        out[key] = data[k]
    return out


def _calib_for(calibration: dict | None, spec: InputSpec, index: int):
    if not calibration:
        return None
    if spec.name in calibration:
        return np.asarray(calibration[spec.name])
    if index in calibration:
        return np.asarray(calibration[index])
    return None


# ---------------------------------------------------------------------------------------
# lengths
# ---------------------------------------------------------------------------------------
def primary_seq_len(specs: list[InputSpec], preprocessing: dict | None = None,
                    calibration: dict | None = None) -> int | None:
    """The main time length: a static one, the calibration's, the preprocessing's, else 8."""
    timed = [s for s in specs if s.time_axis is not None]
    if not timed:
        return None
    for s in timed:
        if s.seq_len:
            return s.seq_len
    for i, s in enumerate(specs):
        c = _calib_for(calibration, s, i)
        if c is not None and c.ndim >= 2:
            return int(c.shape[1])
    for s in timed:
        pre = _pre_for(preprocessing, s.name)
        for k in ("max_len", "window", "seq_len"):
            if isinstance(pre.get(k), int) and pre[k] > 0:
                return int(pre[k])
    return DEFAULT_SEQ_LEN


def sequence_lengths(specs: list[InputSpec], preprocessing: dict | None = None,
                     calibration: dict | None = None) -> list[int | None]:
    """Lengths to try: the primary one and, when the time axis is free, about half of it."""
    p = primary_seq_len(specs, preprocessing, calibration)
    if p is None:
        return [None]
    timed = [s for s in specs if s.time_axis is not None]
    if any(s.seq_len for s in timed):
        return [p]
    half = max(2, (p + 1) // 2)
    return [p] if half >= p else [p, half]


# ---------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------
def _tokens(rng, n: int, t: int, vocab: int, padding: str) -> np.ndarray:
    vocab = max(2, int(vocab))
    ranks = np.arange(1, vocab)
    p = 1.0 / ranks
    p /= p.sum()
    ids = rng.choice(ranks, size=(n, t), p=p)
    lo = max(1, t // 4)
    lengths = rng.integers(lo, t + 1, size=n)
    lengths[0] = t
    out = np.zeros((n, t), dtype=np.int64)
    for i, L in enumerate(lengths):
        if padding == "pre":
            out[i, t - L:] = ids[i, :L]
        else:
            out[i, :L] = ids[i, :L]
    return out


def _series(rng, n: int, t: int, f: int, scaler: dict | None) -> np.ndarray:
    steps = np.arange(t, dtype=np.float64)[None, :, None]
    x = np.zeros((n, t, f))
    k = rng.integers(1, 4, size=(n, 1, f))
    for j in range(3):
        period = rng.uniform(4.0, max(8.0, 4.0 * t), size=(n, 1, f))
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, f))
        amp = rng.uniform(0.3, 1.0, size=(n, 1, f)) * (j < k)
        x += amp * np.sin(2 * np.pi * steps / period + phase)
    x += rng.normal(0, 0.5, size=(n, 1, f)) * steps / max(1, t)  # trend
    noise = np.zeros((n, t, f))
    e = rng.normal(0, 0.1, size=(n, t, f))
    for i in range(t):
        noise[:, i] = (0.7 * noise[:, i - 1] if i else 0) + e[:, i]
    x += noise
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True) + 1e-6
    x = (x - mu) / sd * rng.uniform(0.5, 1.5, size=(n, 1, f)) + rng.normal(0, 0.3, size=(n, 1, f))
    scaler = scaler or {}
    if "min" in scaler and "max" in scaler and not scaler.get("in_model"):
        lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        x = (x - lo) / np.maximum(hi - lo, 1e-6)
    elif scaler.get("in_model"):
        if "mean" in scaler and "std" in scaler:
            x = np.asarray(scaler["mean"]) + np.asarray(scaler["std"]) * x
        elif "min" in scaler and "max" in scaler:
            lo, hi = np.asarray(scaler["min"]), np.asarray(scaler["max"])
            x = lo + (hi - lo) * (x - x.min(axis=1, keepdims=True)) / np.maximum(
                np.ptp(x, axis=1, keepdims=True), 1e-6)
    return x


def _crop(arr: np.ndarray, t: int | None, spec: InputSpec) -> np.ndarray:
    if t is None or arr.ndim < 2 or arr.shape[1] == t:
        return arr
    if arr.shape[1] < t:
        raise UsageError(f"calibration data for input '{spec.name}' has {arr.shape[1]} steps; "
                         f"{t} needed")
    if spec.kind == "tokens" and spec.padding != "pre":
        return arr[:, :t]
    return arr[:, -t:]


def sample_inputs(specs: list[InputSpec], samples: int = 32, *, seq_len: int | None = None,
                  seed: int = 0, calibration: dict | None = None,
                  preprocessing: dict | None = None) -> dict[str, np.ndarray]:
    """``{name: array}`` with ``samples`` rows for every input, all with time length ``seq_len``.

    The same arguments give the same arrays (so several runtimes see the same inputs).
    """
    if seq_len is None:
        seq_len = primary_seq_len(specs, preprocessing, calibration)
    rng = np.random.default_rng([seed, seq_len or 0])
    out = {}
    for i, s in enumerate(specs):
        t = seq_len if s.time_axis is not None else None
        if t is not None and s.seq_len and s.seq_len != t:
            t = s.seq_len
        c = _calib_for(calibration, s, i)
        if c is not None:
            c = _crop(c, t, s)
            n = min(samples, len(c))
            idx = np.sort(rng.choice(len(c), size=n, replace=False)) if n < len(c) else np.arange(n)
            arr = c[idx]
        elif s.kind == "tokens":
            arr = _tokens(rng, samples, t, s.vocab_size or DEFAULT_VOCAB, s.padding)
        elif s.kind == "series":
            f = s.shape[2] if len(s.shape) > 2 and s.shape[2] else 1
            arr = _series(rng, samples, t, f, s.scaler)
            if len(s.shape) > 3:
                arr = arr.reshape((samples, t) + tuple(d or 1 for d in s.shape[2:]))
        else:
            rest = tuple(d or 1 for d in s.shape[1:])
            arr = rng.standard_normal((samples,) + rest)
        out[s.name] = arr.astype(s.dtype)
    n = min(len(a) for a in out.values()) if out else 0
    return {k: v[:n] for k, v in out.items()}


def batches_of(feeds: dict[str, np.ndarray], batch_size: int | None) -> list[dict[str, np.ndarray]]:
    """Split ``feeds`` in batches of ``batch_size`` rows (the last one padded by repeating
    its final row; callers keep only the first ``n`` result rows)."""
    n = len(next(iter(feeds.values()))) if feeds else 0
    if not batch_size or batch_size >= n and batch_size == n:
        return [feeds]
    out = []
    for start in range(0, n, batch_size):
        chunk = {}
        for k, v in feeds.items():
            part = v[start:start + batch_size]
            if len(part) < batch_size:
                pad = np.repeat(part[-1:], batch_size - len(part), axis=0)
                part = np.concatenate([part, pad], axis=0)
            chunk[k] = part
        out.append(chunk)
    return out


def sample_batches(specs: list[InputSpec], samples: int, batch_size: int | None = 1, *, seed: int = 0,
                   seq_len: int | None = None, calibration: dict | None = None,
                   preprocessing: dict | None = None) -> list[dict[str, np.ndarray]]:
    """``samples`` rows (fewer if a calibration file has fewer) in batches of ``batch_size``."""
    feeds = sample_inputs(specs, samples, seq_len=seq_len, seed=seed, calibration=calibration,
                          preprocessing=preprocessing)
    return batches_of(feeds, batch_size or 1)
