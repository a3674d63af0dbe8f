"""One interface over every runtime (the edge path: numpy + one runtime, never TensorFlow).

A :class:`Runner` loads one artifact and runs feeds (``{input_name: ndarray}``) to a
dict of outputs (``{output_name: ndarray}``) in the model's output order (output names are
unique; outputs are matched by position, :mod:`rnnedge.matching`)::

    with open_runner("out/model.onnx", provider="cpu") as r:
        outs = r.run({"tokens": x})

Subclasses implement ``_load``, ``_run``, and fill ``self.inputs``/``self.outputs``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class TensorInfo:
    name: str
    shape: list  # ints, or None / a name for a free axis
    dtype: str   # numpy dtype name, e.g. "float32"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Runner:
    """Base runner. ``path`` is the artifact; options are runtime-specific."""

    path: str
    runtime: str = "base"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.load_seconds: float | None = None
        self._loaded = False
        self.info: dict[str, Any] = {}  # what really ran (providers, interpreter, threads...)
        self._checked: set = set()      # feed shapes/dtypes that passed check_feeds
        self._vocab: dict[str, int] | None = None  # token-id inputs' vocabularies (vocab_sizes)

    # -- lifecycle -------------------------------------------------------
    def load(self) -> "Runner":
        if not self._loaded:
            t0 = time.perf_counter()
            self._load()
            self.load_seconds = time.perf_counter() - t0
            self._loaded = True
        return self

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inference -------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.load()
        names = [i.name for i in self.inputs]
        if isinstance(feeds, (list, tuple)):
            feeds = dict(zip(names, feeds))
        missing = [n for n in names if n not in feeds]
        if missing:
            from rnnedge.errors import UsageError

            raise UsageError(
                f"{self.path}: missing input(s) {missing}; the model takes {names}, got {sorted(feeds)}"
            )
        arrays = {n: np.asarray(feeds[n]) for n in names}
        sig = tuple((a.shape, a.dtype) for a in arrays.values())
        if sig not in self._checked:  # once per shape/dtype set (cheap inside timed loops)
            check_feeds(self.path, self.inputs, arrays)
            self._checked.add(sig)
        if self._vocab is None:
            self._vocab = self.vocab_sizes()
        if self._vocab:  # values, every call: ids outside a vocabulary crash or silently wrap
            check_token_ids(self.path, self._vocab, arrays)
        res = self._run(arrays)
        order = [o.name for o in self.outputs]
        if list(res) != order and set(res) == set(order):  # the model's order (outputs match by position)
            res = {n: res[n] for n in order}
        return res

    def vocab_sizes(self) -> dict[str, int]:
        """``{input_name: vocab}`` for the inputs that feed an Embedding (token ids in
        ``[0, vocab)``): the artifact's own graph (:meth:`_graph_vocab`: an ONNX/TFLite Gather whose
        table is a constant ``(vocab, dim)``), else ``model.vocab_sizes`` of the manifest.json next
        to the artifact. Inputs with no known vocabulary are left out (not checked)."""
        try:
            out = dict(self._graph_vocab())
        except Exception:  # noqa: BLE001 - a graph this reader does not follow: the manifest decides
            out = {}
        for k, v in manifest_vocab_sizes(self.path).items():
            out.setdefault(k, v)
        names = {i.name for i in self.inputs}
        return {k: v for k, v in out.items() if k in names}

    def _graph_vocab(self) -> dict[str, int]:
        """The vocabularies the artifact itself shows (:func:`embedding_vocab`); {} by default."""
        return {}

    # -- to implement ----------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


# -- token ids against their vocabulary ----------------------------------------
#: ops an Embedding's Gather may read the model input through (ONNX and TFLite names): casts and
#: reshapes, and the wrap of negative ids Keras 3's Embedding adds (``where(ids < 0, ids + vocab,
#: ids)``: Less, Add, Where/SelectV2; the condition's Less is not followed)
_ID_PASSTHROUGH = {"cast", "identity", "reshape", "unsqueeze", "squeeze", "flatten", "expand_dims",
                   "transpose", "add", "where", "select", "select_v2"}
#: ops between a quantized (int8/fp16) embedding table and its Gather
_TABLE_PASSTHROUGH = {"dequantize", "dequantizelinear", "cast"}


def embedding_vocab(ops, graph_inputs, table_rows: dict) -> dict[str, int]:
    """``{input_name: vocab}`` for graph inputs read as the indices of a Gather whose data is a
    constant 2-D table (an Embedding: ``vocab`` = its rows), directly or through the ops of
    ``_ID_PASSTHROUGH`` (Cast, Reshape, ExpandDims, Keras's negative-id wrap...; the table may be
    a quantized constant behind a Dequantize). ``ops``:
    ``(op_type, [input tensors], [output tensors])`` in any order; ``graph_inputs``:
    ``{tensor: input_name}``; ``table_rows``: ``{constant tensor: rows}`` for the 2-D constants.
    An input feeding several tables gets the smallest."""
    producer = {}
    for op, ins, outs in ops:
        for o in outs:
            producer[o] = (op.lower(), ins)
    out: dict[str, int] = {}
    for op, ins, _ in ops:
        if op.lower() != "gather" or len(ins) < 2:
            continue
        table = ins[0]
        for _ in range(4):  # a quantized table: Dequantize(constant)
            if table in table_rows or table not in producer or producer[table][0] not in _TABLE_PASSTHROUGH:
                break
            table = producer[table][1][0]
        if table not in table_rows:
            continue
        todo, seen = [ins[1]], set()
        while todo and len(seen) < 32:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in graph_inputs:
                name = graph_inputs[t]
                out[name] = min(out.get(name, 1 << 62), int(table_rows[table]))
            elif t in producer and producer[t][0] in _ID_PASSTHROUGH:
                todo.extend(producer[t][1])
    return out


def _manifest_model(path) -> dict:
    """The ``model`` entry (the source Keras model) of the manifest.json next to the artifact
    ``path``; {} when there is none or it cannot be read."""
    from pathlib import Path

    from rnnedge.manifest import load_manifest

    p = Path(str(path))
    try:
        model = (load_manifest(p if p.is_dir() else p.parent) or {}).get("model")
    except Exception:  # noqa: BLE001 - an unreadable manifest: nothing known
        return {}
    return model if isinstance(model, dict) else {}


def manifest_vocab_sizes(path) -> dict[str, int]:
    """``model.vocab_sizes`` (and ``vocab_size`` of ``model.inputs`` entries) of the manifest.json
    next to the artifact ``path``; {} when there is none."""
    model = _manifest_model(path)
    out = {k: int(v) for k, v in (model.get("vocab_sizes") or {}).items() if isinstance(v, int) and v > 0}
    for e in model.get("inputs") or []:
        if isinstance(e, dict) and isinstance(e.get("vocab_size"), int) and e["vocab_size"] > 0:
            out.setdefault(e.get("name"), e["vocab_size"])
    return out


def check_token_ids(path, vocab: dict[str, int], feeds: dict[str, np.ndarray]) -> None:
    """Refuse (:class:`~rnnedge.errors.UsageError`, exit 2) token ids outside ``[0, vocab)`` or
    not whole numbers, before they reach the runtime (a Gather fails on an id >= vocab, a float id
    is silently truncated; a negative id is wrapped by Keras 3's Embedding, ``ids + vocab``, or by
    onnxruntime's Gather, a padding or tokenizer bug read as a real token). One line
    naming the input, the offending value, where it is and the allowed range. The same rule as
    the bundle's predict.py (its ``check_ids``; the messages are tested to agree)."""
    from pathlib import Path

    from rnnedge.errors import UsageError

    for name, v in vocab.items():
        x = feeds.get(name)
        if x is None or x.size == 0 or x.dtype.kind not in "biuf":
            continue
        where = f"{Path(str(path)).name}: input {name!r} takes token ids in [0, {v}) (its Embedding's vocabulary)"
        bad = ~np.isfinite(x) | (x != np.round(x)) if x.dtype.kind == "f" else None
        if bad is not None and bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UsageError(f"{where}, got {float(x[pos]):g} at {list(pos)}: not a whole number")
        bad = (x < 0) | (x >= v)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UsageError(f"{where}, got {int(x[pos])} at {list(pos)}"
                             + (f" ({int(bad.sum())} ids out of range)" if bad.sum() > 1 else ""))


# -- feeds against the model's inputs -------------------------------------------
def _fixed(d) -> bool:
    return isinstance(d, (int, np.integer)) and not isinstance(d, bool) and int(d) > 0


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(int(d)) if _fixed(d) else "None" for d in shape) + "]"


