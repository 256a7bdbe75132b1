"""Issue #17: every command's ``--help`` ends its description with an ``Examples:`` block (the
README's Commands table example among them), and shell completion of REF, model, tag and
REMOTE arguments from the repository's refs and config."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner
from helpers import model_tensors, write_model_folder

from mgit.cli import Context, cli

ROOT = Path(__file__).resolve().parents[2]

#: Commands whose modules another engineer is editing right now: their examples are added
#: there, and these entries removed, once that work lands (issue #17).
NO_EXAMPLES_YET: set[tuple[str, ...]] = set()  # every command has its examples


def _walk(
    path: tuple[str, ...], cmd: click.Command
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk((*path, name), cmd.commands[name])


def _commands() -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and subcommand registered on the ``mgit`` group (hidden ones included)."""
    ctx = click.Context(cli)
    out = []
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        out += list(_walk((name,), cmd))
    return out


COMMANDS = _commands()
BY_PATH = dict(COMMANDS)


def _help(path: tuple[str, ...]) -> str:
    res = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    return res.output


def _examples(text: str) -> list[str]:
    """The lines of the ``Examples:`` block of a help text, stripped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = []
    for line in lines[start + 1 :]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        out.append(line.strip())
    return out


def _invoked(example: str) -> list[str]:
    """The words of an example after ``mgit`` and its global options (``--json``, ``-q``,
    ``-C PATH``)."""
    words = shlex.split(example)
    assert words[0] == "mgit", example
    words = words[1:]
    while words and words[0] in ("--json", "-q", "--quiet", "-C"):
        words = words[2:] if words[0] == "-C" else words[1:]
    return words


def _visible(path: tuple[str, ...]) -> tuple[str, ...]:
    """``path`` without hidden commands (``mgit bisect GOOD BAD`` runs the hidden one-shot)."""
    out: tuple[str, ...] = ()
    for i in range(len(path)):
        if not BY_PATH[path[: i + 1]].hidden:
            out += (path[i],)
    return out


def test_the_allowlist_names_real_commands() -> None:
    assert NO_EXAMPLES_YET <= set(BY_PATH), NO_EXAMPLES_YET - set(BY_PATH)


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_help_has_examples(path: tuple[str, ...]) -> None:
    if path in NO_EXAMPLES_YET:
        pytest.skip("examples added by the cmd_lineage / cmd_remote work")
    text = _help(path)
    assert "Examples:" in text, text
    assert re.search(r"^ +mgit ", text, re.MULTILINE), text
    examples = _examples(text)
    assert 1 <= len(examples), text
    assert all(e.startswith("mgit ") for e in examples), examples
    want = list(_visible(path))
    assert any(_invoked(e)[: len(want)] == want for e in examples), (path, examples)


def _readme_examples() -> list[tuple[str, tuple[str, ...]]]:
    """(example, command path) of every row of the README's Commands table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        example = cells[-1].strip("`")
        words = _invoked(example)
        path: tuple[str, ...] = (words[0],)
        if (
            isinstance(BY_PATH.get(path), click.Group)
            and len(words) > 1
            and (*path, words[1]) in BY_PATH
        ):
            path = (*path, words[1])
        out.append((example, path))
    return out


README_EXAMPLES = _readme_examples()


def test_the_readme_table_was_read() -> None:
    assert len(README_EXAMPLES) >= 25
    assert ("test", "add") in [path for _, path in README_EXAMPLES]


@pytest.mark.parametrize(("example", "path"), README_EXAMPLES, ids=[e for e, _ in README_EXAMPLES])
def test_help_shows_the_readme_example(example: str, path: tuple[str, ...]) -> None:
    assert path in BY_PATH, path
    if path in NO_EXAMPLES_YET:
        pytest.skip("examples added by the cmd_lineage / cmd_remote work")
    assert example in _examples(_help(path)), (path, example)


