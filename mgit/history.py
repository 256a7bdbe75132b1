"""History queries: log, model lines, find, the lineage graph.

Functions take a :class:`mgit.core.RepoCore` and only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mgit.core import CommitInfo, RepoCore, check_relation
from mgit.errors import UsageError
from mgit.lineage import graph as dag
from mgit.reach import all_commits

__all__ = ["ModelInfo", "FileInfo", "ShowResult", "show", "log", "is_ancestor", "models", "lineage", "find", "line_versions"]


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
            "name": self.name, "head": self.head, "versions": self.versions,
            "derived_from": self.derived_from, "relation": self.relation,
            "logical_bytes": self.logical_bytes, "time": self.time, "message": self.message,
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
        data["files"] = {f.path: {"kind": f.kind, "size": f.size, "tensors": f.tensors} for f in self.files}
        data["logical_bytes"] = self.logical_bytes
        return data


def show(core: RepoCore, ref: str) -> ShowResult:
    """A version and its files, sorted by path."""
    info = core.commit_info(core.resolve(ref))
    tree = core.read_tree(info.tree)
    files = [FileInfo(p, e.kind, e.size, len(e.tensors)) for p, e in sorted(tree.files.items())]
    return ShowResult(info, files, tree.logical_bytes)


def log(core: RepoCore, ref: str | None = None, *, all: bool = False, limit: int | None = None) -> list[CommitInfo]:
    """Commits reachable from REF (default HEAD; ``all``: from every ref), newest first,
    children before parents."""
    if all:
        commits = all_commits(core)
    else:
        commits = dag.ancestors([core.resolve(ref or "HEAD")], core.parents_of)
    order = dag.topo_order(commits, core.parents_of, core.commit_time_of)
    if limit is not None:
        order = order[:limit]
    return [core.commit_info(c) for c in order]


def is_ancestor(core: RepoCore, a: str, b: str) -> bool:
    """True when commit ``a`` is ``b`` or one of its ancestors."""
    return dag.is_ancestor(a, b, core.parents_of)


def models(core: RepoCore) -> list[ModelInfo]:
    """Every model line with its latest version and the model it derives from."""
    out = []
    current = core.head_model
    for name, tip in core.model_heads().items():
        c = core.read_commit(tip)
        line = line_versions(core, tip, model=name)
        src = next(iter(core.read_commit(line[-1]).parents), None)
        derived = f"{core.read_commit(src.oid).model}@{src.oid[:12]}" if src is not None else None
        out.append(
            ModelInfo(
                name=name, head=tip, versions=len(line), derived_from=derived,
                relation=src.relation if src else None,
                logical_bytes=core.read_tree(c.tree).logical_bytes, time=c.time,
                message=c.message, current=name == current,
            )
        )
    return out


def lineage(core: RepoCore, ref: str | None = None, *, direction: str | None = None) -> Any:
    """The lineage graph as a ``networkx.DiGraph``.

    Nodes are commit ids with ``model``, ``short``, ``message``, ``author``, ``time``,
    ``meta``, ``tags``, ``heads`` (model lines whose latest version it is), ``lossy`` and
    ``logical_bytes``; edges run parent -> child with ``relation`` and ``index`` (the
    parent's position). With REF: REF's ancestors and descendants (REF included), or only
    one side with ``direction`` ``"ancestors"`` or ``"descendants"``.
    """
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
            commits = dag.ancestors([oid], core.parents_of) | dag.descendants(oid, commits, core.parents_of)
        else:
            raise UsageError(f"unknown direction {direction!r}")
    heads: dict[str, list[str]] = {}
    for name, oid in core.model_heads().items():
        heads.setdefault(oid, []).append(name)
    tags: dict[str, list[str]] = {}
    for name, oid in core.tags().items():
        tags.setdefault(oid, []).append(name)
    g: Any = nx.DiGraph()
    for c in commits:
        cm = core.read_commit(c)
        g.add_node(
            c, model=cm.model, short=c[:12], message=cm.message, author=cm.author, time=cm.time,
            meta=dict(cm.meta), tags=tags.get(c, []), heads=heads.get(c, []),
            lossy=cm.lossy is not None, logical_bytes=core.read_tree(cm.tree).logical_bytes,
        )
    for c in commits:
        for i, p in enumerate(core.read_commit(c).parents):
            if p.oid in commits:
                g.add_edge(p.oid, c, relation=p.relation, index=i)
    return g


def find(
    core: RepoCore,
    *,
    task: str | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    derived_from: str | None = None,
    all_versions: bool = False,
) -> list[CommitInfo]:
    """Model versions matching every filter given.

    Args:
        core: the repository.
        task: ``meta["task"]`` equals this.
        relation: the version was made from a parent with this relation.
        meta: every ``KEY=VALUE`` matches the version's metadata.
        derived_from: REF is a proper ancestor (transitively, through any relation).
        all_versions: search every version, not only the latest of each model line.
    """
    if relation is not None:
        check_relation(relation)
    cands = all_commits(core) if all_versions else set(core.model_heads().values())
    anc_of: str | None = core.resolve(derived_from) if derived_from else None
    want = dict(meta or {})
    if task is not None:
        want["task"] = task
    out = []
    for c in cands:
        if want and not _meta_matches(core, c, want, all_versions):
            continue
        if relation is not None and not _has_relation(core, c, relation, all_versions):
            continue
        if anc_of is not None and (c == anc_of or not is_ancestor(core, anc_of, c)):
            continue
        out.append(core.commit_info(c))
    out.sort(key=lambda i: (-i.time, i.model))
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


def _meta_matches(core: RepoCore, oid: str, want: dict[str, str], exact: bool) -> bool:
    """Whether the version (or, for a model line, its latest version that sets each key)
    has the wanted metadata: a key set on an earlier version holds until a later version
    sets it again."""
    versions = [oid] if exact else line_versions(core, oid)
    for k, v in want.items():
        found = next((core.read_commit(c).meta[k] for c in versions if k in core.read_commit(c).meta), None)
        if found != v:
            return False
    return True


def _has_relation(core: RepoCore, oid: str, relation: str, exact: bool) -> bool:
    """Whether this version (or, for a model line, any of its versions) has such a parent edge."""
    versions = [oid] if exact else line_versions(core, oid)
    return any(p.relation == relation for c in versions for p in core.read_commit(c).parents)
