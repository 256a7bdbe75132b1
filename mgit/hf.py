"""Hugging Face folders: the hub cache layout, model-card YAML headers and PEFT adapter configs.

Pure parsing and paths: no network, and no third-party library is needed.

**Hub cache.** ``huggingface_hub`` keeps a downloaded repository as::

    <cache>/models--ORG--NAME/blobs/<hash>                 file contents, named by hash
    <cache>/models--ORG--NAME/refs/main                    the commit hash ``main`` points at
    <cache>/models--ORG--NAME/snapshots/<commit>/<path>    relative symlinks into ../../blobs/

:func:`hub_cache_dir` finds ``<cache>`` the way ``huggingface_hub`` does (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), :func:`find_snapshot` resolves
``ORG/NAME[@REV]`` to a snapshot folder, and :func:`cache_blobs_dir` tells whether a folder is
(inside) a snapshot, so that its links into the same repository's ``blobs/`` are followed.

**Model cards.** ``README.md`` may start with a YAML header between ``---`` lines.
:func:`parse_front_matter` reads the subset model cards use (``key: scalar``, ``- item`` lists,
``[a, b]`` flow lists, quoted strings, comments; nested maps are skipped), always into strings,
so that ``license: 2.0`` stays ``"2.0"``.

**PEFT adapters.** A folder with ``adapter_config.json`` is an adapter (:func:`read_adapter_config`);
:func:`lora_shapes` and :func:`adapter_fit` check that its LoRA factors fit a candidate base
model's weights (``lora_A``: r x in, ``lora_B``: out x r, base: out x in).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mgit.errors import InvalidModelFileError, UsageError

__all__ = [
    "strip_yaml_comment",
    "HubSnapshot",
    "AdapterConfig",
    "ADAPTER_CONFIG",
    "CARD_KEYS",
    "hub_cache_dir",
    "parse_hf_spec",
    "repo_folder_name",
    "find_snapshot",
    "snapshot_of",
    "cache_blobs_dir",
    "parse_front_matter",
    "read_model_card",
    "card_meta",
    "card_base_models",
    "card_relation",
    "read_adapter_config",
    "lora_shapes",
    "adapter_fit",
    "base_key",
    "match_model_lines",
]

ADAPTER_CONFIG = "adapter_config.json"

#: Model-card keys copied into a version's metadata (lists become comma-joined strings).
CARD_KEYS: tuple[str, ...] = ("license", "base_model", "datasets", "tags", "pipeline_tag", "library_name")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,40}$")
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REF_PART = re.compile(r"^[A-Za-z0-9._-]+$")


# -- the hub cache -----------------------------------------------------------------------------


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The hub cache folder: ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else
    ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    env = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """``"ORG/NAME[@REV]"`` -> ``("ORG/NAME", REV or None)``.

    Raises:
        UsageError: not a repository id.
    """
    repo_id, _, rev = spec.strip().partition("@")
    parts = repo_id.split("/")
    if not 1 <= len(parts) <= 2 or not all(_REPO_PART.match(p) and ".." not in p for p in parts):
        raise UsageError(f"not a Hugging Face repository id: {spec!r}", hint="use ORG/NAME or ORG/NAME@REV")
    if "@" in spec and not rev:
        raise UsageError(f"empty revision in {spec!r}",
                         hint="use ORG/NAME@REV (a commit hash or a ref like main)")
    return repo_id, (rev or None)


def repo_folder_name(repo_id: str) -> str:
    """The cache folder of a model repository: ``models--ORG--NAME``."""
    return "models--" + repo_id.replace("/", "--")


@dataclass(frozen=True)
class HubSnapshot:
    """A snapshot found in the hub cache."""

    repo_id: str
    revision: str  # the commit hash
    ref: str | None  # the ref name it was found by (``main``), if any
    path: Path  # .../snapshots/<revision>


def _read_ref(refs: Path, name: str) -> str | None:
    parts = name.split("/")
    if not all(_REF_PART.match(p) and p not in (".", "..") for p in parts):
        return None
    try:
        text = (refs.joinpath(*parts)).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _HEX40.match(text) else None


def _list_refs(refs: Path) -> list[str]:
    out = []
    if refs.is_dir():
        for p in sorted(refs.rglob("*")):
            if p.is_file():
                out.append(p.relative_to(refs).as_posix())
    return out


def find_snapshot(spec: str, *, cache_dir: str | os.PathLike[str] | None = None) -> HubSnapshot:
    """The snapshot folder of ``ORG/NAME[@REV]`` in the local hub cache.

    REV is a commit hash, a unique prefix of one (at least 4 hex digits) or a ref name under
    ``refs/`` (``main``, ``pr/1``); default ``main``.

    Raises:
        UsageError: the repository is not in the cache, or REV is not found (or ambiguous).
    """
    repo_id, rev = parse_hf_spec(spec)
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    folder = cache / repo_folder_name(repo_id)
    snaps = folder / "snapshots"
    if not snaps.is_dir():
        raise UsageError(
            f"{repo_id} is not in the Hugging Face cache ({cache})",
            hint="download it first (huggingface-cli download), or set HF_HUB_CACHE / HF_HOME",
        )
    rev = rev or "main"
    present = sorted(p.name for p in snaps.iterdir() if p.is_dir() and _HEX40.match(p.name))
    refs = folder / "refs"
    commit = _read_ref(refs, rev)
    ref: str | None = rev if commit is not None else None
    if commit is None and _HEX40.match(rev):
        commit = rev
    if commit is None and _HEX_PREFIX.match(rev):
        found = [h for h in present if h.startswith(rev)]
        if len(found) > 1:
            raise UsageError(f"revision {rev} of {repo_id} is ambiguous: " + ", ".join(h[:12] for h in found))
        commit = found[0] if found else None
    if commit is None or not (snaps / commit).is_dir():
        known = [f"{r}" for r in _list_refs(refs)] + [h[:12] for h in present]
        what = f"revision {rev} of {repo_id} is not in the Hugging Face cache"
        if commit is not None and ref is not None:
            what = f"ref {rev} of {repo_id} points at {commit[:12]}, whose snapshot is not in the cache"
        raise UsageError(what, hint=("available: " + ", ".join(known)) if known else None)
    return HubSnapshot(repo_id, commit, ref, snaps / commit)


def snapshot_of(folder: str | os.PathLike[str]) -> HubSnapshot | None:
    """The hub cache snapshot ``folder`` is (``.../models--ORG--NAME/snapshots/<commit>``), or None."""
    p = Path(folder).resolve()
    repo = p.parent.parent
    if p.parent.name != "snapshots" or not _HEX40.match(p.name) or not (repo / "blobs").is_dir():
        return None
    if not repo.name.startswith("models--"):
        return None
    repo_id = repo.name[len("models--") :].replace("--", "/")
    try:
        parse_hf_spec(repo_id)
    except UsageError:
        return None
    ref = next((r for r in _list_refs(repo / "refs") if _read_ref(repo / "refs", r) == p.name), None)
    return HubSnapshot(repo_id, p.name, ref, p)


def cache_blobs_dir(folder: str | os.PathLike[str]) -> Path | None:
    """The ``blobs/`` folder of the cache repository when ``folder`` is a hub cache snapshot
    (``.../snapshots/<rev>``) or a folder inside one, else None."""
    p = Path(folder)
    for cand in dict.fromkeys((Path(os.path.abspath(p)), p.resolve())):
        parts = cand.parts
        for i in range(len(parts) - 2, 0, -1):
            if parts[i] == "snapshots":
                blobs = Path(*parts[:i]) / "blobs"
                if blobs.is_dir():
                    return blobs.resolve()
                break
    return None


# -- model cards ---------------------------------------------------------------------------------


def strip_yaml_comment(s: str) -> str:
    """``s`` without a trailing `` # comment`` outside quotes (YAML's rule: ``#`` after a blank)."""
    quote = None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _scalar(s: str) -> str:
    """A YAML scalar as a string: quotes removed (``''`` and backslash escapes undone)."""
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == "'":
        return s[1:-1].replace("''", "'")
    if len(s) >= 2 and s[0] == s[-1] == '"':
        try:
            v = json.loads(s)
            return v if isinstance(v, str) else s[1:-1]
        except json.JSONDecodeError:
            return s[1:-1]
    return s


