"""The one rule for naming and matching model outputs (and inputs) across formats. No numpy.

Outputs are matched **by position**, never by name: output ``k`` of an artifact is compared with
output ``k`` of the Keras model. Names cannot be trusted for this: one layer can make several
outputs (``o, h, c = LSTM(4, return_state=True)(x)``, ``Bidirectional(..., merge_mode=None)``),
and Keras then names all of them after the layer (``model.output_names == ['lstm', 'lstm',
'lstm']``); runtimes rename, reorder or drop decorations. So every exporter names its outputs
with :func:`output_names` (repeated names get ``_1``, ``_2``... suffixes, Keras's own scheme for
layer names), every runner returns its outputs in the model's order (:class:`rnnedge.runtime.Runner`),
and validation, ``rnnedge run`` and ``rnnedge bench`` pair them with :func:`match_outputs`.

Inputs are matched by name (Keras input names are unique; the manifest's ``keras_name`` /
``signature_name`` are aliases), by position only when no name matches at all:
:func:`match_inputs`.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

__all__ = ["unique_names", "output_names", "match_outputs", "match_inputs", "name_of"]


def name_of(x: Any) -> str:
    """The name of a tensor description: a str, a dict with ``name``, or an object with ``.name``."""
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        return str(x["name"])
    return str(x.name)


def unique_names(names: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """``names`` with repeats made unique: the first keeps its name, later ones get ``_1``,
    ``_2``... (the next suffix not used by any name of the list or of ``taken``).

    >>> unique_names(["lstm", "lstm", "lstm", "dense"])
    ['lstm', 'lstm_1', 'lstm_2', 'dense']
    >>> unique_names(["lstm", "lstm_1", "lstm"])
    ['lstm', 'lstm_1', 'lstm_2']
    """
    names = [str(n) for n in names]
    used = set(taken)
    reserved = set(names)
    out: list[str] = []
    for n in names:
        if n not in used:
            out.append(n)
            used.add(n)
            continue
        k = 1
        while f"{n}_{k}" in used or f"{n}_{k}" in reserved:
            k += 1
        out.append(f"{n}_{k}")
        used.add(out[-1])
    return out


def output_names(model, taken: Iterable[str] = ()) -> list[str]:
    """Unique names for a Keras model's outputs, in the model's order: ``model.output_names``
    (else the name of the layer that makes each output) made unique by :func:`unique_names`.
    Every exporter and the Keras runner name outputs with this."""
    outs = list(getattr(model, "outputs", None) or [])
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(outs):
        names = []
        for i, t in enumerate(outs):
            hist = getattr(t, "_keras_history", None)
            op = getattr(hist, "operation", None) if hist is not None else None
            names.append(getattr(op, "name", None) or f"output_{i}")
    return unique_names(names, taken)


def match_outputs(reference: Sequence[Any], artifact: Sequence[Any]) -> list[tuple[str, str]]:
    """Pair the reference's outputs with the artifact's, by position: ``[(ref_name, art_name)]``
    in the model's order. Both lists hold names or tensor descriptions (TensorInfo, dicts).

    Raises :class:`~rnnedge.errors.UsageError` when the counts differ (naming both lists).
    """
    ref = [name_of(x) for x in reference]
    art = [name_of(x) for x in artifact]
    if len(ref) != len(art):
        from rnnedge.errors import UsageError

        raise UsageError(f"the artifact has {len(art)} output(s) {art}, the reference {len(ref)} {ref} "
                         "(outputs are compared by position)")
    return list(zip(ref, art))


def match_inputs(reference: Sequence[Any], artifact: Sequence[Any],
                 aliases: dict[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """``({ref_name: art_name}, note)``: inputs by name (an artifact name or its alias in
    ``aliases``, e.g. the manifest's ``keras_name``), else by position when no name matches at
    all (``note`` then says so). Raises :class:`~rnnedge.errors.UsageError` when the counts differ
    or only some names match."""
    from rnnedge.errors import UsageError

    ref = [name_of(x) for x in reference]
    art = [name_of(x) for x in artifact]
    if len(ref) != len(art):
        raise UsageError(f"the artifact has {len(art)} input(s) {art}, the reference {len(ref)} {ref}")
    if set(ref) == set(art):
        return {n: n for n in ref}, None
    if aliases:
        keyed = {aliases.get(a, a): a for a in art}
        if set(keyed) == set(ref):
            return {n: keyed[n] for n in ref}, None
    if not set(ref) & set(art) and not (aliases and set(ref) & set(aliases.values())):
        return dict(zip(ref, art)), "inputs matched by position"
    raise UsageError(f"mismatched input names: the artifact has {art}, the reference {ref}")
