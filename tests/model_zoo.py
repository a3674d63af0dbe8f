"""A generated zoo of tiny Keras 3 recurrent models: the architectures users bring to rnnedge.

Each :class:`ZooModel` has a stable ``id``, ``tags`` (what it exercises), a seeded ``build()``
(units 3-8, T 5-9; every weight drawn from a seeded uniform(-0.5, 0.5), BatchNormalization's
moving variance from uniform(0.5, 1.5), so biases are never all zero), ``sample_inputs()`` (float
normals, token ids with post/pre padding, float rows with ``mask_value`` steps at the start, middle
and end) and ``reference()`` (the Keras outputs, state reset per batch for stateful models).

Families are parameter products where that is natural (LSTM/GRU/SimpleRNN x return_sequences x
return_state x go_backwards, Bidirectional cell x merge_mode, masking cell x padding side...), plus
the named cases of issues 14 and 15 (tag ``issue14`` / ``issue15``).

    import model_zoo
    zoo = model_zoo.ZOO                       # tuple of ZooModel, ids unique
    m = model_zoo.get("lstm-state").build()   # a keras.Model
    xs = model_zoo.get("lstm-state").sample_inputs(m)
    ys = model_zoo.get("lstm-state").reference(m, xs)

Plain Python: nothing is built, imported (Keras) or read at import time.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# ---------------------------------------------------------------- input data kinds


@dataclass(frozen=True)
class Floats:
    """Standard-normal floats times ``scale``."""
    scale: float = 1.0


@dataclass(frozen=True)
class Tokens:
    """Token ids in [1, vocab); ``pad`` "post"/"pre" puts 0s (Embedding mask_zero padding) after /
    before each row's tokens (row lengths 1..T, row 0 full); ``None``: no padding."""
    vocab: int
    pad: str | None = "post"


@dataclass(frozen=True)
class MaskedFloats:
    """Standard-normal floats with whole steps set to ``mask_value`` (what a ``Masking`` layer
    skips): at the end, the start, the middle of rows, in turn (row 0 has none)."""
    mask_value: float = 0.0


def _default_data(dtype: str):
    return Tokens(vocab=12, pad=None) if "int" in dtype else Floats()


# ---------------------------------------------------------------- the model record


