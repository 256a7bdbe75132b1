"""Test helpers: tensors in every safetensors dtype, hand-written safetensors files, model folders,
folder checksums and CLI runners.

Everything is tiny and deterministic (seeded). ``write_safetensors`` writes the file format itself
(8-byte length, JSON header, data) so that tests can also craft malformed files byte by byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "ALL_DTYPES",
    "FLOAT_DTYPES",
    "HEAD_TENSORS",
    "NP_DTYPES",
    "ST_NAMES",
    "bits",
    "cli_runner",
    "finetune_head",
    "list_objects",
    "make_model_folder",
    "make_tensor",
    "model_tensors",
    "objects_of_kind",
    "raw_safetensors",
    "run_cli",
    "run_main",
    "safetensors_bytes",
    "same_array",
    "sha256_tree",
    "st_dtype",
    "write_model_folder",
    "write_safetensors",
]

#: Every safetensors dtype the tests generate.
ALL_DTYPES = (
    "F64",
    "F32",
    "F16",
    "BF16",
    "F8_E4M3",
    "F8_E5M2",
    "I64",
    "I32",
    "I16",
    "I8",
    "U8",
    "BOOL",
)
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")

#: safetensors dtype name -> numpy dtype (bf16 and fp8 through ml_dtypes).
NP_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}
#: numpy dtype name -> safetensors dtype name.
ST_NAMES: dict[str, str] = {dt.name: name for name, dt in NP_DTYPES.items()}


#: Bit patterns that matter to codecs, by element width: NaNs with payloads (quiet and
#: signalling, either sign), -0.0, +-inf, smallest and largest denormals of either sign,
#: largest finite, 1.0, zero; for 1-byte elements the fp8 extremes. One table for every codec
#: test (unit, property, native kernels).
SPECIAL_WORDS: dict[int, list[int]] = {
    8: [
        0x7FF8000000000001, 0xFFF0000000000DEA, 0x7FF0000000000001, 0x8000000000000000,
        0x7FF0000000000000, 0xFFF0000000000000, 0x0000000000000001, 0x000FFFFFFFFFFFFF,
        0x7FEFFFFFFFFFFFFF, 0x3FF0000000000000, 0x800FFFFFFFFFFFFF, 0x0000000000000000,
    ],
    4: [
        0x7FC00001, 0xFFC0BEEF, 0x7F800001, 0x80000000, 0x7F800000, 0xFF800000, 0x00000001,
        0x007FFFFF, 0x7F7FFFFF, 0x3F800000, 0x807FFFFF, 0x00000000,
    ],
    2: [
        0x7E01, 0xFE55, 0x7C01, 0x7FC1, 0x8000, 0x7C00, 0xFC00, 0x0001, 0x03FF, 0x7BFF, 0x7F80,
        0x3F80, 0x83FF, 0x0000,
    ],
    1: [
        0x7F, 0xFF, 0x80, 0x00, 0x01, 0x78, 0x7E,
    ],
}


def roundtrip(enc: Any, data: bytes, base: bytes | None = None) -> bytes:
    """Decode a codec result back, its params passed through JSON as they are when stored."""
    from mgit.codecs import codec_needs_base, decode

    params = json.loads(json.dumps(enc.params))
    return decode(
        enc.codec,
        enc.payload,
        params,
        size=len(data),
        base=base if codec_needs_base(enc.codec) else None,
    )


_UINT = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}

# Bit patterns put at the start of float tensors: -0.0, +inf, -inf, quiet NaN with a payload,
# signalling NaN, negative NaN with a payload, smallest denormal, negative largest denormal.
_SPECIAL_BITS: dict[str, list[int]] = {
    "F64": [
        0x8000000000000000,
        0x7FF0000000000000,
        0xFFF0000000000000,
        0x7FF8000000000001,
        0x7FF0000000000001,
        0xFFF80000DEADBEEF,
        0x0000000000000001,
        0x800FFFFFFFFFFFFF,
    ],
    "F32": [
        0x80000000,
        0x7F800000,
        0xFF800000,
        0x7FC00001,
        0x7F800001,
        0xFFC12345,
        0x00000001,
        0x807FFFFF,
    ],
    "F16": [0x8000, 0x7C00, 0xFC00, 0x7E01, 0x7C01, 0xFE42, 0x0001, 0x83FF],
    "BF16": [0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x7F81, 0xFFC3, 0x0001, 0x807F],
    # e4m3fn has no infinity: 0x7f / 0xff are its NaNs; 0x7e is the largest finite value.
    "F8_E4M3": [0x80, 0x7F, 0xFF, 0x01, 0x87, 0x7E],
    "F8_E5M2": [0x80, 0x7C, 0xFC, 0x7D, 0x7F, 0xFE, 0x01, 0x83],
}


def make_tensor(dtype: str, shape: Sequence[int], seed: int) -> np.ndarray:
    """A deterministic tensor of a safetensors ``dtype``.

    Floats are small normal values with special bit patterns (NaN payloads, -0.0, +-inf,
    denormals) in their first elements; integers span the type's range, min and max included.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    npdt = NP_DTYPES[dtype]
    if dtype == "BOOL":
        return (rng.integers(0, 2, size=n, dtype=np.uint8) == 1).reshape(shape)
    if dtype in _SPECIAL_BITS:
        arr = (rng.standard_normal(n) * 0.5).astype(np.float32).astype(npdt)
        u = arr.view(_UINT[npdt.itemsize])
        specials = _SPECIAL_BITS[dtype]
        k = min(len(specials), n)
        u[:k] = np.array(specials[:k], dtype=np.uint64).astype(_UINT[npdt.itemsize])
        return arr.reshape(shape)
    info = np.iinfo(npdt)
    arr = rng.integers(info.min, info.max, size=n, dtype=npdt, endpoint=True)
    if n >= 2:
        arr[0], arr[1] = info.min, info.max
    return arr.reshape(shape)


