"""Counter-based random numbers for Shapes-World: pure functions of integer keys.

Every random number is the SplitMix64 finaliser (Steele, Lea and Flood, OOPSLA 2014) of a
key built from (seed, split, index, stream). An item therefore never depends on global RNG
state, on which other items were generated with it, on the batch size or on the machine:
numpy's uint64 arithmetic wraps the same way everywhere, and the conversions to floats
below are exact.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SEED_SALT = np.uint64(0x5EED5EED5EED5EED)

# Index and split are packed into one 64-bit word: split in the top 8 bits, index below.
INDEX_BITS = 56
MAX_INDEX = 1 << INDEX_BITS


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64: a bijection on uint64 that scrambles every input bit into every output bit."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def item_keys(seed: int, split_id: int, indices: np.ndarray) -> np.ndarray:
    """One uint64 key per item. (split, index) -> key is injective for a fixed seed.

    The packed word `split << 56 | index` is distinct for every (split, index) pair and the
    map word -> mix64(mix64(word) ^ s) is a bijection, so two different items (of the same
    or of different splits) can never share a key: splits are disjoint by construction.
    """
    words = (np.uint64(split_id) << np.uint64(INDEX_BITS)) | np.asarray(indices, dtype=np.uint64)
    seed_key = mix64(np.array([seed], dtype=np.uint64) ^ _SEED_SALT)
    return mix64(mix64(words) ^ seed_key)


@lru_cache(maxsize=256)
def _stream_keys(stream: int, width: int) -> np.ndarray:
    keys = mix64((np.uint64(stream) << np.uint64(32)) | np.arange(width, dtype=np.uint64))  # (width,)
    keys.flags.writeable = False
    return keys


def _bits(keys: np.ndarray, stream: int, n: int | None) -> np.ndarray:
    """Raw 64-bit words for `stream`: shape (B,) if n is None else (B, n)."""
    z = mix64(keys[:, None] ^ _stream_keys(stream, 1 if n is None else n)[None, :])  # (B, n)
    return z[:, 0] if n is None else z


def uniform(keys: np.ndarray, stream: int, n: int | None = None) -> np.ndarray:
    """float64 in [0, 1), exactly k * 2**-53: shape (B,) or (B, n)."""
    z = _bits(keys, stream, n)
    return (z >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def integers(keys: np.ndarray, stream: int, high: int, n: int | None = None) -> np.ndarray:
    """int64 uniform in [0, high) (Lemire's multiply-shift on the top 32 bits)."""
    if not 0 < high < 2**32:
        raise ValueError(f"high must be in [1, 2**32), got {high}")
    z = _bits(keys, stream, n) >> np.uint64(32)
    return ((z * np.uint64(high)) >> np.uint64(32)).astype(np.int64)


def noise_bank(stream: int, length: int, amplitude: float) -> np.ndarray:
    """A fixed float32 table of triangular noise in [-amplitude, amplitude], same on every machine."""
    keys = mix64(np.arange(length, dtype=np.uint64) ^ mix64(np.array([stream], dtype=np.uint64)))
    u = uniform(keys, 0, 2)  # (length, 2)
    return ((u[:, 0] + u[:, 1] - 1.0) * amplitude).astype(np.float32)
