"""``mgit.transformers.from_pretrained``: a model built from a stored version's config with its
tensors loaded from the store, bit-identical to transformers loading the exported folder (tied
weights tied, bf16 kept bf16, ``dtype`` and ``device_map`` passed through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import tiny_bert_model

from mgit.errors import NoTensorsError, PathNotFoundError
from mgit.repo import Repository

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHUNK = 65536


def _gpt2(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(cfg)


def _same_bits(a: Any, b: Any) -> bool:
    """Same dtype, shape and bytes (NaN payloads and -0.0 included)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def _check_identical(model: Any, ref: Any) -> None:
    assert type(model) is type(ref)
    got, want = dict(model.named_parameters()), dict(ref.named_parameters())
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        assert _same_bits(got[k].detach(), w.detach()), k
    gb, wb = dict(model.named_buffers()), dict(ref.named_buffers())
    for k, w in wb.items():
        assert _same_bits(gb[k], w), k


def _stored(tmp_path: Path, model: Any, name: str) -> Repository:
    model.save_pretrained(tmp_path / name)
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    repo.import_folder(tmp_path / name, model=name, message=name)
    return repo


def test_bert_from_the_store_equals_the_exported_folder(tmp_path: Path) -> None:
    from mgit.transformers import from_pretrained

    repo = _stored(tmp_path, tiny_bert_model(3), "bert")
    repo.export("bert", tmp_path / "out")
    want = transformers.BertModel.from_pretrained(tmp_path / "out")
    for cls in (None, transformers.AutoModel, transformers.BertModel):
        model = from_pretrained("bert", cls, repo=repo)
        _check_identical(model, want)
        assert model.mgit_commit == repo.resolve("bert")
    # A path in the repository works as well as a Repository.
    _check_identical(from_pretrained("bert", repo=str(repo.root)), want)


def test_gpt2_tied_weights_are_tied(tmp_path: Path) -> None:
    from mgit.transformers import from_pretrained

    repo = _stored(tmp_path, _gpt2(1), "gpt2")
    names = {n for n, _ in repo.tensors("gpt2").items()}
    assert "lm_head.weight" not in names  # saved once, as transformer.wte.weight
    repo.export("gpt2", tmp_path / "out")
    want = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out")
    model = from_pretrained("gpt2", transformers.AutoModelForCausalLM, repo=repo)
    _check_identical(model, want)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(ids).logits, want(ids).logits)


def test_bf16_stays_bf16_and_dtype_passes_through(tmp_path: Path) -> None:
    from mgit.transformers import from_pretrained

    repo = _stored(tmp_path, tiny_bert_model(4).to(torch.bfloat16), "bf16")
    assert {m.dtype for m in repo.tensors("bf16").values()} == {"BF16"}
    repo.export("bf16", tmp_path / "out")
    want = transformers.BertModel.from_pretrained(tmp_path / "out")
    model = from_pretrained("bf16", repo=repo)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    _check_identical(model, want)
    # dtype= is transformers' own cast, the same on both paths.
    f32 = from_pretrained("bf16", repo=repo, dtype=torch.float32)
    _check_identical(
        f32, transformers.BertModel.from_pretrained(tmp_path / "out", dtype=torch.float32)
    )
    assert {p.dtype for p in f32.parameters()} == {torch.float32}
    old = from_pretrained("bf16", repo=repo, torch_dtype=torch.float16, device_map="cpu")
    assert {p.dtype for p in old.parameters()} == {torch.float16}
    assert {p.device.type for p in old.parameters()} == {"cpu"}


def test_bf16_tensors_load_as_their_bits(tmp_path: Path) -> None:
    """The stored bf16 bytes are viewed as torch bf16 tensors: the same bits safetensors loads."""
    from mgit import tensors

    repo = _stored(tmp_path, tiny_bert_model(5).to(torch.bfloat16), "bf16")
    sd = tensors.load_state_dict(repo, "bf16", torch=True)
    assert {t.dtype for t in sd.values()} == {torch.bfloat16}
    raw = repo.read_file("bf16", "model.safetensors")
    import safetensors.torch

    assert all(_same_bits(v, sd[k]) for k, v in safetensors.torch.load(raw).items())


def test_errors(tmp_path: Path) -> None:
    from mgit.transformers import from_pretrained

    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"model_type": "bert"}')
    repo.import_folder(tmp_path / "cfg", model="cfg", message="config only")
    with pytest.raises(NoTensorsError):
        from_pretrained("cfg", repo=repo)
    m = tiny_bert_model(0)
    m.save_pretrained(tmp_path / "noconf")
    (tmp_path / "noconf" / "config.json").unlink()
    repo.import_folder(tmp_path / "noconf", model="noconf", message="weights only")
    with pytest.raises(PathNotFoundError, match="config.json"):
        from_pretrained("noconf", repo=repo)
    # config= supplies what the version lacks.
    model = from_pretrained("noconf", transformers.BertModel, repo=repo, config=m.config)
    assert torch.equal(model.embeddings.word_embeddings.weight, m.embeddings.word_embeddings.weight)
