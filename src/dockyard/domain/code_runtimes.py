"""The Python runtimes a code-based version may ask for, and which interpreter serves a request.

Foundry names its code runtimes `python_3_11` … `python_3_14` (`code_configuration.runtime`). The API
checks the name when a version is created and the runtimes parse it again when they run the code, so
both use `parse_python_runtime`. Choosing among the interpreters a machine has is a rule, not I/O: it
lives here so it can be read and tested on its own (docs/code-runtimes.md states it for users).
"""

from __future__ import annotations

from collections.abc import Iterable

from dockyard.domain.errors import BadRequest

PYTHON_RUNTIMES = ("python_3_11", "python_3_12", "python_3_13", "python_3_14")
DEPENDENCY_RESOLUTIONS = ("bundled", "remote_build")

# The code a version fails with when dockyard cannot install its requirements (issue 10 §2).
REMOTE_BUILD_FAILED = "RemoteBuildFailed"

PythonVersion = tuple[int, int]


def parse_python_runtime(name: str) -> PythonVersion:
    """`python_3_12` -> (3, 12); any other name is a 400 that lists the names Foundry accepts."""
    if name not in PYTHON_RUNTIMES:
        raise BadRequest(
            f"Runtime {name!r} is not supported: code_configuration.runtime must be one of "
            f"{', '.join(PYTHON_RUNTIMES)}.",
            param="definition.code_configuration.runtime",
        )
    _, major, minor = name.split("_")
    return int(major), int(minor)


def runtime_name(version: PythonVersion) -> str:
    return f"python_{version[0]}_{version[1]}"


def nearest_version(requested: PythonVersion, present: Iterable[PythonVersion]) -> PythonVersion | None:
    """The interpreter version that runs a request for `requested`, or None when there is none at all.

    The exact version when present; otherwise the newest one below the request (code written for 3.14
    mostly runs on 3.13; the reverse is likelier to meet a removed module), else the oldest one above.
    """
    versions = sorted(set(present))
    if requested in versions:
        return requested
    below = [v for v in versions if v < requested]
    if below:
        return below[-1]
    above = [v for v in versions if v > requested]
    return above[0] if above else None
