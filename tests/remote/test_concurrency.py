"""Several processes pushing at once, and a push killed with SIGKILL half-way.

Every process here is a real ``mgit`` process; the remote is a path (the shared-filesystem
case) or an S3 prefix on the moto server of this test session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mgit.format import new_config
from mgit.remote.clone import clone
from mgit.remote.local import LocalTransport
from mgit.remote.open import open_transport
from mgit.remote.push import push
from mgit.repo import Repository
from tests.helpers import sha256_tree, write_model_folder
from tests.remote.conftest import RemoteSpec, build_source, perturbed

MGIT = [sys.executable, "-c", "import sys; from mgit.cli import main; sys.exit(main(sys.argv[1:]))"]

# The same entry point with every object upload slowed down, so a test can kill it mid-push.
SLOW_MGIT = [
    sys.executable,
    "-c",
    (
        "import sys, time\n"
        "from mgit.remote import local, s3\n"
        "for cls in (local.LocalTransport, s3.S3Transport):\n"
        "    def slow(self, oid, data, _orig=cls.put_object):\n"
        "        _orig(self, oid, data)\n"
        "        time.sleep(0.05)\n"
        "    cls.put_object = slow\n"
        "from mgit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    ),
]


def spawn(args: list[str], env: dict[str, str], *, cmd: list[str] = MGIT) -> subprocess.Popen[str]:
    full_env = dict(os.environ, MGIT_THREADS="1", **env)
    return subprocess.Popen(
        cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )


def remote_fsck(url: str, scratch: Path) -> tuple[bool, list[str]]:
    """Copy every object and ref of a remote into a local bare store and fsck it: every object
    must decode to its id (a delta's base present), every ref's history complete."""
    src = open_transport(url)
    dst = LocalTransport(scratch)
    dst.init(new_config(bare=True))
    for oid in src.iter_objects():
        dst.put_object(oid, src.get_object(oid))
    for name, oid in src.list_refs().items():
        dst.update_ref(name, None, oid)
    result = Repository.open(scratch).fsck()
    return result.ok, result.problems


def test_eight_processes_push_different_models_at_once(tmp_path: Path) -> None:
    remote = RemoteSpec(
        "path", str(tmp_path / "remote-store"), {}, lambda r, d: None, lambda r: b""
    )
    source = build_source(tmp_path, hidden=32, vocab=256)
    repo = source.repo
    tips = {}
    for i in range(8):
        folder = write_model_folder(tmp_path / f"ft{i}", perturbed(source.base_tensors, 100 + i))
        tips[f"ft-{i}"] = repo.import_folder(
            folder, model=f"ft-{i}", parent="bert", relation="finetune", message=f"ft {i}"
        ).commit.oid
    repo_path = str(source.path)
    # Nothing is on the remote yet: all eight upload the shared base objects concurrently.
    procs = [spawn(["-C", repo_path, "push", remote.url, name], remote.env) for name in tips]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    refs = open_transport(remote.url).list_refs()
    assert refs == {f"refs/heads/{m}": oid for m, oid in tips.items()}
    ok, problems = remote_fsck(remote.url, tmp_path / "check")
    assert ok, problems
    res = clone(remote.url, tmp_path / "c", model="ft-5")
    assert res.model == "ft-5"
    assert sha256_tree(tmp_path / "c") == sha256_tree(tmp_path / "ft5")


def test_four_processes_push_the_same_ref_one_wins(remote: RemoteSpec, tmp_path: Path) -> None:
    source = build_source(tmp_path, hidden=32, vocab=256)
    push(source.repo, remote.url, ["bert"])
    clones, tips = [], []
    for j in range(4):
        clone(remote.url, tmp_path / f"c{j}", model="bert")
        c = Repository.open(tmp_path / f"c{j}")
        folder = write_model_folder(tmp_path / f"v{j}", perturbed(source.base_tensors, 200 + j))
        tips.append(
            c.import_folder(folder, model="bert", message=f"version from clone {j}").commit.oid
        )
        clones.append(tmp_path / f"c{j}")
    procs = [spawn(["-C", str(c), "push"], remote.env) for c in clones]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    winners = [j for j, code in enumerate(codes) if code == 0]
    assert len(winners) == 1, outs
    for j, (out, err) in enumerate(outs):
        if j in winners:
            continue
        assert codes[j] == 1
        assert "rejected" in err and "mgit pull" in err, err
    # No lost update: the remote holds the winner's version, complete and sound.
    assert open_transport(remote.url).read_ref("refs/heads/bert") == tips[winners[0]]
    ok, problems = remote_fsck(remote.url, tmp_path / "check")
    assert ok, problems
    # A loser that pulls is told its version and the remote's diverged (nothing is lost).
    loser = next(j for j in range(4) if j not in winners)
    p = spawn(["-C", str(clones[loser]), "pull"], remote.env)
    _out, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "diverged" in err
    assert Repository.open(clones[loser]).refs.read("refs/heads/bert") == tips[loser]


def test_push_killed_half_way_leaves_the_remote_sound_and_resumes(
    remote: RemoteSpec, tmp_path: Path
) -> None:
    source = build_source(tmp_path, hidden=128, vocab=2048)  # 1 MiB embedding: many chunks
    wanted = source.repo.objects_to_send([source.ft], set())
    assert len(wanted) > 30
    proc = spawn(
        ["-C", str(source.path), "push", "-j", "1", remote.url, "bert-ft"],
        remote.env,
        cmd=SLOW_MGIT,
    )
    transport = open_transport(remote.url)
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = sum(1 for _ in transport.iter_objects()) if transport.read_config() else 0
        if seen >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "push finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    present = set(transport.iter_objects())
    assert 10 <= len(present) < len(wanted)
    assert transport.list_refs() == {}  # no ref points at the half-sent model
    ok, problems = remote_fsck(remote.url, tmp_path / "check")
    assert ok, problems  # what is there is sound: every object complete, its references too

    res = push(source.repo, remote.url, ["bert-ft"])
    # Only what is still missing travels (an upload in flight at the kill may have landed).
    assert res.objects_already_there >= len(present)
    assert res.objects_sent + res.objects_already_there == len(wanted)
    assert res.objects_sent < len(wanted) - 9
    clone(remote.url, tmp_path / "c", model="bert-ft")
    assert sha256_tree(tmp_path / "c") == sha256_tree(source.ft_dir)


def test_stale_lock_on_a_path_remote_is_reported(tmp_path: Path) -> None:
    source = build_source(tmp_path, hidden=16, vocab=64)
    url = str(tmp_path / "remote")
    push(source.repo, url, ["bert"])
    (tmp_path / "remote" / "refs" / "heads" / "bert.lock").write_text("")
    v2 = write_model_folder(tmp_path / "v2", perturbed(source.base_tensors, 5))
    source.repo.import_folder(v2, model="bert", message="v2")
    p = spawn(["-C", str(source.path), "push", url, "bert"], {"MGIT_LOCK_TIMEOUT": "0.3"})
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 11
    assert "lock is held" in err and "bert.lock" in err
