"""Key-by-key differences of two JSON documents (``config.json`` and the other JSON files of a
model folder): nested objects are walked with dotted paths (``text_config.hidden_size``), lists
compare as whole values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigChange", "diff_configs", "jsonable"]


@dataclass(frozen=True)
class ConfigChange:
    """One difference between two ``config.json`` files.

    Attributes:
        path: Dotted key path (``num_hidden_layers``, ``text_config.hidden_size``).
        status: ``"added"``, ``"removed"`` or ``"changed"``.
        a: The value in a (``None`` if added).
        b: The value in b (``None`` if removed).
    """

    path: str
    status: str
    a: Any
    b: Any

    def to_json(self) -> dict[str, Any]:
        """Return ``{"path", "status", "a", "b"}``."""
        return {
            "path": self.path,
            "status": self.status,
            "a": jsonable(self.a),
            "b": jsonable(self.b),
        }


def jsonable(v: Any) -> Any:
    """A JSON-safe copy of a value: non-finite floats as text, other objects as their repr."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return repr(v)


def _differs(x: Any, y: Any) -> bool:
    if isinstance(x, bool) != isinstance(y, bool):
        return True
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return False
    try:
        return bool(x != y)
    except Exception:  # noqa: BLE001 - exotic values: fall back to their text
        return repr(x) != repr(y)


def diff_configs(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[ConfigChange]:
    """Compare two config dicts key by key, walking nested dicts.

    Args:
        a: The first config (``None``: none, treated as empty).
        b: The second config.

    Returns:
        Changes sorted by path.

    Example:
        >>> [c.path for c in diff_configs({"n": 1, "x": {"y": 2}}, {"n": 2, "x": {"y": 2}})]
        ['n']
    """
    out: list[ConfigChange] = []

    def walk(prefix: str, x: Mapping[str, Any], y: Mapping[str, Any]) -> None:
        for key in sorted(set(x) | set(y), key=str):
            path = f"{prefix}{key}"
            if key not in y:
                out.append(ConfigChange(path, "removed", x[key], None))
            elif key not in x:
                out.append(ConfigChange(path, "added", None, y[key]))
            elif isinstance(x[key], Mapping) and isinstance(y[key], Mapping):
                walk(path + ".", x[key], y[key])
            elif _differs(x[key], y[key]):
                out.append(ConfigChange(path, "changed", x[key], y[key]))

    walk("", a or {}, b or {})
    out.sort(key=lambda c: c.path)
    return out
