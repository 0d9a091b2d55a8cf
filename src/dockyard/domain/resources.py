"""CPU and memory requests, parsed as Kubernetes quantities and held to Foundry's limits.

Foundry documents CPU 0.5–4 (default 1) and memory 1Gi–8Gi (default 2Gi). Users write these the way
Kubernetes lets them (`"500m"`, `"1024Mi"`, `"2Gi"`, `"1.5"`), so we parse every spelling Kubernetes
accepts and compare exact decimals: `"8Gi"` must pass and `"8.5Gi"` must not, with no float fuzz.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from dockyard.domain.errors import BadRequest

DEFAULT_CPU = "1"
DEFAULT_MEMORY = "2Gi"

CPU_MIN = Decimal("0.5")
CPU_MAX = Decimal("4")
GI = 1024**3
MEMORY_MIN = Decimal(1 * GI)
MEMORY_MAX = Decimal(8 * GI)

_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}

# Kubernetes' quantity grammar: a signed decimal, then a binary or decimal SI suffix or a decimal exponent.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|(?P<exponent>[eE][+-]?[0-9]+))?"
)


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity string; ValueError if it is not one."""
    match = _QUANTITY.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"{text!r} is not a quantity") from exc
    if match["exponent"]:
        return number * (Decimal(10) ** int(match["exponent"][1:]))
    return number * _SUFFIXES[match["suffix"] or ""]


def validate_cpu(value: str | None) -> str:
    """The CPU request to store: the caller's spelling, once it is known to be within 0.5–4 cores."""
    if value is None or value == "":
        return DEFAULT_CPU
    text = str(value).strip()
    try:
        cores = parse_quantity(text)
    except ValueError:
        raise BadRequest(
            f"definition.cpu {text!r} is not a CPU quantity. Use cores such as \"1\", \"0.5\" or \"500m\"; "
            f"the allowed range is 0.5 to 4 (default {DEFAULT_CPU}).",
            code="InvalidCpu",
            param="definition.cpu",
        ) from None
    if not CPU_MIN <= cores <= CPU_MAX:
        raise BadRequest(
            f"definition.cpu {text!r} is outside the allowed range: cpu must be between 0.5 and 4 cores "
            f"(default {DEFAULT_CPU}).",
            code="InvalidCpu",
            param="definition.cpu",
        )
    return text


def validate_memory(value: str | None) -> str:
    """The memory request to store: the caller's spelling, once it is known to be within 1Gi–8Gi."""
    if value is None or value == "":
        return DEFAULT_MEMORY
    text = str(value).strip()
    try:
        size = parse_quantity(text)
    except ValueError:
        raise BadRequest(
            f"definition.memory {text!r} is not a memory quantity. Use a size such as \"2Gi\" or \"1024Mi\"; "
            f"the allowed range is 1Gi to 8Gi (default {DEFAULT_MEMORY}).",
            code="InvalidMemory",
            param="definition.memory",
        ) from None
    if not MEMORY_MIN <= size <= MEMORY_MAX:
        raise BadRequest(
            f"definition.memory {text!r} is outside the allowed range: memory must be between 1Gi and 8Gi "
            f"(default {DEFAULT_MEMORY}).",
            code="InvalidMemory",
            param="definition.memory",
        )
    return text


def cpu_cores(value: str) -> Decimal:
    """Cores for a validated CPU string; what a runtime turns into a CPU quota."""
    return parse_quantity(value)


def memory_bytes(value: str) -> int:
    """Bytes for a validated memory string; what a runtime turns into a memory limit."""
    return int(parse_quantity(value))
