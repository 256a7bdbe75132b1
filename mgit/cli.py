"""The ``mgit`` command line: a click group, the global options, and the one error table.

Commands live in ``mgit/commands/cmd_<name>.py``; each parses, calls the library, renders.
:data:`COMMANDS` below is the one place that names them: ``mgit --help`` (and shell
completion of command names) is drawn from it, and only the module of the command that runs
is imported, so that start-up stays cheap.
Errors from the library become one line (``mgit: error: ...``) plus a hint on stderr and an exit
code from :data:`mgit.errors.EXIT_CODES`; ``MGIT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from mgit import __version__
from mgit.errors import EXIT_CODES, MgitError, MgitWarning

__all__ = ["COMMANDS", "COMMAND_MODULES", "Context", "cli", "main", "run"]

#: Every command: name -> (its module under ``mgit.commands``, the one-line help that
#: ``mgit --help`` shows). The help is the first sentence of the command's docstring (a test
#: checks they agree); the module is imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("cmd_init", "Create a repository in PATH (default: the current folder)."),
    "add": ("cmd_add", "Stage files (or folders) of the working tree for the next commit."),
    "status": ("cmd_status", "Show staged, modified and untracked files."),
    "restore": (
        "cmd_restore",
        "Discard changes to PATH: unstage them (--staged), or rewrite the working files.",
    ),
    "rm": ("cmd_restore", "Stage the deletion of tracked files and delete them from the working tree."),
    "commit": ("cmd_commit", "Record the staged files as a new model version."),
    "import": ("cmd_import", "Commit the model folder DIRECTORY as a version of model MODEL."),
    "log": ("cmd_log", "Show model versions and how they derive from each other, newest first."),
    "show": ("cmd_show", "Show a model version: lineage, metadata, files."),
    "checkout": ("cmd_checkout", "Make the working tree the files of REF."),
    "export": (
        "cmd_export",
        "Write REF's files into DIRECTORY, byte-identical to what was committed.",
    ),
    "branch": ("cmd_refs", "List model lines, or start model line NAME at REF (default HEAD)."),
    "tag": ("cmd_refs", "List tags, or tag REF (default HEAD) as NAME."),
    "models": (
        "cmd_models",
        "Every model line with its latest version and the model it derives from.",
    ),
    "stats": ("cmd_stats", "Logical bytes, stored bytes and their ratio, per model and in total."),
    "fsck": ("cmd_maint", "Verify every object and that every ref's history is complete."),
    "gc": ("cmd_maint", "Delete objects that no model version needs, and pack the refs."),
    "lineage": (
        "cmd_lineage",
        "The lineage graph: models as nodes, derivations and versions as edges.",
    ),
    "find": ("cmd_lineage", "Find models by task, relation, metadata, or ancestry."),
    "diff": ("cmd_diff", "What changed from REF_A to REF_B (default: the working tree)."),
    "remote": ("cmd_remote", "Manage remotes (shared folders and s3:// prefixes)."),
    "push": (
        "cmd_remote",
        "Send models to REMOTE (default: origin): only the objects it lacks, then its refs.",
    ),
    "fetch": (
        "cmd_remote",
        "Download new versions from REMOTE (default: origin) into refs/remotes/REMOTE/.",
    ),
    "pull": (
        "cmd_remote",
        "Fetch MODEL (default: the checked-out one) and fast-forward it (and the working tree).",
    ),
    "clone": (
        "cmd_remote",
        "Create a repository in DIRECTORY from the remote at URL and check out a model.",
    ),
    "test": ("cmd_test", "Stored tests run on model versions, with results cached per version."),
    "bisect": (
        "cmd_bisect",
        "Find the version that introduced a failure, between GOOD and BAD versions.",
    ),
    "merge": (
        "cmd_merge",
        "Merge model versions into a new one whose parents are the inputs, with its recipe.",
    ),
    "rebase": (
        "cmd_rebase",
        "Re-apply MODEL's derivation on a new base version (retrain-free, or by its recipe).",
    ),
}

#: The modules under ``mgit.commands`` that define commands (each has a ``COMMANDS`` list).
COMMAND_MODULES = list(dict.fromkeys(mod for mod, _ in COMMANDS.values()))


class Context:
    """Global options, handed to every command as ``ctx.obj``.

    A plain class with a dataclass's init, repr and eq: ``dataclasses`` is not worth importing
    for ``--help``.
    """

    def __init__(self, cwd: Path, json: bool, quiet: bool) -> None:
        self.cwd = cwd
        self.json = json
        self.quiet = quiet
        #: Set by ``emit`` once the command printed its JSON result: an error after it then
        #: goes to stderr, so stdout stays one JSON document.
        self.emitted = False

    def __repr__(self) -> str:
        return f"Context(cwd={self.cwd!r}, json={self.json!r}, quiet={self.quiet!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Context) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.cwd, self.json, self.quiet) == (other.cwd, other.json, other.quiet)

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, like the dataclass was


#: The global options of the command that runs (set by :func:`cli`), so that :func:`_main`
#: knows, once a command has failed, whether to render the error as JSON.
_running: Context | None = None


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


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, from :data:`COMMANDS`.

    Listing them (``--help``, shell completion of command names, "did you mean") uses the
    registry's names and one-line helps and imports nothing.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = self.commands.get(cmd_name)
        if cmd is None and cmd_name in COMMANDS:
            self._load(COMMANDS[cmd_name][0])
            cmd = self.commands.get(cmd_name)
        return cmd

    def _load(self, module: str) -> None:
        """Import ``mgit.commands.<module>`` and add the commands it defines."""
        import importlib

        mod = importlib.import_module(f"mgit.commands.{module}")
        for cmd in mod.COMMANDS:
            if cmd.name not in self.commands:
                _add_json_option(cmd)
                self.add_command(cmd)

    def _listed(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command as listed: the real one if loaded, else a stand-in with the registry's
        one-line help (which renders the same)."""
        cmd = self.commands.get(name)
        if cmd is None and name in COMMANDS:
            cmd = click.Command(name, help=COMMANDS[name][1])
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from gettext import gettext as _

        rows = []
        for name in self.list_commands(ctx):
            cmd = self._listed(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _cmd in rows)
            with formatter.section(_("Commands")):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # click suggests close names from the commands loaded so far: offer them all.
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=exc.ctx
            ) from None

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        results = []
        for name in self.list_commands(ctx):
            if name.startswith(incomplete):
                cmd = self._listed(ctx, name)
                if cmd is not None and not cmd.hidden:
                    results.append(CompletionItem(name, help=cmd.get_short_help_str()))
        # The group's own options (click.Group's version would load every command).
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    global _running
    base = Path(cwd).absolute() if cwd else Path.cwd()
    _running = Context(cwd=base, json=as_json, quiet=quiet or not sys.stderr.isatty())
    if cwd and not base.is_dir():
        raise click.UsageError(f"-C: no such folder: {cwd}")
    ctx.obj = _running


