"""Integrations with training libraries: :class:`MgitCallback` for the transformers ``Trainer``
(:mod:`mgit.integrations.trainer`). Nothing is imported until it is asked for, so
``import mgit.integrations`` does not load transformers."""

from __future__ import annotations

from typing import Any

__all__ = ["MgitCallback"]


def __getattr__(name: str) -> Any:
    if name == "MgitCallback":
        from mgit.integrations.trainer import MgitCallback

        return MgitCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
