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
        res = self._run(arrays)
        order = [o.name for o in self.outputs]
        if list(res) != order and set(res) == set(order):  # the model's order (outputs match by position)
            res = {n: res[n] for n in order}
        return res

    # -- to implement ----------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


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


def check_feeds(path, inputs: list[TensorInfo], feeds: dict[str, np.ndarray]) -> None:
    """Check ``feeds`` against the model's ``inputs`` before running: rank, every fixed axis, a
    numeric dtype. A mismatch raises :class:`~rnnedge.errors.UsageError` (exit 2) in one line naming
    the input, the axis, what the model takes and what was given, and the fix: for the batch axis
    ``export --batch-size N`` (or N rows at a time), for a fixed time axis ``--seq-len``; a feature
    axis simply takes its size."""
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
                raise UsageError(f"{head}: sequences of exactly {w} steps (axis 1 is fixed), got {g}: feed "
                                 f"{w} steps, or re-export with `--seq-len {g}` (without --seq-len: a free length)")
            raise UsageError(f"{head}: the model takes {w} feature{'s' if w != 1 else ''} on axis {axis}, got {g} "
                             f"(shape {got})")