def run() -> None:
    """The ``mgit`` program (console script and ``python -m mgit``): :func:`main`, then exit.

    Once a command has returned, everything it wrote is closed (objects and refs are synced,
    exports renamed into place, worker threads joined), so the process ends at once instead
    of tearing the interpreter down object by object: that teardown takes about 10 ms after
    the modules a commit loads (``benchmarks/bench_startup.py``). An exception that escapes
    :func:`main` (a bug) still takes the normal way out, traceback and all.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe or stream: nothing more to say
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, map errors to one line and an exit code.

    Library warnings (:class:`mgit.errors.MgitWarning`, issued with :func:`warnings.warn`)
    print as ``mgit: warning: ...`` lines on stderr, each once.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always", MgitWarning)
        seen: set[str] = set()
        default_show = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kw: Any) -> None:
            if not issubclass(category, MgitWarning):
                default_show(message, category, *args, **kw)
            elif str(message) not in seen:
                seen.add(str(message))
                _say(f"mgit: warning: {message}")

        warnings.showwarning = show
        return _main(argv)


def _say(line: str) -> None:
    """One line on stderr, its control characters escaped (a name in an error message comes
    from a model file or a remote as often as from the user)."""
    from mgit._text import clean

    click.echo(clean(line), err=True)


def _json_mode(argv: list[str] | None) -> bool:
    """Whether the failed command was asked for JSON: its ``--json`` (before or after the
    command name) was parsed, or is among the arguments when parsing failed first."""
    if _running is not None and _running.json:
        return True
    args = sys.argv[1:] if argv is None else argv
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _fail(argv: list[str] | None, code: int, type_: str, message: str, hint: str | None = None,
          details: dict[str, Any] | None = None) -> int:
    """Report a failure and return its exit code: one ``mgit: error: ...`` line (and a
    ``hint:`` line) on stderr, or under ``--json`` one JSON object on **stdout** (where a
    machine reader already reads the result), nothing on stderr:
    ``{"error": {"type", "message", "hint", "exit_code", "details"}}`` -- unless the command
    already printed its JSON result (stdout stays one document; the error line goes to stderr)."""
    if _json_mode(argv) and not (_running is not None and _running.emitted):  # after a result: stderr
        import json

        err = {"type": type_, "message": message, "hint": hint, "exit_code": code,
               "details": details or {}}
        click.echo(json.dumps({"error": err}, indent=2))
        return code
    _say(f"mgit: error: {message}" if type_ != "Interrupted" else "mgit: interrupted")
    if hint:
        _say(f"hint: {hint}")
    return code


def _details(exc: BaseException) -> dict[str, Any]:
    """The fields an error carries (path, ref, oid...), those that are plain JSON values."""
    out: dict[str, Any] = {}
    for k, v in vars(exc).items():
        if k in ("message", "hint") or k.startswith("_"):
            continue
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v):
            out[k] = list(v)
        elif isinstance(v, os.PathLike):
            out[k] = os.fspath(v)
    return out


def _main(argv: list[str] | None) -> int:
    global _running
    _running = None
    try:
        cli.main(args=argv, prog_name="mgit", standalone_mode=False)
        return 0
    except MgitError as exc:
        if os.environ.get("MGIT_DEBUG") == "1":
            raise
        code = 1
        for cls in type(exc).__mro__:
            if cls in EXIT_CODES:
                code = EXIT_CODES[cls]  # type: ignore[index]
                break
        return _fail(argv, code, type(exc).__name__, str(exc), exc.hint, _details(exc))
    except (click.exceptions.Abort, KeyboardInterrupt):
        return _fail(argv, 130, "Interrupted", "interrupted")
    except click.ClickException as exc:
        if not _json_mode(argv):
            exc.show()
            return exc.exit_code
        hint = None
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f"'{exc.ctx.command_path} --help' lists the options"
        return _fail(argv, exc.exit_code, "UsageError", exc.format_message(), hint)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if os.environ.get("MGIT_DEBUG") == "1":
            raise
        message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        return _fail(argv, 1, type(exc).__name__, message,
                     details={"errno": exc.errno, "filename": os.fspath(exc.filename)
                              if isinstance(exc.filename, (str, os.PathLike)) else None})
