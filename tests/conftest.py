"""Shared fixtures: small repositories and model folders, a fixed author, few threads."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parent
for _p in (str(_TESTS), str(_TESTS.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "mgit",
        derandomize=True,
        deadline=None,
        max_examples=60,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    settings.load_profile("mgit")
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass

#: Chunk size used by test repositories: small, so that tiny tensors still span several chunks.
CHUNK = 65536


@pytest.fixture(autouse=True)
def _mgit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed author, two worker threads, no debug tracebacks unless a test asks."""
    monkeypatch.setenv("MGIT_AUTHOR", "tester <t@example.com>")
    monkeypatch.setenv("MGIT_THREADS", "2")
    monkeypatch.delenv("MGIT_DEBUG", raising=False)
    monkeypatch.delenv("MGIT_COMMIT_TIME", raising=False)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Any]:
    """``make_repo(name="repo", **init_kw)`` -> a new Repository with 64 KiB chunks."""
    from mgit.repo import Repository

    def make(name: str = "repo", **kw: Any) -> Any:
        kw.setdefault("chunk_size", CHUNK)
        return Repository.init(tmp_path / name, **kw)

    return make


@pytest.fixture
def repo(make_repo: Callable[..., Any]) -> Any:
    """An empty repository (model line ``base``) at ``tmp_path/repo``."""
    return make_repo("repo", model="base")
