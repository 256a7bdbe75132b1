"""Files of a stored version without an export: one file's bytes, its ``config.json``, and a
cached, read-only folder of the version that any library can open (``materialize``).

**The cache.** ``materialize(ref)`` returns ``.mgit/cache/models/<key>/``: the version's files
(those ``include``/``exclude`` select), read-only, ready for ``AutoModel.from_pretrained``. Its
``key`` is a BLAKE3 id of the selected paths and the content key of each file, so the same files
give the same folder whatever REF, commit or filter named them, and a second call returns the
folder at once (nothing is read, written or touched). Each file is rebuilt once into
``.mgit/cache/files/<k[:2]>/<k>`` (read-only, verified against its recorded XXH3-128 like an
export) and hard-linked into every folder that holds it: a file two versions share is on disk
once. ``k``, the file's content key, is a BLAKE3 id of its kind, size, XXH3-128 and the ids the
tree records for its bytes (header chunk and tensor content ids, blob chunks): equal keys mean
equal bytes, cryptographically.

Concurrent callers are safe: a folder is built under a process-unique ``.build-*`` name beside
its final place and renamed into place (a directory rename is atomic); the loser of a race
drops its build and returns the winner's folder. A file enters the file cache by ``link`` from
a temp name, which never replaces a file already there. ``models/<key>.json`` records the
commit and tree a folder was built from, for :func:`clean_cache` (which ``gc`` runs) and
:func:`commit_of_folder`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from mgit._fs import atomic_write, safe_join
from mgit._globs import norm_path as _norm
from mgit._globs import path_matches, select
from mgit._globs import patterns as _patterns
from mgit.core import RepoCore
from mgit.errors import CorruptObjectError, InvalidModelFileError, PathNotFoundError, UsageError
from mgit.materialize import file_pieces, write_file
from mgit.objects.ids import hash_object
from mgit.objects.model import FileEntry, canonical_json

__all__ = [
    "CACHE_DIR",
    "CacheCleanResult",
    "FileInfo",
    "clean_cache",
    "commit_of_folder",
    "file_info",
    "file_key",
    "materialize",
    "path_matches",
    "read_config",
    "read_file",
    "select_files",
]

#: The cache folder, inside ``.mgit``.
CACHE_DIR = "cache"

#: What a cache entry's age must reach before :func:`clean_cache` may drop it by default.
DEFAULT_MIN_AGE = 3600.0


def _entry(core: RepoCore, ref: str, path: str) -> tuple[FileEntry, str]:
    """The tree entry of ``path`` in REF's version, and REF's commit id.

    Raises:
        PathNotFoundError: the version has no such file.
    """
    oid = core.resolve(ref)
    tree = core.commit_tree(oid)
    rel = _norm(path)
    entry = tree.files.get(rel)
    if entry is None:
        raise PathNotFoundError(ref, path, sorted(tree.files))
    return entry, oid


@dataclass(frozen=True)
class FileInfo:
    """One file of a stored version, as its tree records it (``mgit show REF:PATH --json``)."""

    ref: str
    commit: str
    path: str
    kind: str  # "safetensors", "torchzip" or "blob"
    size: int
    xxh3_128: str
    tensors: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "ref": self.ref, "commit": self.commit, "path": self.path, "kind": self.kind,
            "size": self.size, "xxh3_128": self.xxh3_128, "tensors": self.tensors,
        }


def file_info(core: RepoCore, ref: str, path: str) -> FileInfo:
    """What REF's tree records about ``path`` (no file data is read).

    Raises:
        PathNotFoundError: REF has no file ``path``.
    """
    entry, oid = _entry(core, ref, path)
    return FileInfo(ref, oid, _norm(path), entry.kind, entry.size, entry.xxh, len(entry.tensors))


def read_file(core: RepoCore, ref: str, path: str) -> bytes:
    """The bytes of one file of REF, byte-identical to what was committed (checked against its
    recorded XXH3-128), read from the store into memory: no file is written.

    Raises:
        PathNotFoundError: REF has no file ``path``.
        CorruptObjectError: an object fails verification, or the rebuilt bytes do not match.
    """
    entry, _ = _entry(core, ref, path)
    out = bytearray()
    decoded: dict[str, bytes] = {}  # a pack serves several tensors: decode it once
    for oid, start, end, literal in file_pieces(core.store, entry):
        if literal is not None:
            out += literal
            continue
        assert oid is not None
        data = decoded.get(oid)
        if data is None:
            data = core.store.get(oid, kind="chunk")
            if entry.kind != "blob":
                decoded[oid] = data
        if end < 0:
            out += data
        elif end > len(data):
            raise CorruptObjectError(oid, "a piece of the file lies past the end of its chunk")
        else:
            out += memoryview(data)[start:end]
    if len(out) != entry.size or xxhash.xxh3_128_hexdigest(out) != entry.xxh:
        raise CorruptObjectError(
            entry.header or (entry.chunks[0] if entry.chunks else "?"),
            f"rebuilt {_norm(path)} does not match its recorded checksum",
        )
    return bytes(out)


def read_config(core: RepoCore, ref: str, path: str = "config.json") -> dict[str, Any]:
    """REF's ``config.json`` (or another JSON file), parsed.

    Raises:
        PathNotFoundError: REF has no such file.
        InvalidModelFileError: it is not UTF-8 JSON holding an object.
    """
    data = read_file(core, ref, path)
    where = f"{_norm(path)} of {ref}"
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidModelFileError(where, "not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidModelFileError(where, f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidModelFileError(where, f"a JSON {type(value).__name__}, not an object")
    return value


# -- selecting files ----------------------------------------------------------------------------


def select_files(
    files: dict[str, FileEntry],
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> dict[str, FileEntry]:
    """The files that match a pattern of ``include`` (all when None) and none of ``exclude``.

    Patterns are globs (``fnmatch``, case-sensitive) matched against the whole path, the file
    name, and each folder above it: ``"*.json"``, ``"tokenizer*"``, ``"checkpoint-*"``,
    ``"unet/*"`` (the one matcher, :mod:`mgit._globs`, that ``export`` uses too).

    Raises:
        UsageError: an empty pattern.
    """
    return {rel: files[rel] for rel in select(files, include, exclude)}


def file_key(entry: FileEntry) -> str:
    """A content key of a stored file: equal keys mean equal bytes (see the module docstring)."""
    desc = {
        "kind": entry.kind,
        "size": entry.size,
        "xxh": entry.xxh,
        "header": entry.header,
        "tensors": [[name, m.content_id] for name, m in entry.tensors],
        "chunks": list(entry.chunks) if entry.kind != "safetensors" else [],
        "layout": list(entry.layout),
        "views": [v.to_json() for v in entry.views],
    }
    return hash_object("cachefile", canonical_json(desc))


# -- the cache ------------------------------------------------------------------------------------


def _cache(core: RepoCore) -> Path:
    return core.mgit_dir / CACHE_DIR


def _unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}.{os.urandom(6).hex()}"


def materialize(
    core: RepoCore,
    ref: str,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> Path:
    """A read-only folder holding REF's files (those ``include``/``exclude`` select, see
    :func:`select_files`), built once and shared (see the module docstring).

    Do not write into it: its files are hard links into the cache (mode 0444, folders 0555).

    Raises:
        UsageError: no file of REF is selected; a bad pattern.
        CorruptObjectError: an object fails verification while a file is rebuilt.
    """
    oid = core.resolve(ref)
    commit = core.read_commit(oid)
    tree = core.read_tree(commit.tree)
    files = select_files(tree.files, include, exclude)
    if not files:
        raise UsageError(
            f"no file of {ref} is selected", hint=f"its files: {', '.join(sorted(tree.files)[:10])}"
        )
    keys = {rel: file_key(e) for rel, e in files.items()}
    key = hash_object("cachedir", canonical_json(sorted(keys.items())))
    models = _cache(core) / "models"
    final = models / key
    if final.is_dir():
        return final
    models.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "commit": oid,
        "tree": commit.tree,
        "model": commit.model,
        "include": _patterns(include),
        "exclude": _patterns(exclude),
    }
    atomic_write(
        models / f"{key}.json", json.dumps(sidecar, sort_keys=True).encode(), sync_dir=False
    )
    build = models / _unique(".build-")
    build.mkdir()
    try:
        with core.pool() as pool:
            for rel, entry in files.items():
                dst = safe_join(build, rel)
                dst.parent.mkdir(parents=True, exist_ok=True)
                _place(core, pool, entry, keys[rel], dst)
        _seal(build)
        try:
            os.rename(build, final)  # same parent: the rename needs no write permission on build
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise
            _remove_tree(build)  # another caller finished first: theirs is the same files
    except BaseException:
        if build.exists():
            _remove_tree(build)
        raise
    return final


def _place(core: RepoCore, pool: Any, entry: FileEntry, key: str, dst: Path) -> None:
    """Hard-link the cached copy of a file to ``dst``, rebuilding it into the file cache first
    when it is not there (or was removed meanwhile by :func:`clean_cache`)."""
    for _ in range(3):
        src = _cached_file(core, pool, entry, key)
        try:
            os.link(src, dst)
            return
        except FileNotFoundError:
            continue  # cleaned between the check and the link: build it again
        except OSError as exc:
            if exc.errno not in (
                errno.EMLINK,
                errno.EPERM,
                errno.EXDEV,
                errno.ENOTSUP,
                errno.EACCES,
            ):
                raise
            shutil.copyfile(src, dst)  # a filesystem without (more) hard links: a copy
            os.chmod(dst, 0o444)
            return
    raise OSError(errno.ENOENT, f"cache file removed repeatedly while linking: {dst}")


def _cached_file(core: RepoCore, pool: Any, entry: FileEntry, key: str) -> Path:
    """The file cache's copy of ``entry`` (built and verified when missing)."""
    folder = _cache(core) / "files" / key[:2]
    path = folder / key
    try:
        if path.stat().st_size == entry.size:
            return path
        path.unlink()  # a damaged copy (the wrong size): rebuild it
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    part = _unique(f".{key[:16]}.") + ".part"
    tmp = folder / part
    try:
        write_file(core.store, entry, folder, part, pool=pool, workers=core.workers)
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, path)  # never replaces a copy another caller put there first
        except FileExistsError:
            pass
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return path


