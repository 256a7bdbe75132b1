#!/usr/bin/env python
"""Numeric diff speed (issue #18): mgit's diff of two stored versions against reading both files.

Cases:

- ``--models DIR`` (the output of ``benchmarks/finetune.py``): ``ft-full-v1`` against
  ``ft-full-v2`` of all-MiniLM-L6-v2 (fp32, 90.9 MB each), imported into a repository under
  ``--work`` as ``minilm`` (base) and two versions of ``ft``.
- ``--synthetic-mb N``: a synthetic fp32 model of about N MB (an embedding of 32000 x 1024 and
  layers of four 1024 x 1024 and two 4096 x 1024 matrices) and a second version: the base plus
  a rank-16 update of every matrix (scale 1e-3 of the weights), noise on the vectors and 2%
  of the embedding rows changed, as a finetune would. Both are imported into a repository.

For each case, side by side in the same run (``--repeat`` rounds, interleaved; medians):

- **read both files**: ``cat A B > /dev/null`` and a numpy memmap ``sum`` over both files
  (the files are read once before, so all of them come from the page cache, like the store),
  and ``dd iflag=direct`` of both (from the disk itself, the page cache bypassed);
- **store read both**: every chunk of both versions through ``DiskStore.get`` (decoded and
  verified) on two threads: what any reader of the stored versions pays;
- **mgit diff** in process (``Repository.diff`` in a fresh interpreter, after opening the
  repository; the interpreter's start-up and imports not counted), with the rank estimate and
  without (``rank=False``, the CLI's ``--no-rank``), the new code and, with ``--baseline DIR``,
  the previous code (a worktree of it, its C extension built in place) interleaved run by run;
- the CLI end to end (``mgit --json diff A B``, ``-q``) for the new code.

``--rank-check`` also compares, on every 2-D delta of the MiniLM pair (and of base against
ft-full-v1), the effective rank of the exact SVD (numpy, float64) with the randomized sketch
forced on (no exact rule, no exact fallback, at most 256 columns): its estimate and its
certified interval ``[effective_min, effective_max]``, which must hold the exact value. (The
diff itself computes these matrices exactly: their smaller side is 384.)

Usage::

    .venv/bin/python benchmarks/bench_diff.py --models /tmp/ft --synthetic-mb 1024 \\
        --baseline /tmp/diffbase --repeat 5 --rank-check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

_CHILD = r"""
import json, resource, sys, time
root, repo_path, a, b, mode, repeat = sys.argv[1:7]
sys.path.insert(0, root)
from mgit.repo import Repository
repo = Repository.open(repo_path) if hasattr(Repository, "open") else Repository(repo_path)
times, cpus = [], []
if mode == "read":
    # every chunk of both versions through DiskStore.get (decode + verify) on a 2-thread pool
    from mgit._pool import WorkerPool
    oids = []
    for ref in (a, b):
        tree = repo.read_tree(repo.read_commit(repo.resolve(ref)).tree)
        oids += [oid for e in tree.files.values() for _, m in e.tensors for oid in m.chunks]
    for _ in range(int(repeat)):
        t, c = time.perf_counter(), time.process_time()
        with WorkerPool(2) as pool:
            for j in [pool.submit(repo.store.get, o, kind="chunk") for o in dict.fromkeys(oids)]:
                j.result()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    print(json.dumps({"times": times, "cpu": cpus}))
    sys.exit(0)
for _ in range(int(repeat)):
    t, c = time.perf_counter(), time.process_time()
    d = repo.diff(a, b, rank=mode == "rank")
    times.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
js = d.to_json()
ranks = {t["name"]: (t["stats"] or {}).get("rank") for t in js["tensors"]}
print(json.dumps({"times": times, "cpu": cpus,
                  # VmHWM: this image's peak (ru_maxrss survives exec: it would report the
                  # parent's, which generated the synthetic model)
                  "rss": next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                              if l.startswith("VmHWM")),
                  "loaded": js["summary"]["loaded"], "changed": js["summary"]["changed"],
                  "l2": js["summary"]["l2_diff"],
                  "ranks": {k: (v or {}).get("effective") for k, v in ranks.items() if v}}))
