"""Quantize exported artifacts: ONNX (onnxruntime.quantization + int8 recurrent weights) and TFLite.

``quantize(dir, modes)`` reads ``DIR/manifest.json``, quantizes the float artifacts and
writes each result next to its source with the mode in the name, recorded in the
manifest (mode, source artifact, method, sizes, ratio, weight bytes per type, what was and was
not quantized)::

    model.onnx  -> model.int8.onnx  model.uint8.onnx  model.fp16.onnx  model.int8-static.onnx
    model.ort   -> model.int8.ort  model.uint8.ort  model.int8-static.ort   (from the 8-bit ONNX files)
    (TFLite, from DIR/reference.keras) -> model.dynamic.tflite  model.fp16.tflite  model.int8.tflite

Modes
=====

============  ========  ==============================================================
mode          formats   what it does
============  ========  ==============================================================
int8          onnx      ``quantize_dynamic`` weights QInt8 (MatMul -> MatMulInteger,
                        LSTM -> com.microsoft DynamicQuantizeLSTM); activations
                        quantized at run time. GRU and RNN nodes (no quantized kernel in
                        onnxruntime) get weight-only int8: W and R stored int8 with one
                        scale per output channel, fed through ``DequantizeLinear``
                        (:mod:`converters.onnx.quantize`); computed in float32.
int8          tflite    full-integer post-training quantization with a representative
                        dataset (calibration file, else realistic inputs); for models with
                        a WHILE loop (GRU, SimpleRNN, masked LSTM) weight-only int8: the
                        loop is kept and its weights become int8 constants + DEQUANTIZE
                        (:mod:`converters.tflite.weights`; TF 2.21's calibrator crashes on
                        WHILE loops and unrolling made files larger than float).
uint8         onnx      ``quantize_dynamic`` weights QUInt8; GRU/RNN weights as in int8.
int8-static   onnx      ``quant_pre_process`` then ``quantize_static`` (QDQ, activations
                        QUInt8, weights QInt8) calibrated over realistic inputs.
                        onnxruntime has no static handler for LSTM/GRU/RNN: their weights
                        get the weight-only int8 form of ``int8``.
fp16          onnx      ``onnxconverter_common.float16`` with ``keep_io_types=True``. The
                        CPU EP has no fp16 LSTM/GRU/RNN kernel: by default their weights are
                        stored fp16 anyway and onnxruntime inserts Casts and computes them
                        in fp32 (half the file; measured error ~3e-4, same as block-listing);
                        if that graph does not load, LSTM/GRU/RNN are block-listed (kept
                        float32 in the file), then the nodes onnxruntime's type check names.
                        ``keep_recurrent_float=True`` block-lists from the start. Each
                        candidate is loaded and run once before it is kept.
fp16          tflite    float16 weights (``converter.target_spec.supported_types``).
dynamic       tflite    dynamic-range quantization (int8 weights, float activations), then
                        the weights the converter left float (it skips those under 1024
                        elements) rewritten as int8 + DEQUANTIZE.
============  ========  ==============================================================

Honest results: an 8-bit file in which no weight is 8-bit (a model too small for the rewrite
to pay) is deleted and reported as an error ("not written"), never presented as quantized; a
file that is not smaller than its float source gets ``quantization.warning`` with the reason
(and a RuntimeWarning; ``rnnedge quantize`` prints it). When DIR has a float ``model.ort``, each
8-bit ONNX file is also converted to the ORT format (``model.<mode>.ort``).

``reduce_range``: on x86 without VNNI (neither ``avx512_vnni`` nor ``avx_vnni`` in
``/proc/cpuinfo``) the u8s8 integer kernels can saturate (measured here: errors 0.2-0.6
with full-range weights, ~1e-2 with 7-bit weights), so int8 modes use ``reduce_range=True``
there by default; elsewhere False. The choice and its reason are written to the manifest.
Note that the choice is made for the machine that quantizes; pass ``reduce_range`` to
force it for another target. It does not apply to the weight-only int8 recurrent weights
(dequantized to float32 before any integer kernel sees them: full range, [-127, 127]).

onnxruntime does not quantize anything inside a ``Loop`` (tf2onnx's form of GRU / masked RNNs):
the manifest's ``quantization.notes`` says what stayed float, and the size ratio shows the real
gain.
"""
from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from pathlib import Path
from typing import Iterable

from rnnedge.errors import (ConversionError, MissingDependencyError, RnnedgeError, UsageError, install_command,
                            raise_if_missing)
from rnnedge.manifest import atomic_path, load_manifest, update_manifest

