"""Independent checks of exported artifacts that do not trust rnnedge: the file in a plain
runtime, as an app would load it, against the Keras outputs, every output by position.

- :func:`run_onnx`: plain ``onnxruntime.InferenceSession`` (CPU, 1 thread); inputs matched by
  Keras input name (else by position), cast to the file's dtype, fed in chunks of the file's fixed
  batch; outputs in the graph's output order.
- :func:`run_tflite`: plain ``ai_edge_litert`` ``Interpreter`` (1 thread); ``set_tensor`` /
  ``invoke`` / ``get_tensor`` only, never a reset; outputs in the serving signature's output order
  (``get_signature_list()``), the order a signature-runner user sees. A fresh interpreter per
  chunk for the numbers, and one interpreter invoked twice on the first chunk for the repeat check.
- :func:`compare_by_position`: output k of the artifact vs Keras output k, element passes when
  ``|a - r| <= atol + rtol * |r|`` (the product's float32 gate: atol = rtol = 1e-5, docs/GUIDE.md
  section 4); a missing or extra output, a shape difference or a non-finite value fails.
- :func:`onnx_op_types` / :func:`tflite_op_types`: the op types in the file (ONNX: with the ops
  inside Loop/Scan/If bodies).

No TensorFlow is imported here.
"""
from __future__ import annotations

import numpy as np

ATOL = 1e-5
RTOL = 1e-5
ONNX_CONTROL_FLOW = ("Loop", "Scan", "If")
TFLITE_FUSED_RNN = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
                    "BIDIRECTIONAL_SEQUENCE_RNN")


class ArtifactInputError(ValueError):
    """The artifact's inputs cannot take the Keras model's inputs (count, fixed shape)."""


# ---------------------------------------------------------------- comparison


def compare_by_position(ref: list, got: list, atol: float = ATOL, rtol: float = RTOL) -> dict:
    """``{"ok", "n_keras", "n_artifact", "outputs": [{index, ok, problem, max_abs, ...}],
    "permutation"}``. ``permutation[k]`` is the artifact output that matches Keras output k within
    tolerance (any position; None if none): a diagnostic telling wrong order from wrong numbers."""
    rows = []
    for k in range(max(len(ref), len(got))):
        row: dict = {"index": k}
        if k >= len(got):
            row.update(ok=False, problem="missing in artifact", keras_shape=list(ref[k].shape))
        elif k >= len(ref):
            row.update(ok=False, problem="extra output in artifact", artifact_shape=list(np.shape(got[k])))
        else:
            row.update(_compare_one(ref[k], got[k], atol, rtol))
        rows.append(row)
    perm = []
    for r in ref:
        hit = None
        for j, g in enumerate(got):
            if _compare_one(r, g, atol, rtol)["ok"]:
                hit = j
                break
        perm.append(hit)
    return {"ok": len(ref) == len(got) and all(r["ok"] for r in rows), "n_keras": len(ref), "n_artifact": len(got),
            "outputs": rows, "permutation": perm}


def _compare_one(r, g, atol, rtol) -> dict:
    r = np.asarray(r)
    g = np.asarray(g)
    out = {"keras_shape": list(r.shape), "artifact_shape": list(g.shape)}
    if r.shape != g.shape:
        return {**out, "ok": False, "problem": f"shape {list(g.shape)} vs Keras {list(r.shape)}"}
    r = r.astype(np.float64)
    g = g.astype(np.float64)
    if not np.all(np.isfinite(g)):
        return {**out, "ok": False, "problem": "non-finite values", "max_abs": None}
    err = np.abs(g - r)
    max_abs = float(err.max()) if err.size else 0.0
    ok = bool(np.all(err <= atol + rtol * np.abs(r)))
    return {**out, "ok": ok, "problem": None if ok else f"max abs error {max_abs:.3g}", "max_abs": max_abs}


def first_problem(cmp: dict) -> str | None:
    """One line for the first thing that failed in a :func:`compare_by_position` result."""
    if cmp["ok"]:
        return None
    if cmp["n_keras"] != cmp["n_artifact"]:
        return f"{cmp['n_artifact']} outputs in the artifact, Keras has {cmp['n_keras']}"
    bad = [r for r in cmp["outputs"] if not r["ok"]]
    perm = cmp["permutation"]
    if all(p is not None for p in perm) and sorted(perm) == list(range(len(perm))) and perm != list(range(len(perm))):
        return f"outputs in another order than Keras (artifact output for each Keras output: {perm})"
    return f"output {bad[0]['index']}: {bad[0]['problem']}"


