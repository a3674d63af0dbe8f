"""TFLite export: builtin ops only, fixed batch size, runs in tflite-runtime / LiteRT on a Pi.

``export_tflite(model, out_dir, options)`` writes ``model.tflite`` (and ``model.<mode>.tflite`` for
each of ``options.quantize``) and returns their manifest entries. Options read:

* ``batch_size`` (default 1), ``seq_len`` (default None = dynamic where LiteRT can resize),
* ``allow_flex`` (default False: a model that needs Flex fails with ConversionError),
* ``quantize``: list of "dynamic", "fp16", "int8",
* ``extra["tflite_lstm"]``: "auto" (default: at batch 1 the fused UNIDIRECTIONAL_SEQUENCE_LSTM
  where possible, WHILE elsewhere; at batch > 1 WHILE, or unrolled ops when the length is fixed
  (<= 128), the batch >= 32 and a recurrent layer returns sequences; see
  ``convert._auto_lstm_mode``), "while", "fused", "unroll"; the entry's ``lstm_mode`` says what the
  file holds and ``lstm_mode_reason`` why,
* ``extra["calibration_data"]``: list of samples (each a list of arrays, one per input) for int8,
* ``extra["fallback_seq_len"]`` (default 32): the fixed length used when the model does not give
  Keras's result in LiteRT with a free sequence length (a warning, also in ``notes``).

Every file gives the same result on each ``invoke()`` with no reset (``converters.tflite.rewrite``):
the entry's ``reset_variables`` is False and ``self_check.repeat_max_abs_diff`` 0.

TensorFlow is imported only inside the functions.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from converters.registry import ExportOptions, register_format
from rnnedge.errors import UsageError

QUANT_MODES = ("dynamic", "fp16", "int8")
TOL_FLOAT32 = 1e-5

__all__ = ["export_tflite", "quantize_tflite", "sample_inputs", "representative_dataset", "QUANT_MODES"]


# --------------------------------------------------------------------- inputs
def _vocab_and_mask(model) -> tuple[int | None, float | None]:
    vocab, mask_value = None, None

    def walk(layer):
        nonlocal vocab, mask_value
        cls = type(layer).__name__
        if cls == "Embedding":
            vocab = min(vocab or layer.input_dim, layer.input_dim)
        if cls == "Masking":
            mask_value = float(layer.mask_value)
        for sub in getattr(layer, "layers", []) or []:
            walk(sub)

    walk(model)
    return vocab, mask_value


def sample_inputs(model, shapes: list[list], dtypes: list[str], *, seq_len: int | None = None,
                  rng=None, pad: int | None = None) -> list[np.ndarray]:
    """Inputs like real ones: token ids in [1, vocab) padded with 0 at the end; floats in
    [-1, 1] (the tail set to the Masking value when the model has a Masking layer)."""
    rng = rng or np.random.default_rng(0)
    vocab, mask_value = _vocab_and_mask(model)
    out = []
    for shp, dt in zip(shapes, dtypes):
        shp = list(shp)
        if len(shp) >= 2 and shp[1] is None:
            shp[1] = seq_len or 8
        shp = [d if d is not None else 1 for d in shp]
        T = shp[1] if len(shp) >= 2 else 0
        n_pad = pad if pad is not None else (T // 3 if T >= 3 else 0)
        if "int" in dt:
            x = rng.integers(1, max(2, vocab or 10), size=shp).astype(dt)
            if n_pad:
                x[:, T - n_pad:] = 0
        else:
            x = rng.uniform(-1, 1, size=shp).astype(dt)
            if n_pad and mask_value is not None:
                x[:, T - n_pad:] = mask_value
        out.append(x)
    return out


def representative_dataset(model, shapes, dtypes, n: int = 16, seq_len: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [sample_inputs(model, shapes, dtypes, seq_len=seq_len, rng=rng,
                          pad=int(rng.integers(0, max(1, (seq_len or 8) // 2))))
            for _ in range(n)]


# --------------------------------------------------------------------- running
def _io_facts(content: bytes, traced) -> tuple[Any, list[dict], list[dict], list[int], list[int]]:
    from rnnedge.tflite_compat import make_interpreter

    it, _ = make_interpreter(content, num_threads=1)
    ins, outs = it.get_input_details(), it.get_output_details()
    try:
        sig = it._get_full_signature_list()["serving_default"]  # {inputs: {name: idx}, outputs: ...}
        in_idx = {v: k for k, v in sig["inputs"].items()}
        out_idx = {v: k for k, v in sig["outputs"].items()}
    except Exception:  # noqa: BLE001 - older runtimes
        in_idx, out_idx = {}, {}

    def sig_name(d, table, candidates):
        n = table.get(d["index"])
        if n:
            return n
        for c in candidates:
            if c in d["name"]:
                return c
        return d["name"]

    def facts(details, idx, sig_names, keras_names):
        """Manifest entries for the interpreter's tensors and their Keras positions."""
        entries, order = [], []
        for d in details:
            sn = sig_name(d, idx, sig_names)
            k = sig_names.index(sn) if sn in sig_names else len(order)
            order.append(k)
            entries.append({"name": d["name"], "signature_name": sn,
                            "keras_name": keras_names[k] if k < len(keras_names) else None,
                            "keras_index": k,
                            "shape": [int(x) if x >= 0 else None for x in d["shape_signature"]],
                            "dtype": np.dtype(d["dtype"]).name})
        return entries, order

    inputs, in_order = facts(ins, in_idx, traced.sig_input_names, traced.input_names)
    outputs, out_order = facts(outs, out_idx, traced.sig_output_names, traced.output_names)
    return it, inputs, outputs, in_order, out_order


