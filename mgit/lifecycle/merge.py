"""``mgit merge``: model merging as a recorded, reproducible lineage event.

A merge is a commit whose parents are its inputs (relation ``merge``; the first input first, the
delta base) and whose ``recipe`` says how to redo it: method, parameters, seed, the input and
base commit ids, dtype, ``--only`` globs, mgit's version. It is computed tensor by tensor
(:func:`mgit.lifecycle.arith.write_version`; the maths in :mod:`mgit.lifecycle.mergemath`) in
float64 and cast to the output dtype with round-to-nearest-even, so :func:`redo` reproduces it
bit for bit, DARE included (its drop masks come from a generator keyed by seed and tensor).

Rules: the output has the first input's tensor files (same files, tensor order and header);
files that are not tensors come from the base (else the first input). Tensors that are not
floats, that ``--only`` leaves out, or that only some inputs (or not the base) hold are kept from
the first input; with ``strict`` the last case is refused, as are tensors that the other inputs
hold and the first lacks (otherwise dropped). A shape or dtype that differs across inputs, a
``config.json`` that differs in a key that changes shapes, or a tensor file that is not
safetensors is refused. Nothing is written on any refusal: every check runs before the first
tensor is computed.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mgit.core import CommitInfo, RepoCore
from mgit.errors import UsageError
from mgit.objects.model import FileEntry, ParentLink, TensorManifest, Tree

if TYPE_CHECKING:
    import numpy as np

    from mgit.lifecycle.arith import Streamed
    from mgit.lifecycle.slices import TensorReader

__all__ = [
    "METHODS",
    "SHAPE_KEYS",
    "MergeResult",
    "RedoResult",
    "config_to_args",
    "merge",
    "merge_config",
    "recipe_yaml",
    "redo",
]

METHODS = ("linear", "slerp", "task-arithmetic", "ties", "dare-linear", "dare-ties")
_NEEDS_BASE = ("task-arithmetic", "ties", "dare-linear", "dare-ties")
_NORMALIZE_DEFAULT = {
    "linear": True,
    "task-arithmetic": False,
    "ties": True,
    "dare-linear": False,
    "dare-ties": True,
    "slerp": False,
}
#: config.json keys whose difference changes tensor shapes.
SHAPE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "type_vocab_size",
    "n_embd",
    "n_layer",
    "n_head",
    "d_model",
    "num_layers",
    "ffn_dim",
    "embedding_size",
    "num_labels",
)
_DTYPE_NAMES = {
    "float32": "F32",
    "fp32": "F32",
    "float16": "F16",
    "fp16": "F16",
    "bfloat16": "BF16",
    "bf16": "BF16",
    "float64": "F64",
    "fp64": "F64",
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "F64": "F64",
}
_YAML_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
RECIPE_FORMAT = 1


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote."""

    commit: CommitInfo
    recipe: dict[str, Any]
    merged: int  # tensors computed
    kept: int  # tensors kept from the first input
    dropped: list[str] = field(default_factory=list)  # tensors only other inputs hold
    partial: list[str] = field(default_factory=list)  # tensors kept because some inputs lack them
    new_stored_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "commit": self.commit.to_json(),
            "recipe": self.recipe,
            "merged": self.merged,
            "kept": self.kept,
            "dropped": self.dropped,
            "partial": self.partial,
            "new_stored_bytes": self.new_stored_bytes,
        }


