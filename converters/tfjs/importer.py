"""A TF.js layers model (``model.json`` + weight shards) rebuilt as a Keras 3 model with TF.js's math.

``import_model(path)`` reads what ``tf.LayersModel.save()`` writes (``format: "layers-model"``,
Sequential or functional topology, Keras-2 snake_case configs or camelCase ones, weights in one
or several shards and groups, float32 or quantized uint8 / uint16 / float16) and returns a
:class:`TfjsImport` whose ``model`` goes through the normal pipeline (``rnnedge export``,
``inspect``, ``validate``); :func:`write_reference` copies the original into an export folder so
``validate`` can compare the artifacts with TF.js itself (``--reference tfjs``).

TF.js facts the rebuild follows (tfjs-layers / tfjs-core 4.22 sources, checked in Node by
tests/test_tfjs_import.py):

* **Defaults differ from Keras 3.** A key missing from a layer config takes TF.js's default, not
  Keras's: LSTM/GRU ``recurrent_activation`` ``hardSigmoid`` = ``clip(0.2x + 0.5, 0, 1)``
  (rebuilt with :func:`rnnedge.activations.tfjs_hard_sigmoid`, not Keras 3's ``hard_sigmoid``),
  GRU ``reset_after`` false (TF.js refuses true), Bidirectional ``merge_mode`` concat. An explicit
  ``null`` activation is linear for LSTM/GRU cells, tanh for SimpleRNN (``recurrent.ts``
  constructors: ``=== undefined`` vs ``== null``).
* **Weights** are matched by name as ``Container.loadWeights`` does: ``<layer>/<weight>``
  (Bidirectional ``<bidi>/forward_<inner>/<w>`` and ``backward_``, TimeDistributed ``<td>/<w>``);
  a saved name that matches nothing is retried without its second-to-last token (``lstm/lstm_cell/
  kernel``). Every saved weight must land on a layer weight of the same shape and every layer weight
  must be set, else :class:`~rnnedge.errors.UsageError`.
* **Dequantization** (``io_utils.ts`` ``decodeWeight``): uint8/uint16 -> ``q * scale + min``
  computed in float64 then stored as float32 (int32 weights: ``Math.round`` of it); float16 ->
  float32 bit-exact. Groups are read in order, each the concatenation of its ``paths``.
* **Masks in TF.js's executor** (``engine/executor.ts`` ``execute``): one kwargs object is shared
  by every layer of a ``predict``; once a layer has a masked input, later layers without one still
  get that mask, and an RNN called with initial states leaves them in it (the next RNN then fails in
  TF.js). The graph is walked in TF.js's own order (``getTopologicalSortAndRecipientCountsForOneFetch``)
  and a recurrent layer whose TF.js mask differs from the one Keras 3 gives it is refused.
* **Masked semantics that Keras 3 does not share** are refused, naming the layer: a recurrent
  layer with initial states under a mask (TF.js outputs the initial state at leading masked steps,
  Keras zeros); ``GlobalAveragePooling1D`` on a masked sequence (TF.js averages every step);
  merge layers with masked inputs (Keras 3 merges masked positions differently); a Bidirectional
  returning sequences under a mask whose masked-step values are read by anything but a recurrent
  layer with the same mask (TF.js repeats the last output there, Keras 3 writes zeros).
* **rnnedge's own exports** (converters/tfjs/writer.py) hold the custom layers of
  ``rnnedge/runtime/node/rnnedge_layers.js``, rebuilt with that file's math:
  ``RnnedgeGRUResetAfter`` (also inside Bidirectional; its cell always runs reset-after math, bias
  ``[2, 3 * units]`` = input and recurrent rows, gates z, r, h) is ``GRU(reset_after=True)``;
  ``RnnedgeMaskedGlobalAveragePooling1D`` (sum of the unmasked steps / max(count, 1e-7)) is Keras's
  masked ``GlobalAveragePooling1D`` (same numbers unless a row has no unmasked step: TF.js 0, Keras
  NaN); ``RnnedgeRNNGuard`` (deletes ``initialState`` from the shared kwargs, gives the RNN its input's
  mask or, ``maskMode: 'ones'``, an all-true one) and ``RnnedgeZeroMaskedSteps`` (multiplies by the
  shared kwargs' mask) get no Keras layer: the guard is followed in :func:`check_masks`, and the
  zeroing becomes the source RNN's ``zero_output_for_mask`` (:func:`_zeroed_sources`). Where Keras 3
  cannot give the same numbers (a zeroing layer that does not read a recurrent layer's sequences, a
  guard or zeroing whose mask is not the one Keras applies) the layer is refused by name.
* Dropout, SpatialDropout1D, GaussianNoise, GaussianDropout and AlphaDropout are the identity at
  inference: they become ``Dropout`` layers of the same name. An input that feeds only Embedding
  layers becomes an int32 token input (TF.js casts it to int32 inside Embedding).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.registry import LayerRegistry
from converters.tfjs.layers import CUSTOM_CLASSES, GRU_RESET_AFTER, MASKED_GAP1D, RNN_GUARD, ZERO_MASKED_STEPS
from rnnedge.errors import ConversionError, UsageError

LAYERS_FORMAT = "layers-model"
REFERENCE_DIR = "source.tfjs"       # the copy write_reference puts into an export folder
TFJS_IMPORT = LayerRegistry("keras (TF.js import)")

RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN", GRU_RESET_AFTER)
RECURRENT = RNN_CLASSES + ("Bidirectional",)
# rnnedge_layers.js layers that are the identity on values in the Keras rebuild (module doc)
PASS_THROUGH = (RNN_GUARD, ZERO_MASKED_STEPS)
# layers that read the mask of TF.js's shared kwargs (RNNs through their cell loop, and these)
READS_KWARGS_MASK = (ZERO_MASKED_STEPS, MASKED_GAP1D)
DROPOUT_LIKE = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout")
MERGES = ("Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")
# layers whose output mask is their first input's mask (TF.js supportsMasking, default computeMask;
# Keras 3 supports_masking with the default compute_mask)
MASK_KEEP = ("Dense", "Activation", "TimeDistributed", "LayerNormalization", "BatchNormalization",
             "Masking") + DROPOUT_LIKE
# per-timestep layers: a value at a masked step only reaches masked steps of their output
POSITIONWISE = ("Dense", "Activation", "TimeDistributed", "LayerNormalization") + DROPOUT_LIKE

# TF.js activation names (serialized in snake_case, or camelCase) -> Keras 3 name
_ACTIVATIONS = {"linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid",
                "tanh": "tanh", "softmax": "softmax", "log_softmax": "log_softmax", "elu": "elu",
                "selu": "selu", "softplus": "softplus", "softsign": "softsign", "swish": "silu",
                "mish": "mish", "gelu": "gelu", "hard_sigmoid": "tfjs_hard_sigmoid"}


# --------------------------------------------------------------------------- reading files
def find_model_json(source) -> Path | None:
    """The model.json of ``source`` when it names a TF.js model (a model.json / .json file with a
    ``modelTopology`` or ``weightsManifest``, or a folder holding one), else None."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    p = Path(source)
    if p.is_dir():
        p = p / "model.json"
        if not p.is_file():
            return None
    elif not (p.is_file() and p.suffix.lower() == ".json"):
        return None
    try:
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    return p if (b'"modelTopology"' in head or b'"weightsManifest"' in head) else None