def _keras_outputs(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    y = model(xs if len(xs) > 1 else xs[0], training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(t) for t in ys]


def _tflite_outputs(it, xs_keras_order, in_order, out_order) -> list[np.ndarray]:
    from rnnedge.tflite_compat import run_interpreter

    feeds = [xs_keras_order[k] for k in in_order]
    outs = run_interpreter(it, feeds)
    res: list = [None] * len(outs)
    for pos, k in enumerate(out_order):
        res[k] = outs[pos]
    return res


def self_check(model, content: bytes, traced, seq_lens: list[int | None]) -> dict:
    """Max abs error vs Keras in LiteRT for each sequence length (and padded/unpadded inputs).

    Also invokes the interpreter a second time on the same inputs, with no reset:
    ``repeat_max_abs_diff`` is how far that second result is from the first (0 for a stateless file;
    a file keeping state across ``invoke()`` is wrong in a plain interpreter, so it counts as error).
    """
    it, _, _, in_order, out_order = _io_facts(content, traced)
    rng = np.random.default_rng(1)
    errs, repeat = {}, 0.0
    for T in seq_lens:
        xs = sample_inputs(model, traced.input_shapes, traced.input_dtypes, seq_len=T, rng=rng)
        ref = _keras_outputs(model, xs)
        got = _tflite_outputs(it, xs, in_order, out_order)
        it.invoke()
        again = [it.get_tensor(d["index"]) for d in it.get_output_details()]
        repeat = max([repeat] + [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(got[k], np.float64))))
                                 if a.size else 0.0 for a, k in zip(again, out_order)])
        errs[str(T if T is not None else traced.seq_len)] = float(max(
            np.max(np.abs(np.asarray(g, np.float64) - r)) if r.size else 0.0 for g, r in zip(got, ref)))
    return {"max_abs_error": max([*errs.values(), repeat]), "per_seq_len": errs, "repeat_max_abs_diff": repeat,
            "runtime": "ai_edge_litert"}


