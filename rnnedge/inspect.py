"""``inspect``: layers, shapes and parameter counts of a spec, preset or ``.keras`` model; on an
export folder, also how each layer was converted (``conversion``: native / fallback per artifact,
from ``manifest.json``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _shape(t) -> list:
    return [None if d is None else int(d) for d in t.shape]


def inspect_model(source) -> dict[str, Any]:
    """Layers of ``source`` (spec, preset, ``.keras``, or an export folder: its ``reference.keras``
    plus, per layer, the path that converted it in every artifact that records one)."""
    if isinstance(source, (str, Path)) and Path(source).is_dir() and (Path(source) / "manifest.json").is_file():
        return inspect_export(Path(source))  # an export folder (a TF.js model's folder is a model)
    from rnnedge.models import resolve

    lm = resolve(source)
    m = lm.model
    rows = []
    for layer in m.layers:
        outs = layer.output if hasattr(layer, "_inbound_nodes") and layer._inbound_nodes else None
        outs = outs if isinstance(outs, (list, tuple)) else [outs] if outs is not None else []
        row = {"name": layer.name, "type": type(layer).__name__,
               "output_shapes": [_shape(o) for o in outs],
               "params": int(layer.count_params()) if layer.built else 0}
        inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
        if inner is not None:
            row["wraps"] = type(inner).__name__
        cfg = layer.get_config()
        for k in ("units", "return_sequences", "return_state", "go_backwards", "mask_zero", "merge_mode",
                  "reset_after", "activation", "recurrent_activation"):
            if k in cfg:
                row.setdefault("config", {})[k] = cfg[k]
        if inner is not None:
            icfg = inner.get_config()
            for k in ("units", "return_sequences", "go_backwards", "reset_after"):
                if k in icfg:
                    row.setdefault("config", {})[f"layer.{k}"] = icfg[k]
        rows.append(row)
    return {
        "name": m.name,
        "source": lm.source,
        "inputs": [{"name": t.name, "shape": _shape(t), "dtype": str(t.dtype)} for t in m.inputs],
        "outputs": [{"name": getattr(t, "name", f"output_{i}"), "shape": _shape(t), "dtype": str(t.dtype)}
                    for i, t in enumerate(m.outputs)],
        "layers": rows,
        "params": {"total": int(m.count_params()),
                   "trainable": int(sum(int(w.numpy().size) for w in m.trainable_weights)),
                   "non_trainable": int(sum(int(w.numpy().size) for w in m.non_trainable_weights))},
        "preprocessing": lm.preprocessing,
    }


def inspect_export(folder: Path) -> dict[str, Any]:
    """:func:`inspect_model` of ``folder/reference.keras``, each row with ``conversion``
    (artifact -> ``native``/``fallback``), and ``conversion`` / ``notes`` per artifact: every layer
    and Keras operation the converter met (inner layers of wrappers included)."""
    from rnnedge.errors import UsageError
    from rnnedge.manifest import load_manifest

    man = load_manifest(folder)
    ref = folder / "reference.keras"
    if not man or not ref.is_file():
        raise UsageError(f"{folder}: not an export folder (needs manifest.json and reference.keras)")
    info = inspect_model(str(ref))
    info["source"] = {"kind": "export", "path": str(folder), "model": man.get("source", {})}
    conv, notes = {}, {}
    for name, entry in man.get("artifacts", {}).items():
        layers = entry.get("layers")  # per layer {name, class, path} (ONNX/ORT); TF.js lists class names
        if isinstance(layers, list) and layers and all(isinstance(l, dict) and "path" in l for l in layers):
            conv[name] = layers
            if entry.get("notes"):
                notes[name] = entry["notes"]
    for row in info["layers"]:
        paths = {a: l["path"] for a, ls in conv.items() for l in ls if l["name"] == row["name"]}
        if paths:
            row["conversion"] = paths
    info["conversion"] = conv
    info["notes"] = notes
    return info
