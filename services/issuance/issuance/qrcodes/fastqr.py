"""A QR encoder specialised to the QR token: byte mode, version 9, level M, mask 4.

Every QR token is exactly 175 ASCII characters (:mod:`shared.tokens.qr`), so every code has
the same version, error level and (fixed) mask. What segno recomputes per code is computed
here once: the function patterns with their format and version information, and the order
in which data modules are placed. Per code there remains the codeword stream, Reed-Solomon
error correction (22 codewords per block, as an integer LFSR), and one permutation and one
XOR over the 53x53 modules as strings and integers. The fixed parts come from segno itself
(its reserved data region and one sample code for the function patterns), and the tests
check the result module for module against segno and decode it with zxing-cpp.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from typing import Any

import segno

VERSION, ERROR, MASK = 9, "m", 4
SIZE = 17 + 4 * VERSION  # 53 modules
TOKEN_LENGTH = 175
DATA_CODEWORDS = 182
BLOCKS = (36, 36, 36, 37, 37)  # ISO/IEC 18004 table 9, version 9-M
ECC_PER_BLOCK = 22

_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _generator(n: int) -> list[int]:
    poly = [1]
    for i in range(n):
        nxt = [0] * (len(poly) + 1)
        for j, coef in enumerate(poly):
            nxt[j] ^= coef
            nxt[j + 1] ^= _gf_mul(coef, _EXP[i])
        poly = nxt
    return poly[1:]


_GEN = _generator(ECC_PER_BLOCK)
# The generator times each possible feedback byte, as one integer of 22 bytes.
_GEN_TIMES = [int.from_bytes(bytes(_gf_mul(f, g) for g in _GEN), "big") for f in range(256)]
_ECC_MASK = (1 << (8 * ECC_PER_BLOCK)) - 1
_TOP = 8 * (ECC_PER_BLOCK - 1)


def _ecc(block: bytes) -> bytes:
    rem = 0
    for byte in block:
        rem = ((rem << 8) & _ECC_MASK) ^ _GEN_TIMES[byte ^ (rem >> _TOP)]
    return rem.to_bytes(ECC_PER_BLOCK, "big")


def _codewords(token: bytes) -> bytes:
    """Data codewords (mode, count, data, terminator, padding), blocks interleaved, then ECC."""
    bits = (0b0100 << 8 | len(token)) << (8 * len(token)) | int.from_bytes(token, "big")
    nbits = 12 + 8 * len(token)
    room = 8 * DATA_CODEWORDS - nbits
    term = min(4, room)
    bits <<= term
    nbits += term
    pad = -nbits % 8
    bits <<= pad
    nbits += pad
    data = bits.to_bytes(nbits // 8, "big")
    data += (b"\xec\x11" * DATA_CODEWORDS)[: DATA_CODEWORDS - len(data)]
    blocks, at = [], 0
    for length in BLOCKS:
        blocks.append(data[at : at + length])
        at += length
    out = bytearray()
    for i in range(max(BLOCKS)):
        out.extend(b[i] for b in blocks if i < len(b))
    eccs = [_ecc(b) for b in blocks]
    for i in range(ECC_PER_BLOCK):
        out.extend(e[i] for e in eccs)
    return bytes(out)


class _Template:
    """What is the same in every code: function modules, data order, mask."""

    def __init__(self) -> None:
        encoder: Any = importlib.import_module("segno.encoder")

        # The data region as segno reserves it (cells still 0x2 after the function patterns).
        region = encoder.make_matrix(SIZE, SIZE)
        encoder.add_finder_patterns(region, SIZE, SIZE)
        encoder.add_alignment_patterns(region, SIZE, SIZE)
        # Placement order (ISO/IEC 18004 7.7.3): two-module columns from the right,
        # alternately upwards and downwards, skipping the vertical timing pattern.
        order: list[tuple[int, int]] = []
        for right in range(SIZE - 1, 0, -2):
            if right <= 6:
                right -= 1
            upwards = (right & 2) == 0
            for vertical in range(SIZE):
                for j in (right, right - 1):
                    up = upwards ^ (j < 6)
                    i = (SIZE - 1 - vertical) if up else vertical
                    if region[i][j] == 0x2:
                        order.append((i, j))
        if len(order) != 8 * (DATA_CODEWORDS + ECC_PER_BLOCK * len(BLOCKS)):
            raise RuntimeError("unexpected number of data modules")
        sample = segno.make(_random_token(), error=ERROR, mode="byte", mask=MASK, boost_error=False)
        if sample.version != VERSION:
            raise RuntimeError("QR tokens no longer fit version 9-M")
        index = {pos: i for i, pos in enumerate(order)}
        light, dark = len(order), len(order) + 1
        self.perm = [
            index.get((r, c), dark if sample.matrix[r][c] else light)
            for r in range(SIZE)
            for c in range(SIZE)
        ]
        mask = "".join(
            "1" if (r, c) in index and ((r // 2 + c // 3) % 2 == 0) else "0"
            for r in range(SIZE)
            for c in range(SIZE)
        )
        self.mask = int(mask, 2)
        self.nbits = len(order)


def _random_token() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    return "".join(alphabet[b % len(alphabet)] for b in os.urandom(TOKEN_LENGTH))


@lru_cache(maxsize=1)
def _template() -> _Template:
    return _Template()


def fits(token: str) -> bool:
    """True if this encoder handles ``token`` (175 ASCII characters)."""
    return len(token) == TOKEN_LENGTH and token.isascii()


def rows(token: str) -> list[str]:
    """The 53 module rows of ``token``'s code, each a string of '1' (dark) and '0' (light)."""
    t = _template()
    bits = format(int.from_bytes(_codewords(token.encode("ascii")), "big"), f"0{t.nbits}b")
    source = bits + "01"
    modules = "".join(map(source.__getitem__, t.perm))
    masked = format(int(modules, 2) ^ t.mask, f"0{SIZE * SIZE}b")
    return [masked[i : i + SIZE] for i in range(0, SIZE * SIZE, SIZE)]
