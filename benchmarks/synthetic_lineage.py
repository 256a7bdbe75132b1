"""The lineage commands on a real 200-model repository.

Builds a repository of ``--models`` model lines (default 200) through the Python API
(``Repository.import_folder``): tiny models of a few small tensors each, several root models of
different architectures, new versions of existing lines, finetunes, adapters, distillations,
prunes, quantizations and two-parent merges. Then it times, end to end:

- ``mgit log --graph --all``              (the CLI in a subprocess: start-up included)
- ``mgit lineage --html FILE``            (the CLI in a subprocess)
- ``repo.lineage()`` + ``to_html(g)``     (in process, on a freshly opened repository)
- ``repo.log(all=True)`` + ``graph_log``  (in process)

and prints milliseconds for each (median of ``--repeat`` runs) against the 1 second budget.
``--profile`` adds a cProfile listing of the in-process work (where the time goes).

Run: ``.venv/bin/python benchmarks/synthetic_lineage.py [--models 200] [--repeat 3] [--keep DIR]
[--profile] [--json OUT]``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BUDGET_S = 1.0
CHUNK = 65536
T0 = 1_700_000_000
_ROOTS = [
    ("bert-base", 2, 16),
    ("llama-tiny", 3, 24),
    ("t5-small", 2, 20),
    ("vit-b16", 2, 12),
    ("whisper-tiny", 1, 16),
    ("resnet-mini", 2, 8),
]
_DERIVED = ["finetune"] * 5 + ["adapter"] * 2 + ["distill", "prune", "quantize", "other"]
_TASKS = ["sst2", "mnli", "squad", "imdb", "cifar10", "librispeech", "code", "chat", "ner", "xsum"]


# ----------------------------------------------------------------------------------------------
# building the repository


def _tensors(rng: np.random.Generator, layers: int, hidden: int) -> dict[str, np.ndarray]:
    t = {"embed.weight": (rng.standard_normal((32, hidden)) * 0.05).astype(np.float32)}
    for i in range(layers):
        t[f"layers.{i}.weight"] = (rng.standard_normal((hidden, hidden)) * 0.05).astype(np.float32)
    t["head.weight"] = (rng.standard_normal((2, hidden)) * 0.05).astype(np.float32)
    return t


def _write_folder(folder: Path, tensors: dict[str, np.ndarray], arch: str) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": arch, "hidden_size": 0}) + "\n")


def _changed(
    rng: np.random.Generator, tensors: dict[str, np.ndarray], k: int = 1
) -> dict[str, np.ndarray]:
    """A copy with ``k`` tensors nudged (a cheap stand-in for training)."""
    out = dict(tensors)
    for name in rng.choice(sorted(tensors), size=min(k, len(tensors)), replace=False):
        noise = rng.standard_normal(tensors[name].shape).astype(np.float32) * 1e-3
        out[name] = (tensors[name] + noise).astype(np.float32)
    return out


def build(root: Path, models: int, *, seed: int = 7, verbose: bool = True) -> dict[str, Any]:
    """Build a repository with ``models`` model lines in ``root``; return counts."""
    from mgit.repo import Repository

    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    repo = Repository.init(root, model=_ROOTS[0][0], chunk_size=CHUNK)
    work = root.parent / (root.name + "-src")
    state: dict[str, tuple[dict[str, np.ndarray], str]] = {}  # model line -> (latest tensors, arch)
    names: list[str] = []
    counts: dict[str, int] = {}
    k = 0

    def commit(model: str, tensors: dict[str, np.ndarray], arch: str, **kw: Any) -> None:
        nonlocal k
        k += 1
        os.environ["MGIT_COMMIT_TIME"] = str(T0 + 60 * k)
        folder = work / f"c{k}"
        _write_folder(folder, tensors, arch)
        res = repo.import_folder(
            folder, model=model, message=kw.pop("message", f"commit {k}"), **kw
        )
        shutil.rmtree(folder)
        rels = [r for _, r in res.commit.parents] or ["root"]
        for r in set(rels):
            counts[r] = counts.get(r, 0) + 1
        if model not in state:
            names.append(model)
        state[model] = (tensors, arch)

    t_start = time.perf_counter()
    for name, layers, hidden in _ROOTS:
        commit(name, _tensors(rng, layers, hidden), name, message=f"{name}: pretrained")
        for v in range(rnd.randint(1, 2)):
            t, arch = state[name]
            commit(name, _changed(rng, t), arch, message=f"{name}: v{v + 2}")
    while len(names) < models:
        r = rnd.random()
        if r < 0.15:  # a new version of an existing line
            line = rnd.choice(names)
            t, arch = state[line]
            commit(line, _changed(rng, t), arch, meta={"step": str(k)})
            continue
        if r < 0.25 and len(names) > 8:  # a merge of two lines of one architecture
            a = rnd.choice(names)
            same = [n for n in names if n != a and state[n][1] == state[a][1]]
            if same:
                b = rnd.choice(same)
                t, arch = state[a]
                name = f"merge-{len(names)}"
                commit(
                    name,
                    _changed(rng, t, 2),
                    arch,
                    parent=[a, b],
                    relation=None if rnd.random() < 0.5 else "merge",
                    message=f"merge {a} + {b}",
                )
                continue
        parent = rnd.choice(names)
        relation = rnd.choice(_DERIVED)
        t, arch = state[parent]
        if relation == "prune" and len(t) > 2:
            drop = sorted(n for n in t if n.startswith("layers."))[-1:]
            t = {n: v for n, v in t.items() if n not in drop}
        task = rnd.choice(_TASKS)
        name = f"{parent.split('-')[0]}-{relation}-{task}-{len(names)}"
        ref = parent if rnd.random() < 0.8 else f"{parent}~0"
        commit(
            name,
            _changed(rng, t, 2),
            arch,
            parent=ref,
            relation=relation,
            meta={"task": task, "acc": f"{rnd.uniform(0.5, 0.99):.3f}"},
            message=f"{relation} on {task}",
        )
    if len(names) > 3:
        repo.create_tag("release", names[3])
    shutil.rmtree(work, ignore_errors=True)
    os.environ.pop("MGIT_COMMIT_TIME", None)
    build_s = time.perf_counter() - t_start
    commits = len(repo.all_commits())
    if verbose:
        print(
            f"built {len(names)} model lines, {commits} commits in {build_s:.1f} s "
            f"({1000 * build_s / commits:.0f} ms per commit); relations: "
            + ", ".join(f"{r} {n}" for r, n in sorted(counts.items()))
        )
    return {"models": len(names), "commits": commits, "build_s": build_s, "relations": counts}


# ----------------------------------------------------------------------------------------------
# timing


def _mgit_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "mgit"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mgit"]


def _time_subprocess(cmd: list[str], repeat: int) -> tuple[list[float], str]:
    times, out = [], ""
    env = dict(os.environ, NO_COLOR="1")
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
        out = proc.stdout
    return times, out


def _time_call(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return times, value


def _lineage_html(root: Path) -> str:
    from mgit.lineage.render import to_html
    from mgit.repo import Repository

    repo = Repository.open(root)  # fresh: no commit cache
    return to_html(repo.lineage(), title="bench")


def _lineage_only(root: Path) -> Any:
    from mgit.repo import Repository

    return Repository.open(root).lineage()


def _log_graph(root: Path) -> list[str]:
    from mgit.lineage.render import LogEntry, graph_log
    from mgit.repo import Repository

    repo = Repository.open(root)
    commits = repo.log(None, all=True)
    heads: dict[str, list[str]] = {}
    for name, oid in repo.model_heads().items():
        heads.setdefault(oid, []).append(name)
    entries = [
        LogEntry(
            oid=c.oid,
            short=c.short,
            parents=tuple(c.parents),
            model=c.model,
            message=c.message,
            heads=tuple(heads.get(c.oid, [])),
            time=c.time,
        )
        for c in commits
    ]
    return graph_log(entries)


def _profile(label: str, fn: Callable[[], Any], top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("cumulative").print_stats(top)
    print(f"\n--- cProfile: {label} (cumulative, top {top}) ---")
    print("\n".join(ln for ln in buf.getvalue().splitlines() if ln.strip())[:6000])


def measure(root: Path, repeat: int) -> list[dict[str, Any]]:
    """Time every operation; return one row per operation."""
    mgit = _mgit_cmd()
    html_file = root.parent / "lineage-bench.html"
    rows: list[dict[str, Any]] = []

    def row(name: str, times: list[float], note: str = "") -> None:
        med = statistics.median(times)
        rows.append(
            {
                "name": name,
                "median_ms": 1000 * med,
                "min_ms": 1000 * min(times),
                "under_1s": med < BUDGET_S,
                "note": note,
            }
        )

    t, _ = _time_subprocess([sys.executable, "-c", "pass"], repeat)
    row("python -c pass (interpreter start, for reference)", t)
    t, _ = _time_subprocess([*mgit, "--version"], repeat)
    row("mgit --version (CLI start-up, for reference)", t)
    t, out = _time_subprocess([*mgit, "-C", str(root), "log", "--graph", "--all"], repeat)
    row("mgit log --graph --all (subprocess)", t, f"{len(out.splitlines())} lines")
    t, out = _time_subprocess([*mgit, "-C", str(root), "lineage", "--html", str(html_file)], repeat)
    row("mgit lineage --html FILE (subprocess)", t, f"{html_file.stat().st_size // 1024} KiB page")
    t, out = _time_subprocess([*mgit, "-C", str(root), "models"], repeat)
    row("mgit models (subprocess)", t)
    t, _ = _time_call(lambda: _lineage_only(root), repeat)
    row("repo.lineage() (in process)", t)
    t, page = _time_call(lambda: _lineage_html(root), repeat)
    row("repo.lineage() + to_html (in process)", t, f"{len(page) // 1024} KiB")
    t, lines = _time_call(lambda: _log_graph(root), repeat)
    row("repo.log(all=True) + graph_log (in process)", t, f"{len(lines)} lines")
    t, out = _time_subprocess(
        [*mgit, "-C", str(root), "find", "--derived-from", _ROOTS[0][0]], repeat
    )
    row(
        f"mgit find --derived-from {_ROOTS[0][0]} (subprocess)", t, f"{len(out.splitlines())} found"
    )
    folder = root.parent / "guess-src"
    t, cands = _time_call(lambda: _guess(root, folder), repeat)
    shutil.rmtree(folder, ignore_errors=True)
    worst = max((c.seconds for c in cands), default=0.0)
    row(
        "repo.guess_parent(folder) over every commit",
        t,
        f"from {_GUESS_FROM[0]}: best {cands[0].model} ({cands[0].score:.2f}); "
        f"slowest candidate {1000 * worst:.1f} ms"
        if cands
        else "",
    )
    html_file.unlink(missing_ok=True)
    return rows


_GUESS_FROM: list[str] = [""]


def _guess(root: Path, folder: Path) -> list[Any]:
    """Rank every stored version against a light finetune of one stored model."""
    from mgit.repo import Repository

    repo = Repository.open(root)
    shutil.rmtree(folder, ignore_errors=True)
    name = sorted(repo.model_heads())[len(repo.model_heads()) // 2]
    _GUESS_FROM[:] = [name]
    repo.export(name, folder)
    from safetensors.numpy import load_file, save_file

    t = load_file(str(folder / "model.safetensors"))
    save_file(_changed(np.random.default_rng(1), t), str(folder / "model.safetensors"))
    return repo.guess_parent(folder, limit=1000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=200, help="model lines to build (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    ap.add_argument("--keep", metavar="DIR", help="build the repository in DIR and keep it")
    ap.add_argument(
        "--reuse", action="store_true", help="with --keep: reuse a repository already built there"
    )
    ap.add_argument(
        "--profile", action="store_true", help="print cProfile listings of the in-process work"
    )
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("MGIT_AUTHOR", "bench <bench@example.com>")

    tmp = None
    if args.keep:
        root = Path(args.keep).absolute() / "repo"
        if not (args.reuse and (root / ".mgit").is_dir()):
            shutil.rmtree(root, ignore_errors=True)
            root.parent.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="mgit-lineage-bench-")
        root = Path(tmp) / "repo"
    try:
        if (root / ".mgit").is_dir():
            from mgit.repo import Repository

            info = {
                "models": len(Repository.open(root).model_heads()),
                "commits": len(Repository.open(root).all_commits()),
                "build_s": None,
            }
            print(f"reusing {root}: {info['models']} model lines, {info['commits']} commits")
        else:
            info = build(root, args.models)
        rows = measure(root, args.repeat)
        print(f"\n{'operation':<52} {'median ms':>10} {'min ms':>9}  < 1 s   note")
        for r in rows:
            ok = "yes" if r["under_1s"] else "NO"
            print(
                f"{r['name']:<52} {r['median_ms']:>10.0f} {r['min_ms']:>9.0f}  {ok:<6}  {r['note']}"
            )
        if args.profile:
            _profile("repo.lineage() + to_html", lambda: _lineage_html(root), 25)
            _profile("repo.log(all=True) + graph_log", lambda: _log_graph(root), 25)
        if args.json:
            Path(args.json).write_text(json.dumps({"build": info, "rows": rows}, indent=2) + "\n")
        budget = [r for r in rows if "reference" not in r["name"]]
        slow = [r["name"] for r in budget if not r["under_1s"]]
        print("\nall under 1 s" if not slow else "\nover 1 s: " + "; ".join(slow))
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
