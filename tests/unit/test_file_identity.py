"""A tensor is identified by its file and its name: in a diffusers folder (``unet/`` and ``vae/``
both hold ``conv_in.weight``) and a Trainer folder (``checkpoint-30/model.safetensors`` beside
``model.safetensors``) storage pairs each tensor with the same file's, and reads neither drop a
tensor nor return another file's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_array, sha256_tree, write_model_folder, write_safetensors

from mgit.errors import EXIT_CODES, AmbiguousTensorError, NoTensorsError, RefNotFoundError
from mgit.pairing import ParentIndex, pair_tensors
from mgit.objects.model import FileEntry, TensorManifest, Tree

UNET = "unet/diffusion_pytorch_model.safetensors"
VAE = "vae/diffusion_pytorch_model.safetensors"
TEXT = "text_encoder/model.safetensors"


def _rand(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def diffusers(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Three components; ``conv_in.weight`` (same shape and dtype) in two of them, and
    ``conv_out.bias`` (small: packed) in two of them."""
    return {
        UNET: {"conv_in.weight": _rand(seed, 128, 256), "down.0.weight": _rand(seed + 1, 200, 100),
               "conv_out.bias": _rand(seed + 2, 16)},
        VAE: {"conv_in.weight": _rand(seed + 3, 128, 256), "conv_out.bias": _rand(seed + 4, 16)},
        TEXT: {"embeddings.weight": _rand(seed + 5, 100, 200)},
    }


