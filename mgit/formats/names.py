"""The one tensor-name pairing rule, shared by storage (delta bases), diff and parent guessing.

Task-head and wrapper model classes keep a base model's tensors under a prefix
(``BertForSequenceClassification`` saves ``bert.embeddings...`` where ``BertModel`` saves
``embeddings...``; PEFT saves ``base_model.model...``; ``DataParallel`` ``module...``). Two models'
names pair so:

1. Equal names pair.
2. Every name left over is reduced to its *key*: the name with its leading head prefixes removed,
   repeatedly (:func:`strip_head_prefix`; ``base_model.model.model.layers.0.w`` ->
   ``layers.0.w``). A key held by exactly one left-over name on each side pairs those two names.
3. Everything else is unpaired. Pairs are one to one: a name pairs with at most one name.

Storage pairs a new model's tensors with its parent's by this rule to choose delta bases
(:class:`mgit.pairing.ParentIndex`), the diff pairs the two sides' tensors by it
(:func:`mgit.diff.names.pair_names` is :func:`pair_names`), and parent guessing pairs a folder's
tensors with each candidate's by it, so the three always agree.

Why this rule. Storage used to pair one name at a time: the equal name, else the parent name with
one head prefix removed from or added to the child's, trying the prefixes in the order of
:data:`HEAD_PREFIXES`; the diff used the rule above. Every pair the old storage rule made has
equal keys (the prefixes are prefix-free, so stripping ``p + n`` first removes ``p``), so this
rule pairs the same names for every pattern storage paired, and hence stores the same objects,
deltas and bases: equal names, a head prefix added or removed (``bert.x`` / ``x``,
``base_model.model.model.x`` / ``model.x``), in any mix within a model. It differs from the old
storage rule only where a model holds two copies of a tensor under different head prefixes (a
parent with both ``bert.e.w`` and ``model.e.w`` for a child's ``e.w``, or a child with both ``x``
and ``bert.x``): the old rule picked by list order, or gave two child tensors the same base;
now such a name is unpaired, as the diff already reported it (and its tests assert). And storage
now also pairs what only the diff paired before: several stacked prefixes
(``base_model.model.model.x`` / ``x``) and one head swapped for another (``roberta.x`` /
``model.x``), so such a child gets delta bases where it used to be stored whole. Stored bytes
decode the same either way; the chosen bases only change how small a new commit is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

__all__ = ["HEAD_PREFIXES", "KEY_SEP", "strip_head_prefix", "pair", "pair_names", "tensor_keys", "split_key"]

#: Prefixes that task-head and wrapper model classes put before a base model's tensor names
#: (``BertForSequenceClassification`` saves ``bert.embeddings...`` where ``BertModel`` saves
#: ``embeddings...``; PEFT saves ``base_model.model...``; DataParallel ``module...``).
#: No prefix is the start of another, so a name's prefixes are removed unambiguously.
HEAD_PREFIXES: tuple[str, ...] = (
    "base_model.model.",
    "module.",
    "bert.",
    "roberta.",
    "distilbert.",
    "albert.",
    "electra.",
    "deberta.",
    "mpnet.",
    "xlm_roberta.",
    "transformer.",
    "model.",
)


def strip_head_prefix(name: str, *, prefixes: Sequence[str] = HEAD_PREFIXES) -> str:
    """Remove known task-head prefixes from the front of a name, repeatedly.

    A prefix is removed only if something is left after it.

    Args:
        name: A dotted name.
        prefixes: The prefixes to remove (each ends with ``.``).

    Returns:
        The name without its leading prefixes (its pairing *key*).

    Example:
        >>> strip_head_prefix("base_model.model.model.layers.0.mlp.weight")
        'layers.0.mlp.weight'
    """
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if name.startswith(p) and len(name) > len(p):
                name = name[len(p) :]
                changed = True
                break
    return name


def _pairs(
    names_a: Iterable[str], names_b: Iterable[str], prefixes: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(pairs, unpaired names of a, unpaired names of b), by the rule of the module docstring."""
    list_a = list(dict.fromkeys(names_a))
    list_b = list(dict.fromkeys(names_b))
    in_b = set(list_b)
    pairs = [(n, n) for n in list_a if n in in_b]
    common = {n for n, _ in pairs}
    left_a = [n for n in list_a if n not in common]
    left_b = [n for n in list_b if n not in common]
    if not left_a or not left_b or not prefixes:
        return pairs, left_a, left_b

    by_key_a: dict[str, list[str]] = defaultdict(list)
    by_key_b: dict[str, list[str]] = defaultdict(list)
    for n in left_a:
        by_key_a[strip_head_prefix(n, prefixes=prefixes)].append(n)
    for n in left_b:
        by_key_b[strip_head_prefix(n, prefixes=prefixes)].append(n)
    paired: set[str] = set()
    for key, group_a in by_key_a.items():
        group_b = by_key_b.get(key, ())
        if len(group_a) == 1 and len(group_b) == 1:
            pairs.append((group_a[0], group_b[0]))
            paired.add(group_a[0])
            paired.add(group_b[0])
    # left_a and left_b share no name (equal names paired above), so one set serves both sides.
    return pairs, [n for n in left_a if n not in paired], [n for n in left_b if n not in paired]


