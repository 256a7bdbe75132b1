"""``python -m mgit``."""

from __future__ import annotations

import sys

from mgit.cli import main

sys.exit(main())
