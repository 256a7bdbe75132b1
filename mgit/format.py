"""The one on-disk format version, and the one reader/writer of ``config`` files.

A repository (``.mgit/config``) and a bare store (a path or S3 remote's ``config``) share one
format: the same version number, the same JSON object, the same checks. Everything that reads
or writes a config goes through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mgit._fs import atomic_write, read_regular
from mgit.errors import NotARepositoryError, UnsupportedFormatError, format_version_error

__all__ = [
    "FORMAT_VERSION",
    "HASH",
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "new_config",
    "parse_config",
    "check_config",
    "read_config",
    "write_config",
    "encode_config",
]

#: Version of repositories and bare stores this mgit reads and writes (2: manifests inline in
#: trees, small tensors packed).
FORMAT_VERSION = 2
#: The hash behind object ids.
HASH = "blake3"
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
#: The chunk sizes a repository may use (a power of two in between).
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024


def new_config(*, bare: bool, chunk_size: int | None = None) -> dict[str, Any]:
    """The config of a new repository (``chunk_size``) or bare store (without it)."""
    cfg: dict[str, Any] = {"format_version": FORMAT_VERSION, "hash": HASH, "bare": bare}
    if chunk_size is not None:
        cfg["chunk_size"] = chunk_size
    return cfg


def encode_config(cfg: dict[str, Any]) -> bytes:
    """The bytes of a config file (format fields forced to this version)."""
    cfg = dict(cfg)
    cfg["format_version"] = FORMAT_VERSION
    cfg["hash"] = HASH
    return json.dumps(cfg, indent=2, sort_keys=True).encode()


def parse_config(data: bytes, what: str) -> dict[str, Any]:
    """Parse a config file's bytes into a JSON object (no version check).

    Raises:
        UnsupportedFormatError: not JSON, or not an object.
    """
    try:
        cfg = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UnsupportedFormatError(f"unreadable config of {what}: {type(exc).__name__}") from None
    if not isinstance(cfg, dict):
        raise UnsupportedFormatError(f"the config of {what} is not a JSON object")
    return cfg


def check_config(cfg: dict[str, Any], what: str) -> dict[str, Any]:
    """Refuse a config of another format version or hash; returns ``cfg``.

    Raises:
        UnsupportedFormatError: another version (with a hint to migrate or to upgrade mgit),
            or another hash algorithm.
    """
    if cfg.get("format_version") != FORMAT_VERSION:
        raise format_version_error(what, cfg.get("format_version"), FORMAT_VERSION)
    if cfg.get("hash", HASH) != HASH:
        raise UnsupportedFormatError(f"{what} uses hash algorithm {cfg.get('hash')!r}, which is not supported")
    return cfg


def read_config(mgit_dir: Path, *, root: Path | None = None) -> dict[str, Any]:
    """Read and check ``mgit_dir/config``.

    Raises:
        NotARepositoryError: no config file.
        UnsupportedFormatError: unreadable, or another format.
    """
    try:
        data = read_regular(mgit_dir / "config")
    except FileNotFoundError:
        raise NotARepositoryError(root or mgit_dir) from None
    return check_config(parse_config(data, "the repository"), "the repository")


def write_config(mgit_dir: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Replace ``mgit_dir/config`` atomically; returns what was written (format fields set)."""
    data = encode_config(cfg)
    atomic_write(mgit_dir / "config", data)
    return json.loads(data)
