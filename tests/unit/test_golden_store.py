"""Every object of a fixed synthetic lineage is stored exactly as before the store's encoding
policy moved into ``mgit.codecs.choose`` (id, kind, codec, delta base, chain depth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden_lineage import build, golden_list

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_store.json"


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaNs on purpose
def test_golden_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # after conftest's autouse fixture (which sets its own author and drops the commit time),
    # and through monkeypatch so that build()'s settings do not leak into other tests
    monkeypatch.setenv("MGIT_AUTHOR", "golden <g@example.com>")
    monkeypatch.setenv("MGIT_COMMIT_TIME", "1700000000")
    expected = json.loads(GOLDEN.read_text())
    got = golden_list(build(tmp_path))
    assert len(got) == len(expected)
    # compare row by row first, for a readable failure
    diff = [(e, g) for e, g in zip(expected, got) if e != g]
    assert diff == []
    assert got == expected
