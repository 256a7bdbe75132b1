"""``mgit rebase``: re-apply a model's derivation from an old base onto a new base.

``rebase(core, MODEL, onto=NEWBASE, from_=OLDBASE)``. OLDBASE defaults to MODEL's newest
ancestor on NEWBASE's model line. The result is a NEW version of MODEL's line with two
parents: MODEL's tip (relation ``version``) and NEWBASE (MODEL's original relation to OLDBASE,
e.g. ``finetune``); its metadata has ``rebased_from`` (MODEL's old commit), ``rebased_onto``
(NEWBASE) and ``rebased_base`` (OLDBASE), and its recipe records the strategy and the three
commit ids (plus MODEL's own ``cmd`` recipe, so that it can be rebased again).

Strategy ``replay`` (retrain-free). Tensors are identified by (file, name) and paired across
versions by :func:`mgit.pairing.pair_tensors` (the one name rule). The output is NEWBASE's
tree where:

- a tensor MODEL did not change (equal content ids in MODEL and OLDBASE) is NEWBASE's, bit for
  bit, and is not read;
- a tensor NEWBASE did not change is MODEL's, bit for bit;
- any other shared tensor is ``NEWBASE + (MODEL - OLDBASE)`` computed in float64 and cast to
  the tensor's dtype with round-to-nearest-even (:func:`mgit.lifecycle.arith.cast_rne`);
  element by element, where MODEL's element equals OLDBASE's (bits) the result is NEWBASE's
  element, where NEWBASE's equals OLDBASE's it is MODEL's (so NaNs, infinities and -0.0 the
  derivation did not touch survive);
- tensors MODEL added (a task head) are kept from MODEL (in MODEL's file);
- tensors NEWBASE added are NEWBASE's; tensors NEWBASE removed are removed; tensors MODEL
  removed stay removed.

Files that are not safetensors merge three-way by checksum: unchanged by MODEL, NEWBASE's;
changed only by MODEL, MODEL's; changed by both, the same way, that; changed by both
differently, a conflict, refused unless ``ours`` (MODEL's) or ``theirs`` (NEWBASE's).

Refused before anything is written: shared tensors that differ in shape or dtype between
OLDBASE, NEWBASE and MODEL; a tensor changed on both sides whose dtype is not a float replay
computes in; tokenizer files that differ between OLDBASE and NEWBASE (unless ``force``).

Strategy ``recipe``: the recipe recorded by ``commit/import --recipe CMD`` (on MODEL or an
earlier version of its line) runs on NEWBASE's export and its output is imported.

Both are gated: the commit is written (objects durable) but MODEL's line moves only when the
stored tests that apply to the new version pass (``tests=False`` skips them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit.core import CommitInfo, RepoCore
from mgit.errors import UsageError
from mgit.lifecycle.rebase_write import RebaseError
from mgit.objects.model import FileEntry, ParentLink, TensorManifest, Tree
from mgit.refs.store import HEADS

if TYPE_CHECKING:
    import numpy as np

    from mgit.lifecycle.arith import Streamed
    from mgit.lifecycle.slices import TensorReader

__all__ = [
    "STRATEGIES",
    "TOKENIZER_FILES",
    "FileStep",
    "RebaseError",
    "RebasePlan",
    "RebaseResult",
    "TensorStep",
    "ancestors",
    "find_oldbase",
    "plan_replay",
    "rebase",
]

STRATEGIES = ("replay", "recipe")
#: Files whose change between OLDBASE and NEWBASE refuses a rebase (plus any ``*.model``).
TOKENIZER_FILES = frozenset(
    {"tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "merges.txt"}
)
_FLOATS = ("F64", "F32", "F16", "BF16")
#: A sharded checkpoint's index (Hugging Face: ``model.safetensors.index.json``).
INDEX_SUFFIX = ".safetensors.index.json"


@dataclass(frozen=True)
class TensorStep:
    """What replay does with one output tensor. ``action``: ``replay`` (computed),
    ``newbase`` (unchanged by MODEL: NEWBASE's bits), ``model`` (unchanged by NEWBASE:
    MODEL's bits), ``kept`` (added by MODEL), ``added`` (added by NEWBASE), ``removed``
    (removed by NEWBASE or MODEL: not in the output)."""

    file: str
    name: str
    action: str
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"file": self.file, "name": self.name, "action": self.action, "why": self.why}


@dataclass(frozen=True)
class FileStep:
    """A non-tensor file of the three-way merge: ``take`` is ``newbase``, ``model``,
    ``both`` or ``conflict``; ``result`` ``ours``/``theirs`` for a resolved conflict."""

    path: str
    take: str
    result: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"path": self.path, "take": self.take, "result": self.result}


@dataclass
class RebasePlan:
    """What a rebase will do (``--dry-run`` prints it)."""

    model: str
    model_commit: str
    tip: str | None
    oldbase: str
    newbase: str
    relation: str
    strategy: str
    tensors: list[TensorStep] = field(default_factory=list)
    files: list[FileStep] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    # output layout: path -> entry (taken whole), or None (removed), for non-safetensors files
    file_out: dict[str, FileEntry | None] = field(default_factory=dict)
    # safetensors output: path -> [(name, source)], source ("newbase"|"model"|"replay", n, o, m)
    layout: dict[str, list[tuple[str, tuple[Any, ...]]]] = field(default_factory=dict)
    # shard indexes (``*.safetensors.index.json``) rebuilt from the layout: path -> (NEWBASE's, MODEL's)
    indexes: dict[str, tuple[FileEntry, FileEntry]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Tensors per action."""
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.action] = out.get(t.action, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "model": self.model, "model_commit": self.model_commit, "oldbase": self.oldbase,
            "newbase": self.newbase, "relation": self.relation, "strategy": self.strategy,
            "counts": self.counts(), "tensors": [t.to_json() for t in self.tensors],
            "files": [f.to_json() for f in self.files], "refusals": list(self.refusals),
            "conflicts": list(self.conflicts),
        }


