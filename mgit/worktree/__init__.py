"""The working tree: scanning the model folder, the index, and add/status/checkout.

``index`` (staged changes + stat cache), ``scan`` (which files a folder holds) and ``ops``
(the operations). The operations are imported from ``mgit.worktree.ops``; this package exports
the index and scan names.
"""

from mgit.worktree.index import Index, Snapshot, file_xxh, index_lock, snapshot
from mgit.worktree.scan import IGNORE_FILE, folder_bytes, scan

__all__ = ["Snapshot", "Index", "scan", "file_xxh", "snapshot", "index_lock", "folder_bytes", "IGNORE_FILE"]