def _safe_name(s: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", s)


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry. ``build_fn(keras) -> (inputs, outputs)``; ``data`` gives the data kind per
    model input (default by dtype); ``seq_len`` is the T used for a free time axis; ``batch`` the
    model's fixed batch (stateful models)."""
    id: str
    tags: frozenset
    build_fn: Callable = field(repr=False, compare=False)
    data: tuple = ()
    seq_len: int = 7
    batch: int | None = None
    note: str = ""

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode()) & 0x7FFFFFFF

    def build(self):
        """The keras.Model, with seeded weights (same weights on every call)."""
        import keras

        keras.utils.set_random_seed(self.seed)
        ins, outs = self.build_fn(keras)
        model = keras.Model(ins, outs, name=_safe_name(self.id))
        randomize_weights(model, self.seed)
        return model

    def n_samples(self) -> int:
        b = self.batch or 1
        return b * math.ceil(4 / b)

    def sample_inputs(self, model, n: int | None = None, seed: int = 0) -> list[np.ndarray]:
        """One array per model input, ``n`` rows (default :meth:`n_samples`, a multiple of the
        fixed batch); free axes take ``seq_len``."""
        n = n or self.n_samples()
        rng = np.random.default_rng([self.seed, seed])
        out = []
        for i, t in enumerate(model.inputs):
            dtype = str(t.dtype)
            kind = self.data[i] if i < len(self.data) and self.data[i] is not None else _default_data(dtype)
            shape = [n] + [self.seq_len if d is None else int(d) for d in t.shape[1:]]
            out.append(_make(kind, shape, dtype, rng))
        return out

    def reference(self, model, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Keras outputs (a list, by position) for ``inputs``, run in chunks of the fixed batch
        with the state of stateful layers reset before each chunk (each call starts at zero)."""
        import keras

        n = len(inputs[0])
        chunk = self.batch or n
        parts: list[list[np.ndarray]] = []
        for s in range(0, n, chunk):
            for layer in model._flatten_layers(include_self=False, recursive=True):
                if getattr(layer, "stateful", False) and hasattr(layer, "reset_state"):
                    layer.reset_state()
            feed = [x[s:s + chunk] for x in inputs]
            y = model(feed if len(feed) > 1 else feed[0], training=False)
            ys = list(y) if isinstance(y, (list, tuple)) else [y]
            parts.append([np.asarray(keras.ops.convert_to_numpy(v)) for v in ys])
        return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]


def _make(kind, shape, dtype, rng) -> np.ndarray:
    n = shape[0]
    if isinstance(kind, Tokens):
        x = rng.integers(1, kind.vocab, size=shape)
        if kind.pad:
            T = shape[1]
            for r in range(n):
                length = T if r == 0 else int(rng.integers(1, T))
                if kind.pad == "post":
                    x[r, length:] = 0
                else:
                    x[r, :T - length] = 0
        return x.astype(dtype if "int" in dtype else "int32")
    x = rng.standard_normal(shape).astype("float32")
    if isinstance(kind, Floats):
        return (x * kind.scale).astype("float32")
    if isinstance(kind, MaskedFloats):
        T = shape[1]
        k = max(1, T // 3)
        for r in range(1, n):
            where = (r - 1) % 3
            sl = slice(T - k, T) if where == 0 else slice(0, k) if where == 1 else slice(T // 2 - k // 2, T // 2 - k // 2 + k)
            x[r, sl] = kind.mask_value
        return x
    raise TypeError(f"unknown data kind {kind!r}")


def randomize_weights(model, seed: int) -> None:
    """Every trainable weight from uniform(-0.5, 0.5); BatchNormalization's moving mean from
    uniform(-0.3, 0.3) and moving variance from uniform(0.5, 1.5). Other non-trainable variables
    (Normalization's adapted statistics, stateful RNN states) are kept."""
    rng = np.random.default_rng(seed)
    trainable = {id(v) for v in model.trainable_weights}
    for v in model.weights:
        path = getattr(v, "path", v.name)
        shape = tuple(v.shape)
        if id(v) in trainable:
            v.assign(rng.uniform(-0.5, 0.5, shape).astype(v.dtype))
        elif path.endswith("moving_mean"):
            v.assign(rng.uniform(-0.3, 0.3, shape).astype(v.dtype))
        elif path.endswith("moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, shape).astype(v.dtype))


# ---------------------------------------------------------------- families

_CELLS = ("LSTM", "GRU", "SimpleRNN")
_N_STATES = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}


def _dims(i: int) -> tuple[int, int, int]:
    """(units 3-8, T 5-9, features 2-4) varied by index."""
    return 3 + i % 6, 5 + i % 5, 2 + i % 3


def _rnn(k, cell: str, units: int, **kw):
    return getattr(k.layers, cell)(units, **kw)


def _core():
    i = 0
    for cell in _CELLS:
        for seq in (False, True):
            for state in (False, True):
                for back in (False, True):
                    u, T, F = _dims(i)
                    i += 1
                    mid = "-".join(x for x, on in (("seq", seq), ("state", state), ("back", back)) if on)
                    tags = {cell.lower(), "core"} | {t for t, on in (("return_sequences", seq), ("return_state", state),
                                                                    ("go_backwards", back)) if on}
                    if state:
                        tags.add("multi_output")

                    def fn(k, cell=cell, u=u, T=T, F=F, seq=seq, state=state, back=back):
                        x = k.Input((T, F), name="x")
                        y = _rnn(k, cell, u, return_sequences=seq, return_state=state, go_backwards=back)(x)
                        if state:
                            return x, list(y)
                        return x, k.layers.Dense(2)(y)
                    note = "issue 15: all three outputs from one LSTM (names ['lstm']*3)" if (cell, seq, state, back) == ("LSTM", False, True, False) else ""
                    if note:
                        tags.add("issue15")
                    yield ZooModel(f"{cell.lower()}{'-' + mid if mid else ''}", frozenset(tags), fn, note=note)
    # GRU reset_after=False
    for seq in (False, True):
        for back in (False, True):
            u, T, F = _dims(i)
            i += 1
            mid = "".join(x for x, on in (("-seq", seq), ("-back", back)) if on)

            def fn(k, u=u, T=T, F=F, seq=seq, back=back):
                x = k.Input((T, F), name="x")
                return x, k.layers.GRU(u, reset_after=False, return_sequences=seq, go_backwards=back)(x)
            tags = {"gru", "core", "reset_after"} | ({"go_backwards"} if back else set()) | ({"return_sequences"} if seq else set())
            yield ZooModel(f"gru-v1{mid}", frozenset(tags), fn)

    def gru_v1_state(k):
        x = k.Input((6, 3), name="x")
        o, h = k.layers.GRU(5, reset_after=False, return_state=True)(x)
        return x, [o, h]
    yield ZooModel("gru-v1-state", frozenset({"gru", "core", "reset_after", "return_state", "multi_output"}), gru_v1_state)
    # activations
    acts = (("LSTM", dict(activation="relu"), "relu"), ("LSTM", dict(recurrent_activation="hard_sigmoid"), "hsig"),
            ("LSTM", dict(activation="sigmoid", recurrent_activation="tanh"), "swapped"),
            ("GRU", dict(recurrent_activation="hard_sigmoid"), "hsig"), ("GRU", dict(activation="relu"), "relu"),
            ("GRU", dict(activation="relu", reset_after=False), "relu-v1"),
            ("SimpleRNN", dict(activation="relu"), "relu"), ("SimpleRNN", dict(activation="sigmoid"), "sigmoid"))
    for cell, kw, name in acts:
        u, T, F = _dims(i)
        i += 1

        def fn(k, cell=cell, kw=kw, u=u, T=T, F=F):
            x = k.Input((T, F), name="x")
            return x, _rnn(k, cell, u, return_sequences=True, **kw)(x)
        tags = {cell.lower(), "core", "activation", "return_sequences"} | ({"reset_after"} if "reset_after" in kw else set())
        yield ZooModel(f"{cell.lower()}-act-{name}", frozenset(tags), fn)
    for cell in _CELLS:
        u, T, F = _dims(i)
        i += 1

        def fn(k, cell=cell, u=u, T=T, F=F):
            x = k.Input((T, F), name="x")
            return x, k.layers.Dense(1)(_rnn(k, cell, u, use_bias=False)(x))
        yield ZooModel(f"{cell.lower()}-nobias", frozenset({cell.lower(), "core", "use_bias"}), fn)
    for cell in _CELLS:
        u, T, F = _dims(i)
        i += 1

        def fn(k, cell=cell, u=u, T=T, F=F):
            x = k.Input((T, F), name="x")
            return x, _rnn(k, cell, u, unroll=True, return_sequences=cell == "GRU")(x)
        yield ZooModel(f"{cell.lower()}-unroll", frozenset({cell.lower(), "core", "unroll"}), fn)
    # stateful with a fixed batch
    for cell, b, seq in (("LSTM", 1, False), ("LSTM", 2, True), ("GRU", 1, True), ("SimpleRNN", 2, False)):
        u, T, F = _dims(i)
        i += 1
        note = "issue 14/15: stateful fixed batch (Input((4, 2), batch_size=1) -> LSTM(3, stateful=True))" if (cell, b) == ("LSTM", 1) else ""
        if note:
            u, T, F = 3, 4, 2  # the shapes

        def fn(k, cell=cell, b=b, seq=seq, u=u, T=T, F=F):
            x = k.Input((T, F), batch_size=b, name="x")
            return x, _rnn(k, cell, u, stateful=True, return_sequences=seq)(x)
        tags = {cell.lower(), "core", "stateful"} | ({"return_sequences"} if seq else set()) | ({"issue14", "issue15"} if note else set())
        yield ZooModel(f"{cell.lower()}-stateful-b{b}{'-seq' if seq else ''}", frozenset(tags), fn, batch=b, note=note)
    # free time axis
    for cell, seq in (("LSTM", False), ("GRU", True), ("SimpleRNN", False)):
        u, T, F = _dims(i)
        i += 1

        def fn(k, cell=cell, seq=seq, u=u, F=F):
            x = k.Input((None, F), name="x")
            return x, k.layers.Dense(2)(_rnn(k, cell, u, return_sequences=seq)(x))
        yield ZooModel(f"{cell.lower()}-free{'-seq' if seq else ''}", frozenset({cell.lower(), "core", "free_time"} | ({"return_sequences"} if seq else set())), fn, seq_len=T)


def _bidirectional():
    i = 40
    for cell in _CELLS:
        for merge in ("concat", "sum", "mul", "ave", None):
            u, T, F = _dims(i)
            i += 1
            seq = i % 2 == 0

            def fn(k, cell=cell, merge=merge, u=u, T=T, F=F, seq=seq):
                x = k.Input((T, F), name="x")
                y = k.layers.Bidirectional(_rnn(k, cell, u, return_sequences=seq), merge_mode=merge)(x)
                return x, list(y) if merge is None else y
            tags = {cell.lower(), "bidirectional", "merge_mode"} | ({"return_sequences"} if seq else set()) | ({"multi_output"} if merge is None else set())
            note = "issue 15: merge_mode=None (two outputs named alike)" if merge is None and cell == "LSTM" else ""
            if note:
                tags.add("issue15")
            yield ZooModel(f"bi-{cell.lower()}-{merge or 'none'}{'-seq' if seq else ''}", frozenset(tags), fn, note=note)
    for cell, merge in (("LSTM", "concat"), ("LSTM", None), ("GRU", None), ("GRU", "sum"), ("SimpleRNN", None)):
        u, T, F = _dims(i)
        i += 1

        def fn(k, cell=cell, merge=merge, u=u, T=T, F=F):
            x = k.Input((T, F), name="x")
            y = k.layers.Bidirectional(_rnn(k, cell, u, return_state=True), merge_mode=merge)(x)
            return x, list(y)
        tags = {cell.lower(), "bidirectional", "merge_mode", "return_state", "multi_output"}
        yield ZooModel(f"bi-{cell.lower()}-{merge or 'none'}-state", frozenset(tags), fn)
    for cell in ("LSTM", "GRU"):
        def fn(k, cell=cell):
            x = k.Input((6, 3), name="x")
            fwd = _rnn(k, cell, 4, return_sequences=True)
            bwd = _rnn(k, cell, 4, return_sequences=True, go_backwards=True, activation="relu")
            return x, k.layers.Dense(2)(k.layers.Bidirectional(fwd, backward_layer=bwd)(x))
        yield ZooModel(f"bi-{cell.lower()}-backward-layer", frozenset({cell.lower(), "bidirectional", "backward_layer", "return_sequences"}), fn)

    def bi_stack(k):
        x = k.Input((7, 3), name="x")
        y = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True))(x)
        y = k.layers.Bidirectional(k.layers.GRU(3), merge_mode="sum")(y)
        return x, k.layers.Dense(1)(y)
    yield ZooModel("bi-lstm-bi-gru-stack", frozenset({"lstm", "gru", "bidirectional", "stacked"}), bi_stack)


