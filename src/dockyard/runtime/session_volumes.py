"""Files on a session's volume, through the engine's own API: no host paths, no tools in the image.

Reading, writing and listing go through the Docker Engine API's archive endpoints (`GET`/`PUT`/`HEAD
/containers/{id}/archive`), which docker and podman both serve, on any container that mounts the
volume: the session's own container when there is one (running or not), else a helper container made
from the agent image and never started. That works the same for a local, remote or rootless engine and
for an image with no shell, and the engine resolves paths inside the container's filesystem, never the
host's: podman confines symbolic links to the volume itself (an absolute link target is taken from the
volume's root), and on docker, whose links resolve across the container's filesystem, every component
of a path is checked and a link leading out of the volume is refused.

Deleting has no archive endpoint, so it runs `rm`/`rmdir` (POSIX `sh`, `realpath`) in the session's
running container, or in a short-lived helper started from the agent image for just that.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from docker.errors import APIError, NotFound
from docker.models.containers import Container

from dockyard.domain.errors import BadRequest, Conflict, DockyardError
from dockyard.domain.session_files import (
    InvalidSessionFilePath,
    SessionDirectoryNotEmpty,
    SessionFileEntry,
    SessionFileNotFound,
    SessionPath,
)

ROOT = "/session"  # where every session container (and helper) mounts the session's volume
_CHUNK = 64 * 1024
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27


class SessionFilesFailed(DockyardError):
    """The engine could not carry out a file operation for a reason that is not the caller's."""

    status_code = 502
    code = "SessionFilesUnavailable"


# -- stat -------------------------------------------------------------------------------------------

def stat(container: Container, absolute: str) -> dict[str, Any] | None:
    """The engine's stat of a path in the container (`HEAD …/archive`), or None when there is none."""
    assert container.client is not None  # set on every container read through a client
    api: Any = container.client.api  # `_url` is not in docker-py's stubs
    response = api.head(api._url("/containers/{0}/archive", container.id),  # noqa: SLF001 - no public wrapper
                        params={"path": absolute})
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise SessionFilesFailed(f"The container engine could not inspect {absolute} (HTTP {response.status_code}).")
    header = response.headers.get("X-Docker-Container-Path-Stat")
    return json.loads(base64.b64decode(header)) if header else {}


def _is_dir(found: dict[str, Any]) -> bool:
    return bool(found.get("isDir")) or bool(int(found.get("mode", 0)) & _GO_MODE_DIR)


def _check_link(found: dict[str, Any] | None, path: SessionPath) -> None:
    """Docker reports a link as such (podman follows it inside the volume): refuse one that leads out."""
    if found is None or not int(found.get("mode", 0)) & _GO_MODE_SYMLINK:
        return
    target = str(found.get("linkTarget") or "")
    if target != ROOT and not target.startswith(ROOT + "/"):
        raise InvalidSessionFilePath(f"'{path.relative}' is a symbolic link leading out of the session's home "
                                     "directory; dockyard does not follow it.", param="path")


def resolve(container: Container, path: SessionPath) -> tuple[dict[str, Any] | None, list[SessionPath]]:
    """Stat `path` after checking each directory on the way to it.

    Returns the stat (None when the path does not exist) and the directories leading to it that do
    not exist yet, outermost first.
    """
    missing: list[SessionPath] = []
    for ancestor in path.ancestors():
        found = None if missing else stat(container, ancestor.under(ROOT))
        _check_link(found, ancestor)
        if found is None:
            missing.append(ancestor)
        elif not _is_dir(found):
            raise Conflict(f"'{ancestor.relative}' is a file, so '{path.relative}' cannot be under it.",
                           code="NotADirectory")
    if missing:
        return None, missing
    found = stat(container, path.under(ROOT))
    _check_link(found, path)
    return found, missing


# -- upload -----------------------------------------------------------------------------------------

