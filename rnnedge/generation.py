"""Sampling text from a character (or token) model on the edge: numpy only, no TensorFlow.

A next-character model outputs, at every step, a probability for each id of its vocabulary.
To write text with it, feed a *prime* text, then repeatedly draw the next character from the
last output and feed it back. Two ways to run the model:

- :func:`generate`: a **step model** (``rnnedge export --streaming``: ``model.step.onnx`` /
  ``model.step.tflite``) through a :class:`~rnnedge.runtime.streaming.StreamingSession`: the
  LSTM state is carried from step to step, so each new character costs ONE step.
- :func:`generate_full`: the ordinary (window) model, re-run over the whole context for each
  new character (cost grows with the context); what you do without a step model. With the
  whole context (``window=None``) both give the same probabilities, so greedy decoding
  (temperature 0) gives the same text.

Temperature (:func:`sample`): the probabilities are raised to ``1/temperature`` and
renormalized: 1 samples the model's distribution as is, lower is more conservative, higher
more random, 0 always takes the most likely character (greedy)::

    from rnnedge.generation import generate
    vocab = manifest["preprocessing"]["vocab"]            # {"a": 1, "b": 2, ...}; 0 = padding
    text = generate("out/export/model.step.onnx", vocab, prime="the ", length=200,
                    temperature=0.5, seed=0)

The padding / unknown id 0 is never fed nor generated (a streamed token is never padding).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from rnnedge.errors import UsageError

PAD_ID = 0


# --------------------------------------------------------------------------- sampling
def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def check_temperature(temperature) -> float:
    """``temperature`` as a float >= 0, or :class:`UsageError`."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise UsageError(f"temperature must be a number >= 0, got {temperature!r}") from None
    if not math.isfinite(t) or t < 0:
        raise UsageError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    return t


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """The distribution sampled at ``temperature``: ``probs ** (1/T)`` renormalized (one-hot argmax at 0)."""
    t = check_temperature(temperature)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise UsageError(f"probs must be a non-empty 1-D array, got shape {list(p.shape)}")
    if not np.all(np.isfinite(p)) or (p < 0).any() or p.sum() <= 0:
        raise UsageError("probs must be finite, >= 0 and not all zero")
    if t == 0:
        q = np.zeros_like(p)
        q[int(np.argmax(p))] = 1.0
        return q
    with np.errstate(divide="ignore"):
        logits = np.log(p) / t
    logits -= logits.max()
    q = np.exp(logits)
    return q / q.sum()


def sample(probs, temperature: float = 1.0, rng=None) -> int:
    """Draw one id from ``probs`` (1-D, need not sum to 1) at ``temperature``.

    ``temperature`` 0 returns ``argmax(probs)`` (no randomness used); ``rng``: a numpy
    Generator, a seed, or None.
    """
    q = apply_temperature(probs, temperature)
    if check_temperature(temperature) == 0:
        return int(np.argmax(q))
    c = np.cumsum(q)
    i = int(np.searchsorted(c, _rng(rng).random() * c[-1], side="right"))
    return min(i, q.size - 1)


# --------------------------------------------------------------------------- text <-> ids
def encode(text: str, vocab: Mapping[str, int], lowercase: bool = False) -> np.ndarray:
    """Character ids of ``text``; :class:`UsageError` names the characters not in ``vocab``."""
    if lowercase:
        text = text.lower()
    missing = sorted({c for c in text if c not in vocab})
    if missing:
        raise UsageError(f"characters not in the model's vocabulary: {missing!r}")
    return np.asarray([vocab[c] for c in text], dtype=np.int32)


def decode(ids, vocab: Mapping[str, int]) -> str:
    """Text of ``ids`` (the padding/unknown id 0 and ids outside the vocabulary are dropped)."""
    inv = {int(i): c for c, i in vocab.items()}
    return "".join(inv.get(int(i), "") for i in np.asarray(ids).reshape(-1))


def _next_id(probs, vocab_ids: np.ndarray, temperature: float, rng) -> int:
    p = np.zeros(len(probs), np.float64)
    p[vocab_ids] = np.asarray(probs, np.float64)[vocab_ids]  # never the padding id / unused ids
    if p.sum() <= 0:
        p[vocab_ids] = 1.0
    return sample(p, temperature, rng)


