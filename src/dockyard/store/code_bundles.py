"""Code bundles on disk: the zips of code-based versions, each kept once, checked and unpacked.

Layout under `<home>/code`:

    <sha256>.zip     the zip as uploaded (what `download_code` answers)
    <sha256>/        its unpacked tree, read-only (files 0444, folders 0555): what runtimes run
    .incoming/       uploads being received; anything here at start-up is a leftover and goes

A bundle is complete when both exist. The tree is unpacked into a temporary folder and renamed into
place only once every file is written and synced, so a crash never leaves a half tree under a name
that looks complete; the zip is renamed in after it. Identical uploads share one bundle (the name is
the content hash). A bundle is removed once no version refers to it (`prune`), never while an upload
that will refer to it is between unpacking and recording its version (`admit` pins it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import secrets
import shutil
import threading
import zipfile
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from dockyard.domain import code_archives
from dockyard.domain.code_archives import ArchiveEntry, UnpackBudget
from dockyard.domain.errors import BadRequest, DockyardError, InsufficientStorage, NotFound, ServiceUnavailable

_CHUNK = 1024 * 1024


class Incoming:
    """An upload being received: written to a private temporary file and hashed as it arrives.

    Past `limit` bytes it refuses more (413) and deletes what it had, so nothing is left behind.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._sha = hashlib.sha256()
        self._file = open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.limit:
            self.discard()
            raise code_archives.upload_too_large(self.limit)
        try:
            self._file.write(data)
        except OSError as exc:
            self.discard()
            raise _disk_error(exc) from None
        self._sha.update(data)
        self.size += len(data)

    def finish(self) -> str:
        """Close the file; its SHA-256 hex digest."""
        if not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            except OSError as exc:  # a full disk shows at the flush, not at the write that filled the buffer
                self.discard()
                raise _disk_error(exc) from None
        return self._sha.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def discard(self) -> None:
        """Delete what was received (a no-op once the bundle store has taken the file)."""
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass  # the flush on close failed (a full disk): the file is closed all the same, and goes
        self.path.unlink(missing_ok=True)


class CodeBundles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._pins: Counter[str] = Counter()

    # -- receiving ----------------------------------------------------------------------------------

    def receive(self, limit: int = code_archives.MAX_UPLOAD_BYTES) -> Incoming:
        """A new upload; the caller writes to it and, whatever happens, calls `discard` at the end."""
        self._incoming_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Incoming(self._incoming_dir / f"{secrets.token_hex(8)}.zip", limit)

    @contextlib.contextmanager
    def admit(self, incoming: Incoming, entry_point: Sequence[str]) -> Iterator[str]:
        """Check a received zip, store it unpacked, and yield its hash while the bundle is pinned.

        Record the version that refers to the bundle inside the `with`: until it ends, `prune` leaves
        the bundle alone even though no version refers to it yet.
        """
        digest = incoming.finish()
        with self._pinned(digest):
            try:
                archive = zipfile.ZipFile(incoming.path)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise BadRequest(
                    f"The code part is not a zip file ({exc}). Upload a .zip of the agent's folder.",
                    code=code_archives.CODE_ZIP_INVALID,
                ) from None
            with archive:
                entries = code_archives.check_listing(archive.infolist())
                code_archives.check_entry_point(entry_point, (e.path for e in entries if not e.is_dir))
                if not self.tree_path(digest).is_dir():
                    self._unpack(archive, entries, digest)
            zip_path = self.zip_path(digest)
            if zip_path.exists():
                incoming.discard()
            else:
                os.chmod(incoming.path, 0o444)
                os.replace(incoming.path, zip_path)
            yield digest

    # -- reading ------------------------------------------------------------------------------------

    def tree(self, content_hash: str) -> Path:
        """The unpacked, read-only tree of a stored bundle; NotFound when it is not stored."""
        path = self.tree_path(content_hash)
        if not path.is_dir():
            raise _bundle_not_found(content_hash)
        return path

    def archive(self, content_hash: str) -> Path:
        """The zip of a stored bundle, as it was uploaded; NotFound when it is not stored."""
        path = self.zip_path(content_hash)
        if not path.is_file():
            raise _bundle_not_found(content_hash)
        return path

    def open_archive(self, content_hash: str) -> BinaryIO:
        """The stored zip, opened: a bundle removed while it is being sent is still sent whole (the open file
        outlives the unlink); NotFound when it is already gone."""
        try:
            return self.zip_path(content_hash).open("rb")
        except FileNotFoundError:
            raise _bundle_not_found(content_hash) from None

    def stored(self) -> set[str]:
        """The hashes of every bundle on disk, complete or not."""
        if not self.root.is_dir():
            return set()
        return {path.name.removesuffix(".zip") for path in self.root.iterdir() if not path.name.startswith(".")}

    def tree_path(self, content_hash: str) -> Path:
        return self.root / code_archives.parse_content_hash(content_hash)

    def zip_path(self, content_hash: str) -> Path:
        return self.root / f"{code_archives.parse_content_hash(content_hash)}.zip"

    # -- removing -----------------------------------------------------------------------------------

    def prune(self, referenced: Collection[str]) -> list[str]:
        """Remove every bundle not in `referenced` and not pinned by an upload; the hashes removed.

        Leftovers of interrupted unpacks (`.unpack-*`) go too, unless an upload is writing them now.
        """
        removed = []
        with self._lock:
            for digest in sorted(self.stored() - set(referenced) - set(self._pins)):
                _remove(self.root / f"{digest}.zip")
                _remove(self.root / digest)
                removed.append(digest)
            if self.root.is_dir() and not self._pins:
                for path in self.root.glob(".unpack-*"):
                    _remove(path)
        return removed

    def clear_incoming(self) -> None:
        """At start-up: uploads cut off by a crash or a kill are only partial files."""
        with self._lock:
            if not self._pins:
                _remove(self._incoming_dir)

    # -- helpers ------------------------------------------------------------------------------------

    @property
    def _incoming_dir(self) -> Path:
        return self.root / ".incoming"

    @contextlib.contextmanager
    def _pinned(self, digest: str) -> Iterator[None]:
        with self._lock:
            self._pins[digest] += 1
        try:
            yield
        finally:
            with self._lock:
                self._pins[digest] -= 1
                if not self._pins[digest]:
                    del self._pins[digest]

    def _unpack(self, archive: zipfile.ZipFile, entries: list[ArchiveEntry], digest: str) -> None:
        staging = self.root / f".unpack-{digest[:16]}-{secrets.token_hex(4)}"
        staging.mkdir(mode=0o700)
        try:
            budget = UnpackBudget()
            folders = [staging]
            for entry in entries:
                target = staging / entry.path
                if entry.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    folders.append(target)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _extract(archive, entry, target, budget)
            for folder in staging.rglob("*"):  # folders made as parents of files, not listed in the zip
                if folder.is_dir():
                    folders.append(folder)
            for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
                os.chmod(folder, 0o555)
            _sync_filesystem(staging)  # every file's bytes on disk before the tree gets its final name
            try:
                os.rename(staging, self.tree_path(digest))
            except OSError:
                if not self.tree_path(digest).is_dir():
                    raise
                _remove(staging)  # an identical upload finished first: keep its tree
            _fsync_dir(self.root)
        except OSError as exc:
            _remove(staging)
            raise _disk_error(exc) from None
        except BaseException:
            _remove(staging)
            raise


def _extract(archive: zipfile.ZipFile, entry: ArchiveEntry, target: Path, budget: UnpackBudget) -> None:
    """Write one entry, counting the bytes actually inflated; never follows or replaces anything there."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "wb") as out:
        written = 0
        try:
            with archive.open(entry.info) as source:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    budget.count(entry, written, len(chunk))
                    out.write(chunk)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
            raise BadRequest(
                f"Code zip entry {entry.info.orig_filename!r} cannot be unpacked ({exc}). The zip is corrupt or uses "
                "a compression method Python's zipfile does not read (use deflate); re-create it.",
                code=code_archives.CODE_ZIP_INVALID,
            ) from None
    # Read-only for everyone who may read it; executable where the zip says so (an entry point `./run.sh`).
    os.chmod(target, 0o555 if (entry.info.external_attr >> 16) & 0o111 else 0o444)


def _sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding `path`: one syncfs(2) rather than an fsync per file (37 s for 5,000 files)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = getattr(_libc(), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Delete a file or a (read-only) tree; folders are made writable first so their entries can go."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    if not path.is_dir():
        return
    for folder, _dirs, _files in os.walk(path):
        os.chmod(folder, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _disk_error(exc: OSError) -> DockyardError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(
            "dockyard's home has no space left for this code bundle. Free some space (dockyard prune, or delete "
            "versions you no longer need) and upload again.")
    return ServiceUnavailable(f"dockyard could not write this code bundle: {exc.strerror or exc}.",
                              code="CodeStorageFailed")


def _bundle_not_found(content_hash: str) -> NotFound:
    return NotFound(
        f"No code bundle with hash {content_hash} is stored. Upload the code again with "
        "create_version_from_code.",
        code="CodeBundleNotFound",
    )