# ---------------------------------------------------------------- feeding


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, s + size)


def _match_inputs(art_names: list[str], keras_names: list[str]) -> tuple[list[int], str]:
    """For each Keras input, the artifact input index: by name (exact, or the artifact name without
    a ':0' tail / 'serving_default_' head), else by position."""
    if len(art_names) != len(keras_names):
        raise ArtifactInputError(f"artifact has {len(art_names)} inputs {art_names}, Keras has {len(keras_names)} {keras_names}")

    def norm(s: str) -> str:
        s = s.split(":")[0]
        return s[len("serving_default_"):] if s.startswith("serving_default_") else s
    by_name = {norm(a): j for j, a in enumerate(art_names)}
    if all(k in by_name for k in keras_names) and len(set(keras_names)) == len(keras_names):
        return [by_name[k] for k in keras_names], "name"
    return list(range(len(keras_names))), "position"


# ---------------------------------------------------------------- ONNX


def onnx_op_types(path) -> dict:
    """``{"top": [...], "all": [...], "control_flow": [...]}``: op types of the main graph, of every
    graph including Loop/Scan/If bodies, and the control-flow ones present."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    top = {n.op_type for n in model.graph.node}
    every: set[str] = set()

    def walk(g):
        for n in g.node:
            every.add(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)
    walk(model.graph)
    return {"top": sorted(top), "all": sorted(every), "control_flow": sorted(every & set(ONNX_CONTROL_FLOW))}


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int32)": np.int32,
               "tensor(int64)": np.int64, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}


def run_onnx(path, inputs: list[np.ndarray], keras_input_names: list[str]) -> dict:
    """Outputs of the ONNX file (graph order) for the Keras ``inputs``: ``{"outputs", "output_names",
    "input_match"}``. Raises :class:`ArtifactInputError` when the inputs cannot be fed."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ins = sess.get_inputs()
    order, how = _match_inputs([i.name for i in ins], keras_input_names)
    n = len(inputs[0])
    batches = {i.shape[0] for i in ins if i.shape and isinstance(i.shape[0], int)}
    if len(batches) > 1:
        raise ArtifactInputError(f"artifact inputs have different fixed batch sizes {sorted(batches)}")
    size = batches.pop() if batches else n
    if n % size:
        raise ArtifactInputError(f"artifact has fixed batch {size}; {n} samples do not split into it")
    for k, j in enumerate(order):
        want = ins[j].shape
        have = inputs[k].shape
        if len(want) != len(have) or any(isinstance(w, int) and w != h for w, h in zip(want[1:], have[1:])):
            raise ArtifactInputError(f"artifact input {ins[j].name!r} has shape {want}, the Keras input {list(have)}")
    outs: list[list[np.ndarray]] = []
    for sl in _chunks(n, size):
        feed = {ins[j].name: inputs[k][sl].astype(_ORT_DTYPES.get(ins[j].type, inputs[k].dtype)) for k, j in enumerate(order)}
        outs.append(sess.run(None, feed))
    names = [o.name for o in sess.get_outputs()]
    return {"outputs": [np.concatenate([o[k] for o in outs], axis=0) for k in range(len(names))],
            "output_names": names, "input_match": how, "batch": size}


# ---------------------------------------------------------------- TFLite


