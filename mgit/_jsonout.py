"""``json.dumps(value, indent=2)``, fast for big documents.

Python 3.11's json module encodes in C only without an indent; with one, every value goes
through its pure-Python encoder (0.23 s for ``mgit lineage --json`` at 10,000 versions, 2.3 s
at 100,000). :func:`dumps_indented` encodes compactly in C and re-indents with
:mod:`mgit._jsonfmt` (optional C extension): the same text, byte for byte, in about a quarter
of the time. Without the extension it is ``json.dumps(value, indent=2)``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps_indented"]

try:
    from mgit import _jsonfmt
except ImportError:  # pragma: no cover - the C extension is optional
    _jsonfmt = None


def dumps_indented(value: Any, indent: int = 2) -> str:  # noqa: ANN401 - any JSON value
    """``json.dumps(value, indent=indent)``: the same text (ASCII, keys in their order)."""
    if _jsonfmt is None:
        return json.dumps(value, indent=indent)
    compact = json.dumps(value, separators=(",", ":"))
    return _jsonfmt.indent(compact.encode("ascii"), indent).decode("ascii")
