"""The reusable parts of the rebase and merge benchmarks (no torch, no model: cheap)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """Import the benchmark modules without leaking finetune.py's environment defaults."""
    saved = dict(os.environ)
    sys.path.insert(0, str(BENCH))
    try:
        import _measure
        import bench_merge
        import finetune

        yield finetune, _measure, bench_merge
    finally:
        sys.path.remove(str(BENCH))
        os.environ.clear()
        os.environ.update(saved)


def test_topic_dataset_is_deterministic_balanced_and_held_out(bench) -> None:
    finetune = bench[0]
    a, b = finetune.make_topic_dataset(), finetune.make_topic_dataset()
    assert a == b
    assert len(a.train_texts) + len(a.eval_texts) == finetune.N_EXAMPLES
    assert len(a.eval_texts) == finetune.N_EVAL
    assert not set(a.train_texts) & set(a.eval_texts)
    assert abs(sum(a.train_labels + a.eval_labels) - finetune.N_EXAMPLES // 2) == 0
    # the sentiment task is unchanged and is still the default of make_task_dataset
    assert finetune.make_task_dataset("sentiment") == finetune.make_dataset()
    with pytest.raises(ValueError):
        finetune.make_task_dataset("nope")


def test_run_measured_and_tree_bytes(bench, tmp_path: Path) -> None:
    m = bench[1]
    r = m.run_measured([sys.executable, "-c", "print('hi')"])
    assert r.returncode == 0 and "hi" in r.output and r.seconds > 0 and r.peak_rss > 0
    bad = m.run_measured([sys.executable, "-c", "raise SystemExit(3)"], check=False)
    assert bad.returncode == 3
    with pytest.raises(RuntimeError):
        m.run_measured([sys.executable, "-c", "raise SystemExit(3)"])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"12345")
    (tmp_path / "y").write_bytes(b"67")
    assert m.tree_bytes(tmp_path) == 7
    assert m.tree_bytes(tmp_path / "missing") == 0
    table = m.markdown_table(["a", "b"], [(1, 2)], ["l", "r"])
    assert table.splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2 |"]


def test_merge_parameters_agree_between_mgit_and_mergekit(bench) -> None:
    bm = bench[2]
    for method in bm.METHODS:
        p = bm.params_for(method, 0.5, 0.5, 1.0)
        args = bm.mgit_args(method, p)
        text = bm.mergekit_yaml(method, p, Path("/s"), Path("/t"), Path("/b"))
        assert ("--base" in args) == (method in bm.NEEDS_BASE) == ("base_model: /b" in text)
        if "density" in p:
            assert args[args.index("--density") + 1] == "0.5" and "density: 0.5" in text
        if "normalize" in p:
            flag = "--normalize" if p["normalize"] else "--no-normalize"
            assert flag in args and f"normalize: {str(p['normalize']).lower()}" in text
        assert f"merge_method: {bm.MERGEKIT_NAME[method]}" in text
