"""QR images of QR tokens: segno with a fixed mask, and a lean PNG writer.

segno's automatic mask choice evaluates all eight masks and is most of its encoding cost
(performance.md: 24 ms against 5 ms); every mask is valid per ISO/IEC 18004 and decoders
read the mask from the format information, so one fixed mask costs nothing in readability
(the tests decode every image with zxing-cpp). segno's PNG writer is generic; the one here
writes a 1-bit grayscale PNG straight from the module matrix with bytes.translate/replace,
in C, instead of a Python loop per pixel. The modules of QR tokens come from
:mod:`issuance.qrcodes.fastqr` (segno's own matrix for anything else).
"""

from __future__ import annotations

import io
import struct
import zlib

import segno

from issuance.qrcodes import fastqr

MASK = 4
BORDER = 4  # the quiet zone ISO/IEC 18004 asks for


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


def module_rows(token: str) -> list[str]:
    """The module rows of ``token``'s code as strings of '1' (dark) and '0' (light)."""
    if fastqr.fits(token):
        return fastqr.rows(token)
    return ["".join("1" if m else "0" for m in row) for row in encode(token).matrix]


def png_bytes(token: str, *, scale: int = 4) -> bytes:
    """A 1-bit grayscale PNG of the QR code of ``token`` (``scale`` pixels per module)."""
    rows = module_rows(token)
    size = (len(rows) + 2 * BORDER) * scale
    light, dark = "1" * scale, "0" * scale  # a light module is a white pixel (bit 1)
    row_bytes = (size + 7) // 8
    pad = "1" * (row_bytes * 8 - size)
    blank = b"\x00" + b"\xff" * row_bytes
    quiet = "0" * BORDER
    lines = [blank * (BORDER * scale)]
    for row in rows:
        bits = (quiet + row + quiet).replace("0", "a").replace("1", dark).replace("a", light)
        lines.append((b"\x00" + int(bits + pad, 2).to_bytes(row_bytes, "big")) * scale)
    lines.append(blank * (BORDER * scale))
    header = struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(lines), 6))
        + _chunk(b"IEND", b"")
    )


def svg_text(token: str, *, scale: int = 4) -> str:
    """An SVG document of the QR code of ``token`` (segno's writer, one path)."""
    out = io.BytesIO()
    encode(token).save(out, kind="svg", scale=scale, border=BORDER, xmldecl=False, light="#fff")
    return out.getvalue().decode()
