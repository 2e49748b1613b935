"""The ``mnbench`` command line. Commands parse options, call the libraries and print; nothing else.

One error boundary (``main``): expected failures (each stage's errors, ours, click usage errors) print one
line on stderr and exit with the code ``EXIT_CODES`` gives; anything else is a bug and shows a traceback
only with ``-v``.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from device_bench.errors import BenchError, BenchInputError, DeviceError, UnknownSerial
from export.errors import ExportError, ExportWriteError
from mobilenets_tf.errors import SpecError
from mobilenets_tf.registry import list_versions

from . import __version__
from .errors import EXPECTED, MnbenchError, MnbenchFailure

# Exit status of each kind of expected failure; the first class an error is an instance of decides.
EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (UnknownSerial, 2),      # no adb server or USB phone has the serial given (a typo)
    (DeviceError, 3),        # a phone or adb server could not be reached, or dropped the connection
    (BenchInputError, 2),    # results, model files or options the benchmark tools cannot use
    (BenchError, 1),         # a benchmark that failed or printed nothing we can read
    (ExportWriteError, 2),   # the disk refused a model or its sidecar (full, read-only)
    (ExportError, 1),        # a model that could not be converted, calibrated, verified or written
    (SpecError, 2),          # an architecture, width, resolution or knob the builders do not accept
    (MnbenchFailure, 1),     # a composed feature that could not finish (training)
    (MnbenchError, 2),       # bad input to a composed feature
)


def exit_code(error: BaseException) -> int:
    """The exit status for an expected failure (``EXIT_CODES``)."""
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))

VERSIONS = tuple(list_versions())


def parse_knobs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("separable=false", ...)`` -> ``{"separable": "false"}``; types are checked by the registry."""
    knobs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        knobs[key.strip()] = value.strip()
    return knobs


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


class _InOrder(click.Group):
    """Lists commands in the order they were added (the order of a user's work), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_InOrder, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="mnbench")
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Build, export and benchmark MobileNets on this CPU and on Android phones."""
    ctx.obj = {"verbose": verbose}
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from .commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    _register()
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="mnbench", standalone_mode=False)
        return code if isinstance(code, int) else 0    # click returns (not raises) a command's Exit code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        click.echo("mnbench: interrupted", err=True)
        return 130
    except click.ClickException as error:
        click.echo(f"mnbench: error: {_one_line(error.format_message())}", err=True)
        return error.exit_code
    except EXPECTED as error:
        if verbose:
            logging.getLogger("mnbench").exception("details")
        click.echo(f"mnbench: error: {_one_line(str(error))}", err=True)
        return exit_code(error)
    except KeyboardInterrupt:
        click.echo("mnbench: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # a bug: say so plainly, traceback on request
        if verbose:
            raise
        click.echo(f"mnbench: internal error: {type(error).__name__}: {_one_line(str(error))} "
                   "(run with -v for the traceback)", err=True)
        return 1
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
