"""Recurrent lowerings of the ONNX exporter (converters.onnx.recurrent): every form reproduces Keras
(parity <= 1e-5 at batch 1 and 3: masks and padding sides, go_backwards, Bidirectional merges,
initial states, activations, GRU reset_after) with the op types its form promises; the automatic
choice per layer and its record in the manifest. The models come from test_onnx_export's cases."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_onnx_export import (CASES, SHAPES, TOL, _randomize_biases, bidir, built,  # noqa: E402
                              initial_state_inputs, keras_ref, make_feeds)

from converters.onnx.graph import convert_model  # noqa: E402
from converters.onnx.recurrent import NATIVE_RNN_MAX_BATCH_UNITS, choose_lowering  # noqa: E402
from converters.registry import ExportOptions, get_exporter  # noqa: E402
from rnnedge.errors import ConversionError  # noqa: E402

NATIVE = {"LSTM", "GRU", "RNN"}
# "if": an If on the batch size with the native op up to batch 1 and the Scan above, so batch 1
# and batch 3 run different branches of the same graph
FORMS = {"scan": {"onnx_rnn_lowering": "scan"},
         "if": {"onnx_rnn_lowering": "auto", "onnx_rnn_native_max_batch": 1}}
RECURRENT_CASES = [c for c in CASES if not c.startswith(("mha", "attention", "conv", "misc", "slicing"))]
# SimpleRNN cases test_onnx_export does not have
EXTRA = {"bidir-rnn-masked-state": bidir("rnn", "concat", True, True, state=True),
         "bidir-rnn-ave-rs0": bidir("rnn", "ave", False, False),
         "init-state-rnn": initial_state_inputs("rnn")}
# the automatic choice makes an If only for SimpleRNN layers (LSTM/GRU stay native)
RNN_CASES = [c for c in RECURRENT_CASES if c.startswith(("rnn-", "masked-rnn"))] + list(EXTRA)
PADDED = ["masked-lstm-rs1", "masked-gru-rs0", "masked-rnn-rs1", "masked-lstm-gb-rs1", "masked-gru-gb-rs0",
          "bidir-masked-concat-rs1", "bidir-masked-None-rs0", "bidir-gru-masked-state", "sentiment_like",
          "textgen_like", "seq2seq"]
_LOWERED: dict = {}


def lowered(case: str, form: str):
    """(model, session, info, model proto) of ``case`` exported with ``form``, built once."""
    key = (case, form)
    if key not in _LOWERED:
        if case in EXTRA:
            keras.utils.set_random_seed(1)
            model = EXTRA[case]()
            _randomize_biases(model)
        else:
            model = built(case)[0]
        mp, info = convert_model(model, ExportOptions(extra=FORMS[form]))
        sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
        _LOWERED[key] = (model, sess, info, mp)
    return _LOWERED[key]


def max_error(model, sess, info, feeds) -> float:
    ref = keras_ref(model, [i["name"] for i in info["inputs"]], feeds)
    got = sess.run(None, feeds)
    assert len(got) == len(ref)
    errs = []
    for r, y in zip(ref, got):
        assert r.shape == y.shape
        errs.append(float(np.max(np.abs(r - y))))
    return max(errs)


def _subgraphs(node) -> dict:
    return {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}


def _ops(graph) -> set[str]:
    return {n.op_type for n in graph.node}


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("case,form", [(c, "scan") for c in RECURRENT_CASES + list(EXTRA)]
                         + [(c, "if") for c in RNN_CASES])
def test_lowering_parity(case, form):
    model, sess, info, _ = lowered(case, form)
    for batch, t in SHAPES:
        err = max_error(model, sess, info, make_feeds(info, batch, t))
        assert err <= TOL, f"{case} ({form}) batch={batch} T={t}: max abs error {err}"


@pytest.mark.parametrize("padding", ["pre", "hole"])
@pytest.mark.parametrize("case", PADDED)
def test_scan_padding_sides(case, padding):
    model, sess, info, _ = lowered(case, "scan")
    feeds = make_feeds(info, 3, 8, padding=padding)
    assert max_error(model, sess, info, feeds) <= TOL


@pytest.mark.parametrize("case", ["masked-rnn-rs1", "bidir-masked-None-rs0", "sentiment_like"])
def test_scan_fully_padded_row(case):
    """sequence_lens = 0 for one row: the Scan keeps the initial state (zeros), as Keras does."""
    model, sess, info, _ = lowered(case, "scan")
    feeds = make_feeds(info, 3, 6)
    feeds["tokens"][1, :] = 0
    assert max_error(model, sess, info, feeds) <= TOL


def test_a_wrong_scan_body_fails_parity():
    """Twin of the parity gate: the same graph with one recurrent weight changed is caught."""
    model, _, info, mp = lowered("rnn-rs1-gb0", "scan")
    bad = onnx.ModelProto()
    bad.CopyFrom(mp)
    scan = next(n for n in bad.graph.node if n.op_type == "Scan")
    body = next(a.g for a in scan.attribute if a.name == "body")
    w = onnx.numpy_helper.to_array(body.initializer[0]).copy()
    w.flat[0] += 0.05
    body.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, body.initializer[0].name))
    sess = ort.InferenceSession(bad.SerializeToString(), providers=["CPUExecutionProvider"])
    assert max_error(model, sess, info, make_feeds(info, 3, 9)) > 1e-3


# --------------------------------------------------------------------------- op types per form
def test_scan_form_op_types():
    """Hoisted projection outside, only the recurrent Gemm and gate maths inside the Scan."""
    for case, kind, n_proj in [("rnn-rs1-gb0", "RNN", 1), ("lstm-rs0-gb1", "LSTM", 1), ("gru-rs1-gb0", "GRU", 2),
                               ("bidir-concat-rs1", "LSTM", 2)]:
        _, _, info, mp = lowered(case, "scan")
        top = _ops(mp.graph)
        assert not top & NATIVE and "Loop" not in top and "If" not in top, (case, top)
        scans = [n for n in mp.graph.node if n.op_type == "Scan"]
        assert len(scans) == 1, case  # both directions of a Bidirectional share one Scan
        body = _subgraphs(scans[0])["body"]
        inner = _ops(body)
        assert not inner & (NATIVE | {"Scan", "Loop", "If"}), (case, inner)
        assert "Gemm" in inner
        assert info["op_types"]["MatMul"] == n_proj, (case, info["op_types"])  # the input projections
        assert [r["lowering"] for r in info["recurrent_lowering"]] == ["scan"]
        assert info["recurrent_lowering"][0]["kind"] == kind


def test_if_form_holds_the_native_op_and_the_scan():
    _, _, info, mp = lowered("rnn-rs1-gb1", "if")
    ifs = [n for n in mp.graph.node if n.op_type == "If"]
    assert len(ifs) == 1 and not _ops(mp.graph) & (NATIVE | {"Scan", "Loop"})
    branches = _subgraphs(ifs[0])
    then_g, else_g = branches["then_branch"], branches["else_branch"]
    assert "RNN" in _ops(then_g) and "Scan" not in _ops(then_g)
    assert "Scan" in _ops(else_g) and not _ops(else_g) & NATIVE
    rec = info["recurrent_lowering"][0]
    assert rec["lowering"] == "if" and rec["native_max_batch"] == 1


def test_default_export_keeps_native_lstm_gru():
    for case, kind in [("lstm-rs1-gb0", "LSTM"), ("gru-rs0-gb0", "GRU"), ("bidir-concat-rs1", "LSTM"),
                       ("bidir-gru-masked-state", "GRU")]:
        _, info = convert_model(built(case)[0], ExportOptions())
        assert info["op_types"].get(kind) == 1 and not set(info["op_types"]) & {"Scan", "Loop", "If"}
        assert [r["lowering"] for r in info["recurrent_lowering"]] == ["native"]


# --------------------------------------------------------------------------- the choice
def test_choose_lowering():
    assert choose_lowering("LSTM", 256, None).form == "native"
    assert choose_lowering("GRU", 8, 128).form == "native"
    assert choose_lowering("RNN", 256, None).form == "scan"
    assert choose_lowering("RNN", 64, 1).form == "scan"
    low = choose_lowering("RNN", 32, None)
    assert low.form == "if" and low.native_max_batch == NATIVE_RNN_MAX_BATCH_UNITS // 32
    assert choose_lowering("RNN", 32, 1).form == "native"   # fixed batch: no If
    assert choose_lowering("RNN", 32, 8).form == "scan"
    assert choose_lowering("RNN", 4, None, native_max_batch=3).native_max_batch == 3
    assert choose_lowering("LSTM", 4, None, "scan").form == "scan"
    assert choose_lowering("RNN", 4, None, "native").form == "native"
    with pytest.raises(ConversionError, match="onnx_rnn_lowering='loop'"):
        choose_lowering("RNN", 4, None, "loop")


def test_fixed_batch_export_has_no_if():
    model = built("rnn-rs0-gb0")[0]
    for batch, form, op in [(1, "native", "RNN"), (16, "scan", "Scan")]:  # 4 units: native up to 12
        _, info = convert_model(model, ExportOptions(batch_size=batch))
        assert info["recurrent_lowering"][0]["lowering"] == form and op in info["op_types"]
        assert "If" not in info["op_types"]


def test_manifest_records_each_layers_lowering(tmp_path):
    model = built("textgen_like")[0]
    entry = get_exporter("onnx")(model, tmp_path, ExportOptions(extra={"onnx_rnn_lowering": "scan"}))["model.onnx"]
    recs = entry["recurrent_lowering"]
    assert [(r["kind"], r["lowering"]) for r in recs] == [("LSTM", "scan"), ("LSTM", "scan")]
    assert all(r["layer"] and r["reason"] and r["units"] == 5 for r in recs)
    assert entry["self_check"]["ok"]
