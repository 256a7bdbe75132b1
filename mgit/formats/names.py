"""Tensor-name conventions shared by storage (delta pairing) and diff (name pairing)."""

from __future__ import annotations

__all__ = ["HEAD_PREFIXES"]

#: Prefixes that task-head and wrapper model classes put before a base model's tensor names
#: (``BertForSequenceClassification`` saves ``bert.embeddings...`` where ``BertModel`` saves
#: ``embeddings...``; PEFT saves ``base_model.model...``; DataParallel ``module...``).
HEAD_PREFIXES: tuple[str, ...] = (
    "base_model.model.",
    "module.",
    "bert.",
    "roberta.",
    "distilbert.",
    "albert.",
    "electra.",
    "deberta.",
    "mpnet.",
    "xlm_roberta.",
    "transformer.",
    "model.",
)