def read_model_json(path: Path) -> dict:
    try:
        mj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable model.json ({e})") from None
    if not isinstance(mj, dict) or "modelTopology" not in mj:
        raise UsageError(f"{path}: no modelTopology (not a TF.js model.json)")
    fmt = mj.get("format")
    topo = mj["modelTopology"]
    if fmt == "graph-model" or (fmt is None and isinstance(topo, dict) and "node" in topo):
        raise ConversionError(
            f"{path}: a TF.js graph model (format graph-model, converted from a TensorFlow SavedModel) "
            "cannot be rebuilt as Keras; rnnedge imports layers models (what tf.LayersModel.save writes)",
            fmt="keras")
    if fmt not in (None, LAYERS_FORMAT):
        raise ConversionError(f"{path}: format {fmt!r} is not a TF.js layers model ({LAYERS_FORMAT})",
                              fmt="keras")
    return mj


_SIZES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}


def decode_weight(spec: dict, raw: bytes) -> np.ndarray:
    """One weight's bytes -> its array, as tfjs-core's ``decodeWeight`` does (see module doc)."""
    name, dtype = spec.get("name"), spec.get("dtype", "float32")
    shape = [int(d) for d in spec.get("shape", [])]
    q = spec.get("quantization")
    if q:
        qd = q.get("dtype")
        if qd in ("uint8", "uint16"):
            if "min" not in q or "scale" not in q:
                raise UsageError(f"weight '{name}': {qd} quantization without min and scale")
            v = np.frombuffer(raw, dtype="<u1" if qd == "uint8" else "<u2").astype(np.float64)
            v = v * float(q["scale"]) + float(q["min"])
            if dtype == "float32":
                return v.astype(np.float32).reshape(shape)
            if dtype == "int32":  # Math.round: halves go up
                return np.floor(v + 0.5).astype(np.int32).reshape(shape)
            raise UsageError(f"weight '{name}': {qd} quantization of a {dtype} weight")
        if qd == "float16":
            if dtype != "float32":
                raise UsageError(f"weight '{name}': float16 quantization of a {dtype} weight")
            return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
        raise UsageError(f"weight '{name}': unknown quantization dtype {qd!r} (uint8, uint16, float16)")
    if dtype == "float32":
        return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
    if dtype == "int32":
        return np.frombuffer(raw, dtype="<i4").reshape(shape).copy()
    if dtype == "bool":
        return np.frombuffer(raw, dtype=np.uint8).astype(bool).reshape(shape)
    raise UsageError(f"weight '{name}': dtype {dtype!r} is not a layers-model weight type")


def _weight_bytes(spec: dict) -> int:
    n = int(np.prod([int(d) for d in spec.get("shape", [])], dtype=np.int64))
    q = spec.get("quantization")
    key = q.get("dtype") if q else spec.get("dtype", "float32")
    if key not in _SIZES:
        raise UsageError(f"weight '{spec.get('name')}': dtype {key!r} is not supported")
    return n * _SIZES[key]


def read_weights(mj: dict, folder: Path) -> tuple[list[tuple[str, np.ndarray]], dict, list[Path]]:
    """``([(name, array)] in manifest order, {stored dtype: count}, [shard files])``."""
    out, dtypes, files = [], {}, []
    for g, group in enumerate(mj.get("weightsManifest") or []):
        paths = [folder / p for p in group.get("paths", [])]
        for p in paths:
            if not p.is_file():
                raise UsageError(f"{folder / 'model.json'}: weight file {p.name} listed in weightsManifest "
                                 "is missing")
        files += paths
        data = b"".join(p.read_bytes() for p in paths)
        specs = group.get("weights", [])
        need = sum(_weight_bytes(s) for s in specs)
        if need != len(data):
            raise UsageError(f"{folder / 'model.json'}: weight group {g + 1} holds {len(data)} bytes in "
                             f"{len(paths)} file(s) but its {len(specs)} weights need {need}")
        off = 0
        for s in specs:
            n = _weight_bytes(s)
            out.append((s["name"], decode_weight(s, data[off:off + n])))
            off += n
            d = (s.get("quantization") or {}).get("dtype") or s.get("dtype", "float32")
            dtypes[d] = dtypes.get(d, 0) + 1
    return out, dtypes, files


