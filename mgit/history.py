"""History queries: log, model lines, find, the lineage graph.

Functions take a :class:`mgit.core.RepoCore` and only read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

from mgit import lineage_index
from mgit._alloc import paused_gc
from mgit.core import CommitInfo, RepoCore, check_relation
from mgit.errors import UsageError
from mgit.lineage import graph as dag
from mgit.lineage_index import LineageIndex
from mgit.objects.model import RELATIONS
from mgit.reach import all_commits
from mgit.refs.store import HEADS, TAGS

__all__ = [
    "FileInfo",
    "LogView",
    "MetaCondition",
    "ModelInfo",
    "ShowResult",
    "find",
    "is_ancestor",
    "line_versions",
    "lineage",
    "lineage_data",
    "log",
    "log_view",
    "models",
    "parse_condition",
    "show",
]


@dataclass(frozen=True)
class ModelInfo:
    """A model line: its latest version and where it came from."""

    name: str
    head: str
    versions: int
    derived_from: str | None  # "model@short" of the parent of its first version
    relation: str | None
    logical_bytes: int
    time: int
    message: str
    current: bool

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "name": self.name,
            "head": self.head,
            "versions": self.versions,
            "derived_from": self.derived_from,
            "relation": self.relation,
            "logical_bytes": self.logical_bytes,
            "time": self.time,
            "message": self.message,
            "current": self.current,
        }


@dataclass(frozen=True)
class FileInfo:
    """One file of a version, as ``show`` lists it."""

    path: str
    kind: str  # "safetensors" or "blob"
    size: int
    tensors: int


@dataclass(frozen=True)
class ShowResult:
    """A version with its files (what ``mgit show`` prints)."""

    commit: CommitInfo
    files: list[FileInfo]
    logical_bytes: int

    def to_json(self) -> dict[str, Any]:
        """JSON value: the commit's fields plus ``files`` (path -> kind, size, tensors) and
        ``logical_bytes``."""
        data = self.commit.to_json()
        data["files"] = {
            f.path: {"kind": f.kind, "size": f.size, "tensors": f.tensors} for f in self.files
        }
        data["logical_bytes"] = self.logical_bytes
        return data


def show(core: RepoCore, ref: str) -> ShowResult:
    """A version and its files, sorted by path."""
    info = core.commit_info(core.resolve(ref))
    tree = core.read_tree(info.tree)
    files = [FileInfo(p, e.kind, e.size, len(e.tensors)) for p, e in sorted(tree.files.items())]
    return ShowResult(info, files, tree.logical_bytes)


@dataclass(frozen=True)
class LogView:
    """What ``log`` lists, ready to stream: the commit ids in order and how to read each.

    Attributes:
        oids: the commits, newest first, every child before its parents.
        members: the same commits, for membership tests (a parent outside has no graph line).
        info: a commit id -> its :class:`CommitInfo` (read on demand).
        model_of: a commit id (listed or a parent of one) -> its model line.
    """

    oids: Sequence[str]
    members: Container[str]
    info: Callable[[str], CommitInfo]
    model_of: Callable[[str], str]
    #: Model lines and their latest commits, and tags, as read for this listing.
    model_heads: dict[str, str]
    tags: dict[str, str]


def log_view(core: RepoCore, ref: str | None = None, *, all: bool = False) -> LogView:
    """The commits ``log`` lists (see :func:`log`), with nothing read but the order: from the
    lineage index when it is usable (the ``--all`` order is precomputed there), else from the
    commit objects."""
    ix = lineage_index.load(core)
    if ix is not None:
        if all:
            return _view(core, ix, [ix.oids[i] for i in ix.order], ix.pos)
        i = ix.pos.get(core.resolve(ref or "HEAD"))
        if i is not None:
            order = [ix.oids[k] for k in ix.topo_order(ix.ancestors([i]))]
            return _view(core, ix, order, set(order))
    if all:
        commits = all_commits(core)
    else:
        commits = dag.ancestors([core.resolve(ref or "HEAD")], core.parents_of)
    order = dag.topo_order(commits, core.parents_of, core.commit_time_of)
    return LogView(order, commits, core.commit_info, core.model_of, core.model_heads(), core.tags())


def _view(core: RepoCore, ix: LineageIndex, order: list[str], members: Container[str]) -> LogView:
    pos = ix.pos

    def model_of(oid: str) -> str:
        i = pos.get(oid)
        return ix.model_name(i) if i is not None else core.model_of(oid)

    snap = ix.snapshot
    return LogView(
        order, members, lambda oid: ix.info(pos[oid]), model_of, snap.under(HEADS), snap.under(TAGS)
    )


def log(
    core: RepoCore, ref: str | None = None, *, all: bool = False, limit: int | None = None
) -> list[CommitInfo]:
    """Commits reachable from REF (default HEAD; ``all``: from every ref), newest first,
    children before parents (ties: newest first, then by id)."""
    view = log_view(core, ref, all=all)
    order = view.oids if limit is None else view.oids[:limit]
    return [view.info(c) for c in order]


def is_ancestor(core: RepoCore, a: str, b: str) -> bool:
    """True when commit ``a`` is ``b`` or one of its ancestors."""
    return dag.is_ancestor(a, b, core.parents_of)


def models(core: RepoCore) -> list[ModelInfo]:
    """Every model line with its latest version and the model it derives from."""
    with paused_gc():
        return _models(core)


def _models(core: RepoCore) -> list[ModelInfo]:
    ix = lineage_index.load(core)
    if ix is None:
        return _models_from_objects(core)
    heads = ix.snapshot.under(HEADS)
    out = []
    current = core.head_model
    tips = [ix.pos[tip] for tip in heads.values()]
    messages = [r[1] for r in ix.records(tips)]
    for (name, tip), i, message in zip(heads.items(), tips, messages):
        line = _line_ix(ix, i, model=name)
        first = line[-1]
        ps = ix.parents(first)
        src = ps[0] if ps else None
        out.append(
            ModelInfo(
                name=name,
                head=tip,
                versions=len(line),
                derived_from=f"{ix.model_name(src)}@{ix.oids[src][:12]}"
                if src is not None
                else None,
                relation=ix.parent_links(first)[0][1] if src is not None else None,
                logical_bytes=ix.lbytes[i],
                time=ix.time[i],
                message=message,
                current=name == current,
            )
        )
    return out


def _models_from_objects(core: RepoCore) -> list[ModelInfo]:
    out = []
    current = core.head_model
    for name, tip in core.model_heads().items():
        c = core.read_commit(tip)
        line = line_versions(core, tip, model=name)
        src = next(iter(core.read_commit(line[-1]).parents), None)
        derived = f"{core.read_commit(src.oid).model}@{src.oid[:12]}" if src is not None else None
        out.append(
            ModelInfo(
                name=name,
                head=tip,
                versions=len(line),
                derived_from=derived,
                relation=src.relation if src else None,
                logical_bytes=core.read_tree(c.tree).logical_bytes,
                time=c.time,
                message=c.message,
                current=name == current,
            )
        )
    return out


def _line_ix(ix: LineageIndex, i: int, *, model: str | None = None) -> list[int]:
    """:func:`line_versions` on the index."""
    out = [i]
    seen = {i}
    cur = i
    while True:
        line = model or ix.model_name(cur)
        nxt = [p for p in ix.parents(cur) if ix.model_name(p) == line]
        if not nxt or nxt[0] in seen:
            return out
        cur = nxt[0]
        out.append(cur)
        seen.add(cur)


def lineage(core: RepoCore, ref: str | None = None, *, direction: str | None = None) -> Any:
    """The lineage graph as a ``networkx.DiGraph``.

    Nodes are commit ids with ``model``, ``short``, ``message``, ``author``, ``time``,
    ``meta``, ``tags``, ``heads`` (model lines whose latest version it is), ``lossy`` and
    ``logical_bytes``; edges run parent -> child with ``relation`` and ``index`` (the
    parent's position). With REF: REF's ancestors and descendants (REF included), or only
    one side with ``direction`` ``"ancestors"`` or ``"descendants"``.
    """
    import networkx as nx

    ix, members = _index_members(core, ref, direction)
    if ix is None:
        return _lineage_from_objects(core, ref, direction=direction)
    members.sort(key=ix.oids.__getitem__)  # node order as from the objects: by id
    heads, tags = _names_at(ix)
    g: Any = nx.DiGraph()
    oids = ix.oids
    for c in members:
        author, message, meta, _tree, _recipe, lossy = ix.record(c)
        o = oids[c]
        g.add_node(
            o,
            model=ix.model_name(c),
            short=o[:12],
            message=message,
            author=author,
            time=ix.time[c],
            meta=dict(meta),
            tags=tags.get(o, []),
            heads=heads.get(o, []),
            lossy=lossy is not None,
            logical_bytes=ix.lbytes[c],
        )
    inside = set(members)
    for c in members:
        for k, (p, rel) in enumerate(ix.parent_links(c)):
            if ix.pos[p] in inside:
                g.add_edge(p, oids[c], relation=rel, index=k)
    return g


def _index_members(
    core: RepoCore, ref: str | None, direction: str | None
) -> tuple[LineageIndex | None, list[int]]:
    """The lineage index and the commits a lineage view of REF (all, with None) shows; ``(None,
    [])`` when the view must be read from the objects (no index, or REF not in it)."""
    if ref is not None and direction not in (None, "ancestors", "descendants"):
        raise UsageError(f"unknown direction {direction!r}")
    ix = lineage_index.load(core)
    oid = core.resolve(ref) if ref is not None else None
    if ix is None or (oid is not None and oid not in ix.pos):
        return None, []
    if oid is None:
        return ix, list(range(ix.n))
    i = ix.pos[oid]
    if direction == "ancestors":
        return ix, list(ix.ancestors([i]))
    if direction == "descendants":
        return ix, list({i} | ix.descendants(i))
    return ix, list(ix.ancestors([i]) | ix.descendants(i))


def _names_at(ix: LineageIndex) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Commit id -> the model lines whose latest version it is, and -> its tags."""
    heads: dict[str, list[str]] = {}
    for name, h in ix.snapshot.under(HEADS).items():
        heads.setdefault(h, []).append(name)
    tags: dict[str, list[str]] = {}
    for name, t in ix.snapshot.under(TAGS).items():
        tags.setdefault(t, []).append(name)
    return heads, tags


def lineage_data(
    core: RepoCore, ref: str | None = None, *, direction: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The lineage graph as plain data: exactly ``to_json(lineage(core, ref, direction=...))``
    (:func:`mgit.lineage.render.to_json`: ``{"nodes": [...], "edges": [...]}``), read straight
    from the lineage index when there is one, without building a graph (3 µs a commit instead
    of 60: ``lineage --json`` of 100,000 models)."""
    with paused_gc():
        return _lineage_data(core, ref, direction)


def _lineage_data(
    core: RepoCore, ref: str | None, direction: str | None
) -> dict[str, list[dict[str, Any]]]:
    from mgit.lineage._records import _as_bytes, _as_meta, _as_str, _as_time

    ix, members = _index_members(core, ref, direction)
    if ix is None:
        from mgit.lineage.render import to_json

        return to_json(_lineage_from_objects(core, ref, direction=direction))
    heads, tags = _names_at(ix)
    oids, times, models, model_of, lbytes = ix.oids, ix.time, ix.models, ix.model, ix.lbytes
    members.sort(key=lambda c: (times[c], oids[c]))  # the nodes' order: (time, id)
    nodes = []
    for c, (author, message, meta, _tree, _recipe, lossy) in zip(members, ix.records(members)):
        o = oids[c]
        nodes.append({
            "id": o,
            "short": o[:12],
            "model": models[model_of[c]],
            "message": _as_str(message),
            "author": _as_str(author),
            "time": _as_time(times[c]),
            "meta": _as_meta(meta) if meta else {},
            "tags": sorted(tags[o]) if o in tags else [],
            "heads": sorted(heads[o]) if o in heads else [],
            "lossy": lossy is not None,
            "logical_bytes": _as_bytes(lbytes[c]),
        })
    inside = set(members)
    found = []
    pstart, pidx, prel = ix.pstart, ix.pidx, ix.prel
    for c in members:
        a, b = pstart[c], pstart[c + 1]
        if b - a == 1:
            if pidx[a] in inside:
                found.append((oids[c], 0, oids[pidx[a]], prel[a]))
            continue
        last = {pidx[k]: k for k in range(a, b)}  # a graph has one edge per pair: the last
        found.extend((oids[c], k - a, oids[p], prel[k]) for p, k in last.items() if p in inside)
    found.sort()  # (target, index, source): the edges' order
    edges = [{"source": src, "target": t, "relation": RELATIONS[r], "index": k}
             for t, k, src, r in found]
    return {"nodes": nodes, "edges": edges}


def _lineage_from_objects(
    core: RepoCore, ref: str | None = None, *, direction: str | None = None
) -> Any:
    import networkx as nx

    commits = all_commits(core)
    if ref is not None:
        oid = core.resolve(ref)
        commits.add(oid)
        if direction == "ancestors":
            commits = dag.ancestors([oid], core.parents_of)
        elif direction == "descendants":
            commits = {oid} | dag.descendants(oid, commits, core.parents_of)
        elif direction is None:
            commits = dag.ancestors([oid], core.parents_of) | dag.descendants(
                oid, commits, core.parents_of
            )
        else:
            raise UsageError(f"unknown direction {direction!r}")
    heads: dict[str, list[str]] = {}
    for name, oid in core.model_heads().items():
        heads.setdefault(oid, []).append(name)
    tags: dict[str, list[str]] = {}
    for name, oid in core.tags().items():
        tags.setdefault(oid, []).append(name)
    g: Any = nx.DiGraph()
    for c in sorted(commits):
        cm = core.read_commit(c)
        g.add_node(
            c,
            model=cm.model,
            short=c[:12],
            message=cm.message,
            author=cm.author,
            time=cm.time,
            meta=dict(cm.meta),
            tags=tags.get(c, []),
            heads=heads.get(c, []),
            lossy=cm.lossy is not None,
            logical_bytes=core.read_tree(cm.tree).logical_bytes,
        )
    for c in sorted(commits):
        for i, p in enumerate(core.read_commit(c).parents):
            if p.oid in commits:
                g.add_edge(p.oid, c, relation=p.relation, index=i)
    return g


#: The comparisons ``find --meta`` takes, longest first (``>=`` before ``>``).
META_OPS = (">=", "<=", "==", "!=", ">", "<", "=")


@dataclass(frozen=True)
class MetaCondition:
    """``KEY OP VALUE`` on a version's metadata (:func:`parse_condition`)."""

    key: str
    op: str
    value: str

    def holds(self, found: str | None) -> bool:
        """Whether a metadata value (None: the key is not set) satisfies the condition.

        ``=`` compares text exactly. ``==`` and ``!=`` compare numbers when both sides parse
        as numbers, else text. ``<``, ``<=``, ``>``, ``>=`` compare numbers only: a value
        that is not a number never satisfies them. A key that is not set satisfies nothing.
        """
        if found is None:
            return False
        if self.op == "=":
            return found == self.value
        a, b = _number(found), _number(self.value)
        if self.op in ("==", "!="):
            same = a == b if a is not None and b is not None else found == self.value
            return same if self.op == "==" else not same
        if a is None or b is None:
            return False
        return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[self.op]


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x  # NaN compares with nothing


def parse_condition(text: str) -> MetaCondition:
    """``"accuracy>=0.9"``, ``"task=sst2"``, ``"loss<0.5"`` as a :class:`MetaCondition`.

    Raises:
        UsageError: no operator, or an empty key.
    """
    i = next((j for j, ch in enumerate(text) if ch in "<>=!"), -1)
    op = next((o for o in META_OPS if i >= 0 and text.startswith(o, i)), None)
    if op is None:
        raise UsageError(
            f"--meta takes KEY=VALUE or KEY<op>VALUE (op: {', '.join(META_OPS[:-1])}), got {text!r}"
        )
    key = text[:i].strip()
    if not key:
        raise UsageError(f"--meta: no key in {text!r}")
    value = text[i + len(op):]
    return MetaCondition(key, op, value if op == "=" else value.strip())


def find(
    core: RepoCore,
    *,
    task: str | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    derived_from: str | None = None,
    all_versions: bool = False,
    where: Sequence[str | MetaCondition] = (),
    sort: str | None = None,
    reverse: bool = False,
) -> list[CommitInfo]:
    """Model versions matching every filter given, newest first (ties: by model, then id).

    A model line's metadata is, key by key, that of its latest version that sets the key (a key
    set on an earlier version holds until a later version sets it again); with
    ``all_versions``, each version's own.

    Args:
        core: the repository.
        task: ``meta["task"]`` equals this.
        relation: the version was made from a parent with this relation.
        meta: every ``KEY=VALUE`` matches the version's metadata.
        derived_from: REF is a proper ancestor (transitively, through any relation).
        all_versions: search every version, not only the latest of each model line.
        where: conditions ``"accuracy>=0.9"`` (:func:`parse_condition`,
            :meth:`MetaCondition.holds`), all of which must hold.
        sort: order by this metadata key instead: numerically when every value found parses
            as a number, else as text; versions without the key last.
        reverse: with ``sort``, largest first.

    Raises:
        UsageError: a bad relation or condition.
    """
    if relation is not None:
        check_relation(relation)
    conds = [c if isinstance(c, MetaCondition) else parse_condition(c) for c in where]
    want = dict(meta or {})
    if task is not None:
        want["task"] = task
    conds = [MetaCondition(k, "=", v) for k, v in want.items()] + conds
    keys = {c.key for c in conds} | ({sort} if sort else set())
    ix = lineage_index.load(core)
    if ix is None:
        found = _find_from_objects(core, keys, relation, derived_from, all_versions)
    else:
        found = _find_from_index(core, ix, keys, relation, derived_from, all_versions)
    out = [(info, vals) for info, vals in found if all(c.holds(vals.get(c.key)) for c in conds)]
    out.sort(key=lambda iv: (-iv[0].time, iv[0].model, iv[0].oid))
    if sort:
        out = _sorted_by(out, sort, reverse)
    return [info for info, _ in out]


def _sorted_by(
    items: list[tuple[CommitInfo, dict[str, str | None]]], key: str, reverse: bool
) -> list[tuple[CommitInfo, dict[str, str | None]]]:
    """Stable sort by a metadata value: numbers when all of them parse, else text; missing
    values last whatever the direction."""
    have = [iv for iv in items if iv[1].get(key) is not None]
    missing = [iv for iv in items if iv[1].get(key) is None]
    nums = [_number(str(iv[1][key])) for iv in have]
    if all(n is not None for n in nums):
        order = sorted(zip(nums, range(len(have))), key=lambda t: t[0], reverse=reverse)  # type: ignore[arg-type,return-value]
    else:
        order = sorted(zip([str(iv[1][key]) for iv in have], range(len(have))),
                       key=lambda t: t[0], reverse=reverse)  # type: ignore[arg-type,return-value]
    return [have[i] for _, i in order] + missing


def _find_from_index(
    core: RepoCore,
    ix: LineageIndex,
    keys: set[str],
    relation: str | None,
    derived_from: str | None,
    all_versions: bool,
) -> list[tuple[CommitInfo, dict[str, str | None]]]:
    heads = ix.snapshot.under(HEADS)
    cands = range(ix.n) if all_versions else sorted({ix.pos[t] for t in heads.values()})
    below: set[int] | None = None
    if derived_from:
        a = ix.pos.get(core.resolve(derived_from))
        below = ix.descendants(a) if a is not None else set()
    out = []
    for c in cands:
        if below is not None and c not in below:
            continue
        versions = [c] if all_versions else _line_ix(ix, c)
        if relation is not None and not any(
            r == relation for v in versions for _, r in ix.parent_links(v)
        ):
            continue
        vals = {
            k: next((ix.record(v)[2][k] for v in versions if k in ix.record(v)[2]), None) for k in keys
        }
        out.append((ix.info(c), vals))
    return out


def _find_from_objects(
    core: RepoCore,
    keys: set[str],
    relation: str | None,
    derived_from: str | None,
    all_versions: bool,
) -> list[tuple[CommitInfo, dict[str, str | None]]]:
    cands = all_commits(core) if all_versions else set(core.model_heads().values())
    anc_of: str | None = core.resolve(derived_from) if derived_from else None
    out = []
    for c in sorted(cands):
        if relation is not None and not _has_relation(core, c, relation, all_versions):
            continue
        if anc_of is not None and (c == anc_of or not is_ancestor(core, anc_of, c)):
            continue
        versions = [c] if all_versions else line_versions(core, c)
        vals = {
            k: next((core.read_commit(v).meta[k] for v in versions if k in core.read_commit(v).meta), None)
            for k in keys
        }
        out.append((core.commit_info(c), vals))
    return out


def line_versions(core: RepoCore, oid: str, *, model: str | None = None) -> list[str]:
    """``oid`` and the earlier versions of its model line (``model``, default the commit's
    own), newest first: first parents on the same line, whatever their relation."""
    out: list[str] = []
    cur: str | None = oid
    while cur is not None and cur not in out:
        out.append(cur)
        cm = core.read_commit(cur)
        line = model or cm.model
        nxt = [p.oid for p in cm.parents if core.read_commit(p.oid).model == line]
        cur = nxt[0] if nxt else None
    return out


def _has_relation(core: RepoCore, oid: str, relation: str, exact: bool) -> bool:
    """Whether this version (or, for a model line, any of its versions) has such a parent edge."""
    versions = [oid] if exact else line_versions(core, oid)
    return any(p.relation == relation for c in versions for p in core.read_commit(c).parents)