def st_dtype(arr: np.ndarray) -> str:
    """The safetensors dtype name of a numpy array."""
    return ST_NAMES[arr.dtype.name]


def bits(arr: Any) -> tuple[str, tuple[int, ...], bytes]:
    """(dtype name, shape, raw little-endian bytes) of a numpy array or torch tensor, for exact
    comparison (NaN != NaN, so arrays are compared by their bits)."""
    if type(arr).__module__.startswith("torch"):
        import torch

        t = arr.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return str(t.dtype).replace("torch.", ""), tuple(t.shape), raw
    a = np.ascontiguousarray(arr)
    return a.dtype.name, tuple(a.shape), a.tobytes()


def same_array(a: Any, b: Any) -> bool:
    """Bit-identical shape and data (dtype names may differ between numpy and torch)."""
    _, sa, ra = bits(a)
    _, sb, rb = bits(b)
    return sa == sb and ra == rb


def raw_safetensors(
    header: bytes | str | Mapping[str, Any], data: bytes = b"", *, length: int | None = None
) -> bytes:
    """Bytes of a safetensors file from a header (dict, or exact text) and a data section.

    ``length`` overrides the 8-byte header length (to craft lies).
    """
    if isinstance(header, Mapping):
        header = json.dumps(header, separators=(",", ":"))
    hb = header.encode("utf-8") if isinstance(header, str) else header
    n = len(hb) if length is None else length
    return struct.pack("<Q", n) + hb + data


