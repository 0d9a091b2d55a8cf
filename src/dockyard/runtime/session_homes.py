"""Session files kept in a directory on this machine: the process runtime's session volumes.

A session of a process-run version has its home at `<home>/sessions/<session id>/`, kept when its
process is released and removed with the session, as a container's named volume is. The API's paths
are already validated (relative, no `..`); what is left is the agent's own symbolic links, so every
component is opened relative to the one before with O_NOFOLLOW: a link anywhere on the way is refused,
never followed out of the home (podman would resolve it inside the volume; refusing is the safe subset).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.domain.errors import BadRequest, Conflict, InsufficientStorage
from dockyard.domain.session_files import (
    InvalidSessionFilePath,
    SessionDirectoryNotEmpty,
    SessionFileEntry,
    SessionFileNotFound,
    SessionPath,
)
from dockyard.runtime.base import SessionFileStream
from dockyard.runtime.session_volumes import SessionFilesFailed

_CHUNK = 64 * 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _link_refused(path: SessionPath) -> InvalidSessionFilePath:
    return InvalidSessionFilePath(f"'{path.relative}' is reached through a symbolic link; dockyard does not follow "
                                  "links in a session's home directory.", param="path")


def _open_directory(root: Path, path: SessionPath, *, create: bool = False) -> int:
    """A descriptor of the directory `path` (relative to `root`), each step opened without following links."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root, _DIRECTORY)
    try:
        for depth, part in enumerate(path.parts):
            here = SessionPath(path.parts[:depth + 1])
            try:
                child = os.open(part, _DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise SessionFileNotFound(f"'{here.relative}' does not exist in the session.") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIRECTORY, dir_fd=fd)
            except NotADirectoryError:
                # O_DIRECTORY with O_NOFOLLOW answers ENOTDIR for a link too: tell the two apart.
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise _link_refused(here) from None
                raise Conflict(f"'{here.relative}' is a file, so '{path.relative}' cannot be under it.",
                               code="NotADirectory") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _link_refused(here) from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def write(root: Path, path: SessionPath, content: BinaryIO, size: int) -> None:
    """Write `size` bytes from `content` to `path`, making missing directories."""
    parent = _open_directory(root, path.parent, create=True)
    try:
        try:
            fd = os.open(path.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=parent)
        except IsADirectoryError:
            raise Conflict(f"'{path.relative}' is a directory; upload to a file path under it.",
                           code="PathIsADirectory") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_refused(path) from None
            raise
        try:
            with open(fd, "wb") as out:
                remaining = size
                while remaining:
                    chunk = content.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise SessionFilesFailed("The upload ended before its declared size.")
                    out.write(chunk)
                    remaining -= len(chunk)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.unlink(path.name, dir_fd=parent)  # no half-written file left to take what space there is
            raise InsufficientStorage(
                f"dockyard's home has no space left to write '{path.relative}'. Free some space on the disk that "
                "holds it (or delete files the session no longer needs) and upload again.") from None
    finally:
        os.close(parent)


def read(root: Path, path: SessionPath) -> SessionFileStream:
    """Open a file for reading; a missing file, a directory or a link fails here, before any byte is sent."""
    parent = _open_directory(root, path.parent)
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
    except FileNotFoundError:
        raise SessionFileNotFound(f"'{path.relative}' does not exist in the session. List the directory to see "
                                  "what is there.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_refused(path) from None
        raise
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise BadRequest(f"'{path.relative}' is a directory: list it (GET …/files?path=) instead.",
                         code="PathIsADirectory", param="path")
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BadRequest(f"'{path.relative}' is not a regular file.", code="NotARegularFile", param="path")

    def chunks() -> Iterator[bytes]:
        with open(fd, "rb") as source:
            while chunk := source.read(_CHUNK):
                yield chunk

    return SessionFileStream(size=info.st_size, chunks=chunks())


def list_directory(root: Path, path: SessionPath) -> list[SessionFileEntry]:
    """The directory's immediate children (links listed as they are, never followed)."""
    try:
        fd = _open_directory(root, path)
    except Conflict:
        raise BadRequest(f"'{path.relative}' is a file, not a directory; download it with GET …/files/content.",
                         code="NotADirectory", param="path") from None
    try:
        entries = []
        with os.scandir(fd) as found:
            for entry in found:
                info = entry.stat(follow_symlinks=False)
                entries.append(SessionFileEntry(
                    name=entry.name, size=info.st_size if stat.S_ISREG(info.st_mode) else 0,
                    is_directory=stat.S_ISDIR(info.st_mode), modified_time=int(info.st_mtime)))
        return entries
    finally:
        os.close(fd)


def delete(root: Path, path: SessionPath, recursive: bool) -> None:
    """Delete a file or link, an empty directory, or (with `recursive`) a directory and what it holds."""
    parent = _open_directory(root, path.parent)
    try:
        try:
            info = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise SessionFileNotFound(f"'{path.relative}' does not exist in the session.") from None
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(path.name, dir_fd=parent)
        elif recursive:
            shutil.rmtree(path.name, dir_fd=parent)
        else:
            try:
                os.rmdir(path.name, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise SessionDirectoryNotEmpty(f"'{path.relative}' is a directory that is not empty; delete it "
                                                   "with recursive=true.") from None
                raise
    finally:
        os.close(parent)
