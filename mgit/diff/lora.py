"""PEFT LoRA adapters: the effective weight change an adapter makes to its base model.

A folder saved by ``peft`` (``get_peft_model(...).save_pretrained``) holds
``adapter_config.json`` and ``adapter_model.safetensors`` with two factors per target module
(``base_model.model.encoder.layer.0.attention.self.query.lora_A.weight``, ``(r, in)``, and
``...lora_B.weight``, ``(out, r)``). The adapter changes the module's weight by

    W' = W + s * B @ A,    s = alpha / r    (``use_rslora``: alpha / sqrt(r))

where ``r`` and ``alpha`` are the config's ``r`` and ``lora_alpha`` unless ``rank_pattern`` /
``alpha_pattern`` name the module (a pattern matches a module path ending in it, as peft
matches them). ``fan_in_fan_out`` (GPT-2's ``Conv1D``) transposes the product; embedding
adapters (``lora_embedding_A`` / ``lora_embedding_B``) give ``(B @ A)^T``; convolution adapters
multiply the flattened factors.

:func:`diff_lora` pairs each target module's weight with the base side's tensor by the one
name rule (:func:`mgit.formats.names.pair`, so ``base_model.model.`` and task-head prefixes
such as ``bert.`` pair) and measures ``W`` against ``W + s * B @ A``: the L2 norm of the delta,
its relative change to ``W`` and the effective rank of the delta, which is ``r`` for a LoRA
update. DoRA's magnitude vectors are not applied (noted per module).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgit.diff.source import TensorInfo, read_source_file, source_files
from mgit.diff.stats import DEFAULT_RANK_RTOL, TensorStats, compute_stats
from mgit.formats.names import pair

__all__ = ["LoraModule", "LoraDiff", "AdapterConfig", "find_adapter", "diff_lora", "ADAPTER_CONFIG"]

#: The file naming a folder as a PEFT adapter.
ADAPTER_CONFIG = "adapter_config.json"
_FACTOR = re.compile(
    r"^(?P<mod>.+)\.lora_(?P<emb>embedding_)?(?P<ab>[AB])(?:\.[^.]+)?(?:\.weight)?$"
)
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterConfig:
    """What the diff needs from ``adapter_config.json``.

    Attributes:
        path: The config file's path in its version.
        peft_type: ``LORA`` (other types are not adapters this module reads).
        r: The default rank.
        lora_alpha: The default alpha.
        use_rslora: Scale by ``alpha / sqrt(r)`` instead of ``alpha / r``.
        use_dora: Weight-decomposed LoRA (magnitude vectors not applied here).
        fan_in_fan_out: The base layers store ``(in, out)`` weights.
        rank_pattern: Module pattern -> rank.
        alpha_pattern: Module pattern -> alpha.
        target_modules: As configured (a list or a regular expression).
        base_model: ``base_model_name_or_path``.
    """

    path: str
    peft_type: str
    r: int
    lora_alpha: float
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: tuple[tuple[str, int], ...] = ()
    alpha_pattern: tuple[tuple[str, float], ...] = ()
    target_modules: Any = None
    base_model: str | None = None

    def for_module(self, module: str) -> tuple[int, float]:
        """``(r, alpha)`` of one module (``rank_pattern`` / ``alpha_pattern`` applied)."""
        return (
            int(_pattern_value(self.rank_pattern, module, self.r)),
            float(_pattern_value(self.alpha_pattern, module, self.lora_alpha)),
        )

    def scale(self, r: int, alpha: float) -> float:
        """``alpha / r``, or ``alpha / sqrt(r)`` with ``use_rslora``."""
        if r <= 0:
            return 0.0
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``lora.config`` in the diff's schema)."""
        return {
            "path": self.path,
            "peft_type": self.peft_type,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "use_rslora": self.use_rslora,
            "use_dora": self.use_dora,
            "fan_in_fan_out": self.fan_in_fan_out,
            "rank_pattern": dict(self.rank_pattern),
            "alpha_pattern": dict(self.alpha_pattern),
            "target_modules": self.target_modules,
            "base_model_name_or_path": self.base_model,
        }


def _pattern_value(patterns: Sequence[tuple[str, Any]], module: str, default: Any) -> Any:
    for pat, value in patterns:
        try:
            if re.match(rf"(.*\.)?({pat})$", module):
                return value
        except re.error:
            if module == pat or module.endswith("." + pat):
                return value
    return default


