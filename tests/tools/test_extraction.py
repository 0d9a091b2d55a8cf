"""Text extraction in its child process: a decompression bomb costs the child, with a clear reason."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest

from dockyard.domain.chunking import UnsupportedFile
from dockyard.tools.extraction import extract


def inflating(prefix: bytes, filler: bytes, size: int, suffix: bytes) -> bytes:
    """Deflate data of `size` bytes of `filler` between prefix and suffix, built without holding it."""
    packer = zlib.compressobj(6)
    block = filler * (1 << 20)
    parts = [packer.compress(prefix)]
    parts += [packer.compress(block) for _ in range(size >> 20)]
    parts += [packer.compress(suffix), packer.flush()]
    return b"".join(parts)


def pdf(content: bytes, *, compress: bool = False, deflated: bytes | None = None) -> bytes:
    stream = deflated if deflated is not None else zlib.compress(content, 9) if compress else content
    compress = compress or deflated is not None
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d%s >>\nstream\n" % (len(stream), b" /Filter /FlateDecode" if compress else b"")
               + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_text_comes_back_from_the_child(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf(b"BT /F1 12 Tf 20 100 Td (Harbour dues are paid in June) Tj ET", compress=True))
    assert asyncio.run(extract(path, "doc.pdf")).strip() == "Harbour dues are paid in June"
    text = tmp_path / "notes.md"
    text.write_text("ünïcode notes\n")
    assert asyncio.run(extract(text, "notes.md")) == "ünïcode notes\n"


def test_a_decompression_bomb_is_refused_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"  # a few hundred kilobytes that inflate to 96 MiB, past pypdf's 75 MB limit
    path.write_bytes(pdf(b"", deflated=inflating(b"BT /F1 12 Tf 20 100 Td (", b"A", 96 << 20, b") Tj ET")))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(UnsupportedFile, match="cannot be read"):
        asyncio.run(extract(path, "bomb.pdf"))


def test_a_file_it_does_not_take_says_why(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"\x00\x01")
    with pytest.raises(UnsupportedFile, match="not a supported file type"):
        asyncio.run(extract(path, "a.bin"))