def _split_flow(s: str) -> list[str]:
    """The items of a flow list's inside (``a, "b, c", 'd'``), split on commas outside quotes."""
    items, cur, quote = [], [], None
    for ch in s:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return [_scalar(i) for i in items if i.strip()]


def _value(s: str) -> str | list[str] | None:
    s = s.strip()
    if not s or s in ("~", "null", "Null", "NULL"):
        return None
    if s.startswith("[") and s.endswith("]"):
        return _split_flow(s[1:-1])
    if s.startswith("{"):
        return None  # a flow map: not a value mgit keeps
    return _scalar(s)


def parse_front_matter(text: str) -> dict[str, str | list[str] | None]:
    """The YAML header of a model card (between a first line ``---`` and the next ``---``) as
    ``{top-level key: string, list of strings, or None}``.

    The subset model cards use: ``key: scalar`` (plain, single- or double-quoted), ``key:``
    followed by ``- item`` lines, ``key: [a, b]``, ``|``/``>`` block scalars and ``#``
    comments. Keys whose value is a nested map (``model-index``) and list items that are maps
    are skipped. Never raises: a card that is not understood gives ``{}`` or fewer keys.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    body = []
    for ln in lines[1:]:
        if ln.strip() in ("---", "..."):
            break
        body.append(ln)
    else:
        return {}
    out: dict[str, str | list[str] | None] = {}
    i = 0
    while i < len(body):
        raw = body[i]
        i += 1
        line = strip_yaml_comment(raw)
        if not line.strip() or raw[:1] in (" ", "\t", "-"):
            continue  # blank, or inside a value this parser skipped
        m = re.match(r"^(\"[^\"]*\"|'[^']*'|[^:#][^:]*?)\s*:(?:\s+(.*)|\s*)$", line)
        if m is None:
            continue
        key = _scalar(m.group(1))
        rest = (m.group(2) or "").strip()
        # the lines that belong to this key: indented ones, or "- " items at column 0
        block = []
        while i < len(body) and (body[i][:1] in (" ", "\t", "-") or not body[i].strip()):
            block.append(body[i])
            i += 1
        if rest.startswith("[") and not rest.endswith("]"):
            # a flow list over several lines
            joined = " ".join([rest] + [strip_yaml_comment(b).strip() for b in block])
            out[key] = _value(joined) if joined.endswith("]") else None
        elif rest[:1] in ("|", ">"):
            parts = [b.strip() for b in block if b.strip()]
            out[key] = ("\n" if rest[0] == "|" else " ").join(parts)
        elif rest:
            out[key] = _value(rest)
        else:
            items: list[str] = []
            is_list = maps = False
            for b in block:
                bs = strip_yaml_comment(b).strip()
                if not bs:
                    continue
                if bs.startswith("- ") or bs == "-":
                    is_list = True
                    item = bs[1:].strip()
                    if item and re.match(r"^[^'\"\[{][^:]*:(\s|$)", item):
                        maps = True  # a map item: skipped
                        continue
                    v = _value(item)
                    if isinstance(v, str):
                        items.append(v)
                    elif isinstance(v, list):
                        items.extend(v)
            if is_list and (items or not maps):
                out[key] = items
            elif not block or not any(b.strip() for b in block):
                out[key] = None
            # else: a nested map; skipped
    return out


def read_model_card(folder: str | os.PathLike[str]) -> dict[str, str | list[str] | None]:
    """The YAML header of ``folder/README.md`` (``{}`` when there is none or it cannot be read)."""
    try:
        text = (Path(folder) / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return parse_front_matter(text)


def _as_list(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    return [x for x in ([v] if isinstance(v, str) else v) if x]


def card_meta(card: Mapping[str, str | list[str] | None]) -> dict[str, str]:
    """The metadata a model card gives (:data:`CARD_KEYS`; lists comma-joined, empty values left out)."""
    out = {}
    for k in CARD_KEYS:
        items = _as_list(card.get(k))
        if items:
            out[k] = ",".join(items)
    return out


def card_base_models(card: Mapping[str, str | list[str] | None]) -> list[str]:
    """The card's ``base_model`` entries."""
    return _as_list(card.get("base_model"))