@dataclass(frozen=True)
class RedoResult:
    """What ``merge --redo`` found."""

    commit: str
    identical: bool
    differing: list[str]  # "file:tensor" (or a file path) that differ
    checked: int  # tensors compared

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "commit": self.commit,
            "identical": self.identical,
            "differing": self.differing,
            "checked": self.checked,
        }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mgit")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _check_params(recipe: dict[str, Any]) -> None:
    """Validate a recipe's method and parameters (before anything is read)."""
    method, n = recipe["method"], len(recipe["inputs"])
    if method not in METHODS:
        raise UsageError(f"unknown merge method {method!r}: use one of {', '.join(METHODS)}")
    if n < 2:
        raise UsageError("merge needs at least two inputs")
    if method == "slerp":
        if n != 2:
            raise UsageError(f"slerp merges exactly two inputs, got {n}")
        t = recipe["t"]
        if t is None or not (0.0 <= t <= 1.0):
            raise UsageError("slerp needs --t between 0 and 1")
    if method in _NEEDS_BASE and recipe["base"] is None:
        raise UsageError(f"{method} needs --base REF: the model the task vectors are taken from")
    w = recipe["weights"]
    if len(w) != n:
        raise UsageError(f"{len(w)} weights for {n} inputs: give one --weight per input (or none)")
    if any(not isinstance(x, (int, float)) or math.isnan(x) for x in w):
        raise UsageError("weights must be numbers")
    d = recipe["density"]
    if method in ("ties", "dare-linear", "dare-ties") and any(
        not isinstance(x, (int, float)) or not (0.0 < x <= 1.0) for x in d
    ):
        raise UsageError("--density must be in (0, 1]")
    if recipe["dtype"] is not None and recipe["dtype"] not in _YAML_NAMES:
        raise UsageError(
            f"unknown --dtype {recipe['dtype']}: use float32, float16, bfloat16 or float64"
        )


def _norm_dtype(dt: str | None) -> str | None:
    if dt is None:
        return None
    if dt not in _DTYPE_NAMES:
        raise UsageError(f"unknown --dtype {dt}: use float32, float16, bfloat16 or float64")
    return _DTYPE_NAMES[dt]


def make_recipe(
    core: RepoCore,
    refs: Sequence[str],
    *,
    method: str,
    base: str | None,
    weights: Sequence[float] | None,
    density: float | Sequence[float] | None,
    lam: float | None,
    seed: int | None,
    dtype: str | None,
    only: Sequence[str] | None,
    t: float | None,
    normalize: bool | None,
    strict: bool,
) -> dict[str, Any]:
    """The recipe of a merge (refs resolved to commit ids; defaults filled in), validated."""
    n = len(refs)
    if method not in METHODS:
        raise UsageError(f"unknown merge method {method!r}: use one of {', '.join(METHODS)}")
    if n < 2:
        raise UsageError("merge needs at least two inputs")
    dens = (
        list(density)
        if isinstance(density, (list, tuple))
        else [density if density is not None else 1.0] * n
    )
    if len(dens) != n:
        raise UsageError(f"{len(dens)} densities for {n} inputs")
    recipe: dict[str, Any] = {
        "format": RECIPE_FORMAT,
        "method": method,
        "inputs": [core.resolve(r) for r in refs],
        "input_refs": list(refs),
        "base": core.resolve(base) if base is not None else None,
        "base_ref": base,
        "weights": [float(w) for w in weights] if weights else [1.0] * n,
        "density": [float(x) for x in dens],
        "lambda": float(lam) if lam is not None else 1.0,
        "t": float(t) if t is not None else None,
        "normalize": bool(normalize) if normalize is not None else _NORMALIZE_DEFAULT[method],
        "seed": int(seed) if seed is not None else 0,
        "dtype": _norm_dtype(dtype),
        "only": list(only or []),
        "strict": bool(strict),
        "mgit_version": _version(),
    }
    _check_params(recipe)
    return recipe


# -- planning: everything checked before a tensor is computed -----------------------------------


def _st_files(tree: Tree, oid: str) -> dict[str, FileEntry]:
    out = {}
    for path, e in tree.files.items():
        if e.kind == "safetensors" and e.tensors:
            out[path] = e
        elif e.tensors:
            raise UsageError(
                f"merge reads safetensors files only: {path} of {oid[:12]} holds tensors in another format"
            )
    return out


class _Index:
    """One version's tensors: by (file, name); by name when one file holds it; and by the name
    with its task-head prefixes removed (:func:`mgit.formats.names.strip_head_prefix`) when
    one tensor has that key, so a ``BertForSequenceClassification`` finetune (``bert.x``)
    pairs with its ``BertModel`` base (``x``), as storage and diff pair them."""

    def __init__(self, tree: Tree, oid: str) -> None:
        from mgit.formats.names import strip_head_prefix

        self.by_key: dict[tuple[str, str], TensorManifest] = {}
        names: dict[str, list[TensorManifest]] = {}
        stripped: dict[str, list[TensorManifest]] = {}
        for path, e in _st_files(tree, oid).items():
            for name, m in e.tensors:
                self.by_key[(path, name)] = m
                names.setdefault(name, []).append(m)
                stripped.setdefault(strip_head_prefix(name), []).append(m)
        self.by_name = {n: ms[0] for n, ms in names.items() if len(ms) == 1}
        self.by_stripped = {n: ms[0] for n, ms in stripped.items() if len(ms) == 1}
        self._strip = strip_head_prefix

    def get(self, file: str, name: str) -> TensorManifest | None:
        return (
            self.by_key.get((file, name))
            or self.by_name.get(name)
            or self.by_stripped.get(self._strip(name))
        )


