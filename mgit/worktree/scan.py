"""Scanning a model folder: which files a version holds (``.mgitignore``, symlinks), and which
files it skips and why.

The one rule for what import and add accept: regular files (each opened later without blocking,
its type checked on the open descriptor: :func:`mgit._fs.open_regular`), the symlinked files
described below read as their targets. Anything else under the folder (a FIFO, a socket, a
device, an unreadable file or folder, a dangling or looping symlink, a symlinked folder without
``-L``) is an error that names it (:class:`mgit.errors.UnreadableEntryError`), unless an ignore
rule leaves it out or the caller asks to skip such entries (``skip_unreadable``: ``mgit import
--skip-unreadable`` / ``mgit add --skip-unreadable``), which then lists them. ``status`` lists
them without failing.

A symlinked folder is not followed by default: git does not follow one either (it stores the
link, which mgit cannot), following one that points inside the folder would store its files
twice under two names, and one pointing outside would import whatever it leads to. So it is an
error with a hint, and ``-L`` follows it, with loop detection (a folder that links to one of its
own ancestors is refused as a symlink loop). A Hugging Face hub cache snapshot has only
symlinked *files* (into ``blobs/``), which are followed.

A symlink is followed when it resolves inside the folder, when the folder is (inside) a Hugging
Face hub cache snapshot and the link resolves into that cache repository's ``blobs/`` (every
file of a snapshot is such a link), or when the caller asks to follow links
(``follow_symlinks``: ``mgit import -L`` / ``mgit add -L``; ``status`` follows the links of
tracked files). A followed file is stored by content, so export writes a regular file. Anything
else is skipped, and reported to a ``skipped`` collector: a symlink out of the folder, a dangling
symlink, a symlinked folder, something that is not a regular file, an unreadable file.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit._fs import check_relpath, file_kind, read_regular
from mgit.errors import UnreadableEntryError, UnreadableFileError, UnsafePathError

__all__ = [
    "DEFAULT_IGNORE",
    "DEFAULT_IGNORE_REASON",
    "IGNORE_FILE",
    "FollowSymlinks",
    "Skipped",
    "folder_bytes",
    "hub_blobs",
    "ignore_rules",
    "ignored_by",
    "scan",
]

IGNORE_FILE = ".mgitignore"

#: What a training run leaves beside the model that is training state, not the model: never
#: scanned into a version by default (``add``, ``import``, ``status``; ``commit_checkpoint``
#: and the ``Trainer`` callback leave the same files out). Optimizer, scheduler, AMP scaler and
#: RNG state, ``training_args.bin``, ``trainer_state.json``, DeepSpeed's ``global_step*``,
#: ``latest`` and ``zero_to_fp32.py``, FSDP shards, TensorBoard's ``runs/`` and Jupyter's
#: ``.ipynb_checkpoints``. A ``!pattern`` line in ``.mgitignore`` takes one back.
DEFAULT_IGNORE = (
    "optimizer.pt", "optimizer.bin", "optimizer_*", "*-optimizer.pt", "scheduler.pt", "scaler.pt",
    "rng_state*.pth", "training_args.bin", "trainer_state.json", "global_step*",
    "pytorch_model_fsdp*", "latest", "zero_to_fp32.py", "runs/", ".ipynb_checkpoints/",
)  # fmt: skip

#: The reason a file left out by :data:`DEFAULT_IGNORE` is listed with.
DEFAULT_IGNORE_REASON = "ignored by default (training state)"


@dataclass(frozen=True)
class _Rule:
    """One ignore pattern: ``negate`` (``!pattern``) takes back what an earlier rule left out;
    ``dir_only`` (``pattern/``) matches folders only; ``default``: from :data:`DEFAULT_IGNORE`."""

    pattern: str
    negate: bool
    dir_only: bool
    default: bool

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        name = rel.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(rel, self.pattern) or fnmatch.fnmatchcase(name, self.pattern)

#: Which symlinks (besides those inside the folder or into its hub cache) to follow: all
#: (``True``), none (``False``), or those whose relative path the predicate accepts.
FollowSymlinks = bool | Callable[[str], bool]


@dataclass(frozen=True)
class Skipped:
    """A path a scan left out, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"path": self.path, "reason": self.reason}


def _ignore_patterns(root: Path) -> list[str]:
    """The lines of ``root/.mgitignore`` (read without blocking: a FIFO is refused), without
    blanks and ``#`` comments.

    Raises:
        UnreadableFileError: ``.mgitignore`` is not a regular UTF-8 text file.
    """
    path = root / IGNORE_FILE
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return []
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UnreadableFileError(path, "not UTF-8 text") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _rule(line: str, *, default: bool) -> _Rule | None:
    negate = line.startswith("!")
    body = line[1:] if negate else line
    body = body.removeprefix("\\")  # "\!name", "\#name": a literal first character
    dir_only = body.endswith("/")
    pat = body.strip("/")
    while pat.startswith("./"):
        pat = pat[2:]
    return _Rule(pat, negate, dir_only, default) if pat else None


