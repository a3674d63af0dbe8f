"""Numbers to words: a sequence-to-sequence LSTM, trained, exported and decoded on the edge.

The task
--------
Read the digits of an integer 0..9999 and write it out in English words::

    "4071"  ->  four thousand seventy one
    "950"   ->  nine hundred fifty

The model (``examples/specs/seq2seq_numbers.yaml``) is an encoder-decoder: an LSTM reads the
digits (one token per digit) and hands its final h and c states to a decoder LSTM, which is
trained with *teacher forcing*: it reads ``<start> four thousand seventy`` and learns to output
``four thousand seventy one <end>``, a softmax over 33 word ids at every position.

At inference there is no teacher: :func:`rnnedge.decoding.greedy_decode` feeds ``<start>``,
takes the most likely word, appends it, and runs the same exported model again with the longer
prefix until ``<end>`` (numpy + one runtime, no TensorFlow). That costs O(T^2) decoder steps
for T words (here T <= 7) and is exact, because the decoder is causal.

The data
--------
Generated here, exactly: ``number_to_words`` spells every integer 0..9999. The numbers are
shuffled once (``--seed``) and ``--test-numbers`` of them (1000) are held out: they are never
trained on, so the held-out accuracy measures whether the model learned to *compose* words for
numbers it never saw (e.g. 4071 while training on 4072, 3071, 71...). ``rnnedge.train`` keeps
10 % of the training numbers for early stopping.

Run it
------
::

    python examples/seq2seq_numbers.py                       # full run, a few minutes on 2 CPU cores
    python examples/seq2seq_numbers.py --quick -o /tmp/s2s   # plumbing only (seconds of training)
    python examples/seq2seq_numbers.py --epochs 60 --seed 1

What it prints
--------------
1. data: the vocabularies and the train / held-out split;
2. spec, 3. train: the spec file and the training curve (teacher-forced token accuracy);
4. the pipeline tables from ``rnnedge.showcase``: export (ONNX, ORT, TFLite, TF.js when Node is
   set up), quantize (int8/fp16 ONNX, dynamic/fp16/int8 TFLite), parity against Keras for every
   artifact (both token inputs fed), CPU latency of one full forward pass, the Raspberry Pi
   bundle (verified). Int8 calibration and the parity check use ``<out>/calibration.npz``:
   256 *training* numbers as model inputs (digits; teacher-forced word prefixes), what the model
   really sees, instead of random token ids;
5. the task on the held-out numbers, greedy-decoded in each artifact's own runtime: exact-match
   accuracy (the whole word sequence right), token accuracy, agreement with the Keras model's
   decoded sequences, and two trivial baselines (the most frequent training sequence; the
   per-position majority word);
6. five held-out numbers decoded by ``model.int8.onnx``.
Everything lands in ``<out>/summary.json``. Exit code 0 when parity and the bundle check pass
and every artifact decodes, 1 otherwise (the reason is printed).

The same with the command line
------------------------------
The training arrays are made by this script (``rnnedge train`` has no number-to-words data
kind); from the trained model on::

    rnnedge export <out>/model.keras --format onnx --format ort --format tflite -o <out>/export
    rnnedge quantize <out>/export --mode int8 --mode fp16 --mode dynamic
    rnnedge validate <out>/export
    rnnedge bench <out>/export/model.onnx <out>/export/model.tflite --seq-len 7
    rnnedge deploy <out>/export --runtime litert -o <out>/bundle && rnnedge verify <out>/bundle
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import click  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SPEC = Path(__file__).parent / "specs" / "seq2seq_numbers.yaml"
console = Console()

# --------------------------------------------------------------------------- the task
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
PAD, START, END = 0, 1, 2
SOURCE_VOCAB = ["<pad>"] + list("0123456789")                         # 11 ids: 0 = padding
TARGET_VOCAB = ["<pad>", "<start>", "<end>"] + ONES + TENS[2:] + ["hundred", "thousand"]  # 33 ids
TARGET_ID = {w: i for i, w in enumerate(TARGET_VOCAB)}
MAX_NUMBER = 9999
MAX_DIGITS = len(str(MAX_NUMBER))  # 4
MAX_WORDS = 6                      # "seven thousand seven hundred seventy seven"
DECODE_LEN = MAX_WORDS + 1         # the words and <end>
CALIB_LEN = 32    # calibration rows are padded to >= any fixed length an export picks (TFLite: 32)
EXPECTED_QUANTIZED = ("model.int8.onnx", "model.fp16.onnx", "model.int8.tflite", "model.fp16.tflite",
                      "model.dynamic.tflite")
TFJS_NUMBERS = 200  # TF.js runs in a Node subprocess per call: decode a subset of the test set


def number_to_words(n: int) -> list[str]:
    """English words for 0 <= n <= 9999, without "and": 4071 -> four thousand seventy one."""
    if n == 0:
        return ["zero"]
    words: list[str] = []
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [ONES[thousands], "thousand"]
    if hundreds:
        words += [ONES[hundreds], "hundred"]
    if rest >= 20:
        words.append(TENS[rest // 10])
        if rest % 10:
            words.append(ONES[rest % 10])
    elif rest:
        words.append(ONES[rest])
    return words


def encode_numbers(numbers) -> np.ndarray:
    """Digits -> ids (``"4071"`` -> 5 1 8 2), post-padded with 0 to MAX_DIGITS."""
    x = np.zeros((len(numbers), MAX_DIGITS), np.int32)
    for r, n in enumerate(numbers):
        ids = [SOURCE_VOCAB.index(c) for c in str(int(n))]
        x[r, :len(ids)] = ids
    return x


def teacher_forcing(numbers) -> tuple[np.ndarray, np.ndarray]:
    """(decoder inputs ``<start> w1 .. wk``, targets ``w1 .. wk <end>``), post-padded with 0."""
    dec = np.zeros((len(numbers), DECODE_LEN), np.int32)
    tgt = np.zeros((len(numbers), DECODE_LEN), np.int32)
    for r, n in enumerate(numbers):
        ids = [TARGET_ID[w] for w in number_to_words(int(n))]
        dec[r, 0] = START
        dec[r, 1:len(ids) + 1] = ids
        tgt[r, :len(ids)] = ids
        tgt[r, len(ids)] = END
    return dec, tgt


def words_of(ids) -> str:
    from rnnedge.decoding import trim

    return " ".join(TARGET_VOCAB[i] for i in trim(ids, END, PAD))


# --------------------------------------------------------------------------- evaluation
def sequence_scores(decoded: np.ndarray, target: np.ndarray) -> dict:
    """Exact match (the whole sequence up to and including <end>) and token accuracy (position
    by position over the target's tokens, <end> included)."""
    real = target != PAD
    same = (decoded == target) | ~real
    return {"exact_match": float(np.mean(same.all(axis=1))),
            "token_accuracy": float((decoded == target)[real].mean())}


def decode_with(path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Greedy-decode ``x`` in the artifact's own runtime; (tokens, seconds)."""
    from rnnedge import open_runner
    from rnnedge.decoding import greedy_decode

    with open_runner(path) as r:
        t0 = time.perf_counter()
        # constant decoder width: one traced graph in Keras, no tensor re-allocation in LiteRT
        out = greedy_decode(r, x, START, END, DECODE_LEN, pad_to=DECODE_LEN,
                            encoder_input="encoder_tokens", decoder_input="decoder_tokens")
        return out, time.perf_counter() - t0


def baselines(train_numbers, target: np.ndarray) -> dict:
    """Trivial predictors: the most frequent training sequence, and the majority word per position."""
    _, tr = teacher_forcing(train_numbers)
    seqs = Counter(map(tuple, tr.tolist()))
    most = np.asarray(seqs.most_common(1)[0][0], np.int32)
    per_pos = np.asarray([Counter(tr[:, t].tolist()).most_common(1)[0][0] for t in range(tr.shape[1])], np.int32)
    return {"most frequent training sequence": {**sequence_scores(np.tile(most, (len(target), 1)), target),
                                                "predicts": words_of(most)},
            "per-position majority word": {**sequence_scores(np.tile(per_pos, (len(target), 1)), target),
                                           "predicts": words_of(per_pos)}}


def write_calibration(path: Path, numbers) -> Path:
    """Model-ready inputs from *training* numbers: int8 calibration and the parity check run on
    what the model really sees (digits; a teacher-forced word prefix), not random token ids."""
    from rnnedge.manifest import atomic_path

    dec, _ = teacher_forcing(numbers)
    pad = lambda a: np.pad(a, ((0, 0), (0, CALIB_LEN - a.shape[1])))  # noqa: E731 - post-padding
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, encoder_tokens=pad(encode_numbers(numbers)), decoder_tokens=pad(dec))
    return path


def _f(v, digits=4):
    return "" if v is None else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- main
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/seq2seq_numbers"),
              show_default=True, help="output folder")
