"""Write a Keras 3 functional/Sequential model as a TF.js layers model (model.json + shards).

The tensorflowjs Python converter is unmaintained and does not install beside TF 2.21, so
rnnedge writes the format directly::

    model.json = {"format": "layers-model", "generatedBy", "convertedBy",
                  "modelTopology": {"class_name": "Functional", "config": {...Keras 2 form...},
                                    "keras_version", "backend"},
                  "weightsManifest": [{"paths": ["group1-shard1of1.bin"],
                                       "weights": [{"name", "shape", "dtype"[, "quantization"]}]}],
                  "userDefinedMetadata": {"rnnedge": {inputs, outputs, custom_layers}}}

Weights are little-endian, concatenated in manifest order and cut into 4 MB shards like the
official converter. Per-layer translation lives in :mod:`converters.tfjs.layers`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.registry import functional_graph
from converters.tfjs.layers import (
    CUSTOM_CLASSES,
    MASK_KEEP,
    MASK_MAKE,
    MASK_SOURCES,
    RNN_CLASSES,
    RNN_GUARD,
    TFJS_LAYERS,
    ZERO_MASKED_STEPS,
    Ctx,
)
from rnnedge.errors import ConversionError

SHARD_BYTES = 4 * 1024 * 1024
QUANT_ALIASES = {"float16": "float16", "fp16": "float16", "f16": "float16",
                 "uint8": "uint8", "u8": "uint8", "int8": "uint8"}


@dataclass
class TfjsModel:
    model_json: dict
    shards: list[tuple[str, bytes]]
    inputs: list[dict]
    outputs: list[dict]
    layers: list[str]                      # TF.js class names, in graph order
    custom_layers: list[str] = field(default_factory=list)
    weight_dtype: str = "float32"
    weights_bytes: int = 0
    num_weights: int = 0


def _flat_tensors(obj) -> list:
    from keras import KerasTensor

    out = []
    if isinstance(obj, KerasTensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            out.extend(_flat_tensors(o))
    elif isinstance(obj, dict):
        for o in obj.values():
            out.extend(_flat_tensors(o))
    return out


def _tensor_dtype(dt: str) -> str:
    dt = str(dt)
    if "int" in dt:
        return "int32"
    if dt == "bool":
        return "bool"
    return "float32"


def build(model, *, quantize: str | None = None, model_name: str | None = None) -> TfjsModel:
    """Translate ``model`` to TF.js layers format in memory (no files written)."""
    import keras
    from keras.src.layers.layer import Layer

    quant = None
    if quantize:
        quant = QUANT_ALIASES.get(str(quantize).lower())
        if quant is None:
            raise ConversionError(
                f"TF.js weight quantization {quantize!r} is not supported; use float16 or uint8",
                fmt="tfjs")
    f = functional_graph(model, "tfjs")
    nodes = [n for d in sorted(f._nodes_by_depth, reverse=True) for n in f._nodes_by_depth[d]]

    # Keras 3 records mask computations as raw ops (Embedding -> NotEqual, Masking -> NotEqual
    # + Any) whose results feed only `mask=` kwargs. TF.js recomputes masks itself
    # (computeMask), so such op nodes are dropped; any other raw op is refused.
    consumers: dict[int, list[tuple[object, bool]]] = {}   # id(tensor) -> [(node, as_mask)]
    for n in nodes:
        for k, v in n.arguments.kwargs.items():
            for t in _flat_tensors(v):
                consumers.setdefault(id(t), []).append((n, k == "mask"))
        for t in _flat_tensors(n.arguments.args):
            consumers.setdefault(id(t), []).append((n, False))
    model_outputs = {id(t) for t in f.outputs}
    mask_nodes: set[int] = set()
    for n in reversed(nodes):  # consumers before producers
        if isinstance(n.operation, Layer):
            continue
        if all(id(t) not in model_outputs and consumers.get(id(t)) and all(
                as_mask or id(c) in mask_nodes for c, as_mask in consumers[id(t)])
               for t in n.outputs):
            mask_nodes.add(id(n))

    # TF.js's executor leaks masks / initialState between layers: guard every RNN in graphs
    # that have either (see RnnedgeRNNGuard in rnnedge_layers.js)
    has_masks = any(type(n.operation).__name__ in MASK_SOURCES for n in nodes)
    has_states = any(_flat_tensors(n.arguments.kwargs.get("initial_state")) for n in nodes)
    guard_rnns = has_masks or has_states

    refs: dict[int, list] = {}       # id(tensor) -> [layer_name, node_index, tensor_index]
    masked: dict[int, bool] = {}     # id(tensor) -> a Keras mask travels with it
    layer_entries: dict[str, dict] = {}
    order: list[str] = []
    node_count: dict[str, int] = {}
    weights: list[tuple[str, np.ndarray]] = []
    seen_layers: set[str] = set()
    custom: set[str] = set()

    def add_entry(name, class_name, config, before=None):
        if name not in layer_entries:
            layer_entries[name] = {"class_name": class_name, "config": config, "name": name,
                                   "inbound_nodes": []}
            order.insert(order.index(before) if before in order else len(order), name)
        return layer_entries[name]

    for n in nodes:
        op = n.operation
        if not isinstance(op, Layer):
            if id(n) in mask_nodes:
                continue  # a mask computation: TF.js recomputes masks itself (computeMask)
            raise ConversionError(
                f"operation '{op.name}' ({type(op).__name__}) is a raw keras.ops call in the model "
                "graph; the TF.js export needs Keras layers only", layer=op.name, fmt="tfjs")
        if isinstance(op, keras.Model):
            raise ConversionError(
                f"layer '{op.name}' is a nested model; flatten it before the TF.js export",
                layer=op.name, fmt="tfjs")
        cls = type(op).__name__
        # data inputs: positional args then initial_state (TF.js RNNs split [x, *states])
        ins = _flat_tensors(n.arguments.args)
        kw = dict(n.arguments.kwargs)
        explicit_mask = _flat_tensors(kw.pop("mask", None))
        ins += _flat_tensors(kw.pop("initial_state", None))
        kw.pop("training", None)
        extra = _flat_tensors(kw)
        if extra:
            raise ConversionError(
                f"layer '{op.name}' ({cls}) is called with tensor keyword arguments "
                f"{sorted(k for k, v in kw.items() if _flat_tensors(v))}; the TF.js export supports "
                "inputs, initial_state and Keras masks only", layer=op.name, fmt="tfjs")
        if cls == "InputLayer":
            ins = []
        # Keras 3 applies the mask recorded in the node's `mask=` kwarg (none is recorded for an
        # RNN called with initial_state: Keras drops the mask there). TF.js hands each layer the
        # mask its own computeMask chain gives the first input (`tfjs_masked`).
        keras_masked = bool(explicit_mask)
        tfjs_masked = bool(ins) and masked.get(id(ins[0]), False)
        if keras_masked and not tfjs_masked:
            raise ConversionError(
                f"layer '{op.name}' ({cls}) gets an explicit mask= that TF.js would not compute "
                "(masks must come from Embedding(mask_zero=True) or Masking through mask-keeping "
                "layers)", layer=op.name, fmt="tfjs")
        input_masked = keras_masked
        tl = TFJS_LAYERS.get(op)(Ctx(input_masked=input_masked), op)
        entry = add_entry(op.name, tl.class_name, tl.config)
        if tl.custom or tl.class_name in CUSTOM_CLASSES:
            custom.add(tl.class_name)
        for sub in _inner_classes(tl.config):
            if sub in CUSTOM_CLASSES:
                custom.add(sub)
        if op.name not in seen_layers:
            seen_layers.add(op.name)
            weights.extend(tl.weights)
        node_idx = node_count.get(op.name, 0)
        node_count[op.name] = node_idx + 1
        if ins:
            missing = [t for t in ins if id(t) not in refs]
            if missing:
                raise ConversionError(
                    f"layer '{op.name}' ({cls}) reads a tensor produced outside the exported graph",
                    layer=op.name, fmt="tfjs")
            inbound = [list(refs[id(t)]) + [{}] for t in ins]
            if guard_rnns and cls in RNN_CLASSES:
                gname = f"{op.name}_guard" + (f"_{node_idx}" if node_idx else "")
                mode = "ones" if has_masks and not keras_masked else "pass"
                tfjs_masked = tfjs_masked or mode == "ones"
                g = add_entry(gname, RNN_GUARD, {"name": gname, "trainable": False,
                                                 "dtype": "float32", "mask_mode": mode},
                              before=op.name)
                g["inbound_nodes"].append([inbound[0]])
                inbound[0] = [gname, 0, 0, {}]
                custom.add(RNN_GUARD)
            entry["inbound_nodes"].append(inbound)
        for i, t in enumerate(n.outputs):
            refs[id(t)] = [op.name, node_idx, i]
            masked[id(t)] = False
        # the data outputs (Bidirectional merge_mode=None: two sequences, both masked in Keras 3
        # and TF.js, whose executor gives every output of a node the first output's mask)
        data_outs = n.outputs[:2 if cls == "Bidirectional" and op.merge_mode is None else 1]
        for t in data_outs:
            masked[id(t)] = tl.mask == MASK_MAKE or (tl.mask == MASK_KEEP and tfjs_masked)
        if tl.zero_masked_output and input_masked:
            # Keras writes zeros at masked steps; TF.js repeats the last output: zero them.
            for i, t in enumerate(data_outs):
                zname = (f"{op.name}_zero_masked" + (f"_{node_idx}" if node_idx else "")
                         + (f"_out{i}" if i else ""))
                z = add_entry(zname, ZERO_MASKED_STEPS,
                              {"name": zname, "trainable": False, "dtype": "float32"})
                z["inbound_nodes"].append([[op.name, node_idx, i, {}]])
                refs[id(t)] = [zname, 0, 0]
            custom.add(ZERO_MASKED_STEPS)

    # the graph's own node order can put a layer before one of its inputs' producers: TF.js
    # re-queues such nodes, so any order works; keep Keras's depth order.
    def ref3(t):
        if id(t) not in refs:
            raise ConversionError("a model input/output is not produced by a layer of the graph",
                                  fmt="tfjs")
        return refs[id(t)][:3]

    input_layers = [ref3(t) for t in f.inputs]
    output_layers = [ref3(t) for t in f.outputs]
    config = {"name": model.name, "layers": [layer_entries[k] for k in order],
              "input_layers": input_layers, "output_layers": output_layers}
    topology = {"class_name": "Functional", "config": config,
                "keras_version": f"keras {keras.__version__} (written in the Keras 2 layout)",
                "backend": "tensorflow"}

    # inputs / outputs (names: input layer names; Keras output names)
    inputs = [{"name": r[0], "shape": [None if d is None else int(d) for d in t.shape],
               "dtype": _tensor_dtype(t.dtype)} for r, t in zip(input_layers, f.inputs)]
    from rnnedge.matching import output_names

    out_names = output_names(model)  # unique (return_state: lstm, lstm_1, ...): one rule for every format
    outputs = [{"name": nm, "shape": [None if d is None else int(d) for d in t.shape],
                "dtype": _tensor_dtype(t.dtype)} for nm, t in zip(out_names, f.outputs)]

    specs, data = _encode_weights(weights, quant)
    shards = _shard(data)
    from rnnedge import __version__

    model_json = {
        "format": "layers-model",
        "generatedBy": f"keras v{keras.__version__}",
        "convertedBy": f"rnnedge v{__version__} (direct TF.js layers writer)",
        "modelTopology": topology,
        "weightsManifest": [{"paths": [p for p, _ in shards], "weights": specs}],
        "userDefinedMetadata": {"rnnedge": {
            "inputs": inputs, "outputs": outputs, "custom_layers": sorted(custom),
            "custom_layers_js": "rnnedge_layers.js" if custom else None}},
    }
    return TfjsModel(model_json, shards, inputs, outputs,
                     [layer_entries[k]["class_name"] for k in order], sorted(custom),
                     quant or "float32", len(data), len(specs))


def _inner_classes(config: Any) -> list[str]:
    out = []
    if isinstance(config, dict):
        for k, v in config.items():
            if k == "layer" and isinstance(v, dict):
                out.append(v.get("class_name"))
                out += _inner_classes(v.get("config"))
    return out


def _encode_weights(weights, quant):
    specs, chunks = [], []
    names = set()
    for name, arr in weights:
        if name in names:
            raise ConversionError(f"duplicate TF.js weight name {name!r}", fmt="tfjs")
        names.add(name)
        arr = np.asarray(arr)
        spec: dict[str, Any] = {"name": name, "shape": [int(d) for d in arr.shape]}
        if arr.dtype.kind in "iu":
            spec["dtype"] = "int32"
            chunks.append(arr.astype("<i4").tobytes())
        elif arr.dtype == bool:
            spec["dtype"] = "bool"
            chunks.append(arr.astype(np.uint8).tobytes())
        else:
            spec["dtype"] = "float32"
            a = arr.astype(np.float32)
            if quant == "float16":
                spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
                chunks.append(a.astype("<f2").tobytes())
            elif quant == "uint8":
                lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
                scale = (hi - lo) / 255.0 if hi > lo else 1.0
                q = np.clip(np.round((a - lo) / scale), 0, 255).astype(np.uint8)
                spec["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale,
                                        "original_dtype": "float32"}
                chunks.append(q.tobytes())
            else:
                chunks.append(a.astype("<f4").tobytes())
        specs.append(spec)
    return specs, b"".join(chunks)


def _shard(data: bytes) -> list[tuple[str, bytes]]:
    n = max(1, -(-len(data) // SHARD_BYTES))
    return [(f"group1-shard{i + 1}of{n}.bin", data[i * SHARD_BYTES:(i + 1) * SHARD_BYTES])
            for i in range(n)]


def model_json_text(m: TfjsModel) -> str:
    return json.dumps(m.model_json, indent=None, separators=(",", ":"))
