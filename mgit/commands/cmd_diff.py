"""``mgit diff``."""

from __future__ import annotations

import os
import sys

import click

from mgit.commands._common import echo, emit, open_repo, user_path

__all__ = ["COMMANDS"]


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


@click.command("diff")
@click.argument("ref_a")
@click.argument("ref_b", required=False)
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
    """
    repo = open_repo()
    if html_file and not structural:
        from mgit.errors import UsageError

        raise UsageError("--html goes with --structural")
    if structural:
        from mgit.diff import render_structural_text, structural_html
        from mgit._fs import write_text_file

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

    d = repo.diff(ref_a, ref_b, rank=not no_rank)

    def render() -> None:
        for line in render_text(d, color=_color(), level=level, show_unchanged=show_all,
                                max_tensors_per_group=max_tensors):
            echo(line)

    emit(d, render)


COMMANDS = [diff_cmd]