def _prime_ids(prime: str, vocab, lowercase: bool) -> np.ndarray:
    if not prime:
        raise UsageError("prime must be at least one character (the model needs an input to start)")
    return encode(prime, vocab, lowercase)


def _vocab_ids(vocab, n_out: int) -> np.ndarray:
    ids = np.asarray(sorted(int(i) for i in vocab.values() if 0 < int(i) < n_out), dtype=np.int64)
    if ids.size == 0:
        raise UsageError(f"the vocabulary has no id between 1 and {n_out - 1} (the model's output size)")
    return ids


# --------------------------------------------------------------------------- generation
def generate(step_model, vocab: Mapping[str, int], prime: str, length: int, temperature: float = 1.0,
             seed: Optional[int] = 0, *, lowercase: bool = False, **runtime_options) -> str:
    """``length`` characters sampled after ``prime`` from a step model, one step per character.

    ``step_model``: the path of a step model (``model.step.onnx`` / ``model.step.tflite``) or an
    open :class:`~rnnedge.runtime.streaming.StreamingSession` (it is reset first, and left open).
    ``vocab``: ``{character: id}`` (the ``preprocessing["vocab"]`` of the manifest). Returns the
    generated text only (without the prime). Same seed, same text.
    """
    from rnnedge.runtime.streaming import StreamingSession

    t = check_temperature(temperature)
    if int(length) < 0:
        raise UsageError(f"length must be >= 0, got {length}")
    ids = _prime_ids(prime, vocab, lowercase)
    own = not isinstance(step_model, StreamingSession)
    s = StreamingSession(Path(step_model), **runtime_options) if own else step_model
    try:
        if not s.layout["token"]:
            raise UsageError(f"{s.path.name}: not a token model (its step input takes features, not ids)")
        s.reset()
        rng = _rng(seed)
        probs = None
        for i in ids:
            probs = s.step(np.int32(i))
        allowed = _vocab_ids(vocab, len(probs))
        out = []
        for k in range(int(length)):
            if k:
                probs = s.step(np.int32(out[-1]))
            out.append(_next_id(probs, allowed, t, rng))
        return decode(out, vocab)
    finally:
        if own:
            s.close()


def generate_full(model, vocab: Mapping[str, int], prime: str, length: int, temperature: float = 1.0,
                  seed: Optional[int] = 0, *, window: Optional[int] = None, lowercase: bool = False,
                  **runtime_options) -> str:
    """Like :func:`generate`, re-running the full (window) model for every new character.

    ``model``: a path (``model.onnx``, ``model.tflite``...) or an open runner. Each step runs the
    model on the last ``window`` characters (all of them when None; a model with a fixed time
    axis uses its own length and needs a context at least that long) and samples from the
    output at the last position. Slower than a step model; here for comparison.
    """
    from rnnedge.runtime import open_runner

    t = check_temperature(temperature)
    if int(length) < 0:
        raise UsageError(f"length must be >= 0, got {length}")
    ctx = list(_prime_ids(prime, vocab, lowercase))
    own = isinstance(model, (str, Path))
    r = open_runner(Path(model), **runtime_options) if own else model
    try:
        r.load()
        if len(r.inputs) != 1:
            raise UsageError(f"{Path(r.path).name}: a generation model takes one input, got {len(r.inputs)}")
        x_info = r.inputs[0]
        fixed_t = x_info.shape[1] if len(x_info.shape) > 1 and isinstance(x_info.shape[1], int) else None
        win = fixed_t or window
        if fixed_t and len(ctx) < fixed_t:
            raise UsageError(f"{Path(r.path).name} takes exactly {fixed_t} characters: prime with at least that many")
        dtype = np.dtype(x_info.dtype) if x_info.dtype else np.int32
        rng = _rng(seed)
        out = []
        allowed = None
        for _ in range(int(length)):
            x = np.asarray(ctx[-win:] if win else ctx, dtype=dtype)[None]
            probs = next(iter(r.run({x_info.name: x}).values()))[0, -1]
            if allowed is None:
                allowed = _vocab_ids(vocab, len(probs))
            nxt = _next_id(probs, allowed, t, rng)
            out.append(nxt)
            ctx.append(nxt)
        return decode(out, vocab)
    finally:
        if own:
            r.close()
