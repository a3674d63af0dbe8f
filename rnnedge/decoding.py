"""Greedy decoding of an encoder-decoder model with its exported *full* (teacher-forcing) graph.

A seq2seq model trained with teacher forcing takes two token inputs, the source (encoder) and
the target shifted right (decoder: ``<start> y1 y2 ...``), and outputs, for every decoder
position, the probabilities of the next token. :func:`greedy_decode` turns that graph into a
generator without any step model or state plumbing: it starts every row with ``[<start>]``,
runs the model, takes the argmax at the last position of the prefix, appends it, and runs
again with the longer prefix, until every row has produced ``end_id`` or ``max_len`` tokens::

    from rnnedge import open_runner
    from rnnedge.decoding import greedy_decode, trim

    with open_runner("export/model.onnx") as r:
        out = greedy_decode(r, source_ids, start_id=1, end_id=2, max_len=8)
    words = [[itos[t] for t in trim(row, end_id=2)] for row in out]

It works with any :class:`rnnedge.runtime.Runner` (ONNX / ORT, TFLite, Keras, TF.js); numpy
only here, no TensorFlow (the edge path).

**Cost.** Step ``t`` re-runs the encoder once and the decoder over the ``t + 1`` prefix tokens,
so ``T`` output tokens cost ``T`` encoder passes and ``T (T + 1) / 2`` decoder steps:
O(T^2) in time steps, against O(T) for a step model that carries the decoder state (see
:mod:`rnnedge.runtime.streaming` for that route). For short targets (numbers, commands, names:
T <= ~20) that is a few milliseconds, and it needs nothing but the one validated file.

**Why it is exact.** The decoder is causal (a one-directional RNN, no attention over later
decoder tokens), so its output at position ``t`` depends only on the encoder states and on
decoder tokens ``0..t``: re-running the prefix recomputes exactly the numbers a stateful
decoder would have produced at that step. For the same reason, padding the prefix with
``pad_id`` up to a fixed length (``pad_to``, or a runtime whose time axis is fixed, e.g. an
int8 TFLite file) does not change the output at position ``t``. Sources shorter than a fixed
encoder length are padded at the end with ``pad_id`` too, which is exact only when the model
masks padding (``Embedding(mask_zero=True)``), as models trained on post-padded sources do.

Runtimes with a fixed batch (a TFLite file exported with batch 1) are fed row groups of that
size; others get ``batch_size`` rows at a time (default: all rows at once).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from rnnedge.errors import UsageError


def _fixed(dim) -> Optional[int]:
    return int(dim) if isinstance(dim, (int, np.integer)) and int(dim) > 0 else None


def _pick(names: Sequence[str], given: Optional[str], index: int, what: str) -> str:
    if given is None:
        return names[index]
    if given not in names:
        raise UsageError(f"greedy_decode: no {what} input named {given!r}; the model takes {list(names)}")
    return given


def greedy_decode(runner, source_ids, start_id: int, end_id: int, max_len: int, *, pad_id: int = 0,
                  encoder_input: Optional[str] = None, decoder_input: Optional[str] = None,
                  output: Optional[str] = None, pad_to: Optional[int] = None,
                  batch_size: Optional[int] = None) -> np.ndarray:
    """Greedy-decode ``source_ids`` (``(N, S)`` token ids, post-padded with ``pad_id``).

    ``runner``: an :class:`rnnedge.runtime.Runner` of the full encoder-decoder model (two token
    inputs, one output ``(N, T, vocab)`` of next-token scores). By default the model's first
    input is the encoder's and its second the decoder's; ``encoder_input`` / ``decoder_input``
    / ``output`` name them otherwise. ``pad_to``: feed the decoder a prefix padded to this
    length at every step (constant shapes: no re-tracing / tensor re-allocation; still exact,
    see the module docstring); by default the prefix grows by one token per step, unless the
    runtime's decoder length is fixed, in which case that length is used.

    Returns ``(N, max_len)`` int32 token ids: the generated tokens, ``end_id`` included when a
    row produced it, ``pad_id`` after it. :func:`trim` gives one row's tokens before ``end_id``.
    """
    src = np.asarray(source_ids)
    if src.ndim != 2 or not np.issubdtype(src.dtype, np.integer):
        raise UsageError(f"greedy_decode: source_ids must be a 2-D array of token ids (N, S), got "
                         f"{src.dtype} {list(src.shape)}")
    if int(max_len) < 1:
        raise UsageError(f"greedy_decode: max_len must be >= 1, got {max_len}")
    max_len = int(max_len)
    runner.load()
    names = [i.name for i in runner.inputs]
    if len(names) != 2:
        raise UsageError(f"greedy_decode needs a model with two inputs (encoder, decoder tokens); "
                         f"{runner.path} takes {names}")
    enc_name = _pick(names, encoder_input, 0, "encoder")
    dec_name = _pick(names, decoder_input, 1, "decoder")
    if enc_name == dec_name:
        raise UsageError(f"greedy_decode: encoder and decoder input are both {enc_name!r}")
    out_names = [o.name for o in runner.outputs]
    out_name = out_names[0] if output is None else output
    if out_name not in out_names:
        raise UsageError(f"greedy_decode: no output named {out_name!r}; the model gives {out_names}")
    info = {i.name: i for i in runner.inputs}
    enc_info, dec_info = info[enc_name], info[dec_name]

    # shapes the runtime imposes
    fixed_batch = _fixed(enc_info.shape[0]) if enc_info.shape else None
    enc_len = _fixed(enc_info.shape[1]) if len(enc_info.shape) > 1 else None
    dec_len = _fixed(dec_info.shape[1]) if len(dec_info.shape) > 1 else None
    if enc_len is not None:
        if src.shape[1] > enc_len:
            raise UsageError(f"greedy_decode: sources have {src.shape[1]} tokens but {runner.path} takes "
                             f"exactly {enc_len} (fixed encoder length)")
        src = np.pad(src, ((0, 0), (0, enc_len - src.shape[1])), constant_values=pad_id)
    width = dec_len or (int(pad_to) if pad_to else None)
    if width is not None and width < max_len:
        where = f"{runner.path} has a fixed decoder length {dec_len}" if dec_len else f"pad_to={pad_to}"
        raise UsageError(f"greedy_decode: max_len={max_len} needs a decoder prefix of up to {max_len} "
                         f"tokens, but {where}")
    step = fixed_batch or int(batch_size or max(1, len(src)))
    enc_dtype = np.dtype(enc_info.dtype) if np.issubdtype(np.dtype(enc_info.dtype), np.integer) else np.int32
    dec_dtype = np.dtype(dec_info.dtype) if np.issubdtype(np.dtype(dec_info.dtype), np.integer) else np.int32

    result = np.full((len(src), max_len), pad_id, dtype=np.int32)
    for lo in range(0, len(src), step):
        rows = src[lo:lo + step]
        n = len(rows)
        if fixed_batch and n < fixed_batch:  # fill a fixed batch with copies of the first row
            rows = np.concatenate([rows, np.repeat(rows[:1], fixed_batch - n, axis=0)])
        rows = rows.astype(enc_dtype)
        gen = np.full((len(rows), max_len), pad_id, dtype=np.int32)
        done = np.zeros(len(rows), dtype=bool)
        for t in range(max_len):
            dec = np.full((len(rows), width or t + 1), pad_id, dtype=dec_dtype)
            dec[:, 0] = start_id
            dec[:, 1:t + 1] = gen[:, :t]
            probs = np.asarray(runner.run({enc_name: rows, dec_name: dec})[out_name])
            if probs.ndim != 3 or probs.shape[1] <= t:
                raise UsageError(f"greedy_decode: output {out_name!r} should be (batch, time, vocab); "
                                 f"got {list(probs.shape)} for a prefix of {t + 1}")
            nxt = probs[:, t, :].argmax(axis=-1).astype(np.int32)
            gen[:, t] = np.where(done, pad_id, nxt)
            done |= nxt == end_id
            if done[:n].all():
                break
        result[lo:lo + n] = gen[:n]
    return result


def trim(tokens, end_id: int, pad_id: int = 0) -> list[int]:
    """One decoded row's tokens before ``end_id`` (and without ``pad_id``)."""
    out = []
    for t in np.asarray(tokens).tolist():
        if t == end_id:
            break
        if t != pad_id:
            out.append(int(t))
    return out
