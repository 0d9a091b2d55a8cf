"""bench/cold_start_process: a session's cold start on the process runtime, against starting the agent by hand.

dockyard's side: a code-based version is active on `dockyard up --runtime process` (no engine); each run
sends a Responses call naming a new session (`x-agent-session-id`), so dockyard starts that session's
process, waits for /readiness and forwards the call; the clock stops at the answer. The direct side:
`python main.py` with PORT set, /readiness polled until 200, then the same POST /responses; the clock
stops at the answer. Same code, same interpreter, runs interleaved; the figure is the ratio of medians.

    .venv/bin/python bench/cold_start_process.py [--runs 9]

Writes bench/results/cold_start_process.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import httpx
from _setup import ROOT, write_result
from support.process import DockyardProcess

# The same stdlib agent the process runtime's e2e test runs.
AGENT = (ROOT / "tests" / "fixtures" / "code" / "stdlib-agent" / "main.py").read_bytes()

TARGET_RATIO = 1.2
POLL_SECONDS = 0.01
INTERPRETER = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_direct(tree: Path) -> float:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([str(INTERPRETER), "main.py"], cwd=tree, env={"PORT": str(port), "PATH": "/usr/bin"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=5) as http:
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{port}/readiness").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(POLL_SECONDS)
            answer = http.post(f"http://127.0.0.1:{port}/responses", json={"input": "cold"})
            assert answer.status_code == 200, answer.text
            return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait()


def time_dockyard(openai, session_ids: list[str]) -> float:  # type: ignore[no-untyped-def]
    session = uuid.uuid4().hex
    session_ids.append(session)
    started = time.perf_counter()
    answer = openai.responses.create(input="cold", extra_headers={"x-agent-session-id": session})
    elapsed = time.perf_counter() - started
    assert answer.output_text == "cold", answer
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cold_start_process.json")
    args = parser.parse_args()

    from azure.ai.projects import AIProjectClient
    from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
    from azure.identity import DefaultAzureCredential

    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "code"
        tree.mkdir()
        (tree / "main.py").write_bytes(AGENT)
        archive = Path(scratch) / "agent.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("main.py", AGENT)
        server = DockyardProcess(home=Path(scratch) / "home", runtime="process").start()
        try:
            os.environ.update(server.env())
            client = AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())
            runtime = f"python_{sys.version_info.major}_{sys.version_info.minor}"
            definition = HostedAgentDefinition(
                cpu="1", memory="2Gi",
                code_configuration=CodeConfiguration(runtime=runtime, entry_point=["python", "main.py"],
                                                     dependency_resolution="bundled"),
                protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
            )
            with archive.open("rb") as code:
                version = client.agents.create_version_from_code("cold", definition=definition, code=code)
            while client.agents.get_version(agent_name="cold", agent_version=version.version).status != "active":
                time.sleep(0.1)
            openai = client.get_openai_client(agent_name="cold")
            openai.responses.create(input="warm-up")  # the shared session: connections and caches warm
            time_direct(tree)
            dockyard_seconds: list[float] = []
            direct_seconds: list[float] = []
            sessions: list[str] = []
            for _ in range(args.runs):
                dockyard_seconds.append(time_dockyard(openai, sessions))
                direct_seconds.append(time_direct(tree))
        finally:
            server.stop()
            subprocess.run([sys.executable, "-m", "dockyard", "down", "--purge", "--home", str(server.home)],
                           capture_output=True, timeout=120)
    dockyard_median = statistics.median(dockyard_seconds)
    direct_median = statistics.median(direct_seconds)
    ratio = dockyard_median / direct_median
    write_result(args.out, {
        "bench": "cold_start_process",
        "what": "first answer of a new session on the process runtime (dockyard) vs python main.py -> /readiness "
                "-> POST /responses (direct), same stdlib agent and interpreter",
        "runs": args.runs,
        "dockyard_seconds": dockyard_seconds,
        "direct_seconds": direct_seconds,
        "dockyard_median_seconds": round(dockyard_median, 4),
        "direct_median_seconds": round(direct_median, 4),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    })
    print(f"cold start: dockyard {dockyard_median * 1000:.0f} ms, direct {direct_median * 1000:.0f} ms, "
          f"ratio {ratio:.2f} (target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
