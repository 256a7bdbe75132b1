"""Helpers shared by the command modules: open the repository, render results.

Every line of text output goes through :func:`echo` (or :func:`warn`), which escapes control
characters (:func:`clean`): names, metadata, messages and paths come from model files, other
users and remotes, and a raw newline, carriage return or terminal escape in one could forge
lines of ``show``, ``log``, ``status`` or ``diff`` output (:func:`clean` lives in
:mod:`mgit._text`, so that ``mgit.cli`` escapes error messages the same way). ``--json`` output
is unaffected (JSON escapes them itself).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mgit._text import clean
from mgit.errors import UsageError

__all__ = [
    "recipe_arg",
    "clean",
    "warn",
    "ctx_obj",
    "open_repo",
    "emit",
    "human_bytes",
    "fmt_time",
    "parse_meta",
    "progress_bar",
    "echo",
    "echo_commit",
    "user_path",
    "derivation_options",
    "complete_model",
    "complete_ref",
    "complete_remote",
    "complete_tag",
]


def ctx_obj() -> Any:
    """The global options of the running command."""
    return click.get_current_context().find_root().obj


def user_path(p: str) -> Path:
    """A path the user typed, relative to ``-C PATH`` (or the current folder)."""
    return Path(p) if os.path.isabs(p) else ctx_obj().cwd / p


def open_repo() -> Any:
    """Open the repository at (or above) ``-C PATH`` / the current folder."""
    from mgit.repo import Repository

    return Repository.open(ctx_obj().cwd)


def open_repo_streaming() -> Any:
    """:func:`open_repo` for the commands that stream a whole model (commit, import, export,
    checkout): also tunes this process's allocator (:mod:`mgit._alloc`)."""
    from mgit._alloc import tune_allocator

    tune_allocator()
    return open_repo()


# -- shell completion ---------------------------------------------------------------------------
#
# ``shell_complete=`` callbacks of the arguments and options that take a REF, a model, a tag or
# a remote. They run on every Tab press (``_MGIT_COMPLETE=bash_source mgit``), so they read
# only the ref files (:func:`mgit.refs.store.scan_refs`) and the config, never an object, and
# never raise: outside a repository, or on any error, they offer nothing. During completion the
# group's callback has not run (``ctx.obj`` is unset), so ``-C PATH`` is read from the parsed
# parameters of the root context.


def _completion_cwd(ctx: click.Context) -> Path:
    """The folder the completed command would run in: ``-C PATH`` or the current folder."""
    root = ctx.find_root()
    obj_cwd = getattr(root.obj, "cwd", None)
    if obj_cwd is not None:
        return Path(obj_cwd)
    given = root.params.get("cwd")
    return Path(given).absolute() if given else Path.cwd()


def _completion_repo(ctx: click.Context) -> Path | None:
    """The ``.mgit`` folder (or bare store) the completed command would open, or None."""
    from mgit.core import find_repository

    try:
        return find_repository(_completion_cwd(ctx))[1]
    except Exception:  # noqa: BLE001 - not a repository, unreadable, a bad -C: nothing to offer
        return None


