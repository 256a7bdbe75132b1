"""Unit tests for mgit.codecs: bit-exact round trips, the lossy bound, and strict decoding."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zstandard
from helpers import SPECIAL_WORDS, roundtrip

from mgit import codecs
from mgit.codecs import (
    PLANES_ZSTD,
    QUANT_PLANES_ZSTD,
    RAW,
    SUB_PLANES_ZSTD,
    XOR_PLANES_ZSTD,
    ZSTD,
    Encoded,
    codec_needs_base,
    decode,
    encode_delta,
    encode_lossy,
    encode_standalone,
    is_lossy,
)
from mgit.errors import CodecError

# dtype name -> (numpy bit dtype, itemsize, is_float)
DTYPES = {
    "F64": (np.uint64, 8, True),
    "F32": (np.uint32, 4, True),
    "F16": (np.uint16, 2, True),
    "BF16": (np.uint16, 2, True),
    "F8_E4M3": (np.uint8, 1, True),
    "I64": (np.uint64, 8, False),
    "I32": (np.uint32, 4, False),
    "I16": (np.uint16, 2, False),
    "I8": (np.uint8, 1, False),
    "BOOL": (np.uint8, 1, False),
}


def bits(dtype: str, n: int, seed: int = 0) -> np.ndarray:
    """Random bit patterns of ``dtype`` with every special value mixed in."""
    word, itemsize, _ = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2 ** (8 * itemsize), size=n, dtype=word, endpoint=False)
    specials = np.array(SPECIAL_WORDS[itemsize], dtype=word)
    k = min(n, specials.size)
    x[:k] = specials[:k]
    return x


def weights(n: int, seed: int = 0, scale: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * scale).astype(np.float32)


def finetune(w: np.ndarray, seed: int = 1, step: float = 3e-4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (w + rng.standard_normal(w.size).astype(np.float32) * np.float32(step)).astype(w.dtype)


# --------------------------------------------------------------------------------------------------
# Lossless round trips
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 1001, 65537])
def test_standalone_roundtrips_every_dtype_bit_exactly(dtype: str, n: int) -> None:
    _, itemsize, is_float = DTYPES[dtype]
    data = bits(dtype, n).tobytes()
    enc = encode_standalone(data, itemsize=itemsize, is_float=is_float)
    assert roundtrip(enc, data) == data


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("n", [0, 1, 3, 1001, 65537])
@pytest.mark.parametrize("transform", ["sub", "xor"])
def test_delta_roundtrips_every_dtype_bit_exactly(dtype: str, n: int, transform: str) -> None:
    _, itemsize, is_float = DTYPES[dtype]
    base = bits(dtype, n, seed=1)
    child = base.copy()
    # change a third of the elements, some to special values
    child[::3] = bits(dtype, n, seed=2)[::3]
    data, base_b = child.tobytes(), base.tobytes()
    enc = encode_delta(data, base_b, itemsize=itemsize, is_float=is_float, transform=transform)
    assert roundtrip(enc, data, base_b) == data


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 9, 4097])
@pytest.mark.parametrize("itemsize", [2, 4, 8, 3, 16])
def test_sizes_that_are_not_whole_elements_still_roundtrip(size: int, itemsize: int) -> None:
    rng = np.random.default_rng(size)
    data = (rng.integers(0, 4, size, dtype=np.uint8)).tobytes()
    base = (rng.integers(0, 4, size, dtype=np.uint8)).tobytes()
    for enc in (
        encode_standalone(data, itemsize=itemsize, is_float=True),
        encode_delta(data, base, itemsize=itemsize, is_float=True),
        encode_delta(data, base, itemsize=itemsize, is_float=True, transform="xor"),
    ):
        assert roundtrip(enc, data, base) == data


def test_inputs_may_be_memoryviews_bytearrays_or_numpy_arrays() -> None:
    w = weights(5000)
    c = finetune(w)
    expected = c.tobytes()
    for data, base in [
        (memoryview(c), memoryview(w)),
        (bytearray(expected), bytearray(w.tobytes())),
        (c, w),
        (memoryview(expected)[0:], w.tobytes()),
    ]:
        enc = encode_delta(data, base, itemsize=4, is_float=True)
        assert roundtrip(enc, expected, w.tobytes()) == expected
        enc = encode_standalone(data, itemsize=4, is_float=True)
        assert roundtrip(enc, expected) == expected


def test_decode_accepts_base_as_memoryview_or_numpy() -> None:
    w = weights(1000)
    c = finetune(w)
    enc = encode_delta(c.tobytes(), w.tobytes(), itemsize=4, is_float=True)
    for base in (memoryview(w), w, bytearray(w.tobytes())):
        assert decode(enc.codec, enc.payload, enc.params, size=c.nbytes, base=base) == c.tobytes()


# --------------------------------------------------------------------------------------------------
# Codec choice
# --------------------------------------------------------------------------------------------------


def test_standalone_uses_planes_for_floats_zstd_for_bytes_and_raw_when_incompressible() -> None:
    w = weights(100_000).tobytes()
    assert encode_standalone(w, itemsize=4, is_float=True).codec == PLANES_ZSTD
    ints = np.arange(100_000, dtype=np.int64).tobytes()
    assert encode_standalone(ints, itemsize=8, is_float=False).codec == PLANES_ZSTD
    text = b"abc" * 10_000
    assert encode_standalone(text, itemsize=1, is_float=False).codec == ZSTD
    noise = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    enc = encode_standalone(noise, itemsize=1, is_float=False)
    assert enc.codec == RAW and enc.payload == noise
    assert encode_standalone(b"", itemsize=4, is_float=True) == Encoded(RAW, b"", {})


def test_planes_beat_plain_zstd_on_float_weights() -> None:
    w = weights(200_000).tobytes()
    planes = encode_standalone(w, itemsize=4, is_float=True)
    plain = zstandard.ZstdCompressor(level=3).compress(w)
    assert len(planes.payload) < len(plain)


def test_delta_of_a_finetune_is_much_smaller_than_standalone() -> None:
    w = weights(200_000)
    c = finetune(w, step=1e-5)
    delta = encode_delta(c.tobytes(), w.tobytes(), itemsize=4, is_float=True)
    alone = encode_standalone(c.tobytes(), itemsize=4, is_float=True)
    assert delta.codec == SUB_PLANES_ZSTD
    assert len(delta.payload) * 1.5 < len(alone.payload)
    xor = encode_delta(c.tobytes(), w.tobytes(), itemsize=4, is_float=True, transform="xor")
    assert xor.codec == XOR_PLANES_ZSTD


def test_delta_of_identical_chunks_is_tiny() -> None:
    w = weights(1 << 20).tobytes()
    enc = encode_delta(w, w, itemsize=4, is_float=True)
    assert enc.codec == SUB_PLANES_ZSTD
    assert len(enc.payload) < 2000


def test_delta_against_an_unrelated_base_still_roundtrips_and_needs_the_base() -> None:
    c = weights(100_000, seed=1).tobytes()
    b = np.random.default_rng(5).integers(0, 2**32, 100_000, dtype=np.uint32).tobytes()
    enc = encode_delta(c, b, itemsize=4, is_float=True)
    assert enc.codec == SUB_PLANES_ZSTD and codec_needs_base(enc.codec)
    assert roundtrip(enc, c, b) == c
    for empty in (
        encode_delta(b"", b"", itemsize=4, is_float=True),
        encode_delta(b"", b"", itemsize=2, is_float=True, transform="xor"),
    ):
        assert codec_needs_base(empty.codec)
        assert roundtrip(empty, b"", b"") == b""


def test_delta_rejects_mismatched_lengths_and_bad_options() -> None:
    with pytest.raises(CodecError, match="must match"):
        encode_delta(b"\0" * 8, b"\0" * 4, itemsize=4, is_float=True)
    with pytest.raises(CodecError, match="transform"):
        encode_delta(b"\0" * 8, b"\0" * 8, itemsize=4, is_float=True, transform="div")
    with pytest.raises(CodecError, match="itemsize"):
        encode_standalone(b"\0" * 8, itemsize=0, is_float=True)
    with pytest.raises(CodecError, match="level"):
        encode_standalone(b"\0" * 8, itemsize=4, is_float=True, level=0)
    with pytest.raises(CodecError, match="level"):
        encode_delta(b"\0" * 8, b"\0" * 8, itemsize=4, is_float=True, level=23)


@pytest.mark.parametrize("level", [1, 3, 9, 19])
def test_every_level_roundtrips(level: int) -> None:
    w = weights(20_000)
    c = finetune(w)
    for enc in (
        encode_standalone(c.tobytes(), itemsize=4, is_float=True, level=level),
        encode_delta(c.tobytes(), w.tobytes(), itemsize=4, is_float=True, level=level),
    ):
        assert roundtrip(enc, c.tobytes(), w.tobytes()) == c.tobytes()


def test_codec_registry() -> None:
    assert not codec_needs_base(RAW)
    assert not codec_needs_base(ZSTD)
    assert not codec_needs_base(PLANES_ZSTD)
    assert codec_needs_base(SUB_PLANES_ZSTD)
    assert codec_needs_base(XOR_PLANES_ZSTD)
    assert codec_needs_base(QUANT_PLANES_ZSTD)
    assert is_lossy(QUANT_PLANES_ZSTD) and not is_lossy(SUB_PLANES_ZSTD)
    assert set(codecs.known_codecs()) == {
        RAW,
        ZSTD,
        PLANES_ZSTD,
        SUB_PLANES_ZSTD,
        XOR_PLANES_ZSTD,
        QUANT_PLANES_ZSTD,
        codecs.CAST_PLANES_ZSTD,
    }
    assert codec_needs_base(codecs.CAST_PLANES_ZSTD) and not is_lossy(codecs.CAST_PLANES_ZSTD)
    with pytest.raises(CodecError, match="unknown codec"):
        codec_needs_base("gzip/1")


def test_encoded_is_frozen() -> None:
    enc = encode_standalone(b"abcd", itemsize=1, is_float=False)
    with pytest.raises(AttributeError):
        enc.codec = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Lossy
# --------------------------------------------------------------------------------------------------


def _as_f64(raw: bytes, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
        return u.view(np.float32).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.frombuffer(
            raw, dtype={"F64": np.float64, "F32": np.float32, "F16": np.float16}[dtype]
        ).astype(np.float64)


def _to_dtype(x: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":
        u = x.astype(np.float32).view(np.uint32)
        return (
            ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
            .astype(np.uint16)
            .tobytes()
        )
    return x.astype({"F64": np.float64, "F32": np.float32, "F16": np.float16}[dtype]).tobytes()


def assert_within(decoded: bytes, data: bytes, dtype: str, eps: float) -> float:
    """Every element within eps, non-finite elements bit-identical; returns the max error."""
    width = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}[dtype]
    word = {8: np.uint64, 4: np.uint32, 2: np.uint16}[width]
    assert len(decoded) == len(data)
    d, x = _as_f64(decoded, dtype), _as_f64(data, dtype)
    finite = np.isfinite(x)
    assert np.array_equal(np.frombuffer(decoded, word)[~finite], np.frombuffer(data, word)[~finite])
    err = np.abs(d[finite] - x[finite])
    assert np.all(err <= eps)
    return float(err.max()) if err.size else 0.0


@pytest.mark.parametrize("dtype", ["F64", "F32", "F16", "BF16"])
@pytest.mark.parametrize("eps", [1e-4, 1e-2, 1e-6])
def test_lossy_never_exceeds_eps(dtype: str, eps: float) -> None:
    w = weights(50_000, scale=0.1).astype(np.float64)
    rng = np.random.default_rng(3)
    c = w + rng.standard_normal(w.size) * 5e-4
    data, base = _to_dtype(c, dtype), _to_dtype(w, dtype)
    enc = encode_lossy(data, base, dtype=dtype, eps=eps)
    assert enc is not None and enc.codec == QUANT_PLANES_ZSTD
    assert enc.params["eps"] == eps
    out = roundtrip(enc, data, base)
    measured = assert_within(out, data, dtype, eps)
    assert enc.params["max_err"] == pytest.approx(measured, rel=1e-12, abs=0)
    assert enc.params["max_err"] <= eps


def test_lossy_is_much_smaller_than_lossless_and_deterministic() -> None:
    w = weights(200_000)
    c = finetune(w)
    enc = encode_lossy(c.tobytes(), w.tobytes(), dtype="F32", eps=1e-4)
    lossless = encode_delta(c.tobytes(), w.tobytes(), itemsize=4, is_float=True)
    assert enc is not None
    assert len(enc.payload) * 3 < len(lossless.payload)
    assert enc.params["corrections"] == 0 and enc.params["bits"] in (1, 2, 4)
    again = encode_lossy(c.tobytes(), w.tobytes(), dtype="F32", eps=1e-4)
    assert again == enc
    first = roundtrip(enc, c.tobytes(), w.tobytes())
    assert roundtrip(enc, c.tobytes(), w.tobytes()) == first


def test_lossy_keeps_non_finite_and_special_values_exactly() -> None:
    base = bits("F32", 4096, seed=7)
    child = base.copy()
    child[:10] = np.array(SPECIAL_WORDS[4][:10], dtype=np.uint32)
    child[10:20] = base[10:20]  # unchanged specials stay as they were
    child[20:2000] += np.uint32(3)  # 3 ulps: within eps for small values, not for huge ones
    data, base_b = child.tobytes(), base.tobytes()
    enc = encode_lossy(data, base_b, dtype="F32", eps=1e-3)
    assert enc is not None and enc.params["corrections"] > 0
    assert_within(roundtrip(enc, data, base_b), data, "F32", 1e-3)


def test_lossy_unchanged_elements_keep_their_exact_bits() -> None:
    base = np.array([0.0, -0.0, 1e-45, -1.5, np.nan, np.inf], dtype=np.float32)
    base[4:5].view(np.uint32)[0] = 0x7FC0ABCD  # NaN with a payload
    enc = encode_lossy(base.tobytes(), base.tobytes(), dtype="F32", eps=1e-4)
    assert enc is not None
    assert roundtrip(enc, base.tobytes(), base.tobytes()) == base.tobytes()


def test_lossy_huge_values_are_stored_exactly_instead_of_breaking_the_bound() -> None:
    base = np.array([3e38, -3e38, 1e30, 1.0, 2.0], dtype=np.float32)
    child = np.array([3.4e38, 3e38, 1.0000001e30, 1.00005, -2.0], dtype=np.float32)
    enc = encode_lossy(child.tobytes(), base.tobytes(), dtype="F32", eps=1e-4)
    assert enc is not None and enc.params["corrections"] >= 1
    assert_within(roundtrip(enc, child.tobytes(), base.tobytes()), child.tobytes(), "F32", 1e-4)


def test_lossy_bf16_holds_the_bound_even_where_its_own_ulp_is_coarser() -> None:
    w = weights(20_000, scale=0.5).astype(np.float64)
    c = w + np.random.default_rng(9).standard_normal(w.size) * 1e-2
    data, base = _to_dtype(c, "BF16"), _to_dtype(w, "BF16")
    enc = encode_lossy(data, base, dtype="BF16", eps=1e-4)
    assert enc is not None
    assert_within(roundtrip(enc, data, base), data, "BF16", 1e-4)


def test_lossy_returns_none_for_other_dtypes_and_rejects_bad_input() -> None:
    x = np.arange(16, dtype=np.int32).tobytes()
    for dtype in ("I32", "I64", "U8", "F8_E4M3", "BOOL", "f32"):
        assert encode_lossy(x, x, dtype=dtype, eps=1e-4) is None
    for eps in (0.0, -1e-4, float("nan"), float("inf")):
        with pytest.raises(CodecError, match="error bound"):
            encode_lossy(x, x, dtype="F32", eps=eps)
    with pytest.raises(CodecError, match="must match"):
        encode_lossy(x, x[:8], dtype="F32", eps=1e-4)
    with pytest.raises(CodecError, match="whole number"):
        encode_lossy(x[:6], x[:6], dtype="F32", eps=1e-4)


def test_lossy_empty_and_single_element() -> None:
    for dtype in ("F64", "F32", "F16", "BF16"):
        enc = encode_lossy(b"", b"", dtype=dtype, eps=1e-4)
        assert enc is not None and roundtrip(enc, b"", b"") == b""
        one, other = _to_dtype(np.array([0.25]), dtype), _to_dtype(np.array([0.75]), dtype)
        enc = encode_lossy(one, other, dtype=dtype, eps=1e-4)
        assert enc is not None
        assert_within(roundtrip(enc, one, other), one, dtype, 1e-4)


def test_lossy_decode_rejects_bad_params() -> None:
    w = weights(100)
    enc = encode_lossy(finetune(w).tobytes(), w.tobytes(), dtype="F32", eps=1e-4)
    assert enc is not None
    for bad in (
        {**enc.params, "dtype": "I8"},
        {**enc.params, "step": 0.0},
        {**enc.params, "bits": 3},
        {**enc.params, "ebytes": 3},
        {**enc.params, "escapes": -1},
        {**enc.params, "escapes": enc.params["escapes"] + 1},
        {**enc.params, "corrections": -1},
        {**enc.params, "corrections": True},
        {k: v for k, v in enc.params.items() if k != "step"},
    ):
        with pytest.raises(CodecError):
            decode(enc.codec, enc.payload, bad, size=w.nbytes, base=w.tobytes())


# --------------------------------------------------------------------------------------------------
# Strict decoding
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def delta_case() -> tuple[Encoded, bytes, bytes]:
    w = weights(50_000)
    c = finetune(w)
    return (
        encode_delta(c.tobytes(), w.tobytes(), itemsize=4, is_float=True),
        c.tobytes(),
        w.tobytes(),
    )


def test_decode_rejects_an_unknown_codec() -> None:
    with pytest.raises(CodecError, match="unknown codec 'lz4/1'"):
        decode("lz4/1", b"", {}, size=0)


def test_decode_rejects_a_truncated_payload(delta_case: tuple[Encoded, bytes, bytes]) -> None:
    enc, data, base = delta_case
    for cut in (1, 4, 100, len(enc.payload) // 2, len(enc.payload) - 5):
        with pytest.raises(CodecError):
            decode(enc.codec, enc.payload[:cut], enc.params, size=len(data), base=base)
    with pytest.raises(CodecError):
        decode(enc.codec, b"", enc.params, size=len(data), base=base)


def test_decode_rejects_trailing_bytes(delta_case: tuple[Encoded, bytes, bytes]) -> None:
    enc, data, base = delta_case
    with pytest.raises(CodecError, match="trailing"):
        decode(enc.codec, enc.payload + b"\0", enc.params, size=len(data), base=base)


def test_decode_rejects_a_corrupted_payload(delta_case: tuple[Encoded, bytes, bytes]) -> None:
    enc, data, base = delta_case
    for pos in (len(enc.payload) // 3, len(enc.payload) // 2, len(enc.payload) - 2):
        bad = bytearray(enc.payload)
        bad[pos] ^= 0x40
        with pytest.raises(CodecError):
            decode(enc.codec, bytes(bad), enc.params, size=len(data), base=base)


def test_decode_rejects_a_wrong_size(delta_case: tuple[Encoded, bytes, bytes]) -> None:
    enc, data, base = delta_case
    with pytest.raises(CodecError):
        decode(enc.codec, enc.payload, enc.params, size=len(data) - 4, base=base[:-4])
    alone = encode_standalone(data, itemsize=4, is_float=True)
    for size in (0, len(data) - 4, len(data) + 4):
        with pytest.raises(CodecError, match="declares"):
            decode(alone.codec, alone.payload, alone.params, size=size)
    with pytest.raises(CodecError, match="raw payload"):
        decode(RAW, b"abc", {}, size=4)
    with pytest.raises(CodecError, match="size"):
        decode(RAW, b"abc", {}, size=-1)


def test_decode_rejects_a_missing_or_wrong_base(delta_case: tuple[Encoded, bytes, bytes]) -> None:
    enc, data, base = delta_case
    with pytest.raises(CodecError, match="needs a base"):
        decode(enc.codec, enc.payload, enc.params, size=len(data))
    with pytest.raises(CodecError, match="base of"):
        decode(enc.codec, enc.payload, enc.params, size=len(data), base=base[:-4])


def test_decode_rejects_bad_params(delta_case: tuple[Encoded, bytes, bytes]) -> None:
    enc, data, base = delta_case
    for params in ({}, {"itemsize": 0}, {"itemsize": "4"}, {"itemsize": 1000}):
        with pytest.raises(CodecError, match="itemsize"):
            decode(enc.codec, enc.payload, params, size=len(data), base=base)


def test_decode_refuses_a_zip_bomb_before_inflating_it() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 << 20))
    assert len(bomb) < 10_000
    with pytest.raises(CodecError, match="declares"):
        decode(ZSTD, bomb, {}, size=1024)
    # A frame that does not declare its size is refused too.
    stream = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    unsized = stream.compress(b"\0" * 100_000) + stream.flush()
    with pytest.raises(CodecError):
        decode(ZSTD, unsized, {}, size=100_000)


def test_decode_rejects_garbage() -> None:
    for codec in (ZSTD, PLANES_ZSTD):
        with pytest.raises(CodecError):
            decode(codec, b"not a zstd frame at all", {"itemsize": 4}, size=16)


# --------------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------------


def test_encode_and_decode_are_thread_safe() -> None:
    cases = []
    for seed in range(6):
        w = weights(300_000, seed=seed)
        c = finetune(w, seed=seed + 10)
        cases.append((c.tobytes(), w.tobytes()))
    expected = [encode_delta(c, w, itemsize=4, is_float=True) for c, w in cases]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(12):
                c, w = cases[(i + offset) % len(cases)]
                enc = encode_delta(c, w, itemsize=4, is_float=True)
                assert enc == expected[(i + offset) % len(cases)]
                assert decode(enc.codec, enc.payload, enc.params, size=len(c), base=w) == c
                alone = encode_standalone(c, itemsize=4, is_float=True)
                assert decode(alone.codec, alone.payload, alone.params, size=len(c)) == c
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, 1003])
def test_pack_bits_roundtrips(bits: int, n: int) -> None:
    from mgit.codecs._bits import pack_bits, unpack_bits

    symbols = np.random.default_rng(n).integers(0, 1 << bits, n, dtype=np.uint8)
    packed = pack_bits(symbols, bits)
    assert packed.size == (n * bits + 7) // 8
    assert np.array_equal(unpack_bits(packed, bits, n), symbols)


def test_lossy_bf16_is_never_much_bigger_than_lossless() -> None:
    w = weights(100_000, scale=0.05).astype(np.float64)
    c = w + np.random.default_rng(4).standard_normal(w.size) * 3e-4
    data, base = _to_dtype(c, "BF16"), _to_dtype(w, "BF16")
    lossy = encode_lossy(data, base, dtype="BF16", eps=1e-4)
    lossless = encode_delta(data, base, itemsize=2, is_float=True)
    assert lossy is not None
    assert len(lossy.payload) <= 1.05 * len(lossless.payload)
    assert_within(roundtrip(lossy, data, base), data, "BF16", 1e-4)
