"""`agent.yaml`: a hosted agent described in Microsoft's AgentSchema (`ContainerAgent`), as dockyard reads it.

One file serves two targets, so dockyard reads what Azure's tooling reads and adds nothing to it:
`kind: hosted`, `name`, `description`, `protocols`, `image` or `dockerfilePath`, `resources {cpu, memory}`,
environment variables and `tools`. Where the published schema and the Azure Developer CLI's agents extension
(azd) spell something differently, both spellings are accepted:

- environment variables: the schema's `environmentVariables` and azd's `environment_variables`, each as a
  list of `{name, value}` or a map (`NAME: {value: ...}` as the schema has it, or plainly `NAME: value`);
- session settings: azd's `session_configuration.idle_timeout_seconds`.

A code-based agent has `codeConfiguration {runtime, entryPoint, dependencyResolution}` instead of an image:
`dockyard deploy` zips the project and sends it with `create_version_from_code` (see `code_zip`). The schema's
`entryPoint` is a file (`main.py`), the API's `entry_point` a command (`["python", "main.py"]`); a file ending
in `.py` is run with `python`, anything else is split like a shell command line.

Missing `resources` or `protocols` get what azd deploys then (cpu "0.5", memory "1Gi"; responses 2.0.0),
with a warning, because the schema requires them but azd deploys without them. What dockyard needs beyond the
schema (registry, base image, session idle timeout) lives in a separate `dockyard.yaml` beside
`agent.yaml`, so the agent file never carries anything Azure's tooling would not understand.

Values may be `${VAR}` references, resolved from the environment at deploy time (see `references`).
Every node keeps its line (see `yamlfile`) so each problem can point at the line to fix.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.project.findings import Finding, ManifestError, ManifestFileError, by_line
from dockyard.project.references import Unset, expand
from dockyard.project.yamlfile import Document, YamlPath, dotted, file_finding, read_document

__all__ = [
    "CodeSettings", "DockyardSettings", "Finding", "Manifest", "ManifestError", "ManifestFileError", "by_line",
    "find_manifest", "load_manifest", "load_settings", "check_document", "environment_entries",
]

MANIFEST_NAMES = ("agent.yaml", "agent.yml")
SETTINGS_NAMES = ("dockyard.yaml", "dockyard.yml")
# What the Azure Developer CLI's agents extension deploys when agent.yaml leaves these out (its
# project/config.go DefaultCpu/DefaultMemory and agent_yaml/map.go), so one file gets the same container on
# both targets. Foundry's own default, for a definition that names no cpu/memory, is 1 and 2Gi.
DEFAULT_CPU = "0.5"
DEFAULT_MEMORY = "1Gi"
DEFAULT_PROTOCOLS: tuple[tuple[str, str], ...] = (("responses", "2.0.0"),)
ENV_KEYS = ("environmentVariables", "environment_variables")
CODE_KEY = "codeConfiguration"
# The API's default when a definition names no dependency_resolution (CodeConfiguration in azure-ai-projects).
DEFAULT_DEPENDENCY_RESOLUTION = "bundled"


@dataclass(frozen=True)
class DockyardSettings:
    """dockyard's extras, NOT in agent.yaml: an optional `dockyard.yaml` next to it."""

    registry: str | None = None  # where `dockyard build` pushes, e.g. "127.0.0.1:5000/team"
    base_image: str | None = None  # FROM of the Containerfile `dockyard init` writes
    idle_timeout_seconds: int | None = None  # session idle timeout
    path: Path | None = None  # the dockyard.yaml read, if any


@dataclass(frozen=True)
class CodeSettings:
    """agent.yaml's `codeConfiguration`, in the API's terms (`code_configuration` of a 2.x definition)."""

    runtime: str  # python_3_11 ... python_3_14
    entry_point: tuple[str, ...]  # the command, e.g. ("python", "main.py")
    dependency_resolution: str  # bundled | remote_build

    def wire(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "entry_point": list(self.entry_point),
                "dependency_resolution": self.dependency_resolution}


