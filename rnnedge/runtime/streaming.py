"""Run a step model one timestep at a time, holding the recurrent state (edge path: no TensorFlow).

A step model (``converters.streaming``: ``model.step.onnx`` / ``model.step.tflite``) takes
one timestep plus the state of every recurrent layer and returns the step output plus the
new states. :class:`StreamingSession` feeds the states back for you::

    s = StreamingSession("out/model.step.onnx")          # runtime options: provider=, threads=...
    for x_t in sensor():                                  # x_t: (features,) or (batch, features)
        y = s.step(x_t)                                   # what the full model outputs at this step
    s.reset()                                             # state back to zeros

The state layout (names, shapes, which output feeds which input) comes from the artifact's
entry in ``manifest.json`` next to the file; without a manifest it is read from the model's
input names (``<layer>__h`` / ``<layer>__c`` in, ``<layer>__h_out`` / ``<layer>__c_out`` out).
Token models take one token id per step; do not feed the padding id 0 (a streamed token is
never padding). ONNX step models take any batch size; TFLite step models batch 1.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rnnedge.errors import UsageError

__all__ = ["StreamingSession", "step_layout"]


def _manifest_entry(path: Path) -> dict:
    mf = path.parent / "manifest.json"
    if not mf.is_file():
        return {}
    try:
        return (json.loads(mf.read_text()).get("artifacts") or {}).get(path.name) or {}
    except (OSError, ValueError):
        return {}


def step_layout(path, inputs, outputs) -> dict:
    """The state layout: ``{input, output, states: [{name, output, units, kind, layer}], ...}``.

    ``inputs``/``outputs``: the runner's TensorInfo lists (names, shapes, dtypes).
    """
    path = Path(path)
    entry = _manifest_entry(path)
    in_by = {i.name: i for i in inputs}
    out_names = [o.name for o in outputs]
    if entry.get("states") is not None and entry.get("step_input") in in_by:
        states = [{"name": s["name"], "output": s.get("output") or s["name"] + "_out",
                   "units": int(s["shape"][-1]), "kind": s.get("kind"), "layer": s.get("layer")}
                  for s in entry["states"]]
        layout = {"input": entry["step_input"], "output": entry["step_output"], "states": states,
                  "output_mode": entry.get("output_mode"), "vocab_size": entry.get("vocab_size"),
                  "source": "manifest.json"}
    else:
        states = []
        for i in inputs:
            for kind in ("h", "c"):
                if i.name.endswith(f"__{kind}") and f"{i.name}_out" in out_names:
                    states.append({"name": i.name, "output": f"{i.name}_out", "units": int(i.shape[-1]),
                                   "kind": kind, "layer": i.name[: -len(kind) - 2]})
        state_ins = {s["name"] for s in states}
        state_outs = {s["output"] for s in states}
        rest_in = [i.name for i in inputs if i.name not in state_ins]
        rest_out = [n for n in out_names if n not in state_outs]
        if not states or len(rest_in) != 1 or len(rest_out) != 1:
            raise UsageError(
                f"{path}: not a step model (expected one timestep input plus '<layer>__h'/'__c' state inputs "
                f"with matching '_out' outputs; inputs {list(in_by)}, outputs {out_names}); export one with "
                "`rnnedge export --streaming`")
        layout = {"input": rest_in[0], "output": rest_out[0], "states": states, "output_mode": None,
                  "vocab_size": None, "source": "input names"}
    missing = [n for n in [layout["input"]] + [s["name"] for s in layout["states"]] if n not in in_by]
    missing += [n for n in [layout["output"]] + [s["output"] for s in layout["states"]] if n not in out_names]
    if missing:
        raise UsageError(f"{path}: the model has no tensor(s) {missing} named in its manifest entry")
    x = in_by[layout["input"]]
    layout["input_dtype"] = x.dtype
    layout["token"] = len(x.shape) == 1
    layout["features"] = None if layout["token"] else x.shape[-1]
    b = x.shape[0]
    layout["fixed_batch"] = b if isinstance(b, int) and b > 0 else None
    return layout


class StreamingSession:
    """Holds the state of a step model; ``step(x_t)`` runs one timestep."""

    def __init__(self, path, runner=None, **runtime_options):
        from rnnedge.runtime import open_runner

        self.path = Path(path)
        self.runner = runner or open_runner(self.path, **runtime_options)
        self.runner.load()
        self.layout = step_layout(self.path, self.runner.inputs, self.runner.outputs)
        self._in = self.layout["input"]
        self._out = self.layout["output"]
        self._states = [(s["name"], s["output"], s["units"]) for s in self.layout["states"]]
        self._dtype = np.dtype(self.layout["input_dtype"])
        self._state: dict[str, np.ndarray] | None = None
        self.steps = 0
        self._invoke = self._fast_path() or self.runner.run

    def _fast_path(self):
        """Call the runtime directly (the runner's checks cost as much as a small step).

        Safe because :meth:`step` already gives every feed its model dtype and shape.
        Returns None (use ``runner.run``) when the runner is not one we know.
        """
        r = self.runner
        sess = getattr(r, "session", None)
        if sess is not None and hasattr(sess, "run") and not r.options.get("io_binding"):
            names = [o.name for o in r.outputs]

            def run_ort(feeds):
                return dict(zip(names, sess.run(names, feeds)))

            return run_ort
        it = getattr(r, "interpreter", None)
        key = r.info.get("signature") if isinstance(getattr(r, "info", None), dict) else None
        if it is not None and key:
            try:
                sr = it.get_signature_runner(key)
                if getattr(sr, "_subgraph_index", 0) != 0:
                    return None
                ins = {n: d["index"] for n, d in sr.get_input_details().items()}
                outs = {n: d["index"] for n, d in sr.get_output_details().items()}
            except Exception:  # noqa: BLE001 - older interpreters: use the runner
                return None
            want = [self._in] + self.state_names
            if set(ins) != set(want) or self._out not in outs:
                return None
            set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor

            def run_tflite(feeds):
                for n, v in feeds.items():
                    set_tensor(ins[n], v)
                invoke()
                return {n: get_tensor(i) for n, i in outs.items()}  # get_tensor copies

            return run_tflite
        return None

    # -- state -------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return [n for n, _, _ in self._states]

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state, ``{name: (batch, units)}`` (zeros of batch 1 before the first step)."""
        if self._state is None:
            return self._zeros(1)
        return {k: v.copy() for k, v in self._state.items()}

    @state.setter
    def state(self, value: dict[str, np.ndarray]) -> None:
        """Restore a state (e.g. one saved from :attr:`state`)."""
        names = self.state_names
        if set(value) != set(names):
            raise UsageError(f"a state needs exactly {names}, got {sorted(value)}")
        new = {}
        batch = None
        for n, _, units in self._states:
            v = np.asarray(value[n], dtype=np.float32)
            if v.ndim != 2 or v.shape[1] != units or (batch is not None and v.shape[0] != batch):
                raise UsageError(f"state {n!r} must be (batch, {units}) like the others, got {list(v.shape)}")
            batch = v.shape[0]
            new[n] = np.ascontiguousarray(v)
        self._check_batch(batch)
        self._state = new

    def reset(self) -> None:
        """State back to zeros (the next step starts a new sequence)."""
        self._state = None
        self.steps = 0

    def _zeros(self, batch: int) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, u), np.float32) for n, _, u in self._states}

    def _check_batch(self, batch: int) -> None:
        fb = self.layout["fixed_batch"]
        if fb is not None and batch != fb:
            raise UsageError(f"{self.path.name}: this step model takes batch {fb} (fixed), got batch {batch}")

    # -- steps ---------------------------------------------------------------
    def _prepare(self, x_t) -> tuple[np.ndarray, bool]:
        x = np.asarray(x_t)
        if self.layout["token"]:
            if not np.issubdtype(x.dtype, np.integer):
                raise UsageError(f"input {self._in!r} takes token ids (integers), got {x.dtype}")
            single = x.ndim == 0
            x = x.reshape(1) if single else x
            if x.ndim != 1:
                raise UsageError(f"a step takes one token id per row: shape (batch,), got {list(x.shape)}")
        else:
            single = x.ndim == 1
            x = x[None] if single else x
            f = self.layout["features"]
            if x.ndim != 2 or (isinstance(f, int) and x.shape[1] != f):
                raise UsageError(f"a step takes (batch, {f}) or ({f},) features, got {list(np.shape(x_t))}")
        return np.ascontiguousarray(x, dtype=self._dtype), single

    def step(self, x_t) -> np.ndarray:
        """Run one timestep; returns the step output ((batch, out), or (out,) for an unbatched x_t)."""
        x, single = self._prepare(x_t)
        batch = x.shape[0]
        if self._state is None:
            self._check_batch(batch)
            self._state = self._zeros(batch)
        elif next(iter(self._state.values())).shape[0] != batch:
            raise UsageError(f"batch changed from {next(iter(self._state.values())).shape[0]} to {batch} "
                             "mid-sequence; call reset() first")
        feeds = {self._in: x}
        feeds.update(self._state)
        out = self._invoke(feeds)
        self._state = {n: out[o] for n, o, _ in self._states}
        self.steps += 1
        y = out[self._out]
        return y[0] if single else y

    def run(self, sequence) -> np.ndarray:
        """Feed a whole sequence step by step, continuing from the current state.

        ``sequence``: (T, features) / (batch, T, features), or (T,) / (batch, T) token ids.
        Returns the step outputs: (T, out) or (batch, T, out).
        """
        x = np.asarray(sequence)
        unbatched = x.ndim == (1 if self.layout["token"] else 2)
        if unbatched:
            x = x[None]
        if x.ndim != (2 if self.layout["token"] else 3):
            want = "(batch, T) or (T,) token ids" if self.layout["token"] else "(batch, T, features) or (T, features)"
            raise UsageError(f"a sequence must be {want}, got shape {list(np.shape(sequence))}")
        ys = [self.step(x[:, t]) for t in range(x.shape[1])]
        y = np.stack(ys, axis=1) if ys else np.zeros((x.shape[0], 0, 0), np.float32)
        return y[0] if unbatched else y

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> "StreamingSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
