"""A checkpoint bigger than RAM (#18): import, export and one-tensor reads of a sharded
safetensors model of ``--size-gb`` GB, every tool held to ``--mem-limit`` (default 1 GiB) of
memory, side by side with ``zstd -3 -T2``, ``zstd -d`` and ``cp`` in the same run. Usage::

    .venv/bin/python benchmarks/bench_big.py [--size-gb 16] [--work /tmp/big] [--json OUT]

Steps, each in a fresh memory cgroup of its own (cgroup v1 ``memory.limit_in_bytes``, which
counts the page cache too; else cgroup v2 ``memory.max``; else ``systemd-run --scope -p
MemoryMax``), with the inputs evicted from the page cache first (``sync`` then
``posix_fadvise(DONTNEED)`` on exactly the files the step reads), so every tool reads cold:

1. generate ``WORK/src``: ``--shards`` files ``model-0000N-of-0000M.safetensors`` (Llama-7B
   shapes: 32000x4096 embeddings, 4096x4096 attention, 11008x4096 / 4096x11008 MLP, bf16,
   values N(0, 0.02), generated 16 Mi elements (32 MiB) at a time), the
   ``model.safetensors.index.json`` and a ``config.json``; sha256 of each file as it is written;
2. ``zstd -3 -T2`` of all shards (one process, ``.zst`` files kept for step 4);
3. ``mgit init`` + ``mgit import SRC --model big -m v1``;
4. ``zstd -d`` of each ``.zst`` (one process per shard, each output deleted untimed);
5. ``mgit export big OUT``, then sha256 of every exported file against the source's;
6. ``cp -r`` of the source folder;
7. ``Repository.open(repo).load_tensor("big", name)`` in a fresh process, page cache cold
   then warm, for a 4096x4096 and a 4096x11008 tensor (the call timed in process, the whole
   process from outside), the values compared with the source's bytes.

Peak memory per step: the process's peak RSS (GNU time's "Maximum resident set size", i.e.
VmHWM), the cgroup's ``memory.max_usage_in_bytes`` (page cache included, so it sits at the
limit for any tool that streams more than the limit), the cgroup's anonymous memory
(``memory.stat`` ``rss``, sampled every 20 ms) and its OOM kills. Peak disk use is about 2.8x
``--size-gb`` (source + store + ``.zst`` + one shard, then source + store + export).
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GB = 1e9
MiB = 2**20
GNU_TIME = Path("/usr/bin/time")
CG1 = Path("/sys/fs/cgroup/memory")
CG2 = Path("/sys/fs/cgroup")

HIDDEN, INTER, VOCAB = 4096, 11008, 32000
BLOCK = 16 * MiB  # elements generated at a time (32 MiB of bf16)


# ---------------------------------------------------------------------------- the model

def layout(size_gb: float) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of a Llama-like model of about ``size_gb`` GB in bf16."""
    layer = [("self_attn.q_proj.weight", (HIDDEN, HIDDEN)), ("self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
             ("self_attn.v_proj.weight", (HIDDEN, HIDDEN)), ("self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
             ("mlp.gate_proj.weight", (INTER, HIDDEN)), ("mlp.up_proj.weight", (INTER, HIDDEN)),
             ("mlp.down_proj.weight", (HIDDEN, INTER)),
             ("input_layernorm.weight", (HIDDEN,)), ("post_attention_layernorm.weight", (HIDDEN,))]
    per_layer = sum(2 * _numel(s) for _, s in layer)
    fixed = 2 * (2 * VOCAB * HIDDEN + HIDDEN)
    n_layers = max(1, round((size_gb * GB - fixed) / per_layer))
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(n_layers):
        out += [(f"model.layers.{i}.{n}", s) for n, s in layer]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def shard(tensors: list[tuple[str, tuple[int, ...]]], n: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Split in order into ``n`` shards of about equal bytes (as ``save_pretrained`` does with
    ``max_shard_size``)."""
    total = sum(2 * _numel(s) for _, s in tensors)
    shards: list[list] = [[]]
    acc = 0
    for name, shape in tensors:
        size = 2 * _numel(shape)
        if shards[-1] and acc + size / 2 > total * len(shards) / n and len(shards) < n:
            shards.append([])
        shards[-1].append((name, shape))
        acc += size
    return shards


def generate(src: Path, size_gb: float, n_shards: int, seed: int = 0) -> dict:
    """Write the model into ``src``; returns {file: sha256} and the tensor layout. Holds one
    tensor (at most 11008x4096 bf16, 86 MiB, plus the generator's scratch) at a time."""
    try:
        import torch
    except ImportError:  # numpy fallback (slower)
        torch = None
    import numpy as np

    src.mkdir(parents=True, exist_ok=True)
    shards = shard(layout(size_gb), n_shards)
    n = len(shards)
    sums: dict[str, str] = {}
    weight_map: dict[str, str] = {}
    where: dict[str, dict] = {}
    total = 0
    gen = torch.Generator().manual_seed(seed) if torch is not None else None
    rng = np.random.default_rng(seed)
    for k, tensors in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{n:05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shape in tensors:
            size = 2 * _numel(shape)
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + size]}
            off += size
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        h = hashlib.sha256()
        with open(src / fname, "wb") as f:
            for part in (len(hb).to_bytes(8, "little"), hb):
                f.write(part)
                h.update(part)
            for name, shape in tensors:
                numel = _numel(shape)
                for start in range(0, numel, BLOCK):
                    n_el = min(BLOCK, numel - start)
                    if name.endswith("norm.weight"):  # RMSNorm scales: near 1
                        x = np.float32(1) + rng.standard_normal(n_el, np.float32) * np.float32(0.02)
                        block = ((x.view(np.uint32) + 0x8000) >> 16).astype(np.uint16)
                    elif torch is not None:
                        block = torch.empty(n_el, dtype=torch.bfloat16).normal_(0, 0.02, generator=gen)
                        block = block.view(torch.int16).numpy()
                    else:
                        x = rng.standard_normal(n_el, np.float32) * np.float32(0.02)
                        block = ((x.view(np.uint32) + 0x8000) >> 16).astype(np.uint16)
                    f.write(block)
                    h.update(block)
                    del block
                weight_map[name] = fname
                where[name] = {"file": fname, "offset": 8 + len(hb) + header[name]["data_offsets"][0],
                               "nbytes": 2 * numel, "shape": list(shape)}
        sums[fname] = h.hexdigest()
        total += off
        print(f"  {fname}: {(8 + len(hb) + off) / GB:.2f} GB", flush=True)
    index = json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2).encode()
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                         "hidden_size": HIDDEN, "intermediate_size": INTER, "vocab_size": VOCAB,
                         "num_hidden_layers": sum(1 for t in where if t.endswith("q_proj.weight")),
                         "num_attention_heads": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-5,
                         "torch_dtype": "bfloat16", "max_position_embeddings": 4096}, indent=2).encode()
    for fname, data in (("model.safetensors.index.json", index), ("config.json", config)):
        (src / fname).write_bytes(data)
        sums[fname] = hashlib.sha256(data).hexdigest()
    return {"sha256": sums, "tensors": where, "size_gb": size_gb, "shards": n, "seed": seed}


