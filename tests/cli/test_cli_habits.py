"""Issue #17 phase 2: the command-line habits git and Hugging Face users expect.

``show REF:PATH``, ``export --include/--exclude``, the default ignore list of training state
(and ``.mgitignore`` negation), errors as JSON under ``--json``, ``restore``/``rm``, numeric
``find --meta`` comparisons and ``--sort``, and examples in every command's help."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import model_tensors, run_main, sha256_tree, write_model_folder

from mgit.repo import Repository


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A repository (model 'bert') with one commit: config, tokenizer, weights, a binary blob
    and a file in a sub-folder."""
    root = tmp_path / "bert"
    write_model_folder(root, model_tensors("F32", vocab=300))
    (root / "extra").mkdir()
    (root / "extra" / "notes.txt").write_text("hello\n")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 3 + b"\x00\r\n\x1b")
    repo = Repository.init(root, model="bert", chunk_size=65536)
    repo.add([root])
    repo.commit("base")
    return root


def run(capsys: Any, root: Path, *args: str) -> tuple[int, str, str]:
    return run_main(capsys, root, *args)


def one_line_error(code: int, err: str, says: str) -> None:
    assert code not in (0, None)
    lines = err.rstrip("\n").splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("mgit: error: "), err
    assert says in lines[0], err


# -- show REF:PATH --------------------------------------------------------------------------------


def test_show_ref_path_prints_exact_bytes(committed: Path, capsysbinary: Any) -> None:
    from mgit.cli import main

    for rel in ("blob.bin", "config.json", "extra/notes.txt", "model.safetensors"):
        capsysbinary.readouterr()
        assert main(["-C", str(committed), "show", f"bert:{rel}"]) == 0
        assert capsysbinary.readouterr().out == (committed / rel).read_bytes(), rel
    capsysbinary.readouterr()
    assert main(["-C", str(committed), "show", "HEAD:./extra/notes.txt"]) == 0
    assert capsysbinary.readouterr().out == b"hello\n"


def test_show_ref_path_json_is_the_record(committed: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, committed, "--json", "show", "bert:model.safetensors")
    assert code == 0
    v = json.loads(out)
    repo = Repository.open(committed)
    assert v["commit"] == repo.resolve("bert") and v["ref"] == "bert"
    assert v["path"] == "model.safetensors" and v["kind"] == "safetensors"
    assert v["size"] == (committed / "model.safetensors").stat().st_size
    assert v["tensors"] == len(model_tensors("F32", vocab=300))
    import xxhash

    assert v["xxh3_128"] == xxhash.xxh3_128_hexdigest(
        (committed / "model.safetensors").read_bytes()
    )


def test_show_ref_path_errors(committed: Path, capsys: Any) -> None:
    code, out, err = run(capsys, committed, "show", "bert:nope.json")
    one_line_error(code, err, "nope.json")
    assert out == ""
    code, _, err = run(capsys, committed, "show", "bert:")
    one_line_error(code, err, "REF:PATH")
    code, _, err = run(capsys, committed, "show", "nosuchmodel:config.json")
    one_line_error(code, err, "nosuchmodel")


# -- export --include / --exclude -----------------------------------------------------------------


def test_export_include_exclude(committed: Path, tmp_path: Path, capsys: Any) -> None:
    want = sha256_tree(committed)
    out = tmp_path / "json"
    code, _, err = run(capsys, committed, "export", "bert", str(out), "--include", "*.json")
    assert code == 0, err
    assert sha256_tree(out) == {k: v for k, v in want.items() if k.endswith(".json")}
    out = tmp_path / "two"
    code, _, _ = run(
        capsys,
        committed,
        "export",
        "bert",
        str(out),
        "--include",
        "*.json",
        "--include",
        "extra",
        "--exclude",
        "tokenizer*",
    )
    assert code == 0
    assert sorted(sha256_tree(out)) == ["config.json", "extra/notes.txt"]
    out = tmp_path / "nojson"
    code, stdout, _ = run(
        capsys, committed, "--json", "export", "bert", str(out), "--exclude", "*.json"
    )
    assert code == 0
    assert json.loads(stdout)["files"] == sorted(k for k in want if not k.endswith(".json"))
    assert sha256_tree(out) == {k: v for k, v in want.items() if not k.endswith(".json")}


