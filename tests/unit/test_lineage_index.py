"""The lineage index (``mgit.lineage_index``): every history query answers the same with and
without it, whatever state the file is in (fresh, missing, truncated, corrupt, foreign, stale
after new commits, after a deleted branch, busy lock), and ``verify`` finds a lying index.

Random lineages are built through the Python API from a few seeds (each a repository of about
30 versions: roots, versions, every derivation relation, merges, metadata, equal commit times,
a tag, a branch on an old version, HEAD detached or not).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_main
from safetensors.numpy import save_file

from mgit import history, lineage_index
from mgit.lineage import graph as dag
from mgit.lineage.render import LogEntry, graph_log, iter_graph_log, to_json
from mgit.repo import Repository

RELS = ["finetune", "adapter", "distill", "prune", "quantize", "other"]
TASKS = ["sst2", "mnli", "squad"]


def _folder(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))
    return path


def build_random(root: Path, seed: int, commits: int = 30) -> Repository:
    """A random lineage of about ``commits`` versions."""
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    repo = Repository.init(root, model="root0")
    state: dict[str, dict[str, np.ndarray]] = {}
    old = os.environ.get("MGIT_COMMIT_TIME")
    try:
        for k in range(commits):
            # Coarse times: several versions share a second (the order's tie-break is tested).
            os.environ["MGIT_COMMIT_TIME"] = str(
                1_700_000_000 + 60 * (k // 3) + rnd.choice([0, 0, 7])
            )
            if not state or rnd.random() < 0.1:
                name = f"root{k}"
                t = {
                    "w": rng.standard_normal((8, 8)).astype(np.float32),
                    "b": rng.standard_normal(8).astype(np.float32),
                }
                kw: dict[str, Any] = {}
            else:
                r = rnd.random()
                src = rnd.choice(sorted(state))
                t = dict(state[src])
                t["w"] = (t["w"] + rng.standard_normal((8, 8)).astype(np.float32) * 1e-3).astype(
                    np.float32
                )
                if r < 0.3:
                    name, kw = src, {"meta": {"step": str(k)}} if rnd.random() < 0.5 else {}
                elif r < 0.45 and len(state) > 2:
                    other = rnd.choice(sorted(set(state) - {src}))
                    name = f"merge{k}"
                    kw = {"parent": [src, other], "relation": rnd.choice([None, "merge"])}
                else:
                    name = f"{src}-{k}"
                    kw = {
                        "parent": src if rnd.random() < 0.7 else f"{src}~0",
                        "relation": rnd.choice(RELS),
                        "meta": {"task": rnd.choice(TASKS), "acc": str(rnd.randint(50, 99))},
                    }
            folder = _folder(root.parent / f"src{seed}-{k}", t)
            repo.import_folder(folder, model=name, message=f"commit {k}\nbody", **kw)
            state[name] = t
    finally:
        if old is None:
            os.environ.pop("MGIT_COMMIT_TIME", None)
        else:
            os.environ["MGIT_COMMIT_TIME"] = old
    names = sorted(state)
    repo.create_tag("v1", names[len(names) // 2])
    log = repo.log(names[-1])
    repo.refs.set_if_equals("refs/heads/old-line", None, log[-1].oid, message="test")
    if seed % 2:
        repo.refs.set_head(oid=repo.resolve(names[0]), message="detach")
    return repo


def answers(capsys: pytest.CaptureFixture[str], root: Path) -> dict[str, Any]:
    """Every query, through the library (fresh objects: no in-memory cache) and the CLI."""
    out: dict[str, Any] = {}
    repo = Repository.open(root)
    names = sorted(repo.model_heads())
    out["log_all"] = [c.to_json() | {"pm": c.parent_models} for c in history.log(repo, all=True)]
    out["log_head"] = [c.oid for c in history.log(Repository.open(root))]
    for n in names[::3]:
        out[f"log {n}"] = [c.oid for c in history.log(Repository.open(root), n, limit=5)]
    out["models"] = [m.to_json() for m in history.models(Repository.open(root))]
    for kw in (
        {},
        {"task": "sst2"},
        {"relation": "finetune"},
        {"meta": {"acc": "60"}},
        {"derived_from": names[0]},
        {"derived_from": names[-1], "all_versions": True},
        {"task": "mnli", "all_versions": True},
        {"relation": "version", "all_versions": True},
        # numeric comparisons and sorting on metadata (issue #17)
        {"where": ["acc>=70"]},
        {"where": ["acc<70", "acc!=60"], "all_versions": True},
        {"where": ["task==sst2", "acc>50"], "sort": "acc"},
        {"sort": "acc"},
        {"sort": "acc", "reverse": True, "all_versions": True},
        {"sort": "step", "all_versions": True, "where": ["step>=2"]},
        {"sort": "task", "reverse": True},
    ):
        out[f"find {kw}"] = [c.to_json() for c in history.find(Repository.open(root), **kw)]
    out["lineage"] = to_json(history.lineage(Repository.open(root)))
    assert history.lineage_data(Repository.open(root)) == out["lineage"]  # no graph, same data
    for n in names[::4]:
        for d in (None, "ancestors", "descendants"):
            out[f"lineage {n} {d}"] = to_json(
                history.lineage(Repository.open(root), n, direction=d)
            )
            got = history.lineage_data(Repository.open(root), n, direction=d)
            assert got == out[f"lineage {n} {d}"], (n, d)
    for args in (
        ["log", "--graph", "--all"],
        ["log", "--graph"],
        ["log", "--graph", "-n", "7", "--all"],
        ["log", "--oneline", "--all"],
        ["log", "-n", "3", "--all"],
        ["--json", "log", "--all"],
        ["models"],
        ["--json", "models"],
        ["find", "--all-versions", "--task", "sst2"],
        ["find", "--meta", "acc>=60", "--sort", "acc", "--reverse"],
        ["--json", "find", "--all-versions", "--meta", "acc<=80", "--sort", "acc"],
        ["lineage"],
        ["--json", "lineage"],
        ["--json", "lineage", names[0], "--descendants"],
        ["--json", "lineage", names[-1], "--ancestors"],
        ["lineage", "--dot", str(root.parent / "g.dot")],
    ):
        code, text, err = run_main(capsys, root, *args)
        assert code == 0, (args, err)
        out[" ".join(args)] = text
    out["dot"] = (root.parent / "g.dot").read_text()
    return out


@pytest.fixture(params=[0, 1, 2])
def lineage(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    build_random(root, request.param)
    return root


def _baseline(
    capsys: pytest.CaptureFixture[str], root: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv(lineage_index.ENV_DISABLE, "1")
    want = answers(capsys, root)
    monkeypatch.delenv(lineage_index.ENV_DISABLE)
    return want


def _index_file(root: Path) -> Path:
    return root / ".mgit" / lineage_index.FILE_NAME


def _valid(root: Path) -> bool:
    repo = Repository.open(root)
    ix = lineage_index.read(repo)
    return ix is not None and ix.tips == lineage_index.RefSnapshot.read(repo).tips


def test_same_answers_with_and_without_the_index(
    lineage: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _index_file(lineage).unlink(missing_ok=True)
    want = _baseline(capsys, lineage, monkeypatch)
    assert not _index_file(lineage).exists()  # disabled: nothing written
    got = answers(capsys, lineage)  # builds it
    assert _valid(lineage)
    assert got == want
    assert answers(capsys, lineage) == want  # read from the file
    assert lineage_index.verify(Repository.open(lineage)) == []


@pytest.mark.parametrize(
    "damage", ["delete", "truncate", "flip", "garbage", "empty", "version", "folder"]
)
def test_damaged_index_is_detected_and_rebuilt(
    lineage: Path, damage: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    want = _baseline(capsys, lineage, monkeypatch)
    lineage_index.load(Repository.open(lineage))
    f = _index_file(lineage)
    data = f.read_bytes()
    if damage == "delete":
        f.unlink()
    elif damage == "truncate":
        f.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "flip":
        b = bytearray(data)
        b[len(b) - 40] ^= 0x10
        f.write_bytes(bytes(b))
    elif damage == "garbage":
        f.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        f.write_bytes(b"")
    elif damage == "version":
        f.write_bytes(data.replace(b'"version":1', b'"version":9', 1))
    elif damage == "folder":
        f.unlink()
        f.mkdir()  # not even a file: queries still answer, nothing is written
    if damage not in ("delete", "folder"):
        assert lineage_index.read(Repository.open(lineage)) is None
        assert lineage_index.verify(Repository.open(lineage))  # fsck names it
    assert answers(capsys, lineage) == want
    if damage != "folder":
        assert _valid(lineage)


def test_stale_index_is_updated_from_the_new_tips(
    lineage: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    repo = Repository.open(lineage)
    lineage_index.load(repo)
    before = lineage_index.read(repo)
    assert before is not None
    # New commits on an existing line and a new line, then a branch deleted (its commits go).
    rng = np.random.default_rng(5)
    t = {
        "w": rng.standard_normal((8, 8)).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
    }
    name = "root0"
    repo.import_folder(_folder(tmp_path / "n1", t), model=name, message="new version")
    repo.import_folder(_folder(tmp_path / "n2", t), model="fresh", message="new root")
    gone = "old-line"
    repo.refs.delete_if_equals(f"refs/heads/{gone}", repo.resolve(gone), message="test")
    want = _baseline(capsys, lineage, monkeypatch)
    # Only the new commits are read: the old entries are reused (no commit object read for them).
    repo2 = Repository.open(lineage)
    reads: list[str] = []
    real = repo2.read_commit

    def counting(oid: str) -> Any:
        reads.append(oid)
        return real(oid)

    repo2.read_commit = counting  # type: ignore[method-assign]
    ix = lineage_index.load(repo2)
    assert ix is not None
    assert len(reads) == 2  # the two new commits
    assert set(ix.oids) == dag.ancestors(repo2.ref_tips(history=True), repo2.parents_of)
    assert answers(capsys, lineage) == want
    assert _valid(lineage)
    assert lineage_index.verify(Repository.open(lineage)) == []


def test_busy_lock_skips_the_write_but_answers(
    lineage: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    want = _baseline(capsys, lineage, monkeypatch)
    _index_file(lineage).unlink(missing_ok=True)
    lock = _index_file(lineage).with_name(lineage_index.FILE_NAME + ".lock")
    lock.write_text(
        json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "start": None, "time": 0})
    )
    assert answers(capsys, lineage) == want
    assert not _index_file(lineage).exists()  # another writer holds it: nothing written
    lock.unlink()
    lineage_index.load(Repository.open(lineage))
    assert _valid(lineage)


def test_verify_finds_an_index_that_lies(lineage: Path) -> None:
    repo = Repository.open(lineage)
    ix = lineage_index.load(repo)
    assert ix is not None and lineage_index.verify(repo) == []
    # A well-formed file (right CRC) whose record of one commit differs from the object.
    victim = ix.order[3]
    sec = {
        name: getattr(ix, attr)
        for name, attr in (
            ("time", "time"),
            ("gen", "gen"),
            ("model", "model"),
            ("pstart", "pstart"),
            ("pidx", "pidx"),
            ("prel", "prel"),
            ("lbytes", "lbytes"),
            ("coff", "coff"),
            ("cold", "cold"),
            ("kstart", "kstart"),
            ("keys", "keys"),
            ("layout", "layout"),
            ("tips", "tip_idx"),
            ("order", "order"),
        )
    }
    sec["oids"] = "".join(ix.oids).encode()
    sec["lbytes"] = sec["lbytes"][:]
    sec["lbytes"][victim] += 1
    _index_file(lineage).write_bytes(lineage_index._encode(sec, ix.models))
    found = lineage_index.verify(Repository.open(lineage))
    assert [p.subject for p in found] == [ix.oids[victim]]
    # fsck reports it as a notice (not damage: a cache) and drops the file; the next query
    # rebuilds an index that agrees with the objects
    from mgit import maintenance

    res = maintenance.fsck(Repository.open(lineage))
    assert res.ok and [f.subject for f in res.findings if f.kind == "lineage_index"] == [ix.oids[victim]]
    assert not _index_file(lineage).exists()
    lineage_index.load(Repository.open(lineage))
    assert lineage_index.verify(Repository.open(lineage)) == []


def test_disabled_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = build_random(tmp_path / "repo", 3, commits=6)
    monkeypatch.setenv(lineage_index.ENV_DISABLE, "1")
    assert lineage_index.load(repo) is None
    monkeypatch.setenv(lineage_index.ENV_DISABLE, "0")
    assert lineage_index.load(repo) is not None


def test_damaged_history_falls_back_to_the_objects(tmp_path: Path) -> None:
    """A ref to a missing commit: the index cannot be built, the queries report what they
    always reported (the objects are the truth)."""
    repo = build_random(tmp_path / "repo", 4, commits=5)
    missing = "ab" * 32
    (repo.mgit_dir / "refs" / "heads" / "broken").write_text(missing + "\n")
    assert lineage_index.load(Repository.open(repo.root)) is None
    with pytest.raises(Exception) as with_index:
        history.models(Repository.open(repo.root))
    os.environ[lineage_index.ENV_DISABLE] = "1"
    try:
        with pytest.raises(Exception) as without:
            history.models(Repository.open(repo.root))
    finally:
        del os.environ[lineage_index.ENV_DISABLE]
    assert type(with_index.value) is type(without.value)


def test_scan_refs_reads_what_the_ref_store_reads(tmp_path: Path) -> None:
    repo = build_random(tmp_path / "repo", 5, commits=4)
    refs = repo.mgit_dir / "refs"
    oid = repo.resolve("HEAD")
    (refs / "heads" / "x.lock").write_text(oid)
    (refs / "heads" / "y.tmp").write_text(oid)
    (refs / "heads" / "garbage").write_text("not an id\n")
    (refs / "heads" / "symbolic").write_text("ref: refs/heads/base\n")
    (refs / "heads" / "nested").mkdir()
    (refs / "heads" / "nested" / "deep").write_text(oid + "\n")
    (refs / "heads" / "linked").symlink_to(refs / "heads" / "nested" / "deep")
    (refs / "heads" / "linkdir").symlink_to(refs / "heads" / "nested")
    os.mkfifo(refs / "heads" / "fifo")
    (refs / "remotes" / "o").mkdir(parents=True)
    (refs / "remotes" / "o" / "main").write_text(oid)
    assert lineage_index.scan_refs(repo.mgit_dir) == repo.refs.iter_refs("refs/")


@pytest.mark.parametrize("at_most", [64, 2])
def test_guess_parent_from_the_inverted_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_most: int
) -> None:
    import mgit.guess

    monkeypatch.setattr(mgit.guess, "SCAN_ALL_BELOW", 0)  # the inverted index even at 20 versions
    monkeypatch.setattr(mgit.guess, "SCORE_AT_MOST", at_most)  # 2: only the top of the ranking
    root = tmp_path / "repo"
    repo = build_random(root, 6, commits=20)
    rng = np.random.default_rng(0)
    for k, name in enumerate(sorted(repo.model_heads())[:4]):
        folder = tmp_path / f"guess{k}"
        repo.export(name, folder)
        from safetensors.numpy import load_file

        t = load_file(str(folder / "model.safetensors"))
        t["b"] = (t["b"] + rng.standard_normal(8).astype(np.float32) * 1e-3).astype(np.float32)
        save_file(t, str(folder / "model.safetensors"))
        got = Repository.open(root).guess_parent(folder)
        monkeypatch.setenv(lineage_index.ENV_DISABLE, "1")
        want = Repository.open(root).guess_parent(folder, limit=100)
        monkeypatch.delenv(lineage_index.ENV_DISABLE)
        assert got[0].oid == want[0].oid
        # Every candidate scored is scored as the full scan scores it, in the same order.
        full = {c.oid: c.score for c in want}
        assert [c.oid for c in got] == [c.oid for c in want if c.oid in {g.oid for g in got}]
        assert all(abs(full[c.oid] - c.score) < 1e-12 for c in got)


# ----------------------------------------------------------------------------------------------
# the graph renderer


def _old_transition_row(moves: list[tuple[int, int]], slots: int) -> str:
    """The renderer's former row drawing (O(moves * width)), the reference."""
    strength = {" ": 0, "_": 1, "/": 2, "\\": 2, "|": 3}
    cells = [" "] * (2 * slots + 1)

    def put(x: int, ch: str) -> None:
        if strength[ch] > strength[cells[x]]:
            cells[x] = ch

    for a, b in moves:
        if a == b:
            put(2 * a, "|")
        elif b < a:
            put(2 * a - 1, "/")
            for x in range(2 * b + 1, 2 * a - 1):
                put(x, "_")
        else:
            put(2 * a + 1, "\\")
            for x in range(2 * a + 2, 2 * b):
                put(x, "_")
    return "".join(cells).rstrip()


