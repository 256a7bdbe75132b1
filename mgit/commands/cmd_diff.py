"""``mgit diff``."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from mgit.commands._common import complete_ref, ctx_obj, echo, emit, open_repo, user_path

__all__ = ["COMMANDS", "DelayedBar"]


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


class DelayedBar:
    """A rich progress bar of the bytes a diff reads, on stderr, that appears only once the
    diff has run for ``delay`` seconds (a diff that is done sooner prints nothing).

    Args:
        label: The bar's text.
        delay: Seconds before the bar shows.
        console: Where to draw (default: a rich console on stderr).
    """

    def __init__(self, label: str, *, delay: float = 1.0, console: Any = None) -> None:
        """Start the clock; nothing is drawn yet."""
        self.label = label
        self.delay = delay
        self.console = console
        self.start = time.monotonic()
        self.progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` bytes (called by the diff as it reads)."""
        if self.progress is None:
            if time.monotonic() - self.start < self.delay:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=self.console or Console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self._task = self.progress.add_task(self.label, total=total)
        self.progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        """Take the bar off the screen, if it was shown."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _bar(label: str) -> DelayedBar | None:
    """A :class:`DelayedBar` when progress can be shown: stderr is a terminal, not ``-q``
    and not ``--json``."""
    obj = ctx_obj()
    if getattr(obj, "quiet", False) or getattr(obj, "json", False) or not sys.stderr.isatty():
        return None
    return DelayedBar(label)


@click.command("diff")
@click.argument("ref_a", shell_complete=complete_ref)
@click.argument("ref_b", required=False, shell_complete=complete_ref)
@click.option("--structural", is_flag=True, help="Compare architectures: module tree, config, dataflow graph.")
@click.option("--html", "html_file", metavar="FILE", help="With --structural: write the dataflow graph as HTML.")
@click.option("--no-dataflow", is_flag=True, help="With --structural: skip building and tracing the models.")
@click.option("--no-rank", is_flag=True, help="Skip the effective-rank estimate of changed matrices.")
@click.option("--level", type=click.Choice(["block", "module"]), default="block", show_default=True,
              help="Group tensors by block (encoder.layer.3) or by module.")
@click.option("--all", "show_all", is_flag=True, help="List unchanged groups and files too.")
@click.option("--max-tensors", type=click.IntRange(min=0), metavar="N",
              help="Show at most N tensors per group (the largest changes).")
def diff_cmd(ref_a: str, ref_b: str | None, structural: bool, html_file: str | None, no_dataflow: bool,
             no_rank: bool, level: str, show_all: bool, max_tensors: int | None) -> None:
    """What changed from REF_A to REF_B (default: the working tree).

    Every tensor (by file and name; quantized weights dequantized; a LoRA adapter as the
    change it makes to the other side's weights) and every file (JSON files key by key,
    re-sharding). Red: only in REF_A (removed); green: only in REF_B (added).

    \b
    Examples:
      mgit diff bert-base bert-sst2
      mgit diff bert-sst2
      mgit diff --structural bert-base bert-pruned --html graph.html
    """
    repo = open_repo()
    if html_file and not structural:
        from mgit.errors import UsageError

        raise UsageError("--html goes with --structural")
    if structural:
        from mgit._fs import write_text_file
        from mgit.diff import render_structural_text, structural_html

        sd = repo.structural_diff(ref_a, ref_b, dataflow=not no_dataflow)
        if html_file:
            write_text_file(user_path(html_file), structural_html(sd))

        def render_s() -> None:
            for line in render_structural_text(sd, color=_color()):
                echo(line)
            if html_file:
                echo(f"wrote dataflow graph: {html_file}")

        emit(sd, render_s)
        return
    from mgit.diff import render_text
    from mgit.diff.stream import progress_to

    bar = _bar(f"diff {ref_a} {ref_b or 'working tree'}")
    try:
        with progress_to(bar):
            d = repo.diff(ref_a, ref_b, rank=not no_rank)
    finally:
        if bar is not None:
            bar.close()

    def render() -> None:
        for line in render_text(d, color=_color(), level=level, show_unchanged=show_all,
                                max_tensors_per_group=max_tensors):
            echo(line)

    emit(d, render)


COMMANDS = [diff_cmd]
