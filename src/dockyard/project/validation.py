"""`dockyard validate`: Foundry's rules applied to agent.yaml before anything is sent anywhere.

The point is to meet, on the developer's machine or in CI, every refusal Foundry (or dockyard) would give
at deploy time, each with the line to change and how. So the rules are not re-written here: CPU and memory
ranges, protocol versions, image references, agent names and tool fields come from `dockyard.domain`, the
same code that answers the API's 400s. What only a file can have (the published schema, secrets written
in plain text, a Dockerfile that is not there) is checked here and in `manifest`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.domain.code_runtimes import DEPENDENCY_RESOLUTIONS, parse_python_runtime
from dockyard.domain.errors import BadRequest
from dockyard.domain.images import parse_image_reference
from dockyard.domain.names import validate_agent_name
from dockyard.domain.protocols import parse_protocol_versions
from dockyard.domain.resources import validate_cpu, validate_memory
from dockyard.domain.sessions import IDLE_TIMEOUT_MAX, IDLE_TIMEOUT_MIN
from dockyard.domain.tools import validate_tools
from dockyard.project.findings import Finding, ManifestError, by_line
from dockyard.project.manifest import (
    CODE_KEY,
    DEFAULT_DEPENDENCY_RESOLUTION,
    DockyardSettings,
    EnvironmentEntry,
    check_document,
    entry_command,
    entry_file,
    environment_entries,
    load_settings,
)
from dockyard.project.references import is_reference, literal_parts
from dockyard.project.yamlfile import Document, read_document


def validate(path: Path) -> list[Finding]:
    """Every problem in agent.yaml (and dockyard.yaml beside it), errors and warnings, top of the file first.

    Raises ManifestFileError only when there is no file to read; anything wrong inside it is a Finding.
    """
    path = Path(path)
    try:
        document = read_document(path)
    except ManifestError as exc:
        if type(exc) is not ManifestError:
            raise
        return exc.findings
    findings = check_document(document)
    settings, settings_findings = load_settings(path.parent)
    findings += settings_findings
    if isinstance(document.data, dict):
        for rule in _RULES:
            findings += rule(document)
    findings += _settings_rules(settings)
    return sorted(findings, key=by_line)


# -- rules on agent.yaml; each takes the parsed document and skips what the schema already refuses -------


def _name(document: Document) -> list[Finding]:
    name = document.data.get("name")
    if not isinstance(name, str):
        return []
    return _domain(validate_agent_name, name, rule="agent-name", line=document.line("name"),
                   fix="Rename the agent, for example `name: my-hosted-agent`.")


def _protocols(document: Document) -> list[Finding]:
    records = document.data.get("protocols")
    if not isinstance(records, list):
        return []
    findings = []
    for index, record in enumerate(records):
        if not (isinstance(record, dict) and isinstance(record.get("protocol"), str)
                and isinstance(record.get("version"), str)):
            continue
        findings += _domain(
            parse_protocol_versions, [record], field="protocols", rule="protocol-version",
            line=document.line("protocols", index, "version"),
            fix='Use a version dockyard and Foundry serve, for example `protocol: responses` with `version: "2.0.0"`.',
        )
    return findings


def _resources(document: Document) -> list[Finding]:
    resources = document.data.get("resources")
    if not isinstance(resources, dict):
        return []
    findings = []
    for key, check, fix in (
        ("cpu", validate_cpu, 'Use between 0.5 and 4 cores, for example `cpu: "1"`.'),
        ("memory", validate_memory, "Use between 1Gi and 8Gi, for example `memory: 2Gi`."),
    ):
        value = resources.get(key)
        if isinstance(value, str):
            findings += _domain(check, value, rule=f"{key}-range", line=document.line("resources", key), fix=fix)
    return findings


def _image(document: Document) -> list[Finding]:
    data = document.data
    image, dockerfile = data.get("image"), data.get("dockerfilePath")
    folder = document.path.parent
    findings = []
    if isinstance(dockerfile, str) and not (folder / dockerfile).is_file():
        findings.append(Finding(
            rule="dockerfile-missing", severity="error",
            message=f"dockerfilePath {dockerfile!r} does not exist (looked in {folder.absolute()}).",
            fix="Correct the path (it is relative to agent.yaml's folder) or remove dockerfilePath.",
            line=document.line("dockerfilePath"),
        ))
    if image is None:
        if dockerfile is None and "codeConfiguration" not in data and not any(
            (folder / name).is_file() for name in ("Containerfile", "Dockerfile")
        ):
            findings.append(Finding(
                rule="image-source", severity="error",
                message="Nothing to run: no image, no dockerfilePath, and no Containerfile or Dockerfile beside "
                "agent.yaml.",
                fix="Add `image: registry/name:tag`, or `dockerfilePath: Containerfile` with that file, so "
                "`dockyard build` has something to build.",
                line=document.line(),
            ))
        return findings
    if not isinstance(image, str) or is_reference(image):
        return findings
    line = document.line("image")
    try:
        reference = parse_image_reference(image)
    except BadRequest as exc:
        return findings + [Finding(rule="image-reference", severity="error", message=exc.message,
                                   fix="Write the full reference, "
                                       "for example `image: myregistry.azurecr.io/my-agent:v1`.",
                                   line=line)]
    if reference.digest is None and reference.tag == "latest":
        findings.append(Finding(
            rule="image-tag-latest", severity="warning",
            message=f"image {image!r} uses the tag latest: Foundry accepts it, but every activation may pull "
            "different code, so a version is not reproducible.",
            fix="Pin a tag that names the build (dockyard build tags with a content digest) or an @sha256: digest.",
            line=line,
        ))
    elif reference.digest is None and reference.tag is None:
        findings.append(Finding(
            rule="image-tag-missing", severity="warning",
            message=f"image {image!r} has no tag, so registries serve :latest: accepted, but not reproducible.",
            fix="Add a tag that names the build, for example `:v1`, or an @sha256: digest.",
            line=line,
        ))
    return findings


# Files pip installs from when dependency_resolution is remote_build (issue 10 §2).
_REQUIREMENT_FILES = ("requirements.txt", "pyproject.toml")


def _code(document: Document) -> list[Finding]:
    """codeConfiguration: the runtime and dependency mode Foundry accepts, an entry point that is there, the
    files a remote build installs from, and no image beside it (a version is one or the other)."""
    block = document.data.get(CODE_KEY)
    if not isinstance(block, dict):
        return []
    folder = document.path.parent
    findings = []
    both = [key for key in ("image", "dockerfilePath") if key in document.data]
    if both:
        findings.append(Finding(
            rule="code-and-image", severity="error",
            message=f"codeConfiguration and {' and '.join(both)} are both written; a version runs either an image or "
            "uploaded code, and Foundry refuses a definition with both.",
            fix=f"Remove {' and '.join(both)} to deploy the code, or remove codeConfiguration to deploy the image.",
            line=document.line(CODE_KEY),
        ))
    runtime = block.get("runtime")
    if isinstance(runtime, str):
        findings += _domain(parse_python_runtime, runtime, rule="code-runtime", line=document.line(CODE_KEY, "runtime"),
                            fix="Use, for example, `runtime: python_3_12`.")
    entry = block.get("entryPoint")
    if isinstance(entry, str):
        command = entry_command(entry)
        script = entry_file(command)
        if not command:
            findings.append(Finding(
                rule="code-entry-point", severity="error", message="codeConfiguration.entryPoint is empty.",
                fix="Name the file that starts the agent, for example `entryPoint: main.py`.",
                line=document.line(CODE_KEY, "entryPoint"),
            ))
        elif script is not None and not (folder / script).is_file():
            findings.append(Finding(
                rule="code-entry-point", severity="error",
                message=f"codeConfiguration.entryPoint {entry!r} names {script}, which is not in {folder.absolute()}.",
                fix="Correct the path (it is relative to agent.yaml's folder, which is what gets uploaded), or create "
                "the file.",
                line=document.line(CODE_KEY, "entryPoint"),
            ))
    resolution = block.get("dependencyResolution")
    line = document.line(CODE_KEY, "dependencyResolution") if resolution is not None else document.line(CODE_KEY)
    requirements = [name for name in _REQUIREMENT_FILES if (folder / name).is_file()]
    if isinstance(resolution, str) and resolution not in DEPENDENCY_RESOLUTIONS:
        findings.append(Finding(
            rule="code-dependencies", severity="error",
            message=f"codeConfiguration.dependencyResolution {resolution!r} is not one Foundry knows.",
            fix=f"Use {' or '.join(DEPENDENCY_RESOLUTIONS)}: remote_build installs requirements.txt when the version "
            "is created; bundled runs the upload as it is, its packages/ folder on the import path.",
            line=line,
        ))
    elif resolution == "remote_build" and not requirements:
        findings.append(Finding(
            rule="code-dependencies", severity="error",
            message="dependencyResolution is remote_build, but there is no requirements.txt (or pyproject.toml) "
            "beside agent.yaml to install from.",
            fix="Add requirements.txt with the packages the agent imports, or use `dependencyResolution: bundled`.",
            line=line,
        ))
    elif (resolution or DEFAULT_DEPENDENCY_RESOLUTION) == "bundled" and requirements \
            and not (folder / "packages").is_dir():
        findings.append(Finding(
            rule="code-bundled-packages", severity="warning",
            message=f"dependencyResolution is {'bundled' if resolution else 'not set (so bundled)'} and there is "
            f"{requirements[0]} but no packages/ folder: nothing installs it, so imports of those packages fail.",
            fix="Use `dependencyResolution: remote_build`, or vendor them: pip install -r requirements.txt "
            "--target packages.",
            line=line,
        ))
    return findings


def _tools(document: Document) -> list[Finding]:
    tools = document.data.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        return [Finding(rule="tool-fields", severity="error", message="tools must be a list of tool objects.",
                        fix="Write `tools:` then `- type: code_interpreter` entries.", line=document.line("tools"))]
    findings = []
    for index, tool in enumerate(tools):
        for finding in _domain(validate_tools, [tool], rule="tool-fields", line=document.line("tools", index),
                               fix='An MCP tool needs `type: mcp`, `server_label` and an http(s) `server_url`; '
                               'other tools need a `type`.'):
            message = finding.message.replace("definition.tools[0]", f"tools[{index}]")
            findings.append(Finding(finding.rule, finding.severity, message, finding.fix, finding.line))
    return findings


def _session(document: Document) -> list[Finding]:
    session = document.data.get("session_configuration")
    if not isinstance(session, dict) or "idle_timeout_seconds" not in session:
        return []
    return _idle_timeout(session["idle_timeout_seconds"],
                         document.line("session_configuration", "idle_timeout_seconds"),
                         "session_configuration.idle_timeout_seconds", None)


# -- secrets -------------------------------------------------------------------------------------------

# Name parts that mean "this is a credential" (MAX_TOKENS, KEY_VAULT_URL or TOKEN_ENDPOINT are not).
_SECRET_PARTS = {
    "KEY", "APIKEY", "ACCESSKEY", "ACCOUNTKEY", "SECRETKEY", "PRIVATEKEY", "SECRET", "PASSWORD", "PASSWD", "PWD",
    "PASSPHRASE", "TOKEN", "ACCESSTOKEN", "CREDENTIAL", "CREDENTIALS", "SAS", "CONNECTIONSTRING", "CONNSTR",
}
_NOT_THE_SECRET = {"VAULT", "NAME", "ID", "URL", "URI", "ENDPOINT", "FILE", "PATH", "TYPE", "HEADER", "EXPIRY"}

# Shapes of well-known credentials; a match is an error whatever the variable is called.
_SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a connection string with a key or password",
     re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)=[^;\s]+")),
    ("a SAS token signature", re.compile(r"(?i)[?&]sig=[A-Za-z0-9%+/=]{16,}")),
    ("a URL with a password in it", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
    ("an OpenAI-style API key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("an AWS access key id", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
)
# Long runs of base64 or hex: likely a key, possibly a checksum; so only a warning.
_HIGH_ENTROPY = re.compile(r"(?<![A-Za-z0-9+/])(?:[A-Za-z0-9+/]{32,}={0,2}|[0-9a-fA-F]{32,})(?![A-Za-z0-9+/])")
_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.-]*\s*\}\}")


def _secret_name(name: str) -> bool:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name.upper()) if p]
    if "CONNECTION" in parts and "STRING" in parts:
        return True
    for index, part in enumerate(parts):
        if part in _SECRET_PARTS:
            following = parts[index + 1] if index + 1 < len(parts) else None
            if following not in _NOT_THE_SECRET:
                return True
    return False


def _environment(document: Document) -> list[Finding]:
    findings = []
    for entry in environment_entries(document):
        findings += _entry_rules(entry)
    return findings


def _entry_rules(entry: EnvironmentEntry) -> list[Finding]:
    name, value, line = entry.name, entry.value, entry.line
    literal = literal_parts(value)
    written = literal.strip()
    findings = []
    placeholder = _PLACEHOLDER.search(literal)
    if _secret_name(name) and written and not is_reference(value) and not placeholder:
        findings.append(Finding(
            rule="secret-name", severity="error",
            message=f"{name} looks like a credential and its value is written in agent.yaml, which is committed "
            "and sent with the definition.",
            fix=f"Reference it instead: `value: ${{{name}}}` and export {name} when you deploy (or use a "
            "Foundry connection, `${{connections.NAME.credentials.key}}`).",
            line=line,
        ))
    shape = next((what for what, pattern in _SECRET_SHAPES if pattern.search(literal)), None)
    if shape is not None:
        findings.append(Finding(
            rule="secret-value", severity="error",
            message=f"The value of {name} looks like {shape}; a secret in agent.yaml ends up in version control "
            "and in the agent definition anyone with read access can see.",
            fix=f"Move the secret out: `value: ${{{name}}}` (resolved from your environment at deploy time), "
            "or keep it in a Foundry connection.",
            line=line,
        ))
    elif _HIGH_ENTROPY.search(literal):
        findings.append(Finding(
            rule="secret-entropy", severity="warning",
            message=f"The value of {name} contains a long base64 or hex string, which is how keys look.",
            fix=f"If it is a key, reference it: `value: ${{{name}}}`. If it is a checksum or an id, ignore this.",
            line=line,
        ))
    if placeholder:
        findings.append(Finding(
            rule="env-placeholder", severity="warning",
            message=f"The value of {name} has a {{{{...}}}} placeholder, which azd fills in from an agent "
            "manifest's parameters; dockyard passes it to the container as written.",
            fix=f"Use a reference dockyard and azd both resolve: `value: ${{{name}}}`.",
            line=line,
        ))
    return findings


# -- dockyard.yaml -------------------------------------------------------------------------------------


def _settings_rules(settings: DockyardSettings) -> list[Finding]:
    if settings.path is None:
        return []
    try:
        document = read_document(settings.path)
    except ManifestError:
        return []  # already reported by load_settings
    findings = []
    if settings.idle_timeout_seconds is not None:
        findings += _idle_timeout(settings.idle_timeout_seconds, document.line("idle_timeout_seconds"),
                                  "idle_timeout_seconds", settings.path)
    for key, value, example in (("registry", settings.registry, "127.0.0.1:5000/team"),
                                ("base_image", settings.base_image, "localhost/debian-python:3.11")):
        if value is None:
            continue
        try:
            parse_image_reference(f"{value}/probe" if key == "registry" else value)
        except BadRequest:
            findings.append(Finding(
                rule="dockyard-settings", severity="error",
                message=f"dockyard.yaml {key} {value!r} is not a valid "
                f"{'registry/repository prefix' if key == 'registry' else 'image reference'}.",
                fix=f"Write it like `{key}: {example}`.", line=document.line(key), file=settings.path,
            ))
    return findings


def _idle_timeout(value: Any, line: int | None, where: str, file: Path | None) -> list[Finding]:
    if isinstance(value, int) and not isinstance(value, bool) and IDLE_TIMEOUT_MIN <= value <= IDLE_TIMEOUT_MAX:
        return []
    return [Finding(
        rule="idle-timeout-range", severity="error",
        message=f"{where} is {value!r}; Foundry accepts a whole number of seconds from {IDLE_TIMEOUT_MIN} to "
        f"{IDLE_TIMEOUT_MAX} (default 900).",
        fix=f"Use, for example, `{where.rsplit('.', 1)[-1]}: 900`.", line=line, file=file,
    )]


# -- shared --------------------------------------------------------------------------------------------


def _domain(check: Callable[..., object], *args: Any, rule: str, line: int | None, fix: str, **kwargs: Any
            ) -> list[Finding]:
    """Run one of dockyard.domain's checks; its 400 becomes an error Finding with the API's own message."""
    try:
        check(*args, **kwargs)
    except BadRequest as exc:
        message = re.sub(r"definition\.(cpu|memory)", r"resources.\1", exc.message).replace("definition.", "")
        message = message.replace("code_configuration.runtime", "codeConfiguration.runtime")
        return [Finding(rule=rule, severity="error", message=message, fix=fix, line=line)]
    return []


_RULES: tuple[Callable[[Document], list[Finding]], ...] = (
    _name, _protocols, _resources, _image, _code, _environment, _tools, _session,
)
