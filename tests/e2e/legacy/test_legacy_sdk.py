"""azure-ai-projects 2.0.0b3 — the SDK the original hosted-agents guide requires — against a real `dockyard up`.

The project's own venv holds the newest 2.x, so these tests build a second venv with the pinned 2.0.0b3
(tests/support/legacy_venv.py) and run client scripts (./scripts) in it as subprocesses, with exactly the
environment `dockyard env` prints plus PATH: what a user has after `eval "$(dockyard env)"`. Each script
prints JSON; the tests assert on it and on exit codes.

The guide's snippets are run verbatim. Two of them fail inside the SDK itself (not in dockyard): the guide
reads `.state`, which 2.0.0b3's `AgentVersionDetails` does not have (the wire field is `status`, reachable
only as `agent["status"]`), and it calls `delete_version(version=...)` where the parameter is
`agent_version`. The tests pin both, and that the corrected forms work.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from support.legacy_venv import MARKER, REQUIREMENTS, LegacyVenvError, ensure_venv, legacy_python
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.legacy_sdk]

SCRIPTS = Path(__file__).parent / "scripts"
API_VERSION = "2025-11-15-preview"
ENDPOINT_SUFFIX = "/api/projects/default"
_CREDENTIAL_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def legacy_py() -> Path:
    """The 2.0.0b3 venv's python; built on first use (tens of seconds), cached across runs."""
    return legacy_python()


@pytest.fixture(scope="module")
def script_env(dockyard: DockyardProcess) -> dict[str, str]:
    """Exactly what `eval "$(dockyard env)"` gives a fresh shell, plus PATH; no service-principal variables."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dockyard.env()}
    for name in _CREDENTIAL_VARIABLES:
        env.pop(name, None)
    return env


@pytest.fixture
def run(legacy_py: Path, script_env: dict[str, str]):
    """Run a script from ./scripts with the legacy python, in the environment `dockyard env` prints."""
    env = script_env

    def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(legacy_py), str(SCRIPTS / script), *args],
            env=env, capture_output=True, text=True, timeout=180, cwd=SCRIPTS,
        )

    return run_script


def assert_not_active(status: str, error: dict | None) -> None:
    """A version read back after its creation: the reconciler may have moved it on, but never to "active"
    (the test images live in a registry nobody can reach). A failed version says why, in Azure's shape."""
    assert status in ("creating", "failed"), status
    if status == "failed":
        assert error and error.get("code") and error.get("message"), error
    else:
        assert error is None, error


