"""The C kernels of mgit._planes against the numpy kernels, byte for byte, and both codec paths.

The stored formats (``planes-zstd/1``, ``sub-planes-zstd/1``, ``xor-planes-zstd/1``) were defined by
the numpy code, so the native kernels must give exactly its bytes; payloads written before the C
kernels existed (the fixtures below) must still decode on both paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import SPECIAL_WORDS, roundtrip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgit.codecs import (
    _common,
    _npkernels,
    _zstd,
    codec_needs_base,
    decode,
    encode_delta,
    encode_standalone,
    lossless,
)
from mgit.codecs._bits import merge_planes, split_planes, unzigzag, word_dtype, zigzag

NATIVE: Any = lossless.native
if NATIVE is None:  # built but disabled by MGIT_NO_NATIVE, or not built at all
    try:
        from mgit import _planes as NATIVE  # type: ignore[no-redef]
    except ImportError:
        NATIVE = None

needs_native = pytest.mark.skipif(NATIVE is None, reason="mgit._planes is not built")

ROOT = Path(__file__).resolve().parents[2]
ITEMSIZES = (1, 2, 3, 4, 8, 16)
WORD_SIZES = (1, 2, 4, 8)
COUNTS = (0, 1, 2, 3, 7, 31, 2047, 2048, 2049, 5003)

SETTINGS = settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------------------------------------
# The reference: the numpy code the stored formats were defined with (before the C kernels)
# ------------------------------------------------------------------------------------------------


def ref_split(src: bytes, itemsize: int) -> bytes:
    return split_planes(np.frombuffer(src, np.uint8), itemsize).tobytes()


def ref_delta_split(child: bytes, base: bytes, itemsize: int, xor: bool) -> bytes:
    word, _ = word_dtype(itemsize)
    c, b = np.frombuffer(child, word), np.frombuffer(base, word)
    d = np.bitwise_xor(c, b) if xor else zigzag(np.subtract(c, b))
    return split_planes(d.view(np.uint8), itemsize).tobytes()


def ref_delta_merge(planes: bytes, base: bytes, itemsize: int, xor: bool) -> bytes:
    word, _ = word_dtype(itemsize)
    codes = merge_planes(np.frombuffer(planes, np.uint8), itemsize).view(word)
    parent = np.frombuffer(base, word)
    out = np.bitwise_xor(codes, parent) if xor else np.add(unzigzag(codes), parent)
    return out.tobytes()


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def _special_words(itemsize: int, n: int, rng: np.random.Generator) -> bytes:
    word, width = word_dtype(itemsize)
    specials = SPECIAL_WORDS.get(width, SPECIAL_WORDS[1])
    return np.array(rng.choice(specials, n * itemsize // width), dtype=word).tobytes()


def cases(itemsize: int, n: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(label, child, base) pairs of ``n`` elements of ``itemsize`` bytes."""
    rng = np.random.default_rng(itemsize * 10007 + n)
    size = n * itemsize
    rand = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    rand2 = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    special = _special_words(itemsize, n, rng)
    zeros = bytes(size)
    yield "random", rand, rand2
    yield "special-vs-random", special, rand
    yield "random-vs-special", rand, special
    yield "zeros", zeros, zeros
    yield "zeros-vs-random", zeros, rand
    if itemsize in (2, 4, 8) and n:
        ftype: Any = {2: np.float16, 4: np.float32, 8: np.float64}[itemsize]
        with np.errstate(all="ignore"):
            base = rng.standard_normal(n).astype(ftype)
            child = (base + rng.standard_normal(n).astype(ftype) * ftype(1e-3)).astype(ftype)
            tiny = np.full(n, np.finfo(ftype).smallest_subnormal, dtype=ftype)
            child[::7] = -0.0
            child[1::11] = np.inf
            child[2::13] = tiny[2::13]
        yield "floats", child.tobytes(), base.tobytes()


def all_cases(sizes: tuple[int, ...] = ITEMSIZES) -> list[tuple[int, int, str, bytes, bytes]]:
    return [(k, n, label, c, b) for k in sizes for n in COUNTS for label, c, b in cases(k, n)]


