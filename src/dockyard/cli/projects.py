"""Reading the agent project a workflow command runs in, with agent.yaml's problems said the way validate says them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.cli.output import EXIT_USAGE, fail, note

if TYPE_CHECKING:
    from dockyard.project.manifest import Manifest


def load_project(path: Path, *, check: bool = False) -> Manifest:
    """agent.yaml at `path` (a file, or the folder holding it); exits 2 with each problem and its line.

    `check` runs every `dockyard validate` rule first (ranges, secrets, names), for commands that send the
    definition somewhere: a deploy then fails here, with lines and fixes, rather than as a 400 later."""
    from dockyard.project.manifest import ManifestError, find_manifest, load_manifest  # YAML: when a command runs

    try:
        manifest_path = find_manifest(path)
        if check:
            from dockyard.project.validation import validate

            findings = validate(manifest_path)
            errors = [f for f in findings if f.severity == "error"]
            if errors:
                raise ManifestError(manifest_path, errors)
        return load_manifest(manifest_path)
    except ManifestError as exc:
        fail(f"{exc.path} cannot be used as it is:", EXIT_USAGE,
             details=str(exc) + "\nRun `dockyard validate` for the full report.")


def warn_about(manifest: Manifest) -> None:
    """Warnings found while loading (defaults applied and the like), one line each on stderr."""
    for finding in manifest.findings:
        where = f"{finding.file or manifest.path}:{finding.line}" if finding.line else str(manifest.path)
        note(f"{where}: warning: {finding.message}")
