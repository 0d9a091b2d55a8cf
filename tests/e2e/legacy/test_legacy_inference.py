"""azure-ai-projects 2.0.0b3's OpenAI client against the project's model endpoint, on the real local model.

The SDK the original guide requires builds its openai client on `{endpoint}/openai` with api-version
2025-11-15-preview; a Responses call that names a `model` (and no agent) reaches the deployment.
Gemma 3 270M answers these: what it says is not asserted, only that it is generated text.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.legacy_venv import legacy_python
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.legacy_sdk]

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    running = DockyardProcess(home=tmp_path_factory.mktemp("home"), extra_args=("--no-engine",),
                              local_model=True).start()
    yield running
    running.stop()


def test_the_2_0_0b3_openai_client_reaches_a_deployment(server: DockyardProcess) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **server.env()}
    result = subprocess.run([str(legacy_python()), str(SCRIPTS / "model_inference.py"), "local"], env=env,
                            capture_output=True, text=True, timeout=300, cwd=SCRIPTS)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["base_path"].rstrip("/") == "/api/projects/default/openai"
    assert seen["query"] == {"api-version": "2025-11-15-preview"}
    assert seen["response_text"].strip() and seen["chat_text"].strip()
    assert seen["stream_deltas"] > 1 and seen["stream_text"].strip()