def _id(case: tuple[int, int, str, bytes, bytes]) -> str:
    return f"k{case[0]}-n{case[1]}-{case[2]}"


# ------------------------------------------------------------------------------------------------
# Kernels: native == numpy == reference
# ------------------------------------------------------------------------------------------------


KERNELS = [
    pytest.param(NATIVE, id="native", marks=needs_native),
    pytest.param(_npkernels, id="numpy"),
]


@pytest.mark.parametrize("kern", KERNELS)
@pytest.mark.parametrize("case", all_cases(), ids=_id)
def test_split_and_merge_match_the_reference(kern: Any, case: tuple[Any, ...]) -> None:
    k, _, _, src, _ = case
    dst = bytearray(len(src))
    kern.split(src, k, dst)
    assert bytes(dst) == ref_split(src, k)
    merged = kern.merge(bytes(dst), k)
    assert type(merged) is bytes and merged == src
    out = bytearray(b"\xa5" * len(src))
    kern.merge_into(dst, k, out)
    assert out == src


@pytest.mark.parametrize("kern", KERNELS)
@pytest.mark.parametrize("xor", [False, True], ids=["sub", "xor"])
@pytest.mark.parametrize("case", all_cases(WORD_SIZES), ids=_id)
def test_delta_kernels_match_the_reference(kern: Any, xor: bool, case: tuple[Any, ...]) -> None:
    k, _, _, child, base = case
    planes = bytearray(len(child))
    kern.delta_split(child, base, k, planes, xor)
    assert bytes(planes) == ref_delta_split(child, base, k, xor)
    assert ref_delta_merge(bytes(planes), base, k, xor) == child
    merged = kern.delta_merge(planes, base, k, xor)
    assert type(merged) is bytes and merged == child
    out = bytearray(len(child))
    kern.delta_merge_into(planes, base, k, out, xor)
    assert out == child


@needs_native
def test_native_accepts_any_buffer() -> None:
    src = np.arange(4096, dtype=np.uint32)
    planes = np.empty(src.nbytes, dtype=np.uint8)
    NATIVE.split(src, 4, planes)
    assert planes.tobytes() == ref_split(src.tobytes(), 4)
    assert NATIVE.merge(planes.data, 4) == src.tobytes()
    scratch = memoryview(bytearray(src.nbytes + 10))[5:-5]
    NATIVE.delta_split(src, memoryview(src.tobytes()), 4, scratch, True)
    assert bytes(scratch) == bytes(src.nbytes)


@pytest.mark.parametrize("kern", KERNELS)
def test_kernels_refuse_misuse(kern: Any) -> None:
    eight = bytes(range(8))
    with pytest.raises(ValueError):
        kern.split(eight, 0, bytearray(8))
    with pytest.raises(ValueError):
        kern.split(eight, 65, bytearray(8))
    with pytest.raises(ValueError):
        kern.split(eight, -4, bytearray(8))
    with pytest.raises(ValueError):
        kern.split(eight, 3, bytearray(8))  # not whole elements
    with pytest.raises(ValueError):
        kern.split(eight, 4, bytearray(7))  # output too short
    with pytest.raises(ValueError):
        kern.split(eight, 4, bytearray(9))  # output too long
    with pytest.raises(ValueError):
        kern.merge(eight, 3)
    with pytest.raises(ValueError):
        kern.merge_into(eight, 2, bytearray(4))
    with pytest.raises(ValueError):
        kern.delta_split(eight, eight, 3, bytearray(8), False)  # words are 1, 2, 4 or 8 bytes
    with pytest.raises(ValueError):
        kern.delta_split(eight, eight, 16, bytearray(8), False)
    with pytest.raises(ValueError):
        kern.delta_split(eight, eight[:4], 4, bytearray(8), False)  # base too short
    with pytest.raises(ValueError):
        kern.delta_split(eight[:6], eight[:6], 4, bytearray(6), True)
    with pytest.raises(ValueError):
        kern.delta_merge(eight, eight[:4], 4, False)
    with pytest.raises(ValueError):
        kern.delta_merge(eight, eight, 5, False)
    with pytest.raises(ValueError):
        kern.delta_merge_into(eight, eight, 4, bytearray(16), False)
    with pytest.raises((TypeError, BufferError, ValueError)):
        kern.split(eight, 4, b"\0" * 8)  # read-only output
    # An output that overlaps an input would corrupt it as it is read.
    buf = bytearray(16)
    with pytest.raises(ValueError):
        kern.split(memoryview(buf)[:8], 4, memoryview(buf)[4:12])
    with pytest.raises(ValueError):
        kern.delta_split(eight, memoryview(buf)[:8], 4, memoryview(buf)[7:15], False)
    # Nothing was written by the refused calls.
    assert buf == bytearray(16)