def _masking():
    i = 70
    for cell in ("LSTM", "GRU", "SimpleRNN", "BiLSTM", "BiGRU"):
        for pad in ("post", "pre"):
            u, T, _ = _dims(i)
            i += 1
            free = i % 2 == 0

            def fn(k, cell=cell, u=u, T=T, free=free):
                x = k.Input((None if free else T,), dtype="int32", name="tokens")
                e = k.layers.Embedding(15, 4, mask_zero=True)(x)
                if cell.startswith("Bi"):
                    y = k.layers.Bidirectional(_rnn(k, cell[2:], u))(e)
                else:
                    y = _rnn(k, cell, u)(e)
                return x, k.layers.Dense(1, activation="sigmoid")(y)
            base = cell[2:] if cell.startswith("Bi") else cell
            tags = {base.lower(), "masking", "embedding", f"{pad}_padding"} | ({"bidirectional"} if cell.startswith("Bi") else set()) | ({"free_time"} if free else set())
            yield ZooModel(f"mask-emb-{cell.lower()}-{pad}", frozenset(tags), fn, data=(Tokens(15, pad),), seq_len=T)
    for pad in ("post", "pre"):
        def fn(k):
            x = k.Input((8,), dtype="int32", name="tokens")
            e = k.layers.Embedding(15, 4, mask_zero=True)(x)
            y = k.layers.LSTM(5, return_sequences=True)(e)
            return x, k.layers.Dense(2)(k.layers.GlobalAveragePooling1D()(y))
        yield ZooModel(f"mask-emb-lstm-seq-gap-{pad}", frozenset({"lstm", "masking", "embedding", f"{pad}_padding", "return_sequences", "pooling"}), fn, data=(Tokens(15, pad),))

    def masked_seq_out(k):
        x = k.Input((7,), dtype="int32", name="tokens")
        e = k.layers.Embedding(11, 3, mask_zero=True)(x)
        return x, k.layers.GRU(4, return_sequences=True)(e)
    yield ZooModel("mask-emb-gru-seq-out", frozenset({"gru", "masking", "embedding", "post_padding", "return_sequences"}), masked_seq_out, data=(Tokens(11, "post"),))

    def masked_back(k):
        x = k.Input((8,), dtype="int32", name="tokens")
        e = k.layers.Embedding(12, 4, mask_zero=True)(x)
        return x, k.layers.Dense(1)(k.layers.GRU(4, go_backwards=True)(e))
    yield ZooModel("mask-emb-gru-back-post", frozenset({"gru", "masking", "embedding", "post_padding", "go_backwards"}), masked_back, data=(Tokens(12, "post"),))

    def masked_stack(k):
        x = k.Input((9,), dtype="int32", name="tokens")
        e = k.layers.Embedding(13, 4, mask_zero=True)(x)
        y = k.layers.LSTM(5, return_sequences=True)(e)
        return x, k.layers.Dense(1)(k.layers.LSTM(4)(y))
    yield ZooModel("mask-emb-lstm-lstm-stack", frozenset({"lstm", "masking", "embedding", "post_padding", "stacked"}), masked_stack, data=(Tokens(13, "post"),))
    for cell, seq in (("LSTM", False), ("GRU", False), ("SimpleRNN", True), ("BiLSTM", True)):
        def fn(k, cell=cell, seq=seq):
            x = k.Input((8, 3), name="x")
            m = k.layers.Masking(mask_value=0.0)(x)
            if cell.startswith("Bi"):
                return x, k.layers.Bidirectional(_rnn(k, cell[2:], 4, return_sequences=seq))(m)
            return x, _rnn(k, cell, 5, return_sequences=seq)(m)
        base = cell[2:] if cell.startswith("Bi") else cell
        tags = {base.lower(), "masking", "masking_layer"} | ({"return_sequences"} if seq else set()) | ({"bidirectional"} if cell.startswith("Bi") else set())
        note = "issue 15: Masking on float input (generated inputs never hold masked steps)" if cell == "LSTM" else ""
        if note:
            tags.add("issue15")
        yield ZooModel(f"mask-float-{cell.lower()}{'-seq' if seq else ''}", frozenset(tags), fn, data=(MaskedFloats(0.0),), note=note)


