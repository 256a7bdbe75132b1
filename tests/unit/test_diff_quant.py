"""Quantized tensors are dequantized before they are compared with their float parent.

Each layout is built with numpy the way its tool stores it (bitsandbytes int8 with ``SCB``,
``weight_scale`` fp8 / int8 per tensor, per channel and per block, GPTQ and AWQ 4-bit packed
words, torch ``int_repr`` with its scales and zero points), from a known float weight, so the
right dequantized values and the right relative change are known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from helpers import run_main

from mgit.diff import DictTensorSource, diff_models, render_text
from mgit.repo import Repository

OUT, IN = 16, 64


def weight(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((OUT, IN)) * 0.05).astype(np.float32)


def parent(w: np.ndarray) -> dict[str, np.ndarray]:
    return {"layer.weight": w, "layer.bias": np.linspace(-1, 1, OUT).astype(np.float32)}


def rel(x: np.ndarray, w: np.ndarray) -> float:
    w64 = w.astype(np.float64)
    return float(np.linalg.norm(x - w64) / np.linalg.norm(w64))


def bnb_int8(w: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """bitsandbytes ``Linear8bitLt`` state dict: int8 rows scaled by ``SCB = max |row|``."""
    scb = np.abs(w).max(axis=1).astype(np.float32)
    q = np.round(w * 127.0 / scb[:, None]).astype(np.int8)
    t = {"layer.weight": q, "layer.SCB": scb, "layer.weight_format": np.array(0, np.uint8)}
    return t, q.astype(np.float64) * scb[:, None].astype(np.float64) / 127.0


def pack_rows(q: np.ndarray, bits: int = 4) -> np.ndarray:
    """GPTQ ``qweight``: consecutive input rows in one int32, low bits first."""
    pf = 32 // bits
    q3 = q.astype(np.uint32).reshape(q.shape[0] // pf, pf, q.shape[1])
    out = np.zeros((q3.shape[0], q3.shape[2]), np.uint32)
    for j in range(pf):
        out |= q3[:, j, :] << np.uint32(bits * j)
    return out.view(np.int32)


def pack_cols(q: np.ndarray, bits: int = 4, order: tuple[int, ...] | None = None) -> np.ndarray:
    """``qzeros`` (and AWQ ``qweight``): consecutive columns in one int32 (AWQ: in its order)."""
    pf = 32 // bits
    order = order or tuple(range(pf))
    q3 = q.astype(np.uint32).reshape(q.shape[0], q.shape[1] // pf, pf)
    out = np.zeros((q3.shape[0], q3.shape[1]), np.uint32)
    for i in range(pf):
        out |= q3[:, :, order[i]] << np.uint32(bits * i)
    return out.view(np.int32)


def quantize_groups(w: np.ndarray, group: int, bits: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric per-group quantization of ``w.T`` (in x out): (codes, zeros, fp16 scales)."""
    wt = w.T.astype(np.float64)
    maxq = 2**bits - 1
    g = wt.reshape(IN // group, group, OUT)
    lo, hi = np.minimum(g.min(axis=1), 0), np.maximum(g.max(axis=1), 0)
    scales = ((hi - lo) / maxq).astype(np.float16)
    zeros = np.round(-lo / scales.astype(np.float64)).astype(np.int64)
    gi = np.arange(IN) // group
    q = np.clip(np.round(wt / scales[gi].astype(np.float64) + zeros[gi]), 0, maxq).astype(np.int64)
    return q, zeros, scales


def gptq(w: np.ndarray, group: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray]:
    q, zeros, scales = quantize_groups(w, group)
    assert zeros.min() >= 1  # AutoGPTQ stores zero - 1
    gi = np.arange(IN) // group
    t = {
        "layer.qweight": pack_rows(q),
        "layer.qzeros": pack_cols(zeros - 1),
        "layer.scales": scales,
        "layer.g_idx": gi.astype(np.int32),
    }
    deq = ((q - zeros[gi]) * scales[gi].astype(np.float64)).T
    return t, deq


def awq(w: np.ndarray, group: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray]:
    q, zeros, scales = quantize_groups(w, group)
    order = (0, 2, 4, 6, 1, 3, 5, 7)
    t = {"layer.qweight": pack_cols(q, order=order), "layer.qzeros": pack_cols(zeros, order=order),
         "layer.scales": scales}  # fmt: skip
    gi = np.arange(IN) // group
    return t, ((q - zeros[gi]) * scales[gi].astype(np.float64)).T


def check_dequantized(child: dict[str, np.ndarray], deq: np.ndarray, w: np.ndarray, scheme: str) -> Any:
    pa = parent(w)
    child = {**child, "layer.bias": pa["layer.bias"]}
    d = diff_models(DictTensorSource("fp32", pa), DictTensorSource("quant", child))
    t = d.get("layer.weight")
    assert t.shape_a == t.shape_b == (OUT, IN)
    assert t.stats is not None and t.stats.relative_change == pytest.approx(rel(deq, w), rel=1e-9)
    assert t.stats.relative_change < 0.1
    assert t.quant_b is not None and t.quant_b.scheme == scheme and t.quant_a is None
    assert not t.stats.raw_codes_compared and t.error is None
    assert t.stats.max_abs_diff == pytest.approx(float(np.abs(deq - w).max()), rel=1e-9)
    assert d.get("layer.bias").status == "unchanged"
    assert len(d.tensors) == 2 and d.summary.quantized_b == 1 and d.summary.tensors_b == len(child)
    assert {t2.name for t2 in d.tensors} == {"layer.weight", "layer.bias"}
    return d


# ----------------------------------------------------------------------------------------------
# layouts


def test_bnb_int8_is_dequantized_with_scb() -> None:
    w = weight()
    child, deq = bnb_int8(w)
    d = check_dequantized(child, deq, w, "bnb_int8")
    t = d.get("layer.weight")
    assert t.status == "dtype_changed" and (t.dtype_a, t.dtype_b) == ("F32", "I8")
    assert t.stats is not None and t.stats.relative_change < 0.01
    assert t.quant_b is not None and t.quant_b.bits == 8
    assert t.quant_b.parts == ("layer.weight", "layer.SCB", "layer.weight_format")
    text = "\n".join(render_text(d, color=False))
    assert "dequantized b: bnb_int8 8-bit" in text
    doc = d.to_json()
    assert doc["summary"]["quantized_b"] == 1
    assert next(x for x in doc["tensors"] if x["name"] == "layer.weight")["quant_b"] == {
        "scheme": "bnb_int8", "bits": 8, "group_size": None,
        "parts": ["layer.weight", "layer.SCB", "layer.weight_format"],
    }  # fmt: skip


@pytest.mark.parametrize("layout", ["tensor", "tensor_1", "channel", "channel_1d", "block"])
def test_fp8_weight_scale(layout: str) -> None:
    w = weight(1)
    if layout.startswith("tensor"):
        s = np.array(np.abs(w).max() / 448.0, np.float32)
        if layout == "tensor_1":
            s = s.reshape(1)
        full = np.broadcast_to(s.reshape(()), w.shape)
    elif layout.startswith("channel"):
        s = (np.abs(w).max(axis=1, keepdims=True) / 448.0).astype(np.float32)
        full = np.broadcast_to(s, w.shape)
        if layout == "channel_1d":
            s = s.reshape(-1)
    else:  # 8 x 32 blocks, as fp8 checkpoints store 128 x 128 ones (weight_scale_inv)
        blocks = np.abs(w).reshape(2, 8, 2, 32).max(axis=(1, 3)) / 448.0
        s = blocks.astype(np.float32)
        full = np.repeat(np.repeat(s, 8, axis=0), 32, axis=1)
    q = (w / full).astype(ml_dtypes.float8_e4m3fn)
    deq = q.astype(np.float64) * full.astype(np.float64)
    name = "layer.weight_scale_inv" if layout == "block" else "layer.weight_scale"
    d = check_dequantized({"layer.weight": q, name: s}, deq, w, "scaled")
    assert d.get("layer.weight").dtype_b == "F8_E4M3"


def test_int8_weight_scale_with_zero_point() -> None:
    w = weight(2)
    s = ((w.max(axis=1) - w.min(axis=1)) / 255.0).astype(np.float32)[:, None]
    zp = np.round(-128 - w.min(axis=1, keepdims=True) / s).astype(np.int8)
    q = np.clip(np.round(w / s) + zp, -128, 127).astype(np.int8)
    deq = (q.astype(np.float64) - zp) * s.astype(np.float64)
    child = {"layer.weight": q, "layer.weight_scale": s, "layer.weight_zero_point": zp}
    d = check_dequantized(child, deq, w, "scaled")
    assert d.get("layer.weight").quant_b.parts == (  # type: ignore[union-attr]
        "layer.weight", "layer.weight_scale", "layer.weight_zero_point",
    )  # fmt: skip


def test_gptq_4bit_packed_groups() -> None:
    w = weight(3)
    child, deq = gptq(w)
    d = check_dequantized(child, deq, w, "gptq")
    from mgit.diff.quant import DequantSource

    src = DequantSource(DictTensorSource("q", child))
    assert np.allclose(src.load("layer.weight"), deq, rtol=0, atol=1e-12)
    q = d.get("layer.weight").quant_b
    assert q is not None and (q.bits, q.group_size) == (4, 32)
    assert d.get("layer.weight").dtype_b == "I32"
    # a gptq_v2 checkpoint stores zeros without the -1
    child2 = dict(child, **{"layer.qzeros": pack_cols(quantize_groups(w, 32)[1])})
    v2 = DictTensorSource("q", child2, config={"quantization_config": {"checkpoint_format": "gptq_v2"}})
    assert np.allclose(DequantSource(v2).load("layer.weight"), deq, rtol=0, atol=1e-12)


def test_awq_4bit_packed_in_awq_order() -> None:
    w = weight(4)
    child, deq = awq(w)
    d = check_dequantized(child, deq, w, "awq")
    assert d.get("layer.weight").quant_b.group_size == 32  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*:UserWarning")
@pytest.mark.parametrize("per_channel", [False, True])
def test_torch_int_repr_with_scale_and_zero_point(per_channel: bool) -> None:
    torch = pytest.importorskip("torch")
    w = weight(5)
    wt = torch.from_numpy(w)
    if per_channel:
        scales = torch.from_numpy(np.abs(w).max(axis=1) / 127.0).double()
        zps = torch.zeros(OUT, dtype=torch.int64)
        qt = torch.quantize_per_channel(wt, scales, zps, axis=0, dtype=torch.qint8)
        scale = qt.q_per_channel_scales().numpy().astype(np.float32)
        zero = qt.q_per_channel_zero_points().numpy()
    else:
        qt = torch.quantize_per_tensor(wt, float(np.abs(w).max() / 127.0), 3, torch.qint8)
        scale = np.array(qt.q_scale(), np.float32)
        zero = np.array(qt.q_zero_point(), np.int64)
    codes = qt.int_repr().numpy()
    child = {"layer.weight": codes, "layer.scale": scale, "layer.zero_point": zero}
    z = zero.reshape(-1, 1) if per_channel else zero.reshape(())
    sc = scale.reshape(-1, 1) if per_channel else scale.reshape(())
    deq = (codes.astype(np.float64) - z) * sc.astype(np.float64)
    assert np.allclose(deq, qt.dequantize().numpy(), rtol=0, atol=1e-6)  # torch agrees
    check_dequantized(child, deq, w, "affine")


def test_unrecognised_codes_are_never_a_silent_number() -> None:
    w = weight(6)
    q = np.round(w * 127 / np.abs(w).max()).astype(np.int8)  # the scale is nowhere
    d = diff_models(DictTensorSource("fp32", parent(w)), DictTensorSource("int8", {**parent(w), "layer.weight": q}))
    t = d.get("layer.weight")
    assert t.status == "dtype_changed"
    assert t.stats is not None and t.stats.relative_change is None  # was ~1000
    assert t.stats.raw_codes_compared and t.stats.cosine_similarity is None and t.quant_b is None
    assert t.error is not None and "raw integer codes" in t.error and "not recognised" in t.error
    assert d.summary.raw_codes_compared == 1 and d.summary.l2_diff == 0.0
    assert d.blocks[0].max_relative_change is None
    doc = d.to_json()
    entry = next(x for x in doc["tensors"] if x["name"] == "layer.weight")
    assert entry["stats"]["raw_codes_compared"] is True and entry["stats"]["relative_change"] is None
    text = "\n".join(render_text(d, color=False))
    assert "raw integer codes compared with floats" in text and " rel " not in text
    # integer tensors on both sides (token ids, masks) are compared as they always were
    ids = {"position_ids": np.arange(8, dtype=np.int64)}
    d2 = diff_models(DictTensorSource("a", ids), DictTensorSource("b", {"position_ids": np.arange(8)[::-1].copy()}))
    s2 = d2.get("position_ids").stats
    assert s2 is not None and not s2.raw_codes_compared and s2.relative_change is not None


def test_two_quantized_versions_compare_dequantized_and_skip_equal_ones() -> None:
    w = weight(7)
    a, deq_a = bnb_int8(w)
    b, deq_b = bnb_int8((w * 1.01).astype(np.float32))
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    t = d.get("layer.weight")
    assert t.stats is not None and t.stats.relative_change == pytest.approx(rel(deq_b, deq_a), rel=1e-9)
    assert t.status == "changed" and t.quant_a is not None and t.quant_b is not None
    assert t.stats.relative_change == pytest.approx(0.01, rel=0.1)
    same_a, same_b = DictTensorSource("a", a), DictTensorSource("b", dict(a))
    d2 = diff_models(same_a, same_b)
    assert d2.summary.identical and same_a.loads == same_b.loads == 0


def test_int8_child_of_fp32_parent_through_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.numpy import save_file

    w = weight(8)
    child, deq = bnb_int8(w)
    for name, tensors, cfg in (
        ("fp32", parent(w), {"model_type": "toy"}),
        ("int8", {**child, "layer.bias": parent(w)["layer.bias"]},
         {"model_type": "toy", "quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}),
    ):  # fmt: skip
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"))
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    repo = Repository.init(tmp_path / "repo", model="fp32", chunk_size=65536)
    repo.import_folder(tmp_path / "fp32", model="fp32", message="fp32")
    repo.import_folder(tmp_path / "int8", model="int8", message="int8", parent="fp32")
    d = repo.diff("fp32", "int8")
    t = d.get("layer.weight")
    assert t.stats is not None and t.stats.relative_change == pytest.approx(rel(deq, w), rel=1e-9)
    assert t.stats.relative_change < 0.01  # not the ~1000 of int8 codes against floats
    code, out, _ = run_main(capsys, repo.root, "diff", "fp32", "int8")
    assert code == 0 and "dequantized b: bnb_int8 8-bit" in out
    assert "quantization_config" in out  # and the config change is listed
