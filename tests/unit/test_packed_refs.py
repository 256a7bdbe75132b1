"""Packed refs: ``packed-refs`` holds ``<id> <name>`` lines, a loose ref file overrides its line,
``gc`` packs; reads, scans, updates, deletes and fsck behave as with loose refs only."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from mgit import lineage_index
from mgit.errors import CorruptRefError, InvalidRefNameError, RefConflictError
from mgit.refs.store import PACKED, RefStore, read_packed, scan_refs
from mgit.repo import Repository
from tests.helpers import run_main

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _store(tmp_path: Path, refs: dict[str, str]) -> RefStore:
    root = tmp_path / "store"
    (root / "refs").mkdir(parents=True)
    store = RefStore(root)
    for name, oid in refs.items():
        store.set_if_equals(name, None, oid, message="t")
    return store


def test_pack_moves_every_loose_ref_and_reads_stay_the_same(tmp_path: Path) -> None:
    refs = {"refs/heads/m": A, "refs/heads/team/x": B, "refs/tags/v1": C, "refs/tests": A}
    store = _store(tmp_path, refs)
    before = scan_refs(store.root)
    assert store.pack() == 4
    assert not any(p.is_file() for p in (store.root / "refs").rglob("*"))  # no loose file left
    assert read_packed(store.root) == (refs, [])
    assert scan_refs(store.root) == before == dict(sorted(refs.items()))
    assert scan_refs(store.root, "refs/heads/") == {"refs/heads/m": A, "refs/heads/team/x": B}
    for name, oid in refs.items():
        assert store.read(name) == oid
    assert store.pack() == 0  # nothing loose: the file is left as it is


def test_a_loose_ref_overrides_its_packed_line(tmp_path: Path) -> None:
    store = _store(tmp_path, {"refs/heads/m": A})
    store.pack()
    store.set_if_equals("refs/heads/m", A, B, message="move")  # compared with the packed value
    assert store.read("refs/heads/m") == B and scan_refs(store.root) == {"refs/heads/m": B}
    with pytest.raises(RefConflictError):
        store.set_if_equals("refs/heads/m", A, C, message="stale")
    store.pack()
    assert read_packed(store.root)[0] == {"refs/heads/m": B}


def test_a_damaged_loose_ref_is_not_hidden_by_its_packed_line(tmp_path: Path) -> None:
    store = _store(tmp_path, {"refs/heads/m": A})
    store.pack()
    (store.root / "refs" / "heads" / "m").write_text("garbage\n")
    with pytest.raises(CorruptRefError):
        store.read("refs/heads/m")
    assert "refs/heads/m" not in scan_refs(store.root)  # as a damaged loose ref is skipped
    assert "refs/heads/m" in store.damaged_refs()


def test_deleting_a_packed_ref_removes_its_line(tmp_path: Path) -> None:
    store = _store(tmp_path, {"refs/heads/m": A, "refs/heads/n": B})
    store.pack()
    store.delete_if_equals("refs/heads/m", A, message="rm")
    assert store.read("refs/heads/m") is None
    assert read_packed(store.root)[0] == {"refs/heads/n": B}
    store.set_if_equals("refs/heads/n", B, C, message="move")  # loose C over packed B
    store.delete_if_equals("refs/heads/n", C, message="rm")
    assert store.read("refs/heads/n") is None and scan_refs(store.root) == {}  # no stale B


def test_a_new_ref_may_not_be_a_folder_of_a_packed_one_or_below_it(tmp_path: Path) -> None:
    store = _store(tmp_path, {"refs/heads/team": A, "refs/heads/org/x": B})
    store.pack()
    with pytest.raises(InvalidRefNameError, match="conflicts"):
        store.set_if_equals("refs/heads/team/x", None, C, message="t")
    with pytest.raises(InvalidRefNameError, match="conflicts"):
        store.set_if_equals("refs/heads/org", None, C, message="t")
    assert scan_refs(store.root) == {"refs/heads/org/x": B, "refs/heads/team": A}


def test_damaged_packed_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    store = _store(tmp_path, {"refs/heads/m": A})
    store.pack()
    path = store.root / PACKED
    path.write_text(path.read_text() + "nonsense\n" + f"{B} refs/heads/../x\n" + f"{C} refs/heads/ok\n")
    assert scan_refs(store.root) == {"refs/heads/m": A, "refs/heads/ok": C}
    assert store.damaged_refs() == [f"{PACKED}:3", f"{PACKED}:4"]


def test_packing_beside_updates_and_deletes_loses_nothing_and_revives_nothing(
    tmp_path: Path,
) -> None:
    names = [f"refs/heads/m{i}" for i in range(40)]
    store = _store(tmp_path, dict.fromkeys(names, A))
    errors: list[BaseException] = []
    stop = threading.Event()

    def packer() -> None:
        try:
            while not stop.is_set():
                store.pack()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=packer)
    t.start()
    try:
        for i, name in enumerate(names):
            if i % 2:
                store.set_if_equals(name, A, B, message="move")
            else:
                store.delete_if_equals(name, A, message="rm")
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    want = {n: B for i, n in enumerate(names) if i % 2}
    assert scan_refs(store.root) == want
    store.pack()
    assert scan_refs(store.root) == want and read_packed(store.root)[0] == want


def test_gc_packs_and_every_command_answers_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import make_model_folder
    from tests.unit.test_lineage_index import answers, build_random

    root = tmp_path / "repo"
    build_random(root, 4, commits=25)
    assert run_main(capsys, root, "tag", "t1", "root0")[0] == 0
    want = answers(capsys, root)
    code, out, _ = run_main(capsys, root, "--json", "gc")
    assert code == 0 and '"refs_packed"' in out
    heads_dir = root / ".mgit" / "refs" / "heads"
    assert not any(p.is_file() for p in heads_dir.rglob("*"))
    assert "refs/tags/t1" in read_packed(root / ".mgit")[0]
    (root / ".mgit" / lineage_index.FILE_NAME).unlink(missing_ok=True)
    assert answers(capsys, root) == want  # the index rebuilt from the packed refs
    assert answers(capsys, root) == want  # and read back
    assert Repository.open(root).fsck().ok
    # the next version of a packed line is a loose ref again, over its packed line
    repo = Repository.open(root)
    name = sorted(repo.model_heads())[0]
    old = repo.model_heads()[name]
    make_model_folder(tmp_path / "next", seed=77)
    new = repo.import_folder(tmp_path / "next", model=name, message="next").commit.oid
    assert (heads_dir / name).read_text().strip() == new != old
    assert Repository.open(root).model_heads()[name] == new


def test_gc_dry_run_packs_nothing(make_repo: Any, tmp_path: Path) -> None:
    from tests.helpers import make_model_folder

    repo = make_repo(model="m")
    make_model_folder(tmp_path / "m", seed=1)
    repo.import_folder(tmp_path / "m", model="m", message="v1")
    assert repo.gc(dry_run=True).refs_packed == 0
    assert (repo.mgit_dir / "refs" / "heads" / "m").is_file()
    assert not (repo.mgit_dir / PACKED).exists()
    assert repo.gc().refs_packed == 1
    assert not (repo.mgit_dir / "refs" / "heads" / "m").exists()
    assert repo.resolve("m") == read_packed(repo.mgit_dir)[0]["refs/heads/m"]


def test_a_path_remote_packed_by_gc_serves_and_takes_refs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mgit.remote.open import open_transport
    from tests.helpers import make_model_folder

    src = Repository.init(tmp_path / "src", model="a")
    for k, name in enumerate(("a", "b", "team/c")):
        make_model_folder(tmp_path / f"m{k}", seed=k)
        src.import_folder(tmp_path / f"m{k}", model=name, message="v1")
    remote = tmp_path / "remote"
    assert run_main(capsys, src.root, "remote", "add", "origin", str(remote))[0] == 0
    assert run_main(capsys, src.root, "push", "origin", "--all")[0] == 0
    assert run_main(capsys, remote, "gc")[0] == 0  # a bare store packs its refs too
    assert not (remote / "refs" / "heads" / "a").exists() and (remote / PACKED).is_file()
    heads = {f"refs/heads/{n}": o for n, o in src.model_heads().items()}

    t = open_transport(str(remote))
    assert {k: v for k, v in t.list_refs().items() if k.startswith("refs/heads/")} == heads
    assert t.read_ref("refs/heads/a") == heads["refs/heads/a"]

    dst = tmp_path / "dst"
    assert run_main(capsys, None, "clone", str(remote), str(dst))[0] == 0
    assert Repository.open(dst).resolve("origin/b") == heads["refs/heads/b"]

    make_model_folder(tmp_path / "a2", seed=9)
    a2 = src.import_folder(tmp_path / "a2", model="a", message="v2").commit.oid
    assert run_main(capsys, src.root, "push", "origin", "a")[0] == 0  # compared with the packed id
    assert t.read_ref("refs/heads/a") == a2 and (remote / "refs" / "heads" / "a").is_file()

    with pytest.raises(RefConflictError):
        t.update_ref("refs/heads/b", A, None)
    t.update_ref("refs/heads/b", heads["refs/heads/b"], None)  # a packed-only ref deleted
    assert "refs/heads/b" not in t.list_refs() and t.read_ref("refs/heads/b") is None
    assert "refs/heads/b" not in read_packed(remote)[0]
    with pytest.raises(InvalidRefNameError, match="conflicts"):
        t.update_ref("refs/heads/team/c/x", None, A)  # below a packed ref


def test_a_packed_working_repository_can_be_cloned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import make_model_folder

    src = Repository.init(tmp_path / "src", model="a")
    make_model_folder(tmp_path / "m", seed=1)
    tip = src.import_folder(tmp_path / "m", model="a", message="v1").commit.oid
    assert src.gc().refs_packed >= 1
    dst = tmp_path / "dst"
    assert run_main(capsys, None, "clone", str(src.root), str(dst))[0] == 0
    assert Repository.open(dst).resolve("a") == tip


@pytest.mark.parametrize(
    "name",
    [
        "refs/heads/m", "refs/tests", "refs/tags/v1.0", "refs/remotes/origin/a-b_c+d",
        "refs/rebase/x", "refs/heads/org/team/model", "refs/heads/" + "a" * 200,
        "refs/heads/" + "a" * 201, "refs/heads/a..b", "refs/heads/x.lock", "refs/heads/x.lock/y",
        "refs/heads/x.locked", "refs/heads/HEAD", "refs/heads/.hidden", "refs/heads/-dash",
        "refs/heads/a//b", "refs/heads/a/", "refs/heads/", "refs/other/x", "refs/tests/x",
        "HEAD", "refs/heads/a b", "refs/heads/é", "refs/heads/a\\tb",
    ],
)
def test_a_packed_line_is_taken_exactly_when_its_name_is_a_valid_ref(
    tmp_path: Path, name: str
) -> None:
    from mgit.refs.store import _check_full

    try:
        _check_full(name)
        valid = name != "HEAD"  # HEAD is a ref, but never a packed one
    except InvalidRefNameError:
        valid = False
    root = tmp_path / "s"
    root.mkdir()
    (root / PACKED).write_text(f"# mgit packed-refs 1\n{A} {name}\n{B}  refs/heads/twospaces\n")
    refs, bad = read_packed(root)
    assert (refs == {name: A}) is valid and (bad == ([3] if valid else [2, 3])), (name, refs, bad)


def test_gc_removes_the_locks_of_killed_processes_and_only_those(
    make_repo: Any, tmp_path: Path
) -> None:
    """A process killed while it held the lock of a ref nothing updates again (a packed one,
    say) would leave the lock for ever: gc removes it; a live holder's stays."""
    import json
    import subprocess
    import sys

    from mgit._lockfile import holder_line
    from tests.helpers import make_model_folder

    repo = make_repo(model="m")
    make_model_folder(tmp_path / "m", seed=1)
    repo.import_folder(tmp_path / "m", model="m", message="v1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = json.loads(holder_line())
    info["pid"] = dead.pid
    stale = repo.mgit_dir / "refs" / "heads" / "gone.lock"
    stale.write_text(json.dumps(info) + "\n")
    live = repo.mgit_dir / "refs" / "tags" / "busy.lock"
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(holder_line())  # this process: alive
    assert repo.gc(dry_run=True).stale_locks_removed == 1 and stale.exists()
    assert repo.gc().stale_locks_removed == 1
    assert not stale.exists() and live.exists()
    assert [f.kind for f in repo.fsck().findings] == []  # the live one is no finding either


def test_a_packing_while_a_ref_is_deleted_waits_and_does_not_revive_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between dropping a ref's packed line and removing its file: a packing there
    would read the file and write the line back. It waits for the delete instead."""
    store = _store(tmp_path, {"refs/heads/m": A, "refs/heads/n": B})
    store.pack()
    store.set_if_equals("refs/heads/m", A, C, message="loose C over packed A")
    real_unlink = Path.unlink
    packer: list[threading.Thread] = []

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if not packer and self.name == "m":  # the delete, about to remove the file
            t = threading.Thread(target=store.pack)
            packer.append(t)
            t.start()
            t.join(0.5)
            assert t.is_alive(), "a packing ran inside a delete"
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    store.delete_if_equals("refs/heads/m", C, message="rm")
    packer[0].join(30)
    assert store.read("refs/heads/m") is None
    assert read_packed(store.root)[0] == {"refs/heads/n": B}