def _initial_states():
    for cell in _CELLS:
        def fn(k, cell=cell):
            x = k.Input((5, 3), name="x")
            states = [k.Input((4,), name=n) for n in (("h0", "c0") if cell == "LSTM" else ("h0",))]
            return [x, *states], _rnn(k, cell, 4)(x, initial_state=states)
        note = "issue 15: initial state from inputs (TFLite runner reset wipes it)" if cell == "LSTM" else ""
        tags = {cell.lower(), "initial_state", "multi_input"} | ({"issue15"} if note else set())
        yield ZooModel(f"{cell.lower()}-init-from-inputs", frozenset(tags), fn, data=(Floats(), Floats(0.5), Floats(0.5)), note=note)

    def lstm_init_seq(k):
        x = k.Input((6, 2), name="x")
        h0, c0 = k.Input((3,), name="h0"), k.Input((3,), name="c0")
        return [x, h0, c0], k.layers.LSTM(3, return_sequences=True, go_backwards=True)(x, initial_state=[h0, c0])
    yield ZooModel("lstm-init-from-inputs-seq-back", frozenset({"lstm", "initial_state", "multi_input", "return_sequences", "go_backwards"}), lstm_init_seq, data=(Floats(), Floats(0.5), Floats(0.5)))
    for cell in ("LSTM", "GRU", "SimpleRNN"):
        def fn(k, cell=cell):
            x = k.Input((5, 3), name="x")
            y = k.Input((6, 2), name="y")
            enc = _rnn(k, cell, 4, return_state=True)(x)
            dec = _rnn(k, cell, 4, return_sequences=True)(y, initial_state=list(enc[1:]))
            return [x, y], k.layers.Dense(3)(dec)
        note = "issue 15: initial state from another layer (encoder-decoder)" if cell == "LSTM" else ""
        tags = {cell.lower(), "initial_state", "encoder_decoder", "multi_input", "return_state", "return_sequences"} | ({"issue15"} if note else set())
        yield ZooModel(f"{cell.lower()}-encoder-decoder", frozenset(tags), fn, note=note)

    def seq2seq_masked(k):
        src = k.Input((8,), dtype="int32", name="src")
        tgt = k.Input((6,), dtype="int32", name="tgt")
        _, h, c = k.layers.LSTM(5, return_state=True)(k.layers.Embedding(14, 4, mask_zero=True)(src))
        dec = k.layers.LSTM(5, return_sequences=True)(k.layers.Embedding(12, 4, mask_zero=True)(tgt), initial_state=[h, c])
        return [src, tgt], k.layers.Dense(12, activation="softmax")(dec)
    yield ZooModel("seq2seq-lstm-masked", frozenset({"lstm", "initial_state", "encoder_decoder", "multi_input", "masking", "embedding", "post_padding"}),
                   seq2seq_masked, data=(Tokens(14, "post"), Tokens(12, "post")))

    def bi_encoder(k):
        x = k.Input((7, 3), name="x")
        y = k.Input((5, 2), name="y")
        _, fh, fc, bh, bc = k.layers.Bidirectional(k.layers.LSTM(3, return_state=True))(x)
        h = k.layers.Concatenate()([fh, bh])
        c = k.layers.Concatenate()([fc, bc])
        return [x, y], k.layers.LSTM(6, return_sequences=True)(y, initial_state=[h, c])
    yield ZooModel("bi-lstm-encoder-decoder", frozenset({"lstm", "bidirectional", "initial_state", "encoder_decoder", "multi_input", "return_state", "merge"}), bi_encoder)