# --------------------------------------------------------------------------- topology
def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _norm(obj):
    """camelCase keys -> snake_case, recursively (values untouched)."""
    if isinstance(obj, dict):
        return {_snake(k): _norm(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_norm(v) for v in obj]
    return obj


@dataclass
class _Layer:
    name: str
    cls: str
    cfg: dict
    nodes: list = field(default_factory=list)   # per call: [(layer, node_index, tensor_index)]
    zero_masked: bool = False    # an RnnedgeZeroMaskedSteps reads its sequences (see _zeroed_sources)


@dataclass
class _Graph:
    name: str
    layers: dict            # name -> _Layer, in topology order
    inputs: list            # [(layer, node, tensor)]
    outputs: list
    kind: str               # Sequential | Model


def _ref(x, where: str) -> tuple:
    if not (isinstance(x, (list, tuple)) and len(x) >= 3 and isinstance(x[0], str)):
        raise UsageError(f"{where}: expected [layer_name, node_index, tensor_index, kwargs], got {x!r}")
    kw = x[3] if len(x) > 3 else {}
    extra = sorted(k for k in (kw or {}) if k != "training")
    if extra:
        raise ConversionError(f"{where}: the call passes {extra}; rnnedge imports calls with tensors only",
                              layer=where, fmt="keras")
    return (x[0], int(x[1]), int(x[2]))


def parse_topology(mj: dict, path: Path) -> _Graph:
    """modelTopology (Sequential or functional, optionally under ``model_config``) -> _Graph."""
    topo = _norm(mj["modelTopology"])
    topo = topo.get("model_config", topo)
    cls, cfg = topo.get("class_name"), topo.get("config")
    if cls == "Sequential":
        layers = cfg.get("layers") if isinstance(cfg, dict) else cfg
        name = cfg.get("name", "sequential") if isinstance(cfg, dict) else "sequential"
        if not layers:
            raise UsageError(f"{path}: the Sequential model has no layers")
        out: dict[str, _Layer] = {}
        first = _norm(layers[0])
        if first.get("class_name") == "InputLayer":
            inp = _Layer(first["config"].get("name", "input"), "InputLayer", first["config"], [])
            layers = layers[1:]
        else:
            c = first.get("config", {})
            shape = c.get("batch_input_shape")
            if shape is None and c.get("input_shape") is not None:
                shape = [None] + list(c["input_shape"])
            if shape is None and c.get("input_length") is not None:   # Embedding(inputLength)
                il = c["input_length"]
                shape = [None] + (list(il) if isinstance(il, list) else [il])
            if shape is None:
                raise UsageError(f"{path}: the first layer '{c.get('name')}' has no batch_input_shape "
                                 "(a Sequential model needs one)")
            inp = _Layer(f"{c.get('name', 'layer')}_input", "InputLayer",
                         {"batch_input_shape": shape, "dtype": c.get("dtype") or "float32"}, [])
        out[inp.name] = inp
        prev = (inp.name, 0, 0)
        for entry in layers:
            entry = _norm(entry)
            c = entry.get("config") or {}
            lname = c.get("name") or entry.get("name")
            if not lname or lname in out:
                raise UsageError(f"{path}: Sequential layer names must be present and unique ({lname!r})")
            out[lname] = _Layer(lname, entry.get("class_name"), c, [[prev]])
            prev = (lname, 0, 0)
        return _Graph(name, out, [(inp.name, 0, 0)], [prev], "Sequential")
    if cls in ("Model", "Functional"):
        out = {}
        for entry in cfg.get("layers", []):
            lname = entry.get("name") or (entry.get("config") or {}).get("name")
            nodes = []
            for i, node in enumerate(entry.get("inbound_nodes") or []):
                if isinstance(node, dict):
                    raise ConversionError(
                        f"{path}: layer '{lname}' uses the Keras 3 config layout (inbound_nodes with args/"
                        "kwargs), which TF.js cannot load; rnnedge imports TF.js layers models", fmt="keras")
                nodes.append([_ref(x, f"layer '{lname}' call {i}") for x in node])
            out[lname] = _Layer(lname, entry.get("class_name"), entry.get("config") or {}, nodes)
        ins = [_ref(list(x) + [{}], "input_layers") for x in cfg.get("input_layers", [])]
        outs = [_ref(list(x) + [{}], "output_layers") for x in cfg.get("output_layers", [])]
        for r in ins + outs + [t for layer in out.values() for node in layer.nodes for t in node]:
            src = out.get(r[0])
            if src is None or r[1] >= max(1, len(src.nodes)):
                raise UsageError(f"{path}: the graph reads {list(r)} (layer, call, output), which no layer "
                                 "call makes")
        return _Graph(cfg.get("name", "model"), out, ins, outs, "Model")
    raise ConversionError(f"{path}: modelTopology class {cls!r} is not a layers model (Sequential or "
                          "Model)", fmt="keras")


# --------------------------------------------------------------------------- masks
def _refuse(layer: _Layer, why: str):
    raise ConversionError(f"layer '{layer.name}' ({layer.cls}) cannot be rebuilt exactly from TF.js: {why}",
                          layer=layer.name, fmt="keras")


def _sequence_outputs(layer: _Layer) -> list[bool]:
    """Per output of a call: True for a data output, False for an RNN state."""
    c = layer.cfg
    if layer.cls not in RECURRENT:
        return [True]
    inner = (c.get("layer") or {}) if layer.cls == "Bidirectional" else {"class_name": layer.cls, "config": c}
    states = (2 if inner.get("class_name") == "LSTM" else 1) if inner.get("config", {}).get("return_state") else 0
    if layer.cls == "Bidirectional":
        return [True] * (2 if c.get("merge_mode", "concat") is None else 1) + [False] * (2 * states)
    return [True] + [False] * states


def _node_order(g: _Graph, path: Path | str = "model.json") -> list[tuple[_Layer, int]]:
    """Every layer call, each after the calls making its inputs."""
    made = {(layer.name, 0, 0) for layer in g.layers.values() if layer.cls == "InputLayer"}
    pending = [(layer, n) for layer in g.layers.values() for n in range(len(layer.nodes))
               if layer.cls != "InputLayer"]
    order = []
    while pending:
        ready = [(layer, n) for layer, n in pending if all(t in made for t in layer.nodes[n])]
        if not ready:
            missing = sorted({t[0] for layer, n in pending for t in layer.nodes[n] if t[0] not in g.layers})
            raise UsageError(f"{path}: the graph reads tensors no layer makes "
                             f"({', '.join(missing) or 'or has a cycle'})")
        for layer, n in ready:
            pending.remove((layer, n))
            order.append((layer, n))
            made.update((layer.name, n, i) for i in range(len(_sequence_outputs(layer))))
    return order


def _mask_out(layer: _Layer, node: int, in_masks: list, tfjs: bool = False):
    """The mask token of a node's outputs (TF.js's executor if ``tfjs``, else Keras 3), from its
    input masks. A token ``("ones", layer, node)`` is TF.js's all-true mask (no mask in effect)."""
    cls, m0 = layer.cls, (in_masks[0] if in_masks else None)
    if cls == RNN_GUARD:   # computeMask: the input's mask, or all-true for maskMode 'ones'; Keras: no layer
        return (ONES, layer.name, node) if tfjs and _guard_mode(layer) == ONES else m0
    if cls == ZERO_MASKED_STEPS:   # computeMask passes the mask on; Keras: the zeroing RNN's own output
        return m0
    if cls == "Embedding":
        return ("mask", layer.name, node) if layer.cfg.get("mask_zero") else None
    if cls == "Masking":
        return ("mask", layer.name, node)
    if cls in MASK_KEEP:
        return m0
    if cls in RECURRENT:
        inner = (layer.cfg.get("layer") or {}).get("config", {}) if cls == "Bidirectional" else layer.cfg
        return m0 if inner.get("return_sequences") else None
    if cls in MERGES:
        return None if all(m is None for m in in_masks) else ("merged", layer.name, node)
    return None  # pooling, Conv1D, RepeatVector, Flatten, Reshape, Permute: no mask out


ONES = "ones"


def _guard_mode(layer: _Layer) -> str:
    """RnnedgeRNNGuard's maskMode: 'ones' or (anything else, as rnnedge_layers.js reads it) 'pass'."""
    return ONES if layer.cfg.get("mask_mode") == ONES else "pass"


def _real(mask):
    """A mask token, or None where no mask is in effect (none, or TF.js's all-true one)."""
    return None if mask is None or mask[0] == ONES else mask


def _tfjs_order(g: _Graph) -> list[tuple]:
    """Output tensors in the order tfjs-layers' executor runs them (DFS from each output)."""
    order, seen = [], set(g.inputs)
    for fetch in g.outputs:
        stack, marks = [fetch], []
        while stack:
            top = stack[-1]
            if top in seen:
                stack.pop()
                continue
            ins = g.layers[top[0]].nodes[top[1]] if g.layers[top[0]].nodes else []
            marked = bool(marks) and marks[-1] == len(stack) - 1
            if not ins or marked:
                stack.pop()
                order.append(top)
                seen.add(top)
                if marked:
                    marks.pop()
            else:
                marks.append(len(stack) - 1)
                stack.extend(t for t in ins if t not in seen)
    return order


def check_masks(g: _Graph, path: Path | str = "model.json") -> dict:
    """Refuse what TF.js's masking would make differ from Keras 3 (module doc); returns the Keras 3
    mask token of every tensor ``{(layer, node, index): token | None}``."""
    keras_masks: dict = {}
    tfjs_masks: dict = {}
    for layer, n in _node_order(g, path):   # Keras 3: each call sees the masks of its inputs
        tok = _mask_out(layer, n, [keras_masks.get(t) for t in layer.nodes[n]])
        for i, seq in enumerate(_sequence_outputs(layer)):
            keras_masks[(layer.name, n, i)] = tok if seq else None
    shared: dict | None = None   # the executor's kwargs object, once a mask appeared
    done: set = set()
    for ref in _tfjs_order(g):
        layer = g.layers[ref[0]]
        if layer.cls == "InputLayer":
            continue
        ins = layer.nodes[ref[1]]
        in_masks = [tfjs_masks.get(t) for t in ins]
        if any(m is not None for m in in_masks):
            shared = shared if shared is not None else {}
            shared["mask"] = in_masks[0]
        if layer.cls == RNN_GUARD and shared is not None:
            shared.pop("initial_state", None)    # its apply deletes kwargs.initialState
        if layer.cls in RECURRENT:
            if shared is not None and shared.get("initial_state"):
                _refuse(layer, f"TF.js's predict fails on it: the initial state of '{shared['initial_state']}' "
                               "is left in the executor's shared kwargs (tfjs-layers executor.ts)")
            if len(ins) > 1 and shared is not None:
                shared["initial_state"] = layer.name
        if (layer.cls in RECURRENT or layer.cls in READS_KWARGS_MASK) and (ref[0], ref[1]) not in done:
            _check_applied_mask(g, layer, ins, shared.get("mask") if shared else None, keras_masks)
        done.add((ref[0], ref[1]))
        tok = _mask_out(layer, ref[1], in_masks, tfjs=True)
        for i in range(len(_sequence_outputs(layer))):   # the executor gives every output the first
            tfjs_masks.setdefault((ref[0], ref[1], i), tok)             # output's mask
    _check_keras_mask_semantics(g, keras_masks)
    return keras_masks


def _keras_applied_mask(g: _Graph, layer: _Layer, ins: list, keras_masks: dict):
    """The mask Keras 3 applies in ``layer``'s call: its first input's; none for an RNN called with
    initial states (Layer.__call__ fills ``mask`` only for a single tensor argument); for
    RnnedgeZeroMaskedSteps, the one its source RNN zeroed the masked steps with."""
    if layer.cls == ZERO_MASKED_STEPS:
        src = g.layers[ins[0][0]]
        return _keras_applied_mask(g, src, src.nodes[ins[0][1]], keras_masks)
    if layer.cls in RECURRENT and len(ins) > 1:
        return None
    return keras_masks.get(ins[0])


def _check_applied_mask(g: _Graph, layer: _Layer, ins: list, tf_mask, keras_masks: dict) -> None:
    """Refuse a layer whose mask in TF.js (the executor's shared kwargs) is not the one Keras applies."""
    k_mask = _keras_applied_mask(g, layer, ins, keras_masks)
    if _real(tf_mask) == _real(k_mask):
        return
    if _real(tf_mask) is None:
        _refuse(layer, "Keras 3 would mask it, TF.js does not")
    if layer.cls in RECURRENT and len(ins) > 1 and tf_mask == keras_masks.get(ins[0]):
        _refuse(layer, "initial states under a mask: TF.js applies the mask (at masked steps before the "
                       "first valid one it outputs the initial state), Keras 3 applies no mask to a "
                       "recurrent layer called with initial states")
    _refuse(layer, f"TF.js's executor runs it with the mask of '{tf_mask[1]}' left over from an "
                   "earlier layer (one kwargs object is shared by every layer of a predict, "
                   "tfjs-layers executor.ts), which Keras 3 cannot reproduce")


def _consumers(g: _Graph) -> dict:
    out: dict = {}
    for layer in g.layers.values():
        for n, ins in enumerate(layer.nodes):
            for p, t in enumerate(ins):
                out.setdefault(t, []).append((layer, n, p))
    return out


def _check_keras_mask_semantics(g: _Graph, masks: dict) -> None:
    cons = _consumers(g)
    outputs = set(g.outputs)
    for layer in g.layers.values():
        for n, ins in enumerate(layer.nodes):
            in_masks = [masks.get(t) for t in ins]
            m0 = in_masks[0] if in_masks else None
            if layer.cls == "GlobalAveragePooling1D" and m0 is not None:
                _refuse(layer, "TF.js averages every time step of a masked sequence, Keras 3 only the "
                               "unmasked ones")
            if layer.cls in MERGES and any(m is not None for m in in_masks):
                _refuse(layer, "merging masked tensors: Keras 3 merge layers treat masked positions "
                               "differently from TF.js (keras/src/layers/merging/base_merge.py)")
            zeroes = layer.zero_masked or layer.cls == "Bidirectional"   # Keras writes zeros at masked steps
            if zeroes and m0 is not None and len(ins) == 1 and _returns_sequences(layer):
                _check_masked_steps_unread(g, layer, n, m0, cons, outputs)


def _returns_sequences(layer: _Layer) -> bool:
    inner = (layer.cfg.get("layer") or {}).get("config", {}) if layer.cls == "Bidirectional" else layer.cfg
    return bool(inner.get("return_sequences"))


def _check_masked_steps_unread(g, rnn: _Layer, node: int, mask, cons, outputs) -> None:
    """Keras 3 writes zeros at the masked steps of ``rnn``'s sequences (Bidirectional; an RNN with
    zero_output_for_mask), TF.js repeats the last output: fine only if those steps reach nothing but
    an RnnedgeZeroMaskedSteps (zeroes them in TF.js too) or recurrent layers that skip them (same mask)."""
    n_seq = 2 if rnn.cls == "Bidirectional" and rnn.cfg.get("merge_mode", "concat") is None else 1
    todo = [(rnn.name, node, i) for i in range(n_seq)]
    while todo:
        t = todo.pop()
        if t in outputs:
            where = "they are a model output" if t[0] == rnn.name else f"they reach the model output '{t[0]}'"
            _refuse(rnn, f"it returns sequences under a mask and {where}: at masked steps TF.js repeats the "
                         "last output, Keras 3 writes zeros")
        for layer, n, p in cons.get(t, []):
            if layer.cls in RECURRENT + (ZERO_MASKED_STEPS,) and p == 0:
                continue  # skipped / zeroed with this mask (checked in check_masks)
            if layer.cls in POSITIONWISE + (RNN_GUARD,) and p == 0:
                todo.append((layer.name, n, 0))
                continue
            _refuse(rnn, f"it returns sequences under a mask and '{layer.name}' ({layer.cls}) reads the "
                         "masked steps: TF.js repeats the last output there, Keras 3 writes zeros")


def _zeroed_sources(g: _Graph) -> None:
    """Each RnnedgeZeroMaskedSteps must read the sequences of a recurrent layer (the TF.js writer puts
    it after a Keras RNN with zero_output_for_mask): such an LSTM / GRU / SimpleRNN is rebuilt with
    zero_output_for_mask=True (Keras's Bidirectional always zeroes). Anything else is refused."""
    for layer in g.layers.values():
        if layer.cls != ZERO_MASKED_STEPS:
            continue
        for ins in layer.nodes:
            if len(ins) != 1:
                raise UsageError(f"layer '{layer.name}' ({layer.cls}) is called on {len(ins)} tensors")
            src = g.layers[ins[0][0]]
            outs = _sequence_outputs(src)
            seq = src.cls in RECURRENT and _returns_sequences(src) and ins[0][2] < len(outs) and outs[ins[0][2]]
            if not seq or (src.cls != "Bidirectional" and ins[0][2] != 0):
                _refuse(layer, f"it reads output {ins[0][2]} of '{src.name}' ({src.cls}); rnnedge rebuilds "
                               "it only on the sequences of a recurrent layer (as zero_output_for_mask)")
            src.zero_masked = src.cls != "Bidirectional"


# --------------------------------------------------------------------------- layers
@dataclass
class Built:
    layer: Any                                    # the Keras layer
    weights: Callable[[], list] = lambda: []      # after the call: [(keras variable, TF.js name)]


def _act(layer: _Layer, key: str, default: str | None, null: str = "linear"):
    from rnnedge.activations import register, tfjs_hard_sigmoid

    if key not in layer.cfg:
        value = default
    else:
        value = layer.cfg[key]
        if value is None:
            value = null
    if isinstance(value, dict):
        value = value.get("class_name")
    name = _snake(str(value)) if value is not None else "linear"
    if name not in _ACTIVATIONS:
        _refuse(layer, f"{key}={value!r} is not an activation rnnedge rebuilds "
                       f"({', '.join(sorted(_ACTIVATIONS))})")
    keras_name = _ACTIVATIONS[name]
    if keras_name == "tfjs_hard_sigmoid":
        register()
        return tfjs_hard_sigmoid
    return keras_name


def _vars(prefix: str, klayer) -> Callable[[], list]:
    return lambda: [(v, f"{prefix}/{v.name}") for v in klayer.weights]


def _common(layer: _Layer) -> dict:
    return {"name": layer.name}


def _refuse_keys(layer: _Layer, **bad) -> None:
    for key, ok in bad.items():
        v = layer.cfg.get(key)
        if v is not None and not ok(v):
            _refuse(layer, f"{key}={v!r} is not supported")


@TFJS_IMPORT.register("Dense")
def _dense(layer: _Layer) -> Built:
    import keras

    k = keras.layers.Dense(int(layer.cfg["units"]), activation=_act(layer, "activation", "linear"),
                           use_bias=bool(layer.cfg.get("use_bias", True)), **_common(layer))
    return Built(k, _vars(layer.name, k))


@TFJS_IMPORT.register("Embedding")
def _embedding(layer: _Layer) -> Built:
    import keras

    k = keras.layers.Embedding(int(layer.cfg["input_dim"]), int(layer.cfg["output_dim"]),
                               mask_zero=bool(layer.cfg.get("mask_zero", False)), **_common(layer))
    return Built(k, _vars(layer.name, k))


def _rnn_layer(layer: _Layer, prefix: str) -> Built:
    import keras

    c, cls = layer.cfg, layer.cls
    _refuse_keys(layer, stateful=lambda v: not v, time_major=lambda v: not v)
    if cls == "GRU" and c.get("reset_after"):
        _refuse(layer, "reset_after=true (TF.js refuses it too: \"GRUCell does not support reset_after "
                       "parameter set to true\")")
    kw = dict(units=int(c["units"]), use_bias=bool(c.get("use_bias", True)),
              return_sequences=bool(c.get("return_sequences", False)),
              return_state=bool(c.get("return_state", False)), go_backwards=bool(c.get("go_backwards", False)),
              dropout=float(c.get("dropout") or 0.0), recurrent_dropout=float(c.get("recurrent_dropout") or 0.0),
              zero_output_for_mask=layer.zero_masked, name=layer.name)
    if cls == "SimpleRNN":
        k = keras.layers.SimpleRNN(activation=_act(layer, "activation", "tanh", null="tanh"), **kw)
    else:
        kw.update(activation=_act(layer, "activation", "tanh"),
                  recurrent_activation=_act(layer, "recurrent_activation", "hard_sigmoid"))
        if cls == "LSTM":
            k = keras.layers.LSTM(unit_forget_bias=bool(c.get("unit_forget_bias")), **kw)
        else:   # rnnedge_layers.js's GRU always runs reset-after math, whatever its config says
            k = keras.layers.GRU(reset_after=cls == GRU_RESET_AFTER, **kw)
    return Built(k, _vars(prefix, k))


@TFJS_IMPORT.register(*RNN_CLASSES)
def _rnn(layer: _Layer) -> Built:
    return _rnn_layer(layer, layer.name)


@TFJS_IMPORT.register("Bidirectional")
def _bidirectional(layer: _Layer) -> Built:
    import keras

    c = layer.cfg
    inner = _norm(c.get("layer") or {})
    icls, icfg = inner.get("class_name"), dict(inner.get("config") or {})
    if icls not in RNN_CLASSES:
        _refuse(layer, f"it wraps {icls}; rnnedge rebuilds Bidirectional({' / '.join(RNN_CLASSES)})")
    if c.get("backward_layer"):
        _refuse(layer, "a separate backward_layer (TF.js always mirrors the forward layer)")
    if icfg.get("go_backwards"):
        _refuse(layer, "the wrapped layer has go_backwards=true (TF.js then runs the forward layer "
                       "backwards and the backward one forwards; Keras 3's Bidirectional refuses that)")
    mm = c.get("merge_mode", "concat")
    if mm not in ("concat", "sum", "mul", "ave", None):
        _refuse(layer, f"merge_mode={mm!r}")
    iname = icfg.get("name") or f"{layer.name}_inner"
    sub = _rnn_layer(_Layer(iname, icls, icfg), iname)
    k = keras.layers.Bidirectional(sub.layer, merge_mode=mm, name=layer.name)

    def weights():
        out = []
        for side, kl in (("forward", k.forward_layer), ("backward", k.backward_layer)):
            out += [(v, f"{layer.name}/{side}_{iname}/{v.name}") for v in kl.weights]
        return out

    return Built(k, weights)


@TFJS_IMPORT.register("TimeDistributed")
def _time_distributed(layer: _Layer) -> Built:
    import keras

    inner = _norm(layer.cfg.get("layer") or {})
    icls, icfg = inner.get("class_name"), dict(inner.get("config") or {})
    if icls not in ("Dense", "Activation") + DROPOUT_LIKE:
        _refuse(layer, f"it wraps {icls}; rnnedge rebuilds TimeDistributed(Dense / Activation / Dropout)")
    sub = TFJS_IMPORT.get(icls)(_Layer(icfg.get("name") or f"{layer.name}_inner", icls, icfg))
    k = keras.layers.TimeDistributed(sub.layer, name=layer.name)
    return Built(k, _vars(layer.name, k.layer))


@TFJS_IMPORT.register(*DROPOUT_LIKE)
def _dropout(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.Dropout(float(layer.cfg.get("rate") or 0.0), **_common(layer)))


@TFJS_IMPORT.register("Activation")
def _activation(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.Activation(_act(layer, "activation", "linear"), **_common(layer)))


@TFJS_IMPORT.register("Masking")
def _masking(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.Masking(float(layer.cfg.get("mask_value", 0.0)), **_common(layer)))


@TFJS_IMPORT.register("RepeatVector")
def _repeat(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.RepeatVector(int(layer.cfg["n"]), **_common(layer)))


def _channels_last(layer: _Layer) -> None:
    _refuse_keys(layer, data_format=lambda v: v == "channels_last")


@TFJS_IMPORT.register("Flatten")
def _flatten(layer: _Layer) -> Built:
    import keras

    _channels_last(layer)
    return Built(keras.layers.Flatten(**_common(layer)))


@TFJS_IMPORT.register("Reshape")
def _reshape(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.Reshape(tuple(int(d) for d in layer.cfg["target_shape"]), **_common(layer)))


@TFJS_IMPORT.register("Permute")
def _permute(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.Permute(tuple(int(d) for d in layer.cfg["dims"]), **_common(layer)))


@TFJS_IMPORT.register("GlobalMaxPooling1D", "GlobalAveragePooling1D", MASKED_GAP1D)
def _global_pool(layer: _Layer) -> Built:
    """RnnedgeMaskedGlobalAveragePooling1D is Keras's: the mean over the unmasked steps (a row with no
    valid step: TF.js divides by max(count, 1e-7) and gives 0, Keras 0/0)."""
    import keras

    _channels_last(layer)
    cls = "GlobalAveragePooling1D" if layer.cls == MASKED_GAP1D else layer.cls
    return Built(getattr(keras.layers, cls)(**_common(layer)))


@TFJS_IMPORT.register(*PASS_THROUGH)
def _pass_through(layer: _Layer) -> Built:
    """RnnedgeRNNGuard / RnnedgeZeroMaskedSteps: no Keras layer, the output is the input tensor. What
    they do to masks is followed in check_masks; the zeroing is the source RNN's zero_output_for_mask."""
    return Built(None)


def _ints(v) -> tuple:
    return tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))