def safetensors_bytes(
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    *,
    align: int = 8,
    extra_padding: int = 0,
    order: Sequence[str] | None = None,
) -> bytes:
    """A valid safetensors file: header padded with spaces to ``align`` (plus ``extra_padding``
    spaces), tensors stored in ``order`` (default: the mapping's order)."""
    names = list(order) if order is not None else list(tensors)
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    off = 0
    parts = []
    for name in tensors:  # header key order is the mapping's order; data order may differ
        header[name] = None
    offsets = {}
    for name in names:
        arr = np.ascontiguousarray(tensors[name])
        raw = arr.tobytes()
        offsets[name] = (off, off + len(raw))
        parts.append(raw)
        off += len(raw)
    for name in tensors:
        arr = tensors[name]
        header[name] = {
            "dtype": st_dtype(arr),
            "shape": list(arr.shape),
            "data_offsets": list(offsets[name]),
        }
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (-len(hb)) % align if align else 0
    hb += b" " * (pad + extra_padding)
    return struct.pack("<Q", len(hb)) + hb + b"".join(parts)


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    **kw: Any,
) -> Path:
    """Write :func:`safetensors_bytes` to ``path``; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(safetensors_bytes(tensors, metadata, **kw))
    return p


#: Names of the classifier-head tensors in :func:`model_tensors`.
HEAD_TENSORS = ("classifier.weight", "classifier.bias")


def model_tensors(
    dtype: str = "F32",
    *,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 16,
    vocab: int = 64,
    labels: int = 3,
) -> dict[str, np.ndarray]:
    """A tiny BERT-like state dict, every tensor of ``dtype``, in file order."""
    out: dict[str, np.ndarray] = {}
    k = seed * 1000

    def add(name: str, shape: tuple[int, ...]) -> None:
        nonlocal k
        k += 1
        out[name] = make_tensor(dtype, shape, k)

    add("embeddings.word_embeddings.weight", (vocab, hidden))
    add("embeddings.position_embeddings.weight", (8, hidden))
    for i in range(layers):
        add(f"encoder.layer.{i}.attention.weight", (hidden, hidden))
        add(f"encoder.layer.{i}.attention.bias", (hidden,))
        add(f"encoder.layer.{i}.output.weight", (hidden, hidden))
    add("pooler.weight", (hidden, hidden))
    add("classifier.weight", (labels, hidden))
    add("classifier.bias", (labels,))
    return out


def write_model_folder(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    *,
    sharded: int = 0,
    config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a Hugging Face style folder: ``config.json``, ``tokenizer.json`` and either
    ``model.safetensors`` or ``sharded`` shards ``model-0000X-of-0000N.safetensors`` plus
    ``model.safetensors.index.json``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"model_type": "bert", "architectures": ["BertForSequenceClassification"]}
    cfg.update(config or {})
    (root / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    vocab = {f"tok{i}": i for i in range(40)}
    (root / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "model": {"vocab": vocab}}) + "\n"
    )
    meta = dict(metadata) if metadata is not None else {"format": "pt"}
    if not sharded:
        write_safetensors(root / "model.safetensors", tensors, meta)
        return root
    names = list(tensors)
    per = -(-len(names) // sharded)
    weight_map = {}
    total = 0
    for s in range(sharded):
        part = names[s * per : (s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{sharded:05d}.safetensors"
        write_safetensors(root / fname, {n: tensors[n] for n in part}, meta)
        for n in part:
            weight_map[n] = fname
            total += tensors[n].nbytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return root


def make_model_folder(
    path: str | os.PathLike[str],
    dtype: str = "F32",
    *,
    seed: int = 0,
    sharded: int = 0,
    **shape_kw: Any,
) -> dict[str, np.ndarray]:
    """Generate a model (see :func:`model_tensors`) and write it as a folder; returns its tensors."""
    tensors = model_tensors(dtype, seed=seed, **shape_kw)
    write_model_folder(path, tensors, sharded=sharded)
    return tensors


def finetune_head(tensors: Mapping[str, np.ndarray], seed: int = 99) -> dict[str, np.ndarray]:
    """The same model with only the classifier head changed."""
    out = dict(tensors)
    for i, name in enumerate(HEAD_TENSORS):
        old = tensors[name]
        new = make_tensor(st_dtype(old), old.shape, seed + i)
        # reversed, so that the special values at the start do not line up with the base's
        new = np.ascontiguousarray(new.reshape(-1)[::-1]).reshape(old.shape)
        assert new.tobytes() != old.tobytes()
        out[name] = new
    return out


def sha256_tree(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every regular file under ``folder``, ``.mgit`` excluded."""
    root = Path(folder)
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".mgit"]
        for fn in files:
            p = Path(dirpath) / fn
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def list_objects(mgit_dir: str | os.PathLike[str]) -> set[str]:
    """Every object id stored under ``mgit_dir/objects`` (read straight from the folder)."""
    root = Path(mgit_dir) / "objects"
    out = set()
    if not root.is_dir():
        return out
    for shard in root.iterdir():
        if shard.is_dir() and len(shard.name) == 2:
            for f in shard.iterdir():
                if len(f.name) == 62 and not f.name.endswith(".tmp"):
                    out.add(shard.name + f.name)
    return out


def objects_of_kind(repo: Any, kind: str) -> set[str]:
    """Ids of the stored objects of one kind."""
    return {o for o in repo.store.iter_oids() if repo.store.kind_of(o) == kind}


def cli_runner() -> Any:
    """A click CliRunner (stdout and stderr kept apart)."""
    from click.testing import CliRunner

    return CliRunner()


def run_cli(
    path: str | os.PathLike[str],
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Invoke ``mgit -C PATH ARGS...`` on the click group (library errors propagate raw:
    ``result.exception``)."""
    from mgit.cli import cli

    return cli_runner().invoke(
        cli, ["-C", str(path), *args], input=input, env=dict(env or {}), catch_exceptions=True
    )


def run_main(capsys: Any, path: str | os.PathLike[str] | None, *args: str) -> tuple[int, str, str]:
    """Run ``mgit.cli.main`` (which maps errors to exit codes) and return ``(code, stdout, stderr)``."""
    from mgit.cli import main

    capsys.readouterr()
    argv = (["-C", str(path)] if path is not None else []) + list(args)
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_bert_model(seed: int = 0) -> Any:
    """A tiny transformers ``BertModel`` (2 layers, hidden 32, vocab 64), seeded; imports torch
    and transformers when called."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )  # fmt: skip
    return transformers.BertModel(cfg)


def dag_ancestors(dag: Mapping[str, Sequence[str]], starts: Iterable[str]) -> set[str]:
    """Every node reachable from ``starts`` in a ``{node: parents}`` graph, ``starts`` included
    (the tests' own brute-force reference, independent of ``mgit.lineage``)."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        c = stack.pop()
        if c not in seen:
            seen.add(c)
            stack.extend(dag[c])
    return seen
