"""Import ranks: every import inside ``mgit`` points to a lower rank, and there is no cycle.

Every import is parsed, wherever it is: module level, inside functions (the lazy imports that
keep start-up cheap) and under ``TYPE_CHECKING``. A lazy import is still a dependency: hiding
a cycle inside a function is how responsibilities end up in the wrong module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "mgit"

#: Lowest first. A module may import modules of strictly lower ranks; inside one entry that is
#: a package (``mgit.diff``, ``mgit.remote``...) its modules may import each other, as long as
#: there is no cycle.
RANKS: list[tuple[str, ...]] = [
    ("mgit.errors",),
    ("mgit._syscalls", "mgit._planes", "mgit._diffstats", "mgit._jsonfmt"),  # the optional C modules
    # limits: the one table of input limits; _text: control characters escaped for output;
    # _jsonout: json.dumps(indent=2) through the C encoder
    (
        "mgit._fs", "mgit._paths", "mgit._dtypes", "mgit.limits", "mgit._text", "mgit._globs",
        "mgit._jsonout",
    ),
    ("mgit._lockfile", "mgit._pool", "mgit._alloc"),
    ("mgit.formats",),
    ("mgit.codecs", "mgit.hf"),  # hf: hub cache paths, model cards, adapter configs (pure)
    ("mgit.objects",),
    ("mgit.refs", "mgit.lineage"),
    ("mgit.format", "mgit.revspec", "mgit.reach"),
    ("mgit.core",),
    ("mgit.pairing", "mgit.lifecycle.notes", "mgit.lineage_index"),  # notes: refs/tests storage, which remote carries
    ("mgit.ingest", "mgit.materialize", "mgit.diff", "mgit.worktree.index", "mgit.worktree.scan"),
    ("mgit.sources",),
    ("mgit.tensors",),
    ("mgit.guess", "mgit.cache"),  # cache: read_file, materialized folders (issue #17)
    (
        "mgit.commit", "mgit.worktree.ops", "mgit.history", "mgit.maintenance", "mgit.branches",
        "mgit.remote",
    ),
    ("mgit.lifecycle",),  # tests, bisect, rebase, merge: built on commit, history, worktree
    ("mgit.remote.pull", "mgit.remote.clone", "mgit.remote.repair"),
    ("mgit.adapters", "mgit.checkpoints"),  # LoRA merge; commits from memory (issue #17)
    ("mgit.repo",),
    ("mgit.transformers",),  # from_pretrained(REF): opens a Repository by path (issue #17)
    ("mgit.integrations",),  # the Trainer callback, built on mgit.transformers and checkpoints
    ("mgit",),  # the package itself: its lazy ``Repository``
    ("mgit.cli", "mgit.commands"),
    ("mgit.__main__",),
]

_ENTRIES = [e for rank in RANKS for e in rank]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    """Python modules by name; C modules (``mgit/_planes.c``) by name too, pointing at their
    source (they import nothing of mgit)."""
    mods = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
    mods.update({_module_name(p): p for p in sorted(PKG.rglob("*.c"))})
    return mods


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The mgit module an import names (``from mgit import history`` names ``mgit.history``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """Every mgit module a file imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        for n in names:
            if n == "mgit" or n.startswith("mgit."):
                target = _resolve(n, modules)
                if target is not None and target != me:
                    out.append((node.lineno, target))
    return out


def _entry(mod: str) -> str:
    """The rank-table entry a module belongs to (the longest matching prefix)."""
    best = ""
    for e in _ENTRIES:
        if (mod == e or mod.startswith(e + ".")) and len(e) > len(best):
            best = e
    assert best, f"{mod} is not in the rank table: add it"
    return best


def _rank(mod: str) -> int:
    e = _entry(mod)
    return next(i for i, rank in enumerate(RANKS) if e in rank)


def _graph() -> nx.DiGraph:
    modules = _all_modules()
    g = nx.DiGraph()
    for mod, path in modules.items():
        g.add_node(mod)
        if path.suffix != ".py":
            continue
        for line, target in _imports(path, modules):
            g.add_edge(mod, target, line=line)
    return g


def test_every_module_has_a_rank() -> None:
    for mod in _all_modules():
        _rank(mod)


def test_imports_point_to_lower_ranks() -> None:
    bad = []
    for a, b, data in _graph().edges(data=True):
        ea, eb = _entry(a), _entry(b)
        if ea == eb:
            continue  # inside one package: only the cycle check applies
        if _rank(b) >= _rank(a):
            bad.append(f"{a}:{data['line']} imports {b} (rank {_rank(a)} -> {_rank(b)})")
    assert bad == []


def test_no_import_cycles() -> None:
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == []


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mgit.repo import Repository\n"
        "def f():\n    from mgit import history\n    import mgit.worktree.ops\n"
    )
    modules = _all_modules()
    fake = PKG / "_probe_for_test.py"
    got = sorted(t for _, t in _imports_from(src, modules, fake))
    assert got == ["mgit.history", "mgit.repo", "mgit.worktree.ops"]


def _imports_from(src: Path, modules: dict[str, Path], as_path: Path) -> list[tuple[int, str]]:
    """:func:`_imports` of ``src``'s text as if it were the module at ``as_path``."""
    tree_text = src.read_text()
    as_path.write_text(tree_text)
    try:
        return _imports(as_path, modules)
    finally:
        as_path.unlink()


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [
        ("mgit.repo", "mgit.core", True),
        ("mgit.core", "mgit.repo", False),
        ("mgit.remote.push", "mgit.repo", False),
        ("mgit.remote.clone", "mgit.remote.fetch", True),
        ("mgit.refs.store", "mgit.lineage.graph", False),  # same rank, other entry
        ("mgit.commit", "mgit.guess", True),
    ],
)
def test_rank_table_decides_as_documented(a: str, b: str, ok: bool) -> None:
    assert (_entry(a) == _entry(b) or _rank(b) < _rank(a)) is ok
