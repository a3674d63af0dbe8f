"""Generate the reference parts of docs/GUIDE.md from the code, so they cannot drift.

* ``spec``: one table per spec model (top level, inputs, every layer type, initializers,
  regularizers, compile, optimizer, data, train) from the pydantic schema in
  :mod:`rnnedge.spec.schema`: field, type and constraints, default, meaning.
* ``cli:<command>``: the options of every ``rnnedge`` command, from its click definition.

Each part sits in GUIDE.md between ``<!-- BEGIN GENERATED: NAME -->`` and
``<!-- END GENERATED: NAME -->``. The meanings of spec fields live in :data:`FIELD_DOCS` below;
a field without one is an error, so a new field cannot land undocumented.

    python docs/gen_reference.py           # rewrite the generated parts of docs/GUIDE.md
    python docs/gen_reference.py --check   # exit 1 when GUIDE.md is out of date (tests do this)

Imports neither TensorFlow nor any runtime (the CLI command modules import lazily).
"""
from __future__ import annotations

import inspect
import json
import re
import sys
import typing
from pathlib import Path

GUIDE = Path(__file__).resolve().parent / "GUIDE.md"
ROOT = GUIDE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

from rnnedge.spec import schema as S  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED: {} -->"
END = "<!-- END GENERATED: {} -->"

