"""Hostile inputs (issue #16): one table of malformed safetensors files, hostile folders, names,
refs, index files and export targets, each run through ``mgit.cli.main`` in-process.

Every case asserts: a non-zero exit (or, where marked ``accepted``, exit 0: a documented
behaviour), a one-line ``mgit: error: ...`` (plus at most a ``hint:`` line) on stderr and no
traceback, no hang (``SIGALRM`` interrupts a blocking ``open`` of a FIFO and fails the case),
and afterwards, with the hostile file itself removed where it damaged the repository on
purpose, ``mgit fsck`` passes: nothing was half-written.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import make_model_folder, raw_safetensors, run_main

from mgit.repo import Repository

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
_LIMIT_S = 20


@contextmanager
def no_hang(seconds: int = _LIMIT_S) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body blocks longer than ``seconds``."""

    def fire(_sig: int, _frame: Any) -> None:
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Env:
    """A repository with one committed model (``base``) and a scratch folder."""

    tmp: Path
    root: Path

    def folder(self, files: dict[str, bytes], name: str = "src") -> Path:
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text("{}")
        for rel, data in files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return d

    def import_args(self, folder: Path, *extra: str) -> list[str]:
        return ["import", str(folder), "--model", "imp", "-m", "hostile", *extra]

    def st(self, data: bytes) -> list[str]:
        """Import a folder whose ``model.safetensors`` holds ``data``."""
        return self.import_args(self.folder({"model.safetensors": data}))


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Env], list[str]]
    accepted: bool = False  # exit 0 is the documented behaviour
    says: str | None = None  # a substring of the error line
    restore: Callable[[Env], None] | None = None  # undo deliberate damage before fsck
    needs_non_root: bool = False


def st_header(header: Any, data: bytes = b"", **kw: Any) -> bytes:
    return raw_safetensors(header, data, **kw)


def one(
    name: str = "w", dtype: str = "F32", shape: Any = (1,), offs: Any = (0, 4), **more: Any
) -> dict[str, Any]:
    return {
        name: {
            "dtype": dtype,
            "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offs) if isinstance(offs, tuple) else offs,
            **more,
        }
    }


F4 = b"\0" * 4

# -- safetensors files -----------------------------------------------------------------------------

