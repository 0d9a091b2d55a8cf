"""What is wrong with an agent project's files: one `Finding` per problem, each with its line and a fix.

Loading raises `ManifestError` carrying the findings that stop it; `dockyard validate` prints the same
findings. Keeping them one type means a deploy that refuses a file says exactly what validate would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One problem in agent.yaml (or dockyard.yaml): what is wrong, how to fix it, and where."""

    rule: str
    severity: str  # "error" | "warning"
    message: str
    fix: str
    line: int | None
    file: Path | None = None  # set when the problem is in another file than agent.yaml (dockyard.yaml)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "line": self.line,
            "file": str(self.file) if self.file else None,
        }


class ManifestError(Exception):
    """agent.yaml cannot be used as it is; `findings` says why, each with its line."""

    def __init__(self, path: Path, findings: list[Finding]) -> None:
        self.path = path
        self.findings = sorted(findings, key=by_line)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = []
        for f in self.findings:
            where = f"{f.file or self.path}:{f.line}" if f.line else str(f.file or self.path)
            lines.append(f"{where}: {f.severity}: {f.message} Fix: {f.fix}")
        return "\n".join(lines)


class ManifestFileError(ManifestError):
    """There is no agent.yaml to read (missing, a folder without one, or unreadable)."""


def by_line(finding: Finding) -> tuple[str, int]:
    """Sort key: agent.yaml first, then dockyard.yaml; top of the file first."""
    return (str(finding.file or ""), finding.line or 0)