# ------------------------------------------------------------------------------------------
# meanings of spec fields: by field name, or by "Model.field" (wins over the plain name)
# ------------------------------------------------------------------------------------------
FIELD_DOCS: dict[str, str] = {
    # top level
    "Spec.version": "spec format version",
    "Spec.name": "model name (Keras model name, file names of `train`/`demo`)",
    "Spec.description": "free text",
    "Spec.task": "what the model does; picks defaults in training and how outputs are described",
    "Spec.inputs": "the model inputs (see `inputs[]`); a sequential spec has exactly one",
    "Spec.layers": "sequential form: a chain of layers, input -> output (give `layers` or `nodes`)",
    "Spec.nodes": "graph form: named layers wired by `inputs` references (give `layers` or `nodes`)",
    "Spec.outputs": "graph form only, required there: node references to output, in order",
    "Spec.compile": "loss, optimizer, metrics for training",
    "Spec.data": "how training data is prepared; needed by `train` (not by `build`/`export`)",
    "Spec.train": "training settings",
    # inputs
    "InputSpec.name": "input name (a graph reference, the artifacts' input name)",
    "InputSpec.shape": "per-sample shape without the batch axis; `null` = free axis, e.g. `[null, 3]` "
                       "(time, features) or `[null]` (token ids)",
    "InputSpec.dtype": "`int32`/`int64` for token ids",
    "InputSpec.vocab_size": "token inputs only: ids are `0..vocab_size-1` (0 = padding); the default "
                            "`input_dim` of the Embedding fed by this input",
    "InputSpec.batch_size": "fix the batch size (needed by `stateful` RNNs)",
    # every layer
    "type": "the layer type (the heading)",
    "name": "layer name; in graph specs the name other nodes reference (default: Keras's)",
    "inputs": "graph specs only: references `node`, `node:k` (k-th output) or an input name",
    "initial_state": "graph specs only: references to initial states: `[h]` (GRU/SimpleRNN), `[h, c]` "
                     "(LSTM)",
    "Bidirectional.initial_state": "graph specs only: forward states then backward states",
    # recurrent
    "units": "output size",
    "activation": "activation function",
    "recurrent_activation": "gate activation",
    "use_bias": "add a bias",
    "return_sequences": "output every timestep (batch, time, units) instead of the last (batch, units); "
                        "needed to feed another recurrent layer",
    "return_state": "also output the final states (`node:1` = h, `node:2` = c for LSTM)",
    "go_backwards": "process the sequence in reverse",
    "stateful": "keep the state between batches (needs a fixed input `batch_size`)",
    "unroll": "unroll the loop in Keras (fixed, short sequences)",
    "dropout": "dropout rate on the inputs (training only)",
    "recurrent_dropout": "dropout rate on the recurrent state (training only)",
    "kernel_initializer": "initializer of the input weights",
    "recurrent_initializer": "initializer of the recurrent weights",
    "bias_initializer": "initializer of the bias",
    "kernel_regularizer": "penalty on the input weights",
    "recurrent_regularizer": "penalty on the recurrent weights",
    "bias_regularizer": "penalty on the bias",
    "activity_regularizer": "penalty on the layer output",
    "unit_forget_bias": "add 1 to the forget-gate bias at initialisation",
    "reset_after": "apply the reset gate after the matrix product (Keras/cuDNN form); false = the "
                   "original GRU form",
    # wrappers
    "Bidirectional.layer": "the recurrent layer run forwards and backwards (`SimpleRNN`/`LSTM`/`GRU`)",
    "merge_mode": "how the two directions combine; `none`/`null` = output both",
    "TimeDistributed.layer": "the layer applied to every timestep (`Dense` or `Dropout`)",
    # others
    "Dense.units": "output size",
    "Dropout.rate": "fraction of inputs dropped (training only)",
    "filters": "number of output channels",
    "kernel_size": "window length",
    "strides": "step between windows",
    "padding": "`causal` = output t sees only inputs <= t",
    "dilation_rate": "spacing inside the window",
    "output_dim": "embedding size",
    "input_dim": "vocabulary size (default: the feeding input's `vocab_size`)",
    "mask_zero": "id 0 is padding: mask it in the following layers",
    "embeddings_initializer": "initializer of the embedding table",
    "embeddings_regularizer": "penalty on the embedding table",
    "mask_value": "timesteps whose features all equal this are masked",
    "keepdims": "keep the time axis (length 1)",
    "use_scale": "learn a scale for the scores",
    "score_mode": "`dot` (Luong) or `concat` (Bahdanau-style)",
    "Attention.dropout": "dropout on the attention weights (training only)",
    "MultiHeadAttention.dropout": "dropout on the attention weights (training only)",
    "causal": "a position attends only to earlier ones",
    "num_heads": "number of heads",
    "key_dim": "size of each head for query and key",
    "value_dim": "size of each head for value (default: `key_dim`)",
    "output_shape": "output size (default: the query's feature size)",
    "axis": "axis to join on",
    "n": "how many times to repeat the input vector (-> (batch, n, features))",
    "ActivationLayer.activation": "the activation applied",
    "epsilon": "added to the variance",
    "target_shape": "new per-sample shape (no batch axis)",
    # initializer spec
    "InitializerSpec.type": "initializer name",
    "seed": "random seed",
    "minval": "lower bound (`random_uniform`)",
    "maxval": "upper bound (`random_uniform`)",
    "mean": "mean (`random_normal`, `truncated_normal`)",
    "stddev": "standard deviation (`random_normal`, `truncated_normal`)",
    "gain": "multiplier (`orthogonal`, `identity`)",
    "value": "the value (`constant`)",
    "scale": "scale (`variance_scaling`)",
    "mode": "fan used by `variance_scaling`",
    "distribution": "distribution of `variance_scaling`",
    # regularizer
    "l1": "L1 factor",
    "l2": "L2 factor",
    # compile / optimizer
    "CompileSpec.optimizer": "an optimizer name (default settings) or an optimizer mapping (below)",
    "loss": "loss; a list gives one per output (graph specs)",
    "metrics": "metrics reported during training",
    "OptimizerSpec.name": "optimizer",
    "learning_rate": "learning rate",
    "clipnorm": "clip each gradient to this norm",
    "clipvalue": "clip gradient values to +-this",
    "global_clipnorm": "clip all gradients together to this norm",
    "momentum": "momentum (`sgd`, `rmsprop`)",
    "weight_decay": "weight decay",
    # data
    "kind": "`window`: a numeric series -> scaled sliding windows; `text`: CSV `text,label` -> word ids; "
            "`chars`: a text file -> character ids, next-character targets; `seq2seq`: encoder/decoder "
            "token pairs (built-in task only); `sequence`: float sequences (built-in generators)",
    "synthetic": "built-in dataset used without `--data`: `sines` (window), `reviews` (text), `corpus` "
                 "(chars), `reverse` (seq2seq), `waveforms` or `mean` (sequence)",
    "samples": "size of the built-in dataset (`train --samples` overrides)",
    "window": "window: timesteps per sample (default 48)",
    "horizon": "window: values predicted after each window",
    "column": "window: CSV column of the series (default: `--column`, else the last numeric column)",
    "max_len": "text/chars/seq2seq/sequence: sequence length (text default: the longest text; chars 40, "
               "seq2seq 8, sequence 20)",
    "DataSpec.padding": "text: pad/truncate at the end (`post`) or the start (`pre`)",
    "lowercase": "text/chars: lowercase before tokenizing",
    "num_classes": "number of classes of a classification dataset",
    # train
    "epochs": "maximum epochs (`train --epochs` overrides)",
    "TrainSpec.batch_size": "training batch size",
    "validation_split": "fraction held out for validation (windows: the last part, no shuffling)",
    "early_stopping": "patience in epochs on the validation loss; `null` disables",
    "TrainSpec.seed": "seed of weights, shuffling and built-in data",
}

