"""Session files: the rules for paths and sizes, apart from where the bytes live.

Foundry resolves every `path` of the session files API relative to the session's home directory, and
refuses uploads over 50 MB. In dockyard that home is the root of the session's volume, which the
session's container sees at `/session`. A path given to the API must stay inside it: relative, no
`..`, nothing a shell or a filesystem would read differently from how it looks. Symbolic links made
by the agent are the backend's to contain (it resolves them inside the volume or refuses them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from dockyard.domain.errors import BadRequest, Conflict, NotFound, PayloadTooLarge

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # Foundry's limit (SDK docstring; 413 beyond it)
_MAX_PATH_CHARS = 4096
_MAX_NAME_BYTES = 255


class InvalidSessionFilePath(BadRequest):
    code = "InvalidSessionFilePath"


class SessionFileNotFound(NotFound):
    code = "SessionFileNotFound"


class SessionDirectoryNotEmpty(Conflict):
    code = "DirectoryNotEmpty"


class SessionFileTooLarge(PayloadTooLarge):
    code = "SessionFileTooLarge"


@dataclass(frozen=True)
class SessionPath:
    """A validated path inside a session's home; `parts` is empty for the home itself."""

    parts: tuple[str, ...]

    @property
    def is_root(self) -> bool:
        return not self.parts

    @property
    def relative(self) -> str:
        """As the API answers it: relative to the home, '' for the home itself."""
        return "/".join(self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def parent(self) -> SessionPath:
        return SessionPath(self.parts[:-1])

    def ancestors(self) -> list[SessionPath]:
        """Every directory from the first level down to the parent, outermost first (not the home)."""
        return [SessionPath(self.parts[:i]) for i in range(1, len(self.parts))]

    def under(self, root: str) -> str:
        """The absolute path under `root` (e.g. '/session'), as the container sees it."""
        return str(PurePosixPath(root, *self.parts))


@dataclass(frozen=True)
class SessionFileEntry:
    """One child of a directory, as SessionDirectoryEntry describes it (size 0 for directories)."""

    name: str
    size: int
    is_directory: bool
    modified_time: int


def parse_session_path(raw: str | None, *, allow_root: bool) -> SessionPath:
    """The caller's `path`, checked: relative to the session home and never leaving it.

    `./a` and `a//b` are read as `a` and `a/b`; `..` anywhere is refused rather than resolved, because
    whether `a/..` stays inside depends on what `a` is (a link, say), which is not known here.
    """
    text = (raw or "").strip()
    where = "the session's home directory"
    if not text or text in (".", "./"):
        if allow_root:
            return SessionPath(())
        raise InvalidSessionFilePath(f"'path' must name a file in {where}, e.g. 'data/input.csv'.", param="path")
    if len(text) > _MAX_PATH_CHARS:
        raise InvalidSessionFilePath(f"'path' is longer than {_MAX_PATH_CHARS} characters.", param="path")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in text):
        raise InvalidSessionFilePath("'path' contains control characters.", param="path")
    if text.startswith("/") or text.startswith("~"):
        raise InvalidSessionFilePath(
            f"'path' must be relative to {where} (got {text!r}); drop the leading '{text[0]}'.", param="path")
    if "\\" in text:
        raise InvalidSessionFilePath("'path' separates directories with '/', not '\\'.", param="path")
    parts = tuple(part for part in text.split("/") if part not in ("", "."))
    if ".." in parts:
        raise InvalidSessionFilePath(f"'path' may not contain '..': it must stay inside {where}.", param="path")
    if any(len(part.encode()) > _MAX_NAME_BYTES for part in parts):
        raise InvalidSessionFilePath(f"A name in 'path' is longer than {_MAX_NAME_BYTES} bytes.", param="path")
    if not parts and not allow_root:
        raise InvalidSessionFilePath(f"'path' must name a file in {where}, not the directory itself.", param="path")
    return SessionPath(parts)


def check_upload_size(size: int) -> None:
    """Refuse an upload known (declared or counted so far) to be over the limit."""
    if size > MAX_UPLOAD_BYTES:
        raise SessionFileTooLarge(f"Session files are limited to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB "
                                  f"({MAX_UPLOAD_BYTES} bytes); this upload is larger. Split it, or compress it.")


def page_of_entries(entries: list[SessionFileEntry], *, limit: int = 20, order: str = "asc",
                    after: str | None = None, before: str | None = None) -> tuple[list[SessionFileEntry], bool]:
    """One page of a directory listing, ordered by name; `after`/`before` are names, as `last_id` is.

    Returns the page and whether more entries follow it.
    """
    if order not in ("asc", "desc"):
        raise BadRequest("'order' must be 'asc' or 'desc'.", param="order")
    if not 1 <= limit <= 100:
        raise BadRequest("'limit' must be between 1 and 100.", param="limit")
    ordered = sorted(entries, key=lambda e: e.name, reverse=(order == "desc"))
    names = [e.name for e in ordered]
    if after is not None:
        ordered = ordered[names.index(after) + 1:] if after in names else []
        names = [e.name for e in ordered]
    if before is not None:
        ordered = ordered[:names.index(before)] if before in names else []
    return ordered[:limit], len(ordered) > limit
