"""HyperLogLog distinct counts in numpy: mergeable across days (register-wise max).

2**12 = 4,096 one-byte registers (4 KiB a feature and day, ~0.4 KiB compressed for a
feature of few values): the standard error is 1.04 / sqrt(4096) = 1.6% at every
cardinality with Ertl's estimator ("New cardinality estimation algorithms for
HyperLogLog sketches", 2017, algorithm 6), which needs no bias-correction table and
stays unbiased through the small-range region where the original estimator switches
to linear counting. 2**14 registers would give 0.8% at 16 KiB a feature and day.

Values are hashed to 64 bits: numbers by their bit pattern through the splitmix64
finalizer (a bijection with full avalanche, vectorized), strings by murmur3's 64-bit
hash (mmh3, already a dependency for Feast's Redis format), once per distinct value.
"""

from __future__ import annotations

import base64
import math
import zlib

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

P = 12
M = 1 << P
Q = 64 - P  # bits of the hash left for the rank
STANDARD_ERROR = 1.04 / math.sqrt(M)
_LOW_MASK = np.uint64((1 << Q) - 1)


def splitmix64(bits: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer of uint64 values (wrapping arithmetic)."""
    x = bits.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def hash_array(values: pa.Array) -> np.ndarray:
    """uint64 hashes of the non-null values of an Arrow array (numbers, bools,
    timestamps, strings, binary)."""
    arr = values.drop_null()
    kind = arr.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        uniques = pc.unique(arr).to_pylist()
        return np.fromiter((mmh3.hash64(v, signed=False)[0] for v in uniques), np.uint64, len(uniques))
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        floats = arr.cast(pa.float64()).to_numpy(zero_copy_only=False) + 0.0  # -0.0 -> 0.0
        return splitmix64(floats.view(np.uint64))
    if pa.types.is_boolean(kind) or pa.types.is_timestamp(kind) or pa.types.is_integer(kind):
        ints = arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return splitmix64(ints.view(np.uint64))
    raise TypeError(f"no hash for Arrow type {kind}")


class HyperLogLog:
    """Registers of rank maxima; `add` hashes, `merge` takes the maximum."""

    __slots__ = ("registers",)

    def __init__(self, registers: np.ndarray | None = None) -> None:
        self.registers = np.zeros(M, np.uint8) if registers is None else registers

    def add_hashes(self, hashes: np.ndarray) -> None:
        if hashes.size == 0:
            return
        index = (hashes >> np.uint64(Q)).astype(np.intp)
        low = hashes & _LOW_MASK
        # Rank = leading zeros of the Q low bits + 1 (Q + 1 for all zeros). frexp's
        # exponent is the bit length, exact: Q = 52 bits fit a float64's mantissa.
        _, bit_length = np.frexp(low.astype(np.float64))
        rank = (Q + 1 - bit_length).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def add(self, values: pa.Array) -> None:
        self.add_hashes(hash_array(values))

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        return HyperLogLog(np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        """Ertl's improved raw estimator over the register histogram."""
        counts = np.bincount(self.registers, minlength=Q + 2).astype(np.float64)
        z = M * _tau(1.0 - counts[Q + 1] / M)
        for k in range(Q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += M * _sigma(counts[0] / M)
        return M * M / (2.0 * math.log(2.0)) / z if z != math.inf else 0.0

    def to_text(self) -> str:
        return base64.b64encode(zlib.compress(self.registers.tobytes(), 6)).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> HyperLogLog:
        raw = zlib.decompress(base64.b64decode(text))
        if len(raw) != M:
            raise ValueError(f"a HyperLogLog of {len(raw)} registers, not {M}")
        return cls(np.frombuffer(raw, np.uint8).copy())


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        before = z
        z += x * y
        y += y
        if z == before:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        before = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == before:
            return z / 3.0
