"""Weight-only int8 rewrites on a generated set of recurrent models: ONNX (int8 W/R +
DequantizeLinear) and TFLite (int8 constants + DEQUANTIZE, WHILE bodies included), each run in
the plain runtime against the float file."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

L = keras.layers
T = 7

MODELS = {  # units 12-16: the smallest where every recurrent weight is worth an int8 copy
    "gru": lambda: [keras.Input((None, 3)), L.GRU(16), L.Dense(2)],
    "gru_reset_before": lambda: [keras.Input((None, 3)), L.GRU(16, reset_after=False), L.Dense(2)],
    "simple_rnn": lambda: [keras.Input((None, 2)), L.SimpleRNN(16, return_sequences=True), L.Dense(1)],
    "masked_lstm": lambda: [keras.Input((None,), dtype="int32"), L.Embedding(30, 8, mask_zero=True), L.LSTM(16),
                            L.Dense(1, activation="sigmoid")],
    "bigru_stack": lambda: [keras.Input((None, 3)), L.Bidirectional(L.GRU(12, return_sequences=True)), L.GRU(12),
                            L.Dense(2)],
    "conv_lstm": lambda: [keras.Input((None, 3)), L.Conv1D(8, 3, padding="same"), L.LSTM(16), L.Dense(1)],
    "backwards_rnn": lambda: [keras.Input((None, 4)), L.SimpleRNN(16, go_backwards=True), L.Dense(2)],
}


@pytest.fixture(scope="module")
def models():
    out = {}
    for i, (name, make) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(i)
        out[name] = keras.Sequential(make(), name=name)
    return out


def _inputs(model, rng):
    if "int" in str(model.inputs[0].dtype):
        x = rng.integers(1, 30, size=(2, T)).astype("int32")
        x[1, -2:] = 0  # padded row
        return x
    return rng.uniform(-1, 1, size=(2, T, model.inputs[0].shape[-1])).astype("float32")


def _all_graphs(graph):
    yield graph
    for n in graph.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from _all_graphs(sub)


def _all_nodes(graph):
    return [n for g in _all_graphs(graph) for n in g.node]


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_recurrent_weights_int8(models, name):
    from converters.onnx.exporter import build_onnx
    from converters.onnx.quantize import quantize_recurrent_weights
    from converters.registry import ExportOptions

    model = models[name]
    mp, _ = build_onnx(model, ExportOptions())
    x = _inputs(model, np.random.default_rng(0))
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {m.graph.input[0].name: x})[0]
    want = run(mp)
    q, facts = quantize_recurrent_weights(onnx.ModelProto.FromString(mp.SerializeToString()))
    producer = {o: n for n in q.graph.node for o in n.output}
    nodes = _all_nodes(q.graph)  # a small SimpleRNN is an If (native RNN | MatMul + Scan): bodies too
    rec = [n for n in nodes if n.op_type in ("LSTM", "GRU", "RNN")]
    assert rec and len(facts["weights"]) >= 2 * len(rec)
    for n in rec:
        for idx in (1, 2):
            assert producer[n.input[idx]].op_type == "DequantizeLinear", (n.name, idx)
    bodies = [n for n in nodes if n.op_type == "Scan"]
    for n in bodies:  # the step's recurrent weight comes from the main graph's DequantizeLinear
        body = next(a.g for a in n.attribute if a.name == "body")
        assert any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                   for b in body.node for i in b.input), n.name
    assert not any(t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) >= 16 and len(t.dims) >= 2
                   for g in list(_all_graphs(q.graph))[1:] for t in g.initializer
                   if not t.name.endswith(("/b", "/B")))  # bodies: every weight int8, biases float
    int8 = [t for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8) == len(facts["weights"]) and len(q.SerializeToString()) < len(mp.SerializeToString())
    got = run(q)
    err = float(np.max(np.abs(got - want)))
    assert 0 < err < 0.03, err  # quantized, and close to the float file


@pytest.mark.parametrize("name", list(MODELS))
def test_tflite_weights_int8_inside_and_outside_while(models, name):
    from converters.tflite.convert import convert, trace
    from converters.tflite.weights import op_counts, quantize_weights, weight_bytes
    from rnnedge.tflite_compat import check_compat, make_interpreter, run_interpreter

    model = models[name]
    content = convert(trace(model, batch_size=2, seq_len=T), model)
    new, facts = quantize_weights(content)
    before, after = op_counts(content), op_counts(new)
    assert after.get("DEQUANTIZE", 0) - before.get("DEQUANTIZE", 0) == facts["dequantize_ops"] > 0
    assert {k: v for k, v in after.items() if k != "DEQUANTIZE"} == \
        {k: v for k, v in before.items() if k != "DEQUANTIZE"}  # nothing else changed (no unrolling)
    if "WHILE" in before:
        assert any(w["subgraph"] > 0 for w in facts["weights"]), facts  # inside the loop body
    wb, fb = weight_bytes(new), weight_bytes(content)["float32"]
    assert wb["int8"] >= 0.25 * (fb - wb.get("float32", 0)) > 0, (wb, fb)  # a quarter of what was rewritten
    assert len(new) < len(content)
    for k in facts["kept_float"]:  # only where an int8 copy would not pay
        assert 3 * np.prod(k["shape"]) <= 256 + 12 * max(k["shape"]), k
    assert check_compat(new, try_litert=False)["tflite_runtime_2_14"] is True
    x = _inputs(model, np.random.default_rng(0))
    want = run_interpreter(make_interpreter(content)[0], [x])[0]
    got = run_interpreter(make_interpreter(new)[0], [x])[0]
    err = float(np.max(np.abs(got - want)))
    assert 0 < err < 0.03, err


def test_symmetric_int8_per_channel():
    from converters.int8 import dequantize, quantize_per_channel

    w = np.array([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.001]], np.float32)
    q, s = quantize_per_channel(w, axis=0)
    assert q.dtype == np.int8 and s.tolist() == pytest.approx([1 / 127, 1.0, 2 / 127])
    assert q[0].tolist() == [127, -64, 32] and q[1].tolist() == [0, 0, 0] and q[2, 0] == -127
    assert np.max(np.abs(dequantize(q, s, 0) - w)) <= s.max() / 2 + 1e-7
    q1, s1 = quantize_per_channel(w, axis=None)
    assert s1.shape == (1,) and np.abs(q1).max() == 127
