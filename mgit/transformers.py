"""Hugging Face transformers models straight from the store: ``from_pretrained(REF)``.

The model is built from the version's ``config.json`` (read from the store into memory) and
its tensors are loaded from the store as torch tensors (bf16 stays bf16: the bytes are viewed
as ``torch.bfloat16``, never converted through float32), then handed to transformers'
``from_pretrained(None, config=..., state_dict=...)``: the same loading path as a folder, so
tied weights (GPT-2's ``lm_head`` tied to ``wte``, saved once) are tied, missing or unexpected
keys are reported the same way, and ``dtype`` (``torch_dtype``), ``device_map`` and the other
``from_pretrained`` options apply. No weight file is written.

A LoRA adapter version (``adapter_config.json`` and no ``config.json``) loads as its base
model with the adapter merged in (:func:`mgit.adapters.merged_state_dict`).

This module is named after the library it serves; inside it (and everywhere in mgit) imports
are absolute, so ``import transformers`` is always the Hugging Face package.
"""

from __future__ import annotations

import os
from typing import Any

from mgit.core import RepoCore
from mgit.errors import NoTensorsError, UsageError

__all__ = ["from_pretrained", "open_repo", "weight_files"]


def open_repo(repo: RepoCore | str | os.PathLike[str] | None) -> RepoCore:
    """``repo`` itself, or the repository at that path (None: the current folder's)."""
    if isinstance(repo, RepoCore):
        return repo
    from mgit.repo import Repository

    return Repository.open("." if repo is None else repo)


def weight_files(tree: Any, subfolder: str = "") -> list[str]:
    """The files transformers would load weights from, in ``subfolder`` (``""``: the top):
    its safetensors files holding tensors (``adapter_model.safetensors`` aside), else its
    PyTorch checkpoints (``.bin``/``.pt``/``.pth``)."""
    prefix = subfolder.strip("/") + "/" if subfolder.strip("/") else ""

    def here(path: str) -> bool:
        return path.startswith(prefix) and "/" not in path[len(prefix) :]

    files = {p: e for p, e in tree.files.items() if here(p) and e.tensors}
    st = sorted(
        p
        for p, e in files.items()
        if e.kind == "safetensors" and not p.endswith("adapter_model.safetensors")
    )
    return st or sorted(p for p, e in files.items() if e.kind == "torchzip")


def _model_class(cls: Any, config: Any) -> Any:
    """The concrete model class: ``cls``, or what an ``AutoModel...`` class picks for ``config``."""
    mapping = getattr(cls, "_model_mapping", None)
    if mapping is None:
        return cls
    from transformers.models.auto.auto_factory import _get_model_class

    return _get_model_class(config, mapping)


def _config(cls: Any, values: dict[str, Any], ref: str) -> Any:
    import transformers

    model_type = values.get("model_type")
    config_class = (
        getattr(cls, "config_class", None) if getattr(cls, "_model_mapping", None) is None else None
    )
    if config_class is None:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
            raise UsageError(
                f"config.json of {ref} has model_type {model_type!r}, which transformers "
                f"{transformers.__version__} does not know",
                hint="pass cls= a model class, or config= a config object",
            )
        config_class = CONFIG_MAPPING[model_type]
    return config_class.from_dict(dict(values))


def from_pretrained(
    ref: str,
    cls: Any = None,
    *,
    repo: RepoCore | str | os.PathLike[str] | None = None,
    subfolder: str = "",
    **kwargs: Any,
) -> Any:
    """A transformers model of REF, loaded from the store (see the module docstring).

    Args:
        ref: the version (a model name, tag, commit id...).
        cls: a model class (``BertForSequenceClassification``) or an auto class
            (``AutoModelForCausalLM``); default: the config's ``architectures[0]``, else
            ``AutoModel``.
        repo: a ``Repository`` or a path in one (default: the current folder's).
        subfolder: the folder of the version holding the model (a diffusers component,
            ``checkpoint-30``).
        kwargs: passed to ``from_pretrained`` (``dtype``/``torch_dtype``, ``device_map``,
            ``config`` to replace the stored config, ``attn_implementation``...).

    Returns:
        The model, in eval mode as ``from_pretrained`` leaves it; ``model.mgit_commit`` is the
        version's commit id.

    Raises:
        PathNotFoundError: no ``config.json`` (and no ``config=`` given).
        NoTensorsError: no weight file in the version (or ``subfolder``).
        AdapterMergeError: an adapter version that cannot be merged.
    """
    import transformers

    from mgit import cache, tensors

    core = open_repo(repo)
    oid = core.resolve(ref)
    tree = core.commit_tree(oid)
    sub = subfolder.strip("/")
    prefix = sub + "/" if sub else ""
    config = kwargs.pop("config", None)
    if (
        prefix + "adapter_config.json" in tree.files
        and prefix + "config.json" not in tree.files
        and not sub
    ):
        from mgit.adapters import adapter_base, merged_state_dict

        base = kwargs.pop("base", None)
        base_oid = core.resolve(base) if base is not None else adapter_base(core, oid)
        state_dict = merged_state_dict(core, oid, base=base_oid, torch=True)
        config_ref = base_oid or oid
    else:
        files = weight_files(tree, sub)
        if not files:
            raise NoTensorsError(ref, sorted(tree.files), selector=sub or None)
        state_dict = {}
        for path in files:
            part = tensors.load_state_dict(core, oid, file=path, torch=True)
            clash = state_dict.keys() & part.keys()
            if clash:
                raise UsageError(f"tensor {min(clash)!r} of {ref} is in several weight files")
            state_dict.update(part)
        config_ref = oid
    if config is None:
        values = cache.read_config(core, config_ref, prefix + "config.json")
        if cls is None:
            arch = values.get("architectures")
            name = arch[0] if isinstance(arch, list) and arch and isinstance(arch[0], str) else None
            cls = getattr(transformers, name, None) if name else None
            cls = cls or transformers.AutoModel
        config = _config(cls, values, ref)
    elif cls is None:
        cls = transformers.AutoModel
    model_class = _model_class(cls, config)
    loaded = model_class.from_pretrained(None, config=config, state_dict=state_dict, **kwargs)
    model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
    model.mgit_commit = oid
    return loaded