def entry_command(entry_point: str) -> tuple[str, ...]:
    """`main.py` -> ("python", "main.py"); `python -m app` -> ("python", "-m", "app")."""
    try:
        words = tuple(shlex.split(entry_point))
    except ValueError:
        words = (entry_point,)
    if len(words) == 1 and words[0].endswith(".py"):
        return ("python", words[0])
    return words


def entry_file(command: tuple[str, ...]) -> str | None:
    """The script a Python entry command runs (`python main.py` -> main.py), if it names one."""
    if command and command[0].startswith("python"):
        for word in command[1:]:
            if word == "-m" or word == "-c":
                return None
            if not word.startswith("-"):
                return word
    return None


@dataclass(frozen=True)
class EnvironmentEntry:
    name: Any
    value: Any
    line: int | None


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    description: str | None
    protocols: list[tuple[str, str]]
    image: str | None
    dockerfile_path: Path | None  # resolved relative to the manifest's folder
    cpu: str
    memory: str
    environment_variables: dict[str, str]  # as written: "${VAR}" references unresolved
    tools: list[dict[str, Any]]
    dockyard: DockyardSettings = field(default_factory=DockyardSettings)
    # codeConfiguration: a code-based agent (no image; the project folder is zipped and uploaded).
    code: CodeSettings | None = None
    # azd's `session_configuration.idle_timeout_seconds` in agent.yaml, if written there.
    session_idle_timeout_seconds: int | None = None
    # Warnings found while loading (defaults applied, portability); errors raise ManifestError instead.
    findings: tuple[Finding, ...] = ()
    document: Document | None = field(default=None, repr=False, compare=False)

    @property
    def idle_timeout_seconds(self) -> int | None:
        """The session idle timeout to ask for: dockyard.yaml's, else agent.yaml's (azd), else the service's."""
        if self.dockyard.idle_timeout_seconds is not None:
            return self.dockyard.idle_timeout_seconds
        return self.session_idle_timeout_seconds

    def resolved_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Environment variables with `${VAR}` references replaced from `environ`.

        ManifestError (rule `env-unset`) lists every referenced variable that is unset and has no default,
        so a deploy never starts a container with a literal `${...}` in its environment.
        """
        resolved: dict[str, str] = {}
        missing: list[Finding] = []
        for name, value in self.environment_variables.items():
            try:
                resolved[name] = expand(value, environ)
            except Unset as exc:
                missing.append(
                    Finding(
                        rule="env-unset",
                        severity="error",
                        message=f"Environment variable {name} refers to ${{{exc.variable}}}, which is not set.",
                        fix=f"export {exc.variable}=... before deploying, or write a default: "
                        f"${{{exc.variable}:-value}}.",
                        line=self._env_line(name),
                    )
                )
        if missing:
            raise ManifestError(self.path, missing)
        return resolved

    def definition(self, image: str, environ: Mapping[str, str]) -> dict[str, Any]:
        """The hosted definition in the flat shape (`ImageBasedHostedAgentDefinition`, api-version
        2025-11-15-preview), which dockyard accepts from every SDK; `kind` is left to the SDK model."""
        definition: dict[str, Any] = {
            "image": image,
            "cpu": self.cpu,
            "memory": self.memory,
            "container_protocol_versions": [{"protocol": p, "version": v} for p, v in self.protocols],
            "environment_variables": self.resolved_environment(environ),
            "tools": [dict(tool) for tool in self.tools],
        }
        if self.idle_timeout_seconds is not None:
            definition["session_configuration"] = {"idle_timeout_seconds": self.idle_timeout_seconds}
        return definition

    def hosted_definition(self, image: str, environ: Mapping[str, str]) -> dict[str, Any]:
        """The same definition in the 2.x shape (`HostedAgentDefinition`, api-version v1): what azd sends to
        Foundry (`container_configuration.image`, `protocol_versions`). That shape has no `tools`, so they
        are left out; `HostedAgentDefinition(**this)` builds the SDK model."""
        definition: dict[str, Any] = {
            "cpu": self.cpu,
            "memory": self.memory,
            "container_configuration": {"image": image},
            "protocol_versions": [{"protocol": p, "version": v} for p, v in self.protocols],
            "environment_variables": self.resolved_environment(environ),
        }
        if self.idle_timeout_seconds is not None:
            definition["session_configuration"] = {"idle_timeout_seconds": self.idle_timeout_seconds}
        return definition

    def code_definition(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The 2.x definition of a code-based version (`HostedAgentDefinition(**this)`): `code_configuration`
        in place of `container_configuration`; what `create_version_from_code` sends as its metadata part."""
        if self.code is None:
            raise ValueError(f"{self.path} has no codeConfiguration")
        definition: dict[str, Any] = {
            "cpu": self.cpu,
            "memory": self.memory,
            "code_configuration": self.code.wire(),
            "protocol_versions": [{"protocol": p, "version": v} for p, v in self.protocols],
            "environment_variables": self.resolved_environment(environ),
        }
        if self.idle_timeout_seconds is not None:
            definition["session_configuration"] = {"idle_timeout_seconds": self.idle_timeout_seconds}
        return definition

    def _env_line(self, name: str) -> int | None:
        if self.document is None:
            return None
        for entry in environment_entries(self.document):
            if entry.name == name:
                return entry.line
        return None


