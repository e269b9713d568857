"""The specialised QR encoder against segno, the Reed-Solomon equations and zxing-cpp."""

from __future__ import annotations

import io
import os

import zxingcpp
from PIL import Image

from issuance.qrcodes import fastqr, render

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def random_token() -> str:
    parts = ["".join(ALPHABET[b % 64] for b in os.urandom(n)) for n in (56, 31, 86)]
    return ".".join(parts)


def codewords_from(rows: list[str]) -> bytes:
    """Read the codeword stream back out of a symbol (unmask, follow the placement order)."""
    t = fastqr._template()
    flat = "".join(rows)
    mask = format(t.mask, f"0{fastqr.SIZE**2}b")
    where = {src: k for k, src in enumerate(t.perm) if src < t.nbits}
    bits = "".join(str(int(flat[where[i]]) ^ int(mask[where[i]])) for i in range(t.nbits))
    return int(bits, 2).to_bytes(t.nbits // 8, "big")


def syndromes_zero(block: bytes) -> bool:
    """A Reed-Solomon codeword evaluates to zero at alpha^0 .. alpha^(n-1)."""
    exp, log = fastqr._EXP, fastqr._LOG
    for i in range(fastqr.ECC_PER_BLOCK):
        acc = 0
        for byte in block:
            acc = (exp[log[acc] + i] if acc else 0) ^ byte
        if acc:
            return False
    return True


def test_function_patterns_match_segno_and_only_data_modules_differ() -> None:
    for _ in range(10):
        token = random_token()
        mine = fastqr.rows(token)
        ref = ["".join("1" if m else "0" for m in row) for row in render.encode(token).matrix]
        t = fastqr._template()
        for k, src in enumerate(t.perm):
            if src >= t.nbits:  # a function module: finder, timing, alignment, format, version
                assert (
                    mine[k // fastqr.SIZE][k % fastqr.SIZE]
                    == ref[k // fastqr.SIZE][k % fastqr.SIZE]
                )


def test_codewords_are_the_data_and_valid_reed_solomon_blocks() -> None:
    token = random_token()
    stream = codewords_from(fastqr.rows(token))
    blocks: list[bytearray] = [bytearray() for _ in fastqr.BLOCKS]
    at = 0
    for i in range(max(fastqr.BLOCKS)):
        for b, length in enumerate(fastqr.BLOCKS):
            if i < length:
                blocks[b].append(stream[at])
                at += 1
    for _ in range(fastqr.ECC_PER_BLOCK):
        for b in range(len(blocks)):
            blocks[b].append(stream[at])
            at += 1
    assert all(syndromes_zero(bytes(b)) for b in blocks)
    data = b"".join(bytes(b[: fastqr.BLOCKS[i]]) for i, b in enumerate(blocks))
    # Mode 0100, count 175 (8 bits), the token itself.
    bits = int.from_bytes(data, "big")
    total = 8 * len(data)
    assert bits >> (total - 4) == 0b0100
    assert (bits >> (total - 12)) & 0xFF == 175
    body = (bits >> (total - 12 - 1400)) & ((1 << 1400) - 1)
    assert body.to_bytes(175, "big") == token.encode()


def test_every_code_decodes_with_zxing() -> None:
    for _ in range(40):
        token = random_token()
        result = zxingcpp.read_barcode(Image.open(io.BytesIO(render.png_bytes(token))))
        assert result is not None
        assert result.text == token


def test_other_lengths_fall_back_to_segno() -> None:
    assert not fastqr.fits("short")
    result = zxingcpp.read_barcode(Image.open(io.BytesIO(render.png_bytes("short"))))
    assert result is not None
    assert result.text == "short"