# ------------------------------------------------------------------------------------------------
# The public API on both paths
# ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["native", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native":
        if NATIVE is None:
            pytest.skip("mgit._planes is not built")
        monkeypatch.setattr(lossless, "native", NATIVE)
    else:
        monkeypatch.setattr(lossless, "native", None)
    assert lossless.kernels_name() == request.param
    return str(request.param)


def _roundtrip(data: bytes, base: bytes | None, itemsize: int, transform: str | None) -> Any:
    if transform is None:
        enc = encode_standalone(data, itemsize=itemsize, is_float=True)
    else:
        assert base is not None
        enc = encode_delta(data, base, itemsize=itemsize, is_float=True, transform=transform)
    out = roundtrip(enc, data, base)
    assert type(out) is bytes and out == data
    return enc


@pytest.mark.parametrize("extra", [0, 1, 3], ids=["whole", "plus1", "plus3"])
@pytest.mark.parametrize("itemsize", ITEMSIZES)
def test_public_api_roundtrips_on_both_paths(path: str, itemsize: int, extra: int) -> None:
    for n in (0, 1, 5, 2049):
        for _, child, base in cases(itemsize, n):
            child, base = child + bytes(range(extra)), base + bytes(extra)
            for transform in (None, "sub", "xor"):
                _roundtrip(child, base, itemsize, transform)


@pytest.mark.parametrize("extra", [0, 1], ids=["whole", "odd"])
@pytest.mark.parametrize("itemsize", ITEMSIZES)
def test_both_paths_write_the_same_payloads(
    monkeypatch: pytest.MonkeyPatch, itemsize: int, extra: int
) -> None:
    if NATIVE is None:
        pytest.skip("mgit._planes is not built")
    for _, child, base in cases(itemsize, 3001):
        child, base = child + bytes(extra), base + bytes(extra)
        for transform in (None, "sub", "xor"):
            monkeypatch.setattr(lossless, "native", NATIVE)
            native = _roundtrip(child, base, itemsize, transform)
            monkeypatch.setattr(lossless, "native", None)
            numpy = _roundtrip(child, base, itemsize, transform)
            assert native == numpy


