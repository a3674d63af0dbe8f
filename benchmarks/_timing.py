"""Interleaved timing for the benchmark scripts (not part of the library).

On a shared machine the load changes while a benchmark runs; timing the variants one after the
other would charge each one a different load. :func:`interleaved` runs every variant in short
chunks, round after round (the order rotating each round), and reports medians over all calls
plus how much the per-round medians moved (``noise``: (p90 - p10) / p50 of the round medians),
so a figure taken on a busy machine says so.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 9, chunk_s: float = 0.04,
                warmup: int = 3, max_reps: int = 200, gap_s: float = 0.05) -> dict[str, dict]:
    """Time every callable in ``fns``; returns ``{name: {p50_ms, p10_ms, p90_ms, n, noise, rounds}}``.

    Each round runs each callable ``reps`` times back to back (``reps`` chosen so a chunk lasts
    about ``chunk_s`` seconds, at least 1); the order of the callables rotates every round.

    ``gap_s``: an idle pause before each chunk. Runtimes keep their worker threads spinning for a
    while after a run (onnxruntime's ``session.intra_op.allow_spinning`` is on by default; TF's and
    XNNPACK's pools too), so without it a chunk pays for the previous variant's spinning threads:
    measured on this 2-core machine (LSTM(256)x2, batch 32, three onnxruntime sessions and Keras in
    one process), the same LSTM graph took 57.5 ms right after another onnxruntime session and
    31.7 ms right after Keras; with a 50 ms gap all three sessions took 24-30 ms, as each does alone.
    """
    names = list(fns)
    reps = {}
    for k in names:
        for _ in range(warmup):
            fns[k]()
        t0 = time.perf_counter()
        fns[k]()
        dt = time.perf_counter() - t0
        reps[k] = max(1, min(max_reps, int(chunk_s / max(dt, 1e-6))))
    calls = {k: [] for k in names}
    round_medians = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            if gap_s:
                time.sleep(gap_s)
            fn, ts = fns[k], []
            for _ in range(reps[k]):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            calls[k] += ts
            round_medians[k].append(statistics.median(ts))
    out = {}
    for k in names:
        v = sorted(calls[k])
        rm = sorted(round_medians[k])
        p50 = statistics.median(v)
        out[k] = {"p50_ms": p50, "p10_ms": _pct(v, 0.1), "p90_ms": _pct(v, 0.9), "n": len(v),
                  "rounds": rounds, "noise": (_pct(rm, 0.9) - _pct(rm, 0.1)) / p50 if p50 else float("nan")}
    return out


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return None