def ignore_rules(root: Path, *, defaults: bool = True) -> list[_Rule]:
    """The ignore rules of a folder: :data:`DEFAULT_IGNORE` (when ``defaults``), then the
    lines of its ``.mgitignore``, in order. The last rule that matches a path decides, as in
    git: ``!pattern`` takes back a path an earlier rule (a default one too) left out.

    Raises:
        UnreadableFileError: ``.mgitignore`` is not a regular UTF-8 text file.
    """
    rules = [_rule(p, default=True) for p in DEFAULT_IGNORE] if defaults else []
    rules += [_rule(p, default=False) for p in _ignore_patterns(root)]
    return [r for r in rules if r is not None]


def ignored_by(rel: str, is_dir: bool, rules: list[_Rule]) -> _Rule | None:
    """The rule that leaves ``rel`` out (the last one that matches it, unless that one is a
    ``!`` negation), or None when it is kept. A pattern matches the whole relative path or the
    entry's name (``*`` also crosses ``/``); a pattern ending in ``/`` only folders. Like git, a
    path inside a folder that is left out cannot be taken back (the folder is not entered)."""
    for r in reversed(rules):
        if r.matches(rel, is_dir):
            return None if r.negate else r
    return None


def _readable(path: Path) -> bool:
    return os.access(path, os.R_OK)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def hub_blobs(root: Path, real: Path | None = None) -> Path | None:
    """The ``blobs/`` folder when ``root`` is (in) a Hugging Face hub cache snapshot, else None
    (:func:`mgit.hf.cache_blobs_dir`, loaded only for a path that has a ``snapshots`` part)."""
    real = real if real is not None else Path(os.path.realpath(root))
    if "snapshots" not in Path(os.path.abspath(root)).parts and "snapshots" not in real.parts:
        return None
    from mgit.hf import cache_blobs_dir

    return cache_blobs_dir(root)


class _Walk:
    def __init__(
        self,
        root: Path,
        strict: bool,
        follow: FollowSymlinks,
        skipped: list[Skipped] | None,
        skip_unreadable: bool = False,
        defaults: bool = True,
        tracked: frozenset[str] = frozenset(),
    ) -> None:
        self.root = root
        self.root_real = Path(os.path.realpath(root))
        self.blobs = hub_blobs(root, self.root_real)
        self.rules = ignore_rules(root, defaults=defaults)
        # Ignore rules are for untracked paths: a tracked file is kept (and the folders above
        # it entered) whatever they say, so that a tracked file is never taken for deleted.
        self.tracked = tracked
        self.tracked_dirs = {t.rsplit("/", i)[0] for t in tracked for i in range(1, t.count("/") + 1)}
        self.strict = strict
        self.skip_unreadable = skip_unreadable
        self.problems: list[Skipped] = []
        self.follow = follow
        self.skipped = skipped
        self.out: dict[str, Path] = {}

    def skip(self, rel: str, reason: str) -> None:
        if self.skipped is not None:
            self.skipped.append(Skipped(rel, reason))

    def problem(self, rel: str, reason: str) -> None:
        """An entry that cannot be taken: an error when strict (import, add; raised once the
        walk is over, naming them all), unless the caller asked to skip such entries; else
        listed in ``skipped``."""
        if self.strict and not self.skip_unreadable:
            self.problems.append(Skipped(rel, reason))
        else:
            self.skip(rel, reason)

    def raise_problems(self) -> None:
        if not self.problems:
            return
        first, rest = self.problems[0], self.problems[1:]
        more = ""
        if rest:
            names = ", ".join(p.path for p in rest[:5]) + (", ..." if len(rest) > 5 else "")
            more = f" (and {len(rest)} more: {names})"
        raise UnreadableEntryError(first.path, first.reason + more)

    def _follows(self, rel: str) -> bool:
        return self.follow(rel) if callable(self.follow) else bool(self.follow)

    def link_ok(self, full: Path, rel: str, *, is_dir: bool) -> bool:
        """Whether to follow the symlink ``full`` (skipping it with a reason, or raising when
        strict, if not)."""
        target = Path(os.path.realpath(full))  # the link resolves: the caller stat'ed through it
        if self._follows(rel):
            return True
        if is_dir:
            if _inside(target, self.root_real):
                self.problem(rel, "symlinked folder (not followed; -L follows it)")
                return False
        elif _inside(target, self.root_real) or _inside(target, self.blobs):
            return True
        if self.strict:
            raise _unsafe(rel, target)
        self.skip(rel, f"symlink points outside the model folder: {target}")
        return False

    def walk(self, dirpath: Path, rel_dir: str, stack: frozenset[Path]) -> None:
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.problem(rel_dir or ".", f"unreadable folder ({e.strerror or e})")
            return
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if rel == ".mgit":
                continue
            full = dirpath / e.name
            if self.rules and rel not in self.tracked and rel not in self.tracked_dirs:
                try:
                    is_dir = e.is_dir()  # follows a link; False when it cannot be stat'ed
                except OSError:
                    is_dir = False
                rule = ignored_by(rel, is_dir, self.rules)
                if rule is not None:
                    if rule.default:
                        self.skip(rel, DEFAULT_IGNORE_REASON)
                    continue
            try:
                is_link = e.is_symlink()
                mode = os.stat(full).st_mode  # follows a link
            except OSError as exc:
                self.problem(rel, _stat_failure(full, exc))
                continue
            if stat.S_ISDIR(mode):
                if is_link and not self.link_ok(full, rel, is_dir=True):
                    continue
                real = Path(os.path.realpath(full))
                if real in stack:
                    self.problem(rel, "symlink loop")
                    continue
                self.walk(full, rel, stack | {real})
                continue
            if e.name.endswith(".mgit-tmp"):
                continue
            try:
                check_relpath(rel)
            except UnsafePathError:
                if self.strict and not self.skip_unreadable:
                    raise
                self.skip(rel, "unsafe file name")
                continue
            if is_link and not self.link_ok(full, rel, is_dir=False):
                continue
            if not stat.S_ISREG(mode):
                self.problem(rel, f"not a regular file ({file_kind(mode)})")
                continue
            if not _readable(full):
                self.problem(rel, "unreadable (permission denied)")
                continue
            self.out[rel] = full


