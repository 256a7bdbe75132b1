"""Refs, HEAD and the reflog, changed only by compare-and-swap under lock files."""

from __future__ import annotations

from mgit.refs.store import HEADS, REMOTES, TAGS, RefStore, check_name

__all__ = ["HEADS", "REMOTES", "TAGS", "RefStore", "check_name"]
