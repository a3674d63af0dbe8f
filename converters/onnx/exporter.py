"""The "onnx" format: write model.onnx, check it in onnxruntime against Keras, return its manifest entry."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.registry import ExportOptions
from rnnedge.errors import ConversionError, MissingDependencyError, install_command

SELF_CHECK_TOL = 1e-4


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(module, install_command(module)) from e


def random_feeds(model, inputs_info: list[dict], batch: int = 2, seq_len: int | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for the ONNX inputs: token ids within the vocabulary for integer inputs
    (one row post-padded with zeros so masks are exercised), normal floats otherwise."""
    rng = np.random.default_rng(seed)
    vocab = _vocab_by_input(model)
    feeds = {}
    for inp in inputs_info:
        dims = []
        for i, d in enumerate(inp["shape"]):
            if i == 0:
                dims.append(batch if isinstance(d, str) else d)
            elif isinstance(d, str):
                dims.append(seq_len or 7)
            else:
                dims.append(d)
        if "int" in inp["dtype"]:
            hi = vocab.get(inp["name"], 10)
            x = rng.integers(1, max(hi, 2), size=dims).astype(inp["dtype"])
            if x.ndim >= 2 and x.shape[1] > 2 and x.shape[0] > 1:
                x[-1, -2:] = 0
            feeds[inp["name"]] = x
        else:
            feeds[inp["name"]] = rng.standard_normal(dims).astype(inp["dtype"])
    return feeds


def _vocab_by_input(model) -> dict[str, int]:
    """Input name -> smallest input_dim of the Embedding layers it feeds (directly)."""
    import keras

    fm = getattr(model, "_functional", None) or model
    out = {}
    for t in getattr(fm, "inputs", []):
        name = t._keras_history.operation.name
        for layer in fm.layers:
            if isinstance(layer, keras.layers.Embedding):
                for node in layer._inbound_nodes:
                    if any(it is t for it in node.input_tensors):
                        out[name] = min(out.get(name, 1 << 30), int(layer.input_dim))
    if not out:  # Sequential without explicit links: use the first Embedding
        embs = [l for l in fm.layers if isinstance(l, keras.layers.Embedding)]
        if embs and getattr(fm, "inputs", None):
            out[fm.inputs[0]._keras_history.operation.name] = int(embs[0].input_dim)
    return out


def _reset_states(model) -> None:
    for layer in getattr(model, "layers", []):
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_state"):
            layer.reset_state()


def keras_outputs(model, feeds: dict, input_names: list[str]) -> list[np.ndarray]:
    """Keras reference outputs; stateful layers start from zero and are left reset (the export is
    stateless, and a self-check must not change the caller's model)."""
    xs = [feeds[n] for n in input_names]
    _reset_states(model)
    try:
        y = model(xs if len(xs) > 1 else xs[0], training=False)
    finally:
        _reset_states(model)
    if not isinstance(y, (list, tuple)):
        y = [y]
    if isinstance(y, dict):
        y = list(y.values())
    return [np.asarray(t) for t in y]


def ort_session(path_or_bytes):
    ort = _need("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, (bytes, str)) else str(path_or_bytes),
                                so, providers=["CPUExecutionProvider"])


def self_check(model, session, info: dict, batch: int = 2, seq_len: int | None = None) -> dict:
    feeds = random_feeds(model, info["inputs"], batch=batch, seq_len=seq_len)
    names = [i["name"] for i in info["inputs"]]
    ref = keras_outputs(model, feeds, names)
    got = session.run(None, feeds)
    errs = {}
    for o, r, y in zip(info["outputs"], ref, got):
        if r.shape != y.shape:
            raise ConversionError(
                f"self-check: output {o['name']} has shape {y.shape} in onnxruntime, {r.shape} in Keras",
                fmt="onnx")
        errs[o["name"]] = float(np.max(np.abs(r.astype(np.float64) - y.astype(np.float64)))) if r.size else 0.0
    shapes = {n: list(v.shape) for n, v in feeds.items()}
    worst = max(errs.values()) if errs else 0.0
    return {"max_abs_error": worst, "per_output": errs, "input_shapes": shapes,
            "tolerance": SELF_CHECK_TOL, "ok": bool(worst <= SELF_CHECK_TOL),
            "runtime": "onnxruntime CPUExecutionProvider"}


def build_onnx(model, options: ExportOptions):
    _need("onnx")
    from converters.onnx.graph import convert_model

    return convert_model(model, options)


def export_onnx(model, out_dir: Path, options: ExportOptions | None = None) -> dict[str, dict]:
    from rnnedge.manifest import write_bytes_atomic

    options = options or ExportOptions()
    out_dir = Path(out_dir)
    mp, info = build_onnx(model, options)
    path = out_dir / "model.onnx"
    data = mp.SerializeToString()
    write_bytes_atomic(path, data)
    sess = ort_session(data)
    check = self_check(model, sess, info, batch=options.batch_size or 2, seq_len=options.seq_len)
    entry = {
        "format": "onnx",
        "opset": info["opset"],
        "ir_version": info["ir_version"],
        **conversion_facts(info, "rnnedge native (converters.onnx)"),
        "self_check": check,
    }
    return {"model.onnx": entry}


def conversion_facts(info: dict, converter: str) -> dict:
    """Manifest fields every ONNX-based artifact shares: inputs/outputs, op types, which path
    converted each layer (``layers``: native / fallback), notes, and state handling."""
    from rnnedge.manifest import package_versions

    fallback = [l["name"] for l in info["layers"] if l["path"] == "fallback"]
    facts = {
        "inputs": info["inputs"],
        "outputs": info["outputs"],
        "dynamic_axes": info["dynamic_axes"],
        "op_types": info["op_types"],
        "converter": converter + (f" + tf2onnx for {len(fallback)} layer(s)" if fallback else ""),
        "versions": package_versions("onnx", "onnxruntime", "keras", "tensorflow",
                                     *(("tf2onnx",) if fallback else ())),
        "layers": info["layers"],
        "recurrent_lowering": info["recurrent_lowering"],
    }
    if info.get("stateful_layers"):
        facts["state"] = {
            "stateful_layers": info["stateful_layers"],
            "artifact": "stateless: every call starts from zero states (or from the initial-state inputs); "
                        "to carry state across calls, export with --streaming (model.step.onnx takes and "
                        "returns the states)",
        }
    if info["notes"]:
        facts["notes"] = info["notes"]
    return facts
