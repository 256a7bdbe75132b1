"""Quantized tensors: recognise the common stored layouts and dequantize before comparing.

A quantized model stores each weight as integer (or float8) codes plus scales, under names that
depend on the tool. Comparing the codes with the parent's floats gives a meaningless number
(relative change 408.9 for an int8 copy of a model), so :class:`DequantSource` wraps a tensor
source and folds each recognised group of stored tensors into one *logical* tensor whose values
are the dequantized weights, named like the float weight it stands for:

- ``bnb_int8``: ``X.weight`` (I8, out x in), ``X.SCB`` (out,), optional ``X.weight_format``;
  ``w = weight * SCB[:, None] / 127``.
- ``scaled``: ``X.weight`` (int or F8) and ``X.weight_scale`` or ``X.weight_scale_inv``,
  optional ``X.weight_zero_point`` (compressed-tensors, fp8 checkpoints, a torch ``int_repr``
  saved with its scales); ``w = (weight - zero_point) * scale``.
- ``affine``: ``X.weight`` (int) and ``X.scale``, optional ``X.zero_point`` (torch
  ``int_repr()`` with ``q_scale()`` / ``q_zero_point()`` or the per-channel ones);
  ``w = (weight - zero_point) * scale``.
- ``gptq``: ``X.qweight`` (I32, in*bits/32 x out), ``X.qzeros`` (I32, groups x out*bits/32),
  ``X.scales`` (groups x out), optional ``X.g_idx``; 2, 4 or 8 bits;
  ``w = (q - (z + 1)) * scale`` per group (``gptq_v2`` checkpoints: ``q - z``), transposed.
- ``awq``: ``X.qweight`` (I32, in x out*bits/32, in AWQ's column order), ``X.qzeros``,
  ``X.scales``; 4 bits; ``w = (q - z) * scale`` per group, transposed.

A scale broadcasts over the codes when it is one number (per tensor), one per row (per output
channel, ``(out,)`` or ``(out, 1)``), or a grid of blocks (``(out / bo, in / bi)``: groups along
the input, 128 x 128 blocks of fp8 checkpoints). A group whose shapes do not fit is left as it
is. Bits and group size come from the shapes (GPTQ: ``bits = 32 * qzeros.shape[1] / out``,
``in = qweight.shape[0] * 32 / bits``, ``group_size = in / groups``).

A logical tensor keeps the dtype of its codes (``I8``, ``F8_E4M3``, ``I32`` for packed words)
and takes the shape of the weight it stands for; its content id is made of its parts' ids, so
two equal quantized tensors are still recognised unchanged without reading data. Its values load
as float64. Any tensor not in a recognised group passes through untouched.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgit.diff.source import (
    TensorInfo,
    is_float_dtype,
    is_int_dtype,
    read_source_file,
    source_files,
)

__all__ = ["QuantInfo", "DequantSource", "SCHEMES", "unpack_rows", "unpack_cols", "AWQ_ORDER"]

#: Every scheme :class:`DequantSource` recognises.
SCHEMES: tuple[str, ...] = ("bnb_int8", "scaled", "affine", "gptq", "awq")
#: AWQ packs 4-bit columns in this order within each 32-bit word.
AWQ_ORDER: tuple[int, ...] = (0, 2, 4, 6, 1, 3, 5, 7)
_AWQ_REVERSE = (0, 4, 1, 5, 2, 6, 3, 7)


@dataclass(frozen=True)
class QuantInfo:
    """How one logical tensor is stored quantized.

    Attributes:
        scheme: One of :data:`SCHEMES`.
        parts: The keys of the stored tensors it is made of (codes first).
        bits: Bits per code.
        group_size: Input elements sharing one scale (``None``: per tensor or per row).
    """

    scheme: str
    parts: tuple[str, ...]
    bits: int
    group_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"scheme", "bits", "group_size", "parts"}``."""
        return {
            "scheme": self.scheme,
            "bits": self.bits,
            "group_size": self.group_size,
            "parts": list(self.parts),
        }


@dataclass(frozen=True)
class _Group:
    info: QuantInfo
    logical: TensorInfo
    codes: str
    scale: str
    zero: str | None = None
    g_idx: str | None = None
    zero_offset: int = 0


