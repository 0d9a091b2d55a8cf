"""Container image references, parsed with the OCI distribution grammar.

A reference is checked when a version is created, not when the runtime first pulls it, so a typo
fails fast with `InvalidContainerImage` instead of minutes later as a pull error. The grammar is the
one `distribution/reference` documents (name components, optional registry host and port, tag,
digest), which is what docker, podman and every OCI registry agree on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.domain.errors import INVALID_CONTAINER_IMAGE, BadRequest

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_MAX_NAME = 255


@dataclass(frozen=True)
class ImageReference:
    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def is_floating(self) -> bool:
        """True where the reference names no fixed content: no digest, and `latest` or no tag at all."""
        return self.digest is None and self.tag in (None, "latest")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_registry(component: str) -> bool:
    # The docker rule: the first component is a registry host if it has a dot or a port, or is localhost.
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_image_reference(text: str) -> ImageReference:
    if not isinstance(text, str) or not text.strip():
        raise _invalid(text, "the image is empty")
    match = _REFERENCE.fullmatch(text)
    if match is None:
        raise _invalid(
            text,
            "it is not an OCI image reference (registry/repository:tag or registry/repository@sha256:…; "
            "repository names are lowercase)",
        )
    domain, path = match["domain"], match["path"]
    if domain is not None and not _looks_like_registry(domain):
        # "team/app" is a two-component repository on the default registry, not a host named "team".
        path, domain = f"{domain}/{path}", None
        if not _PATH.fullmatch(path):
            raise _invalid(text, "repository names are lowercase letters, digits and separators")
    if len((f"{domain}/" if domain else "") + path) > _MAX_NAME:
        raise _invalid(text, f"the repository name is longer than {_MAX_NAME} characters")
    return ImageReference(registry=domain, repository=path, tag=match["tag"], digest=match["digest"])


def _invalid(text: object, why: str) -> BadRequest:
    return BadRequest(
        f"Invalid container image {text!r}: {why}. Give the full reference of an image in your registry, "
        "for example \"myregistry.azurecr.io/my-agent:v1\".",
        code=INVALID_CONTAINER_IMAGE,
        param="definition.image",
    )
