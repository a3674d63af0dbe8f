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
import time
from pathlib import Path

import numpy as np

from rnnedge.errors import UsageError
from rnnedge.runtime.base import Runner, TensorInfo

__all__ = ["StreamingSession", "step_layout", "run_streaming", "bench_streaming",
           "SequenceRunner", "is_step_model"]


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
        # onnxruntime on the CPU: bound, preallocated buffers (one FeedbackLoop per batch size)
        self._loops: dict[int, object] | None = {} if hasattr(self.runner, "feedback_loop") else None
        self._invoke = self._fast_path() or self.runner.run

    def _loop(self, batch: int):
        """The runner's FeedbackLoop for ``batch`` (built on first use), or None when it has none."""
        if self._loops is None:
            return None
        lp = self._loops.get(batch)
        if lp is None:
            try:
                lp = self.runner.feedback_loop(batch, {o: n for n, o, _ in self._states})
            except UsageError:  # e.g. a free axis besides the batch, or a GPU session
                self._loops = None
                return None
            self._loops[batch] = lp
        return lp

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
        lp = self._loop(batch)
        if lp is not None:  # no allocation per step: write into the bound buffers, run, read
            if lp.state is not self._state:  # a state from outside (first step, reset, setter)
                for n, v in self._state.items():
                    np.copyto(lp.state[n], v)
            np.copyto(lp.inputs[self._in], x)
            lp.run()
            self._state = lp.state
            self.steps += 1
            y = lp.outputs[self._out]
            return y[0].copy() if single else y.copy()  # the buffer is reused by the next step
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


def run_streaming(path, inputs_array, **runtime_options) -> np.ndarray:
    """Feed ``inputs_array`` ((batch, T, F) / (T, F), or token ids (batch, T) / (T,)) one step at a
    time through the step model at ``path``, from a zero state; returns every step's output."""
    with StreamingSession(path, **runtime_options) as s:
        return s.run(inputs_array)


def _step_input(layout: dict, rng) -> np.ndarray:
    batch = layout["fixed_batch"] or 1
    if layout["token"]:
        hi = max(int(layout.get("vocab_size") or 2), 2)
        return rng.integers(1, hi, size=(batch,)).astype(layout["input_dtype"])
    return rng.standard_normal((batch, int(layout["features"]))).astype(layout["input_dtype"])


def bench_streaming(path, steps: int = 100, warmup: int = 10, runs: int = 5, seed: int = 0,
                    **runtime_options) -> dict:
    """Per-step latency of the step model at ``path`` (batch 1 unless the model fixes another).

    ``runs`` sequences of ``steps`` steps each, from a zero state; ``warmup`` untimed steps first.
    Returns ``{p50_ms, p99_ms, mean_ms, min_ms, max_ms, steps, runs, n, runtime, ...}``.
    """
    if steps < 1 or runs < 1 or warmup < 0:
        raise UsageError("bench: steps and runs must be >= 1, warmup >= 0")
    rng = np.random.default_rng(seed)
    with StreamingSession(path, **runtime_options) as s:
        xs = [_step_input(s.layout, rng) for _ in range(steps)]
        for i in range(warmup):
            s.step(xs[i % steps])
        times = []
        for _ in range(runs):
            s.reset()
            for x in xs:
                t0 = time.perf_counter()
                s.step(x)
                times.append(time.perf_counter() - t0)
        info = dict(s.runner.info)
    ms = np.asarray(times) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
        "steps": steps, "runs": runs, "warmup": warmup, "n": int(ms.size),
        "runtime": info.get("runtime"), "runtime_info": info,
    }


class SequenceRunner(Runner):
    """A step model seen as the full model it came from, for validation and comparison.

    ``run({input: whole sequence})`` resets the state, steps through every timestep and
    returns what the full model outputs: every step's output (``output_mode="sequence"``) or
    the last one (``"last"``). Rows of token ids skip their padding id (``padding_id`` in the
    manifest), as the full model's mask does.
    """

    def __init__(self, path, **runtime_options):
        super().__init__(str(path), runtime="streaming", options=dict(runtime_options))
        self.session: StreamingSession | None = None

    def _load(self) -> None:
        s = self.session = StreamingSession(self.path, **self.options)
        lay = s.layout
        x = next(i for i in s.runner.inputs if i.name == lay["input"])
        y = next(o for o in s.runner.outputs if o.name == lay["output"])
        batch = lay["fixed_batch"]
        self.inputs = [TensorInfo(lay["input"], [batch, None, *list(x.shape[1:])], x.dtype)]
        last = lay.get("output_mode") == "last"
        self.outputs = [TensorInfo(lay["output"], [batch, *([] if last else [None]), *list(y.shape[1:])], y.dtype)]
        self.padding_id = _manifest_entry(Path(self.path)).get("padding_id")
        self.info = dict(s.runner.info, streaming=True, output_mode=lay.get("output_mode"))

    def _run(self, feeds):
        s = self.session
        x = np.asarray(feeds[self.inputs[0].name])
        last = s.layout.get("output_mode") == "last"
        if self.padding_id is not None and s.layout["token"] and (x == self.padding_id).any():
            zero = np.zeros(self.outputs[0].shape[-1], np.float32)  # a row with no token at all
            rows = []
            for row in x:
                s.reset()
                kept = row[row != self.padding_id]
                y = s.run(kept[None])[0] if kept.size else np.zeros((0, zero.size), np.float32)
                if last:
                    rows.append(y[-1] if len(y) else zero)
                    continue
                # padded steps repeat the previous output (zeros before the first token)
                pos = np.cumsum(row != self.padding_id) - 1
                rows.append(np.stack([y[k] if k >= 0 else zero for k in pos]))
            return {self.outputs[0].name: np.stack(rows)}
        s.reset()
        y = s.run(x)
        return {self.outputs[0].name: y[:, -1] if last else y}

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        super().close()


def is_step_model(entry: dict) -> bool:
    """Whether a manifest entry describes a step model (``export --streaming``)."""
    return bool(entry.get("states")) and "step_input" in entry
