"""The repository: the Python API behind every command.

``Repository`` ties together the object store, the refs, the config and the working tree. Each
user action is one method that returns a dataclass and never prints; ``mgit.commands`` renders.

Example:
    >>> repo = Repository.init("bert-base")                       # doctest: +SKIP
    >>> repo.add(["."]); repo.commit("base")                       # doctest: +SKIP
    >>> repo.import_folder("ft/", model="bert-sst2", parent="bert-base",
    ...                    relation="finetune", message="sst2")    # doctest: +SKIP
    >>> sd = repo.load_state_dict("bert-sst2")                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit._fs import atomic_write, check_relpath, safe_join
from mgit._pool import WorkerPool, default_workers
from mgit.errors import (
    AmbiguousRefError,
    CorruptObjectError,
    DirtyWorkingTreeError,
    InvalidRefNameError,
    MgitError,
    NotARepositoryError,
    NothingToCommitError,
    ObjectNotFoundError,
    RefNotFoundError,
    RepositoryExistsError,
    UnsafePathError,
    UnsupportedFormatError,
    UsageError,
    format_version_error,
)
from mgit.lineage import graph as dag
from mgit.materialize import tensor_array, tensor_bytes, write_file
from mgit.objects.ids import is_oid
from mgit.objects.model import RELATIONS, Commit, FileEntry, ParentLink, TensorManifest, Tree
from mgit.objects.store import DiskStore
from mgit.refs.store import HEADS, REMOTES, TAGS, RefStore, check_name

if TYPE_CHECKING:
    # Imported where used, so that a command loads only what it runs: export and log need
    # neither the working tree nor ingest.
    from mgit.ingest import IngestStats
    from mgit.worktree import StatusResult

__all__ = [
    "FORMAT_VERSION",
    "DEFAULT_CHUNK_SIZE",
    "Repository",
    "CommitResult",
    "CommitInfo",
    "ModelInfo",
    "ExportResult",
    "CheckoutResult",
    "AddResult",
    "StatsResult",
    "FsckResult",
    "GcResult",
]

FORMAT_VERSION = 2
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
_GUESS_MIN_SCORE = 0.2
_REV_RE = re.compile(r"^(?P<base>[^~^]+)(?P<ops>(?:[~^]\d*)*)$")
_OP_RE = re.compile(r"([~^])(\d*)")


# ----------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class CommitInfo:
    """A commit as the API returns it."""

    oid: str
    model: str
    parents: list[tuple[str, str]]
    author: str
    time: int
    message: str
    meta: dict[str, str]
    lossy: dict[str, float] | None
    tree: str
    recipe: dict[str, Any] | None = None

    @property
    def short(self) -> str:
        """Abbreviated id."""
        return self.oid[:12]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "oid": self.oid,
            "model": self.model,
            "parents": [{"oid": p, "relation": r} for p, r in self.parents],
            "author": self.author,
            "time": self.time,
            "message": self.message,
            "meta": self.meta,
            "lossy": self.lossy,
            "tree": self.tree,
            "recipe": self.recipe,
        }


@dataclass(frozen=True)
class CommitResult:
    """What ``commit`` and ``import`` did."""

    commit: CommitInfo
    stats: IngestStats
    files: int
    check: str | None = None  # None, "passed", or "failed: stored losslessly"
    candidates: list[Any] = field(default_factory=list)  # --guess-parent: ranked candidates

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        s = self.stats
        return {
            "commit": self.commit.to_json(),
            "files": self.files,
            "logical_bytes": s.logical_bytes,
            "new_stored_bytes": s.new_bytes,
            "chunks": s.chunks,
            "new_chunks": s.new_chunks,
            "delta_chunks": s.delta_chunks,
            "lossy_chunks": s.lossy_chunks,
            "max_err": s.max_err,
            "check": self.check,
            "guessed_parents": [c.to_json() for c in self.candidates],
        }


@dataclass(frozen=True)
class AddResult:
    """Paths staged by ``add``."""

    staged: list[str]
    removed: list[str]
    unchanged: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"staged": self.staged, "removed": self.removed, "unchanged": self.unchanged}


@dataclass(frozen=True)
class ExportResult:
    """Files written by ``export``."""

    commit: str
    directory: str
    files: list[str]
    bytes: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"commit": self.commit, "directory": self.directory, "files": self.files, "bytes": self.bytes}


@dataclass(frozen=True)
class CheckoutResult:
    """What ``checkout`` did."""

    commit: str
    model: str | None
    detached: bool
    written: list[str]
    removed: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "commit": self.commit, "model": self.model, "detached": self.detached,
            "written": self.written, "removed": self.removed,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A model line: its latest version and where it came from."""

    name: str
    head: str
    versions: int
    derived_from: str | None  # "model@short" of the parent of its first version
    relation: str | None
    logical_bytes: int
    time: int
    message: str
    current: bool

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "name": self.name, "head": self.head, "versions": self.versions,
            "derived_from": self.derived_from, "relation": self.relation,
            "logical_bytes": self.logical_bytes, "time": self.time, "message": self.message,
            "current": self.current,
        }


@dataclass(frozen=True)
class StatsResult:
    """Logical and stored bytes per model and in total."""

    models: dict[str, dict[str, int]]
    total: dict[str, int]
    commits: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON value: ``{"models": {NAME: {"logical_bytes", "stored_bytes"}}, "total": {...}}``."""
        return {"models": self.models, "total": self.total, "commits": self.commits}


@dataclass(frozen=True)
class FsckResult:
    """What ``fsck`` found."""

    objects_checked: int
    reachable: int
    dangling: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"objects_checked": self.objects_checked, "reachable": self.reachable,
                "dangling": self.dangling, "problems": self.problems, "ok": self.ok}


@dataclass(frozen=True)
class GcResult:
    """What ``gc`` removed."""

    removed: int
    freed_bytes: int
    kept: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "kept": self.kept,
                "dry_run": self.dry_run}


def _author(config: dict[str, Any]) -> str:
    env = os.environ.get("MGIT_AUTHOR")
    if env:
        return env
    user = config.get("user")
    if isinstance(user, str) and user:
        return user
    return f"{_login_name()}@{_host_name()}"


def _login_name() -> str:
    """What ``getpass.getuser()`` answers, without importing ``getpass`` (and ``termios``)."""
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        name = os.environ.get(var)
        if name:
            return name
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return "unknown"


def _host_name() -> str:
    """This machine's name (``socket.gethostname()``; ``socket`` costs 3 ms to import)."""
    try:
        return os.uname().nodename
    except AttributeError:  # not POSIX
        import socket

        return socket.gethostname()


def _now() -> int:
    env = os.environ.get("MGIT_COMMIT_TIME")
    if env and env.lstrip("-").isdigit():
        return int(env)
    return int(time.time())


