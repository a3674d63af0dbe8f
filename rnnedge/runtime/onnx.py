"""onnxruntime runner for ``.onnx`` and ``.ort`` files (edge path: numpy + onnxruntime only).

Options (``OnnxRunner(path, options={...})`` or ``open_runner(path, provider=..., ...)``):

``provider``
    ``cpu`` (default), ``cuda``, ``tensorrt``, ``openvino``, ``xnnpack``, ``nnapi``,
    ``coreml``, ``dml`` or a full execution-provider name (``CUDAExecutionProvider``).
    The CPU EP is always appended as the fall-back *for nodes* the chosen EP does not
    take (that is how onnxruntime works); but if the chosen EP itself is not in the
    session after creation we raise: onnxruntime only warns and silently runs on CPU.
``threads``
    intra-op threads (``SessionOptions.intra_op_num_threads``); inter-op is 1.
``allow_spinning``
    False stops idle worker threads from spin-waiting (helps on an oversubscribed machine).
``io_binding``
    bind inputs/outputs with an :class:`onnxruntime.IOBinding` on the EP's device
    (``cuda`` for CUDA/TensorRT, ``cpu`` otherwise). :meth:`OnnxRunner.bind` copies the
    feeds to the device once, :meth:`run_bound` runs on device-resident data only and
    :meth:`fetch_bound` copies the outputs back, so ``bench`` can time the compute apart
    from the host copies.

:meth:`OnnxRunner.node_placement` runs the model once in a *profiling* session and
counts which EP ran which node (``"provider"`` in the profile's node events): the
CUDA EP silently leaves some recurrent nodes on the CPU (see RUNTIME_FACTS.md).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import numpy as np

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError, install_command
from rnnedge.runtime.base import Runner, TensorInfo, embedding_vocab

# short name -> (EP name, the pip package that has it or None, a note: what else it needs);
# "onnxruntime" is rnnedge's own extra (installed as :func:`install_command` says)
PROVIDERS: dict[str, tuple[str, str | None, str | None]] = {
    "cpu": ("CPUExecutionProvider", "onnxruntime", None),
    "cuda": ("CUDAExecutionProvider", "onnxruntime-gpu", "and a CUDA 12/13 + cuDNN 9 runtime"),
    "tensorrt": ("TensorrtExecutionProvider", "onnxruntime-gpu", "and the TensorRT libraries"),
    "openvino": ("OpenVINOExecutionProvider", "onnxruntime-openvino", None),
    "dml": ("DmlExecutionProvider", "onnxruntime-directml", "on Windows"),
    "coreml": ("CoreMLExecutionProvider", "onnxruntime", "on macOS: the macOS wheel has CoreML"),
    "nnapi": ("NnapiExecutionProvider", None,
              "it takes an Android build of onnxruntime (the onnxruntime-android AAR, or a --use_nnapi build)"),
    "xnnpack": ("XnnpackExecutionProvider", None,
                "it takes a build of onnxruntime with XNNPACK (--use_xnnpack; the Android/iOS packages have it)"),
}
_EP_TO_SHORT = {ep: short for short, (ep, _, _) in PROVIDERS.items()}

# op types that carry a recurrence (their placement is reported apart)
RECURRENT_OPS = {"LSTM", "GRU", "RNN", "Loop", "Scan", "DynamicQuantizeLSTM", "AttnLSTM"}

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def resolve_provider(provider: str | None) -> tuple[str, str]:
    """``"cuda"`` -> (``"CUDAExecutionProvider"``, ``"cuda"``). Unknown names -> UsageError."""
    p = (provider or "cpu").strip()
    if p.lower() in PROVIDERS:
        return PROVIDERS[p.lower()][0], p.lower()
    if p in _EP_TO_SHORT:
        return p, _EP_TO_SHORT[p]
    if p.endswith("ExecutionProvider"):
        return p, p
    raise UsageError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")


def missing_provider(ep: str, short: str, available: list[str], why: str | None = None) -> MissingDependencyError:
    """The error (exit 3) for an execution provider this onnxruntime lacks, or (``why`` given) one
    that is listed but the session fell back from: the command that installs it in backticks,
    what else it needs after it."""
    package, note = PROVIDERS.get(short, (ep, None, f"it takes a build of onnxruntime with {ep}"))[1:]
    install = None if package is None else (install_command(package) if package == "onnxruntime"
                                            else f"pip install {package}")
    if why is None:
        have = f"this onnxruntime {_import_ort().__version__} has {', '.join(available)}"
    else:
        have = f"it is listed as available but the session fell back to {', '.join(available)}" + \
            (f": {why}" if why else "")
    what = f"onnxruntime execution provider {ep} (--provider {short}; {have})"
    if install is None:
        return MissingDependencyError(what, "", message=f"{what} is not available: {note}")
    return MissingDependencyError(what, install, message=f"{what} is not available: install it with "
                                  f"`{install}`" + (f" ({note})" if note else ""))


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - depends on the install
        raise MissingDependencyError("onnxruntime", install_command("onnxruntime")) from None
    return ort


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


def available_providers() -> list[str]:
    return list(_import_ort().get_available_providers())


class OnnxRunner(Runner):
    def __init__(self, path: str, options: dict | None = None, **kw):
        super().__init__(path=str(path), runtime="onnxruntime", options=dict(options or {}, **kw))

    # -- session ---------------------------------------------------------
    def _session_options(self, ort, *, profile_dir: str | None = None):
        so = ort.SessionOptions()
        threads = self.options.get("threads")
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        # 4 (fatal only): a failed run is raised as an error with onnxruntime's message; its
        # logger would also print it (an "[E:onnxruntime:...]" line) straight to the terminal
        so.log_severity_level = int(self.options.get("log_severity_level", 4))
        if self.options.get("allow_spinning") is not None:  # spinning workers hurt on busy machines
            so.add_session_config_entry("session.intra_op.allow_spinning",
                                        "1" if self.options["allow_spinning"] else "0")
        if profile_dir:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(profile_dir, "ort_profile")
        return so

    def _providers_arg(self, ep: str) -> list:
        threads = self.options.get("threads")
        provider_options: dict[str, Any] = dict(self.options.get("provider_options") or {})
        if ep == "XnnpackExecutionProvider" and threads:
            provider_options.setdefault("intra_op_num_threads", str(int(threads)))
        first = (ep, provider_options) if provider_options else ep
        return [first] if ep == "CPUExecutionProvider" else [first, "CPUExecutionProvider"]

    def _make_session(self, ort, *, profile_dir: str | None = None):
        ep, short = resolve_provider(self.options.get("provider"))
        available = list(ort.get_available_providers())
        if ep not in available:
            raise missing_provider(ep, short, available)
        if ep in ("CUDAExecutionProvider", "TensorrtExecutionProvider") and hasattr(ort, "preload_dlls"):
            try:  # onnxruntime-gpu >= 1.21 can load the CUDA/cuDNN libraries shipped in pip wheels
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - best effort; the get_providers() check below decides
                pass
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                sess = ort.InferenceSession(
                    self.path, sess_options=self._session_options(ort, profile_dir=profile_dir),
                    providers=self._providers_arg(ep),
                )
            except Exception as e:  # noqa: BLE001
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if "IR version" in msg or "opset" in msg.lower():
                    raise RnnedgeError(
                        f"{self.path}: onnxruntime {ort.__version__} cannot load this model: {msg}"
                    ) from None
                raise RnnedgeError(f"{self.path}: onnxruntime could not create a session: {msg}") from None
        got = sess.get_providers()
        if ep not in got:  # onnxruntime fell back silently (only a UserWarning): refuse
            raise missing_provider(ep, short, got, why="; ".join(str(w.message) for w in caught)[:300])
        return sess, ep

    def _graph_vocab(self) -> dict[str, int]:
        """Token-id inputs' vocabularies from the graph (a Gather of a 2-D initializer;
        :func:`rnnedge.runtime.base.embedding_vocab`). Needs the ``onnx`` package (a development
        machine); {} without it and for .ort files (the manifest's ``vocab_sizes`` then decide)."""
        if not self.path.lower().endswith(".onnx"):
            return {}
        try:
            import onnx
        except ImportError:
            return {}
        g = onnx.load(self.path, load_external_data=False).graph
        rows = {t.name: int(t.dims[0]) for t in g.initializer if len(t.dims) == 2}
        for n in g.node:  # Constant nodes hold tables too
            t = n.attribute[0].t if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t") else None
            if t is not None and len(t.dims) == 2:
                rows[n.output[0]] = int(t.dims[0])
        names = {i.name for i in self.inputs}
        axis = lambda n: next((a.i for a in n.attribute if a.name == "axis"), 0)  # noqa: E731 - rows: axis 0
        return embedding_vocab([(n.op_type if axis(n) == 0 else "", list(n.input), list(n.output)) for n in g.node],
                               {i.name: i.name for i in g.input if i.name in names}, rows)

    def _load(self) -> None:
        ort = _import_ort()
        self._ort = ort
        self.session, self._ep = self._make_session(ort)
        self.inputs = [
            TensorInfo(i.name, [d if isinstance(d, int) else (d or None) for d in i.shape],
                       _ORT_TYPES.get(i.type, i.type))
            for i in self.session.get_inputs()
        ]
        self.outputs = [
            TensorInfo(o.name, [d if isinstance(d, int) else (d or None) for d in o.shape],
                       _ORT_TYPES.get(o.type, o.type))
            for o in self.session.get_outputs()
        ]
        self._out_names = [o.name for o in self.outputs]
        self.io_binding = bool(self.options.get("io_binding"))
        self.device = "cuda" if self._ep in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        self._binding = None
        self.info.update({
            "runtime": "onnxruntime",
            "onnxruntime_version": ort.__version__,
            "provider": self._ep,
            "session_providers": self.session.get_providers(),
            "threads": self.options.get("threads"),
            "allow_spinning": self.options.get("allow_spinning"),
            "io_binding": self.io_binding,
            "device": self.device,
        })

    def close(self) -> None:
        self.session = None
        self._binding = None
        super().close()

    # -- inference -------------------------------------------------------
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {n: self._cast(n, v) for n, v in feeds.items()}
        if self.io_binding:
            self.bind(feeds)
            self.run_bound()
            return self.fetch_bound()
        try:
            outs = self.session.run(self._out_names, feeds)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise RnnedgeError(f"{self.path}: onnxruntime failed to run: {_first_line(e)}") from None
        return dict(zip(self._out_names, outs))

    def _cast(self, name: str, value: np.ndarray) -> np.ndarray:
        want = next((i.dtype for i in self.inputs if i.name == name), None)
        if want and want != "str" and value.dtype != np.dtype(want):
            if np.issubdtype(np.dtype(want), np.integer) and not np.issubdtype(value.dtype, np.integer):
                raise UsageError(f"input {name!r} takes {want} (token ids), got {value.dtype}")
            value = value.astype(want)
        return np.ascontiguousarray(value)

    # -- I/O binding (device-resident inputs; compute timed apart from copies) --
    def bind(self, feeds: dict[str, np.ndarray]) -> float:
        """Copy ``feeds`` to the EP's device and bind them; returns the host->device copy ms."""
        self.load()
        ort = self._ort
        names = [i.name for i in self.inputs]
        missing = [n for n in names if n not in feeds]
        if missing:
            raise UsageError(f"{self.path}: missing input(s) {missing}; the model takes {names}")
        binding = self.session.io_binding()
        t0 = time.perf_counter()
        self._bound_inputs = []  # keep the OrtValues alive as long as the binding
        for n in names:
            v = ort.OrtValue.ortvalue_from_numpy(self._cast(n, np.asarray(feeds[n])), self.device, 0)
            self._bound_inputs.append(v)
            binding.bind_ortvalue_input(n, v)
        binding.synchronize_inputs()
        h2d = (time.perf_counter() - t0) * 1e3
        for n in self._out_names:  # outputs stay on the device until fetch_bound()
            binding.bind_output(n, self.device, 0)
        self._binding = binding
        self.info["host_to_device_ms"] = h2d
        return h2d

    def run_bound(self) -> None:
        """Run on the bound (device-resident) inputs; outputs stay on the device."""
        if self._binding is None:
            raise UsageError("run_bound() needs bind(feeds) first")
        self.session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()

    def fetch_bound(self) -> dict[str, np.ndarray]:
        """Copy the bound outputs to host numpy arrays (records ``device_to_host_ms``)."""
        t0 = time.perf_counter()
        outs = self._binding.copy_outputs_to_cpu()
        self.info["device_to_host_ms"] = (time.perf_counter() - t0) * 1e3
        return dict(zip(self._out_names, outs))

    # -- repeated runs on preallocated buffers (streaming) -------------------
    def feedback_loop(self, batch: int, feedback: dict[str, str]) -> "FeedbackLoop":
        """A :class:`FeedbackLoop` over this session at ``batch`` rows; ``feedback`` maps each
        output that feeds an input on the next run (a recurrent state) to that input's name.
        Raises UsageError when a buffer cannot be preallocated (a free axis other than the
        batch, or a non-CPU device)."""
        self.load()
        return FeedbackLoop(self, batch, feedback)

    # -- node placement ----------------------------------------------------
    def node_placement(self, feeds: dict[str, np.ndarray]) -> dict:
        """Run once in a profiling session; count the nodes each EP ran.

        Returns ``{"node_placement": {EP: n_nodes}, "recurrent_placement": {node: {op, provider}},
        "method": ...}`` and stores it in ``self.info``. Counts are over the nodes of the
        *optimised* graph that ran (onnxruntime fuses/inserts nodes, e.g. MemcpyToHost).
        """
        self.load()
        ort = self._ort
        with tempfile.TemporaryDirectory(prefix="rnnedge-prof-") as d:
            sess, _ = self._make_session(ort, profile_dir=d)
            sess.run(self._out_names, {n: self._cast(n, np.asarray(feeds[n])) for n in feeds})
            prof = sess.end_profiling()
            with open(prof) as f:
                events = json.load(f)
        placement: dict[str, int] = {}
        recurrent: dict[str, dict] = {}
        seen: set[str] = set()
        for ev in events:
            if ev.get("cat") != "Node":
                continue
            args = ev.get("args") or {}
            prov = args.get("provider")
            name = ev.get("name", "")
            if not prov or not name.endswith("_kernel_time"):
                continue
            node = name[: -len("_kernel_time")]
            if node in seen:
                continue
            seen.add(node)
            placement[prov] = placement.get(prov, 0) + 1
            op = args.get("op_name", "")
            if op in RECURRENT_OPS:
                recurrent[node] = {"op": op, "provider": prov}
        result = {
            "node_placement": placement,
            "recurrent_placement": recurrent,
            "placement_method": "onnxruntime profiling: 'provider' of each node's kernel_time event",
        }
        off = sorted(n for n, r in recurrent.items() if r["provider"] != self._ep)
        if off and self._ep != "CPUExecutionProvider":
            result["placement_warning"] = (
                f"{len(off)} recurrent node(s) did not run on {self._ep}: {', '.join(off[:5])}"
            )
        self.info.update(result)
        return result


class FeedbackLoop:
    """Run an onnxruntime session again and again on preallocated, bound numpy buffers.

    Every input and output is a numpy array allocated once and bound with an
    :class:`onnxruntime.IOBinding` (``OrtValue.ortvalue_from_numpy`` shares the array's
    memory on the CPU), so a run copies nothing in or out and allocates no result arrays.
    Outputs that feed inputs back (``feedback``: output name -> input name, e.g. a step
    model's ``lstm__h_out`` -> ``lstm__h``) ping-pong between two buffer sets, with one
    prebuilt binding per direction: the run reads :attr:`state` and writes the next state
    into the other set, and :attr:`state` points at it afterwards.

    Write the other inputs into :attr:`inputs` (``np.copyto``), call :meth:`run`, read
    :attr:`outputs`. Arrays are reused by the next run: copy what you keep.
    Shapes: the runner's input/output shapes with axis 0 set to ``batch``.
    """

    def __init__(self, runner: OnnxRunner, batch: int, feedback: dict[str, str]):
        ort, sess = runner._ort, runner.session
        if runner.device != "cpu":
            raise UsageError(f"FeedbackLoop binds host memory; this session runs on {runner.device}")
        infos = {t.name: t for t in runner.inputs + runner.outputs}
        missing = [n for n in list(feedback) + list(feedback.values()) if n not in infos]
        if missing:
            raise UsageError(f"{runner.path}: no tensor(s) {missing}")

        def alloc(name: str) -> np.ndarray:
            t = infos[name]
            dims = [int(batch)] + list(t.shape[1:])
            if any(not isinstance(d, int) or d < 0 for d in dims):
                raise UsageError(f"{runner.path}: {name} has a free axis other than the batch {t.shape}")
            return np.zeros(dims, dtype=np.dtype(t.dtype))

        fed = set(feedback.values())
        self.batch = int(batch)
        self.inputs = {t.name: alloc(t.name) for t in runner.inputs if t.name not in fed}
        self.outputs = {t.name: alloc(t.name) for t in runner.outputs if t.name not in feedback}
        self._sets = [{n: alloc(n) for n in fed}, {n: alloc(n) for n in fed}]
        self._values = []  # the OrtValues must live as long as the bindings
        self._bindings = []
        for k in (0, 1):
            b = sess.io_binding()
            for n, a in list(self.inputs.items()) + list(self._sets[k].items()):
                b.bind_ortvalue_input(n, self._value(ort, a))
            for n, a in self.outputs.items():
                b.bind_ortvalue_output(n, self._value(ort, a))
            for out, inp in feedback.items():
                b.bind_ortvalue_output(out, self._value(ort, self._sets[1 - k][inp]))
            self._bindings.append(b)
        self._k = 0
        self._run = sess.run_with_iobinding
        self.path = runner.path

    def _value(self, ort, a: np.ndarray):
        v = ort.OrtValue.ortvalue_from_numpy(a)
        self._values.append(v)
        return v

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The fed-back inputs of the next run (input name -> its bound array)."""
        return self._sets[self._k]

    def run(self) -> None:
        """One run: reads :attr:`inputs` and :attr:`state`, writes :attr:`outputs` and the next state."""
        try:
            self._run(self._bindings[self._k])
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise RnnedgeError(f"{self.path}: onnxruntime failed to run: {_first_line(e)}") from None
        self._k ^= 1
