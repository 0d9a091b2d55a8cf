"""Interpreters and dependencies for code-based versions, with real interpreters, real pip and PyPI.

The interpreters a test sees are put in a directory of its own (links to real interpreters), so what it
asserts does not depend on what else this machine has installed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.domain.code_runtimes import REMOTE_BUILD_FAILED
from dockyard.domain.errors import BadRequest
from dockyard.runtime import python_runtimes
from dockyard.runtime.base import CodeWorkload, RuntimeFailure
from dockyard.runtime.python_runtimes import HostPythons, PreparedCode, build_once, runtime_image

OWN = Path(getattr(sys, "_base_executable", "") or sys.executable).resolve()
OWN_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
# A tiny pure-Python package with no dependencies, pinned.
SIX = "six==1.17.0"


class Lines(list[str]):
    """The log stream a version would get: every line prepare() writes."""

    def __call__(self, line: str) -> None:
        self.append(line)


def read_only(tree: Path) -> Path:
    """As dockyard stores an unpacked bundle: nothing in it may be written."""
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return tree


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "tree"
    root.mkdir()
    yield root
    for path in [root, *root.rglob("*")]:  # so pytest can remove it
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def only_own(tmp_path: Path) -> HostPythons:
    """A machine whose only interpreter is the one running the tests, found as python3.X on its path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{OWN_VERSION}").symlink_to(OWN)
    return HostPythons(tmp_path / "cache", search_path=[bin_dir], include_own=False)


def code(tree: Path, runtime: str = "python_3_11", mode: str = "bundled", content_hash: str = "0" * 64) -> CodeWorkload:
    return CodeWorkload(content_hash=content_hash, tree=tree, runtime=runtime, entry_point=("python", "main.py"),
                        dependency_resolution=mode)