class _TarUpload:
    """A one-file tar archive, read as it is sent: headers, then the content from `source`, then padding.

    Its length is known up front (`__len__`), so the engine gets a Content-Length and the content is
    never held in memory whole.
    """

    def __init__(self, headers: bytes, source: BinaryIO, size: int) -> None:
        padding = (-size) % tarfile.BLOCKSIZE
        self._parts: list[bytes | tuple[BinaryIO, int]] = [headers, (source, size),
                                                           b"\0" * padding + b"\0" * (2 * tarfile.BLOCKSIZE)]
        self._length = len(headers) + size + padding + 2 * tarfile.BLOCKSIZE

    def __len__(self) -> int:
        # requests sends a Content-Length for a body with a length (and no `tell`, which would make it
        # read the length as "what is left from here", and chunk instead).
        return self._length

    def read(self, size: int = -1) -> bytes:
        wanted = _CHUNK if size is None or size < 0 else size
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                chunk, rest = part[:wanted], part[wanted:]
                if rest:
                    self._parts[0] = rest
                else:
                    self._parts.pop(0)
                if chunk:
                    return chunk
                continue
            source, remaining = part
            chunk = source.read(min(wanted, remaining)) if remaining else b""
            if not chunk:
                if remaining:
                    raise SessionFilesFailed("The upload ended before its declared size.")
                self._parts.pop(0)
                continue
            self._parts[0] = (source, remaining - len(chunk))
            return chunk
        return b""


