"""Entra-style access tokens: issued by the managed-identity endpoint, checked on every API call.

Tokens are JWTs signed with an ES256 key kept in the home, so tokens outlive a restart exactly as
long as their expiry says. Verification checks signature, expiry, issuer and audience, and reports
which of those failed so a 401 can say what to do.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.home import Home, write_private

FOUNDRY_AUDIENCE = "https://ai.azure.com"
DEFAULT_LIFETIME_SECONDS = 3600
ISSUER = "https://dockyard.local/identity"
# Azure's tenant for tokens no real tenant issued; the value only has to be stable.
LOCAL_TENANT = "00000000-0000-0000-0000-000000000000"
_ALGORITHM = "ES256"
_LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The token is not acceptable; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_on: int
    resource: str


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str
    claims: dict[str, Any]


def normalize_resource(resource: str) -> str:
    """`https://ai.azure.com/.default` and `https://ai.azure.com/` both mean `https://ai.azure.com`."""
    resource = resource.strip()
    if resource.endswith("/.default"):
        resource = resource[: -len("/.default")]
    return resource.rstrip("/")

_VERIFIED_CACHE_SIZE = 4096


class TokenAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, *, lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS) -> None:
        self._key = key
        self._public_key = key.public_key()
        public_der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._kid = hashlib.sha256(public_der).hexdigest()[:16]
        self.lifetime_seconds = lifetime_seconds
        # Tokens already verified, until they expire: a client sends the same token for an hour, and
        # checking its ES256 signature again on every request is the costliest step of a warm call.
        self._verified: dict[tuple[str, str], Principal] = {}

    @classmethod
    def from_home(cls, home: Home, *, lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS) -> TokenAuthority:
        path = home.signing_key
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} does not hold an EC private key; delete it to make a new one.")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            write_private(
                path,
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
        return cls(key, lifetime_seconds=lifetime_seconds)

    def issue(self, subject: str, resource: str, *, extra_claims: dict[str, Any] | None = None) -> IssuedToken:
        now = int(time.time())
        audience = normalize_resource(resource)
        expires_on = now + self.lifetime_seconds
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "sub": subject,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dockyard:{subject}")),
            "tid": LOCAL_TENANT,
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "jti": uuid.uuid4().hex,
            **(extra_claims or {}),
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self._kid})
        return IssuedToken(access_token=token, expires_on=expires_on, resource=audience)

    def verify(self, token: str, *, audience: str = FOUNDRY_AUDIENCE) -> Principal:
        known = self._verified.get((token, audience))
        if known is not None and time.time() < known.claims["exp"] + _LEEWAY_SECONDS:
            return known
        principal = self._verify(token, audience)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[(token, audience)] = principal
        return principal

    def _verify(self, token: str, audience: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired; request a new one from the identity endpoint.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"The access token is not for this audience; request a token for {audience}.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The access token was not issued by this dockyard.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken(
                "The access token's signature does not verify: it was not issued by this dockyard."
            ) from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The access token is malformed ({exc}).") from None
        return Principal(subject=claims["sub"], claims=claims)
