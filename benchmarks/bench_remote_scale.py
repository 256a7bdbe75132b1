#!/usr/bin/env python
"""Remotes at scale: push and fetch 1,000 small model lines in one command, before and after.

Builds a bare repository of ``--models`` model lines (default 1,000) through the Python API
(``Repository.import_folder`` of tiny folders: three small float32 tensors each, distinct
content), then, for each code version, in a fresh process:

- ``push --all`` to an empty remote (what ``mgit push REMOTE --all`` runs), and again (nothing
  to send);
- ``fetch`` of every model into a new empty repository (what ``mgit fetch`` runs);

on two remotes: a folder (``path``) and an S3 prefix on moto's S3 server, run in its own
process on 127.0.0.1 (so that client and server do not share one interpreter lock; it serves
one request at a time, see ``tests/s3server.py``; ``--latency-ms`` adds a round trip to each
request, outside that lock, as a real endpoint has). It prints
wall seconds and, for S3, HTTP requests per model (every boto3 API call counted, by operation).

Code versions: ``after`` is this checkout; ``before`` is the committed ``HEAD`` of this
repository's ``mgit/`` (extracted with ``git archive``, a read-only git command, plus the
compiled C modules), or any other source tree with ``--before-code DIR``; ``--no-before``
skips it. Usage::

    .venv/bin/python benchmarks/bench_remote_scale.py [--models 1000] [--latency-ms 0]
        [--only path|s3] [--before-code DIR | --no-before] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["build_repo", "main"]

T0 = 1_700_000_000


def build_repo(path: Path, n: int) -> float:
    """Create a bare repository of ``n`` model lines at ``path``; return the seconds taken."""
    import numpy as np
    from safetensors.numpy import save_file

    from mgit.repo import Repository

    t0 = time.perf_counter()
    repo = Repository.init(path, model="m0000", bare=True)
    folder = path.parent / "folder"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        tensors = {
            "embed.weight": rng.standard_normal((16, 8)).astype(np.float32),
            "layer.0.weight": rng.standard_normal((8, 8)).astype(np.float32),
            "layer.0.bias": rng.standard_normal(8).astype(np.float32),
        }
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps({"model_type": "tiny", "id": i}) + "\n")
        repo.import_folder(folder, model=f"m{i:04d}", message=f"model {i}")
    return time.perf_counter() - t0


# -- the worker: runs one code version against one remote, in its own process -----------------


def _count_requests() -> collections.Counter[str]:
    """Count every boto3 API call (one HTTP request each: mgit turns botocore's retries off)."""
    import botocore.client

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation_name: str, api_params: Any) -> Any:
        with lock:
            counts[operation_name] += 1
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
    return counts


def _worker(args: argparse.Namespace) -> None:
    counts = _count_requests()
    from mgit.remote.fetch import fetch
    from mgit.remote.push import push
    from mgit.repo import Repository

    repo = Repository.open(args.repo)
    out: dict[str, Any] = {}

    def phase(name: str, fn: Any) -> Any:
        counts.clear()
        t0 = time.perf_counter()
        res = fn()
        out[name] = {
            "seconds": time.perf_counter() - t0,
            "requests": sum(counts.values()),
            "by_op": dict(counts),
        }
        return res

    res = phase("push", lambda: push(repo, args.url, all_models=True, tests=False))
    out["push"]["objects"] = res.objects_sent
    out["push"]["refs"] = sum(1 for u in res.updates if u.status != "up-to-date")
    phase("push_again", lambda: push(repo, args.url, all_models=True, tests=False))
    dest = Repository.init(Path(args.work) / "fetched", bare=True)
    fr = phase("fetch", lambda: fetch(dest, args.url))
    out["fetch"]["objects"] = fr.objects_received
    out["fetch"]["models"] = len(fr.heads)
    print("RESULT " + json.dumps(out))


# -- the driver --------------------------------------------------------------------------------


