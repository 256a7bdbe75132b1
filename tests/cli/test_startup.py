"""Start-up cost of the CLI: only the invoked command's module is imported, and cheap commands
never import numpy, rich, networkx or torch (``mgit --help`` lists every command without
importing any of them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "rich", "networkx", "torch")

#: Runs ``mgit.cli.main`` in-process, then writes what it imported to $MGIT_PROBE_OUT.
_PROBE = r"""
import json, os, sys
from mgit.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:  # shell completion exits
    rc = exc.code
with open(os.environ["MGIT_PROBE_OUT"], "w") as f:
    json.dump({"rc": rc, "modules": sorted(sys.modules)}, f)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MGIT_DEBUG" and not k.startswith("_MGIT")}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "80", **extra})
    return env


def _probe(tmp_path: Path, *argv: str, **env: str) -> tuple[int, list[str], str]:
    """(exit code, modules imported, stdout) of ``mgit ARGV``, run in a fresh interpreter."""
    out = tmp_path / "probe.json"
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        env=_env(MGIT_PROBE_OUT=str(out), **env),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert out.exists(), p.stdout + p.stderr
    data = json.loads(out.read_text())
    return data["rc"], data["modules"], p.stdout


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY]


def _command_modules(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith("mgit.commands.cmd_")]


def _python(code: str, tmp_path: Path) -> str:
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_help_imports_no_command_and_nothing_heavy(tmp_path: Path) -> None:
    rc, modules, out = _probe(tmp_path, "--help")
    assert rc == 0
    assert _heavy(modules) == []
    assert _command_modules(modules) == []
    assert "mgit.repo" not in modules and "mgit.commands._common" not in modules
    assert "Commands:" in out


def test_help_lists_every_command(tmp_path: Path) -> None:
    from mgit.cli import COMMANDS

    _, _, out = _probe(tmp_path, "--help")
    listed = out.split("Commands:", 1)[1].split()
    for name in COMMANDS:
        assert name in listed, name


_EAGER_HELP = """
import click, sys
from mgit.cli import cli, main
ctx = click.Context(cli)
assert all(cli.get_command(ctx, n) for n in cli.list_commands(ctx))
sys.exit(main(["--help"]))
"""


@pytest.mark.parametrize("columns", ["80", "50", "200"])
def test_lazy_help_is_the_same_as_with_every_command_loaded(tmp_path: Path, columns: str) -> None:
    """The registry's one-line helps render exactly like the commands' own docstrings."""
    _, _, lazy = _probe(tmp_path, "--help", COLUMNS=columns)
    eager = subprocess.run(
        [sys.executable, "-c", _EAGER_HELP],
        capture_output=True,
        text=True,
        env=_env(COLUMNS=columns),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert eager.returncode == 0, eager.stderr
    assert lazy == eager.stdout


def test_registry_names_every_command_once() -> None:
    """``mgit.cli.COMMANDS`` and the ``COMMANDS`` lists of the command modules agree."""
    import importlib

    import click

    from mgit.cli import COMMAND_MODULES, COMMANDS

    files = sorted(p.stem for p in (ROOT / "mgit" / "commands").glob("cmd_*.py"))
    assert sorted(COMMAND_MODULES) == files
    defined: dict[str, str] = {}
    for mod in COMMAND_MODULES:
        for cmd in importlib.import_module(f"mgit.commands.{mod}").COMMANDS:
            assert cmd.name not in defined, cmd.name
            defined[cmd.name] = mod
    assert {n: m for n, (m, _) in COMMANDS.items()} == defined
    for name, (mod, short) in COMMANDS.items():
        real = next(
            c for c in importlib.import_module(f"mgit.commands.{mod}").COMMANDS if c.name == name
        )
        stand_in = click.Command(name, help=short)
        for limit in (20, 45, 60, 74, 1000):
            assert stand_in.get_short_help_str(limit) == real.get_short_help_str(limit), (
                name,
                limit,
            )


@pytest.fixture(scope="module")
def fresh_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup") / "repo"
    root.mkdir()
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mgit.cli import main; sys.exit(main(sys.argv[1:]))",
            "-C",
            str(root),
            "init",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return root


def _repo_imports(tmp_path: Path) -> list[str]:
    """What ``import mgit.repo`` alone imports (this test owns the CLI layer, not the library)."""
    return _python("import sys, mgit.repo; print(' '.join(sorted(sys.modules)))", tmp_path).split()


@pytest.mark.parametrize("argv", [("-q", "status"), ("status", "--json"), ("--json", "status")])
def test_status_imports_only_its_command_and_nothing_heavy(
    fresh_repo: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    rc, modules, out = _probe(tmp_path, "-C", str(fresh_repo), *argv)
    assert rc == 0
    assert _command_modules(modules) == ["mgit.commands.cmd_status"]
    if "--json" in argv:
        assert json.loads(out)["clean"] is True
    else:
        assert "nothing to commit" in out
    heavy = _heavy(modules)
    from_repo = [m for m in _heavy(_repo_imports(tmp_path)) if m in heavy] if heavy else []
    assert heavy == [], f"imported {heavy}; of these, 'import mgit.repo' alone imports {from_repo}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("stauts",), "Did you mean one of: 'stats', 'status'?"),
        (("log", "--bogus"), "No such option"),
    ],
)
def test_usage_errors_load_at_most_the_named_command(
    tmp_path: Path, argv: tuple[str, ...], expected: str
) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mgit.cli import main; sys.exit(main(sys.argv[1:]))",
            *argv,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2 and expected in p.stderr
    rc, modules, _ = _probe(tmp_path, *argv)
    assert rc == 2
    assert _command_modules(modules) == ([] if argv[0] == "stauts" else ["mgit.commands.cmd_log"])
    assert _heavy(modules) == []


