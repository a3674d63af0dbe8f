"""ONNX export of every layer kind users bring, each inside a tiny recurrent model
(tests/onnx_layer_cases.py): parity with Keras in onnxruntime at batch 1 and 3 and two lengths,
recurrent layers as native LSTM/GRU/RNN ops (no Loop/Scan, except ConvLSTM through tf2onnx),
the native form of each layer, masks at every position, and merge layers that are wrong without
Keras's mask rules (twin tests)."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import onnx_layer_cases as C  # noqa: E402

from converters.onnx.graph import ONNX_LAYERS, Value, convert_model  # noqa: E402
from converters.registry import ExportOptions  # noqa: E402

TOL = 1e-5
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
CASES = C.build_cases()
_BUILT: dict = {}


def built(name: str):
    """(model, session, info), converted once per test run."""
    if name not in _BUILT:
        keras.utils.set_random_seed(1)
        model = CASES[name].build()
        C.randomize(model)
        mp, info = convert_model(model, ExportOptions())
        sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
        _BUILT[name] = (model, sess, info)
    return _BUILT[name]


def run_error(model, sess, info, batch, t, seed=0):
    fd = C.feeds(info, batch, t, seed=seed)
    ref = C.keras_ref(model, fd, [i["name"] for i in info["inputs"]])
    return C.max_error(ref, sess.run(None, fd))


@pytest.mark.parametrize("name", list(CASES))
def test_layer_parity_and_ops(name):
    case = CASES[name]
    model, sess, info = built(name)
    ops = info["op_types"]
    # every recurrent layer (or stacked cell) is one lowering of converters.onnx.recurrent: the native
    # op, or for SimpleRNN its MatMul + Scan / If forms (issue 17); never tf2onnx's Loop
    lowered = info["recurrent_lowering"]
    assert len(lowered) == case.rnn_ops, lowered
    assert sum(ops.get(k, 0) for k in RECURRENT_OPS) == sum(r["lowering"] == "native" for r in lowered), ops
    assert ("Loop" in ops) == case.loop, ops
    assert ("Scan" in ops or "If" in ops) == any(r["lowering"] != "native" for r in lowered), ops
    for op in case.ops:
        assert op in ops, f"{name}: no {op} in {ops}"
    for op in case.absent:
        assert op not in ops, f"{name}: {op} in {ops}"
    assert {l["class"] for l in info["layers"] if l["path"] == "fallback"} == set(case.fallback), info["layers"]
    for word in case.notes:
        assert any(word in n for n in info["notes"]), info["notes"]
    for batch, t in C.shapes(case):
        err = run_error(model, sess, info, batch, t)
        assert err <= TOL, f"{name} batch={batch} T={t}: max abs error {err}"


MASKED = [n for n, c in CASES.items() if c.tokens]


@pytest.mark.parametrize("name", MASKED)
def test_masked_rows_every_position(name):
    """Several padded rows (post, pre, holes): every output position, padded ones included."""
    model, sess, info = built(name)
    fd = C.feeds(info, 4, 8, seed=5)
    fd["tokens"][1, 3:] = 0
    fd["tokens"][2, :5] = 0
    assert (fd["tokens"] == 0).sum() >= 10
    ref = C.keras_ref(model, fd, ["tokens"])
    assert C.max_error(ref, sess.run(None, fd)) <= TOL


def _naive(onnx_op):
    """The merge converter as it was: a plain element-wise op, masks ignored (a wrong artifact)."""
    def convert(ctx, layer, args, kwargs):
        xs = list(args[0])
        y = xs[0].name
        for v in xs[1:]:
            y = ctx.graph.op(onnx_op, [y, v.name])
        return Value(y)
    return convert


@pytest.mark.parametrize("name,cls,op", [("merge-multiply-masked", "Multiply", "Mul"),
                                         ("merge-multiply-half-masked", "Multiply", "Mul"),
                                         ("merge-maximum-masked", "Maximum", "Max"),
                                         ("merge-minimum-half-masked", "Minimum", "Min")])
def test_merge_twin_without_mask_rules_fails(name, cls, op, monkeypatch):
    """The gate can fail: the same model converted with a plain element-wise op (Keras's mask rules
    ignored) differs from Keras at padded steps, while the real converter matches."""
    model, sess, info = built(name)
    fd = C.feeds(info, 3, 7)
    ref = C.keras_ref(model, fd, ["tokens"])
    assert C.max_error(ref, sess.run(None, fd)) <= TOL
    monkeypatch.setitem(ONNX_LAYERS._pool, cls, _naive(op))
    mp, _ = convert_model(model, ExportOptions())
    wrong = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
    got = wrong.run(None, fd)[0]
    pad = fd["tokens"] == 0
    assert np.abs(got - ref[0])[pad].max() > 1e-3  # wrong exactly at the padded steps
    assert np.abs(got - ref[0])[~pad].max() <= TOL


def test_batchnorm_fold_is_one_matmul():
    """BatchNormalization after a linear Dense becomes that Dense's weights: one MatMul + Add."""
    ops = built("batchnorm-folds-into-dense")[2]["op_types"]
    assert ops.get("MatMul") == 1 and ops.get("Add") == 1 and "Mul" not in ops


def test_bidirectional_one_op_when_configs_fit():
    """A backward_layer of the same kind, units and bias shares one bidirectional op, even with
    other activations; different kinds or units take two ops."""
    import onnx

    _, _, info = built("bidir-backward-same-config")
    assert info["op_types"]["GRU"] == 1
    model, _, _ = built("bidir-backward-gru")
    mp, _ = convert_model(model, ExportOptions())
    dirs = sorted(onnx.helper.get_attribute_value(a).decode() for n in mp.graph.node
                  if n.op_type in RECURRENT_OPS for a in n.attribute if a.name == "direction")
    assert dirs == ["forward", "forward"]  # the backward GRU runs on the reversed sequence


def test_stacked_states_in_keras_order():
    """RNN([LSTMCell, LSTMCell], return_state): output, h1, c1, h2, c2 like Keras."""
    model, sess, info = built("stacked-lstm-rs-state")
    assert len(info["outputs"]) == 5
    assert [o["shape"][-1] for o in info["outputs"]] == [3, C.U, C.U, 3, 3]
