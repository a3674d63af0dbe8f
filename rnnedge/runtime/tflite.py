"""TFLite runner: LiteRT (``ai-edge-litert``), else ``tflite-runtime``, else ``tf.lite``.

Options: ``interpreter`` = ``auto`` (default) | ``litert`` | ``tflite_runtime`` | ``tf``;
``threads`` (``num_threads``); ``xnnpack`` (default True: the interpreter applies its
default XNNPACK delegate; False uses ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``);
``reset_variables``: None (default: only when the file keeps state across ``invoke()``, i.e.
has variable tensors no op writes, see :func:`rnnedge.tflite_compat.persistent_variables`;
rnnedge's own exports never do), True (``reset_all_variables()`` before every run, for such a
file from elsewhere), False (never). The reset comes before the inputs are set, so an initial
state fed as an input is kept. ``info["persistent_state"]`` names the tensors found.

TensorFlow is imported only when asked for (``interpreter="tf"``) or when neither
LiteRT nor tflite-runtime is installed.

Input names: the interpreter's tensors are called like ``serving_default_tokens:0``;
the runner exposes the Keras names. It uses, in order: the model's SignatureDef (its
input names are the Keras names), a ``manifest.json`` next to the file (its
``inputs`` list for this artifact), then the tensor names with the
``serving_default_`` prefix and ``:0`` suffix stripped.

Feeds whose shape differs from the tensor's current shape are resized
(``resize_tensor_input`` + ``allocate_tensors``) when the differing axes are free
(``-1`` in ``shape_signature``); a fixed axis gives a :class:`UsageError` naming the
axis and its fix (:func:`rnnedge.runtime.base.check_feeds`; a fixed-batch LSTM/GRU graph cannot be
resized safely).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError, install_command
from rnnedge.runtime.base import Runner, TensorInfo, embedding_vocab

INTERPRETERS = ("auto", "litert", "tflite_runtime", "tf")


def _import_interpreter(choice: str):
    """Return (module providing Interpreter/OpResolverType, runtime name)."""
    choice = (choice or "auto").lower().replace("-", "_")
    if choice not in INTERPRETERS:
        raise UsageError(f"unknown TFLite interpreter {choice!r}; choose one of: {', '.join(INTERPRETERS)}")
    if choice in ("auto", "litert"):
        try:
            from ai_edge_litert import interpreter as mod

            return mod, "litert"
        except ImportError:
            if choice == "litert":
                raise MissingDependencyError("LiteRT (ai_edge_litert)", install_command("ai_edge_litert")) from None
    if choice in ("auto", "tflite_runtime"):
        try:
            from tflite_runtime import interpreter as mod

            return mod, "tflite_runtime"
        except ImportError:
            if choice == "tflite_runtime":
                raise MissingDependencyError(
                    "tflite-runtime (Python <= 3.11; prefer ai-edge-litert)", install_command("tflite_runtime")
                ) from None
    try:
        import tensorflow as tf  # only when neither edge interpreter exists (or asked for)

        return tf.lite, "tf.lite"
    except ImportError:
        if choice == "tf":  # asked for by name: that one, and how to install it
            raise MissingDependencyError("TensorFlow (--interpreter tf: tf.lite.Interpreter)",
                                         install_command("tensorflow")) from None
        raise MissingDependencyError("a TFLite interpreter (LiteRT, tflite-runtime or TensorFlow)",
                                     install_command("ai_edge_litert")) from None


def _strip(name: str) -> str:
    name = re.sub(r":\d+$", "", name)
    for prefix in ("serving_default_", "StatefulPartitionedCall_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def manifest_entry(path) -> dict:
    """This artifact's entry in a ``manifest.json`` next to it ({} when there is none)."""
    p = Path(path)
    mf = p.parent / "manifest.json"
    if not mf.is_file():
        return {}
    try:
        man = json.loads(mf.read_text())
    except (OSError, ValueError):
        return {}
    arts = man.get("artifacts") or {}
    return arts.get(p.name) or {}


