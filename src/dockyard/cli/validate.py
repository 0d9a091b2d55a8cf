"""`dockyard validate`: agent.yaml checked against Foundry's rules, for people (a table) and CI (--json, exit code)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dockyard.project.findings import Finding

EXIT_CLEAN = 0  # no errors (warnings allowed)
EXIT_ERRORS = 1  # agent.yaml has errors
EXIT_NO_FILE = 2  # no agent.yaml to read


def validate_command(
    path: Path = typer.Argument(
        Path("."), help="agent.yaml (or agent.yml), or the folder that holds it.", show_default=True
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the findings as JSON (for CI and tools)."),
) -> None:
    """Check agent.yaml against Foundry's rules before anything is sent.

    Each finding names its rule, its line in the file and how to fix it.
    Errors (exit 1):

    \b
    - yaml, duplicate-key: the file parses, and says each key once
    - schema: Microsoft's published AgentSchema (ContainerAgent v1.0)
    - agent-name: letters, digits, hyphens; a letter first; at most 63
    - protocol-version: a protocol and version dockyard and Foundry serve
    - cpu-range, memory-range: cpu 0.5 to 4, memory 1Gi to 8Gi
    - image-reference, image-source, dockerfile-missing: something to run
    - code-and-image, code-runtime, code-entry-point, code-dependencies:
      codeConfiguration (python_3_11..3_14, an entry point that is there,
      requirements.txt for remote_build, no image beside it)
    - secret-name: *KEY*, *SECRET*, *PASSWORD*, *TOKEN* with a plain value
    - secret-value: values shaped like keys, JWTs, connection strings
    - env-name, env-value-type, env-shape, env-duplicate: variables' form
    - tool-fields: a type; for MCP, server_label and an http(s) server_url
    - idle-timeout-range: 120 to 14400 seconds
    - dockyard-settings: dockyard.yaml beside agent.yaml

    Warnings (exit 0): image-tag-latest, image-tag-missing (accepted, not
    reproducible), secret-entropy (long base64/hex), env-placeholder
    ({{...}} left as written), env-form, env-key (what azd would ignore),
    resources-default, protocols-default (missing, azd's defaults apply),
    code-bundled-packages (bundled with requirements.txt and no packages/).

    Use ${VAR} references for secrets: they are resolved at deploy time.

    Exit codes: 0 no errors, 1 errors found, 2 no agent.yaml to read.
    """
    from dockyard.project.manifest import ManifestFileError, find_manifest
    from dockyard.project.validation import validate  # jsonschema loads only when this command runs

    try:
        manifest_path = find_manifest(path)
        findings = validate(manifest_path)
    except ManifestFileError as exc:
        if json_output:
            typer.echo(json.dumps(_report(exc.path, exc.findings), indent=2))
        for finding in exc.findings:
            typer.echo(f"dockyard: error: {finding.message} {finding.fix}", err=True)
        raise typer.Exit(EXIT_NO_FILE) from None
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if json_output:
        typer.echo(json.dumps(_report(manifest_path, findings), indent=2))
    else:
        if findings:
            _table(manifest_path, findings)
        summary = f"{manifest_path}: {_count(errors, 'error')}, {_count(warnings, 'warning')}"
        if errors:
            typer.echo(f"dockyard: error: {summary}", err=True)
        else:
            typer.echo(f"{summary}: valid")
    raise typer.Exit(EXIT_ERRORS if errors else EXIT_CLEAN)


def _report(path: Path, findings: list[Finding]) -> dict[str, object]:
    errors = sum(f.severity == "error" for f in findings)
    return {
        "path": str(path),
        "valid": errors == 0,
        "errors": errors,
        "warnings": len(findings) - errors,
        "findings": [f.to_json() for f in findings],
    }


def _table(path: Path, findings: list[Finding]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Rich leaves out colour by itself when stdout is not a terminal (and honours NO_COLOR); a CI log is
    # not 80 columns wide, so give the table room there instead of folding every message.
    console = Console(file=sys.stdout)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=sys.stdout, width=160)
    table = Table(title=str(path), title_justify="left", show_lines=True)
    table.add_column("line", justify="right", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("problem", overflow="fold")
    table.add_column("fix", overflow="fold")
    for f in findings:
        where = str(f.line) if f.line else "-"
        if f.file is not None and f.file != path:
            where = f"{f.file.name}:{where}"
        severity = "[red]error[/red]" if f.severity == "error" else "[yellow]warning[/yellow]"
        table.add_row(where, severity, f.rule, escape(f.message), escape(f.fix))
    console.print(table)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