def _stat_failure(full: Path, exc: OSError) -> str:
    """Why an entry could not be stat'ed through: a dangling or looping symlink, or unreadable."""
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(full):
        try:
            return f"dangling symlink: {os.readlink(full)} does not exist"
        except OSError:
            return "dangling symlink"
    return f"unreadable ({exc.strerror or exc})"


def _unsafe(rel: str, target: Path) -> UnsafePathError:
    err = UnsafePathError(rel, f"symlink points outside the model folder ({target})")
    err.hint = "-L/--follow-symlinks follows it"
    return err


def scan(
    root: Path,
    *,
    under: str = "",
    strict: bool = False,
    follow_symlinks: FollowSymlinks = False,
    skipped: list[Skipped] | None = None,
    skip_unreadable: bool = False,
    defaults: bool = True,
    tracked: Collection[str] = (),
) -> dict[str, Path]:
    """Files of a model folder as ``{relative posix path: path}``, without ``.mgit``.

    Symlinks are followed when they resolve inside ``root``, into the hub cache repository
    ``root`` is a snapshot of, or when ``follow_symlinks`` says so (linked folders only then).

    Args:
        root: the folder.
        under: only files under this relative folder.
        strict: raise on a symlink pointing outside ``root``, and on any entry that cannot be
            taken (see the module docstring; else it is skipped).
        follow_symlinks: follow every symlink (True), or those whose relative path this
            predicate accepts.
        skipped: when given, each path left out (other than ignored ones) is appended with the
            reason (:class:`Skipped`), in path order.
        skip_unreadable: (strict) skip the entries that cannot be taken instead of raising
            (they are appended to ``skipped``).
        defaults: leave out the training state of :data:`DEFAULT_IGNORE` (each listed in
            ``skipped`` with :data:`DEFAULT_IGNORE_REASON`) unless ``.mgitignore`` takes it
            back with ``!pattern``. ``.mgitignore``'s own rules always apply (silently).
        tracked: relative paths that no ignore rule leaves out (the tracked files).

    Raises:
        UnsafePathError: (strict) a symlink that points outside the folder.
        UnreadableEntryError: (strict, without ``skip_unreadable``) an entry that cannot be
            taken: unreadable, not a regular file, a dangling or looping symlink, a symlinked
            folder not followed.
        UnreadableFileError: ``.mgitignore`` is not a regular UTF-8 text file.
    """
    w = _Walk(root, strict, follow_symlinks, skipped, skip_unreadable, defaults, frozenset(tracked))
    start = root / under if under else root
    w.walk(start, under, frozenset({Path(os.path.realpath(start))}))
    w.raise_problems()
    return w.out


def folder_bytes(folder: Path, *, follow_symlinks: bool = False) -> int:
    """Total size of the files :func:`scan` would find in ``folder`` (0 if it is not a folder)."""
    if not folder.is_dir():
        return 0
    total = 0
    for p in scan(folder, follow_symlinks=follow_symlinks).values():
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total
