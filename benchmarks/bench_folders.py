"""The model folders people actually have, on the real MiniLM: what mgit stores and reports.

Builds, from the folders written by ``benchmarks/finetune.py``:

- a Hugging Face hub cache holding the base (``models--ORG--NAME/blobs`` + ``snapshots/REV``
  symlinks, ``refs/main``), imported with ``mgit import --hf-cache`` (no copy);
- the base and the full finetune re-saved as PyTorch zip checkpoints (``pytorch_model.bin`` by
  ``torch.save(model.state_dict())``, as transformers wrote them before safetensors): stored bytes of the ``.bin`` finetune against
  the ``.bin`` base, beside the same pair as safetensors, and a byte-for-byte export check;
- the base cast to bf16 (``model.to(torch.bfloat16).save_pretrained``), stored against the fp32
  base: the bytes a cast costs;
- a PEFT LoRA adapter (r=8 on ``query``/``value``) of the base, imported as an adapter and diffed
  against the base: the effective rank of each target module's delta.

Usage::

    .venv/bin/python benchmarks/finetune.py --out /tmp/ft
    .venv/bin/python benchmarks/bench_folders.py --models /tmp/ft [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HF_REPO = "sentence-transformers/all-MiniLM-L6-v2"
REV = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"  # a made-up commit hash for the snapshot


def mgit(repo: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run the mgit CLI with ``--json`` in ``repo``; returns the parsed output."""
    out = subprocess.run(
        [sys.executable, "-m", "mgit", "-q", "--json", "-C", str(repo), *args],
        check=True, capture_output=True, env=dict(os.environ, **(env or {})),
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def stored(repo: Path, model: str) -> int:
    """Bytes the model line ``model`` (one version here) added to the store."""
    return int(mgit(repo, "stats")["models"][model]["stored_bytes"])


def sha256_tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def hub_cache(src: Path, cache: Path) -> Path:
    """Lay ``src`` out as huggingface_hub does: blobs by content hash, a snapshot of relative
    symlinks, ``refs/main``."""
    repo = cache / ("models--" + HF_REPO.replace("/", "--"))
    snap = repo / "snapshots" / REV
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    for p in sorted(src.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(src)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(p, blob)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snap


def as_bin(src: Path, out: Path) -> None:
    """``src`` re-saved as ``pytorch_model.bin`` the way transformers wrote it before it moved
    to safetensors: ``torch.save(model.state_dict())`` (other files copied)."""
    import torch
    from transformers import AutoModel

    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(AutoModel.from_pretrained(src).state_dict(), out / "pytorch_model.bin")


def as_bf16(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors"))
    AutoModel.from_pretrained(src).to(torch.bfloat16).save_pretrained(out)


def lora(src: Path, out: Path, r: int) -> list[str]:
    """A PEFT LoRA adapter of ``src`` with random (non-zero) B; returns the target modules."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(0)
    cfg = LoraConfig(r=r, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False)
    model = get_peft_model(AutoModel.from_pretrained(src), cfg)
    model.peft_config["default"].base_model_name_or_path = HF_REPO
    model.save_pretrained(out)
    return sorted(n for n, _ in model.named_modules() if n.endswith((".query", ".value")) and "lora" not in n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, required=True, help="output folder of benchmarks/finetune.py")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mgit-folders-") as tmp_s:
        tmp = Path(tmp_s)
        base, ft = args.models / "base", args.models / "ft-full-v1"

        # 1. the hub cache, imported in place
        snap = hub_cache(base, tmp / "hub")
        repo = tmp / "repo"
        mgit(tmp, "init", str(repo), "--model", "minilm")
        env = {"HF_HUB_CACHE": str(tmp / "hub"), "HF_HUB_OFFLINE": "1"}
        c = mgit(repo, "import", "--hf-cache", HF_REPO, "--model", "minilm", "-m", "from the hub cache", env=env)
        meta = c["commit"]["meta"]
        exported = tmp / "exp-hub"
        mgit(repo, "export", "minilm", str(exported))
        res["hf_cache"] = {
            "files": c["files"], "hf_repo": meta.get("hf_repo"), "hf_revision": meta.get("hf_revision"),
            "license": meta.get("license"), "byte_identical": sha256_tree(exported) == sha256_tree(base),
        }
        print(f"hub cache: {c['files']} files imported from {snap.relative_to(tmp)} "
              f"(hf_repo={meta.get('hf_repo')}, license={meta.get('license')}); "
              f"export byte-identical: {res['hf_cache']['byte_identical']}")

        # 2. .bin pair beside the safetensors pair, each in a repository of its own (in one
        # repository the second pair would reuse the first one's chunks: same weights)
        as_bin(base, tmp / "base-bin")
        as_bin(ft, tmp / "ft-bin")
        mgit(repo, "import", str(ft), "--model", "ft-st", "--parent", "minilm", "-m", "ft (safetensors)")
        brepo = tmp / "repo-bin"
        mgit(tmp, "init", str(brepo), "--model", "base-bin")
        mgit(brepo, "import", str(tmp / "base-bin"), "--model", "base-bin", "-m", "base (.bin)")
        mgit(brepo, "import", str(tmp / "ft-bin"), "--model", "ft-bin", "--parent", "base-bin", "-m", "ft (.bin)")
        st, bn = stored(repo, "ft-st"), stored(brepo, "ft-bin")
        mgit(brepo, "export", "ft-bin", str(tmp / "exp-bin"))
        same = sha256_tree(tmp / "exp-bin") == sha256_tree(tmp / "ft-bin")
        res["bin"] = {"safetensors_pair": st, "bin_pair": bn, "ratio": bn / st, "byte_identical": same}
        print(f".bin finetune vs .bin base: {bn:,} bytes stored; the same pair as safetensors: {st:,} "
              f"({bn / st:.3f}x); export byte-identical: {same}")

        # 3. a bf16 cast of the fp32 base
        as_bf16(base, tmp / "bf16")
        size = (tmp / "bf16" / "model.safetensors").stat().st_size
        mgit(repo, "import", str(tmp / "bf16"), "--model", "minilm-bf16", "--parent", "minilm",
             "--relation", "quantize", "-m", "bf16 cast")
        cast = stored(repo, "minilm-bf16")
        mgit(repo, "export", "minilm-bf16", str(tmp / "exp-bf16"))
        same = sha256_tree(tmp / "exp-bf16") == sha256_tree(tmp / "bf16")
        res["bf16_cast"] = {"file_bytes": size, "stored": cast, "fraction": cast / size, "byte_identical": same}
        print(f"bf16 cast of the base: {cast:,} bytes stored for a {size:,}-byte model.safetensors "
              f"({100 * cast / size:.2f}%); export byte-identical: {same}")

        # 4. a LoRA adapter, diffed against its base
        r = 8
        targets = lora(base, tmp / "lora", r)
        mgit(repo, "import", str(tmp / "lora"), "--model", "minilm-lora", "-m", "LoRA r=8", "--guess-parent")
        info = mgit(repo, "show", "minilm-lora")
        d = mgit(repo, "diff", "minilm", "minilm-lora")
        ranks = {m["module"]: m.get("rank") for m in (d.get("lora") or {}).get("modules", [])}
        res["lora"] = {"parents": info["parents"], "targets": len(targets), "ranks": ranks}
        ok = len(ranks) == len(targets) and all(v == r for v in ranks.values())
        print(f"LoRA adapter: parent {info['parents']}; {len(ranks)} target modules diffed "
              f"(expected {len(targets)}), ranks {sorted(set(ranks.values()))} (r={r}): {'ok' if ok else 'MISMATCH'}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