@dataclass(frozen=True)
class LoraModule:
    """The effective change one target module's adapter makes.

    Attributes:
        module: The module path (the adapter's name without ``base_model.model.``).
        base_tensor: The key of the paired weight on the base side (``None``: not found).
        r: The module's rank (from the config; the factors' shapes when they disagree).
        alpha: The module's alpha.
        scale: ``alpha / r`` (or ``alpha / sqrt(r)``).
        shape: The delta's shape (the base weight's).
        stats: Base weight ``W`` against ``W + scale * B @ A`` (against zeros when there is no
            base weight: then ``relative_change`` is null); ``rank.effective`` is the delta's
            rank.
        error: Why something could not be computed, or a caveat (DoRA), else ``None``.
    """

    module: str
    base_tensor: str | None
    r: int
    alpha: float
    scale: float
    shape: tuple[int, ...] | None
    stats: TensorStats | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``lora.modules[]``)."""
        st = self.stats.to_json() if self.stats is not None else None
        return {
            "module": self.module,
            "base_tensor": self.base_tensor,
            "r": self.r,
            "alpha": self.alpha,
            "scale": self.scale,
            "shape": list(self.shape) if self.shape is not None else None,
            "l2_delta": st["l2_diff"] if st is not None else None,
            "relative_change": st["relative_change"] if st is not None else None,
            "rank": (st["rank"] or {}).get("effective") if st is not None else None,
            "stats": st,
            "error": self.error,
        }


@dataclass(frozen=True)
class LoraDiff:
    """What a LoRA adapter on one side does to the model on the other.

    Attributes:
        adapter_side: ``"b"`` (``diff BASE ADAPTER``) or ``"a"`` (the adapter is "before":
            the stats then go from ``W + delta`` to ``W``).
        config: The adapter's config.
        modules: One entry per target module, sorted by module path.
        other_tensors: The adapter's tensors that are not LoRA factors (``modules_to_save``).
    """

    adapter_side: str
    config: AdapterConfig
    modules: tuple[LoraModule, ...]
    other_tensors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``lora`` in the diff's schema)."""
        return {
            "adapter_side": self.adapter_side,
            "config": self.config.to_json(),
            "modules": [m.to_json() for m in self.modules],
            "other_tensors": list(self.other_tensors),
        }


def _num(v: Any, default: float) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def find_adapter(source: Any) -> AdapterConfig | None:
    """The LoRA config of a source that is a PEFT adapter (has ``adapter_config.json`` at its
    root or in one component folder), else ``None``."""
    files = source_files(source)
    if not files:
        return None
    paths = sorted(p for p in files if p == ADAPTER_CONFIG or p.endswith("/" + ADAPTER_CONFIG))
    if not paths:
        return None
    path = paths[0]
    data = read_source_file(source, path, max_bytes=1 << 20)
    try:
        v = json.loads(data) if data is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(v, dict) or str(v.get("peft_type", "LORA")).upper() != "LORA":
        return None
    r = int(_num(v.get("r"), 8))
    ranks = v.get("rank_pattern") if isinstance(v.get("rank_pattern"), dict) else {}
    alphas = v.get("alpha_pattern") if isinstance(v.get("alpha_pattern"), dict) else {}
    base = v.get("base_model_name_or_path")
    return AdapterConfig(
        path=path,
        peft_type="LORA",
        r=r,
        lora_alpha=_num(v.get("lora_alpha"), float(r)),
        use_rslora=bool(v.get("use_rslora")),
        use_dora=bool(v.get("use_dora")),
        fan_in_fan_out=bool(v.get("fan_in_fan_out")),
        rank_pattern=tuple((str(k), int(_num(x, r))) for k, x in ranks.items()),
        alpha_pattern=tuple((str(k), _num(x, r)) for k, x in alphas.items()),
        target_modules=v.get("target_modules"),
        base_model=base if isinstance(base, str) else None,
    )


def lora_factors(infos: Mapping[str, TensorInfo]) -> dict[str, dict[str, str]]:
    """Module path (as the adapter names it) -> ``{"A": key, "B": key, "embedding": "1"?}``."""
    out: dict[str, dict[str, str]] = {}
    for key, info in infos.items():
        m = _FACTOR.match(info.name)
        if m is None or info.name.endswith(".bias"):
            continue
        d = out.setdefault(m["mod"], {})
        d[m["ab"]] = key
        if m["emb"]:
            d["embedding"] = "1"
    return {mod: d for mod, d in out.items() if "A" in d and "B" in d}


