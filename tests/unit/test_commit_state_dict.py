"""``commit_state_dict`` (tensors from memory, no folder written) and ``commit_checkpoint``
(a checkpoint's model files, its training state left out)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import tiny_bert_model

from mgit.errors import UsageError
from mgit.repo import Repository

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

CHUNK = 65536


def _every_dtype() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}
    for i, dt in enumerate(
        [
            torch.float32,
            torch.bfloat16,
            torch.float16,
            torch.float64,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
            torch.float8_e4m3fn,
            torch.float8_e5m2,
            torch.complex64,
        ]
    ):
        x = torch.randn(3, 5 + i, generator=g)
        out[f"t{i:02d}.{str(dt).split('.')[-1]}"] = (
            x.to(dt) if dt is not torch.complex64 else torch.complex(x, x)
        )
    out["big.weight"] = torch.randn(96, 512, generator=g).to(torch.bfloat16)  # several chunks
    out["scalar"] = torch.tensor(1.5)
    out["empty"] = torch.zeros(0, 4)
    out["view"] = torch.arange(20.0).reshape(4, 5).t()  # not contiguous
    out["é.unicode"] = torch.ones(2)
    return out


def test_export_equals_save_file(repo: Repository, tmp_path: Path) -> None:
    sd = _every_dtype()
    res = repo.commit_state_dict(
        sd,
        model="mem",
        message="from memory",
        metadata={"format": "pt"},
        files={"config.json": b'{"model_type": "bert"}'},
        meta={"step": "3"},
    )
    assert res.commit.model == "mem" and res.commit.meta == {"step": "3"}
    st.save_file(
        {k: v.contiguous() for k, v in sd.items()},
        tmp_path / "ref.safetensors",
        metadata={"format": "pt"},
    )
    assert repo.read_file("mem", "model.safetensors") == (tmp_path / "ref.safetensors").read_bytes()
    assert repo.read_file("mem", "config.json") == b'{"model_type": "bert"}'
    repo.export("mem", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        tmp_path / "ref.safetensors"
    ).read_bytes()
    back = repo.load_state_dict("mem", torch=True)
    for k, v in sd.items():
        bits = v.contiguous().reshape(-1).view(torch.uint8)
        assert back[k].dtype == v.dtype and torch.equal(
            back[k].reshape(-1).view(torch.uint8), bits
        ), k
    assert repo.tensors("mem")["big.weight"].dtype == "BF16"


def test_without_metadata_and_numpy_arrays(repo: Repository, tmp_path: Path) -> None:
    import ml_dtypes
    import numpy as np

    arrays = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(4, dtype=ml_dtypes.bfloat16),
        "c": np.arange(3, dtype=">i4"),
    }
    repo.commit_state_dict(arrays, model="np", message="numpy")
    want = st.save(
        {
            "a": torch.arange(6.0).reshape(2, 3),
            "b": torch.ones(4, dtype=torch.bfloat16),
            "c": torch.arange(3, dtype=torch.int32),
        }
    )
    assert repo.read_file("np", "model.safetensors") == want


def test_versions_are_deltas_of_their_parent(repo: Repository, tmp_path: Path) -> None:
    model = tiny_bert_model(0)
    model.save_pretrained(tmp_path / "base")
    repo.import_folder(tmp_path / "base", model="bert", message="base")
    with torch.no_grad():
        model.pooler.dense.weight.add_(1.0)
    sd = {k: v for k, v in model.state_dict().items()}
    res = repo.commit_state_dict(
        sd,
        model="ft",
        message="step 1",
        parent="bert",
        files_from="bert",
        metadata={"format": "pt"},
    )
    assert res.commit.parents == [(repo.resolve("bert"), "finetune")]
    files = repo.commit_tree(res.commit.oid).files
    base_files = repo.commit_tree(repo.resolve("bert")).files
    assert sorted(files) == sorted(base_files) and files["config.json"] == base_files["config.json"]
    assert res.stats.new_bytes < res.stats.logical_bytes / 4  # only the changed tensor is new
    second = repo.commit_state_dict(sd, model="ft", message="step 2", files_from="ft")
    assert second.commit.parents == [(res.commit.oid, "version")]
    from mgit.transformers import from_pretrained

    loaded = from_pretrained("ft", repo=repo)
    assert torch.equal(loaded.pooler.dense.weight, model.pooler.dense.weight)


def test_bad_inputs_write_nothing(repo: Repository) -> None:
    before = set(repo.store.iter_oids())
    with pytest.raises(UsageError, match="empty"):
        repo.commit_state_dict({}, model="x", message="m")
    with pytest.raises(UsageError, match="not a tensor"):
        repo.commit_state_dict({"a": [1, 2]}, model="x", message="m")
    with pytest.raises(UsageError, match="must be bytes"):
        repo.commit_state_dict(
            {"a": torch.ones(1)}, model="x", message="m", files={"c.json": "text"}
        )
    with pytest.raises(Exception, match="unsafe path"):
        repo.commit_state_dict(
            {"a": torch.ones(1)}, model="x", message="m", files={"../c.json": b""}
        )
    assert set(repo.store.iter_oids()) == before and repo.refs.read("refs/heads/x") is None
    tmp = repo.mgit_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_commit_checkpoint_leaves_training_state_out(repo: Repository, tmp_path: Path) -> None:
    ck = tmp_path / "checkpoint-4"
    tiny_bert_model(0).save_pretrained(ck)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "scaler.pt"):
        (ck / name).write_bytes(b"state " + name.encode())
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (ck / "global_step4").mkdir()
    (ck / "global_step4" / "zero.pt").write_bytes(b"zero")
    (ck / "vocab.txt").write_text("a\nb\n")
    res = repo.commit_checkpoint(ck, model="run", message="ck 4")
    assert sorted(repo.commit_tree(res.commit.oid).files) == [
        "config.json",
        "model.safetensors",
        "vocab.txt",
    ]
    only_state = tmp_path / "state"
    only_state.mkdir()
    (only_state / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(UsageError, match="no model files"):
        repo.commit_checkpoint(only_state, model="run", message="nothing")
