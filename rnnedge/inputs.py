"""Realistic sample inputs for a model: validation, calibration and benchmarks (the data loader).

Random N(0,1) floats and uniform token ids miss what breaks exports (padding and masks,
Zipf-like token frequencies, smooth series, several sequence lengths), so inputs are made
per input *kind*, for any rank and dtype:

* ``tokens`` (an integer input with a time axis, ``(batch, T[, ...])``): ids in ``[1, vocab)``
  drawn with Zipf-like frequencies, each row a random length in ``[max(1, T//4), T]`` (one row
  always full length), zeros after (``padding: post``, the default) or before (``pre``).
  The vocabulary comes from the model's Embedding (``input_dim``), the manifest's
  ``preprocessing.vocab_size``, an ONNX Gather table, else 16.
* ``series`` (a float input ``(batch, T, F)`` or of higher rank, e.g. ``(batch, T, W, C)`` for
  ConvLSTM1D): smooth signals (1-3 sinusoids with random periods and phases, a trend and AR(1)
  noise) per feature, each row standardised, i.e. what a model sees after
  ``preprocessing.scaler`` ``{"mean", "std"}``; in ``[0, 1]`` for a min/max scaler
  (``{"min", "max"}``); in raw units (``mean + std * x``) when the scaler says
  ``"in_model": true`` (the model normalises itself). When a ``Masking`` layer reads the input
  (``InputSpec.mask_value``), whole steps are set to ``mask_value``: runs at the start, in the
  middle and at the end of rows (row 0 and about a quarter of the rows unmasked; no row fully
  masked), so the mask is exercised the way padding exercises ``mask_zero``.
* ``float`` (no time axis, e.g. an initial state ``(batch, units)``): N(0, 1); ``bool``: coin flips.

Sequence lengths are per input: an input whose time axis is fixed always gets its own length
(two inputs fixed at 15 and 17 are fine); the others get the length asked. One set of lengths is
a *case*, ``{input_name: T}`` (:func:`input_cases`).

A calibration file replaces the generated values: ``.npy`` (single-input models) or
``.npz`` keyed by input name (or ``arr_0``, ``arr_1``... in input order), holding
model-ready arrays ``(N, T[, F...])``; each input keeps its own length. Shorter lengths are
crops (the first steps for post-padded tokens, the last steps for series).

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
    mask_value: float | None = None  # a Masking layer reads this input: some steps get this value
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


#: What each input kind is, in a user's words (report titles).
KIND_WORDS = {"tokens": "token ids", "series": "smooth float series", "float": "random floats"}


def describe_kinds(kinds: dict[str, str]) -> str:
    """``{input_name: kind}`` -> ``token ids (tokens) and smooth float series (x, feats)``."""
    by: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        by.setdefault(kind, []).append(name)
    parts = [f"{KIND_WORDS.get(k, k)} ({', '.join(names)})" for k, names in by.items()]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


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
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return "float"
    if np.issubdtype(dt, np.integer):
        return "tokens" if rank >= 2 else "float"
    return "series" if rank >= 3 else "float"


def specs_from_tensors(infos: Iterable[Any], preprocessing: dict | None = None,
                       vocab: dict[str, int] | int | None = None,
                       mask_values: dict[str, float] | None = None) -> list[InputSpec]:
    """Specs from tensor descriptions (dicts with name/shape/dtype, or TensorInfo objects);
    ``mask_values``: ``{input_name: mask_value}`` of the Masking layers reading an input."""
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
        mv = (mask_values or {}).get(name, pre.get("mask_value"))
        if kind == "series" and mv is not None:
            spec.mask_value = float(mv)
        specs.append(spec)
    return specs


def specs_from_model(model, preprocessing: dict | None = None) -> list[InputSpec]:
    """Specs from a Keras model (vocabularies read from the Embedding layers it feeds)."""
    infos = []
    for t in model.inputs:
        dtype = getattr(t, "dtype", "float32")
        dtype = getattr(dtype, "name", dtype) or "float32"
        infos.append({"name": _keras_input_name(t), "shape": list(t.shape), "dtype": str(dtype)})
    return specs_from_tensors(infos, preprocessing, vocab=keras_vocab_sizes(model),
                              mask_values=keras_mask_values(model))


def _keras_input_name(t) -> str:
    name = getattr(t, "name", None) or "input"
    return name.split(":")[0]


def _layers_reading_inputs(model, cls: str):
    """``(layer, input_name)`` for each layer of class ``cls`` fed by a model input (through any
    layers; nested models included)."""
    ids = {id(t): _keras_input_name(t) for t in model.inputs}
    layers = list(getattr(model, "layers", []))
    while layers:
        layer = layers.pop()
        if hasattr(layer, "layers") and layer is not model:  # nested models
            layers.extend(layer.layers)
        inner = getattr(layer, "layer", None)  # TimeDistributed(Embedding): the wrapper's inputs
        if type(layer).__name__ != cls and not (type(layer).__name__ == "TimeDistributed"
                                                and type(inner).__name__ == cls):
            continue
        found = layer if type(layer).__name__ == cls else inner
        for node in getattr(layer, "_inbound_nodes", []):
            for t in getattr(node, "input_tensors", []):
                src = _trace_to_input(t, ids)
                if src is not None:
                    yield found, src


def keras_vocab_sizes(model) -> dict[str, int]:
    """``{input_name: vocab}`` for inputs that feed an Embedding (through any layers)."""
    out: dict[str, int] = {}
    for layer, src in _layers_reading_inputs(model, "Embedding"):
        out[src] = min(out.get(src, 1 << 62), int(layer.input_dim))
    return out


def keras_mask_values(model) -> dict[str, float]:
    """``{input_name: mask_value}`` for float inputs that a ``Masking`` layer reads."""
    return {src: float(layer.mask_value) for layer, src in _layers_reading_inputs(model, "Masking")}


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
    import warnings

    from rnnedge.runtime.io import load_numpy, nonfinite_note

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: calibration file not found")
    data = load_numpy(p)  # UsageError saying what the file is when it is no numpy file
    if isinstance(data, np.ndarray):
        data = {0: data}
    out = {}
    for k, v in data.items():
        key = int(k[4:]) if isinstance(k, str) and k.startswith("arr_") and k[4:].isdigit() else k
        out[key] = v
        note = nonfinite_note(str(key), v)
        if note:
            warnings.warn(f"{p.name}: {note}", stacklevel=2)
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
        if c is not None and c.ndim >= 2 and s.time_axis is not None:
            return int(c.shape[1])
    for s in timed:
        pre = _pre_for(preprocessing, s.name)
        for k in ("max_len", "window", "seq_len"):
            if isinstance(pre.get(k), int) and pre[k] > 0:
                return int(pre[k])
    return DEFAULT_SEQ_LEN


def sequence_lengths(specs: list[InputSpec], preprocessing: dict | None = None,
                     calibration: dict | None = None) -> list[int | None]:
    """Lengths to try: the primary one and, when the time axis is free and no calibration file
    gives the data, about half of it."""
    p = primary_seq_len(specs, preprocessing, calibration)
    if p is None:
        return [None]
    timed = [s for s in specs if s.time_axis is not None]
    if all(s.seq_len for s in timed) or any(_calib_for(calibration, s, i) is not None
                                            for i, s in enumerate(specs) if s.time_axis is not None):
        return [p]
    half = max(2, (p + 1) // 2)
    return [p] if half >= p else [p, half]


def input_cases(specs: list[InputSpec], *, preprocessing: dict | None = None,
                calibration: dict | None = None, seq_lens: Iterable[int] | None = None,
                fixed: dict[str, int] | None = None) -> list[dict[str, int]]:
    """The sets of lengths to test, each ``{input_name: T}`` for every input with a time axis
    (``[{}]`` when none has one).

    An input with a fixed length (its spec, or ``fixed``: e.g. the artifact's) always gets it.
    The others get, per case: each of ``seq_lens`` when given; else the calibration file's own
    length of that input (one case); else :func:`sequence_lengths` (the primary length and about
    half of it)."""
    fixed = dict(fixed or {})
    timed = [(i, s) for i, s in enumerate(specs) if s.time_axis is not None]
    for _, s in timed:
        if s.seq_len and s.name not in fixed:
            fixed[s.name] = s.seq_len
    if not timed:
        return [{}]
    if seq_lens:
        free = [int(t) for t in seq_lens]
    elif calibration and any(_calib_for(calibration, s, i) is not None for i, s in timed):
        p = primary_seq_len(specs, preprocessing, calibration)
        case = {}
        for i, s in timed:
            c = _calib_for(calibration, s, i)
            own = int(c.shape[1]) if c is not None and c.ndim >= 2 else p
            case[s.name] = fixed.get(s.name, own)
        return [case]
    else:
        free = [t for t in sequence_lengths(specs, preprocessing) if t is not None]
    cases: list[dict[str, int]] = []
    for t in free:
        case = {s.name: fixed.get(s.name, t) for _, s in timed}
        if case not in cases:
            cases.append(case)
    return cases


def case_label(case: dict[str, int]):
    """A case as it is reported: one int when every timed input has that length, else the dict
    (None when no input has a time axis)."""
    vals = set(case.values())
    if not vals:
        return None
    return vals.pop() if len(vals) == 1 else dict(case)


# ---------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------
def _tokens(rng, n: int, t: int, vocab: int, padding: str, rest: tuple = ()) -> np.ndarray:
    vocab = max(2, int(vocab))
    ranks = np.arange(1, vocab)
    p = 1.0 / ranks
    p /= p.sum()
    ids = rng.choice(ranks, size=(n, t) + rest, p=p)
    lo = max(1, t // 4)
    lengths = rng.integers(lo, t + 1, size=n)
    lengths[0] = t
    out = np.zeros((n, t) + rest, dtype=np.int64)
    for i, L in enumerate(lengths):
        if padding == "pre":
            out[i, t - L:] = ids[i, :L]
        else:
            out[i, :L] = ids[i, :L]
    return out


def _series(rng, n: int, t: int, rest: tuple, scaler: dict | None) -> np.ndarray:
    """Smooth standardised signals ``(n, t) + rest`` (every feature its own signal)."""
    f = int(np.prod(rest)) if rest else 1
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
    x = x.reshape((n, t) + tuple(rest))
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


def mask_steps(rng, x: np.ndarray, mask_value: float) -> np.ndarray:
    """Set whole steps of ``x`` ``(n, T, ...)`` to ``mask_value`` (what ``Masking`` skips): rows
    cycle through no mask, a run at the start, one in the middle and one at the end (row 0 is
    never masked; runs of 1..T//3 steps, never a whole row). Returns a copy."""
    x = np.array(x, copy=True)
    n, t = x.shape[0], x.shape[1]
    if t < 2:
        return x
    where = rng.permutation(np.arange(n) % 4)
    where[0] = 0
    for i in range(n):
        run = int(rng.integers(1, max(1, t // 3) + 1))
        if where[i] == 1:
            start = 0
        elif where[i] == 3:
            start = t - run
        elif where[i] == 2 and t >= run + 2:
            start = int(rng.integers(1, t - run))
        else:
            continue
        x[i, start:start + run] = mask_value
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


def _check_calibration(c: np.ndarray, spec: InputSpec) -> None:
    if c.ndim != len(spec.shape):
        raise UsageError(f"calibration data for input '{spec.name}' has shape {list(c.shape)}; the model "
                         f"takes {spec.shape} (rank {len(spec.shape)}, batch first)")
    for ax, d in enumerate(spec.shape):
        if ax and ax != spec.time_axis and d and c.shape[ax] != d:
            raise UsageError(f"calibration data for input '{spec.name}' has shape {list(c.shape)}; the "
                             f"model takes {spec.shape} (axis {ax} differs)")


def sample_inputs(specs: list[InputSpec], samples: int = 32, *, seq_len: int | None = None,
                  lengths: dict[str, int] | None = None, seed: int = 0, calibration: dict | None = None,
                  preprocessing: dict | None = None) -> dict[str, np.ndarray]:
    """``{name: array}`` with ``samples`` rows for every input (fewer when a calibration file has
    fewer). Time lengths: ``lengths[name]`` (a case of :func:`input_cases`) when given, else the
    input's fixed length, else ``seq_len``, else the primary length.

    The same arguments give the same arrays (so several runtimes see the same inputs).
    """
    if lengths is None:
        if seq_len is None:
            seq_len = primary_seq_len(specs, preprocessing, calibration)
        lengths = {s.name: s.seq_len or seq_len for s in specs if s.time_axis is not None}
    rng = np.random.default_rng([seed] + [int(lengths.get(s.name) or 0) for s in specs])
    out = {}
    for i, s in enumerate(specs):
        t = lengths.get(s.name) if s.time_axis is not None else None
        if s.time_axis is not None and t is None:
            t = s.seq_len or primary_seq_len(specs, preprocessing, calibration)
        c = _calib_for(calibration, s, i)
        rest = tuple(d or 1 for d in s.shape[2:]) if t is not None else tuple(d or 1 for d in s.shape[1:])
        if c is not None:
            _check_calibration(c, s)
            c = _crop(c, t, s)
            n = min(samples, len(c))
            idx = np.sort(rng.choice(len(c), size=n, replace=False)) if n < len(c) else np.arange(n)
            arr = c[idx]
        elif np.dtype(s.dtype) == np.bool_:
            arr = rng.random((samples,) + ((t,) if t is not None else ()) + rest) < 0.5
        elif s.kind == "tokens":
            arr = _tokens(rng, samples, t, s.vocab_size or DEFAULT_VOCAB, s.padding, rest)
        elif s.kind == "series":
            arr = _series(rng, samples, t, rest, s.scaler)
            if s.mask_value is not None:
                arr = mask_steps(rng, arr, s.mask_value)
        elif np.issubdtype(np.dtype(s.dtype), np.integer):  # ids without a time axis
            arr = rng.integers(0, s.vocab_size or DEFAULT_VOCAB, size=(samples,) + rest)
        else:
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
                   preprocessing: dict | None = None,
                   lengths: dict[str, int] | None = None) -> list[dict[str, np.ndarray]]:
    """``samples`` rows (fewer if a calibration file has fewer) in batches of ``batch_size``."""
    feeds = sample_inputs(specs, samples, seq_len=seq_len, seed=seed, calibration=calibration,
                          preprocessing=preprocessing, lengths=lengths)
    return batches_of(feeds, batch_size or 1)
