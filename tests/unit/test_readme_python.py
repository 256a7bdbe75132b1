"""Every Python snippet of the README's "Using mgit from Python and from a training loop"
section runs, in order, on a tiny repository laid out as the snippets assume (``bert-base``
with versions ``bert-sst2`` and ``bert-lora``, and a ``train_ds``).

The section's text lives in ``tests/data/readme_python.md``; once the README holds the section,
its Python blocks must be exactly those of that file (so neither drifts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import tiny_bert_model

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Using mgit from Python and from a training loop"
SECTION = ROOT / "tests" / "data" / "readme_python.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _readme_section() -> str | None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.find(HEADING + "\n")
    if start < 0:
        return None
    rest = text[start + len(HEADING) :]
    end = re.search(r"^## ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_readme_section_matches_the_tested_text() -> None:
    section = _readme_section()
    if section is None:
        pytest.skip("the README does not have the section yet: paste tests/data/readme_python.md")
    assert _blocks(section) == _blocks(SECTION.read_text(encoding="utf-8"))


def _setup(tmp: Path) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from mgit.repo import Repository

    base = tmp / "src" / "base"
    tiny_bert_model(0).save_pretrained(base)
    repo = Repository.init(tmp / "bert-base", model="bert-base", chunk_size=65536)
    repo.import_folder(base, model="bert-base", message="base")
    torch.manual_seed(1)
    cfg = tiny_bert_model(0).config
    cfg.num_labels = 2
    ft = transformers.BertForSequenceClassification(cfg)
    ft.save_pretrained(tmp / "src" / "sst2")
    (tmp / "src" / "sst2" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    repo.import_folder(tmp / "src" / "sst2", model="bert-sst2", parent="bert-base", message="sst2")
    lora = peft.get_peft_model(tiny_bert_model(0), peft.LoraConfig(r=2, target_modules=["query"]))
    lora.save_pretrained(tmp / "src" / "lora")
    repo.import_folder(tmp / "src" / "lora", model="bert-lora", parent="bert-base", message="lora")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 64, (8, 6), generator=g)
    train_ds = [{"input_ids": ids[i], "labels": int(ids[i, 0] > 32)} for i in range(8)]
    return {"train_ds": train_ds}


def test_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("peft")
    section = _readme_section() or SECTION.read_text(encoding="utf-8")
    blocks = _blocks(section)
    assert len(blocks) == 4
    ns = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the README's own snippets
    repo = ns["repo"]
    assert ns["cfg"]["model_type"] == "bert" and ns["vocab"] == b"[PAD]\n[UNK]\n"
    assert type(ns["model"]).__name__ == "BertForSequenceClassification"
    assert ns["folder"] == repo.materialize("bert-sst2", exclude="checkpoint-*")
    assert sorted(ns["merged"]) == sorted(repo.load_state_dict("bert-base"))
    assert ns["res"].commit.parents == [(repo.resolve("bert-sst2"), "finetune")]
    run = [c for c in repo.log("bert-sst2-run") if c.model == "bert-sst2-run"]
    assert [c.meta["step"] for c in run] == ["4", "2"]