ONNX_MODES = ("int8", "uint8", "fp16", "int8-static")
ORT_MODES = ("int8", "uint8", "int8-static")  # also written as model.<mode>.ort when DIR has model.ort
TFLITE_MODES = ("dynamic", "fp16", "int8")
MODES = ("int8", "uint8", "fp16", "int8-static", "dynamic")
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
QUANTIZED_OP_TYPES = (
    "DynamicQuantizeLSTM", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv",
    "DynamicQuantizeMatMul", "QuantizeLinear", "DequantizeLinear", "QAttention", "QGemm",
)
DEFAULT_CALIBRATION_SAMPLES = 200


# ---------------------------------------------------------------------------------------
# CPU facts
# ---------------------------------------------------------------------------------------
def cpu_has_vnni(cpuinfo: str | None = None) -> bool | None:
    """True/False from ``/proc/cpuinfo`` flags (avx512_vnni / avx_vnni); None if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"})
    return None


def default_reduce_range(machine: str | None = None, cpuinfo: str | None = None) -> tuple[bool, str]:
    """``(reduce_range, reason)`` for int8 ONNX quantization on this machine."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False, f"{machine} CPU: full 8-bit range (reduce_range is for x86 without VNNI)"
    vnni = cpu_has_vnni(cpuinfo)
    if vnni:
        return False, "x86 CPU with VNNI: full 8-bit range"
    if vnni is None:
        return True, "x86 CPU, VNNI unknown (no /proc/cpuinfo flags): 7-bit weights to avoid saturation"
    return True, "x86 CPU without VNNI (no avx512_vnni/avx_vnni): 7-bit weights avoid u8s8 saturation"


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def quantize(
    folder: str | os.PathLike,
    modes: str | Iterable[str],
    *,
    calibration: str | os.PathLike | None = None,
    formats: str | Iterable[str] = "all",
    per_channel: bool = False,
    reduce_range: bool | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    seed: int = 0,
    keep_recurrent_float: bool | None = None,
) -> dict[str, dict]:
    """Quantize the float artifacts of ``folder`` in each of ``modes``.

    Returns ``{artifact_name: manifest_entry}`` for the files written; a mode that fails
    for one format is reported as ``{"error": message, ...}`` under the would-be name (and
    not written to the manifest), so one failure does not hide the others; when it failed because
    a package is not installed, the result also has ``missing_dependency`` (what) and ``install``
    (the command; ``rnnedge quantize`` then exits 3). Raises
    :class:`UsageError` for a bad folder/mode/format, when nothing applies.
    """
    folder = Path(folder)
    modes = _as_list(modes)
    formats = _as_list(formats)
    if not (folder / "manifest.json").is_file():
        raise UsageError(f"{folder}: no manifest.json (export a model there first: `rnnedge export`)")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UsageError(f"unknown quantization mode(s) {bad or modes}; choose from: {', '.join(MODES)}")
    if formats == ["all"]:
        formats = ["onnx", "tflite"]
        explicit = False
    else:
        explicit = True
    badf = [f for f in formats if f not in ("onnx", "tflite")]
    if badf:
        raise UsageError(f"unknown format(s) {badf} for quantize; choose onnx, tflite or all")
    manifest = load_manifest(folder)
    arts = manifest.get("artifacts", {})
    calib = None
    if calibration is not None:
        from rnnedge.inputs import load_calibration

        calib = load_calibration(calibration)

    results: dict[str, dict] = {}
    plan: list[tuple[str, str]] = []  # (format, mode)
    for fmt in formats:
        allowed = ONNX_MODES if fmt == "onnx" else TFLITE_MODES
        for mode in modes:
            if mode in allowed:
                plan.append((fmt, mode))
            elif explicit and len(formats) == 1:
                hint = ("for ONNX dynamic int8 use --mode int8" if mode == "dynamic"
                        else f"{fmt} modes: {', '.join(allowed)}")
                raise UsageError(f"mode {mode!r} does not apply to {fmt} ({hint})")

    sources = {fmt: _float_artifact(arts, fmt) for fmt in formats}
    for fmt in formats:
        if sources[fmt] is None and any(f == fmt for f, _ in plan):
            if explicit:
                raise UsageError(f"{folder}: no float {fmt} artifact in manifest.json to quantize "
                                 f"(export it first: `rnnedge export ... --format {fmt}`)")
            plan = [(f, m) for f, m in plan if f != fmt]
    if not plan:
        raise UsageError(f"{folder}: nothing to quantize for mode(s) {modes} and format(s) {formats} "
                         f"(artifacts: {', '.join(arts) or 'none'})")

    for fmt, mode in plan:
        src_name = sources[fmt]
        out_name = quantized_name(src_name, mode)
        try:
            if fmt == "onnx":
                entry = _quantize_onnx(folder, src_name, out_name, mode, arts[src_name], calib=calib,
                                       per_channel=per_channel, reduce_range=reduce_range,
                                       calibration_samples=calibration_samples, seed=seed,
                                       manifest=manifest, keep_recurrent_float=keep_recurrent_float)
            else:
                entry = _quantize_tflite(folder, src_name, out_name, mode, arts[src_name], calib=calib,
                                         calibration_samples=calibration_samples, seed=seed,
                                         manifest=manifest)
        except RnnedgeError as e:
            results[out_name] = {"format": fmt, "error": str(e), "quantization": {"mode": mode, "source": src_name},
                                 **_missing_fields(e)}
            continue
        man = update_manifest(folder, artifacts={out_name: entry})
        results[out_name] = man["artifacts"][out_name]
        ort_src = _float_artifact(arts, "ort") if fmt == "onnx" and mode in ORT_MODES else None
        if ort_src is not None:  # the ORT-format twin of the quantized ONNX file
            ort_name = quantized_name(ort_src, mode)
            try:
                entry = _to_ort(folder, out_name, ort_src, ort_name, results[out_name], manifest, seed)
            except RnnedgeError as e:
                results[ort_name] = {"format": "ort", "error": str(e),
                                     "quantization": {"mode": mode, "source": out_name}, **_missing_fields(e)}
                continue
            man = update_manifest(folder, artifacts={ort_name: entry})
            results[ort_name] = man["artifacts"][ort_name]
    return results