@TFJS_IMPORT.register("MaxPooling1D", "AveragePooling1D")
def _pool(layer: _Layer) -> Built:
    import keras

    _channels_last(layer)
    c = layer.cfg
    pool = _ints(c.get("pool_size", 2))
    strides = _ints(c.get("strides") or pool)
    return Built(getattr(keras.layers, layer.cls)(pool_size=pool, strides=strides,
                                                  padding=c.get("padding", "valid"), **_common(layer)))


@TFJS_IMPORT.register("Conv1D")
def _conv1d(layer: _Layer) -> Built:
    import keras

    _channels_last(layer)
    c = layer.cfg
    if c.get("padding", "valid") not in ("valid", "same", "causal"):
        _refuse(layer, f"padding={c.get('padding')!r}")
    k = keras.layers.Conv1D(int(c["filters"]), _ints(c["kernel_size"]), strides=_ints(c.get("strides", 1)),
                            padding=c.get("padding", "valid"), dilation_rate=_ints(c.get("dilation_rate", 1)),
                            activation=_act(layer, "activation", "linear"),
                            use_bias=bool(c.get("use_bias", True)), **_common(layer))
    return Built(k, _vars(layer.name, k))


@TFJS_IMPORT.register("LayerNormalization")
def _layer_norm(layer: _Layer) -> Built:
    import keras

    c = layer.cfg
    k = keras.layers.LayerNormalization(axis=c.get("axis", -1), epsilon=float(c.get("epsilon", 1e-3)),
                                        center=bool(c.get("center", True)), scale=bool(c.get("scale", True)),
                                        **_common(layer))
    return Built(k, _vars(layer.name, k))


