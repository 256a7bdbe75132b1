"""Text safe to print: control characters escaped, so that no printed line can pass for another.

Names, metadata, messages and paths come from model files, other users and remotes; a raw
newline, carriage return or terminal escape in one could forge lines of output. Every text
renderer (:func:`mgit.commands._common.echo`, the error lines of :mod:`mgit.cli`) goes through
:func:`clean`.
"""

from __future__ import annotations

import re

__all__ = ["clean"]

#: What :func:`clean` escapes: C0 controls but tab, DEL, C1 controls, lone surrogates (an
#: undecodable file name), line and paragraph separators, and the bidirectional overrides that
#: reorder what a terminal shows ("Trojan source"); an SGR escape (colours, bold) is matched
#: whole, to be kept when it only styles text.
_UNSAFE = re.compile(
    "\x1b\\[[0-9;]*m|[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if len(c) > 1:  # an SGR sequence: kept, unless it hides text (8: conceal)
        return c if "8" not in c[2:-1].split(";") else "\\x1b" + c[1:]
    if c in _NAMED:
        return _NAMED[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def clean(text: str) -> str:
    r"""``text`` safe to print on a terminal: control characters escaped as ``\n``, ``\r``,
    ``\x1b``, ``\u202e``... (tabs and colour/bold escapes are kept; a backslash is not
    doubled). No line it prints can pass for another line of output.

    Example:
        >>> clean("a\nmgit: ok\x1b[2J")
        'a\\nmgit: ok\\x1b[2J'
    """
    return _UNSAFE.sub(_escape, text)