def _time_axis(info: TensorInfo) -> int | None:
    """Axis 1 when the input has a time axis (token ids ``(batch, T)``, series ``(batch, T, F)``),
    by the same rule as the generated inputs (:mod:`rnnedge.inputs`)."""
    from rnnedge.inputs import specs_from_tensors

    try:
        return specs_from_tensors([info])[0].time_axis
    except (TypeError, ValueError):  # a dtype numpy does not know
        return None


def _source_length(path, name: str, n_inputs: int) -> int | None:
    """The time length (axis 1) the source (Keras) model itself fixes for input ``name``, from
    ``model.inputs`` of the manifest.json next to the artifact; None when free or unknown."""
    entries = _manifest_model(path).get("inputs") or []
    named = [e for e in entries if isinstance(e, dict) and e.get("name") == name]
    e = named[0] if named else (entries[0] if len(entries) == 1 == n_inputs else None)
    shape = (e or {}).get("shape") or []
    return shape[1] if len(shape) > 1 and _fixed(shape[1]) else None


def check_feeds(path, inputs: list[TensorInfo], feeds: dict[str, np.ndarray]) -> None:
    """Check ``feeds`` against the model's ``inputs`` before running: rank, every fixed axis, a
    numeric dtype. A mismatch raises :class:`~rnnedge.errors.UsageError` (exit 2) in one line naming
    the input, the axis, what the model takes and what was given, and the fix: for the batch axis
    ``export --batch-size N`` (or N rows at a time), for a fixed time axis ``--seq-len`` (only
    when the source model's own length is free: one fixed in Keras takes exactly that many steps);
    a feature axis simply takes its size."""
    from pathlib import Path

    from rnnedge.errors import UsageError

    where = Path(str(path)).name
    for info in inputs:
        if info.name not in feeds or info.shape is None:
            continue
        x = feeds[info.name]
        want, got = list(info.shape), list(x.shape)
        head = f"{where}: input {info.name!r} takes {_shape_text(want)}"
        if x.dtype.kind not in "biuf" and info.dtype not in ("str", "string", "object"):
            raise UsageError(f"{head} {info.dtype} numbers, got {x.dtype} data")
        if len(got) != len(want):
            if len(got) == len(want) - 1 and all(not _fixed(w) or w == g for w, g in zip(want[1:], got)):
                raise UsageError(f"{head}, got {got}: one row without its batch axis; add it "
                                 f"(shape {[1] + got})")
            raise UsageError(f"{head} (rank {len(want)}), got shape {got} (rank {len(got)})")
        for axis, (w, g) in enumerate(zip(want, got)):
            if not _fixed(w) or int(w) == g:
                continue
            w = int(w)
            if axis == 0:
                rows = lambda n: f"{n} row{'s' if n != 1 else ''}"  # noqa: E731
                raise UsageError(f"{head}: its batch size is fixed at {w}, got {rows(g)}: feed {rows(w)} at a "
                                 f"time, or re-export with `rnnedge export ... --batch-size {g}`")
            if axis == _time_axis(info):
                src = _source_length(path, info.name, len(inputs))
                fix = (f"feed {w} steps (the source model's input is built for exactly {w})" if src == w else
                       f"feed {w} steps, or re-export with `--seq-len {g}` (without --seq-len: a free length)")
                raise UsageError(f"{head}: sequences of exactly {w} steps (axis 1 is fixed), got {g}: {fix}")
            raise UsageError(f"{head}: the model takes {w} feature{'s' if w != 1 else ''} on axis {axis}, got {g} "
                             f"(shape {got})")