def _read_json(core: RepoCore, tree: Tree, path: str) -> Any:
    e = tree.files.get(path)
    if e is None or e.kind != "blob":
        return None
    data = b"".join(core.store.get(oid, kind="chunk") for oid in e.chunks)
    try:
        return json.loads(data)
    except ValueError:
        return None


@dataclass
class _Plan:
    recipe: dict[str, Any]
    template: str  # first input
    idx: list[_Index]  # inputs
    base: _Index | None
    merge: set[tuple[str, str]]  # (file, name) of tensors computed
    dropped: list[str]
    partial: list[str]
    overrides: dict[str, FileEntry]
    slice_elements: int = 0  # elements per slice (a multiple of mergemath.SUM_BLOCK)
    select_limit: int = 0  # keys TIES' threshold select may hold per input

    def __post_init__(self) -> None:
        from mgit.lifecycle.mergemath import SUM_BLOCK

        step = self.slice_elements or SLICE_ELEMENTS
        self.slice_elements = max(SUM_BLOCK, step - step % SUM_BLOCK)
        self.select_limit = max(1, self.select_limit or SELECT_LIMIT)


def _plan(core: RepoCore, recipe: dict[str, Any]) -> _Plan:
    from mgit.formats.dtypes import is_floating_point

    trees = [core.commit_tree(oid) for oid in recipe["inputs"]]
    idx = [_Index(t, oid) for t, oid in zip(trees, recipe["inputs"])]
    base_tree = core.commit_tree(recipe["base"]) if recipe["base"] else None
    bidx = _Index(base_tree, recipe["base"]) if base_tree is not None else None
    cfgs = [(r, _read_json(core, t, "config.json")) for r, t in zip(recipe["input_refs"], trees)]
    if base_tree is not None:
        cfgs.append(
            (recipe["base_ref"] or recipe["base"][:12], _read_json(core, base_tree, "config.json"))
        )
    first_ref, first_cfg = cfgs[0]
    for ref, cfg in cfgs[1:]:
        if isinstance(first_cfg, dict) and isinstance(cfg, dict):
            for k in SHAPE_KEYS:
                if first_cfg.get(k) != cfg.get(k):
                    raise UsageError(
                        f"config.json differs in {k}: {first_cfg.get(k)!r} ({first_ref}) vs {cfg.get(k)!r} ({ref});"
                        " the models do not have the same shapes"
                    )
    strict, only = recipe["strict"], recipe["only"]
    merge: set[tuple[str, str]] = set()
    partial: list[str] = []
    first = idx[0]
    for (file, name), m in sorted(first.by_key.items()):
        key = f"{file}:{name}"
        others = [ix.get(file, name) for ix in idx[1:]]
        if bidx is not None:
            others.append(bidx.get(file, name))
        for o in others:
            if o is not None and (o.shape != m.shape or o.dtype != m.dtype):
                raise UsageError(
                    f"tensor {name} differs across inputs: {m.dtype}{list(m.shape)} vs {o.dtype}{list(o.shape)}"
                )
        if any(o is None for o in others):
            if strict:
                raise UsageError(f"tensor {name} is missing from some inputs (--strict)")
            partial.append(key)
            continue
        if not is_floating_point(m.dtype):
            continue
        if only and not any(
            fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(key, g) for g in only
        ):
            continue
        merge.add((file, name))
    dropped = []
    for ix in idx[1:]:
        for file, name in ix.by_key:
            if first.get(file, name) is None and f"{file}:{name}" not in dropped:
                if strict:
                    raise UsageError(
                        f"tensor {name} of {file} is missing from the first input (--strict)"
                    )
                dropped.append(f"{file}:{name}")
    overrides: dict[str, FileEntry] = {}
    if base_tree is not None:
        tmpl_st = _st_files(trees[0], recipe["inputs"][0])
        for path, e in base_tree.files.items():
            if not e.tensors and path not in tmpl_st:
                overrides[path] = e
    return _Plan(recipe, recipe["inputs"][0], idx, bidx, merge, sorted(dropped), partial, overrides)


