"""Spec -> Keras 3 model (imports Keras; not on the edge path).

Every spec is built as a functional model (sequential specs are a chain), named after
the spec, with each input named as in the spec. Layer options map one-to-one onto Keras
arguments; the few that are not plain values (initializers, regularizers, call-time
arguments such as ``initial_state`` and ``causal``) are translated here, in one place.
"""
from __future__ import annotations

import os
from typing import Any

from rnnedge.errors import SpecError
from rnnedge.spec import load_spec
from rnnedge.spec import schema as S
from rnnedge.spec.check import _parse_ref

# spec fields that are not Keras constructor arguments
_NOT_KERAS = {"type", "inputs", "initial_state", "layer", "causal", "name"}


def _keras():
    from rnnedge._keras import keras

    return keras()


def _initializer(v):
    keras = _keras()
    if isinstance(v, str):
        return v
    cfg = v.model_dump(exclude_none=True)
    cls = S.INITIALIZERS[cfg.pop("type")]
    return keras.initializers.get({"class_name": cls, "config": cfg})


def _regularizer(v):
    keras = _keras()
    return None if v is None else keras.regularizers.L1L2(l1=v.l1, l2=v.l2)


def _kwargs(layer) -> dict[str, Any]:
    kw = {}
    for field in type(layer).model_fields:
        if field in _NOT_KERAS:
            continue
        val = getattr(layer, field)
        if field.endswith("_initializer"):
            val = _initializer(val)
        elif field.endswith("_regularizer"):
            val = _regularizer(val)
            if val is None:
                continue
        kw[field] = val
    return kw


def make_layer(layer, name: str | None = None, vocab_size: int | None = None):
    """One spec layer -> one Keras layer object (not yet called)."""
    keras = _keras()
    L = keras.layers
    t = layer.type
    kw = _kwargs(layer)
    if t == "Embedding" and kw.get("input_dim") is None:
        kw["input_dim"] = vocab_size
    nm = layer.name or name
    if nm:
        kw["name"] = nm
    if t == "Bidirectional":
        inner = make_layer(layer.layer)
        return L.Bidirectional(inner, merge_mode=layer.merge_mode, name=nm)
    if t == "TimeDistributed":
        return L.TimeDistributed(make_layer(layer.layer), name=nm)
    if t == "MultiHeadAttention":
        if kw.get("output_shape") is None:
            kw.pop("output_shape", None)
    if t == "Activation":
        return L.Activation(kw["activation"], name=nm)
    if t == "Reshape":
        return L.Reshape(tuple(kw["target_shape"]), name=nm)
    cls = getattr(L, t)
    return cls(**kw)


def _call(klayer, layer, args: list, states: list | None):
    t = layer.type
    kw = {}
    if states:
        kw["initial_state"] = states
    if t == "Attention":
        return klayer(args, use_causal_mask=layer.causal)
    if t == "MultiHeadAttention":
        q = args[0]
        v = args[1] if len(args) > 1 else q
        k = args[2] if len(args) > 2 else None
        return klayer(q, v, key=k, use_causal_mask=layer.causal)
    if t in ("Concatenate", "Add", "Multiply", "Average"):
        return klayer(args)
    return klayer(args[0], **kw)


def build_model(source, *, seed: int | None = None, compile: bool = True, name: str | None = None):
    """Build the Keras model a spec describes. ``source``: Spec, dict, path or preset name."""
    spec = load_spec(source)
    keras = _keras()
    if seed is None:
        seed = spec.train.seed
    keras.utils.set_random_seed(seed)
    inputs = {}
    for i in spec.inputs:
        inputs[i.name] = keras.Input(shape=tuple(i.shape), dtype=i.dtype, name=i.name,
                                     batch_size=i.batch_size)
    try:
        if not spec.is_graph:
            x = inputs[spec.inputs[0].name]
            vocab = spec.inputs[0].vocab_size
            for i, layer in enumerate(spec.layers):
                klayer = make_layer(layer, vocab_size=vocab)
                try:
                    x = _call(klayer, layer, [x], None)
                except Exception as e:  # a Keras refusal the static checks did not foresee
                    raise SpecError(f"layers[{i}]", f"Keras refused this layer: {_short(e)}", source=None) from None
            outputs = [x]
        else:
            tensors: dict[str, list] = {k: [v] for k, v in inputs.items()}
            vocabs = {i.name: i.vocab_size for i in spec.inputs}
            order = _topological(spec)
            for i in order:
                node = spec.nodes[i]
                src = _parse_ref(node.inputs[0])[0]
                klayer = make_layer(node, vocab_size=vocabs.get(src))
                n_in = len(node.inputs)
                refs = node.call_inputs()
                vals = []
                for ref in refs:
                    base, idx = _parse_ref(ref)
                    vals.append(tensors[base][idx])
                try:
                    out = _call(klayer, node, vals[:n_in], vals[n_in:] or None)
                except Exception as e:
                    raise SpecError(f"nodes[{i}]", f"Keras refused node '{node.name}': {_short(e)}") from None
                tensors[node.name] = list(out) if isinstance(out, (list, tuple)) else [out]
            outputs = []
            for ref in spec.outputs:
                base, idx = _parse_ref(ref)
                outputs.append(tensors[base][idx])
    except SpecError:
        raise
    ins = [inputs[i.name] for i in spec.inputs]
    model = keras.Model(ins if len(ins) > 1 else ins[0], outputs if len(outputs) > 1 else outputs[0],
                        name=_model_name(name or spec.name))
    if compile and spec.compile:
        compile_model(model, spec)
    return model


def _model_name(n: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", n) or "model"


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[0][:300] if msg else type(e).__name__


def _topological(spec: S.Spec) -> list[int]:
    index = {n.name: i for i, n in enumerate(spec.nodes)}
    order, seen = [], set()

    def visit(i):
        if i in seen:
            return
        seen.add(i)
        for ref in spec.nodes[i].call_inputs():
            base, _ = _parse_ref(ref)
            if base in index:
                visit(index[base])
        order.append(i)

    for i in range(len(spec.nodes)):
        visit(i)
    return order


def compile_model(model, spec: S.Spec):
    keras = _keras()
    o = spec.compile.optimizer_spec()
    kw = {"learning_rate": o.learning_rate}
    for k in ("clipnorm", "clipvalue", "global_clipnorm", "momentum", "weight_decay"):
        v = getattr(o, k)
        if v is not None:
            kw[k] = v
    opt = keras.optimizers.get({"class_name": {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD",
                                               "rmsprop": "RMSprop", "adagrad": "Adagrad",
                                               "nadam": "Nadam", "adamax": "Adamax"}[o.name],
                                "config": kw})
    metrics = [keras.metrics.RootMeanSquaredError(name="rmse") if m == "rmse" else
               keras.metrics.AUC(name="auc") if m == "auc" else m for m in spec.compile.metrics]
    model.compile(optimizer=opt, loss=spec.compile.loss, metrics=metrics)
    return model
