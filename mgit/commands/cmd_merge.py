"""``mgit merge``."""

from __future__ import annotations

from typing import Any

import click

from mgit.commands._common import (
    complete_ref,
    echo,
    echo_commit,
    emit,
    human_bytes,
    open_repo,
    parse_meta,
    user_path,
)
from mgit.errors import MgitError, UsageError

__all__ = ["COMMANDS"]

class RedoMismatchError(MgitError):
    """``merge --redo``: the recomputed merge is not the stored one (exit 1)."""


_METHODS = ("linear", "slerp", "task-arithmetic", "ties", "dare-linear", "dare-ties")


@click.command("merge")
@click.argument("refs", nargs=-1, shell_complete=complete_ref)
@click.option("--model", help="The model line the merge is a version of.")
@click.option("-m", "--message", help="The commit message.")
@click.option("--method", help=f"One of: {', '.join(_METHODS)}.")
@click.option("--base", metavar="REF", shell_complete=complete_ref,
              help="The base model (task-arithmetic, ties, dare-*): task vectors are taken from it.")
@click.option("--weight", "weights", type=float, multiple=True, help="One per input, in order (default 1).")
@click.option("--density", type=float, help="ties: fraction kept per tensor; dare-*: keep probability.")
@click.option("--lambda", "lam", type=float, help="Scale of the merged task vector (default 1).")
@click.option("--seed", type=int, help="DARE's random seed (default 0); recorded in the recipe.")
@click.option("--dtype", help="Output dtype of merged tensors: float32, float16, bfloat16, float64.")
@click.option("--only", multiple=True, help="Merge only tensors whose name matches GLOB (others: first input's).")
@click.option("--t", "t", type=float, help="slerp: interpolation from the first input (0) to the second (1).")
@click.option("--normalize/--no-normalize", default=None, help="Divide by the sum of weights.")
@click.option("--strict", is_flag=True, help="Refuse tensors that only some inputs hold.")
@click.option("--meta", multiple=True, help="Extra metadata K=V.")
@click.option("--redo", metavar="COMMIT", shell_complete=complete_ref,
              help="Recompute the merge COMMIT from its recipe and compare.")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="A mergekit YAML recipe.")
def merge_cmd(refs: tuple[str, ...], model: str | None, message: str | None, method: str | None,
              base: str | None, weights: tuple[float, ...], density: float | None, lam: float | None,
              seed: int | None, dtype: str | None, only: tuple[str, ...], t: float | None,
              normalize: bool | None, strict: bool, meta: tuple[str, ...], redo: str | None,
              config: str | None) -> None:
    """Merge model versions into a new one whose parents are the inputs, with its recipe.

    Methods: linear, slerp (two inputs, --t), task-arithmetic, ties, dare-linear, dare-ties
    (these four with --base). The result is stored as a delta against the first input; the
    recipe (method, parameters, seed, commit ids, dtype) is recorded so that 'mgit merge --redo
    COMMIT' recomputes it bit for bit. 'mgit show --recipe REF' prints it as mergekit YAML.

    \b
    Examples:
      mgit merge ft-a ft-b --base bert-base --method ties --density 0.5 --model soup -m soup
      mgit merge ft-a ft-b --method slerp --t 0.3 --model blend -m blend
      mgit merge --redo soup
    """
    repo = open_repo()
    if redo is not None:
        if refs or config:
            raise UsageError("--redo takes a merge commit only")
        res = repo.merge(redo=redo)

        def show_redo() -> None:
            if res.identical:
                echo(f"{res.commit[:12]}: identical ({res.checked} tensors recomputed, every file bit-identical)")
            else:
                echo(f"{res.commit[:12]}: DIFFERS in {len(res.differing)} place(s):")
                for d in res.differing[:50]:
                    echo(f"  {d}")
        emit(res, show_redo)
        if not res.identical:
            raise RedoMismatchError(f"merge {res.commit[:12]} does not reproduce: {len(res.differing)} difference(s)")
        return
    kw: dict[str, Any] = {
        "base": base, "weights": list(weights) or None, "density": density, "lam": lam, "seed": seed,
        "dtype": dtype, "only": list(only) or None, "t": t, "normalize": normalize, "strict": strict or None,
    }
    extra = parse_meta(meta)
    if config is not None:
        if refs or method:
            raise UsageError("--config gives the inputs and the method: give no REF or --method")
        res = repo.merge(model=model, message=message, config_file=user_path(config), meta=extra,
                         **{k: v for k, v in kw.items() if v is not None})
    else:
        kw["strict"] = strict
        res = repo.merge(list(refs), model=model, message=message, method=method, meta=extra, **kw)

    def show() -> None:
        echo_commit(res.commit)
        echo(f"merged {res.merged} tensors ({res.recipe['method']}), kept {res.kept} from the first input;"
             f" {human_bytes(res.new_stored_bytes)} new stored")
        if res.partial:
            echo(f"kept from the first input (not in every input): {', '.join(res.partial[:10])}")
        if res.dropped:
            echo(f"dropped (not in the first input): {', '.join(res.dropped[:10])}")
    emit(res, show)


COMMANDS = [merge_cmd]
