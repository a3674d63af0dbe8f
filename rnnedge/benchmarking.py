"""Benchmark artifacts in their real runtimes: ``rnnedge.benchmarking.bench([...])`` / ``rnnedge bench``.

The same :class:`~rnnedge.runtime.Runner` objects ``run`` and ``validate`` use are timed on
generated inputs, for every artifact x provider x batch size x sequence length::

    result = bench(["out/model.onnx", "out/model.tflite", "out/reference.keras"],
                   batch_sizes=[1, 32], seq_lens=[100])

The result (``schema: "rnnedge.bench/1"``) holds ``machine``, ``versions``, ``cases`` (one
per measured combination) and ``ratios`` (speed-up of each artifact over the reference:
the ``.keras`` file when there is one, else the first artifact). Per case:

- ``session_create_ms``: loading the artifact (onnxruntime session, interpreter + allocate,
  Keras load_model; TF.js: the model load inside Node), once per artifact and provider (TF.js:
  per case); the library import is not included (``info.import_ms``).
- ``first_inference_ms``: the first run at this case's shapes in that session (includes a
  TFLite resize/re-allocation or a Keras retrace).
- ``latency_ms``: ``warmup`` untimed runs, then ``runs`` timed runs (``time.perf_counter``
  around ``Runner.run``: numpy in, numpy out); p50/p90/p99/mean/std/min/max.
  With ONNX ``io_binding`` the inputs are copied to the device once and only the run on
  device-resident data is timed (copies reported in ``info``). TF.js runs in a Node subprocess:
  its per-run times are taken inside Node (``process.hrtime`` around predict).
- ``throughput``: from the p50: ``batch_size / p50`` sequences/s, times ``seq_len`` timesteps/s.
- ``peak_rss_mb``: the process's resident-set high-water mark during the case; on Linux the
  kernel's ``VmHWM`` reset before each case through ``/proc/self/clear_refs`` (exact), else
  ``psutil`` RSS sampled every 2 ms by a thread. ``peak_rss_delta_mb`` is the rise over the RSS
  at the case's start (more telling: the process also holds whatever earlier cases loaded,
  e.g. TensorFlow). A Node subprocess (TF.js) is not counted.

Inputs come from each artifact's input metadata: integer inputs are token ids in
``[1, vocab)`` (vocab from ``manifest.json`` next to the artifact, the Keras model's
Embedding, else 10), float inputs are standard normal. Axis 0 is the batch; axis 1 is the
sequence for rank >= 3 inputs and for integer rank-2 inputs. A fixed axis is never resized:
a TFLite model exported with a fixed batch runs only its batch size (other sizes are listed
in ``skipped`` with the reason).

No TensorFlow is imported here; matplotlib only by :func:`plot`.
"""
from __future__ import annotations

import csv
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError

SCHEMA = "rnnedge.bench/1"
DEFAULT_SEQ_LEN = 100
DEFAULT_VOCAB = 10

CASE_KEYS = (
    "artifact", "format", "runtime", "provider", "batch_size", "seq_len", "session_create_ms",
    "first_inference_ms", "latency_ms", "throughput", "peak_rss_mb", "model_size_bytes", "info",
)
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max")


# ---------------------------------------------------------------------------- helpers
def artifact_format(path) -> str:
    p = Path(path)
    n = p.name.lower()
    for ext in ("onnx", "ort", "tflite", "keras", "h5"):
        if n.endswith("." + ext):
            return "keras" if ext == "h5" else ext
    return "tfjs"


def model_size(path) -> int:
    p = Path(path)
    if p.is_file():
        if p.name == "model.json":  # TF.js: the json and its weight shards
            p = p.parent
        else:
            return p.stat().st_size
    if p.is_dir():
        if not (p / "model.json").is_file() and (p / "tfjs" / "model.json").is_file():
            p = p / "tfjs"
        if (p / "model.json").is_file():  # TF.js: model.json and its weight shards
            return sum(f.stat().st_size for f in [p / "model.json", *p.glob("*.bin")])
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.name != "manifest.json")
    return 0


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def versions() -> dict:
    from rnnedge import __version__
    from rnnedge.manifest import package_versions

    v = {"rnnedge": __version__}
    v.update(package_versions("numpy", "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                              "ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "keras"))
    return v