_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests import s3server
latency = {latency!r}
if latency:
    serialized = s3server._Serialized

    class Delayed(serialized):
        # A network round trip: the answer waits, outside the server's one-at-a-time lock.
        def __call__(self, environ, start_response):
            time.sleep(latency)
            return super().__call__(environ, start_response)

    s3server._Serialized = Delayed
s = s3server.MotoS3Server(); s.start(); print(s.endpoint_url, flush=True)
sys.stdin.read()
"""


def _start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(root=str(ROOT), latency=latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("the moto S3 server did not start")
    return proc, url


def _extract_head(dest: Path) -> Path:
    """``git archive HEAD mgit`` into ``dest`` (read-only for the repository), plus the .so files."""
    dest.mkdir(parents=True)
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "mgit"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=data, check=True)
    for so in (ROOT / "mgit").glob("*.so"):
        shutil.copy2(so, dest / "mgit" / so.name)
    return dest


def _run(code: Path, repo: Path, url: str, work: Path, env: dict[str, str]) -> dict[str, Any]:
    work.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--repo",
        str(repo),
        "--url",
        url,
        "--work",
        str(work),
    ]
    child_env = dict(os.environ, **env, PYTHONPATH=str(code))
    proc = subprocess.run(
        cmd, env=child_env, capture_output=True, text=True, cwd=str(work), check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    raise RuntimeError(f"worker failed:\n{proc.stdout}\n{proc.stderr}")


def _print_table(n: int, results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{n} model lines: push --all to an empty remote, push again, fetch all into a new repo"
    )
    head = f"{'remote':<7}{'code':<8}{'phase':<12}{'seconds':>9}{'models/s':>10}{'requests':>10}{'req/model':>11}"
    print(head)
    for key, r in results.items():
        kind, code = key.split(":")
        for ph in ("push", "push_again", "fetch"):
            p = r[ph]
            reqs = f"{p['requests']:>10}" if kind == "s3" else f"{'-':>10}"
            per = f"{p['requests'] / n:>11.2f}" if kind == "s3" else f"{'-':>11}"
            print(
                f"{kind:<7}{code:<8}{ph:<12}{p['seconds']:>9.2f}{n / p['seconds']:>10.0f}{reqs}{per}"
            )
    print()
    for key, r in results.items():
        if key.startswith("s3:"):
            for ph in ("push", "fetch"):
                ops = ", ".join(f"{k} {v}" for k, v in sorted(r[ph]["by_op"].items()))
                print(f"{key} {ph}: {ops}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one measurement)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--before-code", type=Path, help="source tree for 'before' (default: git HEAD)")
    ap.add_argument("--no-before", action="store_true")
    ap.add_argument("--only", choices=["path", "s3"], help="one remote kind only")
    ap.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="add this round-trip time to every S3 request (moto on 127.0.0.1 has none)",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repo", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.s3server import S3_TEST_ENV, make_client

    work = Path(tempfile.mkdtemp(prefix="mgit-bench-scale-"))
    server = None
    try:
        secs = build_repo(work / "repo", args.models)
        print(f"built {args.models} model lines in {secs:.1f} s")
        codes: dict[str, Path] = {}
        if not args.no_before:
            codes["before"] = args.before_code or _extract_head(work / "before-code")
        codes["after"] = ROOT
        env: dict[str, str] = {}
        kinds = [args.only] if args.only else ["path", "s3"]
        if "s3" in kinds:
            server, endpoint = _start_server(args.latency_ms / 1000)
            env = dict(S3_TEST_ENV, MGIT_S3_ENDPOINT_URL=endpoint)
            os.environ.update(env)
            make_client(endpoint).create_bucket(Bucket="bench")
        results: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            for code_name, code in codes.items():
                tag = uuid.uuid4().hex[:8]
                url = str(work / f"remote-{tag}") if kind == "path" else f"s3://bench/{tag}"
                results[f"{kind}:{code_name}"] = _run(
                    code, work / "repo", url, work / f"w-{tag}", env
                )
        _print_table(args.models, results)
        if args.json:
            args.json.write_text(json.dumps({"models": args.models, "results": results}, indent=2))
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