def _missing_fields(e: RnnedgeError) -> dict:
    """A result's ``missing_dependency`` (what is not installed) and ``install`` (the command), when
    ``e`` is a missing package."""
    if isinstance(e, MissingDependencyError):
        return {"missing_dependency": e.what, "install": e.install}
    return {}


def quantized_name(source_name: str, mode: str) -> str:
    """``model.onnx`` + ``int8`` -> ``model.int8.onnx``."""
    p = Path(source_name)
    return str(p.with_name(f"{p.stem}.{mode}{p.suffix}"))


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _as_list(x) -> list[str]:
    if isinstance(x, str):
        return [s.strip() for s in x.split(",") if s.strip()]
    return [str(s) for s in x]


def _float_artifact(arts: dict, fmt: str) -> str | None:
    """The float artifact of ``fmt`` (prefer ``model.<ext>``)."""
    cands = [n for n, e in arts.items()
             if e.get("format") == fmt and _is_float(e)]
    if not cands:
        return None
    ext = {"onnx": ".onnx", "tflite": ".tflite", "ort": ".ort"}.get(fmt, "")
    cands.sort(key=lambda n: (n != f"model{ext}", not n.endswith(ext), n))
    return cands[0]


def _is_float(entry: dict) -> bool:
    """A float32 artifact: no quantization record (or the converter's ``"float32"`` string)."""
    q = entry.get("quantization")
    if isinstance(q, dict):
        return q.get("mode") in (None, "float32")
    if q not in (None, "", "float32", "none"):
        return False
    return entry.get("precision", "float32") in ("float32", "fp32")


def _size_facts(src: Path, dst: Path) -> dict:
    a, b = src.stat().st_size, dst.stat().st_size
    return {"size_before": a, "size_after": b, "ratio": round(b / a, 4) if a else None}


def _tensor_list(values) -> list[dict]:
    from onnx import TensorProto, helper

    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        try:
            import numpy as np

            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        except Exception:  # pragma: no cover
            dtype = TensorProto.DataType.Name(t.elem_type).lower()
        out.append({"name": v.name, "shape": dims, "dtype": dtype})
    return out


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}

    def walk(g):
        for n in g.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)

    walk(model.graph)
    return dict(sorted(counts.items()))


def _float_notes(src_ops: dict, dst_ops: dict, mode: str) -> list[str]:
    notes = []
    for op in RECURRENT_OPS:
        if dst_ops.get(op):
            why = ("kept float32: the CPU EP has no fp16 kernel" if mode == "fp16"
                   else "weights stored int8 (per-output-channel DequantizeLinear), computed in float32: "
                        "onnxruntime has no quantized kernel for it" if dst_ops.get("DequantizeLinear")
                   else "not quantized (weights too small to gain)")
            notes.append(f"{dst_ops[op]} {op} op(s) {why}")
    for op in ("Scan", "If"):  # converters.onnx.recurrent's SimpleRNN lowerings
        if dst_ops.get(op) and mode != "fp16":
            why = ("weights of its body stored int8 (per-output-channel DequantizeLinear in the main graph, "
                   "run once per call), computed in float32" if dst_ops.get("DequantizeLinear")
                   else "body weights left float (too small to gain)")
            notes.append(f"{dst_ops[op]} {op} op(s) (SimpleRNN lowering): {why}")
    if src_ops.get("Loop") and mode != "fp16":
        notes.append(f"{src_ops['Loop']} Loop op(s) (tf2onnx recurrent loop) left float: "
                     "onnxruntime does not quantize weights passed into a Loop")
    return notes


