"""Streaming helpers for the CLI (``rnnedge run/bench --streaming``): thin calls into
:class:`rnnedge.runtime.streaming.StreamingSession`. No TensorFlow."""
from __future__ import annotations

import time

import numpy as np

__all__ = ["run_streaming", "bench_streaming"]


def run_streaming(path, inputs_array, **runtime_options) -> np.ndarray:
    """Feed ``inputs_array`` ((batch, T, F) / (T, F), or token ids (batch, T) / (T,)) one step at a
    time through the step model at ``path``, from a zero state; returns every step's output."""
    from rnnedge.runtime.streaming import StreamingSession

    with StreamingSession(path, **runtime_options) as s:
        return s.run(inputs_array)


def _step_input(layout: dict, rng) -> np.ndarray:
    batch = layout["fixed_batch"] or 1
    if layout["token"]:
        hi = max(int(layout.get("vocab_size") or 2), 2)
        return rng.integers(1, hi, size=(batch,)).astype(layout["input_dtype"])
    return rng.standard_normal((batch, int(layout["features"]))).astype(layout["input_dtype"])


def bench_streaming(path, steps: int = 100, warmup: int = 10, runs: int = 5, seed: int = 0,
                    **runtime_options) -> dict:
    """Per-step latency of the step model at ``path`` (batch 1 unless the model fixes another).

    ``runs`` sequences of ``steps`` steps each, from a zero state; ``warmup`` untimed steps first.
    Returns ``{p50_ms, p99_ms, mean_ms, min_ms, max_ms, steps, runs, n, runtime, ...}``.
    """
    from rnnedge.errors import UsageError
    from rnnedge.runtime.streaming import StreamingSession

    if steps < 1 or runs < 1 or warmup < 0:
        raise UsageError("bench: steps and runs must be >= 1, warmup >= 0")
    rng = np.random.default_rng(seed)
    with StreamingSession(path, **runtime_options) as s:
        xs = [_step_input(s.layout, rng) for _ in range(steps)]
        for i in range(warmup):
            s.step(xs[i % steps])
        times = []
        for _ in range(runs):
            s.reset()
            for x in xs:
                t0 = time.perf_counter()
                s.step(x)
                times.append(time.perf_counter() - t0)
        info = dict(s.runner.info)
    ms = np.asarray(times) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
        "steps": steps, "runs": runs, "warmup": warmup, "n": int(ms.size),
        "runtime": info.get("runtime"), "runtime_info": info,
    }
