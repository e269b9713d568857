"""QR images of QR tokens: segno with a fixed mask, and a lean PNG writer.

segno's automatic mask choice evaluates all eight masks and is most of its encoding cost
(performance.md: 24 ms against 5 ms); every mask is valid per ISO/IEC 18004 and decoders
read the mask from the format information, so one fixed mask costs nothing in readability
(the tests decode every image with zxing-cpp). segno's PNG writer is generic; the one here
writes a 1-bit grayscale PNG straight from the module matrix with bytes.translate/replace,
in C, instead of a Python loop per pixel.
"""

from __future__ import annotations

import io
import struct
import zlib

import segno

MASK = 4
BORDER = 4  # the quiet zone ISO/IEC 18004 asks for
_LIGHT_DARK = bytes.maketrans(b"\x00\x01", b"ab")


def encode(token: str) -> segno.QRCode:
    """The QR symbol of ``token`` at error level M, byte mode, mask fixed."""
    return segno.make(token, error="m", mode="byte", mask=MASK, boost_error=False, micro=False)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bytes(token: str, *, scale: int = 4) -> bytes:
    """A 1-bit grayscale PNG of the QR code of ``token`` (``scale`` pixels per module)."""
    matrix = encode(token).matrix
    modules = len(matrix) + 2 * BORDER
    size = modules * scale
    light, dark = b"1" * scale, b"0" * scale
    row_bytes = (size + 7) // 8
    pad = row_bytes * 8 - size
    blank = b"\x00" + b"\xff" * row_bytes
    quiet = b"a" * BORDER
    lines = [blank * (BORDER * scale)]
    for row in matrix:
        # 0 = light module = white pixel (bit 1) in a grayscale PNG; 1 = dark module.
        marks = quiet + bytes(row).translate(_LIGHT_DARK) + quiet
        bits = marks.replace(b"a", light).replace(b"b", dark) + b"1" * pad
        line = b"\x00" + int(bits, 2).to_bytes(row_bytes, "big")
        lines.append(line * scale)
    lines.append(blank * (BORDER * scale))
    raw = b"".join(lines)
    header = struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def svg_text(token: str, *, scale: int = 4) -> str:
    """An SVG document of the QR code of ``token`` (segno's writer, one path)."""
    out = io.BytesIO()
    encode(token).save(out, kind="svg", scale=scale, border=BORDER, xmldecl=False, light="#fff")
    return out.getvalue().decode()