def test_export_nothing_selected_writes_nothing(
    committed: Path, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "none"
    code, _, err = run(capsys, committed, "export", "bert", str(out), "--include", "*.gguf")
    one_line_error(code, err, "no file of bert matches")
    assert not out.exists()
    code, _, err = run(capsys, committed, "export", "bert", str(out), "--exclude", "*")
    one_line_error(code, err, "no file of bert matches")
    assert not out.exists()


def test_export_include_same_rule_as_materialize(committed: Path, tmp_path: Path) -> None:
    repo = Repository.open(committed)
    for inc, exc in [
        ("*.json", None),
        ("extra", None),
        (None, "*.safetensors"),
        (["*.bin", "extra/*"], "x"),
    ]:
        folder = repo.materialize("bert", include=inc, exclude=exc)
        res = repo.export(
            "bert",
            tmp_path / hashlib.sha1(repr((inc, exc)).encode()).hexdigest(),
            include=inc,
            exclude=exc,
        )
        assert res.files == sorted(sha256_tree(folder))


# -- the default ignore list (training state) and .mgitignore negation -----------------------------


def trainer_output(root: Path) -> None:
    """What a transformers Trainer leaves in its output folder beside the model."""
    write_model_folder(root, model_tensors("F32", vocab=120))
    for name in (
        "optimizer.pt",
        "scheduler.pt",
        "scaler.pt",
        "rng_state_0.pth",
        "rng_state.pth",
        "training_args.bin",
        "trainer_state.json",
    ):
        (root / name).write_bytes(b"state " + name.encode())
    (root / "runs" / "Jan01_host").mkdir(parents=True)
    (root / "runs" / "Jan01_host" / "events.out.tfevents.1").write_bytes(b"tb")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").write_text("{}")


STATE = [
    ".ipynb_checkpoints",
    "optimizer.pt",
    "rng_state.pth",
    "rng_state_0.pth",
    "runs",
    "scaler.pt",
    "scheduler.pt",
    "trainer_state.json",
    "training_args.bin",
]
MODEL = ["config.json", "model.safetensors", "tokenizer.json"]


def test_add_dot_leaves_training_state_out_and_says_so(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "run"
    trainer_output(root)
    Repository.init(root, model="run")
    code, out, err = run(capsys, root, "add", ".")
    assert code == 0, err
    for name in STATE:
        assert f"skipped  {name}: ignored by default (training state)" in out, out
    code, out, _ = run(capsys, root, "--json", "add", ".")
    code, out, _ = run(capsys, root, "--json", "status")
    st = json.loads(out)
    assert st["staged"]["new"] == MODEL and st["untracked"] == []
    assert [s["path"] for s in st["skipped"]] == STATE
    assert {s["reason"] for s in st["skipped"]} == {"ignored by default (training state)"}
    repo = Repository.open(root)
    repo.commit("first")
    assert sorted(repo.commit_tree(repo.resolve("run")).files) == MODEL


def test_import_leaves_training_state_out(tmp_path: Path, capsys: Any) -> None:
    src = tmp_path / "out"
    trainer_output(src)
    root = tmp_path / "repo"
    root.mkdir()
    Repository.init(root, model="base")
    code, out, err = run(capsys, root, "import", str(src), "--model", "ft", "-m", "run")
    assert code == 0, err
    assert "skipped optimizer.pt: ignored by default (training state)" in out
    repo = Repository.open(root)
    assert sorted(repo.commit_tree(repo.resolve("ft")).files) == MODEL
    res = repo.import_folder(src, model="ft", message="again")
    assert sorted(s.path for s in res.skipped) == STATE


def test_mgitignore_negation_takes_a_default_back(tmp_path: Path) -> None:
    root = tmp_path / "run"
    trainer_output(root)
    (root / ".mgitignore").write_text(
        "# keep the trainer's log\n!trainer_state.json\n!runs/\n*.json\n!config.json\n"
    )
    repo = Repository.init(root, model="run")
    res = repo.add([root])
    assert res.staged == [
        ".mgitignore",
        "config.json",
        "model.safetensors",
        "runs/Jan01_host/events.out.tfevents.1",
    ]
    # trainer_state.json was taken back, then "*.json" (a later line) left it out again, silently
    skipped = [s.path for s in res.skipped]
    assert (
        "trainer_state.json" not in skipped and "runs" not in skipped and "optimizer.pt" in skipped
    )


def test_tracked_file_is_not_ignored(tmp_path: Path) -> None:
    """A file committed before it matched an ignore rule stays tracked: not deleted, not skipped."""
    root = tmp_path / "run"
    write_model_folder(root, model_tensors("F32", vocab=120))
    repo = Repository.init(root, model="run")
    (root / ".mgitignore").write_text("!trainer_state.json\n")
    (root / "trainer_state.json").write_text("{}")
    repo.add([root])
    repo.commit("with state")
    (root / ".mgitignore").unlink()
    st = repo.status()
    assert st.deleted == [".mgitignore"] and st.modified == [] and st.skipped == [], st
    (root / "trainer_state.json").write_text('{"step": 2}')
    assert repo.status().modified == ["trainer_state.json"]
    res = repo.add([root])
    assert res.removed == [".mgitignore"] and res.staged == ["trainer_state.json"]


def test_checkpoint_exclusions_are_the_default_ignore_list() -> None:
    from mgit.checkpoints import CHECKPOINT_EXCLUDE
    from mgit.worktree.scan import DEFAULT_IGNORE

    assert CHECKPOINT_EXCLUDE is DEFAULT_IGNORE
    for name in (
        "optimizer.pt",
        "scheduler.pt",
        "scaler.pt",
        "rng_state*.pth",
        "training_args.bin",
        "trainer_state.json",
        "runs/",
        ".ipynb_checkpoints/",
    ):
        assert name in DEFAULT_IGNORE


# -- errors as JSON under --json -------------------------------------------------------------------


def json_error(code: int, out: str, err: str) -> dict[str, Any]:
    assert err == "", err
    v = json.loads(out)
    assert set(v) == {"error"}
    e = v["error"]
    assert set(e) == {"type", "message", "hint", "exit_code", "details"}
    assert e["exit_code"] == code != 0
    return e


def test_errors_are_json_on_stdout_under_json(committed: Path, tmp_path: Path, capsys: Any) -> None:
    e = json_error(*run(capsys, committed, "--json", "show", "bert:nope.json"))
    assert e["type"] == "PathNotFoundError" and "nope.json" in e["message"]
    assert e["details"]["path"] == "nope.json" and e["details"]["ref"] == "bert"
    assert e["hint"] and "mgit show" in e["hint"]
    # --json after the command name, and the exit codes of the error table
    e = json_error(*run(capsys, tmp_path, "log", "--json"))
    assert e["type"] == "NotARepositoryError" and e["exit_code"] == 10
    e = json_error(*run(capsys, committed, "show", "nosuch", "--json"))
    assert e["type"] == "RefNotFoundError" and e["exit_code"] != 0
    # a usage error found by click (exit 2), --json before or after
    e = json_error(*run(capsys, committed, "--json", "export", "--bogus"))
    assert e["type"] == "UsageError" and e["exit_code"] == 2 and "--bogus" in e["message"]
    e = json_error(*run(capsys, committed, "export", "--bogus", "--json"))
    assert e["exit_code"] == 2


def test_errors_stay_text_without_json(committed: Path, capsys: Any) -> None:
    code, out, err = run(capsys, committed, "show", "bert:nope.json")
    assert out == "" and err.startswith("mgit: error: ") and code == 1
    code, out, err = run(capsys, committed, "export", "--bogus")
    assert code == 2 and out == "" and "No such option" in err


# -- restore and rm --------------------------------------------------------------------------------


def test_restore_staged_unstages(committed: Path, capsys: Any) -> None:
    (committed / "config.json").write_text('{"changed": 1}')
    (committed / "new.txt").write_text("new")
    repo = Repository.open(committed)
    repo.add([committed])
    code, out, err = run(capsys, committed, "restore", "--staged", "config.json", "new.txt")
    assert code == 0, err
    assert "unstaged  config.json" in out and "unstaged  new.txt" in out
    st = repo.status()
    assert st.staged_modified == [] and st.staged_new == []
    assert st.modified == ["config.json"] and st.untracked == ["new.txt"]
    assert (committed / "config.json").read_text() == '{"changed": 1}'  # the file is kept
    code, _, err = run(capsys, committed, "restore", "--staged", "config.json")
    one_line_error(code, err, "nothing staged")


def test_restore_rewrites_working_files(committed: Path, capsys: Any) -> None:
    want = sha256_tree(committed)
    (committed / "config.json").write_text('{"changed": 1}')
    (committed / "extra" / "notes.txt").unlink()
    code, _, err = run(capsys, committed, "restore", "config.json", "extra")
    assert code == 0, err
    assert sha256_tree(committed) == want
    assert Repository.open(committed).status().clean
    # from another version
    repo = Repository.open(committed)
    old_cfg = (committed / "config.json").read_bytes()
    (committed / "config.json").write_text('{"v": 2}')
    repo.add([committed / "config.json"])
    repo.commit("v2")
    code, _, err = run(capsys, committed, "restore", "--source", "bert~1", "config.json")
    assert code == 0, err
    assert (committed / "config.json").read_bytes() == old_cfg
    assert repo.status().modified == ["config.json"]


def test_restore_refuses_without_writing(committed: Path, capsys: Any) -> None:
    (committed / "config.json").write_text('{"changed": 1}')
    (committed / "tokenizer.json").write_text("tok")
    Repository.open(committed).add([committed / "tokenizer.json"])
    code, _, err = run(capsys, committed, "restore", "config.json", "tokenizer.json")
    one_line_error(code, err, "tokenizer.json has a staged change")
    assert (committed / "config.json").read_text() == '{"changed": 1}'  # nothing written
    code, _, err = run(capsys, committed, "restore", "config.json", "nope.bin")
    one_line_error(code, err, "nope.bin")
    assert (committed / "config.json").read_text() == '{"changed": 1}'


def test_rm_stages_deletion(committed: Path, capsys: Any) -> None:
    code, _, err = run(capsys, committed, "rm", "extra", "blob.bin")
    assert code == 0, err
    assert not (committed / "blob.bin").exists() and not (committed / "extra").exists()
    repo = Repository.open(committed)
    assert repo.status().staged_deleted == ["blob.bin", "extra/notes.txt"]
    repo.commit("smaller")
    assert sorted(repo.commit_tree(repo.resolve("bert")).files) == MODEL


def test_rm_cached_keeps_the_file(committed: Path, capsys: Any) -> None:
    code, out, err = run(capsys, committed, "--json", "rm", "--cached", "blob.bin")
    assert code == 0, err
    assert json.loads(out) == {"removed": ["blob.bin"], "deleted": []}
    st = Repository.open(committed).status()
    assert st.staged_deleted == ["blob.bin"] and st.untracked == ["blob.bin"]
    assert (committed / "blob.bin").is_file()


def test_rm_refuses_local_changes_and_untracked(committed: Path, capsys: Any) -> None:
    (committed / "config.json").write_text('{"changed": 1}')
    code, _, err = run(capsys, committed, "rm", "config.json", "blob.bin")
    one_line_error(code, err, "config.json")
    assert (committed / "blob.bin").is_file()  # nothing deleted
    assert Repository.open(committed).status().staged_deleted == []
    (committed / "untracked.txt").write_text("x")
    code, _, err = run(capsys, committed, "rm", "untracked.txt")
    one_line_error(code, err, "untracked.txt")
    code, _, err = run(capsys, committed, "rm", "-f", "config.json")
    assert code == 0 and not (committed / "config.json").exists()
    # a file added but never committed is unstaged, not staged for deletion
    repo = Repository.open(committed)
    repo.add([committed / "untracked.txt"])
    code, _, _ = run(capsys, committed, "rm", "untracked.txt")
    assert (
        code == 0 and repo.status().staged_new == [] and not (committed / "untracked.txt").exists()
    )


# -- find: numeric comparisons and --sort -----------------------------------------------------------


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    root = tmp_path / "base"
    write_model_folder(root, model_tensors("F32", vocab=40))
    repo = Repository.init(root, model="base")
    repo.add([root])
    repo.commit("base")
    for i, (name, acc) in enumerate([("a", "9"), ("b", "10"), ("c", "100"), ("d", "n/a")]):
        src = tmp_path / f"src-{name}"
        write_model_folder(src, model_tensors("F32", vocab=40, seed=i + 1))
        repo.import_folder(src, model=name, parent="base", message=name, meta={"acc": acc})
    return root


@pytest.mark.parametrize("disable_index", [False, True])
def test_find_numeric_comparisons_and_sort(
    scored: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, disable_index: bool
) -> None:
    from mgit import lineage_index

    if disable_index:
        monkeypatch.setenv(lineage_index.ENV_DISABLE, "1")

    def models(*args: str) -> list[str]:
        code, out, err = run(capsys, scored, "--json", "find", *args)
        assert code == 0, err
        return [c["model"] for c in json.loads(out)]

    assert models("--meta", "acc>=10", "--sort", "acc") == ["b", "c"]  # 10 < 100 as numbers
    assert sorted(models("--meta", "acc>9")) == ["b", "c"]  # "n/a" is not a number
    assert sorted(models("--meta", "acc<=10")) == ["a", "b"]
    assert sorted(models("--meta", "acc<100", "--meta", "acc!=9")) == ["b"]
    assert models("--meta", "acc==10.0") == ["b"] and models("--meta", "acc=10.0") == []
    assert sorted(models("--meta", "acc!=10")) == ["a", "c", "d"]  # base has no acc: no match
    assert models("--meta", "acc>=0", "--sort", "acc", "--reverse") == ["c", "b", "a"]
    # a value that is not a number: text order; versions without the key last
    assert models("--sort", "acc") == ["b", "c", "a", "d", "base"]
    assert models("--sort", "acc", "--reverse") == ["d", "a", "c", "b", "base"]


def test_find_bad_condition(scored: Path, capsys: Any) -> None:
    code, _, err = run(capsys, scored, "find", "--meta", "acc")
    one_line_error(code, err, "KEY=VALUE")
    code, _, err = run(capsys, scored, "find", "--meta", ">=3")
    one_line_error(code, err, "--meta")
    code, _, err = run(capsys, scored, "find", "--reverse")
    assert code == 2 and "--sort" in err
