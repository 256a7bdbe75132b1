"""``fsck --repair``: fetch what ``fsck`` finds missing or damaged from a remote.

Each object comes back in its stored encoding, is decoded and checked against its id
(:meth:`mgit.objects.store.DiskStore.replace_raw`) and only then written: a missing object is
created, a damaged one replaced (atomically: a reader sees the damaged file or the good one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mgit.core import RepoCore
from mgit.errors import MgitError, ObjectNotFoundError
from mgit.maintenance import FsckResult, fsck
from mgit.objects.ids import is_oid
from mgit.objects.store import max_stored_size
from mgit.remote.config import open_remote, remote_timeout, resolve_remote

__all__ = ["RepairResult", "repair"]


@dataclass(frozen=True)
class RepairResult:
    """What ``fsck --repair`` did."""

    remote: str
    #: Objects fetched, verified and written (missing ones) or swapped in (damaged ones).
    repaired: list[str]
    #: Objects that could not be repaired, with why.
    failed: dict[str, str]
    #: ``fsck`` after the repair.
    after: FsckResult

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "remote": self.remote,
            "repaired": self.repaired,
            "failed": self.failed,
            "after": self.after.to_json(),
        }


def repair(core: RepoCore, remote: str | None = None, *, rounds: int = 8) -> RepairResult:
    """Fetch the objects ``fsck`` finds missing or damaged from a remote, verify each against
    its id, and write it (a damaged file is replaced). Repeats while it makes progress: a
    repaired tree can name chunks that are missing too.

    Args:
        core: the repository.
        remote: a remote name or URL (default: ``origin``, or the only remote).
        rounds: at most this many fsck-and-fetch rounds.

    Raises:
        UsageError: no remote given and none (or several) configured.
        RemoteError: the remote cannot be reached.
    """
    name, url = resolve_remote(core, remote)
    transport = open_remote(url, create=False, timeout=remote_timeout(core, name))
    repaired: list[str] = []
    failed: dict[str, str] = {}
    for _round in range(rounds):
        res = fsck(core)
        wanted: list[str] = []
        for f in res.damage:
            oid = f.subject
            if f.kind == "dangling_ref":
                oid = core.refs.iter_refs("refs/").get(f.subject, "")
            if is_oid(oid) and oid not in wanted and oid not in failed:
                wanted.append(oid)
        progress = False
        pending = list(wanted)
        while pending:
            retry: list[str] = []
            for oid in pending:
                try:
                    data = transport.get_object(oid, max_size=max_stored_size())
                    core.store.replace_raw(oid, data)
                except ObjectNotFoundError as exc:
                    if exc.oid != oid and exc.oid not in pending and is_oid(exc.oid):
                        retry += [exc.oid, oid]  # a delta whose base is missing here: base first
                        continue
                    failed[oid] = str(exc)
                    continue
                except MgitError as exc:
                    failed[oid] = str(exc)
                    continue
                repaired.append(oid)
                failed.pop(oid, None)
                progress = True
            if retry == pending or not retry:
                for oid in retry:
                    failed.setdefault(oid, "its delta base could not be repaired")
                break
            pending = list(dict.fromkeys(retry))
        if not progress:
            break
    core.store.sync()
    return RepairResult(transport.url, repaired, failed, fsck(core))