def _strip(module: str) -> str:
    return module[len(_PEFT_PREFIX) :] if module.startswith(_PEFT_PREFIX) else module


def _delta(a: np.ndarray, b: np.ndarray, scale: float, embedding: bool) -> np.ndarray:
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim == 2 and b64.ndim == 2:
        d = b64 @ a64
        return scale * (d.T if embedding else d)
    if a64.ndim == 4 and b64.ndim == 4:
        out, r = b64.shape[0], b64.shape[1]
        d = b64.reshape(out, r * math.prod(b64.shape[2:])) @ a64.reshape(a64.shape[0], -1)
        return scale * d.reshape((out,) + a64.shape[1:])
    raise ValueError(f"factor shapes {a64.shape} and {b64.shape} are not a LoRA pair")


def diff_lora(
    adapter: Any,
    adapter_infos: Mapping[str, TensorInfo],
    base: Any,
    base_infos: Mapping[str, TensorInfo],
    config: AdapterConfig,
    *,
    adapter_side: str = "b",
    rank_rtol: float = DEFAULT_RANK_RTOL,
) -> LoraDiff:
    """Measure the effective delta of every target module of an adapter against its base.

    Args:
        adapter: The adapter's source (``load(key)``).
        adapter_infos: Its tensors.
        base: The base model's source.
        base_infos: Its tensors.
        config: The adapter's config (:func:`find_adapter`).
        adapter_side: Which side of the diff the adapter is (``"b"`` or ``"a"``).
        rank_rtol: Relative threshold of the effective rank.

    Returns:
        The per-module deltas.
    """
    factors = lora_factors(adapter_infos)
    used = {k for d in factors.values() for ab, k in d.items() if ab in ("A", "B")}
    others = tuple(sorted(k for k in adapter_infos if k not in used))
    bare: dict[str, list[str]] = {}
    for key, info in base_infos.items():
        bare.setdefault(info.name, []).append(key)
    unique = {n: ks[0] for n, ks in bare.items() if len(ks) == 1}
    targets = {mod: _strip(mod) + ".weight" for mod in factors}
    paired = pair(list(targets.values()), list(unique))
    modules: list[LoraModule] = []
    for mod in sorted(factors, key=_strip):
        d = factors[mod]
        path = _strip(mod)
        r, alpha = config.for_module(path)
        notes = []
        fa = adapter_infos[d["A"]]
        rows = fa.shape[0] if fa.shape else r
        if rows != r:
            notes.append(f"adapter_config.json gives r={r}, lora_A has {rows} rows: used {rows}")
            r = rows
        scale = config.scale(r, alpha)
        base_name = paired.get(targets[mod])
        base_key = unique.get(base_name) if base_name is not None else None
        if config.use_dora:
            notes.append("DoRA: the magnitude vector is not applied, the delta is scale * B @ A")
        stats: TensorStats | None = None
        shape: tuple[int, ...] | None = None
        try:
            delta = _delta(adapter.load(d["A"]), adapter.load(d["B"]), scale, "embedding" in d)
            if base_key is None:
                notes.append("no base weight pairs with this module")
                w = np.zeros_like(delta)
            else:
                w = np.asarray(base.load(base_key), dtype=np.float64)
                if config.fan_in_fan_out and delta.ndim == 2:
                    delta = delta.T
                elif delta.shape != w.shape and delta.ndim == 2 and delta.T.shape == w.shape:
                    delta = delta.T
                if delta.shape != w.shape:
                    raise ValueError(f"delta {delta.shape} does not fit base weight {w.shape}")
            shape = tuple(int(x) for x in w.shape)
            w2 = w.reshape(w.shape[0], -1) if w.ndim > 2 else w
            d2 = delta.reshape(w2.shape)
            pa, pb = (w2, w2 + d2) if adapter_side == "b" else (w2 + d2, w2)
            stats = compute_stats(pa, pb, rank=True, rank_rtol=rank_rtol, is_float=True)
        except (ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError) as exc:
            notes.append(f"{type(exc).__name__}: {exc}")
        modules.append(
            LoraModule(
                module=path,
                base_tensor=base_key,
                r=r,
                alpha=alpha,
                scale=scale,
                shape=shape,
                stats=stats,
                error="; ".join(notes) or None,
            )
        )
    return LoraDiff(adapter_side, config, tuple(modules), others)