# meanings of CLI options that have no click help text, by (command, long option)
CLI_HELP: dict[tuple[str, str], str] = {
    ("train", "--epochs"): "maximum epochs (default: the spec's `train.epochs`)",
    ("train", "--batch-size"): "training batch size (default: the spec's)",
    ("train", "--validation-split"): "fraction held out for validation (default: the spec's)",
    ("train", "--seed"): "seed of weights, shuffling and built-in data (default: the spec's)",
    ("export", "--json"): "print the artifacts, their manifest entries and the validation report as JSON",
    ("bench", "--warmup"): "untimed runs before timing",
    ("bench", "--runs"): "timed runs per case",
    ("demo", "--output"): "output folder (model, `export/`, `bundle/`, bundle tarball)",
    ("demo", "--json"): "print the result as JSON",
}

SPECIAL_TYPES = {
    "RegularizerSpec": "`{l1, l2}`",
    "InitializerSpec": "initializer",
    "OptimizerSpec": "optimizer mapping",
    "InputSpec": "input",
    "CompileSpec": "mapping",
    "DataSpec": "mapping",
    "TrainSpec": "mapping",
}


# ------------------------------------------------------------------------------------------
# rendering helpers
# ------------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _constraints(meta) -> list[str]:
    out = []
    for m in meta:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None and type(m).__name__ in ("Gt", "Ge", "Lt", "Le", "FieldInfo", "Interval"):
                out.append(f"{sym} {v:g}")
        if type(m).__name__ == "FieldInfo":
            out += _constraints(m.metadata)
        if type(m).__name__ == "MinLen":
            out.append(f"at least {m.min_length} item{'s' if m.min_length > 1 else ''}")
        pat = getattr(m, "pattern", None)
        if pat:
            out.append(f"matches `{pat}`")
    return out


def render_type(ann, meta=()) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    cons = _constraints(meta)
    if origin is typing.Annotated:
        return render_type(args[0], tuple(ann.__metadata__) + tuple(meta))
    if origin is typing.Union:
        parts = [a for a in args if a is not type(None)]
        nullable = len(parts) < len(args)
        lits = [typing.get_args(p) for p in parts if typing.get_origin(p) is typing.Literal]
        if any(set(lit) == set(S.INITIALIZERS) for lit in lits) and any(p is S.InitializerSpec for p in parts):
            text = "initializer"
        elif all(inspect.isclass(p) and issubclass(p, S.LayerBase) for p in parts):
            text = "layer"
        else:
            text = " or ".join(render_type(p) for p in parts)
        return text + (" or null" if nullable else "") + (f" ({', '.join(cons)})" if cons else "")
    if origin is typing.Literal:
        if set(args) == set(S.ACTIVATIONS):
            return "activation"
        if set(args) == set(S.INITIALIZERS):
            return "initializer"
        if set(args) == set(S.LOSSES):
            return "loss name"
        if set(args) == set(S.METRICS):
            return "metric name"
        return " / ".join(f"`{a}`" for a in args)
    if origin is list:
        inner = render_type(args[0]) if args else "any"
        inner += "s" if inner.endswith(" name") else ""
        return f"list of {inner}" + (f" ({', '.join(cons)})" if cons else "")
    if inspect.isclass(ann) and issubclass(ann, BaseModel):
        if issubclass(ann, S.LayerBase):
            return "layer"
        return SPECIAL_TYPES.get(ann.__name__, ann.__name__)
    name = {int: "int", float: "float", str: "string", bool: "bool"}.get(ann, getattr(ann, "__name__", str(ann)))
    return name + (f" {', '.join(cons)}" if cons else "")


def render_default(field) -> str:
    if field.default_factory is not None:
        v = field.default_factory()
        if isinstance(v, BaseModel):
            return "all defaults"
        return f"`{json.dumps(v)}`"
    d = field.default
    if d is PydanticUndefined:
        return "**required**"
    if d is None:
        return "null"
    if d == "":
        return '`""`'
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if isinstance(d, float):
        return f"`{d:g}`"
    return f"`{d}`"


def field_doc(model: type, name: str, lookup=None) -> str:
    for cls in (lookup or model.__mro__):
        key = f"{getattr(cls, '__name__', '')}.{name}"
        if key in FIELD_DOCS:
            return FIELD_DOCS[key]
    if name in FIELD_DOCS:
        return FIELD_DOCS[name]
    raise KeyError(f"no meaning for spec field {model.__name__}.{name}: add it to FIELD_DOCS in {__file__}")