def tflite_op_types(path) -> dict:
    """``{"ops": [...], "fused_rnn": [...], "while": bool}`` of the primary subgraph (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    ops = sorted({d["op_name"] for d in it._get_ops_details()})
    return {"ops": ops, "fused_rnn": [o for o in ops if o in TFLITE_FUSED_RNN], "while": "WHILE" in ops}


class _Lite:
    """One plain interpreter with its inputs resized to the data's shape where the file allows."""

    def __init__(self, path, inputs: list[np.ndarray], keras_input_names: list[str]):
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)
        sigs = it.get_signature_list()
        key = "serving_default" if "serving_default" in sigs else (next(iter(sigs)) if sigs else None)
        if key is not None:
            # the name -> tensor map from a second interpreter: a signature runner keeps references
            # that forbid resizing this one
            runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner(key)
            in_det = runner.get_input_details()
            out_det = runner.get_output_details()
            in_names = list(sigs[key]["inputs"])
            in_idx = [in_det[nm]["index"] for nm in in_names]
            # outputs by position as an app indexes them (Android runForMultipleInputsOutputs, C++
            # interpreter->outputs()): the subgraph's output order; the signature names them (its
            # own listing is sorted by name, not by the model's order)
            sig_name = {d["index"]: nm for nm, d in out_det.items()}
            self.out_idx = [d["index"] for d in it.get_output_details()]
            self.output_names = [sig_name.get(i, str(i)) for i in self.out_idx]
            self.order_source = f"subgraph outputs (named by signature {key!r})"
        else:
            dets = it.get_input_details()
            in_names = [d["name"] for d in dets]
            in_idx = [d["index"] for d in dets]
            self.output_names = [d["name"] for d in it.get_output_details()]
            self.out_idx = [d["index"] for d in it.get_output_details()]
            self.order_source = "subgraph outputs (no signature)"
        order, self.input_match = _match_inputs(in_names, keras_input_names)
        self.in_idx = [in_idx[j] for j in order]
        details = {d["index"]: d for d in it.get_input_details()}
        n = len(inputs[0])
        fixed = {int(details[i]["shape_signature"][0]) for i in self.in_idx if details[i]["shape_signature"][0] != -1}
        if len(fixed) > 1:
            raise ArtifactInputError(f"artifact inputs have different fixed batch sizes {sorted(fixed)}")
        self.batch = fixed.pop() if fixed else n
        if n % self.batch:
            raise ArtifactInputError(f"artifact has fixed batch {self.batch}; {n} samples do not split into it")
        self.dtypes = []
        for k, i in enumerate(self.in_idx):
            d = details[i]
            want = (self.batch, *inputs[k].shape[1:])
            sig = [int(v) for v in d["shape_signature"]]
            if len(sig) != len(want):
                raise ArtifactInputError(f"artifact input {d['name']!r} has rank {len(sig)}, the Keras input {len(want)}")
            if tuple(int(v) for v in d["shape"]) != want:
                bad = [a for a, (s, w) in enumerate(zip(sig, want)) if s != -1 and s != w]
                if bad:
                    raise ArtifactInputError(f"artifact input {d['name']!r} has fixed shape {sig}, the Keras input {list(want)}")
                it.resize_tensor_input(i, list(want), strict=True)
            self.dtypes.append(d["dtype"])
        it.allocate_tensors()
        self.it = it

    def __call__(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        for i, x, dt in zip(self.in_idx, feeds, self.dtypes):
            self.it.set_tensor(i, np.ascontiguousarray(x.astype(dt)))
        self.it.invoke()
        return [self.it.get_tensor(i).copy() for i in self.out_idx]


def run_tflite(path, inputs: list[np.ndarray], keras_input_names: list[str]) -> dict:
    """Outputs of the TFLite file (subgraph output order) for the Keras ``inputs``, each chunk of the
    file's batch in a fresh interpreter; and the repeat check: one interpreter invoked twice on the
    first chunk, no reset in between. Returns ``{"outputs", "output_names", "input_match",
    "order_source", "batch", "repeat_identical", "repeat_max_abs"}``."""
    n = len(inputs[0])
    first = _Lite(path, inputs, keras_input_names)
    size = first.batch
    chunk0 = [x[0:size] for x in inputs]
    y1 = first(chunk0)
    y2 = first(chunk0)
    rep = max((float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
               for a, b in zip(y1, y2)), default=0.0)
    identical = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(y1, y2))
    parts = [y1]
    for sl in list(_chunks(n, size))[1:]:
        parts.append(_Lite(path, inputs, keras_input_names)([x[sl] for x in inputs]))
    return {"outputs": [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(y1))],
            "output_names": first.output_names, "input_match": first.input_match, "order_source": first.order_source,
            "batch": size, "repeat_identical": identical, "repeat_max_abs": rep}
