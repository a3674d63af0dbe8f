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
        res = self._run({n: np.asarray(feeds[n]) for n in names})
        order = [o.name for o in self.outputs]
        if list(res) != order and set(res) == set(order):  # the model's order (outputs match by position)
            res = {n: res[n] for n in order}
        return res

    # -- to implement ----------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError
