"""The home's permissions: private whether dockyard made the folder or found it (issue 13)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dockyard.home import Home, HomeError
from dockyard.identity.tls import ensure_tls
from dockyard.identity.tokens import TokenAuthority
from dockyard.store.database import migrate, open_engine, sqlite_url


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def start_like_dockyard(root: Path) -> Home:
    home = Home(root).ensure()
    ensure_tls(home)
    TokenAuthority.from_home(home)
    home.identity_secret()
    home.instance_id()
    home.write_server_record({"pid": 1})
    migrate(open_engine(sqlite_url(home.database)))
    return home


def test_a_new_home_is_private_and_so_is_everything_in_it_but_the_certificates(tmp_path: Path) -> None:
    home = start_like_dockyard(tmp_path / "home")
    assert mode(home.root) == 0o700 and mode(home.tls) == 0o700
    public = {home.ca_cert, home.server_cert, home.ca_bundle}
    files = [p for folder in (home.root, home.tls) for p in folder.iterdir() if p.is_file()]
    assert home.database in files and any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert mode(path) == (0o644 if path in public else 0o600), path


def test_an_existing_open_home_is_tightened_on_start(tmp_path: Path) -> None:
    root = tmp_path / "home"
    home = start_like_dockyard(root)
    root.chmod(0o755)
    home.tls.chmod(0o755)
    for path in [home.database, home.signing_key, home.server_record, home.root / "instance-id"]:
        path.chmod(0o644)
    start_like_dockyard(root)
    assert mode(root) == 0o700 and mode(home.tls) == 0o700
    for path in [home.database, home.signing_key, home.server_record, home.root / "instance-id"]:
        assert mode(path) == 0o600, path


@pytest.mark.parametrize("open_mode", [0o777, 0o775, 0o757])
def test_a_home_others_can_write_is_refused(tmp_path: Path, open_mode: int) -> None:
    root = tmp_path / "home"
    root.mkdir()
    root.chmod(open_mode)
    with pytest.raises(HomeError, match="chmod 700"):
        Home(root).ensure()
    assert mode(root) == open_mode  # left as found: the owner decides after checking what is inside