@dataclass
class RebaseResult:
    """What a rebase did. ``status``: ``rebased``, ``dry-run``, ``gate-failed`` (the commit
    was written but the line did not move), ``up-to-date``."""

    plan: RebasePlan
    status: str
    commit: CommitInfo | None = None
    failed_tests: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: With ``fallback``: why the first strategy did not do (this result is the fallback's).
    fell_back: str | None = None

    @property
    def strategy(self) -> str:
        """The strategy that produced this result."""
        return self.plan.strategy

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "status": self.status, "plan": self.plan.to_json(),
            "commit": self.commit.to_json() if self.commit else None,
            "failed_tests": list(self.failed_tests), "seconds": round(self.seconds, 3),
            "fell_back": self.fell_back,
        }


# -- the lineage -------------------------------------------------------------------------------


def ancestors(core: RepoCore, oid: str) -> set[str]:
    """``oid`` and every commit it derives from."""
    seen = {oid}
    stack = [oid]
    while stack:
        for p in core.parents_of(stack.pop()):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def find_oldbase(core: RepoCore, model_oid: str, line: str) -> str | None:
    """MODEL's newest ancestor on model line ``line`` (the one no other such ancestor derives
    from), or None."""
    cands = [c for c in ancestors(core, model_oid) if core.read_commit(c).model == line]
    if not cands:
        return None
    return max(cands, key=lambda c: (len(ancestors(core, c)), core.commit_time_of(c), c))


