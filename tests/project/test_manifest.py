"""Loading agent.yaml: both spellings and forms of environment variables, ${VAR} references, dockyard.yaml,
defaults, lines in errors, and real samples written for Azure's tooling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azure.ai.projects.models import HostedAgentDefinition

from dockyard.domain.definitions import HostedDefinition, WireShape
from dockyard.project.manifest import (
    DockyardSettings,
    Manifest,
    ManifestError,
    ManifestFileError,
    find_manifest,
    load_manifest,
)

SAMPLES = Path(__file__).parent / "samples"

HEAD = """\
kind: hosted
name: my-agent
protocols:
  - protocol: responses
    version: "2.0.0"
resources:
  cpu: "1"
  memory: 2Gi
"""


def write(folder: Path, text: str, name: str = "agent.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "block",
    [
        "environment_variables:\n  - name: MODEL\n    value: gpt-4o-mini\n  - name: REGION\n    value: west\n",
        "environmentVariables:\n  - name: MODEL\n    value: gpt-4o-mini\n  - name: REGION\n    value: west\n",
        "environmentVariables:\n  MODEL: {value: gpt-4o-mini}\n  REGION:\n    value: west\n",
        "environment_variables:\n  MODEL: gpt-4o-mini\n  REGION: west\n",
    ],
    ids=["azd-list", "schema-list", "schema-map", "plain-map"],
)
def test_environment_variables_in_every_form(tmp_path: Path, block: str) -> None:
    manifest = load_manifest(write(tmp_path, HEAD + block))
    assert manifest.environment_variables == {"MODEL": "gpt-4o-mini", "REGION": "west"}


def test_plain_map_loads_with_a_portability_warning(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, HEAD + "environment_variables:\n  MODEL: gpt-4o-mini\n"))
    assert [(f.rule, f.severity, f.line) for f in manifest.findings] == [("env-form", "warning", 9)]


def test_references_stay_unresolved_until_asked(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, HEAD + (
        "environment_variables:\n"
        "  - name: ENDPOINT\n    value: ${FOUNDRY_ENDPOINT}\n"
        "  - name: MODEL\n    value: ${MODEL_NAME:-gpt-4o-mini}\n"
        "  - name: EMPTY_DEFAULT\n    value: ${BLANK-kept}\n"
        "  - name: URL\n    value: https://${HOST}/v1?x=$${literal}\n"
        "  - name: FOUNDRY_SIDE\n    value: ${{connections.search.credentials.key}}\n"
    )))
    assert manifest.environment_variables["ENDPOINT"] == "${FOUNDRY_ENDPOINT}"
    resolved = manifest.resolved_environment({"FOUNDRY_ENDPOINT": "https://f.example", "HOST": "h", "BLANK": ""})
    assert resolved == {
        "ENDPOINT": "https://f.example",
        "MODEL": "gpt-4o-mini",
        "EMPTY_DEFAULT": "",  # ${VAR-default} keeps a variable that is set, even to ""
        "URL": "https://h/v1?x=${literal}",
        "FOUNDRY_SIDE": "${{connections.search.credentials.key}}",
    }
    assert manifest.resolved_environment({"FOUNDRY_ENDPOINT": "e", "HOST": "h", "MODEL_NAME": "o3"})["MODEL"] == "o3"


def test_unset_references_are_one_error_each_with_their_lines(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, HEAD + (
        "environment_variables:\n"
        "  - name: ENDPOINT\n    value: ${FOUNDRY_ENDPOINT}\n"
        "  - name: FINE\n    value: plain\n"
        "  - name: KEY_REF\n    value: ${SEARCH_KEY}\n"
    )))
    with pytest.raises(ManifestError) as caught:
        manifest.resolved_environment({})
    assert [(f.rule, f.line) for f in caught.value.findings] == [("env-unset", 10), ("env-unset", 14)]
    assert "FOUNDRY_ENDPOINT" in caught.value.findings[0].message
    assert f"{manifest.path}:14" in str(caught.value)
    with pytest.raises(ManifestError):
        manifest.definition("registry.example.com/a:1", {"FOUNDRY_ENDPOINT": "x"})


def test_dockerfile_path_is_relative_to_the_manifest_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(project, HEAD + "dockerfilePath: build/Containerfile\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    manifest = load_manifest(Path("../project/agent.yaml"))
    assert manifest.dockerfile_path is not None
    assert manifest.dockerfile_path.resolve() == (project / "build" / "Containerfile").resolve()
    assert manifest.dockerfile_path.is_absolute()
    assert manifest.image is None


def test_dockyard_yaml_holds_the_extras(tmp_path: Path) -> None:
    write(tmp_path, HEAD + "image: registry.example.com/my-agent:v1\n")
    write(tmp_path, "registry: 127.0.0.1:5000/team\nbase_image: localhost/python:3.12\nidle_timeout_seconds: 600\n",
          "dockyard.yaml")
    manifest = load_manifest(tmp_path / "agent.yaml")
    assert manifest.dockyard == DockyardSettings(
        registry="127.0.0.1:5000/team", base_image="localhost/python:3.12", idle_timeout_seconds=600,
        path=tmp_path / "dockyard.yaml",
    )
    definition = manifest.definition("127.0.0.1:5000/team/my-agent:sha-1", {})
    assert definition["session_configuration"] == {"idle_timeout_seconds": 600}


def test_without_dockyard_yaml_the_settings_are_empty(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, HEAD))
    assert manifest.dockyard == DockyardSettings()
    assert "session_configuration" not in manifest.definition("r.example.com/a:1", {})


def test_dockyard_yaml_wins_over_azds_session_configuration(tmp_path: Path) -> None:
    write(tmp_path, HEAD + "session_configuration:\n  idle_timeout_seconds: 300\n")
    assert load_manifest(tmp_path / "agent.yaml").idle_timeout_seconds == 300
    write(tmp_path, "idle_timeout_seconds: 1200\n", "dockyard.yml")
    assert load_manifest(tmp_path / "agent.yaml").idle_timeout_seconds == 1200


def test_a_mistake_in_dockyard_yaml_names_that_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, HEAD)
    settings = write(tmp_path, "registry: 127.0.0.1:5000\nidle_timeout: 60\n", "dockyard.yaml")
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "agent.yaml")
    [finding] = caught.value.findings
    assert (finding.rule, finding.file, finding.line) == ("dockyard-settings", settings, 2)
    assert f"{settings}:2" in str(caught.value)


def test_absent_resources_and_protocols_get_azds_defaults_with_warnings(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, "kind: hosted\nname: bare\n"))
    assert (manifest.cpu, manifest.memory) == ("0.5", "1Gi")
    assert manifest.protocols == [("responses", "2.0.0")]
    assert sorted(f.rule for f in manifest.findings) == ["protocols-default", "resources-default"]


def test_definition_is_what_the_sdks_and_dockyard_accept(tmp_path: Path) -> None:
    write(tmp_path, "idle_timeout_seconds: 600\n", "dockyard.yaml")
    manifest = load_manifest(write(tmp_path, HEAD + (
        "environment_variables:\n  - name: MODEL\n    value: ${MODEL:-gpt-4o-mini}\n"
        "tools:\n  - type: code_interpreter\n"
    )))
    image = "127.0.0.1:5000/team/my-agent:sha-0123"
    flat = manifest.definition(image, {})
    assert flat == {
        "image": image,
        "cpu": "1",
        "memory": "2Gi",
        "container_protocol_versions": [{"protocol": "responses", "version": "2.0.0"}],
        "environment_variables": {"MODEL": "gpt-4o-mini"},
        "tools": [{"type": "code_interpreter"}],
        "session_configuration": {"idle_timeout_seconds": 600},
    }
    current = manifest.hosted_definition(image, {})
    assert "tools" not in current  # the 2.x hosted definition has no tools field
    # The 2.x SDK model takes it as it is and sends the same body.
    model = HostedAgentDefinition(**current)
    assert model.as_dict() == {"kind": "hosted", **current}
    assert model.session_configuration.idle_timeout_seconds.total_seconds() == 600
    # dockyard's API reads both into one definition.
    assert HostedDefinition.from_wire({"kind": "hosted", **flat}) == HostedDefinition.from_wire(
        {"kind": "hosted", **current, "tools": flat["tools"]}
    )
    assert HostedDefinition.from_wire({"kind": "hosted", **flat}).to_wire(WireShape.V1)["container_configuration"] == {
        "image": image
    }


def test_schema_violations_raise_with_lines(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "kind: prompt\n"
        "name: my-agent\n"
        "protocols:\n"
        "  - protocol: responses\n"
        "resources:\n"
        "  cpu: 1\n"
        "  memory: 2Gi\n"
    ))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert [(f.rule, f.line) for f in caught.value.findings] == [("schema", 1), ("schema", 4), ("schema", 6)]
    text = str(caught.value)
    assert f"{path}:1: error: kind must be 'hosted'" in text
    assert "version" in caught.value.findings[1].message
    assert "Quote" in caught.value.findings[2].fix


def test_yaml_syntax_and_duplicate_keys_are_errors_with_lines(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, "kind: hosted\nname: [unclosed\nprotocols: []\n"))
    assert caught.value.findings[0].rule == "yaml"
    assert caught.value.findings[0].line == 3
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, HEAD + "name: again\n"))
    assert [(f.rule, f.line) for f in caught.value.findings] == [("duplicate-key", 9)]


def test_find_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestFileError) as caught:
        find_manifest(tmp_path)
    assert "dockyard init" in caught.value.findings[0].fix
    with pytest.raises(ManifestFileError):
        find_manifest(tmp_path / "missing.yaml")
    yml = write(tmp_path, HEAD, "agent.yml")
    assert find_manifest(tmp_path) == yml
    yaml_ = write(tmp_path, HEAD)
    assert find_manifest(tmp_path) == yaml_  # agent.yaml first, as azd looks
    assert find_manifest(yml) == yml


def test_an_unreadable_file_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"kind: hosted\nname: \xff\xfe\n")
    with pytest.raises(ManifestFileError) as caught:
        load_manifest(path)
    assert caught.value.findings[0].rule == "manifest-unreadable"


# -- real files written for Azure's tooling ----------------------------------------------------------


def test_agent_framework_basic_sample_loads_unchanged() -> None:
    manifest = load_manifest(SAMPLES / "agent-framework-01-basic" / "agent.yaml")
    assert manifest.name == "agent-framework-agent-basic"
    assert manifest.description == "A basic Agent Framework agent hosted by Foundry.\n"
    assert manifest.protocols == [("responses", "1.0.0")]
    assert (manifest.cpu, manifest.memory) == ("0.25", "0.5Gi")
    assert manifest.environment_variables == {"MODEL_DEPLOYMENT_NAME": "gpt-5.4-nano"}
    assert manifest.image is None and manifest.dockerfile_path is None
    assert manifest.findings == ()


def test_agent_framework_single_agent_sample_loads_unchanged() -> None:
    manifest: Manifest = load_manifest(SAMPLES / "agent-framework-single-agent" / "agent.yaml")
    assert manifest.name == "python-single"
    assert manifest.protocols == [("responses", "v1")]
    assert (manifest.cpu, manifest.memory) == ("0.5", "1Gi")  # no resources: what azd deploys
    assert manifest.environment_variables == {
        "PROJECT_ENDPOINT": "{{PROJECT_ENDPOINT}}",
        "MODEL_DEPLOYMENT_NAME": "{{MODEL_DEPLOYMENT_NAME}}",
    }
    assert [f.rule for f in manifest.findings] == ["resources-default"]
    assert manifest.resolved_environment(os.environ)["PROJECT_ENDPOINT"] == "{{PROJECT_ENDPOINT}}"


CODE = HEAD + """\
codeConfiguration:
  runtime: python_3_12
  entryPoint: main.py
  dependencyResolution: remote_build