@TFJS_IMPORT.register("BatchNormalization")
def _batch_norm(layer: _Layer) -> Built:
    import keras

    c = layer.cfg
    k = keras.layers.BatchNormalization(axis=int(c.get("axis", -1)), epsilon=float(c.get("epsilon", 1e-3)),
                                        center=bool(c.get("center", True)), scale=bool(c.get("scale", True)),
                                        **_common(layer))
    return Built(k, _vars(layer.name, k))


@TFJS_IMPORT.register("Concatenate")
def _concatenate(layer: _Layer) -> Built:
    import keras

    return Built(keras.layers.Concatenate(axis=int(layer.cfg.get("axis", -1)), **_common(layer)))


@TFJS_IMPORT.register("Add", "Multiply", "Average", "Maximum", "Minimum")
def _merge(layer: _Layer) -> Built:
    import keras

    return Built(getattr(keras.layers, layer.cls)(**_common(layer)))


# --------------------------------------------------------------------------- the model
def _set_weights(path: Path, expected: list, saved: list[tuple[str, np.ndarray]]) -> None:
    """Assign ``saved`` to ``expected`` [(variable, TF.js name)] by TF.js's name rule (module doc)."""
    by_name: dict = {}
    for var, name in expected:
        if name in by_name:
            raise UsageError(f"{path}: two layer weights are both named '{name}'")
        by_name[name] = var
    total = len(by_name)
    for name, value in saved:
        key = name
        if key not in by_name:
            tokens = name.split("/")
            key = "/".join(tokens[:-2] + tokens[-1:])
        if key not in by_name:
            raise UsageError(f"{path}: weight '{name}' in weightsManifest belongs to no layer weight "
                             f"(expected names: {', '.join(sorted(by_name)) or 'none left'})")
        var = by_name.pop(key)
        want = tuple(int(d) for d in var.shape)
        if tuple(value.shape) != want:
            raise UsageError(f"{path}: weight '{name}' has shape {list(value.shape)} in model.json, the "
                             f"layer needs {list(want)}")
        if value.dtype.kind != "f":
            raise UsageError(f"{path}: weight '{name}' is {value.dtype}, the layer needs float32")
        var.assign(value.astype(np.float32))
    if by_name:
        raise UsageError(f"{path}: {len(by_name)} of {total} layer weights are not in weightsManifest: "
                         f"{', '.join(sorted(by_name))}")


