r"""Views of the lineage graph: an ASCII ``log --graph``, Graphviz DOT, JSON and an HTML page.

These functions only render. The repository and the DAG walks build the input: for
:func:`graph_log`, a list of :class:`LogEntry` in the order to print (newest first, children before
parents); for the others, a ``networkx.DiGraph`` whose nodes are commit ids with the attributes
``model``, ``short``, ``message``, ``author``, ``time``, ``meta``, ``tags``, ``heads``, ``lossy``
and ``logical_bytes``, and whose edges go parent -> child with the attributes ``relation`` and
``index`` (the parent's position in the child's parent list).

Example:
    >>> entries = [
    ...     LogEntry("b" * 64, parents=(("a" * 64, "finetune"),), model="tiny-sst2",
    ...              message="finetune on sst2"),
    ...     LogEntry("a" * 64, model="tiny", message="base"),
    ... ]
    >>> print("\n".join(graph_log(entries)))
    * bbbbbbbbbbbb tiny-sst2 [finetune of tiny@aaaaaaa] finetune on sst2
    * aaaaaaaaaaaa tiny base
"""

from __future__ import annotations

import heapq
import time as _time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mgit.lineage._records import (
    DERIVATIONS,
    RELATIONS,
    first_line,
    records_of,
    sorted_edges,
    sorted_nodes,
)
from mgit.lineage.html_view import to_html

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "DERIVATIONS",
    "RELATIONS",
    "LogEntry",
    "entries_from_graph",
    "graph_log",
    "iter_graph_log",
    "to_dot",
    "to_html",
    "to_json",
]


@dataclass(frozen=True)
class LogEntry:
    """One commit as :func:`graph_log` prints it.

    Attributes:
        oid: The full commit id.
        short: The abbreviated id shown on the line (defaults to the first 12 characters of
            ``oid``).
        parents: ``(parent oid, relation)`` pairs in parent order (first parent first).
        model: The model line the commit belongs to.
        message: The commit message; only its first line is shown.
        tags: Tags that point at the commit.
        heads: Model lines whose latest version is this commit.
        time: Commit time, unix seconds.
        author: Commit author.
    """

    oid: str
    short: str = ""
    parents: tuple[tuple[str, str], ...] = ()
    model: str = ""
    message: str = ""
    tags: tuple[str, ...] = ()
    heads: tuple[str, ...] = ()
    time: float = 0.0
    author: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LogEntry:
        """Build an entry from a dict with the same keys as the attributes.

        Args:
            data: A mapping with at least ``oid``; ``parents`` may hold ``(oid, relation)`` pairs
                or bare oids (read as ``version``).

        Returns:
            The entry.

        Raises:
            ValueError: If ``oid`` is missing.
        """
        if "oid" not in data:
            raise ValueError("a log entry needs an 'oid'")
        parents: list[tuple[str, str]] = []
        for p in data.get("parents", ()) or ():
            if isinstance(p, str):
                parents.append((p, "version"))
            else:
                oid, relation = p[0], p[1]
                parents.append((str(oid), str(relation)))
        return cls(
            oid=str(data["oid"]),
            short=str(data.get("short") or ""),
            parents=tuple(parents),
            model=str(data.get("model") or ""),
            message=str(data.get("message") or ""),
            tags=tuple(str(t) for t in data.get("tags", ()) or ()),
            heads=tuple(str(h) for h in data.get("heads", ()) or ()),
            time=float(data.get("time") or 0.0),
            author=str(data.get("author") or ""),
        )


# ----------------------------------------------------------------------------------------------
# log --graph
# ----------------------------------------------------------------------------------------------

# When two strokes land in the same character cell, the stronger one is drawn.
_STRENGTH = {" ": 0, "_": 1, "/": 2, "\\": 2, "|": 3}


