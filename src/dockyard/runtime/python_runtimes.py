"""Python for code-based versions: the interpreter that runs the code, and the dependencies it needs.

A code-based version names a runtime (`python_3_12`) and a dependency mode. On a container engine the
runtime is an image (`runtime_image`); on the host it is an interpreter this machine already has
(`HostPythons`). When the machine lacks the exact version, the code runs on the nearest one with a
warning in the version's log stream and in `PreparedCode.warning`: a substitution is never silent.

`bundled` code brings its dependencies in `packages/`. `remote_build` code names them in
`requirements.txt` (or `pyproject.toml`); dockyard installs them with pip into a directory of its own,
cached under `cache_root` by what was installed and for which Python, so the second session of a version,
and every version with the same requirements, starts without pip. A build happens in a temporary
directory that is renamed into place only when pip succeeds: a directory under its final name is always
complete. A lock file keeps two builds of the same requirements from running at once.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.domain.code_runtimes import (
    REMOTE_BUILD_FAILED,
    PythonVersion,
    nearest_version,
    parse_python_runtime,
    runtime_name,
)
from dockyard.runtime.base import CodeWorkload, RuntimeFailure

DEFAULT_IMAGE = "docker.io/library/python:{major}.{minor}-slim"
# Where interpreters are looked for besides PATH: Debian's and a source build's default prefixes.
EXTRA_DIRECTORIES = (Path("/usr/local/bin"), Path("/usr/bin"))
PIP_TAIL_LINES = 20
_VERSIONED_NAME = re.compile(r"python3\.\d+")
_COMMAND_NAMES = re.compile(r"python(?:3(?:\.\d+)?)?")
_PROBE = "import sys; print(sys.version_info[0], sys.version_info[1]); print(sys.executable)"

Log = Callable[[str], None]


def runtime_image(runtime: str, override: str | None = None) -> str:
    """The image a container runtime runs `runtime` code on: Docker's official slim Python, or `override`."""
    major, minor = parse_python_runtime(runtime)
    if override:
        return override
    return DEFAULT_IMAGE.format(major=major, minor=minor)


@dataclass(frozen=True)
class PreparedCode:
    """What a host process needs to run a version's code: its interpreter and its import path."""

    interpreter: Path
    # Entries for PYTHONPATH, in order: the code's own packages/ first, then what dockyard installed.
    python_path: tuple[Path, ...]
    # Set when the interpreter is not the version the runtime asked for; already written to the log.
    warning: str | None = None

    def command(self, entry_point: Sequence[str]) -> list[str]:
        """The entry point with its `python` (or `python3`, `python3.X`) replaced by the chosen interpreter."""
        argv = list(entry_point)
        if argv and _COMMAND_NAMES.fullmatch(argv[0]):
            argv[0] = str(self.interpreter)
        return argv