# ---------------------------------------------------------------------------- measuring

def evict(paths) -> None:  # type: ignore[no-untyped-def]
    """Sync, then drop these files' clean pages from the page cache (this box is shared: no
    global drop_caches)."""
    os.sync()
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_under(*roots: Path) -> list[Path]:
    return [p for r in roots for p in (r.rglob("*") if r.is_dir() else [r]) if p.is_file()]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in files_under(path))


class Limit:
    """A fresh memory-limited group per step: the mechanism, the command prefix that puts a
    command in it, and its counters."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.dir: Path | None = None
        if (CG1 / "memory.limit_in_bytes").exists() and os.access(CG1, os.W_OK):
            self.mechanism = "cgroup v1 memory.limit_in_bytes"
            self.dir = CG1 / f"mgit-bench-big-{os.getpid()}-{name}"
            self.dir.mkdir()
            (self.dir / "memory.limit_in_bytes").write_text(str(limit))
            try:  # no swap either, where swap accounting exists
                (self.dir / "memory.memsw.limit_in_bytes").write_text(str(limit))
            except OSError:
                pass
        elif (CG2 / "cgroup.controllers").exists() and "memory" in (CG2 / "cgroup.controllers").read_text():
            self.mechanism = "cgroup v2 memory.max"
            self.dir = CG2 / f"mgit-bench-big-{os.getpid()}-{name}"
            self.dir.mkdir()
            (self.dir / "memory.max").write_text(str(limit))
            (self.dir / "memory.swap.max").write_text("0")
        elif shutil.which("systemd-run"):
            self.mechanism = "systemd-run --scope -p MemoryMax"
        else:
            raise SystemExit("no way to limit memory here (cgroup v1/v2 or systemd-run)")
        self.anon_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prefix(self) -> list[str]:
        if self.dir is None:
            return ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={self.limit}", "-p", "MemorySwapMax=0"]
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.dir)]

    def _read(self, name: str) -> str:
        assert self.dir is not None
        return (self.dir / name).read_text()

    def _anon(self) -> int:
        stat = dict(line.split() for line in self._read("memory.stat").splitlines())
        return int(stat.get("rss", stat.get("anon", 0)))

    def __enter__(self) -> Limit:  # noqa: PYI034
        if self.dir is not None:
            def sample() -> None:
                while not self._stop.wait(0.02):
                    try:
                        self.anon_peak = max(self.anon_peak, self._anon())
                    except (OSError, ValueError):
                        pass
            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def counters(self) -> dict:
        if self.dir is None:
            return {"mechanism": self.mechanism}
        if self.mechanism.startswith("cgroup v1"):
            oom = dict(line.split() for line in self._read("memory.oom_control").splitlines())
            return {"mechanism": self.mechanism, "cgroup_peak": int(self._read("memory.max_usage_in_bytes")),
                    "cgroup_anon_peak_sampled": self.anon_peak, "failcnt": int(self._read("memory.failcnt")),
                    "oom_kills": int(oom.get("oom_kill", 0))}
        events = dict(line.split() for line in self._read("memory.events").splitlines())
        peak = int(self._read("memory.peak")) if (self.dir / "memory.peak").exists() else None
        return {"mechanism": self.mechanism, "cgroup_peak": peak, "cgroup_anon_peak_sampled": self.anon_peak,
                "failcnt": int(events.get("max", 0)), "oom_kills": int(events.get("oom_kill", 0))}

    def remove(self) -> None:
        if self.dir is not None:
            for _ in range(50):
                try:
                    self.dir.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def run_limited(limit: Limit, cmd: list[str], *, cwd: Path | None = None) -> dict:
    """Run ``cmd`` inside ``limit``'s group under GNU time -v: seconds, peak RSS, status, output."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf, tempfile.TemporaryFile("w+b") as out:
        timed = [str(GNU_TIME), "-v", "-o", tf.name, *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run([*limit.prefix(), *timed], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
        seconds = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
        tv = tf.read()
    rss = 0
    for line in tv.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.rsplit(":", 1)[1]) * 1024
    signal = next((line.strip() for line in tv.splitlines() if "terminated by signal" in line), None)
    return {"seconds": seconds, "rss": rss, "returncode": proc.returncode, "signal": signal,
            "output": text[-3000:]}


def step(name: str, limit_bytes: int, cmds: list[list[str]], *, between=None, cwd: Path | None = None,
         check: bool = True) -> dict:  # type: ignore[no-untyped-def]
    """One timed step: ``cmds`` one after the other in one fresh limited group; ``between(i)``
    runs untimed after command ``i``."""
    limit = Limit(limit_bytes, name)
    runs = []
    try:
        with limit:
            for i, cmd in enumerate(cmds):
                r = run_limited(limit, cmd, cwd=cwd)
                runs.append(r)
                if r["returncode"] != 0:
                    break
                if between:
                    between(i)
        counters = limit.counters()
    finally:
        limit.remove()
    res = {"step": name, "commands": [" ".join(c) for c in cmds[:3]] + (["..."] if len(cmds) > 3 else []),
           "seconds": sum(r["seconds"] for r in runs), "rss": max(r["rss"] for r in runs),
           "returncode": next((r["returncode"] for r in runs if r["returncode"]), 0),
           "signal": next((r["signal"] for r in runs if r["signal"]), None), **counters}
    res["output"] = runs[-1]["output"] if runs else ""
    print(f"  {name}: {res['seconds']:.1f} s, peak RSS {res['rss'] / MiB:.0f} MiB, cgroup peak "
          f"{(res.get('cgroup_peak') or 0) / MiB:.0f} MiB (anon {res.get('cgroup_anon_peak_sampled', 0) / MiB:.0f}"
          f" MiB), OOM kills {res.get('oom_kills')}, rc {res['returncode']}", flush=True)
    if check and res["returncode"]:
        print(res.get("output", ""), file=sys.stderr)
    return res


def sha256_files(folder: Path, names: list[str]) -> dict[str, str]:
    def one(name: str) -> str:
        h = hashlib.sha256()
        with open(folder / name, "rb") as f:
            while chunk := f.read(8 * MiB):
                h.update(chunk)
        return h.hexdigest()
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(one, names)))


