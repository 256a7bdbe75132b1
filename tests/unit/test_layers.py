"""Layering: cheap commands never import torch; imports point down; commands do no file I/O."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import model_tensors, write_model_folder

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "mgit"

#: Packages at the bottom of the stack, and what they may never import.
LOWER = ("objects", "codecs", "refs", "formats")
HIGHER = (
    "mgit.repo",
    "mgit.api",
    "mgit.cli",
    "mgit.commands",
    "mgit.remote",
    "mgit.lineage",
    "mgit.diff",
    "mgit.ingest",
    "mgit.materialize",
    "mgit.worktree",
)
HEAVY = ("torch", "transformers", "safetensors")


def _py_files(sub: str) -> list[Path]:
    d = PKG / sub
    return sorted(d.rglob("*.py")) if d.is_dir() else []


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (anywhere in it), relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(ROOT).with_suffix("")
    pkg_parts = list(rel.parts[:-1])  # the containing package (for __init__: the package itself)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [
                (node.lineno, f"{mod}.{a.name}")
                for a in node.names
                if mod in ("mgit", "mgit.commands")
            ]
    return out


def _matches(mod: str, prefixes: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def test_lower_layers_exist() -> None:
    for sub in ("objects", "refs", "formats", "codecs"):
        assert _py_files(sub), sub


@pytest.mark.parametrize("sub", LOWER)
def test_lower_layers_never_import_upwards(sub: str) -> None:
    bad = [
        f"{f.relative_to(ROOT)}:{line}: {mod}"
        for f in _py_files(sub)
        for line, mod in _imports(f)
        if _matches(mod, HIGHER)
    ]
    assert bad == []


@pytest.mark.parametrize("sub", LOWER)
def test_lower_layers_import_no_heavy_module_at_top_level(sub: str) -> None:
    bad = []
    for f in _py_files(sub):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bad += [f"{f.relative_to(ROOT)}: {n}" for n in names if _matches(n, HEAVY)]
    assert bad == []


def test_objects_values_do_no_io() -> None:
    """The object values (ids, model) are pure: no os, io, pathlib, open()."""
    for name in ("ids.py", "model.py"):
        f = PKG / "objects" / name
        mods = [m for _, m in _imports(f)]
        assert not [
            m for m in mods if _matches(m, ("os", "io", "pathlib", "shutil", "numpy", "torch"))
        ], name
        assert "open(" not in f.read_text()


#: Calls that read or write files (``open`` itself is checked separately: ``Repository.open`` is fine).
_IO_CALLS = {
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "unlink",
    "rmtree",
    "mkdir",
    "rename",
    "replace",
    "remove",
    "makedirs",
    "fdopen",
    "copyfile",
    "copy",
    "copy2",
    "touch",
}


def test_commands_do_no_file_io() -> None:
    files = sorted((PKG / "commands").glob("*.py"))
    assert files
    bad = []
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                name = (
                    fn.id
                    if isinstance(fn, ast.Name)
                    else fn.attr
                    if isinstance(fn, ast.Attribute)
                    else ""
                )
                builtin_open = (isinstance(fn, ast.Name) and fn.id == "open") or (
                    isinstance(fn, ast.Attribute)
                    and fn.attr == "open"
                    and isinstance(fn.value, ast.Name)
                    and fn.value.id in ("os", "io", "builtins", "gzip", "codecs")
                )
                if name in _IO_CALLS or builtin_open:
                    bad.append(f"{f.relative_to(ROOT)}:{node.lineno}: {name}()")
        for line, mod in _imports(f):
            if _matches(mod, ("shutil", "io", "tempfile")):
                bad.append(f"{f.relative_to(ROOT)}:{line}: import {mod}")
    assert bad == []


def test_cli_module_imports_no_heavy_module_at_top_level() -> None:
    for f in [PKG / "cli.py", *sorted((PKG / "commands").glob("*.py"))]:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not [n for n in names if _matches(n, HEAVY)], f


_PROBE = r"""
import sys
from mgit.cli import main
argv = sys.argv[1:]
rc = main(argv) if argv else 0
heavy = sorted(m for m in ("torch", "transformers", "safetensors") if m in sys.modules)
assert not heavy, f"{argv} imported {heavy}"
print("RC", rc)
"""


def _probe(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MGIT_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def probe_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mgit.repo import Repository

    root = tmp_path_factory.mktemp("layers") / "m"
    write_model_folder(root, model_tensors("BF16"))
    repo = Repository.init(root, chunk_size=65536)
    repo.add([root])
    repo.commit("base")
    (root / "new.txt").write_text("untracked")
    return root


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("--help",),
        ("status",),
        ("log",),
        ("log", "--graph", "--all"),
        ("show",),
        ("models",),
        ("--json", "status"),
    ],
    ids=lambda a: " ".join(a) or "import",
)
def test_cheap_commands_do_not_import_torch(probe_repo: Path, argv: tuple[str, ...]) -> None:
    args = ("-C", str(probe_repo), *argv) if argv and argv[0] != "--help" else argv
    p = _probe(*args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "RC 0" in p.stdout, p.stdout + p.stderr
