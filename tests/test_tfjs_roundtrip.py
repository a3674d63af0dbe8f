"""rnnedge's own TF.js exports import back: Keras -> `export -f tfjs` -> `export model.json -f onnx,tflite`.

The TF.js writer (converters/tfjs/writer.py) puts rnnedge's custom layers (rnnedge_layers.js) into
model.json: RnnedgeGRUResetAfter (Keras 3's default GRU), RnnedgeRNNGuard (before every RNN of a
graph with masks or initial states), RnnedgeZeroMaskedSteps (after an RNN whose masked steps Keras
zeroes) and RnnedgeMaskedGlobalAveragePooling1D. Every case below uses some of them (asserted), is
imported back by converters/tfjs/importer.py and exported to ONNX and TFLite with validation against
the TF.js original run in Node; the files are then run in onnxruntime and LiteRT directly and
compared with TF.js's own predictions of the model.json and with the original Keras model
(max abs error <= 1e-5). Needs node + the runner's node_modules (.ci/setup_node.sh), else skips;
the refusals at the end need only Python.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

import zoo_checks as zc  # noqa: E402
from conftest import NO_TFJS_NODE, perturb_onnx, tfjs_node_ok  # noqa: E402
from converters.registry import ExportOptions, get_exporter  # noqa: E402
from converters.tfjs import importer  # noqa: E402
from converters.tfjs.layers import GRU_RESET_AFTER as GRU_RA  # noqa: E402
from converters.tfjs.layers import MASKED_GAP1D as MASKED_GAP  # noqa: E402
from converters.tfjs.layers import RNN_GUARD as GUARD  # noqa: E402
from converters.tfjs.layers import ZERO_MASKED_STEPS as ZERO  # noqa: E402
from rnnedge.errors import ConversionError  # noqa: E402
from rnnedge.runtime.tfjs import run_many  # noqa: E402

TOL = 1e-5
T = 6
needs_node = pytest.mark.skipif(not tfjs_node_ok(), reason=NO_TFJS_NODE)


def _floats(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ids(batch=3, t=T, vocab=12, seed=0):
    """Token ids: row 0 post-padded, row 1 pre-padded, the rest full (every row keeps a token)."""
    x = np.random.default_rng(seed).integers(1, vocab, (batch, t)).astype(np.int32)
    x[0, t - 2:] = 0
    x[1, :3] = 0
    return x


def _seq(*ls, shape=(T, 3), dtype="float32", name=None):
    return keras.Sequential([keras.Input(shape, dtype=dtype)] + list(ls), name=name)


def _masked(*ls):
    return _seq(layers.Embedding(12, 3, mask_zero=True), *ls, shape=(T,), dtype="int32")


def _bidi_none_sequences():
    """Both sequence outputs of a masked Bidirectional(merge_mode=None): a model output and RNN inputs."""
    i = keras.Input((T,), dtype="int32", name="ids")
    fwd, bwd = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode=None)(
        layers.Embedding(12, 3, mask_zero=True)(i))
    return keras.Model(i, [layers.GRU(2)(fwd), bwd, layers.LSTM(2)(bwd)], name="bidi_none")


def _seq2seq():
    """GRU encoder state -> GRU decoder initial state, both inputs masked (the decoder's guard drops
    the mask as Keras does and clears the encoder's initialState from TF.js's shared kwargs)."""
    ei = keras.Input((5,), dtype="int32", name="enc_ids")
    di = keras.Input((4,), dtype="int32", name="dec_ids")
    _, h = layers.GRU(4, return_state=True, name="encoder")(layers.Embedding(12, 3, mask_zero=True)(ei))
    o = layers.GRU(4, return_sequences=True, name="decoder")(layers.Embedding(12, 3, mask_zero=True)(di),
                                                             initial_state=h)
    return keras.Model([ei, di], layers.TimeDistributed(layers.Dense(5))(o), name="seq2seq")


def _stale_mask():
    """A mask used by the first GRU only: the second one's guard gives it an all-true mask."""
    i = keras.Input((T,), dtype="int32")
    x = layers.RepeatVector(T)(layers.GRU(3)(layers.Embedding(12, 3, mask_zero=True)(i)))
    return keras.Model(i, layers.GRU(3, return_sequences=True)(x), name="stale_mask")