def _transition_row(moves: Sequence[tuple[int, int]], slots: int) -> str:
    r"""Draw one row that takes each column from slot ``a`` to slot ``b`` for ``(a, b)`` in moves.

    Slot ``s`` sits at character ``2 * s``. A column that stays draws ``|``; one that moves by one
    slot draws ``/`` or ``\`` between the two; one that moves further runs along the bottom of
    the row with ``_`` (``|_|/`` or ``\_``), so every transition takes a single row.

    When two strokes land in one cell the stronger is drawn (``|`` over ``/`` and ``\``, those
    over ``_``; between ``/`` and ``\`` the first). The runs of ``_`` are summed with a
    difference array, so a row costs O(width + moves) however far and many the moves are (many
    lines joining one commit used to cost O(moves * width)).
    """
    width = 2 * slots + 1
    cells = [" "] * width
    under = [0] * (width + 1)  # +1 where a run of "_" starts, -1 past its end

    def put(x: int, ch: str) -> None:
        if _STRENGTH[ch] > _STRENGTH[cells[x]]:
            cells[x] = ch

    for a, b in moves:
        if a == b:
            put(2 * a, "|")
        elif b < a:
            put(2 * a - 1, "/")
            lo, hi = 2 * b + 1, 2 * a - 1
            if lo < hi:
                under[lo] += 1
                under[hi] -= 1
        else:
            put(2 * a + 1, "\\")
            lo, hi = 2 * a + 2, 2 * b
            if lo < hi:
                under[lo] += 1
                under[hi] -= 1
    depth = 0
    for x in range(width):
        depth += under[x]
        if depth > 0 and cells[x] == " ":
            cells[x] = "_"
    return "".join(cells).rstrip()


def _commit_row(slots: int, at: int, pad_slots: int) -> str:
    cells = [" "] * max(2 * pad_slots - 1, 1)
    for s in range(slots):
        cells[2 * s] = "*" if s == at else "|"
    return "".join(cells)


def _describe(
    entry: LogEntry,
    model_of: Callable[[str], str],
    *,
    verbose: bool,
) -> str:
    """Return the text after the graph columns: id, decorations, model, relation, message."""
    parts = [entry.short or entry.oid[:12]]
    decorations = list(entry.heads) + [f"tag: {t}" for t in entry.tags]
    if decorations:
        parts.append("(" + ", ".join(decorations) + ")")
    if entry.model:
        parts.append(entry.model)
    shown = False
    labels: list[tuple[str, str]] = []
    for poid, relation in entry.parents:
        pmodel = model_of(poid)
        if relation != "version" or pmodel != entry.model:
            shown = True
        labels.append((relation, f"{pmodel}@{poid[:7]}" if pmodel else poid[:7]))
    if shown:
        relations = {r for r, _ in labels}
        if len(relations) == 1:
            parts.append(f"[{labels[0][0]} of " + ", ".join(lbl for _, lbl in labels) + "]")
        else:
            parts.append("[" + ", ".join(f"{r} of {lbl}" for r, lbl in labels) + "]")
    summary = first_line(entry.message)
    if summary:
        parts.append(summary)
    if verbose:
        when = _time.strftime("%Y-%m-%d %H:%M", _time.gmtime(entry.time))
        parts.append(f"<{entry.author}, {when} UTC>" if entry.author else f"<{when} UTC>")
    return " ".join(parts)