SAFETENSORS: list[tuple[str, bytes, str | None]] = [
    ("empty-file", b"", "truncated"),
    ("3-bytes", b"\x01\x02\x03", "truncated"),
    ("7-bytes", b"\0" * 7, "truncated"),
    ("length-past-end", struct.pack("<Q", 100) + b"{}", "runs past the end"),
    ("length-2**63", struct.pack("<Q", 2**63) + b"{}", "larger than allowed"),
    ("length-2**64-1", struct.pack("<Q", 2**64 - 1) + b"{}", "larger than allowed"),
    (
        "length-max-header+1",
        struct.pack("<Q", 100 * 1024 * 1024 + 1) + b"{}",
        "larger than allowed",
    ),
    ("length-zero", struct.pack("<Q", 0), "not JSON"),
    ("header-not-utf8", st_header(b'{"\xff": 1}'), "not UTF-8"),
    ("header-not-json", st_header("{nope"), "not JSON"),
    ("header-array", st_header("[1, 2]"), "not a JSON object"),
    ("header-string", st_header('"w"'), "not a JSON object"),
    ("header-number", st_header("42"), "not a JSON object"),
    ("header-null", st_header("null"), "not a JSON object"),
    ("header-nested-deep", st_header("[" * 100_000 + "]" * 100_000), "not"),
    ("header-nan", st_header('{"w": NaN}'), None),
    ("header-bom", st_header(b"\xef\xbb\xbf{}"), "not JSON"),
    (
        "duplicate-keys",
        st_header(
            '{"w": {"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            '"w": {"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
            F4,
        ),
        "duplicate",
    ),
    ("entry-not-object", st_header({"w": [1, 2]}), "not an object"),
    ("entry-null", st_header({"w": None}), "not an object"),
    ("dtype-missing", st_header({"w": {"shape": [1], "data_offsets": [0, 4]}}, F4), "dtype"),
    ("dtype-number", st_header(one(dtype=4), F4), "dtype"),  # type: ignore[arg-type]
    ("shape-missing", st_header({"w": {"dtype": "F32", "data_offsets": [0, 4]}}, F4), "shape"),
    ("shape-string", st_header(one(shape="[1]"), F4), "shape"),
    ("shape-negative", st_header(one(shape=(-1,)), F4), "shape"),
    ("shape-float", st_header(one(shape=(1.0,)), F4), "shape"),
    ("shape-bool", st_header(one(shape=(True,)), F4), "shape"),
    ("shape-65-dims", st_header(one(shape=(1,) * 65), F4), "65 dimensions"),
    ("shape-71-dims", st_header(one(shape=(1,) * 71), F4), "71 dimensions"),
    ("shape-dim-over-int64", st_header(one(shape=(0, 2**64), offs=(0, 0))), "larger than"),
    (
        "shape-huge-int",
        st_header('{"w":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,4]}}', F4),
        None,
    ),
    ("shape-size-mismatch", st_header(one(shape=(2,)), F4), "needs 8 bytes"),
    ("offsets-missing", st_header({"w": {"dtype": "F32", "shape": [1]}}, F4), "data_offsets"),
    ("offsets-three", st_header(one(offs=(0, 4, 8)), F4), "data_offsets"),
    ("offsets-reversed", st_header(one(offs=(4, 0)), F4), "reversed"),
    ("offsets-negative", st_header(one(offs=(-4, 0)), F4), "reversed"),
    ("offsets-past-end", st_header(one(offs=(0, 4)), b"\0\0"), "past the end"),
    ("offsets-bool", st_header(one(offs=(False, True)), F4), "data_offsets"),
    ("offsets-float", st_header(one(offs=(0.0, 4.0)), F4), "data_offsets"),
    ("offsets-overlap", st_header({**one("a"), **one("b")}, F4), "overlaps"),
    ("offsets-hole", st_header(one(offs=(4, 8)), F4 * 2), "hole"),
    ("trailing-bytes", st_header(one(), F4 * 2), "not described"),
    ("metadata-list", st_header({"__metadata__": ["a"], **one()}, F4), "__metadata__"),
    ("metadata-number-value", st_header({"__metadata__": {"a": 1}, **one()}, F4), "__metadata__"),
    (
        "metadata-nested",
        st_header({"__metadata__": {"a": {"b": "c"}}, **one()}, F4),
        "__metadata__",
    ),
    (
        "metadata-surrogate",
        st_header(
            '{"__metadata__":{"a":"\\udc00"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
            F4,
        ),
        "UTF-8",
    ),
    (
        "name-lone-surrogate",
        st_header('{"w\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', F4),
        "not valid UTF-8",
    ),
    ("name-nul", st_header(one(name="w\x00x"), F4), "NUL"),
    ("name-empty", st_header(one(name=""), F4), "empty"),
    ("name-5000-chars", st_header(one(name="w" * 5000), F4), "longer than"),
]

ACCEPTED_SAFETENSORS: list[tuple[str, bytes]] = [
    # A well-formed header with a dtype mgit does not chunk: kept as an opaque file.
    ("unknown-dtype-kept-as-blob", st_header(one(dtype="F4E2"), F4)),
    # A name with a newline is valid safetensors; it is stored, and printed escaped.
    ("name-with-newline", st_header(one(name="w\nmgit: ok"), F4)),
    # 64 dimensions: the limit both the parser and the tree validation agree on.
    ("shape-64-dims", st_header(one(shape=(1,) * 64), F4)),
    ("metadata-control-chars", st_header({"__metadata__": {"a\x1b[2J": "b\r"}, **one()}, F4)),
]


def _st_case(data: bytes) -> Callable[[Env], list[str]]:
    return lambda env: env.st(data)


CASES: list[Case] = [Case(f"st-{i}", _st_case(d), says=s) for i, d, s in SAFETENSORS]
CASES += [Case(f"st-{i}", _st_case(d), accepted=True) for i, d in ACCEPTED_SAFETENSORS]


# -- folders ---------------------------------------------------------------------------------------


def _fifo(rel: str, *extra: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        d = env.folder({})
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(d / rel)
        return env.import_args(d, *extra)

    return setup


def _socket(env: Env) -> list[str]:
    d = env.folder({})
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(d / "model.safetensors"))
    finally:
        s.close()
    return env.import_args(d)


def _link(
    rel: str, target: str, *extra: str, files: dict[str, bytes] | None = None
) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        d = env.folder(files or {})
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, d / rel)
        return env.import_args(d, *extra)

    return setup


