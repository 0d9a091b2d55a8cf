from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from dockyard.home import Home
from dockyard.identity.tokens import (
    FOUNDRY_AUDIENCE,
    ISSUER,
    InvalidToken,
    TokenAuthority,
    normalize_resource,
)


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def authority(key: ec.EllipticCurvePrivateKey) -> TokenAuthority:
    return TokenAuthority(key)


@pytest.mark.parametrize(
    ("resource", "normalized"),
    [
        ("https://ai.azure.com", "https://ai.azure.com"),
        ("https://ai.azure.com/", "https://ai.azure.com"),
        ("https://ai.azure.com/.default", "https://ai.azure.com"),
        (" https://ai.azure.com/.default ", "https://ai.azure.com"),
        ("https://management.azure.com/", "https://management.azure.com"),
    ],
)
def test_normalize_resource(resource: str, normalized: str) -> None:
    assert normalize_resource(resource) == normalized


@pytest.mark.parametrize("resource", ["https://ai.azure.com", "https://ai.azure.com/", "https://ai.azure.com/.default"])
def test_issue_and_verify(authority: TokenAuthority, resource: str) -> None:
    before = int(time.time())
    issued = authority.issue("user@example.com", resource)
    assert issued.resource == FOUNDRY_AUDIENCE
    assert before + 3600 <= issued.expires_on <= int(time.time()) + 3600

    principal = authority.verify(issued.access_token, audience="https://ai.azure.com")
    assert principal.subject == "user@example.com"
    assert principal.claims["aud"] == FOUNDRY_AUDIENCE
    assert principal.claims["iss"] == ISSUER
    assert principal.claims["exp"] == issued.expires_on


def test_token_is_an_es256_jwt_with_entra_claims(authority: TokenAuthority) -> None:
    token = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "ES256"
    assert header["kid"]
    assert {"iss", "aud", "sub", "oid", "tid", "iat", "nbf", "exp", "jti"} <= claims.keys()


def test_object_id_is_stable_per_subject(authority: TokenAuthority) -> None:
    oid = lambda subject: authority.verify(authority.issue(subject, FOUNDRY_AUDIENCE).access_token).claims["oid"]  # noqa: E731
    assert oid("alice") == oid("alice")
    assert oid("alice") != oid("bob")


def test_extra_claims_are_carried(authority: TokenAuthority) -> None:
    token = authority.issue("agent", FOUNDRY_AUDIENCE, extra_claims={"agent_name": "a1"}).access_token
    assert authority.verify(token).claims["agent_name"] == "a1"


def test_each_token_is_unique(authority: TokenAuthority) -> None:
    first = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    second = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    assert first != second


@pytest.mark.parametrize("lifetime_seconds", [-120, -31])
def test_expired_token(lifetime_seconds: int) -> None:
    authority = TokenAuthority(ec.generate_private_key(ec.SECP256R1()), lifetime_seconds=lifetime_seconds)
    token = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    with pytest.raises(InvalidToken) as info:
        authority.verify(token)
    assert "expired" in info.value.reason


def test_token_expired_within_the_leeway_is_accepted() -> None:
    authority = TokenAuthority(ec.generate_private_key(ec.SECP256R1()), lifetime_seconds=-5)
    token = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    assert authority.verify(token).subject == "user"


def test_token_from_another_authority(authority: TokenAuthority) -> None:
    other = TokenAuthority(ec.generate_private_key(ec.SECP256R1()))
    token = other.issue("user", FOUNDRY_AUDIENCE).access_token
    with pytest.raises(InvalidToken) as info:
        authority.verify(token)
    assert "signature" in info.value.reason


def test_token_for_another_audience(authority: TokenAuthority) -> None:
    token = authority.issue("user", "https://management.azure.com/.default").access_token
    with pytest.raises(InvalidToken) as info:
        authority.verify(token)
    assert "audience" in info.value.reason
    assert FOUNDRY_AUDIENCE in info.value.reason


def test_token_verified_for_another_audience(authority: TokenAuthority) -> None:
    token = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    with pytest.raises(InvalidToken):
        authority.verify(token, audience="https://management.azure.com")