@contextlib.contextmanager
def _quiet():
    """Silence onnxruntime.quantization's prints and root-logger warnings (pre-processing
    advice, shape-inference dumps); real failures still raise."""
    import io
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _strip_value_info(model) -> None:
    """Drop shape-inference ``value_info`` the quantizer adds (optional metadata, only size)."""
    del model.graph.value_info[:]


def _check_loads(path: Path, feeds: dict | None, display: str | None = None) -> None:
    """Load ``path`` in onnxruntime (CPU) and run ``feeds`` once; ConversionError if it fails."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        if feeds is not None:
            names = [i.name for i in sess.get_inputs()]
            sess.run(None, {n: feeds[n] for n in names if n in feeds})
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        msg = str(e).strip().splitlines()[0][:400].replace(str(path), display or path.name)
        raise ConversionError(f"{display or path.name}: the quantized model does not run in onnxruntime: {msg}",
                              fmt="onnx") from None


def _crashes_onnxruntime(path: Path) -> str | None:
    """Open ``path`` in onnxruntime (CPU, default options) in a child process; a message when
    that *crashes* (a signal), else None. onnxruntime 1.32's x86 ``NchwcTransformer`` segfaults
    on some fp16 graphs (seen: a masked LSTM encoder-decoder); a crash must not kill the caller."""
    import subprocess
    import sys

    code = "import sys, onnxruntime as o; o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
    try:
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "onnxruntime did not finish loading it in 300 s"
    return f"onnxruntime crashes loading it (signal {-r.returncode})" if r.returncode < 0 else None


def _onnx_sample_feeds(model_path: Path, manifest: dict, calib, n: int, seed: int) -> list[dict]:
    """Realistic feeds (``n`` samples, batch 1 each) for the ONNX model's inputs."""
    import onnx

    from rnnedge.inputs import onnx_vocab_hint, sample_batches, specs_from_tensors

    m = onnx.load(str(model_path), load_external_data=False)
    init = {t.name for t in m.graph.initializer}
    infos = [i for i in _tensor_list(m.graph.input) if i["name"] not in init]
    pre = manifest.get("preprocessing") or {}
    vocab = (manifest.get("model") or {}).get("vocab_sizes") or None
    if not vocab and not pre.get("vocab_size"):
        vocab = onnx_vocab_hint(m)
    specs = specs_from_tensors(infos, preprocessing=pre, vocab=vocab)
    return sample_batches(specs, samples=n, batch_size=1, calibration=calib, seed=seed,
                          preprocessing=manifest.get("preprocessing"))


def _fp16(src_model, out: Path, feeds: dict, keep_recurrent_float: bool | None,
          display: str | None = None) -> dict:
    """Convert to fp16 (keep_io_types) and keep the first variant that loads and runs on the CPU EP.

    Tried in order: (1) fp16 weights everywhere: onnxruntime's CPU EP has no fp16 LSTM/GRU/RNN
    kernel and inserts Casts around them itself, computing them in fp32 (half the file size);
    (2) LSTM/GRU/RNN block-listed (kept float32 in the file); (3) as (2) plus, one by one, the
    nodes onnxruntime's type check names (tf2onnx Loop graphs trip the converter).
    ``keep_recurrent_float=True`` starts at (2), False stops after (1).
    """
    import re

    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError("onnxconverter-common (fp16 conversion)",
                                     install_command("onnxconverter_common")) from None
    base = list(float16.DEFAULT_OP_BLOCK_LIST)
    attempts = []
    if not keep_recurrent_float:
        attempts.append(("fp16 weights; onnxruntime casts recurrent ops to fp32", base, False))
    if keep_recurrent_float is not False:
        attempts.append(("recurrent ops kept float32 (block-listed)", base + list(RECURRENT_OPS), True))
    last = None
    for label, ops, iterate in attempts:
        nodes: list[str] = []
        for _ in range(25 if iterate else 1):
            m16 = float16.convert_float_to_float16(src_model, keep_io_types=True, op_block_list=ops,
                                                   node_block_list=list(nodes))
            onnx.save(m16, str(out))
            crash = _crashes_onnxruntime(out)
            if crash:
                last = ConversionError(f"{display or out.name}: {crash}", fmt="onnx")
                break
            try:
                _check_loads(out, feeds, display=display or out.name)
            except ConversionError as e:
                last = e
                named = [a or b for a, b in re.findall(r"of node \(([^)]*)\)|in node \(([^)]*)\)", str(e))]
                named = [n for n in named if n not in nodes]
                if not named:
                    break
                nodes.extend(named)
                continue
            facts = {"method": "onnxconverter_common.float16", "keep_io_types": True, "variant": label}
            if nodes:
                facts["node_block_list"] = len(nodes)
            return facts
    raise ConversionError(f"fp16 conversion does not load in onnxruntime (tried: "
                          f"{'; '.join(a[0] for a in attempts)}): {last}", fmt="onnx")