def _seal(root: Path) -> None:
    """Folders under ``root`` (and ``root``) read-only, deepest first."""
    dirs = [Path(d) for d, _, _ in os.walk(root)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        os.chmod(d, 0o555)


def _remove_tree(root: Path) -> None:
    """Remove a (sealed) folder: make its folders writable first."""
    for d, _, _ in os.walk(root):
        try:
            os.chmod(d, 0o755)
        except OSError:
            pass
    shutil.rmtree(root, ignore_errors=True)


def commit_of_folder(core: RepoCore, folder: str | os.PathLike[str]) -> str | None:
    """The commit a folder returned by :func:`materialize` was built from (the latest such
    call), or None when ``folder`` is not one of this repository's cached folders."""
    try:
        p = Path(folder).resolve()
        models = (_cache(core) / "models").resolve()
    except OSError:
        return None
    if p.parent != models or not p.is_dir():
        return None
    try:
        v = json.loads((models / f"{p.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    oid = v.get("commit") if isinstance(v, dict) else None
    return oid if isinstance(oid, str) else None


@dataclass(frozen=True)
class CacheCleanResult:
    """What :func:`clean_cache` removed (or would remove, with ``dry_run``)."""

    folders_removed: int
    files_removed: int
    freed_bytes: int
    folders_kept: int
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "folders_removed": self.folders_removed,
            "files_removed": self.files_removed,
            "freed_bytes": self.freed_bytes,
            "folders_kept": self.folders_kept,
            "dry_run": self.dry_run,
        }


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return float("inf")


def _writer_alive(name: str) -> bool:
    """Whether the process that named a build folder or part file (``<prefix><pid>.<hex>``) runs."""
    try:
        pid = int(
            name.split(".")[2] if name.endswith(".part") else name.split("-", 1)[1].split(".")[0]
        )
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def clean_cache(
    core: RepoCore,
    *,
    keep: Collection[str] | None = None,
    min_age: float = DEFAULT_MIN_AGE,
    dry_run: bool = False,
) -> CacheCleanResult:
    """Drop cached folders of versions no longer kept, and cached files no folder uses.

    A folder stays when the tree it was built from is in ``keep`` (object ids: ``gc`` passes
    the reachable objects, which hold every reachable commit's tree; None: the trees of every
    commit a ref reaches) or when it is younger than ``min_age`` seconds (a caller may be
    loading it). Builds left by killed processes go; a file of ``files/`` goes once no folder
    links to it (and it is older than ``min_age``). Nothing under ``.mgit/cache`` is ever needed
    by the store: it is all rebuilt on demand.
    """
    root = _cache(core)
    now = time.time()
    if keep is None:
        from mgit.reach import all_commits

        keep = {core.read_commit(c).tree for c in all_commits(core)}
    removed = kept = files_removed = freed = 0
    models = root / "models"
    for p in sorted(models.iterdir()) if models.is_dir() else []:
        name = p.name
        if name.startswith(".build-"):
            stale = not _writer_alive(name) or _age(p, now) >= max(min_age, DEFAULT_MIN_AGE)
            if stale and not dry_run:
                _remove_tree(p)
            continue
        if not p.is_dir() or p.is_symlink():
            # A record whose folder failed to build or was removed, or a killed writer's temp.
            orphan = not name.endswith(".json") or not (models / name[: -len(".json")]).exists()
            if orphan and _age(p, now) >= min_age and not dry_run:
                p.unlink(missing_ok=True)
            continue
        try:
            tree = json.loads((models / f"{name}.json").read_text(encoding="utf-8")).get("tree")
        except (OSError, ValueError, AttributeError):
            tree = None
        if (tree in keep) or _age(p, now) < min_age:
            kept += 1
            continue
        removed += 1
        if not dry_run:
            _remove_tree(p)
            (models / f"{name}.json").unlink(missing_ok=True)
    files = root / "files"
    for d in sorted(files.iterdir()) if files.is_dir() else []:
        for f in sorted(d.iterdir()) if d.is_dir() else []:
            try:
                st = f.lstat()
            except FileNotFoundError:
                continue
            if f.name.endswith(".part"):
                gone = not _writer_alive(f.name) or now - st.st_mtime >= max(
                    min_age, DEFAULT_MIN_AGE
                )
            else:
                gone = st.st_nlink <= 1 and now - st.st_mtime >= min_age  # no folder links to it
            if gone:
                files_removed += 1
                freed += st.st_size
                if not dry_run:
                    f.unlink(missing_ok=True)
    return CacheCleanResult(removed, files_removed, freed, kept, dry_run)
