"""The YAML subset of merge recipes (mergekit's format): block maps, block lists (of scalars or of
maps), flow lists ``[a, b]``, scalars (plain or quoted; ints, floats, booleans, null), comments.
No anchors, tags, multi-line strings or flow maps: those are refused with the line number.
:func:`dump` writes the same subset back.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mgit.errors import UsageError
from mgit.hf import strip_yaml_comment

__all__ = ["load", "dump"]

_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def _bad(lineno: int, why: str) -> UsageError:
    return UsageError(f"YAML line {lineno}: {why}")


def _scalar(s: str, lineno: int) -> Any:
    s = s.strip()
    if s == "" or s in ("~", "null", "Null", "NULL"):
        return None
    if s[0] == '"':
        try:
            v = json.loads(s)
        except json.JSONDecodeError:
            raise _bad(lineno, f"bad quoted string {s}") from None
        return v
    if s[0] == "'":
        if len(s) < 2 or s[-1] != "'":
            raise _bad(lineno, f"bad quoted string {s}")
        return s[1:-1].replace("''", "'")
    if s[0] == "[":
        if s[-1] != "]":
            raise _bad(lineno, "a flow list must end on its line")
        inner = s[1:-1].strip()
        return [] if not inner else [_scalar(x, lineno) for x in _split(inner)]
    if s == "{}":
        return {}
    if s[0] in "{&*!|>":
        raise _bad(lineno, f"unsupported YAML ({s[0]!r})")
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    return s


def _split(s: str) -> list[str]:
    parts, cur, q = [], [], None
    for ch in s:
        if q:
            q = None if ch == q else q
        elif ch in "\"'":
            q = ch
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _key_value(text: str, lineno: int) -> tuple[str, str] | None:
    """``key: rest`` split at the first ``:`` followed by a space or the end; None if no key."""
    m = re.match(r"^([A-Za-z0-9_.\-]+|\"[^\"]*\"|'[^']*')\s*:(\s|$)", text)
    if not m:
        return None
    key = m.group(1)
    if key[0] in "\"'":
        key = key[1:-1]
    return key, text[m.end():].strip()


def load(text: str) -> Any:
    """Parse the subset.

    Raises:
        UsageError: YAML outside the subset, or malformed (with its line number).
    """
    lines = []
    for i, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise _bad(i, "tabs in indentation")
        s = strip_yaml_comment(raw)
        if s.strip() in ("", "---"):
            continue
        lines.append((i, len(s) - len(s.lstrip()), s.strip()))
    if not lines:
        return None
    value, pos = _block(lines, 0, lines[0][1])
    if pos != len(lines):
        raise _bad(lines[pos][0], "unexpected indentation")
    return value


def _block(lines: list[tuple[int, int, str]], pos: int, indent: int) -> tuple[Any, int]:
    lineno, ind, text = lines[pos]
    if text.startswith("- ") or text == "-":
        return _list(lines, pos, indent)
    if _key_value(text, lineno) is None:
        raise _bad(lineno, f"expected 'key: value', got {text!r}")
    return _map(lines, pos, indent)


def _map(lines: list[tuple[int, int, str]], pos: int, indent: int,
         first: str | None = None) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while pos < len(lines):
        lineno, ind, text = lines[pos]
        if first is not None:
            text, first = first, None
        elif ind < indent:
            break
        elif ind > indent:
            raise _bad(lineno, "unexpected indentation")
        kv = _key_value(text, lineno)
        if kv is None:
            raise _bad(lineno, f"expected 'key: value', got {text!r}")
        key, rest = kv
        if key in out:
            raise _bad(lineno, f"duplicate key {key!r}")
        pos += 1
        if rest:
            out[key] = _scalar(rest, lineno)
        elif pos < len(lines) and (lines[pos][1] > indent or (lines[pos][1] == indent and lines[pos][2].startswith("-"))):
            out[key], pos = _block(lines, pos, lines[pos][1])
        else:
            out[key] = None
    return out, pos


def _list(lines: list[tuple[int, int, str]], pos: int, indent: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    while pos < len(lines):
        lineno, ind, text = lines[pos]
        if ind < indent or not (text.startswith("- ") or text == "-"):
            if ind > indent:
                raise _bad(lineno, "unexpected indentation")
            break
        if ind > indent:
            raise _bad(lineno, "unexpected indentation")
        item = text[1:].strip()
        if not item:
            pos += 1
            if pos < len(lines) and lines[pos][1] > indent:
                v, pos = _block(lines, pos, lines[pos][1])
                out.append(v)
            else:
                out.append(None)
        elif _key_value(item, lineno) is not None and not item.startswith(("'", '"', "[")):
            sub = ind + (len(text) - len(item))  # the column of the item's first key
            lines[pos] = (lineno, sub, item)
            v, pos = _map(lines, pos, sub)
            out.append(v)
        else:
            out.append(_scalar(item, lineno))
            pos += 1
    return out, pos


def _emit_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if re.match(r"^[A-Za-z0-9_./@~^+-][A-Za-z0-9_./@~^+:=-]*$", s) and not re.match(
        r"^(true|false|null|~|[-+]?[\d.]+([eE][-+]?\d+)?)$", s, re.I
    ):
        return s
    return json.dumps(s, ensure_ascii=False)


def dump(value: Any, indent: int = 0) -> str:
    """``value`` (dicts, lists, scalars) as YAML of the subset :func:`load` reads."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = _emit_scalar(str(k))
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{key}:")
                lines.append(dump(v, indent + 2).rstrip("\n"))
            else:
                lines.append(f"{pad}{key}: {_emit_flow(v)}")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict) and v:
                body = dump(v, indent + 2).rstrip("\n")
                lines.append(f"{pad}- {body[indent + 2:]}")
            elif isinstance(v, list) and v:
                lines.append(f"{pad}-")
                lines.append(dump(v, indent + 2).rstrip("\n"))
            else:
                lines.append(f"{pad}- {_emit_flow(v)}")
    else:
        lines.append(pad + _emit_scalar(value))
    return "\n".join(lines) + "\n"


def _emit_flow(v: Any) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]" if not v else "[" + ", ".join(_emit_scalar(x) for x in v) + "]"
    return _emit_scalar(v)
