"""``export``: a spec, preset, ``.keras`` or TF.js model -> artifacts in a folder, with a manifest.

The folder always receives ``reference.keras`` (the model the artifacts are checked against),
the format's files, and ``manifest.json``; a TF.js model also leaves its original in
``source.tfjs/`` (the reference ``validate`` uses for it when Node is installed). Converters live in :mod:`converters` (one registry per
format); this module only orchestrates, so every format gets the same folder layout, manifest
fields and parity gate.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional

from rnnedge.errors import UsageError


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: dict[str, dict]
    manifest: dict
    validation: Optional[dict] = None
    paths: list[Path] = field(default_factory=list)


def save_reference(model, out_dir: Path) -> Path:
    from rnnedge.manifest import atomic_path

    ref = out_dir / "reference.keras"
    with atomic_path(ref) as tmp:
        k = tmp.with_suffix(".keras")
        model.save(k)
        k.replace(tmp)
    return ref


def export(source, fmt: str | Iterable[str] = "onnx", out_dir: str | Path = "export", *,
           opset: Optional[int] = None, batch_size: Optional[int] = None, seq_len: Optional[int] = None,
           allow_flex: bool = False, quantize: Iterable[str] = (), streaming: bool = False,
           validate: bool = True, extra: Optional[dict] = None, seed: Optional[int] = None) -> ExportResult:
    """Export ``source`` to one or several formats (``"onnx"``, ``"ort"``, ``"tflite"``, ``"tfjs"``).

    Returns an :class:`ExportResult`; files are written atomically and recorded in
    ``out_dir/manifest.json`` (hashes, shapes, versions, and parity when ``validate``).
    """
    from converters.registry import ExportOptions, get_exporter
    from converters.tfjs.importer import REFERENCE_DIR as TFJS_ORIGINAL
    from rnnedge.manifest import load_manifest, new_manifest, package_versions, save_manifest, update_manifest
    from rnnedge.models import resolve

    fmts = [fmt] if isinstance(fmt, str) else list(fmt)
    if not fmts:
        raise UsageError("no format given")
    exporters = [(f, get_exporter(f)) for f in fmts]  # fail on an unknown format before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm = resolve(source, seed=seed)
    man = load_manifest(out)
    if not man:
        man = new_manifest(lm.source, lm.preprocessing)
    man["source"] = lm.source
    man["preprocessing"] = lm.preprocessing
    if lm.spec is not None:
        man["spec"] = lm.spec
    man["model"] = {
        "name": lm.model.name,
        "inputs": [{"name": t.name, "shape": [None if d is None else int(d) for d in t.shape],
                    "dtype": str(t.dtype)} for t in lm.model.inputs],
        "outputs": [{"shape": [None if d is None else int(d) for d in t.shape], "dtype": str(t.dtype)}
                    for t in lm.model.outputs],
    }
    vocab = {}
    if lm.spec:
        vocab = {i["name"]: i.get("vocab_size") for i in lm.spec.get("inputs", []) if i.get("vocab_size")}
    if vocab:
        man["model"]["vocab_sizes"] = vocab
    if "tfjs" not in lm.extra and (man.get("artifacts") or {}).pop(TFJS_ORIGINAL, None) is not None:
        shutil.rmtree(out / TFJS_ORIGINAL, ignore_errors=True)  # an earlier export's TF.js original
    man["versions"] = package_versions("rnnedge", "keras", "tensorflow", "tensorflow-cpu", "tf2onnx", "onnx",
                                       "onnxruntime", "ai-edge-litert", "numpy")
    save_manifest(out, man)
    save_reference(lm.model, out)
    update_manifest(out, artifacts={"reference.keras": {"format": "keras", "role": "reference"}})
    if "tfjs" in lm.extra:  # the TF.js original, for `validate --reference tfjs`
        from converters.tfjs.importer import write_reference
        from rnnedge.runtime.keras import output_names

        update_manifest(out, artifacts=write_reference(lm.extra["tfjs"], out, output_names(lm.model)))
    # ONNX/TFLite quantized variants come from rnnedge.quantization (one place, after the float
    # export); TF.js stores quantized weights in its own writer, so its exporter gets the modes.
    q_modes = list(quantize)
    options = ExportOptions(opset=opset, batch_size=batch_size, seq_len=seq_len, allow_flex=allow_flex,
                            quantize=[], streaming=streaming, extra=dict(extra or {}))
    entries: dict[str, dict] = {}
    for f, exporter in exporters:
        opts = replace(options, quantize=q_modes) if f == "tfjs" else options
        got = exporter(lm.model, out, opts)
        update_manifest(out, artifacts=got)
        entries.update(got)
    q_fmts = [f for f in ("onnx", "tflite") if f in fmts]
    if q_modes and q_fmts:
        from rnnedge.quantization import MODES as Q_MODES
        from rnnedge.quantization import quantize as _quantize

        bad = [m for m in q_modes if m not in Q_MODES]
        if bad:
            raise UsageError(f"unknown quantization mode(s) {bad}; choose from: {', '.join(Q_MODES)}")
        got = _quantize(out, q_modes, formats=q_fmts)
        errors = {n: e["error"] for n, e in got.items() if "error" in e}
        if errors:
            from rnnedge.errors import ConversionError

            raise ConversionError("quantization failed: " + "; ".join(f"{n}: {m}" for n, m in errors.items()))
        entries.update(got)
    if streaming:
        from converters.streaming import FORMATS as STEP_FORMATS
        from converters.streaming import export_streaming

        step_fmts = [f for f in fmts if f in STEP_FORMATS] or list(STEP_FORMATS)
        got = export_streaming(lm.model, out, formats=tuple(step_fmts), options=options, write_manifest=False)
        update_manifest(out, artifacts=got)
        entries.update(got)
    report = None
    if validate:
        try:
            from rnnedge.validation import validate as _validate
        except ImportError:
            _validate = None
        if _validate is not None:
            report = _validate(out, artifacts=list(entries))
    man = load_manifest(out)
    entries = {n: man["artifacts"].get(n, e) for n, e in entries.items()}  # with sha256/size (and parity)
    return ExportResult(out, entries, man, report, [out / n for n in entries])