# -- shell completion -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def completing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with models ``bert`` (checked out) and ``bert-sst2``, tag ``v1.0``, remote
    ``origin`` and its remote-tracking ref ``origin/bert``."""
    from mgit.remote.config import add_remote
    from mgit.repo import Repository

    tmp = tmp_path_factory.mktemp("complete")
    root = tmp / "bert"
    write_model_folder(root, model_tensors("F32", vocab=50))
    repo = Repository.init(root, model="bert", chunk_size=65536)
    repo.add([root])
    oid = repo.commit("base").commit.oid
    repo.create_branch("bert-sst2", "bert")
    repo.create_tag("v1.0", "bert")
    (tmp / "shared").mkdir()
    add_remote(repo, "origin", str(tmp / "shared"))
    add_remote(repo, "backup", str(tmp / "shared"))
    repo.refs.set_if_equals("refs/remotes/origin/bert", None, oid, message="fetch")
    return root


def _complete(args: list[str], incomplete: str) -> list[str]:
    """What Tab offers after ``mgit ARGS... INCOMPLETE`` (click's completion machinery)."""
    comp = ShellComplete(cli, {}, "mgit", "_MGIT_COMPLETE")
    return [c.value for c in comp.get_completions(args, incomplete)]


ALL_REFS = ["bert", "bert-sst2", "v1.0", "origin/bert", "HEAD"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["show"], ALL_REFS),
        (["log"], ALL_REFS),
        (["diff", "bert"], ALL_REFS),
        (["export"], ALL_REFS),
        (["export", "bert", "/tmp/out", "--base"], ALL_REFS),
        (["checkout"], ALL_REFS),
        (["stats"], ALL_REFS),
        (["merge", "bert"], ALL_REFS),
        (["rebase", "bert-sst2", "--onto"], ALL_REFS),
        (["rebase", "bert-sst2", "--from"], ALL_REFS),
        (["rebase"], ["bert", "bert-sst2"]),
        (["commit", "-m", "x", "--parent"], ALL_REFS),
        (["import", "dir", "--model"], ["bert", "bert-sst2"]),
        (["restore", "--source"], ALL_REFS),
        (["branch"], ["bert", "bert-sst2"]),
        (["branch", "bert-exp"], ALL_REFS),
        (["tag"], ["v1.0"]),
        (["tag", "v2.0"], ALL_REFS),
        (["test", "run"], ALL_REFS),
        (["test", "run", "--ancestors-of"], ALL_REFS),
        (["test", "results"], ALL_REFS),
        (["test", "blame", "acc"], ALL_REFS),
        (["test", "add", "acc", "--for"], ["bert", "bert-sst2"]),
        (["bisect"], [*ALL_REFS, "bad", "good", "log", "reset", "run", "skip", "start"]),
        (["bisect", "v1.0"], ALL_REFS),
        (["bisect", "v1.0", "bert", "--skip"], ALL_REFS),
        (["bisect", "start"], ALL_REFS),
        (["bisect", "good"], ALL_REFS),
        (["fsck", "--repair"], ["backup", "origin"]),
    ],
)
def test_completion_offers_refs(completing: Path, args: list[str], expected: list[str]) -> None:
    assert sorted(_complete(["-C", str(completing), *args], "")) == sorted(expected)


def test_completion_filters_by_prefix_and_follows_the_cwd(
    completing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sorted(_complete(["-C", str(completing), "show"], "bert")) == ["bert", "bert-sst2"]
    assert _complete(["-C", str(completing), "show"], "orig") == ["origin/bert"]
    assert _complete(["-C", str(completing), "show"], "zzz") == []
    monkeypatch.chdir(completing)
    assert _complete(["checkout"], "v") == ["v1.0"]
    assert _complete(["fsck", "--repair"], "o") == ["origin"]
    assert _complete(["push"], "o") == ["origin"]  # the remote, then refs
    assert _complete(["push", "origin"], "bert-") == ["bert-sst2"]
    assert _complete(["pull", "origin"], "bert-") == ["bert-sst2"]
    assert _complete(["remote", "gc"], "o") == ["origin"]
    (completing / "sub").mkdir(exist_ok=True)
    monkeypatch.chdir(completing / "sub")  # a folder inside the working tree
    assert _complete(["show"], "bert-") == ["bert-sst2"]


def test_completion_outside_a_repository_offers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _complete(["show"], "") == []
    assert _complete(["fsck", "--repair"], "") == []
    assert _complete(["-C", str(tmp_path / "missing"), "show"], "") == []
    assert _complete(["-C", str(tmp_path), "branch"], "") == []


def test_the_callbacks_never_raise(completing: Path, tmp_path: Path) -> None:
    """Called directly with a context whose ``obj`` is the running command's options."""
    from mgit.commands._common import complete_model, complete_ref, complete_remote, complete_tag

    def ctx(cwd: Any) -> click.Context:
        return click.Context(cli, obj=Context(cwd=cwd, json=False, quiet=True))

    assert [c.value for c in complete_tag(ctx(completing), None, "")] == ["v1.0"]
    assert [c.help for c in complete_ref(ctx(completing), None, "v")] == ["tag"]
    broken = tmp_path / "broken"
    (broken / ".mgit").mkdir(parents=True)
    (broken / ".mgit" / "config").write_text("not json {")
    (broken / ".mgit" / "refs").write_text("a file, not a folder")
    for fn in (complete_ref, complete_model, complete_tag, complete_remote):
        for cwd in (broken, tmp_path / "missing", 42):
            assert fn(ctx(cwd), None, "") == []


def test_bash_completion_end_to_end(completing: Path) -> None:
    """``_MGIT_COMPLETE=bash_complete``, what the script ``_MGIT_COMPLETE=bash_source mgit``
    prints calls on Tab; nothing heavy is imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_MGIT")}
    env.update(
        PYTHONPATH=str(ROOT),
        _MGIT_COMPLETE="bash_complete",
        COMP_WORDS=f"mgit -C {completing} show bert",
        COMP_CWORD="4",
    )
    code = (
        "import sys\nfrom mgit.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', *sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'rich', 'networkx', 'torch')))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    *items, heavy = p.stdout.splitlines()
    assert sorted(items) == ["plain,bert", "plain,bert-sst2"]
    assert heavy == "HEAVY"