def _recurrent_weights_int8(model) -> dict:
    """Weight-only int8 (``DequantizeLinear``) for the LSTM/GRU/RNN nodes the onnxruntime pass
    left float (:func:`converters.onnx.quantize.quantize_recurrent_weights`); manifest facts."""
    from converters.onnx.quantize import quantize_recurrent_weights

    try:
        _, rw = quantize_recurrent_weights(model)
    except ValueError as e:  # opset < 13: no per-axis DequantizeLinear
        return {"recurrent_weights": {"skipped": str(e)}}
    if not rw["weights"]:
        return {}
    ops = sorted({f"{w['container']}/{w['op']}" if w.get("container") else w["op"] for w in rw["weights"]})
    return {"recurrent_weights": {
        "method": "int8 per output channel + DequantizeLinear (outside Scan/If bodies); computed in float32",
        "ops": ops, "tensors": len(rw["weights"]),
        "max_abs_weight_error": max(w["max_abs_error"] for w in rw["weights"]),
        "onnxruntime_load": "kept int8 by default (DequantizeLinear runs every call); the session option "
                            "session.disable_quant_qdq=1 folds it to float32 at load",
    }}


def _onnx_weight_bytes(model) -> dict[str, int]:
    """Bytes of initializers of rank >= 2 (weights), subgraph bodies included, per element type name:
    ``{"float32": n, "int8": m}``."""
    import numpy as np
    from onnx import helper

    from converters.onnx.quantize import _subgraphs

    def initializers(graph):  # main graph and Scan/If/Loop bodies (converters.onnx.recurrent)
        yield from graph.initializer
        for node in graph.node:
            for sub in _subgraphs(node):
                yield from initializers(sub)

    out: dict[str, int] = {}
    for t in initializers(model.graph):
        if len(t.dims) < 2:
            continue
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
        n = int(np.prod(t.dims)) * dt.itemsize
        out[dt.name] = out.get(dt.name, 0) + n
    return out


def check_8bit_weights(weight_bytes: dict, out_name: str, src_name: str, fmt: str) -> None:
    """An 8-bit mode's result without one 8-bit weight is the float model again: raise
    ConversionError ("not written"; callers check before writing) so it is never presented as
    quantized. ``weight_bytes``: bytes of weights per type name (``{"float32": n, "int8": m}``)."""
    if weight_bytes.get("int8", 0) or weight_bytes.get("uint8", 0):
        return
    raise ConversionError(
        f"{out_name} not written: no weight was stored in 8 bits (every weight tensor is too small for an "
        f"8-bit copy to shrink the file, or no op here has a quantized form); {src_name} is already the "
        f"smallest form of this model", fmt=fmt)


ADDED_BY = {  # what a quantization mode adds to a file, for the "not smaller" warning
    ("onnx", "int8"): "scales, zero points, DynamicQuantizeLinear / MatMulInteger / DequantizeLinear ops",
    ("onnx", "uint8"): "scales, zero points, DynamicQuantizeLinear / MatMulInteger / DequantizeLinear ops",
    ("onnx", "int8-static"): "QuantizeLinear / DequantizeLinear pairs with their scales on activations",
    ("tflite", "int8"): "a scale and zero point on every activation tensor, QUANTIZE / DEQUANTIZE ops",
    ("tflite", "dynamic"): "per-channel scales and zero points, DEQUANTIZE ops",
    ("onnx", "fp16"): "Cast nodes (float32 <-> float16) at the model's inputs and outputs (keep_io_types) and "
                      "around every op kept float32",
    ("tflite", "fp16"): "DEQUANTIZE ops that turn the float16 weights back into float32",
}


