"""What a stored model may hold: the one table of limits on untrusted inputs.

The safetensors parser (:mod:`mgit.formats.safetensors`, on import and add), the tree validation
(:mod:`mgit.objects.model`, on every read) and a remote's receive side use these same values, so
that nothing can be written that cannot be read back: a limit the reader enforces is one the
writer enforced first.

The writer is stricter than the reader in one way only: tensor names that are empty, hold a NUL
or are longer than :data:`MAX_NAME_BYTES` are refused on import, but a tree holding one (as an
older mgit could write) still reads.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_DIM",
    "MAX_DIMS",
    "MAX_HEADER",
    "MAX_NAME_BYTES",
    "name_problem",
    "shape_problem",
    "text_problem",
]

#: Most dimensions a tensor may have (PyTorch allows 25, numpy 64).
MAX_DIMS = 64

#: Largest size of one dimension: an int64, what numpy and torch index with.
MAX_DIM = 2**63 - 1

#: Headers larger than this are refused (safetensors itself caps them at 100 MB).
MAX_HEADER = 100 * 1024 * 1024

#: Longest tensor name, in UTF-8 bytes (names in real checkpoints are under 300).
MAX_NAME_BYTES = 4096


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (it is not valid UTF-8: a lone surrogate, as JSON's
    ``"\\ud800"`` gives), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (a lone surrogate)"
    return None


def name_problem(name: str, *, strict: bool = True) -> str | None:
    """Why ``name`` (a tensor name) cannot be stored, or None.

    Args:
        name: the name.
        strict: the writer's rule (also refuse empty, NUL, too long); the reader passes False.
    """
    why = text_problem(name)
    if why is not None:
        return why
    if strict and not name:
        return "is empty"
    if strict and "\x00" in name:
        return "holds a NUL character"
    if strict and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def shape_problem(shape: Any) -> str | None:
    """Why ``shape`` (as parsed from JSON) is not a storable tensor shape, or None."""
    if not isinstance(shape, list):
        return "is not a list"
    if len(shape) > MAX_DIMS:
        return f"has {len(shape)} dimensions (at most {MAX_DIMS})"
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            return "holds something other than a non-negative integer"
        if d > MAX_DIM:
            return f"has a dimension larger than {MAX_DIM}"
    return None