def _stacked():
    def s1(k):
        x = k.Input((8, 2), name="x")
        y = k.layers.LSTM(6, return_sequences=True)(x)
        return x, k.layers.Dense(1)(k.layers.LSTM(4)(y))
    yield ZooModel("stack-lstm-lstm", frozenset({"lstm", "stacked"}), s1)

    def s2(k):
        x = k.Input((6, 3), name="x")
        y = k.layers.GRU(5, return_sequences=True)(x)
        y = k.layers.LSTM(4, return_sequences=True)(y)
        return x, k.layers.SimpleRNN(3)(y)
    yield ZooModel("stack-gru-lstm-simplernn", frozenset({"gru", "lstm", "simplernn", "stacked"}), s2)
    cells = {"gru-gru": ("GRUCell", 8, "GRUCell", 6), "lstm-lstm": ("LSTMCell", 5, "LSTMCell", 4),
             "simplernn-lstm": ("SimpleRNNCell", 4, "LSTMCell", 3), "lstm-gru": ("LSTMCell", 4, "GRUCell", 5)}
    for j, (name, (c1, u1, c2, u2)) in enumerate(cells.items()):
        seq = j % 2 == 1

        def fn(k, c1=c1, u1=u1, c2=c2, u2=u2, seq=seq):
            x = k.Input((7, 3), name="x")
            y = k.layers.RNN([getattr(k.layers, c1)(u1), getattr(k.layers, c2)(u2)], return_sequences=seq)(x)
            return x, k.layers.Dense(1)(y)
        note = "issue 14: RNN([GRUCell(8), GRUCell(6)]) (StackedRNNCells)" if name == "gru-gru" else ""
        tags = {"stacked_cells", "stacked"} | {c.replace("Cell", "").lower() for c in (c1, c2)} | ({"return_sequences"} if seq else set()) | ({"issue14"} if note else set())
        yield ZooModel(f"rnn-cells-{name}{'-seq' if seq else ''}", frozenset(tags), fn, note=note)

    def single_cell(k):
        x = k.Input((6, 2), name="x")
        return x, k.layers.RNN(k.layers.LSTMCell(4), return_sequences=True, go_backwards=True)(x)
    yield ZooModel("rnn-cell-lstm-back", frozenset({"lstm", "rnn_cell", "return_sequences", "go_backwards"}), single_cell)

    def cell_state(k):
        x = k.Input((6, 2), name="x")
        o, h = k.layers.RNN(k.layers.GRUCell(4), return_state=True)(x)
        return x, [o, h]
    yield ZooModel("rnn-cell-gru-state", frozenset({"gru", "rnn_cell", "return_state", "multi_output"}), cell_state)


def _time_distributed():
    def td_dense(k):
        x = k.Input((7, 3), name="x")
        y = k.layers.LSTM(5, return_sequences=True)(x)
        return x, k.layers.TimeDistributed(k.layers.Dense(2, activation="softmax"))(y)
    yield ZooModel("td-dense-after-lstm", frozenset({"lstm", "time_distributed", "return_sequences"}), td_dense)

    def td_bilstm_free(k):
        x = k.Input((None, 3), name="x")
        y = k.layers.Bidirectional(k.layers.LSTM(8, return_sequences=True))(x)
        return x, k.layers.TimeDistributed(k.layers.Dense(2))(y)
    yield ZooModel("td-dense-after-bilstm-free", frozenset({"lstm", "bidirectional", "time_distributed", "return_sequences", "free_time", "issue15"}),
                   td_bilstm_free, seq_len=9, note="issue 15: BiLSTM -> TimeDistributed(Dense) with a free time axis (TFLite fixed T silently)")

    def td_embedding(k):
        x = k.Input((6, 4), dtype="int32", name="tokens")
        e = k.layers.TimeDistributed(k.layers.Embedding(10, 3))(x)
        e = k.layers.Reshape((6, 12))(e)
        return x, k.layers.GRU(4)(e)
    yield ZooModel("td-embedding-gru", frozenset({"gru", "time_distributed", "embedding", "rank3_tokens", "issue14"}), td_embedding,
                   data=(Tokens(10, None),), note="issue 14: TimeDistributed(Embedding)")

    def td_conv(k):
        x = k.Input((6, 8, 2), name="x")
        y = k.layers.TimeDistributed(k.layers.Conv1D(3, 3, activation="relu"))(x)
        y = k.layers.TimeDistributed(k.layers.Flatten())(y)
        return x, k.layers.Dense(1)(k.layers.LSTM(4)(y))
    yield ZooModel("td-conv1d-lstm", frozenset({"lstm", "time_distributed", "rank4", "conv"}), td_conv)
    for cell in ("LSTM", "GRU"):
        def fn(k, cell=cell):
            x = k.Input((5, 6, 2), name="x")
            y = k.layers.TimeDistributed(_rnn(k, cell, 4))(x)
            return x, k.layers.LSTM(3)(y)
        note = "issue 14: TimeDistributed(LSTM) over a 4-D input" if cell == "LSTM" else ""
        tags = {cell.lower(), "lstm", "time_distributed", "rank4", "stacked"} | ({"issue14"} if note else set())
        yield ZooModel(f"td-{cell.lower()}-rank4", frozenset(tags), fn, note=note)


