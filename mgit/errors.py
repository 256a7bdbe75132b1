"""Every error mgit raises, in one place.

The library raises these and never prints; ``mgit.cli`` maps them to a one-line message, a
hint and an exit code (see ``EXIT_CODES``). Errors carry fields, not just text.
"""

from __future__ import annotations

__all__ = [
    "MgitError",
    "NotARepositoryError",
    "RepositoryExistsError",
    "UnsupportedFormatError",
    "ObjectNotFoundError",
    "CorruptObjectError",
    "CorruptRefError",
    "CodecError",
    "RefNotFoundError",
    "AmbiguousRefError",
    "InvalidRefNameError",
    "RefConflictError",
    "LockHeldError",
    "NothingToCommitError",
    "DirtyWorkingTreeError",
    "InvalidModelFileError",
    "UnsafePathError",
    "UsageError",
    "RemoteError",
    "NonFastForwardError",
    "EXIT_CODES",
    "FsckFailedError",
    "AmbiguousTensorError",
    "NoTensorsError",
    "BisectError",
    "NotBisectableError",
]


class MgitError(Exception):
    """Root of every mgit error. ``hint`` is an optional second line for the user."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


class NotARepositoryError(MgitError):
    """No ``.mgit`` directory was found at or above the path."""

    hint = "run 'mgit init' to create a repository, or pass -C PATH"

    def __init__(self, path: object) -> None:
        super().__init__(f"not an mgit repository (or any parent): {path}")
        self.path = path


class RepositoryExistsError(MgitError):
    """``init`` on a folder that already has a repository."""

    def __init__(self, path: object) -> None:
        super().__init__(f"repository already exists: {path}")
        self.path = path


class UnsupportedFormatError(MgitError):
    """The repository (or a stored object) uses a format version this mgit does not know."""

    hint = "upgrade mgit to read this repository"


def format_version_error(what: str, found: object, supported: int) -> UnsupportedFormatError:
    """The error for a repository or remote whose format version this mgit does not read,
    with a hint that depends on whether it is older or newer than this mgit's."""
    older = isinstance(found, int) and not isinstance(found, bool) and found < supported
    hint = (
        "it was written by an older mgit: export its models with that version, then import "
        "them here" if older else "upgrade mgit to read it"
    )
    return UnsupportedFormatError(
        f"{what} has format version {found!r}; this mgit reads version {supported}", hint=hint
    )


class ObjectNotFoundError(MgitError, KeyError):
    """An object id that the store does not hold."""

    def __init__(self, oid: str, *, context: str | None = None) -> None:
        where = f" ({context})" if context else ""
        super().__init__(f"object not found: {oid}{where}", hint="run 'mgit fsck' to check the store")
        self.oid = oid

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class CorruptObjectError(MgitError):
    """An object whose bytes do not hash to its id, or that cannot be parsed."""

    hint = "the object store is damaged; run 'mgit fsck' to list what is affected"

    def __init__(self, oid: str, reason: str, *, actual: str | None = None) -> None:
        super().__init__(f"corrupt object {oid}: {reason}")
        self.oid = oid
        self.reason = reason
        self.actual = actual


class CorruptRefError(MgitError):
    """A ref file that exists but does not hold an object id."""

    hint = "look at the file; fix it by hand or restore it from .mgit/logs (the reflog)"

    def __init__(self, ref: str) -> None:
        super().__init__(f"damaged ref {ref}: it does not hold an object id")
        if ref == "HEAD":
            self.hint = ("HEAD holds 'ref: refs/heads/<model>' or a commit id: write one into "
                         ".mgit/HEAD ('mgit models' lists the model lines)")
        self.ref = ref


class FsckFailedError(MgitError):
    """``fsck`` found damage (the problems themselves are in its result)."""

    hint = "the problems are listed above; fetch missing objects from a remote, or restore from a copy"

    def __init__(self, problems: int) -> None:
        super().__init__(f"fsck found {problems} problem(s)")
        self.problems = problems


class CodecError(MgitError):
    """A codec was asked for something it cannot do (unknown codec id, bad payload)."""


class RefNotFoundError(MgitError):
    """A REF that names no model, tag or commit."""

    hint = "see 'mgit models', 'mgit tag' and 'mgit log --all' for what exists"

    def __init__(self, ref: str, *, reason: str | None = None) -> None:
        super().__init__(f"unknown ref: {ref}" + (f" ({reason})" if reason else ""))
        self.ref = ref


