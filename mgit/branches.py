"""Model lines (branches) and tags: create, move, delete."""

from __future__ import annotations

from mgit.core import RepoCore
from mgit.errors import RefNotFoundError, UsageError
from mgit.refs.store import HEADS, TAGS, check_name
from mgit.revspec import warn_if_shadows

__all__ = ["create_branch", "delete_branch", "create_tag", "delete_tag"]


def create_branch(core: RepoCore, name: str, ref: str | None = None) -> str:
    """Start model line ``name`` at REF (default HEAD); returns the commit id.

    Raises:
        UsageError: the line exists.
    """
    check_name(name, what="model name")
    oid = core.resolve(ref or "HEAD")
    if core.refs.read(HEADS + name) is not None:
        raise UsageError(f"model line {name} already exists")
    warn_if_shadows(name, core.store, oid=oid, what="model")
    core.refs.set_if_equals(HEADS + name, None, oid, message=f"branch: created from {ref or 'HEAD'}")
    return oid


def delete_branch(core: RepoCore, name: str) -> str:
    """Delete a model line's ref (its commits stay while something reaches them).

    Raises:
        RefNotFoundError: no such line.
        UsageError: it is checked out.
    """
    oid = core.refs.read(HEADS + name)
    if oid is None:
        raise RefNotFoundError(name)
    if core.head_model == name:
        raise UsageError(f"cannot delete the checked-out model line {name}")
    core.refs.delete_if_equals(HEADS + name, oid, message="branch: deleted")
    return oid


def create_tag(core: RepoCore, name: str, ref: str | None = None, *, force: bool = False) -> str:
    """Tag REF (default HEAD); with ``force`` an existing tag moves.

    Raises:
        UsageError: the tag exists (without ``force``).
    """
    check_name(name, what="tag name")
    oid = core.resolve(ref or "HEAD")
    old = core.refs.read(TAGS + name)
    if old is not None and not force:
        raise UsageError(f"tag {name} already exists", hint="pass --force to move it")
    warn_if_shadows(name, core.store, oid=oid, what="tag")
    core.refs.set_if_equals(TAGS + name, old, oid, message=f"tag: {ref or 'HEAD'}")
    return oid


def delete_tag(core: RepoCore, name: str) -> str:
    """Delete a tag.

    Raises:
        RefNotFoundError: no such tag.
    """
    oid = core.refs.read(TAGS + name)
    if oid is None:
        raise RefNotFoundError(name)
    core.refs.delete_if_equals(TAGS + name, oid, message="tag: deleted")
    return oid
