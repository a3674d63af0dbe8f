"""Read a Keras model as a chain of per-timestep stages (the common part of every step exporter).

A model streams when it is one chain ``input -> [Embedding] -> per-step layers and
unidirectional RNNs -> head``: then the state of every recurrent layer after step ``t``
is all that step ``t + 1`` needs. :func:`plan_model` returns that chain as a
:class:`StepPlan` (stages, state layout, names) or raises a
:class:`~rnnedge.errors.ConversionError` naming the layer that breaks it.

Step semantics: the step output is what the full model outputs at this step. For a model
whose top RNN has ``return_sequences=True`` that is the full model's output at ``t``
(``output_mode="sequence"``); for ``return_sequences=False`` it is the prediction the
full model would make if the sequence ended at ``t`` (``output_mode="last"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rnnedge.errors import ConversionError

CELLS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "RNN"}
STATE_KINDS = {"LSTM": ("h", "c"), "GRU": ("h",), "RNN": ("h",)}
_SKIP = {"InputLayer", "Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
         "ActivityRegularization"}
SUPPORTED = "Embedding (first layer), LSTM, GRU, SimpleRNN, Dense, TimeDistributed(Dense), Dropout"

NOT_STREAMABLE_BIDIR = (
    "its backward direction starts from the last timestep, so every output needs the whole sequence "
    "(a bidirectional layer is not streamable); export the full-sequence model instead, or use a "
    "unidirectional layer for streaming")
NOT_STREAMABLE_BACKWARDS = (
    "go_backwards=True reads the sequence from its last timestep, so its first output needs the whole "
    "sequence (not streamable); export the full-sequence model instead")


@dataclass
class Stage:
    kind: str                 # "embedding" | "rnn" | "dense"
    layer: object             # the Keras layer doing the maths (Dense inside TimeDistributed)
    name: str                 # the Keras layer name (the outer one for TimeDistributed)
    cell: str | None = None   # LSTM | GRU | RNN
    units: int | None = None


@dataclass
class StepPlan:
    model_name: str
    input_name: str
    input_dtype: str          # float32, or an integer dtype for token ids
    features: int | None      # per-step features (None for token inputs)
    vocab_size: int | None
    mask_zero: bool
    stages: list[Stage]
    output_name: str
    output_dim: int
    output_mode: str          # "sequence" | "last"
    full_input_shape: list
    states: list[dict] = field(default_factory=list)  # {name, output, layer, kind, units}
    notes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> bool:
        return self.vocab_size is not None


def _err(layer, why: str) -> ConversionError:
    name = getattr(layer, "name", "?")
    return ConversionError(f"layer '{name}' ({type(layer).__name__}) cannot be streamed: {why}",
                           layer=name, fmt="streaming")


def _chain(model) -> list:
    """The layers of a single-input, single-output chain, in order (mask ops skipped)."""
    import keras

    fm = getattr(model, "_functional", None) or model
    ins, outs = list(getattr(fm, "inputs", None) or []), list(getattr(fm, "outputs", None) or [])
    if not ins:
        raise ConversionError(f"model '{model.name}' has no known input shape: build it with keras.Input(...)",
                              fmt="streaming")
    if len(ins) != 1 or len(outs) != 1:
        raise ConversionError(
            f"model '{model.name}' has {len(ins)} inputs and {len(outs)} outputs: streaming export takes one "
            "sequence input and one output (a single chain of layers)", fmt="streaming")
    cur = id(ins[0])
    layers = []
    for depth in sorted(fm._nodes_by_depth, reverse=True):
        for node in fm._nodes_by_depth[depth]:
            op = node.operation
            cls = type(op).__name__
            if cls == "InputLayer":
                continue
            if not isinstance(op, keras.layers.Layer):
                if cls == "NotEqual":  # Embedding(mask_zero) mask, feeds only `mask=` kwargs
                    continue
                raise ConversionError(
                    f"operation '{op.name}' ({cls}) cannot be streamed: only a chain of layers is supported "
                    f"({SUPPORTED})", layer=op.name, fmt="streaming")
            args = node.arguments.args
            x = args[0] if args else None
            if isinstance(x, (list, tuple)) or len(args) != 1 or node.arguments.kwargs.get("initial_state") is not None:
                raise _err(op, "it takes several inputs (e.g. initial states); streaming export takes a single "
                               "chain of layers")
            if x is None or id(x) != cur:
                raise _err(op, "the model is not a single chain of layers (branches or merges)")
            if len(node.outputs) != 1:
                raise _err(op, "it returns several tensors (return_state=True); not supported for streaming")
            cur = id(node.outputs[0])
            layers.append(op)
    if cur != id(outs[0]):
        raise ConversionError(f"model '{model.name}' is not a single chain of layers", fmt="streaming")
    return layers


def _act_name(fn) -> str:
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        return fn
    return getattr(fn, "__name__", None) or type(fn).__name__


def plan_model(model) -> StepPlan:

    fm = getattr(model, "_functional", None) or model
    layers = _chain(model)
    inp = fm.inputs[0]
    in_shape = list(inp.shape)
    in_dtype = str(getattr(inp.dtype, "name", inp.dtype))
    input_name = inp._keras_history.operation.name
    out_names = list(getattr(model, "output_names", None) or [])
    output_name = out_names[0] if len(out_names) == 1 else fm.outputs[0]._keras_history.operation.name

    stages: list[Stage] = []
    states: list[dict] = []
    notes: list[str] = []
    vocab = None
    mask_zero = False
    seq_done = False  # an RNN with return_sequences=False has run: no time axis any more
    width = None if "int" in in_dtype else (in_shape[-1] if len(in_shape) == 3 else None)
    if "int" not in in_dtype and len(in_shape) != 3:
        raise ConversionError(
            f"model '{model.name}': input '{input_name}' has shape {in_shape}; streaming needs "
            "(batch, time, features) floats or (batch, time) token ids feeding an Embedding", fmt="streaming")
    if width is None and "int" not in in_dtype:
        raise ConversionError(f"model '{model.name}': the feature axis of input '{input_name}' must be known",
                              fmt="streaming")

    for i, layer in enumerate(layers):
        cls = type(layer).__name__
        if cls in _SKIP:
            continue
        if cls == "Bidirectional":
            raise _err(layer, NOT_STREAMABLE_BIDIR)
        if cls == "Embedding":
            if i != 0 or "int" not in in_dtype or len(in_shape) != 2:
                raise _err(layer, "an Embedding must be the first layer, on a (batch, time) token-id input")
            vocab = int(layer.input_dim)
            mask_zero = bool(getattr(layer, "mask_zero", False))
            width = int(layer.output_dim)
            stages.append(Stage("embedding", layer, layer.name))
            if mask_zero:
                notes.append(f"{layer.name}: mask_zero=True; a streamed token is never padding: do not feed the "
                             "padding id 0 (the full model would skip it, the step model would not)")
            continue
        if "int" in in_dtype and not stages:
            raise _err(layer, "a token-id input must feed an Embedding first")
        if cls in ("LSTM", "GRU", "SimpleRNN", "RNN"):
            cell_cls = type(getattr(layer, "cell", None)).__name__
            if cell_cls not in CELLS:
                raise _err(layer, f"recurrent cell {cell_cls} is not supported (LSTMCell, GRUCell, SimpleRNNCell)")
            if seq_done:
                raise _err(layer, "it follows a recurrent layer with return_sequences=False")
            if getattr(layer, "go_backwards", False):
                raise _err(layer, NOT_STREAMABLE_BACKWARDS)
            if getattr(layer, "return_state", False):
                raise _err(layer, "return_state=True is not supported for streaming (the step model outputs "
                                  "every state anyway)")
            kind = CELLS[cell_cls]
            units = int(layer.cell.units)
            stages.append(Stage("rnn", layer, layer.name, cell=kind, units=units))
            for k in STATE_KINDS[kind]:
                states.append({"name": f"{layer.name}__{k}", "output": f"{layer.name}__{k}_out",
                               "layer": layer.name, "kind": k, "units": units})
            if getattr(layer, "stateful", False):
                notes.append(f"{layer.name}: stateful=True; the step model carries the state explicitly")
            width = units
            if not layer.return_sequences:
                seq_done = True
            continue
        if cls == "TimeDistributed":
            inner = layer.layer
            if type(inner).__name__ != "Dense":
                raise _err(layer, f"TimeDistributed({type(inner).__name__}) is not supported; "
                                  "only TimeDistributed(Dense) streams")
            stages.append(Stage("dense", inner, layer.name))
            width = int(inner.units)
            continue
        if cls == "Dense":
            stages.append(Stage("dense", layer, layer.name))
            width = int(layer.units)
            continue
        raise _err(layer, f"it is not a per-timestep layer; streaming supports {SUPPORTED}")

    if not any(s.kind == "rnn" for s in stages):
        raise ConversionError(f"model '{model.name}' has no recurrent layer: nothing to stream",
                              fmt="streaming")
    return StepPlan(
        model_name=model.name, input_name=input_name, input_dtype=in_dtype,
        features=None if vocab is not None else int(in_shape[-1]), vocab_size=vocab, mask_zero=mask_zero,
        stages=stages, output_name=output_name, output_dim=int(width),
        output_mode="last" if seq_done else "sequence", full_input_shape=in_shape, states=states,
        notes=notes)


def dense_activation(layer) -> str:
    return _act_name(getattr(layer, "activation", None))