# -- finding and reading files ------------------------------------------------------------------------


def find_manifest(start: Path) -> Path:
    """agent.yaml (or agent.yml) in `start`, or `start` itself when it is a file."""
    start = Path(start)
    if start.is_file():
        return start
    if start.is_dir():
        for name in MANIFEST_NAMES:
            candidate = start / name
            if candidate.is_file():
                return candidate
        raise ManifestFileError(
            start,
            [file_finding("manifest-missing", f"There is no agent.yaml in {start.resolve()}.",
                           "Run dockyard in the agent's project folder, pass the path to its agent.yaml, "
                           "or create one with `dockyard init NAME`.")],
        )
    raise ManifestFileError(
        start,
        [file_finding("manifest-missing", f"{start} does not exist.", "Check the path, or create the project "
                       "with `dockyard init NAME`.")],
    )


# -- checking and loading -----------------------------------------------------------------------------


def check_document(document: Document) -> list[Finding]:
    """Problems that stop agent.yaml being read as a hosted agent: the published schema, and the shape of the
    environment variables in either spelling. Also the warnings about defaults and portability."""
    data = document.data
    if not isinstance(data, dict):
        return [Finding(
            rule="schema", severity="error", message="agent.yaml must be a mapping (kind, name, protocols, ...).",
            fix="Start from `dockyard init NAME`, or see dockyard's docs/agent-yaml.md "
                "for a complete example.",
            line=document.line(),
        )]
    from dockyard.project.agentschema import schema_errors  # jsonschema: only when a file is checked

    findings: list[Finding] = []
    for error in schema_errors(data):
        path = tuple(error.absolute_path)
        if path and path[0] in ENV_KEYS:
            continue  # checked below, with messages that name the variable, for both spellings
        if error.validator == "required" and _defaulted(path, error.message):
            continue  # reported as a `resources-default` / `protocols-default` warning below
        findings.append(
            _schema_finding(document, path, str(error.validator), error.message, error.validator_value, error.instance)
        )
    findings.extend(_environment_findings(document))
    findings.extend(_default_findings(data, document))
    return findings