def _input_dtype(g: _Graph, layer: _Layer) -> tuple[str, str | None]:
    """(Keras dtype, note): float inputs that feed only Embedding layers become int32 token ids."""
    tdtype = str(layer.cfg.get("dtype") or "float32")
    if isinstance(layer.cfg.get("dtype"), dict):
        tdtype = layer.cfg["dtype"].get("config", {}).get("name", "float32")
    users = _consumers(g).get((layer.name, 0, 0), [])
    if tdtype.startswith("float") and users and all(u.cls == "Embedding" and p == 0 for u, _, p in users):
        return "int32", (f"input '{layer.name}' ({tdtype} in TF.js) feeds only Embedding layers: int32 "
                         "token ids in the rebuilt model (TF.js casts them to int32 there)")
    if tdtype not in ("float32", "int32", "bool"):
        raise UsageError(f"input '{layer.name}': dtype {tdtype!r} is not supported")
    return tdtype, None


def build_keras(g: _Graph, saved: list, path: Path) -> tuple[Any, list[str]]:
    """The Keras 3 functional model of ``g`` with the saved weights; (model, notes)."""
    import keras

    notes: list[str] = []
    for layer in g.layers.values():
        if layer.cls in ("Sequential", "Model", "Functional"):
            raise ConversionError(f"layer '{layer.name}' is a nested model; rnnedge imports flat TF.js models",
                                  layer=layer.name, fmt="keras")
        if layer.cls != "InputLayer" and layer.cls not in TFJS_IMPORT:
            raise ConversionError(
                f"layer '{layer.name}' ({layer.cls}) cannot be rebuilt from TF.js: rnnedge rebuilds "
                f"{', '.join(TFJS_IMPORT.names())}", layer=layer.name, fmt="keras")
        if layer.cls in DROPOUT_LIKE and layer.cls != "Dropout":
            notes.append(f"{layer.cls} '{layer.name}' is the identity at inference: rebuilt as Dropout")
    _zeroed_sources(g)
    keras_masks = check_masks(g, path)
    tensors: dict = {}
    built: dict[str, Built] = {}
    for layer in g.layers.values():
        if layer.cls == "InputLayer":
            c = layer.cfg
            _refuse_keys(layer, sparse=lambda v: not v)
            shape = c.get("batch_input_shape") or c.get("batch_shape")
            if shape is None:
                raise UsageError(f"{path}: input layer '{layer.name}' has no batch_input_shape")
            dtype, note = _input_dtype(g, layer)
            if note:
                notes.append(note)
            tensors[(layer.name, 0, 0)] = keras.Input(shape=tuple(shape[1:]), batch_size=shape[0], dtype=dtype,
                                                      name=layer.name)
    for layer, n in _node_order(g, path):
        if layer.name not in built:
            built[layer.name] = TFJS_IMPORT.get(layer.cls)(layer)
        k = built[layer.name].layer
        ins = [tensors[t] for t in layer.nodes[n]]
        if k is None:   # PASS_THROUGH
            if len(ins) != 1:
                raise UsageError(f"{path}: layer '{layer.name}' ({layer.cls}) is called on {len(ins)} tensors")
            tensors[(layer.name, n, 0)] = ins[0]
            continue
        if layer.cls in RECURRENT and len(ins) > 1:
            outs = k(ins[0], initial_state=ins[1:])
        elif layer.cls in MERGES:
            outs = k(ins)
        elif len(ins) == 1:
            outs = k(ins[0])
        else:
            raise UsageError(f"{path}: layer '{layer.name}' ({layer.cls}) is called on {len(ins)} tensors")
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        for i, t in enumerate(outs):
            tensors[(layer.name, n, i)] = t
            has = getattr(t, "_keras_mask", None) is not None
            if has != (keras_masks.get((layer.name, n, i)) is not None):  # our model of Keras is wrong
                raise ConversionError(
                    f"layer '{layer.name}' ({layer.cls}): Keras 3 {'masks' if has else 'does not mask'} "
                    "its output, unlike what rnnedge expected; refusing rather than guessing",
                    layer=layer.name, fmt="keras")
    for r in g.outputs:
        if r not in tensors:
            raise UsageError(f"{path}: output {list(r)} is not produced by the graph")
    ins = [tensors[r] for r in g.inputs]
    outs = [tensors[r] for r in g.outputs]
    model = keras.Model(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0], name=g.name)
    expected = [w for b in built.values() for w in b.weights()]
    _set_weights(path, expected, saved)
    return model, notes