def _warn_if_not_smaller(facts: dict, out_name: str, fmt: str, mode: str, float_weights_before: int) -> None:
    """``facts["warning"]`` and a RuntimeWarning when the quantized file is not smaller, with why
    (``rnnedge quantize`` prints it; other callers see Python's warning on stderr)."""
    r = facts.get("ratio")
    if r is None or r < 1.0:
        return
    size = facts["size_before"]
    left = (facts.get("weight_bytes") or {}).get("float32", 0)
    if float_weights_before and left >= 0.5 * float_weights_before:
        why = (f"{left / 1024:.1f} of its {float_weights_before / 1024:.1f} KiB of weights are still float32: "
               f"{'; '.join(facts.get('notes') or []) or 'no quantized form for the ops that read them'}")
    else:
        what = "the fp16 conversion" if mode == "fp16" else "quantization"
        why = (f"the float weights are only {float_weights_before / 1024:.1f} KiB of the {size / 1024:.1f} KiB "
               f"file; the rest (graph, names) does not shrink and {what} adds "
               f"{ADDED_BY.get((fmt, mode), 'scales and the ops that apply them')}")
    facts["warning"] = f"{out_name} is {r:.2f}x the size of the float file (not smaller): {why}"
    import warnings

    warnings.warn(facts["warning"], RuntimeWarning, stacklevel=4)


def _quantize_onnx(folder: Path, src_name: str, out_name: str, mode: str, src_entry: dict, *, calib,
                   per_channel: bool, reduce_range: bool | None, calibration_samples: int, seed: int,
                   manifest: dict, keep_recurrent_float: bool | None = None) -> dict:
    try:
        import onnx
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    except ImportError as e:
        raise MissingDependencyError(f"ONNX quantization ({e.name})", install_command(e.name or "onnx")) from None
    src = folder / src_name
    dst = folder / out_name
    if not src.is_file():
        raise UsageError(f"{src}: listed in manifest.json but missing on disk")
    facts: dict = {"mode": mode, "source": src_name, "tool": "onnxruntime.quantization"}
    if mode in ("int8", "uint8", "int8-static"):
        if reduce_range is None:
            rr, why = default_reduce_range()
        else:
            rr, why = bool(reduce_range), "set by the caller"
        facts.update(reduce_range=rr, reduce_range_reason=why, per_channel=bool(per_channel))
    check_feeds = _onnx_sample_feeds(src, manifest, calib, 1, seed)[0]
    src_model = onnx.load(str(src))
    src_ops = _op_counts(src_model)

    with tempfile.TemporaryDirectory(prefix="rnnedge-q-") as td:
        tmp_out = Path(td) / "q.onnx"
        try:
            if mode in ("int8", "uint8"):
                wt = QuantType.QInt8 if mode == "int8" else QuantType.QUInt8
                facts.update(weight_type=wt.name, method="dynamic")
                with _quiet():
                    quantize_dynamic(str(src), str(tmp_out), weight_type=wt, per_channel=per_channel,
                                     reduce_range=rr)
            elif mode == "int8-static":
                from onnxruntime.quantization import CalibrationDataReader
                from onnxruntime.quantization.shape_inference import quant_pre_process

                pre = Path(td) / "pre.onnx"
                with _quiet():
                    try:
                        quant_pre_process(str(src), str(pre))
                        facts["pre_process"] = "quant_pre_process"
                    except Exception as e:  # symbolic shape inference can fail on Loop graphs
                        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
                        facts["pre_process"] = f"quant_pre_process(skip_symbolic_shape) after: {str(e)[:120]}"
                batches = _onnx_sample_feeds(src, manifest, calib, calibration_samples, seed + 1)

                class _Reader(CalibrationDataReader):
                    def __init__(self, feeds):
                        self._it = iter(feeds)

                    def get_next(self):
                        return next(self._it, None)

                facts.update(method="static QDQ", activation_type="QUInt8", weight_type="QInt8",
                             calibration_samples=len(batches),
                             calibration=("file" if calib is not None else "generated realistic inputs"))
                with _quiet():
                    quantize_static(str(pre), str(tmp_out), _Reader(batches), quant_format=QuantFormat.QDQ,
                                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                    per_channel=per_channel, reduce_range=rr)
            elif mode == "fp16":
                facts.update(_fp16(src_model, tmp_out, check_feeds, keep_recurrent_float, display=out_name))
            else:  # pragma: no cover - guarded by the plan
                raise UsageError(f"mode {mode!r} does not apply to onnx")
        except RnnedgeError:
            raise
        except Exception as e:
            raise_if_missing(e)
            raise ConversionError(f"{src_name} -> {out_name}: {type(e).__name__}: {str(e)[:400]}",
                                  fmt="onnx") from None
        q = onnx.load(str(tmp_out))
        _strip_value_info(q)
        if mode != "fp16":
            facts.update(_recurrent_weights_int8(q))
            if facts.get("recurrent_weights", {}).get("ops"):
                facts["method"] += f" + weight-only int8 {'/'.join(facts['recurrent_weights']['ops'])} (DequantizeLinear)"
        facts["weight_bytes"] = _onnx_weight_bytes(q)  # what is left float32 (the "not smaller" reason)
        if mode != "fp16":
            check_8bit_weights(facts["weight_bytes"], out_name, src_name, "onnx")  # before anything is written
        with atomic_path(dst) as tmp:
            onnx.save(q, str(tmp))
            _check_loads(tmp, check_feeds, display=out_name)
    dst_ops = _op_counts(q)
    facts.update(_size_facts(src, dst))
    facts["quantized_ops"] = {k: v for k, v in dst_ops.items() if k in QUANTIZED_OP_TYPES}
    if mode == "fp16":
        kept = facts.get("variant", "").startswith("recurrent ops kept")
        facts["notes"] = [f"{v} {k} op(s) " + (f"kept float32 in the file (onnxruntime's CPU EP runs {k} only in "
                                                "float32; Cast nodes convert around it)" if kept else
                          "stored fp16; onnxruntime's CPU EP casts them and computes in fp32")
                          for k, v in dst_ops.items() if k in RECURRENT_OPS]
    else:
        facts["notes"] = _float_notes(src_ops, dst_ops, mode)
    _warn_if_not_smaller(facts, out_name, "onnx", mode, _onnx_weight_bytes(src_model).get("float32", 0))
    init = {t.name for t in q.graph.initializer}
    return {
        "format": "onnx",
        "precision": mode,
        "inputs": _tensor_list([i for i in q.graph.input if i.name not in init]),
        "outputs": _tensor_list(q.graph.output),
        "opset": next((o.version for o in q.opset_import if o.domain in ("", "ai.onnx")), None),
        "quantization": facts,
        **({"batch_size": src_entry["batch_size"]} if "batch_size" in src_entry else {}),
    }