class HostPythons:
    """The interpreters on this machine, and the dependency directories built for code that runs on them.

    Interpreters are found once per instance (a `python3.X` installed later is seen after a restart):
    every `python3.X` on PATH and in /usr/local/bin and /usr/bin, and the one dockyard runs on (its base
    interpreter, not its virtual environment, so agents never import dockyard's own packages).
    """

    def __init__(
        self,
        cache_root: Path,
        *,
        search_path: Sequence[Path] | None = None,
        include_own: bool = True,
        build_timeout_seconds: float = 900.0,
    ) -> None:
        self.cache_root = cache_root
        self._search_path = search_path
        self._include_own = include_own
        self.build_timeout_seconds = build_timeout_seconds
        self._found: dict[PythonVersion, Path] | None = None
        self._finding = threading.Lock()

    # -- interpreters -------------------------------------------------------------------------------

    def interpreters(self) -> dict[PythonVersion, Path]:
        """Each Python version present, with the first interpreter found for it."""
        with self._finding:
            if self._found is None:
                self._found = self._discover()
            return dict(self._found)

    def choose(self, runtime: str) -> tuple[Path, PythonVersion, str | None]:
        """The interpreter for `runtime`, its version, and the warning to show when it is not an exact match."""
        requested = parse_python_runtime(runtime)
        found = self.interpreters()
        chosen = nearest_version(requested, found)
        if chosen is None:
            raise RuntimeFailure(
                "PythonNotFound",
                f"{runtime} asked, and this machine has no Python 3 interpreter dockyard can find. Install "
                f"python{requested[0]}.{requested[1]} (on PATH, /usr/local/bin or /usr/bin) and restart dockyard.",
            )
        interpreter = found[chosen]
        if chosen == requested:
            return interpreter, chosen, None
        present = ", ".join(f"{v[0]}.{v[1]} ({found[v]})" for v in sorted(found))
        warning = (
            f"{runtime} asked; this machine has {present}; running on {chosen[0]}.{chosen[1]}. "
            f"Install python{requested[0]}.{requested[1]} to match Foundry."
        )
        return interpreter, chosen, warning

    def _candidates(self) -> Iterator[Path]:
        directories = list(self._search_path) if self._search_path is not None else [
            Path(entry) for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
        if self._search_path is None:
            directories += EXTRA_DIRECTORIES
        seen: set[Path] = set()
        for directory in directories:
            if directory in seen or not directory.is_dir():
                continue
            seen.add(directory)
            try:
                names = sorted(p.name for p in directory.iterdir() if _VERSIONED_NAME.fullmatch(p.name))
            except OSError:
                continue
            for name in names:
                yield directory / name

    def _discover(self) -> dict[PythonVersion, Path]:
        candidates: dict[Path, Path] = {}  # real path -> first name found for it
        for candidate in self._candidates():
            try:
                real = candidate.resolve()
            except OSError:
                continue
            if real not in candidates and os.access(candidate, os.X_OK):
                candidates[real] = candidate
        # In parallel: a version manager's shims take a quarter of a second each to answer (or to refuse).
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(_probe, candidates.values()))
        found: dict[PythonVersion, Path] = {}
        for answer in answers:  # in search order: the first interpreter of each version wins
            if answer is not None and answer[0] not in found:
                found[answer[0]] = answer[1]
        if self._include_own:
            own = Path(getattr(sys, "_base_executable", "") or sys.executable)
            found.setdefault((sys.version_info[0], sys.version_info[1]), own)
        return found

    # -- preparing code -----------------------------------------------------------------------------

    def prepare(self, code: CodeWorkload, log: Log) -> PreparedCode:
        """Choose the interpreter and make the code's dependencies importable; build output goes to `log`.

        Raises RuntimeFailure("RemoteBuildFailed", …) when pip cannot install a remote_build version's
        requirements, with the last lines pip wrote.
        """
        interpreter, version, warning = self.choose(code.runtime)
        if warning is not None:
            log(f"dockyard: warning: {warning}")
        python_path: list[Path] = []
        packages = code.tree / "packages"
        if packages.is_dir():
            python_path.append(packages)
        if code.dependency_resolution == "remote_build":
            installed = self._dependencies(code, interpreter, version, log)
            if installed is not None:
                python_path.append(installed)
        return PreparedCode(interpreter=interpreter, python_path=tuple(python_path), warning=warning)

    def _dependencies(self, code: CodeWorkload, interpreter: Path, version: PythonVersion, log: Log) -> Path | None:
        plan = build_plan(code)
        if plan is None:
            log(NOTHING_TO_INSTALL)
            return None

        def build(target: Path) -> None:
            log(f"dockyard: remote_build: installing {plan.describe()} for Python {version[0]}.{version[1]} "
                f"({interpreter})")
            with plan.sources(code.tree) as arguments:
                self._pip(interpreter, version, target, arguments, code, log)

        key = plan.key(f"cpython-{version[0]}.{version[1]}-{platform.machine()}")
        built, fresh = build_once(self.cache_root, key, build)
        log(f"dockyard: remote_build: dependencies ready ({built})" if fresh else plan.cached_note(built))
        return built

    def _pip(self, interpreter: Path, version: PythonVersion, target: Path, arguments: list[str],
             code: CodeWorkload, log: Log) -> None:
        command = [*_pip_command(interpreter), "install", "--target", str(target), *PIP_OPTIONS, *arguments]
        environment = build_environment()
        tail: collections.deque[str] = collections.deque(maxlen=PIP_TAIL_LINES)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   text=True, errors="replace", env=environment,
                                   # In the code's tree: relative paths in requirements.txt mean what they meant.
                                   cwd=code.tree)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        watchdog = threading.Timer(self.build_timeout_seconds, kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                log(line)
            returncode = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if returncode == 0 and not timed_out.is_set():
            return
        raise build_failure(f"for {runtime_name(version)}", returncode, timed_out.is_set(), self.build_timeout_seconds,
                            tail, f"Python {version[0]}.{version[1]}")


# What pip may see of dockyard's environment: where to find packages and how to reach and trust them.
# Builds run code from the index (setup.py, build backends), which must not see dockyard's own secrets.
_BUILD_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "XDG_CONFIG_HOME",
                "XDG_CONFIG_DIRS", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def build_environment() -> dict[str, str]:
    """The environment of a pip build on the host: the names above and PIP_*, nothing else of dockyard's."""
    environment = {name: value for name, value in os.environ.items()
                   if name in _BUILD_NAMES or name.startswith("PIP_")}
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


NOTHING_TO_INSTALL = "dockyard: remote_build: no requirements.txt or pyproject.toml in the code; nothing to install"
PIP_OPTIONS = ("--no-input", "--disable-pip-version-check", "--progress-bar", "off", "--no-warn-script-location",
               "--root-user-action", "ignore")


def build_failure(where: str, returncode: int | None, timed_out: bool, timeout: float, tail: Iterable[str],
                  python: str) -> RuntimeFailure:
    """RemoteBuildFailed with pip's last lines, and what to do about it."""
    why = (f"took longer than {timeout:.0f} s and was stopped" if timed_out
           else f"failed (pip exited with {returncode})")
    return RuntimeFailure(
        REMOTE_BUILD_FAILED,
        f"Installing the code's requirements {where} {why}. Last lines of pip's output:\n" + "\n".join(tail)
        + f"\nPin versions that exist and resolve for {python}, or put the packages in the zip's packages/ "
        "folder and use dependency_resolution 'bundled'.",
    )


def build_once(root: Path, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """`root/key`, made by `build(directory)` unless it is there already; True when it was built now.

    The build fills a temporary directory that is renamed to `root/key` only when `build` returns, so
    a directory under that name is always complete; one build per key at a time, across threads and
    processes (a lock file); what a crashed build left is removed before the next one.
    """
    final = root / key
    if final.is_dir():
        _built("cached")
        return final, False
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{key}.lock"):
        if final.is_dir():  # built by whoever held the lock before us
            _built("cached")
            return final, False
        for stale in root.glob(f".{key}.*"):  # left by a build that crashed: never complete
            shutil.rmtree(stale, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            building.chmod(0o755)  # mkdtemp's 0700 would keep the directory from agents run as other users
            build(building)
            os.rename(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            _built("failed")
            raise
    _built("built")
    return final, True


# Hook: each dependency build's outcome, "built", "cached" or "failed" (api/metrics.py counts them). Both
# runtimes build through build_once, so one hook sees every remote_build.
_on_build: Callable[[str], None] | None = None


def on_build(callback: Callable[[str], None] | None) -> None:
    global _on_build
    _on_build = callback


def _built(outcome: str) -> None:
    if _on_build is not None:
        _on_build(outcome)


@dataclass(frozen=True)
class BuildPlan:
    """What a remote_build installs: requirements.txt, pyproject.toml's dependencies, or the project itself."""

    requirements: bytes | None
    pyproject: bytes | None
    # pyproject.toml's static [project].dependencies; None when they are dynamic (the project is then built).
    pyproject_dependencies: tuple[str, ...] | None
    content_hash: str

    def key(self, python: str) -> str:
        digest = hashlib.sha256()
        for part in (python.encode(), self.requirements or b"", self.pyproject or b""):
            digest.update(hashlib.sha256(part).digest())
        if self.builds_project:
            digest.update(self.content_hash.encode())  # the project itself is installed: all its code counts
        return digest.hexdigest()

    def describe(self) -> str:
        parts = []
        if self.requirements is not None:
            parts.append("requirements.txt")
        if self.pyproject is not None:
            parts.append("the pyproject.toml project" if self.builds_project else "pyproject.toml's dependencies")
        return " and ".join(parts)

    @property
    def builds_project(self) -> bool:
        """True when the project itself is installed (its dependencies are dynamic), not only what it names."""
        return self.pyproject is not None and self.pyproject_dependencies is None

    def cached_note(self, built: Path) -> str:
        return f"dockyard: remote_build: dependencies already built for {self.describe()} ({built})"

    def requirement_arguments(self, tree: str) -> list[str]:
        """pip's arguments for what the code names, with the code's tree at `tree` (a path where pip runs)."""
        arguments: list[str] = []
        if self.requirements is not None:
            arguments += ["--requirement", f"{tree}/requirements.txt"]
        if self.pyproject_dependencies is not None:
            arguments += list(self.pyproject_dependencies)
        return arguments

    @contextmanager
    def sources(self, tree: Path) -> Iterator[list[str]]:
        """pip's arguments; a project to build is copied first, since builds write into their source."""
        arguments = self.requirement_arguments(str(tree))
        if not self.builds_project:
            yield arguments
            return
        with tempfile.TemporaryDirectory(prefix="dockyard-project-") as scratch:
            copy = Path(scratch) / "project"
            shutil.copytree(tree, copy, ignore=shutil.ignore_patterns("packages"))
            for path in [copy, *copy.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o200)  # the tree is read-only; its copy must not be
            yield [*arguments, str(copy)]


def build_plan(code: CodeWorkload) -> BuildPlan | None:
    requirements_file = code.tree / "requirements.txt"
    pyproject_file = code.tree / "pyproject.toml"
    requirements = requirements_file.read_bytes() if requirements_file.is_file() else None
    pyproject = pyproject_file.read_bytes() if pyproject_file.is_file() else None
    if requirements is None and pyproject is None:
        return None
    dependencies: tuple[str, ...] | None = None
    if pyproject is not None:
        try:
            project = tomllib.loads(pyproject.decode()).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RuntimeFailure(REMOTE_BUILD_FAILED, f"pyproject.toml cannot be read: {exc}. Fix the file, "
                                 "or name the requirements in requirements.txt instead.") from None
        if isinstance(project, dict) and "dependencies" not in project.get("dynamic", []):
            dependencies = tuple(str(d) for d in project.get("dependencies", []))
    return BuildPlan(requirements, pyproject, dependencies, code.content_hash)


def _pip_command(interpreter: Path) -> list[str]:
    """dockyard's own pip acting on `interpreter` (Debian's python3.X may ship without pip), else its own."""
    if importlib.util.find_spec("pip") is None:
        return [str(interpreter), "-m", "pip"]
    return [sys.executable, "-m", "pip", "--python", str(interpreter)]


def _probe(candidate: Path) -> tuple[PythonVersion, Path] | None:
    """Ask an interpreter its version and real path (a pyenv shim answers with the binary it runs)."""
    try:
        answer = subprocess.run([str(candidate), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=10,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = answer.stdout.split("\n")
    if answer.returncode != 0 or len(lines) < 2:
        return None
    try:
        major, minor = (int(part) for part in lines[0].split())
    except ValueError:
        return None
    if major != 3:
        return None
    return (major, minor), Path(lines[1].strip() or candidate)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock held across processes (two dockyards may share a cache); released on any exit."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
