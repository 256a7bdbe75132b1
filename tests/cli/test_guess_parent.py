"""``mgit import DIR --guess-parent``: the closest stored model becomes the parent; a folder unlike
anything stored is imported as a root; every candidate is scored quickly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_main, write_model_folder

from mgit.repo import Repository

CHUNK = 65536


def tiny(
    seed: int, *, layers: int = 3, hidden: int = 32, vocab: int = 128
) -> dict[str, np.ndarray]:
    """A tiny BERT-like state dict of float32 normal values."""
    rng = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": f(vocab, hidden), "embeddings.norm.weight": f(hidden)}
    for i in range(layers):
        t[f"encoder.layer.{i}.attention.weight"] = f(hidden, hidden)
        t[f"encoder.layer.{i}.attention.bias"] = f(hidden)
        t[f"encoder.layer.{i}.ffn.weight"] = f(2 * hidden, hidden)
    t["classifier.weight"] = f(2, hidden)
    t["classifier.bias"] = f(2)
    return t


def perturb(
    t: dict[str, np.ndarray], names: list[str], scale: float, seed: int = 1
) -> dict[str, np.ndarray]:
    """Multiply the named tensors by (1 + scale * noise): a small finetuning step."""
    rng = np.random.default_rng(seed)
    out = dict(t)
    for n in names:
        noise = rng.standard_normal(t[n].shape).astype(np.float32)
        out[n] = (t[n] * (1 + scale * noise)).astype(np.float32)
    return out


def cli_json(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Any:
    code, out, err = run_main(capsys, root, "--json", *args)
    assert code == 0, (args, out, err)
    return json.loads(out)


class Stored:
    def __init__(
        self, root: Path, tmp: Path, oids: dict[str, str], base: dict[str, np.ndarray]
    ) -> None:
        self.root = root
        self.tmp = tmp
        self.oids = oids
        self.base = base


@pytest.fixture
def stored(tmp_path: Path) -> Stored:
    """The base plus three unrelated models: two with the base's architecture (other random
    initialisations: every tensor pairs by name and shape, none is identical) and one of another
    architecture."""
    root = tmp_path / "repo"
    repo = Repository.init(root, model="base", chunk_size=CHUNK)
    base = tiny(0)
    models = {
        "other-a": tiny(101),
        "base": base,
        "other-b": tiny(202),
        "other-c": tiny(303, layers=2, hidden=24, vocab=96),
    }
    oids = {}
    for name, tensors in models.items():
        src = tmp_path / "src" / name
        write_model_folder(src, tensors)
        oids[name] = repo.import_folder(src, model=name, message=name).commit.oid
    return Stored(root, tmp_path, oids, base)


def test_guess_parent_picks_the_base_of_a_light_finetune(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    ft = perturb(
        stored.base, ["classifier.weight", "classifier.bias", "encoder.layer.2.ffn.weight"], 1e-3
    )
    src = stored.tmp / "ft"
    write_model_folder(src, ft)
    res = cli_json(
        capsys, stored.root, "import", str(src), "--model", "ft", "-m", "ft", "--guess-parent"
    )
    cands = res["guessed_parents"]
    assert len(cands) == 4
    assert cands[0]["oid"] == stored.oids["base"] and cands[0]["model"] == "base"
    assert {c["model"] for c in cands} == {"base", "other-a", "other-b", "other-c"}
    scores = [c["score"] for c in cands]
    assert scores == sorted(scores, reverse=True)
    assert cands[0]["score"] > 0.9 and cands[0]["identical_fraction"] > 0.5
    assert all(c["score"] < 0.2 for c in cands[1:]), cands
    for c in cands:
        assert 0 <= c["seconds"] < 0.5, c  # each candidate scored in well under a second
        assert set(c) >= {
            "oid",
            "model",
            "score",
            "identical_fraction",
            "paired_fraction",
            "seconds",
        }
    assert res["commit"]["parents"] == [{"oid": stored.oids["base"], "relation": "finetune"}]
    show = cli_json(capsys, stored.root, "show", "ft")
    assert show["parents"] == [{"oid": stored.oids["base"], "relation": "finetune"}]


def test_guess_parent_of_a_full_finetune_uses_closeness(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every tensor moved a little: no chunk is identical, the sampled values decide."""
    ft = perturb(stored.base, list(stored.base), 1e-4, seed=3)
    src = stored.tmp / "full-ft"
    write_model_folder(src, ft)
    res = cli_json(
        capsys,
        stored.root,
        "import",
        str(src),
        "--model",
        "ft",
        "-m",
        "ft",
        "--guess-parent",
        "--relation",
        "distill",
    )
    cands = res["guessed_parents"]
    assert cands[0]["model"] == "base" and cands[0]["identical_fraction"] == 0
    assert cands[0]["score"] > 0.5 and all(c["score"] < 0.2 for c in cands[1:]), cands
    assert res["commit"]["parents"] == [{"oid": stored.oids["base"], "relation": "distill"}]


