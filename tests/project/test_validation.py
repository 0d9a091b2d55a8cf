"""`validate`: for every rule, a file that passes and a file that fails, with the rule's id and line.

Each case edits one block of a clean agent.yaml whose blocks sit on fixed lines:

     1 kind            2 name          3-5 protocols      6 image
     7-9 resources    10-12 environment_variables        13+ extra
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.project.findings import Finding
from dockyard.project.manifest import ManifestFileError
from dockyard.project.validation import validate

CLEAN = {
    "kind": "kind: hosted",
    "name": "name: my-agent",
    "protocols": 'protocols:\n  - protocol: responses\n    version: "2.0.0"',
    "image": "image: registry.example.com/my-agent:v1",
    "resources": 'resources:\n  cpu: "1"\n  memory: 2Gi',
    "env": "environment_variables:\n  - name: MODEL_NAME\n    value: gpt-4o-mini",
    "extra": "",
}
SAMPLES = Path(__file__).parent / "samples"


def env(name: str, value: str) -> dict[str, str]:
    return {"env": f"environment_variables:\n  - name: {name}\n    value: {value}"}


MAIN = {"main.py": "print('hello')\n"}


def code(runtime: str = "python_3_12", entry: str = "main.py", resolution: str | None = "bundled") -> dict[str, str]:
    """A code-based agent: no image, codeConfiguration on lines 13-16."""
    block = f"codeConfiguration:\n  runtime: {runtime}\n  entryPoint: {entry}"
    if resolution is not None:
        block += f"\n  dependencyResolution: {resolution}"
    return {"image": "#", "extra": block}


def settings(text: str) -> dict[str, str]:
    return {"dockyard.yaml": text}


@dataclass
class Case:
    rule: str
    severity: str
    passing: dict[str, str]  # blocks replaced in the clean file
    failing: dict[str, str]
    line: int | None
    files: dict[str, str] = field(default_factory=dict)  # beside agent.yaml, in both cases
    passing_files: dict[str, str] = field(default_factory=dict)
    failing_files: dict[str, str] = field(default_factory=dict)
    in_settings: bool = False  # the finding is in dockyard.yaml
    id: str = ""


CASES = [
    Case("yaml", "error", {}, {"name": "name: [unclosed"}, 3),
    Case("duplicate-key", "error", {"extra": "description: one"}, {"extra": "name: again"}, 13),
    Case("schema", "error", {}, {"kind": "kind: prompt"}, 1, id="kind"),
    Case("schema", "error", {}, {"protocols": "protocols:\n  - protocol: responses\n#"}, 4,
         id="protocol-without-version"),
    Case("schema", "error", {}, {"resources": "resources:\n  cpu: 1\n  memory: 2Gi"}, 8, id="unquoted-cpu"),
    Case("agent-name", "error", {"name": "name: a1-b2"}, {"name": "name: 1-agent"}, 2),
    Case("agent-name", "error", {}, {"name": "name: my_agent"}, 2, id="underscore"),
    Case("protocol-version", "error", {"protocols": 'protocols:\n  - protocol: invocations\n    version: "1.0.0"'},
         {"protocols": "protocols:\n  - protocol: responses\n    version: v0.1.0"}, 5),
    Case("cpu-range", "error", {"resources": 'resources:\n  cpu: "4"\n  memory: 8Gi'},
         {"resources": 'resources:\n  cpu: "0.25"\n  memory: 2Gi'}, 8),
    Case("cpu-range", "error", {"resources": 'resources:\n  cpu: "500m"\n  memory: 1Gi'},
         {"resources": 'resources:\n  cpu: "lots"\n  memory: 2Gi'}, 8, id="not-a-quantity"),
    Case("memory-range", "error", {"resources": 'resources:\n  cpu: "1"\n  memory: 1024Mi'},
         {"resources": 'resources:\n  cpu: "1"\n  memory: 8.5Gi'}, 9),
    Case("image-reference", "error", {"image": "image: localhost:5000/team/my-agent@sha256:" + "a" * 64},
         {"image": "image: registry.example.com/My-Agent:v1"}, 6),
    Case("image-tag-latest", "warning", {}, {"image": "image: registry.example.com/my-agent:latest"}, 6),
    Case("image-tag-missing", "warning", {}, {"image": "image: registry.example.com/my-agent"}, 6),
    Case("image-source", "error", {"image": "dockerfilePath: Containerfile"}, {"image": "description: no image"}, 1,
         passing_files={"Containerfile": "FROM scratch\n"}),
    Case("dockerfile-missing", "error", {"image": "dockerfilePath: build/Containerfile"},
         {"image": "dockerfilePath: Containerfile"}, 6, passing_files={"build/Containerfile": "FROM scratch\n"}),
    Case("secret-name", "error", env("OPENAI_API_KEY", "${OPENAI_API_KEY}"), env("OPENAI_API_KEY", "abc123"), 11),
    Case("secret-name", "error", env("DB_PASSWORD", "${{connections.db.credentials.password}}"),
         env("DB_PASSWORD", "hunter2"), 11, id="password"),
    Case("secret-name", "error", env("MAX_TOKENS", '"4096"'), env("GITHUB_TOKEN", "abc"), 11, id="token"),
    Case("secret-name", "error", env("AZURE_KEY_VAULT_URL", "https://kv.vault.azure.net"),
         env("CLIENT_SECRET", "s3cr3t"), 11, id="secret"),
    Case("secret-value", "error", env("STORAGE", "${STORAGE_CONNECTION_STRING}"),
         env("STORAGE", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy"), 11),
    Case("secret-value", "error", env("MODEL", "gpt-4o-mini"),
         env("UPSTREAM", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"), 11, id="openai-key"),
    Case("secret-value", "error", env("CALLBACK", "https://example.com/hook"),
         env("SESSION", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
         11, id="jwt"),
    Case("secret-value", "error", env("DATABASE", "postgresql://app@db:5432/app"),
         env("DATABASE", "postgresql://app:s3cret@db:5432/app"), 11, id="url-password"),
    Case("secret-entropy", "warning", env("MODEL_HASH", "sha256"),
         env("MODEL_HASH", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"), 11),
    Case("env-placeholder", "warning", env("MODEL", "${MODEL:-gpt-4o-mini}"), env("MODEL", '"{{chat}}"'), 11),
    Case("env-name", "error", env("MODEL_2", "x"), env("2MODEL", "x"), 11),
    Case("env-value-type", "error", env("PORT", '"8080"'), env("PORT", "8080"), 11),
    Case("env-shape", "error", {},
         {"env": "environment_variables:\n  - MODEL_NAME=gpt\n  - name: B\n    value: c"}, 11),
    Case("env-duplicate", "error", {},
         {"env": "environment_variables:\n  - name: A\n    value: b",
          "extra": "environmentVariables:\n  - name: C\n    value: d"},
         13),
    Case("env-duplicate", "error", {},
         {"env": "environment_variables:\n  - name: A\n    value: b", "extra": "  - name: A\n    value: c"}, 13,
         id="same-name"),
    Case("env-form", "warning", {"env": "environment_variables:\n  MODEL_NAME: {value: gpt-4o-mini}\n#"},
         {"env": "environment_variables:\n  MODEL_NAME: gpt-4o-mini\n#"}, 10),
    Case("env-key", "warning", {}, {"env": "environmentVariables:\n  - name: MODEL_NAME\n    value: gpt-4o-mini"}, 10),
    Case("tool-fields", "error",
         {"extra": "tools:\n  - type: mcp\n    server_label: docs\n    server_url: https://learn.microsoft.com/api/mcp"},
         {"extra": "tools:\n  - type: code_interpreter\n  - type: mcp\n    server_label: docs\n"
                   "    server_url: ftp://x"}, 15),
    Case("tool-fields", "error", {"extra": "tools:\n  - type: code_interpreter"},
         {"extra": "tools:\n  - kind: code_interpreter"}, 14, id="no-type"),
    Case("idle-timeout-range", "error", {"extra": "session_configuration:\n  idle_timeout_seconds: 900"},
         {"extra": "session_configuration:\n  idle_timeout_seconds: 30"}, 14),
    Case("idle-timeout-range", "error", {}, {}, 2,
         passing_files=settings("registry: 127.0.0.1:5000/team\nidle_timeout_seconds: 14400\n"),
         failing_files=settings("registry: 127.0.0.1:5000/team\nidle_timeout_seconds: 14401\n"), in_settings=True,
         id="dockyard-yaml"),
    Case("dockyard-settings", "error", {}, {}, 1, passing_files=settings("base_image: localhost/python:3.12\n"),
         failing_files=settings("registri: 127.0.0.1:5000/team\n"), in_settings=True),
    Case("dockyard-settings", "error", {}, {}, 1, passing_files=settings("registry: localhost:5000\n"),
         failing_files=settings("registry: Not A Registry\n"), in_settings=True, id="bad-registry"),
    Case("resources-default", "warning", {}, {"resources": "#\n#\n#"}, 1),
    Case("resources-default", "warning", {}, {"resources": 'resources:\n  cpu: "1"\n#'}, 7, id="no-memory"),
    Case("protocols-default", "warning", {}, {"protocols": "#\n#\n#"}, 1),
    Case("code-and-image", "error", code(), {**code(), "image": "image: registry.example.com/my-agent:v1"}, 13,
         files=MAIN),
    Case("code-runtime", "error", code(runtime="python_3_14"), code(runtime="python_3_9"), 14, files=MAIN),
    Case("code-runtime", "error", code(runtime="python_3_11"), code(runtime="node_20"), 14, files=MAIN,
         id="not-python"),
    Case("code-entry-point", "error", code(entry="app/main.py"), code(entry="main.py"), 15,
         passing_files={"app/main.py": "print()\n"}),
    Case("code-entry-point", "error", code(entry='"python -m app"'), code(entry='""'), 15, files=MAIN,
         id="empty"),
    Case("code-dependencies", "error", code(resolution="remote_build"), code(resolution="remote_build"), 16,
         files=MAIN, passing_files={"requirements.txt": "httpx\n"}),
    Case("code-dependencies", "error", code(resolution="bundled"), code(resolution="pip"), 16, files=MAIN,
         id="unknown-mode"),
    Case("code-bundled-packages", "warning", code(resolution="bundled"), code(resolution="bundled"), 16,
         files={**MAIN, "requirements.txt": "httpx\n"}, passing_files={"packages/httpx/__init__.py": ""}),
    Case("code-bundled-packages", "warning", code(resolution=None), code(resolution=None), 13,
         passing_files=MAIN, failing_files={**MAIN, "requirements.txt": "httpx\n"}, id="default-mode"),
]


def project(tmp_path: Path, blocks: dict[str, str], files: dict[str, str]) -> Path:
    document = dict(CLEAN)
    document.update({k: v for k, v in blocks.items() if k in CLEAN})
    text = "\n".join(document[k] for k in CLEAN) + "\n"
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def described(findings: list[Finding]) -> list[tuple[str, str, int | None]]:
    return [(f.rule, f.severity, f.line) for f in findings]


def test_the_clean_file_is_clean(tmp_path: Path) -> None:
    assert validate(project(tmp_path, {}, {})) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.rule for c in CASES])
def test_rule_passes(case: Case, tmp_path: Path) -> None:
    findings = validate(project(tmp_path, case.passing, {**case.files, **case.passing_files}))
    assert findings == [], described(findings)


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.rule for c in CASES])
def test_rule_fails(case: Case, tmp_path: Path) -> None:
    path = project(tmp_path, case.failing, {**case.files, **case.failing_files})
    findings = validate(path)
    matching = [f for f in findings if f.rule == case.rule]
    assert [(f.severity, f.line) for f in matching] == [(case.severity, case.line)], described(findings)
    [finding] = matching
    assert finding.message and finding.fix
    assert finding.file == (tmp_path / "dockyard.yaml" if case.in_settings else None)


def test_the_rules_cover_every_rule_the_help_names() -> None:
    from dockyard.cli.validate import validate_command

    help_text = validate_command.__doc__ or ""
    for rule in {c.rule for c in CASES}:
        assert rule in help_text, rule


def test_all_problems_are_reported_at_once_top_first(tmp_path: Path) -> None:
    path = project(tmp_path, {
        "name": "name: 9lives",
        "resources": 'resources:\n  cpu: "16"\n  memory: 64Gi',
        **env("API_KEY", "plaintext"),
    }, {})
    assert described(validate(path)) == [
        ("agent-name", "error", 2),
        ("cpu-range", "error", 8),
        ("memory-range", "error", 9),
        ("secret-name", "error", 11),
    ]


def test_domain_messages_name_the_agent_yaml_field(tmp_path: Path) -> None:
    [finding] = validate(project(tmp_path, {"resources": 'resources:\n  cpu: "8"\n  memory: 2Gi'}, {}))
    assert finding.message.startswith("resources.cpu '8' is outside the allowed range")


def test_a_missing_file_is_not_a_finding(tmp_path: Path) -> None:
    with pytest.raises(ManifestFileError):
        validate(tmp_path / "agent.yaml")


def test_real_samples(tmp_path: Path) -> None:
    """What validate says about Microsoft's own samples: they load, and these are the differences."""
    basic = validate(SAMPLES / "agent-framework-01-basic" / "agent.yaml")
    # Written when Foundry offered 0.25 cpu / 0.5Gi; Foundry and azd have since removed that tier.
    assert ("cpu-range", "error", 18) in described(basic)
    assert ("memory-range", "error", 19) in described(basic)
    single = validate(SAMPLES / "agent-framework-single-agent" / "agent.yaml")
    assert ("env-placeholder", "warning", 22) in described(single)
    assert ("resources-default", "warning", 3) in described(single)  # the document starts at line 3
    # The sample's Dockerfile is not copied here; in its own folder it sits beside agent.yaml.
    assert ("image-source", "error", 3) in described(single)


def test_the_documented_example_is_clean(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "agent-yaml.md").read_text()
    blocks = [block.split("```")[0] for block in doc.split("```yaml\n")[1:]]
    agent_yaml = blocks[0]
    [dockyard_yaml] = [block for block in blocks if block.startswith("registry:")]
    (tmp_path / "agent.yaml").write_text(agent_yaml)
    (tmp_path / "dockyard.yaml").write_text(dockyard_yaml)
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    assert validate(tmp_path / "agent.yaml") == []


def test_the_documented_code_configuration_is_clean(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "agent-yaml.md").read_text()
    [block] = [b.split("```")[0] for b in doc.split("```yaml\n")[1:] if b.startswith("codeConfiguration:")]
    agent_yaml = "\n".join(CLEAN[k] for k in ("kind", "name", "protocols", "resources")) + "\n" + block
    (tmp_path / "agent.yaml").write_text(agent_yaml)
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "requirements.txt").write_text("httpx\n")
    assert validate(tmp_path / "agent.yaml") == []
