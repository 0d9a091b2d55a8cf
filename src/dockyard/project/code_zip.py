"""The zip `dockyard deploy` uploads for a code-based agent: the project folder, less what must not travel.

Foundry (and dockyard) dedupe code-based versions by the zip's sha256 (`x-ms-code-zip-sha256`): the same code
and definition give back the version that already exists. So the zip is deterministic — entries sorted by
path, one fixed timestamp, permissions reduced to "executable or not", the same compression every time —
and the same tree always gives the same bytes, whatever the files' mtimes or the order the disk lists them in.

What is left out:
- always: version control and local state (`.git`, `.venv` and other virtual environments, `__pycache__`,
  `*.pyc`, `.dockyard`, test and type-checker caches) and files that hold secrets by convention (`.env`,
  `.env.*`, azd's `.azure/` environments), which are never meant to leave the machine;
- the patterns of `.dockerignore` (or `.containerignore`) and `.agentignore`, in that order, one pattern a
  line, `#` comments, `!pattern` to take something back in; the last pattern that matches decides. A pattern
  matches a path relative to the project, any folder above it (so `docs` leaves out everything under docs/),
  and — when it has no slash — any single name in the path (`*.log` anywhere), the way `.gitignore` reads it;
- symbolic links that lead out of the project (the service would refuse the zip); links inside it are stored
  as the files they point to.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Foundry's limit for an uploaded code zip (azure-ai-projects' create_version_from_code: "max 250 MB").
MAX_ZIP_BYTES = 250 * 1024 * 1024
IGNORE_FILES = (".dockerignore", ".containerignore", ".agentignore")
ALWAYS_LEFT_OUT = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", "*.pyc", "*.pyo", ".dockyard",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".env", ".env.*", ".azure", ".DS_Store",
)
# 1980-01-01 00:00:00, the earliest time a zip can hold: nothing about the build machine's clock gets in.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 6


class CodeZipError(ValueError):
    """The project cannot be zipped for upload (too big, or nothing to send); the message says what to do."""


@dataclass(frozen=True)
class Pattern:
    text: str
    negated: bool

    def matches(self, relative: str) -> bool:
        parts = relative.split("/")
        pattern = self.text
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            return True
        if "**" in pattern:
            # `**/name` and `dir/**` as .dockerignore writes them: any number of folders, none included.
            bare = pattern.replace("**/", "").replace("/**", "")
            if bare and any(fnmatch.fnmatchcase("/".join(parts[:i]), bare) or fnmatch.fnmatchcase(parts[i - 1], bare)
                            for i in range(1, len(parts) + 1)):
                return True
        return "/" not in pattern and any(fnmatch.fnmatchcase(part, pattern) for part in parts)


@dataclass(frozen=True)
class CodeZip:
    path: Path
    sha256: str  # hex digest of the zip's bytes: what the x-ms-code-zip-sha256 header carries
    files: tuple[str, ...]  # the entries, in the zip's order
    size: int  # bytes of the zip
    content_bytes: int  # bytes of the files before compression
    skipped_links: tuple[str, ...] = ()  # symbolic links leading out of the project, left out


def ignore_patterns(root: Path) -> list[Pattern]:
    """The rules, in the order they apply: dockyard's fixed list, then each ignore file's lines."""
    patterns = [Pattern(text, negated=False) for text in ALWAYS_LEFT_OUT]
    for name in IGNORE_FILES:
        path = root / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            text = line[1:].strip() if negated else line
            text = text.strip("/")
            if text.startswith("./"):
                text = text[2:]
            if text:
                patterns.append(Pattern(text, negated))
    return patterns


def left_out(relative: str, patterns: list[Pattern]) -> bool:
    """Whether the last pattern that matches `relative` leaves it out. The fixed list cannot be undone:
    a `!.env` in an ignore file does not put secrets into the upload."""
    decision = False
    for pattern in patterns:
        if pattern.matches(relative):
            if not pattern.negated and pattern.text in ALWAYS_LEFT_OUT:
                return True
            decision = not pattern.negated
    return decision


def project_files(root: Path) -> tuple[list[str], list[str]]:
    """The files to upload (relative posix paths, sorted) and the links left out because they lead out."""
    root = root.resolve()
    patterns = ignore_patterns(root)
    takes_back = any(p.negated for p in patterns)
    files: list[str] = []
    outside: list[str] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        relative_folder = base.relative_to(root).as_posix()
        prefix = "" if relative_folder == "." else relative_folder + "/"
        kept_dirs = []
        for name in sorted(dirs):
            relative = prefix + name
            path = base / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    outside.append(relative)
                continue  # a link to a folder inside the project: its files are zipped where they are
            # A folder left out is not walked, unless a later `!pattern` may take something under it back.
            if left_out(relative, patterns) and not (takes_back and not _fixed(relative)):
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(names):
            relative = prefix + name
            path = base / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    outside.append(relative)
                    continue
            elif not path.is_file():
                continue  # sockets, fifos
            if not left_out(relative, patterns):
                files.append(relative)
    return sorted(files), sorted(outside)


def build_zip(root: Path, destination: Path) -> CodeZip:
    """Zip the project at `root` into `destination`, deterministically; CodeZipError past Foundry's limit."""
    root = root.resolve()
    files, outside = project_files(root)
    if not files:
        raise CodeZipError(f"{root} has nothing to upload: every file is left out by the ignore rules.")
    content_bytes = 0
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for relative in files:
            path = root / relative
            data = path.read_bytes()
            content_bytes += len(data)
            info = zipfile.ZipInfo(relative, date_time=FIXED_TIME)
            info.create_system = 3  # unix: the mode below is read by unzip and by dockyard's intake
            info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
    size = destination.stat().st_size
    if size > MAX_ZIP_BYTES:
        destination.unlink()
        raise CodeZipError(
            f"the code zip is {size / 1048576:.0f} MB; Foundry takes at most {MAX_ZIP_BYTES // 1048576} MB.",
        )
    digest = hashlib.sha256()
    with destination.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return CodeZip(destination, digest.hexdigest(), tuple(files), size, content_bytes, tuple(outside))


def _fixed(relative: str) -> bool:
    return any(Pattern(text, False).matches(relative) for text in ALWAYS_LEFT_OUT)
