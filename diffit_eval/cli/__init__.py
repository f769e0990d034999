"""The `diffit-eval` command line: a thin Typer layer over the library.

Each command group lives in its own module in this package (`diffit_eval/cli/<command>.py`:
options, one library call, printing) and registers itself on :data:`app`. :func:`main` turns every user error (and every usage error) into one
line on stderr and a non-zero exit code, never a traceback. Exit codes (one meaning each, see
:mod:`diffit_eval.errors`): 1 bad input, 2 missing asset or usage error, 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

# Idle OpenMP threads that spin slowed 2-thread CPU calls 10-20x on shared machines; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from diffit.errors import DiffitError

from diffit_eval import __version__
from diffit_eval.console import HELP_WIDTH, help_width
from diffit_eval.errors import Interrupted, UserError, user_error

app = typer.Typer(
    name="diffit-eval",
    help="Reproduce and extend DiffiT's Table S.1: models, samplers, 50K-sample generation, FID/sFID/IS/P/R.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help (no rich panels): it wraps to the terminal (diffit_eval.console), options
    # and their descriptions in two columns that stay readable at 80 columns.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH},
)

# Typer >= 0.26 vendors click; reach the exception classes through typer either way.
_UsageError = type(typer.BadParameter("")).__mro__[1]
_ClickException = type(typer.BadParameter("")).__mro__[2]
_BadParameter = type(typer.BadParameter(""))
_Exit = typer.Exit
_Abort = typer.Abort

# The arguments of the running command, for the "resume with" line an interrupted command prints.
COMMAND_ARGS: list[str] = []

# The order here is the order of `diffit-eval --help`: the data path, then the tools around it.
COMMAND_MODULES = ("demo", "sample", "train", "metrics", "sweep", "ref", "table", "regress", "models", "weights")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diffit-eval {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Reproduce and extend DiffiT's Table S.1."""


def fail(message: str, code: int = 1) -> None:
    """Print one error line on stderr and exit.

    A value the user typed may hold a newline (`--metrics $'fid\\nis'`); it is shown escaped, so the
    error stays one line that a script can read.
    """
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    print(f"diffit-eval: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def command_line() -> str:
    """The command being run, as a shell line (what an interrupted command tells the user to re-run)."""
    import shlex

    return shlex.join(["diffit-eval", *COMMAND_ARGS])


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command = typer.main.get_command(app)
    COMMAND_ARGS[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        rc = command.main(
            args=argv, prog_name="diffit-eval", standalone_mode=False, terminal_width=max(help_width() - 2, 50)
        )
    except Interrupted as e:
        print(f"diffit-eval: interrupted: {e}", file=sys.stderr)
        raise SystemExit(e.code) from None
    except UserError as e:
        fail(str(e), e.code)
    except DiffitError as e:  # one not translated at its call site: 1 bad input, 2 asset not here
        fail(str(e), user_error(e).code)
    except _Exit as e:
        code = getattr(e, "exit_code", 0)
        if code == 130:  # Ctrl-C outside a command's own handler: typer turned it into Exit(130)
            print(f"diffit-eval: interrupted before anything was written; run again: {command_line()}", file=sys.stderr)
        raise SystemExit(code) from None
    except _Abort:
        fail("aborted", 130)
    except _BadParameter as e:  # a value the user typed is bad input (1), like every command's own checks;
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""  # a missing one is usage (2)
        fail(e.format_message() + hint, 2 if type(e).__name__ == "MissingParameter" else 1)
    except _UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        fail(e.format_message() + hint, 2)
    except _ClickException as e:
        fail(e.format_message(), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as e:  # a folder that cannot be written, a full disk: the path, not a traceback
        fail(f"{e.strerror or type(e).__name__}: {e.filename or e}", 1)
    except MemoryError:
        fail("out of memory; use fewer samples or a smaller --batch-size", 1)
    if rc == 130:  # the same Ctrl-C, when click hands typer's Exit(130) back as a return code
        print(f"diffit-eval: interrupted before anything was written; run again: {command_line()}", file=sys.stderr)
    raise SystemExit(rc if isinstance(rc, int) else 0)


# Last, so that a command module may import what is above (`command_line`, `fail`) from here.
for _name in COMMAND_MODULES:
    importlib.import_module(f"diffit_eval.cli.{_name}").register(app)