class AmbiguousRefError(MgitError):
    """A commit-id prefix that matches more than one commit."""

    hint = "give more characters of the id"

    def __init__(self, ref: str, candidates: list[str]) -> None:
        shown = ", ".join(c[:12] for c in candidates[:5])
        super().__init__(f"ambiguous ref: {ref} matches {shown}")
        self.ref = ref
        self.candidates = candidates


class InvalidRefNameError(MgitError, ValueError):
    """A model, tag or remote name that is not allowed."""

    hint = "names use letters, digits, '.', '_', '-' and '/', and may not contain '..'"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid name {name!r}: {reason}")
        self.name = name


class RefConflictError(MgitError):
    """A compare-and-swap ref update found another value than the one expected."""

    hint = "someone else updated it first; look at the new state and try again"

    def __init__(self, ref: str, expected: str | None, actual: str | None) -> None:
        super().__init__(
            f"ref {ref} changed concurrently: expected {expected or '(none)'}, found {actual or '(none)'}"
        )
        self.ref = ref
        self.expected = expected
        self.actual = actual


class LockHeldError(MgitError):
    """A ``.lock`` file is held by another process (or left by a killed one)."""

    def __init__(self, path: object, *, holder: str | None = None) -> None:
        who = f" (by {holder})" if holder else ""
        super().__init__(
            f"lock is held: {path}{who}",
            hint="another mgit is running; if none is, remove the lock file",
        )
        self.path = path
        self.holder = holder


class NothingToCommitError(MgitError):
    """``commit`` with no staged change."""

    hint = "use 'mgit add PATH' to stage changes"

    def __init__(self, message: str = "nothing to commit") -> None:
        super().__init__(message)


class DirtyWorkingTreeError(MgitError):
    """An operation would overwrite uncommitted changes."""

    hint = "commit the changes, or pass --force to discard them"

    def __init__(self, paths: list[str], *, action: str = "checkout") -> None:
        shown = ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
        super().__init__(f"{action} would overwrite uncommitted changes: {shown}")
        self.paths = paths


class InvalidModelFileError(MgitError):
    """A model file (safetensors, index) that is malformed or unsafe to read."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"invalid model file {path}: {reason}")
        self.path = path
        self.reason = reason


class UnsafePathError(MgitError):
    """A path that escapes the model folder: ``..``, absolute, or a symlink pointing outside."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"unsafe path {path}: {reason}")
        self.path = path


class UsageError(MgitError):
    """A request that makes no sense as given (bad option value, bad combination)."""


class RemoteError(MgitError):
    """A remote that cannot be reached, read or written."""