def load_manifest(path: Path) -> Manifest:
    """Read agent.yaml (and dockyard.yaml beside it). ManifestError lists every error, each with its line;
    warnings do not stop loading and are kept in `Manifest.findings`."""
    path = Path(path)
    document = read_document(path)
    findings = check_document(document)
    settings, settings_findings = load_settings(path.parent)
    errors = [f for f in findings + settings_findings if f.severity == "error"]
    if errors:
        raise ManifestError(path, errors)
    data: dict[str, Any] = document.data
    declared = data.get("resources")
    resources: dict[str, Any] = declared if isinstance(declared, dict) else {}
    protocols = [(str(p["protocol"]), str(p["version"])) for p in data.get("protocols") or []]
    dockerfile = data.get("dockerfilePath")
    session = data.get("session_configuration")
    idle = session.get("idle_timeout_seconds") if isinstance(session, dict) else None
    tools = data.get("tools")
    code = data.get(CODE_KEY)
    return Manifest(
        path=path,
        name=data["name"],
        description=data.get("description"),
        protocols=protocols or list(DEFAULT_PROTOCOLS),
        image=data.get("image"),
        dockerfile_path=(path.parent.absolute() / dockerfile) if isinstance(dockerfile, str) and dockerfile else None,
        cpu=str(resources.get("cpu") or DEFAULT_CPU),
        memory=str(resources.get("memory") or DEFAULT_MEMORY),
        environment_variables={e.name: e.value for e in environment_entries(document)},
        tools=list(tools) if isinstance(tools, list) else [],
        dockyard=settings,
        code=_code_settings(code) if isinstance(code, dict) else None,
        session_idle_timeout_seconds=idle if isinstance(idle, int) and not isinstance(idle, bool) else None,
        findings=tuple(f for f in findings + settings_findings if f.severity != "error"),
        document=document,
    )


def _code_settings(block: dict[str, Any]) -> CodeSettings:
    resolution = block.get("dependencyResolution")
    return CodeSettings(
        runtime=str(block["runtime"]),
        entry_point=entry_command(str(block["entryPoint"])),
        dependency_resolution=str(resolution) if resolution else DEFAULT_DEPENDENCY_RESOLUTION,
    )


# -- dockyard.yaml ------------------------------------------------------------------------------------

_SETTINGS_FIELDS = {"registry": str, "base_image": str, "idle_timeout_seconds": int}


def load_settings(folder: Path) -> tuple[DockyardSettings, list[Finding]]:
    """dockyard.yaml (or .yml) in `folder`, if there is one, and what is wrong with it."""
    for name in SETTINGS_NAMES:
        path = folder / name
        if path.is_file():
            break
    else:
        return DockyardSettings(), []
    try:
        document = read_document(path)
    except ManifestError as exc:
        return DockyardSettings(path=path), [_in_file(f, path) for f in exc.findings]
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        return DockyardSettings(path=path), [Finding(
            rule="dockyard-settings", severity="error", message="dockyard.yaml must be a mapping.",
            fix="Write `registry:`, `base_image:` and `idle_timeout_seconds:` as top-level keys.",
            line=document.line(), file=path,
        )]
    findings: list[Finding] = []
    values: dict[str, Any] = {}
    for key, value in data.items():
        expected = _SETTINGS_FIELDS.get(key)
        if expected is None:
            findings.append(Finding(
                rule="dockyard-settings", severity="error", message=f"dockyard.yaml has an unknown key {key!r}.",
                fix=f"Use only {', '.join(_SETTINGS_FIELDS)}; everything about the agent itself goes in agent.yaml.",
                line=document.line(key), file=path,
            ))
        elif value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            findings.append(Finding(
                rule="dockyard-settings", severity="error",
                message=f"dockyard.yaml {key} must be {'a string' if expected is str else 'a whole number'}; "
                f"got {value!r}.",
                fix=f"Write {key}: {'127.0.0.1:5000/team' if key == 'registry' else 'a value of that type'}.",
                line=document.line(key), file=path,
            ))
        else:
            values[key] = value
    return DockyardSettings(path=path, **values), findings


