"""rnnedge.decoding.greedy_decode on a tiny encoder-decoder: Keras and ONNX give the same tokens,
decoding stops at end_id, max_len is respected, fixed batch / fixed length runtimes work."""
from __future__ import annotations

import numpy as np
import pytest

from rnnedge.decoding import greedy_decode, trim
from rnnedge.errors import UsageError
from rnnedge.runtime.base import Runner, TensorInfo

VOCAB, START = 9, 1
NEVER = -1  # an end id no model produces: decode to max_len

SPEC = {
    "name": "tiny_s2s", "task": "seq2seq",
    "inputs": [{"name": "encoder_tokens", "shape": [None], "dtype": "int32", "vocab_size": VOCAB},
               {"name": "decoder_tokens", "shape": [None], "dtype": "int32", "vocab_size": VOCAB}],
    "nodes": [
        {"name": "enc_embed", "type": "Embedding", "inputs": ["encoder_tokens"], "output_dim": 4, "mask_zero": True},
        {"name": "encoder", "type": "LSTM", "inputs": ["enc_embed"], "units": 6, "return_state": True},
        {"name": "dec_embed", "type": "Embedding", "inputs": ["decoder_tokens"], "output_dim": 4, "mask_zero": True},
        {"name": "decoder", "type": "LSTM", "inputs": ["dec_embed"], "units": 6, "return_sequences": True,
         "initial_state": ["encoder:1", "encoder:2"]},
        {"name": "next_token", "type": "TimeDistributed", "inputs": ["decoder"],
         "layer": {"type": "Dense", "units": VOCAB, "activation": "softmax"}},
    ],
    "outputs": ["next_token"],
    "compile": {"loss": "sparse_categorical_crossentropy"},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random-weight encoder-decoder (large embeddings so the argmax varies) as .keras and .onnx."""
    import rnnedge

    d = tmp_path_factory.mktemp("s2s")
    model = rnnedge.build(SPEC, seed=3)
    rng = np.random.default_rng(3)
    for layer in model.layers:  # spread the random weights: varied, confident argmaxes
        if type(layer).__name__ in ("Embedding", "TimeDistributed"):
            layer.set_weights([w * 4 for w in layer.get_weights()])
    model.save(d / "tiny.keras")
    res = rnnedge.export(d / "tiny.keras", "onnx", d / "export", validate=False)
    src = rng.integers(2, VOCAB, size=(12, 5)).astype(np.int32)
    for r, n in enumerate([5, 4, 3, 2, 5, 1, 4, 3, 5, 2, 3, 4]):
        src[r, n:] = 0  # post-padded sources of several lengths
    return {"keras": res.out_dir / "reference.keras", "onnx": res.out_dir / "model.onnx", "src": src}


@pytest.fixture(scope="module")
def runners(exported):
    from rnnedge import open_runner

    rs = {k: open_runner(exported[k]).load() for k in ("keras", "onnx")}
    yield rs
    for r in rs.values():
        r.close()


class Counting:
    """Wraps a runner and counts its runs (greedy_decode only needs load/run/inputs/outputs)."""

    def __init__(self, inner):
        self.inner, self.calls, self.shapes = inner, 0, []
        self.path = inner.path

    def load(self):
        return self.inner.load()

    @property
    def inputs(self):
        return self.inner.inputs

    @property
    def outputs(self):
        return self.inner.outputs

    def run(self, feeds):
        self.calls += 1
        self.shapes.append({k: tuple(v.shape) for k, v in feeds.items()})
        return self.inner.run(feeds)


def test_keras_and_onnx_decode_the_same_tokens(exported, runners):
    k = greedy_decode(runners["keras"], exported["src"], START, NEVER, max_len=6)
    o = greedy_decode(runners["onnx"], exported["src"], START, NEVER, max_len=6)
    assert k.shape == (12, 6) and k.dtype == np.int32
    np.testing.assert_array_equal(k, o)
    assert len(np.unique(k)) >= 3, "a degenerate model would make this comparison meaningless"


def test_each_step_is_the_argmax_of_a_full_teacher_forcing_run(exported, runners):
    """The definition: token t is argmax of the model's output at t given <start> + tokens < t."""
    src = exported["src"]
    got = greedy_decode(runners["onnx"], src, START, NEVER, max_len=5)
    dec = np.concatenate([np.full((len(src), 1), START, np.int32), got[:, :4]], axis=1)
    probs = runners["onnx"].run({"encoder_tokens": src, "decoder_tokens": dec})["next_token"]
    np.testing.assert_array_equal(probs.argmax(-1), got)


def test_padded_prefix_is_exact(exported, runners):
    """pad_to (constant shapes) gives the tokens of the growing prefix: the decoder is causal."""
    grow = Counting(runners["onnx"])
    a = greedy_decode(grow, exported["src"], START, NEVER, max_len=6)
    fixed = Counting(runners["onnx"])
    b = greedy_decode(fixed, exported["src"], START, NEVER, max_len=6, pad_to=9)
    np.testing.assert_array_equal(a, b)
    assert [s["decoder_tokens"][1] for s in grow.shapes] == [1, 2, 3, 4, 5, 6]
    assert {s["decoder_tokens"][1] for s in fixed.shapes} == {9}


def test_stops_at_end_id(exported, runners):
    src = exported["src"]
    free = greedy_decode(runners["onnx"], src, START, NEVER, max_len=6)
    end = int(free[0, 1])  # the token row 0 produces second: make it the end token
    counted = Counting(runners["onnx"])
    got = greedy_decode(counted, src, START, end, max_len=6)
    for row_free, row in zip(free, got):
        hits = np.flatnonzero(row_free == end)
        if len(hits) == 0:
            np.testing.assert_array_equal(row, row_free)
        else:  # the same tokens up to and including the first end, padding after
            k = hits[0]
            np.testing.assert_array_equal(row[:k + 1], row_free[:k + 1])
            assert (row[k + 1:] == 0).all()
            assert trim(row, end) == row_free[:k].tolist()
    assert got[0, 1] == end and (got[0, 2:] == 0).all()
    # all rows finished early -> fewer runs than max_len
    if all((free[i] == end).any() for i in range(len(src))):
        assert counted.calls < 6


def test_max_len_respected(exported, runners):
    counted = Counting(runners["onnx"])
    got = greedy_decode(counted, exported["src"], START, NEVER, max_len=3)
    assert got.shape == (12, 3) and counted.calls == 3
    longer = greedy_decode(runners["onnx"], exported["src"], START, NEVER, max_len=7)
    np.testing.assert_array_equal(longer[:, :3], got)  # a longer budget only appends
    assert greedy_decode(runners["onnx"], exported["src"], START, NEVER, max_len=1).shape == (12, 1)


class FixedShapeOnnx(Runner):
    """The ONNX model seen through a runtime with batch 1 and fixed time lengths (like a TFLite file
    exported with batch 1, seq_len 8): refuses any other shape."""

    def __init__(self, inner, length=8):
        super().__init__(path="fixed.tflite", runtime="fake")
        self.inner, self.length = inner, length

    def _load(self):
        self.inputs = [TensorInfo(i.name, [1, self.length], "int32") for i in self.inner.inputs]
        self.outputs = [TensorInfo(o.name, [1, self.length, VOCAB], "float32") for o in self.inner.outputs]

    def _run(self, feeds):
        for k, v in feeds.items():
            assert v.shape == (1, self.length), (k, v.shape)
        return self.inner.run(feeds)


def test_fixed_batch_and_length_runtime_loops_rows(exported, runners):
    want = greedy_decode(runners["onnx"], exported["src"], START, NEVER, max_len=6)
    got = greedy_decode(FixedShapeOnnx(runners["onnx"]), exported["src"], START, NEVER, max_len=6)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(UsageError, match="fixed decoder length 8"):
        greedy_decode(FixedShapeOnnx(runners["onnx"]), exported["src"], START, NEVER, max_len=9)


def test_bad_calls_raise_usage_errors(exported, runners):
    with pytest.raises(UsageError, match="2-D array of token ids"):
        greedy_decode(runners["onnx"], exported["src"][0], START, NEVER, max_len=3)
    with pytest.raises(UsageError, match="max_len must be >= 1"):
        greedy_decode(runners["onnx"], exported["src"], START, NEVER, max_len=0)
    with pytest.raises(UsageError, match="no encoder input named 'tokens'"):
        greedy_decode(runners["onnx"], exported["src"], START, NEVER, max_len=3, encoder_input="tokens")


def test_decoding_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, rnnedge.decoding; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
