"""TF.js export: a Keras 3 model -> DIR/tfjs/ (layers model.json + shards + demo page).

Registered as format ``"tfjs"``. The tensorflowjs Python converter is not used (unmaintained,
does not install beside TF 2.21): :mod:`converters.tfjs.writer` writes the layers format
directly and :mod:`converters.tfjs.layers` holds one translator per Keras layer class.

Files written to ``out_dir/tfjs/``:

* ``model.json`` + ``group1-shard*of*.bin`` — load with ``tf.loadLayersModel`` (TF.js 4.22)
* ``rnnedge_layers.js`` — custom layers (GRU reset_after=True, masked-step helpers); must be
  registered before loading when ``custom_layers`` in the manifest is not empty
* ``sample.json`` — a sample input and the Keras output for it
* ``index.html`` + ``tf.min.js`` — a self-contained demo page that runs the sample and shows
  the max abs difference to Keras (title ``OK`` / ``MISMATCH``)

``options.quantize`` adds variants beside the float32 folder: ``fp16``/``float16`` ->
``tfjs.fp16/`` and ``uint8``/``int8``/``dynamic`` -> ``tfjs.uint8/`` (TF.js weight
quantization: weights are stored in 16/8 bits and dequantized to float32 at load time).
Options read: ``quantize``, ``batch_size``/``seq_len`` (the sample only), and
``extra["tfjs_self_check"]`` (default True: run the sample in Node TF.js when available).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from converters.registry import ExportOptions, functional_graph, register_format
from rnnedge.errors import MissingDependencyError, RnnedgeError

TOLERANCE = 1e-4
# self-check tolerances per weight dtype (the same atol as rnnedge.validation's presets)
QUANT_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "uint8": 1e-1}
PRECISION = {"float32": "float32", "float16": "fp16", "uint8": "uint8"}


# --quantize modes -> TF.js weight quantization (TF.js only stores weights quantized; they
# are dequantized to float32 at load time, the math stays float32)
QUANT_MODES = {"fp16": "float16", "float16": "float16", "f16": "float16",
               "uint8": "uint8", "u8": "uint8", "int8": "uint8", "dynamic": "uint8"}


def _quant_modes(options: ExportOptions) -> tuple[list[str], list[str]]:
    """(TF.js weight dtypes to write as variants, requested modes that do not apply to TF.js)."""
    asked = list(options.quantize or [])
    extra = (options.extra or {}).get("tfjs_quantize")
    if extra:
        asked += [extra] if isinstance(extra, str) else list(extra)
    modes, skipped = [], []
    for q in asked:
        m = QUANT_MODES.get(str(q).lower())
        if m is None:
            skipped.append(str(q))
        elif m not in modes:
            modes.append(m)
    return modes, skipped


def sample_inputs(model, *, batch: int = 2, seq_len: int = 8, seed: int = 0) -> dict:
    """Random feeds for ``model``: token ids (post-padded with zeros when masked) or floats."""
    rng = np.random.default_rng(seed)
    f = functional_graph(model, "tfjs")
    vocab: dict[int, tuple[int, bool]] = {}
    for layer in f.layers:
        if type(layer).__name__ == "Embedding":
            for node in layer._inbound_nodes:
                for t in node.input_tensors:
                    vocab[id(t)] = (int(layer.input_dim), bool(layer.mask_zero))
    feeds = {}
    for t in f.inputs:
        name = t._keras_history.operation.name
        shape = [batch if i == 0 else (seq_len if d is None else int(d)) for i, d in enumerate(t.shape)]
        if "int" in str(t.dtype):
            n, masked = vocab.get(id(t), (10, False))
            x = rng.integers(1, max(n, 2), size=shape).astype(np.int32)
            if masked and len(shape) == 2 and shape[1] > 2:
                for b in range(shape[0]):  # post-padding: row b keeps len - b - 1 tokens
                    keep = max(1, shape[1] - 1 - 2 * b)
                    x[b, keep:] = 0
            feeds[name] = x
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def keras_outputs(model, feeds: dict, output_names: list[str]) -> dict:
    f = functional_graph(model, "tfjs")
    names = [t._keras_history.operation.name for t in f.inputs]
    xs = [feeds[n] for n in names]
    ys = model(xs if len(xs) > 1 else xs[0], training=False)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    return {n: np.asarray(y) for n, y in zip(output_names, ys)}


def _tensor_json(a: np.ndarray) -> dict:
    a = np.asarray(a)
    dtype = "int32" if a.dtype.kind in "iu" else "float32"
    return {"shape": list(a.shape), "dtype": dtype, "data": a.astype(dtype).ravel().tolist()}


def node_dir() -> Path:
    """The shipped Node runner folder (run.js, package.json, rnnedge_layers.js)."""
    env = os.environ.get("RNNEDGE_TFJS_NODE_DIR")
    if env:
        return Path(env)
    import rnnedge.runtime

    return Path(rnnedge.runtime.__file__).parent / "node"


@register_format("tfjs")
def export_tfjs(model, out_dir: Path, options: ExportOptions) -> dict[str, dict]:
    """Write ``out_dir/tfjs/`` (float32) and one ``out_dir/tfjs.<fp16|uint8>/`` per quantize mode."""
    from converters.tfjs.writer import build

    out_dir = Path(out_dir)
    modes, skipped = _quant_modes(options)
    built = [("tfjs", build(model))] + [(f"tfjs.{PRECISION[m]}", build(model, quantize=m))
                                        for m in modes]
    tm0 = built[0][1]
    feeds = sample_inputs(model, batch=options.batch_size or 2, seq_len=options.seq_len or 8)
    ref = keras_outputs(model, feeds, [o["name"] for o in tm0.outputs])
    check = (options.extra or {}).get("tfjs_self_check", True)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = {}
    for dirname, tm in built:
        entries[dirname] = _write_variant(tm, out_dir, dirname, feeds, ref, check)
    if skipped:
        entries["tfjs"]["quantize_not_applicable"] = skipped
    return entries


def _write_variant(tm, out_dir: Path, dirname: str, feeds: dict, ref: dict, check: bool) -> dict:
    from converters.tfjs.demo import index_html
    from converters.tfjs.writer import model_json_text

    nd = node_dir()
    tol = QUANT_TOLERANCE.get(tm.weight_dtype, TOLERANCE)
    sample = {"inputs": {k: _tensor_json(v) for k, v in feeds.items()},
              "outputs": {k: _tensor_json(v) for k, v in ref.items()},
              "tolerance": tol}
    tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}.", dir=out_dir))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the folder is meant to be served / bundled
    final = out_dir / dirname
    demo_note = None
    try:
        (tmp / "model.json").write_text(model_json_text(tm))
        for name, data in tm.shards:
            (tmp / name).write_bytes(data)
        (tmp / "sample.json").write_text(json.dumps(sample))
        shutil.copyfile(nd / "rnnedge_layers.js", tmp / "rnnedge_layers.js")
        tfmin = nd / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
        if tfmin.exists():
            shutil.copyfile(tfmin, tmp / "tf.min.js")
        else:
            from rnnedge.runtime.tfjs import node_install_command

            demo_note = (f"tf.min.js not copied ({tfmin} missing): run `{node_install_command(nd)}` "
                         "and export again, or put tf.min.js 4.22 next to index.html")
        (tmp / "index.html").write_text(index_html(tm))
        old = None
        if final.exists():
            old = out_dir / f".{dirname}.old.{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

    return {
        "format": "tfjs",
        "kind": "directory",
        "model": f"{dirname}/model.json",
        "inputs": tm.inputs,
        "outputs": tm.outputs,
        "layers": tm.layers,
        "custom_layers": tm.custom_layers,
        "custom_layers_js": f"{dirname}/rnnedge_layers.js" if tm.custom_layers else None,
        "weight_dtype": tm.weight_dtype,
        "precision": PRECISION[tm.weight_dtype],
        "weights_bytes": tm.weights_bytes,
        "shards": len(tm.shards),
        "tfjs_version": "4.22",
        "demo": f"{dirname}/index.html" if demo_note is None else demo_note,
        "self_check": (self_check(final, sample, tol) if check
                       else "skipped: disabled (extra.tfjs_self_check=False)"),
    }


def self_check(folder: Path, sample: dict, tol: float) -> dict | str:
    """Run the sample through TF.js in Node; max abs error vs the Keras output."""
    from rnnedge.runtime.tfjs import TFJSRunner, find_node

    if find_node() is None:
        return "skipped: node not found"
    r = TFJSRunner(str(folder))
    try:
        r.check_available()
    except MissingDependencyError as e:
        return f"skipped: {e.what} is not installed (`{e.install}`)"
    feeds = {k: np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
             for k, v in sample["inputs"].items()}
    try:
        outs = r.run(feeds)
    except RnnedgeError as e:
        return {"ok": False, "error": str(e), "runtime": "tfjs-node-cpu"}
    errs = {}
    for k, v in sample["outputs"].items():
        ref = np.asarray(v["data"], dtype=np.float64).reshape(v["shape"])
        got = np.asarray(outs[k], dtype=np.float64)
        if got.shape != ref.shape:
            return {"ok": False, "error": f"output {k} has shape {list(got.shape)} in TF.js, "
                    f"{list(ref.shape)} in Keras", "runtime": "tfjs-node-cpu"}
        errs[k] = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    worst = max(errs.values()) if errs else 0.0
    shapes = {k: v["shape"] for k, v in sample["inputs"].items()}
    return {"max_abs_error": worst, "per_output": errs, "input_shapes": shapes, "ok": bool(worst <= tol),
            "tolerance": tol, "runtime": f"tfjs {r.info.get('tfjs_version', '?')} "
            f"({r.info.get('backend', 'cpu')}) in Node {r.info.get('node', '?')}"}