def field_table(model: type, fields: list[str], only: dict[str, str] | None = None,
                model_fields: dict | None = None, lookup=None) -> list[str]:
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for n in fields:
        f = (model_fields or model.model_fields)[n]
        doc = field_doc(model, n, lookup)
        if only and n in only:
            doc = f"*{only[n]} only:* {doc}"
        rows.append(f"| `{n}` | {_cell(render_type(f.annotation, tuple(f.metadata)))} | "
                    f"{_cell(render_default(f))} | {_cell(doc)} |")
    return rows


def layer_type(cls: type) -> str:
    return typing.get_args(cls.model_fields["type"].annotation)[0]


BASE_FIELDS = tuple(S.LayerBase.model_fields)  # name, inputs


def own_fields(cls: type) -> list[str]:
    return [n for n in cls.model_fields if n not in BASE_FIELDS and n != "type"]


def _doc_line(cls: type) -> list[str]:
    doc = (cls.__doc__ or "").strip()
    if not doc or cls.__doc__ == BaseModel.__doc__:
        return []
    return [doc.splitlines()[0].replace("``", "`"), ""]


# ------------------------------------------------------------------------------------------
# the generated parts
# ------------------------------------------------------------------------------------------
def spec_reference() -> str:
    """The spec reference (markdown) from the schema."""
    out: list[str] = []
    seen: set[type] = set()

    def table(title: str, model: type, fields=None, only=None, intro=()):
        out.extend([title, "", *intro])
        out.extend(field_table(model, list(fields if fields is not None else model.model_fields), only))
        out.append("")
        seen.add(model)

    table("### Top level", S.Spec)
    table("### `inputs[]`", S.InputSpec)
    out += ["### Fields of every layer", "",
            "| field | type | default | meaning |", "|---|---|---|---|",
            f"| `type` | {' / '.join(f'`{t}`' for t in S.LAYER_TYPES)} | **required** | {FIELD_DOCS['type']} |"]
    out += field_table(S.LayerBase, list(BASE_FIELDS))[2:]
    out.append("")
    seen.add(S.LayerBase)

    rec = [c for c in S.LAYER_CLASSES if layer_type(c) in S.RECURRENT_TYPES]
    names = []
    for c in rec:
        names += [n for n in own_fields(c) if n not in names]
    only = {}
    for n in names:
        have = [layer_type(c) for c in rec if n in c.model_fields]
        if len(have) < len(rec):
            only[n] = ", ".join(have)
    merged: dict = {}
    for c in rec:
        for n, f in c.model_fields.items():
            merged.setdefault(n, f)
    lookup = [k for c in rec for k in c.__mro__]
    out += [f"### Recurrent layers: {', '.join(f'`{layer_type(c)}`' for c in rec)}", ""]
    out += field_table(S._Recurrent, names, only, model_fields=merged, lookup=lookup)
    out.append("")
    seen.update(rec)
    seen.add(S._Recurrent)

    empty = []
    for c in S.LAYER_CLASSES:
        if c in seen:
            continue
        fields = own_fields(c)
        if not fields:
            empty.append(c)
            continue
        table(f"### `{layer_type(c)}`", c, fields, intro=_doc_line(c))
    if empty:
        out += ["### Layers without settings", "",
                ", ".join(f"`{layer_type(c)}`" for c in empty)
                + ": only `type`, `name` and (graph specs) `inputs`.", ""]
        seen.update(empty)

    out += ["### Activations and initializers", "",
            "*activation*: " + ", ".join(f"`{a}`" for a in S.ACTIVATIONS) + ".", "",
            "*initializer*: a name (" + ", ".join(f"`{i}`" for i in S.INITIALIZERS)
            + ") or a mapping `{type: NAME, ...}` with these fields:", ""]
    out += field_table(S.InitializerSpec, list(S.InitializerSpec.model_fields))
    out += ["", "*regularizer* `{l1, l2}`:", ""]
    out += field_table(S.RegularizerSpec, list(S.RegularizerSpec.model_fields))
    out.append("")
    seen.update({S.InitializerSpec, S.RegularizerSpec})

    table("### `compile`", S.CompileSpec,
          intro=["Losses: " + ", ".join(f"`{x}`" for x in S.LOSSES) + ". Metrics: "
                 + ", ".join(f"`{x}`" for x in S.METRICS) + ".", ""])
    table("### `compile.optimizer` as a mapping", S.OptimizerSpec,
          intro=["`{name: adam, learning_rate: 0.005, clipnorm: 1.0}`", ""])
    table("### `data`", S.DataSpec)
    table("### `train`", S.TrainSpec)

    missing = [m.__name__ for m in schema_models() if m not in seen]
    if missing:
        raise RuntimeError(f"spec models not rendered in the reference: {missing}")
    return "\n".join(out).rstrip() + "\n"


