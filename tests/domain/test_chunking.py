"""Text extraction and chunking for vector stores: exact chunks, OpenAI's strategy rules, refusals."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfWriter

from dockyard.domain.chunking import (
    CHARS_PER_TOKEN,
    ChunkingStrategy,
    UnsupportedFile,
    chunk_text,
    extract_text,
    parse_chunking_strategy,
)
from dockyard.domain.errors import BadRequest


def test_auto_and_static_strategies_follow_openais_rules() -> None:
    assert parse_chunking_strategy(None) == ChunkingStrategy(800, 400)
    assert parse_chunking_strategy({"type": "auto"}) == ChunkingStrategy(800, 400)
    static = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50}}
    assert parse_chunking_strategy(static) == ChunkingStrategy(100, 50)
    assert ChunkingStrategy(100, 50).to_wire() == static
    for bad in ({"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}},
                {"type": "static", "static": {"max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}},
                {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 51}},
                {"type": "other"}, "auto"):
        with pytest.raises(BadRequest) as caught:
            parse_chunking_strategy(bad)
        assert caught.value.code == "InvalidChunkingStrategy"


def test_chunks_overlap_by_the_strategy_and_end_between_words() -> None:
    words = [f"w{i:03d}" for i in range(300)]  # 5 characters each with the space
    text = " ".join(words)
    strategy = ChunkingStrategy(100, 50)  # 400 characters a chunk, a new one every 200
    chunks = chunk_text(text, strategy)
    assert all(len(c) <= 100 * CHARS_PER_TOKEN for c in chunks)
    assert chunks[0].split() == words[:80]
    assert chunks[1].split() == words[40:120]  # starts 200 characters (40 words) on: 40 words overlap
    assert chunks[-1].split()[-1] == "w299"
    assert len(chunks) == 7
    assert chunk_text("   \n ", strategy) == []
    assert chunk_text("short text", strategy) == ["short text"]


def test_a_word_longer_than_a_chunk_is_cut() -> None:
    chunks = chunk_text("x" * 1000, ChunkingStrategy(100, 0))
    assert [len(c) for c in chunks] == [400, 400, 200]


def test_text_files_by_extension_and_refusals() -> None:
    assert extract_text("héllo\n".encode(), "a.md") == "héllo\n"
    assert extract_text("hi".encode("utf-16"), "a.txt") == "hi"
    assert extract_text(b'{"a": 1}', "data.JSON") == '{"a": 1}'
    with pytest.raises(UnsupportedFile, match="not a supported file type"):
        extract_text(b"MZ\x90\x00", "tool.exe")
    with pytest.raises(UnsupportedFile, match="not UTF-8"):
        extract_text(b"\xff\xd8\xff\xe0 jpeg bytes", "photo.txt")
    with pytest.raises(UnsupportedFile, match="NUL"):
        extract_text(b"abc\x00def", "a.txt")


def test_pdfs_are_read_and_broken_ones_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(UnsupportedFile, match="no extractable text"):
        extract_text(buffer.getvalue(), "blank.pdf")
    with pytest.raises(UnsupportedFile, match="cannot be read"):
        extract_text(b"%PDF-1.4 garbage that is no PDF", "broken.pdf")


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF that shows `text` in Helvetica (written by hand: pypdf writes no text)."""
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
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


def test_a_pdfs_text_is_extracted() -> None:
    assert extract_text(pdf_with_text("The quay opens at dawn"), "notes.pdf").strip() == "The quay opens at dawn"
