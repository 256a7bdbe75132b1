#!/usr/bin/env python
"""Merge two finetunes of all-MiniLM-L6-v2 on different tasks: mgit against mergekit (issue #15).

Inputs (``--models``, the output of ``benchmarks/finetune.py``): ``base`` (the real
all-MiniLM-L6-v2), ``ft-full-v1`` (a full finetune on the generated *sentiment* task) and a full
finetune on a second generated task, *topic* (sports or technology), made the same way
(``finetune.py train --task topic --parent base --seed 0 --steps 60``; taken from
``--models``/ft-topic when present, else built into ``--work``/ft-topic and reused).

For each method (linear, slerp, task-arithmetic, ties, dare-linear, dare-ties) the same merge runs
side by side, each as a fresh process:

- mgit: ``mgit merge sentiment topic --base minilm --method M ...`` in a repository holding
  ``minilm`` and the two finetunes (both ``finetune`` of ``minilm``), then
  ``mgit merge --redo`` on the result (it must report every file identical);
- mergekit: ``mergekit-yaml`` on the same folders with the same parameters (CPU, float32, its
  ``--random-seed`` set). mergekit needs every input, the base too, in the classifier's layout, so
  its base is the base's tensors renamed ``bert.*`` plus a classifier copied from the sentiment
  finetune (the classifier is not evaluated, see below).

Reported per run: wall time and peak RSS of the process (GNU time), the bytes the merge commit
added to ``.mgit/objects`` (mgit; each method merges in its own copy of the repository holding
only the three inputs) or the size of the output folder (mergekit), and the eval
accuracy of the merged model on each task. Rule: a merged model is scored on each task with its
merged **body** (every ``bert.*`` tensor) under that task's **own classifier head** taken from
that task's finetune (merging two unrelated 2-label heads is meaningless); the finetunes
themselves are scored the same way (their body under each task's head). Also reported: how far
mgit's and mergekit's merged bodies are apart (max absolute difference over ``bert.*``).

Usage::

    .venv/bin/python benchmarks/bench_merge.py --models /tmp/ft [--work DIR] [--json OUT]
        [--methods linear,ties,...] [--density 0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import finetune as ft
from _measure import compare_safetensors, markdown_table, run_measured, tree_bytes

METHODS = ("linear", "slerp", "task-arithmetic", "ties", "dare-linear", "dare-ties")
MERGEKIT_NAME = {
    "linear": "linear",
    "slerp": "slerp",
    "task-arithmetic": "task_arithmetic",
    "ties": "ties",
    "dare-linear": "dare_linear",
    "dare-ties": "dare_ties",
}
NEEDS_BASE = {"task-arithmetic", "ties", "dare-linear", "dare-ties"}
TASKS = ("sentiment", "topic")


def params_for(method: str, density: float, t: float, lam: float) -> dict[str, Any]:
    """The parameters both tools get: weights 1 and 1, and per method (all stated explicitly,
    so neither tool's defaults matter): linear normalized (the mean); slerp at ``t``;
    task-arithmetic not normalized (base + λ(τ₁ + τ₂)); ties normalized (disjoint mean) at
    ``density``; dare-linear not normalized; dare-ties normalized; DARE seed 0."""
    p: dict[str, Any] = {"weights": [1.0, 1.0]}
    if method == "linear":
        p["normalize"] = True
    elif method == "slerp":
        p = {"t": t}
    elif method == "task-arithmetic":
        p.update(normalize=False, lam=lam)
    elif method == "ties":
        p.update(normalize=True, lam=lam, density=density)
    elif method == "dare-linear":
        p.update(normalize=False, lam=lam, density=density, seed=0)
    elif method == "dare-ties":
        p.update(normalize=True, lam=lam, density=density, seed=0)
    return p


def mgit_args(method: str, p: dict[str, Any]) -> list[str]:
    """``mgit merge`` options for ``p``."""
    out = ["--method", method]
    if method in NEEDS_BASE:
        out += ["--base", "minilm"]
    for w in p.get("weights", []):
        out += ["--weight", repr(w)]
    if "t" in p:
        out += ["--t", repr(p["t"])]
    if "density" in p:
        out += ["--density", repr(p["density"])]
    if "lam" in p:
        out += ["--lambda", repr(p["lam"])]
    if "normalize" in p:
        out.append("--normalize" if p["normalize"] else "--no-normalize")
    if "seed" in p:
        out += ["--seed", str(p["seed"])]
    return out


def mergekit_yaml(method: str, p: dict[str, Any], sentiment: Path, topic: Path, base: Path) -> str:
    """mergekit's YAML for the same merge (float32 in and out)."""
    lines = [f"merge_method: {MERGEKIT_NAME[method]}", "dtype: float32", "out_dtype: float32"]
    if method == "slerp":
        lines += [
            f"base_model: {sentiment}",
            "models:",
            f"  - model: {sentiment}",
            f"  - model: {topic}",
            "parameters:",
            f"  t: {p['t']}",
        ]
        return "\n".join(lines) + "\n"
    if method in NEEDS_BASE:
        lines.append(f"base_model: {base}")
    lines.append("models:")
    for folder, w in zip((sentiment, topic), p["weights"]):
        lines += [f"  - model: {folder}", "    parameters:", f"      weight: {w}"]
        if "density" in p:
            lines.append(f"      density: {p['density']}")
    lines.append("parameters:")
    lines.append(f"  normalize: {'true' if p['normalize'] else 'false'}")
    if "lam" in p:
        lines.append(f"  lambda: {p['lam']}")
    return "\n".join(lines) + "\n"


def mergekit_base(base: Path, head_from: Path, out: Path) -> Path:
    """The base in the classifier's layout, for mergekit: ``bert.`` + each base tensor, plus the
    classifier and ``config.json`` of ``head_from``; tokenizer files from ``base``."""
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tensors = {"bert." + k: v for k, v in load_file(str(base / "model.safetensors")).items()}
    tensors.update(
        {
            k: v
            for k, v in load_file(str(head_from / "model.safetensors")).items()
            if not k.startswith("bert.")
        }
    )
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy2(head_from / "config.json", out / "config.json")
    ft._copy_tokenizer(base, out)
    return out


class Scorer:
    """Scores a body under each task's own head (heads and datasets loaded once)."""

    def __init__(self, heads: dict[str, Path]) -> None:
        from safetensors.torch import load_file

        self.heads = {
            t: {
                k: v
                for k, v in load_file(str(p / "model.safetensors")).items()
                if not k.startswith("bert.")
            }
            for t, p in heads.items()
        }
        self.configs = {t: p for t, p in heads.items()}
        self.data = {t: ft.make_task_dataset(t) for t in heads}
        self.tok = ft._load_tokenizer(ft.base_path())

    def score(self, model_file: Path, *, prefix: str = "bert.") -> dict[str, float]:
        """Accuracy per task of the body in ``model_file`` (names ``prefix`` + the base's names;
        ``prefix=""`` for a ``BertModel`` file) under each task's head."""
        import torch
        from safetensors.torch import load_file
        from transformers import BertForSequenceClassification

        st = load_file(str(model_file))
        if prefix:
            body = {("bert." + k[len(prefix) :]): v for k, v in st.items() if k.startswith(prefix)}
        else:
            body = {("bert." + k): v for k, v in st.items()}
        body.pop("bert.embeddings.position_ids", None)  # a buffer, not a parameter
        out = {}
        for task, head in self.heads.items():
            model = BertForSequenceClassification.from_pretrained(
                str(self.configs[task]), dtype=torch.float32
            )
            missing, unexpected = model.load_state_dict({**body, **head}, strict=False)
            if missing or unexpected:
                raise SystemExit(
                    f"{model_file}: missing {missing[:3]}, unexpected {unexpected[:3]}"
                )
            acc, _, _ = ft.evaluate(model, self.tok, self.data[task])
            out[task] = acc
        return out


def ensure_topic(models: Path, work: Path, steps: int) -> tuple[Path, float | None]:
    """The topic finetune: ``models/ft-topic`` if present, else ``work/ft-topic`` (built once)."""
    for cand in (models / "ft-topic", work / "ft-topic"):
        if (cand / "model.safetensors").is_file():
            return cand, None
    out = work / "ft-topic"
    print(f"[topic] finetune.py train --task topic -> {out}", flush=True)
    m = run_measured(
        [
            sys.executable,
            str(HERE / "finetune.py"),
            "train",
            "--task",
            "topic",
            "--parent",
            str(models / "base"),
            "--out",
            str(out),
            "--seed",
            "0",
            "--steps",
            str(steps),
        ]
    )
    return out, m.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, required=True, help="output of benchmarks/finetune.py")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/bench-merge"),
        help="work folder (its repo and outputs are recreated; ft-topic is reused)",
    )
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument(
        "--density", type=float, default=0.5, help="ties / dare-* density (default 0.5)"
    )
    ap.add_argument("--t", type=float, default=0.5, help="slerp t (default 0.5)")
    ap.add_argument("--lambda", dest="lam", type=float, default=1.0, help="λ (default 1)")
    ap.add_argument("--topic-steps", type=int, default=60, help="steps of the topic finetune")
    ap.add_argument(
        "--mergekit",
        default=str(Path(sys.executable).parent / "mergekit-yaml"),
        help="mergekit-yaml executable; 'none' to skip mergekit",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")

    ft._quiet_transformers()
    base, sentiment = args.models / "base", args.models / "ft-full-v1"
    for p in (base, sentiment):
        if not (p / "model.safetensors").is_file():
            raise SystemExit(
                f"{p}: missing; run: .venv/bin/python benchmarks/finetune.py --out {args.models}"
            )
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    topic, topic_seconds = ensure_topic(args.models, work, args.topic_steps)
    for sub in ("repo", "repo-merge", "out", "cfg"):
        shutil.rmtree(work / sub, ignore_errors=True)
    (work / "out").mkdir()
    (work / "cfg").mkdir()
    mk_base = mergekit_base(base, sentiment, work / "mk-base")
    results: dict[str, Any] = {
        "topic_folder": str(topic),
        "topic_build_seconds": topic_seconds,
        "params": {},
        "runs": [],
        "references": {},
    }

    scorer = Scorer({"sentiment": sentiment, "topic": topic})
    refs = [
        ("base (v1) body", base / "model.safetensors", ""),
        ("sentiment finetune", sentiment / "model.safetensors", "bert."),
        ("topic finetune", topic / "model.safetensors", "bert."),
    ]
    for name, f, prefix in refs:
        results["references"][name] = scorer.score(f, prefix=prefix)
        print(f"[ref] {name}: {results['references'][name]}", flush=True)

    repo = work / "repo"
    mg = [sys.executable, "-m", "mgit", "-q", "-C", str(repo)]
    run_measured([sys.executable, "-m", "mgit", "-q", "init", str(repo), "--model", "minilm"])
    run_measured([*mg, "import", str(base), "--model", "minilm", "-m", "all-MiniLM-L6-v2"])
    for name, folder in (("sentiment", sentiment), ("topic", topic)):
        run_measured(
            [
                *mg,
                "import",
                str(folder),
                "--model",
                name,
                "--parent",
                "minilm",
                "--relation",
                "finetune",
                "-m",
                f"{name} finetune",
                "--meta",
                f"task={name}",
            ]
        )
    for method in methods:
        p = params_for(method, args.density, args.t, args.lam)
        results["params"][method] = p
        # mgit, in a copy of the repository made before any merge: the bytes a merge stores do
        # not depend on the merges run before it (a slerp at t=0.5 of two close finetunes is
        # mostly the linear merge, bit for bit, and would dedup against it)
        mrepo = work / "repo-merge"
        shutil.rmtree(mrepo, ignore_errors=True)
        shutil.copytree(repo, mrepo, symlinks=True)
        mg = [sys.executable, "-m", "mgit", "-q", "-C", str(mrepo)]
        objects = mrepo / ".mgit" / "objects"
        before = tree_bytes(objects)
        line = f"merged-{method}"
        m = run_measured(
            [
                *mg,
                "merge",
                "sentiment",
                "topic",
                "--model",
                line,
                "-m",
                f"{method} merge",
                *mgit_args(method, p),
            ]
        )
        added = tree_bytes(objects) - before
        out = work / "out" / f"mgit-{method}"
        run_measured([*mg, "export", line, str(out)])
        redo = run_measured([*mg, "merge", "--redo", line], check=False)
        acc = scorer.score(out / "model.safetensors")
        run = {
            "method": method,
            "tool": "mgit",
            "seconds": m.seconds,
            "peak_rss": m.peak_rss,
            "stored_bytes": added,
            "accuracy": acc,
            "redo_rc": redo.returncode,
            "redo_output": redo.output.strip()[-300:],
            "redo_seconds": redo.seconds,
        }
        results["runs"].append(run)
        print(
            f"[mgit {method}] {m.seconds:.2f}s, {m.peak_rss / 1e6:.0f} MB, +{added:,} B, {acc}, "
            f"redo rc {redo.returncode}: {run['redo_output'][-120:]!r}",
            flush=True,
        )
        # mergekit
        if args.mergekit == "none":
            continue
        cfg = work / "cfg" / f"{method}.yml"
        cfg.write_text(mergekit_yaml(method, p, sentiment, topic, mk_base))
        mk_out = work / "out" / f"mergekit-{method}"
        mk = run_measured(
            [args.mergekit, str(cfg), str(mk_out), "--random-seed", "0", "--quiet", "--no-cuda"],
            check=False,
        )
        if mk.returncode != 0:
            print(f"[mergekit {method}] failed ({mk.returncode}): {mk.output[-1500:]}", flush=True)
            results["runs"].append(
                {"method": method, "tool": "mergekit", "error": mk.output[-1500:]}
            )
            continue
        files = sorted(mk_out.glob("*.safetensors"))
        if len(files) != 1:
            raise SystemExit(f"{mk_out}: expected one safetensors file, found {files}")
        acc = scorer.score(files[0])
        diff = compare_safetensors(out / "model.safetensors", files[0])
        body_diff = max_body_diff(out / "model.safetensors", files[0])
        run = {
            "method": method,
            "tool": "mergekit",
            "seconds": mk.seconds,
            "peak_rss": mk.peak_rss,
            "stored_bytes": tree_bytes(mk_out),
            "accuracy": acc,
            "vs_mgit": diff,
            "body_max_abs_diff_vs_mgit": body_diff,
        }
        results["runs"].append(run)
        print(
            f"[mergekit {method}] {mk.seconds:.2f}s, {mk.peak_rss / 1e6:.0f} MB, {acc}, "
            f"body max |mgit - mergekit| {body_diff:.3g}",
            flush=True,
        )

    print()
    print("Reference (each body under each task's own head):")
    print()
    print(
        markdown_table(
            ["model", "sentiment acc", "topic acc"],
            [
                (n, f"{a['sentiment'] * 100:.2f}%", f"{a['topic'] * 100:.2f}%")
                for n, a in results["references"].items()
            ],
            ["l", "r", "r"],
        )
    )
    print()
    rows = []
    for r in results["runs"]:
        if "error" in r:
            rows.append((r["method"], r["tool"], "failed", "", "", "", "", "", ""))
            continue
        stored = f"{r['stored_bytes']:,}" + ("" if r["tool"] == "mgit" else " (folder)")
        redo = (
            ("identical" if r.get("redo_rc") == 0 else f"rc {r['redo_rc']}")
            if r["tool"] == "mgit"
            else "-"
        )
        diff = f"{r['body_max_abs_diff_vs_mgit']:.2g}" if "body_max_abs_diff_vs_mgit" in r else "-"
        rows.append(
            (
                r["method"],
                r["tool"],
                f"{r['seconds']:.2f} s",
                f"{r['peak_rss'] / 1e6:.0f} MB",
                stored,
                f"{r['accuracy']['sentiment'] * 100:.2f}%",
                f"{r['accuracy']['topic'] * 100:.2f}%",
                redo,
                diff,
            )
        )
    print(
        markdown_table(
            [
                "method",
                "tool",
                "wall time",
                "peak RSS",
                "stored bytes",
                "sentiment acc",
                "topic acc",
                "`--redo`",
                "body max abs diff vs mgit",
            ],
            rows,
            ["l", "l", "r", "r", "r", "r", "r", "l", "r"],
        )
    )
    print()
    ratio_rows = []
    for method in methods:
        a = next(
            (r for r in results["runs"] if r["method"] == method and r["tool"] == "mgit"), None
        )
        b = next(
            (
                r
                for r in results["runs"]
                if r["method"] == method and r["tool"] == "mergekit" and "error" not in r
            ),
            None,
        )
        if a and b:
            ratio_rows.append(
                (
                    method,
                    f"{a['seconds'] / b['seconds']:.2f}x",
                    f"{a['peak_rss'] / b['peak_rss']:.2f}x",
                )
            )
    if ratio_rows:
        print(
            markdown_table(
                ["method", "mgit / mergekit time", "mgit / mergekit peak RSS"],
                ratio_rows,
                ["l", "r", "r"],
            )
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def max_body_diff(a: Path, b: Path) -> float:
    """Largest absolute difference between the ``bert.*`` tensors of two classifier files."""
    import numpy as np
    from safetensors.numpy import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    worst = 0.0
    for k, x in ta.items():
        if k.startswith("bert.") and np.issubdtype(x.dtype, np.floating):
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - tb[k]))))
    return worst


if __name__ == "__main__":
    sys.exit(main())
