"""The lineage graph through the command line and the API: relations and metadata round-trip,
versions by default, merges, several roots, ancestors / descendants, JSON / DOT / HTML views,
``log --graph --all``, ``models``, ``find`` and unknown refs.

One repository with every relation is built once per module through ``mgit import`` (the CLI),
then only read. Its graph (edges parent -> child)::

    base@v1 --version--> base@v2 --finetune--> bert-sst2@v1 --version--> bert-sst2@v2
       |                   |  |  \\--prune--> bert-pruned                  |   \\
       |                   |  \\--version--> base-mirror                    |    distill
       \\--adapter--> bert-lora                                            |      v
                                                  bert-merged <--merge----+   bert-tiny --quantize--> bert-int8
                                                  (bert-sst2@v2 + bert-lora)
    gpt --other--> gpt-other;      soup = merge of bert-pruned + gpt (no --relation given)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_main, write_model_folder

from mgit.cli import main
from mgit.repo import Repository

CHUNK = 65536
T0 = 1_700_000_000
RELATIONS = ("version", "finetune", "adapter", "distill", "prune", "quantize", "merge", "other")


# ----------------------------------------------------------------------------------------------
# local helpers


def tiny_tensors(
    seed: int, *, layers: int = 2, hidden: int = 8, vocab: int = 16
) -> dict[str, np.ndarray]:
    """A tiny BERT-like state dict of plain float32 values (no NaN/inf)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rng.standard_normal((vocab, hidden)).astype(
            np.float32
        ),
    }
    for i in range(layers):
        out[f"encoder.layer.{i}.attention.weight"] = rng.standard_normal((hidden, hidden)).astype(
            np.float32
        )
        out[f"encoder.layer.{i}.attention.bias"] = rng.standard_normal(hidden).astype(np.float32)
    out["classifier.weight"] = rng.standard_normal((2, hidden)).astype(np.float32)
    out["classifier.bias"] = rng.standard_normal(2).astype(np.float32)
    return out


