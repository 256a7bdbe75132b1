"""mgit: git for machine-learning models.

``from mgit import Repository`` is the Python API; errors live in :mod:`mgit.errors`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Repository", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import mgit` (and the CLI's --help) stays cheap.
    if name == "Repository":
        from mgit.repo import Repository

        return Repository
    raise AttributeError(name)
