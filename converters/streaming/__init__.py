"""Streaming export: step models that take one timestep and the recurrent state explicitly.

``export_streaming(model, out_dir)`` writes ``model.step.onnx`` (native LSTM/GRU/RNN ops on a
length-1 sequence, dynamic batch) and ``model.step.tflite`` (fixed batch 1, builtin ops only)
and returns their manifest entries. Each entry describes the state layout::

    "step_inputs":  ["series", "lstm__h", "lstm__c", ...],      # the timestep first, then states
    "step_outputs": ["dense", "lstm__h_out", "lstm__c_out", ...],
    "states": [{"name": "lstm__h", "output": "lstm__h_out", "shape": ["batch", 64],
                "layer": "lstm", "kind": "h", "dtype": "float32"}, ...],
    "output_mode": "last" | "sequence"

Feed zeros as the first state, then each step's ``*_out`` back as the next state
(:class:`rnnedge.runtime.streaming.StreamingSession` does this). ``output_mode="last"``: the
step output is what the full model would predict if the sequence ended at this step;
``"sequence"``: the full model's output at this step.

Every step model is checked before it is written: a random sequence is fed one step at a time
in the target runtime and compared at every step with the Keras model (``self_check``);
above :data:`SELF_CHECK_TOL` the export fails. Not streamable (ConversionError): Bidirectional
and ``go_backwards`` layers (they need the whole sequence), sequence-level layers (pooling,
attention, Conv1D...), several inputs/outputs. ``Embedding(mask_zero=True)``: streamed tokens are
never padding; do not feed the padding id 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.streaming.plan import NOT_STREAMABLE_BIDIR, StepPlan, plan_model  # noqa: F401
from rnnedge.errors import ConversionError, UsageError

SELF_CHECK_TOL = 1e-4
FILES = {"onnx": "model.step.onnx", "tflite": "model.step.tflite"}
FORMATS = tuple(FILES)  # the formats a step model can be exported to

__all__ = ["export_streaming", "plan_model", "keras_step_reference", "step_parity", "FILES", "FORMATS"]


def random_sequence(plan: StepPlan, batch: int, steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if plan.tokens:  # never the padding id 0 (see the module docstring)
        return rng.integers(1, max(plan.vocab_size, 2), size=(batch, steps)).astype(plan.input_dtype)
    return rng.standard_normal((batch, steps, plan.features)).astype(np.float32)


def keras_step_reference(model, plan: StepPlan, x: np.ndarray) -> np.ndarray:
    """What the full Keras model outputs at every step of ``x``: (batch, T, out)."""
    if plan.output_mode == "sequence":
        return np.asarray(model(x, training=False))
    return np.stack([np.asarray(model(x[:, :t + 1], training=False)) for t in range(x.shape[1])], axis=1)


def run_steps(run, plan: StepPlan, x: np.ndarray) -> np.ndarray:
    """Feed ``x`` one step at a time through ``run(feeds) -> {name: array}``; (batch, T, out)."""
    batch = x.shape[0]
    state = {s["name"]: np.zeros((batch, s["units"]), np.float32) for s in plan.states}
    ys = []
    for t in range(x.shape[1]):
        out = run({plan.input_name: np.ascontiguousarray(x[:, t]), **state})
        ys.append(np.asarray(out[plan.output_name]))
        state = {s["name"]: np.asarray(out[s["output"]]) for s in plan.states}
    return np.stack(ys, axis=1)


def step_parity(model, plan: StepPlan, run, *, batch: int, steps: int = 6, seed: int = 0) -> dict:
    x = random_sequence(plan, batch, steps, seed)
    ref = keras_step_reference(model, plan, x)
    got = run_steps(run, plan, x)
    if ref.shape != got.shape:
        raise ConversionError(f"step model self-check: outputs of shape {got.shape}, Keras {ref.shape}",
                              fmt="streaming")
    err = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64))))
    return {"max_abs_error": err, "steps": steps, "batch": batch, "tolerance": SELF_CHECK_TOL,
            "ok": bool(err <= SELF_CHECK_TOL),
            "method": "random sequence fed one step at a time vs the Keras model at every step"}


def _entry(plan: StepPlan, fmt: str, info: dict, batch_dim) -> dict:
    states = [{"name": s["name"], "output": s["output"], "shape": [batch_dim, s["units"]], "layer": s["layer"],
               "kind": s["kind"], "dtype": "float32"} for s in plan.states]
    entry = {
        "format": fmt,
        "streaming": True,
        "inputs": info["inputs"],
        "outputs": info["outputs"],
        "step_inputs": [i["name"] for i in info["inputs"]],
        "step_outputs": [o["name"] for o in info["outputs"]],
        "step_input": plan.input_name,
        "step_output": plan.output_name,
        "states": states,
        "output_mode": plan.output_mode,
        "full_model_input": {"name": plan.input_name, "shape": plan.full_input_shape, "dtype": plan.input_dtype},
    }
    if plan.tokens:
        entry["vocab_size"] = plan.vocab_size
        entry["padding_id"] = 0 if plan.mask_zero else None
    if plan.notes:
        entry["notes"] = list(plan.notes)
    return entry


def _check(fmt: str, check: dict):
    if not check["ok"]:
        raise ConversionError(
            f"{fmt} step model does not reproduce the Keras model step by step: max abs error "
            f"{check['max_abs_error']:.3g} > {SELF_CHECK_TOL}", fmt=fmt)


def export_streaming(model, out_dir, formats=("onnx", "tflite"), options=None, *, check: bool = True,
                     write_manifest: bool = True) -> dict[str, dict]:
    """Write the step models of ``model`` into ``out_dir``; return ``{file_name: manifest_entry}``.

    The whole model is analysed first (nothing is written when it is not streamable). With
    ``write_manifest`` the entries are also merged into ``out_dir/manifest.json`` (harmless if
    the caller merges them again). ``options`` (an ExportOptions) is accepted for the CLI; the
    step models ignore batch/seq_len (ONNX: dynamic batch; TFLite: batch 1).
    """
    from rnnedge.manifest import package_versions, update_manifest, write_bytes_atomic

    if isinstance(formats, str):
        formats = (formats,)
    bad = [f for f in formats if f not in FILES]
    if bad:
        raise UsageError(f"streaming export: unknown format(s) {bad}; choose from {sorted(FILES)}")
    plan = plan_model(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    for fmt in formats:
        if fmt == "onnx":
            from converters.streaming.onnx_step import build_onnx_step, onnx_step_runner

            mp, info = build_onnx_step(plan)
            data = mp.SerializeToString()
            entry = _entry(plan, "onnx", info, "batch")
            entry.update(opset=info["opset"], ir_version=info["ir_version"], op_types=info["op_types"],
                         dynamic_axes={"batch": "every input and output, axis 0"},
                         converter="rnnedge step exporter (converters.streaming.onnx_step)",
                         versions=package_versions("onnx", "onnxruntime", "keras"))
            if check:
                entry["self_check"] = step_parity(model, plan, onnx_step_runner(data), batch=2)
                entry["self_check"]["runtime"] = "onnxruntime CPUExecutionProvider"
                _check("onnx", entry["self_check"])
        else:
            from converters.streaming.tflite_step import build_tflite_step, tflite_step_runner

            data, info = build_tflite_step(plan)
            entry = _entry(plan, "tflite", info, 1)
            entry.update(batch_size=1, builtin_ops_only=True,
                         converter="rnnedge step exporter (converters.streaming.tflite_step, tf.lite)",
                         versions=package_versions("tensorflow", "ai-edge-litert", "keras"))
            run, rinfo = tflite_step_runner(data)
            entry["op_names"] = rinfo["op_names"]
            if check:
                entry["self_check"] = step_parity(model, plan, run, batch=1)
                entry["self_check"]["runtime"] = rinfo["interpreter"]
                _check("tflite", entry["self_check"])
        write_bytes_atomic(out_dir / FILES[fmt], data)
        entries[FILES[fmt]] = entry
    if write_manifest:
        update_manifest(out_dir, artifacts=entries)
    return entries
