"""Fixtures for the remote tests: a source repository with a base model and a finetune, and
a remote of each kind (a path, and a prefix of a bucket on a moto S3 server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import s3server
from tests.helpers import make_model_folder, write_model_folder
from tests.s3server import make_client

# The S3 fixtures (a moto server on 127.0.0.1, its environment, a fresh bucket).
s3_server = s3server.s3_server
s3_env = s3server.s3_env
s3_bucket = s3server.s3_bucket

CHUNK = 65536


def perturbed(
    tensors: dict[str, np.ndarray], seed: int, scale: float = 1e-3
) -> dict[str, np.ndarray]:
    """A "finetune": every float tensor moved by small noise (a realistic, dense delta)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, arr in tensors.items():
        noise = (rng.standard_normal(arr.shape) * scale).astype(arr.dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf stay NaN and inf
            out[name] = (arr + noise).astype(arr.dtype)
    return out


@dataclass
class Source:
    """A local repository with model ``bert`` (base) and ``bert-ft`` (its finetune)."""

    repo: Any
    path: Path
    base_tensors: dict[str, np.ndarray]
    ft_tensors: dict[str, np.ndarray]
    base_dir: Path
    ft_dir: Path
    base: str
    ft: str


def build_source(root: Path, *, hidden: int = 64, vocab: int = 1024, layers: int = 2) -> Source:
    """Create the source repository under ``root`` (folders ``src``, ``ft-folder``)."""
    from mgit.repo import Repository

    src = root / "src"
    repo = Repository.init(src, model="bert", chunk_size=CHUNK)
    base_tensors = make_model_folder(src, seed=1, hidden=hidden, vocab=vocab, layers=layers)
    repo.add([str(src)])
    base = repo.commit("base").commit.oid
    ft_tensors = perturbed(base_tensors, seed=2)
    ft_dir = write_model_folder(root / "ft-folder", ft_tensors)
    ft = repo.import_folder(
        ft_dir, model="bert-ft", parent="bert", relation="finetune", message="finetune"
    ).commit.oid
    return Source(repo, src, base_tensors, ft_tensors, src, ft_dir, base, ft)


@pytest.fixture
def source(tmp_path: Path) -> Source:
    """A fresh source repository."""
    return build_source(tmp_path)


@dataclass
class RemoteSpec:
    """A remote under test, with raw access to its stored objects (to damage them)."""

    kind: str
    url: str
    env: dict[str, str]
    put_raw: Callable[[str, bytes], None]
    get_raw: Callable[[str], bytes]

    def object_key(self, oid: str) -> str:
        """Store-relative path of an object."""
        return f"objects/{oid[:2]}/{oid[2:]}"


@pytest.fixture(params=["path", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RemoteSpec]:
    """A remote URL of each kind (the store is created by the first push)."""
    if request.param == "path":
        root = tmp_path / "remote-store"

        def put_raw(rel: str, data: bytes) -> None:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(0o644)
            path.write_bytes(data)

        yield RemoteSpec("path", str(root), {}, put_raw, lambda rel: (root / rel).read_bytes())
        return
    bucket = request.getfixturevalue("s3_bucket")
    env = request.getfixturevalue("s3_env")
    client = make_client(env["MGIT_S3_ENDPOINT_URL"])

    def s3_put(rel: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"team/{rel}", Body=data)

    def s3_get(rel: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=f"team/{rel}")["Body"].read()

    yield RemoteSpec("s3", f"s3://{bucket}/team", env, s3_put, s3_get)