def write_folder(root: Path, files: dict[str, dict[str, np.ndarray]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}\n')
    for rel, tensors in files.items():
        write_safetensors(root / rel, tensors, {"format": "pt"})
    return root


def nudge(a: np.ndarray, step: float = 1e-3) -> np.ndarray:
    return (a + np.float32(step) * np.sign(a + np.float32(0.5))).astype(np.float32)


def _bases(repo: Any, ref: str, key: str) -> list[str | None]:
    return [repo.store.header(c).base for c in repo.tensors(ref)[key].chunks]


# ----------------------------------------------------------------------------------------------
# pairing


def test_pairing_keys_on_file_and_name() -> None:
    parent = [(UNET, "w"), (VAE, "w"), (UNET, "a"), ("model-00001-of-00002.safetensors", "x"),
              ("model-00002-of-00002.safetensors", "bert.y")]
    child = [(UNET, "w"), (VAE, "w"), ("unet/new.safetensors", "a"), ("model.safetensors", "x"),
             ("model.safetensors", "y"), ("other.safetensors", "w")]
    got = pair_tensors(child, parent)
    assert got == {
        (UNET, "w"): (UNET, "w"),
        (VAE, "w"): (VAE, "w"),
        ("unet/new.safetensors", "a"): (UNET, "a"),  # a renamed file: by name
        ("model.safetensors", "x"): ("model-00001-of-00002.safetensors", "x"),  # re-sharded
        ("model.safetensors", "y"): ("model-00002-of-00002.safetensors", "bert.y"),  # head prefix
    }  # ("other.safetensors", "w"): two parent files hold "w", so it pairs with neither


def test_a_checkpoint_beside_the_model_pairs_with_the_parent_model() -> None:
    parent = [("model.safetensors", "w"), ("model.safetensors", "v")]
    child = [("model.safetensors", "w"), ("checkpoint-30/model.safetensors", "w"),
             ("model.safetensors", "bert.v")]
    assert pair_tensors(child, parent) == {
        ("model.safetensors", "w"): ("model.safetensors", "w"),
        ("checkpoint-30/model.safetensors", "w"): ("model.safetensors", "w"),
        ("model.safetensors", "bert.v"): ("model.safetensors", "v"),
    }


def test_one_file_pairs_exactly_as_the_name_rule() -> None:
    """A single file (or unique names) on each side: the pairs are ``pair``'s, so a same-dtype
    lineage stores the very same objects (``test_golden_store``)."""
    from mgit.formats.names import pair

    cases = [(["bert.e.w", "e.w", "c.w"], ["e.w", "c.w"]), (["x", "bert.x"], ["x"]),
             (["e.w"], ["bert.e.w", "model.e.w"]), (["a", "b"], ["bert.a", "roberta.b", "b"])]
    for child, parent in cases:
        got = pair_tensors([("m.safetensors", n) for n in child], [("m.safetensors", n) for n in parent])
        assert {c[1]: p[1] for c, p in got.items()} == pair(child, parent)
        moved = pair_tensors([("a.safetensors", n) for n in child], [("b.safetensors", n) for n in parent])
        assert {c[1]: p[1] for c, p in moved.items()} == pair(child, parent)


def test_parent_index_finds_the_same_files_tensor() -> None:
    def entry(*names: str) -> FileEntry:
        tensors = tuple((n, TensorManifest("F32", (16384,), 65536, (f"{i:064x}",)))
                        for i, n in enumerate(names, start=len(names[0])))
        return FileEntry(kind="safetensors", size=1, xxh="0" * 32, header="0" * 64, tensors=tensors)

    tree = Tree({UNET: entry("conv_in.weight", "u"), VAE: entry("conv_in.weight", "vv")})
    index = ParentIndex(None, tree, [(VAE, "conv_in.weight"), (UNET, "conv_in.weight")])  # type: ignore[arg-type]
    assert index.find("conv_in.weight", "F32", 65536, file=VAE) is tree.files[VAE].tensors[0][1]
    assert index.find("conv_in.weight", "F32", 65536, file=UNET) is tree.files[UNET].tensors[0][1]
    assert "conv_in.weight" not in index.manifests  # held by two files: no bare-name entry


# ----------------------------------------------------------------------------------------------
# storage, end to end


def test_diffusers_components_pair_within_their_own_file(repo: Any, tmp_path: Path) -> None:
    v1 = diffusers()
    write_folder(tmp_path / "v1", v1)
    repo.import_folder(tmp_path / "v1", model="sd", message="v1")
    v2 = {rel: dict(t) for rel, t in v1.items()}
    v2[VAE]["conv_in.weight"] = nudge(v1[VAE]["conv_in.weight"])
    v2[UNET]["conv_in.weight"] = nudge(v1[UNET]["conv_in.weight"], 2e-3)
    folder = write_folder(tmp_path / "v2", v2)
    repo.import_folder(folder, model="sd", message="v2")
    for rel in (UNET, VAE):
        key = f"{rel}:conv_in.weight"
        assert _bases(repo, "sd", key) == list(repo.tensors("sd~1")[key].chunks), rel
    # unchanged components keep their objects
    assert repo.tensors("sd")["embeddings.weight"] == repo.tensors("sd~1")["embeddings.weight"]
    repo.export("sd", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)


def test_trainer_checkpoints_pair_with_the_parent_model(repo: Any, tmp_path: Path) -> None:
    base = {"encoder.weight": _rand(1, 128, 256), "encoder.bias": _rand(2, 256)}
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    final = {n: nudge(a, 2e-3) for n, a in base.items()}
    ckpt = {n: nudge(a) for n, a in base.items()}
    folder = write_model_folder(tmp_path / "run", final)
    write_safetensors(folder / "checkpoint-30" / "model.safetensors", ckpt, {"format": "pt"})
    repo.import_folder(folder, model="ft", parent="base", message="run")
    parent_chunks = list(repo.tensors("base")["encoder.weight"].chunks)
    assert _bases(repo, "ft", "model.safetensors:encoder.weight") == parent_chunks
    assert _bases(repo, "ft", "checkpoint-30/model.safetensors:encoder.weight") == parent_chunks
    assert len(repo.tensors("ft")) == 4
    repo.export("ft", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)


def test_a_resharded_model_still_pairs_by_name(repo: Any, tmp_path: Path) -> None:
    base = {f"layer.{i}.weight": _rand(i, 128, 160) for i in range(4)}
    write_model_folder(tmp_path / "base", base, sharded=4)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    write_model_folder(tmp_path / "one", {n: nudge(a) for n, a in base.items()})
    repo.import_folder(tmp_path / "one", model="one", parent="base", message="resharded")
    for name in base:
        assert _bases(repo, "one", name) == list(repo.tensors("base")[name].chunks)


# ----------------------------------------------------------------------------------------------
# reads


@pytest.fixture
def sd_repo(repo: Any, tmp_path: Path) -> Any:
    write_folder(tmp_path / "sd", diffusers())
    repo.import_folder(tmp_path / "sd", model="sd", message="sd")
    return repo


def test_tensors_are_keyed_by_file_where_names_collide(sd_repo: Any) -> None:
    keys = set(sd_repo.tensors("sd"))
    assert keys == {f"{UNET}:conv_in.weight", f"{VAE}:conv_in.weight", f"{UNET}:conv_out.bias",
                    f"{VAE}:conv_out.bias", "down.0.weight", "embeddings.weight"}
    assert set(sd_repo.tensor_ids("sd")) == keys
    assert set(sd_repo.tensors("sd", file="vae")) == {"conv_in.weight", "conv_out.bias"}


def test_load_tensor_needs_the_file_when_names_collide(sd_repo: Any) -> None:
    tensors = diffusers()
    with pytest.raises(AmbiguousTensorError) as ei:
        sd_repo.load_tensor("sd", "conv_in.weight")
    assert ei.value.files == [UNET, VAE]
    assert UNET in str(ei.value) and VAE in str(ei.value) and ei.value.hint
    assert EXIT_CODES[AmbiguousTensorError] == 2
    assert same_array(sd_repo.load_tensor("sd", "conv_in.weight", file="unet"), tensors[UNET]["conv_in.weight"])
    assert same_array(sd_repo.load_tensor("sd", "conv_in.weight", file=VAE), tensors[VAE]["conv_in.weight"])
    assert same_array(sd_repo.load_tensor("sd", f"{VAE}:conv_in.weight"), tensors[VAE]["conv_in.weight"])
    assert same_array(sd_repo.load_tensor("sd", "down.0.weight"), tensors[UNET]["down.0.weight"])
    assert same_array(sd_repo.load_tensor("sd", "conv_out.bias", file="vae/", torch=True),
                      tensors[VAE]["conv_out.bias"])
    with pytest.raises(RefNotFoundError):
        sd_repo.load_tensor("sd", "down.0.weight", file="vae")


def test_load_state_dict_of_a_component_and_of_everything(sd_repo: Any) -> None:
    tensors = diffusers()
    unet = sd_repo.load_state_dict("sd", file="unet")
    assert set(unet) == set(tensors[UNET])
    assert all(same_array(unet[n], tensors[UNET][n]) for n in unet)
    text = sd_repo.load_state_dict("sd", file=f"./{TEXT}", torch=True)
    assert set(text) == {"embeddings.weight"}
    everything = sd_repo.load_state_dict("sd")
    assert len(everything) == 6
    assert same_array(everything[f"{VAE}:conv_in.weight"], tensors[VAE]["conv_in.weight"])
    with pytest.raises(NoTensorsError) as ei:
        sd_repo.load_state_dict("sd", file="scheduler")
    assert UNET in str(ei.value)


def test_a_trainer_folder_lists_every_tensor(repo: Any, tmp_path: Path) -> None:
    model = {f"layer.{i}.weight": _rand(i, 64, 64) for i in range(3)}
    folder = write_model_folder(tmp_path / "run", model)
    write_safetensors(folder / "checkpoint-30" / "model.safetensors", {n: nudge(a) for n, a in model.items()})
    repo.import_folder(folder, model="run", message="run")
    assert len(repo.tensors("run")) == 6
    ckpt = repo.load_state_dict("run", file="checkpoint-30")
    assert set(ckpt) == set(model)
    assert same_array(ckpt["layer.1.weight"], nudge(model["layer.1.weight"]))
    assert same_array(repo.load_tensor("run", "layer.1.weight", file="model.safetensors"), model["layer.1.weight"])


def test_a_version_without_tensors_raises(repo: Any, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "config.json").write_text("{}\n")
    (folder / "weights.npz").write_bytes(b"\x00" * 1000)
    repo.import_folder(folder, model="plain", message="no tensors")
    assert repo.tensors("plain") == {}
    for call in (lambda: repo.load_state_dict("plain"), lambda: repo.load_tensor("plain", "w")):
        with pytest.raises(NoTensorsError) as ei:
            call()
        assert "config.json" in str(ei.value) and "weights.npz" in str(ei.value)
    assert EXIT_CODES[NoTensorsError] == 2
    with pytest.raises(RefNotFoundError):
        repo.load_state_dict("no-such-model")


def test_asking_by_name_alone_still_finds_an_unambiguous_pair() -> None:
    """Callers that know only a tensor's name (an ingest path of another file kind) get the
    parent tensor when every child tensor of that name pairs with the same one."""
    m1 = TensorManifest("F32", (16384,), 65536, ("1" * 64,))
    m2 = TensorManifest("F32", (16384,), 65536, ("2" * 64,))
    e1 = FileEntry(kind="safetensors", size=1, xxh="0" * 32, header="0" * 64, tensors=(("w", m1),))
    e2 = FileEntry(kind="safetensors", size=1, xxh="0" * 32, header="0" * 64, tensors=(("w", m2), ("v", m2)))
    index = ParentIndex(None, Tree({UNET: e1, VAE: e2}), [(UNET, "w"), (VAE, "w"), (VAE, "v")])  # type: ignore[arg-type]
    assert index.find("v", "F32", 65536) is m2
    assert index.find("w", "F32", 65536) is None  # two different parents: say which file
    assert index.find("w", "F32", 65536, file=UNET) is m1
    assert index.pairs == {"w": "w", "v": "v"}