def _fixture_pair(itemsize: int, nbytes: int) -> tuple[bytes, bytes]:
    base = bytearray(nbytes)
    for i in range(nbytes):
        base[i] = (
            ((i // itemsize) * 37 % 251)
            if i % itemsize == 0
            else (i % itemsize) * (i // itemsize % 3)
        )
    child = bytearray(base)
    for j in range(0, nbytes, 5):
        child[j] = (child[j] + 3) & 255
    return bytes(child), bytes(base)


#: Payloads written by mgit before the C kernels (itemsize, size, transform, codec, payload hex).
STORED = [
    (
        2,
        512,
        "sub",
        "sub-planes-zstd/1",
        "28b52ffd6400018d00003006000000000002007a8045013da8a2054f86de58",
    ),
    (
        2,
        512,
        "xor",
        "xor-planes-zstd/1",
        "28b52ffd6400013d0300b402030000000005000000000d1f00000000030705000000003d05071f0d050f000000001d1d053f1d070d1f071a0062190a2cdc81a80d40c0683600f28066504812e40121807cd0630ac501c9800ab02a097958684684222de5781683b3c0564b5d100a8ae205a4def3a8",
    ),
    (
        2,
        512,
        "alone",
        "planes-zstd/1",
        "28b52ffd640001c50800f41003254a6f94bcde082d527a9cc1e610385a7fa4c9f1183d6287afd1f620456d8fb4d9032b4d7297bce40b30557aa2c4e913386082a7ccf11e40658aafd7f923486d95b7dc062b53759abfe41133587da2caec163b6088aacff41e46688db2d704264b7095bddf092e537b9dc2e711395b80a5caf2193e6388b0d2f721466e90b5da042c4e7398bde50c31567ba3c5ea14396183a8cdf21f41668bb0d8fa24496e96b8dd072c54769bc0e51234597ea3cbed173c6189abd0f51f47698eb3d805274c7196bee00a2f547c9ec3e8123a5c81a6cbf31a3f6489b1d3f822476f91b6db052d4f7499bee60d32577ca4c6eb153a6284a9cef32042678cb1d900254a6f9700010500010200040200010203010201000f6ea1e614776ff4e0",
    ),
    (
        4,
        512,
        "sub",
        "sub-planes-zstd/1",
        "28b52ffd640001c5000058060000000006000600060004042a18600e300738a36801e615900d",
    ),
    (
        4,
        512,
        "xor",
        "xor-planes-zstd/1",
        "28b52ffd6400013d0300c402030000000005000000000d1f00000000030705000000003d05071f0d050f000000001d1d0f0f0f0f0f0f0f001900e010201f90199005c807640652001642c782e1410a6cd3c19349a1c11d005d082a097958684684222de5781683b3c0564b5d100a8ae2054c27ef2f",
    ),
    (
        4,
        512,
        "alone",
        "planes-zstd/1",
        "28b52ffd640001d50500d40a03254a6f94bcde082d527a9cc1e610385a7fa4c9f1183d6287afd1f620456d8fb4d9032b4d7297bce40b30557aa2c4e913386082a7ccf11e40658aafd7f923486d95b7dc062b53759abfe41133587da2caec163b6088aacff41e46688db2d704264b7095bddf092e537b9dc2e711395b80a5caf2193e6388b0d2f721466e90b500040200010203010200010500010200020700020400050400020403020400030603030600030900030600060603042a0ed40ed48793890638b1b520",
    ),
    (
        8,
        512,
        "sub",
        "sub-planes-zstd/1",
        "28b52ffd6400016501005806000000000000000600000e000607800b0607c00b0607800b060780000607c00b0607800be6ea048154b4d38ffdf6",
    ),
    (
        8,
        512,
        "xor",
        "xor-planes-zstd/1",
        "28b52ffd6400013d03000402030000000005000000000d1f00000000030705000000003d0507070f03070f1f2100c103401e80037800c807b850a60110e0b3eac0150104401e70032001e4d3030f990ba0018000048005d0802b042368874c8c059753c9c1b30e5c00b65aea825050142f6c5ccb45",
    ),
    (
        8,
        512,
        "alone",
        "planes-zstd/1",
        "28b52ffd640001dd0500940a03254a6f94bcde082d527a9cc1e610385a7fa4c9f1183d6287afd1f620456d8fb4d9032b4d7297bce40b30557aa2c4e913386082a7ccf11e40658aafd7f9234800010203010200010500010200040200050400020403020400020700020400030600060600030603030600030900040b00040800070800040803040803050a00050d00050a00080a00050a00060c03060c00060f00060c00090c000a0e00070e03070e00071100070e070425825a500b6a412da805f5516614eea87fa9",
    ),
    (
        3,
        510,
        "sub",
        "sub-planes-zstd/1",
        "28b52ffd64fe00d5000058060000000000000600000004002040010800990c0544a08a16cec5a1f6",
    ),
    (
        3,
        510,
        "xor",
        "xor-planes-zstd/1",
        "28b52ffd64fe00fd03007403030000000005000000000d1f00000000030705000000003d05071f0d050f000000001d1d053f070303030303030303030300000700000020002013201f90199005c80764066401f2019981149341b8583074991424dfc1643680723a89800e53280e480654805549c8c3423322146929c7b3189c05b65aea825050142f0e644e17",
    ),
    (
        3,
        510,
        "alone",
        "planes-zstd/1",
        "28b52ffd64fe00a50600840c03254a6f94bcde082d527a9cc1e610385a7fa4c9f1183d6287afd1f620456d8fb4d9032b4d7297bce40b30557aa2c4e913386082a7ccf11e40658aafd7f923486d95b7dc062b53759abfe41133587da2caec163b6088aacff41e46688db2d704264b7095bddf092e537b9dc2e711395b80a5caf2193e6388b0d2f721466e90b5da042c4e7398bde50c31567ba3c5ea14396183a8cdf21f41668bb0d8fa24496e96b8dd072c54769bc0e500010203010200010500010200040200050400020403020400020700020402001840d51c46a88906fdeb4651",
    ),
    (4, 514, "sub", "sub-planes-zstd/1", "28b52ffd6402016500002806000000000100fa508b16b6e1b996"),
    (
        4,
        514,
        "xor",
        "xor-planes-zstd/1",
        "28b52ffd6402013503004402030000000005000000000307000000000f0d0d1f0307053d3d07031f0d0d05050f1d1d052000e010901c4818480117800e40036801240712061201c981848144401eb80274009407120692800d6003901c481848f2d586967255ed00754128991ba0285eea570412",
    ),
    (
        4,
        514,
        "alone",
        "zstd/1",
        "28b52ffd640201750b0026a05a3be0d824e9209d85cc8b916012a65e725449d796d5996761ea254cbde4a8921e37ab33cfc2d44b8e78c951253d6e1c70c524e110cc36d136d952ee144b004a0049003d4a83f1c79cb1c2b10edcab9c252465d9fc2d22e387a692f02d70c69db28af46f1c4415a575f85bce28e0584fee42ce528db2647e0d9191415301f83639e34d5932fa240ee285d214fc0d15d3b77010139476e5cf39a3cdb15cdc439c250a657dfe9dc868a4a9727c599c11a6ac96fe808318a534227fcd19658eb5e1eee02c05284be7bf898c339acac437c31959ca6a5fc9410c77c119adac9c3e8f83f8a23411bfcb193fc7a2723f7296749435f3c344c6084d45e02be58c3865d5f4531c440ea53df83d67d43956903b8db374a2ac979f25325e5331f9fe38234d195cd2543ebe31ce38a22c973e828368a5b424ff8e33ce1c0bc47dc2593250d6941f2732e268aa155f0f67845096a70fe5200e29cdc68fe28c2fc76a708fce9293b280fc3491b14453613800df11340c",
    ),
]


@pytest.mark.parametrize("stored", STORED, ids=lambda s: f"k{s[0]}-{s[1]}-{s[2]}")
def test_payloads_written_before_the_native_kernels_decode_and_reencode(
    path: str, stored: tuple[int, int, str, str, str]
) -> None:
    itemsize, nbytes, kind, codec, payload_hex = stored
    child, base = _fixture_pair(itemsize, nbytes)
    payload = bytes.fromhex(payload_hex)
    params = {} if codec == "zstd/1" else {"itemsize": itemsize}
    needs = codec_needs_base(codec)
    assert decode(codec, payload, params, size=nbytes, base=base if needs else None) == child
    enc = _roundtrip(child, base, itemsize, None if kind == "alone" else kind)
    assert enc.codec == codec
    # The bytes inside the frame are the same (the frame itself may change with the zstd version).
    assert _zstd.decompress(enc.payload, nbytes) == _zstd.decompress(payload, nbytes)


def test_chunks_larger_than_the_kept_scratch(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "SCRATCH_MAX", 1000)
    for itemsize in (2, 4, 3):
        for _, child, base in cases(itemsize, 1500):
            for transform in (None, "sub", "xor"):
                _roundtrip(child, base, itemsize, transform)


def test_threads_share_nothing(path: str) -> None:
    work = [(k, c, b) for k in (2, 4, 8) for _, c, b in cases(k, 20000)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                for k, c, b in work:
                    _roundtrip(c, b, k, "sub")
                    _roundtrip(c, b, k, None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ------------------------------------------------------------------------------------------------
# Property tests
# ------------------------------------------------------------------------------------------------


@st.composite
def child_and_base(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """A base of random and special words, and a child with some elements changed."""
    itemsize = draw(st.sampled_from(WORD_SIZES))
    word, _ = word_dtype(itemsize)
    pick = st.one_of(
        st.integers(0, 2 ** (8 * itemsize) - 1),
        st.integers(0, min(300, 2 ** (8 * itemsize) - 1)),
        st.sampled_from(SPECIAL_WORDS[itemsize]),
    )
    base = np.array(draw(st.lists(pick, max_size=300)), dtype=word)
    child = base.copy()
    for i in draw(st.lists(st.integers(0, max(base.size - 1, 0)), max_size=base.size)):
        child[i] = draw(pick)
    return child.tobytes(), base.tobytes(), itemsize


@needs_native
@SETTINGS
@given(case=child_and_base(), xor=st.booleans())
def test_native_delta_equals_numpy(case: tuple[bytes, bytes, int], xor: bool) -> None:
    child, base, k = case
    native, numpy = bytearray(len(child)), bytearray(len(child))
    NATIVE.delta_split(child, base, k, native, xor)
    _npkernels.delta_split(child, base, k, numpy, xor)
    assert native == numpy
    assert NATIVE.delta_merge(native, base, k, xor) == child
    assert _npkernels.delta_merge(numpy, base, k, xor) == child


@needs_native
@SETTINGS
@given(data=st.binary(max_size=3000), itemsize=st.integers(1, 64))
def test_native_planes_equal_numpy(data: bytes, itemsize: int) -> None:
    data = data[: len(data) - len(data) % itemsize]
    native, numpy = bytearray(len(data)), bytearray(len(data))
    NATIVE.split(data, itemsize, native)
    _npkernels.split(data, itemsize, numpy)
    assert native == numpy
    assert NATIVE.merge(native, itemsize) == data


@SETTINGS
@given(
    data=st.binary(max_size=2000),
    base=st.binary(max_size=2000),
    itemsize=st.sampled_from(ITEMSIZES),
    transform=st.sampled_from([None, "sub", "xor"]),
    native=st.booleans(),
)
def test_public_api_roundtrips_any_bytes(
    data: bytes, base: bytes, itemsize: int, transform: str | None, native: bool
) -> None:
    n = min(len(data), len(base))
    saved = lossless.native
    lossless.native = NATIVE if native else None
    try:
        _roundtrip(data[:n], base[:n], itemsize, transform)
    finally:
        lossless.native = saved


# ------------------------------------------------------------------------------------------------
# Imports
# ------------------------------------------------------------------------------------------------


def _python(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "MGIT_NO_NATIVE"}
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@needs_native
def test_lossless_codecs_do_not_import_numpy() -> None:
    code = (
        "import sys, mgit.codecs as c, mgit.codecs.lossless as l;"
        "e = c.encode_delta(bytes(4096), bytes(range(256)) * 16, itemsize=4, is_float=True);"
        "s = c.encode_standalone(bytes(range(256)) * 16, itemsize=2, is_float=True);"
        "c.decode(e.codec, e.payload, e.params, size=4096, base=bytes(range(256)) * 16);"
        "c.decode(s.codec, s.payload, s.params, size=4096);"
        "print(l.kernels_name(), 'numpy' in sys.modules, 'mgit.codecs.lossy' in sys.modules)"
    )
    assert _python(code) == "native False False"


def test_no_native_env_forces_numpy() -> None:
    code = "import mgit.codecs.lossless as l; print(l.kernels_name())"
    assert _python(code, MGIT_NO_NATIVE="1") == "numpy"


def test_lossy_module_is_still_reachable_and_consistent() -> None:
    from mgit import codecs

    lossy = codecs.lossy
    assert lossy.QUANT_PLANES_ZSTD == codecs.QUANT_PLANES_ZSTD
    assert frozenset(lossy._SPECS) == codecs.LOSSY_DTYPES
    with pytest.raises(AttributeError):
        codecs.no_such_thing  # noqa: B018
