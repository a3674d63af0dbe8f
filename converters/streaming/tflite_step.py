"""TFLite step model: a fixed-batch-1 ``tf.function`` running one timestep with the Keras cells.

The function takes one timestep (``(1, features)`` floats or a ``(1,)`` token id) and the
state of every recurrent layer (``(1, units)`` each), calls each layer's own Keras cell
(``layer.cell(x, states)``, the same code the full model runs per step) and returns a dict
``{output: y, "<layer>__h_out": h, ...}``. One step has no loop, so the converter emits builtin
ops only (no WHILE, no Flex). The signature's input/output names are the state names.
"""
from __future__ import annotations

from converters.streaming.plan import StepPlan
from rnnedge.errors import ConversionError, MissingDependencyError, install_command

BATCH = 1


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependencyError("TensorFlow (to convert to TFLite)", install_command("tensorflow")) from None
    return tf


def build_tflite_step(plan: StepPlan) -> tuple[bytes, dict]:
    """Return (flatbuffer bytes, info) for the step model of ``plan``."""
    tf = _tf()
    in_dtype = tf.as_dtype(plan.input_dtype)
    x_shape = [BATCH] if plan.tokens else [BATCH, plan.features]
    spec = {plan.input_name: tf.TensorSpec(x_shape, in_dtype, name=plan.input_name)}
    for s in plan.states:
        spec[s["name"]] = tf.TensorSpec([BATCH, s["units"]], tf.float32, name=s["name"])

    def step_fn(feeds):
        cur = feeds[plan.input_name]
        out = {}
        for st in plan.stages:
            layer = st.layer
            if st.kind == "embedding":
                cur = tf.gather(layer.embeddings, cur)
            elif st.kind == "dense":
                cur = layer(cur, training=False)
            else:
                mine = [s for s in plan.states if s["layer"] == st.name]
                states = [feeds[s["name"]] for s in mine]
                cur, new = layer.cell(cur, states, training=False)
                if not isinstance(new, (list, tuple)):
                    new = [new]
                for s, v in zip(mine, new):
                    out[s["output"]] = tf.identity(v)
        result = {plan.output_name: tf.identity(cur)}
        result.update(out)
        return result

    import tempfile

    fn = tf.function(step_fn, input_signature=[spec], autograph=False)
    module = tf.Module()
    module.step = fn
    # the Keras variables' tf.Variables must be tracked by the saved object
    module.weights = [getattr(w, "value", w) for st in plan.stages for w in st.layer.weights]
    with tempfile.TemporaryDirectory(prefix="rnnedge-step-") as d:
        # a SavedModel signature keeps the input/output names (the state names) in the flatbuffer
        tf.saved_model.save(module, d, signatures={"serving_default": fn.get_concrete_function()})
        conv = tf.lite.TFLiteConverter.from_saved_model(d)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            data = conv.convert()
        except Exception as e:  # noqa: BLE001 - the converter raises many types
            msg = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
            raise ConversionError(f"TFLite step model: conversion failed: {msg}", fmt="tflite") from None
    inputs_info = [{"name": plan.input_name, "shape": x_shape, "dtype": in_dtype.name}]
    inputs_info += [{"name": s["name"], "shape": [BATCH, s["units"]], "dtype": "float32"} for s in plan.states]
    outputs_info = [{"name": plan.output_name, "shape": [BATCH, plan.output_dim], "dtype": "float32"}]
    outputs_info += [{"name": s["output"], "shape": [BATCH, s["units"]], "dtype": "float32"} for s in plan.states]
    return data, {"inputs": inputs_info, "outputs": outputs_info, "batch_size": BATCH}


def tflite_step_runner(data: bytes):
    """A ``feeds -> {name: array}`` function over LiteRT (``ai_edge_litert``) for ``data``.

    Returns (run, info): info has the op names in the flatbuffer and the interpreter used.
    """
    try:
        from ai_edge_litert import interpreter as mod
        rt = "litert"
    except ImportError:  # pragma: no cover - depends on the install
        mod, rt = _tf().lite, "tf.lite"
    it = mod.Interpreter(model_content=data)
    sigs = it.get_signature_list()
    key = sorted(sigs)[0]
    runner = it.get_signature_runner(key)

    def run(feeds):
        return {k: v.copy() for k, v in runner(**feeds).items()}

    ops = []
    try:
        ops = sorted({d["op_name"] for d in it._get_ops_details()})
    except Exception:  # noqa: BLE001 - private API, best effort
        pass
    return run, {"interpreter": rt, "signature": key, "signature_io": sigs[key], "op_names": ops}
