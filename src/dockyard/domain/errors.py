"""Errors that cross the wire.

Every failure a caller can meet is one `DockyardError`: an Azure-style `code`, an HTTP status that fits,
and a message that says what to do about it. The API layer turns them into the Azure envelope
`{"error": {"code", "message"}}`; nothing below the API knows about HTTP beyond the status number.
"""

from __future__ import annotations


class DockyardError(Exception):
    status_code: int = 400
    code: str = "BadRequest"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


class BadRequest(DockyardError):
    status_code = 400
    code = "BadRequest"


class Unauthorized(DockyardError):
    status_code = 401
    code = "Unauthorized"


class Forbidden(DockyardError):
    status_code = 403
    code = "Forbidden"


class NotFound(DockyardError):
    status_code = 404
    code = "NotFound"


class Conflict(DockyardError):
    status_code = 409
    code = "Conflict"


class PayloadTooLarge(DockyardError):
    status_code = 413
    code = "PayloadTooLarge"


class ServiceUnavailable(DockyardError):
    """Something dockyard depends on cannot serve now (the local model not installed or not running)."""

    status_code = 503
    code = "ServiceUnavailable"


class InsufficientStorage(DockyardError):
    """The disk that holds dockyard's home is full. 507, not 503: nothing gets better by itself, and clients
    retry a 503 (azure-core three times, re-sending an upload's stream already read to its end)."""

    status_code = 507
    code = "InsufficientStorage"


# Codes users meet in Foundry, named as Foundry names them (DESIGN.md §3).
PROTOCOL_VERSION_NOT_SUPPORTED = "ProtocolVersionNotSupported"
INVALID_CONTAINER_IMAGE = "InvalidContainerImage"
CAPABILITY_HOST_NOT_FOUND = "CapabilityHostNotFound"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
OOM_KILLED = "OOMKilled"
CONTAINER_RUNTIME_UNAVAILABLE = "ContainerRuntimeUnavailable"
READINESS_TIMEOUT = "ReadinessTimeout"
REGISTRY_CONNECTION_NOT_FOUND = "RegistryConnectionNotFound"