@pytest.mark.parametrize("seed", range(200))
def test_transition_rows_are_drawn_as_before(seed: int) -> None:
    from mgit.lineage.render import _transition_row

    rnd = random.Random(seed)
    slots = rnd.randint(1, 12)
    moves = [(rnd.randrange(slots), rnd.randrange(slots)) for _ in range(rnd.randint(0, 10))]
    assert _transition_row(moves, slots) == _old_transition_row(moves, slots)


@pytest.mark.parametrize("seed", range(30))
def test_streamed_graph_log_equals_graph_log(seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.randint(1, 60)
    oids = [f"{k:064x}" for k in range(n)]
    parents = {
        o: [oids[p] for p in rnd.sample(range(k), min(k, rnd.choice([0, 1, 1, 1, 2, 3])))]
        for k, o in enumerate(oids)
    }
    order = dag.topo_order(oids, lambda o: parents[o], lambda o: int(o, 16) // 3)
    entries = [
        LogEntry(
            o,
            parents=tuple((p, rnd.choice(["version", "finetune"])) for p in parents[o]),
            model=f"m{int(o, 16) % 4}",
            message=f"c {o[-3:]}",
        )
        for o in order
    ]
    want = graph_log(entries)
    models = {e.oid: e.model for e in entries}
    got = list(
        iter_graph_log(iter(entries), members=set(order), model_of=lambda o: models.get(o, ""))
    )
    assert got == want


def test_graph_of_many_lines_joining_is_linear() -> None:
    """1,000 children of one root: the join row used to cost O(children * width)."""
    import time

    root = "f" * 64
    kids = [
        LogEntry(f"{k:064x}", parents=((root, "finetune"),), model=f"m{k}") for k in range(1000)
    ]
    entries = [*kids, LogEntry(root, model="root")]
    t0 = time.perf_counter()
    lines = graph_log(entries)
    assert time.perf_counter() - t0 < 5.0
    join = lines[-2]
    assert join.startswith("|") and join.endswith("/") and set(join) <= {"|", "_", "/"}


def test_chunk_overlap_counts_what_a_scan_of_every_commit_counts(tmp_path: Path) -> None:
    repo = build_random(tmp_path / "repo", 3, commits=30)
    ix = lineage_index.load(repo)
    assert ix is not None and ix.n >= 30
    rng = np.random.default_rng(3)
    every = sorted({k for c in range(ix.n) for k in ix.chunk_keys(c)})
    for size in (0, 1, 5, len(every)):
        keys = {every[i] for i in rng.choice(len(every), size=size, replace=False)} if size else set()
        keys |= {12345}  # a key nobody holds
        want = {c: sum(k in keys for k in ix.chunk_keys(c)) for c in range(ix.n)}
        want = {c: n for c, n in want.items() if n}
        assert ix.chunk_overlap(keys) == want
        assert ix.with_chunks(keys) == set(want)
