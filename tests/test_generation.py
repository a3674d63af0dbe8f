"""rnnedge.generation: temperature sampling and text generation through step models.

The sampler is checked statistically (chi-square against the tempered distribution, fixed seed);
generation against the Keras model itself: greedy decoding through the ONNX / TFLite step
models (state carried) must give the argmax chain of the full model re-run on the growing text.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from keras import layers  # noqa: E402

from rnnedge.errors import UsageError  # noqa: E402
from rnnedge.generation import (apply_temperature, decode, encode, generate, generate_full,  # noqa: E402
                                sample)
from rnnedge.runtime.streaming import StreamingSession  # noqa: E402

V = 8                                   # output size; id 0 = padding
VOCAB = {c: i + 1 for i, c in enumerate("abcdefg")}
PRIME = "abcab"
P = np.array([0.5, 0.25, 0.15, 0.07, 0.03])


def _entropy(q):
    q = np.asarray(q, np.float64)
    q = q[q > 0]
    return float(-(q * np.log2(q)).sum())


def _chi2(counts, expected_p):
    n = counts.sum()
    e = n * np.asarray(expected_p)
    return float(((counts - e) ** 2 / e).sum())


# --------------------------------------------------------------------------- sampler
def test_temperature_zero_is_argmax_and_uses_no_randomness():
    rng = np.random.default_rng(0)
    for probs in (P, P[::-1], np.array([0.1, 0.2, 0.6, 0.1])):
        state = rng.bit_generator.state
        assert sample(probs, 0, rng) == int(np.argmax(probs))
        assert rng.bit_generator.state == state
    assert apply_temperature(P, 0).tolist() == [1.0, 0, 0, 0, 0]


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_empirical_distribution_matches_tempered_probs(temperature):
    rng = np.random.default_rng(123)
    n = 20000
    draws = np.array([sample(P, temperature, rng) for _ in range(n)])
    counts = np.bincount(draws, minlength=len(P)).astype(np.float64)
    expected = P ** (1 / temperature) / (P ** (1 / temperature)).sum()
    np.testing.assert_allclose(apply_temperature(P, temperature), expected, rtol=1e-12)
    # chi-square, 4 degrees of freedom: 18.47 is the 0.001 critical value
    assert _chi2(counts, expected) < 18.47
    # and not the untempered distribution when the temperature changes it (the check can fail)
    if temperature != 1.0:
        assert _chi2(counts, P) > 100


def test_higher_temperature_gives_higher_entropy():
    temps = [0, 0.2, 0.5, 1.0, 2.0, 5.0]
    ent = [_entropy(apply_temperature(P, t)) for t in temps]
    assert ent[0] == 0.0
    assert all(a < b for a, b in zip(ent, ent[1:])), ent
    assert ent[-1] < np.log2(len(P))            # approaches uniform, never above
    rng = np.random.default_rng(1)
    emp = [_entropy(np.bincount([sample(P, t, rng) for _ in range(4000)], minlength=len(P)) / 4000)
           for t in (0.2, 1.0, 5.0)]
    assert emp[0] < emp[1] < emp[2], emp


def test_unnormalized_and_zero_probabilities():
    rng = np.random.default_rng(0)
    draws = [sample([0.0, 2.0, 0.0, 2.0], 1.0, rng) for _ in range(200)]
    assert set(draws) == {1, 3}                 # zero-probability ids are never drawn
    assert sample([0.0, 3.0, 1.0], 0.3, rng) in (1, 2)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "hot", None])
def test_bad_temperature_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="temperature"):
        sample(P, bad, np.random.default_rng(0))


@pytest.mark.parametrize("probs", [[], [[0.5, 0.5]], [0.5, -0.1], [0.0, 0.0], [np.nan, 1.0]])
def test_bad_probs_are_a_usage_error(probs):
    with pytest.raises(UsageError, match="probs"):
        sample(probs, 1.0, 0)


def test_encode_decode_roundtrip_and_unknown_characters():
    ids = encode("gabbed", VOCAB)
    assert ids.tolist() == [7, 1, 2, 2, 5, 4]
    assert decode(ids, VOCAB) == "gabbed"
    assert decode([0, 1, 0, 2], VOCAB) == "ab"
    assert encode("ABC", VOCAB, lowercase=True).tolist() == [1, 2, 3]
    with pytest.raises(UsageError, match=r"\['x', 'z'\]"):
        encode("axbz", VOCAB)


# --------------------------------------------------------------------------- generation with a step model
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import rnnedge

    x = keras.Input((None,), dtype="int32", name="chars")
    h = layers.Embedding(V, 4)(x)
    h = layers.LSTM(6, return_sequences=True)(h)
    y = layers.TimeDistributed(layers.Dense(V, activation="softmax"))(h)
    model = keras.Model(x, y, name="tiny_textgen")
    rng = np.random.default_rng(0)
    for layer in model.layers:               # larger weights: peaked, input-dependent outputs
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0, 1.0, w.shape).astype(np.float32) for w in ws])
    out = tmp_path_factory.mktemp("gen")
    rnnedge.export(model, ["onnx", "tflite"], out, streaming=True, validate=False)
    return model, out


def _keras_greedy(model, prime, length):
    ctx = list(encode(prime, VOCAB))
    out = []
    for _ in range(length):
        probs = np.array(model(np.asarray([ctx], np.int32), training=False))[0, -1]
        probs[0] = 0                          # the padding id is never generated
        nxt = int(np.argmax(probs))
        out.append(nxt)
        ctx.append(nxt)
    return decode(out, VOCAB)


def test_greedy_step_generation_equals_full_model_argmax_chain(models):
    model, out = models
    want = _keras_greedy(model, PRIME, 12)
    assert len(want) == 12
    assert generate(out / "model.step.onnx", VOCAB, PRIME, 12, temperature=0) == want
    assert generate(out / "model.step.tflite", VOCAB, PRIME, 12, temperature=0) == want
    assert generate_full(out / "model.onnx", VOCAB, PRIME, 12, temperature=0) == want


def test_step_probabilities_equal_full_model_after_prime(models):
    model, out = models
    ids = encode(PRIME + "gfed", VOCAB)
    full = np.asarray(model(ids[None], training=False))[0]
    with StreamingSession(out / "model.step.onnx") as s:
        steps = np.stack([s.step(np.int32(i)) for i in ids])
    np.testing.assert_allclose(steps, full, atol=1e-5)


def test_sampling_is_seeded_and_stays_in_the_vocabulary(models):
    _, out = models
    path = out / "model.step.onnx"
    a = generate(path, VOCAB, PRIME, 40, temperature=1.0, seed=7)
    assert a == generate(path, VOCAB, PRIME, 40, temperature=1.0, seed=7)
    assert a != generate(path, VOCAB, PRIME, 40, temperature=1.0, seed=8)
    assert len(a) == 40 and set(a) <= set(VOCAB)
    # a vocabulary smaller than the output: ids without a character are never generated
    small = {c: VOCAB[c] for c in "abc"}
    s = generate(path, small, "abc", 30, temperature=2.0, seed=0)
    assert len(s) == 30 and set(s) <= set("abc")


def test_same_seed_same_text_in_onnx_and_tflite(models):
    _, out = models
    a = generate(out / "model.step.onnx", VOCAB, PRIME, 30, temperature=0.5, seed=3)
    b = generate(out / "model.step.tflite", VOCAB, PRIME, 30, temperature=0.5, seed=3)
    assert a == b


def test_open_session_is_reset_and_reused(models):
    _, out = models
    with StreamingSession(out / "model.step.onnx") as s:
        a = generate(s, VOCAB, PRIME, 15, temperature=1.0, seed=1)
        b = generate(s, VOCAB, PRIME, 15, temperature=1.0, seed=1)
        assert s.runner.session is not None          # left open for the caller
    assert a == b == generate(out / "model.step.onnx", VOCAB, PRIME, 15, temperature=1.0, seed=1)


def test_windowed_full_model_differs_from_whole_context_only_by_context(models):
    model, out = models
    long_prime = "abcdefgabcdefgab"
    whole = generate_full(out / "model.onnx", VOCAB, long_prime, 10, temperature=0)
    assert whole == generate(out / "model.step.onnx", VOCAB, long_prime, 10, temperature=0)
    # window = 4: the step model primed with the last 4 characters predicts the same first character
    first = generate_full(out / "model.onnx", VOCAB, long_prime, 1, temperature=0, window=4)
    assert first == generate(out / "model.step.onnx", VOCAB, long_prime[-4:], 1, temperature=0)


def test_generation_usage_errors(models):
    _, out = models
    path = out / "model.step.onnx"
    with pytest.raises(UsageError, match="prime"):
        generate(path, VOCAB, "", 5)
    with pytest.raises(UsageError, match=r"\['z'\]"):
        generate(path, VOCAB, "abz", 5)
    with pytest.raises(UsageError, match="temperature"):
        generate(path, VOCAB, "ab", 5, temperature=-1)
    with pytest.raises(UsageError, match="length"):
        generate(path, VOCAB, "ab", -1)
    with pytest.raises(UsageError, match="not a step model"):
        generate(out / "model.onnx", VOCAB, "ab", 5)
    assert generate(path, VOCAB, "ab", 0) == ""


def test_generation_runs_without_tensorflow(models):
    _, out = models
    code = ("import sys; from rnnedge.generation import generate; "
            f"t = generate({str(out / 'model.step.onnx')!r}, {VOCAB!r}, 'abc', 8, 0.7, seed=0); "
            "assert len(t) == 8, t; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')]; "
            "assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
