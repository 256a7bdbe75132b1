"""``mgit diff`` end to end: head-only changes, unchanged tensors decided without reading data,
the working tree as the second side, a merged LoRA's rank, structural diffs of a pruned model and
of a vocabulary extension (text, JSON, HTML), dtype and shape changes, grouping and colours."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from helpers import run_main, write_model_folder

from mgit.repo import Repository

CHUNK = 65536
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RED, GREEN = "\x1b[31m", "\x1b[32m"


# ----------------------------------------------------------------------------------------------
# local helpers


def tiny_bert(
    layers: int = 2, *, hidden: int = 16, vocab: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
    """A few real-BERT-named float32 tensors with plain normal values (no NaN/inf)."""
    rng = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    t = {"bert.embeddings.word_embeddings.weight": f(vocab, hidden)}
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        t[p + "attention.self.query.weight"] = f(hidden, hidden)
        t[p + "attention.self.query.bias"] = f(hidden)
        t[p + "output.dense.weight"] = f(hidden, hidden)
    t["classifier.weight"] = f(2, hidden)
    t["classifier.bias"] = f(2)
    return t


def bert_config(layers: int = 2, *, hidden: int = 16, vocab: int = 64) -> dict[str, Any]:
    return {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification"],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
        "vocab_size": vocab,
        "max_position_embeddings": 16,
    }


class Repo:
    """A repository plus a counter for source folders."""

    def __init__(self, tmp: Path, model: str = "m") -> None:
        self.tmp = tmp
        self.root = tmp / "repo"
        self.repo = Repository.init(self.root, model=model, chunk_size=CHUNK)
        self.n = 0

    def put(
        self,
        tensors: dict[str, np.ndarray],
        *,
        model: str = "m",
        config: dict[str, Any] | None = None,
        **kw: Any,
    ) -> str:
        self.n += 1
        src = self.tmp / f"src{self.n}"
        write_model_folder(src, tensors, config=config)
        return self.repo.import_folder(
            src, model=model, message=f"import {self.n}", **kw
        ).commit.oid


def run(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    code, out, err = run_main(capsys, root, *args)
    assert code == 0, (args, out, err)
    assert "Traceback" not in err
    return out


def run_json(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Any:
    return json.loads(run(capsys, root, "--json", *args))


def entries(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in d["tensors"]}


def chunk_files(repo: Repository, ref: str, name: str) -> list[Path]:
    m = repo.tensors(ref)[name]
    return [repo.store.path_for(c) for c in m.chunks]


@pytest.fixture
def head_only(tmp_path: Path) -> tuple[Repo, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Model m: v1, then v2 where only classifier.weight differs."""
    r = Repo(tmp_path)
    v1 = tiny_bert()
    v2 = dict(v1)
    v2["classifier.weight"] = (v1["classifier.weight"] + 0.05).astype(np.float32)
    r.put(v1)
    r.put(v2)
    return r, v1, v2


# ----------------------------------------------------------------------------------------------
# tensor diff


