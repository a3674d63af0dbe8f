"""The model spec: a pydantic schema (data only; nothing in a spec is evaluated as code).

A spec is either *sequential* (``layers``: one input, a chain) or a *graph* (``nodes``:
named nodes with ``inputs`` references, several inputs/outputs). A reference is a node or
input name, with ``:k`` for a node's k-th output (``encoder:1`` = an LSTM's h state when
``return_state`` is true).
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, field_validator, model_validator

ACTIVATIONS = (
    "tanh", "sigmoid", "relu", "linear", "hard_sigmoid", "softmax", "elu", "selu", "softplus",
    "softsign", "swish", "silu", "gelu", "relu6", "exponential", "leaky_relu", "mish", "log_softmax",
    "hard_silu", "hard_swish",
)
Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]

INITIALIZERS = {
    "glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform",
    "he_normal": "HeNormal", "lecun_uniform": "LecunUniform", "lecun_normal": "LecunNormal",
    "orthogonal": "Orthogonal", "zeros": "Zeros", "ones": "Ones", "random_uniform": "RandomUniform",
    "random_normal": "RandomNormal", "truncated_normal": "TruncatedNormal", "identity": "Identity",
    "variance_scaling": "VarianceScaling", "constant": "Constant",
}
InitializerName = Literal[tuple(INITIALIZERS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class InitializerSpec(_Strict):
    """``{type: random_uniform, minval: -0.1, maxval: 0.1, seed: 1}``"""

    type: InitializerName
    seed: Optional[int] = None
    minval: Optional[float] = None
    maxval: Optional[float] = None
    mean: Optional[float] = None
    stddev: Optional[Annotated[float, Field(gt=0)]] = None
    gain: Optional[float] = None
    value: Optional[float] = None
    scale: Optional[float] = None
    mode: Optional[Literal["fan_in", "fan_out", "fan_avg"]] = None
    distribution: Optional[Literal["truncated_normal", "untruncated_normal", "uniform"]] = None


Initializer = Union[InitializerName, InitializerSpec]


class RegularizerSpec(_Strict):
    """``{l1: 0.0, l2: 1e-4}``"""

    l1: NonNegativeFloat = 0.0
    l2: NonNegativeFloat = 0.0


Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class LayerBase(_Strict):
    name: Optional[str] = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    # graph specs only: references to the node's inputs
    inputs: Optional[list[str]] = None

    def call_inputs(self) -> list[str]:
        return list(self.inputs or [])


class _Recurrent(LayerBase):
    units: PositiveInt
    activation: Activation = "tanh"
    use_bias: bool = True
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    stateful: bool = False
    unroll: bool = False
    dropout: Rate = 0.0
    recurrent_dropout: Rate = 0.0
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer = "orthogonal"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Optional[RegularizerSpec] = None
    recurrent_regularizer: Optional[RegularizerSpec] = None
    bias_regularizer: Optional[RegularizerSpec] = None
    activity_regularizer: Optional[RegularizerSpec] = None
    # graph specs: references to initial states (h for GRU/SimpleRNN; h, c for LSTM)
    initial_state: Optional[list[str]] = None

    def call_inputs(self) -> list[str]:
        return list(self.inputs or []) + list(self.initial_state or [])

    n_states: ClassVar[int] = 1


class SimpleRNN(_Recurrent):
    type: Literal["SimpleRNN"]


class LSTM(_Recurrent):
    type: Literal["LSTM"]
    recurrent_activation: Activation = "sigmoid"
    unit_forget_bias: bool = True
    n_states: ClassVar[int] = 2


class GRU(_Recurrent):
    type: Literal["GRU"]
    recurrent_activation: Activation = "sigmoid"
    reset_after: bool = True


RecurrentLayer = Annotated[Union[SimpleRNN, LSTM, GRU], Field(discriminator="type")]


class Bidirectional(LayerBase):
    type: Literal["Bidirectional"]
    layer: RecurrentLayer
    merge_mode: Optional[Literal["concat", "sum", "ave", "mul"]] = "concat"
    initial_state: Optional[list[str]] = None

    @field_validator("merge_mode", mode="before")
    @classmethod
    def _none_string(cls, v):
        return None if isinstance(v, str) and v.lower() in ("none", "null") else v

    def call_inputs(self) -> list[str]:
        return list(self.inputs or []) + list(self.initial_state or [])


class Dense(LayerBase):
    type: Literal["Dense"]
    units: PositiveInt
    activation: Activation = "linear"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Optional[RegularizerSpec] = None
    bias_regularizer: Optional[RegularizerSpec] = None
    activity_regularizer: Optional[RegularizerSpec] = None


class Dropout(LayerBase):
    type: Literal["Dropout"]
    rate: Rate


class Conv1D(LayerBase):
    type: Literal["Conv1D"]
    filters: PositiveInt
    kernel_size: PositiveInt
    strides: PositiveInt = 1
    padding: Literal["valid", "same", "causal"] = "valid"
    dilation_rate: PositiveInt = 1
    activation: Activation = "linear"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Optional[RegularizerSpec] = None


class TimeDistributed(LayerBase):
    type: Literal["TimeDistributed"]
    layer: Annotated[Union[Dense, Dropout], Field(discriminator="type")]


class Embedding(LayerBase):
    type: Literal["Embedding"]
    output_dim: PositiveInt
    input_dim: Optional[PositiveInt] = None  # default: the token input's vocab_size
    mask_zero: bool = False
    embeddings_initializer: Initializer = "random_uniform"
    embeddings_regularizer: Optional[RegularizerSpec] = None


class Masking(LayerBase):
    type: Literal["Masking"]
    mask_value: float = 0.0


class GlobalMaxPooling1D(LayerBase):
    type: Literal["GlobalMaxPooling1D"]
    keepdims: bool = False


class GlobalAveragePooling1D(LayerBase):
    type: Literal["GlobalAveragePooling1D"]
    keepdims: bool = False


class Attention(LayerBase):
    """Luong-style attention; ``inputs: [query, value]`` or ``[query, value, key]``."""

    type: Literal["Attention"]
    use_scale: bool = False
    score_mode: Literal["dot", "concat"] = "dot"
    dropout: Rate = 0.0
    causal: bool = False


class MultiHeadAttention(LayerBase):
    """``inputs: [query, value]`` or ``[query, value, key]``; ``[x]`` means self-attention."""

    type: Literal["MultiHeadAttention"]
    num_heads: PositiveInt
    key_dim: PositiveInt
    value_dim: Optional[PositiveInt] = None
    dropout: Rate = 0.0
    use_bias: bool = True
    output_shape: Optional[PositiveInt] = None
    causal: bool = False


class Concatenate(LayerBase):
    type: Literal["Concatenate"]
    axis: int = -1


class Add(LayerBase):
    type: Literal["Add"]


class Multiply(LayerBase):
    type: Literal["Multiply"]


class Average(LayerBase):
    type: Literal["Average"]


class RepeatVector(LayerBase):
    type: Literal["RepeatVector"]
    n: PositiveInt


class ActivationLayer(LayerBase):
    type: Literal["Activation"]
    activation: Activation


class Flatten(LayerBase):
    type: Literal["Flatten"]


class LayerNormalization(LayerBase):
    type: Literal["LayerNormalization"]
    epsilon: Annotated[float, Field(gt=0)] = 1e-3


class Reshape(LayerBase):
    type: Literal["Reshape"]
    target_shape: list[int]


LAYER_CLASSES = (
    SimpleRNN, LSTM, GRU, Bidirectional, Dense, Dropout, Conv1D, TimeDistributed, Embedding, Masking,
    GlobalMaxPooling1D, GlobalAveragePooling1D, Attention, MultiHeadAttention, Concatenate, Add,
    Multiply, Average, RepeatVector, ActivationLayer, Flatten, LayerNormalization, Reshape,
)
LAYER_TYPES = tuple(c.model_fields["type"].annotation.__args__[0] for c in LAYER_CLASSES)
RECURRENT_TYPES = ("SimpleRNN", "LSTM", "GRU")

Layer = Annotated[Union[LAYER_CLASSES], Field(discriminator="type")]  # type: ignore[valid-type]


class InputSpec(_Strict):
    name: str = Field(default="input", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    shape: list[Optional[PositiveInt]] = Field(min_length=1, description="per-sample shape; null = free axis")
    dtype: Literal["float32", "int32", "int64"] = "float32"
    vocab_size: Optional[PositiveInt] = None
    batch_size: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _tokens(self):
        if self.vocab_size is not None and self.dtype == "float32":
            raise ValueError("vocab_size is only for integer token inputs (dtype int32/int64)")
        return self


class OptimizerSpec(_Strict):
    name: Literal["adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam", "adamax"] = "adam"
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    clipnorm: Optional[Annotated[float, Field(gt=0)]] = None
    clipvalue: Optional[Annotated[float, Field(gt=0)]] = None
    global_clipnorm: Optional[Annotated[float, Field(gt=0)]] = None
    momentum: Optional[Annotated[float, Field(ge=0, lt=1)]] = None
    weight_decay: Optional[NonNegativeFloat] = None


LOSSES = (
    "mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "mean_squared_error", "mean_absolute_error", "log_cosh",
)
METRICS = ("accuracy", "mae", "mse", "rmse", "binary_accuracy", "sparse_categorical_accuracy",
           "categorical_accuracy", "auc")


class CompileSpec(_Strict):
    optimizer: Union[Literal["adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam", "adamax"], OptimizerSpec] = "adam"
    loss: Union[Literal[LOSSES], list[Literal[LOSSES]]] = "mse"  # type: ignore[valid-type]
    metrics: list[Literal[METRICS]] = Field(default_factory=list)  # type: ignore[valid-type]

    def optimizer_spec(self) -> OptimizerSpec:
        return self.optimizer if isinstance(self.optimizer, OptimizerSpec) else OptimizerSpec(name=self.optimizer)


class DataSpec(_Strict):
    """How the model's training data is prepared (see :mod:`rnnedge.data`)."""

    kind: Literal["window", "text", "chars", "seq2seq", "sequence"]
    synthetic: Optional[str] = None     # the built-in dataset used when no --data is given
    samples: PositiveInt = 512
    # window (forecasting)
    window: Optional[PositiveInt] = None
    horizon: PositiveInt = 1
    column: Optional[str] = None
    # text / chars / seq2seq
    max_len: Optional[PositiveInt] = None
    padding: Literal["post", "pre"] = "post"
    lowercase: bool = True
    num_classes: Optional[PositiveInt] = None