def test_completing_command_names_imports_no_command(tmp_path: Path) -> None:
    env = {"_MGIT_COMPLETE": "zsh_complete", "COMP_WORDS": "mgit st", "COMP_CWORD": "1"}
    rc, modules, out = _probe(tmp_path, **env)
    assert rc == 0
    assert out.split("\n") == [
        "plain",
        "stats",
        "Logical bytes, stored bytes and their...",
        "plain",
        "status",
        "Show staged, modified and untracked files.",
        "",
    ]
    assert _command_modules(modules) == [] and _heavy(modules) == []


#: Modules the streaming commands leave alone: ``concurrent.futures`` (which pulls in
#: ``logging``), ``socket`` and ``getpass`` (the author name), ``ctypes`` (sync_file_range, mallopt:
#: the C module ``mgit._syscalls`` has them). Each costs 1-4 ms of every commit and export.
_NOT_FOR_STREAMING = ("concurrent", "logging", "socket", "getpass")


def _has_native_syscalls() -> bool:
    from mgit._fs import _native

    return _native() is not None


def test_import_and_export_skip_modules_they_do_not_need(fresh_repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "weights.bin").write_bytes(bytes(range(256)) * 64)
    rc, modules, _ = _probe(tmp_path, "-q", "-C", str(fresh_repo), "import", str(src),
                            "--model", "startup", "-m", "x")
    assert rc == 0
    rc, exp_modules, _ = _probe(tmp_path, "-q", "-C", str(fresh_repo), "export", "startup",
                                str(tmp_path / "out"))
    assert rc == 0
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    unwanted = _NOT_FOR_STREAMING + (("ctypes",) if _has_native_syscalls() else ())
    for mods in (modules, exp_modules):
        assert [m for m in mods if m.split(".")[0] in unwanted] == []
        assert _heavy(mods) == []
    # export reads objects back: no working tree, no ingest or safetensors parsing
    assert [m for m in exp_modules if m in ("mgit.worktree", "mgit.ingest", "mgit.formats")] == []


def _python_m_mgit(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mgit", *argv], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=120, check=False)


def test_the_program_exits_with_the_command_status_and_all_its_output(
    fresh_repo: Path, tmp_path: Path
) -> None:
    """``python -m mgit`` (and the ``mgit`` script) end the process as soon as the command is
    done: its output must still be complete and its exit status the command's."""
    p = _python_m_mgit("-C", str(fresh_repo), "--json", "status", cwd=tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["clean"] is True
    p = _python_m_mgit("-C", str(tmp_path), "status", cwd=tmp_path)
    assert p.returncode == 10 and p.stderr.startswith("mgit: error: not an mgit repository")
    p = _python_m_mgit("--no-such-option", cwd=tmp_path)
    assert p.returncode == 2 and "No such option" in p.stderr
    p = _python_m_mgit("--help", cwd=tmp_path)
    from mgit.cli import COMMANDS

    last = max(COMMANDS)
    assert p.returncode == 0 and p.stdout.splitlines()[-1].split()[0] == last  # the last one