def pair(
    child_names: Iterable[str],
    parent_names: Iterable[str],
    *,
    prefixes: Sequence[str] = HEAD_PREFIXES,
) -> dict[str, str]:
    """Pair a model's tensor names with another's (its parent's, a candidate's, the other side).

    Args:
        child_names: The names of the model being stored or compared.
        parent_names: The names of the model to pair them with (a mapping's keys will do).
        prefixes: The head prefixes that may differ between paired names.

    Returns:
        ``{child name: parent name}`` for every paired name; unpaired names are absent.

    Example:
        >>> pair(["bert.e.w", "classifier.w"], ["e.w", "pooler.w"])
        {'bert.e.w': 'e.w'}
    """
    pairs, _, _ = _pairs(child_names, parent_names, prefixes)
    return dict(pairs)


def pair_names(
    names_a: Iterable[str],
    names_b: Iterable[str],
    *,
    prefixes: Sequence[str] = HEAD_PREFIXES,
) -> list[tuple[str | None, str | None]]:
    """Pair the names of two models, every name exactly once (the rule of :func:`pair`).

    Args:
        names_a: Names of the first model.
        names_b: Names of the second model.
        prefixes: The prefixes that may differ between paired names (``()``: equal names only).

    Returns:
        ``(name_a, name_b)`` pairs, ``(name_a, None)`` for a name only in a and
        ``(None, name_b)`` for a name only in b; every input name appears exactly once. Sorted
        by ``name_b`` (or ``name_a`` where there is none).

    Example:
        >>> pair_names(["embeddings.w", "pooler.w"], ["bert.embeddings.w", "classifier.w"])
        [('embeddings.w', 'bert.embeddings.w'), (None, 'classifier.w'), ('pooler.w', None)]
    """
    paired, left_a, left_b = _pairs(names_a, names_b, prefixes)
    out: list[tuple[str | None, str | None]] = [*paired]
    out.extend((n, None) for n in left_a)
    out.extend((None, n) for n in left_b)
    out.sort(key=lambda p: (p[1] if p[1] is not None else p[0]) or "")
    return out


#: Separates a file's path from a tensor name in a qualified tensor key (``unet/m.safetensors:w``).
KEY_SEP = ":"


def tensor_keys(tensors: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The key each tensor of a model version goes by, from ``(file path, tensor name)`` pairs.

    A tensor is identified by its file and its name. Its key is the bare name when no other
    file of the version holds that name (a single file, or shards of one model), and
    ``"<path>:<name>"`` when several do (a diffusers folder whose ``unet/`` and ``vae/`` both
    hold ``conv_in.weight``, a Trainer folder beside its ``checkpoint-30/``, a repository that
    ships both ``model.safetensors`` and ``pytorch_model.bin``). Keys are unique within a
    version, so no tensor hides another.

    Example:
        >>> tensor_keys([("unet/a.safetensors", "w"), ("vae/b.safetensors", "w"), ("vae/b.safetensors", "v")])
        {('unet/a.safetensors', 'w'): 'unet/a.safetensors:w', ('vae/b.safetensors', 'w'): 'vae/b.safetensors:w', ('vae/b.safetensors', 'v'): 'v'}
    """
    items = list(tensors)
    files: dict[str, set[str]] = defaultdict(set)
    for path, name in items:
        files[name].add(path)
    return {(p, n): (n if len(files[n]) == 1 else f"{p}{KEY_SEP}{n}") for p, n in items}


def split_key(key: str, paths: Iterable[str]) -> tuple[str | None, str]:
    """``(path, name)`` of a qualified key whose path is one of ``paths``, else ``(None, key)``
    (tensor names may themselves hold ``:``)."""
    for p in paths:
        if key.startswith(p + KEY_SEP):
            return p, key[len(p) + len(KEY_SEP) :]
    return None, key