_CARD_RELATIONS = {"adapter": "adapter", "merge": "merge", "quantized": "quantize", "finetune": "finetune"}


def card_relation(card: Mapping[str, str | list[str] | None]) -> str | None:
    """The mgit relation of the card's ``base_model_relation`` (``quantized`` -> ``quantize``), if any."""
    v = card.get("base_model_relation")
    return _CARD_RELATIONS.get(v.strip().lower()) if isinstance(v, str) else None


# -- PEFT adapters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterConfig:
    """What mgit reads from ``adapter_config.json``."""

    peft_type: str
    base_model: str | None
    r: int | None
    lora_alpha: float | None
    target_modules: list[str] | str | None
    fan_in_fan_out: bool

    def meta(self) -> dict[str, str]:
        """Version metadata: ``adapter_type``, ``r``, ``lora_alpha``, ``target_modules``."""
        out = {"adapter_type": self.peft_type}
        if self.r is not None:
            out["r"] = str(self.r)
        if self.lora_alpha is not None:
            a = self.lora_alpha
            out["lora_alpha"] = str(int(a)) if float(a).is_integer() else str(a)
        if isinstance(self.target_modules, str):
            out["target_modules"] = self.target_modules
        elif self.target_modules:
            out["target_modules"] = ",".join(sorted(self.target_modules))
        return out