class NonFastForwardError(MgitError):
    """A push or pull that is not a fast-forward."""

    def __init__(self, ref: str, message: str, *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.ref = ref


class AmbiguousTensorError(MgitError):
    """A bare tensor name that several files of a version hold (a diffusers folder's ``unet/``
    and ``vae/``, a model beside its ``checkpoint-30/``), asked for without saying which file."""

    def __init__(self, ref: str, name: str, files: list[str]) -> None:
        shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
        super().__init__(
            f"tensor {name!r} of {ref} is in {len(files)} files: {shown}",
            hint=(f"say which: file={files[0]!r} (a file, or a component folder such as "
                  f"{files[0].split('/')[0]!r}), or the key '{files[0]}:{name}'"),
        )
        self.ref = ref
        self.name = name
        self.files = files


class NoTensorsError(MgitError):
    """A version (or the part of it that was asked for) that has no tensors to load."""

    def __init__(self, ref: str, files: list[str], *, selector: str | None = None,
                 tensor_files: list[str] | None = None) -> None:
        def listing(paths: list[str]) -> str:
            return ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")

        if selector is not None and tensor_files:
            msg = (f"{ref} has no tensor file at or under {selector!r}; "
                   f"its tensor files: {listing(tensor_files)}")
            hint = "pass file= one of those paths, or the folder holding them (e.g. 'unet')"
        else:
            what = f" at or under {selector!r}" if selector is not None else ""
            msg = (f"{ref} has no tensors to load{what}: its files are "
                   f"{listing(files) if files else '(none)'}")
            hint = ("tensors are read from the files mgit stores as tensors (safetensors); "
                    "use 'mgit export' to get the version's files")
        super().__init__(msg, hint=hint)
        self.ref = ref
        self.files = files
        self.selector = selector


class BisectError(MgitError):
    """A bisect that cannot run as asked: GOOD not an ancestor of BAD, GOOD failing or BAD
    passing, no bisect in progress, a version outside the bisected range."""


class NotBisectableError(BisectError):
    """The history is not monotone: a version passes although one of its ancestors fails,
    so no single version introduced the failure."""

    hint = "the failure comes and goes along the lineage; test the versions named, or bisect a narrower range"

    def __init__(self, message: str, *, failing: str, passing: str) -> None:
        super().__init__(message)
        self.failing = failing
        self.passing = passing


# Exit codes: 1 generic, 2 usage, 10 not a repository, 11 lock held, 12 corrupt object,
# 130 interrupted. Anything not listed maps to 1.
EXIT_CODES: dict[type[MgitError], int] = {
    UsageError: 2,
    InvalidRefNameError: 2,
    AmbiguousTensorError: 2,
    NoTensorsError: 2,
    NotARepositoryError: 10,
    LockHeldError: 11,
    CorruptObjectError: 12,
    CorruptRefError: 12,
    FsckFailedError: 12,
    ObjectNotFoundError: 12,
}


# -- reading untrusted inputs (issue #16): files that are not regular, the index, warnings ------

__all__ += [
    "AmbiguousRefWarning",
    "CorruptIndexError",
    "MgitWarning",
    "UnreadableEntryError",
    "UnreadableFileError",
]


class UnreadableFileError(MgitError):
    """A file mgit must read that is not a regular file (a FIFO, a socket, a device, a folder)
    or that cannot be opened. It is refused without blocking (see :func:`mgit._fs.open_regular`)."""

    def __init__(self, path: object, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"cannot read {path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class UnreadableEntryError(UnreadableFileError, UsageError):
    """An entry of a folder being imported or added that cannot be taken: unreadable, not a
    regular file, a dangling or looping symlink, a symlinked folder (without ``-L``)."""

    hint = "--skip-unreadable leaves such entries out (and lists them); or name them in .mgitignore"

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(path, reason)


class CorruptIndexError(MgitError):
    """``.mgit/index`` is not an index (valid JSON of the wrong shape, or not a regular file)."""

    hint = ("delete it: 'mgit status' rebuilds its stat cache; what was staged is lost, "
            "so run 'mgit add' again")

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"damaged index {path}: {reason}")
        self.path = path
        self.reason = reason


class MgitWarning(UserWarning):
    """Something the user should know that does not stop the command. The library issues these
    with :func:`warnings.warn`; the CLI prints each as one ``mgit: warning: ...`` line on stderr."""


class AmbiguousRefWarning(MgitWarning):
    """A REF that names a model (or tag) and is also a prefix of another commit's id: the name
    wins, as in git."""


# -- storage and remote reliability (issue #16): caps on received objects, stale locks, warnings --

__all__ += [
    "ObjectTooLargeError",
    "StaleLockWarning",
    "ReflogWarning",
    "RemoteRetryWarning",
]


class ObjectTooLargeError(CorruptObjectError):
    """An object (received from a remote, or found in the store) larger than anything this
    format writes: refused before it is decompressed or read whole."""

    def __init__(self, oid: str, size: int, limit: int, *, what: str = "content") -> None:
        super().__init__(oid, f"declares {size} bytes of {what}, more than the {limit} this format allows")
        self.size = size
        self.limit = limit


class StaleLockWarning(MgitWarning):
    """A lock left by a process that no longer runs (on this host) was removed."""


class ReflogWarning(MgitWarning):
    """The reflog entry of a ref update could not be written; the ref itself did move."""


class RemoteRetryWarning(MgitWarning):
    """A request to a remote failed or timed out and is being tried again."""


# -- integrations (issue #17): files of a version, LoRA merges ----------------------------------

__all__ += ["PathNotFoundError", "AdapterMergeError"]


class PathNotFoundError(MgitError, KeyError):
    """A file path that a version does not hold (``read_file``, ``model_config``)."""

    hint = "see 'mgit show REF' for the files of a version"

    def __init__(self, ref: str, path: str, files: list[str]) -> None:
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        super().__init__(f"{ref} has no file {path!r}; its files: {shown or '(none)'}")
        self.ref = ref
        self.path = path
        self.files = files

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class AdapterMergeError(MgitError):
    """A LoRA adapter version that cannot be merged into its base: not a LoRA adapter, no base
    found, DoRA or bias factors, a module with no base weight, shapes that do not fit."""

    def __init__(self, ref: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"cannot merge adapter {ref}: {reason}", hint=hint)
        self.ref = ref
        self.reason = reason