LOAD = r"""
import hashlib, json, sys, time
t0 = time.perf_counter()
from mgit.repo import Repository
if sys.argv[6] == "preimport":  # what a process that already uses numpy/ml_dtypes pays
    import numpy, ml_dtypes
t1 = time.perf_counter()
repo = Repository.open(sys.argv[1])
t2 = time.perf_counter()
value = repo.load_tensor("big", sys.argv[2])
t3 = time.perf_counter()
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
del value
t4 = time.perf_counter()
value = repo.load_tensor("big", sys.argv[2])
t5 = time.perf_counter()
want = hashlib.sha256()
with open(sys.argv[3], "rb") as f:
    f.seek(int(sys.argv[4]))
    left = int(sys.argv[5])
    while left:
        b = f.read(min(left, 1 << 23))
        want.update(b)
        left -= len(b)
import numpy as np
got = hashlib.sha256(value.view(np.uint8).reshape(-1)).hexdigest()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "load_tensor_s": t3 - t2, "again_s": t5 - t4,
                  "rss_after_load": hwm, "shape": list(value.shape), "dtype": str(value.dtype),
                  "identical": got == want.hexdigest()}))
"""


# ---------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=16)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("/tmp/big"))
    ap.add_argument("--mem-limit-mib", type=int, default=1024)
    ap.add_argument("--reuse", action="store_true", help="keep WORK/src if it was generated with the same size")
    ap.add_argument("--keep", action="store_true", help="keep WORK (source and repository) at the end")
    ap.add_argument("--no-cp", action="store_true")
    ap.add_argument("--load-only", action="store_true",
                    help="only the load_tensor step, on WORK kept by an earlier --keep run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.load_only:
        args.reuse = True
    limit = args.mem_limit_mib * MiB
    work = args.work
    src, repo, out, zdir, cpdir = work / "src", work / "repo", work / "out", work / "zst", work / "cp"
    manifest_path = work / "source.json"
    t_start = time.time()

    need = 2.9 * args.size_gb * GB
    free = shutil.disk_usage(work.parent if not work.exists() else work).free
    if need > free and not args.load_only:
        raise SystemExit(f"needs about {need / GB:.0f} GB of disk, {free / GB:.0f} GB free")
    import mgit

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(mgit.__file__).parent)], check=True)
    mgit_cmd = [sys.executable, "-m", "mgit", "-q"]
    info = {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg(), "mem_limit": limit,
            "python": sys.version.split()[0], "command": " ".join([Path(sys.executable).name, *sys.argv])}

    # 1. the model
    manifest = json.loads(manifest_path.read_text()) if args.reuse and manifest_path.exists() else None
    if manifest and manifest.get("size_gb") == args.size_gb and manifest.get("shards") == args.shards:
        print(f"reusing {src}")
        gen = manifest.get("generate", {})
    else:
        for p in (src, repo, out, zdir, cpdir):
            shutil.rmtree(p, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        print(f"generating {args.size_gb} GB into {src}", flush=True)
        t0 = time.perf_counter()
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            subprocess.run([str(GNU_TIME), "-v", "-o", tf.name, sys.executable, __file__, "--generate-only",
                            "--size-gb", str(args.size_gb), "--shards", str(args.shards), "--work", str(work)],
                           check=True)
            gen_rss = next(int(line.rsplit(":", 1)[1]) * 1024 for line in tf.read().splitlines()
                           if "Maximum resident set size" in line)
        gen = {"seconds": time.perf_counter() - t0, "rss": gen_rss}
        manifest = json.loads(manifest_path.read_text())
        manifest["generate"] = gen
        manifest_path.write_text(json.dumps(manifest))
    sums, where = manifest["sha256"], manifest["tensors"]
    names = sorted(sums)
    shards = [n for n in names if n.endswith(".safetensors")]
    size = du(src)
    n_tensors = len(where)
    print(f"source: {size / GB:.2f} GB, {len(shards)} shards, {n_tensors} tensors; generator "
          f"{gen.get('seconds', 0):.0f} s, peak RSS {gen.get('rss', 0) / MiB:.0f} MiB", flush=True)

    results: dict[str, dict] = {}
    if args.load_only:
        if not (repo / ".mgit").is_dir():
            raise SystemExit(f"--load-only needs {repo}, kept by a run with --keep")
        loads = load_tensors(repo, src, where, limit)
        report_loads(loads)
        if args.json:
            args.json.write_text(json.dumps({"load_tensor": loads, "info": info}, indent=2))
        return

    # 2. zstd -3 -T2 of every shard, kept for zstd -d
    shutil.rmtree(zdir, ignore_errors=True)
    zdir.mkdir()
    evict(files_under(src))
    results["zstd -3 -T2"] = step("zstd-3", limit, [["zstd", "-q", "-3", "-T2", "-f", *[str(src / s) for s in shards],
                                                    "--output-dir-flat", str(zdir)]])
    zsize = du(zdir)
    results["zstd -3 -T2"]["bytes"] = zsize

    # 3. mgit import
    shutil.rmtree(repo, ignore_errors=True)
    subprocess.run([*mgit_cmd, "init", str(repo)], check=True, stdout=subprocess.DEVNULL)
    evict(files_under(src, repo))
    results["mgit import"] = step("import", limit, [[*mgit_cmd, "-C", str(repo), "import", str(src),
                                                     "--model", "big", "-m", "v1"]])
    stats = {}
    if results["mgit import"]["returncode"] == 0:
        stats = json.loads(subprocess.run([*mgit_cmd, "-C", str(repo), "--json", "stats"], check=True,
                                          capture_output=True).stdout)
    stored = int(stats["models"]["big"]["stored_bytes"]) if stats else None
    results["mgit import"]["bytes"] = stored
    results["mgit import"]["repo_du"] = du(repo / ".mgit") if (repo / ".mgit").exists() else du(repo)

    # 4. zstd -d, one shard at a time, each output deleted untimed
    dtmp = work / "zstd-d.out"
    zfiles = [zdir / (s + ".zst") for s in shards]
    evict(zfiles)
    results["zstd -d"] = step("zstd-d", limit, [["zstd", "-q", "-d", "-f", str(z), "-o", str(dtmp)] for z in zfiles],
                              between=lambda i: dtmp.unlink())
    results["zstd -d"]["bytes"] = size
    shutil.rmtree(zdir)
    if dtmp.exists():
        dtmp.unlink()

    # 5. mgit export + sha256 of every file
    identical = None
    if results["mgit import"]["returncode"] == 0:
        shutil.rmtree(out, ignore_errors=True)
        evict(files_under(repo))
        results["mgit export"] = step("export", limit, [[*mgit_cmd, "-C", str(repo), "export", "big", str(out)]])
        results["mgit export"]["bytes"] = size
        if results["mgit export"]["returncode"] == 0:
            t0 = time.perf_counter()
            got = sha256_files(out, names)
            extra = sorted(str(p.relative_to(out)) for p in files_under(out) if str(p.relative_to(out)) not in sums)
            identical = got == sums and not extra
            results["mgit export"]["identical"] = identical
            results["mgit export"]["mismatched"] = [n for n in names if got.get(n) != sums[n]] + extra
            print(f"  sha256 of {len(names)} exported files: {'all equal' if identical else 'MISMATCH'} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        shutil.rmtree(out, ignore_errors=True)

    # 6. cp
    if not args.no_cp:
        shutil.rmtree(cpdir, ignore_errors=True)
        evict(files_under(src))
        results["cp -r"] = step("cp", limit, [["cp", "-r", str(src), str(cpdir)]])
        results["cp -r"]["bytes"] = size
        shutil.rmtree(cpdir, ignore_errors=True)

    # 7. load_tensor in a fresh process, cold then warm
    loads = load_tensors(repo, src, where, limit) if results["mgit import"]["returncode"] == 0 else []
    info["loadavg_end"] = os.getloadavg()
    info["wall_s"] = time.time() - t_start

    report(args, size, len(shards), n_tensors, gen, results, loads, stored, zsize, info)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def load_tensors(repo: Path, src: Path, where: dict, limit: int) -> list[dict]:  # type: ignore[type-arg]
    """``load_tensor`` of two tensors in fresh processes, page cache cold, with and without
    numpy and ml_dtypes imported before the timer."""
    loads = []
    mid = sum(1 for t in where if t.endswith("q_proj.weight")) // 2
    for tname in (f"model.layers.{mid}.self_attn.q_proj.weight", f"model.layers.{mid}.mlp.down_proj.weight"):
        w = where[tname]
        for mode in ("first", "preimport"):
            evict(files_under(repo, src))  # page cache cold
            r = step(f"load-{mode}", limit, [[sys.executable, "-c", LOAD, str(repo), tname, str(src / w["file"]),
                                              str(w["offset"]), str(w["nbytes"]), mode]])
            row = {"tensor": tname, "shape": w["shape"], "nbytes": w["nbytes"], "mode": mode,
                   "process_s": r["seconds"], "rss": r["rss"], "cgroup_peak": r.get("cgroup_peak"),
                   "oom_kills": r.get("oom_kills"), "returncode": r["returncode"]}
            if r["returncode"] == 0:
                row.update(json.loads(r["output"].strip().splitlines()[-1]))
            loads.append(row)
    return loads


def report_loads(loads: list[dict]) -> None:  # type: ignore[type-arg]
    print()
    print("| tensor | in the fresh process | first call (page cache cold) | second call (warm) | "
          "Repository.open | whole process | peak RSS at the load (VmHWM) | identical |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in loads:
        if "load_tensor_s" not in r:
            print(f"| `{r['tensor']}` | {r['mode']} | FAILED rc {r['returncode']} | | | | | |")
            continue
        mode = ("nothing imported before (numpy + ml_dtypes load inside the call)" if r["mode"] == "first"
                else "numpy + ml_dtypes imported before the timer")
        print(f"| `{r['tensor']}` {'x'.join(map(str, r['shape']))} ({r['nbytes'] / MiB:.0f} MiB) | {mode} | "
              f"{r['load_tensor_s'] * 1e3:.1f} ms | {r['again_s'] * 1e3:.1f} ms | {r['open_s'] * 1e3:.1f} ms | "
              f"{r['process_s'] * 1e3:.0f} ms | {r['rss_after_load'] / MiB:.0f} MiB | {r['identical']} |")


def report(args, size, n_shards, n_tensors, gen, results, loads, stored, zsize, info) -> None:  # type: ignore[no-untyped-def]
    zc = results["zstd -3 -T2"]["seconds"]
    zd = results["zstd -d"]["seconds"]
    lim = info["mem_limit"]
    print()
    print(f"Source: {size:,} bytes ({size / GB:.2f} GB), {n_shards} bf16 shards, {n_tensors} tensors; "
          f"memory limit {lim / MiB:.0f} MiB per step ({results['zstd -3 -T2']['mechanism']}); "
          f"{info['nproc']} CPUs, load average {info['loadavg_start'][0]:.1f} at start, "
          f"{info['loadavg_end'][0]:.1f} at end.")
    print()
    print("| step | seconds | MB/s | vs zstd | peak RSS | cgroup peak (incl. page cache) | cgroup anon peak | OOM kills | output bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        vs = ""
        if name == "mgit import":
            vs = f"{r['seconds'] / zc:.2f}x"
        elif name == "mgit export":
            vs = f"{r['seconds'] / zd:.2f}x"
        ok = "" if r["returncode"] == 0 else f" **FAILED rc {r['returncode']} {r.get('signal') or ''}**"
        out = f"{r['bytes']:,}" if r.get("bytes") else ""
        if name == "mgit export" and "identical" in r:
            out += " (sha256 equal)" if r["identical"] else " (**NOT identical**)"
        print(f"| {name}{ok} | {r['seconds']:.1f} | {size / 1e6 / r['seconds']:.0f} | {vs} | {r['rss'] / MiB:.0f} MiB | "
              f"{(r.get('cgroup_peak') or 0) / MiB:.0f} MiB | {r.get('cgroup_anon_peak_sampled', 0) / MiB:.0f} MiB | "
              f"{r.get('oom_kills', '')} | {out} |")
    if stored:
        print()
        print(f"Stored: {stored:,} bytes = {stored / size:.3f} of the source ({size / stored:.3f}x); "
              f"`zstd -3` of the shards: {zsize:,} ({size / zsize:.3f}x); .mgit on disk "
              f"{results['mgit import']['repo_du']:,} bytes.")
    print(f"Generator: {gen.get('seconds', 0):.0f} s, peak RSS {gen.get('rss', 0) / MiB:.0f} MiB.")
    if loads:
        report_loads(loads)
    if args.json:
        args.json.write_text(json.dumps({"size": size, "shards": n_shards, "tensors": n_tensors, "generate": gen,
                                         "steps": results, "load_tensor": loads, "stored_bytes": stored,
                                         "zstd_bytes": zsize, "info": info}, indent=2))


if __name__ == "__main__":
    if "--generate-only" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--generate-only", action="store_true")
        ap.add_argument("--size-gb", type=float)
        ap.add_argument("--shards", type=int)
        ap.add_argument("--work", type=Path)
        a = ap.parse_args()
        m = generate(a.work / "src", a.size_gb, a.shards)
        (a.work / "source.json").write_text(json.dumps(m))
    else:
        main()