# name -> (Keras model, inputs, custom layers the TF.js export must contain)
CASES = {
    "gru_reset_after": (lambda: _seq(layers.GRU(4, return_sequences=True), layers.Dense(2)),
                        lambda: [_floats((3, T, 3))], {GRU_RA}),
    "stacked_bigru": (lambda: _seq(layers.Bidirectional(layers.GRU(3, return_sequences=True)), layers.GRU(3),
                                   layers.Dense(2)),
                      lambda: [_floats((3, T, 3))], {GRU_RA}),
    "masked_bigru_gru_avgpool": (
        lambda: _masked(layers.Bidirectional(layers.GRU(3, return_sequences=True)),
                        layers.GRU(3, return_sequences=True), layers.GlobalAveragePooling1D(), layers.Dense(2)),
        lambda: [_ids()], {GRU_RA, GUARD, ZERO, MASKED_GAP}),
    "masked_bigru_none_sequences": (_bidi_none_sequences, lambda: [_ids()], {GRU_RA, GUARD, ZERO}),
    "masked_lstm_zero_output": (
        lambda: _masked(layers.LSTM(3, return_sequences=True, zero_output_for_mask=True), layers.Dense(2)),
        lambda: [_ids()], {GUARD, ZERO}),
    "seq2seq_gru_masked": (_seq2seq, lambda: [_ids(2, 5, seed=1), _ids(2, 4, seed=2)], {GRU_RA, GUARD}),
    "stale_mask_gru": (_stale_mask, lambda: [_ids()], {GRU_RA, GUARD}),
}
CLI_CASE = "gru_reset_after"   # the reported workflow, through the CLI


def _spread_weights(model, seed=0):
    """Weights uniform(-0.8, 0.8): Keras's initial embeddings (+-0.05) give outputs near 1e-3, too small
    for an absolute 1e-5 gate to tell a wrong rebuild from a right one."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _keras_outputs(model, xs):
    ys = model(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]


def _cli(*args):
    from click.testing import CliRunner

    from rnnedge.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def tfjs_exports(tmp_path_factory):
    """case -> {model, xs, keras (outputs), dir (the tfjs folder), tfjs (TF.js's predictions)}."""
    if not tfjs_node_ok():
        pytest.skip(NO_TFJS_NODE)
    root = tmp_path_factory.mktemp("tfjs_roundtrip")
    keras.utils.set_random_seed(0)
    cases = {}
    for name, (make, feeds, _) in CASES.items():
        model, xs = _spread_weights(make()), feeds()
        if name == CLI_CASE:   # `rnnedge export model.keras -f tfjs` (validated against Keras in Node)
            model.save(root / f"{name}.keras")
            r = _cli("export", root / f"{name}.keras", "-f", "tfjs", "-o", root / name)
            assert r.exit_code == 0, r.output[-3000:]
        else:
            get_exporter("tfjs")(model, root / name, ExportOptions(extra={"tfjs_self_check": False}))
        cases[name] = dict(model=model, xs=xs, keras=_keras_outputs(model, xs), dir=root / name / "tfjs")
    meta = {n: json.loads((c["dir"] / "model.json").read_text())["userDefinedMetadata"]["rnnedge"]
            for n, c in cases.items()}
    res = run_many([(str(c["dir"]), {i["name"]: x for i, x in zip(meta[n]["inputs"], c["xs"])})
                    for n, c in cases.items()])
    for (n, c), r in zip(cases.items(), res):
        assert "error" not in r, (n, r.get("error"))
        c["tfjs"] = [r["outputs"][k] for k in r["output_order"]]
    return cases


@pytest.fixture(scope="module")
def reexports(tfjs_exports, tmp_path_factory):
    """case -> the folder of `export <tfjs>/model.json -f onnx,tflite` (validated against source.tfjs)."""
    from rnnedge.exporting import export

    root = tmp_path_factory.mktemp("tfjs_reexport")
    out = {}
    for name, c in tfjs_exports.items():
        out[name] = root / name
        if name == CLI_CASE:
            r = _cli("export", c["dir"] / "model.json", "-f", "onnx,tflite", "-o", out[name])
            assert r.exit_code == 0, r.output[-3000:]
        else:
            export(c["dir"] / "model.json", ["onnx", "tflite"], out[name])
    return out


def _max_abs(got: list, want: list) -> float:
    assert len(got) == len(want)
    errs = []
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w)
        errs.append(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64)))))
    return max(errs)