"""

_READ = r"""
import sys, time, numpy as np
paths = sys.argv[1:]
t = time.perf_counter()
total = 0.0
for p in paths:
    m = np.memmap(p, dtype=np.uint8, mode="r")
    total += float(m.view(np.uint8)[: m.size - m.size % 8].view(np.float64).sum())
print(time.perf_counter() - t)
"""


def _child(root: Path, repo: Path, a: str, b: str, *, mode: str, repeat: int = 1) -> dict:
    out = subprocess.run(
        [PY, "-c", _CHILD, str(root), str(repo), a, b, mode, str(repeat)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cat(paths: list[Path]) -> float:
    t = time.perf_counter()
    subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def _dd_direct(paths: list[Path]) -> float:
    """Both files read from the disk itself (``O_DIRECT``: the page cache bypassed)."""
    t = time.perf_counter()
    for p in paths:
        subprocess.run(
            ["dd", f"if={p}", "of=/dev/null", "bs=4M", "iflag=direct"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - t


def _memmap_sum(paths: list[Path]) -> float:
    out = subprocess.run(
        [PY, "-c", _READ, *map(str, paths)], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def _cli(repo: Path, a: str, b: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [str(Path(PY).parent / "mgit"), "-C", str(repo), "-q", "--json", "diff", a, b],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return time.perf_counter() - t


def _import(repo: Path, versions: list[tuple[str, str, str | None]]) -> None:
    sys.path.insert(0, str(ROOT))
    from mgit.repo import Repository

    r = Repository.init(repo)
    for folder, model, parent in versions:
        r.import_folder(
            folder,
            model=model,
            message=Path(folder).name,
            parent=parent,
            relation="finetune" if parent else None,
        )


def make_synthetic(out: Path, mb: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``syn-base`` and ``syn-ft`` (safetensors, fp32) of about ``mb`` MB under ``out``."""
    import numpy as np
    from safetensors.numpy import save_file

    base_dir, ft_dir = out / "syn-base", out / "syn-ft"
    if (base_dir / "model.safetensors").exists() and (ft_dir / "model.safetensors").exists():
        return base_dir, ft_dir
    rng = np.random.default_rng(seed)
    hidden, inter, vocab = 1024, 4096, 32000
    per_layer = 4 * hidden * hidden + 2 * inter * hidden + 4 * hidden + inter + hidden
    layers = max(1, (mb * 1_000_000 // 4 - vocab * hidden) // per_layer)
    base: dict[str, np.ndarray] = {}
    ft: dict[str, np.ndarray] = {}

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    emb = w(vocab, hidden)
    base["embed.weight"] = emb
    e2 = emb.copy()
    rows = rng.choice(vocab, size=vocab // 50, replace=False)
    e2[rows] += w(rows.size, hidden) * 0.05
    ft["embed.weight"] = e2
    for i in range(layers):
        p = f"layers.{i}."
        for name, shape in (
            ("q", (hidden, hidden)),
            ("k", (hidden, hidden)),
            ("v", (hidden, hidden)),
            ("o", (hidden, hidden)),
            ("up", (inter, hidden)),
            ("down", (hidden, inter)),
        ):
            x = w(*shape)
            base[p + name + ".weight"] = x
            u = rng.standard_normal((shape[0], 16), dtype=np.float32)
            v = rng.standard_normal((16, shape[1]), dtype=np.float32)
            ft[p + name + ".weight"] = (x + (u @ v) * np.float32(2e-5)).astype(np.float32)
            bias = w(shape[0])
            base[p + name + ".bias"] = bias
            ft[p + name + ".bias"] = bias + w(shape[0]) * np.float32(0.01)
    base_dir.mkdir(parents=True, exist_ok=True)
    ft_dir.mkdir(parents=True, exist_ok=True)
    save_file(base, str(base_dir / "model.safetensors"))
    save_file(ft, str(ft_dir / "model.safetensors"))
    return base_dir, ft_dir


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_case(
    label: str,
    repo: Path,
    a: str,
    b: str,
    files: list[Path],
    *,
    repeat: int,
    baseline: Path | None,
    baseline_repeat: int,
) -> dict:
    """One case, every tool side by side, interleaved round by round; returns medians
    (seconds; ``*_cpu``: CPU seconds of the process during the call)."""
    _cat(files)  # page cache
    keys = ("cat", "memmap", "dd", "store", "new", "new_norank", "old", "old_norank", "cli")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    info: dict = {}

    def run(key: str, root: Path, mode: str) -> None:
        r = _child(root, repo, a, b, mode=mode)
        rows[key] += r["times"]
        cpu[key] += r["cpu"]
        if mode != "read":
            info[key] = r

    for i in range(repeat):
        rows["cat"].append(_cat(files))
        rows["memmap"].append(_memmap_sum(files))
        rows["dd"].append(_dd_direct(files))
        run("store", ROOT, "read")
        run("new", ROOT, "rank")
        run("new_norank", ROOT, "norank")
        if baseline is not None and i < baseline_repeat:
            run("old", baseline, "rank")
            run("old_norank", baseline, "norank")
        rows["cli"].append(_cli(repo, a, b))
        print(
            f"  {label} round {i + 1}: "
            + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items() if v),
            file=sys.stderr,
        )
    med = {k: _median(v) for k, v in rows.items()}
    med.update({f"{k}_cpu": _median(v) for k, v in cpu.items()})
    med["rss_new"] = info["new"]["rss"]
    med["rss_new_norank"] = info["new_norank"]["rss"]
    if "old" in info:
        med["rss_old"] = info["old"]["rss"]
        same = {k for k, v in info["new"]["ranks"].items() if info["old"]["ranks"].get(k) == v}
        med["ranks_equal"] = f"{len(same)}/{len(info['new']['ranks'])}"
        med["l2_new_old"] = (info["new"]["l2"], info["old"]["l2"])
    return med


def rank_check(models: Path) -> list[tuple]:
    """Exact SVD effective rank vs the forced sketch's interval, on every 2-D delta."""
    import numpy as np
    from safetensors.numpy import load_file

    sys.path.insert(0, str(ROOT))
    from mgit.diff.rank import rank_of_delta

    out = []
    for pa, pb in (("base", "ft-full-v1"), ("ft-full-v1", "ft-full-v2")):
        A = load_file(str(models / pa / "model.safetensors"))
        B = load_file(str(models / pb / "model.safetensors"))
        for k in sorted(B):
            ka = k if k in A else k.removeprefix("bert.")
            if ka not in A or A[ka].ndim != 2 or A[ka].shape != B[k].shape or min(B[k].shape) < 2:
                continue
            d = B[k].astype(np.float64) - A[ka].astype(np.float64)
            s = np.linalg.svd(d, compute_uv=False)
            exact = int(np.count_nonzero(s > 0.01 * s[0])) if s[0] > 0 else 0
            t = time.perf_counter()
            est = rank_of_delta(
                d.astype(np.float32), exact_max_dim=0, exact_cheap_macs=0, exact_fallback_macs=0
            )
            dt = time.perf_counter() - t
            ok = est.effective_min <= exact <= est.effective_max
            out.append(
                (
                    f"{pa}->{pb}",
                    k,
                    d.shape,
                    exact,
                    est.effective,
                    est.effective_min,
                    est.effective_max,
                    est.sketch,
                    ok,
                    dt,
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, help="output of benchmarks/finetune.py")
    ap.add_argument("--synthetic-mb", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-diff"))
    ap.add_argument("--baseline", type=Path, help="a worktree of the previous code, built in place")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--baseline-repeat",
        type=int,
        default=0,
        help="rounds that also run the previous code (default: every round)",
    )
    ap.add_argument("--rank-check", action="store_true")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    cases = []
    if args.models:
        repo = args.work / "minilm-repo"
        if not (repo / ".mgit").exists():
            _import(
                repo,
                [
                    (str(args.models / "base"), "minilm", None),
                    (str(args.models / "ft-full-v1"), "ft", "minilm"),
                    (str(args.models / "ft-full-v2"), "ft", None),
                ],
            )
        files = [
            args.models / "ft-full-v1" / "model.safetensors",
            args.models / "ft-full-v2" / "model.safetensors",
        ]
        cases.append(("MiniLM ft-full-v1 -> v2 (2 x 90.9 MB fp32)", repo, "ft~1", "ft", files))
    if args.synthetic_mb:
        base_dir, ft_dir = make_synthetic(args.work, args.synthetic_mb)
        repo = args.work / f"syn{args.synthetic_mb}-repo"
        if not (repo / ".mgit").exists():
            _import(repo, [(str(base_dir), "syn", None), (str(ft_dir), "syn", None)])
        files = [base_dir / "model.safetensors", ft_dir / "model.safetensors"]
        size = sum(f.stat().st_size for f in files) / 2 / 1e6
        cases.append((f"synthetic pair (2 x {size:.0f} MB fp32)", repo, "syn~1", "syn", files))
    for label, repo, a, b, files in cases:
        results[label] = bench_case(
            label,
            repo,
            a,
            b,
            files,
            repeat=args.repeat,
            baseline=args.baseline,
            baseline_repeat=args.baseline_repeat or args.repeat,
        )
    print("\nWall seconds, medians (the previous code: medians of its rounds):\n")
    print(
        "| case | `cat` both | memmap sum both | both from disk (`O_DIRECT`) | store read both "
        "| previous: rank / `--no-rank` | **new: rank / `--no-rank`** | new / `cat` "
        "| new / disk | new / store read | CLI `--json diff` "
        "| peak RSS previous / new / new `--no-rank` |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, m in results.items():
        old = f"{m['old']:.3f} / {m['old_norank']:.3f}" if m["old"] == m["old"] else "-"
        rss_old = f"{m['rss_old'] / 1e6:.0f}" if "rss_old" in m else "-"
        print(
            f"| {label} | {m['cat']:.3f} | {m['memmap']:.3f} | {m['dd']:.3f} | {m['store']:.3f} "
            f"| {old} | **{m['new']:.3f} / {m['new_norank']:.3f}** | {m['new'] / m['cat']:.1f}x "
            f"| {m['new'] / m['dd']:.2f}x | {m['new'] / m['store']:.2f}x | {m['cli']:.3f} "
            f"| {rss_old} / {m['rss_new'] / 1e6:.0f} / {m['rss_new_norank'] / 1e6:.0f} MB |"
        )
    print("\nCPU seconds of the process during the call (medians):\n")
    print(
        "| case | store read both | previous: rank / `--no-rank` | **new: rank / `--no-rank`** "
        "| ranks equal to previous |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, m in results.items():
        old = (
            f"{m['old_cpu']:.3f} / {m['old_norank_cpu']:.3f}"
            if m["old_cpu"] == m["old_cpu"]
            else "-"
        )
        print(
            f"| {label} | {m['store_cpu']:.3f} | {old} | **{m['new_cpu']:.3f} / {m['new_norank_cpu']:.3f}** "
            f"| {m.get('ranks_equal', '-')} |"
        )
    if args.rank_check and args.models:
        rows = rank_check(args.models)
        print("\nRank: exact SVD against the randomized sketch forced on (k <= 256):\n")
        print("| pair | tensor | shape | exact rank | sketch | interval | k | holds | time |")
        print("|---|---|---|---:|---:|---|---:|---|---:|")
        for pair, k, shape, exact, est, lo, hi, sk, ok, dt in rows:
            print(
                f"| {pair} | {k} | {shape[0]}x{shape[1]} | {exact} | {est} | [{lo}, {hi}] | {sk} | "
                f"{'yes' if ok else 'NO'} | {dt * 1000:.0f} ms |"
            )
        results["rank_check"] = rows
        print(
            f"\ninterval holds the exact rank on {sum(r[8] for r in rows)}/{len(rows)} matrices; "
            f"max |sketch - exact| = {max(abs(r[4] - r[3]) for r in rows)}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
