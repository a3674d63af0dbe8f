"""Which keras.layers classes the ONNX exporter converts, and how (native / tf2onnx fallback /
refused), each inside a tiny recurrent model, with its max abs error against Keras.

Every layer class exported by ``keras.layers`` is listed: a probe model is built for it (the layer
under test is named ``probe``: before or after a GRU/LSTM, inside ``TimeDistributed`` over frames
for 2-D/3-D layers), converted with ``converters.onnx.convert_model`` and run in onnxruntime at
batch 1 and 3 and two sequence lengths (one when the model fixes it). Classes with no probe are
listed as ``not tried`` with the reason (abstract bases, other frameworks' wrappers, string
inputs...). Nothing is timed.

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 .venv/bin/python benchmarks/layer_coverage.py \\
        [--only Conv2D,GRU] [--out benchmarks/results/layer_coverage.json] [--markdown]

Prints one line per class (``class  path  max_err  ops/reason``) or a Markdown table, and writes JSON.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # Keras 3 on a GPU uses CudnnRNNV3 (tf2onnx can't)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

P = "probe"
F, U, V = 3, 4, 12

NOT_TRIED = {
    "InputLayer": "implicit in every model",
    "Layer": "abstract base class",
    "Wrapper": "abstract base class",
    "FlaxLayer": "wraps a JAX/Flax module (another framework)",
    "JaxLayer": "wraps a JAX function (another framework)",
    "TorchModuleWrapper": "wraps a PyTorch module (another framework)",
    "TFSMLayer": "wraps a TF SavedModel (needs one on disk)",
    "Pipeline": "a preprocessing pipeline (tf.data), not a model layer",
    "StringLookup": "string inputs (ONNX export takes numeric tensors)",
    "TextVectorization": "string inputs (ONNX export takes numeric tensors)",
    "HashedCrossing": "tf.data preprocessing of feature pairs",
    "MaxNumBoundingBoxes": "bounding-box preprocessing (dict inputs)",
    "LSTMCell": "a cell: tried as RNN(LSTMCell)",
    "GRUCell": "a cell: tried as RNN(GRUCell)",
    "SimpleRNNCell": "a cell: tried as RNN(SimpleRNNCell)",
    "StackedRNNCells": "a cell: tried as RNN(StackedRNNCells)",
}


def probes() -> dict:
    """class name -> () -> keras.Model with the layer under test named ``probe``."""
    import keras
    from keras import layers as L

    def m(i, o):
        return keras.Model(i, o)

    def after(make, t=None, rs=True):  # x -> GRU -> probe
        def b():
            x = keras.Input((t, F))
            return m(x, make()(L.GRU(U, return_sequences=rs)(x)))
        return b

    def before(make, t=None, rnn=True):  # x -> probe -> LSTM
        def b():
            x = keras.Input((t, F))
            y = make()(x)
            return m(x, L.LSTM(U)(y) if rnn else y)
        return b

    def merge(make):  # [GRU(x), Dense(GRU(x))] -> probe
        def b():
            x = keras.Input((None, F))
            h = L.GRU(U, return_sequences=True)(x)
            return m(x, make()([h, L.Dense(U)(h)]))
        return b

    def frames(make, shape=(6, 6, 2)):  # frames -> TimeDistributed(probe) -> Flatten -> LSTM
        def b():
            x = keras.Input((None, *shape))
            y = L.TimeDistributed(make())(x)
            y = L.TimeDistributed(L.Flatten())(y) if len(y.shape) > 3 else y
            return m(x, L.LSTM(U)(y))
        return b

    def image(make, c=2):  # one (6, 6, c) image -> probe -> rows of pixels -> LSTM (Keras fails in TD)
        def b():
            x = keras.Input((6, 6, c))
            return m(x, L.LSTM(U)(L.Reshape((-1, c))(make()(x))))
        return b

    def tokens(make, mask=True):  # tokens -> probe -> LSTM
        def b():
            t = keras.Input((None,), dtype="int32")
            return m(t, L.LSTM(U)(make()(t)))
        return b

    def adapted(cls, **kw):
        def make():
            layer = cls(name=P, **kw)
            layer.adapt(np.random.default_rng(0).normal(1.0, 2.0, (16, 5, F)).astype("float32"))
            return layer
        return make

    def rnn(make, t=None):
        def b():
            x = keras.Input((t, F))
            out = make()(x)
            return m(x, list(out) if isinstance(out, (list, tuple)) else out)
        return b

    def attention(make):
        def b():
            x = keras.Input((None, F))
            h = L.LSTM(U, return_sequences=True)(x)
            return m(x, make()(h, h))
        return b

    aug = lambda cls, **kw: frames(lambda: cls(name=P, **kw))  # noqa: E731  (identity at inference)
    return {
        "Activation": after(lambda: L.Activation("swish", name=P)),
        "ActivityRegularization": after(lambda: L.ActivityRegularization(l1=0.1, name=P)),
        "AdaptiveAveragePooling1D": after(lambda: L.AdaptiveAveragePooling1D(2, name=P), t=6),
        "AdaptiveMaxPooling1D": after(lambda: L.AdaptiveMaxPooling1D(2, name=P), t=6),
        "AdaptiveAveragePooling2D": frames(lambda: L.AdaptiveAveragePooling2D(2, name=P)),
        "AdaptiveMaxPooling2D": frames(lambda: L.AdaptiveMaxPooling2D(2, name=P)),
        "AdaptiveAveragePooling3D": frames(lambda: L.AdaptiveAveragePooling3D(2, name=P), (4, 4, 4, 1)),
        "AdaptiveMaxPooling3D": frames(lambda: L.AdaptiveMaxPooling3D(2, name=P), (4, 4, 4, 1)),
        "Add": merge(lambda: L.Add(name=P)),
        "AdditiveAttention": attention(lambda: (lambda q, v: L.AdditiveAttention(name=P)([q, v]))),
        "AlphaDropout": after(lambda: L.AlphaDropout(0.2, name=P)),
        "Attention": attention(lambda: (lambda q, v: L.Attention(name=P)([q, v]))),
        "AugMix": aug(L.AugMix, value_range=(0, 1)),
        "AutoContrast": aug(L.AutoContrast, value_range=(0, 1)),
        "Average": merge(lambda: L.Average(name=P)),
        "AveragePooling1D": before(lambda: L.AveragePooling1D(2, name=P)),
        "AveragePooling2D": frames(lambda: L.AveragePooling2D(2, name=P)),
        "AveragePooling3D": frames(lambda: L.AveragePooling3D(2, name=P), (4, 4, 4, 1)),
        "BatchNormalization": after(lambda: L.BatchNormalization(name=P)),
        "Bidirectional": rnn(lambda: L.Bidirectional(L.LSTM(U, return_sequences=True), name=P)),
        "CategoryEncoding": lambda: (lambda t: m(t, L.Dense(2)(L.CategoryEncoding(V, "multi_hot", name=P)(t))))(
            keras.Input((5,), dtype="int32")),
        "CenterCrop": frames(lambda: L.CenterCrop(4, 4, name=P)),
        "Concatenate": merge(lambda: L.Concatenate(name=P)),
        "ContrastLimitedAdaptiveHistogramEqualization": aug(L.ContrastLimitedAdaptiveHistogramEqualization,
                                                             value_range=(0, 1)),
        "Conv1D": before(lambda: L.Conv1D(4, 3, name=P)),
        "Conv1DTranspose": before(lambda: L.Conv1DTranspose(4, 3, strides=2, name=P)),
        "Conv2D": frames(lambda: L.Conv2D(3, 3, name=P)),
        "Conv2DTranspose": frames(lambda: L.Conv2DTranspose(2, 3, strides=2, name=P)),
        "Conv3D": frames(lambda: L.Conv3D(2, 3, name=P), (4, 4, 4, 1)),
        "Conv3DTranspose": frames(lambda: L.Conv3DTranspose(2, 2, name=P), (3, 3, 3, 1)),
        "ConvLSTM1D": lambda: (lambda x: m(x, L.Flatten()(L.ConvLSTM1D(2, 3, padding="same", name=P)(x))))(
            keras.Input((None, 5, 2))),
        "ConvLSTM2D": lambda: (lambda x: m(x, L.Flatten()(L.ConvLSTM2D(2, 3, padding="same", name=P)(x))))(
            keras.Input((None, 4, 4, 1))),
        "ConvLSTM3D": lambda: (lambda x: m(x, L.Flatten()(L.ConvLSTM3D(1, 2, padding="same", name=P)(x))))(
            keras.Input((None, 3, 3, 3, 1))),
        "Cropping1D": after(lambda: L.Cropping1D((1, 2), name=P)),
        "Cropping2D": frames(lambda: L.Cropping2D(1, name=P)),
        "Cropping3D": frames(lambda: L.Cropping3D(1, name=P), (4, 4, 4, 1)),
        "CutMix": aug(L.CutMix),
        "Dense": after(lambda: L.Dense(3, activation="gelu", name=P)),
        "DepthwiseConv1D": before(lambda: L.DepthwiseConv1D(3, name=P)),
        "DepthwiseConv2D": frames(lambda: L.DepthwiseConv2D(3, name=P)),
        "Discretization": lambda: (lambda x: m(x, L.LSTM(U)(L.Embedding(4, 3)(L.Discretization(
            bin_boundaries=[-0.5, 0.0, 0.5], name=P)(x)))))(keras.Input((None,))),
        "Dot": merge(lambda: L.Dot(axes=2, name=P)),
        "Dropout": after(lambda: L.Dropout(0.3, name=P)),
        "ELU": after(lambda: L.ELU(0.7, name=P)),
        "EinsumDense": after(lambda: L.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d", name=P)),
        "Embedding": tokens(lambda: L.Embedding(V, 3, mask_zero=True, name=P)),
        "Equalization": aug(L.Equalization, value_range=(0, 1)),
        "Flatten": after(lambda: L.Flatten(name=P), t=5),
        "GRU": rnn(lambda: L.GRU(U, return_sequences=True, name=P)),
        "GaussianDropout": after(lambda: L.GaussianDropout(0.2, name=P)),
        "GaussianNoise": after(lambda: L.GaussianNoise(0.2, name=P)),
        "GlobalAveragePooling1D": after(lambda: L.GlobalAveragePooling1D(name=P)),
        "GlobalAveragePooling2D": frames(lambda: L.GlobalAveragePooling2D(name=P)),
        "GlobalAveragePooling3D": frames(lambda: L.GlobalAveragePooling3D(name=P), (4, 4, 4, 1)),
        "GlobalMaxPooling1D": after(lambda: L.GlobalMaxPooling1D(name=P)),
        "GlobalMaxPooling2D": frames(lambda: L.GlobalMaxPooling2D(name=P)),
        "GlobalMaxPooling3D": frames(lambda: L.GlobalMaxPooling3D(name=P), (4, 4, 4, 1)),
        "GroupNormalization": after(lambda: L.GroupNormalization(2, name=P)),
        "GroupedQueryAttention": attention(lambda: (lambda q, v: L.GroupQueryAttention(2, 2, 1, name=P)(q, v))),
        "Hashing": lambda: (lambda t: m(t, L.LSTM(U)(L.Embedding(8, 3)(L.Hashing(8, name=P)(t)))))(
            keras.Input((None,), dtype="int32")),
        "Identity": after(lambda: L.Identity(name=P)),
        "IntegerLookup": lambda: (lambda t: m(t, L.LSTM(U)(L.Embedding(V + 2, 3)(
            L.IntegerLookup(vocabulary=list(range(1, V)), name=P)(t)))))(keras.Input((None,), dtype="int64")),
        "LSTM": rnn(lambda: L.LSTM(U, return_sequences=True, name=P)),
        "Lambda": after(lambda: L.Lambda(lambda z: z * 2.0 - 1.0, name=P)),
        "LayerNormalization": after(lambda: L.LayerNormalization(name=P)),
        "LeakyReLU": after(lambda: L.LeakyReLU(0.1, name=P)),
        "Masking": before(lambda: L.Masking(0.0, name=P)),
        "MaxPooling1D": before(lambda: L.MaxPooling1D(2, name=P)),
        "MaxPooling2D": frames(lambda: L.MaxPooling2D(2, name=P)),
        "MaxPooling3D": frames(lambda: L.MaxPooling3D(2, name=P), (4, 4, 4, 1)),
        "Maximum": merge(lambda: L.Maximum(name=P)),
        "MelSpectrogram": lambda: (lambda x: m(x, L.LSTM(U)(L.MelSpectrogram(
            num_mel_bins=8, fft_length=32, sequence_stride=8, sequence_length=16, name=P)(x))))(
            keras.Input((64,))),
        "Minimum": merge(lambda: L.Minimum(name=P)),
        "MixUp": aug(L.MixUp),
        "MultiHeadAttention": attention(lambda: (lambda q, v: L.MultiHeadAttention(2, 3, name=P)(q, v))),
        "Multiply": merge(lambda: L.Multiply(name=P)),
        "Normalization": before(adapted(L.Normalization)),
        "PReLU": after(lambda: L.PReLU(shared_axes=[1], name=P)),
        "Permute": after(lambda: L.Permute((2, 1), name=P)),
        "RMSNormalization": after(lambda: L.RMSNormalization(name=P)),
        "RNN": rnn(lambda: L.RNN([L.LSTMCell(U), L.GRUCell(3)], return_sequences=True, name=P)),
        "RandAugment": aug(L.RandAugment, value_range=(0, 1)),
        "RandomBrightness": aug(L.RandomBrightness, factor=0.2),
        "RandomColorDegeneration": image(lambda: L.RandomColorDegeneration(factor=0.2, name=P), c=3),
        "RandomColorJitter": aug(L.RandomColorJitter, value_range=(0, 1)),
        "RandomContrast": aug(L.RandomContrast, factor=0.2),
        "RandomCrop": image(lambda: L.RandomCrop(4, 4, name=P)),
        "RandomElasticTransform": aug(L.RandomElasticTransform),
        "RandomErasing": aug(L.RandomErasing),
        "RandomFlip": aug(L.RandomFlip),
        "RandomGaussianBlur": aug(L.RandomGaussianBlur),
        "RandomGrayscale": aug(L.RandomGrayscale),
        "RandomHue": aug(L.RandomHue, factor=0.2, value_range=(0, 1)),
        "RandomInvert": aug(L.RandomInvert),
        "RandomPerspective": aug(L.RandomPerspective),
        "RandomPosterization": aug(L.RandomPosterization, factor=4, value_range=(0, 1)),
        "RandomRotation": aug(L.RandomRotation, factor=0.1),
        "RandomSaturation": aug(L.RandomSaturation, factor=0.2),
        "RandomSharpness": aug(L.RandomSharpness, factor=0.2),
        "RandomShear": aug(L.RandomShear, x_factor=0.1),
        "RandomTranslation": aug(L.RandomTranslation, height_factor=0.1, width_factor=0.1),
        "RandomZoom": aug(L.RandomZoom, height_factor=0.1),
        "ReLU": after(lambda: L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2, name=P)),
        "RepeatVector": after(lambda: L.RepeatVector(3, name=P), rs=False),
        "Rescaling": before(lambda: L.Rescaling(0.5, offset=-1.0, name=P)),
        "Reshape": after(lambda: L.Reshape((2, 10), name=P), t=5),
        "Resizing": frames(lambda: L.Resizing(3, 3, name=P)),
        "ReversibleEmbedding": tokens(lambda: L.ReversibleEmbedding(V, 3, name=P)),
        "STFTSpectrogram": lambda: (lambda x: m(x, L.LSTM(U)(L.STFTSpectrogram(
            frame_length=16, frame_step=8, fft_length=16, name=P)(x))))(keras.Input((64, 1))),
        "SeparableConv1D": before(lambda: L.SeparableConv1D(4, 3, name=P)),
        "SeparableConv2D": frames(lambda: L.SeparableConv2D(3, 3, name=P)),
        "SimpleRNN": rnn(lambda: L.SimpleRNN(U, return_sequences=True, name=P)),
        "Softmax": after(lambda: L.Softmax(name=P)),
        "Solarization": aug(L.Solarization, value_range=(0, 1)),
        "SpatialDropout1D": after(lambda: L.SpatialDropout1D(0.3, name=P)),
        "SpatialDropout2D": frames(lambda: L.SpatialDropout2D(0.3, name=P)),
        "SpatialDropout3D": frames(lambda: L.SpatialDropout3D(0.3, name=P), (4, 4, 4, 1)),
        "SpectralNormalization": after(lambda: L.SpectralNormalization(L.Dense(3), name=P)),
        "Subtract": merge(lambda: L.Subtract(name=P)),
        "TimeDistributed": lambda: (lambda x: m(x, L.GRU(U)(L.TimeDistributed(L.LSTM(3), name=P)(x))))(
            keras.Input((None, 5, 2))),
        "UnitNormalization": after(lambda: L.UnitNormalization(name=P)),
        "UpSampling1D": after(lambda: L.UpSampling1D(2, name=P)),
        "UpSampling2D": frames(lambda: L.UpSampling2D(2, name=P)),
        "UpSampling3D": frames(lambda: L.UpSampling3D(2, name=P), (2, 2, 2, 1)),
        "ZeroPadding1D": after(lambda: L.ZeroPadding1D((1, 2), name=P)),
        "ZeroPadding2D": frames(lambda: L.ZeroPadding2D(1, name=P)),
        "ZeroPadding3D": frames(lambda: L.ZeroPadding3D(1, name=P), (2, 2, 2, 1)),
    }


def layer_classes() -> list[str]:
    """Distinct layer classes exported by keras.layers (aliases such as MaxPool1D counted once)."""
    import keras

    seen = {}
    for n in dir(keras.layers):
        obj = getattr(keras.layers, n)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
            seen.setdefault(obj.__name__, obj)
    return sorted(seen)


def try_one(build) -> dict:
    import keras
    import onnxruntime as ort

    import onnx_layer_cases as C
    from converters.onnx.graph import convert_model
    from converters.registry import ExportOptions
    from rnnedge.errors import ConversionError

    keras.utils.set_random_seed(1)
    model = build()
    C.randomize(model)
    try:
        mp, info = convert_model(model, ExportOptions())
    except ConversionError as e:
        return {"path": "refused", "reason": str(e).splitlines()[0][:300]}
    row = next((l for l in info["layers"] if l["name"] == P), None)
    sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
    fixed = all(not isinstance(d, str) for i in info["inputs"] for d in i["shape"][1:])
    worst = 0.0
    for b, t in ([(1, 0), (3, 0)] if fixed else [(1, C.T1), (3, C.T2)]):
        fd = C.feeds(info, b, t or 1)
        for k, v in fd.items():  # value-range layers (images, lookups) get inputs they accept
            if v.dtype.kind == "f" and len(v.shape) >= 4:
                fd[k] = np.abs(v) / (np.abs(v).max() + 1e-6)
        ref = C.keras_ref(model, fd, [i["name"] for i in info["inputs"]])
        worst = max(worst, C.max_error(ref, sess.run(None, fd)))
    ops = info["op_types"]
    return {"path": row["path"] if row else "not recorded", "max_abs_error": worst,
            "loop": "Loop" in ops or "Scan" in ops,
            "recurrent_ops": {k: ops[k] for k in ("LSTM", "GRU", "RNN") if k in ops},
            "notes": info["notes"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated class names")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "layer_coverage.json"))
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (also written beside --out)")
    a = ap.parse_args(argv)
    import keras

    from converters.onnx.fallback import hide_gpus

    hide_gpus()
    table = probes()
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    results = {}
    for cls in layer_classes():
        if only and cls not in only:
            continue
        if cls in NOT_TRIED:
            results[cls] = {"path": "not tried", "reason": NOT_TRIED[cls]}
        elif cls not in table:
            results[cls] = {"path": "not tried", "reason": "no probe model written"}
        else:
            try:
                results[cls] = try_one(table[cls])
            except Exception as e:  # noqa: BLE001  (a probe Keras itself cannot run, a parity crash)
                results[cls] = {"path": "error", "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        r = results[cls]
        if not a.markdown:
            err = f"{r['max_abs_error']:.1e}" if "max_abs_error" in r else ""
            print(f"{cls:45s} {r['path']:18s} {err:9s} {r.get('reason', '')}", flush=True)
    lines = ["| keras.layers class | path | max abs error | note |", "|---|---|---|---|"]
    for cls, r in results.items():
        err = f"{r['max_abs_error']:.1e}" if "max_abs_error" in r else ""
        note = r.get("reason") or ("runs as a Loop" if r.get("loop") else "")
        lines.append(f"| `{cls}` | {r['path']} | {err} | {note} |")
    if a.markdown:
        print("\n".join(lines))
    counts = {}
    for r in results.values():
        counts[r["path"]] = counts.get(r["path"], 0) + 1
    print("summary:", counts, file=sys.stderr)
    if not only:
        from rnnedge.manifest import package_versions, write_json_atomic

        write_json_atomic(a.out, {"results": results, "summary": counts,
                                  "versions": package_versions("keras", "tensorflow-cpu", "tf2onnx", "onnx",
                                                               "onnxruntime"),
                                  "keras_layers": len(layer_classes()), "keras_version": keras.__version__})
        Path(a.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