# --------------------------------------------------------------------- exporter
def _versions() -> dict:
    from rnnedge.manifest import package_versions

    return package_versions("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "tf-keras")


def _trace_checked(model, options: ExportOptions, lstm_mode: str):
    """Convert and check end to end in LiteRT against Keras; take the first candidate that matches.

    Candidates, in order: the asked LSTM mode with a free sequence length, then (for "auto")
    WHILE with a free length, then the same two with a fixed length. The free-length failures
    seen with TF 2.21/Keras 3.15 (0.27..0.55 for BiLSTM -> TimeDistributed(Dense)) came from
    Keras's TimeDistributed in a graph with a free time axis, fixed while tracing
    (``convert._time_distributed_over_time``); nothing is trusted without the check anyway. A fixed
    length is a warning (``traced.warnings``: the CLI prints it), and every fallback is in ``notes``.
    """
    from converters.tflite.convert import convert, trace

    bs = options.batch_size or 1
    modes = [lstm_mode] + (["while"] if lstm_mode == "auto" else [])
    probe = trace(model, batch_size=bs, seq_len=options.seq_len, lstm_mode=modes[0])
    free = options.seq_len is None and any(len(s) >= 2 and s[1] is None for s in probe.input_shapes)
    fixed = options.seq_len or options.extra.get("fallback_seq_len", 32)
    lengths: list[int | None] = ([None] if free else []) + [fixed]
    if not free and options.seq_len is None:
        lengths = [None]  # static length in the model itself (or no time axis)
    failures: list[str] = []
    last = None
    for T in lengths:
        for mode in modes:
            traced = probe if (T == options.seq_len and mode == modes[0]) else \
                trace(model, batch_size=bs, seq_len=T, lstm_mode=mode)
            content = convert(traced, model, allow_flex=options.allow_flex)
            if options.allow_flex and any(o["flex"] for o in _ops(content)):
                return traced, content, {"skipped": "the model needs the Flex delegate (not in LiteRT's "
                                                    "Python package, absent on a Pi)", "max_abs_error": None}
            try:
                lens = [6, 9] if (T is None and free) else [traced.seq_len]
                check = self_check(model, content, traced, lens)
                err = check["max_abs_error"]
            except Exception as e:  # noqa: BLE001 - e.g. LiteRT refuses to resize
                check, err = {"error": str(e).splitlines()[0][:200], "max_abs_error": None}, None
            last = (traced, content, check)
            if err is not None and err <= TOL_FLOAT32:
                if mode != modes[0] and failures:  # auto's first candidate failed the check
                    traced.lstm_reason = f"auto: the first candidate did not match Keras ({failures[0]}): WHILE"
                traced.notes.extend(failures)
                if T is not None and free:
                    msg = (f"sequence length fixed to {T}: no free-length TFLite candidate matched Keras "
                           f"({'; '.join(failures)}); inputs must have exactly {T} steps (--seq-len to "
                           "choose the length)")
                    traced.notes.append(msg)
                    traced.warnings.append(msg)
                return traced, content, check
            failures.append(f"{traced.lstm_mode}, seq_len={T or 'free'}: "
                            + (f"max error {err:.2e}" if err is not None else check["error"]))
    traced, content, check = last
    traced.notes.extend(failures)
    return traced, content, check


def _effective_mode(asked: str, ops: list[dict]) -> str:
    """What the file really holds: "fused" only when a fused LSTM op is there."""
    names = {o["name"] for o in ops}
    if "UNIDIRECTIONAL_SEQUENCE_LSTM" in names or "BIDIRECTIONAL_SEQUENCE_LSTM" in names:
        return "fused"
    if "WHILE" in names:
        return "while"
    return "unroll" if asked == "unroll" else "none"


def _ops(content: bytes) -> list[dict]:
    from rnnedge.tflite_compat import list_ops

    return list_ops(content)


def _entry(content: bytes, traced, check: dict | None, options: ExportOptions, quant: str | None) -> dict:
    from rnnedge.tflite_compat import check_compat, list_ops, persistent_variables, warn_if_legacy_incompatible

    _, inputs, outputs, _, _ = _io_facts(content, traced)
    ops = list_ops(content)
    compat = check_compat(content)
    entry: dict[str, Any] = {
        "format": "tflite",
        "quantization": quant or "float32",
        "batch_size": options.batch_size or 1,
        "seq_len": traced.seq_len,
        "inputs": inputs,
        "outputs": outputs,
        "ops": [{"name": o["name"], "version": o["version"]} for o in ops],
        "custom_ops": [o["name"] for o in ops if o["custom"]],
        "flex": any(o["flex"] for o in ops),
        "compat": compat,
        "lstm_mode": _effective_mode(traced.lstm_mode, ops),
        "lstm_mode_reason": traced.lstm_reason or None,
        # True only for a file keeping state in variable tensors across invoke(): an app would
        # have to call reset_all_variables() before each run (rnnedge's rewrite leaves none)
        "reset_variables": bool(persistent_variables(content)),
        "notes": list(traced.notes),
        "self_check": check,
        "versions": _versions(),
    }
    if quant == "int8":
        entry["int8_io"] = "float32 input/output (integer kernels inside, float fallback where none)"
    name = f"model.{quant}.tflite" if quant else "model.tflite"
    for msg in traced.warnings if quant is None else []:  # once per export, not per variant
        warnings.warn(f"{name}: {msg}", RuntimeWarning, stacklevel=3)
    w = warn_if_legacy_incompatible(compat, name)
    if traced.warnings or w:
        entry["warning"] = "; ".join(traced.warnings + ([w] if w else []))
    return entry


def _write(path: Path, content: bytes) -> None:
    from rnnedge.manifest import write_bytes_atomic

    write_bytes_atomic(path, content)


def quantize_tflite(model, mode: str, out_path, representative_data=None, *, batch_size: int = 1,
                    seq_len: int | None = None, lstm_mode: str = "auto", allow_flex: bool = False,
                    n_calibration: int = 16, traced=None) -> dict:
    """Write a quantized .tflite of a Keras model and return its manifest entry.

    ``mode``: "dynamic" (dynamic-range int8 weights), "fp16" (float16 weights), "int8" (full
    integer with a representative dataset; float32 input/output). ``representative_data``: a list
    of samples, each a list of arrays (one per model input, batch ``batch_size``); when None it is
    generated from the input spec (token ids inside the vocabulary, padded like real inputs;
    floats in [-1, 1]). The entry's ``self_check`` holds the max abs error vs Keras in LiteRT.

    Models with a ``WHILE`` loop (every GRU / SimpleRNN, masked LSTMs) keep it in "int8": TF 2.21's
    calibrator crashes on loops and unrolling made files larger than float, so their weights become
    int8 constants + ``DEQUANTIZE`` (:mod:`converters.tflite.weights`, activations float32, entry
    ``quantization_method: "weight-only int8"``). "dynamic" runs the converter's dynamic-range pass,
    then the same rewrite for the weights it left float (under 1024 elements). The entry's
    ``weight_bytes`` gives the bytes of weights per type, ``weights_rewritten`` what the rewrite did.
    A "dynamic"/"int8" result without one int8 weight raises ConversionError and writes nothing.
    """
    from converters.tflite.convert import convert, trace
    from converters.tflite.weights import quantize_weights, weight_bytes
    from rnnedge.tflite_compat import list_ops

    if mode not in QUANT_MODES:
        raise UsageError(f"unknown TFLite quantization mode {mode!r}; choose {', '.join(QUANT_MODES)}")
    if traced is None:
        traced = trace(model, batch_size=batch_size, seq_len=seq_len, lstm_mode=lstm_mode)
    notes: list[str] = []
    fixed_warning = None
    rewrite = None
    method = {"dynamic": "dynamic-range (converter)", "fp16": "float16 weights (converter)",
              "int8": "full integer (converter, calibrated)"}[mode]
    content = None
    if mode == "int8":
        float_content = convert(traced, model, allow_flex=allow_flex)
        if any(o["name"] == "WHILE" for o in list_ops(float_content)):
            content, rewrite = quantize_weights(float_content)
            method = "weight-only int8"
            notes.append("int8: WHILE loop kept (TF 2.21's full-integer calibrator crashes on WHILE loops; "
                         "unrolling made files larger than float): weights int8 + DEQUANTIZE, activations float32")
        else:
            # The calibrator crashes (segfault, TF 2.21) on models with a free sequence length:
            # full-integer models get a fixed one (that of the calibration data, else seq_len, else 32).
            rep_T = None
            if representative_data is not None:
                first = np.asarray(list(representative_data)[0][0])
                rep_T = int(first.shape[1]) if first.ndim >= 2 else None
            fixed = seq_len or traced.seq_len or rep_T or 32
            if traced.seq_len is None and any(len(s) >= 2 and s[1] is None for s in traced.input_shapes):
                fixed_warning = (f"{Path(out_path).name}: sequence length fixed to {fixed} (TF 2.21's full-integer "
                                 "calibrator needs a fixed length; the float file keeps a free one): feed "
                                 f"{fixed} steps, or quantize with --calibration data of the length you need")
                notes.append(fixed_warning.split(": ", 1)[1])
            if traced.seq_len != fixed:
                traced = trace(model, batch_size=batch_size, seq_len=fixed, lstm_mode=lstm_mode)
            if representative_data is None:
                representative_data = representative_dataset(model, traced.input_shapes, traced.input_dtypes,
                                                             n=n_calibration, seq_len=traced.seq_len or 8)
    if content is None:
        content = convert(traced, model, allow_flex=allow_flex, quantize=mode,
                          representative_data=representative_data)
    if mode == "dynamic":
        content, rewrite = quantize_weights(content)
    out_path = Path(out_path)
    wbytes = weight_bytes(content)
    if mode in ("dynamic", "int8"):
        from rnnedge.quantization import check_8bit_weights

        check_8bit_weights(wbytes, out_path.name, "the float model", "tflite")
    _write(out_path, content)
    try:
        check = self_check(model, content, traced, [traced.seq_len or 8])
    except Exception as e:  # noqa: BLE001 - a quantized model that does not run is reported
        check = {"error": str(e).splitlines()[0][:300]}
    opts = ExportOptions(batch_size=batch_size, seq_len=traced.seq_len)
    entry = _entry(content, traced, check, opts, mode)
    entry["quantization_method"] = method
    if notes:
        entry["quantization_notes"] = notes
    if method == "weight-only int8":
        entry["int8_io"] = "float32 input/output and kernels (weights stored int8, dequantized once by DEQUANTIZE)"
    entry["weight_bytes"] = wbytes
    if fixed_warning:  # said at the terminal (rnnedge quantize / export print entry warnings)
        entry["warning"] = "; ".join(w for w in (entry.get("warning"), fixed_warning) if w)
    if rewrite is not None:
        entry["weights_rewritten"] = {"int8_dequantize": len(rewrite["weights"]),
                                      "kept_float": len(rewrite["kept_float"]),
                                      "max_abs_weight_error": max((w["max_abs_error"] for w in rewrite["weights"]),
                                                                  default=None)}
    return entry


@register_format("tflite")
def export_tflite(model, out_dir, options: ExportOptions) -> dict[str, dict]:
    out_dir = Path(out_dir)
    lstm_mode = options.extra.get("tflite_lstm", "auto")
    traced, content, check = _trace_checked(model, options, lstm_mode)
    if lstm_mode == "auto":
        lstm_mode = traced.lstm_mode
    if (check.get("max_abs_error") or 0.0) > TOL_FLOAT32:
        traced.notes.append(f"self-check above {TOL_FLOAT32}: {check['max_abs_error']:.3e}")
    _write(out_dir / "model.tflite", content)
    entries = {"model.tflite": _entry(content, traced, check, options, None)}
    for mode in options.quantize or []:
        entries[f"model.{mode}.tflite"] = quantize_tflite(
            model, mode, out_dir / f"model.{mode}.tflite",
            representative_data=options.extra.get("calibration_data"),
            batch_size=options.batch_size or 1, seq_len=traced.seq_len, lstm_mode=lstm_mode,
            allow_flex=options.allow_flex, traced=traced)
    return entries
