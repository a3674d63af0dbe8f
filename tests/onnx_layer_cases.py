"""Tiny recurrent models, one per Keras layer kind, for the ONNX layer tests and
benchmarks/layer_coverage.py: the layer under test sits before, after or beside a recurrent layer.

``CASES[name] = Case(build, ...)``: ``build()`` returns a Keras model; ``rnn_ops`` is how many
native LSTM/GRU/RNN ops the export must hold; ``ops`` op types it must hold (the native form);
``fallback`` the classes tf2onnx converts (``ops.X`` for Keras operations); ``loop`` whether a Loop is expected (ConvLSTM only);
``fixed_t`` the model's fixed length (else it is run at two lengths); ``tokens`` whether the input
is token ids (then padded rows exercise masks).

Also :func:`feeds` (random inputs, padded token rows), :func:`keras_ref`, :func:`max_error`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

F, V, U = 3, 12, 4        # float features, vocabulary, recurrent units
T1, T2 = 6, 9             # two sequence lengths (odd one exercises "same" padding tails)


@dataclass
class Case:
    build: Callable
    rnn_ops: int = 1
    ops: tuple = ()
    fallback: tuple = ()
    loop: bool = False
    fixed_t: int | None = None
    tokens: bool = False
    absent: tuple = ()        # op types that must not appear (e.g. Mul when BN folds)
    notes: tuple = ()         # words a manifest note must hold
    tags: set = field(default_factory=set)


def _k():
    import keras

    return keras, keras.layers


def seq(t=None, f=F, name="x"):
    keras, _ = _k()
    return keras.Input((t, f), name=name)


def toks(name="tokens", extra=()):
    keras, _ = _k()
    return keras.Input((None, *extra), dtype="int32", name=name)


def model(i, o, name="m"):
    keras, _ = _k()
    return keras.Model(i, o, name=name)


# --------------------------------------------------------------------------- templates
def pre(fn, **kw):
    """x -> fn -> LSTM(return_sequences)"""
    def build():
        _, L = _k()
        x = seq(kw.get("t"))
        return model(x, L.LSTM(U, return_sequences=True)(fn(x)))
    return build


def post(fn, t=None):
    """x -> GRU(return_sequences) -> fn"""
    def build():
        _, L = _k()
        x = seq(t)
        return model(x, fn(L.GRU(U, return_sequences=True)(x)))
    return build


def between(fn):
    """x -> LSTM(return_sequences) -> fn -> LSTM"""
    def build():
        _, L = _k()
        x = seq()
        h = L.LSTM(U, return_sequences=True)(x)
        return model(x, L.LSTM(3)(fn(h)))
    return build


def masked(fn):
    """tokens -> Embedding(mask_zero) -> LSTM(return_sequences) = h, Dense(e) = d -> fn(h, d, e):
    the output keeps the time axis, so every position (padded ones too) is compared."""
    def build():
        _, L = _k()
        t = toks()
        e = L.Embedding(V, U, mask_zero=True)(t)
        h = L.LSTM(U, return_sequences=True)(e)
        d = L.Dense(U)(e)
        return model(t, fn(h, d, e))
    return build


def _merge_cases():
    _, L = _k()
    out = {}
    for cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
        layer = getattr(L, cls)
        out[f"merge-{cls.lower()}"] = Case(post(lambda h, layer=layer: layer()([h, L.Dense(U)(h)])))
        # both inputs masked; one masked and one not (the decoder x masked branch)
        out[f"merge-{cls.lower()}-masked"] = Case(masked(lambda h, d, e, layer=layer: layer()([h, d])), tokens=True)
        out[f"merge-{cls.lower()}-half-masked"] = Case(
            masked(lambda h, d, e, layer=layer: layer()([h, _unmasked(d)])), tokens=True)
    out["merge-concatenate-masked"] = Case(masked(lambda h, d, e: L.Concatenate()([h, d])), tokens=True)
    out["merge-concatenate-half-masked"] = Case(
        masked(lambda h, d, e: L.GRU(U, return_sequences=True)(L.Concatenate()([h, _unmasked(d)]))),
        rnn_ops=2, tokens=True)
    out["merge-concatenate-time-masked"] = Case(
        masked(lambda h, d, e: L.GRU(U, return_sequences=True)(L.Concatenate(axis=1)([h, d]))),
        rnn_ops=2, tokens=True)
    out["merge-add-rank2"] = Case(post(lambda h: L.Add()([h, L.GRU(U)(h)])), rnn_ops=2)
    out["dot-seq"] = Case(post(lambda h: L.Dot(axes=(2, 2))([h, L.Dense(U)(h)])), ops=("Einsum",))
    out["dot-normalize"] = Case(post(lambda h: L.Dot(axes=1, normalize=True)([L.GRU(U)(h), L.GRU(U)(h)])),
                                rnn_ops=3, ops=("Einsum",))
    return out


def _unmasked(x):
    """``x`` with its Keras mask dropped (Permute does not support masking: Keras drops it)."""
    _, L = _k()
    return L.Permute((1, 2))(x)


# --------------------------------------------------------------------------- the catalogue
def build_cases() -> dict[str, Case]:
    keras, L = _k()

    def conv(x, act="relu", **kw):
        return L.Conv1D(4, 3, activation=act, **kw)(x)

    def image_seq(fn, t=None):
        """(T, 4, 4, 2) frames -> TimeDistributed(fn) -> TimeDistributed(Flatten) -> LSTM"""
        def build():
            x = keras.Input((t, 4, 4, 2), name="frames")
            y = L.TimeDistributed(fn())(x)
            y = L.TimeDistributed(L.Flatten())(y) if len(y.shape) > 3 else y
            return model(x, L.LSTM(U)(y))
        return build

    def norm_adapted(invert=False, f=F):
        def fn(x):
            n = L.Normalization(invert=invert)
            n.adapt(np.random.default_rng(3).normal(2.0, 3.0, (16, 5, f)).astype("float32"))
            return n(x)
        return fn

    def stacked(cells, rs=True, state=False, gb=False, tokens=False):
        def build():
            if tokens:
                inp = toks()
                x = L.Embedding(V, F, mask_zero=True)(inp)
            else:
                inp = x = seq()
            out = L.RNN(cells(), return_sequences=rs, return_state=state, go_backwards=gb)(x)
            return model(inp, list(out) if isinstance(out, (list, tuple)) else out)
        return build

    def bidir(fwd, bwd, merge="concat", tokens=False):
        def build():
            if tokens:
                inp = toks()
                x = L.Embedding(V, F, mask_zero=True)(inp)
            else:
                inp = x = seq()
            out = L.Bidirectional(fwd(), backward_layer=bwd(), merge_mode=merge)(x)
            return model(inp, list(out) if isinstance(out, (list, tuple)) else out)
        return build

    cases = {
        # pooling (issue: CNN-LSTM forecaster, Conv1D -> AveragePooling1D -> GRU)
        "maxpool1d": Case(pre(lambda x: L.MaxPooling1D(2)(conv(x))), ops=("MaxPool",)),
        "maxpool1d-same-s1": Case(pre(lambda x: L.MaxPooling1D(3, strides=1, padding="same")(x)), ops=("MaxPool",)),
        "avgpool1d": Case(pre(lambda x: L.AveragePooling1D(2)(conv(x, act=None))), ops=("AveragePool",)),
        "avgpool1d-same-s2": Case(pre(lambda x: L.AveragePooling1D(3, strides=2, padding="same")(x)),
                                  ops=("AveragePool",)),
        "maxpool2d": Case(image_seq(lambda: L.MaxPooling2D(2)), ops=("MaxPool",)),
        "avgpool2d-same": Case(image_seq(lambda: L.AveragePooling2D(3, strides=2, padding="same")),
                               ops=("AveragePool",)),
        "global-avgpool2d": Case(image_seq(lambda: L.GlobalAveragePooling2D()), ops=("ReduceMean",)),
        "global-maxpool2d": Case(image_seq(lambda: L.GlobalMaxPooling2D()), ops=("ReduceMax",)),
        # normalization
        "batchnorm-between-lstms": Case(between(lambda h: L.BatchNormalization()(h)), rnn_ops=2, ops=("Mul", "Add")),
        "batchnorm-folds-into-dense": Case(post(lambda h: L.BatchNormalization()(L.Dense(5)(h))),
                                           absent=("Mul",)),
        "batchnorm-folds-into-conv1d": Case(pre(lambda x: L.BatchNormalization()(conv(x, act=None))),
                                            ops=("Conv",), absent=("Mul", "Add")),
        "batchnorm-after-relu-dense": Case(post(lambda h: L.BatchNormalization()(L.Dense(5, activation="relu")(h))),
                                           ops=("Mul", "Add")),
        "normalization": Case(pre(norm_adapted()), ops=("Sub", "Div")),
        "normalization-invert": Case(post(norm_adapted(invert=True, f=U)), ops=("Mul", "Add")),
        # activations
        "leaky_relu": Case(post(lambda h: L.LeakyReLU(0.1)(L.Dense(5)(h))), ops=("LeakyRelu",)),
        "prelu-shared-time": Case(post(lambda h: L.PReLU(shared_axes=[1])(L.Dense(5)(h))), ops=("PRelu",)),
        "prelu-fixed-t": Case(post(lambda h: L.PReLU()(h), t=T1), ops=("PRelu",), fixed_t=T1),
        "elu": Case(post(lambda h: L.ELU(alpha=0.5)(L.Dense(5)(h))), ops=("Elu",)),
        "relu-max6": Case(post(lambda h: L.ReLU(max_value=6)(L.Dense(5)(h) * 4.0)), ops=("Clip",)),
        "relu-slope": Case(post(lambda h: L.ReLU(negative_slope=0.2)(L.Dense(5)(h))), ops=("LeakyRelu",)),
        "relu-threshold": Case(post(lambda h: L.ReLU(threshold=0.3)(L.Dense(5)(h))), ops=("Where",)),
        "relu-all-args": Case(post(lambda h: L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2)(
            L.Dense(5)(h))), ops=("Where", "Clip")),
        # steps axis
        "zeropadding1d-cropping1d": Case(pre(lambda x: L.Cropping1D((1, 1))(L.ZeroPadding1D(2)(x))),
                                         ops=("Pad", "Slice")),
        "cropping1d-end0": Case(post(lambda h: L.Cropping1D((2, 0))(h)), ops=("Slice",)),
        "upsampling1d": Case(post(lambda h: L.GRU(3, return_sequences=True)(L.UpSampling1D(3)(h))), rnn_ops=2,
                             ops=("Tile",)),
        # attention (issue: Bidirectional(LSTM) -> AdditiveAttention([s, s]) -> GlobalAveragePooling1D)
        "additive-attention": Case(lambda: (lambda x: model(x, L.GlobalAveragePooling1D()(L.AdditiveAttention()(
            [L.Bidirectional(L.LSTM(U, return_sequences=True))(x)] * 2))))(seq()), ops=("Tanh", "Softmax")),
        "additive-attention-noscale-masked": Case(masked(lambda h, d, e: L.AdditiveAttention(use_scale=False)([d, h])),
                                                  tokens=True, ops=("Tanh",)),
        # TimeDistributed over any layer
        "td-embedding": Case(lambda: (lambda t: model(t, L.LSTM(U)(L.TimeDistributed(L.Flatten())(
            L.TimeDistributed(L.Embedding(V, 2))(t)))))(toks(extra=(4,))), ops=("Gather",)),
        "td-conv1d": Case(lambda: (lambda x: model(x, L.GRU(U)(L.TimeDistributed(L.GlobalMaxPooling1D())(
            L.TimeDistributed(L.Conv1D(3, 3))(x)))))(keras.Input((None, 6, 2), name="x")), ops=("Conv",)),
        "td-lstm-4d": Case(lambda: (lambda x: model(x, L.GRU(U)(L.TimeDistributed(L.LSTM(3))(x))))(
            keras.Input((None, 5, 2), name="x")), rnn_ops=2),
        "td-bidirectional-gru-4d": Case(lambda: (lambda x: model(x, L.TimeDistributed(
            L.Bidirectional(L.GRU(3)))(x)))(keras.Input((None, 5, 2), name="x"))),
        "td-batchnorm": Case(post(lambda h: L.TimeDistributed(L.BatchNormalization())(h)), ops=("Mul",)),
        # StackedRNNCells (issue: RNN([GRUCell(8), GRUCell(6)]))
        "stacked-gru": Case(stacked(lambda: [L.GRUCell(U), L.GRUCell(3)], rs=False), rnn_ops=2),
        "stacked-lstm-rs-state": Case(stacked(lambda: [L.LSTMCell(U), L.LSTMCell(3)], state=True), rnn_ops=2),
        "stacked-mixed-backwards": Case(stacked(lambda: [L.LSTMCell(U), L.SimpleRNNCell(3), L.GRUCell(2)],
                                                gb=True), rnn_ops=3),
        "stacked-gru-masked": Case(stacked(lambda: [L.GRUCell(U), L.GRUCell(3)], tokens=True), rnn_ops=2,
                                   tokens=True),
        # Bidirectional with a backward_layer
        "bidir-backward-gru": Case(bidir(lambda: L.LSTM(U, return_sequences=True),
                                         lambda: L.GRU(3, return_sequences=True, go_backwards=True)), rnn_ops=2),
        "bidir-backward-units-sum-masked": Case(
            bidir(lambda: L.LSTM(U), lambda: L.LSTM(U, go_backwards=True, use_bias=False), merge="sum",
                  tokens=True), rnn_ops=2, tokens=True),
        "bidir-backward-same-config": Case(bidir(lambda: L.GRU(U, return_sequences=True),
                                                 lambda: L.GRU(U, return_sequences=True, go_backwards=True,
                                                               activation="relu")), rnn_ops=1),
        "bidir-backward-stacked": Case(bidir(
            lambda: L.GRU(U, return_sequences=True),
            lambda: L.RNN([L.GRUCell(3), L.GRUCell(2)], return_sequences=True, go_backwards=True),
            merge=None), rnn_ops=3),
        "bidir-backward-state": Case(bidir(
            lambda: L.LSTM(U, return_state=True),
            lambda: L.LSTM(U, return_state=True, go_backwards=True, recurrent_activation="hard_sigmoid",
                           unit_forget_bias=False, use_bias=False)), rnn_ops=2),
        # ConvLSTM: no ONNX op -> tf2onnx Loop
        "convlstm1d": Case(lambda: (lambda x: model(x, L.Dense(1)(L.Flatten()(
            L.ConvLSTM1D(2, 3, padding="same")(x)))))(keras.Input((None, 5, 2), name="x")),
            rnn_ops=0, fallback=("ConvLSTM1D",), loop=True, notes=("Loop",)),
        "convlstm2d-seq": Case(lambda: (lambda x: model(x, L.LSTM(U)(L.TimeDistributed(L.Flatten())(
            L.ConvLSTM2D(2, 3, padding="same", return_sequences=True)(x)))))(keras.Input((None, 4, 4, 1), name="x")),
            rnn_ops=1, fallback=("ConvLSTM2D",), loop=True, notes=("Loop",)),
        "rescaling": Case(pre(lambda x: L.Rescaling(0.5, offset=-1.0)(x)), ops=("Mul", "Add")),
        "discretization-embedding": Case(lambda: (lambda x: model(x, L.LSTM(U)(L.Embedding(4, 3)(
            L.Discretization(bin_boundaries=[-0.5, 0.0, 0.5])(x)))))(keras.Input((None,), name="x")),
            ops=("ReduceSum",)),
        # layers with no native converter: tf2onnx, spliced (no Loop)
        "fallback-augmentation-is-inference": Case(image_seq(lambda: L.RandomFlip(name="flip")), fallback=("RandomFlip",)),
        "fallback-conv1dtranspose": Case(pre(lambda x: L.Conv1DTranspose(3, 2, name="up")(x)), fallback=("Conv1DTranspose",)),
        "fallback-group-norm": Case(post(lambda h: L.GroupNormalization(groups=2, name="gn")(h)), fallback=("GroupNormalization",)),
        "fallback-keras-op": Case(post(lambda h: keras.ops.cumsum(h, axis=1)), fallback=("ops.Cumsum",)),
    }
    cases.update(_merge_cases())
    return cases


# --------------------------------------------------------------------------- running them
def randomize(model, seed: int = 7) -> None:
    """Give biases, normalization statistics, scales and PReLU slopes random values (Keras starts
    them at 0/1, which would hide a wrong mapping)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        p = w.path
        if "moving_variance" in p or p.endswith("/variance"):
            continue
        if any(k in p for k in ("bias", "gamma", "beta", "moving_mean", "scale", "alpha")):
            w.assign(rng.uniform(-0.5, 0.5, size=w.shape).astype(w.dtype))
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.3, 1.7, size=w.shape).astype(w.dtype))


