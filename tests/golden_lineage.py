"""A fixed synthetic lineage and the list of how each of its objects is stored.

``tests/data/golden_store.json`` was recorded with this module before the store's encoding
policy moved into ``mgit.codecs.choose``; ``tests/unit/test_golden_store.py`` rebuilds the same
lineage and checks that every object is still stored the same way (id, kind, codec, delta base,
chain depth). Run ``python -m tests.golden_lineage`` to print the list.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers import finetune_head, model_tensors, write_model_folder


@np.errstate(all="ignore")  # the tensors hold NaN and inf on purpose
def build(tmp: Path) -> Any:
    """Build the lineage in ``tmp``: a base (fp32, two shards), a full finetune, a version of it,
    a head-only finetune, a lossy finetune, a bf16 model and a version of it; returns the repo."""
    from mgit.repo import Repository

    os.environ["MGIT_AUTHOR"] = "golden <g@example.com>"
    os.environ["MGIT_COMMIT_TIME"] = "1700000000"
    repo = Repository.init(tmp / "repo", model="base", chunk_size=65536)
    base = model_tensors("F32", seed=1, hidden=128, vocab=512, layers=2)
    write_model_folder(tmp / "base", base, sharded=2)
    repo.import_folder(tmp / "base", model="base", message="base")

    rng = np.random.default_rng(7)
    ft = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-3).astype(np.float32)
          for k, v in base.items()}
    write_model_folder(tmp / "ft", ft, sharded=2)
    repo.import_folder(tmp / "ft", model="ft", parent="base", message="finetune")

    ft2 = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-4).astype(np.float32)
           for k, v in ft.items()}
    write_model_folder(tmp / "ft2", ft2, sharded=2)
    repo.import_folder(tmp / "ft2", model="ft", message="v2")

    write_model_folder(tmp / "head", finetune_head(base), sharded=2)
    repo.import_folder(tmp / "head", model="head", parent="base", message="head only")

    repo.import_folder(tmp / "ft", model="lossy", parent="base", message="lossy", eps=1e-4)

    b16 = model_tensors("BF16", seed=3, hidden=128, vocab=512, layers=2)
    write_model_folder(tmp / "b16", b16)
    repo.import_folder(tmp / "b16", model="b16", message="bf16")
    b16v = dict(b16)
    w = b16v["embeddings.word_embeddings.weight"].copy()
    w[::3] = w[::5][: len(w[::3])] if len(w[::5]) >= len(w[::3]) else w[::3]
    w[:10] = 0
    b16v["embeddings.word_embeddings.weight"] = w
    write_model_folder(tmp / "b16v", b16v)
    repo.import_folder(tmp / "b16v", model="b16", message="bf16 v2")
    return repo


def golden_list(repo: Any) -> list[list[Any]]:
    """(oid, kind, codec, base, depth) of every object, sorted by id."""
    out = []
    for oid in sorted(repo.store.iter_oids()):
        h = repo.store.header(oid)
        out.append([oid, h.kind, h.codec, h.base, h.depth])
    return out


def main() -> None:
    """Print the golden list of a lineage built in a temporary folder as JSON."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        json.dump(golden_list(build(Path(tmp))), sys.stdout, indent=1)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