def _names(ctx: click.Context, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(name, kind)`` of the refs of ``kinds`` (``model``, ``tag``, ``remote-tracking``),
    as a REF names them: ``bert-sst2``, ``v1.0``, ``origin/bert-sst2``."""
    from mgit.refs.store import HEADS, REMOTES, TAGS, scan_refs

    mgit_dir = _completion_repo(ctx)
    if mgit_dir is None:
        return []
    out = []
    for kind, prefix in (("model", HEADS), ("tag", TAGS), ("remote-tracking", REMOTES)):
        if kind in kinds:
            out += [(ref[len(prefix) :], kind) for ref in scan_refs(mgit_dir, prefix)]
    return out


def _items(names: list[tuple[str, str]], incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    seen: set[str] = set()
    out = []
    for name, kind in names:
        if name.startswith(incomplete) and name not in seen:
            seen.add(name)
            out.append(CompletionItem(name, help=kind))
    return out


def complete_ref(
    ctx: click.Context, _param: click.Parameter | None, incomplete: str
) -> list[Any]:
    """Complete a REF: model names, tags, remote-tracking names (``origin/bert``), ``HEAD``."""
    try:
        names = _names(ctx, ("model", "tag", "remote-tracking"))
        if names:
            names.append(("HEAD", "the checked-out version"))
        return _items(names, incomplete)
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []


def complete_model(
    ctx: click.Context, _param: click.Parameter | None, incomplete: str
) -> list[Any]:
    """Complete a model name (a model line of this repository)."""
    try:
        return _items(_names(ctx, ("model",)), incomplete)
    except Exception:  # noqa: BLE001 - as complete_ref
        return []


def complete_tag(
    ctx: click.Context, _param: click.Parameter | None, incomplete: str
) -> list[Any]:
    """Complete a tag name."""
    try:
        return _items(_names(ctx, ("tag",)), incomplete)
    except Exception:  # noqa: BLE001 - as complete_ref
        return []


def complete_remote(
    ctx: click.Context, _param: click.Parameter | None, incomplete: str
) -> list[Any]:
    """Complete a configured remote's name."""
    try:
        mgit_dir = _completion_repo(ctx)
        if mgit_dir is None:
            return []
        from mgit import format as fmt

        remotes = fmt.read_config(mgit_dir).get("remotes") or {}
        return _items([(n, "remote") for n in sorted(remotes) if isinstance(n, str)], incomplete)
    except Exception:  # noqa: BLE001 - as complete_ref
        return []


def echo(line: str = "", **kw: Any) -> None:
    """Print a line to stdout (or stderr with ``err=True``), its control characters escaped
    (:func:`clean`)."""
    click.echo(clean(line), **kw)


def echo_lines(lines: Iterable[str]) -> None:
    """Print many lines to stdout at once, each as :func:`echo` prints it (a table of
    100,000 rows in one write instead of 100,000)."""
    text = "\n".join(clean(line) for line in lines)
    if text:
        click.echo(text)


def warn(text: str) -> None:
    """Print one ``mgit: warning: ...`` line on stderr (with or without ``--json``)."""
    echo(f"mgit: warning: {text}", err=True)


def emit(data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON under ``--json`` (and note it on the global options: an error
    after it goes to stderr, so stdout stays one JSON document), else call ``render``."""
    obj = ctx_obj()
    if obj.json:
        from mgit._jsonout import dumps_indented

        value = data.to_json() if hasattr(data, "to_json") else data
        sys.stdout.write(dumps_indented(value) + "\n")
        obj.emitted = True
    else:
        render()


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_time(t: int) -> str:
    """Unix seconds as local 'YYYY-MM-DD HH:MM'."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def parse_meta(items: tuple[str, ...]) -> dict[str, str]:
    """``("task=sst2", "acc=0.91")`` -> dict.

    Raises:
        UsageError: an item without ``=``.
    """
    out = {}
    for it in items:
        if "=" not in it or it.startswith("="):
            raise UsageError(f"--meta takes KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar with bytes and rate, or nothing when quiet / not a terminal."""
    if ctx_obj().quiet or ctx_obj().json or not total:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), transient=True,
    ) as prog:
        task = prog.add_task(label, total=total)
        yield lambda n: prog.advance(task, n)


def echo_commit(info: Any, *, decorations: list[str] | None = None) -> None:
    """Print a commit the way ``log`` and ``show`` do: id, model, parents with their relation,
    author, date, storage (bit-exact or lossy), metadata, message."""
    deco = f" ({', '.join(decorations)})" if decorations else ""
    echo(click.style(f"commit {info.oid}", fg="yellow") + deco)
    echo(f"Model:    {info.model}")
    for (p, r), pmodel in zip(info.parents, info.parent_models):
        echo(f"Parent:   {p[:12]} ({r} of {pmodel})")
    echo(f"Author:   {info.author}")
    echo(f"Date:     {fmt_time(info.time)}")
    if info.lossy:
        echo(f"Lossy:    eps={info.lossy['eps']:g}, measured max error {info.lossy['max_err']:.3g}")
    else:
        echo("Storage:  bit-exact")
    for k, v in sorted(info.meta.items()):
        echo(f"Meta:     {k} = {v}")
    echo("")
    for line in info.message.splitlines() or [""]:
        echo(f"    {line}")


def lossy_gate(repo: Any, check: str | None, check_tests: bool) -> Any:
    """The ``check`` a commit or import gets: ``--check CMD``, or with ``--check-tests`` the
    stored tests that apply to the new version (:func:`mgit.lifecycle.testing.gate`)."""
    if not check_tests:
        return check
    from mgit.errors import UsageError

    if check is not None:
        raise UsageError("give --check CMD or --check-tests, not both")
    from mgit.lifecycle.testing import gate

    return gate(repo)


def recipe_arg(recipe: str | None, seed: int | None, ids: tuple[str, ...]) -> Any:
    """``--recipe CMD [--recipe-seed N] [--recipe-id K=V]...`` as ``commit``/``import_folder``'s
    ``recipe`` argument: CMD alone, or a mapping (see :func:`mgit.commit.check_recipe`).

    Raises:
        UsageError: a seed or an identifier without ``--recipe``, an identifier not KEY=VALUE.
    """
    if recipe is None:
        if seed is not None or ids:
            raise UsageError("--recipe-seed and --recipe-id describe a --recipe: give --recipe CMD")
        return None
    if seed is None and not ids:
        return recipe
    out: dict[str, Any] = {"cmd": recipe, "seed": seed or 0}
    for item in ids:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--recipe-id {item!r}: give KEY=VALUE")
        out[key] = value
    return out


def derivation_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``commit`` and ``import`` share: where a model came from and how it is stored."""
    from mgit.objects.model import RELATIONS

    options = [
        click.option("--parent", "parents", multiple=True, metavar="REF",
                     shell_complete=complete_ref, help="Model(s) this was derived from."),
        click.option("--relation", type=click.Choice(RELATIONS), help="How it was derived from --parent."),
        click.option("--lossy", "eps", type=float, metavar="EPS", help="Store lossily with max abs error EPS."),
        click.option("--check", metavar="CMD",
                     help="With --lossy: command run on the lossy model; fails -> lossless."),
        click.option("--check-tests", is_flag=True,
                     help="With --lossy: the stored tests that apply gate the lossy model; fail -> lossless."),
        click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (task, dataset, metrics)."),
        click.option("--recipe", metavar="CMD", default=None,
                     help="How this was made from its parent, recorded for 'rebase --strategy recipe': a "
                          "command with {parent_dir}, {out_dir}, {seed}."),
        click.option("--recipe-seed", type=click.IntRange(min=0), default=None, metavar="N",
                     help="With --recipe: the seed it used, given to it again as {seed} (default 0)."),
        click.option("--recipe-id", "recipe_ids", multiple=True, metavar="KEY=VALUE",
                     help="With --recipe: an identifier of the code or data it used (code=git:3f2a, "
                          "data=sst2@v2), recorded with it."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f