@dataclass
class TfjsImport:
    """A TF.js model rebuilt in Keras: ``model``, where it came from, what to copy for validation."""

    model: Any
    path: Path                       # model.json
    model_json: dict
    weight_files: list[Path]
    source: dict                     # the manifest's ``source`` entry
    tfjs_inputs: list[dict] = field(default_factory=list)    # name, shape, dtype as TF.js takes them
    custom_layers: list[str] = field(default_factory=list)   # rnnedge_layers.js classes it uses


def import_model(source) -> TfjsImport:
    """Rebuild the TF.js layers model at ``source`` (model.json or its folder) in Keras 3.

    Raises :class:`UsageError` (exit 2) for unreadable / inconsistent files and
    :class:`ConversionError` (exit 4) naming the layer rnnedge cannot rebuild exactly.
    """
    path = find_model_json(source)
    if path is None:
        p = Path(source)
        if not p.exists():
            raise UsageError(f"model file not found: {p}")
        raise UsageError(f"{p}: not a TF.js model.json (no modelTopology)")
    mj = read_model_json(path)
    g = parse_topology(mj, path)
    saved, dtypes, files = read_weights(mj, path.parent)
    model, notes = build_keras(g, saved, path)
    tfjs_inputs = []
    for r in g.inputs:
        c = g.layers[r[0]].cfg
        tfjs_inputs.append({"name": r[0], "shape": list(c.get("batch_input_shape") or c.get("batch_shape")),
                            "dtype": "int32" if str(c.get("dtype")) == "int32" else "float32"})
    src = {"kind": "tfjs", "path": str(path), "name": g.name, "format": mj.get("format") or LAYERS_FORMAT,
           "topology": g.kind, "generated_by": mj.get("generatedBy"), "converted_by": mj.get("convertedBy"),
           "weights": dtypes, "weight_files": [str(f.relative_to(path.parent)) for f in files],
           "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    custom = sorted({c for layer in g.layers.values()
                     for c in (layer.cls, (layer.cfg.get("layer") or {}).get("class_name")) if c in CUSTOM_CLASSES})
    if custom:
        src["custom_layers"] = custom
    if notes:
        src["notes"] = notes
    return TfjsImport(model, path, mj, files, src, tfjs_inputs, custom)