# -- environment variables ----------------------------------------------------------------------------


def environment_entries(document: Document) -> list[EnvironmentEntry]:
    """Environment variables as written, in either spelling and either form, with their lines. Tolerant:
    entries it cannot make sense of are left out (`check_document` reports them)."""
    data = document.data if isinstance(document.data, dict) else {}
    entries: list[EnvironmentEntry] = []
    for key in ENV_KEYS:
        block = data.get(key)
        if isinstance(block, list):
            for index, item in enumerate(block):
                if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
                    entries.append(EnvironmentEntry(item["name"], item["value"], document.line(key, index)))
        elif isinstance(block, dict):
            for name, item in block.items():
                value = item.get("value") if isinstance(item, dict) else item
                if isinstance(name, str) and isinstance(value, str):
                    entries.append(EnvironmentEntry(name, value, document.line(key, name)))
    return entries


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _environment_findings(document: Document) -> list[Finding]:
    data: dict[str, Any] = document.data
    present = [key for key in ENV_KEYS if key in data]
    findings: list[Finding] = []
    if len(present) == 2:
        findings.append(Finding(
            rule="env-duplicate", severity="error",
            message="Both environmentVariables and environment_variables are written; tools disagree on which "
            "one wins.",
            fix="Keep one list: environment_variables is what azd reads, environmentVariables what the published "
            "schema names.",
            line=max(document.line(key) or 0 for key in present),
        ))
    for key in present:
        block = data[key]
        if block is None:
            continue
        if isinstance(block, list):
            seen: set[object] = set()
            for index, item in enumerate(block):
                line = document.line(key, index)
                if not isinstance(item, dict) or "name" not in item or "value" not in item:
                    findings.append(Finding(
                        rule="env-shape", severity="error",
                        message=f"{key}[{index}] must be a {{name, value}} pair; got {item!r}.",
                        fix="Write it as `- name: MY_VAR` and `value: ...` on the next line.", line=line,
                    ))
                    continue
                if isinstance(item["name"], str) and item["name"] in seen:
                    findings.append(Finding(
                        rule="env-duplicate", severity="error",
                        message=f"Environment variable {item['name']} is set twice; only one value can reach the "
                        "container.", fix="Remove one of them.", line=line,
                    ))
                seen.add(item["name"] if isinstance(item["name"], str) else None)
                findings.extend(_entry_findings(key, item["name"], item["value"], line))
        elif isinstance(block, dict):
            plain: list[str] = []
            for name, item in block.items():
                line = document.line(key, name)
                if isinstance(item, dict):
                    if set(item) != {"value"}:
                        findings.append(Finding(
                            rule="env-shape", severity="error",
                            message=f"{key}.{name} must be a string or {{value: ...}}; got {item!r}.",
                            fix=f"Write `{name}: {{value: ...}}`.", line=line,
                        ))
                        continue
                    item = item["value"]
                else:
                    plain.append(str(name))
                findings.extend(_entry_findings(key, name, item, line))
            if plain:
                findings.append(Finding(
                    rule="env-form", severity="warning",
                    message=f"{key} is a map of plain values "
                    f"({', '.join(plain[:3])}{', ...' if len(plain) > 3 else ''}). "
                    "dockyard reads it, but the published schema wants `NAME: {value: ...}` and azd wants a list.",
                    fix="Write it as a list: `- name: NAME` / `value: ...`, which every tool reads.",
                    line=document.line(key),
                ))
        else:
            findings.append(Finding(
                rule="env-shape", severity="error", message=f"{key} must be a list of {{name, value}} pairs.",
                fix=f"Write `{key}:` then `- name: MY_VAR` / `value: ...` entries.", line=document.line(key),
            ))
    if present == ["environmentVariables"]:
        findings.append(Finding(
            rule="env-key", severity="warning",
            message="environmentVariables is the published schema's spelling, but the Azure Developer CLI reads "
            "environment_variables and ignores this one, so `azd deploy` would start the agent without them.",
            fix="Rename the key to environment_variables (dockyard reads both).",
            line=document.line("environmentVariables"),
        ))
    return findings


