"""The cascade's step for a merged model: redo the merge on its inputs' new versions.

A model line whose latest version is an ``mgit merge`` of lines the cascade moves is not
replayed against one of them: its recipe (method, weights, densities, seed, ...) is run again
with each input replaced by its line's new version (and the base, when the cascade moved the
base's line, by the new base). The result is the next version of the merged line, with the
previous merge (relation ``version``, the delta base) and the new inputs (``merge``) as
parents, ``rebased_from`` metadata, and the updated recipe, so ``mgit merge --redo`` checks it
like any merge. It is gated by the stored tests like every rebase and recorded as an attempt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mgit.core import CommitInfo, RepoCore
from mgit.errors import MgitError

__all__ = ["RemergeResult", "map_inputs", "merge_recipe", "remerge"]


@dataclass
class RemergeResult:
    """What a redone merge did: ``status`` ``rebased``, ``gate-failed`` or ``dry-run``."""

    status: str
    commit: CommitInfo | None = None
    failed_tests: list[str] = field(default_factory=list)
    seconds: float = 0.0
    strategy: str = "merge"
    fell_back: str | None = None


def merge_recipe(core: RepoCore, oid: str) -> dict[str, Any] | None:
    """The recipe of ``oid`` if it is a merge made by ``mgit merge``, else None."""
    from mgit.lifecycle.merge import METHODS

    rec = core.read_commit(oid).recipe
    if isinstance(rec, dict) and rec.get("method") in METHODS and isinstance(rec.get("inputs"), list):
        return rec
    return None


def map_inputs(core: RepoCore, tip: str, target: Mapping[str, str]) -> tuple[list[str], str | None, bool]:
    """The merge ``tip``'s inputs and base with every one whose model line moved (``target``:
    line -> its new version) replaced; and whether anything was replaced."""
    rec = merge_recipe(core, tip)
    assert rec is not None

    def moved(oid: str) -> str:
        return target.get(core.model_of(oid), oid)

    inputs = [moved(i) for i in rec["inputs"]]
    base = moved(rec["base"]) if rec.get("base") else None
    return inputs, base, inputs != list(rec["inputs"]) or base != rec.get("base")


def remerge(core: RepoCore, model: str, inputs: list[str], base: str | None, *, tests: bool = True,
            dry_run: bool = False) -> RemergeResult:
    """Redo the merge at the tip of ``model`` on ``inputs`` (and ``base``); gate it; move the
    line when its tests pass.

    Raises:
        RebaseError: the tip is not a merge made by ``mgit merge``.
        UsageError: the new inputs are incompatible (shapes, dtypes; nothing is written).
    """
    from mgit.lifecycle import rebase_attempts as att
    from mgit.lifecycle.merge import _version, _write
    from mgit.lifecycle.rebase_write import RebaseError
    from mgit.objects.model import ParentLink
    from mgit.refs.store import HEADS

    t0 = time.perf_counter()
    tip = core.refs.read(HEADS + model)
    rec = merge_recipe(core, tip) if tip else None
    if tip is None or rec is None:
        raise RebaseError(f"{model}: its latest version is not a merge made by 'mgit merge'")
    recipe = {**rec, "inputs": list(inputs), "base": base, "mgit_version": _version(),
              "input_refs": [f"{core.model_of(i)}@{i[:12]}" for i in inputs],
              "base_ref": f"{core.model_of(base)}@{base[:12]}" if base else None}
    if dry_run:
        return RemergeResult("dry-run")
    key = att.job_key(tip, ",".join(inputs) + "|" + (base or ""), "merge", None)
    new_parent = inputs[0]

    def attempt(status: str, **kw: Any) -> att.Attempt:
        return att.Attempt(key=key, model=model, model_commit=tip, onto=new_parent, base=rec["inputs"][0],
                           strategy="merge", status=status, tip=tip, seconds=time.perf_counter() - t0, **kw)

    message = f"redo merge {model} on " + ", ".join(f"{core.model_of(i)}@{i[:12]}" for i in inputs)
    try:
        res = _write(core, recipe, model=model, message=message, first=ParentLink(tip, "version"),
                     meta={"rebased_from": tip}, update_ref=False)
    except MgitError as exc:
        att.record(core, attempt("failed", error=str(exc)))
        raise
    info = res.commit
    failed = att.land(core, model, tip, info.oid, attempt, tests=tests)
    if failed:
        return RemergeResult("gate-failed", info, failed, time.perf_counter() - t0)
    return RemergeResult("rebased", info, seconds=time.perf_counter() - t0)
