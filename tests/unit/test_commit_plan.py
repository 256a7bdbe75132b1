"""Parent and relation planning of ``commit``/``import`` (mgit.commit), as tables."""

from __future__ import annotations

import pytest

from mgit.commit import default_parent, plan_parents
from mgit.errors import UsageError
from mgit.objects.model import ParentLink

T, H, X, Y = "t" * 64, "h" * 64, "x" * 64, "y" * 64


@pytest.mark.parametrize(
    ("model", "tip", "parents", "relation", "want"),
    [
        # first version of a line, no parent: a root
        ("m", None, [], None, []),
        # next version of a line
        ("m", T, [], None, [(T, "version")]),
        # the sole parent takes the relation asked for (a lossy re-store as "quantize", say)
        ("m", T, [], "quantize", [(T, "quantize")]),
        # a new line derived from another model: finetune by default
        ("m", None, [(X, "base")], None, [(X, "finetune")]),
        ("m", None, [(X, "base")], "distill", [(X, "distill")]),
        # a parent on the same line is a version
        ("m", None, [(X, "m")], None, [(X, "version")]),
        # next version that also names its source: tip is a version, the source gets the relation
        ("m", T, [(X, "base")], "adapter", [(T, "version"), (X, "adapter")]),
        ("m", T, [(X, "base")], None, [(T, "version"), (X, "finetune")]),
        # several parents without a relation: a merge
        ("m", None, [(X, "a"), (Y, "b")], None, [(X, "merge"), (Y, "merge")]),
        ("m", T, [(X, "a"), (Y, "b")], None, [(T, "version"), (X, "merge"), (Y, "merge")]),
        # a parent that is the tip is not repeated
        ("m", T, [(T, "m")], None, [(T, "version")]),
        ("m", None, [(X, "a"), (X, "a")], None, [(X, "merge")]),
    ],
)
def test_plan_parents(model: str, tip: str | None, parents: list[tuple[str, str]], relation: str | None,
                      want: list[tuple[str, str]]) -> None:
    assert plan_parents(model, tip, parents, relation) == [ParentLink(o, r) for o, r in want]


def test_plan_parents_refuses_an_unknown_relation() -> None:
    with pytest.raises(UsageError, match="unknown relation"):
        plan_parents("m", None, [(X, "base")], "cousin")
    with pytest.raises(UsageError):
        plan_parents("m", T, [], "cousin")


@pytest.mark.parametrize(
    ("target", "tip", "head", "current", "model_given", "parent", "relation", "want"),
    [
        # the checked-out line's next version: nothing added
        ("m", T, T, "m", False, None, None, (None, None)),
        # first commit of a repository
        ("m", None, None, "m", False, None, None, (None, None)),
        # --model NEW from a checkout of another line: derived from HEAD, a finetune
        ("new", None, H, "base", True, None, None, (H, "finetune")),
        ("new", None, H, "base", True, None, "prune", (H, "prune")),
        # --model NEW with an explicit --parent: kept, relation finetune by default
        ("new", None, H, "base", True, X, None, (X, "finetune")),
        # an existing other line committed from this checkout: HEAD is the extra parent
        ("other", T, H, "base", True, None, None, (H, None)),
        ("other", T, H, "base", True, X, None, (X, None)),
        # detached HEAD committing to a line whose tip is HEAD: nothing added
        ("m", T, T, None, True, None, None, (None, None)),
    ],
)
def test_default_parent(target: str, tip: str | None, head: str | None, current: str | None,
                        model_given: bool, parent: str | None, relation: str | None,
                        want: tuple[str | None, str | None]) -> None:
    got = default_parent(target=target, tip=tip, head=head, current_model=current,
                         model_given=model_given, parent=parent, relation=relation)
    assert got == want