def report(result: subprocess.CompletedProcess[str]) -> dict:
    """The JSON a script printed last, after checking it succeeded."""
    assert result.returncode == 0, (f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n"
                                    f"--- stderr ---\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the venv itself ---------------------------------------------------------------------------------


def test_legacy_venv_holds_the_pinned_sdk(legacy_py: Path) -> None:
    assert (legacy_py.parent.parent / MARKER.name).read_text().split() == list(REQUIREMENTS)
    probe = subprocess.run(
        [str(legacy_py), "-c",
         "import json, importlib.metadata as m; "
         "print(json.dumps({d: m.version(d) "
         "for d in ('azure-ai-projects', 'azure-identity', 'azure-core', 'aiohttp')}))"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(probe.stdout) == dict(r.split("==") for r in REQUIREMENTS)


def test_venv_is_reused_and_rebuilt_when_its_marker_differs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python, built = ensure_venv(venv, ("pip",))  # already satisfied by ensurepip: no index needed
    assert built > 0 and (venv / MARKER.name).read_text() == "pip\n"
    assert ensure_venv(venv, ("pip",)) == (python, 0.0)
    (venv / "stale").touch()
    (venv / MARKER.name).write_text("azure-ai-projects==2.0.0b2\n")
    python, built = ensure_venv(venv, ("pip",))
    assert built > 0 and not (venv / "stale").exists()  # rebuilt from scratch, not patched
    assert (venv / MARKER.name).read_text() == "pip\n"


def test_failed_install_raises_with_pips_output(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    with pytest.raises(LegacyVenvError) as caught:
        ensure_venv(venv, ("azure-ai-projects==0.0.0.dev0",))
    assert "pip install azure-ai-projects==0.0.0.dev0 failed" in str(caught.value)
    assert "--- stderr ---" in str(caught.value) and "azure-ai-projects" in str(caught.value).split("--- stderr ---")[1]
    assert not (venv / MARKER.name).exists()  # so the next call tries again


# -- the guide, verbatim -----------------------------------------------------------------------------


def test_guide_complete_example_fails_in_the_sdk_on_state_and_works_with_status(run) -> None:
    verbatim = run("guide_complete_example.py")
    # dockyard did its part: the agent was created and the SDK printed name and version...
    assert "Created hosted agent: data-processor-agent" in verbatim.stdout
    assert "Version: 1" in verbatim.stdout
    # ...and then the guide's own `print(f"State: {agent.state}")` broke in the SDK model.
    assert verbatim.returncode != 0
    assert "AttributeError" in verbatim.stderr and "state" in verbatim.stderr
    assert "'AgentVersionDetails' object has no attribute 'state'" in verbatim.stderr
    assert "State:" not in verbatim.stdout

    fixed = run("guide_complete_example_fixed.py")
    result = report(fixed)
    assert fixed.stdout.splitlines()[:3] == [
        "Created hosted agent: data-processor-agent", "Version: 2", "State: creating",
    ]
    assert result["name"] == "data-processor-agent"
    assert (result["version"], result["id"]) == ("2", "data-processor-agent:2")  # the verbatim run made version 1
    assert result["status"] == "creating"  # no container has run: never "active" yet
    assert result["has_state_attribute"] is False
    assert result["image"] == "myregistry.azurecr.io/data-processor:v1.0"
    assert (result["cpu"], result["memory"]) == ("2", "4Gi")
    assert result["protocols"] == [["responses", "v1"]]
    assert result["tools"] == [{"type": "code_interpreter"}, {"type": "file_search"}]
    env = result["environment_variables"]
    assert env["MODEL_NAME"] == "gpt-4o-mini" and env["MAX_RETRIES"] == "3"
    assert env["AZURE_AI_PROJECT_ENDPOINT"].endswith(ENDPOINT_SUFFIX)
    # The 2.0.0b3 wire shape: top-level image and container_protocol_versions, nothing from 2.x.
    assert result["definition_keys"] == [
        "container_protocol_versions", "cpu", "environment_variables", "image", "kind", "memory", "tools",
    ]
    # 2.0.0b3 reads kind "hosted" back as HostedAgentDefinition (no `.image` attribute), not the
    # ImageBasedHostedAgentDefinition that was sent: an SDK trait, which is why the script reads ["image"].
    assert result["definition_type"] == "HostedAgentDefinition"


def test_guide_async_pattern(run) -> None:
    result = report(run("guide_async_pattern.py"))
    assert result["name"] == "async-agent"
    assert result["version"] == "1"
    assert result["status"] == "creating"
    assert result["kind"] == "hosted"
    assert result["image"] == "myregistry.azurecr.io/async-agent:latest"
    assert (result["cpu"], result["memory"]) == ("1", "2Gi")
    assert result["protocols"] == [["responses", "v1"]]


def test_guide_core_workflow_sections_2_to_4(run) -> None:
    result = report(run("guide_core_workflow.py"))

    assert result["create"] == {
        "printed": "Created agent: my-hosted-agent (version: 1)\n", "name": "my-hosted-agent", "version": "1",
    }

    # Section 3 as written: `version.state` does not exist on 2.0.0b3's model.
    listed = result["list_verbatim"]
    assert listed["ok"] is False and listed["printed"] == ""
    assert listed["error"]["type"] == "AttributeError"
    assert "'AgentVersionDetails' object has no attribute 'state'" in listed["error"]["message"]
    [line] = result["list_fixed"]
    assert line in ("Version: 1, State: creating", "Version: 1, State: failed")
    assert_not_active(line.rsplit(" ", 1)[-1], result["list_errors"][0])

    # Section 4 as written: the keyword is `agent_version`, so the SDK refuses before any request.
    refused = result["delete_verbatim"]
    assert refused["ok"] is False and refused["error"]["type"] == "TypeError"
    assert "agent_version" in refused["error"]["message"]
    assert result["versions_after_verbatim_delete"] == ["1"]  # nothing reached dockyard

    assert result["delete_fixed"] == {
        "object": "agent.version.deleted", "name": "my-hosted-agent", "version": "1", "deleted": True,
    }
    gone = result["get_after_delete"]
    assert gone["ok"] is False and gone["error"]["type"] == "ResourceNotFoundError"
    # It was the agent's only version, so the agent went with it.
    assert gone["code"] in ("AgentNotFound", "AgentVersionNotFound")


# -- flows beyond the guide, sync client -------------------------------------------------------------


def test_versions_get_list_paging_and_delete(run) -> None:
    name = unique("legacy")
    result = report(run("flows.py", "versions", name))

    assert [c["version"] for c in result["created"]] == ["1", "2", "3", "4", "5"]
    assert [c["id"] for c in result["created"]] == [f"{name}:{n}" for n in range(1, 6)]
    assert {c["status"] for c in result["created"]} == {"creating"}  # as answered to create_version
    assert result["created"][2]["description"] == "version number 3"
    assert result["created"][2]["metadata"] == {"n": "3"}
    assert all(c["created_at_year"] >= 2025 for c in result["created"])

    got = result["get_version"]
    assert (got["id"], got["version"], got["object"]) == (f"{name}:3", "3", "agent.version")
    assert_not_active(got["status"], got["error"])
    assert (got["cpu"], got["memory"]) == ("2", "4Gi")
    assert got["protocols"] == [["responses", "v1"]]
    # The 2.0.0b3 shape of a hosted definition, exactly: no container_configuration / protocol_versions.
    assert got["definition_wire"] == {
        "kind": "hosted",
        "cpu": "2",
        "memory": "4Gi",
        "image": "myregistry.azurecr.io/legacy-agent:v1",
        "container_protocol_versions": [{"protocol": "responses", "version": "v1"}],
        "environment_variables": {"MODEL_NAME": "gpt-4o-mini"},
    }
    assert got["definition_type"] == "HostedAgentDefinition"

    newest_first, oldest_first = ["5", "4", "3", "2", "1"], ["1", "2", "3", "4", "5"]
    assert result["list_default"] == newest_first
    assert result["list_desc_limit2"] == newest_first
    assert result["list_desc_limit2_explicit"] == newest_first
    assert result["list_asc_limit2"] == oldest_first
    # b3 pages on last_id alone (it ignores has_more): the final empty page must carry last_id null.
    assert result["pages_desc_limit2"] == [["5", "4"], ["3", "2"], ["1"], []]
    assert result["pages_asc_limit2"] == [["1", "2"], ["3", "4"], ["5"], []]
    assert result["list_desc_limit2_queries"] == [
        {"limit": ["2"], "after": None, "order": None},
        {"limit": ["2"], "after": [f"{name}:4"], "order": None},
        {"limit": ["2"], "after": [f"{name}:2"], "order": None},
        {"limit": ["2"], "after": [f"{name}:1"], "order": None},
    ]
    # `before` picks the `limit` items nearest the cursor, on the side opposite to the order of travel.
    assert result["before_asc"] == ["2", "3"]
    assert result["before_desc"] == ["4", "3"]

    agent = result["agent"]
    assert (agent["object"], agent["id"], agent["name"]) == ("agent", name, name)
    assert agent["latest_version"] == "5"
    assert_not_active(agent["latest_status"], agent["latest_error"])
    assert agent["latest_image"] == "myregistry.azurecr.io/legacy-agent:v1"
    assert agent["wire_keys"] == ["id", "name", "object", "versions"]  # no 2.x-only `state` on the preview wire

    mine = [name, f"{name}-s0", f"{name}-s1", f"{name}-s2"]
    assert result["agents_list_asc"] == mine
    assert result["agents_list_desc"] == list(reversed(mine))
    assert result["agents_list_hosted"] == mine
    assert result["agents_list_prompt"] == []

    assert result["delete_version"] == {"object": "agent.version.deleted", "name": name, "version": "2",
                                        "deleted": True}
    assert result["after_delete_version"] == ["1", "3", "4", "5"]
    assert result["delete_agent"] == [{"object": "agent.deleted", "name": n, "deleted": True} for n in mine]
    assert result["get_after_delete"]["type"] == "ResourceNotFoundError"
    assert result["get_after_delete"]["code"] == "AgentNotFound"
    assert result["agents_list_after_delete"] == []

    assert result["api_versions"] == [API_VERSION]


def test_iterating_a_before_cursor_follows_the_sdk(run) -> None:
    name = unique("before")
    result = report(run("flows.py", "before", name))
    assert result["queries"][1] == {"limit": ["2"], "order": ["asc"], "after": [f"{name}:3"], "before": [f"{name}:4"]}
    assert result["before_asc_all"] == ["2", "3"]


def test_errors_as_the_sdk_surfaces_them(run) -> None:
    name = unique("legacy-err")
    result = report(run("flows.py", "errors", name))

    def refused(label: str, code: str, status: int = 400, exception: str = "HttpResponseError") -> str:
        error = result[label]
        assert error is not None, f"{label} was accepted"
        assert (error["type"], error["status_code"], error["code"]) == (exception, status, code), error
        assert error["is_http_response_error"] is True
        return error["message"]

    message = refused("protocol_v9", "ProtocolVersionNotSupported")
    assert "v9" in message and "v1" in message

    message = refused("bad_image", "InvalidContainerImage")
    assert "Not A Valid Image" in message

    message = refused("cpu_8", "InvalidCpu")
    assert "cpu" in message and "0.5" in message and "4" in message and "'8'" in message

    message = refused("memory_512Mi", "InvalidMemory")
    assert "memory" in message and "1Gi" in message and "8Gi" in message

    message = refused("bad_name", "InvalidAgentName")
    assert "1-bad" in message and "63" in message

    for label in ("unknown_agent_get", "unknown_agent_get_version", "unknown_agent_list_versions",
                  "unknown_agent_delete"):
        message = refused(label, "AgentNotFound", 404, "ResourceNotFoundError")
        assert f"{name}-missing" in message

    assert result["agent_after_refusals"] == "absent"  # refused definitions left nothing behind

    for label in ("unknown_version_get", "unknown_version_delete"):
        message = refused(label, "AgentVersionNotFound", 404, "ResourceNotFoundError")
        assert "'9'" in message


# -- async client ------------------------------------------------------------------------------------


def test_async_client_create_list_get_delete(run) -> None:
    name = unique("legacy-async")
    result = report(run("async_flow.py", name))
    assert result == {
        "created": ["1", "2", "3"],
        "status": "creating",
        "listed_desc": ["3", "2", "1"],
        "listed_asc": ["1", "2", "3"],
        "get_version_image": "myregistry.azurecr.io/async-legacy:v2",
        "latest": "3",
        "latest_image": "myregistry.azurecr.io/async-legacy:v3",
        "in_list": True,
        "deleted_version": ["1", True],
        "deleted": [name, True],
        "get_after_delete": ["ResourceNotFoundError", "AgentNotFound"],
    }
