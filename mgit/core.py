"""The repository core: config, object store, refs, and reading commits and trees.

``RepoCore`` is what every concern module (commit, worktree, history, maintenance, remote,
lifecycle) works on; ``mgit.repo.Repository`` adds one-line delegates to those modules. The
core knows nothing of working trees, ingest or views.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit import format as fmt
from mgit._fs import atomic_write
from mgit._pool import WorkerPool, default_workers
from mgit.errors import (
    CorruptObjectError,
    NotARepositoryError,
    ObjectNotFoundError,
    RepositoryExistsError,
    UnsupportedFormatError,
    UsageError,
)
from mgit.objects.model import RELATIONS, Commit, Tree
from mgit.objects.store import DiskStore
from mgit.refs.store import HEADS, TAGS, TESTS, RefStore, check_name
from mgit.revspec import resolve as _resolve

__all__ = ["RepoCore", "CommitInfo", "author_name", "commit_time", "find_repository", "check_relation"]


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
    #: The model line of each parent (what views print beside the parent ids).
    parent_models: tuple[str, ...] = ()

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


def author_name(config: dict[str, Any]) -> str:
    """``MGIT_AUTHOR``, else the config's ``user``, else ``login@host``."""
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


def commit_time() -> int:
    """Seconds since the epoch for a new commit (``MGIT_COMMIT_TIME`` overrides, for tests)."""
    env = os.environ.get("MGIT_COMMIT_TIME")
    if env and env.lstrip("-").isdigit():
        return int(env)
    return int(time.time())


def check_relation(rel: str) -> str:
    """``rel`` if it is a known relation.

    Raises:
        UsageError: an unknown relation.
    """
    if rel not in RELATIONS:
        raise UsageError(f"unknown relation {rel!r}", hint="one of: " + ", ".join(RELATIONS))
    return rel