def feeds(info: dict, batch: int, t: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for an export's ``info["inputs"]``: free axes other than the batch take ``t``. Token
    rows (batch > 1): row 0 post-padded, the last row pre-padded with a hole (every row keeps a
    valid step)."""
    rng = np.random.default_rng(seed)
    out = {}
    for inp in info["inputs"]:
        shape = [batch if i == 0 else (t if isinstance(d, str) else d) for i, d in enumerate(inp["shape"])]
        if "int" in inp["dtype"]:
            x = rng.integers(1, V, size=shape).astype(inp["dtype"])
            if batch > 1 and x.ndim == 2:
                x[0, -2:] = 0
                x[-1, :2] = 0
                x[-1, 3] = 0
        else:
            x = rng.standard_normal(shape).astype(inp["dtype"])
        out[inp["name"]] = x
    return out


def keras_ref(model, fd: dict, names: list[str]) -> list[np.ndarray]:
    """The model's outputs, flattened (nested state lists included) in Keras order."""
    keras, _ = _k()
    xs = [fd[n] for n in names]
    y = model(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(v) for v in keras.tree.flatten(y)]


def max_error(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    assert len(ref) == len(got), f"{len(got)} outputs, Keras has {len(ref)}"
    worst = 0.0
    for r, y in zip(ref, got):
        assert r.shape == y.shape, f"shape {y.shape}, Keras {r.shape}"
        worst = max(worst, float(np.max(np.abs(r.astype(np.float64) - y))) if r.size else 0.0)
    return worst


def shapes(case: Case) -> list[tuple[int, int]]:
    """(batch, length) pairs a case runs at: batch 1 and 3, and a second length when it is free."""
    if case.fixed_t:
        return [(1, case.fixed_t), (3, case.fixed_t)]
    return [(1, T1), (3, T2)]