class TrainSpec(_Strict):
    epochs: PositiveInt = 5
    batch_size: PositiveInt = 32
    validation_split: Annotated[float, Field(ge=0, lt=1)] = 0.2
    early_stopping: Optional[PositiveInt] = 3  # patience in epochs; null disables
    seed: int = 0


class Spec(_Strict):
    version: Literal[1] = 1
    name: str = "model"
    description: str = ""
    task: Literal["binary_classification", "classification", "regression", "forecast",
                  "generation", "seq2seq"] = "regression"
    inputs: list[InputSpec] = Field(min_length=1)
    layers: Optional[list[Layer]] = None  # type: ignore[valid-type]
    nodes: Optional[list[Layer]] = None   # type: ignore[valid-type]
    outputs: Optional[list[str]] = None
    compile: CompileSpec = Field(default_factory=CompileSpec)
    data: Optional[DataSpec] = None
    train: TrainSpec = Field(default_factory=TrainSpec)

    @model_validator(mode="after")
    def _form(self):
        if (self.layers is None) == (self.nodes is None):
            raise ValueError("give exactly one of 'layers' (a sequential chain) or 'nodes' (a graph)")
        if self.layers is not None:
            if not self.layers:
                raise ValueError("'layers' is empty")
            if len(self.inputs) != 1:
                raise ValueError("a sequential spec ('layers') takes exactly one input; use 'nodes' for several")
            if self.outputs:
                raise ValueError("'outputs' is for graph specs ('nodes'); a sequential spec outputs its last layer")
        else:
            if not self.nodes:
                raise ValueError("'nodes' is empty")
            if not self.outputs:
                raise ValueError("a graph spec ('nodes') needs 'outputs': the node names to output")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        return self

    @property
    def is_graph(self) -> bool:
        return self.nodes is not None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)
