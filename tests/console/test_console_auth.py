"""Console sign-in: one-time links, the signed session cookie, CSRF tokens, against a real home folder."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from dockyard.console.auth import LINK_LIFETIME_SECONDS, ConsoleAuth, ConsoleSession
from dockyard.home import Home


def auth(tmp_path: Path) -> ConsoleAuth:
    return ConsoleAuth(Home(tmp_path / "home").ensure())


def test_a_link_signs_in_once_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    console = auth(tmp_path)
    token, expires_at = console.mint_link_token(now=1000)
    assert expires_at == 1000 + LINK_LIFETIME_SECONDS
    stored = (tmp_path / "home" / "console-links.json")
    assert token not in stored.read_text() and len(json.loads(stored.read_text())) == 1
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    session = console.redeem(token, now=1001)
    assert session is not None and session.expires_at > 1001
    assert console.redeem(token, now=1002) is None  # used
    assert json.loads(stored.read_text()) == {}


def test_an_expired_or_unknown_link_opens_nothing(tmp_path: Path) -> None:
    console = auth(tmp_path)
    token, expires_at = console.mint_link_token(now=1000)
    assert console.redeem(token, now=expires_at) is None
    assert console.redeem("made-up", now=1000) is None


def test_links_outlive_a_restart_and_another_instance_of_the_same_home(tmp_path: Path) -> None:
    token, _ = auth(tmp_path).mint_link_token(now=1000)
    assert auth(tmp_path).redeem(token, now=1001) is not None  # `dockyard console` minted, the server redeems


def test_the_cookie_verifies_and_a_forged_or_edited_one_does_not(tmp_path: Path) -> None:
    console = auth(tmp_path)
    session = ConsoleSession(id="ab" * 16, expires_at=5000)
    cookie = console.cookie_value(session)
    assert console.session_from_cookie(cookie, now=4000) == session
    assert console.session_from_cookie(cookie, now=5000) is None  # expired
    payload, _, mac = cookie.rpartition(".")
    assert console.session_from_cookie(payload.replace("5000", "9999") + "." + mac, now=4000) is None
    assert console.session_from_cookie(f"{payload}.{'0' * 64}", now=4000) is None
    assert console.session_from_cookie("v1.x.y", now=4000) is None
    assert console.session_from_cookie("", now=4000) is None
    other_home = ConsoleAuth(Home(tmp_path / "other").ensure())
    assert other_home.session_from_cookie(cookie, now=4000) is None  # another dockyard's key


def test_csrf_tokens_belong_to_their_session(tmp_path: Path) -> None:
    console = auth(tmp_path)
    one, two = ConsoleSession("a" * 32, 5000), ConsoleSession("b" * 32, 5000)
    assert console.csrf_valid(one, console.csrf_token(one))
    assert not console.csrf_valid(one, console.csrf_token(two))
    assert not console.csrf_valid(one, None) and not console.csrf_valid(one, "")