def _convlstm():
    def c1(k):
        x = k.Input((5, 6, 2), name="x")
        y = k.layers.ConvLSTM1D(4, 3, padding="same")(x)
        return x, k.layers.Dense(1)(k.layers.Flatten()(y))
    yield ZooModel("convlstm1d-same", frozenset({"convlstm", "rank4", "issue14", "issue15"}), c1,
                   note="issue 14/15: ConvLSTM1D(4, 3, padding='same') on (T, W, C)")

    def c2(k):
        x = k.Input((6, 7, 2), name="x")
        return x, k.layers.ConvLSTM1D(3, 2, padding="valid", return_sequences=True)(x)
    yield ZooModel("convlstm1d-valid-seq", frozenset({"convlstm", "rank4", "return_sequences"}), c2)


def _multi_input():
    def two_len(k):
        a = k.Input((15, 2), name="a")
        b = k.Input((17, 3), name="b")
        y = k.layers.Concatenate()([k.layers.LSTM(4)(a), k.layers.GRU(3)(b)])
        return [a, b], k.layers.Dense(1)(y)
    yield ZooModel("two-inputs-15-17", frozenset({"lstm", "gru", "multi_input", "merge", "issue15"}), two_len,
                   note="issue 15: two inputs with different fixed lengths (15 and 17)")

    def tok_and_float(k):
        t = k.Input((7,), dtype="int32", name="tokens")
        f = k.Input((4,), name="features")
        y = k.layers.LSTM(5)(k.layers.Embedding(9, 3, mask_zero=True)(t))
        return [t, f], k.layers.Dense(2)(k.layers.Concatenate()([y, f]))
    yield ZooModel("tokens-plus-features", frozenset({"lstm", "multi_input", "masking", "embedding", "post_padding", "merge"}), tok_and_float,
                   data=(Tokens(9, "post"), Floats()))