@needs_node
@pytest.mark.parametrize("case", list(CASES))
def test_reexport_matches_tfjs_and_the_original_keras_model(case, tfjs_exports, reexports):
    c, out = tfjs_exports[case], reexports[case]
    mj = json.loads((c["dir"] / "model.json").read_text())
    used = {layer["class_name"] for layer in mj["modelTopology"]["config"]["layers"]} | {
        (layer["config"].get("layer") or {}).get("class_name") for layer in mj["modelTopology"]["config"]["layers"]}
    assert CASES[case][2] <= used, f"the TF.js export no longer uses {CASES[case][2] - used}"
    assert _max_abs(c["tfjs"], c["keras"]) <= TOL   # the TF.js original is itself right
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(man["source"]["custom_layers"]) == sorted(CASES[case][2] & set(mj["userDefinedMetadata"]["rnnedge"]
                                                                                  ["custom_layers"]))
    names = [t._keras_history.operation.name for t in c["model"].inputs]
    for art, run in (("model.onnx", zc.run_onnx), ("model.tflite", zc.run_tflite)):
        parity = man["artifacts"][art]["parity"]
        assert parity["verdict"] == "pass" and parity["reference"].startswith("source.tfjs/model.json"), art
        ran = run(out / art, c["xs"], names)
        got = ran["outputs"]
        if art == "model.tflite":   # signature outputs come sorted by name: the manifest maps them back
            index = {o["signature_name"]: o["keras_index"] for o in man["artifacts"][art]["outputs"]}
            got = [g for _, g in sorted(zip(ran["output_names"], got), key=lambda p: index[p[0]])]
        err_tfjs, err_keras = _max_abs(got, c["tfjs"]), _max_abs(got, c["keras"])
        print(f"{case} {art}: max abs error {err_tfjs:.2e} vs TF.js, {err_keras:.2e} vs Keras "
              f"(outputs up to {max(float(np.max(np.abs(k))) for k in c['keras']):.2f})")
        assert err_tfjs <= TOL, f"{case} {art}: max abs error {err_tfjs:.3g} vs TF.js"
        assert err_keras <= TOL, f"{case} {art}: max abs error {err_keras:.3g} vs the original Keras model"
    assert "Loop" not in zc.onnx_op_types(out / "model.onnx")["all"]


@needs_node
def test_validate_against_the_tfjs_original_passes_and_fails_a_wrong_artifact(tfjs_exports, reexports, tmp_path):
    from rnnedge.validation import validate

    src = reexports["masked_bigru_gru_avgpool"]
    rep = validate(src, samples=8, write_manifest=False, reference="tfjs")
    assert rep["ok"] and rep["reference"].startswith("source.tfjs/model.json"), rep
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    perturb_onnx(bad / "model.onnx")
    rep = validate(bad, ["model.onnx"], samples=8, write_manifest=False, reference="tfjs")
    assert rep["artifacts"]["model.onnx"]["verdict"] == "fail", rep["artifacts"]["model.onnx"]


@needs_node
def test_rebuilding_without_the_zeroed_masked_steps_fails_against_tfjs(tfjs_exports, tmp_path, monkeypatch):
    """Twin of the zeroing rule: an LSTM rebuilt without zero_output_for_mask (RnnedgeZeroMaskedSteps
    read as a plain identity) passes against its own reference.keras, fails against the TF.js original."""
    from rnnedge.exporting import export
    from rnnedge.validation import validate

    monkeypatch.setattr(importer, "_zeroed_sources", lambda g: None)
    out = tmp_path / "wrong"
    export(tfjs_exports["masked_lstm_zero_output"]["dir"], "onnx", out, validate=False)
    bad = validate(out, samples=8, write_manifest=False)
    assert bad["reference"].startswith("source.tfjs/model.json")
    assert bad["artifacts"]["model.onnx"]["verdict"] == "fail", bad["artifacts"]["model.onnx"]
    assert validate(out, samples=8, write_manifest=False, reference="keras")["ok"]