def _relation(core: RepoCore, model_oid: str, oldbase: str) -> str:
    """MODEL's original relation to OLDBASE: the edge into OLDBASE on MODEL's ancestry, else
    an edge into OLDBASE's line, else ``finetune``."""
    line = core.read_commit(oldbase).model
    anc = ancestors(core, model_oid)
    fallback = None
    for c in sorted(anc, key=lambda c: -core.commit_time_of(c)):
        commit = core.read_commit(c)
        if commit.model == line:
            continue
        for p in commit.parents:
            if p.oid == oldbase and p.relation != "version":
                return p.relation
            if fallback is None and p.relation != "version" and core.model_of(p.oid) == line:
                fallback = p.relation
    return fallback or "finetune"


# -- replay planning (reads manifests only) ----------------------------------------------------


def _tensor_refs(tree: Tree) -> dict[tuple[str, str], TensorManifest]:
    out: dict[tuple[str, str], TensorManifest] = {}
    for path, e in sorted(tree.files.items()):
        if e.kind == "safetensors":
            for name, m in e.tensors:
                out[(path, name)] = m
    return out


def _primary(pairs: dict[Any, tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Invert a child -> parent pairing, one child per parent (the same (file, name) first)."""
    inv: dict[tuple[str, str], Any] = {}
    for child, par in pairs.items():
        if child == par:
            inv[par] = child
    for child, par in pairs.items():
        inv.setdefault(par, child)
    return inv


def _is_tokenizer(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base in TOKENIZER_FILES or base.endswith(".model")


def _key(e: FileEntry | None) -> tuple[str, int] | None:
    return None if e is None else (e.xxh, e.size)


def plan_replay(core: RepoCore, plan: RebasePlan, *, ours: bool = False, theirs: bool = False,
                force: bool = False) -> RebasePlan:
    """Fill ``plan`` with the replay's tensor and file steps, refusals and conflicts."""
    from mgit.pairing import pair_tensors

    t_old = core.commit_tree(plan.oldbase)
    t_new = core.commit_tree(plan.newbase)
    t_mod = core.commit_tree(plan.model_commit)
    old, new, mod = _tensor_refs(t_old), _tensor_refs(t_new), _tensor_refs(t_mod)
    n2o = pair_tensors(list(new), list(old))
    m2o = pair_tensors(list(mod), list(old))
    o2m = _primary(m2o)
    used_m: set[tuple[str, str]] = set()

    def shape_check(what: str, a: TensorManifest, b: TensorManifest, where: str) -> None:
        if a.dtype != b.dtype:
            plan.refusals.append(f"{where}: dtype {a.dtype} in OLDBASE, {b.dtype} in {what}")
        elif tuple(a.shape) != tuple(b.shape):
            plan.refusals.append(f"{where}: shape {list(a.shape)} in OLDBASE, {list(b.shape)} in {what}")

    for (path, name), n in new.items():
        where = f"{path}:{name}"
        o_key = n2o.get((path, name))
        if o_key is None:
            plan.tensors.append(TensorStep(path, name, "added", "added by NEWBASE"))
            plan.layout.setdefault(path, []).append((name, ("newbase", n)))
            continue
        o = old[o_key]
        shape_check("NEWBASE", o, n, where)
        m_key = o2m.get(o_key)
        if m_key is None:
            plan.tensors.append(TensorStep(path, name, "removed", "removed by MODEL"))
            continue
        used_m.add(m_key)
        m = mod[m_key]
        shape_check("MODEL", o, m, f"{m_key[0]}:{m_key[1]}")
        # The rebased model keeps MODEL's file and tensor names (a task-head finetune's
        # "bert.x" stays "bert.x" over a BertModel base's "x"): it is a version of MODEL.
        mpath, mname = m_key
        if m.content_id == o.content_id:
            plan.tensors.append(TensorStep(mpath, mname, "newbase", "unchanged by MODEL"))
            plan.layout.setdefault(mpath, []).append((mname, ("newbase", n)))
        elif n.content_id == o.content_id:
            plan.tensors.append(TensorStep(mpath, mname, "model", "unchanged by NEWBASE"))
            plan.layout.setdefault(mpath, []).append((mname, ("model", m)))
        else:
            if n.dtype not in _FLOATS and not plan.refusals:
                plan.refusals.append(f"{where}: changed by both, and replay does not compute in {n.dtype}")
            plan.tensors.append(TensorStep(mpath, mname, "replay", "changed by MODEL and NEWBASE"))
            plan.layout.setdefault(mpath, []).append((mname, ("replay", n, o, m)))
    paired_old = set(n2o.values())
    for o_key in old:
        if o_key not in paired_old:
            plan.tensors.append(TensorStep(o_key[0], o_key[1], "removed", "removed by NEWBASE"))
            m_key = o2m.get(o_key)
            if m_key is not None:
                used_m.add(m_key)
    for m_key, m in mod.items():
        if m_key in used_m:
            continue
        if m_key in m2o and o2m.get(m2o[m_key]) != m_key:
            why = "a second copy of a base tensor: kept from MODEL"
        elif m_key in m2o:
            continue  # paired with a tensor NEWBASE removed: removed (counted above)
        else:
            why = "added by MODEL"
        names = [n for n, _ in plan.layout.get(m_key[0], [])]
        if m_key[1] in names:
            plan.conflicts.append(f"{m_key[0]}:{m_key[1]}: added by both MODEL and NEWBASE")
            continue
        plan.tensors.append(TensorStep(m_key[0], m_key[1], "kept", why))
        plan.layout.setdefault(m_key[0], []).append((m_key[1], ("model", m)))

    # tokenizer: OLDBASE vs NEWBASE
    if not force:
        for path in sorted(set(t_old.files) | set(t_new.files)):
            if _is_tokenizer(path) and _key(t_old.files.get(path)) != _key(t_new.files.get(path)):
                plan.refusals.append(f"tokenizer file {path} differs between OLDBASE and NEWBASE")
    # files that are not safetensors: three-way by checksum; shard indexes are rebuilt
    others = {p for t in (t_old, t_new, t_mod) for p, e in t.files.items() if e.kind != "safetensors"}
    for path in sorted(others):
        b, n, m = (_other(t, path) for t in (t_old, t_new, t_mod))
        if path.endswith(INDEX_SUFFIX) and (n is not None and m is not None):
            plan.files.append(FileStep(path, "regenerated", "from the rebased shards"))
            plan.indexes[path] = (n, m)
            continue
        if _key(m) == _key(b):
            take, out = "newbase", n
        elif _key(n) == _key(b):
            take, out = "model", m
        elif _key(m) == _key(n):
            take, out = "both", m
        else:
            take = "conflict"
            if any(e is not None and e.kind == "torchzip" for e in (n, m)):
                plan.refusals.append(f"{path}: a torch checkpoint changed by MODEL and by NEWBASE; replay "
                                     "computes on safetensors files only (use --strategy recipe, or store "
                                     "the models as safetensors)")
            if ours:
                out = m
            elif theirs:
                out = n
            else:
                plan.conflicts.append(f"{path}: changed by MODEL and by NEWBASE")
                out = None
        resolved = ("ours" if ours else "theirs" if theirs else "") if take == "conflict" else ""
        plan.files.append(FileStep(path, take, resolved))
        if _key(out) != _key(n):
            plan.file_out[path] = out  # base is NEWBASE's tree: only what differs from it
    return plan


def _other(tree: Tree, path: str) -> FileEntry | None:
    e = tree.files.get(path)
    return e if e is not None and e.kind != "safetensors" else None


# -- replay writing ----------------------------------------------------------------------------


def _file_bytes(core: RepoCore, e: FileEntry) -> bytes:
    return b"".join(core.store.get(oid, kind="chunk") for oid in e.chunks)


def shard_index(core: RepoCore, plan: RebasePlan, path: str, n_entry: FileEntry, m_entry: FileEntry) -> bytes:
    """The shard index at ``path`` for the rebased layout: NEWBASE's index (MODEL's keys where
    NEWBASE lacks them) with ``weight_map`` listing every tensor of the shards either index
    names, and ``metadata.total_size`` their bytes; written the way transformers writes it
    (sorted keys, indent 2, a final newline).

    Raises:
        RebaseError: an index that is not a JSON object with a ``weight_map``.
    """
    import json

    from mgit.objects.model import DTYPE_SIZES

    docs = []
    for e in (n_entry, m_entry):
        try:
            v = json.loads(_file_bytes(core, e))
        except ValueError:
            v = None
        if not isinstance(v, dict) or not isinstance(v.get("weight_map"), dict):
            raise RebaseError(f"{path}: not a shard index (a JSON object with a weight_map)")
        docs.append(v)
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    shards = sorted({str(f) for d in docs for f in d["weight_map"].values()})
    weight_map: dict[str, str] = {}
    total = 0
    for shard in shards:
        for name, src in plan.layout.get(folder + shard, []):
            m = src[1]
            weight_map[name] = shard
            size = DTYPE_SIZES[m.dtype]
            for d in m.shape:
                size *= d
            total += size
    out = {**docs[1], **docs[0]}
    meta = out.get("metadata")
    out["metadata"] = {**(meta if isinstance(meta, dict) else {}), "total_size": total}
    out["weight_map"] = dict(sorted(weight_map.items()))
    return (json.dumps(out, indent=2, sort_keys=True) + "\n").encode()


def _reader(core: RepoCore, m: TensorManifest) -> TensorReader:
    """A slice reader of one stored tensor: replay's only way to read tensor data (tests
    count calls)."""
    from mgit.lifecycle.slices import TensorReader

    return TensorReader(core.store, m)


def _raw(x: np.ndarray) -> memoryview:
    import numpy as np

    return memoryview(np.ascontiguousarray(x).reshape(-1).view(np.uint8))


def _stream(core: RepoCore, src: tuple[Any, ...]) -> Streamed:
    """A layout source's value, slice by slice (``SLICE_ELEMENTS`` at a time: memory is a few
    slices and one chunk per input, whatever the tensor's size)."""
    from mgit.lifecycle.arith import SLICE_ELEMENTS, Streamed
    from mgit.lifecycle.slices import slice_ranges

    if src[0] == "model":
        r = _reader(core, src[1])
        return Streamed(r.read(a, b) for a, b in slice_ranges(r.numel, SLICE_ELEMENTS))
    _, n, o, m = src
    rn, ro, rm = _reader(core, n), _reader(core, o), _reader(core, m)
    return Streamed(replay_values(rn.read(a, b), ro.read(a, b), rm.read(a, b), n.dtype)
                    for a, b in slice_ranges(n.numel, SLICE_ELEMENTS))


def replay_values(n: np.ndarray, o: np.ndarray, m: np.ndarray, dtype: str) -> np.ndarray:
    """``NEWBASE + (MODEL - OLDBASE)`` in float64, rounded to ``dtype`` to nearest even; where
    MODEL's element equals OLDBASE's (bits) NEWBASE's element, where NEWBASE's does MODEL's."""
    import numpy as np

    from mgit.lifecycle.arith import cast_rne

    with np.errstate(invalid="ignore", over="ignore"):
        x = n.astype(np.float64) + (m.astype(np.float64) - o.astype(np.float64))
    out = np.ascontiguousarray(cast_rne(x, dtype))
    uint = np.dtype(f"u{out.dtype.itemsize}")
    ob, nb, mb, rb = (np.ascontiguousarray(a).view(uint) for a in (o, n, m, out))
    res = np.where(mb == ob, nb, np.where(nb == ob, mb, rb))
    return res.view(out.dtype).reshape(n.shape)


def _write_replay(core: RepoCore, plan: RebasePlan, *, message: str, meta: dict[str, str],
                  recipe: dict[str, Any], parents: list[ParentLink]) -> CommitInfo:
    """Write the replayed version (the line does not move)."""
    from mgit.lifecycle.arith import write_version
    from mgit.lifecycle.rebase_write import header_metadata, write_safetensors_file
    from mgit.materialize import tensor_bytes

    t_new = core.commit_tree(plan.newbase)
    t_mod = core.commit_tree(plan.model_commit)
    by_key = {(path, name): src for path, items in plan.layout.items() for name, src in items}

    override: dict[str, Any] = dict(plan.file_out)
    rewritten: set[str] = set()
    tmp = core.mgit_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    for path, items in plan.layout.items():
        ne = t_new.files.get(path)
        if ne is not None and ne.kind == "safetensors" and [n for n, _ in ne.tensors] == [n for n, _ in items]:
            continue  # same tensor list as NEWBASE's file: write_version rebuilds it
        me = t_mod.files.get(path)
        ids = [src[1].content_id if src[0] != "replay" else None for _, src in items]
        if me is not None and me.kind == "safetensors" and [(n, m.content_id) for n, m in me.tensors] == [
                (n, i) for (n, _), i in zip(items, ids)]:
            override[path] = me  # exactly MODEL's file
            rewritten.add(path)
            continue
        out = tmp / f"rebase-{os.getpid()}-{os.urandom(6).hex()}.safetensors"  # threads of a cascade: unique
        temps.append(out)
        src_entry = ne if ne is not None and ne.kind == "safetensors" else me
        metadata = header_metadata(core.store, src_entry) if src_entry is not None else None
        write_safetensors_file(out, [
            (name, src[1].dtype, tuple(src[1].shape),
             (lambda s=src: (_raw(x) for x in _stream(core, s).pieces)) if src[0] == "replay"
             else (lambda s=src: tensor_bytes(core.store, s[1])))
            for name, src in items
        ], metadata)
        override[path] = out
        rewritten.add(path)
    for path, e in t_new.files.items():  # NEWBASE's safetensors files left with no tensor
        if e.kind == "safetensors" and e.tensors and path not in plan.layout:
            override[path] = None
    import json

    for path, (n_entry, m_entry) in plan.indexes.items():
        data = shard_index(core, plan, path, n_entry, m_entry)
        for e in (n_entry, m_entry):
            if json.loads(_file_bytes(core, e)) == json.loads(data):
                override[path] = e  # what one side's index says: its bytes, exactly
                break
        else:
            out = tmp / f"rebase-{os.getpid()}-{os.urandom(6).hex()}.json"
            temps.append(out)
            out.write_bytes(data)
            override[path] = out

    def tensors(path: str, name: str, m: TensorManifest) -> Streamed | None:
        if path in rewritten:
            return None
        src = by_key.get((path, name))
        if src is None or src[0] == "newbase":
            return None
        return _stream(core, src)

    try:
        return write_version(
            core, model=plan.model, message=message, parents=parents, base_ref=plan.newbase,
            tensors=tensors, meta=meta, recipe=recipe, files_override=override, update_ref=False,
        )
    finally:
        for p in temps:
            p.unlink(missing_ok=True)


# -- the verb ----------------------------------------------------------------------------------


def _plan(core: RepoCore, model: str, onto: str, from_: str | None, strategy: str) -> RebasePlan:
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}", hint="one of: " + ", ".join(STRATEGIES))
    model_oid = core.resolve(model)
    newbase = core.resolve(onto)
    line = core.read_commit(model_oid).model
    tip = core.refs.read(HEADS + line)
    if tip != model_oid:
        raise RebaseError(f"{model} is not the latest version of model line {line}",
                          hint=f"rebase {line} (its latest version)")
    new_line = core.read_commit(newbase).model
    if new_line == line:
        raise RebaseError(f"{model} is on NEWBASE's model line {line}: nothing to rebase onto")
    if from_ is not None:
        oldbase = core.resolve(from_)
        if oldbase not in ancestors(core, model_oid):
            raise RebaseError(f"OLDBASE {from_} is not an ancestor of {model}")
    else:
        found = find_oldbase(core, model_oid, new_line)
        if found is None:
            raise RebaseError(f"{model} derives from no version of {new_line}",
                              hint="give the version it was derived from with --from OLDBASE")
        oldbase = found
    return RebasePlan(model=line, model_commit=model_oid, tip=tip, oldbase=oldbase, newbase=newbase,
                      relation=_relation(core, model_oid, oldbase), strategy=strategy)


def find_recipe(core: RepoCore, oid: str) -> dict[str, Any] | None:
    """The ``--recipe`` recorded on ``oid`` or an earlier version of its line (first parents)."""
    line = core.read_commit(oid).model
    cur: str | None = oid
    while cur is not None:
        c = core.read_commit(cur)
        if c.model != line:
            return None
        if isinstance(c.recipe, dict) and isinstance(c.recipe.get("cmd"), str):
            return c.recipe
        cur = c.parents[0].oid if c.parents else None
    return None


def rebase(
    core: RepoCore,
    model: str,
    *,
    onto: str,
    from_: str | None = None,
    strategy: str = "replay",
    fallback: str | None = None,
    dry_run: bool = False,
    ours: bool = False,
    theirs: bool = False,
    force: bool = False,
    tests: bool = True,
    timeout: float = 3600.0,
    on_test: Callable[[Any], None] | None = None,
) -> RebaseResult:
    """Rebase MODEL onto NEWBASE (see the module docstring).

    Every verdict is recorded as an attempt (:mod:`mgit.lifecycle.rebase_attempts`); a rerun
    of a gate-failed job whose version is still there only re-runs the gate on it.
    ``fallback="recipe"``: when ``replay`` is refused or its gate fails, retrain by the
    recorded recipe instead (the result says so in ``fell_back``).

    Raises:
        RebaseError: refused (shapes, dtypes, tokenizer, conflicts, no recipe, recipe failed),
            MODEL not the tip of its line, no OLDBASE.
        UsageError: bad options.
    """
    if fallback not in (None, "recipe"):
        raise UsageError(f"unknown --fallback {fallback!r}", hint="the one fallback is: recipe")
    if fallback is not None and strategy != "replay":
        raise UsageError("--fallback recipe applies to --strategy replay")
    kw: dict[str, Any] = {"onto": onto, "from_": from_, "dry_run": dry_run, "ours": ours, "theirs": theirs,
                          "force": force, "tests": tests, "timeout": timeout, "on_test": on_test}
    try:
        first = _rebase_once(core, model, strategy=strategy, **kw)
    except RebaseError as exc:
        if fallback is None or dry_run:
            raise
        why = str(exc)
    else:
        if fallback is None or first.status != "gate-failed":
            return first
        why = "tests failed: " + ", ".join(first.failed_tests)
    r = _rebase_once(core, model, strategy=fallback, **kw)
    r.fell_back = why
    return r


def _rebase_once(
    core: RepoCore, model: str, *, onto: str, from_: str | None, strategy: str, dry_run: bool, ours: bool,
    theirs: bool, force: bool, tests: bool, timeout: float, on_test: Callable[[Any], None] | None,
) -> RebaseResult:
    import time

    from mgit.lifecycle import rebase_attempts as att

    t0 = time.perf_counter()
    if ours and theirs:
        raise UsageError("give --ours or --theirs, not both")
    plan = _plan(core, model, onto, from_, strategy)
    if plan.oldbase == plan.newbase and strategy == "replay":
        return RebaseResult(plan, "up-to-date", seconds=time.perf_counter() - t0)
    rec = find_recipe(core, plan.model_commit)
    key = att.job_key(plan.model_commit, plan.newbase, strategy, rec)

    def attempt(status: str, **kw: Any) -> att.Attempt:
        return att.Attempt(key=key, model=plan.model, model_commit=plan.model_commit, onto=plan.newbase,
                           base=plan.oldbase, strategy=strategy, status=status, tip=plan.tip,
                           seconds=time.perf_counter() - t0, **kw)

    try:
        _refuse(core, plan, rec, strategy, ours=ours, theirs=theirs, force=force)
    except RebaseError as exc:
        if not dry_run:
            att.record(core, attempt("failed", error=str(exc)))
        raise
    if dry_run:
        return RebaseResult(plan, "dry-run", seconds=time.perf_counter() - t0)
    assert plan.tip is not None
    before = att.load(core).get(key)
    if (before is not None and before.status == "gate-failed" and before.commit is not None
            and before.tip == plan.tip and before.commit in core.store):
        info = core.commit_info(before.commit)  # the job's version is written: only gate it again
    else:
        try:
            info = _write(core, plan, rec, strategy, timeout)
        except RebaseError as exc:
            att.record(core, attempt("failed", error=str(exc)))
            raise
    failed = att.land(core, plan.model, plan.tip, info.oid, attempt, tests=tests, on_test=on_test)
    if failed:
        return RebaseResult(plan, "gate-failed", info, failed, time.perf_counter() - t0)
    return RebaseResult(plan, "rebased", info, seconds=time.perf_counter() - t0)


def _refuse(core: RepoCore, plan: RebasePlan, rec: dict[str, Any] | None, strategy: str, *, ours: bool,
            theirs: bool, force: bool) -> None:
    """Plan the replay and raise what refuses the rebase (nothing is written)."""
    if strategy == "replay":
        plan_replay(core, plan, ours=ours, theirs=theirs, force=force)
        if plan.refusals:
            raise RebaseError(f"rebase of {plan.model} refused: {plan.refusals[0]}"
                              + (f" (and {len(plan.refusals) - 1} more)" if len(plan.refusals) > 1 else ""),
                              hint="--force ignores a tokenizer change" if any(
                                  "tokenizer" in r for r in plan.refusals) else None)
        if plan.conflicts:
            raise RebaseError(f"rebase of {plan.model}: conflict: {plan.conflicts[0]}"
                              + (f" (and {len(plan.conflicts) - 1} more)" if len(plan.conflicts) > 1 else ""),
                              hint="--ours keeps MODEL's file, --theirs NEWBASE's")
    elif rec is None:
        raise RebaseError(f"{plan.model} has no recipe to re-run",
                          hint="record one with 'mgit commit/import --recipe CMD', or use --strategy replay")


def _write(core: RepoCore, plan: RebasePlan, rec: dict[str, Any] | None, strategy: str,
           timeout: float) -> CommitInfo:
    """Write the rebased version (objects durable; the line does not move)."""
    meta = {"rebased_from": plan.model_commit, "rebased_onto": plan.newbase, "rebased_base": plan.oldbase}
    recipe: dict[str, Any] = {**(rec or {}), "rebase": {
        "strategy": strategy, "model": plan.model_commit, "from": plan.oldbase, "onto": plan.newbase}}
    assert plan.tip is not None
    parents = [ParentLink(plan.tip, "version"), ParentLink(plan.newbase, plan.relation)]
    message = f"rebase {plan.model} onto {core.model_of(plan.newbase)}@{plan.newbase[:12]} ({strategy})"
    if strategy == "replay":
        return _write_replay(core, plan, message=message, meta=meta, recipe=recipe, parents=parents)
    from mgit.lifecycle.rebase_recipe import run_recipe

    assert rec is not None
    return run_recipe(core, plan, rec, message=message, meta=meta, recipe=recipe, parents=parents,
                      timeout=timeout)


def resolve_many(core: RepoCore, refs: Sequence[str]) -> list[str]:
    """Commit ids of REFs."""
    return [core.resolve(r) for r in refs]