# -- computing one tensor, slice by slice ----------------------------------------------------------

#: Elements of each input read and combined at a time (a multiple of
#: :data:`mgit.lifecycle.mergemath.SUM_BLOCK`): 2 MiB per float64 work array, an fp32 chunk
#: (4 MiB) in four slices (decoded once). The result does not depend on it (tested).
SLICE_ELEMENTS = 1 << 18
#: At most this many magnitude keys of a task vector are held by TIES' threshold select.
SELECT_LIMIT = 1 << 20


def _compute(core: RepoCore, plan: _Plan, file: str, name: str) -> np.ndarray | Streamed | None:
    """The merged tensor ``file:name``: a float64 array when it fits in one slice, else a
    :class:`~mgit.lifecycle.arith.Streamed` value computed slice by slice; None to keep the
    first input's bytes."""
    import numpy as np

    from mgit.lifecycle.arith import Streamed
    from mgit.lifecycle.slices import TensorReader

    if (file, name) not in plan.merge:
        return None

    def reader(ix: _Index) -> TensorReader:
        m = ix.get(file, name)
        assert m is not None
        return TensorReader(core.store, m)

    readers = [reader(ix) for ix in plan.idx]
    base = reader(plan.base) if plan.base is not None else None
    m0 = readers[0].manifest
    pieces = _pieces(plan, file, name, readers, base)
    if readers[0].numel > plan.slice_elements:
        return Streamed(pieces)
    out = list(pieces)
    return (out[0] if out else np.zeros(0)).reshape(m0.shape)