# --------------------------------------------------------------------------- refusals
def _zero_after_dense(cfg, by_name, zero, guard):     # rnn -> out (Dense) -> zero: a model output
    by_name["out"]["inbound_nodes"] = [[["rnn", 0, 0, {}]]]
    by_name[zero]["inbound_nodes"] = [[["out", 0, 0, {}]]]
    cfg["output_layers"] = [[zero, 0, 0]]


def _guard_ones(cfg, by_name, zero, guard):           # TF.js runs the LSTM unmasked, Keras would mask it
    by_name[guard]["config"]["mask_mode"] = "ones"


def _unzeroed_reader(cfg, by_name, zero, guard):      # out reads the LSTM's masked steps, not zeroed
    by_name["out"]["inbound_nodes"] = [[["rnn", 0, 0, {}]]]


# edit -> (layer named, words of the refusal)
REFUSALS = {
    _zero_after_dense: (ZERO, "it reads output 0 of 'out' (Dense); rnnedge rebuilds it only on the sequences "
                              "of a recurrent layer"),
    _guard_ones: ("rnn", "Keras 3 would mask it, TF.js does not"),
    _unzeroed_reader: ("rnn", "they reach the model output 'out': at masked steps TF.js repeats the last output"),
}


@pytest.fixture(scope="module")
def hand_edited(tmp_path_factory):
    """rnnedge's TF.js export of a masked LSTM(zero_output_for_mask) with its custom layers moved or
    changed by hand: edit name -> (model.json, the name the refusal must give)."""
    root = tmp_path_factory.mktemp("tfjs_edited")
    keras.utils.set_random_seed(0)
    model = _spread_weights(_masked(layers.LSTM(3, return_sequences=True, zero_output_for_mask=True, name="rnn"),
                                    layers.Dense(2, name="out")))
    get_exporter("tfjs")(model, root / "base", ExportOptions(extra={"tfjs_self_check": False}))
    out = {}
    for edit, (layer, _) in REFUSALS.items():
        folder = root / edit.__name__
        shutil.copytree(root / "base" / "tfjs", folder)
        mj = json.loads((folder / "model.json").read_text())
        cfg = mj["modelTopology"]["config"]
        by_name = {x["name"]: x for x in cfg["layers"]}
        zero = next(n for n, x in by_name.items() if x["class_name"] == ZERO)
        guard = next(n for n, x in by_name.items() if x["class_name"] == GUARD)
        edit(cfg, by_name, zero, guard)
        (folder / "model.json").write_text(json.dumps(mj))
        out[edit.__name__] = (folder / "model.json", zero if layer == ZERO else layer)
    return out


@pytest.mark.parametrize("edit", list(REFUSALS), ids=lambda f: f.__name__)
def test_custom_layers_placed_other_than_rnnedge_writes_them_are_refused(edit, hand_edited):
    path, layer = hand_edited[edit.__name__]
    with pytest.raises(ConversionError) as ei:
        importer.import_model(path)
    msg = str(ei.value)
    assert ei.value.layer == layer and f"'{layer}'" in msg and REFUSALS[edit][1] in msg, msg


@needs_node
def test_each_refusal_guards_a_real_difference(hand_edited, monkeypatch):
    """Twin: rebuilt anyway, each hand-edited model differs from what TF.js computes."""
    xs = _ids()
    res = run_many([(str(p), {json.loads(p.read_text())["userDefinedMetadata"]["rnnedge"]["inputs"][0]["name"]: xs})
                    for p, _ in hand_edited.values()])
    monkeypatch.setattr(importer, "_refuse", lambda layer, why: None)
    for (edit, (path, _)), r in zip(hand_edited.items(), res):
        assert "error" not in r, (edit, r.get("error"))
        got = np.asarray(importer.import_model(path).model(xs, training=False))
        want = r["outputs"][r["output_order"][0]]
        assert float(np.max(np.abs(got - want))) > 1e-3, edit
