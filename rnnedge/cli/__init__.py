"""The ``rnnedge`` command line: a thin layer over the Python API.

Each command lives in its own module ``rnnedge.cli.<name>`` (a click command named
``command``) and is imported only when used, so ``rnnedge --help`` starts fast and the edge
commands never import TensorFlow. Library errors (:class:`rnnedge.errors.RnnedgeError`) become a
one-line message on stderr and their exit code: 1 failure (e.g. parity), 2 bad input or spec,
3 missing dependency (a missing optional package too: the message gives the pip command),
4 unsupported conversion.

Quiet by default: every command runs inside :func:`rnnedge.quiet.filtered_stderr`, which keeps
TensorFlow/absl/oneDNN/LiteRT/converter chatter (:data:`rnnedge.quiet.NOISE`) off the console;
``--verbose`` (or ``RNNEDGE_VERBOSE=1``) shows everything.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings

import click

COMMANDS = {
    "presets": "List the built-in model presets.",
    "build": "Build a Keras model from a spec or preset.",
    "train": "Train a spec or preset on its data (or its built-in dataset).",
    "inspect": "Show layers, shapes and parameter counts of a spec, preset or .keras model.",
    "export": "Export a model to ONNX, ORT, TFLite or TF.js, with a manifest.",
    "quantize": "Quantize the artifacts of an export folder.",
    "validate": "Check every artifact of an export folder against the Keras reference.",
    "run": "Run an artifact on inputs from a file.",
    "bench": "Benchmark artifacts on a runtime / execution provider.",
    "deploy": "Make a Raspberry Pi bundle from an export folder.",
    "verify": "Verify a deployment bundle (hashes, load, recorded sample).",
    "demo": "The whole pipeline on a preset: train, export, quantize, validate, bench, deploy.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in COMMANDS if importlib.util.find_spec(f"rnnedge.cli.{n}") is not None]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        try:
            mod = importlib.import_module(f"rnnedge.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"rnnedge.cli.{name}":
                return None
            raise
        return mod.command

    def invoke(self, ctx):
        """Library errors -> one line on stderr and their exit code (also under click's CliRunner);
        the command runs with C++ chatter filtered off stderr (unless --verbose)."""
        from rnnedge import quiet
        from rnnedge.errors import RnnedgeError, missing_module

        was = os.environ.get("RNNEDGE_VERBOSE")
        if ctx.params.get("verbose"):
            os.environ["RNNEDGE_VERBOSE"] = "1"
        quiet.quiet_environment()
        try:
            with quiet.filtered_stderr(), warnings.catch_warnings():
                if not quiet.verbose():
                    warnings.showwarning = _one_line_warning
                try:
                    return super().invoke(ctx)
                except ModuleNotFoundError as e:  # an optional package is missing: exit 3, how to install it
                    err = missing_module(e)
                    if err is None:
                        raise
                    raise err from e
        except RnnedgeError as e:
            if (ctx.obj or {}).get("debug") or os.environ.get("RNNEDGE_DEBUG"):
                raise
            from rich.markup import escape

            err_console().print(f"[bold red]error:[/] {escape(str(e))}", markup=True)
            ctx.exit(e.exit_code)
        finally:
            if was is None:
                os.environ.pop("RNNEDGE_VERBOSE", None)
            else:
                os.environ["RNNEDGE_VERBOSE"] = was

    def format_commands(self, ctx, formatter):
        rows = [(n, COMMANDS[n]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnedge", prog_name="rnnedge")
@click.option("--debug", is_flag=True, envvar="RNNEDGE_DEBUG", help="Show tracebacks on errors.")
@click.option("--verbose", is_flag=True, envvar="RNNEDGE_VERBOSE",
              help="Show everything the libraries print (TensorFlow, absl, oneDNN, LiteRT, converters).")
@click.pass_context
def cli(ctx, debug, verbose):
    """rnnedge: recurrent models from a spec to ONNX, TFLite, TF.js and a Raspberry Pi,
    with parity checks and benchmarks."""
    ctx.obj = {"debug": debug, "verbose": verbose}


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A Python warning as one ``warning: MESSAGE`` line (no source line; --verbose shows Python's form)."""
    if file is None:
        warn(message)
        return
    from rnnedge import quiet

    if quiet.is_noise(one_line(message)):
        return
    try:
        file.write(f"warning: {one_line(message)}\n")
    except (OSError, ValueError):
        pass


def show_warnings(said=(), caught=(), *, besides=()) -> None:
    """Print each Python warning of ``caught`` (``warnings.catch_warnings(record=True)``) that does
    not repeat an artifact warning of ``said`` or ``besides``, then the artifact warnings ``said``
    (``(artifact, text)`` pairs, :func:`rnnedge.manifest.artifact_warnings`)."""
    said = list(said)
    known = [one_line(text) for _, text in [*said, *besides]]
    for w in caught:
        if not any(one_line(w.message).split(": ", 1)[-1][:80] in text for text in known):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    for name, text in said:
        warn(text, artifact=name)


def one_line(message) -> str:
    """``message`` as one line: whitespace and newlines collapsed, a leading ``Warning:`` dropped
    (``warning: Warning: ...`` says it twice)."""
    text = " ".join(str(message).split())
    return text[len("warning:"):].lstrip() if text.lower().startswith("warning:") else text


def warn(message, *, artifact: str | None = None) -> None:
    """Print ``warning: MESSAGE`` on stderr, as one line (:func:`one_line`): the one place the CLI
    prints warnings (Python warnings, artifacts' warnings from manifests, deploy's). ``artifact``:
    the message is about that file, ``NAME: `` is put before it unless it already starts so."""
    from rich.markup import escape

    from rnnedge import quiet

    text = one_line(message)
    if not quiet.verbose() and quiet.is_noise(text):  # known noise (e.g. Keras's mask warning)
        return
    if artifact and not (text.startswith(artifact) and text[len(artifact):][:1] in (":", " ")):
        text = f"{artifact}: {text}"  # (a message that starts with the name says it once)
    try:
        err_console().print(f"[yellow]warning:[/] {escape(text)}")
    except (OSError, ValueError):
        pass


#: Width of a console whose stream is not a terminal (a log, a pipe): tables get room to print
#: whole; ``COLUMNS`` overrides it.
LOG_WIDTH = 200


def console(stderr: bool = False):
    """The rich console every command prints with (stdout, or stderr with ``stderr``).

    On a terminal: its width, rich's wrapping. Elsewhere (redirected to a file or a pipe): a
    message line is never wrapped (soft wrap: one line stays one line, whole, for grep and logs),
    tables are laid out :data:`LOG_WIDTH` wide (or ``COLUMNS``). No highlighting."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if c.is_terminal:
        return c
    try:
        width = int(os.environ.get("COLUMNS") or LOG_WIDTH)
    except ValueError:
        width = LOG_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=max(width, 40))


class Col:
    """A column of :func:`print_table`: ``name`` (its header; a space in it may break the header
    into lines), ``right`` (right-justified: numbers), ``wrap`` (its text may wrap, at spaces only;
    otherwise a cell stays on one line), ``drop`` (when the table does not fit the console, columns
    are left out highest ``drop`` first; None: always kept)."""

    def __init__(self, name: str, *, right: bool = False, wrap: bool = False, drop: int | None = None):
        self.name, self.right, self.wrap, self.drop = name, right, wrap, drop


def print_table(con, title, columns: list, rows: list, *, after=()) -> list[str]:
    """Print a table that reads in ``con``'s width (80 columns too): a cell is never broken inside
    a word (artifact names and numbers stay whole on one line; text columns and headers wrap at
    spaces only); when even that does not fit, the columns with a ``drop`` rank are left out,
    highest first, and a line below the table names them (``--json`` has them). ``rows``: cells as
    rich markup. ``after``: lines printed below the table (long notes that would make a column too
    tall). Returns the names of the columns left out."""
    from rich.table import Table
    from rich.text import Text

    cells = [[Text.from_markup(str(v)) for v in r] for r in rows]

    def longest_word(text: str) -> int:
        return max((len(w) for w in text.split()), default=0)

    def widths(i):  # (narrowest, natural) width of column i
        c = columns[i]
        vals = [r[i].plain for r in cells]
        lo = max([longest_word(c.name)] + [longest_word(v) if c.wrap else len(v) for v in vals])
        hi = max([len(c.name)] + [len(v) for v in vals])
        return lo, max(lo, hi)

    keep = list(range(len(columns)))
    while True:
        lohi = {i: widths(i) for i in keep}
        room = con.width - 3 * len(keep) - 1  # borders and a space of padding each side
        droppable = [i for i in keep if columns[i].drop is not None]
        if sum(lo for lo, _ in lohi.values()) <= room or not droppable:
            break
        keep.remove(max(droppable, key=lambda i: columns[i].drop))
    width = {i: lo for i, (lo, _) in lohi.items()}
    spare = room - sum(width.values())
    while spare > 0:  # grow the columns towards their natural width, one character at a time each
        grow = [i for i in keep if width[i] < lohi[i][1]]
        for i in grow[:spare]:
            width[i] += 1
        spare -= len(grow[:spare])
        if not grow:
            break
    t = Table(title=title)
    for i in keep:
        c = columns[i]
        t.add_column(Text(c.name, no_wrap=False, overflow="fold"), justify="right" if c.right else "left", width=width[i],
                     no_wrap=not c.wrap, overflow="fold")
    for r in cells:
        t.add_row(*(r[i] for i in keep))
    con.print(t)
    left_out = [c.name for i, c in enumerate(columns) if i not in keep]
    if left_out:
        con.print(f"(not shown at {con.width} columns: {', '.join(left_out)}; --json has them)")
    for line in after:
        con.print(line)
    return left_out


def err_console():
    """:func:`console` on stderr (errors, warnings)."""
    return console(stderr=True)


def main(argv=None):
    from rnnedge.errors import RnnedgeError

    debug = "--debug" in (argv or sys.argv[1:]) or os.environ.get("RNNEDGE_DEBUG")
    try:
        rv = cli.main(args=argv, prog_name="rnnedge", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except RnnedgeError as e:
        if debug:
            raise
        from rich.markup import escape

        err_console().print(f"[bold red]error:[/] {escape(str(e))}", markup=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        err_console().print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # an internal error: one line, the traceback with --debug
        if debug:
            raise
        err_console().print(f"[bold red]internal error:[/] {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            "  (run with --debug for the traceback)")
        sys.exit(1)


def print_json(obj) -> None:
    import json

    from rnnedge.manifest import _json_default

    click.echo(json.dumps(obj, indent=2, default=_json_default))


def handle_errors(fn):
    """For a command used on its own (outside the group): library errors -> message + exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from rnnedge.errors import RnnedgeError

        try:
            return fn(*a, **kw)
        except RnnedgeError as e:
            if os.environ.get("RNNEDGE_DEBUG"):
                raise
            from rich.markup import escape

            err_console().print(f"[bold red]error:[/] {escape(str(e))}", markup=True)
            sys.exit(e.exit_code)

    return wrapper