def _layers_around():
    def cnn_lstm(k):
        x = k.Input((9, 2), name="x")
        y = k.layers.Conv1D(8, 3, activation="relu")(x)
        y = k.layers.MaxPooling1D(2)(y)
        return x, k.layers.Dense(1)(k.layers.LSTM(8)(y))
    yield ZooModel("conv1d-maxpool-lstm", frozenset({"lstm", "conv", "pooling", "issue14"}), cnn_lstm, note="issue 14: the classic CNN-LSTM forecaster")

    def conv_avg_gru(k):
        x = k.Input((9, 3), name="x")
        y = k.layers.AveragePooling1D(2)(k.layers.Conv1D(4, 2)(x))
        return x, k.layers.GRU(5)(y)
    yield ZooModel("conv1d-avgpool-gru", frozenset({"gru", "conv", "pooling", "issue14"}), conv_avg_gru, note="issue 14: Conv1D -> AveragePooling1D(2) -> GRU")

    def causal(k):
        x = k.Input((8, 2), name="x")
        y = k.layers.Conv1D(4, 3, padding="causal", dilation_rate=2)(x)
        return x, k.layers.SimpleRNN(3, return_sequences=True)(y)
    yield ZooModel("conv1d-causal-simplernn", frozenset({"simplernn", "conv", "return_sequences"}), causal)

    def lstm_pool(k):
        x = k.Input((8, 3), name="x")
        y = k.layers.LSTM(5, return_sequences=True)(x)
        return x, k.layers.Dense(1)(k.layers.GlobalMaxPooling1D()(k.layers.MaxPooling1D(2, padding="same")(y)))
    yield ZooModel("lstm-maxpool-gmp", frozenset({"lstm", "pooling", "return_sequences"}), lstm_pool)

    def bn(k):
        x = k.Input((7, 3), name="x")
        y = k.layers.LSTM(8, return_sequences=True)(x)
        y = k.layers.BatchNormalization()(y)
        return x, k.layers.Dense(1)(k.layers.LSTM(6)(y))
    yield ZooModel("lstm-batchnorm-lstm", frozenset({"lstm", "batchnorm", "stacked", "issue14"}), bn, note="issue 14: LSTM -> BatchNormalization -> LSTM")

    def bn_in(k):
        x = k.Input((6, 4), name="x")
        return x, k.layers.GRU(4)(k.layers.BatchNormalization()(x))
    yield ZooModel("batchnorm-gru", frozenset({"gru", "batchnorm"}), bn_in)

    def norm(k):
        x = k.Input((7, 3), name="x")
        n = k.layers.Normalization()
        n.adapt(np.random.default_rng(1).normal(2.0, 3.0, (32, 7, 3)).astype("float32"))
        return x, k.layers.Dense(1)(k.layers.GRU(8)(n(x)))
    yield ZooModel("normalization-gru", frozenset({"gru", "normalization", "issue14"}), norm, note="issue 14: Normalization (adapted) -> GRU(8)")

    def acts(k):
        x = k.Input((6, 3), name="x")
        y = k.layers.LeakyReLU(negative_slope=0.1)(k.layers.Dense(6)(k.layers.GRU(5)(x)))
        y = k.layers.PReLU()(k.layers.Dense(4)(y))
        return x, k.layers.Dense(2, activation="elu")(y)
    yield ZooModel("gru-leakyrelu-prelu-elu", frozenset({"gru", "activation_layer", "issue14"}), acts, note="issue 14: GRU -> LeakyReLU -> PReLU -> Dense(elu)")
    relus = {"maxvalue": dict(max_value=6.0), "slope": dict(negative_slope=0.2), "threshold": dict(threshold=0.3),
             "all": dict(max_value=1.5, negative_slope=0.1, threshold=0.2)}
    for name, kw in relus.items():
        def fn(k, kw=kw):  # inputs scaled by 4 (data below) so that max_value / threshold are reached
            x = k.Input((6, 3), name="x")
            y = k.layers.LSTM(5, return_sequences=True)(k.layers.ReLU(**kw)(x))
            return x, k.layers.Dense(2)(y)
        yield ZooModel(f"relu-{name}-lstm", frozenset({"lstm", "activation_layer", "return_sequences", "issue14"}), fn,
                       data=(Floats(4.0),), note=f"issue 14: ReLU({kw})")

    def keras_op(k):
        x = k.Input((6, 3), name="x")
        y = k.layers.LSTM(5, return_sequences=True)(x)
        return x, k.layers.Dense(2)(k.ops.tanh(y * 4.0 + 1.0))
    yield ZooModel("lstm-keras-ops", frozenset({"lstm", "keras_op", "return_sequences"}), keras_op)

    def elu(k):
        x = k.Input((6, 3), name="x")
        y = k.layers.ELU(alpha=0.7)(k.layers.Dense(4)(k.layers.SimpleRNN(5)(x)))
        return x, k.layers.Activation("swish")(y)
    yield ZooModel("simplernn-elu-swish", frozenset({"simplernn", "activation_layer"}), elu)

    def pad_crop(k):
        x = k.Input((6, 3), name="x")
        y = k.layers.Cropping1D((1, 1))(k.layers.ZeroPadding1D(2)(x))
        return x, k.layers.LSTM(4)(y)
    yield ZooModel("zeropad-crop-lstm", frozenset({"lstm", "padding_layer", "issue14"}), pad_crop, note="issue 14: ZeroPadding1D(2) -> Cropping1D((1,1)) -> LSTM")

    def upsample(k):
        x = k.Input((5, 2), name="x")
        return x, k.layers.GRU(3, return_sequences=True)(k.layers.UpSampling1D(2)(x))
    yield ZooModel("upsample-gru", frozenset({"gru", "padding_layer", "return_sequences"}), upsample)


def _attention():
    def add_att(k):
        x = k.Input((7, 3), name="x")
        s = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True))(x)
        a = k.layers.AdditiveAttention()([s, s])
        return x, k.layers.Dense(1)(k.layers.GlobalAveragePooling1D()(a))
    yield ZooModel("bilstm-additive-attention", frozenset({"lstm", "bidirectional", "attention", "pooling", "issue14"}), add_att,
                   note="issue 14: Bidirectional(LSTM) -> AdditiveAttention([s, s]) -> GlobalAveragePooling1D")

    def dot_att(k):
        q = k.Input((5, 3), name="q")
        v = k.Input((7, 3), name="v")
        qs = k.layers.GRU(4, return_sequences=True)(q)
        vs = k.layers.GRU(4, return_sequences=True)(v)
        return [q, v], k.layers.Attention()([qs, vs])
    yield ZooModel("gru-attention-qv", frozenset({"gru", "attention", "multi_input"}), dot_att)

    def mha(k):
        x = k.Input((6, 3), name="x")
        s = k.layers.LSTM(4, return_sequences=True)(x)
        a = k.layers.MultiHeadAttention(num_heads=2, key_dim=3)(s, s)
        return x, k.layers.Dense(2)(k.layers.GlobalAveragePooling1D()(a))
    yield ZooModel("lstm-multihead-attention", frozenset({"lstm", "attention", "pooling"}), mha)

    def masked_att(k):
        x = k.Input((8,), dtype="int32", name="tokens")
        s = k.layers.LSTM(4, return_sequences=True)(k.layers.Embedding(12, 3, mask_zero=True)(x))
        a = k.layers.Attention()([s, s])
        return x, k.layers.Dense(1)(k.layers.GlobalAveragePooling1D()(a))
    yield ZooModel("masked-lstm-attention", frozenset({"lstm", "attention", "masking", "embedding", "post_padding", "pooling"}), masked_att,
                   data=(Tokens(12, "post"),))