def _to_ort(folder: Path, onnx_name: str, ort_src: str, ort_name: str, onnx_entry: dict, manifest: dict,
            seed: int) -> dict:
    """``model.<mode>.ort`` from the quantized ``model.<mode>.onnx`` (onnxruntime's ORT-format tool),
    checked to load and run; its manifest entry (ratio against the float ``model.ort``)."""
    from converters.onnx.ort import convert_file

    dst = folder / ort_name
    operators = convert_file(folder / onnx_name, dst, fmt="ort")
    try:  # onnxruntime knows the ORT format by the .ort suffix: checked in place
        _check_loads(dst, _onnx_sample_feeds(folder / onnx_name, manifest, None, 1, seed)[0], display=ort_name)
    except ConversionError:
        dst.unlink()
        raise
    q = dict(onnx_entry["quantization"])
    for k in ("warning", "size_before", "size_after", "ratio"):
        q.pop(k, None)
    q.update(source=onnx_name, float_source=ort_src, tool="onnxruntime.tools.convert_onnx_models_to_ort",
             **_size_facts(folder / ort_src, dst))
    import onnx

    float_onnx = onnx.load(str(folder / onnx_entry["quantization"]["source"]), load_external_data=False)
    _warn_if_not_smaller(q, ort_name, "onnx", q["mode"], _onnx_weight_bytes(float_onnx).get("float32", 0))
    return {"format": "ort", "precision": onnx_entry["precision"], "optimization_style": "Fixed",
            "inputs": onnx_entry["inputs"], "outputs": onnx_entry["outputs"], "opset": onnx_entry.get("opset"),
            "required_operators": operators, "quantization": q,
            **({"batch_size": onnx_entry["batch_size"]} if "batch_size" in onnx_entry else {})}


def _find_quantize_tflite():
    try:
        import converters.tflite as ct
    except ImportError as e:
        raise MissingDependencyError(f"the TFLite converter ({e.name})",
                                     install_command(e.name or "build")) from None
    for name in ("quantize_tflite", "quantize"):
        fn = getattr(ct, name, None)
        if callable(fn):
            return fn
    raise ConversionError("converters.tflite has no quantize_tflite(model, mode, out_path, ...) function",
                          fmt="tflite")


