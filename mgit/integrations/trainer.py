"""``MgitCallback``: every checkpoint a transformers ``Trainer`` saves becomes a version.

On each save (``on_save``, called once the checkpoint folder is written) the model files of
``<output_dir>/checkpoint-<step>`` (config, weights, tokenizer files: everything but the training
state, see :data:`mgit.checkpoints.CHECKPOINT_EXCLUDE`) are committed as the next version of a
model line, stored as deltas against the previous one. The first version of a new line derives
from the model training started from: ``parent=`` if given, else the version the model was
loaded from (``mgit.transformers.from_pretrained`` marks it; a folder from
``Repository.materialize`` is recognised by its path), else none. Each version records as
metadata the metrics logged since the previous save (the latest value of each: ``loss``,
``learning_rate``, ``grad_norm``, ``eval_*``...), ``step`` and ``epoch``, and selected training
arguments as ``args.<name>``. Only the main process commits.

Example:
    >>> trainer = Trainer(model, args, train_dataset=ds,                       # doctest: +SKIP
    ...                   callbacks=[MgitCallback("repo", model="bert-sst2")])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mgit.checkpoints import CHECKPOINT_EXCLUDE, commit_checkpoint
from mgit.core import CommitInfo, RepoCore
from mgit.transformers import open_repo

__all__ = ["TRAINING_ARGS", "MgitCallback"]

#: Training arguments recorded by default (as ``args.<name>``), when set.
TRAINING_ARGS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "weight_decay", "warmup_steps", "warmup_ratio",
    "lr_scheduler_type", "optim", "seed", "bf16", "fp16",
)  # fmt: skip


def _text(v: Any) -> str | None:
    """A metadata value: numbers and strings as text; anything else (lists, None) left out."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    value = getattr(v, "value", None)  # an enum (lr_scheduler_type, optim)
    return str(value) if isinstance(value, str) else None


class MgitCallback(TrainerCallback):  # type: ignore[misc]
    """Commit each checkpoint the Trainer saves (see the module docstring).

    Args:
        repo: a ``Repository`` or a path in one (default: the current folder's).
        model: the model line the checkpoints are versions of.
        parent: the version training started from (default: found from the model, see above).
        relation: the edge to ``parent`` (default ``finetune``).
        message: the commit message, formatted with ``step``, ``epoch`` and ``model``.
        meta: extra metadata for every version.
        training_args: which ``TrainingArguments`` fields to record.
        exclude: globs of checkpoint files not committed (default: the training state).

    Attributes:
        commits: the versions written so far, oldest first.
    """

    def __init__(
        self,
        repo: RepoCore | str | os.PathLike[str] | None = None,
        *,
        model: str,
        parent: str | None = None,
        relation: str = "finetune",
        message: str = "{model} checkpoint-{step}",
        meta: Mapping[str, str] | None = None,
        training_args: Sequence[str] = TRAINING_ARGS,
        exclude: Iterable[str] = CHECKPOINT_EXCLUDE,
    ) -> None:
        self.core = open_repo(repo)
        self.model = model
        self.parent = self.core.resolve(parent) if parent is not None else None
        self.relation = relation
        self.message = message
        self.meta = dict(meta or {})
        self.training_args = tuple(training_args)
        self.exclude = tuple(exclude)
        self.commits: list[CommitInfo] = []
        self._seen_logs = 0

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        """Find the version the model was loaded from, when no parent was given."""
        if self.parent is None and model is not None:
            self.parent = self._origin(model)

    def _origin(self, model: Any) -> str | None:
        from mgit.cache import commit_of_folder

        oid = getattr(model, "mgit_commit", None)
        if isinstance(oid, str) and oid in self.core.store:
            return oid
        path = getattr(getattr(model, "config", None), "_name_or_path", None)
        return commit_of_folder(self.core, path) if isinstance(path, str) and path else None

    def _meta(self, args: Any, state: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        logs = list(state.log_history)[self._seen_logs :]
        self._seen_logs = len(state.log_history)
        for entry in logs:
            for k, v in entry.items():
                t = _text(v)
                if k not in ("step", "epoch") and t is not None:
                    out[k] = t
        out["step"] = str(state.global_step)
        if state.epoch is not None:
            out["epoch"] = _text(round(float(state.epoch), 6)) or ""
        for name in self.training_args:
            t = _text(getattr(args, name, None))
            if t is not None:
                out[f"args.{name}"] = t
        out.update(self.meta)
        return out

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Commit ``<output_dir>/checkpoint-<global_step>`` (main process only)."""
        if not state.is_world_process_zero:
            return
        from mgit.refs.store import HEADS

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        tip = self.core.refs.read(HEADS + self.model)
        parent = self.parent if tip is None else None
        msg = self.message.format(step=state.global_step, epoch=state.epoch, model=self.model)
        res = commit_checkpoint(
            self.core, folder, model=self.model, message=msg, parent=parent,
            relation=self.relation if parent is not None else None, meta=self._meta(args, state),
            exclude=self.exclude,
        )  # fmt: skip
        self.commits.append(res.commit)
