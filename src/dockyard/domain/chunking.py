"""What a vector store makes of a file: its text, cut into overlapping chunks (pure; no I/O).

OpenAI's `chunking_strategy` counts tokens of its own tokenizer; dockyard embeds with whatever deployment
is configured, whose tokenizer it does not know, so a token is taken as four characters (the usual
figure for English) and chunks end at whitespace. The `static` strategy's rules are OpenAI's:
`max_chunk_size_tokens` 100-4096, `chunk_overlap_tokens` at most half of it; `auto` is 800 / 400.

Text comes from UTF-8 (or UTF-16 with a byte-order mark) files whose extension says text, code or
data, and from PDFs through pypdf. Anything else fails with a message naming what is supported, as
does a file whose text runs past `MAX_TEXT_CHARS` (a decompression bomb inside a PDF stops there).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.domain.errors import BadRequest

CHARS_PER_TOKEN = 4
AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400
MIN_CHUNK_TOKENS = 100
MAX_CHUNK_TOKENS = 4096
# About 1,250,000 tokens of text, a little more than OpenAI's 5,000,000-token file limit allows per
# chunk count at 4 chars: past it a file is refused rather than indexed part-way.
MAX_TEXT_CHARS = 20_000_000
MAX_PDF_PAGES = 2_000

TEXT_EXTENSIONS = frozenset({
    "txt", "md", "markdown", "rst", "csv", "tsv", "json", "jsonl", "yaml", "yml", "toml", "ini", "cfg", "xml",
    "html", "htm", "css", "tex", "log", "py", "js", "ts", "tsx", "jsx", "java", "c", "h", "cc", "cpp", "hpp",
    "cs", "go", "rs", "rb", "php", "sh", "bash", "sql", "kt", "swift", "scala", "r", "pl", "lua", "dart",
})
PDF_EXTENSION = "pdf"


class UnsupportedFile(ValueError):
    """A file a vector store cannot take in; the message says why and what would work."""


@dataclass(frozen=True)
class ChunkingStrategy:
    max_tokens: int = AUTO_MAX_TOKENS
    overlap_tokens: int = AUTO_OVERLAP_TOKENS

    def to_wire(self) -> dict[str, Any]:
        return {"type": "static", "static": {"max_chunk_size_tokens": self.max_tokens,
                                             "chunk_overlap_tokens": self.overlap_tokens}}


def parse_chunking_strategy(value: Any) -> ChunkingStrategy:
    """`{"type": "auto"}`, `{"type": "static", "static": {...}}`, or nothing (auto), checked as OpenAI checks it."""
    if value is None:
        return ChunkingStrategy()
    if not isinstance(value, Mapping) or value.get("type") not in ("auto", "static"):
        raise BadRequest("chunking_strategy must be {'type': 'auto'} or {'type': 'static', 'static': "
                         "{'max_chunk_size_tokens': N, 'chunk_overlap_tokens': M}}.",
                         code="InvalidChunkingStrategy", param="chunking_strategy")
    if value["type"] == "auto":
        return ChunkingStrategy()
    static = value.get("static")
    if not isinstance(static, Mapping):
        raise BadRequest("A static chunking_strategy needs 'static': {'max_chunk_size_tokens', "
                         "'chunk_overlap_tokens'}.", code="InvalidChunkingStrategy", param="chunking_strategy.static")
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    if type(size) is not int or not MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS:
        raise BadRequest(f"max_chunk_size_tokens must be an integer from {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS}.",
                         code="InvalidChunkingStrategy", param="chunking_strategy.static.max_chunk_size_tokens")
    if type(overlap) is not int or not 0 <= overlap <= size // 2:
        raise BadRequest("chunk_overlap_tokens must be an integer from 0 to half of max_chunk_size_tokens.",
                         code="InvalidChunkingStrategy", param="chunking_strategy.static.chunk_overlap_tokens")
    return ChunkingStrategy(size, overlap)


def extension(filename: str) -> str:
    return filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


def extract_text(data: bytes, filename: str) -> str:
    """The text of a file, by its extension; UnsupportedFile when there is none to take."""
    kind = extension(filename)
    if kind == PDF_EXTENSION:
        return _pdf_text(data)
    if kind not in TEXT_EXTENSIONS:
        supported = ", ".join(sorted(TEXT_EXTENSIONS | {PDF_EXTENSION}))
        raise UnsupportedFile(f"{filename!r} is not a supported file type for file search (supported extensions: "
                              f"{supported}).")
    text = _decode(data, filename)
    if len(text) > MAX_TEXT_CHARS:
        raise _too_long(filename)
    return text


def _decode(data: bytes, filename: str) -> str:
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsupportedFile(f"{filename!r} is not UTF-8 text (undecodable byte at offset {exc.start}); file "
                              "search takes text, code and PDF files.") from None
    if "\x00" in text:
        raise UnsupportedFile(f"{filename!r} holds NUL characters: it is binary data, not text.")
    return text


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if len(reader.pages) > MAX_PDF_PAGES:
            raise UnsupportedFile(f"The PDF has {len(reader.pages)} pages; file search reads at most {MAX_PDF_PAGES}.")
        parts: list[str] = []
        total = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            total += len(text)
            if total > MAX_TEXT_CHARS:
                raise _too_long("The PDF")
            parts.append(text)
    except UnsupportedFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            MemoryError) as exc:
        raise UnsupportedFile(f"The PDF cannot be read ({type(exc).__name__}: {str(exc)[:200]}).") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise UnsupportedFile("The PDF has no extractable text (scanned images need OCR first).")
    return text


def _too_long(what: str) -> UnsupportedFile:
    return UnsupportedFile(f"{what} has more than {MAX_TEXT_CHARS} characters of text; split it into smaller files.")


_WORD = re.compile(r"\S+\s*")


def chunk_text(text: str, strategy: ChunkingStrategy = ChunkingStrategy()) -> list[str]:
    """Overlapping chunks of about `max_tokens` tokens, each starting `max - overlap` tokens after the last.

    Chunks end between words; a single word longer than a chunk is cut. Whitespace-only text has none.
    """
    limit = strategy.max_tokens * CHARS_PER_TOKEN
    step = (strategy.max_tokens - strategy.overlap_tokens) * CHARS_PER_TOKEN
    words: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group()
        while len(word) > limit:
            words.append(word[:limit])
            word = word[limit:]
        words.append(word)
    # Start offsets (in characters) of every word, to find where each chunk begins and ends.
    starts: list[int] = []
    offset = 0
    for word in words:
        starts.append(offset)
        offset += len(word)
    chunks: list[str] = []
    first = 0
    while first < len(words):
        last = first
        size = 0
        while last < len(words) and size + len(words[last]) <= limit:
            size += len(words[last])
            last += 1
        last = max(last, first + 1)
        chunk = "".join(words[first:last]).strip()
        if chunk:
            chunks.append(chunk)
        if last >= len(words):
            break
        # The next chunk starts `step` characters on (at a word), always after this one's first word.
        target = starts[first] + max(step, 1)
        following = first + 1
        while following < last and starts[following] < target:
            following += 1
        first = following
    return chunks
