"""The ``mnbench`` command line. Commands parse options, call the libraries and print; nothing else.

One error boundary (``main``): expected failures (``MnbenchError``, click usage errors) print one line on
stderr and exit non-zero; anything else is a bug and shows a traceback only with ``-v``.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from . import __version__
from .errors import MnbenchError

VERSIONS = ("v1", "v2", "v3-large", "v3-small")


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
    except MnbenchError as error:
        if verbose:
            logging.getLogger("mnbench").exception("details")
        click.echo(f"mnbench: error: {_one_line(str(error))}", err=True)
        return error.exit_code
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