@pytest.mark.parametrize(
    ("claims", "mentions"),
    [
        ({"iss": "https://login.microsoftonline.com/x/v2.0"}, "not issued by this dockyard"),
        ({"sub": None}, "malformed"),
        ({"iat": None}, "malformed"),
    ],
)
def test_token_with_wrong_claims(
    authority: TokenAuthority, key: ec.EllipticCurvePrivateKey, claims: dict[str, object], mentions: str
) -> None:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": FOUNDRY_AUDIENCE, "sub": "user", "iat": now, "exp": now + 600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    token = jwt.encode(payload, key, algorithm="ES256")  # signed by the right key, wrong content
    with pytest.raises(InvalidToken) as info:
        authority.verify(token)
    assert mentions in info.value.reason


def test_unsigned_token_is_refused(authority: TokenAuthority) -> None:
    claims = jwt.decode(authority.issue("user", FOUNDRY_AUDIENCE).access_token, options={"verify_signature": False})
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        authority.verify(token)


def test_tampered_token_is_refused(authority: TokenAuthority) -> None:
    header, payload, signature = authority.issue("user", FOUNDRY_AUDIENCE).access_token.split(".")
    forged = authority.issue("admin", FOUNDRY_AUDIENCE).access_token.split(".")[1]
    with pytest.raises(InvalidToken):
        authority.verify(f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer x.y.z", "x.y.z.w"])
def test_garbage_is_refused(authority: TokenAuthority, token: str) -> None:
    with pytest.raises(InvalidToken) as info:
        authority.verify(token)
    assert "malformed" in info.value.reason


def test_token_without_a_signature_is_refused(authority: TokenAuthority) -> None:
    header, payload, _ = authority.issue("user", FOUNDRY_AUDIENCE).access_token.split(".")
    with pytest.raises(InvalidToken) as info:
        authority.verify(f"{header}.{payload}.")
    assert "signature" in info.value.reason


# -- persisted key ------------------------------------------------------------------------------------


def test_from_home_persists_the_key(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    first = TokenAuthority.from_home(home)
    assert home.signing_key.is_file()
    assert stat.S_IMODE(home.signing_key.stat().st_mode) == 0o600
    key = home.signing_key.read_bytes()

    second = TokenAuthority.from_home(home)
    assert home.signing_key.read_bytes() == key
    assert second.verify(first.issue("user", FOUNDRY_AUDIENCE).access_token).subject == "user"
    assert first.verify(second.issue("other", FOUNDRY_AUDIENCE).access_token).subject == "other"


def test_from_home_passes_the_lifetime(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    assert TokenAuthority.from_home(home, lifetime_seconds=60).lifetime_seconds == 60


def test_different_homes_do_not_trust_each_other(tmp_path: Path) -> None:
    first = TokenAuthority.from_home(Home(tmp_path / "a").ensure())
    second = TokenAuthority.from_home(Home(tmp_path / "b").ensure())
    with pytest.raises(InvalidToken):
        second.verify(first.issue("user", FOUNDRY_AUDIENCE).access_token)


def test_from_home_refuses_a_key_of_the_wrong_kind(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    home.signing_key.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match="EC private key"):
        TokenAuthority.from_home(home)


def test_a_verified_token_stops_verifying_once_it_expires() -> None:
    # Verified tokens are remembered; the memory must not outlive the token. This one expired 28 s
    # ago, so it verifies within the 30 s leeway for one or two more seconds.
    authority = TokenAuthority(ec.generate_private_key(ec.SECP256R1()), lifetime_seconds=-28)
    token = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    assert authority.verify(token).subject == "user"
    time.sleep(2.5)
    with pytest.raises(InvalidToken) as info:
        authority.verify(token)
    assert "expired" in info.value.reason


def test_a_token_remembered_for_one_audience_is_still_refused_for_another(authority: TokenAuthority) -> None:
    token = authority.issue("user", FOUNDRY_AUDIENCE).access_token
    authority.verify(token)
    with pytest.raises(InvalidToken):
        authority.verify(token, audience="https://management.azure.com")