def _manifest_for(path) -> tuple[dict, dict]:
    from rnnedge.manifest import load_manifest

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    man = load_manifest(folder) or {}
    if not man and p.is_dir() is False and p.name == "model.json":
        man = load_manifest(folder.parent) or {}
    arts = man.get("artifacts") or {}
    entry = arts.get(p.name) or arts.get(folder.name) or {}
    return man, entry


def _find_key(obj, key, depth=0):
    if depth > 6:
        return None
    if isinstance(obj, dict):
        if key in obj and isinstance(obj[key], int):
            return obj[key]
        for v in obj.values():
            r = _find_key(v, key, depth + 1)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = _find_key(v, key, depth + 1)
            if r is not None:
                return r
    return None


def vocab_sizes(path, runner) -> dict[str, int]:
    """Input name -> vocabulary size, from manifest.json (per input, then preprocessing/source),
    else the Keras model's Embedding; missing inputs get DEFAULT_VOCAB."""
    man, entry = _manifest_for(path)
    out: dict[str, int] = {}
    for e in entry.get("inputs") or []:
        if isinstance(e, dict) and isinstance(e.get("vocab_size"), int):
            out[e.get("name")] = e["vocab_size"]
    shared = None
    for where in (man.get("preprocessing"), man, man.get("source")):
        if where:
            shared = _find_key(where, "vocab_size")
            if shared:
                break
    if hasattr(runner, "vocab_sizes"):
        try:
            for k, v in runner.vocab_sizes().items():
                out.setdefault(k, v)
        except Exception:  # noqa: BLE001 - a hint only
            pass
    for i in runner.inputs:
        if i.name not in out and shared:
            out[i.name] = int(shared)
    return out


def is_int_dtype(dtype: str) -> bool:
    try:
        return np.issubdtype(np.dtype(dtype), np.integer)
    except TypeError:
        return False


def seq_axis(info) -> int | None:
    rank = len(info.shape)
    if rank >= 3 or (rank == 2 and is_int_dtype(info.dtype)):
        return 1
    return None


def plan_shapes(runner, batch_size: int, seq_len: int | None) -> tuple[dict[str, list[int]] | None, int | None, str | None]:
    """Concrete input shapes for a case and the seq len used, or (None, the seq len the case would
    have used, reason) to skip it (a skipped case is reported with its real length, never "None")."""
    shapes = {}
    used_seq = None
    why = None
    for info in runner.inputs:
        shp = list(info.shape)
        if not shp:
            shapes[info.name] = []
            continue
        b = shp[0]
        if isinstance(b, int) and b != batch_size:
            why = why or f"input {info.name!r} has a fixed batch size {b}"
        shp[0] = batch_size
        ax = seq_axis(info)
        if ax is not None:
            t = shp[ax]
            if isinstance(t, int):
                if seq_len is not None and t != seq_len:
                    why = why or f"input {info.name!r} has a fixed sequence length {t}"
                    t = seq_len
                used_seq = t
            else:
                shp[ax] = seq_len or DEFAULT_SEQ_LEN
                used_seq = shp[ax]
        shapes[info.name] = [d if isinstance(d, int) else 1 for d in shp]
    if why:
        return None, used_seq, why
    return shapes, used_seq, None


