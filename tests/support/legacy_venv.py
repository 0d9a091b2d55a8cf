"""A second virtual environment with azure-ai-projects 2.0.0b3, the SDK the original hosted-agents guide requires.

The project's own environment carries the newest 2.x, and the two cannot live side by side in one
interpreter, so the legacy tests run their client code as subprocesses of this venv's python.

The venv is built once at `<repo>/.cache/venv-sdk-2.0.0b3` and reused: a marker file holding the pinned
requirement list is written only after pip succeeded, and a venv whose marker is missing or different is
rebuilt from scratch. An exclusive `fcntl` lock beside the venv keeps parallel runs (xdist workers, two
terminals) from building it at the same time. A failed install raises with pip's output: it never skips.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
VENV = CACHE / "venv-sdk-2.0.0b3"
REQUIREMENTS: tuple[str, ...] = (
    "azure-ai-projects==2.0.0b3",
    "azure-identity==1.27.0",
    "azure-core==1.41.0",
    "aiohttp==3.14.5",
)
MARKER = VENV / ".dockyard-requirements"

# How long the last call to legacy_python() spent building (0.0 when the cached venv was reused).
last_build_seconds: float = 0.0


class LegacyVenvError(RuntimeError):
    """Creating the venv or installing the pinned SDK failed; the message carries the tool's output."""


def _marker_text(requirements: tuple[str, ...]) -> str:
    return "\n".join(requirements) + "\n"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _is_current(venv: Path, requirements: tuple[str, ...]) -> bool:
    try:
        if (venv / MARKER.name).read_text() != _marker_text(requirements):
            return False
    except OSError:
        return False
    # A venv whose base interpreter went away (pyenv upgrade, moved checkout) is as good as missing.
    probe = subprocess.run([str(_python(venv)), "-c", "import sys"], capture_output=True, env=_clean_env())
    return probe.returncode == 0


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    # The interpreter running pytest may itself be in a venv; keep that from leaking into the child.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    return env


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=_clean_env())
    if result.returncode != 0:
        raise LegacyVenvError(
            f"{what} failed with exit code {result.returncode}: {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def _build(venv: Path, requirements: tuple[str, ...]) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    # `sys.executable -m venv` from inside a venv bases the new one on the same base interpreter.
    _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    _run(
        [str(_python(venv)), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", *requirements],
        f"pip install {' '.join(requirements)}",
    )
    # Written last: a venv without it (pip failed, the run was killed) is rebuilt next time.
    (venv / MARKER.name).write_text(_marker_text(requirements))


def ensure_venv(venv: Path, requirements: tuple[str, ...]) -> tuple[Path, float]:
    """The python of `venv` holding exactly `requirements`, (re)built under an exclusive lock when its marker
    is missing or different. Returns the python and the seconds spent building (0.0 when reused)."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes, also if we die
        try:
            if _is_current(venv, requirements):
                return _python(venv), 0.0
            started = time.monotonic()
            _build(venv, requirements)
            return _python(venv), time.monotonic() - started
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@functools.cache
def legacy_python() -> Path:
    """The python of `<repo>/.cache/venv-sdk-2.0.0b3`, holding exactly the pinned 2.0.0b3 SDK."""
    global last_build_seconds
    python, last_build_seconds = ensure_venv(VENV, REQUIREMENTS)
    return python


if __name__ == "__main__":
    path = legacy_python()
    print(f"{path} (built in {last_build_seconds:.1f}s)" if last_build_seconds else f"{path} (cached)")