def _merges():
    for op in ("Multiply", "Add", "Subtract", "Average", "Maximum", "Concatenate"):
        def fn(k, op=op):
            t = k.Input((7,), dtype="int32", name="tokens")
            y = k.Input((7, 2), name="y")
            masked = k.layers.LSTM(4, return_sequences=True)(k.layers.Embedding(10, 3, mask_zero=True)(t))
            dec = k.layers.GRU(4, return_sequences=True)(y)
            return [t, y], getattr(k.layers, op)()([dec, masked])
        note = "issue 14: Multiply of decoder output x a masked branch (Keras 3 merge mask semantics)" if op == "Multiply" else ""
        tags = {"lstm", "gru", "merge", "masking", "embedding", "post_padding", "multi_input", "return_sequences"} | ({"issue14"} if note else set())
        yield ZooModel(f"merge-{op.lower()}-masked", frozenset(tags), fn, data=(Tokens(10, "post"), Floats()), note=note)

    def both_masked(k):
        a = k.Input((6,), dtype="int32", name="a")
        b = k.Input((6,), dtype="int32", name="b")
        ea = k.layers.GRU(3, return_sequences=True)(k.layers.Embedding(8, 3, mask_zero=True)(a))
        eb = k.layers.GRU(3, return_sequences=True)(k.layers.Embedding(8, 3, mask_zero=True)(b))
        m = k.layers.Add()([ea, eb])
        return [a, b], k.layers.Dense(1)(k.layers.LSTM(3)(m))
    yield ZooModel("merge-add-both-masked-lstm", frozenset({"gru", "lstm", "merge", "masking", "embedding", "pre_padding", "post_padding", "multi_input"}),
                   both_masked, data=(Tokens(8, "post"), Tokens(8, "pre")))


def _multi_output():
    def heads(k):
        x = k.Input((7, 3), name="x")
        seq, h, c = k.layers.LSTM(5, return_sequences=True, return_state=True)(x)
        return x, [k.layers.TimeDistributed(k.layers.Dense(2))(seq), k.layers.Dense(3, activation="softmax")(h),
                   k.layers.Dense(1)(c)]
    yield ZooModel("lstm-three-heads", frozenset({"lstm", "multi_output", "return_state", "return_sequences", "time_distributed"}), heads)

    def two_heads(k):
        x = k.Input((6, 2), name="x")
        y = k.layers.GRU(4)(x)
        return x, [k.layers.Dense(1, name="regress")(y), k.layers.Dense(3, activation="softmax", name="classify")(y)]
    yield ZooModel("gru-two-heads", frozenset({"gru", "multi_output"}), two_heads)

    def names_unsorted(k):
        x = k.Input((6, 2), name="x")
        y = k.layers.SimpleRNN(4, return_sequences=True)(x)
        return x, [k.layers.Dense(2, name="zeta")(y), k.layers.GlobalAveragePooling1D(name="alpha")(y)]
    yield ZooModel("simplernn-outputs-unsorted-names", frozenset({"simplernn", "multi_output", "return_sequences", "pooling"}), names_unsorted)


_FAMILIES = (_core, _bidirectional, _masking, _initial_states, _stacked, _time_distributed, _convlstm, _multi_input,
             _layers_around, _attention, _merges, _multi_output)


def _generate() -> tuple[ZooModel, ...]:
    models = tuple(m for fam in _FAMILIES for m in fam())
    ids = [m.id for m in models]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuntimeError(f"duplicate zoo ids: {sorted(dup)}")
    return models


ZOO: tuple[ZooModel, ...] = _generate()
_BY_ID = {m.id: m for m in ZOO}


def get(model_id: str) -> ZooModel:
    return _BY_ID[model_id]


def all_tags() -> set[str]:
    return set().union(*(m.tags for m in ZOO))


def select(pattern: str | None = None, tags: str | list | None = None) -> list[ZooModel]:
    """Models whose id matches the regex ``pattern`` (search) and that carry every tag in ``tags``
    (comma-separated string or list)."""
    if isinstance(tags, str):
        tags = [t for t in tags.split(",") if t]
    out = []
    for m in ZOO:
        if pattern and not re.search(pattern, m.id):
            continue
        if tags and not set(tags) <= m.tags:
            continue
        out.append(m)
    return out


def representative(size: int = 28) -> list[ZooModel]:
    """A small subset covering every tag: the hand-picked ``MUST`` cases (one per kind of failure
    users reported), then a greedy cover of the tags still missing, then a greedy cover of tag
    pairs (most new pairs first; zoo order breaks ties) until ``size`` models."""
    chosen = [_BY_ID[i] for i in MUST]
    tags = all_tags()
    while tags - set().union(*(m.tags for m in chosen)):
        need = tags - set().union(*(m.tags for m in chosen))
        chosen.append(max((m for m in ZOO if m not in chosen), key=lambda m: (len(m.tags & need), -ZOO.index(m))))

    def pairs(m):
        t = sorted(m.tags)
        return {(a, b) for j, a in enumerate(t) for b in t[j + 1:]}
    seen = set().union(*(pairs(m) for m in chosen))
    while len(chosen) < size:
        best = max((m for m in ZOO if m not in chosen), key=lambda m: (len(pairs(m) - seen), -ZOO.index(m)))
        chosen.append(best)
        seen |= pairs(best)
    return chosen


# cases the quick test always holds (one per kind of failure users reported)
MUST = ("lstm-state", "bi-lstm-none", "lstm-init-from-inputs", "lstm-encoder-decoder", "mask-float-lstm",
         "lstm-stateful-b1", "two-inputs-15-17", "convlstm1d-same", "merge-multiply-masked", "mask-emb-lstm-pre",
         "bi-lstm-sum-seq", "conv1d-maxpool-lstm", "td-dense-after-bilstm-free")
