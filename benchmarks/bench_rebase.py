#!/usr/bin/env python
"""Rebase a real finetune of all-MiniLM-L6-v2 onto a new version of its base (issue #14).

The lineage, in a fresh repository under ``--work``:

- ``minilm`` v1: the real all-MiniLM-L6-v2 (``--models``/base);
- ``sentiment``: a full finetune of it on the generated sentiment task (``--models``/ft-full-v1,
  60 steps, seed 0), imported as a ``finetune`` of ``minilm`` with a ``--recipe`` that retrains it
  from ``{parent_dir}``: ``finetune.py train --parent {parent_dir} --out {out_dir} --seed {seed}
  --steps 60`` (exactly what built it: checked by retraining it from v1 when ``--check-recipe``);
- ``minilm`` v2: a continued training of the base made here (see :func:`build_v2`): the body
  trained further, contrastively (in-batch negatives, mean pooling, as all-MiniLM-L6-v2 itself was
  trained), on generated paraphrase pairs of *news* sentences (the topic task's vocabulary, not
  the sentiment task's); only the body is saved, under v1's tensor names, shapes, dtypes and
  file layout, with v1's tokenizer and config files, so v2 is a drop-in next version of v1.

Then ``mgit rebase sentiment --onto minilm --strategy replay`` (in the repository) and
``--strategy recipe`` (in a copy of the repository made before the first rebase). The tables give
the sentiment eval accuracy (``finetune.py``'s held-out split) of the old finetune, the replayed
and the retrained finetune, of v2's body under the old finetune's classifier head, of v1 under a
head trained alone (``--models``/ft-head when present), and, per rebase, the wall time and the
bytes the rebased version added to ``.mgit/objects``. The replayed tensors are checked against
``v2 + (ft - v1)`` computed here in float64 and rounded to float32.

Usage::

    .venv/bin/python benchmarks/bench_rebase.py --models /tmp/ft [--work DIR] [--json OUT]
        [--v2-steps 200] [--v2-lr 5e-5] [--check-recipe]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import finetune as ft
from _measure import compare_safetensors, markdown_table, run_measured, tree_bytes

V2_SEED = 7
V2_BATCH = 32
V2_SCALE = (
    20.0  # cosine-similarity scale of the in-batch-negatives loss (sentence-transformers' default)
)


def _mgit(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mgit", "-q", "-C", str(repo), *args]


def _pair(rng: random.Random) -> tuple[str, str]:
    """Two renderings of the same generated news event (a paraphrase pair)."""
    label = rng.randrange(2)
    if label:
        subj, verb, obj = (
            rng.choice(ft.TECH_SUBJ),
            rng.choice(ft.TECH_VERB),
            rng.choice(ft.TECH_OBJ),
        )
    else:
        subj, verb, obj = (
            rng.choice(ft.SPORT_SUBJ),
            rng.choice(ft.SPORT_VERB),
            rng.choice(ft.SPORT_OBJ),
        )
    forms = [
        f"{subj} {verb} {obj}",
        f"reports say {subj} {verb} {obj}",
        f"{obj} was the story as {subj} {verb} it",
        f"news: {subj} {verb} {obj}",
        f"{subj} {verb} {obj} {rng.choice(ft.WHEN[3:])}",
    ]
    a, b = rng.sample(forms, 2)
    return a, b


def build_v2(
    base: Path, out: Path, *, steps: int, lr: float, seed: int = V2_SEED
) -> dict[str, Any]:
    """Base v2: the body of ``base`` trained ``steps`` more steps, contrastively, saved body-only.

    Loss: cross-entropy over in-batch cosine similarities (scale 20) of mean-pooled embeddings of
    ``V2_BATCH`` generated paraphrase pairs per step; AdamW (weight decay 0), linear decay, dropout
    on. Every file but ``model.safetensors`` is copied from ``base``; the tensors keep ``base``'s
    names, dtypes and shapes (a tensor the training does not touch, e.g. the pooler, is unchanged).

    Returns:
        Facts about the run (seconds, final loss, tensors changed).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoModel

    t0 = time.time()
    ft._seed_all(seed)
    tok = ft._load_tokenizer(base)
    model = AutoModel.from_pretrained(str(base))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = ft._adamw(params, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
    rng = random.Random(seed)
    losses = []
    for step in range(1, steps + 1):
        pairs: list[tuple[str, str]] = []
        seen: set[str] = set()
        while len(pairs) < V2_BATCH:  # distinct anchors, so the in-batch negatives are negatives
            a, b = _pair(rng)
            if a not in seen:
                seen.add(a)
                pairs.append((a, b))
        enc = tok(
            [p[0] for p in pairs] + [p[1] for p in pairs],
            padding=True,
            truncation=True,
            max_length=ft.MAX_LEN,
            return_tensors="pt",
        )
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        sim = emb[:V2_BATCH] @ emb[V2_BATCH:].T * V2_SCALE
        loss = torch.nn.functional.cross_entropy(sim, torch.arange(V2_BATCH))
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 25 == 0 or step == steps:
            print(
                f"    v2 step {step:4d}/{steps}  loss {sum(losses[-25:]) / len(losses[-25:]):.4f}"
                f"  ({time.time() - t0:.1f}s)",
                flush=True,
            )
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, copy_function=shutil.copy2)
    trained = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors: dict[str, Any] = {}
    changed = 0
    with safe_open(str(base / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
        for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            old = f.get_tensor(name)
            new = trained.get(name)
            if new is None or new.shape != old.shape or not old.is_floating_point():
                new = old
            new = new.to(old.dtype).clone()
            changed += int(not torch.equal(new, old))
            tensors[name] = new
    out_file = out / "model.safetensors"
    out_file.unlink()
    save_file(tensors, str(out_file), metadata=metadata)
    os.chmod(out_file, 0o644)
    return {
        "seconds": round(time.time() - t0, 1),
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "batch_pairs": V2_BATCH,
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "first_loss": round(sum(losses[:10]) / len(losses[:10]), 4),
        "tensors": len(tensors),
        "tensors_changed": changed,
    }


def eval_folder(folder: Path) -> float:
    """Sentiment eval accuracy of a classifier folder."""
    acc, _, _ = ft.evaluate(
        ft._load_classifier(folder), ft._load_tokenizer(folder), ft.make_dataset()
    )
    return acc


def body_with_head(body: Path, head_from: Path, out: Path) -> Path:
    """A classifier folder: ``body``'s encoder (a ``BertModel`` folder) under ``head_from``'s
    classifier (and its config); tokenizer from ``body``."""
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    clf = load_file(str(head_from / "model.safetensors"))
    tensors = {("bert." + k): v for k, v in load_file(str(body / "model.safetensors")).items()}
    for k, v in clf.items():
        if not k.startswith("bert."):
            tensors[k] = v
    missing = [k for k in clf if k not in tensors]
    if missing:
        raise SystemExit(f"{body}: lacks {missing[:3]}")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy2(head_from / "config.json", out / "config.json")
    ft._copy_tokenizer(body, out)
    return out


def replay_check(v1: Path, v2: Path, old_ft: Path, new_ft: Path) -> dict[str, Any]:
    """Compare the replayed finetune with the README's rule, computed here independently: per
    element, v2's bits where the finetune left v1's element untouched, the finetune's where v2
    did, else ``v2 + (ft - v1)`` in float64 rounded to nearest float32; tensors the finetune
    does not share with v1 (the head) are the finetune's. Every tensor of the finetune must be
    there, and nothing else."""
    import numpy as np
    from safetensors.numpy import load_file

    a, b, f, r = (load_file(str(p / "model.safetensors")) for p in (v1, v2, old_ft, new_ft))
    exact = total = 0
    worst = 0.0
    for name, x in f.items():
        y = r[name]
        key = name.removeprefix("bert.")
        if key in a and x.dtype == np.float32:
            o, n = a[key], b[key]
            ref = (n.astype(np.float64) + (x.astype(np.float64) - o)).astype(np.float32)
            bits = lambda t: t.view(np.uint32)
            ref = np.where(bits(x) == bits(o), n, np.where(bits(n) == bits(o), x, ref))
        else:
            ref = x
        total += 1
        if ref.tobytes() == y.tobytes():
            exact += 1
        else:
            worst = max(worst, float(np.max(np.abs(ref.astype(np.float64) - y))))
    return {
        "tensors": total,
        "bit_exact": exact,
        "max_abs_diff": worst,
        "extra_tensors": sorted(set(r) - set(f)),
    }


def v2_drift(v1: Path, v2: Path) -> dict[str, float]:
    """How far v2 moved: ||v2 - v1|| / ||v1|| over the float tensors, and the largest element move."""
    import numpy as np
    from safetensors.numpy import load_file

    a, b = load_file(str(v1 / "model.safetensors")), load_file(str(v2 / "model.safetensors"))
    num = den = 0.0
    worst = 0.0
    for k, x in a.items():
        if np.issubdtype(x.dtype, np.floating):
            d = b[k].astype(np.float64) - x
            num += float((d * d).sum())
            den += float((x.astype(np.float64) ** 2).sum())
            worst = max(worst, float(np.abs(d).max()))
    return {"relative_l2": (num / den) ** 0.5, "max_abs": worst}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, required=True, help="output of benchmarks/finetune.py")
    ap.add_argument(
        "--finetune", default="ft-full-v1", help="folder in --models (default: ft-full-v1)"
    )
    ap.add_argument(
        "--ft-steps",
        type=int,
        default=None,
        help="steps of the recipe (default: the finetune's, from manifest.json, else 60)",
    )
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/bench-rebase"), help="work folder (recreated)"
    )
    ap.add_argument("--v2-steps", type=int, default=200, help="continued-training steps of base v2")
    ap.add_argument("--v2-lr", type=float, default=5e-5, help="peak learning rate of base v2")
    ap.add_argument(
        "--check-recipe",
        action="store_true",
        help="also retrain the finetune from v1 with the recipe and compare it with --finetune",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    ft._quiet_transformers()
    v1 = args.models / "base"
    old_ft = args.models / args.finetune
    for p in (v1, old_ft):
        if not (p / "model.safetensors").is_file():
            raise SystemExit(
                f"{p}: missing; run: .venv/bin/python benchmarks/finetune.py --out {args.models}"
            )
    steps = args.ft_steps
    if steps is None:
        man = args.models / "manifest.json"
        info = json.loads(man.read_text())["models"].get(args.finetune, {}) if man.is_file() else {}
        steps = int(info.get("steps") or 60)
    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    py = shlex.quote(sys.executable)
    script = shlex.quote(str(HERE / "finetune.py"))
    recipe = f"{py} {script} train --parent {{parent_dir}} --out {{out_dir}} --seed {{seed}} --steps {steps}"
    results: dict[str, Any] = {"recipe": recipe, "finetune": args.finetune}

    print(f"[v2] continued training of {v1}: {args.v2_steps} steps, lr {args.v2_lr}", flush=True)
    v2 = work / "minilm-v2"
    results["v2"] = build_v2(v1, v2, steps=args.v2_steps, lr=args.v2_lr)
    results["v2"].update(v2_drift(v1, v2))
    print(f"    {results['v2']}", flush=True)

    if args.check_recipe:
        print("[check] the recipe run on v1 rebuilds the finetune?", flush=True)
        m = run_measured(
            shlex.split(recipe.format(parent_dir=v1, out_dir=work / "recheck", seed=0))
        )
        same = compare_safetensors(
            old_ft / "model.safetensors", work / "recheck" / "model.safetensors"
        )
        results["recipe_check"] = {"seconds": round(m.seconds, 1), **same}
        print(
            f"    {same['identical']}/{same['paired']} tensors bit-identical, max diff "
            f"{same['max_abs_diff']:.3g} ({m.seconds:.1f}s)",
            flush=True,
        )

    repo = work / "repo"
    print(f"[repo] {repo}", flush=True)
    run_measured([sys.executable, "-m", "mgit", "-q", "init", str(repo), "--model", "minilm"])
    run_measured(_mgit(repo, "import", str(v1), "--model", "minilm", "-m", "all-MiniLM-L6-v2 (v1)"))
    run_measured(
        _mgit(
            repo,
            "import",
            str(old_ft),
            "--model",
            "sentiment",
            "--parent",
            "minilm",
            "--relation",
            "finetune",
            "-m",
            "sentiment finetune",
            "--meta",
            "task=sentiment",
            "--recipe",
            recipe,
        )
    )
    run_measured(
        _mgit(
            repo,
            "import",
            str(v2),
            "--model",
            "minilm",
            "-m",
            "v2: contrastive continued training on news paraphrases",
        )
    )
    objects = repo / ".mgit" / "objects"
    repo_recipe = work / "repo-recipe"
    shutil.copytree(repo, repo_recipe, symlinks=True)

    rebases: dict[str, Any] = {}
    for strategy, r in (("replay", repo), ("recipe", repo_recipe)):
        print(f"[rebase --strategy {strategy}]", flush=True)
        before = tree_bytes(r / ".mgit" / "objects")
        m = run_measured(
            _mgit(r, "--json", "rebase", "sentiment", "--onto", "minilm", "--strategy", strategy)
        )
        added = tree_bytes(r / ".mgit" / "objects") - before
        out = work / f"sentiment-{strategy}"
        run_measured(_mgit(r, "export", "sentiment", str(out)))
        show = run_measured(_mgit(r, "--json", "show", "sentiment")).output
        rebases[strategy] = {
            "seconds": round(m.seconds, 2),
            "peak_rss": m.peak_rss,
            "stored_bytes_added": added,
            "folder": str(out),
            "show": json.loads(show) if show.strip().startswith("{") else show,
        }
        print(f"    {m.seconds:.1f}s, +{added:,} bytes stored", flush=True)
    results["rebases"] = rebases
    results["replay_check"] = replay_check(v1, v2, old_ft, Path(rebases["replay"]["folder"]))
    print(f"    replay check: {results['replay_check']}", flush=True)
    results["objects_bytes_total"] = tree_bytes(objects)

    print("[eval]", flush=True)
    rows: list[tuple[str, str, float]] = []
    rows.append(
        (
            "old finetune",
            f"{args.finetune}: v1 + {steps} steps of full finetune",
            eval_folder(old_ft),
        )
    )
    v1_head = body_with_head(v1, old_ft, work / "v1-with-old-head")
    rows.append(
        (
            "base v1 alone",
            "v1's body under the old finetune's classifier head (no training)",
            eval_folder(v1_head),
        )
    )
    v2_head = body_with_head(v2, old_ft, work / "v2-with-old-head")
    rows.append(
        (
            "base v2 alone",
            "v2's body under the old finetune's classifier head (no training)",
            eval_folder(v2_head),
        )
    )
    if (args.models / "ft-head" / "model.safetensors").is_file():
        rows.append(
            (
                "base v1 + trained head",
                "ft-head: v1's body, only the classifier trained",
                eval_folder(args.models / "ft-head"),
            )
        )
    rows.append(
        (
            "replayed finetune",
            "rebase --strategy replay: v2 + (finetune - v1), no training",
            eval_folder(Path(rebases["replay"]["folder"])),
        )
    )
    rows.append(
        (
            "retrained finetune",
            f"rebase --strategy recipe: the recipe ({steps} steps) run on v2",
            eval_folder(Path(rebases["recipe"]["folder"])),
        )
    )
    results["accuracy"] = {name: acc for name, _, acc in rows}

    v2i = results["v2"]
    print()
    print(
        f"Base v2: {v2i['steps']} steps of contrastive training (lr {v2i['lr']}, {V2_BATCH} pairs a step) "
        f"of v1's body: {v2i['tensors_changed']}/{v2i['tensors']} tensors changed, "
        f"||v2 - v1|| / ||v1|| = {v2i['relative_l2']:.4f}, loss {v2i['first_loss']} -> {v2i['final_loss']} "
        f"({v2i['seconds']}s)."
    )
    print()
    print(
        markdown_table(
            ["model", "what", "sentiment eval accuracy"],
            [(n, w, f"{a * 100:.2f}%") for n, w, a in rows],
            ["l", "l", "r"],
        )
    )
    print()
    rc = results["replay_check"]
    print(
        markdown_table(
            ["rebase", "wall time", "peak RSS", "stored bytes added", "note"],
            [
                (
                    "`--strategy replay`",
                    f"{rebases['replay']['seconds']:.2f} s",
                    f"{rebases['replay']['peak_rss'] / 1e6:.0f} MB",
                    f"{rebases['replay']['stored_bytes_added']:,}",
                    f"{rc['bit_exact']}/{rc['tensors']} tensors bit-identical to the rule recomputed here",
                ),
                (
                    "`--strategy recipe`",
                    f"{rebases['recipe']['seconds']:.2f} s",
                    f"{rebases['recipe']['peak_rss'] / 1e6:.0f} MB",
                    f"{rebases['recipe']['stored_bytes_added']:,}",
                    "export v2, retrain, import (peak RSS: the largest process of the tree, the training)",
                ),
            ],
            ["l", "r", "r", "r", "l"],
        )
    )
    print()
    print(f"recipe: {recipe}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