def read_adapter_config(folder: str | os.PathLike[str]) -> AdapterConfig | None:
    """The PEFT adapter config of ``folder``, or None when it has no ``adapter_config.json``.

    Raises:
        InvalidModelFileError: the file is not a JSON object or a field has the wrong type.
    """
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InvalidModelFileError(ADAPTER_CONFIG, f"not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise InvalidModelFileError(ADAPTER_CONFIG, "not a JSON object")

    def bad(key: str, want: str) -> InvalidModelFileError:
        return InvalidModelFileError(ADAPTER_CONFIG, f"{key} must be {want}, got {cfg[key]!r}")

    peft_type = cfg.get("peft_type", "LORA")
    if not isinstance(peft_type, str) or not peft_type:
        raise bad("peft_type", "a string")
    base = cfg.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise bad("base_model_name_or_path", "a string")
    r = cfg.get("r")
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r <= 0):
        raise bad("r", "a positive integer")
    alpha = cfg.get("lora_alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
        raise bad("lora_alpha", "a number")
    tm = cfg.get("target_modules")
    if tm is not None and not isinstance(tm, str) and not (
        isinstance(tm, list) and all(isinstance(x, str) for x in tm)
    ):
        raise bad("target_modules", "a string or a list of strings")
    fifo = cfg.get("fan_in_fan_out", False)
    return AdapterConfig(
        peft_type=peft_type, base_model=base or None, r=r, lora_alpha=alpha, target_modules=tm,
        fan_in_fan_out=bool(fifo),
    )


_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")
_PEFT_PREFIX = "base_model.model."


def base_key(name: str) -> str | None:
    """The base weight a LoRA factor belongs to (``base_model.model.x.query.lora_A.weight`` ->
    ``x.query.weight``), or None for another tensor."""
    for suf in _LORA_SUFFIXES:
        if name.endswith(suf):
            stem = name[: -len(suf)]
            if stem.startswith(_PEFT_PREFIX):
                stem = stem[len(_PEFT_PREFIX) :]
            return stem + ".weight"
    return None


def lora_shapes(folder: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``{base weight name: (lora_A shape, lora_B shape)}`` from the adapter's safetensors files
    (only modules with both factors)."""
    from mgit.formats.safetensors import UnknownDtypeError, read_header

    a: dict[str, tuple[int, ...]] = {}
    b: dict[str, tuple[int, ...]] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            header = read_header(path)
        except (UnknownDtypeError, InvalidModelFileError, OSError):
            continue
        for spec in header.tensors:
            key = base_key(spec.name)
            if key is not None:
                (a if spec.name.endswith(_LORA_SUFFIXES[0]) else b)[key] = tuple(spec.shape)
    return {k: (a[k], b[k]) for k in sorted(a) if k in b}


def _fits(sa: tuple[int, ...], sb: tuple[int, ...], w: tuple[int, ...], fan_in_fan_out: bool) -> bool:
    if len(sa) < 2 or len(sb) < 2 or sa[0] != sb[1] or len(w) != len(sa):
        return False
    out_dim, in_dim = sb[0], sa[1]
    if tuple(w[:2]) == (out_dim, in_dim) and tuple(w[2:]) == tuple(sa[2:]):
        return True
    return fan_in_fan_out and len(w) == 2 and tuple(w) == (in_dim, out_dim)


def adapter_fit(
    lora: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]],
    base_shapes: Mapping[str, tuple[int, ...]],
    *,
    fan_in_fan_out: bool = False,
) -> int:
    """How many of the adapter's target modules fit a candidate base model: the module's base
    weight pairs with one of ``base_shapes`` (by :func:`mgit.formats.names.pair`) and has shape
    (out x in) for ``lora_A`` (r x in) and ``lora_B`` (out x r)."""
    from mgit.formats.names import pair

    pairs = pair(list(lora), base_shapes)
    n = 0
    for key, (sa, sb) in lora.items():
        target = pairs.get(key)
        if target is not None and _fits(sa, sb, tuple(base_shapes[target]), fan_in_fan_out):
            n += 1
    return n


def match_model_lines(name: str, lines: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The model lines that ``name`` (a hub id or a path, as in ``base_model`` or
    ``base_model_name_or_path``) designates, best match first.

    Args:
        name: the reference.
        lines: ``{model line: metadata of its latest version}``.

    Returns:
        Lines whose ``hf_repo`` equals ``name``, then lines named ``name``, then lines named
        like its last path component.
    """
    name = name.strip().rstrip("/")
    if not name:
        return []
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    out: list[str] = []
    for rank in (
        lambda m, meta: meta.get("hf_repo") == name,
        lambda m, meta: m == name,
        lambda m, meta: m == last or m == name.replace("/", "--"),
    ):
        for m in sorted(lines):
            if m not in out and rank(m, lines[m]):
                out.append(m)
    return out
