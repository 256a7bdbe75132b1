"""Start-up of the mgit command line: what each piece costs before a command reads a byte.

Prints, each the median of ``--repeat`` fresh interpreters:

- the interpreter alone (``python -c pass``) and ``python -m mgit --help`` (click + mgit's CLI);
- the import of everything ``mgit import`` and ``mgit export`` load, and within it the time
  spent building mgit's dataclasses;
- what the modules the streaming commands no longer load would add on top of that
  (``concurrent.futures`` with ``logging``, ``getpass`` + ``socket``, ``ctypes``) and what
  export saves by not loading the working-tree and ingest modules;
- the interpreter's teardown at exit, which the ``mgit`` program skips.

Usage::

    .venv/bin/python benchmarks/bench_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

#: What ``mgit import`` and ``mgit export`` import, at start-up and when they run.
IMPORT_LOADS = "mgit.cli, mgit.commands.cmd_import, mgit._alloc, mgit.repo, mgit.worktree, mgit.ingest"
EXPORT_LOADS = "mgit.cli, mgit.commands.cmd_export, mgit._alloc, mgit.repo, mgit.materialize"

_PROBE = r"""
import sys, time
import dataclasses
spent = [0.0, 0]
real = dataclasses._process_class
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return real(*a, **k)
    finally:
        spent[0] += time.perf_counter() - t
        spent[1] += 1
dataclasses._process_class = timed
t = time.perf_counter()
import {base}
base = time.perf_counter() - t
t = time.perf_counter()
{extra}
extra = time.perf_counter() - t
print(base, extra, spent[0], spent[1])
"""


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def probe(base: str, extra: str, repeat: int) -> tuple[float, float, float, int]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _PROBE.format(base=base, extra=extra or "pass")],
                             check=True, capture_output=True, text=True).stdout.split()
        runs.append((float(out[0]), float(out[1]), float(out[2]), int(out[3])))
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs), runs[0][3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    import mgit

    # As an installed package would be (this machine sets PYTHONDONTWRITEBYTECODE).
    subprocess.run([sys.executable, "-m", "compileall", "-q", mgit.__path__[0]], check=True)
    print(f"python -c pass              {wall([sys.executable, '-c', 'pass'], args.repeat) * 1e3:6.1f} ms")
    print(f"python -m mgit --help       {wall([sys.executable, '-m', 'mgit', '--help'], args.repeat) * 1e3:6.1f} ms")
    for command, loads in (("import", IMPORT_LOADS), ("export", EXPORT_LOADS)):
        base, _, dc, n = probe(loads, "", args.repeat)
        print(f"mgit {command} loads {loads}: {base * 1e3:.1f} ms, "
              f"of which building {n} dataclasses {dc * 1e3:.1f} ms")
    for label, extra in (
        ("concurrent.futures (+ logging)", "import concurrent.futures"),
        ("getpass + socket", "import getpass, socket"),
        ("ctypes", "import ctypes"),
    ):
        print(f"  not loaded any more: {label:<32} {probe(IMPORT_LOADS, extra, args.repeat)[1] * 1e3:5.1f} ms")
    print(f"  not loaded by export: {'mgit.worktree, mgit.ingest':<31} "
          f"{probe(EXPORT_LOADS, 'import mgit.worktree, mgit.ingest', args.repeat)[1] * 1e3:5.1f} ms")
    # The interpreter's teardown, which the mgit program skips (os._exit once a command is done).
    plain = wall([sys.executable, "-c", f"import {IMPORT_LOADS}"], args.repeat)
    quick = wall([sys.executable, "-c", f"import os, {IMPORT_LOADS}; os._exit(0)"], args.repeat)
    print(f"interpreter teardown after those imports: {(plain - quick) * 1e3:.1f} ms (skipped)")


if __name__ == "__main__":
    main()
