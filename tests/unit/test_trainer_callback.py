"""``MgitCallback``: a short CPU training run of a tiny BERT classifier saves three checkpoints;
each becomes a version of the model line, derived from the version training started from, with
the logged metrics and training arguments as metadata and no optimizer state in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mgit.objects.ids import hash_object
from mgit.repo import Repository

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHUNK = 65536


def _classifier(seed: int) -> Any:
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(cfg)


def _data(n: int = 24) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 64, (n, 8), generator=g)
    return [
        {
            "input_ids": ids[i],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": int(ids[i, 0] > 32),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("how", ["parent", "from_pretrained"])
def test_each_save_is_a_version(tmp_path: Path, how: str) -> None:
    from mgit.integrations import MgitCallback

    _classifier(0).save_pretrained(tmp_path / "base")
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    base = repo.import_folder(tmp_path / "base", model="bert-cls", message="init").commit.oid
    if how == "parent":
        model = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "base")
        cb = MgitCallback(repo, model="bert-run", parent="bert-cls")
    else:
        from mgit.transformers import from_pretrained

        model = from_pretrained("bert-cls", repo=repo)  # marks the version it was loaded from
        cb = MgitCallback(str(repo.root), model="bert-run")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=6, save_steps=2, logging_steps=1,
        per_device_train_batch_size=4, learning_rate=1e-3, report_to=[], use_cpu=True,
        save_strategy="steps", seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_data(), callbacks=[cb])
    trainer.train()

    log = [c for c in repo.log("bert-run") if c.model == "bert-run"]  # without the base's history
    assert [c.meta["step"] for c in log] == ["6", "4", "2"]
    assert [c.oid for c in reversed(log)] == [c.oid for c in cb.commits]
    assert log[-1].parents == [(base, "finetune")]
    assert [c.parents for c in log[:-1]] == [[(log[1].oid, "version")], [(log[2].oid, "version")]]
    first = log[-1].meta
    history = [e for e in trainer.state.log_history if e.get("step", 0) <= 2 and "loss" in e]
    assert first["loss"] == str(history[-1]["loss"]) and "learning_rate" in first
    assert first["args.learning_rate"] == "0.001" and first["args.max_steps"] == "6"
    assert first["args.per_device_train_batch_size"] == "4"
    for c in log:
        files = sorted(repo.commit_tree(c.oid).files)
        assert files == ["config.json", "model.safetensors"], files
    # The checkpoints' training state was never stored, not even under another name: no
    # optimizer moment is a stored chunk or a packed tensor's digest.
    stored_ids = set(repo.store.iter_oids())
    for c in log:
        for e in repo.commit_tree(c.oid).files.values():
            stored_ids |= {m.digest for _, m in e.tensors if m.digest}
    for step in (2, 4, 6):
        folder = tmp_path / "out" / f"checkpoint-{step}"
        opt = torch.load(folder / "optimizer.pt", weights_only=True)["state"]
        moments = [t for st in opt.values() for k, t in st.items() if k.startswith("exp_avg")]
        assert len(moments) > 10
        for t in moments:
            assert hash_object("chunk", t.contiguous().numpy().tobytes()) not in stored_ids
        # Each version's weights are the checkpoint's.
        assert (
            repo.read_file(f"bert-run~{(6 - step) // 2}", "model.safetensors")
            == (folder / "model.safetensors").read_bytes()
        )
    # The metrics are in `mgit log`'s JSON too.
    from helpers import run_cli

    out = run_cli(repo.root, "--json", "log", "bert-run")
    assert out.exit_code == 0 and '"loss"' in out.output and '"args.learning_rate"' in out.output