"""


def test_code_configuration_becomes_the_sdks_code_definition(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, CODE))
    assert manifest.code is not None and manifest.image is None
    definition = manifest.code_definition({})
    assert definition["code_configuration"] == {
        "runtime": "python_3_12", "entry_point": ["python", "main.py"], "dependency_resolution": "remote_build",
    }
    # What create_version_from_code sends, and what dockyard's API reads back as one definition.
    model = HostedAgentDefinition(**definition)
    assert model.as_dict()["code_configuration"]["entry_point"] == ["python", "main.py"]
    parsed = HostedDefinition.from_wire({"kind": "hosted", **definition})
    assert parsed.code_configuration == definition["code_configuration"]


@pytest.mark.parametrize(("written", "command"), [
    ("main.py", ["python", "main.py"]),
    ("app/server.py", ["python", "app/server.py"]),
    ('"python -m app --port 8088"', ["python", "-m", "app", "--port", "8088"]),
])
def test_entry_point_file_or_command(tmp_path: Path, written: str, command: list[str]) -> None:
    manifest = load_manifest(write(tmp_path, CODE.replace("entryPoint: main.py", f"entryPoint: {written}")))
    assert manifest.code is not None and list(manifest.code.entry_point) == command


def test_dependency_resolution_defaults_to_bundled_as_the_api_does(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, CODE.replace("  dependencyResolution: remote_build\n", "")))
    assert manifest.code is not None and manifest.code.dependency_resolution == "bundled"


def test_an_image_agent_has_no_code_definition(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, HEAD + "image: registry.example.com/a:v1\n"))
    assert manifest.code is None
    with pytest.raises(ValueError):
        manifest.code_definition({})