def _check_relation(rel: str) -> str:
    if rel not in RELATIONS:
        raise UsageError(f"unknown relation {rel!r}", hint="one of: " + ", ".join(RELATIONS))
    return rel


def _check_text(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8") from None
    return text


def _check_meta(meta: dict[str, str] | None) -> dict[str, str]:
    meta = dict(meta or {})
    for k, v in meta.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise UsageError(f"bad metadata entry {k!r}")
        _check_text(k, "a metadata key")
        _check_text(v, "a metadata value")
    return meta


def _check_eps(eps: float | None) -> float | None:
    if eps is None:
        return None
    if not (eps > 0 and eps < 1e3):
        raise UsageError(f"--lossy must be a positive error bound, got {eps}")
    return float(eps)


class Repository:
    """An mgit repository: a model folder with ``.mgit/`` inside, or a bare store."""

    def __init__(self, root: Path, mgit_dir: Path, *, bare: bool = False) -> None:
        self.root = root
        self.mgit_dir = mgit_dir
        self.bare = bare
        self.config = self._read_config()
        self.store = DiskStore(mgit_dir / "objects")
        self.refs = RefStore(mgit_dir, who=_author(self.config))
        self.chunk_size = int(self.config.get("chunk_size", DEFAULT_CHUNK_SIZE))
        self.workers = default_workers()
        self._commit_cache: dict[str, Commit] = {}

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        bare: bool = False,
        chunk_size: int | None = None,
    ) -> Repository:
        """Create a repository in ``path`` (created if missing).

        Args:
            path: the model folder (or, with ``bare``, the store folder itself).
            model: name of the first model line; defaults to the folder's name.
            bare: a store with no working tree (what remotes are).
            chunk_size: bytes per chunk (a power of two, 64 KiB to 64 MiB).

        Raises:
            RepositoryExistsError: there is one already.
            InvalidRefNameError: a bad model name.
        """
        root = Path(path).absolute()
        mgit_dir = root if bare else root / ".mgit"
        if (mgit_dir / "config").exists():
            raise RepositoryExistsError(mgit_dir)
        cs = chunk_size or DEFAULT_CHUNK_SIZE
        if cs < 65536 or cs > (64 << 20) or cs & (cs - 1):
            raise UsageError("chunk size must be a power of two between 64 KiB and 64 MiB")
        name = model or _default_model_name(root)
        check_name(name, what="model name")
        mgit_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("objects", "refs/heads", "refs/tags"):
            (mgit_dir / sub).mkdir(parents=True, exist_ok=True)
        atomic_write(mgit_dir / "HEAD", f"ref: {HEADS}{name}\n".encode())
        cfg = {"format_version": FORMAT_VERSION, "hash": "blake3", "chunk_size": cs, "bare": bare}
        atomic_write(mgit_dir / "config", json.dumps(cfg, indent=2, sort_keys=True).encode())
        return cls(root, mgit_dir, bare=bare)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> Repository:
        """Open the repository containing ``path`` (searching upwards), or a bare store.

        Raises:
            NotARepositoryError: none found.
            UnsupportedFormatError: an unknown format version.
        """
        start = Path(path).absolute()
        if (start / "config").is_file() and (start / "objects").is_dir() and not (start / ".mgit").exists():
            try:
                cfg = json.loads((start / "config").read_text())
            except (OSError, json.JSONDecodeError):
                cfg = {}
            if isinstance(cfg, dict) and cfg.get("bare"):
                return cls(start, start, bare=True)
        for d in (start, *start.parents):
            if (d / ".mgit" / "config").is_file():
                return cls(d, d / ".mgit")
        raise NotARepositoryError(start)

    def _read_config(self) -> dict[str, Any]:
        try:
            cfg = json.loads((self.mgit_dir / "config").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotARepositoryError(self.root) from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise UnsupportedFormatError(f"unreadable repository config: {type(exc).__name__}") from None
        if not isinstance(cfg, dict):
            raise UnsupportedFormatError("repository config is not a JSON object")
        if cfg.get("format_version") != FORMAT_VERSION:
            raise format_version_error("the repository", cfg.get("format_version"), FORMAT_VERSION)
        if cfg.get("hash", "blake3") != "blake3":
            raise UnsupportedFormatError(f"hash algorithm {cfg.get('hash')!r} is not supported")
        return cfg

    def write_config(self, cfg: dict[str, Any]) -> None:
        """Replace the config (format fields are kept)."""
        cfg = dict(cfg)
        cfg["format_version"] = FORMAT_VERSION
        cfg["hash"] = "blake3"
        atomic_write(self.mgit_dir / "config", json.dumps(cfg, indent=2, sort_keys=True).encode())
        self.config = cfg

    def _pool(self) -> WorkerPool:
        return WorkerPool(self.workers)

    # -- objects ------------------------------------------------------------------------------

    def read_commit(self, oid: str) -> Commit:
        """A commit object.

        Raises:
            ObjectNotFoundError, CorruptObjectError.
        """
        c = self._commit_cache.get(oid)
        if c is None:
            try:
                c = Commit.from_bytes(self.store.get(oid, kind="commit"))
            except CorruptObjectError as exc:
                raise CorruptObjectError(oid, exc.reason) from None
            self._commit_cache[oid] = c
        return c

    def read_tree(self, oid: str) -> Tree:
        """A tree object."""
        try:
            return Tree.from_bytes(self.store.get(oid, kind="tree"))
        except CorruptObjectError as exc:
            raise CorruptObjectError(oid, exc.reason) from None

    def commit_info(self, oid: str) -> CommitInfo:
        """A commit as a result value."""
        c = self.read_commit(oid)
        return CommitInfo(
            oid=oid, model=c.model, parents=[(p.oid, p.relation) for p in c.parents],
            author=c.author, time=c.time, message=c.message, meta=dict(c.meta),
            lossy=c.lossy, tree=c.tree, recipe=c.recipe,
        )

    def parents_of(self, oid: str) -> list[str]:
        """Parent commit ids."""
        return [p.oid for p in self.read_commit(oid).parents]

    # -- refs ---------------------------------------------------------------------------------

    @property
    def head_model(self) -> str | None:
        """The model line HEAD is on, or None when detached."""
        t = self.refs.head_target()
        return t[len(HEADS) :] if t and t.startswith(HEADS) else None

    def head(self) -> str | None:
        """The commit HEAD points at, or None before the first commit."""
        return self.refs.read("HEAD")

    def resolve(self, ref: str) -> str:
        """A REF to a commit id: model name, tag, ``remote/model``, HEAD, id or unique prefix,
        followed by any of ``~N`` (N-th first-parent ancestor) and ``^N`` (N-th parent).

        Raises:
            RefNotFoundError: nothing by that name, or an ancestor that does not exist.
            AmbiguousRefError: a prefix matching several commits.
        """
        m = _REV_RE.match(ref.strip())
        if not m:
            raise RefNotFoundError(ref)
        oid = self._resolve_base(m.group("base"), ref)
        for op, num in _OP_RE.findall(m.group("ops")):
            n = int(num) if num else 1
            if op == "~":
                for _ in range(n):
                    parents = self.parents_of(oid)
                    if not parents:
                        raise RefNotFoundError(ref, reason="history is not that long")
                    oid = parents[0]
            else:
                if n == 0:
                    continue
                parents = self.parents_of(oid)
                if len(parents) < n:
                    raise RefNotFoundError(ref, reason=f"commit has {len(parents)} parent(s)")
                oid = parents[n - 1]
        return oid

    def _resolve_base(self, base: str, ref: str) -> str:
        if base == "HEAD" or base == "@":
            oid = self.head()
            if oid is None:
                raise RefNotFoundError(ref, reason="no commit yet")
            return oid
        for prefix in (HEADS, TAGS, REMOTES):
            try:
                oid = self.refs.read(prefix + base)
            except InvalidRefNameError:
                oid = None
            if oid is not None:
                return oid
        if re.fullmatch(r"[0-9a-f]{4,64}", base):
            matches = self._commits_with_prefix(base)
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousRefError(ref, matches)
        raise RefNotFoundError(ref)

    def _commits_with_prefix(self, prefix: str) -> list[str]:
        if len(prefix) == 64:
            return [prefix] if prefix in self.store and self.store.kind_of(prefix) == "commit" else []
        shard = self.store.root / prefix[:2]
        if not shard.is_dir():
            return []
        out = []
        for name in os.listdir(shard):
            oid = prefix[:2] + name
            if oid.startswith(prefix) and is_oid(oid):
                try:
                    if self.store.kind_of(oid) == "commit":
                        out.append(oid)
                except (CorruptObjectError, ObjectNotFoundError):
                    continue
        return sorted(out)

    def model_heads(self) -> dict[str, str]:
        """Every model line and its latest commit."""
        return {k[len(HEADS) :]: v for k, v in self.refs.iter_refs(HEADS).items()}

    def tags(self) -> dict[str, str]:
        """Every tag and its commit."""
        return {k[len(TAGS) :]: v for k, v in self.refs.iter_refs(TAGS).items()}

    # -- writing commits ----------------------------------------------------------------------

    def _parent_links(
        self,
        model: str,
        tip: str | None,
        parent: str | Sequence[str] | None,
        relation: str | None,
    ) -> list[ParentLink]:
        extra = [parent] if isinstance(parent, str) else list(parent or [])
        links: list[ParentLink] = []
        if tip is not None:
            rel = relation if (relation and not extra) else "version"
            links.append(ParentLink(tip, _check_relation(rel)))
        for p in extra:
            oid = self.resolve(p)
            rel = relation or ("version" if self.read_commit(oid).model == model else "finetune")
            if len(extra) > 1 and relation is None:
                rel = "merge"
            if all(link.oid != oid for link in links):
                links.append(ParentLink(oid, _check_relation(rel)))
        return links

    def _write_commit(
        self,
        *,
        model: str,
        tip: str | None,
        parents: list[ParentLink],
        files: dict[str, FileEntry | Path],
        message: str,
        meta: dict[str, str],
        eps: float | None,
        recipe: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
        move_head: bool = False,
        allow_empty_change: bool = True,
        update_ref: bool = True,
    ) -> tuple[CommitInfo, IngestStats]:
        """Ingest files, write tree and commit, sync, then (``update_ref``) move the model ref
        by compare-and-swap."""
        from mgit.ingest import IngestStats, ParentIndex, ingest_file

        stats = IngestStats()
        parent_tree = self.read_tree(self.read_commit(parents[0].oid).tree) if parents else None
        pindex = ParentIndex(self.store, parent_tree)
        entries: dict[str, FileEntry] = {}
        with self._pool() as pool:
            for rel in sorted(files):
                src = files[rel]
                if isinstance(src, FileEntry):
                    entries[rel] = src
                    stats.logical_bytes += src.size
                    continue
                entries[rel] = ingest_file(
                    self.store, src, relpath=rel, chunk_size=self.chunk_size, parents=pindex,
                    pool=pool, workers=self.workers, stats=stats, eps=eps, progress=progress,
                )
        tree = Tree(entries)
        tree_oid = self.store.put("tree", tree.to_bytes())
        if not allow_empty_change and parent_tree is not None and tree_oid == self.read_commit(parents[0].oid).tree:
            raise NothingToCommitError("nothing to commit: the tree is identical to its parent")
        lossy = {"eps": eps, "max_err": stats.max_err} if eps is not None and stats.lossy_chunks else None
        commit = Commit(
            tree=tree_oid, parents=tuple(parents), model=model, author=_author(self.config),
            time=_now(), message=message, meta=meta, recipe=recipe, lossy=lossy,
        )
        oid = self.store.put("commit", commit.to_bytes())
        self.store.sync()  # objects durable before any ref points at them
        if update_ref:
            self._move_model_ref(model, tip, oid, message=message, move_head=move_head)
        return self.commit_info(oid), stats

    def _move_model_ref(self, model: str, tip: str | None, oid: str, *, message: str, move_head: bool) -> None:
        """Compare-and-swap the model line from ``tip`` to ``oid``; HEAD follows if asked."""
        first = message.splitlines()[0] if message else ""
        self.refs.update_many([(HEADS + model, tip, oid)], message=f"commit: {first}")
        if move_head and self.head_model != model:
            self.refs.set_head(ref=HEADS + model, message=f"commit to {model}")

    def _run_check(self, check: str, oid: str) -> bool:
        """Export a commit to a temp folder and run ``check`` on it; True when it exits 0."""
        import shlex
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mgit-check-") as tmp:
            self.export(oid, tmp)
            cmd = check.replace("{}", shlex.quote(tmp)) if "{}" in check else f"{check} {shlex.quote(tmp)}"
            env = dict(os.environ, MGIT_CHECK_DIR=tmp)
            proc = subprocess.run(cmd, shell=True, env=env, stdin=subprocess.DEVNULL)  # noqa: S602
            return proc.returncode == 0

    def _commit_with_check(
        self, *, eps: float | None, check: str | None,
        write: Callable[[float | None, bool], tuple[CommitInfo, IngestStats]],
        model: str, tip: str | None, message: str, move_head: bool,
    ) -> tuple[CommitInfo, IngestStats, str | None]:
        """Write the commit; with ``check``, gate a lossy commit before any ref points at it.

        The lossy commit is written (objects durable) but the model ref stays where it was
        while CMD runs on its export; only then does the ref move, to the lossy commit if CMD
        passed, else to the same files stored losslessly. A process killed during CMD leaves
        the model line untouched.
        """
        if check is not None and eps is None:
            raise UsageError("--check needs --lossy: it gates a lossy commit")
        if check is None:
            info, stats = write(eps, True)
            return info, stats, None
        info, stats = write(eps, False)
        if info.lossy is None:
            self._move_model_ref(model, tip, info.oid, message=message, move_head=move_head)
            return info, stats, None
        if self._run_check(check, info.oid):
            self._move_model_ref(model, tip, info.oid, message=message, move_head=move_head)
            return info, stats, "passed"
        info2, stats2 = write(None, True)
        return info2, stats2, "failed: stored losslessly"

    def commit(
        self,
        message: str,
        *,
        model: str | None = None,
        parent: str | Sequence[str] | None = None,
        relation: str | None = None,
        meta: dict[str, str] | None = None,
        eps: float | None = None,
        check: str | None = None,
        allow_empty: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> CommitResult:
        """Commit the staged changes of the working tree.

        Without ``model`` the commit is the next version of the checked-out model. With a new
        ``model`` name it starts a new model line derived from ``parent`` (default: HEAD) with
        ``relation`` (default ``finetune``), and HEAD moves to it.

        Args:
            message: the commit message.
            model: model line to commit to.
            parent: REF(s) the model was derived from (more than one: a merge).
            relation: how it was derived (``version``, ``finetune``, ...).
            meta: free metadata (task, dataset, metrics).
            eps: store lossily with absolute error at most ``eps`` (deltas against the parent).
            check: with ``eps``: a shell command run on the exported lossy model (``{}`` or the
                last argument is its folder); when it fails the commit is stored losslessly.
            allow_empty: commit even if nothing is staged.
            progress: called with byte counts as data is read.

        Raises:
            NothingToCommitError: nothing staged.
            UsageError: a staged file changed since it was added; bad options.
        """
        from mgit.worktree import Index, index_lock, snapshot

        self._need_worktree()
        eps = _check_eps(eps)
        meta = _check_meta(meta)
        _check_text(message, "the commit message")
        with index_lock(self.mgit_dir):
            index = Index.load(self.mgit_dir)
            if not index.staged and not allow_empty:
                raise NothingToCommitError()
            head = self.head()
            cur_model = self.head_model
            target = model or cur_model
            if target is None:
                raise UsageError("HEAD is detached: give --model NAME to commit to a model line")
            check_name(target, what="model name")
            tip = self.refs.read(HEADS + target)
            if tip is None and parent is None and head is not None and target != cur_model:
                parent = head
            if tip is None and model is not None and target != cur_model and relation is None:
                relation = "finetune"
            if tip is not None and tip != head and target != cur_model and parent is None:
                parent = head
            base_tree = self.read_tree(self.read_commit(head).tree) if head else Tree({})
            files: dict[str, FileEntry | Path] = dict(base_tree.files)
            for rel, snap in sorted(index.staged.items()):
                if snap is None:
                    files.pop(rel, None)
                    continue
                path = self.root / rel
                try:
                    st = path.stat()
                except FileNotFoundError:
                    raise UsageError(f"{rel} was deleted after 'mgit add'", hint="run 'mgit add' again") from None
                if not snap.matches_stat(st) and snapshot(path).xxh != snap.xxh:
                    raise UsageError(f"{rel} changed after 'mgit add'", hint=f"run 'mgit add {rel}' again")
                files[rel] = path
            links = self._parent_links(target, tip, parent, relation)

            def write(e: float | None, update: bool) -> tuple[CommitInfo, IngestStats]:
                return self._write_commit(
                    model=target, tip=tip, parents=links, files=files, message=message,
                    meta=meta, eps=e, progress=progress, move_head=True, update_ref=update,
                )

            info, stats, checked = self._commit_with_check(
                eps=eps, check=check, write=write, model=target, tip=tip, message=message,
                move_head=True,
            )
            tree = self.read_tree(info.tree)
            for rel in index.staged:
                snap = index.staged[rel]
                if snap is not None and rel in tree.files:
                    index.cache[rel] = snap
                else:
                    index.cache.pop(rel, None)
            index.staged = {}
            index.save(self.mgit_dir)
        return CommitResult(info, stats, len(tree.files), checked)

    def import_folder(
        self,
        folder: str | os.PathLike[str],
        *,
        model: str,
        message: str,
        parent: str | Sequence[str] | None = None,
        relation: str | None = None,
        meta: dict[str, str] | None = None,
        eps: float | None = None,
        check: str | None = None,
        guess_parent: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> CommitResult:
        """Commit a model folder from elsewhere as the next version of ``model``.

        The working tree and HEAD are not touched. With ``guess_parent`` and no ``parent``,
        the closest stored model version (see :meth:`guess_parent`) becomes the parent when
        at least a fifth of the tensor bytes are identical or close to it.

        Raises:
            UsageError: the folder is missing or empty.
            UnsafePathError: a symlink pointing outside the folder.
            InvalidModelFileError: a malformed safetensors file.
        """
        from mgit.worktree import scan

        eps = _check_eps(eps)
        meta = _check_meta(meta)
        _check_text(message, "the commit message")
        check_name(model, what="model name")
        src = Path(folder)
        if not src.is_dir():
            raise UsageError(f"not a folder: {folder}")
        found = scan(src, strict=True)
        if not found:
            raise UsageError(f"no files to import in {folder}")
        files: dict[str, FileEntry | Path] = {check_relpath(rel): p for rel, p in found.items()}
        tip = self.refs.read(HEADS + model)
        candidates: list[Any] = []
        if guess_parent and parent is None:
            candidates = self.guess_parent(src)
            if candidates and candidates[0].score >= _GUESS_MIN_SCORE and candidates[0].oid != tip:
                parent = candidates[0].oid
        links = self._parent_links(model, tip, parent, relation)

        def write(e: float | None, update: bool) -> tuple[CommitInfo, IngestStats]:
            return self._write_commit(
                model=model, tip=tip, parents=links, files=files, message=message,
                meta=meta, eps=e, progress=progress, update_ref=update,
            )

        info, stats, checked = self._commit_with_check(
            eps=eps, check=check, write=write, model=model, tip=tip, message=message, move_head=False
        )
        return CommitResult(info, stats, len(files), checked, candidates)

    # -- working tree -------------------------------------------------------------------------

    def _need_worktree(self) -> None:
        if self.bare:
            raise UsageError("this is a bare repository: it has no working tree")

    def _head_tree(self) -> Tree:
        head = self.head()
        return self.read_tree(self.read_commit(head).tree) if head else Tree({})

    def add(self, paths: Iterable[str | os.PathLike[str]]) -> AddResult:
        """Stage files (or every file under folders) for the next commit.

        Files identical to HEAD's are not staged; tracked files missing under a given folder
        are staged for removal.

        Raises:
            UsageError: a path that matches no file.
            UnsafePathError: a path outside the model folder or a symlink pointing outside it.
        """
        from mgit.worktree import Index, index_lock, scan, snapshot

        self._need_worktree()
        head_tree = self._head_tree()
        staged: list[str] = []
        removed: list[str] = []
        unchanged = 0
        with index_lock(self.mgit_dir):
            index = Index.load(self.mgit_dir)
            for p in paths:
                rel = self._relpath(p)
                full = self.root / rel if rel else self.root
                self._check_no_symlinked_folder(rel)
                if rel and full.is_file() and not full.is_symlink():
                    found = {rel: full}
                elif rel and full.is_symlink() and not full.is_dir():
                    found = {k: v for k, v in scan(self.root, under=_parent(rel), strict=True).items() if k == rel}
                elif full.is_dir():
                    found = scan(self.root, under=rel, strict=True)
                else:
                    found = {}
                tracked = {
                    t for t in set(head_tree.files) | set(index.staged)
                    if not rel or t == rel or t.startswith(rel + "/")
                }
                if not found and not tracked:
                    raise UsageError(f"path did not match any file: {p}")
                for frel, fpath in found.items():
                    snap = snapshot(fpath)
                    index.cache[frel] = snap
                    entry = head_tree.files.get(frel)
                    if entry is not None and entry.xxh == snap.xxh:
                        if index.staged.pop(frel, "absent") == "absent":
                            unchanged += 1
                        continue
                    index.staged[frel] = snap
                    staged.append(frel)
                for t in sorted(tracked - set(found)):
                    if t in head_tree.files:
                        index.staged[t] = None
                        removed.append(t)
                    else:
                        index.staged.pop(t, None)
            index.save(self.mgit_dir)
        return AddResult(sorted(staged), sorted(removed), unchanged)

    def _check_no_symlinked_folder(self, rel: str) -> None:
        """Refuse a path that goes through (or is) a symlinked folder: mgit does not follow them,
        and one may point outside the model folder."""
        if not rel:
            return
        cur = self.root
        for part in rel.split("/"):
            cur = cur / part
            if cur.is_symlink() and cur.is_dir():
                raise UnsafePathError(rel, f"{cur.relative_to(self.root).as_posix()} is a symlinked folder")
            if cur.is_symlink() and not cur.resolve().is_relative_to(self.root.resolve()):
                raise UnsafePathError(rel, "symlink points outside the model folder")

    def _relpath(self, p: str | os.PathLike[str]) -> str:
        full = Path(p)
        if not full.is_absolute():
            full = Path.cwd() / full
        full = Path(os.path.normpath(full))
        try:
            rel = full.relative_to(self.root).as_posix()
        except ValueError:
            raise UnsafePathError(str(p), "outside the model folder") from None
        if rel == ".":
            return ""
        if rel == ".mgit" or rel.startswith(".mgit/"):
            raise UnsafePathError(str(p), "inside .mgit")
        return check_relpath(rel)

    def status(self) -> StatusResult:
        """Staged, modified, deleted and untracked files."""
        from mgit.worktree import Index, StatusResult, index_lock, scan

        self._need_worktree()
        head_tree = self._head_tree()
        index = Index.load(self.mgit_dir)
        work = scan(self.root)
        s_new, s_mod, s_del, mod, dele = [], [], [], [], []
        for rel, snap in index.staged.items():
            if snap is None:
                s_del.append(rel)
            elif rel in head_tree.files:
                s_mod.append(rel)
            else:
                s_new.append(rel)
        expected: dict[str, str] = {r: e.xxh for r, e in head_tree.files.items()}
        for rel, snap in index.staged.items():
            if snap is None:
                expected.pop(rel, None)
            else:
                expected[rel] = snap.xxh
        cache_before = dict(index.cache)
        for rel, xxh in expected.items():
            path = work.get(rel)
            if path is None:
                dele.append(rel)
            elif index.current_xxh(rel, path) != xxh:
                mod.append(rel)
        untracked = sorted(r for r in work if r not in expected and r not in index.staged)
        if index.cache != cache_before:
            try:
                with index_lock(self.mgit_dir):
                    fresh = Index.load(self.mgit_dir)
                    fresh.cache.update({k: v for k, v in index.cache.items() if k in expected})
                    fresh.save(self.mgit_dir)
            except MgitError:
                pass  # the cache is an optimisation; another process holds the index
        head = self.head()
        return StatusResult(
            model=self.head_model, head=head, detached=self.refs.head_target() is None,
            staged_new=sorted(s_new), staged_modified=sorted(s_mod), staged_deleted=sorted(s_del),
            modified=sorted(mod), deleted=sorted(dele), untracked=untracked,
        )

    def checkout(self, ref: str, *, force: bool = False) -> CheckoutResult:
        """Make the working tree the files of REF; HEAD follows (a model name keeps HEAD on that
        model line, anything else detaches it).

        Untracked files are kept; files that would be overwritten or removed with uncommitted
        changes make it refuse, unless ``force``.

        Raises:
            DirtyWorkingTreeError: uncommitted changes (or untracked files in the way).
            RefNotFoundError: unknown REF.
        """
        from mgit.worktree import Index, Snapshot, index_lock

        self._need_worktree()
        oid = self.resolve(ref)
        try:
            target_model = ref if self.refs.read(HEADS + ref) is not None else None
        except InvalidRefNameError:
            target_model = None  # HEAD~1, an id, a tag: detach
        if ref.strip() in ("HEAD", "@"):
            target_model = self.head_model
        new_tree = self.read_tree(self.read_commit(oid).tree)
        old_tree = self._head_tree()
        with index_lock(self.mgit_dir):
            st = self.status()
            if not force:
                dirty = st.staged_new + st.staged_modified + st.staged_deleted + st.modified + st.deleted
                dirty += [u for u in st.untracked if u in new_tree.files]
                if dirty:
                    raise DirtyWorkingTreeError(sorted(set(dirty)))
            index = Index.load(self.mgit_dir)
            written, removed = [], []
            # Plan and check every path before writing anything, so that a path that cannot be
            # written (a symlink, a folder in the way) fails the checkout with nothing changed.
            plan = []
            for rel, entry in sorted(new_tree.files.items()):
                path = safe_join(self.root, rel)
                if path.is_dir():
                    raise DirtyWorkingTreeError([rel], action="checkout (a folder is in the way)")
                parent = path.parent
                while parent != self.root:
                    if parent.exists() and not parent.is_dir():
                        raise DirtyWorkingTreeError([rel], action="checkout (a file is in the way)")
                    parent = parent.parent
                if path.is_file() and index.current_xxh(rel, path) == entry.xxh:
                    continue  # already these bytes
                plan.append((rel, entry))
            with self._pool() as pool:
                for rel, entry in plan:
                    path = self.root / rel
                    write_file(self.store, entry, self.root, rel, pool=pool, workers=self.workers)
                    index.cache[rel] = Snapshot.of(path.stat(), entry.xxh)
                    written.append(rel)
            for rel in sorted(set(old_tree.files) - set(new_tree.files)):
                try:
                    path = safe_join(self.root, rel)
                except UnsafePathError:
                    continue  # never delete through a symlinked folder
                if path.is_file() or path.is_symlink():
                    path.unlink()
                    removed.append(rel)
                    _prune_empty_dirs(self.root, rel)
                index.cache.pop(rel, None)
            index.staged = {}
            index.save(self.mgit_dir)
            if target_model is not None:
                self.refs.set_head(ref=HEADS + target_model, message=f"checkout {ref}")
            else:
                self.refs.set_head(oid=oid, message=f"checkout {ref}")
        return CheckoutResult(oid, target_model, target_model is None, written, removed)

    # -- reading models -----------------------------------------------------------------------

    def export(self, ref: str, directory: str | os.PathLike[str], *, force: bool = False,
               progress: Callable[[int], None] | None = None) -> ExportResult:
        """Write REF's files into ``directory``, byte-identical to what was committed.

        Raises:
            UsageError: ``directory`` has files that would be overwritten (without ``force``).
        """
        oid = self.resolve(ref)
        tree = self.read_tree(self.read_commit(oid).tree)
        out = Path(directory).absolute()
        if out.exists() and not out.is_dir():
            raise UsageError(f"not a folder: {directory}")
        if not force:
            clash = [rel for rel in tree.files if (out / rel).exists() or (out / rel).is_symlink()]
            if clash:
                raise UsageError(
                    f"export would overwrite {len(clash)} file(s) in {directory}, e.g. {clash[0]}",
                    hint="choose an empty folder, or pass --force",
                )
        out.mkdir(parents=True, exist_ok=True)
        total = 0
        with self._pool() as pool:
            for rel, entry in sorted(tree.files.items()):
                write_file(self.store, entry, out, rel, pool=pool, workers=self.workers, progress=progress)
                total += entry.size
        return ExportResult(oid, str(out), sorted(tree.files), total)

    def tensors(self, ref: str) -> dict[str, TensorManifest]:
        """Every tensor of REF by name (manifests only: no tensor data is read)."""
        tree = self.read_tree(self.read_commit(self.resolve(ref)).tree)
        out: dict[str, TensorManifest] = {}
        for entry in tree.files.values():
            for name, m in entry.tensors:
                out[name] = m
        return out

    def tensor_ids(self, ref: str) -> dict[str, str]:
        """Tensor name -> content id (equal ids mean identical tensors)."""
        return {name: m.content_id for name, m in self.tensors(ref).items()}

    def load_tensor(self, ref: str, name: str, *, torch: bool = False) -> Any:
        """One tensor of REF, reading only that tensor's chunks.

        Args:
            ref: the model version.
            name: the tensor's name.
            torch: return a ``torch.Tensor`` instead of a numpy array.

        Raises:
            RefNotFoundError: unknown REF or tensor name.
        """
        tensors = self.tensors(ref)
        if name not in tensors:
            raise RefNotFoundError(f"{ref}:{name}", reason="no such tensor")
        return self._tensor_value(tensors[name], torch)

    def _tensor_value(self, m: TensorManifest, as_torch: bool) -> Any:
        if not as_torch:
            return tensor_array(self.store, m)
        import torch

        tdt = {
            "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
            "U16": torch.uint16, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32,
            "U32": torch.uint32, "F32": torch.float32, "I64": torch.int64, "U64": torch.uint64,
            "F64": torch.float64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
            "C64": torch.complex64, "F8_E8M0": getattr(torch, "float8_e8m0fnu", torch.uint8),
        }[m.dtype]
        buf = tensor_bytes(self.store, m)
        if not buf:
            return torch.empty(m.shape, dtype=tdt)
        return torch.frombuffer(buf, dtype=tdt).reshape(m.shape)

    def load_state_dict(self, ref: str, *, torch: bool = False) -> dict[str, Any]:
        """Every tensor of REF as numpy arrays (bf16/fp8 via ml_dtypes) or torch tensors."""
        return {name: self._tensor_value(m, torch) for name, m in self.tensors(ref).items()}

    def _diff_sources(self, a: str, b: str | None) -> tuple[Any, Any]:
        from mgit.sources import FolderTensorSource, RepoTensorSource

        left = RepoTensorSource(self, a)
        if b is None:
            self._need_worktree()
            right: Any = FolderTensorSource(self.root, chunk_size=self.chunk_size)
        else:
            right = RepoTensorSource(self, b)
        return left, right

    def diff(self, a: str, b: str | None = None, *, rank: bool = True) -> Any:
        """Which tensors changed from REF ``a`` to REF ``b`` (default: the working tree), and
        by how much. Tensors with equal ids are recognised as unchanged without reading data.

        Returns:
            A :class:`mgit.diff.ModelDiff`.
        """
        from mgit.diff import diff_models

        left, right = self._diff_sources(a, b)
        return diff_models(left, right, rank=rank)

    def structural_diff(self, a: str, b: str | None = None, *, dataflow: bool = True) -> Any:
        """The architecture diff of two versions: module tree, config.json, dataflow graph.

        Returns:
            A :class:`mgit.diff.StructuralDiff`.
        """
        from mgit.diff import structural_diff

        left, right = self._diff_sources(a, b)
        return structural_diff(left, right, dataflow=dataflow)

    # -- history and lineage ------------------------------------------------------------------

    def all_commits(self) -> set[str]:
        """Every commit reachable from a model line, a tag or HEAD."""
        starts = list(self.refs.iter_refs("refs/").values())  # model lines, tags, remote-tracking
        head = self.head()
        if head:
            starts.append(head)
        return dag.ancestors(starts, self.parents_of)

    def log(self, ref: str | None = None, *, all: bool = False, limit: int | None = None) -> list[CommitInfo]:
        """Commits reachable from REF (default HEAD; ``all``: from every ref), newest first,
        children before parents."""
        if all:
            commits = self.all_commits()
        else:
            start = self.resolve(ref or "HEAD")
            commits = dag.ancestors([start], self.parents_of)
        order = dag.topo_order(commits, self.parents_of, lambda c: self.read_commit(c).time)
        if limit is not None:
            order = order[:limit]
        return [self.commit_info(c) for c in order]

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when commit ``a`` is ``b`` or one of its ancestors."""
        return dag.is_ancestor(a, b, self.parents_of)

    def models(self) -> list[ModelInfo]:
        """Every model line with its latest version and the model it derives from."""
        out = []
        current = self.head_model
        for name, tip in self.model_heads().items():
            c = self.read_commit(tip)
            line = self._line_versions(tip, model=name)
            versions = len(line)
            src = next(iter(self.read_commit(line[-1]).parents), None)
            derived = None
            if src is not None:
                derived = f"{self.read_commit(src.oid).model}@{src.oid[:12]}"
            out.append(
                ModelInfo(
                    name=name, head=tip, versions=versions, derived_from=derived,
                    relation=src.relation if src else None,
                    logical_bytes=self.read_tree(c.tree).logical_bytes, time=c.time,
                    message=c.message, current=name == current,
                )
            )
        return out

    def lineage(self, ref: str | None = None, *, direction: str | None = None) -> Any:
        """The lineage graph as a ``networkx.DiGraph``.

        Nodes are commit ids with ``model``, ``short``, ``message``, ``author``, ``time``,
        ``meta``, ``tags``, ``heads`` (model lines whose latest version it is), ``lossy`` and
        ``logical_bytes``; edges run parent -> child with ``relation`` and ``index`` (the
        parent's position). With REF: REF's ancestors and descendants (REF included), or only
        one side with ``direction`` ``"ancestors"`` or ``"descendants"``.
        """
        import networkx as nx

        commits = self.all_commits()
        if ref is not None:
            oid = self.resolve(ref)
            commits.add(oid)
            if direction == "ancestors":
                commits = dag.ancestors([oid], self.parents_of)
            elif direction == "descendants":
                commits = {oid} | dag.descendants(oid, commits, self.parents_of)
            elif direction is None:
                commits = dag.ancestors([oid], self.parents_of) | dag.descendants(oid, commits, self.parents_of)
            else:
                raise UsageError(f"unknown direction {direction!r}")
        heads: dict[str, list[str]] = {}
        for name, oid in self.model_heads().items():
            heads.setdefault(oid, []).append(name)
        tags: dict[str, list[str]] = {}
        for name, oid in self.tags().items():
            tags.setdefault(oid, []).append(name)
        g: Any = nx.DiGraph()
        for c in commits:
            cm = self.read_commit(c)
            g.add_node(
                c, model=cm.model, short=c[:12], message=cm.message, author=cm.author, time=cm.time,
                meta=dict(cm.meta), tags=tags.get(c, []), heads=heads.get(c, []),
                lossy=cm.lossy is not None, logical_bytes=self.read_tree(cm.tree).logical_bytes,
            )
        for c in commits:
            for i, p in enumerate(self.read_commit(c).parents):
                if p.oid in commits:
                    g.add_edge(p.oid, c, relation=p.relation, index=i)
        return g

    def find(
        self,
        *,
        task: str | None = None,
        relation: str | None = None,
        meta: dict[str, str] | None = None,
        derived_from: str | None = None,
        all_versions: bool = False,
    ) -> list[CommitInfo]:
        """Model versions matching every filter given.

        Args:
            task: ``meta["task"]`` equals this.
            relation: the version was made from a parent with this relation.
            meta: every ``KEY=VALUE`` matches the version's metadata.
            derived_from: REF is a proper ancestor (transitively, through any relation).
            all_versions: search every version, not only the latest of each model line.
        """
        if relation is not None:
            _check_relation(relation)
        cands = self.all_commits() if all_versions else set(self.model_heads().values())
        anc_of: str | None = self.resolve(derived_from) if derived_from else None
        want = dict(meta or {})
        if task is not None:
            want["task"] = task
        out = []
        for c in cands:
            if want and not self._meta_matches(c, want, all_versions):
                continue
            if relation is not None and not self._has_relation(c, relation, all_versions):
                continue
            if anc_of is not None and (c == anc_of or not self.is_ancestor(anc_of, c)):
                continue
            out.append(self.commit_info(c))
        out.sort(key=lambda i: (-i.time, i.model))
        return out

    def _line_versions(self, oid: str, *, model: str | None = None) -> list[str]:
        """``oid`` and the earlier versions of its model line (``model``, default the commit's
        own), newest first: first parents on the same line, whatever their relation."""
        out: list[str] = []
        cur: str | None = oid
        while cur is not None and cur not in out:
            out.append(cur)
            cm = self.read_commit(cur)
            line = model or cm.model
            nxt = [p.oid for p in cm.parents if self.read_commit(p.oid).model == line]
            cur = nxt[0] if nxt else None
        return out

    def _meta_matches(self, oid: str, want: dict[str, str], exact: bool) -> bool:
        """Whether the version (or, for a model line, its latest version that sets each key)
        has the wanted metadata: a key set on an earlier version holds until a later version
        sets it again."""
        versions = [oid] if exact else self._line_versions(oid)
        for k, v in want.items():
            found = next((self.read_commit(c).meta[k] for c in versions if k in self.read_commit(c).meta), None)
            if found != v:
                return False
        return True

    def _has_relation(self, oid: str, relation: str, exact: bool) -> bool:
        """Whether this version (or, for a model line, any of its versions) has such a parent edge."""
        versions = [oid] if exact else self._line_versions(oid)
        return any(p.relation == relation for c in versions for p in self.read_commit(c).parents)

    def guess_parent(self, folder: str | os.PathLike[str], *, limit: int = 5) -> list[Any]:
        """Stored model versions ranked by closeness to ``folder`` (see :mod:`mgit.guess`)."""
        from mgit.guess import guess_parents

        return guess_parents(self, Path(folder), limit=limit)

    # -- objects reachable --------------------------------------------------------------------

    def commit_objects(self, oid: str) -> set[str]:
        """Every object a commit needs besides its parents: tree, chunks, delta bases."""
        c = self.read_commit(oid)
        out = {oid, c.tree}
        tree = self.read_tree(c.tree)
        chunks: set[str] = set()
        for entry in tree.files.values():
            chunks |= entry.chunk_ids()
        todo = list(chunks)
        while todo:
            ch = todo.pop()
            b = self.store.header(ch).base
            if b is not None and b not in chunks:
                chunks.add(b)
                todo.append(b)
        return out | chunks

    def objects_to_send(self, tips: Iterable[str], exclude: Iterable[str]) -> list[str]:
        """Objects reachable from ``tips`` and not from ``exclude``, in dependency order
        (delta bases before their deltas, chunks before trees, then commits parents first), so
        writing them in this order never leaves a dangling reference."""
        exclude = [e for e in exclude if e in self.store]
        have_commits = dag.ancestors(exclude, self.parents_of) if exclude else set()
        want = dag.ancestors(list(tips), lambda c: [p for p in self.parents_of(c) if p not in have_commits])
        want -= have_commits
        have: set[str] = set()
        for c in have_commits:
            have |= self.commit_objects(c)
        objs: set[str] = set()
        for c in want:
            objs |= self.commit_objects(c)
        objs -= have
        chunks, trees = [], []
        for o in objs:
            if o in want:
                continue
            h = self.store.header(o)
            if h.kind == "chunk":
                chunks.append((h.depth, o))
            elif h.kind == "tree":
                trees.append(o)
        ordered_commits = list(reversed(dag.topo_order(want, self.parents_of, lambda c: self.read_commit(c).time)))
        return [o for _, o in sorted(chunks)] + sorted(trees) + ordered_commits

    def stats(self, ref: str | None = None) -> StatsResult:
        """Logical bytes (the files' sizes) and stored bytes (what the store holds) per model.

        Each object's stored bytes count once, for the first commit (parents first) that needs
        it, so a derived model is charged only for what it added (its deltas).
        """
        if ref is not None:
            commits = dag.ancestors([self.resolve(ref)], self.parents_of)
        else:
            commits = self.all_commits()
        order = list(reversed(dag.topo_order(commits, self.parents_of, lambda c: self.read_commit(c).time)))
        seen: set[str] = set()
        models: dict[str, dict[str, int]] = {}
        per_commit = []
        for c in order:
            objs = self.commit_objects(c) - seen
            seen |= objs
            stored = sum(self.store.stored_size(o) for o in objs)
            cm = self.read_commit(c)
            logical = self.read_tree(cm.tree).logical_bytes
            m = models.setdefault(cm.model, {"logical_bytes": 0, "stored_bytes": 0, "versions": 0})
            m["logical_bytes"] += logical
            m["stored_bytes"] += stored
            m["versions"] += 1
            per_commit.append({"oid": c, "model": cm.model, "logical_bytes": logical, "stored_bytes": stored})
        total = {
            "logical_bytes": sum(m["logical_bytes"] for m in models.values()),
            "stored_bytes": sum(m["stored_bytes"] for m in models.values()),
        }
        return StatsResult(models, total, per_commit)

    # -- maintenance --------------------------------------------------------------------------

    def reachable_objects(self) -> set[str]:
        """Every object needed by a commit reachable from a ref or HEAD."""
        refs = list(self.refs.iter_refs("refs/").values())
        head = self.head()
        if head:
            refs.append(head)
        objs: set[str] = set()
        for c in dag.ancestors(refs, self.parents_of):
            objs |= self.commit_objects(c)
        return objs

    def fsck(self, *, full: bool = True) -> FsckResult:
        """Check the repository: every ref points at a commit, every object a commit needs is
        present, and (``full``) every stored object decodes to content with its id.

        Never raises for damage it finds: it reports it.
        """
        problems: list[str] = []
        checked = 0
        for name in self.refs.damaged_refs():
            problems.append(f"{name}: damaged ref (does not hold an object id)")
        for name, oid in self.refs.iter_refs("refs/").items():
            if oid not in self.store:
                problems.append(f"{name}: points at missing commit {oid}")
        try:
            needed = self.reachable_objects()
        except MgitError as exc:
            problems.append(f"walking the history failed: {exc}")
            needed = set()
        for oid in sorted(needed):
            if oid not in self.store:
                problems.append(f"missing object {oid}")
        if full:
            for oid in sorted(self.store.iter_oids()):
                checked += 1
                try:
                    self.store.get(oid)
                except MgitError as exc:
                    problems.append(str(exc))
        dangling = len(set(self.store.iter_oids()) - needed) if full else 0
        return FsckResult(objects_checked=checked, reachable=len(needed), dangling=dangling, problems=problems)

    def gc(self, *, prune_age: float = 3600.0, dry_run: bool = False) -> GcResult:
        """Delete objects no ref reaches that are older than ``prune_age`` seconds.

        The age guard protects objects a concurrent commit has written but not yet referenced.
        Runs under ``.mgit/gc.lock``.
        """
        lock = self.mgit_dir / "gc.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            from mgit.errors import LockHeldError

            raise LockHeldError(lock) from None
        os.close(fd)
        try:
            keep = self.reachable_objects()
            # delta bases are inside commit_objects, so a kept delta keeps its whole chain
            now = time.time()
            removed, freed = [], 0
            for oid in list(self.store.iter_oids()):
                if oid in keep:
                    continue
                path = self.store.path_for(oid)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if now - st.st_mtime < prune_age:
                    continue
                removed.append(oid)
                freed += st.st_size
                if not dry_run:
                    path.unlink()
            return GcResult(removed=len(removed), freed_bytes=freed, kept=len(keep), dry_run=dry_run)
        finally:
            os.unlink(lock)

    # -- branches and tags --------------------------------------------------------------------

    def create_branch(self, name: str, ref: str | None = None) -> str:
        """Start model line ``name`` at REF (default HEAD)."""
        check_name(name, what="model name")
        oid = self.resolve(ref or "HEAD")
        if self.refs.read(HEADS + name) is not None:
            raise UsageError(f"model line {name} already exists")
        self.refs.set_if_equals(HEADS + name, None, oid, message=f"branch: created from {ref or 'HEAD'}")
        return oid

    def delete_branch(self, name: str) -> str:
        """Delete a model line's ref (its commits stay while something reaches them)."""
        oid = self.refs.read(HEADS + name)
        if oid is None:
            raise RefNotFoundError(name)
        if self.head_model == name:
            raise UsageError(f"cannot delete the checked-out model line {name}")
        self.refs.delete_if_equals(HEADS + name, oid, message="branch: deleted")
        return oid

    def create_tag(self, name: str, ref: str | None = None, *, force: bool = False) -> str:
        """Tag REF (default HEAD)."""
        check_name(name, what="tag name")
        oid = self.resolve(ref or "HEAD")
        old = self.refs.read(TAGS + name)
        if old is not None and not force:
            raise UsageError(f"tag {name} already exists", hint="pass --force to move it")
        self.refs.set_if_equals(TAGS + name, old, oid, message=f"tag: {ref or 'HEAD'}")
        return oid

    def delete_tag(self, name: str) -> str:
        """Delete a tag."""
        oid = self.refs.read(TAGS + name)
        if oid is None:
            raise RefNotFoundError(name)
        self.refs.delete_if_equals(TAGS + name, oid, message="tag: deleted")
        return oid


def write_text_file(path: Path, text: str) -> None:
    """Write a view (HTML, DOT) atomically; its folder must exist."""
    if not path.parent.is_dir():
        raise UsageError(f"no such folder: {path.parent}")
    atomic_write(path, text.encode("utf-8"))


def _default_model_name(root: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", root.name).strip(".-") or "model"
    if not re.match(r"^[A-Za-z0-9_]", name):
        name = "m" + name
    return name[:100]


def _parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def _prune_empty_dirs(root: Path, rel: str) -> None:
    d = (root / rel).parent
    while d != root:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent

