"""What a code zip must be before dockyard unpacks it: the rules, with no I/O.

A code-based version arrives as a zip (`create_version_from_code`), and a zip is hostile until proven
otherwise: names can climb out of the folder it is unpacked into (`../`, `/etc/…`, `C:\\…`), entries can
be links or device files, and a few hundred kilobytes can inflate to gigabytes. Every rule here is
checked against the central directory before a byte is written, and the limits are counted again on
the bytes actually written while unpacking (`UnpackBudget`), because headers can lie.

Each refusal is a 400 of its own that names the offending entry and says how to fix the zip.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dockyard.domain.errors import BadRequest, PayloadTooLarge

# Foundry's limit for the uploaded zip (the SDK's docstring: "Maximum upload size is 250 MB").
MAX_UPLOAD_BYTES = 250 * 1024 * 1024
# dockyard's limits for what a zip unpacks to: far above what an agent with its packages needs.
MAX_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
# An entry inflating more than this many times its compressed size is a bomb, once it is big enough to
# matter: small files of repeated text (a JSON fixture, a lock file) legitimately compress that well.
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 1024 * 1024
MAX_PATH_CHARS = 1024
MAX_COMPONENT_BYTES = 255

# Codes, one per way a zip is refused.
CODE_ZIP_INVALID = "CodeZipInvalid"
CODE_ZIP_UNSAFE_PATH = "CodeZipUnsafePath"
CODE_ZIP_LINK = "CodeZipLinkNotAllowed"
CODE_ZIP_SPECIAL_FILE = "CodeZipSpecialFile"
CODE_ZIP_ENCRYPTED = "CodeZipEncrypted"
CODE_ZIP_TOO_MANY_ENTRIES = "CodeZipTooManyEntries"
CODE_ZIP_UNPACKED_TOO_LARGE = "CodeZipUnpackedTooLarge"
CODE_ZIP_COMPRESSION_RATIO = "CodeZipCompressionRatio"
CODE_ZIP_DUPLICATE_ENTRY = "CodeZipDuplicateEntry"
CODE_TOO_LARGE = "CodeTooLarge"
CODE_HASH_MISMATCH = "CodeHashMismatch"
ENTRY_POINT_NOT_FOUND = "EntryPointNotFound"

_DRIVE = re.compile(r"[A-Za-z]:")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PYTHON = re.compile(r"python(3(\.\d+)?)?")
# Interpreter options that take the next argument as their value.
_PYTHON_OPTIONS_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}


@dataclass(frozen=True)
class ArchiveEntry:
    """One checked entry: its safe relative path (POSIX, no `.` or `..`) and the zip's record of it."""

    path: str
    info: zipfile.ZipInfo
    is_dir: bool


def parse_content_hash(value: str | None) -> str:
    """The `x-ms-code-zip-sha256` header as a lowercase hex digest, or a 400 saying what it must be."""
    if value is None or not value.strip():
        raise BadRequest(
            "The x-ms-code-zip-sha256 header is required: the SHA-256 hex digest of the code zip "
            "(create_version_from_code computes it when code_zip_sha256 is not given).",
            code="MissingCodeHash",
            param="x-ms-code-zip-sha256",
        )
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise BadRequest(
            f"The x-ms-code-zip-sha256 header {value[:80]!r} is not a SHA-256 hex digest (64 hex characters).",
            code="InvalidCodeHash",
            param="x-ms-code-zip-sha256",
        )
    return digest


def check_content_hash(declared: str, actual: str) -> None:
    if declared != actual:
        raise BadRequest(
            f"The code zip's SHA-256 is {actual}, but the x-ms-code-zip-sha256 header says {declared}. The upload "
            "was changed or cut on the way, or the header was computed over other bytes: send the hash of the "
            "exact zip you upload (or leave code_zip_sha256 out and let the SDK compute it).",
            code=CODE_HASH_MISMATCH,
            param="x-ms-code-zip-sha256",
        )


def upload_too_large(limit: int = MAX_UPLOAD_BYTES) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The code zip is larger than {limit // (1024 * 1024)} MiB, the most a code-based version may upload. "
        "Leave out what the agent does not need at run time (tests, caches, .git, virtual environments), or "
        "use dependency_resolution='remote_build' so packages are installed by dockyard instead of uploaded.",
        code=CODE_TOO_LARGE,
    )


def safe_path(name: str) -> str:
    """An entry name as a relative POSIX path inside the unpack folder, or a 400 naming the entry.

    Backslashes count as separators (zips made on Windows use them), so `..\\x` is refused as `../x` is.
    The result may be "" for the zip's own root (`./`).
    """
    if "\x00" in name:
        raise _unsafe(name, "contains a NUL character")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise _unsafe(name, "contains control characters")
    if len(name) > MAX_PATH_CHARS:
        raise _unsafe(name, f"is longer than {MAX_PATH_CHARS} characters")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise _unsafe(name, "is an absolute path; a code zip holds paths relative to its root")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _unsafe(name, "has a '..' component, which would climb out of the folder the code is unpacked into")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise _unsafe(name, f"has a name component longer than {MAX_COMPONENT_BYTES} bytes")
    return "/".join(parts)


def check_listing(infos: Sequence[zipfile.ZipInfo]) -> list[ArchiveEntry]:
    """Check a zip's central directory against every rule; the entries to unpack, in order."""
    if len(infos) > MAX_ENTRIES:
        raise BadRequest(
            f"The code zip has {len(infos)} entries; at most {MAX_ENTRIES} are allowed. Leave out what the agent "
            "does not need at run time, or use dependency_resolution='remote_build' instead of bundling packages.",
            code=CODE_ZIP_TOO_MANY_ENTRIES,
        )
    entries: list[ArchiveEntry] = []
    kinds: dict[str, bool] = {}  # path -> is_dir, to find duplicates and files standing where folders must be
    total = 0
    for info in infos:
        name = info.orig_filename  # ZipInfo.filename is cut at a NUL; the original is what the zip says
        path = safe_path(name)
        is_dir = _check_type(info, name)
        if info.flag_bits & 0x1:
            raise BadRequest(
                f"Code zip entry {name!r} is encrypted; dockyard cannot unpack encrypted entries. Zip without a "
                "password.",
                code=CODE_ZIP_ENCRYPTED,
            )
        if not is_dir:
            _check_ratio(name, info.file_size, info.compress_size)
            total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                raise unpacked_too_large(name)
        if path == "":
            if not is_dir:
                raise _unsafe(name, "names no file (an empty path)")
            continue
        if path in kinds and (not is_dir or not kinds[path]):
            raise BadRequest(
                f"Code zip entry {name!r} appears more than once (as {path!r}). Each path may appear once: "
                "re-create the zip rather than appending to it.",
                code=CODE_ZIP_DUPLICATE_ENTRY,
            )
        kinds[path] = is_dir
        entries.append(ArchiveEntry(path=path, info=info, is_dir=is_dir))
    for path in kinds:
        parent = path.rpartition("/")[0]
        while parent:
            if kinds.get(parent) is False:
                raise BadRequest(
                    f"Code zip entry {parent!r} is a file, but {path!r} needs it to be a folder. Re-create the zip "
                    "from the folder as it is on disk.",
                    code=CODE_ZIP_DUPLICATE_ENTRY,
                )
            parent = parent.rpartition("/")[0]
    return entries


class UnpackBudget:
    """The limits again, on the bytes actually written: a zip's headers may understate what it inflates to."""

    def __init__(self) -> None:
        self.total = 0

    def count(self, entry: ArchiveEntry, written: int, added: int) -> None:
        """`written` bytes of `entry` so far, `added` of them new; raises once a limit is passed."""
        self.total += added
        if self.total > MAX_UNPACKED_BYTES:
            raise unpacked_too_large(entry.info.orig_filename)
        if written > entry.info.file_size:
            raise BadRequest(
                f"Code zip entry {entry.info.orig_filename!r} inflates to more than the {entry.info.file_size} bytes "
                "its header declares. The zip is corrupt or crafted; re-create it.",
                code=CODE_ZIP_INVALID,
            )
        _check_ratio(entry.info.orig_filename, written, entry.info.compress_size)


def check_entry_point(entry_point: Sequence[str], paths: Iterable[str]) -> None:
    """The entry point's file (`main.py` of `["python", "main.py"]`) or module (`-m app`) must be in the zip.

    A command the zip cannot hold (`uvicorn main:app`: an installed console script) is not checked here;
    it fails when the version starts, with the process's own message.
    """
    present = set(paths)
    target = entry_point_target(entry_point)
    if target is None:
        return
    kind, value = target
    if kind == "module":
        base = value.replace(".", "/")
        candidates = [f"{prefix}{base}{suffix}" for prefix in ("", "packages/")
                      for suffix in (".py", "/__init__.py", "/__main__.py")]
        if any(candidate in present for candidate in candidates):
            return
        what = f"module {value!r} (neither {base}.py nor {base}/__init__.py)"
    else:
        if value in present:
            return
        what = f"file {value!r}"
    top = sorted({path.split("/", 1)[0] + ("/" if "/" in path else "") for path in present})
    shown = ", ".join(top[:20]) + (f", … ({len(top) - 20} more)" if len(top) > 20 else "") if top else "nothing"
    hint = ""
    folders = [name for name in top if name.endswith("/")]
    if len(top) == 1 and folders:
        hint = (f" Everything is inside {folders[0]}: zip that folder's contents rather than the folder, so "
                f"{value} is at the zip's root.")
    raise BadRequest(
        f"The entry point {list(entry_point)!r} runs {what}, which is not in the code zip. At the zip's root "
        f"there is: {shown}.{hint}",
        code=ENTRY_POINT_NOT_FOUND,
        param="definition.code_configuration.entry_point",
    )


def entry_point_target(entry_point: Sequence[str]) -> tuple[str, str] | None:
    """("file", "main.py") or ("module", "app.server") for what an entry point runs from the zip, if it says."""
    if not entry_point:
        return None
    program, *args = entry_point
    if _PYTHON.fullmatch(program.rsplit("/", 1)[-1]):
        pending = iter(args)
        for arg in pending:
            if arg == "-m":
                module = next(pending, None)
                return ("module", module) if module else None
            if arg.startswith("-m") and not arg.startswith("--"):
                return "module", arg[2:]
            if arg == "-c" or (arg.startswith("-c") and not arg.startswith("--")):
                return None
            if arg in _PYTHON_OPTIONS_WITH_VALUE:
                next(pending, None)
                continue
            if arg.startswith("-"):
                continue
            return _file_target(arg)
        return None
    if program.endswith((".py", ".sh")) or "/" in program:
        return _file_target(program)
    return None


def _file_target(arg: str) -> tuple[str, str] | None:
    if arg.startswith("/"):
        return None  # an absolute path is outside the zip by definition; the runtime reports it if wrong
    try:
        return "file", safe_path(arg)
    except BadRequest:
        return "file", arg


def unpacked_too_large(name: str) -> BadRequest:
    return BadRequest(
        f"The code zip unpacks to more than {MAX_UNPACKED_BYTES // (1024 * 1024)} MiB (passed at entry {name!r}). "
        "Leave out what the agent does not need at run time, or use dependency_resolution='remote_build'.",
        code=CODE_ZIP_UNPACKED_TOO_LARGE,
    )


def _check_type(info: zipfile.ZipInfo, name: str) -> bool:
    """Whether the entry is a folder; links, devices, pipes and sockets are refused."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise BadRequest(
            f"Code zip entry {name!r} is a symbolic link. Links are not allowed in a code zip (one could point "
            "anywhere on the machine): zip the file it points to instead (zip without --symlinks).",
            code=CODE_ZIP_LINK,
        )
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        what = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a named pipe",
                stat.S_IFSOCK: "a socket"}.get(kind, f"a special file (type {kind:o})")
        raise BadRequest(
            f"Code zip entry {name!r} is {what}. A code zip may hold only regular files and folders.",
            code=CODE_ZIP_SPECIAL_FILE,
        )
    is_dir = name.endswith(("/", "\\")) or kind == stat.S_IFDIR
    if is_dir and info.file_size:
        raise BadRequest(
            f"Code zip entry {name!r} is marked as a folder but holds {info.file_size} bytes. The zip is corrupt or "
            "crafted; re-create it.",
            code=CODE_ZIP_INVALID,
        )
    return is_dir


def _check_ratio(name: str, size: int, compressed: int) -> None:
    if size > RATIO_FLOOR_BYTES and size > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise BadRequest(
            f"Code zip entry {name!r} inflates from {compressed} to {size} or more bytes, more than "
            f"{MAX_COMPRESSION_RATIO} times its compressed size: dockyard refuses it as a decompression bomb. If "
            "the file is genuine, leave it out of the zip and have the agent create it at start-up.",
            code=CODE_ZIP_COMPRESSION_RATIO,
        )


def _unsafe(name: str, why: str) -> BadRequest:
    return BadRequest(
        f"Code zip entry {name!r} {why}. Re-create the zip from the agent's folder with relative paths "
        "(e.g. `cd my-agent && zip -r ../agent.zip .`).",
        code=CODE_ZIP_UNSAFE_PATH,
    )