def run(prepared: PreparedCode, tree: Path, entry_point: tuple[str, ...] = ("python", "main.py")) -> str:
    """Run the code as a process runtime would: the chosen interpreter, its PYTHONPATH, the tree as cwd."""
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(map(str, prepared.python_path))}
    done = subprocess.run(prepared.command(entry_point), cwd=tree, env=environment, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def cache_entries(hosts: HostPythons) -> list[str]:
    return sorted(p.name for p in hosts.cache_root.iterdir()) if hosts.cache_root.exists() else []


# -- images and names --------------------------------------------------------------------------------


def test_runtime_image_is_the_official_slim_python_unless_overridden() -> None:
    assert runtime_image("python_3_12") == "docker.io/library/python:3.12-slim"
    assert runtime_image("python_3_14") == "docker.io/library/python:3.14-slim"
    assert runtime_image("python_3_12", "localhost/dockyard-ci/debian-python:bookworm") == (
        "localhost/dockyard-ci/debian-python:bookworm")


def test_an_unknown_runtime_is_refused_even_with_an_override() -> None:
    with pytest.raises(BadRequest, match="python_3_11, python_3_12"):
        runtime_image("python_3_9", "localhost/anything:1")


# -- interpreters ------------------------------------------------------------------------------------


def test_exact_match_runs_without_a_warning(only_own: HostPythons, tree: Path) -> None:
    (tree / "main.py").write_text("import sys; print(sys.version_info[:2])")
    log = Lines()
    prepared = only_own.prepare(code(read_only(tree), f"python_{OWN_VERSION.replace('.', '_')}"), log)
    assert prepared.warning is None
    assert not [line for line in log if "warning" in line]
    assert Path(prepared.interpreter).resolve() == OWN
    assert run(prepared, tree) == str(sys.version_info[:2])


def test_a_missing_version_runs_on_the_nearest_with_a_visible_warning(only_own: HostPythons, tree: Path) -> None:
    (tree / "main.py").write_text("import sys; print(sys.version_info[:2])")
    log = Lines()
    prepared = only_own.prepare(code(read_only(tree), "python_3_14"), log)
    expected = (f"python_3_14 asked; this machine has {OWN_VERSION} ({prepared.interpreter}); running on "
                f"{OWN_VERSION}. Install python3.14 to match Foundry.")
    assert prepared.warning == expected
    assert log == [f"dockyard: warning: {expected}"]  # in the version's log stream, not only in a field
    assert run(prepared, tree) == str(sys.version_info[:2])


def test_the_newest_below_is_chosen_among_several_real_interpreters(tmp_path: Path) -> None:
    """Needs a second and third interpreter (pyenv's, when this machine has them)."""
    others = {minor: Path(f"/root/.pyenv/versions/{v}/bin/python3.{minor}")
              for minor, v in ((12, "3.12.1"), (13, "3.13.0"))}
    if not all(p.exists() for p in others.values()) or sys.version_info[:2] != (3, 11):
        pytest.skip("needs python 3.11 running the tests and pyenv's 3.12.1 and 3.13.0")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(OWN)
    for minor, path in others.items():
        (bin_dir / f"python3.{minor}").symlink_to(path)
    hosts = HostPythons(tmp_path / "cache", search_path=[bin_dir], include_own=False)
    assert sorted(hosts.interpreters()) == [(3, 11), (3, 12), (3, 13)]
    assert hosts.choose("python_3_12")[1:] == ((3, 12), None)
    interpreter, version, warning = hosts.choose("python_3_14")
    assert version == (3, 13) and interpreter.resolve() == others[13].resolve()
    assert warning is not None and "running on 3.13" in warning and "3.11 (" in warning and "3.12 (" in warning


def test_default_discovery_finds_dockyards_own_base_interpreter(tmp_path: Path) -> None:
    found = HostPythons(tmp_path / "cache").interpreters()
    assert (sys.version_info[0], sys.version_info[1]) in found
    if sys.prefix != sys.base_prefix:
        # Never the virtual environment's python: an agent must not import dockyard's own packages.
        assert not str(found[(sys.version_info[0], sys.version_info[1])]).startswith(sys.prefix + os.sep)


def test_a_broken_interpreter_on_the_path_is_skipped(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "python3.13"
    broken.write_text("#!/bin/sh\necho 'python3.13: command not found' >&2\nexit 127\n")
    broken.chmod(0o755)
    (bin_dir / f"python{OWN_VERSION}").symlink_to(OWN)
    hosts = HostPythons(tmp_path / "cache", search_path=[bin_dir], include_own=False)
    assert list(hosts.interpreters()) == [(sys.version_info[0], sys.version_info[1])]


def test_no_interpreter_at_all_fails_saying_what_to_install(tmp_path: Path, tree: Path) -> None:
    hosts = HostPythons(tmp_path / "cache", search_path=[tmp_path], include_own=False)
    with pytest.raises(RuntimeFailure) as raised:
        hosts.prepare(code(tree, "python_3_12"), Lines())
    assert "Install python3.12" in raised.value.message


def test_entry_point_python_names_become_the_interpreter() -> None:
    prepared = PreparedCode(interpreter=Path("/opt/py/bin/python3.13"), python_path=())
    for name in ("python", "python3", "python3.12"):
        assert prepared.command([name, "-m", "app"]) == ["/opt/py/bin/python3.13", "-m", "app"]
    assert prepared.command(["uvicorn", "app:app"]) == ["uvicorn", "app:app"]


# -- bundled -----------------------------------------------------------------------------------------


def test_bundled_code_imports_from_its_packages_folder(only_own: HostPythons, tree: Path) -> None:
    (tree / "packages" / "greeting").mkdir(parents=True)
    (tree / "packages" / "greeting" / "__init__.py").write_text("WORD = 'bundled hello'")
    (tree / "main.py").write_text("import greeting; print(greeting.WORD)")
    prepared = only_own.prepare(code(read_only(tree)), Lines())
    assert prepared.python_path == (tree / "packages",)
    assert run(prepared, tree) == "bundled hello"
    assert cache_entries(only_own) == []  # nothing built for bundled code


def test_bundled_code_without_packages_has_an_empty_path(only_own: HostPythons, tree: Path) -> None:
    (tree / "main.py").write_text("print('plain')")
    prepared = only_own.prepare(code(read_only(tree)), Lines())
    assert prepared.python_path == ()
    assert run(prepared, tree) == "plain"


# -- remote_build ------------------------------------------------------------------------------------


def test_remote_build_installs_requirements_once_then_reuses_them(only_own: HostPythons, tree: Path) -> None:
    (tree / "requirements.txt").write_text(SIX + "\n")
    (tree / "main.py").write_text("import six; print(six.__version__)")
    read_only(tree)
    first = Lines()
    prepared = only_own.prepare(code(tree, mode="remote_build"), first)
    assert any("Successfully installed six-1.17.0" in line for line in first), first  # pip's own lines, streamed
    assert run(prepared, tree) == "1.17.0"
    built = prepared.python_path[-1]
    assert built.parent == only_own.cache_root
    stamp = built.stat().st_mtime_ns

    again = Lines()
    second = only_own.prepare(code(tree, mode="remote_build", content_hash="1" * 64), again)
    assert second.python_path == prepared.python_path
    assert again == [f"dockyard: remote_build: dependencies already built for requirements.txt ({built})"]
    assert built.stat().st_mtime_ns == stamp
    # The build is the only thing in the cache besides its lock: no temporary directory left behind.
    assert cache_entries(only_own) == sorted([built.name, f"{built.name}.lock"])


def test_every_build_reports_its_outcome_for_the_metrics(tmp_path: Path) -> None:
    outcomes: list[str] = []
    python_runtimes.on_build(outcomes.append)

    def fill(target: Path) -> None:
        (target / "installed").write_text("yes")

    def fail(target: Path) -> None:
        raise RuntimeError("pip failed")

    try:
        built, fresh = build_once(tmp_path, "one", fill)
        assert fresh and (built / "installed").read_text() == "yes"
        assert build_once(tmp_path, "one", fail) == (built, False)  # already there: the build is not run
        with pytest.raises(RuntimeError):
            build_once(tmp_path, "two", fail)
    finally:
        python_runtimes.on_build(None)
    assert outcomes == ["built", "cached", "failed"]


def test_a_requirement_that_does_not_resolve_fails_with_pips_last_lines(only_own: HostPythons, tree: Path) -> None:
    (tree / "requirements.txt").write_text("no-such-package-dockyard==0.0.1\n")
    (tree / "main.py").write_text("print('never')")
    log = Lines()
    with pytest.raises(RuntimeFailure) as raised:
        only_own.prepare(code(read_only(tree), mode="remote_build"), log)
    failure = raised.value
    assert failure.code == REMOTE_BUILD_FAILED
    assert "No matching distribution found for no-such-package-dockyard==0.0.1" in failure.message
    assert "pip exited with 1" in failure.message
    assert "packages/ folder" in failure.message  # how to fix it
    assert any("no-such-package-dockyard" in line for line in log)  # the build log went to the stream too
    # Nothing that looks complete (nor any temporary directory) is left: only the lock file.
    assert [name for name in cache_entries(only_own) if not name.endswith(".lock")] == []


def test_pyproject_dependencies_are_installed_without_building_the_project(only_own: HostPythons,
                                                                           tree: Path) -> None:
    (tree / "pyproject.toml").write_text(
        '[project]\nname = "agent"\nversion = "0.1"\ndependencies = ["six==1.17.0"]\n')
    (tree / "main.py").write_text("import six; print(six.__version__)")
    log = Lines()
    prepared = only_own.prepare(code(read_only(tree), mode="remote_build"), log)
    assert run(prepared, tree) == "1.17.0"
    assert not (prepared.python_path[-1] / "agent-0.1.dist-info").exists()
    assert any("pyproject.toml's dependencies" in line for line in log)


def test_a_pyproject_with_dynamic_dependencies_is_built_from_a_copy(only_own: HostPythons, tree: Path) -> None:
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "agent"\nversion = "0.1"\ndynamic = ["dependencies"]\n'
        '[tool.setuptools]\npy-modules = ["main"]\n'
        '[tool.setuptools.dynamic]\ndependencies = {file = ["deps.txt"]}\n')
    (tree / "deps.txt").write_text(SIX + "\n")
    (tree / "main.py").write_text("import six; print(six.__version__)")
    before = sorted(p.name for p in tree.rglob("*"))
    prepared = only_own.prepare(code(read_only(tree), mode="remote_build"), Lines())
    assert run(prepared, tree) == "1.17.0"
    assert (prepared.python_path[-1] / "agent-0.1.dist-info").is_dir()
    assert sorted(p.name for p in tree.rglob("*")) == before  # the read-only tree was never written to


def test_a_build_sees_none_of_dockyards_secrets(only_own: HostPythons, tree: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A build runs code from the code and the index (here the project's setup.py); it gets pip's environment."""
    monkeypatch.setenv("DOCKYARD_TEST_SECRET", "s3cret")
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "agent"\nversion = "0.1"\ndynamic = ["dependencies"]\n'
        '[tool.setuptools]\npy-modules = ["seen"]\n'
        '[tool.setuptools.dynamic]\ndependencies = {file = ["deps.txt"]}\n')
    (tree / "deps.txt").write_text("")
    (tree / "setup.py").write_text(
        "import os\nfrom setuptools import setup\n"
        "open('seen.py', 'w').write(f\"SECRET = {os.environ.get('DOCKYARD_TEST_SECRET')!r}\\n\"\n"
        "    f\"HAS_PATH = {'PATH' in os.environ}\\n\")\n"
        "setup()\n")
    prepared = only_own.prepare(code(read_only(tree), mode="remote_build"), Lines())
    seen = (prepared.python_path[-1] / "seen.py").read_text()
    assert "HAS_PATH = True" in seen  # the check can see what it was given
    assert "SECRET = None" in seen


def test_concurrent_builds_of_the_same_requirements_run_pip_once(only_own: HostPythons, tree: Path) -> None:
    (tree / "requirements.txt").write_text(SIX + "\n")
    read_only(tree)
    logs = [Lines() for _ in range(3)]
    results: list[PreparedCode | BaseException] = []

    def prepare(log: Lines) -> None:
        try:
            results.append(only_own.prepare(code(tree, mode="remote_build"), log))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=prepare, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(isinstance(result, PreparedCode) for result in results), results
    assert len({result.python_path for result in results if isinstance(result, PreparedCode)}) == 1
    installs = [log for log in logs if any("Successfully installed" in line for line in log)]
    assert len(installs) == 1


def test_a_crashed_build_is_never_taken_for_a_finished_one(only_own: HostPythons, tree: Path) -> None:
    (tree / "requirements.txt").write_text(SIX + "\n")
    first = only_own.prepare(code(read_only(tree), mode="remote_build"), Lines())
    built = first.python_path[-1]
    # A build killed half-way leaves its temporary directory; a finished one was renamed away already.
    shutil.rmtree(built)
    leftover = only_own.cache_root / f".{built.name}.crashed"
    leftover.mkdir()
    (leftover / "half.py").write_text("")
    log = Lines()
    again = only_own.prepare(code(tree, mode="remote_build"), log)
    assert any("Successfully installed six-1.17.0" in line for line in log)  # rebuilt, not trusted
    assert again.python_path[-1] == built and not leftover.exists()


def test_remote_build_without_requirements_says_so_and_runs(only_own: HostPythons, tree: Path) -> None:
    (tree / "main.py").write_text("print('no deps')")
    log = Lines()
    prepared = only_own.prepare(code(read_only(tree), mode="remote_build"), log)
    assert prepared.python_path == ()
    assert log == ["dockyard: remote_build: no requirements.txt or pyproject.toml in the code; nothing to install"]
    assert run(prepared, tree) == "no deps"