def _quantize_tflite(folder: Path, src_name: str, out_name: str, mode: str, src_entry: dict, *, calib,
                     calibration_samples: int, seed: int, manifest: dict) -> dict:
    ref = folder / "reference.keras"
    if not ref.is_file():
        raise UsageError(f"{folder}: TFLite quantization needs reference.keras (export writes it)")
    fn = _find_quantize_tflite()
    from rnnedge.runtime import open_runner

    kr = open_runner(ref).load()
    model = getattr(kr, "model", None)
    if model is None:
        from rnnedge._keras import load_model

        model = load_model(str(ref))
    rep = None
    facts: dict = {"mode": mode, "source": src_name, "tool": "tf.lite.TFLiteConverter"}
    bs = src_entry.get("batch_size")
    if bs is None:
        shp = (src_entry.get("inputs") or [{}])[0].get("shape") or [None]
        bs = shp[0] if isinstance(shp[0], int) else 1
    if mode == "int8":
        from rnnedge.inputs import sample_batches, specs_from_model

        specs = specs_from_model(model, preprocessing=manifest.get("preprocessing"))
        # the artifact's static time length (if any) decides the calibration length
        seq_len = None
        for i in src_entry.get("inputs", []):
            s = i.get("shape") or []
            if len(s) >= 2 and isinstance(s[1], int):
                seq_len = s[1]
        if seq_len is None and calib is None:
            # a free length gets fixed for full integer (converters.tflite.quantize_tflite says so):
            # the model's own length when its preprocessing knows one, else 32 (not the short
            # length generated inputs default to)
            from rnnedge.inputs import DEFAULT_SEQ_LEN, primary_seq_len

            p = primary_seq_len(specs, manifest.get("preprocessing"), None)
            seq_len = p if p not in (None, DEFAULT_SEQ_LEN) else (32 if p else None)
        batches = sample_batches(specs, samples=calibration_samples, batch_size=bs, calibration=calib,
                                 seed=seed + 1, seq_len=seq_len, preprocessing=manifest.get("preprocessing"))
        names = [s.name for s in specs]
        rep = [[b[n] for n in names] for b in batches]
        facts.update(calibration_samples=len(batches) * bs,
                     calibration=("file" if calib is not None else "generated realistic inputs"))
    dst = folder / out_name
    kwargs = {}
    import inspect

    params = inspect.signature(fn).parameters
    if "representative_data" in params:
        kwargs["representative_data"] = rep
    if "batch_size" in params:
        kwargs["batch_size"] = bs
    if "seq_len" in params:
        kwargs["seq_len"] = src_entry.get("seq_len")
    if "lstm_mode" in params and src_entry.get("lstm_mode"):
        kwargs["lstm_mode"] = src_entry["lstm_mode"]
    if "allow_flex" in params:
        kwargs["allow_flex"] = bool(src_entry.get("flex") or src_entry.get("allow_flex"))
    try:
        res = fn(model, mode, dst, **kwargs)
    except RnnedgeError:
        raise
    except Exception as e:
        raise_if_missing(e)
        raise ConversionError(f"{src_name} -> {out_name}: {type(e).__name__}: {str(e)[:400]}",
                              fmt="tflite") from None
    if not dst.is_file():
        raise ConversionError(f"converters.tflite did not write {out_name}", fmt="tflite")
    entry = dict(res) if isinstance(res, dict) and "format" in res else {}
    if isinstance(res, dict) and out_name in res and isinstance(res[out_name], dict):
        entry = dict(res[out_name])
    facts.update(_size_facts(folder / src_name, dst))
    from converters.tflite.weights import weight_bytes

    facts["weight_bytes"] = entry.pop("weight_bytes", None) or weight_bytes(dst.read_bytes())
    for k, fk in (("quantization_method", "method"), ("weights_rewritten", "weights_rewritten"),
                  ("quantization_notes", "notes")):
        if k in entry:
            facts[fk] = entry.pop(k)
    _warn_if_not_smaller(facts, out_name, "tflite", mode, weight_bytes((folder / src_name).read_bytes()).get("float32", 0))
    entry.setdefault("format", "tflite")
    entry["precision"] = mode
    entry.setdefault("batch_size", bs)
    if "inputs" not in entry or "outputs" not in entry:
        from rnnedge.runtime import open_runner as _open

        with _open(dst) as r:
            entry.setdefault("inputs", [t.to_dict() for t in r.inputs])
            entry.setdefault("outputs", [t.to_dict() for t in r.outputs])
    q = entry.get("quantization")
    q = dict(q) if isinstance(q, dict) else {}
    q.update(facts)
    entry["quantization"] = q
    return entry
