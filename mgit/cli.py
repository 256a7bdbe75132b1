"""The ``mgit`` command line: a click group, the global options, and the one error table.

Commands live in ``mgit/commands/cmd_<name>.py``; each parses, calls the library, renders.
Errors from the library become one line (``mgit: error: ...``) plus a hint on stderr and an exit
code from :data:`mgit.errors.EXIT_CODES`; ``MGIT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from mgit import __version__
from mgit.errors import EXIT_CODES, MgitError

__all__ = ["cli", "main", "Context", "COMMAND_MODULES"]

#: Modules under ``mgit.commands`` whose ``COMMANDS`` list is added to the group.
COMMAND_MODULES = [
    "cmd_init",
    "cmd_add",
    "cmd_status",
    "cmd_commit",
    "cmd_import",
    "cmd_log",
    "cmd_show",
    "cmd_checkout",
    "cmd_export",
    "cmd_refs",
    "cmd_models",
    "cmd_stats",
    "cmd_maint",
    "cmd_lineage",
    "cmd_diff",
    "cmd_remote",
]


@dataclass
class Context:
    """Global options, handed to every command as ``ctx.obj``."""

    cwd: Path
    json: bool
    quiet: bool


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "cwd", type=click.Path(file_okay=False), default=None,
              help="Run as if mgit was started in PATH.", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.version_option(__version__, prog_name="mgit")
@click.pass_context
def cli(ctx: click.Context, cwd: str | None, as_json: bool, quiet: bool) -> None:
    """mgit: git for machine-learning models.

    A model folder is a repository; every model version is a commit whose parents are the
    models it was derived from. REF is a model name (its latest version), a tag, a commit id
    or unique prefix, with ~N and ^N.
    """
    base = Path(cwd).absolute() if cwd else Path.cwd()
    if cwd and not base.is_dir():
        raise click.UsageError(f"-C: no such folder: {cwd}")
    ctx.obj = Context(cwd=base, json=as_json, quiet=quiet or not sys.stderr.isatty())


def _late_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().obj.json = True


def _add_json_option(cmd: click.Command) -> None:
    """Accept ``--json`` after the command name too (``mgit stats --json``)."""
    if not any("--json" in getattr(p, "opts", ()) for p in cmd.params):
        cmd.params.append(click.Option(
            ["--json", "json_late"], is_flag=True, expose_value=False, callback=_late_json,
            help="Print the result as JSON (same as 'mgit --json ...').",
        ))
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _add_json_option(sub)


def _register() -> None:
    for mod in COMMAND_MODULES:
        m = importlib.import_module(f"mgit.commands.{mod}")
        for cmd in m.COMMANDS:
            _add_json_option(cmd)
            cli.add_command(cmd)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, map errors to one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="mgit", standalone_mode=False)
        return 0
    except MgitError as exc:
        if os.environ.get("MGIT_DEBUG") == "1":
            raise
        click.echo(f"mgit: error: {exc}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        code = 1
        for cls in type(exc).__mro__:
            if cls in EXIT_CODES:
                code = EXIT_CODES[cls]  # type: ignore[index]
                break
        return code
    except click.exceptions.Abort:
        click.echo("mgit: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("mgit: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if os.environ.get("MGIT_DEBUG") == "1":
            raise
        click.echo(f"mgit: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        return 1