def _loop_pair(env: Env) -> list[str]:
    d = env.folder({})
    os.symlink("b", d / "a")
    os.symlink("a", d / "b")
    return env.import_args(d)


def _outside_dir(env: Env) -> list[str]:
    ext = env.tmp / "ext"
    ext.mkdir()
    (ext / "w.bin").write_bytes(b"w")
    d = env.folder({})
    os.symlink(ext, d / "lib")
    return env.import_args(d)


def _unreadable_file(env: Env) -> list[str]:
    d = env.folder({"secret.bin": b"s"})
    os.chmod(d / "secret.bin", 0)
    return env.import_args(d)


def _unreadable_dir(env: Env) -> list[str]:
    d = env.folder({"sub/a.bin": b"a"})
    os.chmod(d / "sub", 0)
    return env.import_args(d)


def _ignore(content: bytes, fifo: bool = False) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        d = env.folder({".mgitignore": content} if not fifo else {})
        if fifo:
            os.mkfifo(d / ".mgitignore")
        return env.import_args(d)

    return setup


def _ignore_dir(env: Env) -> list[str]:
    d = env.folder({})
    (d / ".mgitignore").mkdir()
    return env.import_args(d)


def _ignored_fifo(env: Env) -> list[str]:
    d = env.folder({".mgitignore": b"pipe\n"})
    os.mkfifo(d / "pipe")
    return env.import_args(d)


def _bad_name(env: Env) -> list[str]:
    d = env.folder({})
    with open(os.path.join(os.fsencode(d), b"bad\xffname.bin"), "wb") as f:
        f.write(b"x")
    return env.import_args(d)


def _named_file(name: str) -> Callable[[Env], list[str]]:
    return lambda env: env.import_args(env.folder({name: b"x"}))


def _empty_folder(env: Env) -> list[str]:
    d = env.tmp / "empty"
    d.mkdir()
    return ["import", str(d), "--model", "imp", "-m", "x"]


def _not_a_folder(env: Env) -> list[str]:
    f = env.tmp / "file"
    f.write_bytes(b"x")
    return ["import", str(f), "--model", "imp", "-m", "x"]