def make_inputs(runner, shapes: dict[str, list[int]], vocab: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in runner.inputs:
        shp = shapes[info.name]
        if is_int_dtype(info.dtype):
            hi = max(2, int(vocab.get(info.name) or DEFAULT_VOCAB))
            feeds[info.name] = rng.integers(1, hi, size=shp).astype(info.dtype)
        elif info.dtype == "bool":
            feeds[info.name] = np.ones(shp, dtype=bool)
        else:
            dt = info.dtype if info.dtype not in ("str", "", None) else "float32"
            feeds[info.name] = rng.standard_normal(shp).astype(dt)
    return feeds


class PeakRSS:
    """Peak resident set size during a block (MB), see the module docstring for the method."""

    def __init__(self):
        self.method = None
        self.start_mb = None
        self.peak_mb = None
        self._stop = None
        self._thread = None
        self._sampled = 0

    @staticmethod
    def _status_kb(field: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def __enter__(self):
        cur = self._status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            if cur is not None and self._status_kb("VmHWM") is not None:
                self.method = "VmHWM (/proc/self/status), reset per case via /proc/self/clear_refs"
                self.start_mb = cur / 1024
                return self
        except OSError:
            pass
        try:
            import psutil
        except ImportError:
            self.method = "unavailable (no /proc/self/clear_refs and no psutil)"
            return self
        proc = psutil.Process()
        self.method = "psutil RSS sampled every 2 ms"
        self.start_mb = self._sampled = proc.memory_info().rss / 2**20
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._sampled = max(self._sampled, proc.memory_info().rss / 2**20)
                self._stop.wait(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = self._sampled
        elif self.method and self.method.startswith("VmHWM"):
            hwm = self._status_kb("VmHWM")
            self.peak_mb = hwm / 1024 if hwm is not None else None


def latency_stats(ms: Sequence[float]) -> dict:
    a = np.asarray(ms, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "std": float(a.std()),
        "min": float(a.min()), "max": float(a.max()),
    }


def parse_providers(provider) -> list[str]:
    if provider is None:
        return ["cpu"]
    if isinstance(provider, str):
        provider = [provider]
    out = []
    for p in provider:
        out += [x.strip() for x in str(p).split(",") if x.strip()]
    return out or ["cpu"]


# ---------------------------------------------------------------------------- main API
def bench(
    artifacts: Iterable,
    *,
    provider: str | Sequence[str] | None = "cpu",
    batch_sizes: Sequence[int] = (1,),
    seq_lens: Sequence[int] | None = None,
    warmup: int = 5,
    runs: int = 50,
    threads: int | None = None,
    io_binding: bool = False,
    interpreter: str = "auto",
    placement: bool = True,
    seed: int = 0,
    progress: bool = False,
    on_case: Callable[[dict], None] | None = None,
) -> dict:
    """Time every artifact x provider x batch size x sequence length; see the module doc.

    ``provider`` (one or several, comma-separated allowed) applies to ONNX/ORT artifacts;
    an unavailable provider raises MissingDependencyError (never a silent CPU run).
    ``seq_lens=None`` uses each model's fixed length, else 100. ``progress`` shows a rich
    progress bar on stderr. Returns the result dict (schema ``rnnedge.bench/1``).
    """
    from rnnedge.runtime import open_runner, runner_kind

    artifacts = [str(a) for a in artifacts]
    if not artifacts:
        raise UsageError("bench needs at least one artifact")
    for a in artifacts:
        if not Path(a).exists():
            raise UsageError(f"{a}: no such artifact")
        runner_kind(a)  # raises UsageError for unknown kinds
    providers = parse_providers(provider)
    batch_sizes = [int(b) for b in batch_sizes] or [1]
    if any(b < 1 for b in batch_sizes):
        raise UsageError("batch sizes must be >= 1")
    seqs: list[int | None] = [int(t) for t in seq_lens] if seq_lens else [None]
    if warmup < 0 or runs < 1:
        raise UsageError("warmup must be >= 0 and runs >= 1")

    jobs = []
    for a in artifacts:
        fmt = artifact_format(a)
        for prov in (providers if fmt in ("onnx", "ort") else [None]):
            jobs.append((a, fmt, prov))
    if any(fmt in ("onnx", "ort") for _, fmt, _ in jobs):  # fail before timing anything
        from rnnedge.runtime.onnx import available_providers, missing_provider, resolve_provider

        have = available_providers()
        for p in providers:
            ep, short = resolve_provider(p)
            if ep not in have:
                raise missing_provider(ep, short, have)
    if all(fmt not in ("onnx", "ort") for _, fmt, _ in jobs) and providers != ["cpu"]:
        notes = [f"--provider {','.join(providers)} applies to ONNX/ORT artifacts only; none given"]
    else:
        notes = []

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": versions(),
        "settings": {"providers": providers, "batch_sizes": batch_sizes,
                     "seq_lens": [t for t in seqs if t is not None] or None, "warmup": warmup,
                     "runs": runs, "threads": threads, "io_binding": io_binding, "seed": seed,
                     "timer": "time.perf_counter around Runner.run (numpy in, numpy out)",
                     "throughput_from": "latency_ms.p50"},
        "memory_method": None,
        "load_average": {"start": _loadavg()},  # other jobs on the machine skew latencies
        "cases": [],
        "skipped": [],
        "notes": notes,
        "ratios": {},
    }
    total = len(jobs) * len(batch_sizes) * len(seqs)
    bar = _Progress(progress, total)
    try:
        for a, fmt, prov in jobs:
            opts: dict[str, Any] = {}
            if threads:
                opts["threads"] = threads
            if fmt in ("onnx", "ort"):
                opts["provider"] = prov
                if io_binding:
                    opts["io_binding"] = True
            elif fmt == "tflite":
                opts["interpreter"] = interpreter
            runner = open_runner(a, **opts)
            import_ms = _preimport(fmt, opts)  # so session_create_ms is not the library import
            first_case = True
            try:
                for b in batch_sizes:
                    for t in seqs:
                        bar.describe(f"{Path(a).name} {prov or ''} b={b} T={t or 'auto'}")
                        with PeakRSS() as mem:
                            runner.load()  # first case: session creation counted in its memory
                            shapes, used_seq, why = plan_shapes(runner, b, t)
                            if shapes is None:
                                result["skipped"].append({"artifact": a, "provider": prov, "batch_size": b,
                                                          "seq_len": used_seq, "reason": why})
                                bar.advance()
                                continue
                            feeds = make_inputs(runner, shapes, vocab_sizes(a, runner), seed)
                            try:
                                case = _time_case(runner, feeds, warmup, runs)
                            except (MissingDependencyError, UsageError):
                                raise
                            except RnnedgeError as e:  # this case cannot run: say why, go on
                                result["skipped"].append({"artifact": a, "provider": prov, "batch_size": b,
                                                          "seq_len": used_seq, "reason": f"failed: {e}"})
                                bar.advance()
                                continue
                        result["memory_method"] = mem.method
                        if first_case and placement and hasattr(runner, "node_placement"):
                            runner.node_placement(feeds)
                        first_case = False
                        info = {k: v for k, v in runner.info.items()}
                        info["import_ms"] = import_ms
                        info.pop("run_ms", None)  # TF.js per-run list: summarised in latency_ms
                        info.update(case.pop("info"))
                        entry = {
                            "artifact": a, "format": fmt,
                            "runtime": runner.info.get("runtime", runner.runtime),
                            "provider": runner.info.get("provider", prov or "cpu"),
                            "batch_size": b, "seq_len": used_seq,
                            "session_create_ms": (runner.load_seconds or 0.0) * 1e3
                            if info.get("node_model_load_ms") is None else float(info["node_model_load_ms"]),
                            **case,
                            "throughput": _throughput(b, used_seq, case["latency_ms"]["p50"]),
                            "peak_rss_mb": None if mem.peak_mb is None else round(mem.peak_mb, 1),
                            "peak_rss_delta_mb": None if mem.peak_mb is None or mem.start_mb is None
                            else round(mem.peak_mb - mem.start_mb, 1),
                            "model_size_bytes": model_size(a),
                            "input_shapes": shapes,
                            "info": info,
                        }
                        result["cases"].append(entry)
                        if on_case:
                            on_case(entry)
                        bar.advance()
            finally:
                runner.close()
    finally:
        bar.close()
    result["load_average"]["end"] = _loadavg()
    result["ratios"] = compute_ratios(result["cases"], artifacts)
    return result


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # Windows
        return None


def _preimport(fmt: str, opts: dict) -> float | None:
    t0 = time.perf_counter()
    try:
        if fmt in ("onnx", "ort"):
            import onnxruntime  # noqa: F401
        elif fmt == "tflite":
            from rnnedge.runtime.tflite import _import_interpreter

            _import_interpreter(opts.get("interpreter", "auto"))
        elif fmt == "keras":
            import keras  # noqa: F401
        else:
            return None
    except Exception:  # noqa: BLE001 - the runner's load() reports it properly
        return None
    return (time.perf_counter() - t0) * 1e3


def _time_in_subprocess(runner, feeds, warmup: int, runs: int) -> dict:
    """TF.js runs in a Node subprocess: timing each Python call would measure Node's start-up and
    model load. Run once with ``repeat = 1 + warmup + runs`` and use Node's own per-run timings
    (process.hrtime around model.predict, JSON I/O excluded)."""
    runner.options["repeat"] = 1 + warmup + runs
    t0 = time.perf_counter()
    runner.run(feeds)
    wall = (time.perf_counter() - t0) * 1e3
    times = [float(t) for t in runner.info.get("run_ms") or []]
    if len(times) != 1 + warmup + runs:
        from rnnedge.errors import RnnedgeError

        raise RnnedgeError(f"{runner.path}: the TF.js runner returned {len(times)} timings, "
                           f"expected {1 + warmup + runs}")
    return {"first_inference_ms": times[0], "latency_ms": latency_stats(times[1 + warmup:]),
            "info": {"timed_in": "node (process.hrtime per predict; JSON I/O and Node start excluded)",
                     "subprocess_wall_ms": wall, "node_model_load_ms": runner.info.get("load_ms")}}


def _time_case(runner, feeds, warmup: int, runs: int) -> dict:
    if getattr(runner, "runtime", "") == "tfjs":
        return _time_in_subprocess(runner, feeds, warmup, runs)
    info: dict[str, Any] = {}
    bound = bool(getattr(runner, "io_binding", False)) and hasattr(runner, "run_bound")
    t0 = time.perf_counter()
    runner.run(feeds)  # first inference at these shapes
    first = (time.perf_counter() - t0) * 1e3
    if bound:
        info["host_to_device_ms"] = runner.bind(feeds)
        step = runner.run_bound
        info["latency_excludes_host_copies"] = True
    else:
        def step():
            runner.run(feeds)
    for _ in range(max(0, warmup - 1)):
        step()
    ms = []
    pc = time.perf_counter
    for _ in range(runs):
        t = pc()
        step()
        ms.append((pc() - t) * 1e3)
    if bound:
        runner.fetch_bound()
        info["device_to_host_ms"] = runner.info.get("device_to_host_ms")
    return {"first_inference_ms": first, "latency_ms": latency_stats(ms), "info": info}


def _throughput(b: int, t: int | None, p50_ms: float) -> dict:
    sps = b / (p50_ms / 1e3) if p50_ms > 0 else float("inf")
    return {"sequences_per_s": sps, "timesteps_per_s": sps * t if t else None}


def compute_ratios(cases: list[dict], artifacts: list[str]) -> dict:
    """Speed-up of each artifact over the reference (the .keras artifact, else the first):
    ``reference p50 / artifact p50`` for the same batch size and sequence length (> 1: faster)."""
    if not cases:
        return {}
    keras = [a for a in artifacts if artifact_format(a) == "keras"]
    ref = keras[0] if keras else artifacts[0]
    ref_fmt = artifact_format(ref)
    ref_cases = {}
    for c in cases:
        if c["artifact"] == ref:
            ref_cases.setdefault((c["batch_size"], c["seq_len"]), c)
    out = []
    for c in cases:
        if c["artifact"] == ref:
            continue
        r = ref_cases.get((c["batch_size"], c["seq_len"]))
        if r is None:
            continue
        out.append({
            "label": f"{ref_fmt}/{c['format']}",
            "artifact": c["artifact"], "provider": c["provider"],
            "batch_size": c["batch_size"], "seq_len": c["seq_len"],
            "speedup": r["latency_ms"]["p50"] / c["latency_ms"]["p50"],
        })
    return {
        "reference": ref,
        "metric": "latency_ms.p50",
        "meaning": "reference p50 / artifact p50 at the same batch size and sequence length (>1: the artifact is faster)",
        "cases": out,
    }


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(TextColumn("[bold]bench[/] {task.description}"), BarColumn(),
                              MofNCompleteColumn(), TimeElapsedColumn(),
                              console=Console(stderr=True), transient=True)
            self.p.start()
            self.task = self.p.add_task("", total=total)

    def describe(self, text: str):
        if self.p:
            self.p.update(self.task, description=text)

    def advance(self):
        if self.p:
            self.p.advance(self.task)

    def close(self):
        if self.p:
            self.p.stop()


# ---------------------------------------------------------------------------- reports
CSV_FIELDS = [
    "artifact", "format", "runtime", "provider", "batch_size", "seq_len", "session_create_ms",
    "first_inference_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms",
    "sequences_per_s", "timesteps_per_s", "peak_rss_mb", "peak_rss_delta_mb", "model_size_bytes",
    "speedup_vs_reference",
]


def _speedups(result) -> dict:
    return {(r["artifact"], r["provider"], r["batch_size"], r["seq_len"]): r["speedup"]
            for r in (result.get("ratios") or {}).get("cases", [])}


def csv_rows(result: dict) -> list[dict]:
    sp = _speedups(result)
    ref = (result.get("ratios") or {}).get("reference")
    rows = []
    for c in result["cases"]:
        lat = c["latency_ms"]
        rows.append({
            "artifact": c["artifact"], "format": c["format"], "runtime": c["runtime"],
            "provider": c["provider"], "batch_size": c["batch_size"], "seq_len": c["seq_len"],
            "session_create_ms": round(c["session_create_ms"], 3),
            "first_inference_ms": round(c["first_inference_ms"], 3),
            **{f"{k}_ms": round(lat[k], 4) for k in LATENCY_KEYS},
            "sequences_per_s": round(c["throughput"]["sequences_per_s"], 2),
            "timesteps_per_s": None if c["throughput"]["timesteps_per_s"] is None
            else round(c["throughput"]["timesteps_per_s"], 1),
            "peak_rss_mb": c["peak_rss_mb"], "peak_rss_delta_mb": c.get("peak_rss_delta_mb"),
            "model_size_bytes": c["model_size_bytes"],
            "speedup_vs_reference": 1.0 if c["artifact"] == ref else
            (None if (k := (c["artifact"], c["provider"], c["batch_size"], c["seq_len"])) not in sp
             else round(sp[k], 3)),
        })
    return rows


def write_csv(result: dict, path) -> Path:
    from rnnedge.manifest import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            for row in csv_rows(result):
                w.writerow(row)
    return Path(path)


def write_json(result: dict, path) -> Path:
    from rnnedge.manifest import write_json_atomic

    return write_json_atomic(path, result)


def plot(result: dict, path) -> Path:
    """PNG: p50 latency (log scale) against batch size, one line per artifact/provider,
    one panel per sequence length."""
    try:
        import matplotlib
    except ImportError:
        from rnnedge.errors import MissingDependencyError, install_command

        raise MissingDependencyError("matplotlib (for --plot)", install_command("matplotlib")) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from rnnedge.manifest import atomic_path

    cases = result["cases"]
    seqs = sorted({c["seq_len"] for c in cases}, key=lambda t: (t is None, t or 0)) or [None]
    fig, axes = plt.subplots(1, len(seqs), figsize=(5.5 * len(seqs), 4.2), squeeze=False)
    for ax, t in zip(axes[0], seqs):
        series: dict[str, list] = {}
        for c in cases:
            if c["seq_len"] != t:
                continue
            label = f"{Path(c['artifact']).name} ({c['runtime']}/{c['provider']})"
            series.setdefault(label, []).append((c["batch_size"], c["latency_ms"]["p50"]))
        for label, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        bs = sorted({c["batch_size"] for c in cases if c["seq_len"] == t})
        ax.set_xticks(bs, [str(b) for b in bs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("batch size")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title(f"seq len {t}" if t else "latency p50")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"rnnedge bench - {result['machine'].get('cpu', '')}"[:100], fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


#: The columns of :func:`table`: (header, right-justified, drop rank: when a console is too narrow
#: the CLI leaves out the highest rank first; None: always shown).
TABLE_COLUMNS = (("artifact", False, None), ("runtime / provider", False, None), ("batch", True, None),
                 ("T", True, None), ("p50 ms", True, None), ("p90 ms", True, 6), ("p99 ms", True, 5),
                 ("seq/s", True, 4), ("create ms", True, 8), ("1st ms", True, 7), ("peak MB (+)", True, 9),
                 ("size KB", True, 10), ("speed-up", True, None))


def table_rows(result: dict) -> tuple[str, list[list[str]]]:
    """The title and the rows (cells as text, :data:`TABLE_COLUMNS` order) of a bench result."""
    sp = _speedups(result)
    ref = (result.get("ratios") or {}).get("reference")
    rows = []
    for c in result["cases"]:
        lat = c["latency_ms"]
        k = (c["artifact"], c["provider"], c["batch_size"], c["seq_len"])
        s = "ref" if c["artifact"] == ref else (f"{sp[k]:.3g}x" if k in sp else "-")
        peak = "-" if c["peak_rss_mb"] is None else f"{c['peak_rss_mb']:.0f} (+{c.get('peak_rss_delta_mb') or 0:.0f})"
        rows.append([Path(c["artifact"]).name, f"{c['runtime']} / {c['provider']}", str(c["batch_size"]),
                     str(c["seq_len"]), f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}",
                     f"{c['throughput']['sequences_per_s']:.0f}", f"{c['session_create_ms']:.1f}",
                     f"{c['first_inference_ms']:.2f}", peak, f"{c['model_size_bytes'] / 1024:.1f}", s])
    return f"rnnedge bench ({result['machine'].get('cpu', '?')}, {result['machine'].get('cores')} cores)", rows


def table(result: dict):
    """A rich Table of the cases, every column (the CLI prints :func:`table_rows` fitted to the
    console's width)."""
    from rich.table import Table

    title, rows = table_rows(result)
    t = Table(title=title)
    for name, right, _ in TABLE_COLUMNS:
        t.add_column(name, justify="right" if right else "left")
    for r in rows:
        t.add_row(*r)
    return t


def validate_result(result: dict) -> list[str]:
    """Check a result against the schema; returns the problems (empty list: valid)."""
    problems = []
    if result.get("schema") != SCHEMA:
        problems.append(f"schema is {result.get('schema')!r}, expected {SCHEMA!r}")
    for k in ("machine", "versions", "cases", "ratios"):
        if k not in result:
            problems.append(f"missing {k!r}")
    for k in ("cpu", "cores", "python", "platform"):
        if k not in result.get("machine", {}):
            problems.append(f"machine.{k} missing")
    for i, c in enumerate(result.get("cases", [])):
        for k in CASE_KEYS:
            if k not in c:
                problems.append(f"cases[{i}].{k} missing")
        for k in LATENCY_KEYS:
            v = (c.get("latency_ms") or {}).get(k)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                problems.append(f"cases[{i}].latency_ms.{k} = {v!r}")
        lat = c.get("latency_ms") or {}
        if lat and not (lat.get("min", 0) <= lat.get("p50", 0) <= lat.get("p90", 0) <= lat.get("p99", 0) <= lat.get("max", 0)):
            problems.append(f"cases[{i}].latency_ms not ordered: {lat}")
        for k in ("sequences_per_s", "timesteps_per_s"):
            if k not in (c.get("throughput") or {}):
                problems.append(f"cases[{i}].throughput.{k} missing")
    return problems


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `rnnedge bench` or rnnedge.benchmarking.bench()")
