"""Text extraction in a child process: a hostile PDF (a decompression bomb, a parser loop) costs that
process, never dockyard. The child has an address-space limit and a deadline; it prints the text on
stdout, or a one-line reason on stderr with exit code 3 when the file is not one file search takes.
"""

from __future__ import annotations

import asyncio
import resource
import sys
from pathlib import Path

from dockyard.domain.chunking import MAX_TEXT_CHARS, UnsupportedFile, extract_text

# Address space for the child: pypdf on a large PDF needs a few hundred MB; a bomb hits this first.
MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
TIMEOUT_SECONDS = 120.0
_UNSUPPORTED = 3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


async def extract(path: Path, filename: str, timeout: float = TIMEOUT_SECONDS) -> str:
    """The file's text; UnsupportedFile with the reason when there is none to take."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dockyard.tools.extraction", str(path), filename,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_limit_memory, limit=MAX_TEXT_CHARS * 4 + 1024)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise UnsupportedFile(f"Reading the text of {filename!r} took longer than {timeout:g}s.") from None
    if process.returncode == _UNSUPPORTED:
        raise UnsupportedFile(err.decode("utf-8", "replace").strip()[:500])
    if process.returncode != 0:
        reason = "it ran out of memory" if b"MemoryError" in err else f"exit code {process.returncode}"
        raise UnsupportedFile(f"The text of {filename!r} could not be read ({reason}).")
    return out.decode("utf-8")


def main(argv: list[str]) -> int:
    path, filename = argv
    try:
        text = extract_text(Path(path).read_bytes(), filename)
    except UnsupportedFile as exc:
        print(str(exc), file=sys.stderr)
        return _UNSUPPORTED
    sys.stdout.buffer.write(text.encode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
