"""``inspect``: layers, shapes and parameter counts of a spec, preset or ``.keras`` model."""
from __future__ import annotations

from typing import Any


def _shape(t) -> list:
    return [None if d is None else int(d) for d in t.shape]


def inspect_model(source) -> dict[str, Any]:
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
