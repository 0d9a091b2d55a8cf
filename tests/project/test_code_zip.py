"""The code zip: what is left out (fixed list, .dockerignore, .agentignore, `!` exceptions, links out of the
project), and that the same tree always gives the same bytes."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import pytest

from dockyard.project.code_zip import CodeZipError, build_zip, project_files


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


PROJECT = {
    "agent.yaml": "kind: hosted\n",
    "main.py": "print('hi')\n",
    "requirements.txt": "httpx\n",
    "lib/helpers.py": "X = 1\n",
    "packages/httpx/__init__.py": "",
}


def test_the_fixed_list_leaves_out_vcs_environments_caches_and_secrets(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {**PROJECT, ".git/config": "x", ".venv/bin/python": "x", "venv/pyvenv.cfg": "x",
                                 "lib/__pycache__/helpers.cpython-311.pyc": "x", "old.pyc": "x", ".env": "KEY=1",
                                 ".env.local": "KEY=2", ".azure/dev/.env": "KEY=3", ".dockyard/build.json": "{}",
                                 ".pytest_cache/v": "x"})
    files, _ = project_files(root)
    assert files == sorted(PROJECT)


def test_dockerignore_and_agentignore_patterns(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {
        **PROJECT, "docs/guide.md": "x", "docs/keep.md": "x", "tests/test_main.py": "x", "data/big.bin": "x",
        "logs/a.log": "x", "b.log": "x", "Containerfile": "FROM x\n",
        ".dockerignore": "# build context\ntests/\n*.log\n/data\n",
        ".agentignore": "docs\n!docs/keep.md\nContainerfile\n",
    })
    files, _ = project_files(root)
    assert files == sorted([*PROJECT, "docs/keep.md", ".dockerignore", ".agentignore"])


def test_an_ignore_file_cannot_take_secrets_back_in(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {**PROJECT, ".env": "KEY=1", ".agentignore": "!.env\n"})
    assert ".env" not in project_files(root)[0]


def test_links_leading_out_of_the_project_are_left_out(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", PROJECT)
    (tmp_path / "secret.txt").write_text("s3cret")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "etc").symlink_to("/etc")
    (root / "alias.py").symlink_to(root / "main.py")
    files, outside = project_files(root)
    assert outside == ["etc", "leak.txt"]
    assert "alias.py" in files and "leak.txt" not in files
    with zipfile.ZipFile(build_zip(root, tmp_path / "a.zip").path) as archive:
        assert archive.read("alias.py") == b"print('hi')\n"


def test_the_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    first = tree(tmp_path / "one", PROJECT)
    time.sleep(1.1)
    second = tree(tmp_path / "two", dict(reversed(list(PROJECT.items()))))  # other mtimes, other creation order
    os.utime(second / "main.py", (0, 2_000_000_000))
    a = build_zip(first, tmp_path / "a.zip")
    b = build_zip(second, tmp_path / "b.zip")
    assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a.zip").read_bytes()).hexdigest()
    (second / "main.py").write_text("print('changed')\n")
    assert build_zip(second, tmp_path / "c.zip").sha256 != a.sha256


def test_entries_are_flat_sorted_with_fixed_times_and_modes(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {**PROJECT, "run.sh": "#!/bin/sh\n"})
    (root / "run.sh").chmod(0o755)
    result = build_zip(root, tmp_path / "a.zip")
    with zipfile.ZipFile(result.path) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted([*PROJECT, "run.sh"]) == list(result.files)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert modes["run.sh"] == 0o100755 and modes["main.py"] == 0o100644
    assert result.content_bytes == sum(len(c) for c in PROJECT.values()) + len("#!/bin/sh\n")


def test_nothing_to_upload_is_an_error(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"main.py": "x", ".agentignore": "*\n"})
    with pytest.raises(CodeZipError, match="nothing to upload"):
        build_zip(root, tmp_path / "a.zip")