def _pieces(
    plan: _Plan, file: str, name: str, readers: list[TensorReader], base: TensorReader | None
) -> Iterator[np.ndarray]:
    """The merged tensor as float64 slices of ``plan.slice_elements`` elements, in order.

    Every method is elementwise once its whole-tensor quantities are known, and those take
    passes of their own over the slices: TIES' top-k thresholds
    (:func:`~mgit.lifecycle.mergemath.top_thresholds`, exact) and slerp's dot products
    (:func:`~mgit.lifecycle.mergemath.slerp_sums`). DARE's masks are cut from each input's
    whole-tensor mask (:func:`~mgit.lifecycle.mergemath.dare_mask`). So the slices give the
    tensor the whole-tensor functions of :mod:`mgit.lifecycle.mergemath` give, bit for bit.
    """
    import numpy as np

    from mgit.lifecycle import mergemath as mm
    from mgit.lifecycle.slices import slice_ranges

    r = plan.recipe
    method, w, norm, lam = r["method"], r["weights"], r["normalize"], r["lambda"]
    n = readers[0].numel
    ranges = list(slice_ranges(n, plan.slice_elements))
    whole = len(ranges) == 1
    held: dict[tuple[int, int], tuple[list[np.ndarray], np.ndarray | None]] = {}

    def load(a: int, b: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """float64 copies of each input's (and the base's) slice; a one-slice tensor is read
        once for all passes (the last pass may change the arrays in place)."""
        if (a, b) in held:
            return held[(a, b)]
        with np.errstate(all="ignore"):  # NaN payloads of the inputs kept as they are
            xs = [rd.read(a, b).astype(np.float64) for rd in readers]
            bs = base.read(a, b).astype(np.float64) if base is not None else None
        if whole:
            held[(a, b)] = (xs, bs)
        return xs, bs

    # NaN/inf in the weights propagate as IEEE says. No errstate block spans a yield: the
    # generator may be resumed on another worker thread (errstate is a context variable).
    coefs: tuple[float, float] = (1.0, 0.0)
    thresholds: list[tuple[int, int] | None] = [None] * len(readers)
    if method == "slerp":
        with np.errstate(all="ignore"):
            coefs = mm.slerp_coefs(
                mm.slerp_sums((xs[0], xs[1]) for xs, _ in (load(a, b) for a, b in ranges)), r["t"]
            )
    elif method == "ties":
        ks = [int(float(d) * n) for d in r["density"]]

        def scan() -> Iterator[list[np.ndarray]]:
            for a, b in ranges:
                xs, bs = load(a, b)
                yield [mm.magnitude_keys(x - bs) for x in xs]

        with np.errstate(all="ignore"):
            thresholds = mm.top_thresholds(scan, n, ks, plan.select_limit)
    seen = [0] * len(readers)  # per input: entries at its TIES threshold met so far
    for a, b in ranges:
        xs, bs = load(a, b)
        with np.errstate(all="ignore"):
            if method == "linear":
                merged = mm.linear(xs, w, norm)
            elif method == "slerp":
                merged = coefs[0] * xs[0] + coefs[1] * xs[1]
            else:
                assert bs is not None
                tvs = xs
                for x in tvs:  # task vectors, in place
                    x -= bs
                if method == "task-arithmetic":
                    merged = mm.linear(tvs, w, norm)
                elif method == "ties":
                    for i, tv in enumerate(tvs):
                        seen[i] = mm.trim_slice(tv, thresholds[i], seen[i])
                    merged = mm.ties_merge(tvs, w, norm)
                else:
                    for i, (tv, d) in enumerate(zip(tvs, r["density"])):
                        if float(d) < 1.0:  # densities are in (0, 1]
                            mm.dare_apply(
                                tv, d, mm.dare_mask(r["seed"], file, name, i, a, b - a, d)
                            )
                    merged = (
                        mm.linear(tvs, w, norm)
                        if method == "dare-linear"
                        else mm.ties_merge(tvs, w, norm)
                    )
                del tvs
                merged *= lam
                merged += bs
        del xs, bs
        held.clear()
        yield merged


def _out_dtype(plan: _Plan, file: str, name: str, m: TensorManifest) -> str:
    dt = plan.recipe["dtype"]
    return dt if dt is not None and (file, name) in plan.merge else m.dtype


# -- the verbs ----------------------------------------------------------------------------------


def merge(
    core: RepoCore,
    refs: Sequence[str],
    *,
    model: str,
    message: str,
    method: str,
    base: str | None = None,
    weights: Sequence[float] | None = None,
    density: float | Sequence[float] | None = None,
    lam: float | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    only: Sequence[str] | None = None,
    t: float | None = None,
    normalize: bool | None = None,
    strict: bool = False,
    meta: dict[str, str] | None = None,
    lookahead: int = 1,
) -> MergeResult:
    """Merge ``refs`` into a new version of ``model`` (see the module docstring).

    Raises:
        UsageError: bad parameters or incompatible inputs (nothing is written).
    """
    from mgit.refs.store import check_name

    check_name(model, what="model name")
    if not message:
        raise UsageError("give -m MSG: the commit message")
    recipe = make_recipe(
        core,
        refs,
        method=method,
        base=base,
        weights=weights,
        density=density,
        lam=lam,
        seed=seed,
        dtype=dtype,
        only=only,
        t=t,
        normalize=normalize,
        strict=strict,
    )
    return _write(core, recipe, model=model, message=message, meta=meta, lookahead=lookahead)


def _write(
    core: RepoCore,
    recipe: dict[str, Any],
    *,
    model: str,
    message: str,
    meta: dict[str, str] | None,
    lookahead: int = 1,
    first: ParentLink | None = None,
    update_ref: bool = True,
) -> MergeResult:
    """Compute and commit a merge. ``first``: a parent placed before the inputs (a redone
    merge's previous version, relation ``version``: the delta base); ``update_ref=False``
    writes the commit without moving the line (the rebase cascade gates it first)."""
    from mgit.lifecycle.arith import write_version

    plan = _plan(core, recipe)
    parents: list[ParentLink] = [first] if first is not None else []
    for oid in recipe["inputs"]:
        if all(p.oid != oid for p in parents):
            parents.append(ParentLink(oid, "merge"))
    got: list[Any] = []
    info = write_version(
        core,
        model=model,
        message=message,
        parents=parents,
        base_ref=plan.template,
        tensors=lambda f, n, m: _compute(core, plan, f, n),
        meta={"merge_method": recipe["method"], **(meta or {})},
        recipe=recipe,
        dtype=lambda f, n, m: _out_dtype(plan, f, n, m),
        files_override=plan.overrides,
        lookahead=lookahead,
        on_stats=got.append,
        update_ref=update_ref,
    )
    total = sum(len(ix.by_key) for ix in plan.idx[:1])
    return MergeResult(
        info,
        recipe,
        len(plan.merge),
        total - len(plan.merge),
        plan.dropped,
        plan.partial,
        got[0].new_bytes if got else 0,
    )


def redo(core: RepoCore, ref: str) -> RedoResult:
    """Recompute the merge ``ref`` from its recipe and compare it with the stored tree, tensor
    by tensor and file by file (nothing is written).

    Raises:
        UsageError: ``ref`` is not a merge made by ``mgit merge``.
    """
    from mgit.lifecycle.arith import build_header, out_pieces, stored_slices

    oid = core.resolve(ref)
    c = core.read_commit(oid)
    recipe = c.recipe
    if (
        not isinstance(recipe, dict)
        or recipe.get("method") not in METHODS
        or "inputs" not in recipe
    ):
        raise UsageError(f"{ref} is not a merge made by 'mgit merge' (it has no merge recipe)")
    if recipe.get("format") != RECIPE_FORMAT:
        raise UsageError(f"{ref}: unknown merge recipe format {recipe.get('format')!r}")
    _check_params(recipe)
    plan = _plan(core, recipe)
    tree = core.commit_tree(oid)
    tmpl = core.commit_tree(plan.template)
    expect: dict[str, FileEntry] = {**tmpl.files, **plan.overrides}
    differing: list[str] = []
    checked = 0
    for path in sorted(set(expect) | set(tree.files)):
        got, want = tree.files.get(path), expect.get(path)
        if got is None or want is None:
            differing.append(path)
            continue
        if not (want.kind == "safetensors" and want.tensors):
            if (got.xxh, got.size, got.kind) != (want.xxh, want.size, want.kind):
                differing.append(path)
            continue
        order = list(want.tensors)
        if [n for n, _ in got.tensors] != [n for n, _ in order]:
            differing.append(path)
            continue
        want_dt = {n: _out_dtype(plan, path, n, m) for n, m in order}
        assert want.header is not None and got.header is not None
        hdr = build_header(core.store.get(want.header, kind="chunk"), want_dt, order)
        if core.store.get(got.header, kind="chunk") != hdr:
            differing.append(f"{path} (header)")
        for (name, m), (_, gm) in zip(order, got.tensors):
            checked += 1
            v = _compute(core, plan, path, name)
            if v is None and want_dt[name] == m.dtype:
                same = gm.content_id == m.content_id
            else:
                v = stored_slices(core.store, m) if v is None else v
                same = _same_bytes(out_pieces(v, m, want_dt[name], name), gm, want_dt[name], core)
            if not same:
                differing.append(f"{path}:{name}")
    return RedoResult(oid, not differing, differing, checked)


def _same_bytes(pieces: Iterator[Any], stored: TensorManifest, dtype: str, core: RepoCore) -> bool:
    """Whether the recomputed bytes (in pieces) are those of the stored tensor, read slice by
    slice alongside."""
    from mgit.lifecycle.slices import TensorReader

    if stored.dtype != dtype:
        return False
    reader = TensorReader(core.store, stored)
    at = 0
    for piece in pieces:
        n = len(piece) // stored.itemsize
        if at + n > stored.numel or bytes(reader.read_bytes(at, at + n)) != bytes(piece):
            return False
        at += n
    return at == stored.numel


# -- YAML recipes -------------------------------------------------------------------------------

_TOP_KEYS = {
    "merge_method",
    "models",
    "base_model",
    "parameters",
    "dtype",
    "slices",
    "tokenizer_source",
}
_MODEL_KEYS = {"model", "parameters"}
_MODEL_PARAMS = {"weight", "density"}
_GLOBAL_PARAMS = {"lambda", "normalize", "t", "density", "weight", "seed", "strict", "only"}


def config_to_args(text: str) -> dict[str, Any]:
    """A mergekit YAML recipe (the subset of :mod:`mgit.lifecycle.yaml_subset`) as ``merge``'s
    keyword arguments (``refs`` included).

    Raises:
        UsageError: malformed YAML, unknown keys, or a missing field.
    """
    from mgit.lifecycle.yaml_subset import load

    doc = load(text)
    if not isinstance(doc, dict):
        raise UsageError("merge config: expected a YAML mapping")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown or "slices" in doc or "tokenizer_source" in doc:
        bad = unknown or [k for k in ("slices", "tokenizer_source") if k in doc]
        raise UsageError(f"merge config: unsupported key(s) {', '.join(bad)}")
    method = doc.get("merge_method")
    if not isinstance(method, str):
        raise UsageError("merge config: merge_method is missing")
    method = method.replace("_", "-")
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise UsageError("merge config: models must be a list of {model: REF}")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict) or set(params) - _GLOBAL_PARAMS:
        raise UsageError(
            f"merge config: unsupported parameters {sorted(set(params) - _GLOBAL_PARAMS)}"
        )
    refs, weights, dens = [], [], []
    for item in models:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("model"), str)
            or set(item) - _MODEL_KEYS
        ):
            raise UsageError("merge config: each models entry is {model: REF, parameters: {...}}")
        p = item.get("parameters") or {}
        if not isinstance(p, dict) or set(p) - _MODEL_PARAMS:
            raise UsageError(
                f"merge config: unsupported model parameters {sorted(set(p) - _MODEL_PARAMS)}"
            )
        refs.append(item["model"])
        weights.append(p.get("weight", params.get("weight", 1.0)))
        dens.append(p.get("density", params.get("density", 1.0)))
    base = doc.get("base_model")
    only = params.get("only")
    return {
        "refs": refs,
        "method": method,
        "base": base,
        "weights": weights,
        "density": dens,
        "lam": params.get("lambda"),
        "t": params.get("t"),
        "normalize": params.get("normalize"),
        "seed": params.get("seed"),
        "dtype": doc.get("dtype"),
        "strict": bool(params.get("strict", False)),
        "only": [only] if isinstance(only, str) else only,
    }