def nudge(tensors: dict[str, np.ndarray], name: str, k: float = 1e-3) -> dict[str, np.ndarray]:
    out = dict(tensors)
    out[name] = (tensors[name] * np.float32(1 + k)).astype(np.float32)
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cli_ok(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    code, out, err = run_main(capsys, root, *args)
    assert code == 0, (args, out, err)
    return out


def cli_json(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Any:
    return json.loads(cli_ok(capsys, root, "--json", *args))


def assert_one_line_error(code: int, out: str, err: str, says: str) -> None:
    assert code == 1, (code, err)
    lines = err.rstrip("\n").splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("mgit: error: "), err
    assert says in lines[0], err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), err
    assert "Traceback" not in err + out
    assert out == ""


# ----------------------------------------------------------------------------------------------
# the shared lineage repository


class Lineage:
    """The built repository: its root, the oid of every commit by label, and the source folders."""

    def __init__(self, root: Path, oids: dict[str, str], sources: dict[str, Path]) -> None:
        self.root = root
        self.oids = oids
        self.sources = sources

    def __getitem__(self, label: str) -> str:
        return self.oids[label]


#: label -> (model, folder seed / variant, import args besides DIR --model -m)
PLAN: list[tuple[str, str, str, list[str]]] = [
    ("base_v1", "base", "base", []),
    ("base_v2", "base", "base2", []),
    ("gpt", "gpt", "gpt", []),
    (
        "ft1",
        "bert-sst2",
        "ft1",
        ["--parent", "base", "--relation", "finetune", "--meta", "task=sst2", "--meta", "acc=0.91"],
    ),
    ("ft2", "bert-sst2", "ft2", ["--meta", "task=sst2", "--meta", "acc=0.93"]),
    (
        "ad",
        "bert-lora",
        "ad",
        ["--parent", "base~1", "--relation", "adapter", "--meta", "task=mnli"],
    ),
    (
        "dist",
        "bert-tiny",
        "dist",
        ["--parent", "bert-sst2", "--relation", "distill", "--meta", "task=sst2"],
    ),
    ("pr", "bert-pruned", "pr", ["--parent", "base", "--relation", "prune"]),
    (
        "q",
        "bert-int8",
        "q",
        ["--parent", "bert-tiny", "--relation", "quantize", "--meta", "bits=8"],
    ),
    (
        "mg",
        "bert-merged",
        "mg",
        ["--parent", "bert-sst2", "--parent", "bert-lora", "--relation", "merge"],
    ),
    ("mg2", "soup", "mg2", ["--parent", "bert-pruned", "--parent", "gpt"]),
    ("oth", "gpt-other", "oth", ["--parent", "gpt", "--relation", "other", "--meta", "task=chat"]),
    ("mirror", "base-mirror", "mirror", ["--parent", "base", "--relation", "version"]),
]

#: label -> expected parents [(label, relation)]
EXPECTED_PARENTS: dict[str, list[tuple[str, str]]] = {
    "base_v1": [],
    "base_v2": [("base_v1", "version")],
    "gpt": [],
    "ft1": [("base_v2", "finetune")],
    "ft2": [("ft1", "version")],
    "ad": [("base_v1", "adapter")],
    "dist": [("ft2", "distill")],
    "pr": [("base_v2", "prune")],
    "q": [("dist", "quantize")],
    "mg": [("ft2", "merge"), ("ad", "merge")],
    "mg2": [("pr", "merge"), ("gpt", "merge")],
    "oth": [("gpt", "other")],
    "mirror": [("base_v2", "version")],
}

EXPECTED_META: dict[str, dict[str, str]] = {
    "ft1": {"task": "sst2", "acc": "0.91"},
    "ft2": {"task": "sst2", "acc": "0.93"},
    "ad": {"task": "mnli"},
    "dist": {"task": "sst2"},
    "q": {"bits": "8"},
    "oth": {"task": "chat"},
}

MODEL_OF = {label: model for label, model, _, _ in PLAN}
HEAD_LABELS = {
    "base": "base_v2",
    "gpt": "gpt",
    "bert-sst2": "ft2",
    "bert-lora": "ad",
    "bert-tiny": "dist",
    "bert-pruned": "pr",
    "bert-int8": "q",
    "bert-merged": "mg",
    "soup": "mg2",
    "gpt-other": "oth",
    "base-mirror": "mirror",
}


def _variant(name: str) -> dict[str, np.ndarray]:
    base = tiny_tensors(0)
    variants = {
        "base": lambda: base,
        "base2": lambda: nudge(base, "encoder.layer.1.attention.weight"),
        "gpt": lambda: tiny_tensors(7, layers=1, hidden=12),
        "ft1": lambda: nudge(
            nudge(base, "encoder.layer.1.attention.weight"), "classifier.weight", 0.5
        ),
        "ft2": lambda: nudge(
            nudge(base, "encoder.layer.1.attention.weight"), "classifier.weight", 0.7
        ),
        "ad": lambda: nudge(base, "encoder.layer.0.attention.weight", 0.01),
        "dist": lambda: tiny_tensors(11, layers=1),
        "pr": lambda: {k: v for k, v in base.items() if "layer.1" not in k},
        "q": lambda: {k: (v * 2).astype(np.float32) for k, v in tiny_tensors(11, layers=1).items()},
        "mg": lambda: nudge(base, "classifier.bias", 0.3),
        "mg2": lambda: nudge(base, "classifier.bias", 0.4),
        "oth": lambda: nudge(tiny_tensors(7, layers=1, hidden=12), "classifier.weight", 0.2),
        "mirror": lambda: nudge(base, "encoder.layer.1.attention.weight"),
    }
    return variants[name]()


def build_lineage(tmp: Path) -> Lineage:
    root = tmp / "repo"
    Repository.init(root, model="base", chunk_size=CHUNK)
    oids: dict[str, str] = {}
    sources: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MGIT_AUTHOR", "tester <t@example.com>")
        mp.setenv("MGIT_THREADS", "2")
        for k, (label, model, variant, extra) in enumerate(PLAN):
            src = tmp / "src" / label
            write_model_folder(src, _variant(variant))
            sources[label] = src
            mp.setenv("MGIT_COMMIT_TIME", str(T0 + 60 * k))
            code = main(
                [
                    "-C",
                    str(root),
                    "-q",
                    "import",
                    str(src),
                    "--model",
                    model,
                    "-m",
                    f"{label} commit",
                    *extra,
                ]
            )
            assert code == 0, label
            oids[label] = Repository.open(root).resolve(model)
        mp.setenv("MGIT_COMMIT_TIME", str(T0 + 60 * len(PLAN)))
        assert main(["-C", str(root), "tag", "release", "bert-sst2"]) == 0
    return Lineage(root, oids, sources)


@pytest.fixture(scope="module")
def lin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lineage]:
    tmp = tmp_path_factory.mktemp("lineage")
    yield build_lineage(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def label_of(lin: Lineage) -> dict[str, str]:
    return {v: k for k, v in lin.oids.items()}


# ----------------------------------------------------------------------------------------------
# relations and metadata


def test_every_relation_is_used(lin: Lineage) -> None:
    used = {r for ps in EXPECTED_PARENTS.values() for _, r in ps}
    assert used == set(RELATIONS)
    assert len(set(lin.oids.values())) == len(PLAN)


@pytest.mark.parametrize("label", [p[0] for p in PLAN])
def test_show_json_parents_relations_and_meta(
    lin: Lineage, label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = cli_json(capsys, lin.root, "show", lin[label])
    assert data["oid"] == lin[label]
    assert data["model"] == MODEL_OF[label]
    want = [{"oid": lin[p], "relation": r} for p, r in EXPECTED_PARENTS[label]]
    assert data["parents"] == want
    assert data["meta"] == EXPECTED_META.get(label, {})
    assert data["message"] == f"{label} commit"


def test_show_text_names_relation_and_meta(
    lin: Lineage, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli_ok(capsys, lin.root, "show", "bert-merged")
    assert f"Parent:   {lin['ft2'][:12]} (merge of bert-sst2)" in out
    assert f"Parent:   {lin['ad'][:12]} (merge of bert-lora)" in out
    out = cli_ok(capsys, lin.root, "show", "bert-sst2~1")
    assert "task = sst2" in out and "acc = 0.91" in out and "(finetune of base)" in out


def test_log_json_round_trips_relations_and_meta(
    lin: Lineage, capsys: pytest.CaptureFixture[str]
) -> None:
    log = cli_json(capsys, lin.root, "log", "--all")
    labels = label_of(lin)
    assert {c["oid"] for c in log} == set(lin.oids.values())
    for c in log:
        label = labels[c["oid"]]
        assert c["parents"] == [
            {"oid": lin[p], "relation": r} for p, r in EXPECTED_PARENTS[label]
        ], label
        assert c["meta"] == EXPECTED_META.get(label, {}), label
        assert c["model"] == MODEL_OF[label]
    # children before parents
    pos = {c["oid"]: i for i, c in enumerate(log)}
    for label, parents in EXPECTED_PARENTS.items():
        for p, _ in parents:
            assert pos[lin[label]] < pos[lin[p]], (label, p)
    # the history of one model: its ancestors only, newest first
    hist = cli_json(capsys, lin.root, "log", "bert-int8")
    assert [c["oid"] for c in hist] == [
        lin[x] for x in ("q", "dist", "ft2", "ft1", "base_v2", "base_v1")
    ]


def test_api_lineage_graph_attributes(lin: Lineage) -> None:
    repo = Repository.open(lin.root)
    g = repo.lineage()
    assert set(g.nodes) == set(lin.oids.values())
    want_edges = {(lin[p], lin[c], r) for c, ps in EXPECTED_PARENTS.items() for p, r in ps}
    assert {(u, v, d["relation"]) for u, v, d in g.edges(data=True)} == want_edges
    # parent order is kept on merge edges
    assert g.edges[lin["ft2"], lin["mg"]]["index"] == 0
    assert g.edges[lin["ad"], lin["mg"]]["index"] == 1
    for label, oid in lin.oids.items():
        a = g.nodes[oid]
        assert a["model"] == MODEL_OF[label]
        assert a["meta"] == EXPECTED_META.get(label, {})
        assert a["short"] == oid[:12]
        assert a["message"] == f"{label} commit"
        assert a["logical_bytes"] == folder_bytes(lin.sources[label])
    for model, label in HEAD_LABELS.items():
        assert model in g.nodes[lin[label]]["heads"]
    assert g.nodes[lin["base_v1"]]["heads"] == [] and g.nodes[lin["ft1"]]["heads"] == []
    assert g.nodes[lin["ft2"]]["tags"] == ["release"]
    assert all(g.nodes[o]["tags"] == [] for o in g.nodes if o != lin["ft2"])


def test_several_roots(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    g = Repository.open(lin.root).lineage()
    assert {n for n in g.nodes if g.in_degree(n) == 0} == {lin["base_v1"], lin["gpt"]}
    data = cli_json(capsys, lin.root, "lineage")
    targets = {e["target"] for e in data["edges"]}
    assert {n["id"] for n in data["nodes"]} - targets == {lin["base_v1"], lin["gpt"]}


# ----------------------------------------------------------------------------------------------
# versions by default, merges


def test_commit_on_existing_line_is_a_version_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "wt"
    t = tiny_tensors(1)
    write_model_folder(root, t)
    Repository.init(root, model="m", chunk_size=CHUNK)
    cli_ok(capsys, root, "add", ".")
    cli_ok(capsys, root, "commit", "-m", "v1")
    v1 = cli_json(capsys, root, "show")["oid"]
    write_model_folder(root, nudge(t, "classifier.weight"))
    cli_ok(capsys, root, "add", ".")
    cli_ok(capsys, root, "commit", "-m", "v2", "--meta", "step=2")
    v2 = cli_json(capsys, root, "show")
    assert v2["parents"] == [{"oid": v1, "relation": "version"}]
    assert v2["meta"] == {"step": "2"} and v2["model"] == "m"
    # a new model line from the working tree: derived from HEAD, finetune by default
    write_model_folder(root, nudge(t, "classifier.bias"))
    cli_ok(capsys, root, "add", ".")
    cli_ok(capsys, root, "commit", "-m", "ft", "--model", "m-ft")
    ft = cli_json(capsys, root, "show")
    assert ft["model"] == "m-ft"
    assert ft["parents"] == [{"oid": v2["oid"], "relation": "finetune"}]
    # and its next commit is a version of it
    write_model_folder(root, nudge(t, "classifier.bias", 0.5))
    cli_ok(capsys, root, "add", ".")
    cli_ok(capsys, root, "commit", "-m", "ft v2")
    ft2 = cli_json(capsys, root, "show")
    assert ft2["model"] == "m-ft" and ft2["parents"] == [{"oid": ft["oid"], "relation": "version"}]
    # the same through import: a folder imported to an existing line is its next version
    src = tmp_path / "src"
    write_model_folder(src, nudge(t, "classifier.bias", 0.9))
    res = cli_json(capsys, root, "import", str(src), "--model", "m", "-m", "v3")
    assert res["commit"]["parents"] == [{"oid": v2["oid"], "relation": "version"}]


def test_import_to_existing_line_with_a_parent_keeps_the_version_edge_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "r"
    Repository.init(root, model="base", chunk_size=CHUNK)
    t = tiny_tensors(2)
    for name, tens in (
        ("a", t),
        ("b", nudge(t, "classifier.bias")),
        ("c", nudge(t, "classifier.weight")),
    ):
        write_model_folder(tmp_path / name, tens)
    base = cli_json(capsys, root, "import", str(tmp_path / "a"), "--model", "base", "-m", "a")[
        "commit"
    ]["oid"]
    ft1 = cli_json(
        capsys, root, "import", str(tmp_path / "b"), "--model", "ft", "-m", "b", "--parent", "base"
    )
    assert ft1["commit"]["parents"] == [
        {"oid": base, "relation": "finetune"}
    ]  # derived: finetune by default
    ft2 = cli_json(
        capsys,
        root,
        "import",
        str(tmp_path / "c"),
        "--model",
        "ft",
        "-m",
        "c",
        "--parent",
        "base",
        "--relation",
        "distill",
    )
    assert ft2["commit"]["parents"] == [
        {"oid": ft1["commit"]["oid"], "relation": "version"},
        {"oid": base, "relation": "distill"},
    ]


def test_merge_has_two_parents_with_and_without_relation(
    lin: Lineage, capsys: pytest.CaptureFixture[str]
) -> None:
    for label, (p1, p2) in (("mg", ("ft2", "ad")), ("mg2", ("pr", "gpt"))):
        data = cli_json(capsys, lin.root, "show", lin[label])
        assert [p["relation"] for p in data["parents"]] == ["merge", "merge"]
        assert [p["oid"] for p in data["parents"]] == [lin[p1], lin[p2]]
    # ^2 is the second parent
    assert cli_json(capsys, lin.root, "show", "soup^2")["oid"] == lin["gpt"]
    assert cli_json(capsys, lin.root, "show", "soup^1")["oid"] == lin["pr"]


# ----------------------------------------------------------------------------------------------
# lineage REF --ancestors / --descendants, views


def _node_ids(data: dict[str, Any]) -> set[str]:
    return {n["id"] for n in data["nodes"]}


@pytest.mark.parametrize(
    ("ref", "direction", "labels"),
    [
        ("bert-merged", "--ancestors", {"mg", "ft2", "ft1", "base_v2", "base_v1", "ad"}),
        ("soup", "--ancestors", {"mg2", "pr", "base_v2", "base_v1", "gpt"}),
        ("bert-int8", "--ancestors", {"q", "dist", "ft2", "ft1", "base_v2", "base_v1"}),
        (
            "base",
            "--descendants",
            {"base_v2", "ft1", "ft2", "dist", "q", "pr", "mg", "mg2", "mirror"},
        ),
        ("base~1", "--descendants", set(EXPECTED_PARENTS) - {"gpt", "oth"}),
        ("bert-sst2", "--descendants", {"ft2", "dist", "q", "mg"}),
        ("gpt", "--descendants", {"gpt", "oth", "mg2"}),
        ("gpt-other", "--descendants", {"oth"}),
        ("gpt", "--ancestors", {"gpt"}),
    ],
)
def test_lineage_ancestors_and_descendants(
    lin: Lineage, capsys: pytest.CaptureFixture[str], ref: str, direction: str, labels: set[str]
) -> None:
    data = cli_json(capsys, lin.root, "lineage", ref, direction)
    assert _node_ids(data) == {lin[x] for x in labels}
    # edges only inside the sub-graph
    for e in data["edges"]:
        assert e["source"] in _node_ids(data) and e["target"] in _node_ids(data)
    api = Repository.open(lin.root).lineage(ref, direction=direction.lstrip("-"))
    assert set(api.nodes) == {lin[x] for x in labels}


def test_lineage_direction_without_ref_uses_head(
    lin: Lineage, capsys: pytest.CaptureFixture[str]
) -> None:
    # HEAD is on model line 'base' (the one given to init)
    data = cli_json(capsys, lin.root, "lineage", "--ancestors")
    assert _node_ids(data) == {lin["base_v1"], lin["base_v2"]}


def test_lineage_json_is_the_whole_graph(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    data = cli_json(capsys, lin.root, "lineage")
    assert _node_ids(data) == set(lin.oids.values())
    assert {(e["source"], e["target"], e["relation"]) for e in data["edges"]} == {
        (lin[p], lin[c], r) for c, ps in EXPECTED_PARENTS.items() for p, r in ps
    }
    by_id = {n["id"]: n for n in data["nodes"]}
    labels = label_of(lin)
    for oid, n in by_id.items():
        assert n["model"] == MODEL_OF[labels[oid]]
        assert n["meta"] == EXPECTED_META.get(labels[oid], {})
    assert by_id[lin["ft2"]]["tags"] == ["release"] and by_id[lin["ft2"]]["heads"] == ["bert-sst2"]
    # nodes oldest first
    assert [n["time"] for n in data["nodes"]] == sorted(n["time"] for n in data["nodes"])
    # a sub-graph in JSON as well
    sub = cli_json(capsys, lin.root, "lineage", "bert-lora", "--descendants")
    assert _node_ids(sub) == {lin["ad"], lin["mg"]}
    assert [(e["source"], e["relation"]) for e in sub["edges"]] == [(lin["ad"], "merge")]


def test_lineage_text(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_ok(capsys, lin.root, "lineage")
    assert (
        "base  (2 versions)" in out
        and "bert-sst2  (2 versions)" in out
        and "soup  (1 version)" in out
    )
    assert f"finetune of base@{lin['base_v2'][:12]}" in out
    assert f"merge of bert-sst2@{lin['ft2'][:12]}, merge of bert-lora@{lin['ad'][:12]}" in out
    assert out.count("root") >= 2


def test_lineage_dot_file(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_ok(capsys, lin.root, "lineage", "--dot", "graph.dot")  # relative to -C
    path = lin.root / "graph.dot"
    try:
        assert "wrote DOT view" in out
        dot = path.read_text()
    finally:
        path.unlink(missing_ok=True)
    assert re.match(r'^digraph "[^"]*" \{', dot)
    assert dot.rstrip().endswith("}") and dot.count("{") == dot.count("}")
    for oid in lin.oids.values():
        assert re.search(rf'^\s*"{oid}" \[', dot, re.MULTILINE), oid
    edges = re.findall(
        r'^\s*"([0-9a-f]{64})" -> "([0-9a-f]{64})" \[label="(\w+)", style=(\w+)\];',
        dot,
        re.MULTILINE,
    )
    assert {(s, t, r) for s, t, r, _ in edges} == {
        (lin[p], lin[c], r) for c, ps in EXPECTED_PARENTS.items() for p, r in ps
    }
    for _, _, rel, style in edges:
        assert style == ("dashed" if rel == "version" else "solid"), rel
    for model in HEAD_LABELS:
        assert f'"{model}' in dot  # a cluster label or node label per model line
    if shutil.which("dot"):
        proc = subprocess.run(
            ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "<svg" in proc.stdout


def test_lineage_html_file_is_self_contained(
    lin: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "lineage.html"
    out = cli_ok(capsys, lin.root, "lineage", "--html", str(out_file))
    assert "wrote HTML view" in out
    page = out_file.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", page, re.IGNORECASE)
    for model in HEAD_LABELS:
        assert model in page, model
    for oid in lin.oids.values():
        assert oid[:12] in page
    # a sub-graph page holds only that part
    cli_ok(capsys, lin.root, "lineage", "gpt", "--descendants", "--html", str(out_file))
    page = out_file.read_text(encoding="utf-8")
    assert "gpt-other" in page and "soup" in page and "bert-sst2" not in page


def test_lineage_html_into_a_missing_folder_is_an_error(
    lin: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_main(
        capsys, lin.root, "lineage", "--html", str(tmp_path / "no" / "x.html")
    )
    assert code != 0 and err.startswith("mgit: error: ")


# ----------------------------------------------------------------------------------------------
# log --graph --all


def test_log_graph_all(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_ok(capsys, lin.root, "log", "--graph", "--all")
    lines = out.rstrip("\n").splitlines()
    commit_lines = [ln for ln in lines if re.search(r"[0-9a-f]{12}", ln)]
    assert len(commit_lines) == len(PLAN)
    for label, oid in lin.oids.items():
        (line,) = [ln for ln in commit_lines if oid[:12] in ln]
        assert "*" in line.split(oid[:12])[0]
        assert MODEL_OF[label] in line and f"{label} commit" in line
    short = {k: v[:7] for k, v in lin.oids.items()}
    assert f"[finetune of base@{short['base_v2']}]" in out
    assert f"[adapter of base@{short['base_v1']}]" in out
    assert f"[distill of bert-sst2@{short['ft2']}]" in out
    assert f"[prune of base@{short['base_v2']}]" in out
    assert f"[quantize of bert-tiny@{short['dist']}]" in out
    assert f"[other of gpt@{short['gpt']}]" in out
    assert f"[merge of bert-sst2@{short['ft2']}, bert-lora@{short['ad']}]" in out
    assert f"[merge of bert-pruned@{short['pr']}, gpt@{short['gpt']}]" in out
    assert f"[version of base@{short['base_v2']}]" in out  # a version across model lines is said
    # a plain next version on the same line gets no annotation
    (ft2_line,) = [ln for ln in commit_lines if lin["ft2"][:12] in ln]
    assert "[" not in ft2_line.split("bert-sst2", 1)[1].replace("(tag: release)", "")
    # merges fork lines of history and they join again
    graph_rows = [ln for ln in lines if ln.strip() and not re.search(r"[0-9a-f]{12}", ln)]
    assert any("\\" in ln for ln in graph_rows), out
    assert any("/" in ln for ln in graph_rows), out
    assert all(set(ln) <= set("|/\\_ -.") for ln in graph_rows), out
    # merge commits have their parents' columns open right after them
    (mg_idx,) = [i for i, ln in enumerate(lines) if lin["mg"][:12] in ln]
    assert "\\" in lines[mg_idx + 1]
    # decorations: heads and tags
    assert re.search(rf"{lin['ft2'][:12]} \(bert-sst2, tag: release\)", out)


def test_log_oneline_and_limit(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_ok(capsys, lin.root, "log", "--oneline", "--all")
    assert len(out.strip().splitlines()) == len(PLAN)
    out = cli_ok(capsys, lin.root, "--json", "log", "--all", "-n", "3")
    assert len(json.loads(out)) == 3


# ----------------------------------------------------------------------------------------------
# models


def test_models_json(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    models = {m["name"]: m for m in cli_json(capsys, lin.root, "models")}
    assert set(models) == set(HEAD_LABELS)
    first_of = {"base": "base_v1", "bert-sst2": "ft1"}
    for name, head in HEAD_LABELS.items():
        m = models[name]
        assert m["head"] == lin[head], name
        assert m["versions"] == (2 if name in first_of else 1), name
        assert m["logical_bytes"] == folder_bytes(lin.sources[head]), name
        first = first_of.get(name, head)
        ps = EXPECTED_PARENTS[first]
        if not ps:
            assert m["derived_from"] is None and m["relation"] is None, name
        else:
            p, r = ps[0]
            assert m["derived_from"] == f"{MODEL_OF[p]}@{lin[p][:12]}", name
            assert m["relation"] == r, name
        assert m["message"] == f"{head} commit"
    assert models["base"]["current"] is True
    assert sum(m["current"] for m in models.values()) == 1


def test_models_text(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_ok(capsys, lin.root, "models")
    for name, head in HEAD_LABELS.items():
        (line,) = [ln for ln in out.splitlines() if re.search(rf"\s{re.escape(name)}\s", ln)]
        assert lin[head][:12] in line, name
    (line,) = [ln for ln in out.splitlines() if " bert-tiny " in ln]
    assert f"bert-sst2@{lin['ft2'][:12]}" in line and "distill" in line and "KiB" in line


# ----------------------------------------------------------------------------------------------
# find


def _found(capsys: pytest.CaptureFixture[str], lin: Lineage, *args: str) -> set[str]:
    labels = label_of(lin)
    return {labels[c["oid"]] for c in cli_json(capsys, lin.root, "find", *args)}


@pytest.mark.parametrize(
    ("args", "labels"),
    [
        (["--task", "sst2"], {"ft2", "dist"}),
        (["--task", "sst2", "--all-versions"], {"ft1", "ft2", "dist"}),
        (["--task", "chat"], {"oth"}),
        (["--task", "nothing"], set()),
        (["--meta", "acc=0.91"], set()),
        (["--meta", "acc=0.91", "--all-versions"], {"ft1"}),
        (["--meta", "task=sst2", "--meta", "acc=0.93"], {"ft2"}),
        (["--meta", "bits=8"], {"q"}),
        (["--relation", "finetune"], {"ft2"}),  # the model line bert-sst2 was finetuned
        (["--relation", "finetune", "--all-versions"], {"ft1"}),  # only that exact version
        (["--relation", "merge"], {"mg", "mg2"}),
        (["--relation", "adapter"], {"ad"}),
        (["--relation", "distill"], {"dist"}),
        (["--relation", "prune"], {"pr"}),
        (["--relation", "quantize"], {"q"}),
        (["--relation", "other"], {"oth"}),
        (["--derived-from", "base"], {"ft2", "dist", "q", "pr", "mg", "mg2", "mirror"}),
        (["--derived-from", "bert-sst2"], {"dist", "q", "mg"}),
        (["--derived-from", "bert-sst2", "--all-versions"], {"dist", "q", "mg"}),
        (["--derived-from", "bert-sst2~1", "--all-versions"], {"ft2", "dist", "q", "mg"}),
        (["--derived-from", "gpt"], {"oth", "mg2"}),
        (["--derived-from", "bert-int8"], set()),
        (["--derived-from", "base", "--task", "sst2"], {"ft2", "dist"}),
        (["--derived-from", "bert-sst2", "--relation", "quantize"], {"q"}),
    ],
)
def test_find(
    lin: Lineage, capsys: pytest.CaptureFixture[str], args: list[str], labels: set[str]
) -> None:
    assert _found(capsys, lin, *args) == labels


def test_find_derived_from_is_transitive_and_excludes_itself(
    lin: Lineage, capsys: pytest.CaptureFixture[str]
) -> None:
    found = _found(capsys, lin, "--derived-from", "base")
    assert "q" in found  # great-grandchild: base -> bert-sst2 -> bert-tiny -> bert-int8
    assert "dist" in found  # grandchild
    assert "base_v2" not in found and "base_v1" not in found
    assert "ad" not in found  # derived from base~1, not from base's latest version
    found = _found(capsys, lin, "--derived-from", "bert-sst2", "--all-versions")
    assert "ft2" not in found and "ft1" not in found


def test_find_text(lin: Lineage, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_ok(capsys, lin.root, "find", "--task", "sst2")
    assert "bert-sst2" in out and "bert-tiny" in out and "task=sst2" in out and "gpt" not in out
    assert "no model matches" in cli_ok(capsys, lin.root, "find", "--task", "nothing")


def test_find_api_matches_cli(lin: Lineage) -> None:
    repo = Repository.open(lin.root)
    got = {c.oid for c in repo.find(derived_from="bert-sst2")}
    assert got == {lin["dist"], lin["q"], lin["mg"]}
    assert {c.oid for c in repo.find(meta={"task": "sst2"}, all_versions=True)} == {
        lin["ft1"],
        lin["ft2"],
        lin["dist"],
    }


# ----------------------------------------------------------------------------------------------
# unknown refs


@pytest.mark.parametrize(
    "args",
    [
        ["lineage", "nope"],
        ["lineage", "nope", "--ancestors"],
        ["lineage", "nope", "--descendants"],
        ["log", "nope"],
        ["log", "--graph", "nope"],
        ["log", "base~7"],
        ["show", "nope"],
        ["show", "soup^3"],
        ["diff", "nope", "base"],
        ["diff", "base", "nope"],
        ["diff", "nope", "base", "--structural", "--no-dataflow"],
        ["find", "--derived-from", "nope"],
        ["import", "SRC", "--model", "x", "-m", "x", "--parent", "nope"],
    ],
)
def test_unknown_ref_is_a_one_line_error(
    lin: Lineage, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    args = [str(lin.sources["base_v1"]) if a == "SRC" else a for a in args]
    code, out, err = run_main(capsys, lin.root, *args)
    assert_one_line_error(code, out, err, "unknown ref")
    if "import" in args:
        assert Repository.open(lin.root).refs.read("refs/heads/x") is None


def test_unknown_relation_is_a_usage_error(
    lin: Lineage, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(capsys, lin.root, "find", "--relation", "cousin")
    assert code == 2 and "cousin" in err


def test_models_follows_a_line_through_a_same_line_edge_of_any_relation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``import --model ft --relation quantize`` (no --parent) on an existing line records the
    next version of ft as a quantization of its previous version. ``models`` must still count two
    versions of ft and report where the line came from (base, by finetune), not ft itself."""
    root = tmp_path / "r"
    Repository.init(root, model="base", chunk_size=CHUNK)
    t = tiny_tensors(4)
    for name, tens in (
        ("a", t),
        ("b", nudge(t, "classifier.bias")),
        ("c", nudge(t, "classifier.weight")),
    ):
        write_model_folder(tmp_path / name, tens)
    base = cli_json(capsys, root, "import", str(tmp_path / "a"), "--model", "base", "-m", "a")
    ft1 = cli_json(
        capsys, root, "import", str(tmp_path / "b"), "--model", "ft", "-m", "b", "--parent", "base"
    )
    ft2 = cli_json(
        capsys,
        root,
        "import",
        str(tmp_path / "c"),
        "--model",
        "ft",
        "-m",
        "c",
        "--relation",
        "quantize",
    )
    assert ft2["commit"]["parents"] == [{"oid": ft1["commit"]["oid"], "relation": "quantize"}]
    models = {m["name"]: m for m in cli_json(capsys, root, "models")}
    assert models["ft"]["head"] == ft2["commit"]["oid"]
    assert models["ft"]["versions"] == 2
    assert models["ft"]["derived_from"] == f"base@{base['commit']['oid'][:12]}"
    assert models["ft"]["relation"] == "finetune"
