"""The lineage queries at scale: the lineage index against reading every commit object.

For each size (``--sizes 1000,10000``: model lines), builds (or reuses, with ``--keep DIR``) a
repository and times, as subprocesses (interpreter start-up included), each query twice in the
same run: with the index (``new``) and with ``MGIT_NO_LINEAGE_INDEX=1`` (``old``, today's code
path: every commit object read):

- ``mgit log --graph --all | head``   (through ``sh -c``: the pipe closes after 10 lines)
- ``mgit log -n 20 --all``
- ``mgit models``
- ``mgit find --derived-from <root>``
- ``mgit lineage --json``
- guess-parent: ``Repository.guess_parent(folder)`` in a fresh interpreter (``mgit import
  --guess-parent`` also commits; the ranking alone has no CLI verb), from a light finetune of
  one stored model

The first ``new`` query after a build also builds the index (reported separately as "index
build"); the ``new`` figures are with the index present and up to date (the usual case:
after a commit, only the new commits are read).

Repositories of up to ``--api-max`` model lines are built through the Python API
(``benchmarks/synthetic_lineage.py``: real imports, 25 ms a commit); larger ones (100,000) are
written directly through the object store: one tiny tree shared per architecture, commit
objects and refs written as the API would, same shape of lineage (versions, derivations,
merges, metadata).

Run: ``.venv/bin/python benchmarks/bench_lineage_scale.py [--sizes 1000,10000] [--keep DIR]
[--repeat 3] [--skip-old-above N] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import synthetic_lineage as syn

T0 = 1_700_000_000


def build_direct(root: Path, models: int, *, seed: int = 7) -> dict[str, Any]:
    """A lineage of ``models`` model lines written straight through the store (tiny trees)."""
    from mgit.objects.model import Commit, ParentLink
    from mgit.repo import Repository

    rnd = random.Random(seed)
    repo = Repository.init(root, model="bert-base", chunk_size=syn.CHUNK)
    work = root.parent / (root.name + "-src")
    trees: dict[str, str] = {}
    for name, layers, hidden in syn._ROOTS:  # one real tree per architecture, imported once
        import numpy as np

        folder = work / name
        syn._write_folder(
            folder, syn._tensors(np.random.default_rng(len(trees)), layers, hidden), name
        )
        res = repo.import_folder(folder, model=name, message=f"{name}: pretrained")
        trees[name] = (
            res.commit.tree
            if hasattr(res.commit, "tree")
            else repo.read_commit(res.commit.oid).tree
        )
    shutil.rmtree(work, ignore_errors=True)
    heads = dict(repo.model_heads())
    arch = {n: n for n in heads}
    names = list(heads)
    refs_dir = repo.mgit_dir / "refs" / "heads"
    k = 0
    t_start = time.perf_counter()

    def commit(
        model: str, parents: list[tuple[str, str]], message: str, meta: dict[str, str]
    ) -> str:
        nonlocal k
        k += 1
        c = Commit(
            tree=trees[arch[model]],
            parents=tuple(ParentLink(o, r) for o, r in parents),
            model=model,
            author="bench <bench@example.com>",
            time=T0 + 60 * k,
            message=message,
            meta=meta,
        )
        oid = repo.store.put("commit", c.to_bytes())
        (refs_dir / model).write_text(oid + "\n")
        heads[model] = oid
        return oid

    while len(names) < models:
        r = rnd.random()
        if r < 0.15:
            line = rnd.choice(names)
            commit(line, [(heads[line], "version")], f"commit {k}", {"step": str(k)})
            continue
        if r < 0.25 and len(names) > 8:
            a, b = rnd.choice(names), rnd.choice(names)
            if a != b and arch[a] == arch[b]:
                name = f"merge-{len(names)}"
                arch[name] = arch[a]
                names.append(name)
                rel = "merge" if rnd.random() < 0.5 else "version"
                commit(name, [(heads[a], rel), (heads[b], rel)], f"merge {a} + {b}", {})
                continue
        parent = rnd.choice(names)
        relation = rnd.choice(syn._DERIVED)
        task = rnd.choice(syn._TASKS)
        name = f"{parent.split('-')[0]}-{relation}-{task}-{len(names)}"
        arch[name] = arch[parent]
        names.append(name)
        commit(
            name,
            [(heads[parent], relation)],
            f"{relation} on {task}",
            {"task": task, "acc": f"{rnd.uniform(0.5, 0.99):.3f}"},
        )
    repo.create_tag("release", names[3])
    build_s = time.perf_counter() - t_start
    print(
        f"wrote {len(names)} model lines, {k + len(syn._ROOTS)} commits directly in {build_s:.1f} s"
    )
    return {"models": len(names), "build_s": build_s}


def _mgit() -> list[str]:
    exe = Path(sys.executable).parent / "mgit"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mgit"]


def _run(cmd: list[str] | str, *, old: bool) -> tuple[float, str]:
    env = dict(os.environ, NO_COLOR="1")
    env.pop("MGIT_NO_LINEAGE_INDEX", None)
    if old:
        env["MGIT_NO_LINEAGE_INDEX"] = "1"
    t0 = time.perf_counter()
    p = subprocess.run(
        cmd, shell=isinstance(cmd, str), capture_output=True, text=True, env=env, check=False
    )
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {cmd}\n{p.stderr}")
    return dt, p.stdout


_GUESS = """
import sys, time
from mgit.repo import Repository
t = time.perf_counter()
c = Repository.open(sys.argv[1]).guess_parent(sys.argv[2])
print(c[0].model if c else "-", f"{c[0].score:.3f}" if c else "")
"""


def _guess_folder(root: Path) -> Path:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from mgit.repo import Repository

    repo = Repository.open(root)
    folder = root.parent / "guess-src"
    shutil.rmtree(folder, ignore_errors=True)
    names = sorted(repo.model_heads())
    repo.export(names[len(names) // 2], folder)
    t = load_file(str(folder / "model.safetensors"))
    save_file(syn._changed(np.random.default_rng(1), t), str(folder / "model.safetensors"))
    return folder


def measure(root: Path, repeat: int, *, old: bool) -> list[dict[str, Any]]:
    m = _mgit()
    r = str(root)
    folder = _guess_folder(root)
    index = root / ".mgit" / "lineage-index"
    index.unlink(missing_ok=True)
    t_build, _ = _run([*m, "-C", r, "log", "-n", "1", "--all"], old=False)
    queries: list[tuple[str, list[str] | str]] = [
        ("log --graph --all | head", f"{' '.join(m)} -C {r} log --graph --all | head"),
        ("log -n 20 --all", [*m, "-C", r, "log", "-n", "20", "--all"]),
        ("models", [*m, "-C", r, "models"]),
        ("find --derived-from bert-base", [*m, "-C", r, "find", "--derived-from", "bert-base"]),
        ("lineage --json", [*m, "-C", r, "--json", "lineage"]),
        ("guess-parent (API, fresh interpreter)", [sys.executable, "-c", _GUESS, r, str(folder)]),
    ]
    rows = [{"query": "index build (first query, log -n 1)", "new_s": t_build, "old_s": None}]
    for name, cmd in queries:
        new = [_run(cmd, old=False) for _ in range(repeat)]
        olds = [_run(cmd, old=True) for _ in range(1 if old else 0)]
        same = None
        if olds and "head" not in name:
            same = new[0][1] == olds[0][1]
        rows.append(
            {
                "query": name,
                "new_s": statistics.median(t for t, _ in new),
                "old_s": statistics.median(t for t, _ in olds) if olds else None,
                "same_output": same,
            }
        )
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes", default="1000,10000", help="model lines per repository (comma-separated)"
    )
    ap.add_argument("--keep", metavar="DIR", help="build the repositories under DIR and reuse them")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each new query (median); old runs once"
    )
    ap.add_argument("--api-max", type=int, default=20000, help="largest size built through the API")
    ap.add_argument("--skip-old-above", type=int, default=20000, help="no old runs above this size")
    ap.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("MGIT_AUTHOR", "bench <bench@example.com>")
    base = Path(args.keep or "/tmp/mgit-lineage-scale").absolute()
    t, _ = _run([sys.executable, "-c", "pass"], old=False)
    t2, _ = _run([*_mgit(), "--version"], old=False)
    print(
        f"interpreter start-up: python -c pass {t:.2f} s, mgit --version {t2:.2f} s (included below)"
    )
    results: dict[str, Any] = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        root = base / f"m{size}" / "repo"
        if not (root / ".mgit").is_dir():
            shutil.rmtree(root.parent, ignore_errors=True)
            root.parent.mkdir(parents=True)
            if size <= args.api_max:
                syn.build(root, size)
            else:
                build_direct(root, size)
        rows = measure(root, args.repeat, old=size <= args.skip_old_above)
        results[str(size)] = rows
        print(f"\n{size:,} model lines")
        print(f"{'query':<40} {'old s':>8} {'new s':>8} {'old/new':>8}  same output")
        for row in rows:
            o, n = row["old_s"], row["new_s"]
            print(
                f"{row['query']:<40} {'-' if o is None else f'{o:.2f}':>8} {n:>8.2f} "
                f"{'-' if o is None else f'{o / n:.1f}x':>8}  {row.get('same_output', '')}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