def _bits_of(dtype: str) -> int:
    digits = "".join(c for c in dtype.split("_")[0] if c.isdigit())
    return int(digits) if digits else 8


def _is_code_dtype(dtype: str) -> bool:
    return is_int_dtype(dtype) or dtype.startswith("F8")


def _block_fits(scale: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a scale of shape ``scale`` broadcasts over codes of shape ``shape``."""
    n = math.prod(scale)
    if n == 1:
        return True
    if not shape:
        return False
    if len(scale) == 1 or (len(scale) == len(shape) and all(d == 1 for d in scale[1:])):
        return scale[0] == shape[0]
    if len(scale) == 2 and len(shape) == 2:
        (gm, gn), (m, k) = scale, shape
        if gm == 0 or gn == 0:
            return False
        bm, bn = -(-m // gm), -(-k // gn)
        return -(-m // bm) == gm and -(-k // bn) == gn
    return False


def _expand(s: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast a scale or zero point (see :func:`_block_fits`) to ``shape``."""
    s = np.asarray(s, dtype=np.float64)
    if s.size == 1:
        return s.reshape(())
    if s.ndim == 1 or all(d == 1 for d in s.shape[1:]):
        return s.reshape((shape[0],) + (1,) * (len(shape) - 1))
    m, k = shape
    gm, gn = s.shape
    bm, bn = -(-m // gm), -(-k // gn)
    return np.repeat(np.repeat(s, bm, axis=0), bn, axis=1)[:m, :k]


def unpack_rows(q: np.ndarray, bits: int) -> np.ndarray:
    """Unpack int32 words holding ``32 / bits`` codes each along the rows (GPTQ ``qweight``).

    Code ``k`` of word ``q[i, j]`` (bits ``k * bits`` upwards) is element ``[i * 32/bits + k, j]``.
    """
    pf, mask = 32 // bits, np.uint32((1 << bits) - 1)
    u = np.ascontiguousarray(q).view(np.uint32)
    shifts = (np.arange(pf, dtype=np.uint32) * bits)[None, :, None]
    return ((u[:, None, :] >> shifts) & mask).reshape(u.shape[0] * pf, u.shape[1])


def unpack_cols(q: np.ndarray, bits: int) -> np.ndarray:
    """Unpack int32 words holding ``32 / bits`` codes each along the columns (``qzeros``).

    Code ``k`` of word ``q[i, j]`` is element ``[i, j * 32/bits + k]``.
    """
    pf, mask = 32 // bits, np.uint32((1 << bits) - 1)
    u = np.ascontiguousarray(q).view(np.uint32)
    shifts = (np.arange(pf, dtype=np.uint32) * bits)[None, None, :]
    return ((u[:, :, None] >> shifts) & mask).reshape(u.shape[0], u.shape[1] * pf)


def _awq_order(n: int) -> np.ndarray:
    return np.arange(n).reshape(-1, 8)[:, list(_AWQ_REVERSE)].reshape(-1)


class _Siblings:
    """Find a tensor's sibling by name: in the same file, else unique in the same component."""

    def __init__(self, infos: Mapping[str, TensorInfo]) -> None:
        self.infos = infos
        self.by_file = {(i.file, i.name): k for k, i in infos.items()}
        by_comp: dict[tuple[str, str], list[str]] = defaultdict(list)
        for k, i in infos.items():
            by_comp[(i.component, i.name)].append(k)
        self.by_comp = {c: ks[0] for c, ks in by_comp.items() if len(ks) == 1}

    def find(self, of: TensorInfo, name: str) -> str | None:
        key = self.by_file.get((of.file, name))
        return key if key is not None else self.by_comp.get((of.component, name))


def _content_id(scheme: str, infos: Mapping[str, TensorInfo], parts: tuple[str, ...]) -> str | None:
    ids = [infos[p].content_id for p in parts]
    if any(i is None for i in ids):
        return None
    h = hashlib.sha256(scheme.encode())
    for p, i in zip(parts, ids, strict=True):
        h.update(b"\0" + infos[p].name.rsplit(".", 1)[-1].encode() + b"\0" + str(i).encode())
    return h.hexdigest()


def _logical(
    scheme: str,
    infos: Mapping[str, TensorInfo],
    codes: str,
    parts: tuple[str, ...],
    name: str,
    shape: tuple[int, ...],
) -> TensorInfo:
    c = infos[codes]
    return TensorInfo(name, c.dtype, shape, _content_id(scheme, infos, parts), c.file)


def _gptq_zero_offset(config: Mapping[str, Any] | None) -> int:
    qc = (config or {}).get("quantization_config")
    fmt = qc.get("checkpoint_format") if isinstance(qc, Mapping) else None
    return 0 if fmt == "gptq_v2" else 1


def _packed_group(
    key: str, sib: _Siblings, config: Mapping[str, Any] | None
) -> tuple[str, _Group] | None:
    infos = sib.infos
    q = infos[key]
    stem = q.name[: -len(".qweight")]
    ks, kz = sib.find(q, stem + ".scales"), sib.find(q, stem + ".qzeros")
    if ks is None or kz is None or q.dtype != "I32" or len(q.shape) != 2:
        return None
    s, z = infos[ks], infos[kz]
    if len(s.shape) != 2 or len(z.shape) != 2 or not is_float_dtype(s.dtype) or z.dtype != "I32":
        return None
    groups, out = s.shape
    if out == 0 or (32 * z.shape[1]) % out or z.shape[0] != groups:
        return None
    bits = 32 * z.shape[1] // out
    if bits not in (2, 4, 8):
        return None
    kg = sib.find(q, stem + ".g_idx")
    if q.shape[1] == out:
        scheme, n_in, offset = "gptq", q.shape[0] * 32 // bits, _gptq_zero_offset(config)
    elif q.shape[1] == z.shape[1] and bits == 4 and out % 8 == 0:
        scheme, n_in, offset, kg = "awq", q.shape[0], 0, None
    else:
        return None
    if kg is not None and (infos[kg].shape != (n_in,) or not is_int_dtype(infos[kg].dtype)):
        kg = None
    if kg is None and (groups == 0 or n_in % groups):
        return None
    parts = (key, kz, ks) + ((kg,) if kg is not None else ())
    lkey = key[: -len("qweight")] + "weight"
    if lkey in infos:
        return None
    info = QuantInfo(scheme, parts, bits, n_in // groups if groups else None)
    logical = _logical(scheme, infos, key, parts, stem + ".weight", (out, n_in))
    return lkey, _Group(info, logical, key, ks, kz, kg, offset)


def _scaled_group(key: str, sib: _Siblings) -> tuple[str, _Group] | None:
    infos = sib.infos
    q = infos[key]
    if not _is_code_dtype(q.dtype):
        return None
    stem, _, leaf = q.name.rpartition(".")
    candidates: list[tuple[str, str, str | None]] = []
    if leaf == "weight" and stem:
        candidates.append(("bnb_int8", stem + ".SCB", None))
    candidates.append(("scaled", q.name + "_scale", q.name + "_zero_point"))
    candidates.append(("scaled", q.name + "_scale_inv", q.name + "_zero_point"))
    if leaf in ("weight", "int_repr", "weight_int_repr") and stem:
        candidates.append(("affine", stem + ".scale", stem + ".zero_point"))
    for scheme, scale_name, zero_name in candidates:
        ks = sib.find(q, scale_name)
        if ks is None:
            continue
        s = infos[ks]
        if scheme == "bnb_int8":
            if q.dtype != "I8" or len(q.shape) != 2 or s.shape != (q.shape[0],):
                continue
        elif not _block_fits(s.shape, q.shape):
            continue
        kz = sib.find(q, zero_name) if zero_name is not None else None
        if kz is not None and not _block_fits(infos[kz].shape, q.shape):
            kz = None
        extra = []
        if scheme == "bnb_int8":
            kf = sib.find(q, q.name + "_format")
            if kf is not None and infos[kf].numel == 1:
                extra.append(kf)
        parts = (key, ks) + ((kz,) if kz is not None else ()) + tuple(extra)
        group = None
        if len(s.shape) == 2 and len(q.shape) == 2 and s.shape[1] > 1:
            group = -(-q.shape[1] // s.shape[1])
        info = QuantInfo(scheme, parts, _bits_of(q.dtype), group)
        logical = _logical(scheme, infos, key, parts, q.name, q.shape)
        return key, _Group(info, logical, key, ks, kz)
    return None


class DequantSource:
    """A tensor source whose recognised quantized groups read as dequantized float tensors.

    Args:
        inner: The source to wrap (see :class:`~mgit.diff.source.TensorSource`).
        infos: ``inner.tensors()``, if already listed.

    Its :meth:`tensors` lists every tensor of ``inner`` that is not part of a group, plus one
    logical tensor per group (see the module docstring); :meth:`quant` says how a logical
    tensor is stored. Files, config and labels are those of ``inner``.
    """

    def __init__(self, inner: Any, infos: Mapping[str, TensorInfo] | None = None) -> None:
        """List ``inner``'s tensors and recognise its quantized groups (no data is read)."""
        self.inner = inner
        self.label = inner.label
        raw = dict(infos if infos is not None else inner.tensors())
        self.raw = raw
        self._groups: dict[str, _Group] = {}
        used: set[str] = set()
        sib = _Siblings(raw)
        config: Mapping[str, Any] | None = None
        config_read = False
        for key in sorted(raw):
            info = raw[key]
            if key in used:
                continue
            found = None
            if info.name.endswith(".qweight"):
                if not config_read:  # only GPTQ needs it (checkpoint_format)
                    config, config_read = self.config(), True
                found = _packed_group(key, sib, config)
            elif _is_code_dtype(info.dtype):
                found = _scaled_group(key, sib)
            if found is None:
                continue
            lkey, group = found
            if used & set(group.info.parts):
                continue
            used.update(group.info.parts)
            self._groups[lkey] = group
        self._infos = {k: i for k, i in raw.items() if k not in used}
        for lkey, group in self._groups.items():
            self._infos[lkey] = group.logical

    def tensors(self) -> dict[str, TensorInfo]:
        """Every tensor: the untouched ones and one logical tensor per quantized group."""
        return dict(self._infos)

    def quant(self, key: str) -> QuantInfo | None:
        """How a logical tensor is stored, or ``None`` for a tensor stored as it is."""
        g = self._groups.get(key)
        return g.info if g is not None else None

    @property
    def quantized(self) -> int:
        """How many logical tensors were folded from quantized groups."""
        return len(self._groups)

    def load(self, key: str) -> np.ndarray:
        """One tensor: a logical one dequantized (float64), any other as ``inner`` gives it."""
        g = self._groups.get(key)
        if g is None:
            return self.inner.load(key)
        if g.info.scheme in ("gptq", "awq"):
            return self._load_packed(g)
        q = np.asarray(self.inner.load(g.codes), dtype=np.float64)
        s = np.asarray(self.inner.load(g.scale), dtype=np.float64)
        if g.info.scheme == "bnb_int8":
            return q * (s.reshape(-1, 1) / 127.0)
        if g.zero is not None:
            q = q - _expand(np.asarray(self.inner.load(g.zero), dtype=np.float64), q.shape)
        return q * _expand(s, q.shape)

    def _load_packed(self, g: _Group) -> np.ndarray:
        bits = g.info.bits
        out, n_in = g.logical.shape
        iw = self.inner.load(g.codes)
        iz = unpack_cols(self.inner.load(g.zero), bits)  # type: ignore[arg-type]
        scales = np.asarray(self.inner.load(g.scale), dtype=np.float64)
        if g.info.scheme == "awq":
            order = _awq_order(out)
            w = unpack_cols(iw, bits)[:, order]
            z = iz[:, order]
        else:
            w = unpack_rows(iw, bits)[:n_in]
            z = iz[:, :out]
        if g.g_idx is not None:
            gi = np.asarray(self.inner.load(g.g_idx), dtype=np.int64)
        else:
            gi = np.arange(n_in) // int(g.info.group_size or n_in)
        zf = z.astype(np.float64) + g.zero_offset
        deq = (w.astype(np.float64) - zf[gi]) * scales[gi]
        return np.ascontiguousarray(deq.T)

    def config(self) -> dict[str, Any] | None:
        """``inner``'s config."""
        return self.inner.config() if hasattr(self.inner, "config") else None

    def files(self) -> Any:
        """``inner``'s files (``None`` if it has none)."""
        return source_files(self.inner)

    def read_file(self, path: str, *, max_bytes: int) -> bytes | None:
        """One of ``inner``'s files."""
        return read_source_file(self.inner, path, max_bytes=max_bytes)