def graph_log(
    commits: Iterable[LogEntry | Mapping[str, Any]],
    *,
    limit: int | None = None,
    models: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> list[str]:
    r"""Draw commits as ``git log --graph`` does, one commit per line plus connecting lines.

    Each commit line holds the graph columns (``*`` for the commit, ``|`` for the other lines of
    history), the short id, decorations ``(model-head, tag: x)``, the model name, the relation to
    the parents where it is worth saying (``[finetune of minilm@abc1234]``: any relation other
    than ``version``, or a parent in another model line) and the message's first line. Between
    commit lines come ``|/``, ``|\`` and ``|_|/`` rows where lines of history fork, join, start
    or end. Parents that are not in ``commits`` (outside a partial listing) get no column.

    The work is O(n * width) for n commits and ``width`` lines of history open at once.

    Args:
        commits: The commits in the order to print: newest first and every child before its
            parents (see :func:`entries_from_graph`). Dicts are read with
            :meth:`LogEntry.from_mapping`.
        limit: Print only the first ``limit`` commits (lines to later commits stay open).
        models: Model names of parents that are not in ``commits``, by oid, for the relation
            text.
        verbose: Also show author and time (UTC) at the end of each line.

    Returns:
        The lines, without trailing newlines.
    """
    entries: list[LogEntry] = []
    position: dict[str, int] = {}
    for c in commits:
        e = c if isinstance(c, LogEntry) else LogEntry.from_mapping(c)
        if e.oid in position:
            continue  # printed once, at its first place
        position[e.oid] = len(entries)
        entries.append(e)
    names: dict[str, str] = dict(models or {})
    names.update((e.oid, e.model) for e in entries)
    count = len(entries) if limit is None else max(0, min(limit, len(entries)))
    return list(
        _graph_rows(
            entries[:count],
            lambda poid, i: position.get(poid, -1) > i,
            lambda oid: names.get(oid, ""),
            verbose=verbose,
        )
    )


def iter_graph_log(
    entries: Iterable[LogEntry],
    *,
    members: Container[str],
    model_of: Callable[[str], str],
    verbose: bool = False,
) -> Iterator[str]:
    """:func:`graph_log` as a stream, for a listing too long to hold: yields each line as soon
    as it is drawn, so ``log --graph | head`` stops after the first screen.

    Args:
        entries: the commits in a topological order (every child before its parents), each
            once, like the output of :func:`mgit.lineage.graph.topo_order`.
        members: every commit ``entries`` will yield (a parent outside gets no line).
        model_of: the model name of any commit (listed or a parent of one).
        verbose: also show author and time.

    Yields:
        The lines :func:`graph_log` returns for the same entries, one by one.
    """
    printed: set[str] = set()

    def later(poid: str, _i: int) -> bool:
        return poid in members and poid not in printed

    def marked(it: Iterable[LogEntry]) -> Iterator[LogEntry]:
        for e in it:
            yield e
            printed.add(e.oid)

    return _graph_rows(marked(entries), later, model_of, verbose=verbose)


def _graph_rows(
    entries: Iterable[LogEntry],
    later: Callable[[str, int], bool],
    model_of: Callable[[str], str],
    *,
    verbose: bool,
) -> Iterator[str]:
    """The lines of the graph log; ``later(parent, i)``: whether ``parent`` is printed after the
    ``i``-th entry (it then gets a line of history). O(width) per commit: each line is drawn
    once and holds at most ``2 * width`` characters."""
    cols: list[str] = []  # the commit each open line of history is waiting for, by slot
    for i, e in enumerate(entries):
        slots = [s for s, o in enumerate(cols) if o == e.oid]
        if not slots:
            cols.append(e.oid)  # a tip: a new line of history starts at the right
            at = len(cols) - 1
        else:
            at = slots[0]
            if len(slots) > 1:
                # Several children waited for this commit: their lines join into the first.
                moves: list[tuple[int, int]] = []
                kept: list[str] = []
                for s, o in enumerate(cols):
                    if o == e.oid and s != at:
                        moves.append((s, at))
                    else:
                        moves.append((s, len(kept)))
                        kept.append(o)
                yield _transition_row(moves, len(cols))
                cols = kept

        # Parents printed later take this commit's slot (first parent) and new slots right of
        # it; a parent printed earlier (a bad order) or not listed gets no line.
        parents: list[str] = []
        for poid, _relation in e.parents:
            if later(poid, i) and poid not in parents:
                parents.append(poid)
        after = cols[:at] + parents + cols[at + 1 :]
        text = _describe(e, model_of, verbose=verbose)
        row = _commit_row(len(cols), at, max(len(cols), len(after)))
        if len(parents) > 2 and at == len(cols) - 1:
            # An octopus at the right edge: "*-." then one "\" per extra parent, as git draws it.
            m = len(parents) - 1
            row = row[: 2 * at + 1] + "-" * (2 * m - 3) + "."
            yield row + " " + text
            yield ("| " * at + "|" + "\\ " * m).rstrip()
            cols = after
            continue
        yield row + " " + text

        if len(parents) != 1:
            shift = len(parents) - 1
            moves = [(s, s) for s in range(at)]
            moves += [(at, at + k) for k in range(len(parents))]
            moves += [(s, s + shift) for s in range(at + 1, len(cols))]
            if any(a != b for a, b in moves) or len(parents) > 1:
                yield _transition_row(moves, max(len(cols), len(after)))
        cols = after


def entries_from_graph(g: nx.DiGraph[str], *, order: str = "topo") -> list[LogEntry]:
    """Return every commit of a lineage graph as log entries, in the order to print.

    Both orders are topological (every child before its parents).

    - ``"topo"`` (the default, like ``git log --graph``): a depth-first post-order from the roots,
      so each commit comes right after everything derived from it and unrelated lines of history
      are not interleaved; this keeps the graph narrow. Subtrees holding the newest commits come
      first.
    - ``"date"``: newest first among the commits whose children have all been printed, except that
      a commit's first parent comes right after it when it is ready.

    Args:
        g: The lineage graph (edges parent -> child).
        order: ``"topo"`` or ``"date"``.

    Returns:
        The entries, ready for :func:`graph_log`.

    Raises:
        ValueError: If ``order`` is not one of the two.
    """
    if order not in ("topo", "date"):
        raise ValueError(f"unknown order {order!r}: use 'topo' or 'date'")
    records = {r["id"]: r for r in sorted_nodes(g)}
    parents_of: dict[str, list[tuple[str, str]]] = {n: [] for n in records}
    children_of: dict[str, list[str]] = {n: [] for n in records}
    for edge in sorted_edges(g):
        parents_of[edge["target"]].append((edge["source"], edge["relation"]))
        children_of[edge["source"]].append(edge["target"])
    oids = (
        _topo_dfs(records, parents_of, children_of)
        if order == "topo"
        else _by_date(records, parents_of, children_of)
    )
    return [
        LogEntry(
            oid=oid,
            short=records[oid]["short"],
            parents=tuple(parents_of[oid]),
            model=records[oid]["model"],
            message=records[oid]["message"],
            tags=tuple(records[oid]["tags"]),
            heads=tuple(records[oid]["heads"]),
            time=records[oid]["time"],
            author=records[oid]["author"],
        )
        for oid in oids
    ]


def _topo_dfs(
    records: Mapping[str, Mapping[str, Any]],
    parents_of: Mapping[str, list[tuple[str, str]]],
    children_of: Mapping[str, list[str]],
) -> list[str]:
    """Depth-first post-order over parent -> child edges: each commit after all it leads to."""
    # latest[n]: newest time among n and everything derived from it (children-first pass).
    latest: dict[str, float] = {}
    for oid in _by_date(records, parents_of, children_of, prefer_first=False):
        latest[oid] = max(
            [records[oid]["time"]] + [latest[c] for c in children_of[oid] if c in latest]
        )

    def newest_first(nodes: Iterable[str]) -> list[str]:
        return sorted(nodes, key=lambda n: (-latest[n], -records[n]["time"], n))

    out: list[str] = []
    done: set[str] = set()
    roots = newest_first(n for n in records if not parents_of[n])
    # Nodes on a cycle (a bad input) have no root above them; visit them after the roots.
    starts = roots + newest_first(records)
    for start in starts:
        if start in done:
            continue
        done.add(start)
        # Each frame: (commit, its children newest first, index of the next child to visit).
        stack: list[tuple[str, list[str], int]] = [(start, newest_first(children_of[start]), 0)]
        while stack:
            node, todo, k = stack[-1]
            while k < len(todo) and todo[k] in done:
                k += 1
            if k < len(todo):
                child = todo[k]
                stack[-1] = (node, todo, k + 1)
                done.add(child)
                stack.append((child, newest_first(children_of[child]), 0))
            else:
                stack.pop()
                out.append(node)
    return out


def _by_date(
    records: Mapping[str, Mapping[str, Any]],
    parents_of: Mapping[str, list[tuple[str, str]]],
    children_of: Mapping[str, list[str]],
    *,
    prefer_first: bool = True,
) -> list[str]:
    """Newest ready commit first (children before parents); optionally first parent next."""
    waiting = {n: len(set(children_of[n])) for n in records}
    ready = [(-r["time"], oid) for oid, r in records.items() if waiting[oid] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    seen: set[str] = set()
    preferred: str | None = None
    while ready or preferred is not None:
        if preferred is not None:
            oid, preferred = preferred, None
        else:
            oid = heapq.heappop(ready)[1]
        out.append(oid)
        seen.add(oid)
        for k, poid in enumerate(dict.fromkeys(p for p, _ in parents_of[oid])):
            waiting[poid] -= 1
            if waiting[poid] == 0:
                if k == 0 and prefer_first:
                    preferred = poid
                else:
                    heapq.heappush(ready, (-records[poid]["time"], poid))
    for oid in records:  # only on a cycle (a bad input): print what is left, newest first
        if oid not in seen:
            out.append(oid)
    return out


# ----------------------------------------------------------------------------------------------
# DOT
# ----------------------------------------------------------------------------------------------


#: Control characters but tab (newlines are escaped before) -> a space.
_DOT_CONTROLS = {c: " " for c in range(32) if c != 9}


def _dot_quote(text: str) -> str:
    r"""Quote ``text`` as a DOT string: backslashes and quotes escaped, newlines as ``\n``."""
    if text.isalnum():  # ids, relations, most names: nothing to escape
        return f'"{text}"'
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{text.translate(_DOT_CONTROLS)}"'


def to_dot(g: nx.DiGraph[str] | Mapping[str, Any], *, title: str = "lineage") -> str:
    """Return the lineage graph in Graphviz DOT.

    Nodes are labelled with the model name, the short id and the tags, grouped in one cluster per
    model line; heads have a bold border. Edges go parent -> child, labelled with the relation:
    ``version`` edges are dashed, derivations solid. Every user string is quoted and escaped.

    Args:
        g: The lineage graph, or its data (:func:`mgit.history.lineage_data`).
        title: The graph's name.

    Returns:
        The DOT text, ending with a newline.
    """
    out = [
        f"digraph {_dot_quote(title)} {{",
        "  graph [rankdir=LR, fontname=Helvetica, fontsize=10];",
        (
            '  node [shape=box, style="rounded,filled", fillcolor="#f8fafc", fontname=Helvetica,'
            " fontsize=10];"
        ),
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    nodes, edges = records_of(g)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in nodes:
        by_model.setdefault(r["model"], []).append(r)
    for k, model in enumerate(sorted(by_model)):
        out.append(f"  subgraph {_dot_quote(f'cluster_{k}')} {{")
        out.append(f'    label={_dot_quote(model)}; style="rounded,dashed"; color="#94a3b8";')
        for r in by_model[model]:
            label = f"{r['model']}\n{r['short']}"
            if r["tags"]:
                label += "\n" + ", ".join(f"tag: {t}" for t in r["tags"])
            attrs = [
                f"label={_dot_quote(label)}",
                f"tooltip={_dot_quote(first_line(r['message']))}",
            ]
            if r["heads"]:
                attrs.append("penwidth=2")
            if r["lossy"]:
                attrs.append('fillcolor="#fef3c7"')
            out.append(f"    {_dot_quote(r['id'])} [{', '.join(attrs)}];")
        out.append("  }")
    for e in edges:
        style = "solid" if e["relation"] in DERIVATIONS else "dashed"
        out.append(
            f"  {_dot_quote(e['source'])} -> {_dot_quote(e['target'])} "
            f"[label={_dot_quote(e['relation'])}, style={style}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------


def to_json(g: nx.DiGraph[str]) -> dict[str, Any]:
    """Return the lineage graph as plain JSON-ready data.

    The result is ``{"nodes": [...], "edges": [...]}``:

    - each node is ``{"id", "short", "model", "message", "author", "time", "meta", "tags",
      "heads", "lossy", "logical_bytes"}`` (``time`` unix seconds as a float, ``meta`` a
      str -> str dict sorted by key, ``tags`` and ``heads`` sorted lists, ``logical_bytes`` an
      int or null); nodes are sorted by (time, id);
    - each edge is ``{"source", "target", "relation", "index"}``, parent -> child, ``index`` the
      parent's position in the child's parent list; edges are sorted by (target, index, source).

    Missing attributes get defaults, so the shape is the same for every graph.

    Args:
        g: The lineage graph.

    Returns:
        The data; ``json.dumps`` of it is deterministic for a given graph.
    """
    return {"nodes": sorted_nodes(g), "edges": sorted_edges(g)}