def read_config_file(path: Any) -> str:
    """The text of a YAML recipe file.

    Raises:
        UsageError: it cannot be read.
    """
    from pathlib import Path

    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def merge_config(
    core: RepoCore, text: str, *, model: str, message: str, **over: Any
) -> MergeResult:
    """``merge`` from a mergekit YAML recipe (``over``: keyword arguments that win)."""
    args = config_to_args(text)
    args.update({k: v for k, v in over.items() if v is not None})
    refs = args.pop("refs")
    return merge(core, refs, model=model, message=message, **args)


def recipe_yaml(recipe: dict[str, Any]) -> str:
    """A merge recipe as mergekit-style YAML (refs are the commit ids; the rest as comments-free
    extra parameters that :func:`config_to_args` reads back)."""
    from mgit.lifecycle.yaml_subset import dump

    method = recipe["method"]
    models = []
    for i, oid in enumerate(recipe["inputs"]):
        p: dict[str, Any] = {"weight": recipe["weights"][i]}
        if method in ("ties", "dare-linear", "dare-ties"):
            p["density"] = recipe["density"][i]
        models.append({"model": oid, "parameters": p})
    doc: dict[str, Any] = {"merge_method": method, "models": models}
    if recipe.get("base"):
        doc["base_model"] = recipe["base"]
    params: dict[str, Any] = {"normalize": recipe["normalize"]}
    if method in _NEEDS_BASE:
        params["lambda"] = recipe["lambda"]
    if method == "slerp":
        params["t"] = recipe["t"]
    if method.startswith("dare"):
        params["seed"] = recipe["seed"]
    if recipe.get("only"):
        params["only"] = recipe["only"]
    if recipe.get("strict"):
        params["strict"] = True
    doc["parameters"] = params
    if recipe.get("dtype"):
        doc["dtype"] = _YAML_NAMES[recipe["dtype"]]
    head = f"# mgit merge recipe (mgit {recipe.get('mgit_version', '?')})\n"
    return head + dump(doc)