@click.option("--quick", is_flag=True, help="tiny data, model and bench: checks the plumbing in seconds")
@click.option("--epochs", type=int, default=None, help="training epochs (default: the spec's, 2 with --quick)")
@click.option("--test-numbers", type=click.IntRange(10, 5000), default=1000, show_default=True,
              help="numbers held out for the final test (never trained on)")
@click.option("--seed", type=int, default=0, show_default=True)
def main(out: Path, quick, epochs, test_numbers, seed):
    import rnnedge
    from rnnedge.showcase import deliver, finish, summary_tables

    out.mkdir(parents=True, exist_ok=True)
    # 1. data: every number once, a disjoint held-out set ---------------------------------
    order = np.random.default_rng(seed).permutation(MAX_NUMBER + 1)
    n_test = 40 if quick else test_numbers
    test_nums, train_nums = np.sort(order[:n_test]), order[n_test:]
    if quick:
        train_nums = train_nums[:600]
    assert not set(test_nums.tolist()) & set(train_nums.tolist())
    x_train = encode_numbers(train_nums)
    dec_train, y_train = teacher_forcing(train_nums)
    x_test = encode_numbers(test_nums)
    _, y_test = teacher_forcing(test_nums)
    info = {"source": "generated: number_to_words(0..9999) in this script", "numbers": f"0..{MAX_NUMBER}",
            "train": len(train_nums), "test": len(test_nums), "seed": seed,
            "source_vocab": len(SOURCE_VOCAB), "target_vocab": len(TARGET_VOCAB),
            "max_digits": MAX_DIGITS, "max_words": MAX_WORDS,
            "test_numbers": test_nums.tolist(), "train_numbers": np.sort(train_nums).tolist()}
    console.print(f"[bold]data:[/] numbers 0..{MAX_NUMBER} -> English words; {len(train_nums)} train / "
                  f"{len(test_nums)} held-out test numbers (disjoint); vocabularies: {len(SOURCE_VOCAB)} digit ids, "
                  f"{len(TARGET_VOCAB)} word ids")

    # 2. spec -------------------------------------------------------------------------------
    spec = rnnedge.load_spec(SPEC)
    if quick:  # smaller, so the test trains in seconds
        d = spec.dump()
        for node in d["nodes"]:
            if node["type"] == "LSTM":
                node["units"] = 8
        spec = rnnedge.load_spec(d)
    console.print(f"[bold]spec:[/] {SPEC.name}: {spec.description}")

    # 3. train with teacher forcing ----------------------------------------------------------
    preprocessing = {
        "kind": "seq2seq", "task": "number_to_words", "pad_id": PAD, "start_id": START, "end_id": END,
        "source_vocab": SOURCE_VOCAB, "target_vocab": TARGET_VOCAB, "padding": "post",
        "max_source_len": MAX_DIGITS, "max_target_len": DECODE_LEN,
        "inputs": {"encoder_tokens": {"vocab_size": len(SOURCE_VOCAB)},
                   "decoder_tokens": {"vocab_size": len(TARGET_VOCAB)}},
    }
    tr = rnnedge.train(spec, data=({"encoder_tokens": x_train, "decoder_tokens": dec_train}, y_train),
                       preprocessing=preprocessing, out=out / "model.keras",
                       epochs=epochs or (2 if quick else None), seed=seed, progress=not quick)
    console.print(f"[bold]train:[/] {tr.info['epochs_run']} epochs; " + ", ".join(
        f"{k}={v:.3g}" for k, v in tr.metrics.items() if k.startswith("val_")))

    # 4. export, quantize, validate, bench, deploy, verify -----------------------------------
    calib_nums = np.random.default_rng(seed + 1).choice(train_nums, size=min(256, len(train_nums)), replace=False)
    calibration = write_calibration(out / "calibration.npz", calib_nums)
    res = deliver(out / "model.keras", out, bench_seq_len=DECODE_LEN, bench_runs=5 if quick else 30,
                  deploy_runtime="litert", calibration=calibration,
                  on_step=lambda s, phase: phase == "start" and console.print(f"[bold]{s}[/] ..."))
    for t in summary_tables(res, title="seq2seq_numbers"):
        console.print(t)
    console.print(f"bundle: {res.bundle} (verified: {'yes' if res.ok else 'NO'})")
    missing = sorted(set(EXPECTED_QUANTIZED) - set(res.artifacts))
    if missing:  # quantize reports a failed mode and goes on (e.g. onnxruntime crashing on an fp16 graph)
        console.print(f"[yellow]not produced by quantize:[/] {', '.join(missing)}")

    # 5. greedy decoding of the held-out numbers, in each artifact's runtime --------------
    export_dir = Path(res.export_dir)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    names = sorted((n for n, e in manifest["artifacts"].items()
                    if n.endswith((".onnx", ".ort", ".tflite")) or e.get("format") == "tfjs"),
                   key=lambda n: (n.count(".") > 1, n))
    task: dict[str, dict] = {}
    decoded: dict[str, np.ndarray] = {}
    for name in ["reference.keras"] + names:
        path = export_dir / manifest["artifacts"][name].get("path", name) if name != "reference.keras" \
            else export_dir / name
        n = TFJS_NUMBERS if manifest["artifacts"][name].get("format") == "tfjs" else len(x_test)
        try:
            decoded[name], secs = decode_with(path, x_test[:n])
        except Exception as e:  # noqa: BLE001 - one runtime failing must not hide the others
            task[name] = {"error": f"{type(e).__name__}: {e}"[:400]}
            continue
        n = len(decoded[name])
        task[name] = {**sequence_scores(decoded[name], y_test[:n]), "numbers": n,
                      "decode_seconds": round(secs, 2)}
        if "reference.keras" in decoded and name != "reference.keras":
            task[name]["same_sequences_as_keras"] = float(np.mean(
                (decoded[name] == decoded["reference.keras"][:n]).all(axis=1)))
    base = baselines(train_nums, y_test)
    task.update(base)
    t = Table(title=f"held-out test: {len(test_nums)} numbers never trained on (greedy decoding)")
    for c in ("model", "numbers", "exact match", "token accuracy", "same sequence as Keras", "decode s"):
        t.add_column(c)
    for name, row in task.items():
        if "error" in row:
            t.add_row(name, "", "[red]error[/]", row["error"][:90], "", "")
        else:
            t.add_row(name, str(row.get("numbers", len(test_nums))), _f(row["exact_match"]),
                      _f(row["token_accuracy"]), _f(row.get("same_sequences_as_keras")),
                      str(row.get("decode_seconds", "")))
    console.print(t)

    # 6. five held-out numbers, decoded by the int8 ONNX model -------------------------------
    examples = []
    show = "model.int8.onnx" if "model.int8.onnx" in decoded else next(iter(decoded), None)
    if show:
        picks = np.random.default_rng(seed).choice(len(test_nums), size=min(5, len(test_nums)), replace=False)
        e = Table(title=f"{show}: five held-out numbers")
        for c in ("number", "decoded", "expected", "ok"):
            e.add_column(c)
        for i in sorted(picks):
            got, want = words_of(decoded[show][i]), " ".join(number_to_words(int(test_nums[i])))
            examples.append({"number": int(test_nums[i]), "decoded": got, "expected": want, "ok": got == want})
            e.add_row(str(test_nums[i]), got, want, "✔" if got == want else "✘")
        console.print(e)

    # summary --------------------------------------------------------------------------------
    validation = res.summary()["validation"]
    failed = [n for n, a in validation.items() if a["verdict"] in ("fail", "error")]
    reasons = ([f"parity failed: {', '.join(failed)}"] if failed else []) \
        + ([] if res.ok or failed else ["bundle verification failed"]) \
        + [f"greedy decoding errored in {n}" for n, r in task.items() if "error" in r]
    ok = not reasons
    pipeline = {**res.summary(), "quantize_not_produced": missing,
                "calibration": {"file": str(calibration), "numbers": len(calib_nums), "from": "training numbers"}}
    summary = {"example": "seq2seq_numbers", "ok": ok, "reasons": reasons, "quick": quick, "data": info,
               "train": {"epochs_run": tr.info["epochs_run"], "metrics": tr.metrics},
               "task": {"metric": "exact_match", "decoding": "greedy (rnnedge.decoding.greedy_decode)",
                        "held_out": task, "examples": examples, "examples_from": show},
               "pipeline": pipeline}
    sys.exit(finish(summary, out, console))


if __name__ == "__main__":
    main()
