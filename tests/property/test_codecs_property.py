"""Property tests for mgit.codecs: bit-exact round trips, the lossy bound, damage detection."""

from __future__ import annotations

import numpy as np
from helpers import SPECIAL_WORDS, roundtrip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgit.codecs import codec_needs_base, decode, encode_delta, encode_lossy, encode_standalone
from mgit.errors import CodecError

SETTINGS = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ITEMSIZES = st.sampled_from([1, 2, 4, 8])
WIDTHS = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16}


@st.composite
def words(draw: st.DrawFn, itemsize: int, max_n: int = 300) -> np.ndarray:
    """An array of bit patterns: random words, small ints and special values, in runs."""
    word = WORDS.get(itemsize, np.uint8)
    pick = st.one_of(
        st.integers(0, 2 ** (8 * itemsize) - 1),
        st.integers(0, min(300, 2 ** (8 * itemsize) - 1)),
        st.sampled_from(SPECIAL_WORDS[itemsize]),
    )
    values = draw(st.lists(pick, max_size=max_n))
    return np.array(values, dtype=word)


@st.composite
def chunk_and_base(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """A base, and a child that is the base with some elements changed (by a little or entirely)."""
    itemsize = draw(ITEMSIZES)
    base = draw(words(itemsize))
    child = base.copy()
    if base.size:
        idx = draw(st.lists(st.integers(0, base.size - 1), max_size=base.size))
        for i in idx:
            if draw(st.booleans()):
                child[i : i + 1] += child.dtype.type(draw(st.integers(0, 5)))  # wraps
            else:
                child[i] = draw(st.sampled_from(SPECIAL_WORDS[itemsize]))
    return child.tobytes(), base.tobytes(), itemsize


@SETTINGS
@given(
    data=st.binary(max_size=2000),
    itemsize=st.sampled_from([1, 2, 3, 4, 8, 16]),
    is_float=st.booleans(),
)
def test_standalone_roundtrips_any_bytes(data: bytes, itemsize: int, is_float: bool) -> None:
    enc = encode_standalone(data, itemsize=itemsize, is_float=is_float)
    assert not codec_needs_base(enc.codec)
    assert decode(enc.codec, enc.payload, enc.params, size=len(data)) == data


@SETTINGS
@given(case=chunk_and_base(), transform=st.sampled_from(["sub", "xor"]), is_float=st.booleans())
def test_delta_roundtrips_bit_exactly(
    case: tuple[bytes, bytes, int], transform: str, is_float: bool
) -> None:
    data, base, itemsize = case
    enc = encode_delta(data, base, itemsize=itemsize, is_float=is_float, transform=transform)
    assert roundtrip(enc, data, base) == data


@SETTINGS
@given(data=st.binary(max_size=600), base=st.binary(max_size=600), itemsize=ITEMSIZES)
def test_delta_of_unrelated_bytes_roundtrips(data: bytes, base: bytes, itemsize: int) -> None:
    n = min(len(data), len(base))
    data, base = data[:n], base[:n]
    enc = encode_delta(data, base, itemsize=itemsize, is_float=False)
    assert roundtrip(enc, data, base) == data


def _values(raw: bytes, dtype: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if dtype == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
            return u.view(np.float32).astype(np.float64)
        return np.frombuffer(
            raw, dtype={"F64": np.float64, "F32": np.float32, "F16": np.float16}[dtype]
        ).astype(np.float64)


@st.composite
def lossy_case(draw: st.DrawFn) -> tuple[str, bytes, bytes, float]:
    dtype = draw(st.sampled_from(sorted(WIDTHS)))
    width = WIDTHS[dtype]
    word = WORDS[width]
    n = draw(st.integers(0, 200))
    base_vals = draw(st.lists(st.floats(-4, 4, width=32), min_size=n, max_size=n))
    noise = draw(st.lists(st.floats(-0.0078125, 0.0078125, width=32), min_size=n, max_size=n))
    eps = draw(st.sampled_from([1e-6, 1e-4, 1e-3, 0.05]))

    def to_bits(x: np.ndarray) -> np.ndarray:
        if dtype == "BF16":
            u = x.astype(np.float32).view(np.uint32)
            return (
                (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
            ).astype(np.uint16)
        return x.astype({"F64": np.float64, "F32": np.float32, "F16": np.float16}[dtype]).view(word)

    base = to_bits(np.array(base_vals, dtype=np.float64))
    child = to_bits(np.array(base_vals, dtype=np.float64) + np.array(noise, dtype=np.float64))
    # sprinkle special bit patterns into child and base
    specials = draw(
        st.lists(
            st.tuples(
                st.integers(0, max(n - 1, 0)), st.sampled_from(SPECIAL_WORDS[width]), st.booleans()
            ),
            max_size=5 if n else 0,
        )
    )
    for i, v, both in specials:
        child[i] = v
        if both:
            base[i] = v
    return dtype, child.tobytes(), base.tobytes(), eps


@SETTINGS
@given(case=lossy_case())
def test_lossy_never_exceeds_eps(case: tuple[str, bytes, bytes, float]) -> None:
    dtype, data, base, eps = case
    enc = encode_lossy(data, base, dtype=dtype, eps=eps)
    assert enc is not None
    out = decode(enc.codec, enc.payload, enc.params, size=len(data), base=base)
    assert out == decode(
        enc.codec, enc.payload, enc.params, size=len(data), base=base
    )  # deterministic
    assert encode_lossy(data, base, dtype=dtype, eps=eps) == enc
    word = WORDS[WIDTHS[dtype]]
    x, y = _values(data, dtype), _values(out, dtype)
    finite = np.isfinite(x)
    # non-finite values come back bit for bit
    assert np.array_equal(np.frombuffer(out, word)[~finite], np.frombuffer(data, word)[~finite])
    err = np.abs(y[finite] - x[finite])
    assert np.all(err <= eps)
    assert enc.params["max_err"] <= eps
    assert (float(err.max()) if err.size else 0.0) <= enc.params["max_err"]


@SETTINGS
@given(case=chunk_and_base(), flip=st.integers(0, 10**9), bit=st.integers(0, 7))
def test_a_flipped_byte_is_an_error_never_wrong_bytes(
    case: tuple[bytes, bytes, int], flip: int, bit: int
) -> None:
    data, base, itemsize = case
    enc = encode_delta(data, base, itemsize=itemsize, is_float=True)
    if not enc.payload or enc.codec == "raw/1":
        return  # a stored chunk has no redundancy; the object id catches its damage
    damaged = bytearray(enc.payload)
    damaged[flip % len(damaged)] ^= 1 << bit
    try:
        out = decode(
            enc.codec,
            bytes(damaged),
            enc.params,
            size=len(data),
            base=base if codec_needs_base(enc.codec) else None,
        )
    except CodecError:
        return
    assert out == data