def schema_models() -> list[type]:
    """Every pydantic model defined in the schema module (with fields)."""
    return [c for _, c in inspect.getmembers(S, inspect.isclass)
            if issubclass(c, BaseModel) and c.__module__ == S.__name__ and c.model_fields]


def cli_commands() -> dict:
    import click

    from rnnedge.cli import cli

    ctx = click.Context(cli, info_name="rnnedge")
    return {n: cli.get_command(ctx, n) for n in cli.list_commands(ctx)}


def _param_type(p) -> str:
    import click

    if getattr(p, "is_flag", False) and not getattr(p, "secondary_opts", None):
        return "flag"
    if getattr(p, "is_flag", False):
        return "on/off"
    t = p.type
    if isinstance(t, click.Choice):
        return " / ".join(f"`{c}`" for c in t.choices)
    if isinstance(t, (click.IntRange, click.FloatRange)):
        base = "int" if isinstance(t, click.IntRange) else "float"
        lim = []
        if t.min is not None:
            lim.append(f">= {t.min:g}")
        if t.max is not None:
            lim.append(f"<= {t.max:g}")
        return f"{base} {', '.join(lim)}".strip()
    if isinstance(t, click.Path):
        return "folder" if not t.file_okay else "file"
    return {"integer": "int", "text": "text", "float": "float", "boolean": "bool"}.get(t.name, t.name)


def _unset(d) -> bool:
    return type(d).__name__ == "Sentinel" or str(d).endswith("UNSET")


def _param_default(p) -> str:
    d = p.default
    if _unset(d) or callable(d) or d is None or d is False or d == () or (isinstance(d, (list, tuple)) and not d):
        return ""
    if isinstance(d, (list, tuple)):
        d = ",".join(str(x) for x in d)
    if d is True:
        return "on"
    return f"`{d}`"


def cli_reference(name: str) -> str:
    import click

    cmd = cli_commands()[name]
    ctx = click.Context(cmd, info_name=name)
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    rows = [f"`rnnedge {name} {usage}`", "", "| option | value | default | meaning |", "|---|---|---|---|"]
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        opts = ", ".join(f"`{o}`" for o in sorted(p.opts, key=len))
        if p.secondary_opts:
            opts += " / " + ", ".join(f"`{o}`" for o in p.secondary_opts)
        help_ = re.sub(r"\s+", " ", (p.help or CLI_HELP.get((name, p.opts[-1])) or "").strip())
        if not help_:
            raise KeyError(f"`rnnedge {name} {p.opts[-1]}` has no help text: give it one, or add it to "
                           f"CLI_HELP in {__file__}")
        if p.multiple and "repeat" not in help_:
            help_ += " (repeatable)"
        if p.required:
            help_ = "**required**. " + help_
        rows.append(f"| {opts} | {_cell(_param_type(p))} | {_cell(_param_default(p))} | {_cell(help_)} |")
    return "\n".join(rows) + "\n"


def generated_parts() -> dict[str, str]:
    parts = {"spec": spec_reference()}
    for n in cli_commands():
        parts[f"cli:{n}"] = cli_reference(n)
    return parts


# ------------------------------------------------------------------------------------------
# GUIDE.md update / check
# ------------------------------------------------------------------------------------------
def block_re(name: str) -> re.Pattern:
    return re.compile(re.escape(BEGIN.format(name)) + r"\n(.*?)" + re.escape(END.format(name)), re.S)


def render_guide(text: str, parts: dict[str, str]) -> str:
    for name, body in parts.items():
        pat = block_re(name)
        if not pat.search(text):
            raise RuntimeError(f"{GUIDE}: no block {BEGIN.format(name)} ... {END.format(name)}")
        text = pat.sub(lambda m: BEGIN.format(name) + "\n" + body + END.format(name), text)
    return text


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    text = GUIDE.read_text()
    new = render_guide(text, generated_parts())
    if "--check" in argv:
        if new != text:
            print(f"{GUIDE} is out of date: run `python docs/gen_reference.py`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        GUIDE.write_text(new)
        print(f"updated {GUIDE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
