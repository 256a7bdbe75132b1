"""What making a commit's objects durable costs: mgit's fsyncs against one ``syncfs``.

A MiniLM finetune commit writes ~50 objects of ~0.5 MB. This writes that many objects through
``DiskStore`` (temp file, rename, writeback started), then times ``DiskStore.sync()`` (an fsync
per new object and folder, on a few threads) or a whole-filesystem ``syncfs(2)`` (what mgit did
before), first on a quiet filesystem, then right after another program wrote ``--other-mb`` MB
without syncing it (a training run's checkpoint, say), which ``syncfs`` has to flush too. Every
measurement starts from an ``os.sync()``. Linux only. Usage::

    .venv/bin/python benchmarks/bench_durability.py [--objects 50] [--object-kb 560]
        [--other-mb 100] [--repeat 7] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mgit.objects.store import DiskStore


def syncfs(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed")
    finally:
        os.close(fd)


def one(work: Path, how: str, other_mb: int, objects: int, object_kb: int, seed: int) -> float:
    store_dir, other = work / "objects", work / "other.bin"
    shutil.rmtree(store_dir, ignore_errors=True)
    other.unlink(missing_ok=True)
    os.sync()
    if other_mb:
        # Someone else's unsynced writes: a new file (ext4 flushes a file rewritten in place
        # on close, which would hide the effect).
        with open(other, "xb") as f:
            f.write(os.urandom(other_mb << 20))
    store = DiskStore(store_dir)
    for i in range(objects):
        store.put_chunk(os.urandom(object_kb << 10) + seed.to_bytes(4, "little") + i.to_bytes(4, "little"),
                        itemsize=1, is_float=False)
    t0 = time.perf_counter()
    if how == "fsync":
        store.sync()
    else:
        syncfs(store_dir)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--object-kb", type=int, default=560)
    ap.add_argument("--other-mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mgit-durability-", dir=args.dir) as tmp:
        work = Path(tmp)
        print(f"{args.objects} objects of {args.object_kb} KB; other writes {args.other_mb} MB")
        print(f"{'flush':<28} {'quiet disk':>12} {'after other writes':>20}")
        for how, label in (("fsync", "mgit: fsync per object"), ("syncfs", "syncfs (before)")):
            cells = []
            for other in (0, args.other_mb):
                times = [one(work, how, other, args.objects, args.object_kb, i) for i in range(args.repeat)]
                cells.append(statistics.median(times))
            print(f"{label:<28} {cells[0] * 1e3:>9.1f} ms {cells[1] * 1e3:>17.1f} ms")


if __name__ == "__main__":
    main()