def test_head_only_change_json(
    head_only: tuple[Repo, dict, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    r, v1, _v2 = head_only
    d = run_json(capsys, r.root, "diff", "m~1", "m")
    assert d["schema"] == 1
    assert d["a"].startswith("m@") and d["b"].startswith("m@") and d["a"] != d["b"]
    ents = entries(d)
    assert set(ents) == set(v1)  # every tensor is listed
    assert len(d["tensors"]) == len(v1)
    for name, e in ents.items():
        want = "changed" if name == "classifier.weight" else "unchanged"
        assert e["status"] == want, name
        assert e["dtype_a"] == e["dtype_b"] == "F32"
        assert e["shape_a"] == e["shape_b"] == list(v1[name].shape)
    s = ents["classifier.weight"]["stats"]
    assert s["numel"] == v1["classifier.weight"].size and s["changed"] == s["numel"]
    assert s["max_abs_diff"] == pytest.approx(0.05, rel=1e-3)
    assert all(e["stats"] is None for n, e in ents.items() if n != "classifier.weight")
    summ = d["summary"]
    assert summ["changed"] == 1 and summ["unchanged"] == len(v1) - 1
    assert summ["added"] == summ["removed"] == summ["shape_changed"] == summ["dtype_changed"] == 0
    assert summ["loaded"] == 1  # only the head's data was read
    assert summ["identical"] is False
    changed_blocks = [b["name"] for b in d["blocks"] if b["status"] != "unchanged"]
    assert changed_blocks == ["classifier"]
    assert d["blocks"][0]["name"] == "classifier"  # biggest change first


def test_head_only_change_text_groups_by_block(
    head_only: tuple[Repo, dict, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    r, v1, _ = head_only
    out = run(capsys, r.root, "diff", "m~1", "m")
    assert not ANSI.search(out)  # not a terminal: no colour
    lines = out.splitlines()
    assert lines[0].startswith("diff m@") and " -> m@" in lines[0]
    assert f"{len(v1)} tensors in a, {len(v1)} in b" in lines[1] and "1 changed" in lines[1]
    (gi,) = [i for i, ln in enumerate(lines) if ln.startswith("~ classifier")]
    assert "1/2 tensors changed" in lines[gi]
    assert re.match(r"^    ~ weight\s+F32 \[2, 16\]\s+L2 ", lines[gi + 1])
    assert not any("bias" in ln for ln in lines)  # unchanged tensors are not listed
    (fold,) = [ln for ln in lines if ln.startswith("= ")]
    assert "3 unchanged blocks (7 tensors)" in fold
    for block in ("bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1"):
        assert block in fold
    # --all lists the unchanged blocks one per line; --level module groups by module
    out = run(capsys, r.root, "diff", "m~1", "m", "--all")
    assert "= bert.encoder.layer.0  (3 tensors)" in out
    out = run(capsys, r.root, "diff", "m~1", "m", "--level", "module")
    assert "~ classifier" in out and "unchanged modules" in out


def test_unchanged_tensors_are_recognized_without_reading_data(
    head_only: tuple[Repo, dict, dict],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, v1, _ = head_only
    repo = Repository.open(r.root)
    shared = [n for n in v1 if n != "classifier.weight"]
    assert repo.tensor_ids("m~1")[shared[0]] == repo.tensor_ids("m")[shared[0]]
    head_chunks = {c for ref in ("m~1", "m") for c in repo.tensors(ref)["classifier.weight"].chunks}
    needed = set(head_chunks)  # and their delta bases (a pack may hold shared small tensors too)
    for c in head_chunks:
        while (b := repo.store.header(c).base) is not None:
            needed.add(b)
            c = b
    # Delete the chunk objects of every tensor both versions share: diff must not need them.
    for name in shared:
        for p in chunk_files(repo, "m", name):
            if p.exists() and p.parent.name + p.name not in needed:
                p.unlink()
    from mgit.objects.store import DiskStore

    reads: list[str] = []
    real_get = DiskStore.get

    def spy(self: DiskStore, oid: str, *a: Any, **kw: Any) -> bytes:
        reads.append(oid)
        return real_get(self, oid, *a, **kw)

    monkeypatch.setattr(DiskStore, "get", spy)
    d = Repository.open(r.root).diff("m~1", "m")
    assert [t.name for t in d.changes()] == ["classifier.weight"]
    assert d.summary.counts["unchanged"] == len(shared)
    assert d.summary.loaded == 1
    chunk_reads = {o for o in reads if repo.store.kind_of(o) == "chunk"}
    assert head_chunks <= chunk_reads <= needed
    # and through the command line
    out = run_json(capsys, r.root, "diff", "m~1", "m")
    assert out["summary"]["changed"] == 1 and out["summary"]["unchanged"] == len(shared)


def test_one_ref_diffs_against_the_working_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "wt"
    t = tiny_bert()
    write_model_folder(root, t, config=bert_config())
    repo = Repository.init(root, model="m", chunk_size=CHUNK)
    repo.add([root])
    repo.commit("v1")
    out = run(capsys, root, "diff", "m")
    assert "working tree" in out.splitlines()[0] and "models are identical" in out
    d = run_json(capsys, root, "diff", "HEAD")
    assert (
        d["b"] == "working tree"
        and d["summary"]["identical"] is True
        and d["summary"]["loaded"] == 0
    )
    # change one tensor in the working tree's model file
    t2 = dict(t)
    name = "bert.encoder.layer.1.output.dense.weight"
    t2[name] = (t[name] * 1.5).astype(np.float32)
    write_model_folder(root, t2, config=bert_config())
    d = run_json(capsys, root, "diff", "m")
    assert d["b"] == "working tree"
    ents = entries(d)
    assert set(ents) == set(t)
    assert [n for n, e in ents.items() if e["status"] != "unchanged"] == [name]
    assert ents[name]["status"] == "changed"
    assert ents[name]["stats"]["relative_change"] == pytest.approx(0.5, rel=1e-4)
    assert d["summary"]["loaded"] == 1
    out = run(capsys, root, "diff", "m")
    assert "~ bert.encoder.layer.1" in out and "output.dense.weight" in out
    # a committed second version against the same working tree: identical
    repo.add([root])
    repo.commit("v2")
    assert run_json(capsys, root, "diff", "m")["summary"]["identical"] is True
    assert run_json(capsys, root, "diff", "m~1")["summary"]["changed"] == 1


def test_merged_rank4_lora_reports_rank_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = Repo(tmp_path)
    base = tiny_bert(2, hidden=32)
    rng = np.random.default_rng(5)
    merged = dict(base)
    touched = [f"bert.encoder.layer.{i}.attention.self.query.weight" for i in range(2)]
    touched.append("bert.encoder.layer.1.output.dense.weight")
    for name in touched:
        b = rng.standard_normal((32, 4)) * 0.05
        a = rng.standard_normal((4, 32)) * 0.05
        merged[name] = (base[name].astype(np.float64) + b @ a).astype(np.float32)
    r.put(base, model="base")
    r.put(merged, model="lora", parent="base", relation="adapter")
    d = run_json(capsys, r.root, "diff", "base", "lora")
    ents = entries(d)
    for name, e in ents.items():
        if name in touched:
            assert e["status"] == "changed"
            rank = e["stats"]["rank"]
            assert rank is not None and rank["effective"] == 4, (name, rank)
            assert rank["energy99"] <= 4
            assert rank["lower_bound"] is False
        else:
            assert e["status"] == "unchanged", name
    out = run(capsys, r.root, "diff", "base", "lora")
    assert out.count("rank 4") == len(touched)
    d = run_json(capsys, r.root, "diff", "base", "lora", "--no-rank")
    assert all(e["stats"]["rank"] is None for e in d["tensors"] if e["stats"])


# ----------------------------------------------------------------------------------------------
# structural diff


@pytest.fixture
def pruned(tmp_path: Path) -> Repo:
    """Model 'full' with 4 layers; 'pruned' derived from it with layers 2 and 3 removed."""
    r = Repo(tmp_path, model="full")
    full = tiny_bert(4)
    r.put(full, model="full", config=bert_config(4))
    small = {k: v for k, v in full.items() if not re.search(r"layer\.[23]\.", k)}
    r.put(small, model="pruned", parent="full", relation="prune", config=bert_config(2))
    return r


def test_structural_pruned_text_json_and_html(
    pruned: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one test that builds and traces the models (dataflow): a tiny BERT config."""
    r = pruned
    html_file = r.tmp / "structural.html"
    # one traced run: JSON on stdout and the HTML page
    sd = run_json(
        capsys, r.root, "diff", "--structural", "full", "pruned", "--html", str(html_file)
    )
    page = html_file.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "bert.encoder.layer.2" in page and "<svg" in page
    assert not re.search(
        r"<(script|img|link|iframe)[^>]+(src|href)\s*=", page, re.IGNORECASE
    )  # self-contained
    assert "https://" not in page
    assert sd["schema"] == 1
    assert [(m["path"], m["status"], m["tensors"]) for m in sd["modules"]] == [
        ("bert.encoder.layer.2", "removed", 3),
        ("bert.encoder.layer.3", "removed", 3),
    ]
    assert sd["summary"]["modules_removed"] == 2 and sd["summary"]["modules_added"] == 0
    assert sd["params"] == []
    assert sd["config"]["changes"] == [
        {"path": "num_hidden_layers", "status": "changed", "a": 4, "b": 2}
    ]
    flow = sd["dataflow"]
    assert flow is not None and sd["dataflow_error"] is None
    removed = {n["name"] for n in flow["nodes"] if n["status"] == "removed"}
    assert removed and all(re.search(r"layer\.[23]\.", n) for n in removed)
    assert not [n for n in flow["nodes"] if n["status"] == "added"]


def test_structural_pruned_without_dataflow_and_reverse(
    pruned: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    r = pruned
    sd = run_json(capsys, r.root, "diff", "--structural", "--no-dataflow", "full", "pruned")
    assert sd["dataflow"] is None and "not requested" in sd["dataflow_error"]
    assert [m["path"] for m in sd["modules"] if m["status"] == "removed"] == [
        "bert.encoder.layer.2",
        "bert.encoder.layer.3",
    ]
    back = run_json(capsys, r.root, "diff", "--structural", "--no-dataflow", "pruned", "full")
    assert [(m["path"], m["status"]) for m in back["modules"]] == [
        ("bert.encoder.layer.2", "added"),
        ("bert.encoder.layer.3", "added"),
    ]
    out = run(capsys, r.root, "diff", "--structural", "--no-dataflow", "full", "pruned")
    assert out.startswith("structural diff full@") and "2 removed, 0 added" in out
    assert (
        "- bert.encoder.layer.2  (3 tensors" in out and "- bert.encoder.layer.3  (3 tensors" in out
    )
    assert "num_hidden_layers: 4 -> 2" in out and "dataflow: unavailable" in out
    out = run(capsys, r.root, "diff", "--structural", "--no-dataflow", "pruned", "full")
    assert "+ bert.encoder.layer.2" in out and "0 removed, 2 added" in out
    # the tensor diff of the same pair: the lost layers are removed, the rest unchanged
    d = run_json(capsys, r.root, "diff", "full", "pruned")
    assert d["summary"]["removed"] == 6 and d["summary"]["unchanged"] == len(entries(d)) - 6
    assert {b["name"] for b in d["blocks"] if b["status"] == "removed"} == {
        "bert.encoder.layer.2",
        "bert.encoder.layer.3",
    }
    assert d["summary"]["loaded"] == 0


def test_structural_vocabulary_extension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = Repo(tmp_path)
    t = tiny_bert(vocab=64)
    r.put(t, config=bert_config(vocab=64))
    ext = dict(t)
    emb = "bert.embeddings.word_embeddings.weight"
    new_rows = (np.random.default_rng(9).standard_normal((8, 16)) * 0.1).astype(np.float32)
    ext[emb] = np.concatenate([t[emb], new_rows])
    r.put(ext, config=bert_config(vocab=72))
    out = run(capsys, r.root, "diff", "--structural", "--no-dataflow", "m~1", "m")
    assert re.search(rf"! {re.escape(emb)}\s+F32 \[64, 16\] -> F32 \[72, 16\]", out), out
    assert "vocab_size: 64 -> 72" in out
    sd = run_json(capsys, r.root, "diff", "--structural", "--no-dataflow", "m~1", "m")
    assert sd["modules"] == []
    assert sd["params"] == [
        {
            "name": emb,
            "status": "shape_changed",
            "dtype_a": "F32",
            "dtype_b": "F32",
            "shape_a": [64, 16],
            "shape_b": [72, 16],
        }
    ]
    assert sd["config"]["changes"] == [
        {"path": "vocab_size", "status": "changed", "a": 64, "b": 72}
    ]
    # the tensor diff: a shape change whose common region is untouched
    d = run_json(capsys, r.root, "diff", "m~1", "m")
    e = entries(d)[emb]
    assert e["status"] == "shape_changed" and e["stats"]["overlap"] is True
    assert e["stats"]["numel"] == 64 * 16 and e["stats"]["changed"] == 0
    assert d["summary"]["shape_changed"] == 1 and d["summary"]["unchanged"] == len(t) - 1
    out = run(capsys, r.root, "diff", "m~1", "m")
    assert "[64, 16] -> F32 [72, 16]" in out and "(common region)" in out


def test_structural_html_needs_structural(pruned: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_main(
        capsys, pruned.root, "diff", "full", "pruned", "--html", str(pruned.tmp / "x.html")
    )
    assert code == 2 and err.startswith("mgit: error: ") and "--structural" in err
    assert not (pruned.tmp / "x.html").exists()


# ----------------------------------------------------------------------------------------------
# dtype and shape changes never crash


def test_dtype_change_f32_to_bf16_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = Repo(tmp_path)
    t = tiny_bert()
    r.put(t)
    r.put({k: v.astype(ml_dtypes.bfloat16) for k, v in t.items()})
    for a, b, da, db in (("m~1", "m", "F32", "BF16"), ("m", "m~1", "BF16", "F32")):
        d = run_json(capsys, r.root, "diff", a, b)
        ents = entries(d)
        assert set(ents) == set(t)
        for name, e in ents.items():
            assert e["status"] == "dtype_changed", name
            assert (e["dtype_a"], e["dtype_b"]) == (da, db)
            assert e["error"] is None
            assert e["stats"]["relative_change"] < 0.01  # bf16 rounding only
            assert e["stats"]["cosine_similarity"] > 0.9999
        assert d["summary"]["dtype_changed"] == len(t)
        out = run(capsys, r.root, "diff", a, b)
        assert f"{da} -> {db}" in out and f"{len(t)} dtype changed" in out
        sd = run_json(capsys, r.root, "diff", "--structural", "--no-dataflow", a, b)
        assert {p["status"] for p in sd["params"]} == {"dtype_changed"} and len(
            sd["params"]
        ) == len(t)
        out = run(capsys, r.root, "diff", "--structural", "--no-dataflow", a, b)
        assert f"{da} [2, 16] -> {db} [2, 16]" in out


def test_shape_changes_never_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = Repo(tmp_path)
    t = tiny_bert()
    r.put(t)
    t2 = dict(t)
    q0 = "bert.encoder.layer.0.attention.self.query.weight"
    q1 = "bert.encoder.layer.1.attention.self.query.weight"
    t2[q0] = t[q0].reshape(-1).copy()  # another rank: nothing to compare element-wise
    t2[q1] = np.ascontiguousarray(t[q1][:, :8])  # same rank, fewer columns
    del t2["classifier.bias"]  # removed
    t2["classifier.extra"] = np.ones(3, np.float32)  # added
    t2["bert.encoder.layer.0.output.dense.weight"] = t[
        "bert.encoder.layer.0.output.dense.weight"
    ].astype(np.float16)
    r.put(t2)
    d = run_json(capsys, r.root, "diff", "m~1", "m")
    ents = entries(d)
    assert ents[q0]["status"] == "shape_changed" and ents[q0]["stats"] is None
    assert ents[q0]["shape_a"] == [16, 16] and ents[q0]["shape_b"] == [256]
    assert ents[q1]["status"] == "shape_changed" and ents[q1]["stats"]["overlap"] is True
    assert ents[q1]["stats"]["changed"] == 0
    assert (
        ents["classifier.bias"]["status"] == "removed"
        and ents["classifier.bias"]["dtype_b"] is None
    )
    assert (
        ents["classifier.extra"]["status"] == "added"
        and ents["classifier.extra"]["shape_a"] is None
    )
    assert ents["bert.encoder.layer.0.output.dense.weight"]["status"] == "dtype_changed"
    for args in (("m~1", "m"), ("m", "m~1")):
        out = run(capsys, r.root, "diff", *args)
        assert "shape changed" in out
        for extra in ([], ["--json"]):
            run(capsys, r.root, *extra, "diff", "--structural", "--no-dataflow", *args)
    sd = run_json(capsys, r.root, "diff", "--structural", "--no-dataflow", "m~1", "m")
    by = {p["name"]: p["status"] for p in sd["params"]}
    assert by[q0] == "shape_changed" and by[q1] == "shape_changed"
    assert by["classifier.bias"] == "removed" and by["classifier.extra"] == "added"


# ----------------------------------------------------------------------------------------------
# colours


def _as_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def test_colours_only_on_a_terminal(
    pruned: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = pruned
    monkeypatch.delenv("NO_COLOR", raising=False)
    plain_down = run(capsys, r.root, "diff", "full", "pruned")
    plain_up = run(capsys, r.root, "diff", "pruned", "full")
    plain_struct = run(capsys, r.root, "diff", "--structural", "--no-dataflow", "full", "pruned")
    for out in (plain_down, plain_up, plain_struct):
        assert not ANSI.search(out)

    _as_terminal(monkeypatch)
    down = run(capsys, r.root, "diff", "full", "pruned")
    assert f"{RED}- bert.encoder.layer.2" in down and f"{RED}- bert.encoder.layer.3" in down
    assert GREEN + "+" not in down
    assert ANSI.sub("", down) == plain_down  # colour adds codes only
    up = run(capsys, r.root, "diff", "pruned", "full")
    assert f"{GREEN}+ bert.encoder.layer.2" in up and RED + "-" not in up
    assert ANSI.sub("", up) == plain_up
    struct = run(capsys, r.root, "diff", "--structural", "--no-dataflow", "full", "pruned")
    assert f"{RED}- bert.encoder.layer.2" in struct
    assert ANSI.sub("", struct) == plain_struct
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ANSI.search(run(capsys, r.root, "diff", "full", "pruned"))
    assert not ANSI.search(
        run(capsys, r.root, "diff", "--structural", "--no-dataflow", "full", "pruned")
    )