class TFLiteRunner(Runner):
    def __init__(self, path: str, options: dict | None = None, **kw):
        super().__init__(path=str(path), runtime="tflite", options=dict(options or {}, **kw))

    def _load(self) -> None:
        mod, rt_name = _import_interpreter(self.options.get("interpreter", "auto"))
        self.runtime = rt_name
        kwargs = {}
        threads = self.options.get("threads")
        if threads:
            kwargs["num_threads"] = int(threads)
        xnnpack = self.options.get("xnnpack", True)
        if not xnnpack:
            ort_type = getattr(mod, "OpResolverType", None) or getattr(
                getattr(mod, "experimental", None), "OpResolverType", None)
            if ort_type is None:
                raise UsageError(f"{rt_name} cannot turn the default XNNPACK delegate off (no OpResolverType)")
            kwargs["experimental_op_resolver_type"] = ort_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if not Path(self.path).is_file():
            raise UsageError(f"{self.path}: no such file")
        try:
            it = mod.Interpreter(model_path=self.path, **kwargs)
            it.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = " (the model needs Select TF ops / Flex: run it with tf.lite or re-export without allow_flex)" \
                if "Flex" in str(e) or "Select TensorFlow" in str(e) else ""
            raise RnnedgeError(f"{self.path}: {rt_name} could not load the model: {msg}{hint}") from None
        self.interpreter = it
        self._map_tensors()
        reset = self.options.get("reset_variables")
        persistent = []
        if reset is None:  # auto: only for a file that keeps state across invoke() (not rnnedge's)
            from rnnedge.tflite_compat import persistent_variables

            persistent = persistent_variables(self.path)
            reset = bool(persistent)
        self._reset = bool(reset)
        self.info.update({
            "reset_variables": self._reset,
            "persistent_state": persistent,
            "runtime": rt_name,
            "interpreter": rt_name,
            "threads": threads,
            "xnnpack": bool(xnnpack),
            "provider": "xnnpack" if xnnpack else "builtin",
            "signature": self._signature_key,
        })

    def _graph_vocab(self) -> dict[str, int]:
        """Token-id inputs' vocabularies from the interpreter's ops (a GATHER of a constant 2-D
        table; :func:`rnnedge.runtime.base.embedding_vocab`). Subgraph 0 only."""
        it = self.interpreter
        ops_details = getattr(it, "_get_ops_details", None)
        if ops_details is None or self._sig_runner is not None:
            return {}
        ops = [(d["op_name"], [int(i) for i in d["inputs"]], [int(o) for o in d["outputs"]]) for d in ops_details()]
        made = {o for _, _, outs in ops for o in outs}
        inputs = {idx: n for n, idx, _ in self._in}
        rows = {d["index"]: int(d["shape"][0]) for d in it.get_tensor_details()
                if len(d["shape"]) == 2 and d["index"] not in made and d["index"] not in inputs}
        return embedding_vocab(ops, inputs, rows)

    def _map_tensors(self) -> None:
        it = self.interpreter
        self._signature_key = None
        self._sig_runner = None
        in_details = {d["index"]: d for d in it.get_input_details()}
        out_details = {d["index"]: d for d in it.get_output_details()}
        in_pairs: list[tuple[str, dict]] = []
        out_pairs: list[tuple[str, dict]] = []
        sigs = {}
        try:
            sigs = it.get_signature_list() or {}
        except Exception:  # noqa: BLE001 - old interpreters
            sigs = {}
        if len(sigs) >= 1:
            key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
            try:
                sr = it.get_signature_runner(key)
                sin = sr.get_input_details()
                sout = sr.get_output_details()
            except Exception:  # noqa: BLE001
                sr = None
            if sr is not None:
                self._signature_key = key
                # interpreter-level set_tensor/invoke works when the signature is subgraph 0
                if getattr(sr, "_subgraph_index", 0) != 0:
                    self._sig_runner = sr
                in_order = {d["index"]: i for i, d in enumerate(it.get_input_details())}
                in_pairs = sorted(sin.items(), key=lambda kv: in_order.get(kv[1]["index"], 1 << 30))
                if all(re.fullmatch(r"output_\d+", k) for k in sout):
                    out_pairs = sorted(sout.items(), key=lambda kv: _natural_key(kv[0]))
                else:  # named outputs: the graph's output order
                    out_order = {d["index"]: i for i, d in enumerate(it.get_output_details())}
                    out_pairs = sorted(sout.items(), key=lambda kv: out_order.get(kv[1]["index"], 1 << 30))
        if not in_pairs:
            in_pairs = [(_strip(d["name"]), d) for d in in_details.values()]
            out_pairs = [(_strip(d["name"]), d) for d in out_details.values()]
        for n, d in in_pairs + out_pairs:
            d["_sig_name"] = n  # the name the signature runner knows
        # the manifest knows the Keras names (and sometimes the interpreter's)
        entry = manifest_entry(self.path)
        in_pairs = self._apply_manifest(in_pairs, entry.get("inputs"), what="input")
        out_pairs = self._apply_manifest(out_pairs, entry.get("outputs"), what="output")
        self._in = [(n, d["index"], d) for n, d in in_pairs]
        self._out = [(n, d["index"], d) for n, d in out_pairs]
        self._cur = {idx: [int(s) for s in d["shape"]] for _, idx, d in self._in}
        self.inputs = [TensorInfo(n, self._shape(d), np.dtype(d["dtype"]).name) for n, _, d in self._in]
        self.outputs = [TensorInfo(n, self._shape(d), np.dtype(d["dtype"]).name) for n, _, d in self._out]

    @staticmethod
    def _shape(d) -> list:
        sig = d.get("shape_signature")
        sig = list(sig) if sig is not None and len(sig) else list(d["shape"])
        return [None if int(s) < 0 else int(s) for s in sig]

    @staticmethod
    def _apply_manifest(pairs, entries, *, what):
        """Rename (and order) the interpreter's tensors with the manifest's names.

        A manifest entry's public name is ``keras_name`` when present, else ``name``; it matches a
        tensor by any of ``name``/``signature_name``/``tflite_name``/``tensor_name``/
        ``interpreter_name`` (also with the ``serving_default_``/``:0`` decorations stripped)."""
        if not entries or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return pairs
        public = [e.get("keras_name") or e.get("name") for e in entries]
        if len(public) != len(pairs) or not all(public):
            return pairs
        alias_keys = ("name", "signature_name", "keras_name", "tflite_name", "tensor_name", "interpreter_name")
        mapped = None
        # exact names first: stripped ones can collide ("PartitionedCall:0", "PartitionedCall:1")
        for strip in (False, True):
            aliases = []
            for e in entries:
                a = {str(e[k]) for k in alias_keys if e.get(k)}
                aliases.append(a | {_strip(x) for x in a} if strip else a)
            tried = []
            for n, d in pairs:
                keys = {n, d["name"]} | ({_strip(d["name"])} if strip else set())
                hits = [i for i, a in enumerate(aliases) if a & keys]
                tried.append(hits[0] if len(hits) == 1 else None)
            if all(i is not None for i in tried) and len(set(tried)) == len(tried):
                mapped = tried
                break
        if mapped is not None:
            out = [(public[i], d) for i, (_, d) in zip(mapped, pairs)]
            # the model's order: keras_index when listed (the interpreter sorts inputs by
            # name, e.g. decoder_tokens before encoder_tokens), else the manifest's order
            order = {nm: e.get("keras_index", k) for k, (nm, e) in enumerate(zip(public, entries))}
            return sorted(out, key=lambda p: order[p[0]])
        if len(pairs) == 1:
            return [(public[0], pairs[0][1])]
        have = [n for n, _ in pairs]
        if what == "output" and all(re.fullmatch(r"output_\d+", n) for n in have):
            return [(public[i], d) for i, (n, d) in enumerate(pairs)]  # natural order = model order
        return pairs

    # -- inference -------------------------------------------------------
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self.interpreter
        resized = False
        prepared = {}
        for name, idx, d in self._in:
            v = np.asarray(feeds[name])
            want = np.dtype(d["dtype"])
            if v.dtype != want:
                if np.issubdtype(want, np.integer) and not np.issubdtype(v.dtype, np.integer):
                    raise UsageError(f"input {name!r} takes {want.name} (token ids), got {v.dtype}")
                v = v.astype(want)
            if list(v.shape) != self._cur[idx]:  # only free axes differ here (Runner.run: check_feeds)
                if self._sig_runner is None:
                    it.resize_tensor_input(idx, list(v.shape), strict=False)
                self._cur[idx] = list(v.shape)
                resized = True
            prepared[name] = np.ascontiguousarray(v)
        if self._sig_runner is not None:  # signature on another subgraph: let LiteRT do it
            if self._reset:
                it.reset_all_variables()
            res = self._sig_runner(**{d["_sig_name"]: prepared[n] for n, _, d in self._in})
            return {n: np.asarray(res[d["_sig_name"]]) for n, _, d in self._out}
        if resized:
            it.allocate_tensors()
            self.info["resized_to"] = {n: list(v.shape) for n, v in prepared.items()}
        if self._reset:  # before set_tensor: a fed initial state must survive
            it.reset_all_variables()
        for name, idx, _ in self._in:
            it.set_tensor(idx, prepared[name])
        try:
            it.invoke()
        except (RuntimeError, ValueError) as e:
            msg = str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__
            raise RnnedgeError(f"{self.path}: {self.runtime} failed to run: {msg}") from None
        return {name: it.get_tensor(idx).copy() for name, idx, _ in self._out}

    def close(self) -> None:
        self.interpreter = None
        super().close()