def _worktree_fifo(rel: str, *cmd: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        os.mkfifo(env.root / rel)
        return list(cmd)

    return setup


def _rm(rel: str) -> Callable[[Env], None]:
    def restore(env: Env) -> None:
        p = env.root / rel
        if p.is_dir() and not p.is_symlink():
            p.rmdir()
        elif p.exists() or p.is_symlink():
            p.unlink()

    return restore


CASES += [
    Case("dir-fifo-model", _fifo("model.safetensors"), says="FIFO"),
    Case("dir-fifo-other", _fifo("tokenizer.json"), says="FIFO"),
    Case("dir-fifo-nested", _fifo("sub/deep/pipe.bin"), says="FIFO"),
    Case("dir-fifo-skipped", _fifo("model.safetensors", "--skip-unreadable"), accepted=True),
    Case("dir-fifo-ignored", _ignored_fifo, accepted=True),
    Case("dir-socket", _socket, says="socket"),
    Case("dir-fifo-mgitignore", _ignore(b"", fifo=True), says=".mgitignore"),
    Case("dir-mgitignore-folder", _ignore_dir, says=".mgitignore"),
    Case("dir-mgitignore-not-utf8", _ignore(b"\xff\xfe*\n"), says="UTF-8"),
    Case("dir-symlink-loop-pair", _loop_pair, says="symlink loop"),
    Case("dir-symlink-self", _link("self", "self"), says="symlink loop"),
    Case("dir-symlink-dangling", _link("gone.bin", "nowhere"), says="dangling"),
    Case(
        "dir-symlink-dangling-skipped",
        _link("gone.bin", "nowhere", "--skip-unreadable"),
        accepted=True,
    ),
    Case(
        "dir-symlinked-folder-inside",
        _link("alias", "sub", files={"sub/a.bin": b"a"}),
        says="symlinked folder",
    ),
    Case("dir-symlinked-folder-outside", _outside_dir, says="outside"),
    Case(
        "dir-symlink-to-ancestor-L",
        _link("sub/up", "..", "-L", files={"sub/a.bin": b"a"}),
        says="symlink loop",
    ),
    Case(
        "dir-symlink-file-inside",
        _link("alias.bin", "real.bin", files={"real.bin": b"r"}),
        accepted=True,
    ),
    Case("dir-symlink-outside-file", _link("etc", "/etc/hostname"), says="outside"),
    Case("dir-unreadable-file", _unreadable_file, says="secret.bin", needs_non_root=True),
    Case("dir-unreadable-dir", _unreadable_dir, says="sub", needs_non_root=True),
    Case("dir-non-utf8-name", _bad_name, says="UTF-8"),
    Case("dir-name-with-newline", _named_file("a\nb.bin"), accepted=True),
    Case("dir-name-with-escape", _named_file("\x1b[2Jx.bin"), accepted=True),
    Case("dir-empty", _empty_folder, says="no files"),
    Case("dir-not-a-folder", _not_a_folder, says="is a file"),
    Case(
        "wt-fifo-mgitignore-status",
        _worktree_fifo(".mgitignore", "status"),
        says=".mgitignore",
        restore=_rm(".mgitignore"),
    ),
    Case(
        "wt-fifo-mgitignore-add",
        _worktree_fifo(".mgitignore", "add", "."),
        says=".mgitignore",
        restore=_rm(".mgitignore"),
    ),
    Case(
        "wt-fifo-add-dot",
        _worktree_fifo("pipe.bin", "add", "."),
        says="FIFO",
        restore=_rm("pipe.bin"),
    ),
    Case(
        "wt-fifo-add-named",
        _worktree_fifo("pipe.bin", "add", "pipe.bin"),
        says="FIFO",
        restore=_rm("pipe.bin"),
    ),
    Case(
        "wt-fifo-config-diff-structural",
        _worktree_fifo("config.json.new", "diff", "--structural", "base"),
        accepted=True,
        restore=_rm("config.json.new"),
    ),
    Case(
        "wt-fifo-status-lists",
        _worktree_fifo("pipe.bin", "status"),
        accepted=True,
        restore=_rm("pipe.bin"),
    ),
]


def _fifo_config_diff(env: Env) -> list[str]:
    cfg = env.root / "config.json"
    if cfg.exists():
        cfg.unlink()
    os.mkfifo(cfg)
    return ["diff", "--structural", "base"]


def _restore_config(env: Env) -> None:
    (env.root / "config.json").unlink()


CASES += [
    Case(
        "wt-fifo-config-json-diff-structural",
        _fifo_config_diff,
        accepted=True,
        restore=_restore_config,
    )
]


# -- names -----------------------------------------------------------------------------------------


def _model_named(name: str) -> Callable[[Env], list[str]]:
    return lambda env: ["import", str(env.folder({"w.bin": b"w"})), "--model", name, "-m", "x"]


def _branch_named(name: str) -> Callable[[Env], list[str]]:
    return lambda env: ["branch", name]


def _tag_named(name: str) -> Callable[[Env], list[str]]:
    return lambda env: ["tag", name]


BAD_NAMES = [
    "a\nb",
    "a\rb",
    "a\x1bb",
    "a\x00b",
    "a/../b",
    "..",
    "../x",
    "/abs",
    "-dash",
    ".dot",
    "x.lock",
    "HEAD",
    "",
    "a" * 201,
    "sp ace",
    "tab\tx",
    "a//b",
    "a/",
    "\u202ertl",
    "w\ud800",
]
CASES += [Case(f"name-model-{i}", _model_named(n)) for i, n in enumerate(BAD_NAMES)]
CASES += [Case(f"name-branch-{i}", _branch_named(n)) for i, n in enumerate(BAD_NAMES[:10])]
CASES += [Case(f"name-tag-{i}", _tag_named(n)) for i, n in enumerate(BAD_NAMES[10:])]


def _hex_model(env: Env) -> list[str]:
    oid = Repository.open(env.root).resolve("base")
    return _model_named(oid[:6])(env)


def _meta_control(env: Env) -> list[str]:
    return [
        "import",
        str(env.folder({"w.bin": b"w"})),
        "--model",
        "imp",
        "-m",
        "m\x1b[1A",
        "--meta",
        "k\ney=v\r\x1b[2J",
    ]


CASES += [
    Case("name-hex-prefix-model-warns", _hex_model, accepted=True),
    Case("name-meta-control-chars", _meta_control, accepted=True),
    Case("name-unknown-ref", lambda env: ["show", "nope\n"], says="unknown ref"),
    Case("name-ref-control", lambda env: ["show", "\x1b[2J"], says="unknown ref"),
]


# -- refs, HEAD and the index ----------------------------------------------------------------------


def _write(rel: str, data: bytes | None, *cmd: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        p = env.root / ".mgit" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            os.chmod(p, 0o644)
            p.unlink()
        if data is None:
            os.mkfifo(p)
        else:
            p.write_bytes(data)
        return list(cmd)

    return setup


def _rm_mgit(rel: str) -> Callable[[Env], None]:
    return lambda env: _rm(f".mgit/{rel}")(env)


def _restore_head(env: Env) -> None:
    p = env.root / ".mgit" / "HEAD"
    if p.exists() or p.is_symlink():
        p.unlink()
    p.write_text("ref: refs/heads/base\n")


REF = "refs/heads/evil"
CASES += [
    Case("ref-garbage", _write(REF, b"not an id\n", "show", "evil"), restore=_rm_mgit(REF)),
    Case("ref-empty", _write(REF, b"", "show", "evil"), restore=_rm_mgit(REF)),
    Case("ref-binary", _write(REF, os.urandom(64), "show", "evil"), restore=_rm_mgit(REF)),
    Case("ref-fifo-show", _write(REF, None, "show", "evil"), restore=_rm_mgit(REF)),
    # listing model lines leaves out a ref that is not a regular file (the refs layer's rule)
    Case("ref-fifo-models", _write(REF, None, "models"), accepted=True, restore=_rm_mgit(REF)),
    Case("ref-fifo-fsck", _write(REF, None, "fsck"), restore=_rm_mgit(REF)),
    Case(
        "ref-missing-object", _write(REF, b"ab" * 32 + b"\n", "show", "evil"), restore=_rm_mgit(REF)
    ),
    # a garbage HEAD is a damaged ref, said so (it once read as "HEAD detached at ?")
    Case(
        "head-garbage",
        _write("HEAD", b"\x00\xff garbage", "status"),
        says="damaged ref HEAD",
        restore=_restore_head,
    ),
    Case("head-fifo", _write("HEAD", None, "status"), restore=_restore_head),
    Case(
        "index-list", _write("index", b"[1, 2]", "status"), says="index", restore=_rm_mgit("index")
    ),
    Case(
        "index-string", _write("index", b'"x"', "status"), says="index", restore=_rm_mgit("index")
    ),
    Case(
        "index-staged-list",
        _write("index", b'{"staged": [1]}', "status"),
        says="index",
        restore=_rm_mgit("index"),
    ),
    Case(
        "index-bad-snapshot",
        _write("index", b'{"staged": {"a": 5}}', "status"),
        says="index",
        restore=_rm_mgit("index"),
    ),
    Case(
        "index-snapshot-strings",
        _write(
            "index",
            json.dumps({"cache": {"a": {"size": "x", "mtime_ns": 1, "xxh": "0"}}}).encode(),
            "status",
        ),
        says="index",
        restore=_rm_mgit("index"),
    ),
    Case(
        "index-bad-path",
        _write("index", json.dumps({"staged": {"../x": None}}).encode(), "status"),
        says="index",
        restore=_rm_mgit("index"),
    ),
    Case("index-fifo", _write("index", None, "status"), says="index", restore=_rm_mgit("index")),
    Case(
        "index-fifo-add", _write("index", None, "add", "."), says="index", restore=_rm_mgit("index")
    ),
]


# -- export and checkout targets -------------------------------------------------------------------


def _other_repo(env: Env) -> list[str]:
    Repository.init(env.tmp / "other", model="o")
    return ["export", "base", str(env.tmp / "other" / ".mgit" / "refs" / "heads")]


def _bare_store(env: Env) -> list[str]:
    Repository.init(env.tmp / "bare.mgit", bare=True)
    return ["export", "--force", "base", str(env.tmp / "bare.mgit")]


def _link_to_mgit(env: Env) -> list[str]:
    os.symlink(env.root / ".mgit" / "refs", env.tmp / "innocent")
    return ["export", "--force", "base", str(env.tmp / "innocent")]


CASES += [
    Case(
        "export-into-refs-heads",
        lambda env: ["export", "base", str(env.root / ".mgit" / "refs" / "heads")],
        says=".mgit",
    ),
    Case(
        "export-force-into-mgit",
        lambda env: ["export", "--force", "base", str(env.root / ".mgit")],
        says=".mgit",
    ),
    Case(
        "export-new-folder-in-mgit",
        lambda env: ["export", "base", str(env.root / ".mgit" / "x" / "y")],
        says=".mgit",
    ),
    Case("export-other-repo-mgit", _other_repo, says=".mgit"),
    Case("export-bare-store", _bare_store, says="bare.mgit"),
    Case("export-symlink-to-mgit", _link_to_mgit, says=".mgit"),
    Case(
        "export-unknown-ref",
        lambda env: ["export", "nope", str(env.tmp / "out")],
        says="unknown ref",
    ),
    Case(
        "export-onto-file",
        lambda env: (env.tmp / "f").write_text("x") and ["export", "base", str(env.tmp / "f")],
        says="is a file",
    ),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one committed model, copied for each case (faster than building it)."""
    base = tmp_path_factory.mktemp("template")
    root = base / "repo"
    make_model_folder(root, seed=1)
    repo = Repository.init(root, model="base", chunk_size=65536)
    repo.add([root])
    repo.commit("base")
    return root


def _one_line_error(err: str) -> None:
    lines = err.rstrip("\n").splitlines()
    lines = [ln for ln in lines if not ln.startswith("mgit: warning: ")]
    if lines and lines[0].startswith("Usage: "):  # click's own usage error (exit 2): one Error line
        assert sum(ln.startswith("Error: ") for ln in lines) == 1, err
        return
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("mgit: error: "), err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), err


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(
    case: Case, template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case.needs_non_root and ROOT_USER:
        pytest.skip("running as root: root reads any file, so nothing is unreadable")
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    env = Env(tmp_path, root)
    argv = case.setup(env)
    with no_hang():
        code, out, err = run_main(capsys, root, *argv)
    assert "Traceback" not in out + err
    if case.accepted:
        assert code == 0, (argv, out, err)
    else:
        assert code != 0, (argv, out, err)
        _one_line_error(err)
        if case.says is not None:
            assert case.says in err, err
    # Nothing printed can forge a line: no raw control character but newline ends a line.
    for text in (out, err):
        assert not any(c in text for c in "\r\x1b\x00\u202e"), repr(text)
    if case.restore is not None:
        case.restore(env)
    with no_hang():
        code, out, err = run_main(capsys, root, "fsck")
    assert code == 0, (out, err)
