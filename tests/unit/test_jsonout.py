"""``--json`` output: compact C encoding re-indented (mgit._jsonfmt) is json.dumps(indent=N)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgit import _jsonout

_jsonfmt = pytest.importorskip("mgit._jsonfmt")

# Strings full of what could confuse a scanner: quotes, backslashes, brackets, commas, colons.
_tricky = st.text(alphabet=st.sampled_from(list('"\\\\{}[],: \\n\\tab\\u00e9\\u2028\\U0001f600')) | st.characters(), max_size=12)
_leaf = (
    st.none() | st.booleans() | st.integers() | _tricky
    | st.floats(allow_nan=True, allow_infinity=True)
)
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_tricky, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=_json, width=st.sampled_from([0, 1, 2, 4]))
def test_the_same_text_as_json_dumps_indented(value: object, width: int) -> None:
    assert _jsonout.dumps_indented(value, width) == json.dumps(value, indent=width)


def test_a_lineage_shaped_document() -> None:
    doc = {
        "nodes": [
            {"id": "ab" * 32, "time": 1.5, "meta": {}, "tags": [], "heads": ["m"], "x": None,
             "lossy": False, "logical_bytes": 10, "message": 'say "hi" [1, 2]: {ok}\\\\'},
            {"id": "cd" * 32, "time": math.inf, "meta": {"k": "v"}, "tags": ["t1", "t2"]},
        ],
        "edges": [],
        "empty": {},
    }
    assert _jsonout.dumps_indented(doc) == json.dumps(doc, indent=2)


@pytest.mark.parametrize(
    "bad", [b"{", b"}", b"[1,2", b'["a]', b"1,2", b'"\\\\', b"]["]
)
def test_text_that_is_not_well_bracketed_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="not compact JSON"):
        _jsonfmt.indent(bad, 2)


def test_widths_out_of_range_are_refused() -> None:
    for w in (-1, 65):
        with pytest.raises(ValueError, match="indent"):
            _jsonfmt.indent(b"[]", w)


def test_without_the_extension_it_is_json_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_jsonout, "_jsonfmt", None)
    doc = {"a": [1, {"b": []}], "c": "x\\u00e9"}
    assert _jsonout.dumps_indented(doc) == json.dumps(doc, indent=2)
