"""Training data: the preparation each task needs, and a small built-in dataset per preset.

Numpy only (no TensorFlow). :func:`make_dataset` returns arrays ready for ``model.fit`` and
the ``preprocessing`` dict that deployment needs to prepare raw inputs the same way
(vocabulary, padding, scaler, window) -- it is saved beside the model and in every manifest.

Kinds (``data.kind`` in a spec):
- ``window``: a numeric series (CSV column or built-in) -> scaled sliding windows -> next value(s).
- ``text``: labelled text (CSV ``text,label``) -> word tokens -> ids (0 pad, 1 OOV) -> padded.
- ``chars``: a corpus -> character ids -> (sequence, next-character sequence) pairs.
- ``seq2seq``: (source, target) token pairs -> encoder ids, decoder inputs (teacher forcing), targets.
- ``sequence``: float sequences with a class or value target (built-in generators).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from rnnedge.errors import UsageError
from rnnedge.spec import schema as S

TOKEN_PATTERN = r"[a-z0-9']+"
PAD_ID, OOV_ID = 0, 1


@dataclass
class Dataset:
    x: dict[str, np.ndarray]           # by input name
    y: np.ndarray
    preprocessing: dict
    info: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.y)


# --------------------------------------------------------------------------- tokenizers
def tokenize(text: str, lowercase: bool = True, pattern: str = TOKEN_PATTERN) -> list[str]:
    return re.findall(pattern, text.lower() if lowercase else text)


def build_vocab(texts: list[str], vocab_size: int, lowercase: bool = True) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in texts:
        for w in tokenize(t, lowercase):
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, vocab_size - 2)]
    return {w: i + 2 for i, w in enumerate(words)}


def encode_texts(texts: list[str], vocab: dict[str, int], max_len: int, padding: str = "post",
                 lowercase: bool = True) -> np.ndarray:
    out = np.zeros((len(texts), max_len), dtype=np.int32)
    for r, t in enumerate(texts):
        ids = [vocab.get(w, OOV_ID) for w in tokenize(t, lowercase)][:max_len]
        if padding == "post":
            out[r, : len(ids)] = ids
        elif ids:
            out[r, -len(ids):] = ids
    return out


def scale(series: np.ndarray, scaler: dict) -> np.ndarray:
    return (np.asarray(series, dtype=np.float32) - scaler["mean"]) / scaler["std"]


def unscale(values: np.ndarray, scaler: dict) -> np.ndarray:
    return np.asarray(values, dtype=np.float32) * scaler["std"] + scaler["mean"]


# --------------------------------------------------------------------------- built-in data
POSITIVE = ("good great excellent wonderful amazing lovely fantastic enjoyable superb delightful "
            "brilliant pleasant charming beautiful perfect fun touching").split()
NEGATIVE = ("bad awful terrible boring poor horrible dull disappointing mediocre weak annoying "
            "painful ugly worst waste clumsy tedious").split()
NEUTRAL = ("the movie film plot actor story scene music was is and it a this that with very really "
           "quite ending cast director script camera character show book").split()

CORPUS = (
    "the quick brown fox jumps over the lazy dog. a small model runs on a small device. "
    "recurrent networks read a sequence one step at a time and carry a state from step to step. "
    "an edge device has little memory and a slow processor, so the model must be lean. "
    "we train the model, export it, check that every runtime computes the same numbers, "
    "and measure how fast it runs. the long short-term memory cell keeps a cell state and a "
    "hidden state; the gated recurrent unit keeps one. "
)


def _rng(seed):
    return np.random.default_rng(seed)


def synthetic_series(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = _rng(seed)
    t = np.arange(n, dtype=np.float32)
    s = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 13 + 1.0) + 0.1 * rng.standard_normal(n)
    return (10 + 3 * s).astype(np.float32)


def synthetic_reviews(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = _rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(NEUTRAL, size=int(rng.integers(4, 20))))
        pool = POSITIVE if label else NEGATIVE
        for _ in range(int(rng.integers(1, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(pool)))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.float32)


def synthetic_waveforms(n: int, length: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed)
    y = rng.integers(0, 4, size=n)
    t = np.arange(length, dtype=np.float32)[None, :, None]
    freq = rng.uniform(0.05, 0.2, size=(n, 1, channels))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, channels))
    arg = 2 * np.pi * freq * t + phase
    sine = np.sin(arg)
    square = np.sign(sine)
    saw = 2 * ((arg / (2 * np.pi)) % 1.0) - 1
    noise = rng.standard_normal((n, length, channels))
    x = np.choose(y[:, None, None], [sine, square, saw, noise]) + 0.1 * rng.standard_normal((n, length, channels))
    return x.astype(np.float32), y.astype(np.int32)


# --------------------------------------------------------------------------- per kind
def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        dialect = csv.Sniffer().sniff(sample, delimiters=",\t;") if sample else csv.excel
        rows = list(csv.reader(f, dialect))
    if not rows:
        raise UsageError(f"{path}: empty file")
    return rows[0], rows[1:]


def _window(spec: S.Spec, d: S.DataSpec, path: Optional[Path], column: Optional[str], seed: int) -> Dataset:
    if path is None:
        series = synthetic_series(max(d.samples + (d.window or 48) + 200, 600), seed)
        source = f"synthetic:{d.synthetic or 'sines'}"
        col = "value"
    else:
        header, rows = _read_csv(path)
        col = column or d.column
        if col is None:
            numeric = [i for i, _ in enumerate(header) if _is_float(rows[0][i])] if rows else []
            if not numeric:
                raise UsageError(f"{path}: no numeric column; pass --column NAME")
            ci = numeric[-1]
            col = header[ci]
        elif col not in header:
            raise UsageError(f"{path}: no column '{col}' (columns: {', '.join(header)})")
        ci = header.index(col)
        try:
            series = np.asarray([float(r[ci]) for r in rows if len(r) > ci and r[ci] != ""], dtype=np.float32)
        except ValueError as e:
            raise UsageError(f"{path}: column '{col}' is not numeric ({e})") from None
        source = str(path)
    W, H = d.window or 48, d.horizon
    if len(series) < W + H + 10:
        raise UsageError(f"series has {len(series)} values: too short for window {W} + horizon {H}")
    n_train = int(len(series) * (1 - spec.train.validation_split))
    mean, std = float(series[:n_train].mean()), float(series[:n_train].std() or 1.0)
    scaler = {"mean": mean, "std": std}
    z = scale(series, scaler)
    idx = np.arange(len(z) - W - H + 1)
    x = np.stack([z[i:i + W] for i in idx])[..., None]
    y = np.stack([z[i + W:i + W + H] for i in idx])
    n_feat = spec.inputs[0].shape[-1]
    if n_feat not in (None, 1):
        raise UsageError(f"window data gives 1 feature but input '{spec.inputs[0].name}' has {n_feat}")
    pre = {"kind": "window", "window": W, "horizon": H, "column": col, "scaler": scaler}
    return Dataset({spec.inputs[0].name: x.astype(np.float32)}, y.astype(np.float32), pre,
                   {"source": source, "series_length": int(len(series))})


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _text(spec: S.Spec, d: S.DataSpec, path: Optional[Path], seed: int) -> Dataset:
    inp = spec.inputs[0]
    if path is None:
        texts, y = synthetic_reviews(d.samples, seed)
        source = f"synthetic:{d.synthetic or 'reviews'}"
    else:
        header, rows = _read_csv(path)
        lower = [h.lower() for h in header]
        if "text" not in lower or "label" not in lower:
            raise UsageError(f"{path}: needs columns 'text' and 'label' (found: {', '.join(header)})")
        ti, li = lower.index("text"), lower.index("label")
        texts = [r[ti] for r in rows if len(r) > max(ti, li)]
        labels = [r[li] for r in rows if len(r) > max(ti, li)]
        classes = sorted(set(labels))
        try:
            y = np.asarray([float(v) for v in labels], dtype=np.float32)
        except ValueError:
            y = np.asarray([classes.index(v) for v in labels], dtype=np.float32)
        source = str(path)
    vocab = build_vocab(texts, inp.vocab_size or 10000, d.lowercase)
    max_len = d.max_len or max(len(tokenize(t)) for t in texts)
    x = encode_texts(texts, vocab, max_len, d.padding, d.lowercase)
    pre = {"kind": "text", "vocab": vocab, "max_len": max_len, "padding": d.padding,
           "lowercase": d.lowercase, "token_pattern": TOKEN_PATTERN, "pad_id": PAD_ID, "oov_id": OOV_ID}
    return Dataset({inp.name: x}, y, pre, {"source": source, "vocab_used": len(vocab) + 2})


def _chars(spec: S.Spec, d: S.DataSpec, path: Optional[Path], seed: int) -> Dataset:
    inp = spec.inputs[0]
    text = CORPUS * 4 if path is None else Path(path).read_text()
    if d.lowercase:
        text = text.lower()
    chars = sorted(set(text))
    cap = (inp.vocab_size or 256) - 1
    if len(chars) > cap:
        keep = sorted(chars, key=lambda c: -text.count(c))[:cap]
        chars = sorted(keep)
    vocab = {c: i + 1 for i, c in enumerate(chars)}  # 0 = padding / unknown
    ids = np.asarray([vocab.get(c, 0) for c in text], dtype=np.int32)
    L = d.max_len or 40
    rng = _rng(seed)
    starts = rng.integers(0, len(ids) - L - 1, size=d.samples)
    x = np.stack([ids[s:s + L] for s in starts])
    y = np.stack([ids[s + 1:s + L + 1] for s in starts])
    pre = {"kind": "chars", "vocab": vocab, "max_len": L, "lowercase": d.lowercase, "unknown_id": 0}
    return Dataset({inp.name: x}, y, pre, {"source": "synthetic:corpus" if path is None else str(path)})


def _seq2seq(spec: S.Spec, d: S.DataSpec, path: Optional[Path], seed: int) -> Dataset:
    if len(spec.inputs) != 2:
        raise UsageError("seq2seq data needs a spec with two inputs (encoder tokens, decoder tokens)")
    enc, dec = spec.inputs
    START, END, FIRST = 1, 2, 3
    L = d.max_len or 8
    rng = _rng(seed)
    if path is not None:
        raise UsageError("seq2seq training from a file is not supported yet: use the built-in task "
                         "(omit --data) or build your own arrays with the Python API")
    n_sym = min(enc.vocab_size, dec.vocab_size) - FIRST
    src = np.zeros((d.samples, L), np.int32)
    dec_in = np.zeros((d.samples, L + 1), np.int32)
    tgt = np.zeros((d.samples, L + 1), np.int32)
    for r in range(d.samples):
        n = int(rng.integers(2, L + 1))
        s = rng.integers(FIRST, FIRST + n_sym, size=n)
        t = s[::-1]
        src[r, :n] = s
        dec_in[r, 0] = START
        dec_in[r, 1:n + 1] = t
        tgt[r, :n] = t
        tgt[r, n] = END
    pre = {"kind": "seq2seq", "task": "reverse", "max_len": L, "start_id": START, "end_id": END,
           "pad_id": 0, "first_symbol_id": FIRST}
    return Dataset({enc.name: src, dec.name: dec_in}, tgt, pre, {"source": "synthetic:reverse"})


def _sequence(spec: S.Spec, d: S.DataSpec, path: Optional[Path], seed: int) -> Dataset:
    inp = spec.inputs[0]
    if path is not None:
        raise UsageError("sequence data from a file: pass .npz with arrays 'x' and 'y' via the Python API "
                         "(rnnedge.train(..., data=(x, y)))")
    L = d.max_len or 20
    ch = inp.shape[-1] or 1
    if d.synthetic == "waveforms":
        x, y = synthetic_waveforms(d.samples, L, ch, seed)
    else:  # mean
        rng = _rng(seed)
        x = rng.standard_normal((d.samples, L, ch)).astype(np.float32)
        y = x.mean(axis=(1, 2))[:, None].astype(np.float32)
    return Dataset({inp.name: x}, y, {"kind": "sequence", "max_len": L},
                   {"source": f"synthetic:{d.synthetic}"})


def make_dataset(spec: S.Spec, data: Optional[str] = None, *, column: Optional[str] = None,
                 seed: Optional[int] = None, samples: Optional[int] = None) -> Dataset:
    """The training data for ``spec``: from ``data`` (a file) or the spec's built-in dataset."""
    d = spec.data
    if d is None:
        raise UsageError(f"spec '{spec.name}' has no 'data' section: say how to prepare its data "
                         "(kind: window|text|chars|seq2seq|sequence)")
    if samples:
        d = d.model_copy(update={"samples": samples})
    seed = spec.train.seed if seed is None else seed
    path = None
    if data is not None:
        path = Path(data)
        if not path.exists():
            raise UsageError(f"data file not found: {path}")
    if d.kind == "window":
        return _window(spec, d, path, column, seed)
    if d.kind == "text":
        return _text(spec, d, path, seed)
    if d.kind == "chars":
        return _chars(spec, d, path, seed)
    if d.kind == "seq2seq":
        return _seq2seq(spec, d, path, seed)
    return _sequence(spec, d, path, seed)
