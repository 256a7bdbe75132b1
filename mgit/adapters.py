"""A stored PEFT LoRA adapter merged into its base model: plain weights, as a state dict or an
exported folder (``mgit export REF DIR --merge-adapter``).

Each target module's weight becomes ``W + s * B @ A`` (``s = alpha / r``, or ``alpha /
sqrt(r)`` with ``use_rslora``; ``rank_pattern`` / ``alpha_pattern`` applied; transposed for
``fan_in_fan_out``), computed in float64 and rounded once to the weight's dtype (to nearest,
ties to even: :func:`mgit.lifecycle.arith.cast_rne`). The adapter's other tensors
(``modules_to_save``: a classifier trained in full) replace the base's. The LoRA reading rules
(which tensors are factors, the scale, the module-to-weight pairing) are those of
:mod:`mgit.diff.lora`, so what ``mgit diff BASE ADAPTER`` measures is what is merged.

The base is the adapter version's parent by an ``adapter`` edge, found by following the
adapter's model line back (its ``version`` parents) to the version that has one; ``base=REF``
overrides it. A DoRA adapter, LoRA bias factors, a factor pair with no base weight, or shapes
that do not fit are refused (:class:`~mgit.errors.AdapterMergeError`): never a silently wrong
model.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit._fs import AtomicFile, check_not_in_mgit_dir, safe_join
from mgit.core import RepoCore
from mgit.errors import AdapterMergeError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from mgit.objects.model import Tree
    from mgit.tensors import ExportResult

__all__ = ["adapter_base", "export_merged", "merged_state_dict", "to_torch"]

#: ``(file path, tensor name)`` of a base tensor -> its merged value, computed when called.
Updates = dict[tuple[str, str], Callable[[], "np.ndarray"]]


def adapter_base(core: RepoCore, oid: str) -> str | None:
    """The base model version of an adapter version: its parent by an ``adapter`` edge, else
    that of the nearest earlier version of its line (``version`` parents), else None."""
    seen: set[str] = set()
    cur: str | None = oid
    while cur is not None and cur not in seen:
        seen.add(cur)
        c = core.read_commit(cur)
        for p in c.parents:
            if p.relation == "adapter":
                return p.oid
        cur = next((p.oid for p in c.parents if p.relation == "version"), None)
    return None


def _plan(core: RepoCore, ref: str, base: str | None) -> tuple[str, Tree, Updates]:
    """(base commit, base tree, the updates the adapter makes to the base's tensors)."""
    import numpy as np

    from mgit.diff.lora import _PEFT_PREFIX, _delta, find_adapter, lora_factors
    from mgit.formats.names import pair
    from mgit.sources import RepoTensorSource

    oid = core.resolve(ref)
    src = RepoTensorSource(core, oid)
    cfg = find_adapter(src)
    if cfg is None:
        raise AdapterMergeError(
            ref, "it is not a LoRA adapter (no adapter_config.json of peft_type LORA)"
        )
    if cfg.use_dora:
        raise AdapterMergeError(
            ref, "DoRA adapters (use_dora) are not merged: the magnitude vectors are not applied"
        )
    base_oid = core.resolve(base) if base is not None else adapter_base(core, oid)
    if base_oid is None:
        raise AdapterMergeError(
            ref,
            "no base model: no parent by an 'adapter' edge",
            hint="pass the base: --base REF (base= in Python)",
        )
    tree = core.commit_tree(base_oid)
    infos = src.tensors()
    factors = lora_factors(infos)
    used = {k for d in factors.values() for ab, k in d.items() if ab in ("A", "B")}
    others = sorted(k for k in infos if k not in used)
    bad = [k for k in others if ".lora_" in infos[k].name]
    if bad:
        raise AdapterMergeError(
            ref, f"LoRA tensors that are not an A/B weight pair (bias factors?): {bad[0]}"
        )

    # Base tensors by bare name, where one file holds it (as the diff pairs them).
    holders: dict[str, list[tuple[str, Any]]] = {}
    for path, e in sorted(tree.files.items()):
        for name, m in e.tensors:
            holders.setdefault(name, []).append((path, e, m))
    unique = {n: hs[0] for n, hs in holders.items() if len(hs) == 1}

    def strip(name: str) -> str:
        return name.removeprefix(_PEFT_PREFIX)

    targets = {mod: strip(mod) + ".weight" for mod in factors}
    paired = pair(list(targets.values()) + [strip(infos[k].name) for k in others], list(unique))
    updates: Updates = {}

    def check_kind(path: str, e: Any, what: str) -> None:
        if e.kind != "safetensors":
            raise AdapterMergeError(
                ref, f"{what}: the base weight is in {path} ({e.kind}); merging needs safetensors"
            )

    for mod in sorted(factors, key=strip):
        d = factors[mod]
        name = paired.get(targets[mod])
        if name is None:
            raise AdapterMergeError(
                ref, f"module {strip(mod)} has no weight in the base {base_oid[:12]}"
            )
        path, e, m = unique[name]
        check_kind(path, e, strip(mod))
        r, alpha = cfg.for_module(strip(mod))
        rows = infos[d["A"]].shape[0] if infos[d["A"]].shape else r
        scale = cfg.scale(rows, alpha)

        def merged(
            m: Any = m, d: dict[str, str] = d, scale: float = scale, mod: str = mod
        ) -> np.ndarray:
            from mgit.lifecycle.arith import CAST_DTYPES, cast_rne
            from mgit.materialize import tensor_array

            delta = _delta(src.load(d["A"]), src.load(d["B"]), scale, "embedding" in d)
            w = tensor_array(core.store, m)
            if (
                cfg.fan_in_fan_out
                and delta.ndim == 2
                or delta.shape != w.shape
                and delta.ndim == 2
                and delta.T.shape == w.shape
            ):
                delta = delta.T
            if delta.shape != w.shape:
                raise AdapterMergeError(
                    ref,
                    f"module {strip(mod)}: B @ A is {list(delta.shape)}, "
                    f"the base weight {list(w.shape)}",
                )
            if m.dtype not in CAST_DTYPES:
                raise AdapterMergeError(
                    ref, f"module {strip(mod)}: base weight of dtype {m.dtype} (quantized?)"
                )
            return cast_rne(np.asarray(w, dtype=np.float64) + delta, m.dtype)

        updates[(path, name)] = merged
    for key in others:
        info = infos[key]
        name = paired.get(strip(info.name))
        if name is None:
            raise AdapterMergeError(
                ref, f"tensor {info.name} (modules_to_save) has no counterpart in the base"
            )
        path, e, m = unique[name]
        check_kind(path, e, info.name)
        if tuple(info.shape) != tuple(m.shape) or info.dtype != m.dtype:
            raise AdapterMergeError(
                ref,
                f"tensor {info.name} is {info.dtype}{list(info.shape)}, "
                f"the base's {m.dtype}{list(m.shape)}",
            )
        updates[(path, name)] = lambda key=key: src.load(key)
    return base_oid, tree, updates


def to_torch(arr: np.ndarray) -> Any:
    """A numpy array (bf16/fp8 through ml_dtypes too) as a torch tensor with the same bits,
    sharing its memory (no float32 detour)."""
    import numpy as np
    import torch

    from mgit.formats.dtypes import dtype_from_numpy, torch_dtype

    name = dtype_from_numpy(arr.dtype)
    if name is None:
        raise UsageError(f"no torch dtype for numpy {arr.dtype}")
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    return torch.from_numpy(flat).view(torch_dtype(name)).reshape(arr.shape)


def merged_state_dict(
    core: RepoCore, ref: str, *, base: str | None = None, torch: bool = False
) -> dict[str, Any]:
    """The base model's tensors with the adapter REF merged in, by the base's keys (as
    ``load_state_dict(base)`` gives them): numpy arrays, or torch tensors.

    Raises:
        AdapterMergeError: REF is not a LoRA adapter, or cannot be merged (module docstring).
    """
    from mgit import tensors
    from mgit.formats.names import tensor_keys

    base_oid, tree, updates = _plan(core, ref, base)
    sd = tensors.load_state_dict(core, base_oid)
    items = [(p, n) for p, e in sorted(tree.files.items()) if e.tensors for n, _ in e.tensors]
    keys = tensor_keys(items)
    for where, compute in updates.items():
        sd[keys[where]] = compute()
    return {k: to_torch(v) for k, v in sd.items()} if torch else sd


def export_merged(
    core: RepoCore,
    ref: str,
    directory: str | os.PathLike[str],
    *,
    base: str | None = None,
    force: bool = False,
) -> ExportResult:
    """Write the base model's files with the adapter REF merged into its weights: a plain model
    folder (the adapter's own files are not written). Safetensors headers are the base's
    (dtypes kept); each file is written under a temp name and renamed into place.

    Raises:
        AdapterMergeError: REF is not a LoRA adapter, or cannot be merged.
        UsageError: ``directory`` has files that would be overwritten (without ``force``).
        UnsafePathError: ``directory`` is inside a repository's ``.mgit``.
    """
    import numpy as np

    from mgit.materialize import tensor_bytes, write_file
    from mgit.tensors import ExportResult

    out = Path(directory).absolute()
    check_not_in_mgit_dir(out, action="export")
    base_oid, tree, updates = _plan(core, ref, base)
    if out.exists() and not out.is_dir():
        raise UsageError(f"not a folder: {directory}")
    if not force:
        clash = [rel for rel in tree.files if (out / rel).exists() or (out / rel).is_symlink()]
        if clash:
            raise UsageError(
                f"export would overwrite {len(clash)} file(s) in {directory}, e.g. {clash[0]}",
                hint="choose an empty folder, or pass --force",
            )
    out.mkdir(parents=True, exist_ok=True)
    touched = {path for path, _ in updates}
    total = 0
    with core.pool() as pool:
        for rel, entry in sorted(tree.files.items()):
            total += entry.size
            if rel not in touched:
                write_file(core.store, entry, out, rel, pool=pool, workers=core.workers)
                continue
            target = safe_join(out, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            assert entry.header is not None
            header = core.store.get(entry.header, kind="chunk")
            with AtomicFile(target, durable=False) as f:
                f.write(struct.pack("<Q", len(header)) + header)
                for name, m in entry.tensors:
                    compute = updates.get((rel, name))
                    if compute is None:
                        f.write(tensor_bytes(core.store, m))
                        continue
                    data = np.ascontiguousarray(compute()).reshape(-1).view(np.uint8)
                    if len(data) != m.nbytes:  # pragma: no cover - shapes are checked in _plan
                        raise AdapterMergeError(
                            ref, f"{rel}:{name}: merged value has the wrong size"
                        )
                    f.write(data)
    return ExportResult(base_oid, str(out), sorted(tree.files), total)