def write_reference(imp: TfjsImport, out_dir: Path, output_names: list[str]) -> dict[str, dict]:
    """Copy the TF.js model into ``out_dir/source.tfjs/`` (shards byte-identical; model.json with
    ``userDefinedMetadata.rnnedge`` naming inputs and outputs like the Keras model) for
    ``validate --reference tfjs``. Returns its manifest entry."""
    out_dir = Path(out_dir)
    from rnnedge.matching import unique_names

    names = unique_names(output_names)  # Keras repeats names for several outputs of one layer
    outputs = [{"name": n, "shape": [None if d is None else int(d) for d in t.shape], "dtype": "float32"}
               for n, t in zip(names, imp.model.outputs)]
    mj = dict(imp.model_json)
    meta = dict(mj.get("userDefinedMetadata") or {})
    meta["rnnedge"] = {"inputs": imp.tfjs_inputs, "outputs": outputs, "custom_layers": imp.custom_layers,
                       "imported_from": imp.source["path"]}
    mj["userDefinedMetadata"] = meta
    tmp = Path(tempfile.mkdtemp(prefix=f".{REFERENCE_DIR}.", dir=out_dir))
    os.chmod(tmp, 0o755)
    final = out_dir / REFERENCE_DIR
    try:
        (tmp / "model.json").write_text(json.dumps(mj))
        for f in imp.weight_files:
            dest = tmp / f.relative_to(imp.path.parent)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {REFERENCE_DIR: {
        "format": "tfjs", "kind": "directory", "role": "reference", "model": f"{REFERENCE_DIR}/model.json",
        "inputs": imp.tfjs_inputs, "outputs": outputs, "weights": imp.source["weights"],
        "note": "the TF.js model the export was made from (validate --reference tfjs runs it in Node)"}}