def test_guess_parent_text_output(stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    ft = perturb(stored.base, ["classifier.weight"], 1e-3)
    src = stored.tmp / "ft"
    write_model_folder(src, ft)
    code, out, err = run_main(
        capsys, stored.root, "import", str(src), "--model", "ft", "-m", "ft", "--guess-parent"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"candidate base@{stored.oids['base'][:12]}: score ")
    assert sum(ln.startswith("candidate ") for ln in lines) == 4
    assert "imported as a root" not in out
    assert f"finetune of {stored.oids['base'][:12]}" in out


@pytest.mark.parametrize("kind", ["other-architecture", "same-architecture-random"])
def test_unlike_anything_is_imported_as_a_root(
    stored: Stored, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "other-architecture":
        rng = np.random.default_rng(7)
        tensors = {
            "conv1.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
            "fc.weight": rng.standard_normal((10, 72)).astype(np.float32),
        }
    else:
        tensors = tiny(999)  # same names and shapes as the base, unrelated values
    src = stored.tmp / "new"
    write_model_folder(src, tensors)
    code, out, err = run_main(
        capsys, stored.root, "import", str(src), "--model", "new", "-m", "new", "--guess-parent"
    )
    assert code == 0, err
    assert "imported as a root" in out
    assert cli_json(capsys, stored.root, "show", "new")["parents"] == []
    # the JSON result lists the candidates, none close enough
    src2 = stored.tmp / "new2"
    write_model_folder(src2, {k: (v * -3).astype(np.float32) for k, v in tensors.items()})
    res = cli_json(
        capsys, stored.root, "import", str(src2), "--model", "new2", "-m", "x", "--guess-parent"
    )
    assert res["commit"]["parents"] == []
    assert len(res["guessed_parents"]) == 5
    assert all(c["score"] < 0.2 for c in res["guessed_parents"]), res["guessed_parents"]
    assert all(0 <= c["seconds"] < 0.5 for c in res["guessed_parents"])


def test_an_explicit_parent_wins_over_guessing(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    ft = perturb(stored.base, ["classifier.weight"], 1e-3)
    src = stored.tmp / "ft"
    write_model_folder(src, ft)
    res = cli_json(
        capsys,
        stored.root,
        "import",
        str(src),
        "--model",
        "ft",
        "-m",
        "ft",
        "--guess-parent",
        "--parent",
        "other-a",
    )
    assert res["commit"]["parents"] == [{"oid": stored.oids["other-a"], "relation": "finetune"}]


def test_guess_parent_api_ranks_without_committing(stored: Stored) -> None:
    ft = perturb(stored.base, ["encoder.layer.0.attention.weight"], 1e-3)
    src = stored.tmp / "ft"
    write_model_folder(src, ft)
    repo = Repository.open(stored.root)
    before = repo.model_heads()
    cands = repo.guess_parent(src)
    assert cands[0].oid == stored.oids["base"]
    assert cands[0].score > cands[1].score
    assert repo.model_heads() == before
    assert len(repo.guess_parent(src, limit=2)) == 2


def test_guess_parent_picks_the_right_version_of_a_line(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    """base has two versions that differ in two big tensors: a finetune of each finds its own."""
    v2 = perturb(
        stored.base,
        ["embeddings.word_embeddings.weight", "encoder.layer.0.ffn.weight"],
        0.5,
        seed=8,
    )
    src = stored.tmp / "base-v2"
    write_model_folder(src, v2)
    v2_oid = cli_json(capsys, stored.root, "import", str(src), "--model", "base", "-m", "v2")[
        "commit"
    ]["oid"]
    for name, origin, want in (
        ("ft-of-v2", v2, v2_oid),
        ("ft-of-v1", stored.base, stored.oids["base"]),
    ):
        folder = stored.tmp / name
        write_model_folder(folder, perturb(origin, ["classifier.weight"], 1e-3))
        res = cli_json(
            capsys,
            stored.root,
            "import",
            str(folder),
            "--model",
            name,
            "-m",
            name,
            "--guess-parent",
        )
        assert res["guessed_parents"][0]["oid"] == want, (name, res["guessed_parents"])
        assert res["commit"]["parents"] == [{"oid": want, "relation": "finetune"}]