def _header(name: str, *, directory: bool, size: int, owner: tuple[int, int], now: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.uid, info.gid = owner
    info.mtime = now
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def write(container: Container, path: SessionPath, content: BinaryIO, size: int, owner: tuple[int, int]) -> None:
    """Write `size` bytes from `content` to `path`, making missing directories; owned by the agent's user."""
    existing, missing = resolve(container, path)
    if existing is not None and _is_dir(existing):
        raise Conflict(f"'{path.relative}' is a directory; upload to a file path under it.", code="PathIsADirectory")
    now = int(time.time())
    # Directories the upload needs are made explicitly, owned like the file (an engine would make them root's).
    headers = b"".join(_header(d.relative, directory=True, size=0, owner=owner, now=now) for d in missing)
    headers += _header(path.relative, directory=False, size=size, owner=owner, now=now)
    try:
        container.put_archive(ROOT, _TarUpload(headers, content, size))
    except APIError as exc:
        raise SessionFilesFailed(f"The container engine refused to write '{path.relative}': "
                                 f"{exc.explanation or exc}.") from None


# -- download and list ------------------------------------------------------------------------------

class _ChunkReader:
    """The engine's archive stream as a file, for `tarfile`'s streaming mode (which needs only `read`)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _archive(container: Container, absolute: str, path: SessionPath) -> tarfile.TarFile:
    try:
        chunks, _stat = container.get_archive(absolute, chunk_size=_CHUNK)
    except NotFound:
        raise SessionFileNotFound(f"'{path.relative or '.'}' does not exist in the session.") from None
    except APIError as exc:
        raise SessionFilesFailed(f"The container engine could not read '{path.relative}': "
                                 f"{exc.explanation or exc}.") from None
    # Streaming mode ("r|") needs only read(); typeshed's file protocol also asks for seek, tell and write.
    return tarfile.open(fileobj=_ChunkReader(iter(chunks)), mode="r|")  # type: ignore[call-overload]


def read(container: Container, path: SessionPath) -> Iterator[int | bytes]:
    """The file's size, then its content in chunks, streamed from the engine as it arrives."""
    found, _missing = resolve(container, path)
    if found is None:
        raise SessionFileNotFound(f"'{path.relative}' does not exist in the session. List the directory to see "
                                  "what is there.")
    if _is_dir(found):
        raise BadRequest(f"'{path.relative}' is a directory: list it (GET …/files?path=) instead.",
                         code="PathIsADirectory", param="path")
    with _archive(container, path.under(ROOT), path) as archive:
        member = archive.next()
        if member is None or not member.isreg():
            raise BadRequest(f"'{path.relative}' is not a regular file.", code="NotARegularFile", param="path")
        stream = archive.extractfile(member)
        assert stream is not None
        yield member.size
        while chunk := stream.read(_CHUNK):
            yield chunk


def list_directory(container: Container, path: SessionPath) -> list[SessionFileEntry]:
    """The directory's immediate children (the engine sends the whole subtree; only headers are kept)."""
    found, _missing = resolve(container, path)
    if found is None:
        raise SessionFileNotFound(f"'{path.relative}' does not exist in the session.")
    if not _is_dir(found):
        raise BadRequest(f"'{path.relative}' is a file, not a directory; download it with GET …/files/content.",
                         code="NotADirectory", param="path")
    entries: list[SessionFileEntry] = []
    prefix: str | None = None
    with _archive(container, path.under(ROOT) + "/", path) as archive:
        for member in archive:
            name = _member_name(member.name)
            if prefix is None:
                # The first member is the directory itself: "" (podman) or its own name (docker).
                prefix = name.rstrip("/")
                continue
            relative = name[len(prefix) + 1:] if prefix and name.startswith(prefix + "/") else name
            relative = relative.strip("/")
            if not relative or "/" in relative:
                continue  # the directory itself again, or deeper than one level
            entries.append(SessionFileEntry(
                name=relative, size=member.size if member.isreg() else 0, is_directory=member.isdir(),
                modified_time=int(member.mtime)))
    return entries


def _member_name(name: str) -> str:
    """A member's name without the "./" or "/" engines put in front (names may start with dots)."""
    while name.startswith("./") or name.startswith("/"):
        name = name[2:] if name.startswith("./") else name[1:]
    return "" if name == "." else name


# -- delete -----------------------------------------------------------------------------------------

_DELETE_SCRIPT = f"""
t="$1"
[ -e "$t" ] || [ -L "$t" ] || exit 44
p=$(realpath -- "$(dirname -- "$t")") || exit 44
case "$p/" in {ROOT}/*) ;; *) exit 45 ;; esac
if [ -d "$t" ] && [ ! -L "$t" ]; then
  if [ "$2" = recursive ]; then rm -rf -- "$t" || exit 47; else rmdir -- "$t" 2>/dev/null || exit 46; fi
else
  rm -f -- "$t" || exit 47
fi
"""


def delete_command(path: SessionPath, recursive: bool) -> list[str]:
    """The argv that deletes `path` inside a container mounting the volume (exit codes: see `deleted`)."""
    return ["/bin/sh", "-c", _DELETE_SCRIPT, "sh", path.under(ROOT), "recursive" if recursive else "single"]


def deleted(exit_code: int, output: bytes, path: SessionPath) -> None:
    """Turn the delete command's exit code into the API's answer (nothing when it worked)."""
    if exit_code == 0:
        return
    if exit_code == 44:
        raise SessionFileNotFound(f"'{path.relative}' does not exist in the session.")
    if exit_code == 45:
        raise InvalidSessionFilePath(f"'{path.relative}' is reached through a symbolic link leading out of the "
                                     "session's home directory; dockyard does not follow it.", param="path")
    if exit_code == 46:
        raise SessionDirectoryNotEmpty(f"'{path.relative}' is a directory that is not empty; delete it with "
                                       "recursive=true.")
    if exit_code in (126, 127):
        raise SessionFilesFailed("Deleting session files runs /bin/sh, rm, rmdir and realpath in the agent's image, "
                                 "and this image lacks one of them.", code="SessionFilesUnsupported")
    raise SessionFilesFailed(f"Deleting '{path.relative}' failed (exit {exit_code}): "
                             f"{output.decode(errors='replace').strip()[:300]}")


def container_user(container: Container) -> tuple[int, int]:
    """The uid and gid the agent runs as, for the files dockyard writes (as `podman … :U` would chown them)."""
    user = str((container.attrs.get("Config") or {}).get("User") or "")
    name, _, group = user.partition(":")
    if not name:
        return 0, 0
    if name.isdigit() and (not group or group.isdigit()):
        return int(name), int(group or name)
    for line in _read_small(container, "/etc/passwd").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and (fields[0] == name or fields[2] == name):
            return int(fields[2]), int(group) if group.isdigit() else int(fields[3])
    return 0, 0


def _read_small(container: Container, absolute: str) -> str:
    try:
        chunks, _ = container.get_archive(absolute)
    except APIError:
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        member = archive.next()
        stream = archive.extractfile(member) if member is not None and member.isreg() else None
        return stream.read(1 << 20).decode(errors="replace") if stream is not None else ""
