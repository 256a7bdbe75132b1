"""``python -m mgit``."""

from __future__ import annotations

from mgit.cli import run

run()
