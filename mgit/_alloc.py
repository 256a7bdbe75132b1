"""Allocator tuning for the command-line process (never applied by the library itself).

Commit and export move every chunk through a few multi-megabyte buffers per worker thread. With
glibc's defaults, buffers freed in a worker's arena are trimmed back to the kernel and the next
chunk faults fresh pages in again: a MiniLM export took ~20,000 minor page faults (about a third
of its CPU time in the kernel) with two threads, against ~4,000 with one. Keeping freed memory
for reuse (no trimming below 128 MiB, and allocations up to 32 MiB from the heap rather than
fresh mappings) brings that to a few hundred; peak memory is still bounded by the chunks in
flight. ``MGIT_NO_MALLOC_TUNING=1`` turns it off.
"""

from __future__ import annotations

import os

from mgit._fs import mallopt

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator() -> bool:
    """Apply the tuning once per process (glibc only); True when it was applied."""
    global _done
    if _done:
        return True
    if os.environ.get("MGIT_NO_MALLOC_TUNING") == "1":
        return False
    first = mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    if first is None:  # not Linux, or not glibc
        return False
    _done = first and bool(mallopt(_M_TRIM_THRESHOLD, 128 << 20))
    return _done