def _entry_findings(key: str, name: object, value: object, line: int | None) -> list[Finding]:
    findings = []
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        findings.append(Finding(
            rule="env-name", severity="error",
            message=f"Environment variable name {name!r} in {key} is not valid.",
            fix="Use letters, digits and underscores, not starting with a digit (for example MODEL_NAME).",
            line=line,
        ))
    if not isinstance(value, str):
        findings.append(Finding(
            rule="env-value-type", severity="error",
            message=f"Environment variable {name} has the unquoted value {value!r}; values must be strings.",
            fix=f"Quote it: \"{value}\".", line=line,
        ))
    return findings


# -- defaults -----------------------------------------------------------------------------------------


def _defaulted(path: YamlPath, message: str) -> bool:
    missing = message.split("'")[1] if "'" in message else ""
    return ((path == () and missing in ("resources", "protocols"))
            or (path == ("resources",) and missing in ("cpu", "memory")))


def _default_findings(data: dict[str, Any], document: Document) -> list[Finding]:
    findings = []
    resources = data.get("resources")
    if resources is None:
        findings.append(Finding(
            rule="resources-default", severity="warning",
            message=f"No resources: the agent gets cpu {DEFAULT_CPU} and memory {DEFAULT_MEMORY}, as azd gives it, "
            "but the published schema requires resources.",
            fix=f"Add `resources:` with `cpu: \"{DEFAULT_CPU}\"` and `memory: {DEFAULT_MEMORY}`.",
            line=document.line(),
        ))
    elif isinstance(resources, dict):
        for key, default in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
            if key not in resources:
                findings.append(Finding(
                    rule="resources-default", severity="warning",
                    message=f"resources has no {key}: the agent gets {default}, but the published schema requires it.",
                    fix=f"Add `{key}: \"{default}\"` under resources.", line=document.line("resources"),
                ))
    if data.get("protocols") is None:
        protocol, version = DEFAULT_PROTOCOLS[0]
        findings.append(Finding(
            rule="protocols-default", severity="warning",
            message=f"No protocols: the agent is served as {protocol} {version}, as azd does, but the published "
            "schema requires protocols.",
            fix=f"Add `protocols:` with `- protocol: {protocol}` and `version: \"{version}\"`.",
            line=document.line(),
        ))
    return findings


# -- helpers ------------------------------------------------------------------------------------------


def _schema_finding(
    document: Document, path: YamlPath, validator: str, message: str, expected: Any, error_instance: Any
) -> Finding:
    where = dotted(path) or "agent.yaml"
    if validator == "required":
        missing = message.split("'")[1] if "'" in message else message
        text = f"{where} is missing {missing!r}, which the published schema requires."
        fix = f"Add `{missing}:`" + (" (for example `kind: hosted`)." if missing == "kind" else ".")
    elif validator == "const":
        text = f"{where} must be {expected!r}; dockyard and the ContainerAgent schema describe hosted agents."
        fix = f"Set `{dotted(path)}: {expected}`."
    elif validator == "type":
        text = f"{where} must be {'an' if str(expected)[0] in 'aeiou' else 'a'} {expected}; got {error_instance!r}."
        fix = "Quote the value if it is a number or true/false." if expected == "string" else f"Make it a {expected}."
    else:
        text = f"{where}: {message}."
        fix = "See the ContainerAgent schema (src/dockyard/project/schema/ContainerAgent.yaml)."
    return Finding(rule="schema", severity="error", message=text, fix=fix, line=document.line(*path))


def _in_file(finding: Finding, path: Path) -> Finding:
    return Finding(finding.rule, finding.severity, finding.message, finding.fix, finding.line, file=path)