def _default_model_name(root: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", root.name).strip(".-") or "model"
    if not re.match(r"^[A-Za-z0-9_]", name):
        name = "m" + name
    return name[:100]


def find_repository(path: str | os.PathLike[str]) -> tuple[Path, Path, bool]:
    """(root, mgit folder, bare) of the repository containing ``path`` (searching upwards), or
    of the bare store at ``path``.

    Raises:
        NotARepositoryError: none found.
    """
    start = Path(path).absolute()
    if (start / "config").is_file() and (start / "objects").is_dir() and not (start / ".mgit").exists():
        try:
            cfg = fmt.parse_config((start / "config").read_bytes(), "the store")
        except (OSError, UnsupportedFormatError):
            cfg = {}
        if cfg.get("bare"):
            return start, start, True
    for d in (start, *start.parents):
        if (d / ".mgit" / "config").is_file():
            return d, d / ".mgit", False
    raise NotARepositoryError(start)


class RepoCore:
    """Config, object store and refs of one repository, and reads of its commits and trees."""

    def __init__(self, root: Path, mgit_dir: Path, *, bare: bool = False) -> None:
        self.root = root
        self.mgit_dir = mgit_dir
        self.bare = bare
        self.config = fmt.read_config(mgit_dir, root=root)
        self.store = DiskStore(mgit_dir / "objects")
        self.refs = RefStore(mgit_dir, who=author_name(self.config))
        self.chunk_size = int(self.config.get("chunk_size", fmt.DEFAULT_CHUNK_SIZE))
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
    ) -> Any:
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
        cs = chunk_size or fmt.DEFAULT_CHUNK_SIZE
        if cs < fmt.MIN_CHUNK_SIZE or cs > fmt.MAX_CHUNK_SIZE or cs & (cs - 1):
            raise UsageError("chunk size must be a power of two between 64 KiB and 64 MiB")
        name = model or _default_model_name(root)
        check_name(name, what="model name")
        mgit_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("objects", "refs/heads", "refs/tags"):
            (mgit_dir / sub).mkdir(parents=True, exist_ok=True)
        atomic_write(mgit_dir / "HEAD", f"ref: {HEADS}{name}\n".encode())
        fmt.write_config(mgit_dir, fmt.new_config(bare=bare, chunk_size=cs))
        return cls(root, mgit_dir, bare=bare)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> Any:
        """Open the repository containing ``path`` (searching upwards), or a bare store.

        Raises:
            NotARepositoryError: none found.
            UnsupportedFormatError: an unknown format version.
        """
        root, mgit_dir, bare = find_repository(path)
        return cls(root, mgit_dir, bare=bare)

    def write_config(self, cfg: dict[str, Any]) -> None:
        """Replace the config (format fields are kept)."""
        self.config = fmt.write_config(self.mgit_dir, cfg)

    def pool(self) -> WorkerPool:
        """A worker pool of this repository's size (use as a context manager)."""
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

    def commit_tree(self, oid: str) -> Tree:
        """The tree of a commit."""
        return self.read_tree(self.read_commit(oid).tree)

    def commit_info(self, oid: str) -> CommitInfo:
        """A commit as a result value."""
        c = self.read_commit(oid)
        return CommitInfo(
            oid=oid, model=c.model, parents=[(p.oid, p.relation) for p in c.parents],
            author=c.author, time=c.time, message=c.message, meta=dict(c.meta),
            lossy=c.lossy, tree=c.tree, recipe=c.recipe,
            parent_models=tuple(self.model_of(p.oid) for p in c.parents),
        )

    def model_of(self, oid: str) -> str:
        """The model line of a commit, or ``"?"`` when the commit cannot be read (a view of a
        damaged repository still shows what it can; ``fsck`` names the damage)."""
        try:
            return self.read_commit(oid).model
        except (ObjectNotFoundError, CorruptObjectError):
            return "?"

    def parents_of(self, oid: str) -> list[str]:
        """Parent commit ids."""
        return [p.oid for p in self.read_commit(oid).parents]

    def commit_time_of(self, oid: str) -> int:
        """A commit's time (the tie-break of topological orders)."""
        return self.read_commit(oid).time

    # -- refs ---------------------------------------------------------------------------------

    @property
    def head_model(self) -> str | None:
        """The model line HEAD is on, or None when detached."""
        t = self.refs.head_target()
        return t[len(HEADS) :] if t and t.startswith(HEADS) else None

    def head(self) -> str | None:
        """The commit HEAD points at, or None before the first commit."""
        return self.refs.read("HEAD")

    def head_tree(self) -> Tree:
        """HEAD's tree (empty before the first commit)."""
        head = self.head()
        return self.commit_tree(head) if head else Tree({})

    def resolve(self, ref: str) -> str:
        """A REF to a commit id (see :mod:`mgit.revspec`).

        Raises:
            RefNotFoundError: nothing by that name, or an ancestor that does not exist.
            AmbiguousRefError: a prefix matching several commits.
        """
        return _resolve(ref, refs=self.refs, store=self.store, parents_of=self.parents_of)

    def model_heads(self) -> dict[str, str]:
        """Every model line and its latest commit."""
        return {k[len(HEADS) :]: v for k, v in self.refs.iter_refs(HEADS).items()}

    def tags(self) -> dict[str, str]:
        """Every tag and its commit."""
        return {k[len(TAGS) :]: v for k, v in self.refs.iter_refs(TAGS).items()}

    def ref_tips(self, *, history: bool = False) -> list[str]:
        """The commits every ref (model lines, tags, remote-tracking, the test notes) and HEAD
        point at; with ``history``, only those of model versions: ``refs/tests`` (notes
        commits of test specs and results, which gc, fsck and push follow) is left out."""
        tips = [oid for ref, oid in self.refs.iter_refs("refs/").items() if not (history and ref == TESTS)]
        head = self.head()
        if head:
            tips.append(head)
        return tips

    def need_worktree(self) -> None:
        """Refuse in a bare repository.

        Raises:
            UsageError: this is a bare repository.
        """
        if self.bare:
            raise UsageError("this is a bare repository: it has no working tree")
