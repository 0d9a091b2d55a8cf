"""`dockyard model` and `dockyard connection` as a person runs them: real processes on a real home."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.process import dockyard_command

KEY = "sk-test-key-never-printed-4711"


def run(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
    return subprocess.run(dockyard_command(*args, "--home", str(home)), capture_output=True, text=True, timeout=60,
                          input=stdin if stdin is not None else "", env={**clean, "COLUMNS": "200"})


def listed(home: Path, what: str = "model") -> list[dict[str, object]]:
    result = run(home, what, "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_local_alias_an_openai_compatible_server_and_azure(home: Path) -> None:
    assert run(home, "model", "add", "gpt-4o-mini", "--local").returncode == 0
    added = run(home, "model", "add", "gpt-4.1", "--base-url", "https://api.openai.com/v1/", "--api-key-stdin",
                stdin=KEY + "\n")
    assert added.returncode == 0, added.stderr
    assert "connection 'gpt-4-1'" in added.stdout
    azure = run(home, "model", "add", "chat", "--azure-endpoint", "https://x.openai.azure.com/openai/v1",
                "--model", "my-azure-deployment", "--entra", "--chat-only")
    assert azure.returncode == 0, azure.stderr
    rows = {r["name"]: r for r in listed(home)}
    assert rows["gpt-4o-mini"]["connection"] == "local" and rows["gpt-4o-mini"]["kind"] == "local"
    assert rows["gpt-4.1"]["target"] == "https://api.openai.com/v1" and rows["gpt-4.1"]["auth"] == "api_key"
    assert rows["chat"] == {**rows["chat"], "kind": "azure_openai", "target": "https://x.openai.azure.com",
                            "model": "my-azure-deployment", "auth": "entra", "speaksResponses": False}
    table = run(home, "model", "list")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["NAME", "CONNECTION", "KIND", "TARGET", "UPSTREAM", "MODEL",
                                                    "AUTH", "RESPONSES"]
    assert "(the local model)" in table.stdout and "translated" in table.stdout
    for output in (table.stdout, json.dumps(listed(home)), json.dumps(listed(home, "connection")),
                   run(home, "connection", "list").stdout, added.stdout + added.stderr):
        assert KEY not in output


def test_one_connection_many_deployments_and_removal_order(home: Path) -> None:
    added = run(home, "connection", "add", "openai", "--base-url", "https://api.openai.com/v1", "--api-key-stdin",
                stdin=KEY)
    assert added.returncode == 0, added.stderr
    for name in ("gpt-4o", "gpt-4o-mini"):
        assert run(home, "model", "add", name, "--connection", "openai").returncode == 0
    in_use = run(home, "connection", "remove", "openai")
    assert in_use.returncode == 2 and "gpt-4o, gpt-4o-mini" in in_use.stderr
    # A deployment on a named connection leaves the connection when removed.
    assert run(home, "model", "remove", "gpt-4o").stdout.strip() == "deployment 'gpt-4o' removed"
    assert run(home, "model", "remove", "gpt-4o-mini").returncode == 0
    assert run(home, "connection", "remove", "openai").returncode == 0
    assert listed(home, "connection") == []


def test_connection_metadata(home: Path) -> None:
    added = run(home, "connection", "add", "c", "--base-url", "http://x/v1", "--metadata", "region=eu",
                "--metadata", "team=a=b")
    assert added.returncode == 0, added.stderr
    assert listed(home, "connection")[0]["metadata"] == {"region": "eu", "team": "a=b", "ApiType": "OpenAI",
                                                         "SupportsResponses": "true"}
    bad = run(home, "connection", "add", "d", "--base-url", "http://x/v1", "--metadata", "novalue")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


def test_model_remove_takes_the_connection_model_add_made(home: Path) -> None:
    assert run(home, "model", "add", "m", "--base-url", "http://127.0.0.1:8080/v1").returncode == 0
    assert [c["name"] for c in listed(home, "connection")] == ["m"]
    removed = run(home, "model", "remove", "m")
    assert removed.returncode == 0 and "its connection 'm'" in removed.stdout
    assert listed(home, "connection") == [] and listed(home) == []


def test_registry_connections_are_listed_too(home: Path) -> None:
    assert run(home, "registry", "add", "acr", "--server", "r.example", "--username", "u", "--password-stdin",
               stdin="pw-secret").returncode == 0
    rows = listed(home, "connection")
    assert rows == [{"name": "acr", "type": "ContainerRegistry", "target": "r.example", "credentials": "CustomKeys",
                     "isDefault": True, "metadata": {"username": "u"}}]
    assert "pw-secret" not in run(home, "connection", "list").stdout


@pytest.mark.parametrize(("args", "stdin", "code", "says"), [
    (("model", "add", "m"), "", 2, "exactly one of --base-url"),
    (("model", "add", "m", "--local", "--base-url", "http://x/v1"), "", 2, "got --base-url, --local"),
    (("model", "add", "m", "--azure-endpoint", "https://x.openai.azure.com"), "", 2, "needs credentials"),
    (("model", "add", "m", "--base-url", "http://x/v1", "--entra"), "", 2, "--entra is for Azure OpenAI"),
    (("model", "add", "m", "--base-url", "http://x/v1", "--api-key-stdin"), "", 2, "no API key on standard input"),
    (("model", "add", "m", "--base-url", "not-a-url"), "", 2, "http:// or https://"),
    (("model", "add", "m", "--base-url", "http://user:pw@x/v1"), "", 2, "must not carry credentials"),
    (("model", "add", "bad/name", "--local"), "", 2, "is not valid"),
    (("model", "add", "m", "--connection", "nope"), "", 4, "dockyard connection add nope"),
    (("model", "add", "m", "--local", "--api-key-stdin"), KEY, 2, "do not apply"),
    (("model", "remove", "nope"), "", 4, "does not exist"),
    (("connection", "remove", "nope"), "", 4, "does not exist"),
    (("connection", "add", "c"), "", 2, "exactly one of --base-url"),
])
def test_errors_are_one_clear_line_and_a_non_zero_exit(home: Path, args: tuple[str, ...], stdin: str, code: int,
                                                       says: str) -> None:
    result = run(home, *args, stdin=stdin)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockyard: error: ") and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr and KEY not in result.stderr + result.stdout


def test_names_are_taken_once(home: Path) -> None:
    assert run(home, "model", "add", "m", "--local").returncode == 0
    again = run(home, "model", "add", "m", "--base-url", "http://x/v1")
    assert again.returncode == 2 and "already exists" in again.stderr
    # The connection made for the refused deployment is not left behind.
    assert [c["name"] for c in listed(home, "connection")] == ["local"]
    assert run(home, "connection", "add", "c", "--base-url", "http://x/v1").returncode == 0
    taken = run(home, "model", "add", "c", "--base-url", "http://y/v1")
    assert taken.returncode == 2 and "--connection c" in taken.stderr


def test_there_is_no_way_to_pass_a_key_as_an_argument(home: Path) -> None:
    for command in (("model", "add"), ("connection", "add")):
        result = run(home, *command, "--help")
        assert "--api-key-stdin" in result.stdout and "--api-key " not in result.stdout
